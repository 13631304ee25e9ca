"""Appearance for tracking: image embeddings of detected boxes, and the cosine distance that compares them.

An :class:`Embedder` wraps any image model loaded through edgecv's runtime (``.tflite``, ``.onnx``, OpenVINO):
it crops each detection's box from the frame (with a small margin, clipped to the frame), resizes the crops to
the model's input, runs them in batches, takes one output (a 4-D feature map is averaged over its height and
width: the pooled features of a CNN) and L2-normalizes it, giving float32 ``[N, D]`` embeddings. Store them in
``Detections.data["embedding"]`` (:meth:`Embedder.attach` does) and a tracker with an appearance cue
(:class:`~edgecv.tracking.ByteTrackOptions` ``appearance_weight``) adds their cosine distance to the motion
cost, which keeps identities through crossings and finds an object again after an occlusion.

Embeddings are compared by :func:`cosine_distance`: 0 for the same direction, 1 for orthogonal, 2 for
opposite. How far apart two objects land depends on the model, so the tracker's gates are settings.

Example:
    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> cosine_distance(a, a[:1]).round(2).tolist()
    [[0.0], [0.4]]
    >>> embedder = Embedder("reid.onnx", preprocess=Preprocess(mean=(127.5,), std=(127.5,)))    # doctest: +SKIP
    >>> tracker = make_tracker("bytetrack", {"appearance_weight": 0.5})                       # doctest: +SKIP
    >>> tracked = tracker.update(embedder.attach(frame, detections))                        # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from edgecv.detection.detections import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess
from edgecv.tracking.association import Matches

if TYPE_CHECKING:
    from edgecv.model import Model

__all__ = ["EMBEDDING_KEY", "Embedder", "cosine_distance", "normalize_rows"]

#: The ``Detections.data`` key that trackers read embeddings from.
EMBEDDING_KEY = "embedding"

_LAYOUTS = ("NHWC", "NCHW")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """The rows of ``x [N, D]`` scaled to length 1 (all-zero rows stay zero), as a new float array (float64
    unless ``x`` is already float)."""
    x = np.asarray(x)
    x = x.astype(x.dtype if x.dtype.kind == "f" else np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    return x / np.maximum(norm, np.finfo(x.dtype).tiny)[:, None]


def cosine_distance(a: np.ndarray, b: np.ndarray, *, unit: bool = False) -> np.ndarray:
    """``1 - cos(angle)`` between every row of ``a [N, D]`` and of ``b [M, D]``: float64 ``[N, M]`` in [0, 2].

    Rows need not be normalized (an all-zero row is at distance 1 from everything); ``unit=True`` says they
    already have length 1, which saves normalizing them.

    Example:
        >>> cosine_distance(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0], [-1.0, 0.0]])).tolist()
        [[1.0, 2.0]]
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"cosine_distance: expected embeddings of the same size, got {a.shape[1]} and {b.shape[1]}")
    d = 1.0 - (a @ b.T if unit else normalize_rows(a) @ normalize_rows(b).T)
    return np.clip(d, 0.0, 2.0, out=d)


def _matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf" or a.ndim != 2:
        raise InputError(f"cosine_distance: expected {name} as a real array [N, D], got {a.dtype} {list(a.shape)}")
    return a.astype(np.float64, copy=False)


# -- the embedder ----------------------------------------------------------------------------------------------


def _positive_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0


