"""The built-in default detector: a small fully-convolutional Keras detector of synthetic scene objects.

It is trained by this module on :mod:`edgecv.scenes` frames (exact boxes), so detection and tracking run
with nothing downloaded. Run it as a script to retrain and rewrite the committed weights::

    .venv/bin/python -m edgecv.converters.builtin_detector --out converters/assets/scene_detector.keras

Model: 160x160 RGB pixels / 255 in; a stride-2..16 backbone of depthwise-separable convs (each stage's
blocks after its first are residual) and a top-down path back to stride 8; two heads on the 20x20 grid,
``scores [1,20,20,1+nc]`` (sigmoid objectness, then sigmoid class probabilities) and ``boxes [1,20,20,4]``
(ReLU distances from the cell centre to the box edges, in strides). Only Conv, depthwise Conv, BN, ReLU,
nearest upsampling, Add and Sigmoid: int8 in every format, no custom ops. The
``grid`` decoder (:mod:`edgecv.detection.decoders.grid`) reads it; ``edgecv/detection/specs/scene-detector.yaml``
holds its spec.

Training targets (FCOS-like): a cell is positive for an object when its centre lies in the central
``CENTRE`` share of the object's box (the cell holding the box centre always is); a cell claimed by several
objects goes to the smallest. Losses: quality focal loss on objectness over all cells, whose target on a
positive cell is the IoU of the cell's predicted box with its object's box (so confidence ranks how well a
cell localizes, and NMS keeps the best box; GFL's QFL), BCE on the classes and IoU loss (weight
``box_weight``) on the boxes over positive cells. Adam at a high rate (BN makes most weights scale-free)
after a short warm-up, then a cosine.

Example:
    >>> model = build_detector()                                   # doctest: +SKIP
    >>> [o.shape for o in model.outputs]                           # doctest: +SKIP
    [(None, 20, 20, 5), (None, 20, 20, 4)]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgecv.detection import Detections
from edgecv.manifest import Preprocess

log = logging.getLogger(__name__)

INPUT_SIZE = (160, 160)
STRIDE = 8
CENTRE = 0.5
PREPROCESS = Preprocess(layout="NHWC", color="RGB", mean=(0.0,), std=(255.0,))
WEIGHTS = Path(__file__).resolve().parent / "assets" / "scene_detector.keras"
SPEC = "scene-detector"
# The scenes it is trained and scored on: edgecv.scenes' defaults with objects from 16 px (a tenth of the
# frame) instead of 8. At stride 8, objects under 16 px get one cell and were found a third of the time.
MIN_SCALE = 0.1


@dataclass(frozen=True)
class DetectorTraining:
    """How :func:`train_detector` trains: frames made (once), epochs, batch, peak learning rate, the share of
    steps spent warming up to it (from a twentieth of it), seed, the box loss's weight and the quality focal
    loss's exponent."""

    frames: int = 10000
    epochs: int = 8
    batch_size: int = 32
    lr: float = 2.4e-2
    warmup: float = 0.05
    seed: int = 0
    box_weight: float = 2.0
    quality_beta: float = 2.0


