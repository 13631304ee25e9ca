"""Calibration/eval datasets: folders, videos, arrays and Python iterables, checked against hand computations."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgecv.converters.data import Dataset, InputSpec, open_dataset
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess
from edgecv.tensors import TensorInfo

cv2 = pytest.importorskip("cv2")

UNIT = Preprocess(mean=(0,), std=(255,))  # pixels -> [0, 1]
SYM = Preprocess(mean=(127.5,), std=(127.5,))  # pixels -> [-1, 1]
NHWC8 = InputSpec((1, 8, 8, 3), "NHWC", preprocess=UNIT)
DIGIT = InputSpec((1, 28, 28, 1), "NHWC", preprocess=Preprocess(color="GRAY", mean=(0,), std=(1,)))


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_video(path: Path, frames: int = 40, size=(64, 48)) -> Path:
    """An MJPG .avi whose frame k is uniformly grey at 6*k, so a frame's brightness tells its index."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for k in range(frames):
        writer.write(np.full((size[1], size[0], 3), 6 * k, np.uint8))
    writer.release()
    return path


def frame_index(x: np.ndarray) -> int:
    return int(np.rint(float(x.mean()) / 6))  # JPEG shifts uniform grey by ~1.3, well under half a step


# --- folders ---------------------------------------------------------------------------------------------------


def test_folder_images_are_resized_and_normalized_like_a_manual_pipeline(tmp_path):
    big, small = noise((20, 30, 3), 1), noise((4, 6, 3), 2)
    write_png(tmp_path / "a.png", big)
    write_png(tmp_path / "b.png", small)
    expected = [
        # 3.75x smaller: bilinear to twice the size, then the exact 2x2 average
        cv2.resize(cv2.resize(big, (16, 16), interpolation=cv2.INTER_LINEAR), (8, 8),
                   interpolation=cv2.INTER_AREA).astype(np.float32) / 255,
        cv2.resize(small, (8, 8), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255,
    ]
    ds = open_dataset(tmp_path, spec=NHWC8)
    samples = list(ds)
    assert len(ds) == 2 and ds.description == f"2 images in {tmp_path.name}/" and not ds.has_labels
    for (x, label), want in zip(samples, expected):
        assert x.shape == (1, 8, 8, 3) and x.dtype == np.float32 and label is None
        np.testing.assert_allclose(x[0], want, atol=1e-6)

    nchw = open_dataset(tmp_path, spec=InputSpec((None, 3, 8, 8), "NCHW", preprocess=SYM))
    x = nchw.batch()
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[1], (expected[1] * 255 - 127.5).transpose(2, 0, 1) / 127.5, atol=1e-5)


@pytest.mark.parametrize("color, first", [("RGB", 1.0), ("BGR", 0.0)])
def test_colour_order_follows_the_preprocess(tmp_path, color, first):
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    write_png(tmp_path / "red.png", red)
    x = open_dataset(tmp_path, spec=InputSpec((1, 8, 8, 3), "NHWC", preprocess=replace_color(color))).batch()
    assert x[0, :, :, 0].min() == x[0, :, :, 0].max() == first
    assert x[0, :, :, 2].max() == 1.0 - first and x[0, :, :, 1].max() == 0.0


def replace_color(color: str) -> Preprocess:
    return Preprocess(color=color, mean=(0,), std=(255,))


def test_one_channel_models_get_grey_pixels(tmp_path):
    write_png(tmp_path / "x.png", np.full((28, 28, 3), (200, 100, 50), np.uint8))
    grey = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    x = open_dataset(tmp_path, spec=DIGIT).batch()
    assert x.shape == (1, 28, 28, 1) and np.all(np.abs(x - grey) <= 1)


def test_integer_inputs_get_raw_pixels(tmp_path):
    pixels = noise((8, 8, 3), 3)
    write_png(tmp_path / "x.png", pixels)
    u8 = open_dataset(tmp_path, spec=InputSpec((1, 8, 8, 3), "NHWC", "uint8")).batch()
    i8 = open_dataset(tmp_path, spec=InputSpec((1, 8, 8, 3), "NHWC", "int8")).batch()
    assert u8.dtype == np.uint8 and i8.dtype == np.int8
    np.testing.assert_array_equal(u8[0], pixels)
    np.testing.assert_array_equal(i8[0], pixels.astype(np.int16) - 128)


