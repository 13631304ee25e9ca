"""What every decoder provides, and helpers for finding output tensors by shape.

Example:
    >>> import numpy as np
    >>> describe([np.zeros((1, 896, 16)), np.zeros((1, 896, 1))])
    '[1,896,16], [1,896,1]'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import InputError


class Decoder(Protocol):
    """A frozen options dataclass that turns one image's raw model outputs into :class:`Detections`."""

    name: ClassVar[str]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Decoder: ...

    def to_dict(self) -> dict[str, Any]: ...

    def decode(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections: ...

    def output_roles(self, shapes: Sequence[tuple[int, ...]]) -> tuple[OutputRole, ...]: ...


ROLE_KINDS = ("box", "score", "logit")


@dataclass(frozen=True)
class OutputRole:
    """What a slice of one raw output holds, for tools that treat values by meaning (an int8 quantizer gives
    box coordinates and class scores their own ranges): values ``start:stop`` along ``axis`` of output
    ``output``, each candidate (anchor, cell) along the output's other non-batch axes. ``kind``: ``box``
    (coordinates, keypoints included), ``score`` (probabilities in [0, 1]) or ``logit`` (scores before a
    sigmoid the decoder applies).

    Example:
        >>> OutputRole(0, 1, 4, 84, "score").width
        80
    """

    output: int
    axis: int
    start: int
    stop: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS:
            raise InputError(f"output role: expected kind one of {', '.join(ROLE_KINDS)}, got {self.kind!r}")

    @property
    def width(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "axis": self.axis, "values": [self.start, self.stop], "kind": self.kind}


def describe(outputs: Sequence[np.ndarray]) -> str:
    """Shapes of ``outputs`` as ``[1,896,16], [1,896,1]``."""
    return ", ".join("[" + ",".join(str(d) for d in np.shape(o)) + "]" for o in outputs)


def check_outputs(name: str, outputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``outputs`` as a list of float arrays of one image (batch 1)."""
    if isinstance(outputs, np.ndarray) or not isinstance(outputs, (list, tuple)):
        raise InputError(f"{name}: expected a list of output arrays, got {type(outputs).__name__}")
    arrays = [np.asarray(o) for o in outputs]
    for a in arrays:
        if a.ndim == 0 or a.shape[0] != 1:
            raise InputError(f"{name}: expected outputs of one image (batch 1), got {describe(arrays)}")
        if a.dtype.kind != "f":
            raise InputError(f"{name}: expected float outputs (load the model with float_io=True), got {a.dtype}")
    return arrays


def check_input_size(name: str, input_size: Any) -> tuple[int, int]:
    """``input_size`` as (height, width) of positive numbers."""
    try:
        height, width = input_size
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected input_size (height, width), got {input_size!r}") from None
    if not (height > 0 and width > 0):
        raise InputError(f"{name}: expected a positive input_size (height, width), got {input_size!r}")
    return height, width
