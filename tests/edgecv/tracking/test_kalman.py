"""The shared Kalman filter: batched rows equal one-by-one runs, SORT's model is SORT's filter at 25 frames/s,
and velocities are per second at any frame rate."""

from __future__ import annotations

import numpy as np
import pytest

from edgecv.tracking import KalmanBoxFilter, SizeMotion, SortMotion

MODELS = [SortMotion(), SizeMotion()]


def boxes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 500, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], axis=1)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_measurement_round_trip_and_shapes(model):
    kf = KalmanBoxFilter(model)
    b = boxes(5)
    x, P = kf.initiate(b)
    assert x.shape == (5, model.dim) and P.shape == (5, model.dim, model.dim)
    np.testing.assert_allclose(kf.boxes(x), b, atol=1e-9)
    assert (x[:, 4:] == 0).all()
    empty_x, empty_P = kf.initiate(np.zeros((0, 4)))
    assert kf.predict(empty_x, empty_P, 0.1)[0].shape == (0, model.dim)
    assert kf.update(empty_x, empty_P, np.zeros((0, 4)))[0].shape == (0, model.dim)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_all_rows_at_once_equal_one_row_at_a_time(model):
    kf = KalmanBoxFilter(model)
    b = boxes(7)
    x, P = kf.initiate(b)
    lost = np.array([0, 1, 0, 0, 1, 0, 0], bool)
    x, P = kf.predict(x, P, 0.04, frozen=lost)
    x, P = kf.update(x, P, b + 3.0)
    x, P = kf.predict(x, P, 0.04, frozen=lost)
    for i in range(7):
        xi, Pi = kf.initiate(b[i : i + 1])
        xi, Pi = kf.predict(xi, Pi, 0.04, frozen=lost[i : i + 1])
        xi, Pi = kf.update(xi, Pi, b[i : i + 1] + 3.0)
        xi, Pi = kf.predict(xi, Pi, 0.04, frozen=lost[i : i + 1])
        np.testing.assert_allclose(x[i], xi[0], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(P[i], Pi[0], rtol=1e-12, atol=1e-9)
    assert np.allclose(P, P.transpose(0, 2, 1))  # covariances stay symmetric


def test_sort_motion_at_25_fps_is_sorts_per_frame_filter():
    """SORT's own filter, per frame: F with unit steps, R = diag(1,1,10,10), P0 and Q as in the reference."""
    F = np.eye(7)
    F[[0, 1, 2], [4, 5, 6]] = 1.0
    H = np.eye(4, 7)
    R = np.diag([1.0, 1, 10, 10])
    P = np.diag([10.0, 10, 10, 10, 1e4, 1e4, 1e4])
    Q = np.diag([1.0, 1, 1, 1, 0.01, 0.01, 1e-4])
    kf = KalmanBoxFilter(SortMotion(reference_fps=25))
    rng = np.random.default_rng(1)
    track = np.array([[100.0, 50.0, 140.0, 150.0]])
    xs, Ps = kf.initiate(track)
    x = xs[0].copy()
    T = np.diag([1.0, 1, 1, 1, 25, 25, 25])  # velocities per frame -> per second
    for k in range(1, 20):
        z_box = track + [3 * k, 1 * k, 3 * k + 0.5 * k, 1 * k] + rng.normal(0, 1, (1, 4))
        x, P = F @ x, F @ P @ F.T + Q
        xs, Ps = kf.predict(xs, Ps, 1 / 25)
        np.testing.assert_allclose(xs[0], T @ x, rtol=1e-9, atol=1e-9)
        w, h = z_box[0, 2] - z_box[0, 0], z_box[0, 3] - z_box[0, 1]
        z = np.array([z_box[0, 0] + w / 2, z_box[0, 1] + h / 2, w * h, w / h])
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        x, P = x + K @ (z - H @ x), (np.eye(7) - K @ H) @ P
        xs, Ps = kf.update(xs, Ps, z_box)
        np.testing.assert_allclose(xs[0], T @ x, rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(Ps[0], T @ P @ T.T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
@pytest.mark.parametrize("fps", [5, 10, 30, 60])
def test_velocity_is_per_second_whatever_the_frame_rate(model, fps):
    kf = KalmanBoxFilter(model)
    speed = np.array([60.0, -30.0])  # pixels per second
    start = np.array([[100.0, 200.0, 160.0, 320.0]])
    x, P = kf.initiate(start)
    for k in range(1, 3 * fps):  # three seconds
        x, P = kf.predict(x, P, 1 / fps)
        shift = np.tile(speed * k / fps, 2)
        x, P = kf.update(x, P, start + shift)
    np.testing.assert_allclose(x[0, 4:6], speed, rtol=0.02)
    ahead, _ = kf.predict(x, P, 0.5)  # half a second ahead, without a measurement
    np.testing.assert_allclose(kf.boxes(ahead)[0], start[0] + np.tile(speed * (3 * fps - 1) / fps + speed / 2, 2),
                               atol=0.5)


def test_sort_motion_stops_an_area_from_shrinking_below_zero():
    kf = KalmanBoxFilter(SortMotion())
    x, P = kf.initiate(np.array([[0.0, 0.0, 10.0, 10.0]]))
    x[0, 6] = -5000.0  # area shrinking by 5000 px^2 per second: gone within 0.02 s
    x2, _ = kf.predict(x, P, 0.04)
    assert x2[0, 6] == 0.0 and x2[0, 2] == 100.0 and np.isfinite(kf.boxes(x2)).all()
    assert x[0, 6] == -5000.0  # the input states are not changed


def test_size_motion_noise_scales_with_the_box_and_time():
    m = SizeMotion()
    small, large = np.array([[0, 0, 10, 20, 0, 0, 0, 0]], float), np.array([[0, 0, 100, 200, 0, 0, 0, 0]], float)
    np.testing.assert_allclose(m.process_variance(large, 0.1), 100 * m.process_variance(small, 0.1))
    np.testing.assert_allclose(m.process_variance(small, 0.2), 2 * m.process_variance(small, 0.1))
    np.testing.assert_allclose(m.measurement_variance(small)[0], (0.05 * np.array([10, 20, 10, 20])) ** 2)
