"""The main job on the built-in default: train the shapes classifier, export it to every format in fp32,
fp16 and int8 (calibrated on synthetic images), check each artifact's top-1 on held-out labelled images,
and benchmark them side by side.

Example:
    >>> report = run_demo(out="runs/demo", runs=50)     # doctest: +SKIP
    >>> report.ok                                         # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgecv.fileio import atomic_write_text, ensure_writable_dir

MODEL_FILE = "edgecv_shapes.keras"
CALIB_IMAGES = 200
EVAL_IMAGES = 400


@dataclass
class DemoReport:
    out: Path
    keras_top1: float
    export: object  # edgecv.converters.export.ExportReport
    accuracy: dict[str, float] = field(default_factory=dict)  # artifact path -> top-1 on held-out images
    bench: list = field(default_factory=list)  # edgecv.bench.BenchResult

    @property
    def ok(self) -> bool:
        return self.export.ok

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "ok": self.ok,
            "keras_top1": self.keras_top1,
            "export": self.export.to_dict(),
            "accuracy": self.accuracy,
            "bench": [b.to_dict() for b in self.bench],
        }


def run_demo(
    *,
    out: str | Path = "runs/demo",
    runs: int = 50,
    threads: int | None = None,
    retrain: bool = False,
    progress: bool = False,
) -> DemoReport:
    """Train (or reuse) the default model in ``out``, export, evaluate and benchmark every artifact."""
    from edgecv.converters.builtin import IMAGE_SIZE, LABELS, PREPROCESS, build_default_classifier
    from edgecv.converters.export import export
    from edgecv.converters.report import write_report
    from edgecv.converters.sources import open_source
    from edgecv.bench import benchmark
    from edgecv.synthetic import shape_images

    out = ensure_writable_dir(out)
    model_path = out / MODEL_FILE
    if retrain or not model_path.is_file():
        model = build_default_classifier()
        tmp = model_path.with_name(f".{model_path.stem}.tmp.keras")
        model.save(tmp)
        os.replace(tmp, model_path)

    source = open_source(model_path)
    calib, _ = shape_images(CALIB_IMAGES, size=IMAGE_SIZE, seed=7)
    images, labels = shape_images(EVAL_IMAGES, size=IMAGE_SIZE, seed=1)
    report = export(
        source,
        out=out,
        quant=("fp32", "fp16", "int8"),
        calib=list(calib),
        eval_data=list(zip(images, labels.tolist())),
        preprocess=PREPROCESS,
        labels=LABELS,
        progress=progress,
    )
    write_report(report, out)
    demo = DemoReport(out=out, keras_top1=report.source_scores.top1, export=report)
    passed = [a for a in report.artifacts if a.status == "passed"]
    demo.accuracy = {str(a.path): a.scores.top1 for a in passed}
    for a in passed:
        demo.bench.append(benchmark(a.path, threads=threads, runs=runs))
    atomic_write_text(out / "demo.json", json.dumps(demo.to_dict(), indent=2, default=str) + "\n")
    return demo
