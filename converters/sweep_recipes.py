"""The recipes a sweep can apply to a model before its device candidates are built, one table.

Each recipe names the options it takes, checks them, and (unless it keeps the source model as it is)
transforms the model in a job of its own: the existing :func:`~edgecv.converters.prune.prune`,
:func:`~edgecv.converters.distill.distill` and :func:`~edgecv.converters.cluster.cluster`, scored on the sweep's eval data. Its result is a Keras model
file and the top-1 of the source and of the new model on the same held-out data, from which the sweep
takes the points the recipe lost. ``qat`` (:func:`~edgecv.converters.qat.qat`) makes int8 artifacts
itself: its device jobs choose among them instead of running ``optimize``.

Example:
    >>> list(RECIPES), RECIPES["prune"].options
    (['ptq', 'prune', 'distill', 'cluster', 'qat'], ('epochs', 'sparsity', 'method'))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgecv.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """``kind``; the recipe-file ``options`` it takes; whether it ``trains`` (needs ``data.train``);
    ``transform(task) -> dict`` (None: the source model goes to the device candidates as it is); ``device(task)
    -> dict``: what its device jobs run, in the shape of optimize's result (None: ``optimize`` on the recipe's
    model). ``folds_loss``: its device jobs measure the points lost against the source model themselves, so the
    recipe job's own loss is not added to theirs."""

    kind: str
    description: str
    options: tuple[str, ...]
    trains: bool
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None
    device: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    folds_loss: bool = False

    def check(self, entry: Any) -> None:
        """The entry's option values (one-line ConfigError)."""
        if entry.epochs is not None and entry.epochs < 1:
            raise ConfigError(f"epochs: expected at least 1, got {entry.epochs}")
        if entry.sparsity is not None and not 0.0 <= entry.sparsity < 1.0:
            raise ConfigError(f"sparsity: expected a value in [0, 1), got {entry.sparsity}")
        if entry.clusters is not None and not 2 <= entry.clusters <= 256:
            raise ConfigError(f"clusters: expected an integer from 2 to 256, got {entry.clusters}")
        if entry.width is not None and not 0.0 < entry.width <= 1.0:
            raise ConfigError(f"width: expected a value in (0, 1], got {entry.width}")
        if entry.method is not None:
            from edgecv.converters.prune import METHODS

            if entry.method not in METHODS:
                raise ConfigError(f"method: unknown pruning method {entry.method!r}; valid: {', '.join(METHODS)}")


def _open(task: dict[str, Any]) -> tuple[Any, Any]:
    """The source Keras model and the training data, held out on the sweep's eval data."""
    import keras

    from edgecv.converters.train_data import open_training_data

    model = keras.saving.load_model(task["model"], compile=False)
    data = open_training_data(task["train"], input_shape=tuple(model.input_shape[1:]), preprocess=task["preprocess"],
                              held_out=task["eval"], seed=task["recipe"]["seed"])
    return model, data


def _save(model: Any, folder: Path, name: str) -> str:
    """The model saved as ``folder/name.keras`` (written beside, then renamed: never half a file)."""
    import os

    final = folder / f"{name}.keras"
    tmp = folder / f".{name}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, final)
    return str(final)


def _prune(task: dict[str, Any]) -> dict[str, Any]:
    from edgecv.converters.prune import prune

    r = task["recipe"]
    source, data = _open(task)
    result = prune(source, train=data, method=r["method"] or "channels", sparsity=r["sparsity"] if r["sparsity"] is not None else 0.5,
                   epochs=r["epochs"] or 2, seed=r["seed"], preprocess=task["preprocess"])
    return {"model": _save(result.model, Path(task["folder"]), task["name"]), "top1_source": result.top1_before,
            "top1": result.top1_after, "params_source": result.params_before, "params": result.params_after,
            "figures": {k: v for k, v in result.to_dict().items() if k != "history"}}


def _distill(task: dict[str, Any]) -> dict[str, Any]:
    from edgecv.converters.distill import distill

    r = task["recipe"]
    teacher, data = _open(task)
    result = distill(teacher, train=data, width=r["width"] if r["width"] is not None else 0.5, epochs=r["epochs"] or 5,
                     seed=r["seed"], preprocess=task["preprocess"])
    return {"model": _save(result.model, Path(task["folder"]), task["name"]), "top1_source": result.top1_teacher,
            "top1": result.top1_student, "params_source": result.params_teacher, "params": result.params_student,
            "figures": {"seconds": round(result.seconds, 1)}}


