"""OpenVINO IR (``.xml`` with its ``.bin`` weights beside it), run by OpenVINO: the cheap check and a graph
reader of the ``.xml`` (layers in an order where each comes after what feeds it).

The check reads the XML prolog (what comes before the root element) and refuses a DOCTYPE: entity
declarations there can expand to gigabytes ("billion laughs") or pull in other files, and an IR never has one.

Example:
    >>> OpenVINO().files(Path("model.xml"))
    [PosixPath('model.xml'), PosixPath('model.bin')]
"""

from __future__ import annotations

from pathlib import Path

from edgecv.errors import ModelFileError
from edgecv.formats.base import ArtifactFormat
from edgecv.graph import Graph, Op, Tensor, WeightOps


class OpenVINO(ArtifactFormat):
    """OpenVINO IR: the ``.xml`` graph and its ``.bin`` weights (the companion file)."""

    name = "openvino"
    suffix = ".xml"
    companion = ".bin"
    backends = ("openvino",)
    precisions = ("fp32", "fp16", "dynamic", "int8", "int4")
    target = "edgecv.converters.targets.openvino"
    weight_ops = WeightOps(
        {"Convolution": (0, 1), "GroupConvolution": (0, 1), "ConvolutionBackpropData": (0, 1),
         "GroupConvolutionBackpropData": (0, 1), "MatMul": (0, 1)},
    )

    def check(self, path: Path) -> None:
        check_prolog(path)
        weights = path.with_suffix(".bin")  # the companion
        if not weights.is_file():
            raise ModelFileError(f"{path}: the weights file {weights.name} is missing beside it")

    def read_graph(self, path: Path) -> Graph:
        import xml.etree.ElementTree as ET

        check_prolog(path)  # before the parser sees any entity
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise ModelFileError(f"{path} is not a readable OpenVINO IR: {str(exc).splitlines()[0]}") from None
        layers = root.find("layers")
        if root.tag != "net" or layers is None:
            raise ModelFileError(f"{path} is not an OpenVINO IR: no <net><layers>")
        tensors: dict[str, Tensor] = {}
        port_name: dict[tuple[str, str], str] = {}
        records = []
        for layer in layers.findall("layer"):
            lid, ltype, lname = layer.get("id", ""), layer.get("type", ""), layer.get("name", "")
            data = layer.find("data")
            outs = []
            out_el = layer.find("output")
            for port in (out_el.findall("port") if out_el is not None else []):
                pid = port.get("id", "")
                names = [n.strip() for n in (port.get("names") or "").split(",") if n.strip()]
                tname = names[0] if names else lname
                if tname in tensors:  # an unnamed port whose layer name is another tensor's name
                    tname = f"{lname}:{pid}" if f"{lname}:{pid}" not in tensors else f"{lname}#{lid}:{pid}"
                dims = [_ov_dim(d.text or "") for d in port.findall("dim")]
                dtype = _ov_type(port.get("precision") or (data.get("element_type") if data is not None else None))
                const = ltype == "Const"
                nbytes = int(data.get("size", 0)) if const and data is not None else 0
                tensors[tname] = Tensor(tname, dtype, tuple(d for d, _ in dims), tuple(n for _, n in dims),
                                        constant=const, nbytes=nbytes)
                port_name[(lid, pid)] = tname
                outs.append(tname)
            in_el = layer.find("input")
            in_ports = [p.get("id", "") for p in (in_el.findall("port") if in_el is not None else [])]
            records.append((lid, ltype, lname, in_ports, outs))
        feeds: dict[tuple[str, str], str] = {}
        deps: dict[str, set[str]] = {r[0]: set() for r in records}
        edges = root.find("edges")
        for e in (edges.findall("edge") if edges is not None else []):
            src = (e.get("from-layer", ""), e.get("from-port", ""))
            dst = (e.get("to-layer", ""), e.get("to-port", ""))
            if src in port_name:
                feeds[dst] = port_name[src]
            if dst[0] in deps:
                deps[dst[0]].add(src[0])
        by_id = {r[0]: r for r in records}
        ops, inputs, outputs = [], [], []
        for lid in _topological([r[0] for r in records], deps):
            _, ltype, lname, in_ports, outs = by_id[lid]
            ins = tuple(feeds[(lid, p)] for p in in_ports if (lid, p) in feeds)
            ops.append(Op(ltype, lname, ins, tuple(outs)))
            if ltype == "Parameter":
                inputs += outs
            elif ltype == "Result":
                outputs += ins
        return Graph(self.name, path, tuple(ops), tensors, tuple(inputs), tuple(outputs), self.weight_ops)