class Embedder:
    """Embeddings of detected boxes from an image model run by edgecv (see the module docstring).

    ``model_or_path``: a loaded :class:`~edgecv.model.Model`, or a path loaded with ``edgecv.load(path,
    float_io=True)``. Its first input must be one image batch (NHWC or NCHW); ``input_size`` (h, w) is needed
    only when its height or width is dynamic. ``preprocess`` gives the colour order and normalization
    (``input = (pixel - mean) / std``); without it the model's manifest does, and a float input with neither
    is a ConfigError (integer inputs take raw pixels). The layout is always the model's.

    ``output``: the output to read, by index or name (default the first). A 4-D output is a feature map in the
    input's layout and is averaged over height and width; other outputs are flattened per box.
    ``batch``: the most crops per model run when the model's batch is dynamic (a model with a fixed batch
    runs that many at a time, padding the last run; a batch-1 model runs box by box). ``margin``: the share
    of the box's width and height added on each side before cropping. ``frame_color``: the channel order of
    3- and 4-channel frames (``BGR`` for frames OpenCV decoded).
    """

    def __init__(
        self,
        model_or_path: Model | str | Path,
        *,
        preprocess: Preprocess | None = None,
        output: int | str | None = None,
        batch: int = 32,
        margin: float = 0.1,
        input_size: tuple[int, int] | None = None,
        frame_color: str = "RGB",
    ) -> None:
        from edgecv.deps import require
        from edgecv.model import Model, load

        if isinstance(model_or_path, (str, Path)):
            model_or_path = load(model_or_path, float_io=True)
        if not isinstance(model_or_path, Model):
            raise ConfigError(f"Embedder: expected a Model or a model path, got {type(model_or_path).__name__}")
        model = self.model = model_or_path
        name = model.path.name
        if len(model.inputs) != 1:
            raise ConfigError(f"Embedder: {name}: expected a model with one image input, got {len(model.inputs)} "
                              "inputs")
        info = model.inputs[0]
        if info.layout not in _LAYOUTS or len(info.shape) != 4:
            raise ConfigError(f"Embedder: {name}: expected an NHWC or NCHW image input, got {info.describe()}")
        h, w, c = info.shape[1:] if info.layout == "NHWC" else (*info.shape[2:], info.shape[1])
        if input_size is not None:
            ok = isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(map(_positive_int, input_size))
            if not ok or any(m is not None and m != g for m, g in zip((h, w), input_size)):
                dims = "x".join("?" if d is None else str(d) for d in (h, w))
                raise ConfigError(f"Embedder: input_size: expected (height, width) fitting the model's {dims}, "
                                  f"got {input_size!r}")
            h, w = int(input_size[0]), int(input_size[1])
        elif h is None or w is None:
            raise ConfigError(f"Embedder: {name}: input {info.describe()} has a dynamic height or width; "
                              "pass input_size=(h, w)")
        self.input_size = (int(h), int(w))
        self.dtype = "float32" if (model.float_io and info.is_quantized) else info.dtype
        if preprocess is None:
            if model.manifest is not None:
                preprocess = model.manifest.preprocess
            elif np.dtype(self.dtype).kind in "iu":
                preprocess = Preprocess(color="GRAY" if c == 1 else "RGB")  # integer inputs take raw pixels
            else:
                raise ConfigError(f"Embedder: {name}: no input normalization (no manifest); pass "
                                  "preprocess=Preprocess(mean=..., std=...)")
        if not isinstance(preprocess, Preprocess):
            raise ConfigError(f"Embedder: preprocess: expected a Preprocess, got {type(preprocess).__name__}")
        if c is not None and (c == 1) != (preprocess.color == "GRAY"):
            raise ConfigError(f"Embedder: {name}: input {info.describe()} has {c} channel(s) but the colour order "
                              f"is {preprocess.color}; 1 channel needs GRAY, 3 need RGB or BGR")
        self.preprocess = replace(preprocess, layout=info.layout)
        names = [t.name for t in model.outputs]
        if output is None:
            output = 0
        if isinstance(output, str) and output in names:
            output = names.index(output)
        if not (isinstance(output, (int, np.integer)) and not isinstance(output, bool) and 0 <= output < len(names)):
            raise ConfigError(f"Embedder: output: expected an index below {len(names)} or one of {names}, "
                              f"got {output!r}")
        self.output = int(output)
        if not _positive_int(batch):
            raise ConfigError(f"Embedder: batch: expected a positive integer, got {batch!r}")
        fixed = info.shape[0]
        self.batch = int(batch) if fixed is None else int(fixed)
        self._pad = fixed is not None and fixed > 1
        ok = isinstance(margin, (int, float)) and not isinstance(margin, bool) and math.isfinite(margin)
        if not ok or not 0 <= margin <= 1:
            raise ConfigError(f"Embedder: margin: expected a share of the box in [0, 1], got {margin!r}")
        self.margin = float(margin)
        if frame_color not in ("RGB", "BGR"):
            raise ConfigError(f"Embedder: frame_color: expected RGB or BGR, got {frame_color!r}")
        self.frame_color = frame_color
        self._cv2 = require("cv2", extra="opencv", purpose="crop and resize boxes", package="opencv-python-headless")
        self.dim: int | None = self._static_dim()

    def __repr__(self) -> str:
        h, w = self.input_size
        return (f"Embedder({self.model.path.name!r}, input={h}x{w} {self.preprocess.layout} {self.preprocess.color}, "
                f"output={self.model.outputs[self.output].name!r}, dim={self.dim}, batch={self.batch})")

    def _static_dim(self) -> int | None:
        shape = self.model.outputs[self.output].shape
        if len(shape) == 4:
            return shape[3] if self.preprocess.layout == "NHWC" else shape[1]
        rest = shape[1:]
        return None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))

    # -- running ---------------------------------------------------------------------------------------------
    def crops(self, frame: np.ndarray, boxes: Detections | np.ndarray) -> np.ndarray:
        """The boxes' crops, resized to the model's input: RGB uint8 ``[N, h, w, 3]`` (a gray frame's three
        channels are equal; :func:`~edgecv.preprocess.to_model_input` makes the model's colour order)."""
        from edgecv.detection.frames import check_frame

        frame = check_frame(frame)
        xyxy = _boxes(boxes)
        fh, fw = frame.shape[:2]
        ih, iw = self.input_size
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[..., 0]
        out = np.empty((len(xyxy), ih, iw, 3), np.uint8)
        if len(xyxy):
            bw, bh = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
            m = self.margin
            x0 = np.clip(np.floor(xyxy[:, 0] - m * bw), 0, fw - 1).astype(np.int64)
            y0 = np.clip(np.floor(xyxy[:, 1] - m * bh), 0, fh - 1).astype(np.int64)
            x1 = np.maximum(np.clip(np.ceil(xyxy[:, 2] + m * bw), 0, fw).astype(np.int64), x0 + 1)
            y1 = np.maximum(np.clip(np.ceil(xyxy[:, 3] + m * bh), 0, fh).astype(np.int64), y0 + 1)
            cv2 = self._cv2
            for i, (a, b, c, d) in enumerate(zip(x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist())):
                crop = frame[b:d, a:c]
                interp = cv2.INTER_AREA if (d - b) >= ih and (c - a) >= iw else cv2.INTER_LINEAR
                crop = cv2.resize(crop, (iw, ih), interpolation=interp)
                if crop.ndim == 2:
                    crop = crop[..., None]
                out[i] = crop[..., :3]  # gray broadcasts to 3 channels; alpha is dropped
        return np.ascontiguousarray(out[..., ::-1]) if self.frame_color == "BGR" else out

    def embed(self, frame: np.ndarray, boxes: Detections | np.ndarray) -> np.ndarray:
        """L2-normalized float32 embeddings ``[N, D]`` of the boxes (Detections, or ``[N, 4+]`` x1, y1, x2, y2)
        in the uint8 frame ``[H, W]``, ``[H, W, 1|3|4]``."""
        from edgecv.preprocess import to_model_input

        images = self.crops(frame, boxes)
        n = len(images)
        if n == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        x = to_model_input(images, self.preprocess, dtype=self.dtype)
        parts = []
        for start in range(0, n, self.batch):
            chunk = x[start : start + self.batch]
            k = len(chunk)
            if self._pad and k < self.batch:
                chunk = np.concatenate([chunk, np.zeros((self.batch - k, *chunk.shape[1:]), chunk.dtype)])
            parts.append(self._features(self.model.run(chunk)[self.output])[:k])
        feats = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.dim = feats.shape[1]
        return normalize_rows(feats.astype(np.float32, copy=False))

    __call__ = embed

    def _features(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        info = self.model.outputs[self.output]
        if y.dtype.kind in "iu" and info.is_quantized:  # a model loaded without float_io
            y = info.quant.dequantize(y)
        if y.ndim == 4:
            y = y.mean(axis=(1, 2) if self.preprocess.layout == "NHWC" else (2, 3), dtype=np.float32)
        return y.reshape(len(y), -1).astype(np.float32, copy=False)

    def attach(self, frame: np.ndarray, detections: Detections, *, key: str = EMBEDDING_KEY) -> Detections:
        """A new Detections with ``data[key]`` (default ``"embedding"``) holding the boxes' embeddings."""
        if not isinstance(detections, Detections):
            raise InputError(f"Embedder.attach: expected Detections, got {type(detections).__name__}")
        data = dict(detections.data)
        data[key] = self.embed(frame, detections)
        return Detections(detections.xyxy, detections.confidence, detections.class_id, detections.tracker_id, data)


def _boxes(boxes: Any) -> np.ndarray:
    if isinstance(boxes, Detections):
        xyxy = boxes.xyxy.astype(np.float64)
    else:
        a = np.asarray(boxes)
        if a.size == 0 and a.ndim <= 2:
            return np.zeros((0, 4))
        if a.dtype.kind not in "iuf" or a.ndim != 2 or a.shape[1] < 4:
            raise InputError(f"Embedder: expected Detections or boxes [N, 4] (x1, y1, x2, y2), got "
                             f"{a.dtype} {list(a.shape)}")
        xyxy = a[:, :4].astype(np.float64)
    if not np.isfinite(xyxy).all():
        raise InputError("Embedder: expected finite box coordinates, got NaN or inf")
    return xyxy


# -- for trackers ----------------------------------------------------------------------------------------------


def frame_embeddings(data: Mapping[str, np.ndarray], index: np.ndarray, dim: int | None, who: str) -> np.ndarray:
    """The embeddings of a frame's usable detections (input rows ``index``) as float64 unit rows ``[n, D]``.

    ``dim`` is the size the tracker's tracks already have (None before any). Missing, malformed, non-finite
    or differently sized embeddings are one-line InputErrors (a frame without usable detections needs none).
    """
    e = data.get(EMBEDDING_KEY) if data else None
    if e is None:
        if len(index) == 0:
            return np.zeros((0, dim or 0))
        raise InputError(f"{who}: appearance is on (appearance_weight > 0) but the detections have no "
                         f"data[{EMBEDDING_KEY!r}]; add embeddings (edgecv.tracking.appearance.Embedder.attach)")
    e = np.asarray(e)
    if e.dtype.kind not in "iuf" or e.ndim != 2:
        raise InputError(f"{who}: expected data[{EMBEDDING_KEY!r}] as a real array [N, D], got {e.dtype} "
                         f"[{','.join(map(str, e.shape))}]")
    if dim is not None and e.shape[1] != dim and len(index):
        raise InputError(f"{who}: expected data[{EMBEDDING_KEY!r}] of size {dim} like the tracks' embeddings, got "
                         f"[{','.join(map(str, e.shape))}]")
    e = e[index].astype(np.float64)
    if not np.isfinite(e).all():
        raise InputError(f"{who}: expected finite data[{EMBEDDING_KEY!r}], got NaN or inf")
    return normalize_rows(e)


def centre_distance(track_xyxy: np.ndarray, det_xyxy: np.ndarray) -> np.ndarray:
    """Distances ``[N, M]`` between box centres, in units of each track box's larger side."""
    tc = (track_xyxy[:, :2] + track_xyxy[:, 2:]) / 2
    dc = (det_xyxy[:, :2] + det_xyxy[:, 2:]) / 2
    side = np.maximum(track_xyxy[:, 2] - track_xyxy[:, 0], track_xyxy[:, 3] - track_xyxy[:, 1])
    d = np.hypot(tc[:, None, 0] - dc[None, :, 0], tc[:, None, 1] - dc[None, :, 1])
    return d / np.maximum(side, 1e-9)[:, None]


def shape_similarity(track_xyxy: np.ndarray, det_xyxy: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of the boxes moved onto the same centre: 1 for the same width and height, less as they differ."""
    tw, th = track_xyxy[:, 2] - track_xyxy[:, 0], track_xyxy[:, 3] - track_xyxy[:, 1]
    dw, dh = det_xyxy[:, 2] - det_xyxy[:, 0], det_xyxy[:, 3] - det_xyxy[:, 1]
    inter = np.minimum(tw[:, None], dw[None, :]) * np.minimum(th[:, None], dh[None, :])
    return inter / ((tw * th)[:, None] + (dw * dh)[None, :] - inter)


def join_matches(first: Matches, second: Matches) -> Matches:
    """``first`` (over N rows, M columns) plus ``second``, a matching of ``first``'s unmatched rows to its
    unmatched columns (positions in those lists), as one Matches over the N rows and M columns."""
    if len(second) == 0:
        return first
    rows = np.concatenate([first.rows, first.unmatched_rows[second.rows]])
    cols = np.concatenate([first.cols, first.unmatched_cols[second.cols]])
    order = np.argsort(rows, kind="stable")
    return Matches(
        rows[order], cols[order], np.delete(first.unmatched_rows, second.rows),
        np.delete(first.unmatched_cols, second.cols),
    )
