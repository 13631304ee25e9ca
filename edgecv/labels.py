"""Class names from a labels file: the one reader every command uses, so class ids never shift between them.

The rule: **line k (counting from 0) names class k**, as TFLite's ``labelmap.txt`` files rely on.

- The file is UTF-8; a byte-order mark is ignored; lines end in ``\\n``, ``\\r\\n`` or ``\\r``.
- A name is its line without surrounding whitespace.
- Blank lines after the last name are not classes (a final newline, or several, adds nothing).
- A blank line before a name is a class without a name (``""``): it keeps its id, so the classes after it
  keep theirs; it is shown as its id (:func:`label_of`) and has no name to match by (:func:`names_by_id`).
- Placeholder lines such as ``???`` (a label map's background and the ids COCO left unused) are names like
  any other: kept, so ``person`` stays class 1 in the SSD MobileNet label map that starts with ``???``.
- A ``.yaml``/``.yml`` file gives its ``names``: a list in id order, or an ``{id: name}`` mapping (YOLO's
  ``data.yaml``); ids the mapping leaves out are classes without a name.
- A file that names no class, a missing or unreadable file, and bad YAML are one-line :class:`InputError`.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labelmap.txt"
    >>> _ = path.write_text("???\\nperson\\n\\ncar\\n\\n")
    >>> read_labels(path)
    ('???', 'person', '', 'car')
    >>> names_by_id(read_labels(path)), label_of(read_labels(path), 2)
    ({0: '???', 1: 'person', 3: 'car'}, '2')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import InputError
from edgecv.fileio import read_user_text

__all__ = ["YAML_SUFFIXES", "label_of", "names_by_id", "read_labels"]

#: Suffixes of labels files read as YAML (``names``), not as one name per line.
YAML_SUFFIXES = (".yaml", ".yml")
# A YAML ``{id: name}`` mapping with an id past this is refused: the names become one entry per id.
MAX_CLASS_ID = 100_000


def read_labels(path: str | Path) -> tuple[str, ...]:
    """The class names of a labels file, indexed by class id (module docstring: the rule)."""
    path = Path(path)
    text = read_user_text(path, "labels file").removeprefix("\ufeff")
    if path.suffix.lower() in YAML_SUFFIXES:
        names = _yaml_names(text, path)
    else:
        names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InputError(f"labels file {path} names no class")
    return tuple(names)


def _yaml_names(text: str, path: Path) -> list[str]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"cannot read labels file {path}: {str(exc).splitlines()[0]}") from None
    names: Any = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return ["" if n is None else str(n).strip() for n in names]
    if isinstance(names, dict) and names and all(_is_class_id(k) for k in names):
        ids = {int(k): "" if v is None else str(v).strip() for k, v in names.items()}
        return [ids.get(i, "") for i in range(max(ids) + 1)]
    raise InputError(
        f"labels file {path}: expected a 'names' list or {{id: name}} mapping with ids 0..{MAX_CLASS_ID}"
    )


def _is_class_id(key: Any) -> bool:
    whole = isinstance(key, int) or (isinstance(key, float) and key.is_integer())
    return whole and not isinstance(key, bool) and 0 <= key <= MAX_CLASS_ID


def names_by_id(labels: Sequence[str]) -> dict[int, str]:
    """Class id -> name of the classes that have a name (what matching classes by name needs).

    Example:
        >>> names_by_id(("???", "person", "", "car"))
        {0: '???', 1: 'person', 3: 'car'}
    """
    return {i: name for i, name in enumerate(labels) if name}


def label_of(labels: Sequence[str] | None, class_id: int) -> str:
    """The name of ``class_id``, or the id as text where there is none (past the labels, or unnamed).

    Example:
        >>> label_of(("cat", ""), 0), label_of(("cat", ""), 1), label_of(None, 7)
        ('cat', '1', '7')
    """
    if labels is not None and 0 <= class_id < len(labels) and labels[class_id]:
        return labels[class_id]
    return str(class_id)
