"""Quantization-aware training (QAT) of a Keras 3 classifier with tfmot, and its int8 artifacts.

tfmot 0.8.1 takes only tf_keras models and switches its process to tf_keras, so :func:`qat` never imports
it here: it checks the model and data, writes the model's architecture and weights
(:mod:`edgecv.converters.tfkeras_rebuild`) and the preprocessed training data into a job folder, and runs
:mod:`edgecv.converters.qat_worker` in a child process, which rebuilds the model in tf_keras, fine-tunes it with
fake quantization and writes the QAT SavedModel and an int8 TFLite file converted from it.
:func:`qat_artifacts` then writes the QAT model as TFLite, ONNX (QDQ, by tf2onnx) and OpenVINO IR
(FakeQuantize ops), each with a manifest and its top-1 on the validation split.

Example:
    >>> result = qat("classifier.keras", train="labelled/", epochs=2)            # doctest: +SKIP
    >>> round(result.top1_float, 3), round(result.top1_qat, 3)                   # doctest: +SKIP
    (0.912, 0.915)
    >>> arts = qat_artifacts(result, out=Path("artifacts"), name="classifier")   # doctest: +SKIP
    >>> arts.paths["onnx"].name, arts.top1["onnx"]                               # doctest: +SKIP
    ('classifier.qat-int8.onnx', 0.915)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgecv.converters import qat_worker
from edgecv.converters.targets import TARGETS, QatModel
from edgecv.converters.train_data import TrainingData, open_training_data
from edgecv import child
from edgecv.errors import ConfigError, ConversionError, InputError
from edgecv.manifest import Preprocess

log = logging.getLogger(__name__)

# Layer activations tfmot's default 8-bit scheme quantizes (its QuantizeAwareActivation and
# Default8BitActivationQuantizeConfig); others make quantize_model fail.
_QAT_ACTIVATIONS = {"linear", "relu", "silu", "swish", "gelu", "softmax", "sigmoid", "tanh"}
_QAT_ACTIVATION_LAYER = _QAT_ACTIVATIONS | {"relu6"}
_PTQ_HINT = "use post-training quantization instead: edgecv export MODEL --quant int8 (layers that lose accuracy stay in float)"
QAT_FORMATS = tuple(name for name, target in TARGETS.items() if target.writes_qat)  # each written by its ExportTarget.write_qat


@dataclass(frozen=True)
class QatOptions:
    """Expert settings for QAT: Adam's learning rate, the validation share, a cap on training samples,
    the int8 TFLite's input/output type, how closely the tf_keras rebuild must match the Keras 3 model,
    and how long the child process may run."""

    lr: float = 1e-4
    validation: float = 0.1
    limit: int | None = None
    io_type: str = "float"  # float | int8 | uint8
    rebuild_atol: float = 1e-5
    timeout_s: float = 3600.0
    # Batches that set each activation range before fine-tuning (0: tfmot's own [-6, 6] start, which a
    # short fine-tune barely moves; see edgecv.converters.qat_worker._calibrate_ranges).
    range_batches: int = 16
    # ONNX weights: uint8 with zero point 128 runs exactly in ONNX Runtime on x86 CPUs without VNNI; int8 weights
    # there go through u8 x s8 kernels whose 16-bit sums saturate (see targets.onnx.quantize_qat_weights).
    onnx_weight_type: str = "uint8"  # uint8 | int8

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr: expected a positive learning rate, got {self.lr}")
        if not 0.0 < self.validation < 1.0:
            raise ConfigError(f"validation: expected a share in (0, 1), got {self.validation}")
        if self.io_type not in qat_worker.IO_DTYPES:
            raise ConfigError(f"io_type: expected one of {', '.join(qat_worker.IO_DTYPES)}, got {self.io_type!r}")
        if self.onnx_weight_type not in ("uint8", "int8"):
            raise ConfigError(f"onnx_weight_type: expected uint8 or int8, got {self.onnx_weight_type!r}")
        if self.range_batches < 0:
            raise ConfigError(f"range_batches: expected 0 or more, got {self.range_batches}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s: expected a positive number of seconds, got {self.timeout_s}")


@dataclass(frozen=True)
class QatResult:
    """What :func:`qat` made. The files live in the ``out`` folder given to :func:`qat`, else in a
    temporary folder that lives as long as this result."""

    saved_model: Path  # the QAT tf_keras model as a SavedModel (fake-quant ops in its graph)
    tflite_int8: Path
    top1_float: float | None  # on the validation split, before QAT (None without validation samples)
    top1_qat: float | None  # the QAT model (fake quantization) on the same split
    history: dict[str, list[float]]
    seconds: float
    validation: Path  # .npz of the validation split (x_val, y_val), for scoring artifacts
    rebuild_max_abs_diff: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    _folder: Any = field(default=None, repr=False, compare=False)  # keeps a temporary folder alive


@dataclass(frozen=True)
class QatArtifacts:
    """The QAT model's artifacts by format, and each one's top-1 on the validation split (loaded back
    with ``edgecv.load(path, float_io=True)``)."""

    paths: dict[str, Path]
    top1: dict[str, float | None]


def qat(
    model,
    *,
    train,
    epochs: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    preprocess: Preprocess = Preprocess(mean=(0,), std=(255,)),
    out: str | Path | None = None,
    options: QatOptions = QatOptions(),
) -> QatResult:
    """Fine-tune ``model`` (a Keras 3 functional/Sequential classifier, or a .keras/.h5 path) with
    quantization-aware training for ``epochs`` on ``train`` (anything :func:`open_training_data` takes,
    or a :class:`TrainingData`). ``model`` itself is never changed.

    Bad input (a subclassed model, a layer QAT cannot handle, empty or mislabelled data) raises an
    :class:`edgecv.errors.EdgeCVError` before the child process starts; a failure in the child is a
    :class:`ConversionError` with its first line.
    """
    start = time.perf_counter()
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs: expected a whole number of at least 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a whole number of at least 1, got {batch_size!r}")
    keras_model = _keras_model(model)
    _check_layers(keras_model)
    input_shape, classes = _check_io(keras_model)
    data = train if isinstance(train, TrainingData) else open_training_data(
        train, input_shape=input_shape, preprocess=preprocess, validation=options.validation, seed=seed, limit=options.limit)
    if tuple(data.x.shape[1:]) != input_shape:
        raise InputError(f"training samples are {list(data.x.shape[1:])} but the model takes {list(input_shape)} (H, W, C)")
    if data.classes > classes:
        raise InputError(f"training labels go up to {data.classes - 1} but the model has {classes} classes")

    folder = None if out is not None else tempfile.TemporaryDirectory(prefix="edgecv-qat-")
    job = Path(folder.name) if folder is not None else _fresh_dir(Path(out))
    from edgecv.converters import tfkeras_rebuild

    arch, weights = tfkeras_rebuild.describe(keras_model)
    tfkeras_rebuild.save(arch, weights, job / "model")
    sample = (data.x_val if len(data.x_val) else data.x)[:16]
    reference = np.asarray(keras_model(sample, training=False))
    np.savez(job / "data.npz", x=data.x, y=data.y, x_val=data.x_val, y_val=data.y_val, sample=sample, reference=reference)
    np.savez(job / "validation.npz", x_val=data.x_val, y_val=data.y_val)
    if data.source is not None:
        data.source.save(str(job / "train_ds"))
    params = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "lr": options.lr, "io_type": options.io_type,
              "rebuild_atol": options.rebuild_atol, "range_batches": options.range_batches,
              "onnx_weight_type": options.onnx_weight_type, "from_logits": not _are_probabilities(reference)}
    (job / "job.json").write_text(json.dumps(params))
    log.info("QAT of %s: %d epochs on %s", keras_model.name, epochs, data.description)
    try:
        metrics = _run_worker(job, options.timeout_s)
    finally:  # the training data copy is the bulk of the folder; the validation split stays for scoring
        (job / "data.npz").unlink(missing_ok=True)
        shutil.rmtree(job / "train_ds", ignore_errors=True)
    settings = {**params, "train": data.description, "tfmot": metrics.get("tfmot"), "preprocess": preprocess,
                "source": _source_info(model, keras_model)}
    return QatResult(
        saved_model=job / qat_worker.SAVED_MODEL,
        tflite_int8=job / qat_worker.TFLITE,
        top1_float=metrics["top1_float"],
        top1_qat=metrics["top1_qat"],
        history=metrics["history"],
        seconds=time.perf_counter() - start,
        validation=job / "validation.npz",
        rebuild_max_abs_diff=metrics["rebuild_max_abs_diff"],
        settings=settings,
        _folder=folder,
    )


def _keras_model(model):
    from edgecv.converters import tfkeras_rebuild

    if isinstance(model, (str, Path)):
        from edgecv.converters.sources import KerasSource, open_source

        source = open_source(model)
        if not isinstance(source, KerasSource):
            raise ConfigError(f"QAT needs a Keras model (.keras or .h5); {model} is a {source.kind} model")
        model = source.model
    tfkeras_rebuild.check_rebuildable(model)
    return model


def _source_info(model, keras_model) -> dict[str, Any]:
    """Where the model came from, for manifests: its file's SHA-256, or its weights' for an in-memory model."""
    import hashlib

    from edgecv.fileio import sha256_of

    if isinstance(model, (str, Path)):
        return {"path": str(model), "kind": "keras", "sha256": sha256_of(model)}
    h = hashlib.sha256()
    for w in keras_model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return {"path": f"{keras_model.name} (in memory)", "kind": "keras", "sha256": h.hexdigest()}


def _check_layers(model) -> None:
    """Every layer must be one tf_keras can rebuild and tfmot can quantize; else one error naming them all."""
    from edgecv.converters.tfkeras_rebuild import unsupported_layers

    found = unsupported_layers(model)
    problems = [f"{n} ({c}{'' if why == 'layer type not supported' else ': ' + why})" for n, c, why in found]
    named = {n for n, _, _ in found}
    for layer in model.layers:
        act = layer.get_config().get("activation") if layer.name not in named else None
        allowed = _QAT_ACTIVATION_LAYER if type(layer).__name__ == "Activation" else _QAT_ACTIVATIONS
        if isinstance(act, str) and act not in allowed:
            problems.append(f"{layer.name} ({type(layer).__name__}: activation {act!r})")
    if problems:
        raise ConfigError(f"QAT cannot handle {len(problems)} layer(s): {', '.join(problems)}; {_PTQ_HINT}")


def _check_io(model) -> tuple[tuple[int, int, int], int]:
    """The (H, W, C) of the single image input and the class count of the single [N, classes] output."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4 or any(d is None for d in model.inputs[0].shape[1:]):
        shapes = [list(t.shape) for t in model.inputs]
        raise ConfigError(f"QAT supports models with one NHWC image input of fixed size; this one has {shapes}")
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [list(t.shape) for t in model.outputs]
        raise ConfigError(f"QAT trains classifiers with one [N, classes] output; this model has {shapes}")
    h, w, c = (int(d) for d in model.inputs[0].shape[1:])
    return (h, w, c), int(model.outputs[0].shape[1])


