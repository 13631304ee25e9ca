"""The model store on a device: numbered versions of each named model, which one is active, and an
append-only history of every change, so that a new model can be shipped, checked and taken back.

Layout of the store folder (``$EDGECV_STORE``, else ``$XDG_DATA_HOME/edgecv/models``, else
``~/.local/share/edgecv/models``)::

    history.jsonl     one JSON line per change (install, activate, rollback, remove): the store's record
    NAME/v1/          a version: the artifact with its companions and manifest (and spec, labels) as installed
    NAME/v2/ ...

**Atomic changes.** A change is committed by one line appended to ``history.jsonl`` (one ``write``, then
``fsync``); the state (versions, the active one) is what the committed lines say. What a change does on disk
before its line (copying a version into ``NAME/.incoming-*``, renaming it to ``NAME/vN``) is invisible until
the line is there, and what it does after (deleting a removed version's files) is redone if cut short: the
next change, under the lock, deletes folders no committed line accounts for and cuts a torn last line. A crash
at any point (``kill -9`` included) leaves the store as before the change or as after it. Changes are
serialized by an exclusive lock on the store folder; reads take none (a reader sees committed lines only).

**Install** checks before it commits: the artifact's files against its manifest's SHA-256 (an artifact without
a manifest gets its hashes recorded here), the copies against the originals, then a load and a short benchmark
of the copy in a child process (a runtime that crashes cannot take the caller down); the p50 measured here is
recorded. Anything failing is one line and nothing is installed.

Example:
    >>> store = ModelStore("/var/lib/edgecv/models")                     # doctest: +SKIP
    >>> v = store.install("out/det.int8.onnx", name="det", reason="retrained on site 4")   # doctest: +SKIP
    >>> store.activate("det", v.number, reason="canary passed"); store.resolve("store:det").path  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from edgecv.errors import ConfigError, EdgeCVError, IntegrityError, OutputError
from edgecv.fileio import atomic_write_bytes, sha256_of
from edgecv.formats import format_for_path

log = logging.getLogger(__name__)

PREFIX = "store:"
HISTORY = "history.jsonl"
INCOMING = ".incoming-"
ACTIONS = ("install", "activate", "rollback", "remove")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION_DIR = re.compile(r"^v([0-9]+)$")
SPEC_FILE = "spec.yaml"
LABELS_FILE = "labels.txt"
BENCH_RUNS = 30


def default_root() -> Path:
    """The store folder: ``$EDGECV_STORE``, else ``$XDG_DATA_HOME/edgecv/models``, else ``~/.local/share/...``."""
    if os.environ.get("EDGECV_STORE"):
        return Path(os.environ["EDGECV_STORE"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "edgecv" / "models"


def is_store_ref(text: str | Path) -> bool:
    """Whether ``text`` names a stored model (``store:NAME`` or ``store:NAME@VERSION``)."""
    return str(text).startswith(PREFIX)


def model_source(model: str | Path, *, spec: str | Path | None = None,
                 labels: Any = None, store: ModelStore | None = None) -> tuple[Path, str | Path | None, Any]:
    """``model`` as a path, with the spec and labels to run it with: a ``store:NAME[@VERSION]`` reference
    becomes that version's artifact in ``store`` (default: :func:`default_root`'s), with the spec and labels
    installed with it unless ``spec`` or ``labels`` are given; any other text is a path, passed through.

    Example:
        >>> model_source("out/det.onnx")
        (PosixPath('out/det.onnx'), None, None)
    """
    if not is_store_ref(model):
        return Path(model), spec, labels
    return (store or ModelStore()).resolve(str(model)).source(spec=spec, labels=labels)


@dataclass(frozen=True)
class Version:
    """One installed version: its ``name``, ``number``, the artifact's ``path`` in the store, and what was
    recorded when it was installed (``record``: time, reason, hashes, p50 here, validation, spec, labels)."""

    name: str
    number: int
    path: Path
    record: dict[str, Any]
    active: bool = False

    @property
    def spec(self) -> str | Path | None:
        """The detector spec installed with it: a built-in name, a YAML file in the store, or None."""
        spec = self.record.get("spec")
        if spec == SPEC_FILE:
            return self.path.parent / SPEC_FILE
        return spec

    @property
    def labels(self) -> Path | None:
        """The labels file installed with it, or None."""
        return self.path.parent / LABELS_FILE if self.record.get("labels") else None

    def source(self, *, spec: str | Path | None = None, labels: Any = None) -> tuple[Path, str | Path | None, Any]:
        """Its artifact, with ``spec`` and ``labels`` if given, else those installed with it (labels read)."""
        if labels is None and self.labels is not None:
            from edgecv.labels import read_labels

            labels = read_labels(self.labels)
        return self.path, spec if spec is not None else self.spec, labels

    def problems(self) -> list[str]:
        """Its files against the hashes recorded at install, one line per file missing or changed."""
        out = []
        for file, digest in self.record.get("files", {}).items():
            path = self.path.parent / file
            if not path.is_file():
                out.append(f"{self.name} version {self.number}: {file} is missing")
            elif sha256_of(path) != digest:
                out.append(f"{self.name} version {self.number}: {file} does not match the hash recorded at install")
        return out

    def verify(self) -> None:
        """Raise :class:`IntegrityError` (one line) unless every file is as installed."""
        problems = self.problems()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise IntegrityError(f"{problems[0]}{more}: the store's copy changed since it was installed; install it again")

    def summary(self) -> dict[str, Any]:
        """What ``edgecv models list`` shows of it."""
        r = self.record
        return {"name": self.name, "version": self.number, "active": self.active, "artifact": r.get("artifact"),
                "format": r.get("format"), "precision": r.get("precision"), "bytes": r.get("bytes"),
                "p50_ms": r.get("p50_ms"), "backend": r.get("backend"), "validation": r.get("validation"),
                "installed": r.get("time"), "reason": r.get("reason", ""), "path": str(self.path)}


@dataclass
class _Model:
    """One name's state, replayed from the history."""

    installed: dict[int, dict[str, Any]] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    activations: list[int] = field(default_factory=list)  # versions made active, oldest first
    last_number: int = 0

    @property
    def active(self) -> int | None:
        return self.activations[-1] if self.activations else None

    def live(self) -> list[int]:
        return sorted(n for n in self.installed if n not in self.removed)

    def apply(self, event: dict[str, Any]) -> None:
        n, action = int(event["version"]), event["action"]
        if action == "install":
            self.installed[n] = event
            self.last_number = max(self.last_number, n)
            if event.get("activate"):
                self.activations.append(n)
        elif action == "activate":
            self.activations.append(n)
        elif action == "rollback":
            while self.activations and self.activations[-1] != n:
                self.activations.pop()
            if not self.activations:
                self.activations.append(n)
        elif action == "remove":
            self.removed.add(n)
            self.activations = [a for a in self.activations if a != n]


