"""Synthetic scenes: exact, tight ground truth; varied shapes, sizes, occlusion; tracked video identities."""

import doctest

import numpy as np
import pytest

import edgecv.scenes
from edgecv.detection.boxes import box_iou
from edgecv.errors import ConfigError
from edgecv.scenes import CLASSES, SceneOptions, SceneVideo, scene_frames

# One object on a flat background, nothing else: every non-background pixel belongs to the object.
PLAIN = dict(texture=0.0, noise=0.0, blur=0.0, lighting=0.0, distractors=0)


def _on_border(box, h, w):
    x1, y1, x2, y2 = box
    return x1 <= 0 or y1 <= 0 or x2 >= w or y2 >= h


def _interior(truth, h, w):
    """(boxes, visibility, class ids) of the objects wholly inside the frame."""
    rows = [
        (b, v, c)
        for d in truth
        for b, v, c in zip(d.xyxy, d.data["visibility"], d.class_id)
        if not _on_border(b, h, w)
    ]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows])


def _video(seed, count, **kwargs):
    video = SceneVideo(seed=seed, **kwargs)
    out = []
    for frame, truth in video.frames(count):
        out.append((frame, truth, video.alive))
    return out


@pytest.fixture(scope="module")
def video300():
    return _video(0, 300)