def test_class_folders_give_labels(tmp_path):
    for name, seed in [("cat", 0), ("dog", 1), ("dog", 2)]:
        write_png(tmp_path / "pets" / name / f"{seed}.png", noise((8, 8, 3), seed))
    ds = open_dataset(tmp_path / "pets", spec=NHWC8, labels=["bird", "cat", "dog"], require_labels=True, what="eval")
    assert [y for _, y in ds] == [1, 2, 2] and ds.has_labels

    for digit in ("3", "7"):
        write_png(tmp_path / "digits" / digit / "a.png", noise((28, 28, 3)))
    assert [y for _, y in open_dataset(tmp_path / "digits", spec=DIGIT, require_labels=True)] == [3, 7]

    unknown = r"eval set .*pets/: class folders cat are not among the model's classes \(dog, bird\)"
    with pytest.raises(InputError, match=unknown):
        open_dataset(tmp_path / "pets", spec=NHWC8, labels=["dog", "bird"], what="eval")
    with pytest.raises(InputError, match="cat, dog are not class numbers; pass the model's labels"):
        open_dataset(tmp_path / "pets", spec=NHWC8, require_labels=True)
    # Calibration does not need labels: sub-folders without class numbers are just organisation.
    assert [y for _, y in open_dataset(tmp_path / "pets", spec=NHWC8)] == [None, None, None]


def test_images_outside_class_folders_have_no_label(tmp_path):
    write_png(tmp_path / "3" / "a.png", noise((28, 28, 3)))
    write_png(tmp_path / "loose.png", noise((28, 28, 3)))
    ds = open_dataset(tmp_path, spec=DIGIT)
    assert [y for _, y in ds] == [3, None] and not ds.has_labels
    with pytest.raises(InputError, match="1 of 2 samples have no label .*<class>/image.png"):
        open_dataset(tmp_path, spec=DIGIT, require_labels=True, what="eval")


