"""Scoring against the source on an eval set, and the accuracy gate."""

from __future__ import annotations

import numpy as np
import pytest

from converters.metrics import Reference, Scores, judge_quantized, sqnr_db
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
    from converters.metrics import _align

    got = [np.full(s, i, np.float32) for i, s in enumerate(shapes)]
    if error:
        with pytest.raises(InputError, match=error):
            _align(got, tails)
        return
    out = _align(got, tails)
    assert [o.shape[1:] for o in out] == tails
    assert [int(o.flat[0]) for o in out] == order
