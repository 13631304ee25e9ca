"""Small ONNX graph clean-ups shared by the ONNX writers."""

from __future__ import annotations

from pathlib import Path

from edgecv.deps import require


def load_without_initializer_inputs(path: Path):
    """Load ``path`` with its weights no longer listed as graph inputs.

    Models written for IR version 3 (mnist-8 among them) list every initializer as a graph input too.
    Converters then treat the weights as overridable inputs: fp16 conversion keeps them float, and
    quantizers skip them. From IR version 4 on the listing is optional, so dropping it changes nothing else.

    >>> model = load_without_initializer_inputs(Path("mnist-8.onnx"))  # doctest: +SKIP
    """
    onnx = require("onnx", extra="convert", purpose="rewrite ONNX graphs")
    model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    if any(inp.name in weights for inp in model.graph.input):
        inputs = [inp for inp in model.graph.input if inp.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
        model.ir_version = max(model.ir_version, 4)
    return model
