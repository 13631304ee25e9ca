"""Placing a finished artifact: its files moved into the output folder by rename, then its manifest beside it.

Example:
    >>> place_artifact(Path("work/m.fp32.xml"), Path("out"), manifest)     # doctest: +SKIP
    PosixPath('out/m.fp32.xml')
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecv.formats import FORMATS
from edgecv.manifest import Manifest, digest_files, manifest_path


def place_artifact(tmp_file: Path, dest_dir: Path, manifest: Manifest) -> Path:
    """Move the artifact's files (:meth:`edgecv.formats.ArtifactFormat.files`) into ``dest_dir`` by rename,
    companions first, so a reader never sees an artifact without its companion (an .xml without its .bin)
    nor half a file; then write the manifest, with the SHA-256 of every file. Returns the artifact's new path."""
    files = FORMATS[manifest.format].files(tmp_file)
    manifest.files = digest_files(files)
    for f in reversed(files):
        os.replace(f, dest_dir / f.name)
    final = dest_dir / tmp_file.name
    manifest.write(manifest_path(final))
    return final
