"""A dense copy of a sparse TFLite model, for converters that read neither sparse tensors nor DENSIFY.

TFLite may store a constant in its sparse format (a tensor's ``sparsity``: traversal order, block map and per
dimension DENSE or SPARSE_CSR metadata) and expand it at run time with a DENSIFY op. tf2onnx cannot read such
files (it reshapes the stored values to the dense shape), so export hands it a copy in which every sparse
constant is stored dense, each DENSIFY op is removed and its consumers read the dense constant. (OpenVINO's
TFLite frontend expands sparse tensors itself.)

Example:
    >>> dense_copy(Path("face_detection_full_range_sparse.tflite"), Path("work/dense.tflite"))   # doctest: +SKIP
    DensifyResult(path=PosixPath('work/dense.tflite'), tensors=46, ops=46)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecv.deps import require
from edgecv.errors import ConversionError

log = logging.getLogger(__name__)

# TensorType code -> numpy dtype of its values, for the types a sparse constant can have.
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8,
           10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16}
_DENSE, _SPARSE_CSR = 0, 1
_DENSIFY = 124


@dataclass(frozen=True)
class DensifyResult:
    """Where the dense copy is, how many sparse tensors it expanded and how many DENSIFY ops it removed."""

    path: Path
    tensors: int
    ops: int


def is_sparse(path: Path) -> bool:
    """True when the TFLite file at ``path`` has a sparse tensor (read with edgecv's checked reader)."""
    from edgecv.flatbuffer import read_tflite

    return any(t.sparse for sg in read_tflite(path) for t in sg.tensors)


def densify_values(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """The dense array of ``shape`` that a sparse tensor encodes: ``values`` in storage order and its
    SparsityParameters (object API), following TFLite's own format converter."""
    order = [int(v) for v in sparsity.traversalOrder]
    block_map = [int(v) for v in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = sparsity.dimMetadata
    n = len(shape)
    block_sizes = [int(dims[order.index(n + j)].denseSize) for j in range(len(block_map))]
    sizes = list(shape)
    for dim, block in zip(block_map, block_sizes):
        sizes[dim] //= block
    sizes += block_sizes
    # Walk the levels breadth-first; each level expands every position in order, which keeps the
    # depth-first order in which the values are stored.
    coords = np.zeros((1, 0), np.int64)
    pos = np.zeros(1, np.int64)
    for level, md in enumerate(dims):
        size = sizes[order[level]]
        if md.format == _DENSE:
            coords = np.hstack([np.repeat(coords, size, axis=0), np.tile(np.arange(size), len(pos))[:, None]])
            pos = (pos[:, None] * size + np.arange(size)).ravel()
        elif md.format == _SPARSE_CSR:
            seg = np.asarray(md.arraySegments.values, np.int64)
            idx = np.asarray(md.arrayIndices.values, np.int64)
            counts = seg[pos + 1] - seg[pos]
            rows = np.repeat(np.arange(len(pos)), counts)
            starts = np.repeat(seg[pos], counts)
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            pos = starts + within
            coords = np.hstack([coords[rows], idx[pos][:, None]])
        else:
            raise ConversionError(f"cannot densify: dimension format {md.format} is not DENSE or SPARSE_CSR")
    orig = np.zeros((len(pos), n), np.int64)
    for level in range(n):
        orig[:, order[level]] = coords[:, level]
    for level in range(n, len(order)):
        b = order[level] - n
        orig[:, block_map[b]] = orig[:, block_map[b]] * block_sizes[b] + coords[:, level]
    if len(values) < len(pos):
        raise ConversionError(f"cannot densify: the sparse tensor stores {len(values)} values, its metadata needs {len(pos)}")
    dense = np.zeros(shape, values.dtype)
    dense[tuple(orig.T)] = values[: len(pos)]
    return dense


def dense_copy(src: Path, dst: Path) -> DensifyResult:
    """Write to ``dst`` a copy of the TFLite model ``src`` with every sparse constant stored dense and every
    DENSIFY op removed (its consumers and any graph output read its dense input instead)."""
    fb = require("ai_edge_litert.tools.flatbuffer_utils", extra="litert", purpose="rewrite TFLite models")
    from edgecv.flatbuffer import verify_tflite

    verify_tflite(src)  # the metadata is bounds-checked before it is used as indices
    model = fb.read_model(str(src))
    codes = [max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) for oc in model.operatorCodes]
    n_tensors = n_ops = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.sparsity is None:
                continue
            data = model.buffers[t.buffer].data if t.buffer else None
            if data is not None and len(data):
                dtype = _DTYPES.get(int(t.type))
                if dtype is None:
                    raise ConversionError(f"cannot densify sparse tensor {_name(t)}: its type code {t.type} is not supported")
                values = np.frombuffer(bytes(data), dtype)
                dense = densify_values(values, [int(d) for d in t.shape], t.sparsity)
                model.buffers[t.buffer].data = np.frombuffer(dense.tobytes(), np.uint8)
            t.sparsity = None
            n_tensors += 1
        kept, renamed = [], {}
        for op in sg.operators:
            if codes[op.opcodeIndex] == _DENSIFY:
                renamed[int(op.outputs[0])] = int(op.inputs[0])
                n_ops += 1
            else:
                kept.append(op)
        for op in kept:
            op.inputs = [renamed.get(int(i), int(i)) for i in op.inputs]
        sg.operators = kept
        sg.outputs = [renamed.get(int(i), int(i)) for i in sg.outputs]
    dst.parent.mkdir(parents=True, exist_ok=True)
    staged = dst.with_name(dst.name + ".partial")
    try:
        fb.write_model(model, str(staged))
    except Exception as exc:  # flatbuffers raises plain exceptions, e.g. past its 2 GB limit
        from edgecv.backends.base import first_line

        staged.unlink(missing_ok=True)
        raise ConversionError(f"cannot write the dense copy of {src.name}: {first_line(exc)}") from None
    staged.replace(dst)
    log.info("densified %s: %d sparse tensors, %d DENSIFY ops removed", src.name, n_tensors, n_ops)
    return DensifyResult(dst, n_tensors, n_ops)


def dense_view(src: Path, work: Path) -> Path:
    """``src`` itself when it has no sparse tensor, else its dense copy in ``work`` (made once)."""
    if not is_sparse(src):
        return src
    target = work / f"{src.stem}.dense.tflite"
    if not target.is_file():
        dense_copy(src, target)
    return target


def _name(t) -> str:
    name = t.name.decode() if isinstance(t.name, bytes) else t.name
    return repr(name or "?")
