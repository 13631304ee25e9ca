"""Running one of tfmot's weight methods (magnitude or 2:4 pruning, clustering) on a Keras 3 model, from the
parent's side: tfmot needs tf_keras, so the work happens in :mod:`edgecv.converters.tfmot_worker`, a child
process, and the weights come back into a copy of the caller's Keras 3 model, checked against the worker's
own predictions.

Example:
    >>> new_model, result = run_in_tf_keras(model, data, {"mode": "cluster", "clusters": 16, ...},
    ...                                     timeout=3600, what="clustering")   # doctest: +SKIP
    >>> result["layers"]                                                          # doctest: +SKIP
    ['conv1', 'conv2', 'dense']
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.converters.tf_env import child_env
from edgecv.converters.train_data import TrainingData
from edgecv.child import call
from edgecv.errors import ConfigError, ConversionError

log = logging.getLogger(__name__)

CHECK_ATOL = 1e-4  # the Keras 3 copy against the worker's own predictions on a few inputs


def training_arrays(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels as arrays (a finite ``tf.data`` source is read whole)."""
    if data.source is None:
        return data.x, data.y
    if int(data.source.cardinality()) < 0:
        raise ConfigError("tfmot's weight methods need a finite tf.data.Dataset (it is written to a file for the worker)")
    xs, ys = zip(*((np.asarray(a), np.asarray(b)) for a, b in data.source))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64).reshape(-1)


def run_in_tf_keras(model: Any, data: TrainingData, settings: dict[str, Any], *, timeout: float,
                    what: str) -> tuple[Any, dict[str, Any]]:
    """Run the worker's job ``settings`` (``mode`` and its options, ``epochs``, ``batch_size``, ``seed``, ``lr``,
    ``from_logits``) on ``model`` and ``data``; a new Keras 3 model with the worker's weights, and the worker's
    result (``history``, ``layers``: the names of the layers it wrapped). ``what`` names the method in errors."""
    import keras

    from edgecv.converters import tfkeras_rebuild

    problems = tfkeras_rebuild.unsupported_layers(model)
    if problems:
        names = ", ".join(sorted({f"{name} ({cls})" for name, cls, _ in problems}))
        raise ConfigError(f"{what} cannot rebuild layer(s) {names} in tf_keras; "
                          f"it supports {', '.join(tfkeras_rebuild.LAYERS)}")
    arch, arrays = tfkeras_rebuild.describe(model)
    x, y = training_arrays(data)
    x_check = (data.x_val if len(data.x_val) else data.x)[:32]
    with tempfile.TemporaryDirectory(prefix="edgecv-tfmot-") as tmp:
        work = Path(tmp)
        tfkeras_rebuild.save(arch, arrays, work / "model")
        (work / "job.json").write_text(json.dumps(settings))
        np.savez(work / "data.npz", x=x.astype(np.float32), y=y.astype(np.int64), x_check=x_check.astype(np.float32))
        log.info("%s runs in a worker process (tfmot needs tf_keras)", what)
        env = {**child_env(), "TF_USE_LEGACY_KERAS": "1"}
        result = call("edgecv.converters.tfmot_worker", {"job": str(work)}, failure=f"{what} failed in its worker process",
                      error=ConversionError, timeout=timeout, env=env)
        with np.load(work / "result.npz") as f:
            weights = {k: f[k] for k in f.files}
        expected = np.load(work / "check.npy")

    new_model = keras.models.clone_model(model)
    new_model.set_weights(model.get_weights())
    for layer in new_model.layers:
        values = [weights.get(f"{layer.name}:{i}") for i in range(len(layer.weights))]
        if values and all(a is not None for a in values):
            layer.set_weights(values)
    got = np.asarray(new_model(x_check, training=False))
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if diff > CHECK_ATOL:
        raise ConversionError(f"{what}: the Keras 3 copy differs from the worker's model by {diff:.2g}")
    return new_model, result
