"""One constant-velocity Kalman filter for boxes, run on all tracks at once, with two motion models.

A :class:`KalmanBoxFilter` keeps no tracks itself: states ``x [N, D]`` and covariances ``P [N, D, D]`` are
arrays the tracker owns, and every method works on all N rows in a few numpy operations. Time is in seconds:
velocities are per second and :meth:`~KalmanBoxFilter.predict` takes the time step ``dt``, so a stream at any
frame rate (or with uneven timestamps) moves the boxes by the same amount per second.

The measured part of the state is 4 numbers from the box; the rest are velocities of some of them. Models:

- :class:`SortMotion` (``"xysr"``): SORT's ``[cx, cy, s, r, vcx, vcy, vs]`` (``s`` area, ``r`` width/height,
  no aspect velocity) with SORT's fixed noise, expressed per second so that at 25 frames/s the filter is
  SORT's own (the reference's per-frame values at 25 fps).
- :class:`SizeMotion` (``"xywh"``): ``[cx, cy, w, h]`` plus a velocity for each, with noise proportional to
  the box size (``w`` for x and width, ``h`` for y and height), so small and large objects are treated alike.

Example:
    >>> import numpy as np
    >>> kf = KalmanBoxFilter(SizeMotion())
    >>> x, P = kf.initiate(np.array([[0.0, 0.0, 10.0, 20.0]]))
    >>> x, P = kf.predict(x, P, dt=0.04)
    >>> x, P = kf.update(x, P, np.array([[1.0, 0.0, 11.0, 20.0]]))
    >>> kf.boxes(x).round(2).tolist()
    [[0.88, 0.0, 10.88, 20.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["MotionModel", "SortMotion", "SizeMotion", "KalmanBoxFilter", "MOTION_MODELS"]


class MotionModel:
    """How boxes map to the measured state, and the noise of each part. Subclasses set the class attributes.

    ``moving`` lists which of the 4 measured components have a velocity (the state is the 4 measured numbers,
    then those velocities, in that order).
    """

    name: str = ""
    moving: tuple[int, ...] = (0, 1, 2, 3)
    #: True when no noise term couples two measured components (every built-in model): then ``H P H' + R``
    #: stays diagonal and the filter's update divides by its diagonal instead of inverting it (the same numbers).
    independent: bool = False

    @property
    def dim(self) -> int:
        return 4 + len(self.moving)

    def to_measurement(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` (x1, y1, x2, y2) -> measurements ``[N, 4]``."""
        raise NotImplementedError

    def to_xyxy(self, x: np.ndarray) -> np.ndarray:
        """States ``[N, D]`` -> boxes ``[N, 4]``; NaN where the state is no box (SORT's negative area)."""
        raise NotImplementedError

    def initial_variance(self, z: np.ndarray) -> np.ndarray:
        """Diagonal of the first covariance ``[N, D]`` for tracks started from measurements ``z``."""
        raise NotImplementedError

    def process_variance(self, x: np.ndarray, dt: float) -> np.ndarray:
        """Diagonal of the noise added over ``dt`` seconds, ``[N, D]`` (or broadcastable)."""
        raise NotImplementedError

    def measurement_variance(self, x: np.ndarray) -> np.ndarray:
        """Diagonal of the measurement noise ``[N, 4]`` (or broadcastable) for tracks in states ``x``."""
        raise NotImplementedError

    def before_predict(self, x: np.ndarray, dt: float, frozen: np.ndarray | None) -> None:
        """Adjust states in place before a prediction; ``frozen`` marks tracks whose size must not change."""


