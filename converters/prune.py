"""Pruning a Keras 3 classifier, then fine-tuning it on labelled data: one command, three methods.

- ``channels``: structured filter pruning (:mod:`edgecv.converters.channel_prune`). Whole Conv (and hidden Dense)
  filters go, and the model is rebuilt physically smaller, so it runs faster in every format.
- ``magnitude``: tfmot ``prune_low_magnitude`` to the target share of zero weights in the Conv2D and Dense
  kernels (polynomial schedule). The model keeps its shape: smaller when compressed, not faster on CPUs.
- ``2:4``: tfmot's 2-of-4 pattern (at least 2 zeros in every 4 consecutive input weights), the pattern
  sparse tensor cores accelerate.

tfmot needs tf_keras and switches the whole process to it, so the two weight methods run in a child
process (:mod:`edgecv.converters.prune_worker`); the caller gets a Keras 3 model back either way.

Example:
    >>> r = prune("digits.keras", train="digits.npz", method="channels", sparsity=0.5, epochs=2)  # doctest: +SKIP
    >>> r.params_after / r.params_before, r.flops_after / r.flops_before, r.top1_after           # doctest: +SKIP
    (0.31, 0.27, 0.982)
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecv.converters.channel_prune import CRITERIA, prune_channels
from edgecv.converters.flops import count_macs, graph_of
from edgecv.converters.tf_env import child_env, import_tensorflow
from edgecv.converters.train_data import TrainingData, open_training_data
from edgecv.child import call
from edgecv.errors import ConfigError, ConversionError, InputError
from edgecv.manifest import Preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneOptions:
    """Expert settings. ``criterion`` ranks filters for ``channels``: ``l1`` (kernel L1 norm) or
    ``bn_gamma`` (|gamma| of the BatchNormalization right after, else L1); ``dense`` also removes hidden
    Dense units; ``end_fraction`` is where in fine-tuning the weight methods reach their target;
    ``timeout`` caps their child process (seconds)."""

    lr: float = 1e-3
    criterion: str = "l1"
    dense: bool = True
    end_fraction: float = 0.7
    timeout: float = 3600.0

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr: expected a positive number, got {self.lr!r}")
        if self.criterion not in CRITERIA:
            raise ConfigError(f"criterion: expected one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if not 0.0 < self.end_fraction <= 1.0:
            raise ConfigError(f"end_fraction: expected a value in (0, 1], got {self.end_fraction!r}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout: expected a positive number of seconds, got {self.timeout!r}")


@dataclass(frozen=True)
class PruneResult:
    """The pruned, fine-tuned model and what pruning did. ``sparsity`` is measured: the share of zero
    weights in the pruned kernels, or for ``channels`` the share of candidate filters removed. ``flops_*``
    are multiply-accumulates of one inference (Conv, DepthwiseConv, Dense). ``top1_*`` are on the
    validation split (None without one)."""

    model: Any
    method: str
    sparsity: float
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    top1_before: float | None
    top1_after: float | None
    history: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the model (``dataclasses.asdict`` would deep-copy it)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


@dataclass(frozen=True)
class Method:
    """One pruning method: ``run(model, data, job) -> (new_model, measured_sparsity, history)``."""

    name: str
    describe: str
    run: Callable[..., tuple[Any, float, dict]]
    min_epochs: int = 0
    fixed_sparsity: float | None = None


@dataclass(frozen=True)
class _Job:
    sparsity: float
    epochs: int
    batch_size: int
    seed: int
    options: PruneOptions
    from_logits: bool


# --- the methods --------------------------------------------------------------------------------------------


def _run_channels(model, data: TrainingData, job: _Job):
    new_model, plan = prune_channels(model, sparsity=job.sparsity, criterion=job.options.criterion, dense=job.options.dense)
    history = fine_tune(new_model, data, epochs=job.epochs, batch_size=job.batch_size, seed=job.seed,
                        lr=job.options.lr, from_logits=job.from_logits)
    return new_model, plan.fraction, history


def _run_weights(mode: str):
    def run(model, data: TrainingData, job: _Job):
        return _prune_in_child(model, data, job, mode)

    return run


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("channels", "remove whole filters; a smaller, faster model", _run_channels),
        Method("magnitude", "zero the smallest weights (tfmot); same shape, compressible", _run_weights("magnitude"),
               min_epochs=1),
        Method("2:4", "2 zeros in every 4 input weights (tfmot); for sparse tensor cores", _run_weights("2:4"),
               min_epochs=1, fixed_sparsity=0.5),
    )
}


def prune(
    model,
    *,
    train,
    method: str = "channels",
    sparsity: float = 0.5,
    epochs: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    preprocess: Preprocess = Preprocess(mean=(0,), std=(255,)),
    options: PruneOptions = PruneOptions(),
) -> PruneResult:
    """Prune ``model`` (an in-memory Keras 3 model, or a ``.keras``/``.h5`` path) with ``method`` and
    fine-tune it for ``epochs`` on ``train`` (anything :func:`edgecv.converters.train_data.open_training_data`
    accepts, or a :class:`TrainingData`). Returns a :class:`PruneResult` with a new model; the given model
    is not changed. Bad options are a :class:`ConfigError`, bad data an :class:`InputError`."""
    spec = METHODS.get(method) if isinstance(method, str) else None
    if spec is None:
        raise ConfigError(f"unknown pruning method {method!r}; choose from: {', '.join(METHODS)}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity: expected a value in [0, 1), got {sparsity!r}")
    if spec.fixed_sparsity is not None and sparsity != spec.fixed_sparsity:
        raise ConfigError(f"method {method} has a fixed sparsity of {spec.fixed_sparsity}, got {sparsity}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < spec.min_epochs:
        raise ConfigError(f"epochs: method {method} needs an integer of at least {spec.min_epochs}, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    model = _keras_model(model)
    data = train if isinstance(train, TrainingData) else open_training_data(
        train, input_shape=_image_shape(model), preprocess=preprocess, seed=seed)
    outputs = model.outputs[0].shape[-1]
    if outputs is not None and data.classes > int(outputs):
        raise InputError(f"training labels go up to {data.classes - 1} but the model has {outputs} outputs")
    from_logits = _gives_logits(model, data.x[:64])
    job = _Job(float(sparsity), epochs, batch_size, seed, options, from_logits)
    params_before, flops_before = model.count_params(), count_macs(model)
    top1_before = top1(model, data.x_val, data.y_val)
    new_model, measured, history = spec.run(model, data, job)
    result = PruneResult(
        model=new_model,
        method=method,
        sparsity=float(measured),
        params_before=int(params_before),
        params_after=int(new_model.count_params()),
        flops_before=int(flops_before),
        flops_after=int(count_macs(new_model)),
        top1_before=top1_before,
        top1_after=top1(new_model, data.x_val, data.y_val),
        history=history,
    )
    log.info("pruned (%s): sparsity %.3f, params %d -> %d, MACs %d -> %d, top-1 %s -> %s", method, result.sparsity,
             result.params_before, result.params_after, result.flops_before, result.flops_after,
             result.top1_before, result.top1_after)
    return result


# --- shared steps -------------------------------------------------------------------------------------------


def _keras_model(model):
    import_tensorflow()
    import keras

    if isinstance(model, (str, Path)):
        from edgecv.converters.sources import open_source

        source = open_source(model)
        if source.kind != "keras":
            raise ConfigError(f"pruning needs a Keras model (.keras or .h5); {model} is a {source.kind} model")
        model = source.model
    if not isinstance(model, keras.Model):
        raise ConfigError(f"pruning needs a Keras 3 model or a .keras/.h5 path, got {type(model).__module__}.{type(model).__name__}")
    if graph_of(model) is None:
        raise ConfigError(f"pruning needs a Functional or built Sequential Keras model; {model.name} is neither")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(f"pruning needs a model with one input and one output; {model.name} has "
                          f"{len(model.inputs)} and {len(model.outputs)}")
    return model


def _image_shape(model) -> tuple[int, int, int]:
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ConfigError(f"pruning needs a fixed NHWC image input; model {model.name} takes {list(model.inputs[0].shape)}")
    return tuple(int(d) for d in shape)


def _gives_logits(model, x: np.ndarray) -> bool:
    """True unless the outputs on ``x`` look like probabilities (in [0, 1], rows summing to 1)."""
    p = np.asarray(model(x, training=False), np.float64)
    return not (p.min() >= 0.0 and p.max() <= 1.0 and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3))


def top1(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float | None:
    """Top-1 accuracy of ``model`` on ``x`` against labels ``y``; None for an empty set."""
    if len(x) == 0:
        return None
    hits = 0
    for i in range(0, len(x), batch_size):
        p = np.asarray(model(x[i : i + batch_size], training=False))
        hits += int((p.argmax(axis=-1) == y[i : i + batch_size]).sum())
    return hits / len(x)


def fine_tune(model, data: TrainingData, *, epochs: int, batch_size: int, seed: int, lr: float, from_logits: bool) -> dict:
    """Train ``model`` in place with Adam (seeded); returns the Keras history (empty for 0 epochs)."""
    if epochs == 0:
        return {}
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    history = model.fit(data.dataset(batch_size, seed=seed), epochs=epochs, verbose=0, shuffle=False)  # shuffled already
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


# --- weight pruning in a child process ---------------------------------------------------------------------


def _arrays(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    if data.source is None:
        return data.x, data.y
    if int(data.source.cardinality()) < 0:
        raise ConfigError("weight pruning needs a finite tf.data.Dataset (it is written to a file for the worker)")
    xs, ys = zip(*((np.asarray(a), np.asarray(b)) for a, b in data.source))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64).reshape(-1)


def _prune_in_child(model, data: TrainingData, job: _Job, mode: str):
    import keras

    from edgecv.converters import tfkeras_rebuild

    problems = tfkeras_rebuild.unsupported_layers(model)
    if problems:
        names = ", ".join(sorted({f"{name} ({cls})" for name, cls, _ in problems}))
        raise ConfigError(f"weight pruning cannot rebuild layer(s) {names} in tf_keras; "
                          f"it supports {', '.join(tfkeras_rebuild.LAYERS)}")
    arch, arrays = tfkeras_rebuild.describe(model)
    x, y = _arrays(data)
    x_check = (data.x_val if len(data.x_val) else data.x)[:32]
    with tempfile.TemporaryDirectory(prefix="edgecv-prune-") as tmp:
        work = Path(tmp)
        tfkeras_rebuild.save(arch, arrays, work / "model")
        settings = {"mode": mode, "sparsity": job.sparsity, "epochs": job.epochs,
                    "batch_size": job.batch_size, "seed": job.seed, "lr": job.options.lr,
                    "from_logits": job.from_logits, "end_fraction": job.options.end_fraction}
        (work / "job.json").write_text(json.dumps(settings))
        np.savez(work / "data.npz", x=x.astype(np.float32), y=y.astype(np.int64), x_check=x_check.astype(np.float32))
        history = _run_worker(work, job.options.timeout, mode)
        with np.load(work / "result.npz") as f:
            weights = {k: f[k] for k in f.files}
        expected = np.load(work / "check.npy")

    new_model = keras.models.clone_model(model)
    new_model.set_weights(model.get_weights())
    for layer in new_model.layers:
        arrays = [weights.get(f"{layer.name}:{i}") for i in range(len(layer.weights))]
        if arrays and all(a is not None for a in arrays):
            layer.set_weights(arrays)
    got = np.asarray(new_model(x_check, training=False))
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if diff > 1e-4:
        raise ConversionError(f"{mode} pruning: the Keras 3 copy differs from the worker's model by {diff:.2g}")
    kernels = [new_model.get_layer(name).get_weights()[0] for name in history["pruned"]]
    if mode == "2:4":
        bad = [name for name, k in zip(history["pruned"], kernels) if not satisfies_m_by_n(k)]
        if bad:
            raise ConversionError(f"2:4 pruning: layer(s) {', '.join(bad)} break the 2-of-4 pattern")
    total = sum(k.size for k in kernels)
    measured = sum(int((k == 0).sum()) for k in kernels) / total if total else 0.0
    return new_model, measured, history["history"]


def _run_worker(work: Path, timeout: float, mode: str) -> dict[str, Any]:
    """Run :mod:`edgecv.converters.prune_worker` on job folder ``work``; its history and pruned layer names."""
    log.info("%s pruning runs in a worker process (tfmot needs tf_keras)", mode)
    env = {**child_env(), "TF_USE_LEGACY_KERAS": "1"}
    return call("edgecv.converters.prune_worker", {"job": str(work)}, failure=f"{mode} pruning failed in its worker process",
         error=ConversionError, timeout=timeout, env=env)


def satisfies_m_by_n(kernel: np.ndarray, m: int = 2, n: int = 4) -> bool:
    """True when every ``n`` consecutive weights along the input-channel axis (axis -2 of a Conv2D or
    Dense kernel) hold at least ``m`` zeros; a short last block counts its missing weights as zeros.

    Example:
        >>> satisfies_m_by_n(np.array([[1.0], [0.0], [2.0], [0.0]]))
        True
    """
    w = np.moveaxis(np.asarray(kernel), -2, -1)
    cin = w.shape[-1]
    pad = (-cin) % n
    zeros = np.concatenate([w == 0, np.ones(w.shape[:-1] + (pad,), bool)], axis=-1)
    blocks = zeros.reshape(*w.shape[:-1], (cin + pad) // n, n)
    return bool((blocks.sum(axis=-1) >= m).all())


__all__ = ["prune", "PruneOptions", "PruneResult", "METHODS", "Method", "fine_tune", "top1", "satisfies_m_by_n"]
