"""`edgecv bench` here and through SSH in the same run: does the remote path change the figures?

    .venv/bin/python benchmarks/remote_bench.py [ARTIFACT ...] [--runs 500] [--threads 1] [--rounds 2]

The "device" is this machine behind a throwaway OpenSSH server on 127.0.0.1 (Debian's sshd, started as the
tests start it), so the p50 ratio remote/local should be 1 within noise; the wall time shows what ssh, scp
and the device check cost per artifact. Local and remote runs alternate, ``--rounds`` times, and the best
p50 of each side is kept. Default artifacts: mnist-8.onnx, the same model as OpenVINO IR (.xml + .bin,
converted here), and face_detection_short_range.tflite from the shared data folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import shared_model

from edgecv.bench import BenchResult, benchmark
from edgecv.cli.bench_cmd import format_results
from edgecv.tables import render
from edgecv.remote import RemoteHost, describe_device
from tests.edgecv.sshd_helper import find_sshd, local_sshd


def default_artifacts(folder: Path) -> list[Path]:
    import openvino as ov

    onnx = shared_model("mnist-8.onnx")
    xml = folder / "mnist-8.xml"
    ov.save_model(ov.convert_model(str(onnx)), str(xml))
    return [onnx, xml, shared_model("face_detection_short_range.tflite")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", nargs="*", type=Path)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="local/remote alternations; the best p50 of each side is kept")
    args = p.parse_args()
    if find_sshd() is None:
        sys.exit("needs sshd: apt-get install openssh-server openssh-client")
    settings = {"runs": args.runs, "warmup": args.warmup, "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="edgecv-remote-bench-") as tmp:
        artifacts = args.artifacts or default_artifacts(Path(tmp))
        with local_sshd(Path(tmp) / "sshd") as server:
            host = RemoteHost(server.target, python=sys.executable, **server.host_kwargs)
            local: dict[Path, list] = {a: [] for a in artifacts}
            remote: dict[Path, list] = {a: [] for a in artifacts}
            for _ in range(args.rounds):
                for a in artifacts:
                    t0 = time.perf_counter()
                    local[a].append((benchmark(a, **settings), time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    # One call outside a with block: check, temporary folder, copy, run and clean-up each time,
                    # so the wall time is the whole cost of one remote benchmark.
                    remote[a].append((BenchResult(**host.benchmark(a, **settings)), time.perf_counter() - t0))
    best_local = [min(local[a], key=lambda rw: rw[0].p50_ms) for a in artifacts]
    best_remote = [min(remote[a], key=lambda rw: rw[0].p50_ms) for a in artifacts]
    print("here:\n" + format_results([r for r, _ in best_local]) + f"\non {describe_device(best_local[0][0].device)}\n")
    print("through ssh:\n" + format_results([r for r, _ in best_remote]) + "\n")
    rows = [
        [a.name, f"{lr.p50_ms:.3f}", f"{rr.p50_ms:.3f}", f"{rr.p50_ms / lr.p50_ms:.2f}",
         f"{lr.mean_ms:.3f}", f"{rr.mean_ms:.3f}", f"{lw:.2f}", f"{rw:.2f}"]
        for a, (lr, lw), (rr, rw) in zip(artifacts, best_local, best_remote)
    ]
    head = ["artifact", "p50 here", "p50 ssh", "ssh/here", "mean here", "mean ssh", "wall s here", "wall s ssh"]
    print(render(head, rows, align="lrrrrrrr"))
    print(f"best p50 of {args.rounds} alternating rounds per side; {args.runs} runs after {args.warmup} warm-up, "
          f"threads {args.threads}; wall s: one whole benchmark() call (ssh: check, copy, run, clean-up)")
    print("\n" + json.dumps({"local": [r.to_dict() for r, _ in best_local], "remote": [r.to_dict() for r, _ in best_remote],
                             "wall_s": {"local": [w for _, w in best_local], "remote": [w for _, w in best_remote]}}))


if __name__ == "__main__":
    main()