class SortMotion(MotionModel):
    """SORT's model: ``[cx, cy, s, r]`` measured (``s = w * h``, ``r = w / h``), velocities of cx, cy, s.

    SORT's per-frame noise (R = diag(1, 1, 10, 10), P0 = diag(10, 10, 10, 10, 1e4, 1e4, 1e4), Q = diag(1, 1,
    1, 1, 0.01, 0.01, 1e-4)) becomes per second at ``reference_fps`` (velocities per second are
    ``reference_fps`` times those per frame, and process noise grows linearly with time), so a stream at
    ``reference_fps`` runs the reference filter exactly, and other rates scale from it.
    """

    name = "xysr"
    moving = (0, 1, 2)
    independent = True

    def __init__(self, reference_fps: float = 25.0) -> None:
        f = float(reference_fps)
        self.reference_fps = f
        self._p0 = np.array([10.0, 10.0, 10.0, 10.0, 1e4 * f * f, 1e4 * f * f, 1e4 * f * f])
        self._q_rate = np.array([f, f, f, f, 0.01 * f**3, 0.01 * f**3, 1e-4 * f**3])
        self._r = np.array([1.0, 1.0, 10.0, 10.0])

    def to_measurement(self, xyxy: np.ndarray) -> np.ndarray:
        b = np.asarray(xyxy, np.float64)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        z = np.empty((len(b), 4))
        np.add(b[:, 0], w / 2.0, out=z[:, 0])
        np.add(b[:, 1], h / 2.0, out=z[:, 1])
        np.multiply(w, h, out=z[:, 2])
        np.divide(w, h, out=z[:, 3])
        return z

    def to_xyxy(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), 4))
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.sqrt(x[:, 2] * x[:, 3])
            h = x[:, 2] / w
        w /= 2.0
        h /= 2.0
        np.subtract(x[:, 0], w, out=out[:, 0])
        np.subtract(x[:, 1], h, out=out[:, 1])
        np.add(x[:, 0], w, out=out[:, 2])
        np.add(x[:, 1], h, out=out[:, 3])
        return out

    def initial_variance(self, z: np.ndarray) -> np.ndarray:
        return self._p0

    def process_variance(self, x: np.ndarray, dt: float) -> np.ndarray:
        return self._q_rate * dt

    def measurement_variance(self, x: np.ndarray) -> np.ndarray:
        return self._r

    def before_predict(self, x: np.ndarray, dt: float, frozen: np.ndarray | None) -> None:
        # SORT: an area about to become zero or negative stops shrinking.
        vanishing = x[:, 2] + dt * x[:, 6] <= 0
        if vanishing.any():
            x[vanishing, 6] = 0.0
        if frozen is not None and frozen.any():
            x[frozen, 6] = 0.0


class SizeMotion(MotionModel):
    """``[cx, cy, w, h]`` and their velocities; every standard deviation is a multiple of the box size.

    ``position`` and ``velocity`` are the process noise (in box sizes, and box sizes per second, per square
    root of a second: the variance added grows linearly with time); ``measurement`` the detector's box noise;
    ``initial_position`` and ``initial_velocity`` the uncertainty of a new track. The defaults equal
    ByteTrack's (1/20 and 1/160 of the height per frame at 30 frames/s), per second.
    """

    name = "xywh"
    moving = (0, 1, 2, 3)
    independent = True

    def __init__(
        self,
        position: float = 0.27,
        velocity: float = 1.03,
        measurement: float = 0.05,
        initial_position: float = 0.1,
        initial_velocity: float = 1.9,
    ) -> None:
        self.position, self.velocity, self.measurement = float(position), float(velocity), float(measurement)
        self.initial_position, self.initial_velocity = float(initial_position), float(initial_velocity)

    def to_measurement(self, xyxy: np.ndarray) -> np.ndarray:
        b = np.asarray(xyxy, np.float64)
        z = np.empty((len(b), 4))
        np.subtract(b[:, 2:4], b[:, 0:2], out=z[:, 2:4])
        np.add(b[:, 0:2], z[:, 2:4] / 2.0, out=z[:, 0:2])
        return z

    def to_xyxy(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), 4))
        half = x[:, 2:4] / 2.0
        np.subtract(x[:, 0:2], half, out=out[:, 0:2])
        np.add(x[:, 0:2], half, out=out[:, 2:4])
        return out

    @staticmethod
    def _size2(x: np.ndarray, a: float, b: float | None) -> np.ndarray:
        """``[(a*w)^2, (a*h)^2, (a*w)^2, (a*h)^2, (b*w)^2, ...]`` up to the state's length (x-like parts scale
        with w, y-like with h)."""
        wh2 = x[:, 2:4] ** 2
        n = 2 if b is None else 4
        out = np.empty((len(x), 2 * n))
        out[:, 0:2] = out[:, 2:4] = wh2 * (a * a)
        if b is not None:
            out[:, 4:6] = out[:, 6:8] = wh2 * (b * b)
        return out

    def initial_variance(self, z: np.ndarray) -> np.ndarray:
        return self._size2(z, self.initial_position, self.initial_velocity)

    def process_variance(self, x: np.ndarray, dt: float) -> np.ndarray:
        return self._size2(x, self.position * dt**0.5, self.velocity * dt**0.5)

    def measurement_variance(self, x: np.ndarray) -> np.ndarray:
        return self._size2(x, self.measurement, None)

    def before_predict(self, x: np.ndarray, dt: float, frozen: np.ndarray | None) -> None:
        if frozen is not None and frozen.any():
            x[frozen, 6:8] = 0.0  # a lost box keeps its size (ByteTrack)