def _are_probabilities(scores: np.ndarray) -> bool:
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3))


def _fresh_dir(path: Path) -> Path:
    from edgecv.fileio import ensure_writable_dir

    ensure_writable_dir(path)
    leftovers = [p for p in (qat_worker.SAVED_MODEL, qat_worker.TFLITE, qat_worker.METRICS, "train_ds")
                 if (path / p).exists()]
    for name in leftovers:  # a previous run's results must not pass for this one's
        shutil.rmtree(path / name) if (path / name).is_dir() else (path / name).unlink()
    return path


def _run_worker(job: Path, timeout_s: float) -> dict[str, Any]:
    """Run :mod:`edgecv.converters.qat_worker` on ``job`` in a fresh interpreter; its metrics, or its error raised here."""
    from edgecv.converters.tf_env import child_env

    env = {**child_env(), "TF_USE_LEGACY_KERAS": "1"}
    outcome = child.run("edgecv.converters.qat_worker", {"job": str(job)}, timeout=timeout_s, env=env)
    if outcome.timed_out:
        raise ConversionError(f"QAT did not finish within {timeout_s:g} s (QatOptions.timeout_s)")
    return outcome.value(failure="QAT failed", error=ConversionError)


# --- artifacts --------------------------------------------------------------------------------------------


