"""The installed layout and the device/workstation boundary, checked on the real source and a real wheel.

- The import graph of ``edgecv`` (``edgecv/``) and ``edgecv.converters`` (``converters/``), read with ``ast``
  (imports inside functions included): the device side never imports the workstation side or its heavy
  libraries, no module reaches for another module's underscore names, and there are no import cycles.
- The wheel installs one top-level name, ``edgecv``, with its profiles, detector specs and converters.
- ``edgecv --help`` and ``edgecv devices list`` import no converter module and no heavy library, and a user's
  own ``converters.py`` or ``devices/`` folder in the working directory changes nothing.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgecv.cli.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
# Folder on disk -> the package name it installs as (pyproject's [tool.setuptools.package-dir]).
SOURCE_ROOTS = {"edgecv": REPO / "edgecv", "edgecv.converters": REPO / "converters", "edgecv.profiles": REPO / "devices"}
WORKSTATION = "edgecv.converters"
# The only device-side modules that may import edgecv.converters, and only inside a function: the CLI's
# workstation commands (the command table's), imported when that command runs.
WORKSTATION_ENTRY_POINTS = {
    *(c.module for c in COMMANDS.values() if c.side == "workstation"),
    "edgecv.cli.compress_table",
}
# Libraries that only the workstation side (the "convert" extra) may import. onnxruntime is a device runtime.
WORKSTATION_LIBRARIES = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "tensorflow_model_optimization", "nncf", "onnx2tf")
# Functions that import the module named by their first (constant string) argument.
DYNAMIC_IMPORTERS = {"require", "import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    """One import in a project module: ``importer`` (line ``line``) imports module ``target``; ``names`` are
    the names a ``from`` import takes from it (a submodule taken that way is its own Import)."""

    importer: str
    line: int
    target: str
    names: tuple[str, ...] = ()
    in_function: bool = False
    type_only: bool = False  # under ``if TYPE_CHECKING:``: never runs

    def where(self) -> str:
        return f"{self.importer}:{self.line}"


def project_modules() -> dict[str, Path]:
    """Every module of the installed ``edgecv`` namespace, by dotted name, from its folder in the repo."""
    modules = {}
    for package, root in SOURCE_ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportReader(ast.NodeVisitor):
    """Collects one module's imports (with their context) and its ``module._name`` accesses."""

    def __init__(self, name: str, is_package: bool, modules: set[str]) -> None:
        self.name = name
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.imports: list[Import] = []
        self.private_access: list[tuple[int, str, str]] = []  # (line, module, attribute)
        self.bound: dict[str, str] = {}  # local name -> project module it is bound to
        self.depth = 0
        self.type_only = 0

    def _add(self, line: int, target: str, names: tuple[str, ...] = ()) -> None:
        self.imports.append(Import(self.name, line, target, names, self.depth > 0, self.type_only > 0))

    def _resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_only += 1
            for child in node.body:
                self.visit(child)
            self.type_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)
            if alias.asname:
                self.bound[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.bound[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = self._resolve(node)
        plain = []
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in self.modules:
                self._add(node.lineno, submodule)
                self.bound[alias.asname or alias.name] = submodule
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    plain.append(alias.name)  # a private submodule taken by name
            else:
                plain.append(alias.name)
        if plain or not node.names:
            self._add(node.lineno, source, tuple(plain))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called in DYNAMIC_IMPORTERS and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node.lineno, node.args[0].value)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in self.bound:
            chain.reverse()
            module = self.bound[value.id]
            for attr in chain:
                if f"{module}.{attr}" in self.modules:
                    module = f"{module}.{attr}"
                    continue
                if module in self.modules and attr.startswith("_") and not attr.startswith("__"):
                    self.private_access.append((node.lineno, module, attr))
                break
            return  # the whole chain was read here; its inner Attribute nodes are not separate accesses
        self.generic_visit(node)


@dataclass
class Graph:
    modules: dict[str, Path]
    imports: list[Import]
    private_access: list[tuple[str, int, str, str]]  # (importer, line, module, attribute)


def read_graph() -> Graph:
    modules = project_modules()
    names = set(modules)
    imports, private = [], []
    for name, path in modules.items():
        reader = _ImportReader(name, path.name == "__init__.py", names)
        reader.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        imports += reader.imports
        private += [(name, line, module, attr) for line, module, attr in reader.private_access]
    return Graph(modules, imports, private)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _device_side(module: str) -> bool:
    return _within(module, "edgecv") and not _within(module, WORKSTATION)


def _project_target(imp: Import, modules: dict[str, Path]) -> str | None:
    """The project module an import runs, or None for a third-party one (``edgecv.x.Name`` -> ``edgecv.x``)."""
    target = imp.target
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def boundary_violations(graph: Graph) -> list[str]:
    found = []
    for imp in graph.imports:
        if _device_side(imp.importer) and _within(imp.target, WORKSTATION):
            if imp.importer not in WORKSTATION_ENTRY_POINTS:
                found.append(f"{imp.where()} -> {imp.target}: device-side module imports the workstation side")
            elif not imp.in_function:
                found.append(f"{imp.where()} -> {imp.target}: a CLI entry point imports the workstation side at module level")
        if _device_side(imp.importer) and imp.target.split(".")[0] in WORKSTATION_LIBRARIES:
            found.append(f"{imp.where()} -> {imp.target}: device-side module imports a workstation library")
        if _within(imp.importer, WORKSTATION) and _within(imp.target, "edgecv.cli"):
            found.append(f"{imp.where()} -> {imp.target}: the workstation side imports the CLI")
    return found


def private_name_violations(graph: Graph) -> list[str]:
    found = []
    for imp in graph.imports:
        target = _project_target(imp, graph.modules)
        if target is None:
            continue
        for name in imp.names:
            if name.startswith("_") and not name.startswith("__") and target != imp.importer:
                found.append(f"{imp.where()} -> {target}.{name}: imports another module's private name")
        private_parts = [p for p in imp.target.split(".") if p.startswith("_") and not p.startswith("__")]
        if private_parts and imp.target in graph.modules:
            owner = imp.target[: imp.target.index("." + private_parts[0])]
            if not _within(imp.importer, owner):
                found.append(f"{imp.where()} -> {imp.target}: imports a private module from outside its package")
    for importer, line, module, attr in graph.private_access:
        if module != importer:
            found.append(f"{importer}:{line} -> {module}.{attr}: reads another module's private name")
    return found


def import_cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of size > 1 (Tarjan), over imports that run (TYPE_CHECKING ones do not)."""
    edges: dict[str, dict[str, int]] = {m: {} for m in graph.modules}
    for imp in graph.imports:
        target = _project_target(imp, graph.modules)
        if target and target != imp.importer and not imp.type_only:
            edges[imp.importer].setdefault(target, imp.line)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in sorted(edges):
        if v not in index:
            connect(v)
    described = []
    for component in sorted(components):
        members = set(component)
        described.append([f"{a}:{edges[a][b]} -> {b}" for a in component for b in sorted(edges[a]) if b in members])
    return described


@pytest.fixture(scope="module")
def graph() -> Graph:
    return read_graph()


def test_the_graph_reader_sees_the_project(graph):
    # Guards the checks below against passing on an empty or mis-resolved graph.
    assert {"edgecv.cli.main", "edgecv.converters.export", "edgecv.model", "edgecv.converters.targets"} <= set(graph.modules)
    assert any(i.importer == "edgecv.cli.main" and i.target == "edgecv.cli.commands" for i in graph.imports)
    assert any(i.importer.startswith(WORKSTATION) and i.target.startswith("edgecv.") and not i.target.startswith(WORKSTATION)
               for i in graph.imports)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("edgecv.cli.main", "from edgecv.converters import export\n", ["edgecv.converters.export: device-side module imports the workstation side"]),
        ("edgecv.cli.export_cmd", "from edgecv.converters.export import export\n", ["at module level"]),
        ("edgecv.cli.export_cmd", "def run():\n    from edgecv.converters.export import export\n", []),
        ("edgecv.model", "def f():\n    import tensorflow as tf\n", ["tensorflow: device-side module imports a workstation library"]),
        ("edgecv.model", "import onnxruntime\n", []),
        ("edgecv.model", "def f():\n    return require('onnx', extra='convert')\n", ["onnx: device-side module imports a workstation library"]),
        ("edgecv.converters.report", "from ..cli import main\n", ["edgecv.cli.main: the workstation side imports the CLI"]),
        ("edgecv.converters.report", "from edgecv.tables import format_table\n", []),
    ],
)
def test_boundary_check_names_the_offending_edge(module, source, expected):
    modules = project_modules()
    reader = _ImportReader(module, False, set(modules))
    reader.visit(ast.parse(source))
    found = boundary_violations(Graph(modules, reader.imports, []))
    assert len(found) == len(expected)
    for line, want in zip(found, expected):
        assert line.startswith(f"{module}:") and want in line


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("edgecv.model", "from edgecv.probe import _helper\n", "edgecv.probe._helper"),
        ("edgecv.model", "import edgecv.probe as p\nx = p._helper\n", "edgecv.probe._helper"),
        ("edgecv.model", "import edgecv.probe\nx = edgecv.probe._helper()\n", "edgecv.probe._helper"),
        ("edgecv.model", "from . import probe\nx = probe._helper\n", "edgecv.probe._helper"),
        ("edgecv.model", "from edgecv import probe\nx = probe.__name__\n", None),
        ("edgecv.model", "x = self._helper\n", None),
    ],
)
def test_private_name_check_names_the_offending_edge(module, source, expected):
    modules = project_modules()
    reader = _ImportReader(module, False, set(modules))
    reader.visit(ast.parse(source))
    graph = Graph(modules, reader.imports, [(module, line, m, a) for line, m, a in reader.private_access])
    found = private_name_violations(graph)
    assert [expected in line for line in found] == ([True] if expected else [])


def test_cycle_check_finds_a_cycle_through_a_function_level_import():
    modules = {"edgecv.a": Path("a.py"), "edgecv.b": Path("b.py"), "edgecv.c": Path("c.py")}
    imports = [
        Import("edgecv.a", 1, "edgecv.b", ("f",)),
        Import("edgecv.b", 7, "edgecv.a", ("g",), in_function=True),
        Import("edgecv.c", 1, "edgecv.a"),
        Import("edgecv.c", 2, "edgecv.b", type_only=True),
    ]
    assert import_cycles(Graph(modules, imports, [])) == [["edgecv.a:1 -> edgecv.b", "edgecv.b:7 -> edgecv.a"]]


def test_device_side_never_imports_the_workstation_side(graph):
    found = boundary_violations(graph)
    assert not found, "boundary violations:\n  " + "\n  ".join(found)


def test_no_module_imports_another_modules_private_names(graph):
    found = private_name_violations(graph)
    assert not found, "private names used across modules:\n  " + "\n  ".join(found)


def test_no_import_cycles(graph):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles (one block per cycle):\n" + "\n".join("  " + "\n  ".join(c) + "\n" for c in cycles)


# --- the wheel --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("wheel-src")
    # Built from a copy of the tracked source, so a build leaves nothing (build/, *.egg-info) in the checkout.
    for name in ("pyproject.toml", "README.md", "edgecv", "converters", "devices"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, build / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, build / name)
    # Offline with the venv's own setuptools where it can build wheels (the main venv); else pip fetches the
    # build backend (a device venv has no ``wheel`` package).
    offline = ["--no-build-isolation"] if importlib.util.find_spec("wheel") else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(build), "--no-deps", *offline, "-q", "-w", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("edgecv-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_one_top_level_name(wheel):
    names = wheel.namelist()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["edgecv"]
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"edgecv"}


def test_wheel_carries_profiles_specs_and_converters(wheel):
    names = set(wheel.namelist())
    for folder, pattern in [("devices", "*.yaml"), ("edgecv/detection/specs", "*.yaml"), ("converters", "*.py")]:
        on_disk = sorted(p.relative_to(REPO / folder.split("/")[0]) for p in (REPO / folder).glob(pattern))
        assert on_disk, f"nothing matches {folder}/{pattern}"
    assert {f"edgecv/profiles/{p.name}" for p in (REPO / "devices").glob("*.yaml")} <= names
    assert {f"edgecv/detection/specs/{p.name}" for p in (REPO / "edgecv/detection/specs").glob("*.yaml")} <= names
    # Every module of the source, converters included, under its installed name.
    sources = {name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
               for name, path in project_modules().items()}
    assert any(s.startswith("edgecv/converters/") for s in sources)
    assert sources - names == set(), "modules missing from the wheel"


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in project_modules().items() if path.name == "__init__.py"}
    assert packages - listed == set(), "package folders missing from [tool.setuptools] packages"
    assert listed - packages == set(), "[tool.setuptools] packages names folders that do not exist"


# --- the CLI's start --------------------------------------------------------------------------------------

HEAVY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "tensorflow_model_optimization", "nncf", "onnx2tf",
         "torch", "cv2", "onnxruntime", "openvino", "ai_edge_litert")
# Runs the CLI in-process as ``python -m edgecv`` would, then prints what it imported as the last line.
_PROBE = (
    "import json, runpy, sys\n"
    "sys.argv = ['edgecv'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('edgecv', run_name='__main__', alter_sys=True)\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "else:\n"
    "    code = 0\n"
    "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
)


def _cli_modules(*args: str, cwd: Path) -> tuple[int, set[str], str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    return last["code"], set(last["modules"]), done.stdout + done.stderr


@pytest.mark.parametrize("args", [("--help",), ("devices", "list")])
def test_cli_start_imports_no_converter_or_heavy_library(args, tmp_path):
    code, loaded, output = _cli_modules(*args, cwd=tmp_path)
    assert code in (0, None), output
    assert "edgecv.cli.main" in loaded
    assert sorted(m for m in loaded if _within(m, WORKSTATION)) == []
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []


def test_users_converters_and_devices_in_cwd_change_nothing(tmp_path):
    """The issue's original bug: a user's ``converters.py`` broke ``python -m edgecv devices list`` and a
    ``devices/`` folder made it print an empty table."""
    clean = tmp_path / "clean"
    clean.mkdir()
    expected = subprocess.run([sys.executable, "-m", "edgecv", "devices", "list"], cwd=clean, capture_output=True,
                              text=True, timeout=120)
    assert expected.returncode == 0, expected.stderr
    assert "raspberry-pi-5" in expected.stdout
    user = tmp_path / "user"
    (user / "devices").mkdir(parents=True)
    (user / "converters.py").write_text("raise RuntimeError('the user module was imported')\n")
    (user / "devices" / "__init__.py").write_text("")
    (user / "devices" / "my-board.yaml").write_text("name: my-board\n")
    for cmd in ([sys.executable, "-m", "edgecv", "devices", "list"], [sys.executable, "-c", _PROBE, "devices", "list"]):
        done = subprocess.run(cmd, cwd=user, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    assert subprocess.run([sys.executable, "-m", "edgecv", "devices", "list"], cwd=user, capture_output=True,
                          text=True).stdout == expected.stdout