class ModelStore:
    """The store at ``root`` (default :func:`default_root`); see the module docstring.

    ``checkpoint(step)`` is called between the steps of every change (``copied``, ``loaded``, ``renamed``,
    ``recorded``, ``deleted``): it does nothing here, and lets a test stop the process at each step.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    # -- reading -----------------------------------------------------------------------------------------

    def history(self, name: str | None = None) -> list[dict[str, Any]]:
        """The committed changes, oldest first (of ``name`` only, when given)."""
        events = list(self._events())
        return [e for e in events if name is None or e["name"] == name]

    def stamp(self) -> int | None:
        """When the store last changed (its history's mtime in ns), or None for an empty store: cheap to poll.

        >>> ModelStore("/tmp/empty-store").stamp() is None
        True
        """
        try:
            return (self.root / HISTORY).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        """The names with at least one installed version."""
        return sorted(n for n, m in self._state().items() if m.live())

    def versions(self, name: str) -> list[Version]:
        """Every installed version of ``name``, oldest first."""
        model = self._model(name)
        return [self._version(name, n, model) for n in model.live()]

    def active(self, name: str) -> Version:
        """The active version of ``name``."""
        model = self._model(name)
        if model.active is None:
            raise ConfigError(f"model {name!r} in the store has no active version; activate one: "
                              f"edgecv models activate {name} VERSION")
        return self._version(name, model.active, model)

    def version(self, name: str, number: int) -> Version:
        """Version ``number`` of ``name``."""
        model = self._model(name)
        if number not in model.live():
            have = ", ".join(str(n) for n in model.live()) or "none"
            raise ConfigError(f"model {name!r} has no version {number} in the store {self.root}; versions: {have}")
        return self._version(name, number, model)

    def resolve(self, text: str) -> Version:
        """The version ``store:NAME`` (its active one) or ``store:NAME@VERSION`` names."""
        ref = text[len(PREFIX):] if is_store_ref(text) else text
        name, at, number = ref.partition("@")
        if not at:
            return self.active(name)
        if not number.isdigit():
            raise ConfigError(f"{text!r}: expected store:NAME or store:NAME@VERSION (a version number)")
        return self.version(name, int(number))

    # -- changes -----------------------------------------------------------------------------------------

    def install(self, artifact: str | Path, *, name: str, reason: str = "", spec: str | Path | None = None,
                labels: str | Path | None = None, activate: bool | None = None, measure: bool = True,
                input_shape: tuple[int, ...] | None = None) -> Version:
        """Copy ``artifact`` (with its companions and manifest) into the store as the next version of ``name``.

        Its files are checked against its manifest, the copies against the originals, and the copy is loaded
        and benchmarked (``measure``, in a child process; ``input_shape`` for a model with dynamic dims, default
        the shape its manifest was checked at). ``spec`` (a built-in name or a YAML file) and ``labels`` (a
        labels file) are kept with it. ``activate``: make it the active version (default: only when ``name``
        has none). Nothing is installed when a check fails.
        """
        _check_name(name)
        source = Path(artifact).expanduser()
        files, manifest, digests = _artifact_files(source)
        extra = _companions(spec, labels)
        with self._locked():
            model = self._state().get(name, _Model())
            number = model.last_number + 1
            folder = self.root / name
            incoming = folder / f"{INCOMING}{uuid.uuid4().hex[:12]}"
            try:
                incoming.mkdir(parents=True)
                copied = _copy_files(files, incoming, digests)
                extra_record = _write_companions(extra, incoming)
                self.checkpoint("copied")
                record = {"action": "install", "name": name, "version": number, "reason": reason,
                          "artifact": source.name, "source": str(source.resolve()), "files": copied,
                          "bytes": sum((incoming / f).stat().st_size for f in copied),
                          **_manifest_summary(manifest, source), **extra_record,
                          "activate": bool(activate) if activate is not None else model.active is None}
                if measure:
                    record.update(_measure(incoming / source.name, input_shape or _checked_shape(manifest)))
                self.checkpoint("loaded")
                _fsync_dir(incoming)
                os.rename(incoming, folder / f"v{number}")
                _fsync_dir(folder)
            except BaseException:
                shutil.rmtree(incoming, ignore_errors=True)
                raise
            self.checkpoint("renamed")
            self._commit(record)
            self.checkpoint("recorded")
        log.info("installed %s version %d from %s", name, number, source)
        return self.version(name, number)

    def activate(self, name: str, number: int, *, reason: str = "") -> Version:
        """Make version ``number`` of ``name`` the active one."""
        with self._locked():
            model = self._model(name)
            if number not in model.live():
                have = ", ".join(str(n) for n in model.live()) or "none"
                raise ConfigError(f"model {name!r} has no version {number} in the store {self.root}; versions: {have}")
            self._commit({"action": "activate", "name": name, "version": number, "previous": model.active,
                          "reason": reason})
            self.checkpoint("recorded")
        return self.version(name, number)

    def rollback(self, name: str, *, reason: str = "") -> Version:
        """Make the version that was active before the current one active again."""
        with self._locked():
            model = self._model(name)
            live = set(model.live())
            earlier = [n for n in model.activations[:-1] if n in live and n != model.active]
            if not earlier:
                raise ConfigError(f"model {name!r} has no earlier active version to roll back to "
                                  f"(active: {model.active}); activate one: edgecv models activate {name} VERSION")
            self._commit({"action": "rollback", "name": name, "version": earlier[-1], "previous": model.active,
                          "reason": reason})
            self.checkpoint("recorded")
        return self.version(name, earlier[-1])

    def remove(self, name: str, number: int | None, *, reason: str = "") -> list[int]:
        """Delete version ``number`` of ``name`` (not the active one: activate another or roll back first), or
        with ``number`` None every version, the model with them. Returns the versions removed."""
        with self._locked():
            model = self._model(name)
            live = model.live()
            if number is not None and number not in live:
                have = ", ".join(str(n) for n in live) or "none"
                raise ConfigError(f"model {name!r} has no version {number} in the store {self.root}; versions: {have}")
            if number is not None and number == model.active:
                raise ConfigError(f"version {number} is the active version of {name!r}; activate another one or roll "
                                  f"back first (or remove the whole model: edgecv models remove {name} --all)")
            gone = live if number is None else [number]
            for n in gone:  # one line each; a cut-short removal of several leaves the rest installed and whole
                self._commit({"action": "remove", "name": name, "version": n, "reason": reason})
                self.checkpoint("recorded")
                shutil.rmtree(self.root / name / f"v{n}", ignore_errors=True)
                self.checkpoint("deleted")
            return gone

    def checkpoint(self, step: str) -> None:
        """Called between the steps of a change (see the class docstring); nothing by default."""

    def check(self) -> list[str]:
        """Every installed version's files against the hashes recorded at install: the problems found, one line
        each (an empty list when the store is whole)."""
        return [p for name in self.names() for v in self.versions(name) for p in v.problems()]

    # -- internals ---------------------------------------------------------------------------------------

    def _version(self, name: str, number: int, model: _Model) -> Version:
        record = model.installed[number]
        return Version(name, number, self.root / name / f"v{number}" / record["artifact"], record,
                       active=number == model.active)

    def _model(self, name: str) -> _Model:
        _check_name(name)
        model = self._state().get(name)
        if model is None or not model.live():
            names = ", ".join(self.names()) or "none"
            raise ConfigError(f"no model {name!r} in the store {self.root}; models: {names} "
                              f"(install one: edgecv models install ARTIFACT --name {name})")
        return model

    def _state(self) -> dict[str, _Model]:
        state: dict[str, _Model] = {}
        for event in self._events():
            state.setdefault(event["name"], _Model()).apply(event)
        return state

    def _events(self) -> Iterator[dict[str, Any]]:
        """The committed lines: whole lines only (a torn last line is a change that did not happen)."""
        try:
            data = (self.root / HISTORY).read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"cannot read the model store's history {self.root / HISTORY}: {exc.strerror or exc}") from None
        for k, line in enumerate(data.split(b"\n")[:-1], 1):  # the part after the last newline is torn
            try:
                event = json.loads(line)
                ok = isinstance(event, dict) and event.get("action") in ACTIONS and isinstance(event.get("name"), str) \
                    and isinstance(event.get("version"), int)
            except ValueError:
                ok = False
            if not ok:
                raise IntegrityError(f"{self.root / HISTORY}, line {k}: not a change edgecv wrote; the store's history "
                                     "was edited by hand")
            yield event

    def _commit(self, event: dict[str, Any]) -> None:
        """Append ``event`` as one line: the change is done once this returns."""
        history = self.root / HISTORY
        event = {"seq": len(self.history()) + 1, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 **event}
        line = (json.dumps(event, sort_keys=False) + "\n").encode()
        fd = os.open(history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OutputError(f"cannot write the model store's history {history}: short write (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.root)

    def _locked(self):
        return _StoreLock(self)

    def _repair(self) -> None:
        """Under the lock: cut a torn last line, delete what no committed line accounts for."""
        history = self.root / HISTORY
        if history.exists():
            data = history.read_bytes()
            whole = data.rfind(b"\n") + 1
            if whole != len(data):
                log.warning("model store %s: dropping a change cut short (%d bytes)", self.root, len(data) - whole)
                with open(history, "r+b") as f:
                    f.truncate(whole)
                    os.fsync(f.fileno())
        state = self._state()
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)):
            model = state.get(folder.name, _Model())
            for part in folder.iterdir():
                m = _VERSION_DIR.match(part.name)
                stray = part.name.startswith(INCOMING) or (m is not None and int(m.group(1)) not in model.live())
                if stray and part.is_dir():
                    log.warning("model store %s: deleting %s, left by a change cut short", self.root, part)
                    shutil.rmtree(part, ignore_errors=True)
            if not any(folder.iterdir()):
                folder.rmdir()


class _StoreLock:
    """The store's exclusive lock (blocking), with the repair of what an interrupted change left."""

    def __init__(self, store: ModelStore) -> None:
        self.store, self.fd = store, None

    def __enter__(self) -> None:
        from edgecv.workdir import lock

        root = self.store.root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the model store {root}: {exc.strerror or exc}") from None
        self.fd = lock(root)
        self.store._repair()

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"model name {name!r}: expected letters, digits, '.', '_' or '-' (up to 64, starting with a "
                          "letter or digit)")


