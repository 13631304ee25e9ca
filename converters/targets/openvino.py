"""Write OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` from ONNX, TFLite or a SavedModel."""

from __future__ import annotations

from pathlib import Path

from edgecv.deps import require
from edgecv.errors import ConversionError


def convert(source, precision: str, out_file: Path, work: Path) -> None:
    ov = require("openvino", extra="convert", purpose="write OpenVINO IR")
    # OpenVINO reads ONNX and TFLite directly; Keras goes through its SavedModel (passing the Keras object
    # itself breaks once tfmot is imported).
    origin = source.path if source.kind in ("onnx", "tflite") else source.view("saved_model", work)
    try:
        model = ov.convert_model(str(origin))
    except Exception as exc:
        from edgecv.backends.base import first_line

        raise ConversionError(f"OpenVINO could not convert {origin.name}: {first_line(exc)}") from None
    # save_model compresses weights to fp16 unless told not to.
    ov.save_model(model, str(out_file), compress_to_fp16=(precision == "fp16"))