def test_the_cap_is_a_seeded_sorted_choice(tmp_path):
    for k in range(12):
        write_png(tmp_path / f"{k:02d}.png", np.full((8, 8, 3), 20 * k, np.uint8))
    raw = InputSpec((1, 8, 8, 3), "NHWC", "uint8")

    def picked(seed):
        return [int(x[0, 0, 0, 0]) // 20 for x in open_dataset(tmp_path, spec=raw, limit=5, seed=seed).inputs()]

    expected = sorted(np.random.default_rng(0).choice(12, 5, replace=False).tolist())
    assert picked(0) == expected == picked(0)
    assert picked(1) != picked(0)
    ds = open_dataset(tmp_path, spec=raw, limit=5)
    assert len(ds) == 5 and ds.description.startswith("5 of 12 images")
    assert len(open_dataset(tmp_path, spec=raw, limit=None)) == 12


# --- videos ----------------------------------------------------------------------------------------------------


def test_video_frames_are_sampled_evenly_and_deterministically(tmp_path):
    video = write_video(tmp_path / "clip.avi")
    ds = open_dataset(video, spec=InputSpec((1, 16, 16, 3), "NHWC", "uint8"), limit=5)
    assert len(ds) == 5 and ds.description == "5 of 40 frames of clip.avi" and not ds.has_labels
    first = list(ds)
    # np.linspace(0, 39, 5) = 0, 9.75, 19.5, 29.25, 39 -> rounded (half to even)
    assert [frame_index(x) for x, _ in first] == [0, 10, 20, 29, 39]
    assert all(label is None for _, label in first)
    for (a, _), (b, _) in zip(first, ds):
        np.testing.assert_array_equal(a, b)
    every = open_dataset(video, spec=InputSpec((1, 16, 16, 3), "NHWC", "uint8"), limit=None)
    assert [frame_index(x) for x in every.inputs()] == list(range(40))


def test_video_without_a_frame_count_is_counted(tmp_path, monkeypatch):
    real = cv2.VideoCapture

    class NoCount:  # a wrapper: a subclass of cv2.VideoCapture segfaults the process later (OpenCV 5.0)
        def __init__(self, path):
            self.cap = real(path)

        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.cap.get(prop)

        def __getattr__(self, name):
            return getattr(self.cap, name)

    video = write_video(tmp_path / "clip.avi", frames=12)
    monkeypatch.setattr(cv2, "VideoCapture", NoCount)
    ds = open_dataset(video, spec=InputSpec((1, 16, 16, 3), "NHWC", "uint8"), limit=3)
    assert ds.description == "3 of 12 frames of clip.avi"
    assert [frame_index(x) for x in ds.inputs()] == [0, 6, 11]  # linspace(0, 11, 3) = 0, 5.5, 11


@pytest.mark.parametrize("kind", ["video", "folder", "npy"])
def test_paths_may_be_given_as_strings(tmp_path, kind):
    if kind == "video":
        path = write_video(tmp_path / "clip.avi", frames=4)
    elif kind == "folder":
        for i in range(4):
            (tmp_path / "imgs").mkdir(exist_ok=True)
            write_png(tmp_path / "imgs" / f"{i}.png", np.full((16, 16, 3), 40 * i, np.uint8))
        path = tmp_path / "imgs"
    else:
        path = tmp_path / "x.npy"
        np.save(path, np.zeros((4, 8, 8, 3), np.uint8))
    by_str = open_dataset(str(path), spec=NHWC8, limit=None)
    by_path = open_dataset(path, spec=NHWC8, limit=None)
    assert len(by_str) == 4 and by_str.description == by_path.description
    np.testing.assert_array_equal(by_str.batch(), by_path.batch())


def test_video_needs_labels_for_eval(tmp_path):
    with pytest.raises(InputError, match="video frames have no labels"):
        open_dataset(write_video(tmp_path / "clip.avi", frames=3), spec=NHWC8, require_labels=True, what="eval")


def test_real_video_frames_fit_a_blazeface_input(shared_data):
    spec = InputSpec((1, 128, 128, 3), "NHWC", preprocess=SYM)  # BlazeFace's input
    ds = open_dataset(shared_data / "video" / "vtest.avi", spec=spec, limit=5)
    assert len(ds) == 5 and ds.description == "5 of 795 frames of vtest.avi"
    x = ds.batch()
    assert x.shape == (5, 128, 128, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.max() - x.min() > 1.0
    assert all(np.abs(x[i] - x[i + 1]).mean() > 0.005 for i in range(4))  # people move between frames


# --- arrays ----------------------------------------------------------------------------------------------------


def test_uint8_npy_is_normalized_and_float_npy_is_used_as_is(tmp_path):
    pixels = noise((6, 28, 28), 4)
    np.save(tmp_path / "digits.npy", pixels)
    spec = InputSpec((1, 1, 28, 28), "NCHW", preprocess=Preprocess(mean=(0,), std=(255,)))
    x = open_dataset(tmp_path / "digits.npy", spec=spec).batch()
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], pixels / np.float32(255), atol=1e-6)

    inputs = np.random.default_rng(5).normal(size=(6, 28, 28)).astype(np.float64)
    np.save(tmp_path / "inputs.npy", inputs)
    for shape, layout, axis in [((1, 1, 28, 28), "NCHW", 1), ((None, 28, 28, 1), "NHWC", 3)]:
        x = open_dataset(tmp_path / "inputs.npy", spec=InputSpec(shape, layout, preprocess=SYM)).batch()
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, np.expand_dims(inputs, axis).astype(np.float32))  # no normalization


def test_npz_with_labels_and_an_iterable_of_pairs(tmp_path):
    images, y = noise((5, 28, 28, 1), 6), np.array([0, 3, 9, 3, 1])
    np.savez(tmp_path / "eval.npz", images=images, labels=y)
    digits = [str(d) for d in range(10)]
    ds = open_dataset(tmp_path / "eval.npz", spec=DIGIT, labels=digits, require_labels=True, what="eval")
    samples = list(ds)
    assert [label for _, label in samples] == y.tolist() and ds.has_labels
    np.testing.assert_array_equal(samples[2][0][0], images[2].astype(np.float32))

    pairs = [(images[i], int(y[i])) for i in range(5)]  # single samples without a batch axis
    from_list = list(open_dataset(pairs, spec=DIGIT, require_labels=True))
    assert [label for _, label in from_list] == y.tolist()
    np.testing.assert_array_equal(from_list[4][0], samples[4][0])

    batches = iter([(images[:3], y[:3]), (images[3:], y[3:])])  # a one-shot generator of labelled batches
    ds = open_dataset(batches, spec=DIGIT, limit=4)
    assert len(ds) == 4 and [label for _, label in ds] == [0, 3, 9, 3] == [label for _, label in ds]


