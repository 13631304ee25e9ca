"""Static checks of a source model edgecv does not trust, made before anything loads or runs it.

A SavedModel is a program: loading it runs its resource initializers, and converting or running it runs its
functions' ops, side effects included (``tf.io.write_file``, ``tf.print`` to a file, ``tf.py_function``).
:func:`scan_saved_model` reads ``saved_model.pb`` with TensorFlow's protobuf classes, executes nothing, and
lists every op that could touch files, the network or Python. :func:`check_onnx_external_data` refuses ONNX
external data stored outside the model's folder. docs/security.md lists the rules and what they leave out.

Example:
    >>> [f.describe() for f in scan_saved_model(Path("model"))]          # doctest: +SKIP
    ['WriteFile (writes a file) in function __inference_serve_16']
    >>> refuse_unsafe_saved_model(Path("model"))                          # doctest: +SKIP
    Traceback (most recent call last):
    edgecv.errors.UnsafeModelError: SavedModel model is refused: WriteFile (writes a file) in function ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from edgecv.errors import ModelFileError, UnsafeModelError

TRUST_HINT = "pass --trust-source (trust_source=True) only if you trust where it comes from"

# Ops TensorFlow marks stateful whose state stays inside the process: variables, calls and control flow (the
# functions they call are scanned too), checks, random numbers, in-memory tables and arrays. Every other
# stateful op is refused.
SAFE_STATEFUL_OPS = frozenset({
    # variables
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "VarIsInitializedOp", "VariableShape", "DestroyResourceOp", "DisableCopyOnRead", "ResourceGather",
    "ResourceGatherNd", "ResourceScatterUpdate", "ResourceScatterNdUpdate", "ResourceStridedSliceAssign",
    "Variable", "VariableV2", "TemporaryVariable",
    # calls and control flow
    "StatefulPartitionedCall", "If", "While", "Case",
    # checks and logging to the terminal (PrintV2 to a file is refused)
    "Assert", "CheckNumerics", "CheckNumericsV2", "Print", "PrintV2",
    # random numbers
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "ParameterizedTruncatedNormal",
    "Multinomial", "RandomShuffle", "RandomGamma", "RandomPoisson", "RandomPoissonV2", "RandomCrop",
    "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt", "StatefulStandardNormal",
    "StatefulStandardNormalV2", "StatefulTruncatedNormal", "StatefulRandomBinomial", "RngReadAndSkip", "RngSkip",
    "NonDeterministicInts", "StatelessRandomGetAlg", "SampleDistortedBoundingBox", "SampleDistortedBoundingBoxV2",
    # in-memory tables, arrays and stacks
    "HashTable", "HashTableV2", "AnonymousHashTable", "MutableHashTableV2", "MutableHashTableOfTensorsV2",
    "MutableDenseHashTableV2", "InitializeTableV2", "LookupTableFindV2", "LookupTableImportV2", "LookupTableInsertV2",
    "LookupTableRemoveV2", "LookupTableSizeV2", "LookupTableExportV2",
    "TensorArrayV3", "TensorArrayReadV3", "TensorArrayWriteV3", "TensorArrayGatherV3", "TensorArrayScatterV3",
    "TensorArrayConcatV3", "TensorArraySplitV3", "TensorArraySizeV3", "TensorArrayCloseV3", "TensorArrayGradV3",
    "StackV2", "StackPushV2", "StackPopV2", "StackCloseV2",
    # harmless others
    "Empty", "GuaranteeConst", "DeepCopy", "DeviceIndex", "Timestamp",
})

# Checkpoint ops: allowed only where the SavedModel's own saver uses them (see scan_saved_model).
SAVE_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints"})
RESTORE_OPS = frozenset({"RestoreV2", "Restore", "RestoreSlice"})

# Why an op is refused, for the ops a malicious graph would use. Ops TensorFlow does not mark stateful but that
# read files or run Python are here too: the stateful rule alone would let them through.
REFUSED_OPS = {
    **dict.fromkeys(("WriteFile", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord", "SaveDataset", "SaveDatasetV2",
                     "DistributedSave", "ImportEvent"), "writes a file"),
    **dict.fromkeys(("ReadFile", "MatchingFiles", "ImmutableConst", "InitializeTableFromTextFile",
                     "InitializeTableFromTextFileV2", "LoadAndRemapMatrix", "DecodeProtoV2", "EncodeProto"), "reads a file"),
    **dict.fromkeys(("PyFunc", "PyFuncStateless", "EagerPyFunc"), "runs Python code"),
    **dict.fromkeys(("FileSystemSetConfiguration",), "changes file system settings"),
    **dict.fromkeys(("Send", "Recv", "RemoteCall", "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3",
                     "DataServiceDatasetV4", "RegisterDataset", "RegisterDatasetV2"), "talks to another process"),
}
# Families refused by name: tf.data and its iterators, v1 file readers, tfdbg dumps (debug_urls write files),
# summary writers.
REFUSED_PATTERNS = (("Dataset", "runs a tf.data pipeline"), ("Iterator", "runs a tf.data pipeline"),
                    ("Reader", "reads a file"), ("Debug", "writes debug dumps"), ("Summary", "writes a summary"))
PRINT_STREAMS = frozenset({"stderr", "stdout", "log(info)", "log(warning)", "log(error)"})


@dataclass(frozen=True)
class Finding:
    """One op an untrusted SavedModel must not run: its type, why, and where it is."""

    op: str
    why: str
    where: str  # "function NAME" or "graph node NAME"

    def describe(self) -> str:
        return f"{self.op} ({self.why}) in {self.where}"


def refuse_unsafe_source(path: Path) -> None:
    """The checks of an untrusted source at ``path`` that load nothing: a SavedModel folder's ops, an ONNX
    model's external data. Keras files are checked as they load (safe mode), TFLite files hold no code.

    Example:
        >>> refuse_unsafe_source(Path("model.onnx"))       # doctest: +SKIP
    """
    if path.is_dir() and (path / "saved_model.pb").is_file():
        refuse_unsafe_saved_model(path)
    elif path.is_file() and path.suffix.lower() == ".onnx":
        check_onnx_external_data(path)


def refuse_unsafe_saved_model(path: Path) -> None:
    """Raise :class:`UnsafeModelError` (one line, naming the first op and where it is) when the SavedModel
    folder ``path`` holds an op from :func:`scan_saved_model`."""
    findings = scan_saved_model(path)
    if findings:
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise UnsafeModelError(f"SavedModel {path} is refused: {findings[0].describe()}{more}; loading or converting "
                               f"it would run that op; {TRUST_HINT}")


def scan_saved_model(path: Path) -> list[Finding]:
    """Every op in the SavedModel folder ``path`` that could touch files, the network or Python, read from
    ``saved_model.pb`` without running anything.

    Every node of the top-level graph and of every function in the library is checked (functions nothing
    calls too). An op is refused when it is in :data:`REFUSED_OPS` or a :data:`REFUSED_PATTERNS` family, when
    TensorFlow marks it stateful and it is not in :data:`SAFE_STATEFUL_OPS`, when it is ``PrintV2`` to a file,
    or when TensorFlow does not know it (a custom op). Checkpoint ops are allowed only on the saver's own path:
    :data:`SAVE_OPS` in nodes and functions that only the ``saver_def`` save tensor reaches (nothing edgecv or
    the converters runs), :data:`RESTORE_OPS` in those only its restore op reaches.
    """
    meta_graphs = _read_saved_model(path)
    from tensorflow.python.framework import op_def_registry

    findings: dict[tuple[str, str], Finding] = {}
    for mg in meta_graphs:
        for f in _scan_meta_graph(mg, op_def_registry.get):
            findings.setdefault((f.op, f.where), f)
    return list(findings.values())


def _read_saved_model(path: Path):
    from edgecv.converters.tf_env import import_tensorflow

    import_tensorflow()
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path / 'saved_model.pb'} is not a SavedModel protobuf: {exc}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path / 'saved_model.pb'}: {exc.strerror or exc}") from None
    return list(saved.meta_graphs)


def _scan_meta_graph(mg, op_def) -> Iterator[Finding]:
    library = {f.signature.name: f for f in mg.graph_def.library.function}
    nodes = {n.name: n for n in mg.graph_def.node}
    saver = mg.saver_def if mg.HasField("saver_def") else None
    save_root = {_node_name(saver.save_tensor_name)} & set(nodes) if saver else set()
    restore_root = {_node_name(saver.restore_op_name)} & set(nodes) if saver else set()
    save_nodes = _upstream(save_root, nodes)
    restore_nodes = _upstream(restore_root, nodes)
    # Everything else the loader may run: all other nodes, and those named by collections (main_op, init ops)
    # and signatures even when they lie on the saver's path.
    named = set(_collection_nodes(mg)) | set(_signature_nodes(mg))
    other_roots = (set(nodes) - save_nodes - restore_nodes) | (named & set(nodes))
    other_nodes = _upstream(other_roots, nodes)
    save_fns = _reach(_calls(nodes, save_nodes, library), library)
    restore_fns = _reach(_calls(nodes, restore_nodes, library), library)
    object_fns = set(mg.object_graph_def.concrete_functions) & set(library)
    gradient_fns = {g.gradient_func for g in mg.graph_def.library.gradient} & set(library)
    other_fn_roots = (set(library) - save_fns - restore_fns) | object_fns | gradient_fns
    other_fns = _reach(other_fn_roots | _calls(nodes, other_nodes, library), library)

    def allowed_checkpoint(op: str, in_save: bool, in_restore: bool, in_other: bool) -> bool:
        if in_other:
            return False
        return (op in SAVE_OPS and in_save and not in_restore) or (op in RESTORE_OPS and in_restore and not in_save)

    for name, node in nodes.items():
        ok = allowed_checkpoint(node.op, name in save_nodes, name in restore_nodes, name in other_nodes)
        yield from _check_node(node, f"graph node {name}", library, op_def, checkpoint_ok=ok)
    for name, fn in library.items():
        for node in fn.node_def:
            ok = allowed_checkpoint(node.op, name in save_fns, name in restore_fns, name in other_fns)
            yield from _check_node(node, f"function {name}", library, op_def, checkpoint_ok=ok)


def _check_node(node, where: str, library, op_def, *, checkpoint_ok: bool) -> Iterator[Finding]:
    op = node.op
    if op in library and op_def(op) is None:  # a direct call (never one shadowing a real op): scanned on its own
        return
    why = _refusal(node, op_def, checkpoint_ok=checkpoint_ok)
    if why:
        yield Finding(op, why, where)


def _refusal(node, op_def, *, checkpoint_ok: bool) -> str | None:
    """Why ``node`` must not run, or None."""
    op = node.op
    if op in SAVE_OPS | RESTORE_OPS:
        return None if checkpoint_ok else ("writes" if op in SAVE_OPS else "reads") + " a checkpoint outside the saver's path"
    if op in REFUSED_OPS:
        return REFUSED_OPS[op]
    for part, why in REFUSED_PATTERNS:
        if part in op:
            return why
    if op == "PrintV2":
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else "stderr"
        return None if stream in PRINT_STREAMS else f"prints to {stream}"
    definition = op_def(op)
    if definition is None:
        return "not a TensorFlow op: a custom op"
    if definition.is_stateful and op not in SAFE_STATEFUL_OPS:
        return "has side effects"
    return None


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _closure(roots: set[str], known, neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    """``roots`` and everything reachable from them through ``neighbours``, among the names in ``known``."""
    seen, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in known:
            continue
        seen.add(name)
        stack.extend(neighbours(name))
    return seen


def _upstream(roots: set[str], nodes) -> set[str]:
    """``roots`` and every top-level node they depend on (data and control inputs)."""
    return _closure(roots, nodes, lambda name: (_node_name(i) for i in nodes[name].input))


def _functions_of(node, library) -> Iterable[str]:
    """The library functions ``node`` calls: by its op type, or through ``func`` attributes (calls, branches,
    loop bodies, dataset functions)."""
    if node.op in library:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        yield from (f.name for f in value.list.func)


def _calls(nodes, names: set[str], library) -> set[str]:
    return {f for n in names for f in _functions_of(nodes[n], library) if f in library}


def _reach(roots: set[str], library) -> set[str]:
    """``roots`` and every function they call, transitively."""
    return _closure(roots, library, lambda name: (f for node in library[name].node_def for f in _functions_of(node, library)))


def _collection_nodes(mg) -> Iterator[str]:
    for collection in mg.collection_def.values():
        yield from (_node_name(v) for v in collection.node_list.value)


def _signature_nodes(mg) -> Iterator[str]:
    def names(info) -> Iterator[str]:
        if info.name:
            yield _node_name(info.name)
        coo = info.coo_sparse
        yield from (_node_name(n) for n in (coo.values_tensor_name, coo.indices_tensor_name, coo.dense_shape_tensor_name) if n)
        for component in info.composite_tensor.components:
            yield from names(component)

    for signature in mg.signature_def.values():
        for info in [*signature.inputs.values(), *signature.outputs.values()]:
            yield from names(info)


# --- ONNX -----------------------------------------------------------------------------------------------------


def check_onnx_external_data(path: Path) -> None:
    """Raise :class:`UnsafeModelError` when the ONNX model at ``path`` keeps a tensor's data outside its own
    folder: an absolute location, one with ``..`` that leaves the folder, or a symbolic link out of it.

    Example:
        >>> check_onnx_external_data(Path("model.onnx"))       # doctest: +SKIP
    """
    from edgecv.deps import require

    onnx = require("onnx", extra="convert", purpose="read ONNX models")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a bad file
        from edgecv.backends.base import first_line

        raise ModelFileError(f"{path} is not a readable ONNX model: {first_line(exc)}") from None
    folder = path.resolve().parent
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UnsafeModelError(f"ONNX model {path} is refused: tensor {tensor.name!r} keeps its data at "
                                   f"{location!r}, outside the model's folder {folder}")


def _onnx_tensors(graph) -> Iterator:
    """Every TensorProto of ``graph``: initializers, sparse ones, node attributes, and subgraphs' (If, Loop)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            if attr.HasField("g"):
                yield from _onnx_tensors(attr.g)
            for sub in attr.graphs:
                yield from _onnx_tensors(sub)


__all__ = ["Finding", "scan_saved_model", "refuse_unsafe_source", "refuse_unsafe_saved_model", "check_onnx_external_data",
           "SAFE_STATEFUL_OPS", "REFUSED_OPS", "REFUSED_PATTERNS", "SAVE_OPS", "RESTORE_OPS", "TRUST_HINT"]
