"""The sweep file of ``edgecv sweep``: models, devices, recipes, data and budgets, all checked before any job
starts. Every problem is one line naming the file and, for a field, its line.

    models:
      digits: {file: digits.keras, preprocess: {mean: [0], std: [255]}}
      mnist8: {file: mnist-8.onnx, preprocess: {layout: NCHW, mean: [0], std: [1]}, recipes: [ptq]}
    devices: [raspberry-pi-5, coral-edgetpu, boards/my-board.yaml]
    recipes:
      ptq: {kind: ptq}
      pruned: {kind: prune, sparsity: 0.5, epochs: 2}
      student: {kind: distill, width: 0.5, epochs: 3}
      tuned: {kind: qat, epochs: 2}
    data: {calib: calib.npy, eval: eval.npz, train: train.npz}
    budget: {max_drop: 1.0, retries: 1}
    resources: {cpus: 1, memory_mb: 3000}

Paths are relative to the file's folder. Every job reads them where they are and writes into the sweep's
``--out`` folder: on a cluster of several machines both must be on a path every node sees (a shared
filesystem), at the same place. Which recipe kinds exist and which fields each takes is
:data:`edgecv.converters.sweep_recipes.RECIPES`.

Example:
    >>> sweep = load_sweep("sweep.yaml")                                    # doctest: +SKIP
    >>> list(sweep.models), [p.name for p in sweep.profiles]                # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecv.converters.sweep_recipes import RECIPES
from edgecv.errors import ConfigError, ManifestError
from edgecv.manifest import Preprocess

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KERAS_SUFFIXES = (".keras", ".h5")


@dataclass(frozen=True)
class ModelEntry:
    """One source model: its ``file`` (.keras, .h5, SavedModel, .onnx or float .tflite), how pixels become its
    input (``preprocess``), and for a detector its ``detector`` spec; its class ``labels``; the ``recipes`` (names
    of the file's ``recipes``) that apply to it (None: all of them; the training ones take a Keras model)."""

    file: str
    preprocess: Preprocess = Preprocess()
    detector: str | None = None
    labels: tuple[str, ...] | None = None
    recipes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RecipeEntry:
    """One way to compress before the device's candidates are built: ``kind`` (ptq, prune, distill, cluster,
    qat) and the options of that kind (``epochs``; ``sparsity`` and ``method`` for prune, ``width`` for
    distill, ``clusters`` for cluster), ``seed``."""

    kind: str
    epochs: int | None = None
    sparsity: float | None = None
    method: str | None = None
    width: float | None = None
    clusters: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class DataEntry:
    """``calib``: images for post-training quantization; ``eval``: labelled data every artifact and every
    trained model is scored on; ``train``: labelled data for the recipes that train. Any data ``edgecv
    optimize`` and ``edgecv prune`` take."""

    calib: str | None = None
    eval: str | None = None
    train: str | None = None
    calib_samples: int = 300


@dataclass(frozen=True)
class Budget:
    """``max_drop``: the accuracy points a chosen artifact may lose against the source model, the recipe's
    training and the quantization together; ``retries``: how many times a failed job (an error, or its worker
    killed) is tried again before it is reported; ``bench_runs``: timed runs per candidate where the device
    is reachable."""

    max_drop: float = 1.0
    retries: int = 1
    bench_runs: int = 50


@dataclass(frozen=True)
class Resources:
    """What one job asks of the executor: ``cpus`` and ``memory_mb`` (Ray schedules by them; the local
    executor runs as many jobs at once as it has cores for)."""

    cpus: float = 1.0
    memory_mb: int = 2048


@dataclass(frozen=True)
class SweepFile:
    """The whole file (see the module docstring); ``path`` is where it was read from, ``profiles`` the devices'
    loaded profiles in the order given."""

    models: dict[str, ModelEntry]
    devices: tuple[str, ...]
    recipes: dict[str, RecipeEntry]
    data: DataEntry = DataEntry()
    budget: Budget = Budget()
    resources: Resources = Resources()
    path: Path | None = field(default=None, compare=False)
    profiles: tuple[Any, ...] = field(default=(), compare=False, init=False)


def load_sweep(path: str | Path) -> SweepFile:
    """The sweep file at ``path``, checked, with its paths made absolute and its device profiles loaded."""
    from edgecv.yamlfile import line_of, read_checked

    path = Path(path)
    kind = "sweep file"
    try:
        sweep, raw = read_checked(path, SweepFile, kind=kind, root="sweep")
    except ManifestError as exc:  # a Preprocess with bad values
        raise ConfigError(f"{kind} {path}: {exc}") from None
    file = f"{kind} {path}"

    def fail(dotted: str, message: str) -> ConfigError:
        line = line_of(raw, f"sweep.{dotted}")
        return ConfigError(f"{file}{f' line {line}' if line else ''}: {dotted}: {message}")

    base = path.resolve().parent

    def existing(dotted: str, value: str) -> str:
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base / p
        if not p.exists():
            raise fail(dotted, f"not found: {p}")
        return str(p)

    for section in ("models", "recipes"):
        entries = getattr(sweep, section)
        if not entries:
            raise fail(section, "expected at least one entry")
        for name in entries:
            if not NAME.match(name):
                raise fail(f"{section}.{name}", "expected a name of letters, digits, '.', '-' or '_' (at most 64)")
    models = {name: replace(m, file=existing(f"models.{name}.file", m.file),
                            detector=m.detector if m.detector is None or not Path(m.detector).suffix
                            else existing(f"models.{name}.detector", m.detector))
              for name, m in sweep.models.items()}
    profiles = _profiles(sweep.devices, base, fail)
    _check_recipes(sweep.recipes, fail)
    for name, m in models.items():
        chosen = sweep.recipes if m.recipes is None else m.recipes
        unknown = [r for r in chosen if r not in sweep.recipes]
        if unknown:
            raise fail(f"models.{name}.recipes", f"unknown recipe(s) {', '.join(unknown)}; the file's recipes: "
                                                 f"{', '.join(sweep.recipes)}")
        training = [r for r in chosen if RECIPES[sweep.recipes[r].kind].trains]
        if training and Path(m.file).suffix.lower() not in KERAS_SUFFIXES:
            raise fail(f"models.{name}", f"recipe(s) {', '.join(training)} train a Keras model (.keras, .h5) and "
                                         f"{Path(m.file).name} is not one: list the recipes that apply to it "
                                         f"(recipes: [...])")
    data = sweep.data
    data = replace(data, **{k: existing(f"data.{k}", getattr(data, k)) for k in ("calib", "eval", "train")
                            if getattr(data, k) is not None})
    if data.calib_samples < 1:
        raise fail("data.calib_samples", f"expected at least 1, got {data.calib_samples}")
    training = [n for n, r in sweep.recipes.items() if RECIPES[r.kind].trains]
    if training and data.train is None:
        raise fail("data", f"recipe(s) {', '.join(training)} train: give data.train (labelled training data)")
    int8 = [p.name for p in profiles if any(prec in ("int8", "int16x8") for _, prec in p.candidates())]
    if int8 and data.calib is None:
        raise fail("data", f"device(s) {', '.join(int8)} run int8: give data.calib (calibration images)")
    b, res = sweep.budget, sweep.resources
    if not b.max_drop >= 0:
        raise fail("budget.max_drop", f"expected points >= 0, got {b.max_drop}")
    if not 0 <= b.retries <= 5:
        raise fail("budget.retries", f"expected 0..5, got {b.retries}")
    if b.bench_runs < 1:
        raise fail("budget.bench_runs", f"expected at least 1, got {b.bench_runs}")
    if not res.cpus > 0:
        raise fail("resources.cpus", f"expected a number > 0, got {res.cpus}")
    if res.memory_mb < 256:
        raise fail("resources.memory_mb", f"expected at least 256, got {res.memory_mb}")
    checked = replace(sweep, models=models, data=data, path=path)
    object.__setattr__(checked, "profiles", tuple(profiles))
    return checked


def _profiles(devices: tuple[str, ...], base: Path, fail) -> list[Any]:
    from edgecv.devices import load_profile

    if not devices:
        raise fail("devices", "expected at least one device (edgecv devices list)")
    profiles, seen = [], set()
    for name in devices:
        given = Path(name).expanduser()
        where = given if not given.suffix or given.is_absolute() else base / given
        try:
            profile = load_profile(where)
        except ConfigError as exc:
            raise fail("devices", str(exc)) from None
        if profile.name in seen:
            raise fail("devices", f"{profile.name!r} appears twice")
        seen.add(profile.name)
        profiles.append(profile)
    return profiles


def _check_recipes(recipes: dict[str, RecipeEntry], fail) -> None:
    for name, r in recipes.items():
        at = f"recipes.{name}"
        recipe = RECIPES.get(r.kind)
        if recipe is None:
            raise fail(f"{at}.kind", f"unknown recipe kind {r.kind!r}; valid kinds: {', '.join(RECIPES)}")
        given = [k for k in ("epochs", "sparsity", "method", "width", "clusters") if getattr(r, k) is not None]
        extra = [k for k in given if k not in recipe.options]
        if extra:
            takes = ", ".join(recipe.options) or "no options"
            raise fail(at, f"a {r.kind} recipe takes {takes}; got {', '.join(extra)}")
        try:
            recipe.check(r)
        except ConfigError as exc:
            raise fail(at, str(exc)) from None
