"""Frames -> detector inputs: resize modes and their inverse mapping, gray/alpha/BGR frames, illumination
steps, layout and dtypes, building from a model, and one-line errors for bad frames and options."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecv.detection import Detections, load_spec
from edgecv.detection.frames import (
    ILLUMINATIONS,
    RESIZE_MODES,
    FrameOptions,
    FramePreprocessor,
    FrameTransform,
    gamma_lut,
    plan_letterbox,
    plan_stretch,
    resize_frame,
    resize_image,
)
from edgecv.errors import ConfigError, InputError, MissingDependencyError
from edgecv.manifest import Manifest, Preprocess, manifest_path
from edgecv.tensors import QuantParams, TensorInfo

RAW = Preprocess(mean=(0.0,), std=(1.0,))  # float input = pixel values, easy to read back


def cv2_or_skip():
    return pytest.importorskip("cv2")


def prep(input_size, *, dtype="uint8", pre=RAW, **options) -> FramePreprocessor:
    cv2_or_skip()
    return FramePreprocessor(input_size, pre, dtype=dtype, options=FrameOptions(**options))


def dets(boxes, keypoints=None) -> Detections:
    n = len(boxes)
    data = {} if keypoints is None else {"keypoints": np.asarray(keypoints, np.float32)}
    return Detections(np.asarray(boxes, np.float32), np.linspace(0.9, 0.5, n), np.arange(n), data=data)


def bright_box(image: np.ndarray, threshold: int = 127) -> list[int]:
    """[x1, y1, x2, y2] (pixel edges) of the pixels above ``threshold`` in channel 0 of an HWC image."""
    ys, xs = np.nonzero(image[..., 0] > threshold)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


FRAME_SIZES = [(480, 640), (640, 480), (300, 300), (101, 377)]  # landscape, portrait, square, odd
INPUT_SIZES = [(320, 320), (128, 128), (256, 192), (96, 160)]


# -- the mapping -------------------------------------------------------------------------------------------


def test_plans_for_a_landscape_frame_into_a_square_input():
    t = plan_letterbox((480, 640), (320, 320))
    assert (t.scale_x, t.scale_y, t.pad_x, t.pad_y) == (0.5, 0.5, 0, 40)
    assert t.content_size == (240, 320) and t.frame_size == (480, 640) and t.input_size == (320, 320)
    top_left = RESIZE_MODES["letterbox_top_left"]((480, 640), (320, 320))
    assert (top_left.pad_x, top_left.pad_y) == (0, 0) and top_left.content_size == (240, 320)
    s = plan_stretch((480, 640), (320, 320))
    assert (s.scale_x, s.scale_y, s.pad_x, s.pad_y) == (0.5, 320 / 480, 0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.pad_x = 3


@pytest.mark.parametrize("mode", sorted(RESIZE_MODES))
@pytest.mark.parametrize("frame_size", FRAME_SIZES)
@pytest.mark.parametrize("input_size", INPUT_SIZES)
def test_boxes_and_keypoints_round_trip_through_the_input(mode, frame_size, input_size):
    h, w = frame_size
    t = RESIZE_MODES[mode](frame_size, input_size)
    ch, cw = t.content_size
    assert ch <= input_size[0] and cw <= input_size[1]
    assert t.pad_x + cw <= input_size[1] and t.pad_y + ch <= input_size[0]
    boxes = [[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.55, h * 0.9], [3.5, 7.25, 9.0, 20.0]]
    kps = np.array([[[0, 0], [w, h]], [[w / 3, h / 4], [w / 2, h / 2]], [[4, 8], [8.5, 19]]])
    gt = dets(boxes, kps)
    back = t.to_frame(t.to_input(gt))
    np.testing.assert_allclose(back.xyxy, gt.xyxy, atol=0.5)
    np.testing.assert_allclose(back.data["keypoints"], gt.data["keypoints"], atol=0.5)
    if mode != "stretch":  # letterbox keeps the aspect ratio (to within the rounding of the content size)
        assert abs(t.scale_x - t.scale_y) <= 1.0 / min(h, w)


@pytest.mark.parametrize("mode", sorted(RESIZE_MODES))
@pytest.mark.parametrize("frame_size", [(480, 640), (640, 480), (101, 377)])
@pytest.mark.parametrize("input_size", [(320, 320), (96, 160)])
def test_the_mapping_matches_the_pixels_the_model_sees(mode, frame_size, input_size):
    h, w = frame_size
    frame = np.zeros((h, w, 3), np.uint8)
    box = [round(w * 0.3), round(h * 0.25), round(w * 0.7), round(h * 0.6)]
    frame[box[1] : box[3], box[0] : box[2]] = 255
    x, t = prep(input_size, resize=mode, pad_value=0)(frame)
    found = bright_box(x[0])
    mapped = t.to_input(dets([box])).xyxy[0]
    np.testing.assert_allclose(found, mapped, atol=1.0)  # one input pixel
    back = t.to_frame(dets([found])).xyxy[0]
    np.testing.assert_allclose(back, box, atol=1.0 / min(t.scale_x, t.scale_y))


def test_to_frame_clips_to_the_frame_and_keeps_everything_else():
    t = plan_letterbox((100, 200), (100, 100))  # content 50x100 at pad_y 25
    det = Detections(
        np.array([[-10, 0, 50, 30], [10, 20, 120, 90]], np.float32), [0.9, 0.8], [3, 4], tracker_id=[7, 8],
        data={"keypoints": np.array([[[50, 50], [-5, 10]], [[100, 100], [0, 25]]], np.float32),
              "tag": np.array([1, 2])},
    )
    out = t.to_frame(det)
    np.testing.assert_allclose(out.xyxy, [[0, 0, 100, 10], [20, 0, 200, 100]])
    np.testing.assert_allclose(out.data["keypoints"], [[[100, 50], [0, 0]], [[200, 100], [0, 0]]])
    assert out.class_id.tolist() == [3, 4] and out.tracker_id.tolist() == [7, 8]
    assert out.data["tag"].tolist() == [1, 2] and not np.shares_memory(out.data["tag"], det.data["tag"])
    np.testing.assert_allclose(t.to_frame(det, clip=False).xyxy[0], [-20, -50, 100, 10])
    assert len(t.to_frame(Detections.empty())) == 0


def test_keypoints_with_a_third_value_map_x_and_y_only():
    t = plan_stretch((100, 100), (50, 200))
    kps = np.array([[[10, 20, 0.7]]], np.float32)
    out = t.to_input(Detections(np.array([[0, 0, 10, 10]]), [1.0], [0], data={"keypoints": kps}))
    np.testing.assert_allclose(out.data["keypoints"], [[[20, 10, 0.7]]], rtol=1e-6)


def test_mapping_never_modifies_its_input():
    t = plan_letterbox((480, 640), (320, 320))
    det = dets([[-5, 10, 700, 20], [1, 2, 3, 4]], keypoints=[[[-1, 1]], [[2, 900]]])
    before = {k: np.copy(v) for k, v in [("xyxy", det.xyxy), ("c", det.confidence), ("kp", det.data["keypoints"])]}
    for out in (t.to_frame(det), t.to_input(det)):
        assert out is not det and not np.shares_memory(out.xyxy, det.xyxy)
        assert not np.shares_memory(out.confidence, det.confidence)
    np.testing.assert_array_equal(det.xyxy, before["xyxy"])
    np.testing.assert_array_equal(det.confidence, before["c"])
    np.testing.assert_array_equal(det.data["keypoints"], before["kp"])
    xy = np.array([[10.0, 20.0]])
    t.to_frame_xy(xy), t.to_input_xy(xy)
    assert xy.tolist() == [[10.0, 20.0]]


# -- resizing pixels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, pad_rows", [("letterbox", (slice(0, 40), slice(120, 160))),
                                            ("letterbox_top_left", (slice(80, 160),))])
def test_letterbox_keeps_a_square_square_and_pads_with_the_pad_value(mode, pad_rows):
    frame = np.zeros((240, 480, 3), np.uint8)
    frame[60:180, 200:320] = 255  # a 120 px square
    x, t = prep((160, 160), resize=mode, pad_value=114)(frame)
    img = x[0]
    assert img.shape == (160, 160, 3) and t.content_size == (80, 160)
    for rows in pad_rows:
        assert (img[rows] == 114).all()
    x1, y1, x2, y2 = bright_box(img)
    assert abs((x2 - x1) - (y2 - y1)) <= 1 and abs((x2 - x1) - 40) <= 1
    stretched = bright_box(prep((160, 160), resize="stretch")(frame)[0][0])
    assert (stretched[2] - stretched[0]) * 2 == pytest.approx(stretched[3] - stretched[1], abs=2)  # not square


@pytest.mark.parametrize("shape, size, passes", [
    # (image h x w, target (w, h), the resizes OpenCV is asked for, as (interpolation, (w, h)))
    ((576, 768), (160, 160), [("INTER_LINEAR", (480, 480)), ("INTER_AREA", (160, 160))]),  # 4.8x: k = 3
    ((576, 768), (300, 300), [("INTER_LINEAR", (600, 600)), ("INTER_AREA", (300, 300))]),  # 2.56x: k = 2
    ((576, 768), (400, 300), [("INTER_AREA", (400, 300))]),  # 1.92x at most: one area pass
    ((100, 80), (160, 160), [("INTER_LINEAR", (160, 160))]),  # enlarging
], ids=["4.8x", "2.56x", "under 2x", "enlarge"])
def test_resize_image_averages_in_two_passes_past_2x(shape, size, passes):
    cv2 = cv2_or_skip()
    image = np.random.default_rng(3).integers(0, 256, (*shape, 3), np.uint8)
    want = image
    for interp, wh in passes:
        want = cv2.resize(want, wh, interpolation=getattr(cv2, interp))
    np.testing.assert_array_equal(resize_image(image, size), want)


@pytest.mark.parametrize("shape, size, error, message", [
    ((10, 10, 3), (0, 5), ConfigError, "resize: expected a size (width, height) of at least 1x1, got (0, 5)"),
    ((10, 10, 3), (5,), ConfigError, "resize: expected a size (width, height) of at least 1x1, got (5,)"),
    ((0, 10, 3), (5, 5), InputError, "resize: expected a non-empty image [H,W] or [H,W,C], got shape [0, 10, 3]"),
    ((10,), (5, 5), InputError, "resize: expected a non-empty image [H,W] or [H,W,C], got shape [10]"),
])
def test_resize_image_refuses_bad_sizes_and_images_in_one_line(shape, size, error, message):
    with pytest.raises(error) as exc:
        resize_image(np.zeros(shape, np.uint8), size)
    assert str(exc.value) == message


def test_resize_image_stays_within_half_a_level_of_an_area_resize_on_a_real_frame(shared_data):
    cv2 = cv2_or_skip()
    ok, frame = cv2.VideoCapture(str(shared_data / "video" / "vtest.avi")).read()
    assert ok
    for size in ((160, 160), (300, 300), (320, 240)):
        area = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(np.float64)
        diff = np.abs(resize_image(frame, size).astype(np.float64) - area)
        assert diff.mean() < 0.5, (size, diff.mean())


def test_a_frame_of_the_input_size_is_copied_not_resized():
    frame = np.random.default_rng(0).integers(0, 256, (64, 48, 3), np.uint8)
    for mode in RESIZE_MODES:
        image, t = resize_frame(frame, (64, 48), mode=mode)
        np.testing.assert_array_equal(image, frame)
        assert not np.shares_memory(image, frame) and (t.scale_x, t.scale_y, t.pad_x, t.pad_y) == (1, 1, 0, 0)


def test_gray_alpha_and_bgr_frames_give_the_same_input_as_rgb():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (90, 120), np.uint8)
    rgb = rng.integers(0, 256, (90, 120, 3), np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (90, 120, 1), np.uint8)], axis=2)
    for mode in RESIZE_MODES:
        pre = prep((64, 64), resize=mode)
        want_gray = pre(np.repeat(gray[..., None], 3, axis=2))[0]
        np.testing.assert_array_equal(pre(gray)[0], want_gray)
        np.testing.assert_array_equal(pre(gray[..., None])[0], want_gray)
        np.testing.assert_array_equal(pre(rgba)[0], pre(rgb)[0])  # alpha dropped, colours kept
        bgr = prep((64, 64), resize=mode, frame_color="BGR")
        np.testing.assert_array_equal(bgr(rgb[..., ::-1])[0], pre(rgb)[0])
        np.testing.assert_array_equal(bgr(rgba[..., [2, 1, 0, 3]])[0], pre(rgb)[0])


# -- illumination ------------------------------------------------------------------------------------------


def test_gamma_lut_is_monotonic_and_gamma_brightens_a_dark_frame():
    for g in (0.3, 0.7, 1.0, 2.2):
        lut = gamma_lut(g)
        assert lut[0] == 0 and lut[255] == 255 and (np.diff(lut.astype(int)) >= 0).all()
    assert (gamma_lut(1.0) == np.arange(256)).all()
    dark = np.tile(np.linspace(10, 70, 64).astype(np.uint8), (48, 1))[..., None].repeat(3, axis=2)
    plain = prep((48, 64))(dark)[0]
    bright = prep((48, 64), illumination="gamma", gamma=0.5)(dark)[0]
    assert bright.mean() > plain.mean() + 40
    row = bright[0, 0, :, 0].astype(int)
    assert (np.diff(row) >= 0).all()  # order of brightness is kept


@pytest.mark.parametrize("level, direction", [(30, 1), (200, -1)])
def test_auto_gamma_moves_mean_luminance_towards_mid_grey(level, direction):
    rng = np.random.default_rng(2)
    frame = np.clip(rng.normal(level, 12, (60, 80, 3)), 0, 255).astype(np.uint8)
    out = prep((60, 80), illumination="auto_gamma")(frame)[0].astype(float)
    assert abs(out.mean() - 128) < 30
    assert np.sign(out.mean() - frame.mean()) == direction


def test_clahe_raises_local_contrast_of_the_luminance_and_keeps_hue():
    cv2 = cv2_or_skip()
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (128, 128)).astype(np.float32), (0, 0), 3)
    texture = texture / np.abs(texture).max()
    base = np.array([150, 90, 60], np.float32)  # a dull orange, low contrast
    frame = np.clip(base + 8 * texture[..., None], 0, 255).astype(np.uint8)
    out = prep((128, 128), illumination="clahe", clahe_clip=3.0, clahe_tiles=4)(frame)[0][0]

    def luma_std(img):
        return float((img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).std())

    assert luma_std(out) > 2 * luma_std(frame)
    hue = [float(cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 0].astype(float).mean()) for img in (frame, out)]
    assert abs(hue[0] - hue[1]) < 3  # OpenCV hue is 0..180 for uint8


@pytest.mark.parametrize("illumination", sorted(ILLUMINATIONS))
@pytest.mark.parametrize("mode", sorted(RESIZE_MODES))
def test_frames_are_never_modified(illumination, mode):
    rng = np.random.default_rng(4)
    for frame in (rng.integers(0, 256, (50, 70, 3), np.uint8), rng.integers(0, 256, (64, 64), np.uint8),
                  rng.integers(0, 256, (64, 64, 4), np.uint8)):
        before = frame.copy()
        x, _ = prep((64, 64), dtype="float32", resize=mode, illumination=illumination)(frame)
        np.testing.assert_array_equal(frame, before)
        assert not np.shares_memory(x, frame)


def test_illumination_leaves_the_padding_alone():
    frame = np.full((50, 100, 3), 40, np.uint8)
    x, t = prep((100, 100), resize="letterbox", pad_value=0, illumination="auto_gamma")(frame)
    assert (x[0, : t.pad_y] == 0).all() and (x[0, t.pad_y + 50 :] == 0).all()
    assert x[0, t.pad_y : t.pad_y + 50].min() > 40


# -- layout, normalization, dtypes -------------------------------------------------------------------------


@pytest.mark.parametrize("layout, color, dtype, shape", [
    ("NHWC", "RGB", "float32", (1, 48, 64, 3)),
    ("NCHW", "RGB", "float32", (1, 3, 48, 64)),
    ("NCHW", "BGR", "uint8", (1, 3, 48, 64)),
    ("NHWC", "RGB", "int8", (1, 48, 64, 3)),
    ("NHWC", "GRAY", "float16", (1, 48, 64, 1)),
    ("NCHW", "GRAY", "uint8", (1, 1, 48, 64)),
])
def test_layouts_colours_and_dtypes(layout, color, dtype, shape):
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[..., 0] = 200  # pure red
    pre = prep((48, 64), dtype=dtype, pre=Preprocess(layout=layout, color=color, mean=(127.5,), std=(127.5,)))
    x, t = pre(frame)
    assert x.shape == shape == pre.input_shape and x.dtype == np.dtype(dtype) and x.flags.c_contiguous
    assert (t.scale_x, t.scale_y) == (0.5, 0.5)
    channels_last = x[0] if layout == "NHWC" else x[0].transpose(1, 2, 0)
    pixel = channels_last[0, 0].astype(float)
    red = {"RGB": [200, 0, 0], "BGR": [0, 0, 200], "GRAY": [0.299 * 200]}[color]
    expect = {"uint8": np.floor(red), "int8": np.array(red) - 128}.get(dtype, (np.array(red) - 127.5) / 127.5)
    np.testing.assert_allclose(pixel, expect, atol=0.01)


# -- from a model ------------------------------------------------------------------------------------------


@pytest.fixture()
def onnx_with_manifest(tiny_onnx, tmp_path) -> Path:
    path = shutil.copy(tiny_onnx, tmp_path / "tiny.fp32.onnx")
    pre = Preprocess(color="BGR", mean=(10.0,), std=(2.0,))
    Manifest(format="onnx", precision="fp32", preprocess=pre).write(manifest_path(path))
    return Path(path)


def test_from_model_takes_size_layout_and_dtype_from_the_model_and_normalization_from_the_spec(tiny_onnx):
    import edgecv

    cv2_or_skip()
    model = edgecv.load(tiny_onnx, threads=1)
    spec = load_spec("blazeface-short-range")  # mean 127.5, std 127.5, RGB
    pre = FramePreprocessor.from_model(model, spec=spec, options=FrameOptions(resize="letterbox"))
    assert pre.input_size == (8, 8) and pre.input_shape == (1, 3, 8, 8) and pre.dtype == "float32"
    assert pre.preprocess == Preprocess(layout="NCHW", color="RGB", mean=(127.5,), std=(127.5,))
    x, t = pre(np.full((30, 60, 3), 255, np.uint8))
    assert (t.pad_x, t.pad_y, t.content_size) == (0, 2, (4, 8))
    assert x[0, :, 2:6].min() == 1.0 and x[0, :, :2].max() < 0  # content white, padding 114 -> negative
    scores, = model.run(x)
    assert scores.shape == (1, 5)
    assert "8x8 float32 NCHW RGB" in repr(pre)


def test_from_model_reads_the_manifest_and_the_spec_wins(onnx_with_manifest):
    import edgecv

    cv2_or_skip()
    model = edgecv.load(onnx_with_manifest, threads=1)
    pre = FramePreprocessor.from_model(model)
    assert pre.preprocess == Preprocess(layout="NCHW", color="BGR", mean=(10.0,), std=(2.0,))
    assert FramePreprocessor.from_model(model, spec=load_spec("blazeface-short-range")).preprocess.mean == (127.5,)
    colour_only = FramePreprocessor.from_model(model, spec=load_spec("ssd-mobilenet-v1-coco"))
    assert colour_only.preprocess == Preprocess(layout="NCHW", color="RGB", mean=(10.0,), std=(2.0,))


def test_from_model_without_normalization_says_what_to_pass(tiny_onnx):
    import edgecv

    cv2_or_skip()
    model = edgecv.load(tiny_onnx, threads=1)
    with pytest.raises(ConfigError, match=r"tiny.onnx: no input normalization .*pass --mean/--std or a detector spec"):
        FramePreprocessor.from_model(model)
    with pytest.raises(ConfigError, match="ssd-mobilenet-v1-coco' gives no mean/std"):
        FramePreprocessor.from_model(model, spec=load_spec("ssd-mobilenet-v1-coco"))


def fake_model(shape, dtype, *, float_io=False, quant=None, manifest=None):
    """What from_model reads of a Model: inputs, manifest, float_io and path."""
    return SimpleNamespace(inputs=[TensorInfo("images", shape, dtype, quant=quant)], manifest=manifest,
                           float_io=float_io, path=Path("detector.tflite"))


def test_from_model_with_integer_and_quantized_inputs():
    cv2_or_skip()
    quant = QuantParams((1 / 255,), (-128,))
    raw = FramePreprocessor.from_model(fake_model((1, 300, 300, 3), "uint8"), spec=load_spec("ssd-mobilenet-v1-coco"))
    assert raw.input_shape == (1, 300, 300, 3) and raw.dtype == "uint8"  # raw pixels: no mean/std needed
    int8 = FramePreprocessor.from_model(fake_model((1, 96, 96, 3), "int8", quant=quant))
    assert int8.dtype == "int8" and int8(np.zeros((10, 10, 3), np.uint8))[0].min() == -128
    with pytest.raises(ConfigError, match="no input normalization"):  # float_io: the model takes float
        FramePreprocessor.from_model(fake_model((1, 96, 96, 3), "int8", quant=quant, float_io=True))
    fed_float = FramePreprocessor.from_model(fake_model((1, 96, 96, 3), "int8", quant=quant, float_io=True),
                                             spec=load_spec("blazeface-short-range"))
    assert fed_float.dtype == "float32"
    gray = FramePreprocessor.from_model(fake_model((1, 1, 28, 28), "uint8"))
    assert gray.preprocess.color == "GRAY" and gray.input_shape == (1, 1, 28, 28)
    dynamic = FramePreprocessor.from_model(fake_model((None, None, None, 3), "uint8"), input_size=(240, 320))
    assert dynamic.input_shape == (1, 240, 320, 3)


# -- errors ------------------------------------------------------------------------------------------------


def run_frame(frame):
    return lambda: prep((16, 16))(frame)


def make(**kw):
    return lambda: prep((16, 16), **kw)


BAD = [
    # (case, call, error, message)
    ("valid uint8 rgb", run_frame(np.zeros((10, 20, 3), np.uint8)), None, None),
    ("float frame", run_frame(np.zeros((10, 20, 3), np.float32)), InputError,
     r"frame: expected a uint8 frame \[H,W\], \[H,W,1\], \[H,W,3\] or \[H,W,4\], got float32 \[10,20,3\]"),
    ("batch of frames", run_frame(np.zeros((1, 10, 20, 3), np.uint8)), InputError, r"got uint8 \[1,10,20,3\]"),
    ("two channels", run_frame(np.zeros((10, 20, 2), np.uint8)), InputError, r"got uint8 \[10,20,2\]"),
    ("1-D", run_frame(np.zeros(10, np.uint8)), InputError, r"got uint8 \[10\]"),
    ("empty", run_frame(np.zeros((0, 20, 3), np.uint8)), InputError,
     r"expected a non-empty image, got uint8 \[0,20,3\]"),
    ("a list", run_frame([[1, 2], [3, 4]]), InputError, "got list"),
    ("resize", make(resize="crop"), ConfigError,
     "resize: expected one of stretch, letterbox, letterbox_top_left, got 'crop'"),
    ("illumination", make(illumination="hdr"), ConfigError,
     "illumination: expected one of none, gamma, auto_gamma, clahe, got 'hdr'"),
    ("frame colour", make(frame_color="GRAY"), ConfigError, "frame_color: expected one of RGB, BGR"),
    ("pad value", make(pad_value=300), ConfigError, "pad_value: expected an integer in 0..255, got 300"),
    ("gamma", make(gamma=0), ConfigError, "gamma: expected a positive number, got 0"),
    ("clahe clip", make(clahe_clip=float("nan")), ConfigError, "clahe_clip: expected a positive number"),
    ("clahe tiles", make(clahe_tiles=0), ConfigError, "clahe_tiles: expected a positive integer, got 0"),
    ("input size", lambda: prep((0, 16)), ConfigError, r"input_size: expected \(height, width\)"),
    ("dtype", lambda: prep((16, 16), dtype="str"), ConfigError, "dtype: expected a numpy integer or float dtype"),
    ("layout", lambda: prep((16, 16), pre=Preprocess(layout="NC")), ConfigError, "preprocess layout: expected one of"),
    ("gray mean", lambda: prep((16, 16), pre=Preprocess(color="GRAY", mean=(1, 2, 3), std=(1,))), ConfigError,
     r"preprocess mean: expected 1 value for a GRAY input, got \[1.0, 2.0, 3.0\]"),
    ("rgb std", lambda: prep((16, 16), pre=Preprocess(mean=(1, 2), std=(1, 2))), ConfigError,
     "preprocess mean: expected 1 or 3 values for an RGB or BGR input"),
    ("resize_frame size", lambda: resize_frame(np.zeros((4, 4), np.uint8), (2, 0)), ConfigError,
     r"input_size: expected \(height, width\), two positive integers, got \(2, 0\)"),
    ("resize_frame mode", lambda: resize_frame(np.zeros((4, 4), np.uint8), (2, 2), mode="fit"), ConfigError,
     "resize: expected one of stretch"),
    ("to_frame", lambda: plan_stretch((4, 4), (2, 2)).to_frame([[0, 0, 1, 1]]), InputError,
     "expected Detections, got list"),
    ("keypoints", lambda: plan_stretch((4, 4), (2, 2)).to_frame(
        Detections(np.zeros((1, 4)), [1.0], [0], data={"keypoints": np.zeros((1, 6))})), InputError,
     r"keypoints'\]: expected numbers \[N,K,2\], got float64 \[1,6\]"),
    ("model layout", lambda: FramePreprocessor.from_model(fake_model((1, 10), "float32")), ConfigError,
     "detector.tflite: expected an NHWC or NCHW image input, got images 1x10 float32 NC"),
    ("dynamic size", lambda: FramePreprocessor.from_model(fake_model((1, None, None, 3), "uint8")), ConfigError,
     r"dynamic height or width; set input_size: \[height, width\] in the detector spec \(or pass input_size=\(h, w\)\)"),
    ("wrong size", lambda: FramePreprocessor.from_model(fake_model((1, 8, 8, 3), "uint8"), input_size=(9, 8)),
     ConfigError, r"input_size: expected the model's 8x8, got \(9, 8\)"),
    ("gray model, rgb spec", lambda: FramePreprocessor.from_model(
        fake_model((1, 28, 28, 1), "uint8"), spec=load_spec("ssd-mobilenet-v1-coco")), ConfigError,
     "has 1 channel.s. but the colour order is RGB"),
]


@pytest.mark.parametrize("case, call, error, message", BAD, ids=[row[0] for row in BAD])
def test_bad_frames_and_options_give_one_line_errors(case, call, error, message):
    cv2_or_skip()
    if error is None:
        call()
        return
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgecv\[opencv\]'"):
        FramePreprocessor((8, 8), RAW)
    with pytest.raises(MissingDependencyError, match=r"to equalize frames with CLAHE"):
        ILLUMINATIONS["clahe"](FrameOptions(illumination="clahe"))
    # The numpy-only parts work without it.
    assert gamma_lut(0.5)[64] > 64 and plan_letterbox((10, 20), (8, 8)).pad_y == 2


def test_importing_frames_loads_no_cv2():
    code = "import sys, json, edgecv.detection.frames; print(json.dumps('cv2' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) is False


def test_frame_transform_is_plain_data():
    t = FrameTransform(0.5, 0.5, 0, 40, (480, 640), (320, 320))
    assert t == plan_letterbox((480, 640), (320, 320)) and dataclasses.asdict(t)["pad_y"] == 40


@pytest.mark.parametrize(
    "options, spec_fields, resize, pad",
    [
        (FrameOptions(), {}, "stretch", 114),  # nothing said anywhere: the defaults
        (FrameOptions(), {"resize": "letterbox", "pad_value": 0}, "letterbox", 0),  # the spec's
        (FrameOptions(resize="stretch"), {"resize": "letterbox", "pad_value": 0}, "stretch", 0),  # the caller's wins
        (FrameOptions(pad_value=7), {"resize": "letterbox_top_left", "pad_value": 0}, "letterbox_top_left", 7),
    ],
)
def test_frame_options_take_the_spec_resize_and_padding_unless_given(options, spec_fields, resize, pad):
    spec = dataclasses.replace(load_spec("scene-detector"), **{"resize": None, **spec_fields})
    done = options.resolved(spec)
    assert (done.resize, done.pad_value) == (resize, pad)
    assert done.resolved() == done and options.resolved() == dataclasses.replace(
        options, resize=options.resize or "stretch", pad_value=114 if options.pad_value is None else options.pad_value)
    # A preprocessor built without a spec has concrete options too.
    cv2_or_skip()
    assert FramePreprocessor((8, 8), Preprocess(), options=options).options.resize == (options.resize or "stretch")
