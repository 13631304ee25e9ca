"""Scoring against the source on an eval set, and the accuracy gate."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.converters.metrics import Reference, Scores, judge_quantized, sqnr_db
from edgecv.errors import InputError


def _chunks(x: np.ndarray, y: np.ndarray | None, size: int = 16):
    def gen():
        for i in range(0, len(x), size):
            yield x[i : i + size], (None if y is None else y[i : i + size])

    return gen


def _classifier(x: np.ndarray) -> list[np.ndarray]:
    return [x.reshape(len(x), -1)[:, :5] * 3.0]


def test_sqnr_matches_its_definition():
    ref = np.array([3.0, -4.0])
    assert sqnr_db(ref, ref + np.array([0.3, 0.4])) == pytest.approx(10 * np.log10(25 / 0.25))
    assert sqnr_db(ref, ref) == 100.0


def test_reference_scores_top1_agreement_sqnr_and_cosine(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 5)).astype(np.float32)
    labels = np.argmax(x, axis=1)
    labels[:10] = (labels[:10] + 1) % 5  # the source is right on 90 of 100
    ref = Reference(_chunks(x, labels), _classifier, tmp_path)
    assert ref.source.top1 == pytest.approx(0.90) and ref.source.agreement == 1.0 and ref.source.sqnr_db == 100.0
    assert ref.class_index == 0 and ref.class_count == 5

    noise = rng.normal(scale=0.3, size=x.shape).astype(np.float32)
    got = ref.score(_classifier)  # identical outputs
    assert got.agreement == 1.0 and got.cosine == pytest.approx(1.0)

    offsets = iter(range(0, 100, 16))

    def noisy(b):
        i = next(offsets)
        return [_classifier(b)[0] + noise[i : i + len(b)]]

    got = ref.score(noisy)
    expected_sqnr = sqnr_db(_classifier(x)[0], _classifier(x)[0] + noise)
    assert got.sqnr_db == pytest.approx(expected_sqnr, rel=1e-6)
    flips = np.mean(np.argmax(_classifier(x)[0] + noise, 1) != np.argmax(x, 1))
    assert got.agreement == pytest.approx(1 - flips)
    assert 0.9 < got.cosine < 1.0


def test_an_all_zero_output_has_no_cosine_similarity(tmp_path):
    x = np.ones((4, 5), np.float32)
    ref = Reference(_chunks(x, None), _classifier, tmp_path)
    assert ref.score(lambda b: [np.zeros((len(b), 5), np.float32)]).cosine == 0.0


@pytest.mark.parametrize(
    "source_top1, scores, max_drop, min_sqnr, passed, reason",
    [
        (0.90, Scores(100, top1=0.895, agreement=0.97), 1.0, 20, True, ""),
        (0.90, Scores(100, top1=0.88, agreement=0.97), 1.0, 20, False, "2.00 points below the source"),
        (None, Scores(100, agreement=0.995), 1.0, 20, True, ""),
        (None, Scores(100, agreement=0.98), 1.0, 20, False, "agrees with the source on 98.00%"),
        (None, Scores(100, sqnr_db=25.0), 1.0, 20, True, ""),
        (None, Scores(100, sqnr_db=12.0), 1.0, 20, False, "SQNR 12.0 dB is below 20 dB"),
    ],
)
def test_gate(tmp_path, source_top1, scores, max_drop, min_sqnr, passed, reason):
    class Ref:
        source = Scores(100, top1=source_top1)

    verdict = judge_quantized(Ref(), scores, max_drop=max_drop, min_sqnr=min_sqnr)
    assert verdict.passed is passed
    assert reason in verdict.reason


@pytest.mark.parametrize(
    "shapes, tails, order, error",
    [
        ([(2, 20, 20, 4), (2, 20, 20, 5)], [(20, 20, 5), (20, 20, 4)], [1, 0], None),  # TFLite reordered the outputs
        ([(2, 20, 20, 5), (2, 20, 20, 4)], [(20, 20, 5), (20, 20, 4)], [0, 1], None),
        ([(2, 5, 20, 20), (2, 4, 20, 20)], [(20, 20, 5), (20, 20, 4)], [0, 1], None),  # NCHW, same order: transposed
        ([(2, 3), (2, 3)], [(3,), (3,)], [0, 1], None),  # shapes cannot tell: order kept
        ([(2, 7)], [(5,)], None, "artifact output of shape \\[2, 7\\] does not match the source's \\[None, 5\\]"),
    ],
)
def test_artifact_outputs_are_aligned_with_the_source_by_shape(shapes, tails, order, error):
    from edgecv.converters.metrics import _align

    got = [np.full(s, i, np.float32) for i, s in enumerate(shapes)]
    if error:
        with pytest.raises(InputError, match=error):
            _align(got, tails)
        return
    out = _align(got, tails)
    assert [o.shape[1:] for o in out] == tails
    assert [int(o.flat[0]) for o in out] == order


def _text_maps(n: int, seed: int = 0) -> np.ndarray:
    """A DB text detector's probability maps [n, 1, 24, 32]: even samples hold text (values up to ~1), odd
    ones none (a sigmoid far below its threshold: every value ~1e-7)."""
    rng = np.random.default_rng(seed)
    maps = rng.uniform(0, 1e-7, size=(n, 1, 24, 32))
    maps[::2, :, 4:20, 2:30] = rng.uniform(0.5, 1.0, size=(len(maps[::2]), 1, 16, 28))
    return maps.astype(np.float32)


def test_sqnr_and_cosine_agree_on_a_text_map_where_some_samples_hold_no_text(tmp_path):
    """The structure behind 'OpenVINO fp32: SQNR 92 dB, cosine 0.836' on the PP-OCR text detector: the
    runtimes differ by float rounding (~1e-7 absolute, one ulp of a sigmoid near 1); on maps without text
    that is as large as the values. Cosine was a mean over samples (each sample's own cosine), SQNR over
    the whole set: the two told opposite stories. Both are over the whole set now."""
    maps = _text_maps(8)
    x = np.arange(8, dtype=np.float32).reshape(8, 1)  # sample ids: the "model" looks its map up
    # Float rounding that grows with the value, ~1e-7 absolute at 0.
    rounding = (np.random.default_rng(1).uniform(-1, 1, size=maps.shape) * (3e-5 * maps + 1.2e-7)).astype(np.float32)
    ref = Reference(_chunks(x, None, size=3), lambda b: [maps[b[:, 0].astype(int)]], tmp_path, names=["sigmoid_0.tmp_0"])
    got = ref.score(lambda b: [maps[b[:, 0].astype(int)] + rounding[b[:, 0].astype(int)]])

    r, q = maps.astype(np.float64).ravel(), (maps + rounding).astype(np.float64).ravel()
    expected_sqnr = 10 * np.log10(np.sum(r**2) / np.sum((r - q) ** 2))
    assert 85 < expected_sqnr < 100
    assert got.sqnr_db == pytest.approx(expected_sqnr, abs=1e-6)
    assert got.cosine == pytest.approx(r @ q / np.sqrt((r @ r) * (q @ q)), abs=1e-12)
    assert got.cosine >= np.sqrt(1 - 10 ** (-got.sqnr_db / 10))  # the two figures cannot disagree
    # The old per-sample mean on the same data: what the report showed.
    per_sample = [float(a @ b / np.sqrt((a @ a) * (b @ b))) for a, b in zip(maps.reshape(8, -1).astype(np.float64),
                                                                          (maps + rounding).reshape(8, -1).astype(np.float64))]
    assert np.mean(per_sample) < 0.9
    assert [o.name for o in got.outputs] == ["sigmoid_0.tmp_0"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", [1e-7, 1e-3, 0.3])
def test_cosine_is_never_below_what_sqnr_allows(tmp_path, seed, noise):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-8, 1, size=(40, 1))  # samples of very different energy
    outs = (rng.normal(size=(40, 30)) * scale).astype(np.float32)
    err = rng.normal(scale=noise, size=outs.shape).astype(np.float32)
    x = np.arange(40, dtype=np.float32).reshape(40, 1)
    ref = Reference(_chunks(x, None, size=7), lambda b: [outs[b[:, 0].astype(int)]], tmp_path)
    got = ref.score(lambda b: [outs[b[:, 0].astype(int)] + err[b[:, 0].astype(int)]])
    assert got.sqnr_db > 0
    assert got.cosine >= np.sqrt(1 - 10 ** (-got.sqnr_db / 10)) - 1e-12


def test_multi_output_figures_are_per_output_and_the_summary_is_the_worst_of_each(tmp_path):
    """Palm-detector-like: regressors [N, 20, 18] (pixels, large) and scores [N, 20, 1] (logits); the
    artifact returns them in the other order and only the scores are off."""
    rng = np.random.default_rng(0)
    boxes = rng.normal(scale=100, size=(10, 20, 18)).astype(np.float32)
    logits = rng.normal(scale=3, size=(10, 20, 1)).astype(np.float32)
    noise = rng.normal(scale=0.3, size=logits.shape).astype(np.float32)
    x = np.arange(10, dtype=np.float32).reshape(10, 1)

    def source(b):
        i = b[:, 0].astype(int)
        return [boxes[i], logits[i]]

    ref = Reference(_chunks(x, None, size=4), source, tmp_path, names=["regressors", "classificators"])
    got = ref.score(lambda b: [logits[b[:, 0].astype(int)] + noise[b[:, 0].astype(int)], boxes[b[:, 0].astype(int)]])
    by_name = {o.name: o for o in got.outputs}
    assert by_name["regressors"].sqnr_db == 100.0 and by_name["regressors"].cosine == 1.0
    assert by_name["classificators"].sqnr_db == pytest.approx(sqnr_db(logits, logits + noise), abs=1e-9)
    assert got.sqnr_db == by_name["classificators"].sqnr_db and got.cosine == by_name["classificators"].cosine
    d = got.to_dict()
    assert [o["name"] for o in d["outputs"]] == ["regressors", "classificators"]


@pytest.mark.parametrize(
    "source_value, artifact_value, sqnr, cosine, nonfinite",
    [
        (1.0, np.nan, -100.0, 0.0, 1),  # the artifact breaks where the source does not
        (1.0, np.inf, -100.0, 0.0, 1),
        (np.inf, np.inf, 100.0, 1.0, 0),  # the same inf on both sides agrees
        (np.nan, np.nan, 100.0, 1.0, 0),
        (-np.inf, np.inf, -100.0, 0.0, 1),
    ],
)
def test_non_finite_outputs(tmp_path, source_value, artifact_value, sqnr, cosine, nonfinite):
    base = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    src, art = base.copy(), base.copy()
    src[2, 1], art[2, 1] = source_value, artifact_value
    x = np.arange(4, dtype=np.float32).reshape(4, 1)
    ref = Reference(_chunks(x, None), lambda b: [src[b[:, 0].astype(int)]], tmp_path, names=["y"])
    got = ref.score(lambda b: [art[b[:, 0].astype(int)]])
    assert (got.sqnr_db, got.cosine, got.outputs[0].nonfinite) == (sqnr, cosine, nonfinite)
    verdict = judge_quantized(ref, got, max_drop=1.0, min_sqnr=-1000)
    assert verdict.passed is (nonfinite == 0)
    if nonfinite:
        assert verdict.reason == "output 'y' is NaN or infinite at 1 values where the float model's is finite"


@pytest.mark.parametrize("ref, got, expected", [
    (np.array([3.0, -4.0]), np.array([3.0, -4.0]), 100.0),
    (np.array([3.0, -4.0]), np.array([3.0, -4.0]) * (1 + 1e-9), 100.0),  # capped: never above identical
    (np.zeros(3), np.ones(3), -100.0),
])
def test_sqnr_range(ref, got, expected):
    assert sqnr_db(ref, got) == expected


def test_real_text_detector_openvino_fp32_figures_agree(tmp_path, corpus):
    """The case that showed SQNR 92 dB with cosine 0.836: PP-OCRv4's DB text detector, OpenVINO against
    ONNX Runtime, on images with text and images without (the per-sample cosine was ~0.58 on these)."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("openvino")
    from edgecv.model import load

    path = corpus / "rapidocr_onnxruntime" / "models" / "ch_PP-OCRv4_det_infer.onnx"
    source, artifact = load(path, backend="onnxruntime", float_io=True), load(path, backend="openvino", float_io=True)
    rng = np.random.default_rng(0)
    images = np.full((6, 96, 320, 3), 235, np.uint8)
    for i, img in enumerate(images):
        if i % 2 == 0:
            cv2.putText(img, f"Total {123 + i}.00 EUR", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 2)
        else:
            img[:] = rng.integers(90, 200, size=3)  # a plain wall: the map is ~1e-7 everywhere
    x = ((images - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])).transpose(0, 3, 1, 2).astype(np.float32)
    ref = Reference(_chunks(x, None, size=4), lambda b: source.run([b]), tmp_path, names=[t.name for t in source.outputs])
    got = ref.score(lambda b: artifact.run([b]))

    assert got.sqnr_db > 80
    assert got.cosine >= np.sqrt(1 - 10 ** (-got.sqnr_db / 10)) > 0.99999
    assert [o.name for o in got.outputs] == ["sigmoid_0.tmp_0"]


