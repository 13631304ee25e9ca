"""Artifacts verify themselves: before a runtime reads an artifact, every file its manifest lists is hashed
(SHA-256, streamed) and compared with the hash the manifest records.

:func:`verified_manifest` is what :func:`edgecv.load` calls. It refuses, with one
:class:`~edgecv.errors.IntegrityError` line, a file whose hash differs, a listed file that is missing, a file
of the artifact (the artifact and its companions, as :data:`edgecv.formats.FORMATS` names them) that the
manifest does not list, and a manifest that cannot be read. Its outcome is one of :data:`VERIFICATIONS`,
kept on the model as ``model.verification`` and shown by ``edgecv info`` and ``edgecv bench``.

The check costs one streamed read and hash of the files: 52 ms for 100 MB on a CPU with SHA extensions,
about 30% of a warm-cache ONNX Runtime load of the same file (``benchmarks/verify_cost.py``); it leaves the
files in the page cache for the runtime that reads them next.

Example:
    >>> verified_manifest(Path("model.fp32.xml")).verification   # doctest: +SKIP
    'verified'
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal, NamedTuple

from edgecv.errors import IntegrityError, ManifestError
from edgecv.fileio import sha256_of
from edgecv.formats import format_for_path
from edgecv.manifest import Manifest, manifest_path

log = logging.getLogger(__name__)

Verification = Literal[
    "verified",
    "unverified (no manifest)",
    "unverified (manifest without file hashes)",
    "skipped (--no-verify)",
]
VERIFIED: Verification = "verified"
NO_MANIFEST: Verification = "unverified (no manifest)"
NO_HASHES: Verification = "unverified (manifest without file hashes)"
SKIPPED: Verification = "skipped (--no-verify)"
VERIFICATIONS: tuple[Verification, ...] = (VERIFIED, NO_MANIFEST, NO_HASHES, SKIPPED)

HOW_TO_PROCEED = "re-export it, or load with verify=False / --no-verify to run it anyway"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Checked(NamedTuple):
    """What :func:`verified_manifest` found: the manifest (None when there is none or it was ignored), how the
    artifact was verified, and the SHA-256 of each file it hashed (by name)."""

    manifest: Manifest | None
    verification: Verification
    digests: dict[str, str]


def verified_manifest(path: str | Path, *, verify: bool = True) -> Checked:
    """The manifest beside the artifact at ``path`` (None when there is none) and how the artifact was verified.

    With ``verify``, every file of :attr:`Manifest.files` is hashed and compared before anything else reads the
    artifact; a mismatch, a missing or unlisted file, or an unreadable manifest raises
    :class:`~edgecv.errors.IntegrityError`. Without it, nothing is hashed (the outcome is :data:`SKIPPED`,
    with a warning when the manifest has hashes), and an unreadable manifest is ignored (with a warning) so
    that the artifact still loads.
    """
    path = Path(path)
    where = manifest_path(path)
    if not where.is_file():
        return Checked(None, NO_MANIFEST if verify else SKIPPED, {})
    try:
        manifest = Manifest.read(where)
    except ManifestError as exc:
        if verify:
            raise IntegrityError(f"{exc}; {HOW_TO_PROCEED} (without its manifest)") from None
        log.warning("ignoring the unreadable manifest of %s (--no-verify): %s", path.name, exc)
        return Checked(None, SKIPPED, {})
    if not verify:
        if manifest.files:
            log.warning("%s: its files are not checked against the SHA-256 hashes of its manifest (--no-verify)", path)
        return Checked(manifest, SKIPPED, {})
    if not manifest.files:
        return Checked(manifest, NO_HASHES, {})
    return Checked(manifest, VERIFIED, check_files(path, manifest.files, where=where))


def check_files(path: Path, files: object, *, where: Path) -> dict[str, str]:
    """Hash the files ``files`` (``{name: sha256}``, from the manifest at ``where``) lists beside ``path``, and
    raise :class:`IntegrityError` unless each matches and every file of the artifact is listed. Returns the
    hashes computed."""
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise IntegrityError(f"manifest {where}: 'files' must map file names to SHA-256 hashes, got "
                             f"{type(files).__name__}; {HOW_TO_PROCEED}")
    for name, digest in files.items():
        if not name or name != Path(name).name or name in (".", ".."):
            raise IntegrityError(f"manifest {where} lists {name!r}, not a file name beside the artifact; {HOW_TO_PROCEED}")
        if not _SHA256.match(digest.lower()):
            raise IntegrityError(f"manifest {where}: the hash of {name} is not a SHA-256 ({digest[:20]!r}); {HOW_TO_PROCEED}")
    for part in format_for_path(path).files(path):
        if part.name not in files and part.exists():
            raise IntegrityError(f"{part} is not among the files its manifest {where.name} hashes "
                                 f"({', '.join(sorted(files))}); {HOW_TO_PROCEED}")
    computed = {}
    for name, expected in files.items():
        file = path.with_name(name)
        if not file.is_file():
            raise IntegrityError(f"{file} is missing: its manifest {where.name} lists it (sha256 {expected[:12]}); "
                                 f"{HOW_TO_PROCEED}")
        got = sha256_of(file)
        if got != expected.lower():
            raise IntegrityError(f"{file} does not match its manifest (sha256 expected {expected[:12]}, got {got[:12]}): "
                                 f"the file changed after export; {HOW_TO_PROCEED}")
        computed[name] = got
    return computed
