"""Pruning a Keras 3 classifier, then fine-tuning it on labelled data: one command, three methods.

- ``channels``: structured filter pruning (:mod:`edgecv.converters.channel_prune`). Whole Conv (and hidden Dense)
  filters go, and the model is rebuilt physically smaller, so it runs faster in every format.
- ``magnitude``: tfmot ``prune_low_magnitude`` to the target share of zero weights in the Conv2D and Dense
  kernels (polynomial schedule). The model keeps its shape: smaller when compressed, not faster on CPUs.
- ``2:4``: tfmot's 2-of-4 pattern (at least 2 zeros in every 4 consecutive input weights), the pattern
  sparse tensor cores accelerate.

tfmot needs tf_keras and switches the whole process to it, so the two weight methods run in a child
process (:mod:`edgecv.converters.tfmot_job`); the caller gets a Keras 3 model back either way.

Example:
    >>> r = prune("digits.keras", train="digits.npz", method="channels", sparsity=0.5, epochs=2)  # doctest: +SKIP
    >>> r.params_after / r.params_before, r.flops_after / r.flops_before, r.top1_after           # doctest: +SKIP
    (0.31, 0.27, 0.982)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgecv.converters.channel_prune import CRITERIA, prune_channels
from edgecv.converters.flops import count_macs, graph_of
from edgecv.converters.tf_env import import_tensorflow
from edgecv.converters.train_data import TrainingData, open_training_data
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
    model = keras_classifier(model)
    data = train if isinstance(train, TrainingData) else open_training_data(
        train, input_shape=image_shape(model), preprocess=preprocess, seed=seed)
    outputs = model.outputs[0].shape[-1]
    if outputs is not None and data.classes > int(outputs):
        raise InputError(f"training labels go up to {data.classes - 1} but the model has {outputs} outputs")
    from_logits = gives_logits(model, data.x[:64])
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


def keras_classifier(model, what: str = "pruning"):
    """``model`` (a Keras 3 model or a .keras/.h5 path) checked to be a functional classifier with one input and
    one output; a one-line ConfigError saying ``what`` needs one otherwise."""
    import_tensorflow()
    import keras

    if isinstance(model, (str, Path)):
        from edgecv.converters.sources import open_source

        source = open_source(model)
        if source.kind != "keras":
            raise ConfigError(f"{what} needs a Keras model (.keras or .h5); {model} is a {source.kind} model")
        model = source.model
    if not isinstance(model, keras.Model):
        raise ConfigError(f"{what} needs a Keras 3 model or a .keras/.h5 path, got {type(model).__module__}.{type(model).__name__}")
    if graph_of(model) is None:
        raise ConfigError(f"{what} needs a Functional or built Sequential Keras model; {model.name} is neither")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(f"{what} needs a model with one input and one output; {model.name} has "
                          f"{len(model.inputs)} and {len(model.outputs)}")
    return model


def image_shape(model, what: str = "pruning") -> tuple[int, int, int]:
    """The model's fixed NHWC input shape (H, W, C)."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ConfigError(f"{what} needs a fixed NHWC image input; model {model.name} takes {list(model.inputs[0].shape)}")
    return tuple(int(d) for d in shape)


def gives_logits(model, x: np.ndarray) -> bool:
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


def _prune_in_child(model, data: TrainingData, job: _Job, mode: str):
    from edgecv.converters.tfmot_job import run_in_tf_keras

    settings = {"mode": mode, "sparsity": job.sparsity, "epochs": job.epochs, "batch_size": job.batch_size,
                "seed": job.seed, "lr": job.options.lr, "from_logits": job.from_logits,
                "end_fraction": job.options.end_fraction}
    new_model, result = run_in_tf_keras(model, data, settings, timeout=job.options.timeout, what=f"{mode} pruning")
    kernels = [new_model.get_layer(name).get_weights()[0] for name in result["layers"]]
    if mode == "2:4":
        bad = [name for name, k in zip(result["layers"], kernels) if not satisfies_m_by_n(k)]
        if bad:
            raise ConversionError(f"2:4 pruning: layer(s) {', '.join(bad)} break the 2-of-4 pattern")
    total = sum(k.size for k in kernels)
    measured = sum(int((k == 0).sum()) for k in kernels) / total if total else 0.0
    return new_model, measured, result["history"]


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
