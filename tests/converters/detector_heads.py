"""Tiny ONNX detectors built in-process with the two head layouts that int8 quantization destroys, their
detector specs and images for them (tests/converters/test_output_ranges.py), and close-ups of a real face for
BlazeFace (:func:`portrait_closeups`).

- :func:`yolo_like`: a YOLOv8-style ``[1, 4+nc, N]`` output joining boxes in input pixels (an anchor grid
  added in the graph, as Ultralytics decodes) and sigmoid class scores: one int8 scale for both rounds every
  score to 0 or to one step of the pixel range.
- :func:`yolo_dfl_like`: Ultralytics' own v8 head at three strides: bin logits per box edge, a softmax over them
  and their expectation (DFL), anchor points and strides, joined with the class scores in ``[1, 4+nc, N]``;
  ``--cut-decode`` cuts it before the DFL.
- :func:`ssd_like`: a BlazeFace-style pair, boxes ``[1, A, 4]`` and score logits ``[1, A, 1]``, where
  background cells of one colour give logits near -1000: the calibrated logit range then makes one int8 step
  about 4 logits, and scores near the threshold jump.

Example:
    >>> x = blobs(2, seed=0)
    >>> x.shape, x.dtype.name
    ((2, 32, 32, 3), 'uint8')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
CELL = 4  # ssd_like's stride: one anchor per 4x4 cell


def _save(path: Path, nodes, inits, outputs) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolo_like(path: Path, nc: int = 2) -> Path:
    """``y [1, 4+nc, 1024]``: per pixel, a box of 8x8 px at the pixel's centre (times 10) jittered by
    channel 1, and class k's score a sigmoid of channel 0 (k=0) or 2 (k=1)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    n = SIZE * SIZE
    wb = np.zeros((4, 3, 1, 1), np.float32)
    wb[:, 1, 0, 0] = [3, 3, 2, 2]
    ws = np.zeros((nc, 3, 1, 1), np.float32)
    ws[0, 0], ws[1, 2] = 6, 6
    i, j = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    grid = np.stack([(j + 0.5) * 10, (i + 0.5) * 10, np.full_like(i, 8), np.full_like(i, 8)])[None]
    nodes = [
        helper.make_node("Conv", ["x", "wb"], ["offsets"]),
        helper.make_node("Add", ["offsets", "grid"], ["decoded"]),
        helper.make_node("Reshape", ["decoded", "box_shape"], ["boxes"]),
        helper.make_node("Conv", ["x", "ws", "bs"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
        helper.make_node("Reshape", ["probs", "score_shape"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1),
    ]
    inits = [nh.from_array(wb, "wb"), nh.from_array(grid, "grid"), nh.from_array(np.array([1, 4, n], np.int64), "box_shape"),
             nh.from_array(ws, "ws"), nh.from_array(np.full(nc, -3.0, np.float32), "bs"),
             nh.from_array(np.array([1, nc, n], np.int64), "score_shape")]
    return _save(path, nodes, inits, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4 + nc, n])])


YOLO_SPEC = """name: yolo-like
decoder: yolo
decoder_options: {layout: v8, num_classes: 2}
score_threshold: 0.5
labels: [a, b]
"""


STRIDES = (8, 16, 32)
REG_MAX = 16