def qat_artifacts(
    result: QatResult,
    *,
    out: str | Path,
    name: str,
    to: Sequence[str] | str = QAT_FORMATS,
    labels: list[str] | None = None,
) -> QatArtifacts:
    """Write the QAT model of ``result`` into ``out`` as ``{name}.qat-int8.tflite`` / ``.onnx`` (QDQ) /
    ``.xml`` (OpenVINO IR with FakeQuantize), each with its manifest, and score each on the validation split.
    The artifacts are published together (:mod:`edgecv.converters.publish`): an error or a kill leaves ``out``
    as it was.

    An artifact whose graph lost its quantization (no QDQ pairs, no FakeQuantize) is a ConversionError.
    """
    from edgecv.converters.place import place_artifact
    from edgecv.converters.publish import Publication
    from edgecv.model import load

    to = [t.strip().lower() for t in (to.split(",") if isinstance(to, str) else to) if t.strip()]
    unknown = [t for t in to if t not in QAT_FORMATS]
    if unknown or not to:
        what = f"unknown QAT artifact format(s) {', '.join(unknown)}" if unknown else "no QAT artifact format given"
        raise ConfigError(f"{what}; choose from: {', '.join(QAT_FORMATS)}")
    with np.load(result.validation) as npz:
        x_val, y_val = npz["x_val"], npz["y_val"]
    qat_model = QatModel(result.saved_model, result.tflite_int8, result.settings.get("onnx_weight_type", "uint8"))
    paths: dict[str, Path] = {}
    top1: dict[str, float | None] = {}
    with Publication(out) as pub:
        for fmt in to:
            tmp = pub.work / f"{name}.qat-int8{TARGETS[fmt].suffix}"
            TARGETS[fmt].write_qat(qat_model, tmp, pub.work)
            model = load(tmp, float_io=True)
            top1[fmt] = _top1(model, x_val, y_val)
            placed = place_artifact(tmp, pub.staging, _manifest(result, fmt, tmp, model, top1[fmt], len(y_val), labels))
            paths[fmt] = pub.final(placed)
            log.info("QAT %s artifact %s: top-1 %s", fmt, paths[fmt].name, top1[fmt])
        pub.publish()
    return QatArtifacts(paths, top1)