def test_float_arrays_are_checked_for_nan_in_the_chosen_samples_only(tmp_path):
    x = np.zeros((40, 1, 28, 28), np.float32)
    x[17, 0, 3, 4] = np.nan
    x[30, 0, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    spec = InputSpec((1, 1, 28, 28), "NCHW")
    with pytest.raises(InputError, match=r"^calibration array .*x\.npy has NaN at sample 17$"):
        open_dataset(tmp_path / "x.npy", spec=spec, limit=None)
    chosen = np.sort(np.random.default_rng(0).choice(40, 3, replace=False))
    assert not {17, 30} & set(chosen.tolist())
    assert len(open_dataset(tmp_path / "x.npy", spec=spec, limit=3)) == 3
    with pytest.raises(InputError, match=r"^calibration data item 1 has inf at sample 1$"):
        open_dataset([np.zeros((1, 1, 28, 28)), np.full((1, 1, 28, 28), np.inf)], spec=spec)


def test_a_large_npy_is_memory_mapped_not_loaded(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, size=(20000, 28, 28), dtype=np.uint8))  # 15.7 MB
    open_dataset(path, spec=DIGIT, limit=2).batch()  # warm up imports and caches outside the measurement
    tracemalloc.start()
    try:
        ds = open_dataset(path, spec=DIGIT, limit=10)
        x = ds.batch()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert x.shape == (10, 28, 28, 1) and ds.description == "10 of 20000 samples of big.npy"
    assert peak < 2_000_000, f"peak {peak} bytes: the array was read into memory"


def test_datasets_pass_through_and_spec_from_tensor(tmp_path):
    spec = InputSpec.from_tensor(TensorInfo("x", (None, 3, 8, 8), "float32"), Preprocess())
    assert (spec.layout, spec.height, spec.width, spec.channels, spec.sample_shape) == ("NCHW", 8, 8, 3, (1, 3, 8, 8))
    ds = open_dataset(np.zeros((2, 3, 8, 8), np.float32), spec=spec)
    assert isinstance(ds, Dataset) and open_dataset(ds, spec=spec) is ds and ds.batch(1).shape == (1, 3, 8, 8)


# --- bad input: one line naming the problem ---------------------------------------------------------------------


def _empty_folder(tmp):
    (tmp / "photos").mkdir()
    (tmp / "photos" / "notes.txt").write_text("no images here")
    return tmp / "photos", {}


def _garbage_png(tmp):
    (tmp / "x.png").write_bytes(b"definitely not a PNG")
    return tmp, {}


def _npy(array, **kw):
    def make(tmp):
        np.save(tmp / "x.npy", array)
        return tmp / "x.npy", kw

    return make


def _npz(**arrays):
    def make(tmp):
        np.savez(tmp / "e.npz", **arrays)
        return tmp / "e.npz", {"labels": [str(d) for d in range(10)], "what": "eval"}

    return make


def _file(name, content=b"x"):
    def make(tmp):
        (tmp / name).write_bytes(content)
        return tmp / name, {}

    return make


NAN = np.zeros((3, 28, 28, 1), np.float32)
NAN[2, 5, 5, 0] = np.nan

BAD_INPUTS = [
    ("empty folder", _empty_folder, InputError, r"calibration set .*photos/ has no images \(looked for .jpg"),
    ("missing path", lambda tmp: (tmp / "nope", {}), InputError, r"nope not found; expected a folder of images"),
    ("unsupported suffix", _file("notes.txt"), InputError, r"is not a folder, image, video or array \(\.txt\); expected"),
    ("undecodable image", _garbage_png, InputError, r"calibration image .*x\.png cannot be read"),
    ("not a video", _file("clip.mp4", b"\0" * 100), InputError, r"video .*clip\.mp4 cannot be opened"),
    ("wrong size array", _npy(noise((4, 32, 32, 3))), InputError, r"x\.npy: images are 32x32x3, the model takes 28x28x1$"),
    ("one channel for colour", _npy(noise((4, 8, 8)), spec=NHWC8), InputError, r"images are 8x8x1, the model takes 8x8x3"),
    ("wrong float shape", _npy(np.zeros((4, 28, 28, 3), np.float32)), InputError, r"samples are 28x28x3, the model takes 28x28x1"),
    ("NaN", _npy(NAN), InputError, r"calibration array .*x\.npy has NaN at sample 2$"),
    ("int32 array", _npy(np.zeros((2, 28, 28), np.int32)), InputError, r"dtype int32: expected uint8 pixels or float"),
    ("empty array", _npy(np.zeros((0, 28, 28), np.uint8)), InputError, r"^calibration set \S*x\.npy is empty$"),
    ("empty list", lambda tmp: ([], {}), InputError, r"^calibration set <list> is empty$"),
    ("float for a uint8 model", _npy(np.zeros((2, 28, 28, 1), np.float32), spec=InputSpec((1, 28, 28, 1), "NHWC", "uint8")),
     InputError, r"x\.npy is float32 but the model takes uint8; give uint8 pixels"),
    ("labels out of range", _npz(x=noise((3, 28, 28)), y=np.array([0, 11, 2])), InputError,
     r"^eval labels go up to 11 but the model has 10 classes$"),
    ("negative label", _npz(x=noise((3, 28, 28)), y=np.array([0, -1, 2])), InputError, r"eval labels include -1"),
    ("label count", _npz(x=noise((3, 28, 28)), y=np.array([0, 1])), InputError, r"eval set .*e\.npz has 3 samples but 2 labels"),
    ("float labels", _npz(x=noise((3, 28, 28)), y=np.array([0.0, 1.0, 2.0])), InputError, r"expected one integer class index"),
    ("no image key", _npz(a=noise((3, 28, 28)), b=np.arange(3)), InputError, r"no images under 'x' or 'images'"),
    ("bad limit", _npy(noise((3, 28, 28)), limit=0), ConfigError, r"limit: expected a positive number"),
    ("not data", lambda tmp: (42, {}), InputError, r"data of type int is not usable; expected"),
]


