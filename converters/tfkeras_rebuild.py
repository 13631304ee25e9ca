"""Rebuild a Keras 3 model in tf_keras (Keras 2), layer by layer, for tools that take only tf_keras (tfmot).

The two halves run in different processes, because tfmot switches its process to tf_keras:
- :func:`describe` (the Keras 3 process) turns a functional or Sequential model into an
  :class:`Architecture` (plain JSON: each layer's class, the config keys that matter, its inbound tensors)
  and its weights; :func:`save` writes both into a folder;
- :func:`rebuild` (the tf_keras process) makes the same graph from tf_keras layers and copies the weights,
  checking that every copied array is bit-identical.

Only the layers in :data:`LAYERS` are rebuilt; :func:`unsupported_layers` lists the others, so a caller can
refuse the model with one message before starting a child process. Initializers, regularizers and
constraints are not carried over (the weights are copied, and fine-tuning adds no regularization).

Example:
    >>> arch, weights = describe(keras3_model)             # doctest: +SKIP
    >>> save(arch, weights, folder)                         # doctest: +SKIP
    >>> model = rebuild(*load(folder))                      # in a tf_keras process  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import ConfigError, ConversionError, ModelFileError

# Layer class -> the config keys copied to its tf_keras twin (name and trainable always are).
LAYERS: dict[str, tuple[str, ...]] = {
    "InputLayer": (),  # rebuilt with tf_keras.Input from its batch shape
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation", "use_bias"),
    "DepthwiseConv2D": ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate", "activation", "use_bias"),
    "SeparableConv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier", "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Activation": ("activation",),
    "Softmax": ("axis",),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "ZeroPadding2D": ("padding", "data_format"),
    "Flatten": ("data_format",),
    "Dropout": ("rate", "noise_shape", "seed"),
    "Add": (),
    "Concatenate": ("axis",),
    "Reshape": ("target_shape",),
}
# Keras 3 activation names whose tf_keras function has another name.
ACTIVATION_ALIASES = {"silu": "swish"}
KNOWN_ACTIVATIONS = {"linear", "relu", "relu6", "sigmoid", "softmax", "tanh", "silu", "swish", "gelu", "elu", "selu",
                     "softplus", "softsign", "hard_sigmoid", "exponential"}
# Options whose non-default value changes the maths in a way the copied keys do not carry.
_MUST_BE = {"BatchNormalization": {"renorm": False, "synchronized": False}}


@dataclass(frozen=True)
class LayerSpec:
    """One layer: its class, copied config, and per call the tensors it takes (``[layer, node, index]``).

    ``calls[k]`` is the k-th time the layer is called; ``listed[k]`` says whether that call took a list
    (Add, Concatenate) rather than one tensor."""

    name: str
    class_name: str
    config: dict[str, Any]
    calls: list[list[list]]
    listed: list[bool]


@dataclass(frozen=True)
class Architecture:
    """A model's graph as plain data: layers in order, and the model's input and output tensors."""

    name: str
    layers: list[LayerSpec]
    inputs: list[list]
    outputs: list[list]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        d = json.loads(text)
        return cls(d["name"], [LayerSpec(**layer) for layer in d["layers"]], d["inputs"], d["outputs"])


# --- the Keras 3 side --------------------------------------------------------------------------------------


def check_rebuildable(model) -> None:
    """Raise :class:`ConfigError` for a model that is not a Keras 3 functional or Sequential model."""
    kind = _kind(model)
    if kind == "tf_keras":
        raise ConfigError("expected a Keras 3 model; this one is a tf_keras (Keras 2) model")
    if kind == "subclassed":
        raise ConfigError(f"cannot rebuild a subclassed model ({type(model).__name__}) in tf_keras; "
                          "build it with the functional API (keras.Model(inputs, outputs)) or keras.Sequential")
    if kind != "keras":
        raise ConfigError(f"expected a Keras 3 model, got {type(model).__name__}")


def unsupported_layers(model) -> list[tuple[str, str, str]]:
    """``(layer name, class, why)`` for every layer :func:`rebuild` cannot make; empty when all can be."""
    check_rebuildable(model)
    problems = []
    for entry in _layer_entries(model):
        cls, cfg, name = entry["class_name"], entry.get("config", {}), entry.get("name") or entry.get("config", {}).get("name", "?")
        if entry.get("module") != "keras.layers" or cls not in LAYERS:
            problems.append((name, cls, "layer type not supported"))
            continue
        act = cfg.get("activation")
        if "activation" in LAYERS[cls] and not (isinstance(act, str) and act in KNOWN_ACTIVATIONS):
            problems.append((name, cls, f"activation {act!r} not supported"))
        for key, want in _MUST_BE.get(cls, {}).items():
            if cfg.get(key, want) != want:
                problems.append((name, cls, f"{key}={cfg.get(key)!r} not supported"))
        for node in entry.get("inbound_nodes", []):
            # Keras records ``training`` (and ``mask=None``) on some calls; inference and fine-tuning set
            # training themselves. Any other argument, or a tensor passed by keyword, is not carried over.
            extra = {k: v for k, v in (node.get("kwargs") or {}).items()
                     if v is not None and (k != "training" or _histories(v))}
            if extra:
                problems.append((name, cls, f"call arguments {sorted(extra)} not supported"))
                break
    return problems


def describe(model) -> tuple[Architecture, list[list[np.ndarray]]]:
    """The model's :class:`Architecture` and each layer's weights (in ``layers`` order), for :func:`rebuild`.

    Raises :class:`ConfigError` naming the layers that cannot be rebuilt."""
    problems = unsupported_layers(model)
    if problems:
        listed = ", ".join(f"{n} ({c}: {why})" for n, c, why in problems)
        raise ConfigError(f"cannot rebuild {len(problems)} layer(s) in tf_keras: {listed}")
    config = model.get_config()
    specs: list[LayerSpec] = []
    if "input_layers" in config:  # functional
        for entry in config["layers"]:
            calls, listed = [], []
            for node in entry.get("inbound_nodes", []):
                arg = node["args"][0] if node.get("args") else []
                listed.append(isinstance(arg, list))
                calls.append(_histories(arg))
            specs.append(_spec(entry, calls, listed))
        inputs, outputs = _endpoints(config["input_layers"]), _endpoints(config["output_layers"])
    else:  # Sequential: a chain
        entries = list(config["layers"])
        if not entries or entries[0]["class_name"] != "InputLayer":
            shape = [None if d is None else int(d) for d in model.inputs[0].shape]
            entries.insert(0, {"class_name": "InputLayer", "module": "keras.layers",
                               "config": {"name": f"{model.name}_input", "batch_shape": shape, "dtype": "float32"}})
        previous = None
        for entry in entries:
            calls = [] if previous is None else [[[previous, 0, 0]]]
            specs.append(_spec(entry, calls, [False] * len(calls)))
            previous = specs[-1].name
        inputs, outputs = [[specs[0].name, 0, 0]], [[specs[-1].name, 0, 0]]
    by_name = {layer.name: layer for layer in model.layers}
    weights = [[np.asarray(w) for w in by_name[s.name].get_weights()] if s.name in by_name else [] for s in specs]
    arch = Architecture(model.name, specs, inputs, outputs)
    return Architecture.from_json(arch.to_json()), weights  # plain JSON values (lists, not tuples), as saved


def save(arch: Architecture, weights: list[list[np.ndarray]], folder: Path) -> None:
    """Write ``architecture.json`` and ``weights.npz`` (key ``"layer/index"``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "architecture.json").write_text(arch.to_json())
    np.savez(folder / "weights.npz", **{f"{i}/{j}": w for i, ws in enumerate(weights) for j, w in enumerate(ws)})