def test_a_set_that_comes_out_shorter_for_the_artifact_is_not_scored(tmp_path):
    """A data source read again for the artifact (a video that ends early) gives fewer chunks: no figures."""
    x = np.ones((40, 5), np.float32)
    reads = iter([40, 32])

    def chunks():
        n = next(reads)
        for i in range(0, n, 16):
            yield x[i : min(i + 16, n)], None

    ref = Reference(chunks, _classifier, tmp_path)
    with pytest.raises(InputError, match=r"^the artifact was scored on 32 of the 40 eval samples: the set or the run stopped early$"):
        ref.score(_classifier)


BOXES = np.array([[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(10)], np.float32)  # ten boxes, none overlapping


def _detector(threshold: float):
    """One sample's outputs [1, 10] (a score per box of BOXES) -> the boxes scoring ``threshold`` or more."""
    from edgecv.detection import Detections

    def detect(outputs):
        scores = np.asarray(outputs[0][0], np.float32)
        keep = scores >= threshold
        return Detections(BOXES[keep], scores[keep], np.zeros(int(keep.sum()), np.int64))

    return detect


def _scores_of(x: np.ndarray) -> list[np.ndarray]:
    return [x]


@pytest.mark.parametrize("change, passed, low, high, reason", [
    # (how the artifact's scores differ, gate passes at 5 points, drop range, the reason's start)
    ("none", True, 0.0, 0.0, ""),
    ("noise", True, 0.0, 5.0, ""),  # +-0.04 both ways: detections cross the threshold both ways, ranking barely moves
    ("sink", False, 29.0, 31.0, "detections lose 30.0 points (max 5): mAP@0.5 against the float model's detections 100.0, "
                                "scores moved -30.0 points"),
    ("shuffled", False, 20.0, 100.0, "detections lose"),  # the same scores on other boxes
], ids=["identical", "noise both ways", "every score sinks", "shuffled"])
def test_detector_gate_ranks_detections_and_catches_scores_that_sink(tmp_path, change, passed, low, high, reason):
    """A detector is judged by mAP@0.5 against the float model's detections, the artifact's ranked down to
    0.001, plus the mean signed score change: noise that moves scores both ways (which the old F1-and-|change|
    figure called a loss of several points) passes; scores that all sink fail though the ranking is intact."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.95, size=(64, 10)).astype(np.float32)
    ref = Reference(_chunks(x, None), _scores_of, tmp_path, detect=_detector(0.5), rank=_detector(0.001))
    assert ref.source.map50_float == 1.0 and ref.source.score_shift == 0.0 and ref.source_detections == int((x >= 0.5).sum())
    moved = {"none": x, "noise": np.clip(x + rng.uniform(-0.04, 0.04, x.shape), 0.002, 1.0).astype(np.float32),
             "sink": x - 0.3, "shuffled": rng.permuted(x, axis=1)}[change]
    offsets = iter(range(0, 64, 16))
    scores = ref.score(lambda b: [moved[(i := next(offsets)) : i + len(b)]])
    verdict = judge_quantized(ref, scores, max_drop=5.0, min_sqnr=20.0)
    assert verdict.passed == passed and low <= verdict.drop <= high and verdict.reason.startswith(reason), verdict
    if change == "noise":  # what the F1 at the threshold plus the mean |score change| made of it
        assert 100 * (1 - scores.detection_f1) + 100 * scores.score_error > 2 * verdict.drop


def test_with_truth_boxes_the_gate_is_the_map_the_float_model_loses(tmp_path):
    """Truth boxes (the eval set's own): the drop is the float model's mAP@[.5:.95] minus the artifact's,
    whatever the two disagree on where both are wrong."""
    from edgecv.detection import Detections

    rng = np.random.default_rng(1)
    x = rng.uniform(0.05, 0.95, size=(32, 10)).astype(np.float32)
    truth = [Detections(BOXES[:5], np.ones(5, np.float32), np.zeros(5, np.int64)) for _ in x]  # objects in boxes 0-4
    ref = Reference(_chunks(x, None), _scores_of, tmp_path, detect=_detector(0.5), rank=_detector(0.001), truth=truth)
    better = x.copy()
    better[:, :5] += 1.0  # every true box now outranks every false one
    offsets = iter(range(0, 32, 16))
    scores = ref.score(lambda b: [better[(i := next(offsets)) : i + len(b)]])
    assert scores.map == pytest.approx(1.0) and ref.source.map < 0.9
    verdict = judge_quantized(ref, scores, max_drop=5.0, min_sqnr=20.0)
    assert verdict.passed and verdict.drop < 0  # it finds more than the float model, though it agrees with it less
    offsets = iter(range(0, 32, 16))
    sunk = ref.score(lambda b: [x[(i := next(offsets)) : i + len(b)] * 0.5])  # the same ranking, all below the threshold
    verdict = judge_quantized(ref, sunk, max_drop=5.0, min_sqnr=20.0)
    assert sunk.map == pytest.approx(ref.source.map) and not verdict.passed, verdict
    assert verdict.reason.startswith("detections lose") and "F1 at the score threshold" in verdict.reason
    with pytest.raises(InputError, match=r"^the eval set's boxes are for 3 images, its images 32$"):
        Reference(_chunks(x, None), _scores_of, tmp_path, detect=_detector(0.5), rank=_detector(0.001), truth=truth[:3])
