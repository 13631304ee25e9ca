"""Run Python work in a fresh interpreter: a JSON request in, a JSON result (or the child's error) out.

edgecv runs work in a child process where a runtime can segfault (loading an untrusted ``.tflite``), where
a library takes its process over (tfmot switches it to tf_keras, onnx2tf calls ``sys.exit`` and prints
hundreds of lines), or where a measurement needs a process of its own (benchmarks). All of them use
:func:`call` (or :func:`run`, for a caller that tells crashes apart) here, and one protocol:

- the parent writes ``request.json`` into a fresh folder and runs ``python -m MODULE FOLDER`` (a ``module``
  target, whose ``__main__`` calls :func:`serve`) or ``python -m edgecv.child FOLDER`` (a
  ``module:function`` target); the child writes ``result.json``: its return value, or the exception it
  raised. Its stdout and stderr go to files, never parsed for the result (TensorFlow and onnx2tf print there);
- an :class:`~edgecv.errors.EdgeCVError` raised in the child is raised again in the parent, same class and
  message; a crash (a signal, or an exit without a result), another exception or a timeout is one line,
  raised as the caller's error class, naming the signal or exit code and the last meaningful stderr line;
- the child runs in its own session (process group) and dies with its parent (Linux: ``PR_SET_PDEATHSIG``);
  on a timeout, Ctrl-C or SIGTERM the parent kills the child's whole group, so no worker outlives the call;
- on Linux a small supervisor process (:data:`SUPERVISOR`, standard library only) stands between the parent and
  the worker: it gets a signal when the parent dies, even by SIGKILL, and then removes the request folder and
  kills the whole group, so what the worker started (onnx2tf runs ``onnxsim``, for one) dies too; when the
  worker ends, it kills what the worker left running in the group and ends the way the worker ended (same
  exit code or signal). A process that leaves the group (``setsid``) is out of reach;
- request folders (``$TMPDIR/edgecv-child-<pid>-*``) are locked while their run lives; a run that could not
  remove its folder (the parent and the supervisor killed together) has it swept by the next one.

Example:
    >>> call("edgecv.converters.sources:tf2onnx_command", ["--saved-model", "sm", "--output", "sm.onnx"],
    ...      failure="tf2onnx could not convert sm", error=ConversionError, timeout=600)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn

from edgecv import errors
from edgecv.errors import EdgeCVError
from edgecv.stages import stage
from edgecv.workdir import WorkDir, sigterm_unwinds, sweep

log = logging.getLogger(__name__)

REQUEST = "request.json"
RESULT = "result.json"
STDERR_KEPT = 64 * 1024  # the tail of the child's stderr kept for the error line and the debug log
# Start-up and teardown noise that is never the reason a child failed: absl/glog lines of TensorFlow and
# friends ("E0000 00:00:... cuda_platform.cc:52] failed call to cuInit", "2024-05-01 12:00:00.1: I tensorflow/...").
_NOISE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.,]\d+: [IWEF] |WARNING: All log messages before absl)")
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
FOLDER_PREFIX = "edgecv-child-"
SUPERVISED = "EDGECV_CHILD_SUPERVISOR"  # the worker's parent when a supervisor runs it (its pid)

# The supervisor: ``python -c SUPERVISOR PARENT_PID FOLDER ARGV...``. Standard library only and nothing
# heavy, so it starts in milliseconds and its signal handler runs at once (it only waits). The parent-death
# signal is SIGUSR1, caught: the handler removes the request folder, then SIGKILLs the whole process group,
# itself included. The worker (a fork, then exec of ARGV) sets its own parent-death SIGKILL in serve().
SUPERVISOR = r'''
import ctypes, os, resource, shutil, signal, sys
parent, folder, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
libc = ctypes.CDLL(None, use_errno=True)
def orphaned(*_):
    shutil.rmtree(folder, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)
signal.signal(signal.SIGUSR1, orphaned)
libc.prctl(1, signal.SIGUSR1, 0, 0, 0)
if os.getppid() != parent:
    orphaned()
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: what the worker orphans stays our child, to be killed
worker = os.fork()
if worker == 0:
    os.environ["''' + SUPERVISED + r'''"] = str(os.getppid())
    os.execv(argv[0], argv)
_, status = os.waitpid(worker, 0)
pgid = os.getpgid(0)
for pid in os.listdir("/proc"):  # what the worker left running in the group, or orphaned to us
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            if int(fields[2]) == pgid or int(fields[1]) == os.getpid():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
if os.WIFSIGNALED(status):  # end the same way, so the parent names the worker's signal
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
os._exit(os.waitstatus_to_exitcode(status))
'''
_swept = False


@dataclass(frozen=True)
class Outcome:
    """How a child run ended: it returned ``result``, raised ``error``, or ended without either (a
    signal, a non-zero exit, or ``returncode`` None: killed after ``timeout`` seconds)."""

    target: str
    returncode: int | None
    returned: bool = False
    result: Any = None
    error: Mapping[str, Any] | None = None  # {"type", "message", "edgecv", "attrs"} of the child's exception
    stderr: str = ""
    timeout: float | None = None

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended the child (``"SIGSEGV"``), if one did."""
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def last_line(self) -> str:
        """The last stderr line that is not blank or TensorFlow/absl logging, cut to 300 characters."""
        for line in reversed(self.stderr.splitlines()):
            line = line.strip()
            if line and not _NOISE.match(line):
                return line[:300]
        return ""

    def reason(self) -> str:
        """Why there is no result, on one line: ``ValueError: ...``, ``ran out of memory (MemoryError): ...``,
        ``crashed (SIGSEGV): ...``, ``exit code 1: ...`` or ``no result within 60 s``."""
        if self.error is not None and self.error.get("type") == "MemoryError":
            return "ran out of memory (MemoryError)" + (f": {self.error['message']}" if self.error.get("message") else "")
        if self.error is not None:
            return f"{self.error['type']}: {self.error['message']}" if self.error.get("message") else str(self.error["type"])
        if self.timed_out:
            return f"no result within {self.timeout:g} s"
        line = self.last_line()
        if self.signal is not None:
            how = f"crashed ({self.signal})"
        else:
            how = f"exit code {self.returncode}" + (" without a result" if self.returncode == 0 else "")
        return f"{how}: {line}" if line else how

    def value(self, *, failure: str, error: type[EdgeCVError] = EdgeCVError) -> Any:
        """The child's result; else its edgecv error raised again as it was, or ``error(f"{failure}: {reason}")``.

        Example:
            >>> Outcome("m", -11).value(failure="benchmark of m.onnx failed", error=errors.BackendError)
            Traceback (most recent call last):
            edgecv.errors.BackendError: benchmark of m.onnx failed: crashed (SIGSEGV)
        """
        if self.returned:
            return self.result
        if self.error is not None and self.error.get("edgecv"):
            raise _rebuild(self.error, error)
        raise error(f"{failure}: {self.reason()}")


