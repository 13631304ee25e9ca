"""edgecv.compat: the graph read from the file alone matches what each runtime reports, and the check sorts
what a device cannot run into blockers and fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecv.compat import Graph, Op, Tensor, _partition_cut, check_artifact, read_graph
from edgecv.devices import load_profile
from edgecv.errors import ModelFileError, UnsupportedFormatError
from edgecv.formats import FORMATS
from tests.conftest import make_tiny_onnx

DEVICES = Path(__file__).resolve().parents[2] / "devices"


# -- ONNX -------------------------------------------------------------------------------------------------


def make_rich_onnx(path: Path) -> Path:
    """A graph with the parts the reader must handle: a dim_param, a Constant node, int8 weights with
    DequantizeLinear, a custom-domain op, and value_info from shape inference."""
    from onnx import TensorProto, helper, numpy_helper, save, shape_inference

    w = np.arange(4 * 3 * 3 * 3, dtype=np.int8).reshape(4, 3, 3, 3)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.array(0.02, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(4, np.float16), "unused_half")]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="dq"),
        helper.make_node("Conv", ["images", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["two"], name="const2",
                         value=numpy_helper.from_array(np.full((1, 4, 1, 1), 2.0, np.float32))),
        helper.make_node("Mul", ["c", "two"], ["m"], name="mul"),
        helper.make_node("Gelu", ["m"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("ReduceMean", ["g"], ["scores"], name="pool", axes=[2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "rich",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    model = shape_inference.infer_shapes(model)
    save(model, str(path))
    return path


@pytest.fixture(scope="module")
def rich_onnx(tmp_path_factory) -> Path:
    return make_rich_onnx(tmp_path_factory.mktemp("rich") / "rich.onnx")


def _onnx_dtype(code: int) -> str:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(code)).name


def assert_matches_onnx(graph: Graph, path: Path) -> None:
    """The graph against onnx's own parse of the file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    assert [op.type for op in graph.ops] == [n.op_type for n in g.node]
    assert [op.domain for op in graph.ops] == [n.domain for n in g.node]
    for op, node in zip(graph.ops, g.node):
        assert op.inputs == tuple(i for i in node.input if i) and op.outputs == tuple(node.output)
    inits = {i.name for i in g.initializer}
    assert graph.inputs == tuple(i.name for i in g.input if i.name not in inits)
    assert graph.outputs == tuple(o.name for o in g.output)
    for init in g.initializer:
        t = graph.tensors[init.name]
        assert t.constant and t.dtype == _onnx_dtype(init.data_type) and t.shape == tuple(init.dims)
        assert t.nbytes == numpy_helper.to_array(init).nbytes
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in inits:
            continue
        t = graph.tensors[vi.name]
        tt = vi.type.tensor_type
        assert t.dtype == _onnx_dtype(tt.elem_type), vi.name
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        assert list(t.shape) == dims, vi.name
        assert [n for n, d in zip(t.dims, tt.shape.dim) if d.HasField("dim_param")] == \
            [d.dim_param for d in tt.shape.dim if d.HasField("dim_param")]
        assert t.dynamic == (-1 in dims)


def test_onnx_graph_matches_onnx_parse(rich_onnx):
    graph = read_graph(rich_onnx)
    assert graph.format == "onnx"
    assert_matches_onnx(graph, rich_onnx)
    gelu = graph.ops[4]
    assert gelu.type == "Gelu" and gelu.custom and gelu.domain == "com.microsoft" and gelu.name == "gelu"
    assert graph.tensors["images"].shape_text() == "[batch,3,16,16]"
    two = graph.tensors["two"]  # a Constant node's output is a constant tensor too
    assert two.constant and two.dtype == "float32" and two.shape == (1, 4, 1, 1) and two.nbytes == 16
    assert graph.precision == "dynamic"  # int8 weights through DequantizeLinear, float activations: weight-only
    assert graph.param_bytes == 108 + 4 + 8 + 16


def test_tiny_and_shared_onnx_match_onnx_parse(tiny_onnx, shared_data):
    for path in (tiny_onnx, shared_data / "models" / "mnist-8.onnx"):
        graph = read_graph(path)
        assert_matches_onnx(graph, path)
        assert graph.precision == "fp32"