@pytest.mark.parametrize("make, error, message", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gives_a_one_line_error(tmp_path, make, error, message):
    data, kwargs = make(tmp_path)
    kwargs.setdefault("spec", DIGIT)
    with pytest.raises(error, match=message) as info:
        list(open_dataset(data, **kwargs))  # iterate: images are decoded lazily
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "spec, message",
    [
        (InputSpec((1, None, None, 3), "NHWC"), "input has dynamic height/width; give --input-shape"),
        (InputSpec((1, 8, 8, 3), "NHWC", preprocess=Preprocess(color="GRAY")), "GRAY but input"),
        (InputSpec((1, 8, 8, 1), "NHWC", preprocess=Preprocess(mean=(1, 2, 3), std=(1, 1, 1))), "mean has 3 values"),
        (InputSpec((1, 10), "NC"), "is not an image"),
    ],
)
def test_specs_that_images_cannot_fill_are_config_errors(tmp_path, spec, message):
    write_png(tmp_path / "x.png", noise((8, 8, 3)))
    with pytest.raises(ConfigError, match=message):
        open_dataset(tmp_path, spec=spec)


# --- one image, globs (issue 14) ----------------------------------------------------------------------------------


def test_one_image_file_is_a_set_of_one_read_like_a_folder(tmp_path):
    rgb = noise((20, 30, 3), 11)
    write_png(tmp_path / "only" / "shot.png", rgb)
    one = open_dataset(tmp_path / "only" / "shot.png", spec=NHWC8, what="eval")
    assert len(one) == 1 and one.description == "1 image from shot.png" and not one.has_labels
    np.testing.assert_array_equal(one.batch(), open_dataset(tmp_path / "only", spec=NHWC8).batch())
    assert len(open_dataset(str(tmp_path / "only" / "shot.png"), spec=NHWC8)) == 1  # a string too


@pytest.mark.parametrize("as_path", [False, True])  # the CLI hands a Path
def test_a_glob_takes_the_images_it_matches_with_labels_from_class_folders(tmp_path, as_path):
    for k, cls in enumerate(["3", "7", "3"]):
        write_png(tmp_path / "set" / cls / f"{k}.png", noise((8, 8, 3), k))
    write_png(tmp_path / "set" / "7" / "big.jpg", noise((8, 8, 3), 9))  # not matched by *.png
    (tmp_path / "set" / "3" / "notes.png.txt").write_text("x")
    pattern = str(tmp_path / "set" / "*" / "*.png")
    ds = open_dataset(Path(pattern) if as_path else pattern, spec=NHWC8, limit=None, require_labels=True, what="eval")
    assert len(ds) == 3 and ds.description == f"3 images matching {pattern}"
    assert [y for _, y in ds] == [3, 3, 7]  # sorted by path: 3/0.png, 3/2.png, 7/1.png
    folder = open_dataset(tmp_path / "set", spec=NHWC8, limit=None)
    np.testing.assert_array_equal(ds.batch(), folder.batch()[:3])  # the folder has 3/0, 3/2, 7/1, then 7/big.jpg
    recursive = open_dataset(str(tmp_path / "set" / "**" / "*.jpg"), spec=NHWC8)
    assert len(recursive) == 1


