"""Weight clustering (weight sharing) of a Keras 3 classifier: every Conv2D and Dense kernel keeps only
``clusters`` distinct values (k-means++ centroids, fine-tuned), so its files compress well, and a runtime with
palettized weights could store an index per weight.

tfmot's ``cluster_weights`` wraps each layer; the model is fine-tuned with the centroids as trainable values,
then the wrappers are stripped. tfmot needs tf_keras, so this runs in a child process
(:mod:`edgecv.converters.tfmot_job`); the caller gets a new Keras 3 model. With ``preserve_sparsity`` (tfmot's
sparsity-preserving clustering), the zeros of an already pruned kernel stay zeros, so clustering composes
with magnitude pruning.

The distinct values of every clustered kernel are counted afterwards: more than ``clusters`` is an error,
not a warning.

Example:
    >>> r = cluster("digits.keras", train="digits.npz", clusters=16, epochs=2)      # doctest: +SKIP
    >>> max(r.unique_values.values()), r.top1_before, r.top1_after                  # doctest: +SKIP
    (16, 0.983, 0.981)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from edgecv.converters.prune import gives_logits, image_shape, keras_classifier, top1
from edgecv.converters.train_data import TrainingData, open_training_data
from edgecv.errors import ConfigError, ConversionError, InputError
from edgecv.manifest import Preprocess

log = logging.getLogger(__name__)

MAX_CLUSTERS = 256


@dataclass(frozen=True)
class ClusterOptions:
    """Expert settings: Adam's learning rate for the fine-tuning (tfmot advises a low one: the centroids move,
    the assignment of weights to them does not), and how long the child process may run (seconds)."""

    lr: float = 1e-4
    timeout: float = 3600.0

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr: expected a positive number, got {self.lr!r}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout: expected a positive number of seconds, got {self.timeout!r}")


@dataclass(frozen=True)
class ClusterResult:
    """The clustered, fine-tuned model. ``unique_values``: distinct values of each clustered kernel;
    ``sparsity_before``/``_after``: the share of zero weights in those kernels; ``top1_*`` on the validation
    split (None without one)."""

    model: Any
    clusters: int
    preserve_sparsity: bool
    unique_values: dict[str, int]
    sparsity_before: float
    sparsity_after: float
    top1_before: float | None
    top1_after: float | None
    history: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the model."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


def _zeros(kernels: list[np.ndarray]) -> float:
    total = sum(k.size for k in kernels)
    return sum(int((k == 0).sum()) for k in kernels) / total if total else 0.0


def cluster(
    model,
    *,
    train,
    clusters: int = 16,
    epochs: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    preserve_sparsity: bool = False,
    preprocess: Preprocess = Preprocess(mean=(0,), std=(255,)),
    options: ClusterOptions = ClusterOptions(),
) -> ClusterResult:
    """Cluster ``model`` (an in-memory Keras 3 classifier or a .keras/.h5 path) to ``clusters`` values per
    kernel and fine-tune it for ``epochs`` on ``train`` (anything
    :func:`~edgecv.converters.train_data.open_training_data` reads, or a :class:`TrainingData`). The given model
    is not changed. Bad options are a ConfigError, bad data an InputError."""
    from edgecv.converters.tfmot_job import run_in_tf_keras

    if isinstance(clusters, bool) or not isinstance(clusters, int) or not 2 <= clusters <= MAX_CLUSTERS:
        raise ConfigError(f"clusters: expected an integer from 2 to {MAX_CLUSTERS}, got {clusters!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs: expected an integer >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    model = keras_classifier(model, "clustering")
    data = train if isinstance(train, TrainingData) else open_training_data(
        train, input_shape=image_shape(model, "clustering"), preprocess=preprocess, seed=seed)
    outputs = model.outputs[0].shape[-1]
    if outputs is not None and data.classes > int(outputs):
        raise InputError(f"training labels go up to {data.classes - 1} but the model has {outputs} outputs")
    settings = {"mode": "cluster", "clusters": clusters, "preserve_sparsity": bool(preserve_sparsity),
                "epochs": epochs, "batch_size": batch_size, "seed": seed, "lr": options.lr,
                "from_logits": gives_logits(model, data.x[:64])}
    new_model, result = run_in_tf_keras(model, data, settings, timeout=options.timeout, what="clustering")
    names = result["layers"]
    before = [model.get_layer(n).get_weights()[0] for n in names]
    after = [new_model.get_layer(n).get_weights()[0] for n in names]
    unique = {n: int(np.unique(k).size) for n, k in zip(names, after)}
    over = {n: u for n, u in unique.items() if u > clusters}
    if over:
        raise ConversionError(f"clustering: layer(s) {', '.join(f'{n} ({u} values)' for n, u in over.items())} "
                              f"kept more than {clusters} distinct weights")
    if preserve_sparsity:
        lost = [n for n, b, a in zip(names, before, after) if np.any((b == 0) & (a != 0))]
        if lost:
            raise ConversionError(f"sparsity-preserving clustering: layer(s) {', '.join(lost)} lost zero weights")
    out = ClusterResult(model=new_model, clusters=clusters, preserve_sparsity=bool(preserve_sparsity), unique_values=unique,
                        sparsity_before=_zeros(before), sparsity_after=_zeros(after),
                        top1_before=top1(model, data.x_val, data.y_val), top1_after=top1(new_model, data.x_val, data.y_val),
                        history=result["history"])
    log.info("clustered %d layer(s) to at most %d values; top-1 %s -> %s", len(names), clusters, out.top1_before,
             out.top1_after)
    return out