def yolo_dfl_like(path: Path, nc: int = 2, *, anchor_offset: float = 0.5) -> Path:
    """``y [1, 4+nc, 21]`` as Ultralytics' v8 head makes it at 32x32, over its three strides: each stride-s cell
    (one s x s conv) gives per box edge 16 bin logits peaking near 1.5 strides, moved by the cell's mean of
    channel 1, and class k's logit 24 * mean(channel 0 or 2) - 3. Then, as Ultralytics exports it: reshape,
    softmax over the bins, a fixed 1x1 conv with weights 0..15, anchor points minus and plus the distances,
    centre and size, times the strides, joined with the sigmoid scores. ``anchor_offset``: where in its cell an
    anchor point sits (Ultralytics: the centre; 0 puts it at a corner, which no cut decoder assumes)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    width = 4 * REG_MAX + nc
    bins = np.arange(REG_MAX, dtype=np.float32)
    nodes, inits, parts, points, strides = [], [], [], [], []
    for s in STRIDES:
        g = SIZE // s
        w = np.zeros((width, 3, s, s), np.float32)
        b = np.zeros(width, np.float32)
        for edge in range(4):
            rows = slice(edge * REG_MAX, (edge + 1) * REG_MAX)
            w[rows, 1] = (0.4 * (bins - 1.5) * (1 + edge % 2))[:, None, None] / (s * s)
            b[rows] = -2.0 * np.minimum(np.abs(bins - 1.5), 3.0)
        w[4 * REG_MAX, 0], w[4 * REG_MAX + 1, 2] = 24.0 / (s * s), 24.0 / (s * s)
        b[4 * REG_MAX :] = -3.0
        inits += [nh.from_array(w, f"w{s}"), nh.from_array(b, f"b{s}"), nh.from_array(np.array([1, width, g * g], np.int64), f"shape{s}")]
        nodes += [helper.make_node("Conv", ["x", f"w{s}", f"b{s}"], [f"head{s}"], strides=[s, s]),
                  helper.make_node("Reshape", [f"head{s}", f"shape{s}"], [f"flat{s}"])]
        parts.append(f"flat{s}")
        i, j = np.mgrid[0:g, 0:g].astype(np.float32)
        points.append(np.stack([j.ravel() + anchor_offset, i.ravel() + anchor_offset]))
        strides.append(np.full(g * g, float(s), np.float32))
    n = sum((SIZE // s) ** 2 for s in STRIDES)
    inits += [nh.from_array(np.array([4 * REG_MAX, nc], np.int64), "split"),
              nh.from_array(np.array([1, 4, REG_MAX, n], np.int64), "bins_shape"),
              nh.from_array(bins.reshape(1, REG_MAX, 1, 1), "expect"),
              nh.from_array(np.array([1, 4, n], np.int64), "dist_shape"),
              nh.from_array(np.concatenate(points, axis=1)[None], "anchors"),
              nh.from_array(np.concatenate(strides)[None], "strides"),
              nh.from_array(np.array([2.0], np.float32), "two")]
    nodes += [
        helper.make_node("Concat", parts, ["all"], axis=2),
        helper.make_node("Split", ["all", "split"], ["box", "cls"], axis=1),
        helper.make_node("Reshape", ["box", "bins_shape"], ["b4"]),
        helper.make_node("Transpose", ["b4"], ["bt"], perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["bt"], ["p"], axis=1),
        helper.make_node("Conv", ["p", "expect"], ["d4"]),
        helper.make_node("Reshape", ["d4", "dist_shape"], ["dist"]),
        helper.make_node("Split", ["dist", "half"], ["lt", "rb"], axis=1),
        helper.make_node("Sub", ["anchors", "lt"], ["x1y1"]),
        helper.make_node("Add", ["anchors", "rb"], ["x2y2"]),
        helper.make_node("Add", ["x1y1", "x2y2"], ["sum"]),
        helper.make_node("Div", ["sum", "two"], ["centre"]),
        helper.make_node("Sub", ["x2y2", "x1y1"], ["size"]),
        helper.make_node("Concat", ["centre", "size"], ["cwh"], axis=1),
        helper.make_node("Mul", ["cwh", "strides"], ["boxes"]),
        helper.make_node("Sigmoid", ["cls"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1),
    ]
    inits.append(nh.from_array(np.array([2, 2], np.int64), "half"))
    return _save(path, nodes, inits, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4 + nc, n])])


YOLO_DFL_SPEC = """name: yolo-dfl-like
decoder: yolo
decoder_options: {layout: v8, num_classes: 2}
score_threshold: 0.5
nms: {method: hard, iou_threshold: 0.5}
labels: [a, b]
"""


def ssd_like(path: Path) -> Path:
    """``boxes [1, 64, 4]`` (dx, dy near 0, w = h = 4 px) and ``logits [1, 64, 1]`` = 8 x0 - 3 - 1000 x2
    of each 4x4 cell's top-left pixel (x = pixels / 255)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    a = (SIZE // CELL) ** 2
    wb = np.zeros((4, 3, 1, 1), np.float32)
    wb[0, 1], wb[1, 1] = 0.5, 0.5
    wo, ws = np.zeros((1, 3, 1, 1), np.float32), np.zeros((1, 3, 1, 1), np.float32)
    wo[0, 0], ws[0, 2] = 8.0, -1000.0  # object evidence, sky evidence: separate tensors, each its own int8 scale
    nodes = [
        helper.make_node("Conv", ["x", "wb", "bb"], ["b0"], strides=[CELL, CELL]),
        helper.make_node("Transpose", ["b0"], ["b1"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["b1", "box_shape"], ["boxes"]),
        helper.make_node("Conv", ["x", "wo", "bl"], ["object"], strides=[CELL, CELL]),
        helper.make_node("Conv", ["x", "ws"], ["sky"], strides=[CELL, CELL]),
        helper.make_node("Add", ["object", "sky"], ["l0"]),
        helper.make_node("Transpose", ["l0"], ["l1"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["l1", "logit_shape"], ["logits"]),
    ]
    inits = [nh.from_array(wb, "wb"), nh.from_array(np.array([0, 0, 4, 4], np.float32), "bb"),
             nh.from_array(np.array([1, a, 4], np.int64), "box_shape"), nh.from_array(wo, "wo"), nh.from_array(ws, "ws"),
             nh.from_array(np.array([-3.0], np.float32), "bl"), nh.from_array(np.array([1, a, 1], np.int64), "logit_shape")]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, a, 4]),
               helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, a, 1])]
    return _save(path, nodes, inits, outputs)


