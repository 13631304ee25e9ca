"""Install size of the device-side extras against the full set, each in a fresh venv.

    python3 benchmarks/install_size.py [--extras litert,onnxruntime,openvino,all]

Installs edgecv from this checkout with each extra into a temporary venv (pip's cache makes repeats fast)
and reports the size of everything installed, in MB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extras", default="core,litert,onnxruntime,openvino,all")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True)
        base = du_mb(empty)
        rows = []
        for extra in args.extras.split(","):
            venv = Path(tmp) / extra
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            spec = str(REPO) if extra == "core" else f"{REPO}[{extra}]"
            start = time.perf_counter()
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", spec], check=True, stderr=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            rows.append((extra, du_mb(venv) - base, seconds))
            print(f"edgecv[{extra}]".ljust(24), f"{rows[-1][1]:8.0f} MB", f"  install {seconds:5.0f} s", flush=True)
        full = dict((r[0], r[1]) for r in rows).get("all")
        if full:
            for extra, mb, _ in rows:
                print(f"{extra:12s} {100 * mb / full:5.1f}% of the full set")


if __name__ == "__main__":
    main()
