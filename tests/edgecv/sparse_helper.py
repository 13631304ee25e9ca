"""Sparse TFLite tensors built by hand, without TensorFlow: an encoder for TFLite's sparse format (traversal
order, block map, DENSE / SPARSE_CSR levels with uint8, uint16 or int32 index vectors) and a tiny model in
which a sparse weight goes through DENSIFY into FULLY_CONNECTED, written with LiteRT's object-API schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DENSE, CSR = 0, 1
_INDEX = {"int32": (1, "Int32VectorT", np.int32), "uint16": (2, "Uint16VectorT", np.uint16),
          "uint8": (3, "Uint8VectorT", np.uint8)}


def encode(dense: np.ndarray, order: list[int], formats: list[int], *, block_map: tuple[int, ...] = (),
           block_sizes: tuple[int, ...] = (), index: str = "int32"):
    """(SparsityParametersT, stored values) of ``dense`` in TFLite's sparse format."""
    from ai_edge_litert import schema_py_generated as s

    n, k = dense.ndim, len(block_map)
    inter, orig_axes, block_axes = [], [], {}
    for d in range(n):
        if d in block_map:
            j = block_map.index(d)
            inter += [dense.shape[d] // block_sizes[j], block_sizes[j]]
            orig_axes.append(len(inter) - 2)
            block_axes[j] = len(inter) - 1
        else:
            inter.append(dense.shape[d])
            orig_axes.append(len(inter) - 1)
    expanded = dense.reshape(inter).transpose(orig_axes + [block_axes[j] for j in range(k)])
    walked = expanded.transpose(order)
    nonzero = walked != 0
    type_code, table, dtype = _INDEX[index]
    metadata, positions = [], [()]
    for level in range(n + k):
        size = walked.shape[level]
        md = s.DimensionMetadataT()
        md.format = formats[level]
        if formats[level] == DENSE:
            md.denseSize = size
            positions = [p + (i,) for p in positions for i in range(size)]
        else:
            segments, indices, kept = [0], [], []
            for p in positions:
                for i in range(size):
                    if nonzero[p + (i,)].any():
                        indices.append(i)
                        kept.append(p + (i,))
                segments.append(len(indices))
            positions = kept
            for field, values in (("arraySegments", segments), ("arrayIndices", indices)):
                vec = getattr(s, table)()
                vec.values = np.asarray(values, dtype)
                setattr(md, field, vec)
                setattr(md, field + "Type", type_code)
        metadata.append(md)
    params = s.SparsityParametersT()
    params.traversalOrder = list(order)
    params.blockMap = list(block_map) or None
    params.dimMetadata = metadata
    values = np.array([walked[p] for p in positions], dense.dtype)
    return params, values


def build_model(tensors: list[dict], ops: list[tuple], inputs: list[int], outputs: list[int],
                data: dict[int, bytes]) -> "object":
    """A one-subgraph ModelT. ``tensors``: dicts of TensorT fields (name, shape, type, buffer, ...);
    ``ops``: (BuiltinOperator code, inputs, outputs, options type, options); ``data``: buffer index -> bytes."""
    from ai_edge_litert import schema_py_generated as s

    sg = s.SubGraphT()
    sg.tensors = []
    for fields in tensors:
        t = s.TensorT()
        t.type = s.TensorType.FLOAT32
        for key, value in fields.items():
            setattr(t, key, value)
        sg.tensors.append(t)
    codes = sorted({op[0] for op in ops})
    sg.operators = []
    for code, ins, outs, options_type, options in ops:
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = codes.index(code), ins, outs
        op.builtinOptionsType, op.builtinOptions = options_type, options
        sg.operators.append(op)
    sg.inputs, sg.outputs, sg.name = inputs, outputs, "main"
    model = s.ModelT()
    model.version, model.description = 3, "edgecv test model"
    model.operatorCodes = []
    for code in codes:
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
        model.operatorCodes.append(oc)
    model.buffers = [s.BufferT() for _ in range(1 + max([t.get("buffer", 0) for t in tensors] + [0]))]
    for index, raw in data.items():
        model.buffers[index].data = np.frombuffer(raw, np.uint8)
    model.subgraphs = [sg]
    return model


def to_bytes(model) -> bytes:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    return bytes(fu.convert_object_to_bytearray(model))


def sparse_fc_model(weights: np.ndarray, sparsity, values: np.ndarray) -> bytes:
    """A TFLite model ``y = x @ weights.T`` (x: 1 x in, weights: out x in) whose weights are stored sparse
    and expanded by a DENSIFY op."""
    from ai_edge_litert import schema_py_generated as s

    out_dim, in_dim = weights.shape
    tensors = [dict(name="x", shape=[1, in_dim], buffer=1), dict(name="w_sparse", shape=list(weights.shape), buffer=2,
                                                                  sparsity=sparsity),
               dict(name="w", shape=list(weights.shape), buffer=3), dict(name="y", shape=[1, out_dim], buffer=4)]
    ops = [(s.BuiltinOperator.DENSIFY, [1], [2], s.BuiltinOptions.DensifyOptions, s.DensifyOptionsT()),
           (s.BuiltinOperator.FULLY_CONNECTED, [0, 2, -1], [3], s.BuiltinOptions.FullyConnectedOptions,
            s.FullyConnectedOptionsT())]
    return to_bytes(build_model(tensors, ops, [0], [3], {2: values.astype(np.float32).tobytes()}))


def rewrite(src: Path, dst: Path, change) -> Path:
    """Write ``src`` to ``dst`` after ``change(model)`` edited its object-API form."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model(str(src))
    change(model)
    fu.write_model(model, str(dst))
    return dst


def pruned(shape: tuple[int, ...], *, zeros: float, seed: int, block: tuple[int, ...] | None = None) -> np.ndarray:
    """Random float32 weights with a fraction ``zeros`` set to 0, element-wise or in whole ``block``s."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape).astype(np.float32)
    if block is None:
        w[rng.random(shape) < zeros] = 0
        return w
    grid = tuple(d // b for d, b in zip(shape, block))
    mask = np.kron(rng.random(grid) < zeros, np.ones(block, bool))
    w[mask] = 0
    return w
