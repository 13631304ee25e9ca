"""What the compression commands (qat, prune, distill) share: opening the Keras model, exporting the
models they compare, and the table they print (one row per artifact)."""

from __future__ import annotations

from pathlib import Path

from edgecv.tables import fmt_float, human_bytes, render

HEADERS = ["artifact", "method", "top-1 %", "size", "zipped", "p50 ms"]


def keras_model(path: Path, what: str):
    """The Keras model at ``path``; a ConfigError naming ``what`` needs it otherwise."""
    from edgecv.converters.sources import open_source
    from edgecv.errors import ConfigError

    source = open_source(path)
    if source.kind != "keras":
        raise ConfigError(f"{what} needs a Keras model (.keras or .h5); {path} is a {source.kind} model")
    return source.model


def model_and_data(path: Path, what: str, args):
    """The Keras model at ``path``, and the ``--train`` (and ``--eval``) data opened for it with the
    command's preprocessing flags: ``(model, preprocess, labels, TrainingData)``."""
    from edgecv.converters.train_data import open_training_data
    from edgecv.cli.options import preprocess_from, read_labels

    model = keras_model(path, what)
    pre = preprocess_from(args, "NHWC")
    labels = read_labels(args.labels)
    data = open_training_data(args.train, input_shape=tuple(model.inputs[0].shape[1:]), preprocess=pre, labels=labels,
                              held_out=args.eval_data, seed=args.seed)
    return model, pre, labels, data


def export_models(models, *, to: str, out: Path, stem: str, preprocess, labels) -> list[dict]:
    """Export each ``(label, keras_model)`` to fp32 in ``to`` under ``out/label``: rows with ``name``,
    ``method`` (the label) and ``path`` of every artifact that passed (measure them with :func:`with_figures`)."""
    from edgecv.converters.export import ExportOptions, export

    rows = []
    for label, model in models:
        tag = label.replace(":", "of")
        report = export(model, to=to, quant="fp32", out=out / tag, name=f"{stem}.{tag}", preprocess=preprocess, labels=labels,
                        options=ExportOptions(bench_runs=0))
        rows += [{"name": a.path.name, "method": label, "path": a.path} for a in report.artifacts if a.path is not None and a.status == "passed"]
    return rows


def with_figures(rows: list[dict], *, x, y, runs: int) -> list[dict]:
    from edgecv.converters.footprint import measure_artifacts

    for r, f in zip(rows, measure_artifacts([r["path"] for r in rows], x=x, y=y, runs=runs)):
        r["figures"] = f
    return rows


def artifacts_json(rows: list[dict]) -> list[dict]:
    return [{"method": r["method"], **r["figures"].to_dict()} for r in rows]


def format_rows(rows: list[dict]) -> str:
    """``rows``: dicts with ``name``, ``method`` and a :class:`edgecv.converters.footprint.Footprint` under ``figures``."""
    table = []
    for r in rows:
        f = r["figures"]
        table.append([r["name"], r["method"], fmt_float(None if f.top1 is None else 100 * f.top1, ".2f"),
                      human_bytes(f.size_bytes), human_bytes(f.zipped_bytes), fmt_float(f.p50_ms, ".3f")])
    return render(HEADERS, table, align="llrrrr")
