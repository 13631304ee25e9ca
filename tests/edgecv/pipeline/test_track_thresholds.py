"""``track()`` with a detector that scores low: the tracker's thresholds fitted to it (recorded in summary.json
with where each came from), and a run that sees detections but starts no track says so (summary.json
``warnings``, a logged warning), with its cause.

The fake detector finds three people walking right in every frame of a generated video (30 frames/s), scored
between 0.5 and 0.68, as TensorFlow's SSD MobileNet scores pedestrians on a shaking camera.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecv.detection.detections import Detections
from edgecv.pipeline.track import track, tracking_warnings

SOURCE = "synthetic:frames=90,size=96x64"
LOW = np.linspace(0.5, 0.68, 7)


class ScriptedDetector:
    """prepare/infer/decode that ignore the image and give ``script(k)`` for the k-th frame."""

    labels = ("person",)

    def __init__(self, script) -> None:
        self.script = script
        self.k = 0
        self.model = SimpleNamespace(path=Path("scripted.onnx"), backend="fake")
        self.spec = SimpleNamespace(name="scripted", decoder="fake", score_threshold=0.5)

    def prepare(self, image):
        return image, None

    def infer(self, x):
        k, self.k = self.k, self.k + 1
        return [k]

    def decode(self, outputs, transform):
        return self.script(outputs[0])


def walkers(k: int) -> Detections:
    x = 10.0 + 4.0 * k + 100.0 * np.arange(3)
    boxes = np.stack([x, np.full(3, 20.0), x + 40.0, np.full(3, 120.0)], axis=1)
    return Detections(boxes, LOW[(k + np.arange(3)) % len(LOW)], np.zeros(3, np.int64))


def jumping(k: int) -> Detections:
    """A confident box in a new place every frame (none in the first): each starts a track found never again."""
    if k == 0:
        return Detections.empty()
    x = 300.0 * (k % 2)
    return Detections(np.array([[x, 100.0 * (k % 3), x + 40.0, 100.0 * (k % 3) + 90.0]]), [0.9], [0])


def run(tmp_path: Path, script, **kwargs) -> dict:
    result = track(ScriptedDetector(script), SOURCE, out=tmp_path / "out", sinks=["jsonl"], concurrent=False,
                   **kwargs)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in ("tracks", "detections", "tracker_thresholds", "warnings"):
        assert on_disk[key] == result.summary[key], key
    return result.summary


def test_low_scores_with_the_trackers_defaults_start_nothing_and_say_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="edgecv.pipeline.track"):
        s = run(tmp_path, walkers, thresholds="tracker")
    assert s["frames"] == 90 and s["tracks"] == 0
    assert s["detections"] == {"count": 270, "frames": 90, "max_score": pytest.approx(0.68), "startable": 0}
    th = s["tracker_thresholds"]
    assert th["state"] == "off" and th["start_score"] == 0.7
    message = ("270 detection(s) in 90 frame(s) but no track started: every detection scored below 0.7, the "
               "score that starts a track (new_track_thresh from tracker default); the best scored 0.68. Set "
               "new_track_thresh and track_thresh below it with --tracker-config, or fit them to the detector "
               "with --thresholds auto")
    assert s["warnings"] == [{"code": "no_track_started", "cause": "below_start_score", "message": message}]
    assert [r.getMessage() for r in caplog.records] == [message]


def test_low_scores_with_fitted_thresholds_start_one_track_per_person(tmp_path):
    s = run(tmp_path, walkers)
    assert s["tracks"] == 3 and s["warnings"] == []
    th = s["tracker_thresholds"]
    assert th["state"] == "calibrated" and th["detector_threshold"] == 0.5
    assert th["calibration"]["frames"] == 60 and th["calibration"]["detections"] == 180  # 2 s at 30 frames/s
    assert 0.5 <= th["values"]["track_thresh"] <= th["values"]["new_track_thresh"] < 0.68
    assert th["sources"]["new_track_thresh"] == "calibrated: q50 of 180 detection scores in the first 2.0 s"
    assert 0 < s["detections"]["startable"] < s["detections"]["count"] == 270
    *records, end = [json.loads(line) for line in (tmp_path / "out" / "tracks.jsonl").read_text().splitlines()]
    assert end["end"] == "ended"
    first = min(r["frame"] for r in records if r["tracks"])
    assert 59 <= first <= 65 and [t["id"] for t in records[-1]["tracks"]] == [1, 2, 3]


def test_tracks_that_start_but_are_never_confirmed_are_a_warning_too(tmp_path):
    s = run(tmp_path, jumping)
    assert s["tracks"] == 0 and s["detections"]["startable"] == s["detections"]["count"] == 89
    [w] = s["warnings"]
    assert w["code"] == "no_track_started" and w["cause"] == "not_confirmed"
    assert w["message"] == ("89 detection(s) in 89 frame(s) but no track started: 89 scored at least 0.7, the "
                            "score that starts a track, but none was found again in the next frames to be confirmed")


@pytest.mark.parametrize("summary, codes", [
    ({"detections": {"count": 0, "frames": 0, "max_score": None, "startable": 0}, "tracks": 0}, []),
    ({"detections": {"count": 5, "frames": 5, "max_score": 0.9, "startable": 5}, "tracks": 1}, []),
    ({"detections": {}, "tracks": 0}, []),  # no tracker: nothing counted
    ({"detections": {"count": 5, "frames": 2, "max_score": 0.4, "startable": 0}, "tracks": 0,
      "tracker_thresholds": {"start_score": 0.5, "sources": {}}}, ["no_track_started"]),
])
def test_tracking_warnings_table(summary, codes):
    assert [w["code"] for w in tracking_warnings(summary)] == codes


def test_expert_pipeline_options_reach_the_run_and_track_keeps_its_own_mode(tmp_path):
    import sys

    from edgecv.pipeline.runner import PipelineOptions

    seen = []

    class Noting(ScriptedDetector):
        def infer(self, x):
            seen.append(sys.getswitchinterval())  # the run's interval, set from the options given
            return super().infer(x)

    result = track(Noting(walkers), SOURCE, out=tmp_path / "out", sinks=["jsonl"], concurrent=True,
                   options=PipelineOptions(switch_interval_s=0.0013, concurrent=False, workers=3))
    s = result.summary
    assert s["concurrent"] is True and s["frames"] == 90 and s["threads"]["workers"] == 1
    assert seen and all(v == pytest.approx(0.0013) for v in seen)