def _top1(model, x: np.ndarray, y: np.ndarray, chunk: int = 64) -> float | None:
    if len(y) == 0:
        return None
    hits = 0
    for i in range(0, len(y), chunk):
        scores = model.run([x[i : i + chunk]])[0]
        hits += int(np.sum(np.argmax(scores.reshape(len(scores), -1), axis=-1) == y[i : i + chunk]))
    return hits / len(y)


def _manifest(result: QatResult, fmt: str, path: Path, model, top1: float | None, samples: int, labels):
    from edgecv.converters.toolchain import toolchain_versions
    from edgecv.manifest import Manifest

    s = result.settings
    pre: Preprocess = s.get("preprocess") or Preprocess()
    return Manifest(
        format=fmt,
        precision="int8",
        artifact=path.name,
        quantization={"method": "qat", "framework": f"tfmot {s.get('tfmot')}", "epochs": s.get("epochs"), "lr": s.get("lr"),
                      "batch_size": s.get("batch_size"), "seed": s.get("seed"), "train": s.get("train"),
                      "io": [t.dtype for t in model.inputs]},
        inputs=[t.to_dict() for t in model.inputs],
        outputs=[t.to_dict() for t in model.outputs],
        preprocess=Preprocess(layout="NHWC", color=pre.color, mean=pre.mean, std=pre.std),
        labels=labels,
        source=s.get("source") or {},
        toolchain=toolchain_versions(),
        validation={"backend": model.backend, "samples": samples, "top1": top1, "top1_qat_model": result.top1_qat,
                    "top1_float": result.top1_float},
    )


__all__ = ["QatOptions", "QatResult", "QatArtifacts", "qat", "qat_artifacts"]
