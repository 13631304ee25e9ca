"""What checking an artifact against its manifest's SHA-256 costs at load: ``load(verify=True)`` against
``load(verify=False)`` on a ~100 MB ONNX model (one big MatMul weight), same process, warm page cache.

    .venv/bin/python benchmarks/verify_cost.py [--mb 100] [--runs 7] [--backend onnxruntime,openvino]

The model and its manifest (written with edgecv.manifest's functions, as an export writes it) go to a
temporary folder. Loads with and without the check alternate, ``--runs`` rounds each, so machine noise hits
both alike; the hash alone (``edgecv.fileio.sha256_of``, 1 MB chunks) is timed in the same rounds. Prints the
medians per backend, and the check's cost as a share of the unchecked load. Needs the ``onnx`` package
(the test extra) to write the model.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
from _common import work_dir

import edgecv
from edgecv.fileio import sha256_of
from edgecv.formats import FORMATS
from edgecv.manifest import Manifest, digest_files, manifest_path
from edgecv.tables import render


def write_model(path: Path, megabytes: int) -> Path:
    """A float32 ``y = x @ W`` with W square and about ``megabytes`` MB, with its manifest beside it."""
    from onnx import TensorProto, helper, numpy_helper, save

    n = int((megabytes * 1e6 / 4) ** 0.5)
    w = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    Manifest(format="onnx", precision="fp32", artifact=path.name,
             files=digest_files(FORMATS["onnx"].files(path))).write(manifest_path(path))
    return path


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="model size in MB (default 100)")
    ap.add_argument("--runs", type=int, default=7, help="rounds per backend (default 7)")
    ap.add_argument("--backend", default="onnxruntime,openvino", help="backends to load with (default both)")
    ap.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    args = ap.parse_args()
    logging.getLogger("edgecv.integrity").setLevel(logging.ERROR)  # the --no-verify warning, once per load
    with work_dir(None, "edgecv-verify-cost-") as tmp:
        path = write_model(tmp / "big.onnx", args.mb)
        size = path.stat().st_size
        rows = []
        for backend in args.backend.split(","):
            def load(verify: bool) -> None:
                model = edgecv.load(path, backend=backend, threads=args.threads, verify=verify)
                assert model.verification == ("verified" if verify else "skipped (--no-verify)")

            load(True)  # warm-up: page cache, runtime imports
            load(False)
            on, off, hashes = [], [], []
            for i in range(args.runs):
                order = (True, False) if i % 2 == 0 else (False, True)
                for verify in order:
                    (on if verify else off).append(timed(lambda: load(verify)))
                hashes.append(timed(lambda: sha256_of(path)))
            m_on, m_off, m_hash = (statistics.median(v) * 1e3 for v in (on, off, hashes))
            rows.append([backend, f"{m_off:.1f}", f"{m_on:.1f}", f"{m_on - m_off:+.1f}", f"{m_hash:.1f}",
                         f"{m_hash / m_off:.0%}", f"{size / 1e6 / (m_hash / 1e3):.0f}"])
    print(f"{path.name}: {size / 1e6:.1f} MB ONNX, {args.runs} interleaved rounds, threads {args.threads}, warm page cache; "
          "medians in ms")
    print(render(["backend", "load, no verify", "load, verify", "difference", "sha256 alone", "hash / load", "hash MB/s"],
                 rows, align="lrrrrrr"))


if __name__ == "__main__":
    main()
