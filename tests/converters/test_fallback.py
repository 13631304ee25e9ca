"""Culprit ranking for the float fallback, and the clipping measures it ranks by."""

from __future__ import annotations

import numpy as np
import pytest

from converters.fallback import rank
from converters.targets import ClipMeter, LayerError, clip_ratio

ROWS = [
    LayerError("quiet", "Conv", 12.0, 1.0, 100.0),  # worst error, no clipping
    LayerError("clipped", "Conv", 30.0, 6.7, 8.0),  # eval activations far past the calibrated range
    LayerError("mild", "Conv", 20.0, 1.2, 40.0),  # clips a little: not enough to rank by clipping
    LayerError("worse-clipped", "Add", 35.0, 3.0, 5.0),
    LayerError("head", "Conv", 45.0, 1.1, 60.0, head=True),  # makes a model output
]


@pytest.mark.parametrize(
    "rows, method, expected",
    [
        (ROWS, "error", ["quiet", "mild", "clipped", "worse-clipped", "head"]),
        (ROWS, "clipping", ["head", "worse-clipped", "clipped", "quiet", "mild"]),
        (ROWS, "auto", ["head", "worse-clipped", "clipped", "quiet", "mild"]),
        (ROWS, "leave-one-out", ["head", "worse-clipped", "clipped", "quiet", "mild"]),  # its candidates' order
        # Without an eval set apart from calibration there is no clipping figure: error order, heads included.
        ([LayerError(r.name, r.op_type, r.sqnr_db, head=r.head) for r in ROWS], "auto",
         ["quiet", "mild", "clipped", "worse-clipped", "head"]),
        ([], "auto", []),
    ],
)
def test_rank(rows, method, expected):
    assert rank(rows, method) == expected


@pytest.mark.parametrize(
    "calib, probe, expected",
    [
        ((-10.0, 10.0), (-5.0, 5.0), 1.0),  # inside
        ((-10.0, 10.0), (-5.0, 30.0), 3.0),  # three times as far from zero on the top side
        ((-10.0, 10.0), (-40.0, 0.0), 4.0),
        ((0.0, 6.0), (0.0, 18.0), 3.0),  # a ReLU output
        # never positive during calibration: measured against a twentieth of the width (2.0)
        ((-41.0, -1.0), (-30.0, 3.0), 3.0),
    ],
)
def test_clip_ratio(calib, probe, expected):
    assert clip_ratio(calib, probe) == pytest.approx(expected)


def test_clip_meter_measures_the_signal_clipping_destroys():
    meter = ClipMeter()
    rng = np.random.default_rng(0)
    meter.calib("t", rng.uniform(-1, 1, 1000))
    meter.calib("t", np.array([0.0]))
    inside = rng.uniform(-0.9, 0.9, 1000)
    meter.probe("t", inside)
    assert meter.db("t") == 100.0 and meter.ratio("t") == pytest.approx(1.0)
    meter.probe("t", np.array([10.0]))  # one value ten times past the range
    lost = (10.0 - meter._range["t"][1]) ** 2
    assert meter.db("t") == pytest.approx(10 * np.log10((np.sum(inside**2) + 100.0) / lost))
    assert meter.ratio("t") == pytest.approx(10.0, rel=0.01)
    meter.probe("never-calibrated", np.ones(3))
    assert "never-calibrated" not in meter