@pytest.mark.parametrize("pattern, message", [
    ("none/*.png", r"^eval data \S*none/\*\.png matches no file$"),
    ("txt/*", r"^eval data \S*txt/\* ; it matches 1 files, none an image"),
    ("txt/**a/*.png", r"^eval data \S*txt/\*\*a/\*\.png is not a usable glob: "),
])
def test_a_glob_without_images_is_refused(tmp_path, pattern, message):
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(InputError, match=message.replace(" ;", ";")):
        open_dataset(str(tmp_path / pattern), spec=NHWC8, what="eval")


# --- float arrays: model inputs or pixels, by their range (issue 14) -----------------------------------------------

CAFFE = Preprocess(mean=(123.675,), std=(1.0,))  # mean subtraction only: model inputs -123.7..131.3
IMAGENET = Preprocess(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
RAW = Preprocess(mean=(0,), std=(1,))


def _uniform(lo, hi, shape=(5, 8, 8, 3)):
    return np.random.default_rng(3).uniform(lo, hi, size=shape).astype(np.float32)


@pytest.mark.parametrize("name, pre, layout, array, reading, log_level", [
    ("model inputs [-1, 1]", SYM, "NHWC", _uniform(-1, 1), "as-is", "INFO"),
    ("float pixels for [-1, 1]", SYM, "NHWC", _uniform(0, 255), "pixels", "WARNING"),
    ("model inputs [0, 1]", UNIT, "NHWC", _uniform(0, 1), "as-is", "INFO"),
    ("float pixels for [0, 1]", UNIT, "NHWC", _uniform(0, 255), "pixels", "WARNING"),
    ("all zeros", UNIT, "NHWC", np.zeros((3, 8, 8, 3), np.float32), "as-is", "INFO"),
    ("ImageNet inputs, NCHW", IMAGENET, "NCHW", _uniform(-2.1, 2.6, (4, 3, 8, 8)), "as-is", "INFO"),
    ("ImageNet float pixels, NCHW", IMAGENET, "NCHW", _uniform(0, 255, (4, 3, 8, 8)), "pixels", "WARNING"),
    ("outside both", SYM, "NHWC", _uniform(-3, 3), "as-is", "WARNING"),
    ("mean 0, std 1: one reading", RAW, "NHWC", _uniform(0, 255), "as-is", None),
    ("both fit", CAFFE, "NHWC", _uniform(0, 130), "refused", None),
])
def test_a_float_array_is_read_as_model_inputs_or_pixels_by_its_range(tmp_path, caplog, name, pre, layout, array, reading, log_level):
    np.save(tmp_path / "x.npy", array)
    shape = (1, *array.shape[1:])
    spec = InputSpec(shape, layout, preprocess=pre)
    caplog.set_level("INFO", logger="edgecv.converters.data")
    if reading == "refused":
        with pytest.raises(InputError, match=r"^calibration array \S*x\.npy holds 0\.\d+\.\.1[23]\d\.?\d*: that reads both as model inputs for "
                                              r"mean 123\.675, std 1 \(-123\.7\.\.131\.3\) and as pixels 0\.\.255; give the pixels as uint8$"):
            open_dataset(tmp_path / "x.npy", spec=spec)
        return
    ds = open_dataset(tmp_path / "x.npy", spec=spec)
    x = ds.batch()
    if reading == "pixels":
        axis_shape = (1, -1, 1, 1) if layout == "NCHW" else (1, 1, 1, -1)
        mean, std = np.reshape(pre.mean, axis_shape), np.reshape(pre.std, axis_shape)
        np.testing.assert_allclose(x, (array - mean) / std, rtol=1e-5, atol=1e-5)
        assert ds.description.endswith("(float pixels, normalized with mean/std)")
    else:
        np.testing.assert_array_equal(x, array)
        assert "normalized" not in ds.description
    notes = [r for r in caplog.records if r.name == "edgecv.converters.data" and "x.npy holds" in r.getMessage()]
    assert [r.levelname for r in notes] == ([log_level] if log_level else [])


def test_float_pixels_from_python_are_normalized_once_too(caplog):
    pixels = _uniform(0, 255, (2, 8, 8, 3))
    spec = InputSpec((1, 8, 8, 3), "NHWC", preprocess=SYM)
    ds = open_dataset([pixels[0], pixels[1]], spec=spec, limit=None)
    np.testing.assert_allclose(ds.batch(), (pixels - 127.5) / 127.5, atol=1e-6)
    assert ds.description == "2 samples from Python (float pixels, normalized with mean/std)"
