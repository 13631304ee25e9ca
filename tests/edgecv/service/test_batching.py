"""The batcher: frames of several threads go through one model call, each thread gets its own outputs back;
a model whose outputs do not follow the batch, a failing model and closing are handled."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgecv.service.batching import Batcher, BatcherClosed


class Recorder:
    """A model whose outputs are the input's per-item sum and a per-item constant; records each call's batch."""

    def __init__(self, *, follow_batch: bool = True, fail: bool = False, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.follow_batch, self.fail, self.delay_s = follow_batch, fail, delay_s

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.sizes.append(len(x))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("model fault")
        sums = x.reshape(len(x), -1).sum(axis=1)
        if not self.follow_batch:
            return [sums, np.array([7.0])]  # a count output with no batch axis
        return [sums, np.full((len(x), 2), 7.0)]


def call_together(batcher: Batcher, values: list[float]) -> list[list[np.ndarray] | BaseException]:
    """Every value as a 1x2x2x1 input from its own thread, all released at once."""
    results: list = [None] * len(values)
    start = threading.Barrier(len(values))

    def one(i: int) -> None:
        start.wait()
        try:
            results[i] = batcher.run(np.full((1, 2, 2, 1), values[i], np.float32))
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(values))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_frames_of_four_streams_share_calls_and_each_gets_its_own_outputs():
    model = Recorder(delay_s=0.05)  # while one call runs, the others queue up and go together next
    batcher = Batcher(model, max_size=4, max_wait_ms=200)
    for _ in range(4):
        batcher.register()
    try:
        results = call_together(batcher, [1.0, 2.0, 3.0, 4.0])
    finally:
        batcher.close()
    assert sorted(float(r[0][0]) for r in results) == [4.0, 8.0, 12.0, 16.0]  # 2x2 pixels of each value
    assert all(r[0].shape == (1,) and r[1].shape == (1, 2) for r in results)
    assert sum(model.sizes) == 4 and len(model.sizes) < 4 and max(model.sizes) >= 2
    assert (batcher.calls, batcher.frames, batcher.sizes.count) == (len(model.sizes), 4, len(model.sizes))


def test_a_model_used_by_one_stream_never_waits_for_company():
    model = Recorder()
    batcher = Batcher(model, max_size=4, max_wait_ms=2000)
    batcher.register()
    try:
        t0 = time.perf_counter()
        out = batcher.run(np.ones((1, 2, 2, 1), np.float32))
        waited = time.perf_counter() - t0
    finally:
        batcher.close()
    assert float(out[0][0]) == 4.0 and model.sizes == [1]
    assert waited < 1.0  # far below the 2 s it would wait for a second stream


def test_outputs_that_do_not_follow_the_batch_fall_back_to_one_frame_per_call():
    model = Recorder(follow_batch=False, delay_s=0.05)
    batcher = Batcher(model, max_size=4, max_wait_ms=200)
    for _ in range(3):
        batcher.register()
    try:
        first = call_together(batcher, [1.0, 2.0, 3.0])
        model.sizes.clear()
        second = call_together(batcher, [5.0, 6.0, 7.0])
    finally:
        batcher.close()
    assert not batcher.batchable
    assert sorted(float(r[0][0]) for r in first) == [4.0, 8.0, 12.0]
    assert sorted(float(r[0][0]) for r in second) == [20.0, 24.0, 28.0] and model.sizes == [1, 1, 1]


def test_a_failing_model_fails_every_waiting_stream_and_the_batcher_goes_on():
    model = Recorder(fail=True)
    batcher = Batcher(model, max_size=4, max_wait_ms=100)
    for _ in range(2):
        batcher.register()
    try:
        results = call_together(batcher, [1.0, 2.0])
        model.fail = False
        again = batcher.run(np.ones((1, 2, 2, 1), np.float32))
    finally:
        batcher.close()
    assert all(isinstance(r, RuntimeError) and str(r) == "model fault" for r in results)
    assert float(again[0][0]) == 4.0


def test_closing_refuses_new_frames():
    batcher = Batcher(Recorder(), max_size=2)
    batcher.close()
    with pytest.raises(BatcherClosed, match="closed"):
        batcher.run(np.ones((1, 2, 2, 1), np.float32))


def test_a_real_batch_one_onnx_model_runs_gathered_frames_one_by_one(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgecv.model import load
    from tests.edgecv.detection.test_detector import make_fake_detector

    model = load(make_fake_detector(tmp_path / "fake.onnx"), float_io=True)
    h, w = model.inputs[0].shape[1:3]
    batcher = Batcher(model, max_size=4, max_wait_ms=200)
    for _ in range(3):
        batcher.register()
    results: list = [None] * 3
    start = threading.Barrier(3)

    def one(i: int) -> None:
        start.wait()
        results[i] = batcher.run(np.full((1, h, w, 3), i, np.float32))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        batcher.close()
    alone = model.run(np.zeros((1, h, w, 3), np.float32))
    for r in results:
        assert [o.shape for o in r] == [o.shape for o in alone]
        for got, want in zip(r, alone):
            np.testing.assert_array_equal(got, want)
    assert batcher.frames == 3
