"""How long the installed ``edgecv --help`` takes to start, and which modules it imports.

    .venv-device/bin/python benchmarks/cli_start.py [--runs 20] [--args "devices list"]

Runs the console script next to this interpreter (``bin/edgecv``: what a user types) from an empty folder,
``--runs`` times, and prints the median and fastest wall time, the interpreter's own start-up for
comparison, the number of modules imported (all, and ``edgecv.*``) and whether any of them is a converter
or a heavy library. Run it with a device install's interpreter (``.venv-device``, .ci/run makes one) to
measure what a device pays; the editable development install (``.venv``) gives the same imports.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "nncf", "onnx2tf", "torch", "cv2", "onnxruntime",
         "openvino", "ai_edge_litert", "numpy", "scipy")
# The console script's own code, in-process, so sys.modules can be read when it is done.
PROBE = """\
import json, sys
from edgecv.cli.main import main
sys.argv = ["edgecv", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stdout = sys.__stdout__
print(json.dumps(sorted(sys.modules)))
"""


def wall(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--args", default="--help", help="the edgecv arguments to time (default: --help)")
    args = p.parse_args()
    script = Path(sys.executable).with_name("edgecv")
    argv = shlex.split(args.args)
    with tempfile.TemporaryDirectory() as cwd:
        wall([str(script), *argv], cwd)  # warm the file cache
        times = [wall([str(script), *argv], cwd) for _ in range(args.runs)]
        base = statistics.median(wall([sys.executable, "-c", "pass"], cwd) for _ in range(args.runs))
        out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, check=True, capture_output=True, text=True)
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    ours = [m for m in modules if m == "edgecv" or m.startswith("edgecv.")]
    converters = [m for m in ours if m.startswith("edgecv.converters")]
    heavy = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    print(f"edgecv {args.args}: median {statistics.median(times) * 1e3:.0f} ms, fastest {min(times) * 1e3:.0f} ms "
          f"over {args.runs} runs ({script})")
    print(f"python -c pass: median {base * 1e3:.0f} ms")
    print(f"modules imported: {len(modules)}, of them edgecv's {len(ours)}: {' '.join(ours)}")
    print(f"converter modules: {len(converters)}; heavy libraries: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
