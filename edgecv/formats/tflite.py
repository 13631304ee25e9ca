"""TFLite flatbuffers (``.tflite``), run by LiteRT: the cheap check and the graph reader, both through the
bounds-checking walker in :mod:`edgecv.flatbuffer`.

Example:
    >>> TFLite().read_graph(Path("model.int8.tflite")).precision   # doctest: +SKIP
    'int8'
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from edgecv.errors import ModelFileError
from edgecv.formats.base import ArtifactFormat
from edgecv.graph import Graph, Op, Tensor, WeightOps


class TFLite(ArtifactFormat):
    """TFLite: one self-contained file; LiteRT can crash on a corrupted one, so it is loaded isolated first."""

    name = "tflite"
    suffix = ".tflite"
    backends = ("litert",)
    precisions = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    cannot_write = {"int4": "the TFLite converter writes 4-bit weights only for a model trained with 4-bit fake "
                            "quantization (its low-bit QAT path), not after training; see docs/precisions.md"}
    target = "edgecv.converters.targets.tflite"
    isolate = True
    weight_ops = WeightOps(
        {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1), "TRANSPOSE_CONV": (2, 1),
         "CONV_3D": (0, 1), "CONV_3D_TRANSPOSE": (2, 1), "BATCH_MATMUL": (0, 1)},
        typed=True,
    )

    def check(self, path: Path) -> None:
        from edgecv.flatbuffer import verify_tflite

        with open(path, "rb") as f:
            head = f.read(8)
        size = path.stat().st_size
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise ModelFileError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier); the file is corrupted or not a .tflite")
        (root,) = struct.unpack("<I", head[:4])
        if root + 4 > size:
            raise ModelFileError(f"{path} is truncated: its flatbuffer root points past the end of the file ({size} bytes)")
        verify_tflite(path)

    def read_graph(self, path: Path) -> Graph:
        from edgecv.flatbuffer import read_tflite

        sg = read_tflite(path)[0]
        names = _unique([t.name for t in sg.tensors])
        tensors = {
            n: Tensor(n, t.dtype, t.signature, constant=t.const_bytes > 0, nbytes=t.const_bytes, quantized=t.quantized)
            for n, t in zip(names, sg.tensors)
        }

        def tname(i: int) -> str | None:
            return names[i] if 0 <= i < len(names) else None

        ops = []
        for k, op in enumerate(sg.ops):
            outs = tuple(n for n in map(tname, op.outputs) if n is not None)
            ins = tuple(n for n in map(tname, op.inputs) if n is not None)
            # The converter names fused ops after every tensor it folded in ("a;b;c"): the first says enough.
            label = outs[0].split(";")[0] if outs else f"op{k}"
            ops.append(Op(op.name, label, ins, outs, custom=op.custom))
        return Graph(self.name, path, tuple(ops), tensors, tuple(names[i] for i in sg.inputs),
                     tuple(names[i] for i in sg.outputs), self.weight_ops)


def _unique(names: list[str]) -> list[str]:
    """Tensor names made unique (TFLite does not promise unique or non-empty names)."""
    seen = Counter(names)
    return [n if n and seen[n] == 1 else f"{n or 'tensor'}#{i}" for i, n in enumerate(names)]
