"""The child process of weight pruning: tfmot needs tf_keras (Keras 2), and importing it flips the whole
process to legacy Keras, so magnitude and 2:4 pruning run here, never in the caller's process.

The parent (:mod:`converters.prune`) describes its Keras 3 model with :func:`describe` (layer kinds and the
config keys both Keras versions share), writes the weights and data to ``.npz`` files in a job folder and
runs ``python -m converters.prune_worker JOB``. The child rebuilds the model in tf_keras, checks that the
weight copy is exact, wraps every Conv2D and Dense in ``prune_low_magnitude``, fine-tunes, strips the
wrappers and writes the weights back, with its predictions on a few inputs so the parent can check its
own copy.

Example:
    >>> spec = describe(model)      # doctest: +SKIP   (parent side; raises ConfigError on unknown layers)
    >>> sorted(spec)                # doctest: +SKIP
    ['inputs', 'layers', 'outputs']
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from edgecv.errors import ConfigError

log = logging.getLogger(__name__)

# Layer kind -> the config keys rebuilt in tf_keras (both Keras versions name them alike).
_POOL = ("pool_size", "strides", "padding", "data_format")
LAYERS: dict[str, tuple[str, ...]] = {
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
                        "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "MaxPooling2D": _POOL,
    "AveragePooling2D": _POOL,
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "Flatten": ("data_format",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "ZeroPadding2D": ("padding", "data_format"),
    "Softmax": ("axis",),
    "Add": (),
    "Concatenate": ("axis",),
}
PRUNED = ("Conv2D", "Dense")  # the layers whose kernels are pruned
MODES = ("magnitude", "2:4")


def describe(model) -> dict:
    """A JSON description of a Keras 3 Functional or Sequential model, enough to rebuild it in tf_keras.
    Unsupported layers, shared layers or non-string activations are a :class:`ConfigError` naming them."""
    from converters.flops import graph_nodes, graph_of

    graph = graph_of(model)
    if graph is None:
        raise ConfigError(f"weight pruning needs a Functional or Sequential Keras model, got {type(model).__name__}")
    nodes = graph_nodes(model)
    bad = sorted({f"{n.operation.name} ({type(n.operation).__name__})" for n in nodes
                  if type(n.operation).__name__ not in LAYERS or not _is_keras_layer(n.operation)})
    if bad:
        raise ConfigError(f"weight pruning cannot rebuild layer(s) {', '.join(bad)} in tf_keras; "
                          f"it supports {', '.join(LAYERS)}")
    seen: set[int] = set()
    layers = []
    for node in nodes:
        layer = node.operation
        if id(layer) in seen:
            raise ConfigError(f"weight pruning cannot rebuild shared layer {layer.name} (called more than once)")
        seen.add(id(layer))
        config = layer.get_config()
        kwargs = {k: _plain(config[k]) for k in LAYERS[type(layer).__name__] if k in config}
        if not isinstance(kwargs.get("activation", ""), str):
            raise ConfigError(f"weight pruning cannot rebuild layer {layer.name}: its activation is not a built-in name")
        layers.append({"name": layer.name, "class": type(layer).__name__, "config": kwargs,
                       "inbound": [_source(t) for t in node.input_tensors]})
    inputs = [{"name": _source(t), "shape": [None if d is None else int(d) for d in t.shape[1:]]} for t in graph.inputs]
    return {"inputs": inputs, "layers": layers, "outputs": [_source(t) for t in graph.outputs]}


def _is_keras_layer(layer) -> bool:
    import keras

    return type(layer) is getattr(keras.layers, type(layer).__name__, None)


def _source(tensor) -> str:
    return tensor._keras_history.operation.name


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    return value


# --- child side ---------------------------------------------------------------------------------------------


def build(spec: dict):
    """The tf_keras model for a :func:`describe` spec (child process only)."""
    import tf_keras

    tensors = {i["name"]: tf_keras.Input(shape=tuple(i["shape"]), name=i["name"]) for i in spec["inputs"]}
    inputs = list(tensors.values())
    for item in spec["layers"]:
        layer = getattr(tf_keras.layers, item["class"])(name=item["name"], **item["config"])
        args = [tensors[name] for name in item["inbound"]]
        tensors[item["name"]] = layer(args if item["class"] in ("Add", "Concatenate") else args[0])
    outputs = [tensors[name] for name in spec["outputs"]]
    return tf_keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0])


def schedule(mode: str, sparsity: float, total_steps: int, end_fraction: float):
    """The tfmot pruning schedule: the target is reached at ``end_fraction`` of the steps (polynomial decay
    for magnitude; masks recomputed until then for 2:4), then kept while fine-tuning goes on."""
    import tensorflow_model_optimization as tfmot

    end = min(total_steps - 1, int(round(end_fraction * total_steps)))
    if end < 1:
        return tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, end_step=-1, frequency=1)
    frequency = max(1, end // 10)
    end = end // frequency * frequency
    if mode == "2:4":
        return tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, end_step=end, frequency=frequency)
    return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end, frequency=frequency)


def run_job(job_dir: Path) -> dict:
    """Rebuild, prune, fine-tune and write ``result.npz``/``result.json`` in ``job_dir``."""
    import tensorflow as tf
    import tf_keras
    import tensorflow_model_optimization as tfmot

    tf.get_logger().setLevel(logging.ERROR)
    job = json.loads((job_dir / "job.json").read_text())
    model = build(job["spec"])
    with np.load(job_dir / "weights.npz") as f:
        weights = {k: f[k] for k in f.files}
    for layer in model.layers:
        arrays = [weights[f"{layer.name}:{i}"] for i in range(len(layer.weights))]
        if arrays:
            layer.set_weights(arrays)
            if not all(np.array_equal(a, b) for a, b in zip(arrays, layer.get_weights())):
                raise RuntimeError(f"weights of {layer.name} did not copy exactly into tf_keras")
    with np.load(job_dir / "data.npz") as f:
        x, y, x_check = f["x"], f["y"], f["x_check"]

    tf_keras.utils.set_random_seed(job["seed"])
    # Whole batches only (reshuffled every epoch): a short last batch would trace the wrapped train step
    # a second time, which costs seconds.
    whole = len(x) >= job["batch_size"]
    steps = (len(x) // job["batch_size"] if whole else 1) * job["epochs"]
    plan = schedule(job["mode"], job["sparsity"], steps, job["end_fraction"])
    m_by_n = (2, 4) if job["mode"] == "2:4" else None

    def wrap(layer):
        if type(layer).__name__ in PRUNED:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=plan, sparsity_m_by_n=m_by_n)
        return layer

    pruned = tf_keras.models.clone_model(model, clone_function=wrap)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(job["lr"]),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=job["from_logits"]),
                   metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=job["seed"]).batch(job["batch_size"], drop_remainder=whole)
    history = pruned.fit(ds, epochs=job["epochs"], verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    out = {}
    for layer in final.layers:
        for i, w in enumerate(layer.get_weights()):
            out[f"{layer.name}:{i}"] = w
    np.savez(job_dir / "result.npz", **out)
    np.save(job_dir / "check.npy", np.asarray(final(x_check, training=False)))
    result = {
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "pruned": [layer.name for layer in final.layers if type(layer).__name__ in PRUNED],
    }
    (job_dir / "result.json").write_text(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_dir = Path(argv[0])
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        run_job(job_dir)
    except Exception as exc:  # report one line to the parent, the traceback on stderr
        traceback.print_exc()
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        (job_dir / "error.txt").write_text(f"{type(exc).__name__}: {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
