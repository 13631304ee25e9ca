"""The appearance cue: the Embedder on a tiny in-process ONNX model (crops, batching, pooling, unit length, colour
sensitivity), cosine distance, and ByteTrack with appearance: re-identification after an occlusion where motion
alone starts a new identity, no swap onto a look-alike-less newcomer, bad inputs, and bit-for-bit ByteTrack with
the option off."""

from __future__ import annotations

import doctest
import hashlib

import numpy as np
import pytest

import edgecv
from edgecv.detection import Detections
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess
from edgecv.tracking import ByteTracker, make_tracker
from edgecv.tracking.appearance import EMBEDDING_KEY, Embedder, cosine_distance
from tests.edgecv.tracking.tracking_helpers import MOT15, read_detections

pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

PRE = Preprocess(layout="NCHW", color="RGB", mean=(127.5,), std=(127.5,))
RED, BLUE, GREEN, GREY = (230, 20, 20), (20, 20, 230), (20, 200, 20), (128, 128, 128)
SIZE = 12  # the model's input height and width


def make_embedding_onnx(path, *, batch: int | str = "N", pooled: bool = False, seed: int = 0):
    """conv1x1 with 6 colour-opponent and 2 brightness filters, ReLU, then a random 3x3 conv (16 channels, ReLU):
    NCHW [batch, 3, 12, 12] in; out the feature map [batch, 24, 12, 12] (both layers), or its global average
    [batch, 24] when ``pooled``."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    w1 = np.zeros((8, 3, 1, 1), np.float32)
    for k, v in enumerate([(1, -1, 0), (-1, 1, 0), (0, 1, -1), (0, -1, 1), (-1, 0, 1), (1, 0, -1), (1, 1, 1),
                           (-1, -1, -1)]):
        w1[k, :, 0, 0] = v
    w2 = rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Concat", ["r1", "r2"], ["map"], axis=1),
    ]
    out_shape = [batch, 24, SIZE, SIZE]
    if pooled:
        nodes += [helper.make_node("GlobalAveragePool", ["map"], ["g"]), helper.make_node("Flatten", ["g"], ["emb"])]
        out_shape = [batch, 24]
    graph = helper.make_graph(
        nodes, "tiny_embedder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("embedders")
    return {
        "map": make_embedding_onnx(d / "map.onnx"),
        "pooled": make_embedding_onnx(d / "pooled.onnx", pooled=True),
        "batch1": make_embedding_onnx(d / "batch1.onnx", batch=1),
        "batch4": make_embedding_onnx(d / "batch4.onnx", batch=4),
    }


@pytest.fixture(scope="module")
def embedder(models):
    return Embedder(models["map"], preprocess=PRE)


def render(items, size=(120, 200)) -> np.ndarray:
    """A grey RGB frame with filled boxes: ``items`` is [(x1, y1, x2, y2, colour), ...]."""
    frame = np.full((*size, 3), GREY, np.uint8)
    for x1, y1, x2, y2, colour in items:
        frame[int(y1):int(y2), int(x1):int(x2)] = colour
    return frame


# -- the embedder --------------------------------------------------------------------------------------------------


def test_embeddings_are_unit_rows_and_the_same_crop_gives_the_same_embedding(embedder):
    frame = render([(10, 10, 40, 50, RED), (60, 20, 90, 60, BLUE), (120, 30, 170, 70, GREEN)])
    boxes = np.array([[10, 10, 40, 50], [60, 20, 90, 60], [120, 30, 170, 70]], float)
    e = embedder.embed(frame, boxes)
    assert e.shape == (3, 24) and e.dtype == np.float32 and embedder.dim == 24
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    again = embedder(frame, boxes[::-1])  # another call, another order: the same rows
    np.testing.assert_array_equal(again, e[::-1])
    assert embedder.embed(frame, np.zeros((0, 4))).shape == (0, 24)
    # boxes reaching out of the frame, or wholly outside it, are clipped to it (at least one pixel)
    out = embedder.embed(frame, np.array([[-30, -30, 20, 20], [500, 500, 520, 530]], float))
    assert out.shape == (2, 24) and np.isfinite(out).all()


def test_same_colour_is_near_and_another_colour_far(embedder):
    # two red boxes of other sizes and places, one blue and one green
    frame = render([(10, 10, 40, 50, RED), (100, 60, 160, 110, RED), (60, 20, 90, 60, BLUE), (170, 5, 195, 30, GREEN)])
    e = embedder.embed(frame, np.array([[10, 10, 40, 50], [100, 60, 160, 110], [60, 20, 90, 60], [170, 5, 195, 30]]))
    d = cosine_distance(e, e)
    assert d[0, 1] < 0.05, d
    assert min(d[0, 2], d[0, 3], d[2, 3]) > 5 * d[0, 1] and min(d[0, 2], d[0, 3], d[2, 3]) > 0.3, d


def test_batching_padding_and_pooling_do_not_change_the_embeddings(models, embedder):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    x1y1 = rng.uniform(0, 100, (7, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(5, 50, (7, 2))], axis=1)
    ref = embedder.embed(frame, boxes)
    variants = {
        "chunks of 3": Embedder(models["map"], preprocess=PRE, batch=3),
        "batch-1 model": Embedder(models["batch1"], preprocess=PRE),
        "fixed batch 4, padded": Embedder(models["batch4"], preprocess=PRE),
        "pooled by the model": Embedder(edgecv.load(models["pooled"]), preprocess=PRE),
    }
    for name, emb in variants.items():
        np.testing.assert_allclose(emb.embed(frame, boxes), ref, atol=1e-5, err_msg=name)
    assert variants["batch-1 model"].batch == 1 and variants["fixed batch 4, padded"].batch == 4


def test_attach_adds_the_embeddings_and_keeps_the_rest(embedder):
    frame = render([(10, 10, 40, 50, RED)])
    det = Detections(np.array([[10, 10, 40, 50], [50, 50, 70, 90]]), [0.9, 0.4], [1, 2], data={"keep": np.arange(2)})
    out = embedder.attach(frame, det)
    assert set(out.data) == {"keep", EMBEDDING_KEY} and out.data[EMBEDDING_KEY].shape == (2, 24)
    np.testing.assert_array_equal(out.xyxy, det.xyxy)
    assert out.class_id.tolist() == [1, 2] and EMBEDDING_KEY not in det.data
    # gray and BGR frames
    gray = embedder.embed(frame[..., 0], det)
    assert gray.shape == (2, 24)
    bgr = Embedder(embedder.model, preprocess=PRE, frame_color="BGR").embed(frame[..., ::-1].copy(), det)
    np.testing.assert_allclose(bgr, out.data[EMBEDDING_KEY], atol=1e-6)


def test_docstring_examples():
    import edgecv.tracking.appearance

    assert doctest.testmod(edgecv.tracking.appearance).failed == 0


def test_cosine_distance():
    a = np.array([[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(cosine_distance(a, a[:2]), [[0, 1], [1, 0], [1, 1]], atol=1e-12)
    np.testing.assert_allclose(cosine_distance(a[:1], -a[:1]), [[2.0]])
    with pytest.raises(InputError, match="same size, got 2 and 3"):
        cosine_distance(a, np.ones((1, 3)))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"preprocess": None}, ConfigError, "no input normalization"),
        ({"output": 3}, ConfigError, "output: expected an index below 1"),
        ({"output": "nope"}, ConfigError, "or one of \\['map'\\]"),
        ({"batch": 0}, ConfigError, "batch: expected a positive integer"),
        ({"margin": -0.1}, ConfigError, "margin: expected a share"),
        ({"input_size": (10, 10)}, ConfigError, "fitting the model's 12x12"),
        ({"frame_color": "HSV"}, ConfigError, "frame_color"),
        ({"preprocess": Preprocess(color="GRAY")}, ConfigError, "has 3 channel\\(s\\) but the colour order is GRAY"),
    ],
)
def test_embedder_settings_errors(models, kwargs, error, message):
    with pytest.raises(error, match=message):
        Embedder(models["map"], **{"preprocess": PRE, **kwargs})


@pytest.mark.parametrize(
    "frame, boxes, message",
    [
        (np.zeros((10, 10, 3), np.float32), np.zeros((1, 4)), "frame: expected a uint8 frame"),
        (np.zeros((10, 10, 3), np.uint8), np.array([[0, 0, np.nan, 4]]), "finite box coordinates"),
        (np.zeros((10, 10, 3), np.uint8), np.zeros((2, 3)), "boxes \\[N, 4\\]"),
    ],
)
def test_embed_input_errors(embedder, frame, boxes, message):
    with pytest.raises(InputError, match=message):
        embedder.embed(frame, boxes)


# -- ByteTrack with appearance -------------------------------------------------------------------------------------


def occlusion_video(with_newcomer: bool = False):
    """10 frames/s. A red box moves right 8 px a frame, is hidden for 5 frames (no detection) while it nearly
    stops, and comes back 8 px further on, where the tracker's prediction (40 px further) no longer overlaps it.
    A blue box stands still far away. With ``with_newcomer``, a green box of the red one's size appears right
    where the red one was predicted, in the frame the red one comes back."""
    frames = []
    for k in range(20):
        items = [(150, 80, 180, 110, BLUE)]
        if k < 10:
            x = 20 + 8 * k
            items.append((x, 20, x + 30, 50, RED))
        elif k >= 15:
            x = 100 + 8 * (k - 15)
            items.append((x, 20, x + 30, 50, RED))
            if with_newcomer:
                xn = 132 + 8 * (k - 15)
                items.append((xn, 20, xn + 30, 50, GREEN))
        boxes = np.array([it[:4] for it in items], float)
        frames.append((render(items), Detections(boxes, np.full(len(items), 0.9), np.zeros(len(items), np.int64)),
                       [it[4] for it in items]))
    return frames


def red_ids(tracker, embedder, video) -> list[int]:
    ids = []
    for frame, det, colours in video:
        out = tracker.update(embedder.attach(frame, det))
        # tracker output rows are matched input rows; find the red one by its box
        red = [i for i, c in enumerate(colours) if c == RED]
        for i in red:
            hit = np.flatnonzero(np.all(np.abs(out.xyxy - det.xyxy[i]) < 6, axis=1))
            ids.extend(out.tracker_id[hit].tolist())
    return ids


def test_appearance_reidentifies_an_object_after_an_occlusion_where_motion_starts_a_new_id(embedder):
    video = occlusion_video()
    motion = red_ids(ByteTracker(fps=10), embedder, video)
    looks = red_ids(ByteTracker({"appearance_weight": 0.3}, fps=10), embedder, video)
    assert len(set(motion)) == 2, motion  # the red box comes back under a new identity
    assert set(looks) == {motion[0]} and len(looks) == len(motion) + 1, looks  # found again (one frame sooner too)


def test_appearance_keeps_a_newcomer_off_the_lost_track(embedder):
    video = occlusion_video(with_newcomer=True)
    looks = red_ids(ByteTracker({"appearance_weight": 0.3}, fps=10), embedder, video)
    assert looks == [2] * 15, looks  # the blue box is track 1; the red one keeps 2 in all its 15 frames
    motion = red_ids(ByteTracker(fps=10), embedder, video)
    assert len(set(motion)) > 1, motion  # the green newcomer took the red box's identity
    # that is the lost tracks' stricter gate at work (red and green are ~0.7 apart here)
    loose = red_ids(ByteTracker({"appearance_weight": 0.3, "lost_appearance_gate": 1.0}, fps=10), embedder, video)
    assert len(set(loose)) > 1, loose


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def det(boxes, emb=None, score=0.9) -> Detections:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    data = {} if emb is None else {EMBEDDING_KEY: np.asarray(emb)}
    return Detections(boxes, np.full(len(boxes), score), np.zeros(len(boxes), np.int64), data=data)


def test_track_embeddings_follow_the_tracks_and_reset_forgets_them():
    tracker = ByteTracker({"appearance_weight": 0.5, "max_lost_s": 0.2}, fps=10)
    a, b = unit([1, 0, 0]), unit([0, 1, 0])
    tracker.update(det([[0, 0, 10, 10], [50, 50, 60, 60]], [a, b]))
    assert set(tracker._emb) == {1, 2}
    tracker.update(det([[1, 0, 11, 10]], [unit([1, 1, 0])]))
    np.testing.assert_allclose(tracker._emb[1], unit(0.9 * a + 0.1 * unit([1, 1, 0])))  # the moving average
    for _ in range(3):
        tracker.update(det(np.zeros((0, 4))))  # an empty frame needs no embeddings
    assert tracker.tracks == [] and tracker._emb == {}
    tracker.update(det([[0, 0, 10, 10]], [a]))
    tracker.reset()
    assert tracker._emb == {}


EMB4 = unit(np.eye(4)[:2])


@pytest.mark.parametrize(
    "first, second, error, message",
    [
        (np.array([[0, 0, 10, 10, 0.9]]), None, InputError, "no data\\['embedding'\\]"),
        (det([[0, 0, 10, 10]]), None, InputError, "no data\\['embedding'\\]; add embeddings"),
        (det([[0, 0, 10, 10], [20, 0, 30, 10]], EMB4), det([[0, 0, 10, 10]], np.ones((1, 3))), InputError,
         "of size 4 like the tracks' embeddings, got \\[1,3\\]"),
        (det([[0, 0, 10, 10]], np.array([[np.nan, 1.0]])), None, InputError, "finite"),
        (det([[0, 0, 10, 10]], np.array(["a"])), None, InputError, "real array \\[N, D\\]"),
        (det([[0, 0, 10, 10]], np.ones((1, 2, 2))), None, InputError, "real array \\[N, D\\]"),
        ({"appearance_weight": 1.5}, None, ConfigError, "bytetrack.appearance_weight: expected a share in \\[0, 1\\]"),
        ({"appearance_gate": 0}, None, ConfigError, "bytetrack.appearance_gate: expected a cosine distance"),
        ({"lost_appearance_gate": 2.5}, None, ConfigError, "bytetrack.lost_appearance_gate: expected a cosine"),
        ({"reid_gate": -0.1}, None, ConfigError, "bytetrack.reid_gate"),
        ({"reid_radius": float("inf")}, None, ConfigError, "bytetrack.reid_radius: expected box sizes >= 0"),
        ({"appearance_ema": 1.0}, None, ConfigError, "bytetrack.appearance_ema: expected a weight in \\[0, 1\\)"),
    ],
    ids=["array input", "no embeddings", "size mismatch", "nan", "strings", "3-d", "weight", "gate", "lost gate",
         "reid gate",
         "radius", "ema"],
)
def test_bad_appearance_input(first, second, error, message):
    if isinstance(first, dict):
        with pytest.raises(error, match=message):
            ByteTracker(first)
        return
    tracker = ByteTracker({"appearance_weight": 0.5})
    with pytest.raises(error, match=message) as info:
        tracker.update(first)
        tracker.update(second)
    assert "\n" not in str(info.value)


# -- with the option off, ByteTrack as it was ----------------------------------------------------------------------

# ByteTrack's output on MOT15 TUD-Campus (fps 25, defaults) before the appearance option existed: rows, a hash of
# the per-frame counts and ids, and the sum of the boxes and of their frame-to-frame changes.
TUD_CAMPUS_BEFORE = (283, "1833c0335316a953", 345430.9558770284, 130166.19792611897)


def fingerprint(outs: list[Detections]) -> tuple:
    n = np.array([len(o) for o in outs], np.int64)
    ids = np.concatenate([o.tracker_id for o in outs]).astype(np.int64)
    boxes = np.concatenate([o.xyxy for o in outs]).astype(np.float64)
    digest = hashlib.sha256(n.tobytes() + ids.tobytes()).hexdigest()[:16]
    return len(ids), digest, boxes.sum(), np.abs(np.diff(boxes, axis=0)).sum()


def test_option_off_is_bytetrack_as_before_on_tud_campus(shared_data):
    seq = MOT15 / "TUD-Campus"
    if not (seq / "det.txt").is_file():
        pytest.skip(f"{seq / 'det.txt'} not found")
    frames = read_detections(seq)
    rng = np.random.default_rng(0)
    tracker = ByteTracker(fps=25)
    plain = [tracker.update(d) for d in frames]
    rows, digest, total, moves = fingerprint(plain)
    assert (rows, digest) == TUD_CAMPUS_BEFORE[:2]
    assert total == pytest.approx(TUD_CAMPUS_BEFORE[2], abs=0.05)
    assert moves == pytest.approx(TUD_CAMPUS_BEFORE[3], abs=0.05)
    # embeddings present but the option off (other appearance settings changed): the very same output
    off = make_tracker("bytetrack", {"appearance_weight": 0.0, "appearance_gate": 0.2, "reid_gate": 0.5}, fps=25)
    with_emb = [Detections(d.xyxy, d.confidence, d.class_id, data={EMBEDDING_KEY: rng.normal(size=(len(d), 8))})
                for d in frames]
    outs = [off.update(d) for d in with_emb]
    for a, b in zip(plain, outs):
        np.testing.assert_array_equal(a.tracker_id, b.tracker_id)
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.confidence, b.confidence)
