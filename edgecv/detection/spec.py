"""Detector specs: everything needed to run one detector, as a small YAML file (docs/specs.md).

A spec names a decoder and its options, the score threshold, the NMS settings, the class labels, the
input normalization (``input = (pixel - mean) / std`` with pixels in 0..255, in ``color`` order), how a
frame fits the input (``resize``, ``pad_value``), and, where the model leaves them open, its input
``layout`` and ``input_size``. Built-in specs live in ``edgecv/detection/specs/``; ``spec.to_dict()`` is
what goes into an artifact's manifest.

Example:
    >>> spec = load_spec("blazeface-short-range")
    >>> spec.decoder, spec.nms.method, spec.score_threshold
    ('ssd_anchors', 'weighted', 0.5)
    >>> detections = spec.detect(model.run(x), input_size=(128, 128))     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgecv.config import check, from_mapping, to_plain
from edgecv.detection.decoders import DECODERS, Decoder, get_decoder
from edgecv.detection.detections import Detections
from edgecv.detection.frames import LAYOUTS, RESIZE_MODES
from edgecv.detection.nms import NMS_METHODS, nms
from edgecv.errors import ConfigError, InputError
from edgecv.labels import label_of, read_labels
from edgecv.manifest import COLOR_ORDERS, Preprocess
from edgecv.yamlfile import names_in, read_named_yaml

log = logging.getLogger(__name__)

SPEC_DIR = Path(__file__).resolve().parent / "specs"


@dataclass(frozen=True)
class NmsOptions:
    """Keyword arguments of :func:`~edgecv.detection.nms` (see there)."""

    iou_threshold: float = 0.5
    method: str = "hard"
    class_agnostic: bool = False
    top_k: int | None = None

    def __post_init__(self) -> None:
        check(self.method in NMS_METHODS, "nms.method", f"one of {', '.join(NMS_METHODS)}", self.method)
        check(0.0 <= self.iou_threshold <= 1.0, "nms.iou_threshold", "a number in [0, 1]", self.iou_threshold)
        check(self.top_k is None or self.top_k >= 1, "nms.top_k", "a positive integer or null", self.top_k)


@dataclass(frozen=True)
class DetectorSpec:
    """Decoder, thresholds, labels, input normalization and frame fitting of one detector.

    ``decoder_options`` is the decoder's options object (a dict is turned into one). ``nms`` None means
    no NMS (the model already ran it). ``labels`` are indexed by class id. ``resize`` and ``pad_value``
    are the defaults of :class:`~edgecv.detection.frames.FrameOptions` when the caller gives none;
    ``layout`` (NHWC/NCHW) overrides the layout guessed from the model's input shape; ``input_size``
    (height, width) is the size to feed a model whose input height and width are dynamic. None
    everywhere means "not said": the model's own, or the runtime default.
    """

    decoder: str
    decoder_options: Decoder
    name: str = ""
    score_threshold: float = 0.0
    nms: NmsOptions | None = NmsOptions()
    labels: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str | None = None
    resize: str | None = None
    pad_value: int | None = None
    layout: str | None = None
    input_size: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        cls = get_decoder(self.decoder)
        options = self.decoder_options
        if options is None or isinstance(options, dict):
            options = cls.from_dict(options)
        check(isinstance(options, cls), "decoder_options", f"{cls.__name__} options for decoder {self.decoder!r}",
              type(options).__name__)
        object.__setattr__(self, "decoder_options", options)
        check(isinstance(self.score_threshold, (int, float)) and math.isfinite(self.score_threshold),
              "score_threshold", "a finite number", self.score_threshold)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
            check(all(isinstance(s, str) for s in self.labels), "labels", "strings", self.labels[:5])
        check((self.mean is None) == (self.std is None), "mean/std", "both or neither", (self.mean, self.std))
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
            check(len(self.mean) in (1, 3) and len(self.std) == len(self.mean), "mean/std",
                  "1 or 3 values each, as many stds as means", (list(self.mean), list(self.std)))
            check(all(s != 0 for s in self.std), "std", "non-zero values", list(self.std))
        if self.color is not None:
            check(self.color in COLOR_ORDERS, "color", f"one of {', '.join(COLOR_ORDERS)}", self.color)
        if self.resize is not None:
            check(self.resize in RESIZE_MODES, "resize", f"one of {', '.join(RESIZE_MODES)}", self.resize)
        if self.pad_value is not None:
            check(isinstance(self.pad_value, int) and not isinstance(self.pad_value, bool)
                  and 0 <= self.pad_value <= 255, "pad_value", "an integer in 0..255", self.pad_value)
        if self.layout is not None:
            check(self.layout in LAYOUTS, "layout", f"one of {', '.join(LAYOUTS)}", self.layout)
        if self.input_size is not None:
            size = tuple(self.input_size)
            check(len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size),
                  "input_size", "[height, width], two positive integers", list(size))
            object.__setattr__(self, "input_size", size)

    # -- running -----------------------------------------------------------------------------------------
    def detect(self, outputs: Sequence[np.ndarray], *, input_size: tuple[int, int]) -> Detections:
        """Decode one image's outputs, drop scores below ``score_threshold``, run NMS.

        ``input_size`` is the model input's (height, width); boxes come back in its pixels.
        """
        det = self.decoder_options.decode(outputs, input_size=input_size)
        candidates = len(det)
        det = det[det.confidence >= self.score_threshold]
        above = len(det)
        if self.nms is not None:
            det = nms(det, **to_plain(self.nms))
        log.debug("%s: %d candidates, %d scored %.3g or more, %d after NMS", self.name or self.decoder, candidates,
                  above, self.score_threshold, len(det))
        return det

    def class_names(self, detections: Detections) -> list[str]:
        """The label of each detection's class, or the class id as text where there is no label."""
        return [label_of(self.labels, c) for c in detections.class_id.tolist()]

    @property
    def expected_input_size(self) -> tuple[int, int] | None:
        """(height, width) of the model input this spec is for: ``input_size``, else the size the decoder's
        anchors were made for, else None (any size)."""
        if self.input_size is not None:
            return (self.input_size[0], self.input_size[1])
        return getattr(self.decoder_options, "input_size", None)

    @property
    def num_classes(self) -> int | None:
        """The number of classes the spec names: its labels, else the decoder's ``num_classes``, else None."""
        if self.labels is not None:
            return len(self.labels)
        return getattr(self.decoder_options, "num_classes", None)

    @property
    def preprocess(self) -> Preprocess | None:
        """The input normalization as a manifest :class:`Preprocess` (NHWC), or None when not given."""
        if self.mean is None:
            return None
        return Preprocess(color=self.color or "RGB", mean=self.mean, std=self.std)

    # -- (de)serialization -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-ready) that :meth:`from_dict` turns back into an equal spec."""
        d = {f.name: to_plain(getattr(self, f.name)) for f in fields(self)}
        d["decoder_options"] = self.decoder_options.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: str | Path | None = None, where: str = "detector spec") -> DetectorSpec:
        """Build and validate a spec; ``labels`` given as a string is a file path, relative to ``base_dir``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        valid = [f.name for f in fields(cls)]
        unknown = [str(k) for k in data if k not in valid]
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
        if "decoder" not in data:
            raise ConfigError(f"{where}: missing key 'decoder' (one of {', '.join(DECODERS)})")
        d = dict(data)
        try:
            if isinstance(d.get("labels"), str):
                d["labels"] = _labels_file(Path(base_dir or ".") / d["labels"])
            if d.get("nms") is not None:
                d["nms"] = from_mapping(NmsOptions, d["nms"], "nms")
            options = d.get("decoder_options")
            if options is not None and not isinstance(options, dict):
                raise ConfigError(f"decoder_options: expected a mapping, got {type(options).__name__}")
            d["decoder_options"] = get_decoder(d["decoder"]).from_dict(options)
            return from_mapping(cls, d, "")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _labels_file(path: Path) -> tuple[str, ...]:
    """A spec's ``labels: file.txt``, read by the one labels reader; its errors become the spec's ConfigError."""
    try:
        return read_labels(path)
    except InputError as exc:
        raise ConfigError(f"labels: {exc}") from None


def spec_names(folder: Path = SPEC_DIR) -> list[str]:
    """Names of the built-in specs."""
    return names_in(folder)


def spec_path(name_or_path: str | Path) -> Path:
    """The YAML file :func:`load_spec` reads for ``name_or_path`` (a built-in name has no suffix)."""
    path = Path(name_or_path)
    return SPEC_DIR / f"{name_or_path}.yaml" if not path.suffix else path


def load_spec(name_or_path: str | Path) -> DetectorSpec:
    """A built-in spec by name (``blazeface-short-range``), or a spec YAML file by path.

    Example:
        >>> load_spec("ssd-mobilenet-v1-coco").decoder_options.label_offset
        1
    """
    path, data = read_named_yaml(name_or_path, folder=SPEC_DIR, kind="detector spec", listing="built-in specs")
    if isinstance(data, dict) and not data.get("name"):
        data["name"] = path.stem
    return DetectorSpec.from_dict(data, base_dir=path.parent, where=f"detector spec {path}")