def _cluster(task: dict[str, Any]) -> dict[str, Any]:
    from edgecv.converters.cluster import cluster

    r = task["recipe"]
    source, data = _open(task)
    result = cluster(source, train=data, clusters=r["clusters"] or 16, epochs=r["epochs"] or 2, seed=r["seed"],
                     preprocess=task["preprocess"])
    return {"model": _save(result.model, Path(task["folder"]), task["name"]), "top1_source": result.top1_before,
            "top1": result.top1_after, "figures": {k: v for k, v in result.to_dict().items() if k != "history"}}


def _qat(task: dict[str, Any]) -> dict[str, Any]:
    """Quantization-aware training, and its int8 artifacts in every format that takes them (scored on the eval
    data, against which the source model's top-1 is taken too)."""
    from edgecv.converters.qat import QAT_FORMATS, qat, qat_artifacts

    r = task["recipe"]
    source, data = _open(task)
    folder = Path(task["folder"])
    result = qat(source, train=data, epochs=r["epochs"] or 2, seed=r["seed"], preprocess=task["preprocess"],
                 out=folder / "training")
    made = qat_artifacts(result, out=folder / "artifacts", name=task["name"], to=QAT_FORMATS)
    return {"model": None, "artifacts": {fmt: str(p) for fmt, p in made.paths.items()},
            "top1_by_format": dict(made.top1), "top1_source": result.top1_float, "top1_qat": result.top1_qat,
            "figures": {"seconds": round(result.seconds, 1)}}


def _qat_device(task: dict[str, Any]) -> dict[str, Any]:
    """A QAT recipe on one device: its int8 artifacts in the formats the device runs int8, checked against the
    device, benchmarked where it is this machine; the fastest that keeps within the budget (points of top-1
    against the source model) is chosen, else the smallest. The same result shape as ``optimize``'s."""
    from edgecv.bench import benchmark
    from edgecv.compat import check_artifact
    from edgecv.devices import load_profile

    profile = load_profile(task["device"])
    made = task["made"]
    runs_int8 = {fmt for fmt, precision in profile.candidates() if precision == "int8"}
    candidates = []
    for fmt, path in made["artifacts"].items():
        if fmt not in runs_int8:
            continue
        top1, before = made["top1_by_format"].get(fmt), made.get("top1_source")
        drop = None if top1 is None or before is None else round(100.0 * (before - top1), 4)
        c = {"format": fmt, "precision": "int8", "path": path, "status": "passed", "reason": None, "drop_points": drop,
             "size_bytes": Path(path).stat().st_size, "p50_ms": None, "compat": None, "bench": None, "resumed": False,
             "verdict": "lost", "why": ""}
        if drop is not None and drop > task["max_drop"] + 1e-9:
            c.update(status="failed", verdict="failed",
                     why=f"loses {drop:.2f} points of top-1, over the {task['max_drop']:g}-point budget")
        else:
            report = check_artifact(path, profile)
            c["compat"] = report.to_dict()
            if not report.ok:
                c.update(verdict="blocked", why=report.blockers[0].message)
            elif profile.local:
                c["bench"] = benchmark(path, runs=task["bench_runs"]).to_dict()
                c["p50_ms"] = c["bench"].get("p50_ms")
        candidates.append(c)
    ok = [c for c in candidates if c["verdict"] == "lost"]
    chosen = None
    if ok:
        timed = [c for c in ok if c["p50_ms"] is not None]
        chosen = min(timed, key=lambda c: c["p50_ms"]) if timed else min(ok, key=lambda c: c["size_bytes"])
        chosen["verdict"] = "chosen"
        chosen["why"] = f"fastest that passes: p50 {chosen['p50_ms']:.3f} ms" if timed else "smallest that passes"
        for c in ok:
            if c is not chosen:
                c["why"] = "slower" if timed else "larger"
    if not candidates:
        why = f"{profile.name} runs no int8 {', '.join(made['artifacts'])}"
    else:
        why = None
    return {"device": profile.name, "chosen": chosen, "candidates": candidates, "source": task["model"],
            "benchmarked_on": "local" if profile.local and ok else None, "why": why}


RECIPES: dict[str, Recipe] = {
    r.kind: r
    for r in (
        Recipe("ptq", "the source model, post-training quantized for each device", (), False, None),
        Recipe("prune", "prune (channels by default) and fine-tune, then each device's candidates",
               ("epochs", "sparsity", "method"), True, _prune),
        Recipe("distill", "distill into a narrower student, then each device's candidates", ("epochs", "width"), True,
               _distill),
        Recipe("cluster", "weight clustering (shared values), fine-tuned, then each device's candidates",
               ("epochs", "clusters"), True, _cluster),
        Recipe("qat", "quantization-aware training; its int8 artifacts for each device that runs int8", ("epochs",),
               True, _qat, device=_qat_device, folds_loss=True),
    )
}