def test_packed_dims_are_read(tmp_path):
    """onnx writes dims unpacked (proto2); other writers may pack them."""
    # An initializer (TensorProto): field 1 packed [2, 300], field 2 data_type 1, field 8 name "t"
    body = b"\x0a\x03\x02\xac\x02" + b"\x10\x01" + b"\x42\x01t"
    graph = b"\x2a" + bytes([len(body)]) + body  # GraphProto field 5: initializer
    path = tmp_path / "packed.onnx"
    path.write_bytes(b"\x08\x08" + b"\x3a" + bytes([len(graph)]) + graph)  # ModelProto: ir_version 8, graph
    t = read_graph(path).tensors["t"]
    assert (t.dtype, t.shape, t.constant, t.nbytes) == ("float32", (2, 300), True, 2400)


# -- TFLite (built with TensorFlow: slow) -----------------------------------------------------------------


def _keras_model(*, batch: int | None, odd: bool = False):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), batch_size=batch, name="x")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inp)
    if odd:
        # GELU is outside the Edge TPU's op list; the Reshape to 5-D and the SUM over it have a rank-5 tensor.
        x = keras.layers.Activation("gelu", name="gelu")(x)
        x = keras.layers.Reshape((8, 8, 2, 2), name="to5d")(x)
        x = keras.layers.Lambda(lambda t: keras.ops.sum(t, axis=-1), name="sum5d")(x)
    x = keras.layers.Conv2D(4, 1, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="scores")(x))


