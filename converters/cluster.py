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
from pathlib import Path
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


CLUSTERED = ("Conv2D", "Dense")  # the layers whose kernels are clustered (as in the tfmot worker)
KMEANS_ITERATIONS = 50


def kmeans_values(kernel: np.ndarray, clusters: int, *, seed: int = 0, keep_zeros: bool = False) -> np.ndarray:
    """``kernel`` with every weight replaced by the nearest of at most ``clusters`` centroids: k-means++
    starting points (seeded), then Lloyd's iterations until they stop moving. ``keep_zeros``: zero weights
    stay zero, zero counting as one of the ``clusters`` values, and the others share the rest (a pruned kernel
    keeps its sparsity).

    Example:
        >>> w = np.array([0.0, 0.1, 0.11, 0.9, 1.0, 0.0])
        >>> np.round(kmeans_values(w, 2), 4).tolist()
        [0.0525, 0.0525, 0.0525, 0.95, 0.95, 0.0525]
        >>> np.round(kmeans_values(w, 3, keep_zeros=True), 4).tolist()
        [0.0, 0.105, 0.105, 0.95, 0.95, 0.0]
    """
    flat = np.asarray(kernel, np.float64).ravel()
    keep = flat != 0 if keep_zeros else np.ones(flat.shape, bool)
    values = flat[keep]
    if not keep.all():
        clusters = max(1, clusters - 1)  # zero is one of the shared values
    if np.unique(values).size <= clusters:
        return np.asarray(kernel).copy()
    rng = np.random.default_rng(seed)
    centers = [values[rng.integers(len(values))]]
    gap = (values - centers[0]) ** 2
    while len(centers) < clusters and gap.sum() > 0:
        centers.append(values[rng.choice(len(values), p=gap / gap.sum())])
        gap = np.minimum(gap, (values - centers[-1]) ** 2)
    centers = np.sort(np.asarray(centers))
    for _ in range(KMEANS_ITERATIONS):
        # 1-D: the nearest centroid from the midpoints between sorted centroids
        assign = np.searchsorted((centers[1:] + centers[:-1]) / 2, values)
        sums = np.bincount(assign, weights=values, minlength=len(centers))
        counts = np.bincount(assign, minlength=len(centers))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
        if np.allclose(moved, centers, rtol=0, atol=1e-12):
            break
        centers = np.sort(moved)
    assign = np.searchsorted((centers[1:] + centers[:-1]) / 2, values)
    out = flat.copy()
    out[keep] = centers[assign]
    return out.reshape(np.shape(kernel)).astype(np.asarray(kernel).dtype)


def _keras_any(model) -> Any:
    """A Keras 3 model, or the one at a .keras/.h5 path (any inputs and outputs: detectors too)."""
    import keras

    if isinstance(model, (str, Path)):
        from edgecv.converters.sources import open_source

        source = open_source(model)
        if source.kind != "keras":
            raise ConfigError(f"clustering needs a Keras model (.keras or .h5); {model} is a {source.kind} model")
        model = source.model
    if not isinstance(model, keras.Model):
        raise ConfigError(f"clustering needs a Keras 3 model or a .keras/.h5 path, got {type(model).__module__}.{type(model).__name__}")
    return model


def _cluster_without_training(model, clusters: int, seed: int, preserve_sparsity: bool) -> tuple[Any, list[str]]:
    """A copy of ``model`` whose Conv2D and Dense kernels are k-means clustered (:func:`kmeans_values`)."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    names = []
    for layer in copy.layers:
        if type(layer).__name__ not in CLUSTERED or not layer.get_weights():
            continue
        weights = layer.get_weights()
        if weights[0].size <= clusters:
            continue
        weights[0] = kmeans_values(weights[0], clusters, seed=seed, keep_zeros=preserve_sparsity)
        layer.set_weights(weights)
        names.append(layer.name)
    return copy, names


def _zeros(kernels: list[np.ndarray]) -> float:
    total = sum(k.size for k in kernels)
    return sum(int((k == 0).sum()) for k in kernels) / total if total else 0.0


def cluster(
    model,
    *,
    train=None,
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
    :func:`~edgecv.converters.train_data.open_training_data` reads, or a :class:`TrainingData`; tfmot, in a
    worker process). ``epochs=0`` clusters without training and without tfmot (k-means per kernel,
    :func:`kmeans_values`), for any Keras model, detectors too; ``train`` is then optional, and scores the
    classifier's top-1 when given. The given model is not changed. Bad options are a ConfigError, bad data an
    InputError."""
    from edgecv.converters.tfmot_job import run_in_tf_keras

    if isinstance(clusters, bool) or not isinstance(clusters, int) or not 2 <= clusters <= MAX_CLUSTERS:
        raise ConfigError(f"clusters: expected an integer from 2 to {MAX_CLUSTERS}, got {clusters!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"epochs: expected an integer >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if epochs == 0:
        return _without_training(model, train, clusters, seed, preserve_sparsity, preprocess)
    if train is None:
        raise ConfigError("clustering with fine-tuning needs labelled training data (train); epochs=0 clusters "
                          "without training")
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


def _without_training(model, train, clusters: int, seed: int, preserve_sparsity: bool, preprocess: Preprocess) -> ClusterResult:
    model = _keras_any(model)
    new_model, names = _cluster_without_training(model, clusters, seed, preserve_sparsity)
    before = [model.get_layer(n).get_weights()[0] for n in names]
    after = [new_model.get_layer(n).get_weights()[0] for n in names]
    top1_before = top1_after = None
    if train is not None:
        data = train if isinstance(train, TrainingData) else open_training_data(
            train, input_shape=image_shape(keras_classifier(model, "clustering"), "clustering"), preprocess=preprocess,
            seed=seed)
        top1_before, top1_after = top1(model, data.x_val, data.y_val), top1(new_model, data.x_val, data.y_val)
    log.info("clustered %d kernel(s) to at most %d values without training", len(names), clusters)
    return ClusterResult(model=new_model, clusters=clusters, preserve_sparsity=bool(preserve_sparsity),
                         unique_values={n: int(np.unique(k).size) for n, k in zip(names, after)},
                         sparsity_before=_zeros(before), sparsity_after=_zeros(after), top1_before=top1_before,
                         top1_after=top1_after)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def detection_agreement(reference: str | Path, candidate: str | Path, images: str | Path, *, spec: Any,
                        labels: Any = None) -> dict[str, Any]:
    """How far ``candidate``'s detections agree with ``reference``'s (two artifacts of one detector, run with the
    same ``spec``) on the images of the folder ``images``: COCO mAP@0.5 and mAP@[.5:.95] of the candidate's
    detections taken against the reference's as truth (1.0: the same boxes), the images, and how many detections
    the reference made (None mAPs when it made none)."""
    import cv2

    from edgecv.detection.detector import Detector
    from edgecv.detection.evaluate import evaluate_detections
    from edgecv.detection.frames import FrameOptions

    files = sorted(f for f in Path(images).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)}) to compare the detectors on")
    options = FrameOptions(frame_color="BGR")
    ref, cand = (Detector(m, spec=spec, labels=labels, options=options) for m in (reference, candidate))
    truth, found = [], []
    for f in files:
        frame = cv2.imread(str(f))
        if frame is None:
            raise InputError(f"cannot read image {f}")
        truth.append(ref.detect(frame))
        found.append(cand.detect(frame))
    made = sum(len(d) for d in truth)
    if not made:
        return {"map50": None, "map": None, "images": len(files), "reference_detections": 0}
    m = evaluate_detections(truth, found)
    return {"map50": m.map50, "map": m.map, "images": len(files), "reference_detections": made}
