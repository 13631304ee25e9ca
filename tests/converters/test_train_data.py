"""Labelled training data: the forms it takes, the seeded split, separate held-out data, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.converters.train_data import TrainingData, open_training_data
from edgecv.errors import InputError
from edgecv.manifest import Preprocess

PIXELS = Preprocess(mean=(0,), std=(255,))


def _digits(n: int, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)
    x[:, 0, 0, 0] = y  # tags each image with its label, so the tests can follow samples through splits
    return x, y


def _open(data, **kwargs) -> TrainingData:
    return open_training_data(data, input_shape=(8, 8, 1), preprocess=PIXELS, **kwargs)


def test_arrays_are_preprocessed_and_split_with_a_seed():
    x, y = _digits(40)
    a, b, c = _open((x, y), seed=1), _open((x, y), seed=1), _open((x, y), seed=2)
    assert (len(a.x), len(a.x_val), a.classes) == (36, 4, 3)
    assert a.x.dtype == np.float32 and float(a.x.max()) <= 1.0
    np.testing.assert_allclose(a.x[:, 0, 0, 0] * 255, a.y, atol=1e-4)  # labels stay with their images
    np.testing.assert_array_equal(a.y_val, b.y_val)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    assert a.description.endswith("(36 train, 4 validation)")


def test_npz_and_arrays_give_the_same_samples(tmp_path):
    x, y = _digits(20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    a, b = _open(tmp_path / "d.npz", validation=0.0), _open((x, y), validation=0.0)
    np.testing.assert_array_equal(np.sort(a.y), np.sort(b.y))
    assert len(a.x_val) == 0 and len(a.x) == 20


def test_held_out_data_is_scored_instead_of_a_split(tmp_path):
    x, y = _digits(30)
    xe, ye = _digits(12, seed=5)
    np.savez(tmp_path / "eval.npz", x=xe, y=ye)
    td = _open((x, y), held_out=tmp_path / "eval.npz", limit=20)
    assert len(td.x) == 20  # the limit caps the training data only; all of it trains
    assert len(td.x_val) == 12
    np.testing.assert_allclose(np.sort(td.x_val[:, 0, 0, 0] * 255), np.sort(ye), atol=1e-4)
    assert "held out" in td.description


def test_an_opened_set_passes_through_unchanged():
    td = _open(_digits(10))
    assert _open(td, held_out=_digits(4)) is td


@pytest.mark.parametrize("data, kwargs, error, match", [
    ((np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, int)), {}, InputError, "is empty"),
    ((np.zeros((4, 8, 8, 1), np.uint8), np.zeros(3, int)), {}, InputError, "4 images but 3 labels"),
    ((np.zeros((4, 8, 8, 1), np.uint8), np.zeros(4, int)), {}, InputError, "at least two classes"),
    (_digits(10), {"validation": 1.0}, InputError, r"validation share: expected a value in \[0, 1\)"),
    (_digits(10), {"held_out": _digits(6, classes=5)}, InputError, "held-out labels go up to 4"),
    (_digits(10), {"held_out": (np.zeros((2, 8, 8, 1), np.uint8), np.zeros(3, int))}, InputError, "held-out data: 2 images"),
    (_digits(10), {"held_out": (np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, int))}, InputError, "held-out set .* is empty"),
    ((np.zeros((4, 9, 9, 1), np.uint8), np.arange(4) % 2), {}, InputError, r"training images are 9x9x1, the model takes 8x8x1"),
    (_digits(10), {"held_out": None}, None, None),
])
def test_bad_training_data_is_one_clear_error(data, kwargs, error, match):
    if error is None:
        assert len(_open(data, **kwargs).x) == 9
        return
    with pytest.raises(error, match=match):
        _open(data, **kwargs)


def test_a_tf_dataset_cannot_be_the_held_out_set():
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices(_digits(4)).batch(2)
    with pytest.raises(InputError, match="held-out data: expected a folder"):
        _open(_digits(10), held_out=ds)