def _to_tflite(model, path: Path, *, int8: bool) -> Path:
    import tensorflow as tf

    def representative():
        rng = np.random.default_rng(0)
        for _ in range(8):
            yield [rng.random((1, 8, 8, 3), np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.uint8
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def tflites(tmp_path_factory) -> dict[str, Path]:
    """float (dynamic batch), full-integer int8 with uint8 I/O, and int8 with GELU and a rank-5 tensor."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("tflite")
    return {
        "float": _to_tflite(_keras_model(batch=None), out / "tiny.fp32.tflite", int8=False),
        "int8": _to_tflite(_keras_model(batch=1), out / "tiny.int8.tflite", int8=True),
        "odd": _to_tflite(_keras_model(batch=1, odd=True), out / "odd.int8.tflite", int8=True),
    }


def assert_matches_litert(graph: Graph, path: Path) -> list[str]:
    """The graph against LiteRT's own view of the file; returns the runtime's op names."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    details = it.get_tensor_details()
    names = [d["name"] for d in details]
    assert len(set(names)) == len(names)  # these models have unique tensor names, so they are used as is
    ops = it._get_ops_details()
    assert [op.type for op in graph.ops] == [d["op_name"] for d in ops]
    for op, d in zip(graph.ops, ops):
        assert op.inputs == tuple(names[i] for i in d["inputs"] if i >= 0)
        assert op.outputs == tuple(names[i] for i in d["outputs"])
    assert set(graph.tensors) == set(names)
    for d in details:
        t = graph.tensors[d["name"]]
        assert t.dtype == np.dtype(d["dtype"]).name, d["name"]
        assert list(t.shape) == list(d["shape_signature"]), d["name"]
        assert t.dynamic == bool((d["shape_signature"] < 0).any())
        assert t.quantized == bool(len(d["quantization_parameters"]["scales"]))
    assert graph.inputs == tuple(d["name"] for d in it.get_input_details())
    assert graph.outputs == tuple(d["name"] for d in it.get_output_details())
    return [d["op_name"] for d in ops]


@pytest.mark.workstation
def test_tflite_graphs_match_litert(tflites):
    for kind, path in tflites.items():
        assert_matches_litert(read_graph(path), path)
    assert read_graph(tflites["float"]).precision == "fp32"
    assert read_graph(tflites["int8"]).precision == "int8"
    assert read_graph(tflites["float"]).tensors[read_graph(tflites["float"]).inputs[0]].shape == (-1, 8, 8, 3)


@pytest.mark.workstation
def test_float_tflite_is_blocked_on_coral(tflites):
    path = tflites["float"]
    report = check_artifact(path, load_profile("coral-edgetpu"))
    graph = read_graph(path)
    assert not report.ok and report.accelerator_ops == 0
    floats = [f for f in report.blockers if f.kind == "float"]
    assert [f.op for f in floats] == [op.type for op in graph.ops]  # every op of a float model
    first = graph.ops[0]
    assert floats[0].message == (f"float op CONV_2D {first.name!r} on tensor {graph.inputs[0]!r} float32: "
                                 f"the Edge TPU runs full-integer models only")
    dynamic = [f for f in report.blockers if f.kind == "dynamic"]
    assert [f.tensor for f in dynamic] == list(graph.inputs)
    assert "[-1,8,8,3]" in dynamic[0].message and "static shapes only" in dynamic[0].message


@pytest.mark.workstation
def test_full_integer_tflite_runs_on_coral(tflites):
    report = check_artifact(tflites["int8"], load_profile("coral-edgetpu"))
    assert report.ok and report.precision == "int8"
    assert not report.blockers and not report.fallbacks  # uint8 I/O: QUANTIZE ops, all on the Edge TPU
    assert report.accelerator_ops == report.ops == 6


@pytest.mark.workstation
def test_an_op_outside_the_list_cuts_the_one_partition(tflites):
    path = tflites["odd"]
    runtime_ops = assert_matches_litert(read_graph(path), path)
    gelu = runtime_ops.index("GELU")
    report = check_artifact(path, load_profile("coral-edgetpu"))
    assert report.ok  # fallbacks only: the CPU runs what the Edge TPU cannot
    cut = report.fallbacks[0]
    assert cut.kind == "op" and cut.op == "GELU"
    after = len(runtime_ops) - gelu - 1
    assert cut.message.endswith(f"is not in the Edge TPU's op list: it and the {after} ops after it run on the CPU "
                                f"(one partition)")
    assert report.accelerator_ops == gelu  # QUANTIZE and CONV_2D before it
    rank = [f for f in report.fallbacks if f.kind == "rank"]
    assert {f.op for f in rank} == {"RESHAPE", "SUM"}
    assert "has rank 5 [1,8,8,2,2], the Edge TPU takes at most 3 dimensions besides batch" in rank[0].message


@pytest.mark.workstation
def test_other_devices_on_the_tflites(tflites):
    assert check_artifact(tflites["int8"], load_profile("raspberry-pi-4")).fallbacks == ()
    android = check_artifact(tflites["odd"], load_profile("android-phone"))
    assert android.ok and {f.kind for f in android.fallbacks} == {"rank"}  # no op list, static shapes not required
    npu = check_artifact(tflites["int8"], load_profile("intel-npu"))
    assert not npu.ok and [f.kind for f in npu.blockers] == ["format"]
    assert npu.blockers[0].message == "format tflite: intel-npu runs openvino, onnx only (.xml, .onnx)"


# -- the shared real models -------------------------------------------------------------------------------


def test_float_blazeface_is_blocked_on_coral(shared_data):
    path = shared_data / "models" / "face_detection_short_range.tflite"
    runtime_ops = assert_matches_litert(read_graph(path), path)
    report = check_artifact(path, load_profile("coral-edgetpu"))
    assert not report.ok and report.precision == "fp16"
    assert len(report.blockers) == len(runtime_ops) and {f.kind for f in report.blockers} == {"float"}
    conv = next(f for f in report.blockers if f.op == "CONV_2D")
    assert conv.message == "float op CONV_2D 'conv2d' on tensor 'input' float32: the Edge TPU runs full-integer models only"
    dq = next(f for f in report.blockers if f.op == "DEQUANTIZE")
    assert "float16" in dq.message  # fp16 weights expanded at run time
    assert check_artifact(path, load_profile("android-phone")).ok


def test_quantized_ssd_runs_on_coral_with_its_postprocess_on_the_cpu(shared_data):
    path = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    runtime_ops = assert_matches_litert(read_graph(path), path)
    assert runtime_ops[-1] == "TFLite_Detection_PostProcess"
    graph = read_graph(path)
    assert graph.ops[-1].custom and graph.precision == "int8"
    report = check_artifact(path, load_profile("coral-edgetpu"))
    assert report.ok and report.accelerator_ops == len(runtime_ops) - 1
    [post] = report.fallbacks
    assert post.op == "TFLite_Detection_PostProcess" and post.message == (
        "custom op TFLite_Detection_PostProcess 'TFLite_Detection_PostProcess' is not in the Edge TPU's op list: "
        "it runs on the CPU (the last op)")
    json.dumps(report.to_dict())


# -- OpenVINO IR ------------------------------------------------------------------------------------------


def _to_ir(onnx_path: Path, out: Path) -> Path:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(out))
    return out


# The IR spells a few types differently from the opset classes.
_IR_SPELLING = {"Const": "Constant", "ReLU": "Relu"}


def test_openvino_graph_matches_openvino(tmp_path):
    import openvino as ov

    path = _to_ir(make_tiny_onnx(tmp_path / "tiny.onnx"), tmp_path / "tiny.xml")
    graph = read_graph(path)
    ordered = ov.Core().read_model(str(path)).get_ordered_ops()
    assert [_IR_SPELLING.get(op.type, op.type) for op in graph.ops] == [o.get_type_name() for o in ordered]
    assert [op.name for op in graph.ops] == [o.get_friendly_name() for o in ordered]
    by_name = {op.name: op for op in graph.ops}
    for op, node in zip(graph.ops, ordered):
        assert len(op.inputs) == node.get_input_size()
        assert len(op.outputs) == (0 if op.type == "Result" else node.get_output_size())  # the IR gives Result no port
        sources = [i.get_source_output() for i in node.inputs()]
        assert op.inputs == tuple(by_name[s.get_node().get_friendly_name()].outputs[s.get_index()] for s in sources)
        for name, out in zip(op.outputs, node.outputs()):
            t = graph.tensors[name]
            assert t.dtype == np.dtype(out.get_element_type().to_dtype()).name, name
            assert list(t.shape) == [d.get_length() if d.is_static else -1 for d in out.get_partial_shape()], name
    x = graph.tensors[graph.inputs[0]]
    assert graph.inputs == ("x",) and graph.outputs == ("scores",) and x.dynamic and x.shape == (-1, 3, 8, 8)
    assert graph.param_bytes == path.with_suffix(".bin").stat().st_size  # every Const's bytes, nothing else
    assert graph.precision == "fp16"  # save_model compresses weights to fp16


def test_dynamic_shapes_block_the_npu(tmp_path, tiny_onnx, tiny_onnx_batch1):
    npu = load_profile("intel-npu")
    report = check_artifact(tiny_onnx, npu)
    assert not report.ok
    [dyn] = report.blockers
    assert dyn.kind == "dynamic" and dyn.tensor == "x" and dyn.message.startswith("dynamic shape on input 'x' [N,3,8,8]")
    ir = _to_ir(tiny_onnx, tmp_path / "dyn.xml")
    assert [f.kind for f in check_artifact(ir, npu).blockers] == ["dynamic"]
    ok = check_artifact(tiny_onnx_batch1, npu)
    assert ok.ok and not ok.fallbacks and ok.accelerator_ops == 5
    assert check_artifact(_to_ir(tiny_onnx_batch1, tmp_path / "static.xml"), npu).ok
    assert check_artifact(tiny_onnx, load_profile("jetson-orin-nano")).ok  # TensorRT takes dynamic shapes


# -- rules driven by profile fields -----------------------------------------------------------------------


def _profile(tmp_path: Path, base: str, replace: dict[str, str]):
    text = (DEVICES / f"{base}.yaml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{base}-variant.yaml"
    path.write_text(text)
    return load_profile(path)


def test_format_size_and_precision_blockers(tmp_path, tiny_onnx_batch1):
    coral = check_artifact(tiny_onnx_batch1, load_profile("coral-edgetpu"))
    assert [f.message for f in coral.blockers] == ["format onnx: coral-edgetpu runs tflite only (.tflite)"]
    small = _profile(tmp_path, "raspberry-pi-5", {"budgets:\n": "budgets:\n  model_mb: 0.0001\n"})
    [size] = check_artifact(tiny_onnx_batch1, small).blockers
    assert size.kind == "size" and size.message.endswith("over raspberry-pi-5's budget of 0.0001 MB (budgets.model_mb)")
    int8_only = _profile(tmp_path, "raspberry-pi-5", {"required: null": "required: int8"})
    [need] = check_artifact(tiny_onnx_batch1, int8_only).blockers
    assert need.message == "raspberry-pi-5 needs int8 models (quantization.required); this one is fp32"


def test_unsupported_ops_are_blockers_without_a_cpu_fallback(tmp_path, tiny_onnx_batch1):
    """intel-npu compiles the whole model or fails: an op outside its list blocks; with a CPU fallback the
    same op only falls back."""
    listed = "  static_shapes: true\n"
    hard = _profile(tmp_path, "intel-npu", {listed: listed + "  ops: {onnx: [Conv, Relu, Flatten, Gemm]}\n"})
    report = check_artifact(tiny_onnx_batch1, hard)
    [op] = report.blockers
    assert op.op == "GlobalAveragePool" and op.message == (
        "op GlobalAveragePool 'p' is not in the Intel NPU's op list: the model does not compile for the Intel NPU")
    soft = _profile(tmp_path, "intel-npu", {listed: listed + "  ops: {onnx: [Conv, Relu, Flatten, Gemm]}\n",
                                            "fallback: error": "fallback: cpu", "devices: [NPU]": "devices: [NPU, CPU]"})
    report = check_artifact(tiny_onnx_batch1, soft)
    assert report.ok and [f.op for f in report.fallbacks] == ["GlobalAveragePool"]
    assert report.fallbacks[0].message.endswith("runs on the CPU") and report.accelerator_ops == 4


def test_parameters_over_the_on_chip_memory_stream(tmp_path, shared_data):
    path = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    assert not [f for f in check_artifact(path, load_profile("coral-edgetpu")).fallbacks if f.kind == "memory"]
    tiny_sram = _profile(tmp_path, "coral-edgetpu", {"memory_mb: 8": "memory_mb: 2"})
    [mem] = [f for f in check_artifact(path, tiny_sram).fallbacks if f.kind == "memory"]
    assert "MB, more than its ~2 MB on-chip memory: the rest stream from host memory" in mem.message


def test_accelerator_that_does_not_take_the_format(tmp_path, tiny_onnx_batch1):
    gpu_ir_only = _profile(tmp_path, "intel-igpu", {"  formats: [openvino, onnx]\n  precisions: [fp16, int8]":
                                                    "  formats: [openvino]\n  precisions: [fp16, int8]"})
    report = check_artifact(tiny_onnx_batch1, gpu_ir_only)
    assert report.ok and report.accelerator_ops is None
    assert [f.message for f in report.fallbacks] == [
        "the Intel GPU does not run onnx files (it takes openvino): the whole model runs on the CPU"]


@pytest.mark.parametrize(
    "bad, partitions, cut",
    [
        (set(), 1, None),
        ({3}, 1, 3),
        ({0}, 1, 0),  # the first op: everything on the CPU
        ({2, 3, 5}, 1, 2),
        ({2, 3, 5}, 2, 5),  # a second segment after the first run of CPU ops
        ({2, 3, 5}, None, None),
    ],
)
def test_partition_cut(bad, partitions, cut):
    assert _partition_cut(list(range(8)), {i: ["why"] for i in bad}, partitions) == cut


def test_report_to_dict(tiny_onnx):
    report = check_artifact(tiny_onnx, load_profile("intel-npu"))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["device"] == "intel-npu" and d["format"] == "onnx" and d["ops"] == 5
    assert d["blockers"][0]["kind"] == "dynamic" and d["blockers"][0]["tensor"] == "x" and d["fallbacks"] == []
    assert d["op_types"] == {"Conv": 1, "Relu": 1, "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1}


def test_graph_to_dict_and_helpers():
    t = Tensor("x", "float32", (-1, 3), ("N", ""))
    g = Graph("onnx", Path("m.onnx"), (Op("Relu", "r", ("x",), ("y",)),), {"x": t, "y": Tensor("y", None, None)},
              ("x",), ("y",))
    assert t.dynamic and t.rank == 2 and t.shape_text() == "[N,3]"
    assert g.tensors["y"].dynamic and g.tensors["y"].shape_text() == "[?]"
    assert g.to_dict()["tensors"][0] == {"name": "x", "dtype": "float32", "shape": [-1, 3], "dims": ["N", ""],
                                         "dynamic": True, "constant": False, "nbytes": 0}


# -- bad files --------------------------------------------------------------------------------------------


def test_bad_artifacts_are_one_line_errors(tmp_path, tiny_onnx):
    with pytest.raises(ModelFileError, match="model file not found"):
        read_graph(tmp_path / "missing.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match="unknown model extension '.pt'"):
        read_graph(tmp_path / "m.pt")
    data = tiny_onnx.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"cut.onnx is corrupted: .* runs past"):
        read_graph(cut)
    nograph = tmp_path / "nograph.onnx"
    nograph.write_bytes(b"\x08\x08")  # ir_version 8 and nothing else
    with pytest.raises(ModelFileError, match="it has no graph"):
        read_graph(nograph)
    xml = tmp_path / "bad.xml"
    xml.write_text("<?xml version='1.0'?><net><layers><layer")
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a readable OpenVINO IR"):
        read_graph(xml)
    (tmp_path / "nobin.xml").write_text("<?xml version='1.0'?><net/>")
    with pytest.raises(ModelFileError, match="the weights file nobin.bin is missing"):
        read_graph(tmp_path / "nobin.xml")


def test_corrupted_tflite(tmp_path, shared_data):
    data = (shared_data / "models" / "face_detection_short_range.tflite").read_bytes()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(data[:5000])
    with pytest.raises(ModelFileError) as err:
        read_graph(bad)
    assert "bad.tflite" in str(err.value) and "\n" not in str(err.value)


def test_reading_needs_no_heavy_package(tiny_onnx, shared_data, tmp_path):
    """Device side: the reader and the check import neither TensorFlow, onnx, protobuf nor a runtime."""
    ir = _to_ir(tiny_onnx, tmp_path / "t.xml")
    code = (
        "import sys, json\nfrom edgecv.compat import check_artifact, read_graph\nfrom edgecv.devices import load_profile\n"
        f"for p in [{str(tiny_onnx)!r}, {str(ir)!r}, {str(shared_data / 'models' / 'face_detection_short_range.tflite')!r}]:\n"
        "    read_graph(p); check_artifact(p, load_profile('ci-x86-64-avx2'))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    heavy = {"tensorflow", "onnx", "openvino", "onnxruntime", "ai_edge_litert", "keras", "google.protobuf"}
    assert not heavy & loaded


def test_a_data_dependent_shape_inside_blocks_the_npu(tmp_path):
    """Static input, but NonZero's output size depends on the data: the NPU cannot compile it."""
    from onnx import TensorProto, helper, save, shape_inference

    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"),
         helper.make_node("Cast", ["nz"], ["f"], name="cast", to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["f"], ["y"], name="sum", keepdims=0)],
        "nz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "nz.onnx"
    save(shape_inference.infer_shapes(model), str(path))
    report = check_artifact(path, load_profile("intel-npu"))
    assert [(f.kind, f.op, f.tensor) for f in report.blockers] == [
        ("dynamic", "NonZero", "nz"), ("dynamic", "Cast", "nz"), ("dynamic", "ReduceSum", "f")]
    assert "tensor 'nz' of NonZero 'nonzero' has a dynamic shape [2,unk__0], the Intel NPU takes static shapes only: the model does not compile" in report.blockers[0].message


def test_int16_activations_do_not_map_to_the_edge_tpu():
    """An int16x8 graph: every op on an int16 activation runs on the CPU, and Coral needs int8."""
    from edgecv.compat import _check_accelerator

    t = {"x": Tensor("x", "int16", (1, 4), quantized=True), "w": Tensor("w", "int8", (4, 4), constant=True, nbytes=16),
         "y": Tensor("y", "int16", (1, 4), quantized=True), "z": Tensor("z", "int16", (1, 4), quantized=True)}
    g = Graph("tflite", Path("m.tflite"), (Op("FULLY_CONNECTED", "y", ("x", "w"), ("y",)), Op("RELU", "z", ("y",), ("z",))),
              t, ("x",), ("z",), FORMATS["tflite"].weight_ops)
    assert g.precision == "int16x8"
    blockers, fallbacks = [], []
    assert _check_accelerator(g, load_profile("coral-edgetpu"), blockers, fallbacks) == 0
    assert blockers == [] and [f.kind for f in fallbacks] == ["dtype", "dtype"]
    assert fallbacks[0].message == ("tensor 'x' of FULLY_CONNECTED 'y' is int16, the Edge TPU takes int8, uint8 "
                                    "(and 1 more reason): it and the 1 op after it run on the CPU (one partition)")
