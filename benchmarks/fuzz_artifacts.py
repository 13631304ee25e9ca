"""Mutate real artifacts and count what edgecv.load + Model.run make of them (the figures of issue 16).

Originals: MediaPipe BlazeFace (.tflite), ONNX Model Zoo MNIST (.onnx) and that MNIST converted to an
OpenVINO IR (.xml + .bin), from ../shared/data/models. Each mutant (bytes flipped, a run overwritten, a block
zeroed, the end cut; in the IR, the .xml or the .bin) is tried with the original's manifest beside it and
without one, in child processes (tests/edgecv/fuzz.py). Prints one row per (format, manifest).

    .venv/bin/python benchmarks/fuzz_artifacts.py --count 1000 --seed 1 [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.edgecv.fuzz import FAILURES, make_mutants, make_original, tally, try_mutants  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "models"
COLUMNS = ("refused", "ran-same", "ran-wrong", *FAILURES)


def originals(tmp: Path) -> dict[str, Path]:
    import openvino as ov

    xml = tmp / "ir" / "mnist-8.xml"
    xml.parent.mkdir(parents=True)
    ov.save_model(ov.convert_model(str(SHARED / "mnist-8.onnx")), str(xml), compress_to_fp16=False)
    return {"tflite": SHARED / "face_detection_short_range.tflite", "onnx": SHARED / "mnist-8.onnx", "openvino": xml}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000, help="mutants per format (default 1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: the shared real models are needed")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecv-fuzz-") as tmp:
        tmp = Path(tmp)
        examples: dict[str, str] = {}
        for fmt, artifact in originals(tmp).items():
            original = make_original(fmt, artifact, tmp / fmt / "original")
            records = try_mutants(make_mutants(original, tmp / fmt / "mutants", count=args.count, seed=args.seed),
                                  work=tmp / fmt / "work")
            for (f, manifest), counts in sorted(tally(records).items()):
                rows.append({"format": f, "manifest": manifest, "mutants": sum(counts.values()),
                             **{c: counts.get(c, 0) for c in COLUMNS}})
            for r in records:
                if r["outcome"] in FAILURES or r["outcome"] == "refused":
                    examples.setdefault(f"{fmt} {r['outcome']} {r.get('error')}", r.get("message", ""))
    if args.json:
        print(json.dumps({"rows": rows, "examples": examples}, indent=2))
        return 0
    header = f"{'format':9} {'manifest':8} {'mutants':>7} " + " ".join(f"{c:>9}" for c in COLUMNS)
    print(header)
    for r in rows:
        print(f"{r['format']:9} {'yes' if r['manifest'] else 'no':8} {r['mutants']:>7} "
              + " ".join(f"{r[c]:>9}" for c in COLUMNS))
    print("\nfirst message of each kind of refusal or failure:")
    for key, message in sorted(examples.items()):
        print(f"  {key}: {message.splitlines()[0][:160] if message else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