PROLOG_MAX = 1 << 20  # bytes before the root element; OpenVINO writes 40 (an XML declaration)
_SPACE = b" \t\r\n"


def check_prolog(path: Path) -> None:
    """Raise :class:`ModelFileError` unless the file's prolog (before the root element) holds only an XML
    declaration, comments, processing instructions and white space, and the root element is ``<net>``: a
    DOCTYPE (entity declarations, external references) is refused before any XML parser sees the file.

    Example:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "m.xml"
        >>> _ = p.write_bytes(b'<?xml version="1.0"?>\\n<!DOCTYPE net [<!ENTITY a "aaaa">]>\\n<net name="m"/>')
        >>> check_prolog(p)   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edgecv.errors.ModelFileError: ... declares a DOCTYPE (entities or external references) before its <net>; an OpenVINO IR has none, so it is refused unparsed
    """
    with open(path, "rb") as f:
        data = f.read(PROLOG_MAX)
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 byte-order mark
    while True:
        while i < len(data) and data[i] in _SPACE:
            i += 1
        closing = b"?>" if data.startswith(b"<?", i) else b"-->" if data.startswith(b"<!--", i) else None
        if closing is not None:  # an XML declaration, a processing instruction or a comment: skipped
            end = data.find(closing, i + 2)
            if end < 0:
                raise ModelFileError(f"{path} is not an OpenVINO IR .xml file: a declaration or comment before its "
                                     f"<net> does not end within {PROLOG_MAX >> 20} MB")
            i = end + len(closing)
        elif data.startswith(b"<!", i):
            raise ModelFileError(f"{path} declares a DOCTYPE (entities or external references) before its <net>; "
                                 "an OpenVINO IR has none, so it is refused unparsed")
        elif data.startswith(b"<net", i) and data[i + 4 : i + 5] in (b" ", b"\t", b"\r", b"\n", b">", b"/"):
            return
        else:
            raise ModelFileError(f"{path} is not an OpenVINO IR .xml file (its root element is not <net>); the file is "
                                 "corrupted or not an IR")


_OV_TYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i8": "int8", "u8": "uint8",
             "i16": "int16", "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64", "u64": "uint64",
             "boolean": "bool", "bool": "bool", "u1": "u1", "i4": "int4", "u4": "uint4", "f8e4m3": "float8_e4m3fn",
             "f8e5m2": "float8_e5m2", "string": "string"}


def _ov_type(text: str | None) -> str | None:
    if not text:
        return None
    t = text.lower()
    t = {"fp32": "f32", "fp16": "f16", "fp64": "f64"}.get(t, t)
    return _OV_TYPES.get(t, t)


def _ov_dim(text: str) -> tuple[int, str]:
    text = (text or "").strip()
    try:
        value = int(text)
        return (value, "" if value >= 0 else "?")
    except ValueError:
        return -1, text or "?"


def _topological(order: list[str], deps: dict[str, set[str]]) -> list[str]:
    """Layers in an order where each comes after what feeds it, keeping the file's order where it can."""
    import heapq

    rank = {lid: i for i, lid in enumerate(order)}
    users: dict[str, list[str]] = {lid: [] for lid in order}
    waiting = {lid: len({d for d in deps[lid] if d in rank}) for lid in order}
    for lid in order:
        for d in deps[lid]:
            if d in users:
                users[d].append(lid)
    ready = [rank[lid] for lid in order if waiting[lid] == 0]
    heapq.heapify(ready)
    out = []
    while ready:
        lid = order[heapq.heappop(ready)]
        out.append(lid)
        for u in users[lid]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, rank[u])
    if len(out) != len(order):
        raise ModelFileError("the OpenVINO IR has a cycle among its layers")
    return out
