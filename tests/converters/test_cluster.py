"""Weight clustering (tfmot, in a worker process): every Conv2D and Dense kernel keeps at most the clusters
asked, the given model is unchanged, the sparsity-preserving variant keeps a pruned model's zeros, the CLI
exports both models and shows the zipped size shrink; bad input stops with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecv.errors import ConfigError, InputError
from edgecv.synthetic import shape_images
from tests.conftest import build_tiny_keras

pytestmark = pytest.mark.workstation
pytest.importorskip("tensorflow_model_optimization")


def _kernels(model) -> dict[str, np.ndarray]:
    return {layer.name: layer.get_weights()[0] for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")}


@pytest.fixture(scope="module")
def tiny():
    images, labels = shape_images(256, size=16, seed=1)
    return build_tiny_keras(), (images, labels)


def test_every_kernel_keeps_at_most_the_clusters_asked_and_the_model_still_classifies(tiny):
    from edgecv.converters.cluster import cluster

    model, data = tiny
    before = [w.copy() for w in model.get_weights()]
    result = cluster(model, train=data, clusters=8, epochs=1, batch_size=32)
    kernels = _kernels(result.model)
    assert set(result.unique_values) == set(kernels) and len(kernels) == 3  # two Conv2D, one Dense
    for name, k in kernels.items():
        assert 2 <= np.unique(k).size <= 8 == result.clusters, name
        assert result.unique_values[name] == np.unique(k).size
        assert np.unique(model.get_layer(name).get_weights()[0]).size >= 32  # the original had many more
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # the given model is unchanged
    # shared weights, not a broken model: most of the original's answers survive
    x = data[0][:200].astype(np.float32) / 255
    same = (np.asarray(model(x)).argmax(-1) == np.asarray(result.model(x)).argmax(-1)).mean()
    assert same >= 0.7, same
    assert result.top1_before is not None and result.top1_after is not None


def test_sparsity_preserving_clustering_keeps_a_pruned_models_zeros(tiny):
    from edgecv.converters.cluster import cluster
    from edgecv.converters.prune import prune

    model, data = tiny
    pruned = prune(model, train=data, method="magnitude", sparsity=0.5, epochs=1, batch_size=32).model
    result = cluster(pruned, train=data, clusters=8, epochs=1, batch_size=32, preserve_sparsity=True)
    assert result.sparsity_before == pytest.approx(0.5, abs=0.05)
    assert result.sparsity_after >= result.sparsity_before
    for name, k in _kernels(result.model).items():
        zero = pruned.get_layer(name).get_weights()[0] == 0
        assert np.all(k[zero] == 0), name
        assert np.unique(k[~zero]).size <= 8


def test_the_cli_exports_both_models_and_the_clustered_ones_zip_smaller(tiny_keras_path, tmp_path):
    x, y = shape_images(240, size=16, seed=3)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "cluster", str(tiny_keras_path), "--clusters", "4",
                           "--train", str(tmp_path / "train.npz"), "--epochs", "1", "--batch-size", "32",
                           "--to", "tflite,onnx", "--runs", "5", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert max(result["unique_values"].values()) <= 4
    rows = {(a["method"], a["path"].rsplit(".", 1)[-1]): a for a in result["artifacts"]}
    assert set(rows) == {("original", "tflite"), ("original", "onnx"), ("cluster4", "tflite"), ("cluster4", "onnx")}
    for fmt in ("tflite", "onnx"):
        original, clustered = rows[("original", fmt)], rows[("cluster4", fmt)]
        assert clustered["zipped_bytes"] < original["zipped_bytes"], fmt
        assert clustered["size_bytes"] == pytest.approx(original["size_bytes"], rel=0.05)  # stored as before
    assert (out / "tiny.cluster4.keras").is_file()


def test_without_training_any_keras_model_is_clustered_the_built_in_detector_too():
    from edgecv.converters.builtin_detector import WEIGHTS, make_frames
    from edgecv.converters.cluster import cluster
    from edgecv.converters.sources import open_source

    original = open_source(WEIGHTS).model
    result = cluster(WEIGHTS, clusters=16, epochs=0)
    convs = [layer.name for layer in original.layers if type(layer).__name__ == "Conv2D"]
    assert set(result.unique_values) == {n for n in convs if original.get_layer(n).get_weights()[0].size > 16}
    assert len(result.unique_values) >= 5 and max(result.unique_values.values()) <= 16
    assert result.top1_before is None and result.history == {}
    frames, _ = make_frames(8, seed=5)
    x = frames.astype(np.float32) / 255
    for before, after in zip(original(x), result.model(x)):  # two outputs, both still close to the original's
        corr = np.corrcoef(np.ravel(before), np.ravel(after))[0, 1]
        assert corr > 0.95, corr


def test_the_cli_compares_a_clustered_detectors_detections_with_the_originals(tmp_path):
    import cv2

    from edgecv.converters.builtin_detector import SPEC, WEIGHTS, make_frames

    frames, _ = make_frames(12, seed=7)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame[..., ::-1])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "cluster", str(WEIGHTS), "--clusters", "16", "--epochs", "0",
                           "--spec", SPEC, "--eval", str(tmp_path), "--to", "onnx", "--runs", "3", "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    (clustered,) = [a for a in result["artifacts"] if a["method"] == "cluster16"]
    agree = clustered["detections"]
    assert agree["images"] == 12 and agree["reference_detections"] > 12
    assert 0.5 < agree["map50"] <= 1.0 and agree["map"] <= agree["map50"]
    assert clustered["zipped_bytes"] < 0.6 * next(a for a in result["artifacts"] if a["method"] == "original")["zipped_bytes"]


@pytest.mark.parametrize("args, message", [
    (["--epochs", "1"], "--train is needed to fine-tune the clusters; --epochs 0 clusters without training"),
    (["--epochs", "0", "--spec", "scene-detector"], "--spec compares the detections of the clustered and the original"),
    (["--train", "x.npz", "--spec", "scene-detector"], "--spec: a detector is clustered without training"),
])
def test_bad_cli_combinations_are_one_line(tiny_keras_path, tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "edgecv", "cluster", str(tiny_keras_path), *args, "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgecv: error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith(f"edgecv: error: {message}"), proc.stderr
    assert not (tmp_path / "out").exists()


PIXELS = (np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), np.arange(32) % 4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"clusters": 1}, ConfigError, r"clusters: expected an integer from 2 to 256, got 1"),
        ({"clusters": 300}, ConfigError, r"clusters: expected an integer from 2 to 256, got 300"),
        ({"clusters": 8.0}, ConfigError, r"clusters: expected an integer"),
        ({"epochs": -1}, ConfigError, r"epochs: expected an integer >= 0"),
        ({"batch_size": 0}, ConfigError, r"batch_size: expected a positive integer"),
        ({"train": (PIXELS[0], np.arange(32) % 9)}, InputError, r"labels go up to 8 but the model has 4 outputs"),
        ({"model": "onnx"}, ConfigError, r"clustering needs a Keras model \(.keras or .h5\); .* is a onnx model"),
        ({"model": "onnx", "epochs": 0}, ConfigError, r"clustering needs a Keras model \(.keras or .h5\); .* is a onnx model"),
        ({"train": None}, ConfigError, r"clustering with fine-tuning needs labelled training data \(train\); epochs=0"),
    ],
)
def test_bad_input(kwargs, error, match, tiny, tiny_onnx):
    from edgecv.converters.cluster import cluster

    args = {"model": tiny[0], "train": PIXELS, **kwargs}
    if args["model"] == "onnx":
        args["model"] = tiny_onnx
    with pytest.raises(error, match=match):
        cluster(**args)
