"""Write TFLite artifacts: from a SavedModel with the TFLite converter, or from ONNX through onnx2tf."""

from __future__ import annotations

import shutil
from pathlib import Path

from converters.tf_env import import_tensorflow
from edgecv.errors import ConversionError


def convert(source, precision: str, out_file: Path, work: Path) -> None:
    if source.kind == "tflite":
        raise ConversionError("a .tflite source is already TFLite; export it to onnx or openvino")
    if source.kind == "onnx":
        from converters.onnx_to_tflite import onnx_to_tflite

        shutil.copyfile(onnx_to_tflite(source.path, work / "onnx2tf", precision=precision), out_file)
        return
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(source.view("saved_model", work)))
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others
        from edgecv.backends.base import first_line

        raise ConversionError(f"TFLite converter failed: {first_line(exc)}") from None
    out_file.write_bytes(data)