MOTION_MODELS: dict[str, type[MotionModel]] = {"xysr": SortMotion, "xywh": SizeMotion}


class KalmanBoxFilter:
    """Constant-velocity Kalman filter over many boxes at once (see the module docstring).

    Example:
        >>> kf = KalmanBoxFilter(SortMotion())
        >>> x, P = kf.initiate(np.array([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 4.0, 4.0]]))
        >>> x.shape, P.shape
        ((2, 7), (2, 7, 7))
    """

    def __init__(self, model: MotionModel) -> None:
        self.model = model
        self.dim = model.dim
        self._moving = np.asarray(model.moving)
        self._velocity = np.arange(4, self.dim)
        k = len(model.moving)
        # the moving components as a slice when they are the first k (every built-in model): a faster step
        self._moving_slice = slice(0, k) if tuple(model.moving) == tuple(range(k)) else None
        self._diagonal = bool(model.independent)
        self._transitions: dict[float, np.ndarray] = {}

    def transition(self, dt: float) -> np.ndarray:
        """The ``[D, D]`` transition matrix over ``dt`` seconds (read-only; the last few are kept)."""
        F = self._transitions.get(dt)
        if F is None:
            F = np.eye(self.dim)
            F[self._moving, self._velocity] = dt
            F.flags.writeable = False
            if len(self._transitions) >= 8:
                self._transitions.clear()
            self._transitions[dt] = F
        return F

    def initiate(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New states (velocity 0) and covariances for boxes ``[N, 4]``."""
        z = self.model.to_measurement(xyxy)
        n, d = len(z), self.dim
        x = np.zeros((n, d))
        x[:, :4] = z
        P = np.zeros((n, d, d))
        P.reshape(n, d * d)[:, :: d + 1] = self.model.initial_variance(z)
        return x, P

    def predict(
        self, x: np.ndarray, P: np.ndarray, dt: float, *, frozen: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """States and covariances ``dt`` seconds later (new arrays; ``frozen`` tracks keep their size)."""
        if len(x) == 0:
            return x, P
        x = x.copy()
        self.model.before_predict(x, dt, frozen)
        q = self.model.process_variance(x, dt)
        if self._moving_slice is not None:
            x[:, self._moving_slice] += dt * x[:, 4:]
        else:
            x[:, self._moving] += dt * x[:, 4:]
        F = self.transition(dt)
        P = F @ P @ F.T
        n, d = P.shape[:2]
        P.reshape(n, d * d)[:, :: d + 1] += q
        return x, P

    def update(self, x: np.ndarray, P: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct states ``[N, D]`` with one box each ``[N, 4]`` (new arrays)."""
        n = len(x)
        if n == 0:
            return x, P
        z = self.model.to_measurement(xyxy)
        S = P[:, :4, :4].copy()  # H P H' + R, with H = [I 0]
        S.reshape(n, 16)[:, ::5] += self.model.measurement_variance(x)
        if self._diagonal:  # S is diagonal: its inverse is the reciprocal of the diagonal, exactly
            K = P[:, :, :4] * (1.0 / S.reshape(n, 16)[:, ::5])[:, None, :]  # [N, D, 4]
        else:
            K = P[:, :, :4] @ np.linalg.inv(S)
        x = x + (K @ (z - x[:, :4])[:, :, None])[:, :, 0]
        P = P - K @ P[:, :4, :]
        P = P + P.transpose(0, 2, 1)  # (I - KH) P is symmetric in exact arithmetic: keep it so
        P *= 0.5
        return x, P

    def boxes(self, x: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` of states ``x``."""
        return self.model.to_xyxy(x)

    @staticmethod
    def finite(x: np.ndarray, P: np.ndarray) -> np.ndarray:
        """Which rows ``[N]`` have a finite state and covariance. The filter does not check its own arithmetic:
        boxes near float64's limits (1e200: areas of 1e400) or a huge time step overflow to inf and NaN, and a
        tracker drops the rows this finds (see :mod:`edgecv.tracking.track`).

        Example:
            >>> KalmanBoxFilter.finite(np.array([[1.0, 2.0], [np.inf, 0.0]]), np.zeros((2, 2, 2))).tolist()
            [True, False]
        """
        n = len(x)
        return np.isfinite(x).all(axis=1) & np.isfinite(P.reshape(n, -1)).all(axis=1)