def test_same_seed_gives_identical_frames_and_truth_and_other_seeds_differ():
    a, ta = scene_frames(5, seed=3)
    b, tb = scene_frames(5, seed=3)
    c, _ = scene_frames(5, seed=4)
    assert a.shape == (5, 160, 160, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    for x, y in zip(ta, tb):
        assert x.xyxy.tobytes() == y.xyxy.tobytes() and x.class_id.tolist() == y.class_id.tolist()
        assert x.data["visibility"].tobytes() == y.data["visibility"].tobytes()
    assert a.tobytes() != c.tobytes()
    assert not (a[0] == a[1]).all()  # frames within a call differ too


def test_each_box_is_tight_around_the_objects_pixels():
    opts = SceneOptions(min_objects=1, max_objects=1, min_visibility=0.0, **PLAIN)
    frames, truth = scene_frames(80, seed=11, options=opts)
    seen = set()
    for frame, det in zip(frames, truth):
        assert len(det) == 1 and det.confidence.tolist() == [1.0]
        packed = frame.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
        values, counts = np.unique(packed, return_counts=True)
        ys, xs = np.nonzero(packed != values[counts.argmax()])
        extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert det.xyxy[0].tolist() == extent, (det.xyxy[0], extent)  # exact, not just within 1 px
        seen.add(int(det.class_id[0]))
        assert det.data["visibility"][0] == 1.0 or _on_border(det.xyxy[0], 160, 160)
    assert seen == set(range(len(CLASSES)))


def test_all_classes_appear_in_roughly_balanced_counts():
    _, truth = scene_frames(300, seed=1)
    counts = np.bincount(np.concatenate([d.class_id for d in truth]), minlength=len(CLASSES))
    assert len(CLASSES) >= 4 and len(set(CLASSES)) == len(CLASSES)
    assert len(counts) == len(CLASSES)
    assert counts.min() > 0.75 * counts.mean() and counts.max() < 1.25 * counts.mean(), counts


def test_scales_and_aspect_ratios_span_the_configured_range():
    opts = SceneOptions(rotation=0.0, min_scale=0.05, max_scale=0.45, aspect_range=(0.6, 1.6))
    _, truth = scene_frames(300, seed=2, options=opts)
    boxes, _, classes = _interior(truth, 160, 160)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    scale = np.sqrt(w * h) / 160
    assert scale.min() < 0.06 and scale.max() > 0.40, (scale.min(), scale.max())
    assert scale.min() > 0.05 - 2 / 160 and scale.max() < 0.45 + 2 / 160
    big = scale > 0.15  # pixel rounding barely moves the aspect of large objects
    aspect = w[big] / h[big]
    assert aspect.min() < 0.7 and aspect.max() > 1.45, (aspect.min(), aspect.max())
    assert aspect.min() > 0.6 * 0.93 and aspect.max() < 1.6 / 0.93
    assert set(classes[big]) == set(range(len(CLASSES)))


def test_occlusion_happens_and_never_exceeds_max_occlusion():
    _, truth = scene_frames(200, seed=5, options=SceneOptions(max_objects=8, max_occlusion=0.5, min_visibility=0.0))
    _, vis, _ = _interior(truth, 160, 160)  # whole in the frame: any lost visibility is occlusion
    assert (vis < 0.99).mean() > 0.05
    assert vis.min() >= 0.5 - 1e-6
    _, truth = scene_frames(100, seed=5, options=SceneOptions(max_objects=8, max_occlusion=0.0))
    _, vis, _ = _interior(truth, 160, 160)
    assert (vis == 1).all()


def test_truth_leaves_out_barely_visible_objects():
    for min_vis in (0.2, 0.6):
        _, truth = scene_frames(100, seed=6, options=SceneOptions(min_visibility=min_vis))
        vis = np.concatenate([d.data["visibility"] for d in truth])
        assert vis.min() >= min_vis and vis.max() <= 1.0
        for d in truth:
            assert d.tracker_id is None
            assert (d.xyxy[:, :2] >= 0).all() and (d.xyxy[:, 2:] <= 160).all()
            assert (d.xyxy[:, 2:] > d.xyxy[:, :2]).all()


def test_frame_size_and_empty_scenes():
    frames, truth = scene_frames(3, seed=0, options=SceneOptions(size=(48, 96), max_objects=2))
    assert frames.shape == (3, 48, 96, 3)
    _, truth = scene_frames(2, seed=0, options=SceneOptions(min_objects=0, max_objects=0))
    assert [len(d) for d in truth] == [0, 0]
    assert scene_frames(0)[0].shape == (0, 160, 160, 3)


def test_video_identities_persist_and_boxes_move_smoothly(video300):
    ious = []
    for (_, prev, _), (_, cur, _) in zip(video300, video300[1:]):
        assert cur.tracker_id is not None and (cur.tracker_id >= 1).all()
        assert len(set(cur.tracker_id.tolist())) == len(cur)
        before = dict(zip(prev.tracker_id.tolist(), prev.xyxy))
        for t, box in zip(cur.tracker_id.tolist(), cur.xyxy):
            if t in before:
                ious.append(box_iou(before[t][None], box[None])[0, 0])
    ious = np.array(ious)
    assert len(ious) > 500
    assert np.median(ious) > 0.75 and np.percentile(ious, 5) > 0.4, (np.median(ious), ious.min())


def test_video_objects_enter_and_leave_through_the_borders_and_ids_never_return(video300):
    first, last, gone = {}, {}, set()
    alive_before: set = set()
    for i, (_, truth, alive) in enumerate(video300):
        alive = set(alive)
        assert not alive & gone, "an identity came back after leaving"
        assert set(truth.tracker_id.tolist()) <= alive
        new = alive - alive_before
        assert not new or min(new) > max(alive_before | gone, default=0), "identities are never reused"
        gone |= alive_before - alive
        alive_before = alive
        for t, box in zip(truth.tracker_id.tolist(), truth.xyxy):
            first.setdefault(t, (i, box))
            last[t] = (i, box)
    late = [box for i, box in first.values() if i > 0]
    early = [box for i, box in last.values() if i < len(video300) - 1]
    assert len(late) >= 5 and len(early) >= 5, (len(late), len(early))  # new objects arrive, others leave
    assert np.mean([_on_border(b, 160, 160) for b in late]) >= 0.7
    assert np.mean([_on_border(b, 160, 160) for b in early]) >= 0.7
    assert max(first) > SceneOptions().max_objects


def test_video_truth_has_visibility_and_occlusion_happens(video300):
    vis = np.concatenate([truth.data["visibility"] for _, truth, _ in video300])
    assert vis.min() >= 0.2 and vis.max() <= 1.0
    _, vis, _ = _interior([truth for _, truth, _ in video300], 160, 160)
    assert (vis < 0.99).any()  # objects cross each other


def test_video_is_deterministic_and_reset_replays():
    video = SceneVideo(seed=7)
    a = [video.step() for _ in range(20)]
    assert video.frame_index == 20
    video.reset()
    b = list(video.frames(20))
    for (fa, ta), (fb, tb) in zip(a, b):
        assert fa.tobytes() == fb.tobytes() and ta.tracker_id.tolist() == tb.tracker_id.tolist()
    c = list(SceneVideo(seed=8).frames(20))
    assert a[5][0].tobytes() != c[5][0].tobytes()
    frame, truth = next(iter(SceneVideo(seed=7)))
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert frame.tobytes() == a[0][0].tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_video_frames_are_what_the_still_camera_makes_of_the_same_scene(seed):
    """The video's fast camera (background blurred once, objects' surroundings blurred per frame, a separable
    lighting field) gives the still frames' camera's pixels when there is no noise: it lights after blurring
    and the field is smooth, so the two nearly commute (measured: at most 3 levels apart, 0.07 on average)."""
    from edgecv.scenes import _camera

    video = SceneVideo(seed=seed, options=SceneOptions(size=(96, 128), noise=0.0, blur=2.0, lighting=1.0))
    for _ in range(12):
        objs = sorted([ob for ob in video._objs if ob.raster(96, 128).count > 0], key=lambda ob: -ob.depth)
        img, labels = video._bg.copy(), np.full((96, 128), -1, np.int16)
        for index, ob in enumerate(objs):
            ob.draw(img, labels, index)
        expected = _camera(np.random.default_rng(0), img, video._light.copy(), video._cam)
        frame, _ = video.step()
        diff = np.abs(frame.astype(int) - expected)
        assert diff.max() <= 4 and diff.mean() <= 0.2


def test_a_bgr_video_is_the_rgb_video_with_its_channels_reversed():
    """The same scene and truth in OpenCV's order; without noise, the same pixels (noise is drawn per position,
    so with it the two differ by noise only)."""
    options = SceneOptions(size=(96, 128), noise=0.0, blur=2.0, lighting=1.0)
    rgb, bgr = SceneVideo(seed=4, options=options), SceneVideo(seed=4, options=options, order="BGR")
    for _ in range(10):
        (a, ta), (b, tb) = rgb.step(), bgr.step()
        assert b.flags.c_contiguous
        np.testing.assert_array_equal(a, b[..., ::-1])
        np.testing.assert_array_equal(ta.xyxy, tb.xyxy)


def test_module_example_runs():
    assert doctest.testmod(edgecv.scenes).failed == 0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({}, None),
        ({"size": (64, 48), "min_objects": 0, "max_objects": 0, "noise": 0, "blur": 0}, None),
        ({"size": (8, 8)}, "SceneOptions.size: expected (height, width) integers >= 16, got (8, 8)"),
        ({"size": 160}, "SceneOptions.size: expected (height, width) integers >= 16, got 160"),
        ({"min_objects": -1}, "SceneOptions.min_objects: expected an integer in [0, 100], got -1"),
        ({"min_objects": 3, "max_objects": 2}, "SceneOptions.max_objects: expected an integer in [3, 100], got 2"),
        ({"max_objects": 2.5}, "SceneOptions.max_objects: expected an integer in [1, 100], got 2.5"),
        ({"min_scale": 0.0}, "SceneOptions.min_scale: expected a number in [0.0125, 1], got 0.0"),
        ({"max_scale": 0.01}, "SceneOptions.max_scale: expected a number in [0.05, 1], got 0.01"),
        ({"aspect_range": (2.0, 1.0)}, "SceneOptions.aspect_range: expected (low, high) with 0.1 <= low <= high"),
        ({"rotation": 200}, "SceneOptions.rotation: expected a number in [0, 180], got 200"),
        ({"texture": -0.1}, "SceneOptions.texture: expected a number in [0, 1], got -0.1"),
        ({"lighting": "strong"}, "SceneOptions.lighting: expected a number in [0, 1], got 'strong'"),
        ({"noise": True}, "SceneOptions.noise: expected a number in [0, 100], got True"),
        ({"blur": 9}, "SceneOptions.blur: expected a number in [0, 8], got 9"),
        ({"distractors": -2}, "SceneOptions.distractors: expected an integer in [0, 100], got -2"),
        ({"max_occlusion": 1.5}, "SceneOptions.max_occlusion: expected a share in [0, 1], got 1.5"),
        ({"min_visibility": None}, "SceneOptions.min_visibility: expected a share in [0, 1], got None"),
    ],
)
def test_scene_options_are_validated(kwargs, error):
    if error is None:
        assert isinstance(SceneOptions(**kwargs), SceneOptions)
        return
    with pytest.raises(ConfigError) as info:
        SceneOptions(**kwargs)
    assert str(info.value).startswith(error)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: scene_frames(-1), "scene_frames: expected count to be an integer >= 0, got -1"),
        (lambda: scene_frames(1, options={"size": 4}), "scene_frames: expected options to be a SceneOptions, got dict"),
        (lambda: SceneVideo(speed=-1), "SceneVideo.speed: expected pixels per frame in [0, 100], got -1"),
        (lambda: SceneVideo(spawn_rate=2), "SceneVideo.spawn_rate: expected a probability in [0, 1], got 2"),
        (lambda: SceneVideo(order="rgb"), "SceneVideo.order: expected 'RGB' or 'BGR', got 'rgb'"),
    ],
)
def test_bad_call_arguments_raise_config_error(call, error):
    with pytest.raises(ConfigError) as info:
        call()
    assert str(info.value) == error