def run(
    target: str,
    request: Any = None,
    *,
    timeout: float | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: str | Path | None = None,
) -> Outcome:
    """Run ``target`` (``"pkg.module"``, whose ``__main__`` calls :func:`serve`, or ``"pkg.module:function"``)
    on the JSON-able ``request`` in a fresh interpreter, and report how it ended. ``env`` entries are set
    over this process's environment (None removes a variable); ``cwd`` is the child's working directory.

    Example:
        >>> run("edgecv.probe", {"path": "m.tflite", "backend": "litert"}, timeout=120).signal  # doctest: +SKIP
        'SIGSEGV'
    """
    _sweep_once()
    workdir = WorkDir.create(tempfile.gettempdir(), FOLDER_PREFIX)
    folder = workdir.path
    # SIGTERM unwinds (the child's group killed, the folder removed), then ends this process as it would have.
    with sigterm_unwinds(), workdir:
        (folder / REQUEST).write_text(json.dumps({"target": target, "request": request, "parent": os.getpid()}))
        module = __name__ if ":" in target else target
        argv = [sys.executable, "-m", module, str(folder)]
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-c", SUPERVISOR, str(os.getpid()), str(folder), *argv]
        log.debug("child process: %s", target)
        start = time.perf_counter()
        with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=_child_env(env),
                                    cwd=cwd, start_new_session=os.name == "posix")
            returncode = _wait(proc, timeout, stage_name=f"child-started:{target}")
        stderr = _tail(folder / "stderr")
        log.debug("child process %s ended (exit %s) after %.1f s; stdout:\n%s\nstderr:\n%s", target, returncode,
                  time.perf_counter() - start, _tail(folder / "stdout")[-5000:], stderr[-5000:])
        answer = _read_result(folder / RESULT)
        return Outcome(target, returncode, returned="result" in answer, result=answer.get("result"),
                       error=answer.get("error"), stderr=stderr, timeout=timeout)


def _sweep_once() -> None:
    """Remove the request folders of runs that were killed before they could (once per process)."""
    global _swept
    if not _swept:
        _swept = True
        sweep(tempfile.gettempdir(), [FOLDER_PREFIX])