def load(folder: Path) -> tuple[Architecture, list[list[np.ndarray]]]:
    """Read what :func:`save` wrote."""
    try:
        arch = Architecture.from_json((folder / "architecture.json").read_text())
        with np.load(folder / "weights.npz") as npz:
            weights: list[list[np.ndarray]] = [[] for _ in arch.layers]
            for key in sorted(npz.files, key=lambda k: tuple(int(p) for p in k.split("/"))):
                i, _ = (int(p) for p in key.split("/"))
                weights[i].append(npz[key])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"cannot read the model description in {folder}: {exc}") from None
    return arch, weights


def _kind(model) -> str:
    import sys

    if any(c.__module__.startswith("tf_keras") for c in type(model).__mro__):
        return "tf_keras"
    keras = sys.modules.get("keras")  # a Keras 3 model means keras is imported already
    if keras is None or not isinstance(model, keras.Model):
        return "other"
    if isinstance(model, keras.Sequential):
        return "keras"
    from keras.src.models.functional import Functional  # no public name for it

    return "keras" if type(model) is Functional else "subclassed"


def _layer_entries(model) -> list[dict]:
    try:
        config = model.get_config()
    except Exception as exc:  # a model built oddly; report it as the user's problem
        raise ConfigError(f"cannot read the model's architecture: {exc}") from None
    return list(config.get("layers", []))


