"""The one error hierarchy of edgecv.

Every failure a user can cause is an :class:`EdgeCVError` with a one-line message naming the problem.
The CLI prints that line and exits non-zero; anything else reaching the CLI is a bug in edgecv.
"""

from __future__ import annotations


class EdgeCVError(Exception):
    """Base class of every error edgecv raises on purpose."""

    exit_code = 2


class ModelFileError(EdgeCVError):
    """A model file is missing, empty, truncated, corrupted or of an unknown kind."""


class UnsupportedFormatError(ModelFileError):
    """The file's extension or layout is not one edgecv reads."""


class UnsafeModelError(ModelFileError):
    """A source model holds something that would run code or touch files when it is loaded or run (an op with
    side effects, a Python Lambda layer, external data outside its folder); see docs/security.md."""


class IntegrityError(ModelFileError):
    """An artifact's files do not match the SHA-256 hashes its manifest records (changed, missing or unlisted
    files), or its manifest cannot be read; ``verify=False`` / ``--no-verify`` loads it anyway."""


class MissingDependencyError(EdgeCVError):
    """An optional package is needed; the message names the ``pip install 'edgecv[extra]'`` to run."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        what = f" to {purpose}" if purpose else ""
        super().__init__(f"{package} is needed{what}: pip install 'edgecv[{extra}]'")


class BackendError(EdgeCVError):
    """A runtime backend is unknown, or cannot open or run the given artifact."""


class FrameSkipped(BackendError):
    """A detector gave up on one frame (for example a model on probation that returned NaN and was rolled
    back): the pipeline gives that frame no result, counts it, and goes on with the next."""


class InputError(EdgeCVError):
    """An input array has the wrong shape, dtype or count for the model."""


class SourceError(InputError):
    """A frame source (camera, stream, video) cannot be opened, or was lost and could not be reopened."""


class ConversionError(EdgeCVError):
    """A converter failed to produce an artifact."""


class ValidationError(EdgeCVError):
    """An artifact does not match its source model within tolerance."""

    exit_code = 1


class OutputError(EdgeCVError):
    """An output path cannot be written."""


class ManifestError(EdgeCVError):
    """A manifest file is unreadable or does not follow the schema."""


class ConfigError(EdgeCVError):
    """An option, a profile or a configuration file has an invalid value."""


class WorkerDown(EdgeCVError):
    """A worker process of a split ``edgecv serve`` does not answer (it died, or is starting again)."""
