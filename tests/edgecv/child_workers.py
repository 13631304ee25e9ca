"""Work for the child processes of tests/edgecv/test_child.py (imported in the child by module path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgecv import errors


def echo(request):
    print("{not the result}")  # stdout is never read for the result
    sys.stderr.write("I0000 00:00:1700000000.000000  123 cpu_feature_guard.cc:182] noise\n")
    return {"got": request, "pid": os.getpid()}


def raise_edgecv(request):
    raise getattr(errors, request["cls"])(request["message"])


def raise_missing(request):
    raise errors.MissingDependencyError("onnx2tf", "convert", "convert ONNX to TFLite")


def raise_other(request):
    raise ValueError("bad value\nsecond line")


def exit_library(request):
    sys.exit(5)  # a library that ends its process


def segfault(request):
    sys.stderr.write("about to crash\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_code(request):
    sys.stderr.write("the reason\n\n")
    sys.stderr.write("E0000 00:00:1700000000.000000  123 cuda_platform.cc:52] failed call to cuInit\n")
    sys.stderr.flush()
    os._exit(4)


def sleep(request):
    """Start a grandchild, record both pids, then sleep."""
    grandchild = subprocess.Popen(["sleep", "120"])
    staged = Path(request["pids"] + ".tmp")
    staged.write_text(f"{os.getpid()} {grandchild.pid}")
    staged.replace(request["pids"])
    time.sleep(120)


def leave_behind(request):
    """Start a grandchild and return without waiting for it."""
    return {"grandchild": subprocess.Popen(["sleep", "120"]).pid}


def out_of_memory(request):
    """An allocation larger than the address space: numpy raises its private MemoryError subclass."""
    import numpy as np

    return np.empty(2**50, np.uint8).nbytes  # 1 PiB, past any 48-bit address space
