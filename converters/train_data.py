"""Labelled training data for quantization-aware training, pruning and distillation.

:func:`open_training_data` takes what a user has - a folder of class subfolders, a ``.npz`` with images
``x`` and labels ``y``, a ``(x, y)`` pair of arrays, or a ``tf.data.Dataset`` of ``(image, label)``
batches - and gives :class:`TrainingData`: model inputs preprocessed like the model's (the same rules
as calibration data, :mod:`edgecv.converters.data`), integer labels, and a seeded validation split.

Example:
    >>> td = open_training_data("digits.npz", input_shape=(28, 28, 1), preprocess=Preprocess(mean=(0,), std=(255,)))  # doctest: +SKIP
    >>> td.x.shape, td.classes, td.description                                                                          # doctest: +SKIP
    ((7200, 28, 28, 1), 10, '8000 labelled samples of digits.npz (7200 train, 800 validation)')
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.converters.data import InputSpec, open_dataset
from edgecv.errors import InputError
from edgecv.manifest import Preprocess


@dataclass(frozen=True)
class TrainingData:
    """Model inputs (NHWC float32) and int64 labels, split into train and validation."""

    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: int
    description: str
    source: Any = None  # a tf.data.Dataset passed through as is (then x, y hold only a sample of it)

    def dataset(self, batch_size: int = 64, *, shuffle: bool = True, seed: int = 0):
        """A ``tf.data.Dataset`` of ``(x, y)`` batches; shuffled with ``seed`` each epoch."""
        import tensorflow as tf

        if self.source is not None:
            return self.source
        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        if shuffle:
            ds = ds.shuffle(len(self.x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(2)

    def validation(self, batch_size: int = 256):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((self.x_val, self.y_val)).batch(batch_size)


def open_training_data(
    data: Any,
    *,
    input_shape: tuple[int, int, int],
    preprocess: Preprocess = Preprocess(),
    labels: list[str] | None = None,
    validation: float = 0.1,
    held_out: Any = None,
    seed: int = 0,
    limit: int | None = None,
) -> TrainingData:
    """Open labelled training data for a model taking NHWC ``input_shape`` (H, W, C) inputs.

    ``validation`` is the share held out (seeded) for the top-1 figures; ``held_out`` is separate labelled
    data (a folder, a .npz or an ``(x, y)`` pair) to score on instead, and then all of ``data`` trains.
    ``limit`` caps the samples (None: all). An empty set, a sample without a label, or fewer than two
    classes is an :class:`InputError` with one line.
    """
    if isinstance(data, TrainingData):  # already opened (and split) by the caller
        return data
    if not 0.0 <= validation < 1.0:
        raise InputError(f"validation share: expected a value in [0, 1), got {validation}")
    if _is_tf_dataset(held_out):
        raise InputError("held-out data: expected a folder, a .npz or an (x, y) pair, got a tf.data.Dataset")
    opened = dict(input_shape=input_shape, preprocess=preprocess, labels=labels, seed=seed)
    scored = None if held_out is None else _labelled(held_out, what="held-out", limit=None, **opened)
    if _is_tf_dataset(data):
        td = _from_tf_dataset(data, validation=0.0 if scored else validation)
    else:
        x, y, classes, description = _labelled(data, what="training", limit=limit, **opened)
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = 0 if scored else int(round(validation * len(x)))
        val, train = order[:n_val], order[n_val:]
        if len(train) == 0:
            raise InputError(f"training set {description}: no samples left for training after the validation split")
        td = TrainingData(x[train], y[train], x[val], y[val], classes, f"{description} ({len(train)} train, {n_val} validation)")
    if scored is None:
        return td
    x_val, y_val, val_classes, val_description = scored
    if val_classes > td.classes and not labels:
        raise InputError(f"held-out labels go up to {val_classes - 1} but the training labels only to {td.classes - 1}")
    return replace(td, x_val=x_val, y_val=y_val, description=f"{td.description.rsplit(' (', 1)[0]}; held out: {val_description}")


def _labelled(data: Any, *, what: str, input_shape, preprocess, labels, seed: int, limit: int | None):
    """``(x, y, classes, description)`` of labelled ``data`` in the model's input form."""
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        if len(x) != len(y):
            raise InputError(f"{what} data: {len(x)} images but {len(y)} labels")
        x = np.asarray(x)
        got = (*x.shape[1:3], x.shape[3] if x.ndim == 4 else 1)
        if x.ndim not in (3, 4) or got != tuple(input_shape):
            raise InputError(f"{what} images are {'x'.join(map(str, x.shape[1:]))}, the model takes {'x'.join(map(str, input_shape))} (H, W, C)")
        data = [(xi, int(yi)) for xi, yi in zip(x, np.asarray(y))]
    spec = InputSpec((1, *input_shape), "NHWC", preprocess=preprocess)
    ds = open_dataset(data, spec=spec, limit=limit, seed=seed, labels=labels, require_labels=True, what=what)
    xs, ys = [], []
    for x, label in ds:
        xs.append(x[0])
        ys.append(label)
    x = np.stack(xs).astype(np.float32)
    y = np.asarray(ys, np.int64)
    classes = len(labels) if labels else int(y.max()) + 1
    if classes < 2 and what == "training":
        raise InputError(f"training set {ds.description}: expected at least two classes, got {classes}")
    return x, y, classes, ds.description


def _is_tf_dataset(data: Any) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _from_tf_dataset(ds, *, validation: float) -> TrainingData:
    """A user's ``tf.data.Dataset`` of (x, y) batches: used as is for training; a first batch tells the
    class count and gives a small validation sample."""
    first = next(iter(ds), None)
    if first is None:
        raise InputError("training tf.data.Dataset is empty")
    x, y = (np.asarray(t) for t in first)
    y = y.astype(np.int64).reshape(-1)
    n_val = max(1, int(round(validation * len(x)))) if validation else 0
    return TrainingData(x, y, x[:n_val], y[:n_val], int(y.max()) + 1, "a tf.data.Dataset", source=ds)


__all__ = ["TrainingData", "open_training_data", "Path"]
