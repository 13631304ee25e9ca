"""How long `import edgecv` takes, and what it pulls in, measured in fresh interpreters.

    .venv/bin/python benchmarks/import_time.py [--repeat 20]

Reports the median wall time of `python -c "import X"` minus that of `python -c "pass"`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "import edgecv": "import edgecv",
    "edgecv + API (numpy)": "import edgecv; edgecv.load; edgecv.Model",
    "edgecv --help parser": "from edgecv.cli.main import build_parser; build_parser(['--help'])",
    "edgecv, every command's parser": "from edgecv.cli.main import build_parser; build_parser()",
    "numpy alone": "import numpy",
    "onnxruntime alone": "import onnxruntime",
    "openvino alone": "import openvino",
    "ai_edge_litert alone": "import ai_edge_litert.interpreter",
}


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args()
    base = statistics.median(wall("pass") for _ in range(args.repeat))
    print(f"python start-up: {base * 1e3:.1f} ms (subtracted below)")
    for label, code in CASES.items():
        t = statistics.median(wall(code) for _ in range(args.repeat)) - base
        print(f"{label:24s} {t * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