def _artifact_files(source: Path) -> tuple[list[Path], Any, dict[str, str]]:
    """The files of the artifact at ``source`` (model, companions, manifest), checked against its manifest; the
    manifest, and the SHA-256 of the files that check hashed."""
    from edgecv.formats import check_model_file
    from edgecv.integrity import verified_manifest
    from edgecv.manifest import manifest_path

    fmt = check_model_file(source)
    checked = verified_manifest(source)  # a hash mismatch, a missing or unlisted file: one IntegrityError line
    files = fmt.files(source)
    missing = [p.name for p in files if not p.exists()]
    if missing:
        raise IntegrityError(f"{source}: its companion {', '.join(missing)} is missing")
    if checked.manifest is not None:
        files.append(manifest_path(source))
    return files, checked.manifest, checked.digests


def _companions(spec: str | Path | None, labels: str | Path | None) -> dict[str, Any]:
    """The spec (checked by loading it) and labels (read) to keep with the version."""
    out: dict[str, Any] = {}
    if spec is not None:
        from edgecv.detection.spec import load_spec, spec_names

        loaded = load_spec(spec)
        out["spec"] = str(spec) if str(spec) in spec_names() else loaded
    if labels is not None:
        from edgecv.labels import read_labels

        out["labels"] = read_labels(labels)
    return out


