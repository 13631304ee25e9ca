"""Where a sweep's jobs run: one table of executors with the same small interface.

- ``local``: a pool of processes on this machine (spawned, one job per process, as many at once as there
  are cores for each job's ``cpus``);
- ``ray``: tasks on a Ray cluster (``pip install 'edgecv[cluster]'``), with the job's CPU and memory
  requests. ``address`` None starts a cluster on this machine for the sweep; ``auto`` joins the one running
  here (``ray start --head``); ``ray://HOST:PORT`` connects to a remote cluster through Ray Client.

Each job runs in a fresh worker process (TensorFlow and Keras state never carries from one job to the next,
so both executors compute the same figures). A job that raises, or whose worker dies, is run again up to
``retries`` times (on Ray, by Ray's own task retries), then reported with its error; the others go on.

Example:
    >>> executor = make_executor("local", workers=2)                    # doctest: +SKIP
    >>> outcomes = executor.run(run_job, tasks, cpus=1, memory_mb=2048, retries=1, done=print)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol, Sequence

from edgecv.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """One job's end: its ``result`` (what the job returned) or its ``error`` (one line)."""

    index: int
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(Protocol):
    name: ClassVar[str]

    def run(self, fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: Sequence[dict[str, Any]], *, cpus: float,
            memory_mb: int, retries: int, done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """``fn(task)`` for every task (a task's ``job`` key, when it has one, names it in log lines); the outcomes
        in the order of ``tasks``; ``done`` is called as each ends."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran the jobs (for the sweep's report)."""
        ...


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and first line (a Ray error reports its cause)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class LocalExecutor:
    """Spawned processes on this machine, one job per process."""

    name: ClassVar[str] = "local"

    def __init__(self, *, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: expected at least 1, got {workers}")
        self.workers = workers

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}

    def run(self, fn, tasks, *, cpus, memory_mb, retries, done=None):
        import concurrent.futures
        import multiprocessing
        import sys
        from concurrent.futures.process import BrokenProcessPool

        from edgecv.child import die_with_parent
        from edgecv.machine import usable_cores

        workers = self.workers or max(1, int(usable_cores() // max(cpus, 1e-9)))
        self.workers = workers
        outcomes: dict[int, Outcome] = {}
        tries = {i: 0 for i in range(len(tasks))}
        pending = list(range(len(tasks)))
        fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        while pending:
            # A pool breaks as a whole when one of its processes dies: the jobs still in it are tried again in a new one.
            with concurrent.futures.ProcessPoolExecutor(
                    max_workers=min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                    initializer=die_with_parent, initargs=(os.getpid(),), **fresh) as pool:
                futures = {pool.submit(fn, tasks[i]): i for i in pending}
                pending = []
                for future in concurrent.futures.as_completed(futures):
                    i = futures[future]
                    tries[i] += 1
                    try:
                        outcome = Outcome(i, result=future.result())
                    except BrokenProcessPool:
                        outcome = Outcome(i, error="its worker process died")
                    except Exception as exc:  # the job's own failure: reported, never raised
                        outcome = Outcome(i, error=one_line(exc))
                    if not outcome.ok and tries[i] <= retries:
                        log.warning("job %s failed (%s); trying it again", tasks[i].get("job", i), outcome.error)
                        pending.append(i)
                        continue
                    outcomes[i] = outcome
                    if done is not None:
                        done(outcome)
        return [outcomes[i] for i in range(len(tasks))]


class RayExecutor:
    """Ray tasks (see the module docstring for ``address``)."""

    name: ClassVar[str] = "ray"

    def __init__(self, *, address: str | None = None, workers: int | None = None, verbose: bool = False) -> None:
        if address is not None and address != "auto" and not re.match(r"^ray://[\w.-]+:\d+$", address):
            raise ConfigError(f"ray address: expected auto or ray://HOST:PORT, got {address!r}")
        self.address = address
        self.workers = workers  # the CPUs of a cluster started here (None: this machine's cores)
        self.verbose = verbose
        self.cluster: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": self.address or "started here", **self.cluster}

    def run(self, fn, tasks, *, cpus, memory_mb, retries, done=None):
        from edgecv.deps import require

        ray = require("ray", extra="cluster", purpose="run a sweep on a Ray cluster")
        started = not ray.is_initialized()
        # ray.init installs its own SIGTERM handler (it exits the process) and shutdown leaves it: the caller's
        # handlers are put back once the cluster is gone.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        if started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": self.verbose,
                                      "logging_level": logging.INFO if self.verbose else logging.ERROR}
            if self.address is None and self.workers is not None:
                kwargs["num_cpus"] = self.workers
            try:
                with warnings.catch_warnings():
                    if not self.verbose:  # Ray Client warns, then raises the same news: the one-line error says it
                        warnings.simplefilter("ignore")
                    ray.init(address=self.address, **kwargs)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError ... for a bad address
                for sig, handler in handlers.items():
                    if handler is not None:
                        signal.signal(sig, handler)
                raise ConfigError(f"cannot reach the Ray cluster at {self.address or 'this machine'}: {one_line(exc)}") from None
        # Ray's driver prints what the cluster reports (a worker died, a task will be retried) to sys.stdout,
        # where a caller's output goes (edgecv sweep --json): into this log instead, while the jobs run.
        with contextlib.redirect_stdout(_LogLines(logging.INFO)):
            try:
                return self._submit(ray, fn, tasks, cpus=cpus, memory_mb=memory_mb, retries=retries, done=done)
            finally:
                if started:
                    ray.shutdown()
                    for sig, handler in handlers.items():
                        if handler is not None:
                            signal.signal(sig, handler)

    def _submit(self, ray, fn, tasks, *, cpus, memory_mb, retries, done) -> list[Outcome]:
        resources = ray.cluster_resources()
        self.cluster = {"cluster_cpus": resources.get("CPU"), "nodes": len(ray.nodes())}
        if cpus > (resources.get("CPU") or 0):
            raise ConfigError(f"resources.cpus {cpus:g}: the Ray cluster has {resources.get('CPU', 0):g} CPU(s) in all")
        # max_calls=1: a fresh worker process per job; retries cover a worker killed mid-job and the job's own errors
        remote = ray.remote(num_cpus=cpus, memory=memory_mb * 2**20, max_calls=1, max_retries=retries,
                            retry_exceptions=True)(fn)
        refs = {remote.remote(task): i for i, task in enumerate(tasks)}
        outcomes: dict[int, Outcome] = {}
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    outcome = Outcome(i, result=ray.get(ref))
                except Exception as exc:  # retries spent: reported, never raised
                    outcome = Outcome(i, error=one_line(exc))
                outcomes[i] = outcome
                if done is not None:
                    done(outcome)
        return [outcomes[i] for i in range(len(tasks))]


class _LogLines(io.TextIOBase):
    """A text stream whose lines go to this module's log (ANSI colours removed)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
            if line:
                log.log(self.level, "ray: %s", line)
        return len(text)


EXECUTORS: dict[str, type] = {cls.name: cls for cls in (LocalExecutor, RayExecutor)}


def make_executor(spec: str, *, workers: int | None = None, verbose: bool = False) -> Executor:
    """``local``, ``ray`` (a cluster started here), ``auto`` (join the Ray cluster running here) or
    ``ray://HOST:PORT``; ``workers``: jobs at once (local) or the CPUs of a cluster started here; ``verbose``: Ray
    logs to the terminal (its workers' output too).

    Example:
        >>> make_executor("local").name, make_executor("ray://head:10001").address
        ('local', 'ray://head:10001')
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
    if spec == "local":
        return LocalExecutor(workers=workers)
    if spec == "ray":
        return RayExecutor(workers=workers, verbose=verbose)
    if spec == "auto" or spec.startswith("ray://"):
        return RayExecutor(address=spec, verbose=verbose)
    raise ConfigError(f"executor: unknown {spec!r}; valid: {', '.join(EXECUTORS)}, auto, ray://HOST:PORT")
