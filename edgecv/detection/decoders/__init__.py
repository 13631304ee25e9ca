"""The decoders that turn raw detector outputs into :class:`~edgecv.detection.Detections`, in one table.

Each decoder is a frozen options dataclass with ``from_dict``, ``to_dict`` and
``decode(outputs, *, input_size) -> Detections`` for one image; ``input_size`` is (height, width).

Example:
    >>> sorted(DECODERS)
    ['grid', 'ssd_anchors', 'tflite_postprocess', 'yolo', 'yolo_dfl']
    >>> make_decoder("tflite_postprocess", {"label_offset": 1})
    TflitePostprocessDecoder(label_offset=1)
"""

from __future__ import annotations

from typing import Any

from edgecv.detection.decoders.base import Decoder
from edgecv.detection.decoders.grid import GridDecoder
from edgecv.detection.decoders.ssd_anchors import SsdAnchorsDecoder
from edgecv.detection.decoders.tflite_postprocess import TflitePostprocessDecoder
from edgecv.detection.decoders.yolo import YoloDecoder
from edgecv.detection.decoders.yolo_dfl import YoloDflDecoder
from edgecv.errors import ConfigError

DecoderType = type[Decoder]

DECODERS: dict[str, DecoderType] = {d.name: d for d in (SsdAnchorsDecoder, TflitePostprocessDecoder, YoloDecoder, YoloDflDecoder,
                                                  GridDecoder)}

__all__ = ["DECODERS", "Decoder", "DecoderType", "GridDecoder", "get_decoder", "make_decoder",
           "SsdAnchorsDecoder", "TflitePostprocessDecoder", "YoloDecoder", "YoloDflDecoder"]


def get_decoder(name: str) -> DecoderType:
    """The decoder class registered as ``name``, or a ConfigError listing the valid names."""
    try:
        return DECODERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown decoder {name!r}; valid decoders: {', '.join(DECODERS)}") from None


def make_decoder(name: str, options: dict[str, Any] | None = None) -> Decoder:
    """A decoder from its name and its options (a dict, as in a YAML spec)."""
    return get_decoder(name).from_dict(options)
