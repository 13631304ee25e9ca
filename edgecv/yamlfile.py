"""Named YAML files: a built-in one by name from a folder, or any file by path.

Example:
    >>> path, data = read_named_yaml("blazeface-short-range", folder=SPEC_DIR, kind="detector spec")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError


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