def _write_companions(extra: dict[str, Any], folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = {}
    spec = extra.get("spec")
    if spec is not None and not isinstance(spec, str):
        import yaml

        atomic_write_bytes(folder / SPEC_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False).encode())
        record["spec"] = SPEC_FILE
    elif spec is not None:
        record["spec"] = spec
    if extra.get("labels"):
        atomic_write_bytes(folder / LABELS_FILE, ("\n".join(extra["labels"]) + "\n").encode())
        record["labels"] = LABELS_FILE
    return record


def _copy_files(files: list[Path], folder: Path, known: dict[str, str]) -> dict[str, str]:
    """Copy ``files`` into ``folder`` (synced), and return each copy's SHA-256 after checking it against the
    original's (``known``: hashes already taken, by the manifest check): a file that changes is refused."""
    digests = {}
    for src in files:
        dst = folder / src.name
        before = known.get(src.name) or sha256_of(src)
        try:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
        except OSError as exc:
            raise OutputError(f"cannot copy {src} into the model store: {exc.strerror or exc}") from None
        after = sha256_of(dst)
        if after != before:
            raise IntegrityError(f"{src} changed while it was copied into the model store; install it again")
        digests[src.name] = after
    return digests


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _manifest_summary(manifest: Any, source: Path) -> dict[str, Any]:
    """What the store keeps of the manifest: format, precision, the validation figures (without a manifest,
    format and precision read from the graph)."""
    if manifest is None:
        from edgecv.formats import read_graph

        return {"format": format_for_path(source).name, "precision": read_graph(source).precision, "validation": None,
                "manifest": False}
    v = manifest.validation or {}
    evaluated = (v.get("eval") or {}).get("scores") or {}
    validation = {"status": v.get("status"), "drop_points": v.get("drop_points", (v.get("eval") or {}).get("drop_points")),
                  "top1": evaluated.get("top1"), "map": evaluated.get("map"), "detection_f1": evaluated.get("detection_f1"),
                  "sqnr_db": evaluated.get("sqnr_db"), "samples": evaluated.get("samples")}
    return {"format": manifest.format, "precision": manifest.precision,
            "validation": {k: val for k, val in validation.items() if val is not None}, "manifest": True}


def _checked_shape(manifest: Any) -> tuple[int, ...] | None:
    """The input shape the artifact was checked at on export (for a model with dynamic dims)."""
    shapes = ((manifest.validation or {}).get("shapes") or {}) if manifest is not None else {}
    checked = shapes.get("checked") or []
    return tuple(checked[0]["shape"]) if checked and checked[0].get("shape") else None


def _measure(path: Path, input_shape: tuple[int, ...] | None) -> dict[str, Any]:
    """Load and run the copy in a child process: its p50 here, the backend, the load time."""
    from edgecv.bench import benchmark

    start = time.perf_counter()
    try:
        r = benchmark(path, runs=BENCH_RUNS, warmup=5, input_shape=input_shape)
    except EdgeCVError as exc:
        raise type(exc)(f"{path.name} does not load and run here, so it was not installed: {exc}") from None
    log.debug("install check of %s took %.1f s", path, time.perf_counter() - start)
    device = r.device or {}
    return {"p50_ms": round(r.p50_ms, 4), "backend": r.backend, "load_ms": round(r.load_ms, 1),
            "measured_on": f"{device.get('hostname')} ({device.get('cpu')}, {device.get('cores')} cores)"}
