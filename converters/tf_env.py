"""Importing TensorFlow for conversion, with its start-up noise kept out of the user's terminal."""

from __future__ import annotations

import logging
import os

from edgecv.deps import require


def import_tensorflow():
    """Import TensorFlow (needs ``edgecv[convert]``), quietly."""
    # TF reads this once, at import; set it only if the user has not chosen a level themselves.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", extra="convert", purpose="convert Keras and SavedModel models")
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def child_env(*, level: str = "2") -> dict[str, str]:
    """The environment entries a child process that imports TensorFlow gets (the ``env`` of
    :func:`edgecv.child.call`): TensorFlow's C++ log level, unless the user has chosen one.

    Example:
        >>> child_env(level="3")                   # doctest: +SKIP
        {'TF_CPP_MIN_LOG_LEVEL': '3'}
    """
    return {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", level)}
