"""Names chosen on the command line or in the Python API (``"tflite,onnx"`` or a list), checked against the valid ones.

Example:
    >>> parse_names("ONNX, tflite,onnx", ["tflite", "onnx", "openvino"], "export format")
    ['onnx', 'tflite']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from edgecv.errors import ConfigError


def parse_names(names: str | Iterable[str], valid: Sequence[str], what: str) -> list[str]:
    """``"a,b"`` or a list -> unique lower-case names in order, each checked against ``valid``; a
    :class:`ConfigError` naming ``what`` and the valid names for an unknown name or an empty choice.

    Example:
        >>> parse_names("fp32,", ["fp32", "int8"], "precision")
        ['fp32']
    """
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for n in (n.strip().lower() for n in names):
        if not n:
            continue
        if n not in valid:
            raise ConfigError(f"unknown {what} {n!r}; choose from: {', '.join(valid)}")
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError(f"no {what} given; choose from: {', '.join(valid)}")
    return out
