"""Write ONNX artifacts: tf2onnx for Keras, SavedModel and TFLite sources; fp16 by converting the fp32 graph
with float inputs and outputs kept."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgecv.deps import require


def convert(source, precision: str, out_file: Path, work: Path) -> None:
    fp32 = source.view("onnx", work)
    if precision == "fp32":
        shutil.copyfile(fp32, out_file)
        return
    onnx = require("onnx", extra="convert", purpose="write fp16 ONNX")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from converters.onnx_graph import load_without_initializer_inputs

    model = convert_float_to_float16(load_without_initializer_inputs(fp32), keep_io_types=True)
    onnx.save(model, str(out_file))
