"""Box arithmetic on ``[N, 4]`` arrays: IoU, format conversions, clipping.

Formats: ``xyxy`` is (x1, y1, x2, y2); ``xywh`` is COCO's (x, y, width, height) from the top-left corner;
``cxcywh`` is (centre x, centre y, width, height).

Example:
    >>> import numpy as np
    >>> a = np.array([[0, 0, 10, 10]], np.float32)
    >>> box_iou(a, a + [5, 0, 5, 0]).round(3).tolist()
    [[0.333]]
"""

from __future__ import annotations

import numpy as np

#: The largest box coordinate, in pixels, that the trackers and the MOTChallenge readers take (|x| and |y| of
#: every corner). The largest frames in use are about 1e5 pixels a side (gigapixel panoramas, whole-slide
#: images), so 1e6 leaves room for boxes reaching far outside the frame; float32, the type of
#: :class:`~edgecv.detection.Detections` boxes, still resolves 1/16 pixel there (1 pixel from 1.7e7 on); and
#: every Kalman quantity of such a box (areas to 4e12, variances to ~1e13) is far from float64's limits, so no
#: tracker state can overflow from a box inside it. A larger coordinate is a damaged box, not a far one.
MAX_COORD = 1e6


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas ``[N]``; inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    xyxy = np.asarray(xyxy)
    return np.clip(xyxy[..., 2] - xyxy[..., 0], 0, None) * np.clip(xyxy[..., 3] - xyxy[..., 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a [N, 4]`` with every box in ``b [M, 4]``: ``[N, M]``.

    Computed in float64. Pairs whose union is empty (two zero-area boxes) have IoU 0.

    Example:
        >>> box_iou(np.zeros((2, 4)), np.zeros((3, 4))).shape
        (2, 3)
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """COCO (x, y, w, h) -> (x1, y1, x2, y2).

    Example:
        >>> xywh_to_xyxy(np.array([[1, 2, 3, 4]])).tolist()
        [[1, 2, 4, 6]]
    """
    xywh = np.asarray(xywh)
    return np.concatenate([xywh[..., :2], xywh[..., :2] + xywh[..., 2:4]], axis=-1)


def xyxy_to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> COCO (x, y, w, h).

    Example:
        >>> xyxy_to_xywh(np.array([[1, 2, 4, 6]])).tolist()
        [[1, 2, 3, 4]]
    """
    xyxy = np.asarray(xyxy)
    return np.concatenate([xyxy[..., :2], xyxy[..., 2:4] - xyxy[..., :2]], axis=-1)


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """(centre x, centre y, w, h) -> (x1, y1, x2, y2).

    Example:
        >>> cxcywh_to_xyxy(np.array([[5.0, 5.0, 2.0, 4.0]])).tolist()
        [[4.0, 3.0, 6.0, 7.0]]
    """
    c = np.asarray(cxcywh)
    half = c[..., 2:4] / 2
    return np.concatenate([c[..., :2] - half, c[..., :2] + half], axis=-1)


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (centre x, centre y, w, h).

    Example:
        >>> xyxy_to_cxcywh(np.array([[4.0, 3.0, 6.0, 7.0]])).tolist()
        [[5.0, 5.0, 2.0, 4.0]]
    """
    xyxy = np.asarray(xyxy)
    return np.concatenate([(xyxy[..., :2] + xyxy[..., 2:4]) / 2, xyxy[..., 2:4] - xyxy[..., :2]], axis=-1)


def clip_boxes(xyxy: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """Clip (x1, y1, x2, y2) boxes to an image of ``size`` = (height, width); returns a new array.

    Example:
        >>> clip_boxes(np.array([[-5.0, 2.0, 30.0, 8.0]]), size=(10, 20)).tolist()
        [[0.0, 2.0, 20.0, 8.0]]
    """
    height, width = size
    out = np.array(xyxy, copy=True)
    out[..., 0::2] = np.clip(out[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(out[..., 1::2], 0, height)
    return out
