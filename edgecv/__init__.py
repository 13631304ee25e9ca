"""edgecv: checked edge artifacts for vision models, and a light runtime to run them.

Example:
    >>> import edgecv
    >>> model = edgecv.load("model.fp32.onnx")          # doctest: +SKIP
    >>> outputs = model.run(image_batch)                 # doctest: +SKIP

``import edgecv`` stays light: no runtime, cv2 or TensorFlow is imported until a model is loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load", "Model", "Manifest", "TensorInfo", "QuantParams"]

_LAZY = {
    "load": ("edgecv.model", "load"),
    "Model": ("edgecv.model", "Model"),
    "Manifest": ("edgecv.manifest", "Manifest"),
    "TensorInfo": ("edgecv.tensors", "TensorInfo"),
    "QuantParams": ("edgecv.tensors", "QuantParams"),
}


def __getattr__(name: str):
    # Lazy so that `import edgecv` does not pay for numpy before it is needed.
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgecv' has no attribute {name!r}")