def call(
    target: str,
    request: Any = None,
    *,
    failure: str,
    error: type[EdgeCVError] = EdgeCVError,
    timeout: float | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: str | Path | None = None,
) -> Any:
    """:func:`run`, then the child's result, or one error: its own edgecv error, or
    ``error(f"{failure}: {reason}")`` (see :meth:`Outcome.value`).

    Example:
        >>> call("edgecv.converters.tfmot_worker", {"job": "/tmp/job"}, failure="magnitude pruning failed",
        ...      error=ConversionError, timeout=600)                                  # doctest: +SKIP
    """
    return run(target, request, timeout=timeout, env=env, cwd=cwd).value(failure=failure, error=error)


def serve(work: Callable[[Any], Any]) -> NoReturn:
    """The child's side: ``work(request)`` on the request in the folder named by ``sys.argv[1]``, its
    return value or exception written back for the parent, then exit. Call it from a worker module's
    ``__main__`` block.

    Example:
        >>> if __name__ == "__main__":           # doctest: +SKIP
        ...     serve(lambda request: run_job(Path(request["job"])))
    """
    folder = Path(sys.argv[1])
    spec = json.loads((folder / REQUEST).read_text())
    die_with_parent(spec.get("parent"))
    code = 0
    try:
        answer = json.dumps({"result": work(spec["request"])})
    except EdgeCVError as exc:
        answer, code = json.dumps({"error": _describe(exc, edgecv=True)}), 3
    except MemoryError as exc:  # named as such (numpy raises a private subclass), with no traceback to build
        sys.stderr.write(f"MemoryError: {str(exc)[:300]}\n")
        answer, code = json.dumps({"error": {**_describe(exc, edgecv=False), "type": "MemoryError"}}), 1
    except (Exception, SystemExit) as exc:  # a bug, or a library that exits: its traceback stays on stderr
        traceback.print_exc()
        answer, code = json.dumps({"error": _describe(exc, edgecv=False)}), 1
    staged = folder / (RESULT + ".tmp")
    staged.write_text(answer)
    staged.replace(folder / RESULT)  # whole or absent: a crash while writing is no half result
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


# --- parent side ------------------------------------------------------------------------------------


def _wait(proc: subprocess.Popen, timeout: float | None, *, stage_name: str = "") -> int | None:
    """The child's exit code, or None after killing it for running past ``timeout``."""
    try:
        if stage_name:
            stage(stage_name)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:  # KeyboardInterrupt, or any other way out: the child must not outlive the call
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child and everything it started (its process group)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _child_env(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(SUPERVISED, None)  # set by this child's own supervisor, never inherited from ours
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    # The child imports this same edgecv, also when the parent found it through its working directory.
    root = str(Path(__file__).resolve().parents[1])
    if not root.endswith("-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - STDERR_KEPT))
        return f.read().decode("utf-8", errors="replace")


def _read_result(path: Path) -> dict:
    try:
        answer = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def _rebuild(info: Mapping[str, Any], fallback: type[EdgeCVError]) -> EdgeCVError:
    """The child's edgecv error as an exception of the same class here (``fallback`` for an unknown name)."""
    cls = getattr(errors, str(info.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, EdgeCVError)):
        cls = fallback
    exc = cls.__new__(cls)  # not __init__: some classes build their message from other arguments
    exc.args = (info.get("message", ""),)
    exc.__dict__.update(info.get("attrs") or {})
    return exc


# --- child side -------------------------------------------------------------------------------------


def _describe(exc: BaseException, *, edgecv: bool) -> dict[str, Any]:
    lines = str(exc).strip().splitlines()
    message = lines[0] if edgecv and lines else (lines[0][:300] if lines else "")
    attrs = {}
    if edgecv:
        try:
            attrs = json.loads(json.dumps(vars(exc)))
        except (TypeError, ValueError):
            attrs = {}
    return {"type": type(exc).__name__, "message": message, "edgecv": edgecv, "attrs": attrs}


def die_with_parent(parent: int | None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it already has.
    ``parent`` is the pid expected as parent (a supervisor started by :func:`run` stands in for it). Also the
    initializer of worker pools, so a pool worker dies with the process that made the pool.

    Example:
        >>> ProcessPoolExecutor(initializer=die_with_parent, initargs=(os.getpid(),))   # doctest: +SKIP
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError) as exc:
            log.debug("cannot set the parent-death signal: %s", exc)
    if os.environ.get(SUPERVISED):
        parent = int(os.environ[SUPERVISED])
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _serve_function() -> NoReturn:
    """``python -m edgecv.child FOLDER``: import the request's ``module:function`` and serve it."""
    spec = json.loads((Path(sys.argv[1]) / REQUEST).read_text())
    die_with_parent(spec.get("parent"))  # before the import, which may take seconds (TensorFlow)
    module, _, name = spec["target"].partition(":")
    serve(getattr(importlib.import_module(module), name))


if __name__ == "__main__":
    _serve_function()