def _spec(entry: dict, calls: list, listed: list) -> LayerSpec:
    cfg = entry["config"]
    cls = entry["class_name"]
    name = cfg.get("name") or entry.get("name")
    if cls == "InputLayer":
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        kept = {"batch_shape": shape, "dtype": _dtype_name(cfg.get("dtype"))}
    else:
        kept = {k: cfg[k] for k in LAYERS[cls] if k in cfg}
        kept["trainable"] = cfg.get("trainable", True)
    return LayerSpec(name, cls, kept, calls, listed)


def _dtype_name(dtype) -> str:
    if isinstance(dtype, dict):
        return dtype.get("config", {}).get("name", "float32")
    return dtype or "float32"


def _histories(arg) -> list[list]:
    """The ``[layer, node, index]`` of every Keras tensor in a serialized call argument."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return [list(arg["config"]["keras_history"])]
    if isinstance(arg, (list, tuple)):
        return [h for a in arg for h in _histories(a)]
    return []


def _endpoints(items) -> list[list]:
    # One endpoint is serialized as ["name", 0, 0], several as [["a", 0, 0], ...].
    return [list(items)] if items and isinstance(items[0], str) else [list(i) for i in items]


# --- the tf_keras side --------------------------------------------------------------------------------------


def rebuild(arch: Architecture, weights: list[list[np.ndarray]]):
    """The tf_keras model of ``arch`` with ``weights`` copied; raises :class:`ConversionError` when a copied
    array is not bit-identical. Call it in a process where tf_keras is usable (TF_USE_LEGACY_KERAS=1)."""
    import tf_keras

    tensors: dict[tuple[str, int], list] = {}
    layers: dict[str, Any] = {}
    pending = [(spec, k) for spec in arch.layers for k in range(max(len(spec.calls), 1))]
    while pending:
        progressed = False
        for spec, k in list(pending):
            if spec.class_name == "InputLayer":
                cfg = spec.config
                inp = tf_keras.Input(batch_shape=tuple(cfg["batch_shape"]), dtype=cfg["dtype"], name=spec.name)
                tensors[(spec.name, 0)] = [inp]
            else:
                wanted = spec.calls[k]
                if any((n, i) not in tensors for n, i, _ in wanted):
                    continue
                args = [tensors[(n, i)][t] for n, i, t in wanted]
                if spec.name not in layers:
                    layers[spec.name] = _make_layer(tf_keras, spec)
                out = layers[spec.name](args if spec.listed[k] else args[0])
                tensors[(spec.name, k)] = list(out) if isinstance(out, (list, tuple)) else [out]
            pending.remove((spec, k))
            progressed = True
        if not progressed:
            raise ConversionError(f"cannot rebuild {arch.name}: layers {[s.name for s, _ in pending][:5]} wait on tensors never produced")
    model = tf_keras.Model([tensors[(n, i)][t] for n, i, t in arch.inputs],
                           [tensors[(n, i)][t] for n, i, t in arch.outputs], name=arch.name)
    _copy_weights(model, arch, weights)
    return model


def _make_layer(tf_keras, spec: LayerSpec):
    cfg = dict(spec.config)
    if isinstance(cfg.get("activation"), str):
        cfg["activation"] = ACTIVATION_ALIASES.get(cfg["activation"], cfg["activation"])
    if spec.class_name == "Reshape":
        cfg["target_shape"] = tuple(cfg["target_shape"])
    return getattr(tf_keras.layers, spec.class_name)(name=spec.name, **cfg)


def _copy_weights(model, arch: Architecture, weights: list[list[np.ndarray]]) -> None:
    for spec, ws in zip(arch.layers, weights):
        if not ws:
            continue
        layer = model.get_layer(spec.name)
        have = layer.get_weights()
        if [w.shape for w in have] != [w.shape for w in ws]:
            raise ConversionError(f"layer {spec.name} ({spec.class_name}): tf_keras weights {[list(w.shape) for w in have]} "
                                  f"do not match the Keras 3 ones {[list(w.shape) for w in ws]}")
        layer.set_weights(ws)
        if not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), ws)):
            raise ConversionError(f"layer {spec.name}: the copied weights differ from the Keras 3 ones")


__all__ = ["LAYERS", "Architecture", "LayerSpec", "check_rebuildable", "unsupported_layers", "describe", "save", "load", "rebuild"]