SSD_SPEC = f"""name: ssd-like
decoder: ssd_anchors
decoder_options:
  anchors:
    input_size_height: {SIZE}
    input_size_width: {SIZE}
    num_layers: 1
    min_scale: 0.125
    max_scale: 0.125
    strides: [{CELL}]
    aspect_ratios: [1.0]
    interpolated_scale_aspect_ratio: 0.0
    fixed_anchor_size: true
  num_coords: 4
  reverse_output_order: true
  x_scale: {SIZE}.0
  y_scale: {SIZE}.0
  w_scale: {SIZE}.0
  h_scale: {SIZE}.0
  sigmoid_score: true
score_threshold: 0.5
nms: {{method: hard, iou_threshold: 0.3}}
labels: [blob]
"""


def blobs(count: int, seed: int, *, sky: bool = True) -> np.ndarray:
    """``count`` 32x32 RGB uint8 images: dark noise (channels 0, 1) with four cell-aligned 4x4 squares, bright in channel 0
    (130..255: an object) or 2 (a class-1 object for yolo_like; "sky" that ssd_like scores near -1000)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 40, (count, SIZE, SIZE, 3)).astype(np.uint8)
    out[..., 2] = 0  # channel 2 is dark but for the squares
    cells = SIZE // CELL
    for k in range(count):
        for _ in range(4):
            y, x = rng.integers(0, cells, 2) * CELL
            channel = 2 if sky and rng.random() < 0.3 else 0
            out[k, y : y + CELL, x : x + CELL, channel] = rng.integers(130, 256)
    return out


def portrait_closeups(count: int, start: int = 0) -> np.ndarray:
    """Close-ups of matplotlib's sample portrait (a face MediaPipe's golden image does not show), at several
    scales, flipped and lit differently: 128x128 uint8 RGB, for BlazeFace. Images ``start`` to
    ``start + count`` of one sequence (it repeats after 420), so two ranges give two different sets."""
    import cv2
    from matplotlib import cbook

    portrait = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    padded = cv2.copyMakeBorder(portrait, 400, 400, 400, 400, cv2.BORDER_REFLECT)
    out = []
    for k in range(start, start + count):
        side = int(230 / (0.35 + 0.4 * (k % 5) / 4))  # the face fills 35..75% of the frame
        cx, cy = 660 + 10 * (k % 3 - 1), 650 + 10 * (k % 4 - 2)
        image = cv2.resize(padded[cy - side // 2 : cy + side // 2, cx - side // 2 : cx + side // 2], (128, 128),
                           interpolation=cv2.INTER_AREA)
        image = image[:, ::-1] if k % 2 else image
        out.append(np.clip(image.astype(np.float32) * (0.8 + 0.05 * (k % 7)), 0, 255).astype(np.uint8))
    return np.stack(out)
