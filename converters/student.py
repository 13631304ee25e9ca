"""A narrow copy of a Keras model: the student a distillation starts from.

:func:`narrow_copy` rebuilds a teacher's architecture with every convolution and dense layer ``width`` times
as wide (``round(width * filters)``, at least 1), except the classifier that makes the model's output,
which keeps its class count. Layers whose size follows their input (DepthwiseConv2D, BatchNormalization,
pooling, Add, Concatenate ...) follow the narrowed channels. Weights are freshly initialized (seeded); the
teacher is never changed. Halving the width roughly quarters the parameters of a CNN whose first
convolution and classifier are a small part of it.

Example:
    >>> student = narrow_copy(teacher, width=0.5, seed=0)    # teacher: benchmarks/train_mnist_cnn.py  # doctest: +SKIP
    >>> teacher.count_params(), student.count_params()        # doctest: +SKIP
    (237274, 59890)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgecv.converters.tf_env import import_tensorflow
from edgecv.errors import ConfigError, ModelFileError, UnsupportedFormatError

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def narrow_copy(model: Any, *, width: float = 0.5, seed: int = 0) -> Any:
    """A new, freshly initialized model with ``model``'s architecture and ``width`` times its widths.

    ``model`` is a Keras 3 functional or Sequential model (or a .keras/.h5 path). Conv (1D/2D/3D,
    separable, transposed) and Dense layers get ``max(1, round(width * n))`` filters/units, except the
    last such layer on the way to each output (the classifier). A ConfigError says why an architecture
    cannot be narrowed (for instance an Add of an un-narrowed input and a narrowed convolution).
    """
    if not width > 0:
        raise ConfigError(f"width: expected a value > 0, got {width}")
    model = load_keras(model, "model")
    import keras

    keep = {id(layer) for layer in classifier_layers(model)}
    resizable = _resizable_types()

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, resizable) and id(layer) not in keep:
            key = "units" if "units" in config else "filters"
            config[key] = max(1, int(round(width * config[key])))
        return layer.__class__.from_config(config)

    keras.utils.set_random_seed(seed)
    try:
        copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except Exception as exc:  # Keras raises many types when shapes no longer fit together
        raise ConfigError(f"cannot narrow {model.name} to width {width}: {_first_line(exc)}") from None
    log.info("narrow copy of %s at width %s: %d -> %d parameters", model.name, width, model.count_params(), copy.count_params())
    return copy


def classifier_layers(model: Any) -> list:
    """The last Conv/Dense layer on the way back from each of ``model``'s outputs (nested models included)."""
    resizable = _resizable_types()
    found, seen = [], set()
    stack = list(model.outputs)
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        op, node_index = history.operation, history.node_index
        if id(op) in seen:
            continue
        seen.add(id(op))
        if isinstance(op, resizable):
            found.append(op)
            continue
        if hasattr(op, "outputs") and hasattr(op, "layers"):  # a nested functional model: walk inside it
            stack.extend(op.outputs)
        node = op._inbound_nodes[node_index] if getattr(op, "_inbound_nodes", None) else None
        if node is not None:
            stack.extend(node.input_tensors)
    return found


def load_keras(model: Any, what: str) -> Any:
    """``model`` itself when it is a Keras model, else the .keras/.h5 file it names, loaded (compile=False)."""
    if not isinstance(model, (str, Path)):
        if not hasattr(model, "inputs") or not hasattr(model, "get_layer"):
            raise ConfigError(f"{what}: expected a Keras 3 model or a .keras/.h5 path, got {type(model).__name__}")
        return model
    path = Path(model)
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise UnsupportedFormatError(f"{what} {path}: expected a Keras model ({', '.join(KERAS_SUFFIXES)})")
    if not path.is_file():
        raise ModelFileError(f"{what} {path} does not exist")
    import_tensorflow()
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many types for bad files
        raise ModelFileError(f"cannot load Keras {what} {path}: {_first_line(exc)}") from None


def _resizable_types() -> tuple:
    import_tensorflow()
    import keras

    L = keras.layers
    return (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.SeparableConv1D, L.SeparableConv2D,
            L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


__all__ = ["narrow_copy", "classifier_layers", "load_keras"]
