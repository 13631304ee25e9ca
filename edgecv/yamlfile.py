"""YAML files: a built-in one by name from a folder, or any file by path; and a file checked against a frozen
dataclass schema, every problem a one-line error naming the file and the line (device profiles, the
``serve`` config).

Example:
    >>> path, data = read_named_yaml("blazeface-short-range", folder=SPEC_DIR, kind="detector spec")  # doctest: +SKIP
    >>> profile = load_checked("devices/rpi4.yaml", DeviceProfile, kind="device profile")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from edgecv.errors import ConfigError

T = TypeVar("T")


def names_in(folder: Path) -> list[str]:
    """The names of the ``*.yaml`` files in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def read_named_yaml(name_or_path: str | Path, *, folder: Path, kind: str, listing: str = "known") -> tuple[Path, Any]:
    """``name_or_path`` without a suffix is ``folder/<name>.yaml``; returns the path and the parsed YAML.
    A missing name, a missing or unreadable file, or bad YAML raises a one-line :class:`ConfigError`
    (``kind`` names what it is: "detector spec"; ``listing`` heads the list of known names)."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(names_in(folder)) or "none"
            raise ConfigError(f"unknown {kind} {str(name_or_path)!r}; {listing}: {known}")
    try:
        return path, yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{kind} not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {kind} {path}: {str(exc).splitlines()[0]}") from None


class _Lines(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]


def load_yaml_with_lines(text: str) -> Any:
    """``text`` parsed as YAML, each mapping remembering the line of each of its keys (``.lines``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Lines:
        out = _Lines(loader.construct_mapping(node, deep=True))
        out.lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


def schema_of(hint: Any) -> Any:
    """The dataclass a hint holds (through ``X | None`` and ``dict[str, X]``), or None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict:
        return ("dict", schema_of(args[1]))
    if args and origin is not tuple:
        inner = [a for a in args if a is not type(None)]
        return schema_of(inner[0]) if inner else None
    return hint if dataclasses.is_dataclass(hint) else None


def check_fields(data: Any, cls: Any, where: str, file: str, line: int | None, *, top: str = "the file") -> None:
    """Unknown and missing fields of dataclass ``cls`` in ``data`` (from :func:`load_yaml_with_lines`), with the
    line they are on, recursively; ``file`` heads the message (``top`` names the whole file in it)."""
    at = f"{file} line {line}" if line else file
    if not isinstance(data, Mapping):
        raise ConfigError(f"{at}: {where or top}: expected a mapping, got {type(data).__name__}")
    lines = getattr(data, "lines", {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "path"}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = [f for f in fields if similar(str(key), f)]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{file} line {lines.get(str(key), '?')}: unknown field {key!r}"
                              f"{' in ' + where if where else ''}{hint}; valid fields: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{at}: missing field(s) {', '.join(missing)}{' in ' + where if where else ''}")
    for key, value in data.items():
        schema = schema_of(hints[str(key)])
        sub = f"{where}.{key}" if where else str(key)
        if isinstance(schema, tuple) and isinstance(value, Mapping):
            if schema[1] is not None:
                for k, v in value.items():
                    check_fields(v, schema[1], f"{sub}.{k}", file, getattr(value, "lines", {}).get(str(k)))
        elif schema is not None and value is not None:
            check_fields(value, schema, sub, file, lines.get(str(key)))


def similar(a: str, b: str) -> bool:
    """Whether ``a`` looks like a misspelling of ``b``."""
    import difflib

    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


def line_of(data: Any, dotted: str) -> int | None:
    """The line of the key at ``dotted`` (``a.b.c``), as far as it can be followed."""
    line = None
    for part in dotted.split(".")[1:]:
        part = part.split("[")[0]
        if not isinstance(data, Mapping) or part not in data:
            break
        line = getattr(data, "lines", {}).get(part, line)
        data = data[part]
    return line


def load_checked(path: str | Path, cls: type[T], *, kind: str, root: str = "file") -> T:
    """The YAML file at ``path`` as dataclass ``cls``: a missing or unreadable file, bad YAML, unknown or
    missing fields and wrong types are each a one-line :class:`ConfigError` naming ``kind``, the file and the
    line."""
    return read_checked(path, cls, kind=kind, root=root)[0]


def read_checked(path: str | Path, cls: type[T], *, kind: str, root: str = "file") -> tuple[T, Any]:
    """:func:`load_checked`, and the parsed YAML with its lines (for :func:`line_of` in later value checks)."""
    import yaml

    from edgecv.config import from_mapping

    path = Path(path)
    try:
        data = load_yaml_with_lines(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{kind} not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {kind} {path}: {str(exc).splitlines()[0]}") from None
    file = f"{kind} {path}"
    check_fields(data, cls, "", file, None, top=f"the {root}")
    try:
        return from_mapping(cls, data, root), data
    except ConfigError as exc:
        dotted = str(exc).split(":", 1)[0]
        line = line_of(data, dotted)
        raise ConfigError(f"{file}{f' line {line}' if line else ''}: {str(exc).removeprefix(root + '.')}") from None
