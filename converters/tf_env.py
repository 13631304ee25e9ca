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
