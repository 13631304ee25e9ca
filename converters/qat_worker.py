"""The child-process half of quantization-aware training (:mod:`edgecv.converters.qat` starts it).

tfmot takes only tf_keras models and switches its process to tf_keras (TF_USE_LEGACY_KERAS=1), which
breaks Keras 3 objects there; so QAT runs here, in a process of its own (:func:`edgecv.child.call` with
the request ``{"job": JOB_DIR}``). The job folder holds what the parent wrote:

- ``job.json``: epochs, batch size, seed, learning rate, TFLite I/O type, rebuild tolerance, from_logits;
- ``model/``: the Keras 3 model's architecture and weights (:mod:`edgecv.converters.tfkeras_rebuild`);
- ``data.npz``: preprocessed ``x``, ``y``, ``x_val``, ``y_val``, and a ``sample`` with the Keras 3
  model's ``reference`` outputs; or ``train_ds/`` (a saved ``tf.data.Dataset``) for the training batches.

It rebuilds the model in tf_keras and checks it against the reference outputs, applies
``tfmot.quantization.keras.quantize_model``, fine-tunes with Adam (seeded, deterministic ops), and writes
``saved_model/`` (the QAT model), ``model.qat.int8.tflite`` (converted natively from it, so the learned
fake-quant ranges become the int8 scales) and ``metrics.json``, also its result; an error reaches the
parent through :mod:`edgecv.child` (an edgecv error as it is, anything else as "QAT failed: ...").

Example:
    >>> edgecv.child.call("edgecv.converters.qat_worker", {"job": "/tmp/qat-job"}, failure="QAT failed",
    ...      env={"TF_USE_LEGACY_KERAS": "1"})["top1_qat"]                        # doctest: +SKIP
    0.915
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.child import serve

log = logging.getLogger("edgecv.converters.qat_worker")

SAVED_MODEL = "saved_model"
TFLITE = "model.qat.int8.tflite"
METRICS = "metrics.json"
# QatOptions.io_type -> the dtype of the int8 TFLite file's inputs and outputs
IO_DTYPES = {"float": "float32", "int8": "int8", "uint8": "uint8"}


def run_and_record(job: Path) -> dict[str, Any]:
    """:func:`run`, with the metrics also written to ``metrics.json`` in ``job``."""
    from edgecv.fileio import atomic_write_text

    metrics = run(job)
    atomic_write_text(job / METRICS, json.dumps(metrics, indent=2))
    return metrics


def run(job: Path) -> dict[str, Any]:
    """Do the job in folder ``job``; returns the metrics it also writes."""
    from edgecv.converters import tfkeras_rebuild
    from edgecv.converters.tf_env import import_tensorflow
    from edgecv.converters.train_data import TrainingData
    from edgecv.backends.base import first_line
    from edgecv.errors import ConversionError

    params = json.loads((job / "job.json").read_text())
    start = time.perf_counter()
    tf = import_tensorflow()
    import tf_keras
    import tensorflow_model_optimization as tfmot

    log.info("imported TensorFlow, tf_keras and tfmot")
    tf_keras.utils.set_random_seed(params["seed"])
    tf.config.experimental.enable_op_determinism()
    with np.load(job / "data.npz") as npz:
        data = {k: npz[k] for k in npz.files}

    arch, weights = tfkeras_rebuild.load(job / "model")
    float_model = tfkeras_rebuild.rebuild(arch, weights)
    got = np.asarray(float_model(data["sample"], training=False))
    rebuild_diff = float(np.max(np.abs(got - data["reference"])))
    if not rebuild_diff <= params["rebuild_atol"]:
        raise ConversionError(f"the tf_keras rebuild differs from the Keras 3 model by {rebuild_diff:.3g} "
                              f"(tolerance {params['rebuild_atol']:g}); a layer option is not carried over")
    log.info("rebuilt %s in tf_keras: max |diff| %.3g", float_model.name, rebuild_diff)
    top1_float = _top1(float_model, data["x_val"], data["y_val"])

    try:
        qat_model = tfmot.quantization.keras.quantize_model(float_model)
    except Exception as exc:
        raise ConversionError(f"tfmot could not quantize the model: {first_line(exc)}") from None
    if params["range_batches"]:
        _calibrate_ranges(qat_model, data["x"], params["batch_size"], params["range_batches"])
    log.info("quantize_model done, ranges calibrated on %d batches", params["range_batches"])
    qat_model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=params["lr"]),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=params["from_logits"]),
        metrics=["accuracy"],
    )
    train = TrainingData(data["x"], data["y"], data["x_val"], data["y_val"], 0, "",
                         source=tf.data.Dataset.load(str(job / "train_ds")) if (job / "train_ds").is_dir() else None)
    fit_start = time.perf_counter()
    history = qat_model.fit(train.dataset(params["batch_size"], seed=params["seed"]), epochs=params["epochs"],
                            validation_data=(data["x_val"], data["y_val"]) if len(data["y_val"]) else None, verbose=0)
    fit_seconds = time.perf_counter() - fit_start
    top1_qat = _top1(qat_model, data["x_val"], data["y_val"])
    log.info("QAT %d epochs in %.1f s: top-1 %s (float %s)", params["epochs"], fit_seconds, top1_qat, top1_float)

    # The serving signature keeps the model's own input and output names (tfmot prefixes layers "quant_").
    spec = tf.TensorSpec([None, *qat_model.input_shape[1:]], tf.float32, name=arch.inputs[0][0])
    serve = tf.function(lambda x: {arch.outputs[0][0]: qat_model(x, training=False)}, input_signature=[spec])
    qat_model.save(str(job / SAVED_MODEL), save_format="tf", include_optimizer=False, signatures={"serving_default": serve})
    log.info("saved the QAT SavedModel")
    (job / TFLITE).write_bytes(_tflite_int8(tf, job / SAVED_MODEL, params["io_type"]))
    log.info("wrote the int8 TFLite")
    return {
        "top1_float": top1_float,
        "top1_qat": top1_qat,
        "rebuild_max_abs_diff": rebuild_diff,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "fit_seconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "tfmot": tfmot.__version__,
    }


def _calibrate_ranges(qat_model, x: np.ndarray, batch_size: int, batches: int) -> None:
    """Start every activation range from data instead of tfmot's [-6, 6].

    tfmot's moving-average quantizers move their range 0.1% of the way to each batch's (EMA decay 0.999),
    so a fine-tune of a few hundred steps leaves them near [-6, 6]: larger activations and logits clip,
    small ones get a coarse step. Here the ranges become the mean of ``batches`` batch ranges (decay
    k/(k+1) on batch k, with a patched quantizer call in this child process only); every other variable
    (batch-norm statistics, weights) is restored after, so only the ranges change.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops, quantizers

    cls = quantizers.MovingAverageQuantizer
    original = cls.__call__
    decay = [0.0]

    def call(self, inputs, training, weights, **kwargs):
        return quant_ops.MovingAvgQuantize(inputs, weights["min_var"], weights["max_var"], ema_decay=decay[0],
                                           is_training=training, num_bits=self.num_bits, per_channel=self.per_axis,
                                           symmetric=self.symmetric, narrow_range=self.narrow_range)

    kept = [(v, v.numpy()) for v in qat_model.variables if not v.name.endswith(("_min:0", "_max:0"))]
    cls.__call__ = call
    try:
        for k, start in enumerate(range(0, min(len(x), batches * batch_size), batch_size)):
            decay[0] = k / (k + 1)
            qat_model(x[start : start + batch_size], training=True)
    finally:
        cls.__call__ = original
        for v, value in kept:
            v.assign(value)


def _top1(model, x: np.ndarray, y: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    scores = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(scores, axis=-1) == y))


def _tflite_int8(tf, saved_model: Path, io_type: str) -> bytes:
    """int8 TFLite from the QAT SavedModel: the converter reads the fake-quant ranges, no calibration."""
    from edgecv.backends.base import first_line
    from edgecv.errors import ConversionError

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if io_type != "float":
        dtype = getattr(tf, IO_DTYPES[io_type])
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
    try:
        return converter.convert()
    except Exception as exc:
        raise ConversionError(f"TFLite converter failed on the QAT model: {first_line(exc)}") from None


if __name__ == "__main__":  # the worker process (edgecv.child)
    # Must precede the first TensorFlow import: tf.keras and tfmot then use tf_keras.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="qat_worker %(relativeCreated).0f ms: %(message)s")
    serve(lambda request: run_and_record(Path(request["job"])))
