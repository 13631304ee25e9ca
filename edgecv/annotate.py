"""Draw detections on a frame: boxes, labels with scores, track ids and keypoints (OpenCV, imported on use).

Example:
    >>> shown = annotate(frame, detections, labels=detector.labels)       # doctest: +SKIP
    >>> cv2.imwrite("shown.jpg", shown)                                     # doctest: +SKIP
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np

from edgecv.deps import require
from edgecv.detection.detections import Detections
from edgecv.errors import InputError
from edgecv.labels import label_of


def class_color(class_id: int) -> tuple[int, int, int]:
    """A bright colour per class, the same on every run, well apart for neighbouring ids (golden-ratio hues).

    Example:
        >>> class_color(0) == class_color(0) != class_color(1)
        True
    """
    hue = (int(class_id) * 0.618033988749895 + 0.13) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (round(b * 255), round(g * 255), round(r * 255))  # symmetric enough that RGB frames look fine too


def _as_color_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or image.size == 0:
        got = type(image).__name__ if not isinstance(image, np.ndarray) else \
            f"{image.dtype} [{','.join(map(str, image.shape))}]"
        raise InputError(f"annotate: expected a uint8 image [H,W], [H,W,1], [H,W,3] or [H,W,4], got {got}")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.array(image[..., :3], order="C", copy=True)


def annotate(
    image: np.ndarray,
    detections: Detections,
    *,
    labels: Sequence[str] | None = None,
    scores: bool = True,
    keypoints: bool = True,
    thickness: int | None = None,
    font_scale: float | None = None,
    copy: bool = True,
) -> np.ndarray:
    """A new ``[H, W, 3]`` uint8 copy of ``image`` with ``detections`` (in its pixels) drawn on it; with
    ``copy=False``, a C-contiguous ``[H, W, 3]`` uint8 ``image`` is drawn on itself and returned.

    Gray images come back as 3 channels (so that the boxes have colour), 4-channel ones without alpha;
    colour images keep their channel order. Each box gets its class colour and a caption: the label
    (:func:`edgecv.labels.label_of`: ``labels[class_id]``, else the id), the score (``scores``) and ``#track``
    when tracked; keypoints (``data["keypoints"]``) are dots. Line width and text size follow the image size unless given.
    """
    if not isinstance(detections, Detections):
        raise InputError(f"annotate: expected Detections, got {type(detections).__name__}")
    cv2 = require("cv2", extra="opencv", purpose="draw detections", package="opencv-python-headless")
    own = not copy and isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 \
        and image.shape[2] == 3 and image.flags.c_contiguous and image.flags.writeable
    out = image if own else _as_color_image(image)
    h, w = out.shape[:2]
    side = min(h, w)
    thickness = thickness or max(1, round(side / 320))
    font_scale = font_scale or max(0.35, side / 1200)
    text_thickness = max(1, thickness // 2)
    font = cv2.FONT_HERSHEY_SIMPLEX
    kps = detections.data.get("keypoints") if keypoints else None
    order = np.argsort(detections.confidence, kind="stable")  # best drawn last, on top
    # OpenCV takes int32 points: a box far outside the image (a model's raw 1e30) is drawn clipped to a margin
    # around it, which looks the same.
    far = np.array([w, h, w, h], np.float64)
    boxes = np.clip(detections.xyxy.astype(np.float64), -far, 2 * far)
    for i in order.tolist():
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i].tolist())
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        cid = int(detections.class_id[i])
        color = class_color(cid)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), color, thickness, cv2.LINE_AA if thickness > 1 else cv2.LINE_8)
        if kps is not None and kps.ndim == 3 and kps.shape[2] >= 2:
            for kx, ky in np.asarray(kps[i][:, :2], np.float64).tolist():
                if -w <= kx <= 2 * w and -h <= ky <= 2 * h:  # NaN (no keypoint) and far points are not drawn
                    cv2.circle(out, (int(round(kx)), int(round(ky))), thickness + 1, color, -1, cv2.LINE_AA)
        caption = label_of(labels, cid)
        if scores:
            caption += f" {float(detections.confidence[i]):.2f}"
        if detections.tracker_id is not None:
            caption += f" #{int(detections.tracker_id[i])}"
        (tw, th), base = cv2.getTextSize(caption, font, font_scale, text_thickness)
        # Above the box when there is room, else just inside its top edge; kept inside the image.
        ty = y0 - base - 2 if y0 - th - base - 2 >= 0 else min(y0 + th + 2, h - base - 1)
        tx = min(max(x0, 0), max(w - tw - 2, 0))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), color, -1)
        ink = (0, 0, 0) if sum(color) > 3 * 140 else (255, 255, 255)
        cv2.putText(out, caption, (tx + 1, ty), font, font_scale, ink, text_thickness, cv2.LINE_AA)
    return out
