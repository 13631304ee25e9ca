"""ONNX -> TFLite through onnx2tf, run in a child process.

onnx2tf is the maintained ONNX-to-TFLite converter, but it must be handled with care:
- it can end the process with ``sys.exit`` and print hundreds of lines on failure, so it runs in a child;
- it rewrites its input file, so it is given a copy;
- old-opset graphs (mnist-8) need constants folded first, done here with ONNX Runtime's basic optimizer;
- for RGB models it downloads a sample image at run time, which edgecv replaces with local data.

One run writes both the fp32 and fp16 TFLite files; they are cached in the work folder.

Example:
    >>> onnx_to_tflite(Path("mnist-8.onnx"), Path("work/onnx2tf"), precision="fp16")   # doctest: +SKIP
    PosixPath('work/onnx2tf/tf/model_float16.tflite')
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgecv.child import call, serve
from edgecv.converters.tf_env import child_env
from edgecv.errors import ConversionError

_FILES = {"fp32": "model_float32.tflite", "fp16": "model_float16.tflite"}


def onnx_to_tflite(onnx_path: Path, work: Path, *, precision: str) -> Path:
    """Convert (once per work folder) and return the TFLite file of ``precision``."""
    out_dir = work / "tf"
    target = out_dir / _FILES[precision]
    if not target.is_file():
        work.mkdir(parents=True, exist_ok=True)
        # The child runs in the work folder, so whatever onnx2tf writes relative to its working directory stays there.
        paths = {"onnx": str(Path(onnx_path).resolve()), "work": str(work.resolve())}
        failure = f"onnx2tf could not convert {onnx_path.name}"
        call("edgecv.converters.onnx_to_tflite", paths, failure=failure, error=ConversionError,
             env=child_env(level="3"), cwd=work)
        if not target.is_file():
            raise ConversionError(f"{failure}: it wrote no {target.name}")
    return target


def _fold_constants(src: Path, dst: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edgecv.converters.onnx_graph import load_without_initializer_inputs

    # Old IR versions list initializers as graph inputs; onnx2tf would treat them as real inputs.
    model = load_without_initializer_inputs(src)
    staged = dst.with_suffix(".in.onnx")
    onnx.save(model, str(staged))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(staged), options, providers=["CPUExecutionProvider"])
    staged.unlink()


def _plain_input_names(model) -> None:
    """Rename graph inputs to letters, digits and underscores (``serving_default_image:0`` ->
    ``serving_default_image_0``): onnx2tf rewrites other names its own way, and then does not find them
    in the list of inputs to keep NHWC, so it would transpose an NHWC image input as if it were NCHW."""
    import re

    renames = {}
    for inp in model.graph.input:
        plain = re.sub(r"[^0-9A-Za-z_]", "_", inp.name)
        if plain != inp.name:
            renames[inp.name] = plain
            inp.name = plain
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def convert_in_child(request: dict[str, str]) -> None:
    """The child process's work: ``request["onnx"]`` to TFLite files in ``request["work"]``/tf with onnx2tf."""
    onnx_path, work = Path(request["onnx"]), Path(request["work"])
    import numpy as np

    from edgecv.deps import require
    from edgecv.tensors import guess_layout, normalize_shape

    onnx2tf = require("onnx2tf", extra="convert", purpose="convert ONNX to TFLite")
    # onnx2tf fetches sample images from the internet for RGB models; give it local data instead.
    sys.modules["onnx2tf.onnx2tf"].download_test_image_data = lambda: np.random.default_rng(0).random(
        (20, 128, 128, 3), dtype=np.float32
    )
    prepared = work / "model.onnx"
    _fold_constants(onnx_path, prepared)

    import onnx

    model = onnx.load(str(prepared))
    _plain_input_names(model)
    onnx.save(model, str(prepared))
    graph = model.graph
    nhwc = []
    for inp in graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if guess_layout(normalize_shape(dims)) == "NHWC":
            nhwc.append(inp.name)
    kwargs = {"keep_nwc_or_nhwc_or_ndhwc_input_names": nhwc} if nhwc else {}
    onnx2tf.convert(
        input_onnx_file_path=str(prepared),
        output_folder_path=str(work / "tf"),
        non_verbose=True,
        not_use_onnxsim=True,
        **kwargs,
    )


if __name__ == "__main__":  # the child process (edgecv.child); onnx2tf may sys.exit, reported as a failure
    serve(convert_in_child)