def build_detector(*, num_classes: int = 4, input_size: tuple[int, int] = INPUT_SIZE, seed: int = 0):
    """The untrained detector (a Keras functional model with outputs ``scores`` and ``boxes``)."""
    from edgecv.converters.tf_env import import_tensorflow

    import_tensorflow()
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def conv(x, filters, stride=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU()(x)

    def separable(x, filters, stride=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        return conv(x, filters, kernel=1)

    def stage(x, filters, blocks):
        x = separable(x, filters, stride=2)
        for _ in range(blocks - 1):
            x = layers.Add()([x, separable(x, filters)])
        return x

    inputs = keras.Input((*input_size, 3), name="image")
    x = conv(inputs, 16, stride=2)  # 80x80
    x = stage(x, 32, 2)             # 40x40
    f8 = stage(x, 96, 3)            # 20x20
    f16 = stage(f8, 128, 3)         # 10x10: room for the largest objects
    up = layers.UpSampling2D(interpolation="nearest")(conv(f16, 96, kernel=1))
    p8 = separable(layers.Add()([up, conv(f8, 96, kernel=1)]), 96)
    cls = separable(separable(p8, 64), 64)
    reg = separable(separable(p8, 64), 64)
    prior = float(-np.log((1 - 0.01) / 0.01))  # objectness starts at 1%, so the focal loss starts calm
    scores = layers.Conv2D(1 + num_classes, 1, bias_initializer=keras.initializers.Constant(prior), name="score_logits")(cls)
    scores = layers.Activation("sigmoid", name="scores")(scores)
    boxes = layers.Conv2D(4, 1, bias_initializer=keras.initializers.Constant(1.0), name="box_distances")(reg)
    boxes = layers.ReLU(name="boxes")(boxes)
    return keras.Model(inputs, [scores, boxes], name="scene_detector")


def encode_targets(truth: Sequence[Detections], *, num_classes: int, input_size: tuple[int, int] = INPUT_SIZE,
                   stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell training targets of a batch of ground truths (boxes in input pixels).

    Returns ``scores [N, H, W, 1+nc]`` (objectness then one-hot class, 0 on negatives) and
    ``boxes [N, H, W, 4]`` (left, top, right, bottom distances in strides; 0 on negatives).
    """
    rows, cols = input_size[0] // stride, input_size[1] // stride
    cy = (np.arange(rows, dtype=np.float32) + 0.5) * stride
    cx = (np.arange(cols, dtype=np.float32) + 0.5) * stride
    scores = np.zeros((len(truth), rows, cols, 1 + num_classes), np.float32)
    boxes = np.zeros((len(truth), rows, cols, 4), np.float32)
    for n, det in enumerate(truth):
        if not len(det):
            continue
        xyxy = det.xyxy.astype(np.float32)
        area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
        claimed = np.full((rows, cols), np.inf, np.float32)
        for i in np.argsort(-area):  # smallest last, so it wins shared cells
            x1, y1, x2, y2 = xyxy[i]
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            hw, hh = max(CENTRE * (x2 - x1) / 2, stride / 2), max(CENTRE * (y2 - y1) / 2, stride / 2)
            inside_x = (np.abs(cx - mx) <= hw) & (cx > x1) & (cx < x2)
            inside_y = (np.abs(cy - my) <= hh) & (cy > y1) & (cy < y2)
            r0, c0 = min(int(my // stride), rows - 1), min(int(mx // stride), cols - 1)
            inside_x[c0] = inside_y[r0] = True
            cells = inside_y[:, None] & inside_x[None, :] & (area[i] <= claimed)
            claimed[cells] = area[i]
            r, c = np.nonzero(cells)
            scores[n, r, c] = 0.0
            scores[n, r, c, 0] = 1.0
            scores[n, r, c, 1 + int(det.class_id[i])] = 1.0
            boxes[n, r, c] = np.stack([cx[c] - x1, cy[r] - y1, x2 - cx[c], y2 - cy[r]], axis=1) / stride
    return scores, np.maximum(boxes, 0.0)


def detector_loss(options: DetectorTraining = DetectorTraining()):
    """``loss(y_true, y_pred)`` of the training model, whose one output is ``scores`` and ``boxes`` joined on
    the last axis; ``y_true`` is :func:`encode_targets`' pair joined the same way."""
    import tensorflow as tf

    def loss(y_true, y_pred):
        score_t, box_t = y_true[..., :-4], y_true[..., -4:]
        p, box_p = tf.clip_by_value(y_pred[..., :-4], 1e-6, 1 - 1e-6), y_pred[..., -4:]
        positive = score_t[..., 0]
        positives = tf.maximum(tf.reduce_sum(positive), 1.0)
        l, t, r, b = tf.unstack(box_p, axis=-1)
        lt, tt, rt, bt = tf.unstack(box_t, axis=-1)
        inter = (tf.minimum(l, lt) + tf.minimum(r, rt)) * (tf.minimum(t, tt) + tf.minimum(b, bt))
        union = (l + r) * (t + b) + (lt + rt) * (tt + bt) - inter
        iou = inter / tf.maximum(union, 1e-6)
        quality = tf.stop_gradient(positive * tf.maximum(iou, 0.0))
        obj = p[..., 0]
        bce = -(quality * tf.math.log(obj) + (1 - quality) * tf.math.log(1 - obj))
        objectness = tf.reduce_sum(tf.pow(tf.abs(quality - obj), options.quality_beta) * bce) / positives
        cls_t, cls_p = score_t[..., 1:], p[..., 1:]
        cls_bce = -(cls_t * tf.math.log(cls_p) + (1 - cls_t) * tf.math.log(1 - cls_p))
        classes = tf.reduce_sum(tf.reduce_sum(cls_bce, axis=-1) * positive) / positives
        boxes = tf.reduce_sum((1 - iou) * positive) / positives
        return objectness + classes + options.box_weight * boxes

    return loss


def make_frames(count: int, *, seed: int) -> tuple[np.ndarray, list[Detections]]:
    """``count`` scene frames at the detector's input size and their ground truth."""
    from edgecv.scenes import SceneOptions, scene_frames

    return scene_frames(count, seed=seed, options=SceneOptions(size=INPUT_SIZE, min_scale=MIN_SCALE))


def train_detector(*, options: DetectorTraining = DetectorTraining(), progress: bool = True) -> Any:
    """Build and train the detector on ``options.frames`` scene frames (seeded), each epoch in a new order
    and randomly mirrored; returns the Keras model."""
    from edgecv.converters.tf_env import import_tensorflow

    tf = import_tensorflow()
    import keras

    from edgecv.scenes import CLASSES

    start = time.perf_counter()
    images, truth = make_frames(options.frames, seed=options.seed)
    targets = np.concatenate(encode_targets(truth, num_classes=len(CLASSES)), axis=-1)
    log.info("%d frames and targets made in %.0f s", len(images), time.perf_counter() - start)
    model = build_detector(num_classes=len(CLASSES), seed=options.seed)
    # one output, so the objectness loss sees the predicted boxes; it shares every layer with ``model``
    joined = keras.Model(model.inputs, keras.layers.Concatenate()(list(model.outputs)))
    total = options.frames // options.batch_size * options.epochs
    warmup = int(options.warmup * total)
    schedule = keras.optimizers.schedules.CosineDecay(options.lr / 20, decay_steps=total - warmup, alpha=0.02,
                                                      warmup_target=options.lr, warmup_steps=warmup)
    joined.compile(optimizer=keras.optimizers.Adam(schedule), loss=detector_loss(options))
    nc = len(CLASSES)
    swap = [*range(1 + nc), nc + 3, nc + 2, nc + 1, nc + 4]  # left and right box distances trade places

    def mirror(x, y):
        # the grid is symmetric, so a mirrored frame's targets are the mirrored grid with left/right swapped
        flip = tf.random.uniform((tf.shape(x)[0], 1, 1, 1)) < 0.5
        x = tf.where(flip, x[:, :, ::-1], x)
        y = tf.where(flip, tf.gather(y[:, :, ::-1], swap, axis=-1), y)
        return tf.cast(x, tf.float32) / 255.0, y

    tf.random.set_seed(options.seed)
    ds = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(len(images), seed=options.seed)
    ds = ds.batch(options.batch_size, drop_remainder=True).map(mirror).prefetch(2)
    joined.fit(ds, epochs=options.epochs, verbose=1 if progress else 2)
    log.info("trained in %.0f s", time.perf_counter() - start)
    return model


def detect_frames(model: Any, images: np.ndarray, *, spec: Any = None, batch_size: int = 64) -> list[Detections]:
    """The Keras model's detections on ``images`` (uint8 at the input size), decoded with ``spec``
    (default: the built-in ``scene-detector`` spec with every score kept, for mAP)."""
    from dataclasses import replace

    from edgecv.detection import load_spec

    spec = spec or replace(load_spec(SPEC), score_threshold=0.05)
    scores, boxes = model.predict(images.astype(np.float32) / 255.0, batch_size=batch_size, verbose=0)
    return [spec.detect([scores[i:i + 1], boxes[i:i + 1]], input_size=images.shape[1:3]) for i in range(len(images))]


def evaluate_detector(model: Any, *, count: int = 500, seed: int = 1000) -> Any:
    """COCO-style metrics (:class:`edgecv.detection.evaluate.DetectionMetrics`) on fresh frames of ``seed``."""
    from edgecv.detection.evaluate import evaluate_detections
    from edgecv.scenes import CLASSES

    images, truth = make_frames(count, seed=seed)
    return evaluate_detections(truth, detect_frames(model, images), labels=list(CLASSES))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=WEIGHTS, help=f"where to save the .keras model (default {WEIGHTS})")
    p.add_argument("--frames", type=int, default=DetectorTraining.frames, help="training frames")
    p.add_argument("--epochs", type=int, default=DetectorTraining.epochs)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.perf_counter()
    model = train_detector(options=DetectorTraining(frames=args.frames, epochs=args.epochs, seed=args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    log.info("saved %s (%d parameters, %.0f KB) after %.0f s", args.out, model.count_params(),
             args.out.stat().st_size / 1024, time.perf_counter() - start)
    metrics = evaluate_detector(model)
    log.info("held-out seed 1000, 500 frames: mAP@0.5 %.4f, mAP@[.5:.95] %.4f", metrics.map50, metrics.map)


if __name__ == "__main__":
    main()
