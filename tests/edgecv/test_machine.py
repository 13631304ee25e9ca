"""The machine helpers: SCHED_BATCH for edgecv's worker threads and children, and what it leaves alone."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from edgecv.machine import batch_scheduling, usable_cores

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")


def in_thread(fn):
    """``fn()``'s result, run in a new thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


def test_batch_scheduling_sets_the_calling_thread_only():
    before = os.sched_getscheduler(0)
    assert in_thread(lambda: (batch_scheduling(), os.sched_getscheduler(0))) == (True, os.SCHED_BATCH)
    assert os.sched_getscheduler(0) == before


def test_a_policy_someone_chose_is_left_alone():
    def idle_then_batch():
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return batch_scheduling(), os.sched_getscheduler(0)

    assert in_thread(idle_then_batch) == (False, os.SCHED_IDLE)


def test_a_child_process_and_an_ended_one():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert batch_scheduling(child.pid) is True
        assert os.sched_getscheduler(child.pid) == os.SCHED_BATCH
    finally:
        child.communicate(b"")
    assert batch_scheduling(child.pid) is False  # gone: nothing to set, and no error


def test_usable_cores_is_the_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0)) >= 1
