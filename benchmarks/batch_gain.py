"""What batching saves per frame: a model's inference at batch 1, 4 and 8, in wall and CPU milliseconds per frame.

    .venv/bin/python benchmarks/batch_gain.py [--model builtin|PATH] [--artifacts DIR] [--threads 1,2] [--rounds 7]

``edgecv serve`` gathers the frames of streams that share a model into one call when the model takes a batch
(``batch.max_size``). That saves what a call costs beyond its frames' own work; on a CPU the saving is the
ceiling of what one service can gain over separate processes from batching alone. Each thread count loads the
model through ``edgecv.load`` as ``serve`` does (``shared_cores``: ONNX Runtime's threads sleep between calls),
runs random inputs at each batch size for ``--rounds`` rounds of about 40 frames, and prints the medians and the
CPU per frame at batch 1 over batch 8.

``builtin`` (default): the built-in scene detector's int8 ONNX (a dynamic batch), exported first unless
``--artifacts`` gives the folder.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 4, 8)


def per_frame(model, batch: int, rounds: int) -> tuple[float, float]:
    """Median wall and CPU ms per frame at ``batch``."""
    spec = model.inputs[0]
    shape = [batch, *[d if isinstance(d, int) and d > 0 else 1 for d in spec.shape[1:]]]
    x = (np.random.default_rng(0).random(shape) * 255).astype(spec.dtype)
    calls = max(1, 40 // batch)
    for _ in range(3):
        model.run(x)
    walls, cpus = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            model.run(x)
        walls.append((time.perf_counter() - t0) * 1000.0 / (calls * batch))
        cpus.append((time.process_time() - c0) * 1000.0 / (calls * batch))
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    import edgecv

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="builtin")
    p.add_argument("--artifacts", type=Path, help="the built-in detector's artifacts (default: exported here)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="batch-gain-") as tmp:
        if args.model == "builtin":
            from pipeline_vtest import builtin_artifacts

            path = builtin_artifacts(args.artifacts, Path(tmp)) / "scene_detector.int8.onnx"
        else:
            path = Path(args.model)
        print(f"{path.name}: ms per frame (wall / CPU), median of {args.rounds} rounds")
        for threads in (int(t) for t in args.threads.split(",")):
            model = edgecv.load(path, threads=threads, shared_cores=True)
            got = {b: per_frame(model, b, args.rounds) for b in BATCHES}
            cells = "  ".join(f"batch {b}: {w:.3f} / {c:.3f}" for b, (w, c) in got.items())
            print(f"{threads} thread(s)  {cells}  CPU batch 1 / batch 8: {got[1][1] / got[8][1]:.2f}x")


if __name__ == "__main__":
    main()
