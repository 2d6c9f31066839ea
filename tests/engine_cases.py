"""ONNX graphs for the engine tests: one small model per op case, a QuantizeLinear/DequantizeLinear
pair per quantized type, and a small CNN (shared by test_engine, test_engine_vs_onnxruntime and
test_runtime; built with onnx.helper, deterministic)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def make_model(nodes, x_shape, inits=(), outputs=("y",), opset=21, extra_inputs=()):
    inputs = [helper.make_tensor_value_info("x", F, list(x_shape))]
    for name, shape in extra_inputs:
        inputs.append(helper.make_tensor_value_info(name, F, list(shape)))
    outs = [helper.make_tensor_value_info(*((o, F) if isinstance(o, str) else o), None)
            for o in outputs]
    graph = helper.make_graph(nodes, "g", inputs, outs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 21 else 8
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in m.graph.output:
        v = known.get(o.name)
        if v is not None and v.type.tensor_type.HasField("shape"):
            o.CopyFrom(v)
    return m


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# --------------------------------------------------------------------------- one model per op
def conv_case(rng, cin=4, cout=6, k=3, group=1, strides=(1, 1), pads=(1, 1, 1, 1), dil=(1, 1),
              hw=(9, 8), bias=True, auto_pad=None):
    w = rnd(rng, cout, cin // group, k, k, scale=0.3)
    inits = [init("w", w)]
    ins = ["x", "w"]
    if bias:
        inits.append(init("b", rnd(rng, cout)))
        ins.append("b")
    attrs = dict(group=group, strides=list(strides), dilations=list(dil), kernel_shape=[k, k])
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = list(pads)
    node = helper.make_node("Conv", ins, ["y"], **attrs)
    return make_model([node], (2, cin) + hw, inits)


def bn_case(rng):
    c = 5
    inits = [init("s", rnd(rng, c)), init("bb", rnd(rng, c)), init("m", rnd(rng, c)),
             init("v", np.abs(rnd(rng, c)) + 0.5)]
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y"], epsilon=1e-3)
    return make_model([node], (3, c, 4, 5), inits)


def unary_case(op, **attrs):
    def build(rng):
        return make_model([helper.make_node(op, ["x"], ["y"], **attrs)], (2, 3, 4, 5))
    return build


def clip_inputs_case(rng):
    inits = [init("lo", np.float32(-0.5)), init("hi", np.float32(0.7))]
    return make_model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], (2, 3, 4, 4), inits)


def clip_max_only_case(rng):
    inits = [init("hi", np.float32(6.0))]
    return make_model([helper.make_node("Clip", ["x", "", "hi"], ["y"])], (2, 3, 4, 4), inits)


def clip_attr_case(rng):
    return make_model([helper.make_node("Clip", ["x"], ["y"], min=-0.3, max=0.4)], (2, 3, 4, 4),
                      opset=6)


def binary_case(op, bshape, const=True):
    def build(rng):
        b = rnd(rng, *bshape)
        if op == "Div":
            b = (np.sign(b) * (np.abs(b) + 0.5)).astype(np.float32)
        if const:
            return make_model([helper.make_node(op, ["x", "b"], ["y"])], (2, 3, 4, 5), [init("b", b)])
        # both operands depend on the input: y = op(x, relu-free transform of x)
        nodes = [helper.make_node("Mul", ["x", "k"], ["t"]), helper.make_node("Add", ["t", "c"], ["u"]),
                 helper.make_node(op, ["x", "u"], ["y"])]
        c = np.full((1,), 3.0, np.float32)
        return make_model(nodes, (2, 3, 4, 5), [init("k", np.float32(0.25)), init("c", c)])
    return build


def pool_case(op, k=3, s=2, pads=(1, 1, 1, 1), ceil=0, cip=None, hw=(9, 10), dil=None):
    def build(rng):
        attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=list(pads), ceil_mode=ceil)
        if cip is not None:
            attrs["count_include_pad"] = cip
        if dil is not None:
            attrs["dilations"] = [dil, dil]
        return make_model([helper.make_node(op, ["x"], ["y"], **attrs)], (2, 3) + hw)
    return build


def gap_case(rng):
    return make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], (2, 4, 5, 6))


def reducemean_input_case(rng):
    return make_model([helper.make_node("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], (2, 4, 5, 6),
                      [init("ax", np.array([2, 3], np.int64))])


def reducemean_attr_case(rng):
    return make_model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, 2], keepdims=1)],
                      (2, 4, 5, 6), opset=13)


def flatten_gemm_case(rng, trans_b=1, alpha=1.0, beta=1.0):
    wt = rnd(rng, 7, 60) if trans_b else rnd(rng, 60, 7)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w", "c"], ["y"], transB=trans_b, alpha=alpha, beta=beta)]
    return make_model(nodes, (3, 3, 4, 5), [init("w", wt), init("c", rnd(rng, 7))])


def gemm_transa_case(rng):
    nodes = [helper.make_node("Reshape", ["x", "sh"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], transA=1, alpha=0.5)]
    return make_model(nodes, (3, 2, 2, 3), [init("sh", np.array([12, 3], np.int64)),
                                          init("w", rnd(rng, 12, 5))])


def reshape_matmul_case(rng):
    nodes = [helper.make_node("Reshape", ["x", "sh"], ["r"]),
             helper.make_node("MatMul", ["r", "w"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5), [init("sh", np.array([0, -1], np.int64)),
                                          init("w", rnd(rng, 60, 4))])


def batched_matmul_case(rng):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "w"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5), [init("w", rnd(rng, 3, 6))])


def concat_case(rng):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b", "x"], ["y"], axis=1)]
    return make_model(nodes, (2, 3, 4, 5))


def squeeze_unsqueeze_case(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Squeeze", ["g", "a23"], ["s"]),
             helper.make_node("Unsqueeze", ["s", "a1"], ["u"]),
             helper.make_node("Identity", ["u"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5), [init("a23", np.array([2, 3], np.int64)),
                                          init("a1", np.array([1], np.int64))])


def squeeze_attr_case(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Squeeze", ["g"], ["s"], axes=[2, 3]),
             helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0])]
    return make_model(nodes, (2, 3, 4, 5), opset=11)


def shape_gather_reshape_case(rng):
    # TorchScript-style flatten: Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "a0"], ["n1"]),
             helper.make_node("Concat", ["n1", "m1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5), [init("zero", np.array(0, np.int64)),
                                          init("a0", np.array([0], np.int64)),
                                          init("m1", np.array([-1], np.int64))])


def constant_case(rng):
    t = numpy_helper.from_array(rnd(rng, 1, 3, 1, 1), "cv")
    nodes = [helper.make_node("Constant", [], ["c"], value=t),
             helper.make_node("Mul", ["x", "c"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5))


def softmax_case(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Softmax", ["f"], ["y"], axis=-1)]
    return make_model(nodes, (2, 6, 3, 3))


def slice_case(rng):
    nodes = [helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])]
    return make_model(nodes, (2, 6, 5, 5), [init("st", np.array([1, 0], np.int64)),
                                          init("en", np.array([5, 99], np.int64)),
                                          init("ax", np.array([1, 3], np.int64)),
                                          init("sp", np.array([2, 2], np.int64))])


def se_block_case(rng):
    """MobileNetV3 squeeze-excite: x * HardSigmoid(conv(relu(conv(GAP(x)))))."""
    c = 8
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
             helper.make_node("Conv", ["g", "w1", "b1"], ["h"], kernel_shape=[1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["e"], kernel_shape=[1, 1]),
             helper.make_node("HardSigmoid", ["e"], ["s"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["x", "s"], ["y"])]
    inits = [init("w1", rnd(rng, 4, c, 1, 1)), init("b1", rnd(rng, 4)),
             init("w2", rnd(rng, c, 4, 1, 1)), init("b2", rnd(rng, c))]
    return make_model(nodes, (2, c, 5, 5), inits)


def positive_case(op, **attrs):
    """op(x * x + 0.5): a smooth, positive operand (Log, Sqrt, Reciprocal, Pow)."""
    def build(rng):
        nodes = [helper.make_node("Mul", ["x", "x"], ["t"]), helper.make_node("Add", ["t", "h"], ["u"])]
        inits = [init("h", np.float32(0.5))]
        if op == "Pow":
            nodes.append(helper.make_node("Pow", ["u", "p"], ["y"]))
            inits.append(init("p", np.float32(1.7)))
        else:
            nodes.append(helper.make_node(op, ["u"], ["y"], **attrs))
        return make_model(nodes, (2, 3, 4, 5), inits)
    return build


def pad_case(mode, pads, value=None):
    def build(rng):
        inits = [init("p", np.array(pads, np.int64))]
        ins = ["x", "p"]
        if value is not None:
            inits.append(init("v", np.float32(value)))
            ins.append("v")
        return make_model([helper.make_node("Pad", ins, ["y"], mode=mode)], (2, 3, 5, 6), inits)
    return build


def split_case(rng, use_first=True):
    """Split into two parts along channels; both (or only the second) reach the output."""
    nodes = [helper.make_node("Split", ["x", "s"], ["a", "b"], axis=1),
             helper.make_node("Mul", ["b", "k"], ["b2"])]
    if use_first:
        nodes.append(helper.make_node("Concat", ["b2", "a"], ["y"], axis=1))
    else:
        nodes.append(helper.make_node("Relu", ["b2"], ["y"]))
    return make_model(nodes, (2, 3, 4, 5), [init("s", np.array([1, 2], np.int64)),
                                            init("k", np.float32(2.0))])


def variadic_case(op):
    def build(rng):
        nodes = [helper.make_node("Mul", ["x", "k"], ["t"]),
                 helper.make_node(op, ["x", "t", "b"], ["y"])]
        return make_model(nodes, (2, 3, 4, 5), [init("k", np.float32(-0.5)),
                                                 init("b", rnd(rng, 1, 3, 1, 5))])
    return build


def prelu_case(rng):
    return make_model([helper.make_node("PRelu", ["x", "slope"], ["y"])], (2, 3, 4, 5),
                      [init("slope", rnd(rng, 3, 1, 1, scale=0.3))])


def resize_case(mode, scales=None, sizes=None, opset=21, **attrs):
    def build(rng):
        inits, ins = [], ["x", ""]
        if scales is not None:
            inits.append(init("sc", np.array(scales, np.float32)))
            ins.append("sc")
        else:
            inits.append(init("sz", np.array(sizes, np.int64)))
            ins += ["", "sz"]
        return make_model([helper.make_node("Resize", ins, ["y"], mode=mode, **attrs)], (2, 3, 5, 6),
                          inits, opset=opset)
    return build


def upsample_case(rng):
    inits = [init("sc", np.array([1, 1, 2, 3], np.float32))]
    return make_model([helper.make_node("Upsample", ["x", "sc"], ["y"], mode="nearest")],
                      (2, 3, 4, 5), inits, opset=9)


def gelu_erf_case(rng):
    """GELU as exported before opset 20: 0.5 * x * (1 + erf(x / sqrt 2))."""
    nodes = [helper.make_node("Div", ["x", "r2"], ["t"]), helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["f"]), helper.make_node("Mul", ["x", "f"], ["g"]),
             helper.make_node("Mul", ["g", "half"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5), [init("r2", np.float32(np.sqrt(2))),
                                             init("one", np.float32(1)), init("half", np.float32(0.5))])


def silu_case(rng):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5))


def mish_composite_case(rng):
    nodes = [helper.make_node("Softplus", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Mul", ["x", "t"], ["y"])]
    return make_model(nodes, (2, 3, 4, 5))


def bn_training_case(rng):
    """BatchNormalization with training_mode=1: batch statistics (their gradient flows too)."""
    c = 4
    inits = [init("s", rnd(rng, c)), init("bb", rnd(rng, c)), init("m", rnd(rng, c)),
             init("v", np.abs(rnd(rng, c)) + 0.5)]
    node = helper.make_node("BatchNormalization", ["x", "s", "bb", "m", "v"], ["y", "rm", "rv"],
                            epsilon=1e-3, training_mode=1)
    return make_model([node], (3, c, 4, 5), inits, outputs=("y",))


NEW_OP_CASES = {
    "batchnorm_training": bn_training_case,
    "exp": unary_case("Exp"),
    "erf": unary_case("Erf"),
    "log": positive_case("Log"),
    "sqrt": positive_case("Sqrt"),
    "reciprocal": positive_case("Reciprocal"),
    "pow": positive_case("Pow"),
    "neg": unary_case("Neg"),
    "abs": unary_case("Abs"),
    "elu": unary_case("Elu", alpha=0.7),
    "selu": unary_case("Selu"),
    "softplus": unary_case("Softplus"),
    "mish": unary_case("Mish"),
    "mish_composite": mish_composite_case,
    "gelu": unary_case("Gelu"),
    "gelu_tanh": unary_case("Gelu", approximate="tanh"),
    "gelu_erf_composite": gelu_erf_case,
    "silu": silu_case,
    "tanh": unary_case("Tanh"),
    "leakyrelu": unary_case("LeakyRelu", alpha=0.1),
    "prelu": prelu_case,
    "sum3": variadic_case("Sum"),
    "mean3": variadic_case("Mean"),
    "max3": variadic_case("Max"),
    "min3": variadic_case("Min"),
    "pad_constant": pad_case("constant", [0, 0, 1, 2, 0, 0, 2, 1], value=0.5),
    "pad_crop": pad_case("constant", [0, 0, -1, 2, 0, 0, 1, -2]),
    "pad_reflect": pad_case("reflect", [0, 0, 2, 1, 0, 0, 1, 3]),
    "pad_edge": pad_case("edge", [0, 0, 2, 1, 0, 0, 1, 3]),
    "split_concat": split_case,
    "split_one_used": lambda r: split_case(r, use_first=False),
    "global_maxpool": unary_case("GlobalMaxPool"),
    "lrn3": unary_case("LRN", size=3, alpha=0.1, beta=0.75, bias=1.5),
    "lrn5": unary_case("LRN", size=5),
    "resize_nearest_half_pixel": resize_case("nearest", scales=[1, 1, 2, 1.5]),
    "resize_nearest_asymmetric_floor": resize_case(
        "nearest", scales=[1, 1, 2, 2], coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
    "resize_linear_half_pixel": resize_case("linear", scales=[1, 1, 2, 1.5]),
    "resize_linear_align_corners": resize_case("linear", sizes=[2, 3, 9, 4],
                                               coordinate_transformation_mode="align_corners"),
    "resize_linear_pytorch": resize_case("linear", sizes=[2, 3, 3, 11],
                                         coordinate_transformation_mode="pytorch_half_pixel"),
    "upsample_opset9": upsample_case,
}


CASES = {
    "conv3x3": conv_case,
    "conv1x1": lambda r: conv_case(r, k=1, pads=(0, 0, 0, 0), bias=False),
    "conv_stride2_asym": lambda r: conv_case(r, strides=(2, 2), pads=(0, 1, 1, 0), hw=(10, 9)),
    "conv_1x1_stride2": lambda r: conv_case(r, k=1, strides=(2, 2), pads=(0, 0, 0, 0)),
    "conv_dilated": lambda r: conv_case(r, dil=(2, 2), pads=(2, 2, 2, 2)),
    "conv_grouped": lambda r: conv_case(r, cin=6, cout=4, group=2),
    "conv_depthwise": lambda r: conv_case(r, cin=6, cout=6, group=6, strides=(2, 2)),
    "conv_depthwise_mult2": lambda r: conv_case(r, cin=3, cout=6, group=3, k=5, pads=(2, 2, 2, 2)),
    "conv_7x7_s2": lambda r: conv_case(r, cin=3, cout=8, k=7, strides=(2, 2), pads=(3, 3, 3, 3),
                                       hw=(16, 16)),
    "conv_same_upper": lambda r: conv_case(r, strides=(2, 2), auto_pad="SAME_UPPER"),
    "batchnorm": bn_case,
    "relu": unary_case("Relu"),
    "sigmoid": unary_case("Sigmoid"),
    "hardsigmoid": unary_case("HardSigmoid", alpha=1 / 6, beta=0.5),
    "hardsigmoid_default": unary_case("HardSigmoid"),
    "hardswish": unary_case("HardSwish"),
    "clip_inputs": clip_inputs_case,
    "clip_max_only": clip_max_only_case,
    "clip_attrs_opset6": clip_attr_case,
    "add_bcast": binary_case("Add", (1, 3, 1, 1)),
    "sub_bcast": binary_case("Sub", (4, 5)),
    "mul_bcast": binary_case("Mul", (3, 1, 5)),
    "div_bcast": binary_case("Div", (1, 3, 1, 1)),
    "add_two_paths": binary_case("Add", (1,), const=False),
    "mul_two_paths": binary_case("Mul", (1,), const=False),
    "div_two_paths": binary_case("Div", (1,), const=False),
    "maxpool_3s2p1": pool_case("MaxPool"),
    "maxpool_2s2": pool_case("MaxPool", k=2, s=2, pads=(0, 0, 0, 0), hw=(8, 8)),
    "maxpool_ceil": pool_case("MaxPool", k=3, s=2, pads=(0, 0, 0, 0), ceil=1, hw=(8, 8)),
    "maxpool_dilated": pool_case("MaxPool", k=2, s=1, pads=(0, 0, 0, 0), dil=2),
    "avgpool_excl_pad": pool_case("AveragePool", cip=0),
    "avgpool_incl_pad": pool_case("AveragePool", cip=1),
    "avgpool_ceil": pool_case("AveragePool", k=3, s=2, pads=(1, 1, 1, 1), ceil=1, hw=(8, 8)),
    "global_avgpool": gap_case,
    "reducemean_axes_input": reducemean_input_case,
    "reducemean_axes_attr": reducemean_attr_case,
    "flatten_gemm": flatten_gemm_case,
    "gemm_nontrans_alpha_beta": lambda r: flatten_gemm_case(r, trans_b=0, alpha=0.7, beta=1.5),
    "gemm_transA": gemm_transa_case,
    "reshape_matmul": reshape_matmul_case,
    "batched_matmul": batched_matmul_case,
    "concat": concat_case,
    "squeeze_unsqueeze": squeeze_unsqueeze_case,
    "squeeze_attr_opset11": squeeze_attr_case,
    "shape_gather_reshape": shape_gather_reshape_case,
    "constant": constant_case,
    "softmax": softmax_case,
    "slice": slice_case,
    "se_block": se_block_case,
    **NEW_OP_CASES,
}


def input_shape(model):
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


# ----------------------------------------------------------------- QuantizeLinear / Dequantize

QT = {
    "int8": (TensorProto.INT8, np.int8, -128, 127),
    "uint8": (TensorProto.UINT8, np.uint8, 0, 255),
    "int4": (TensorProto.INT4, np.int8, -8, 7),
    "uint4": (TensorProto.UINT4, np.uint8, 0, 15),
}


def zp_tensor(name, qname, values):
    et = QT[qname][0]
    values = np.asarray(values)
    return helper.make_tensor(name, et, list(values.shape), values.reshape(-1).tolist())


def qdq_case(qname: str, per_axis: bool):
    """Q -> DQ of x (3, 4, 6, 7) at ``qname``: (model, x, scale, zero point). Row x[0, :, 0] holds
    exact ties ((k + 0.5) * scale, must round half to even); x[1, :, 1] / x[1, :, 2] saturate."""
    rng = np.random.default_rng(7 + 2 * sorted(QT).index(qname) + per_axis)
    et, npdt, qmin, qmax = QT[qname]
    c = 4
    if per_axis:
        scale = (rng.uniform(0.02, 0.2, c)).astype(np.float32)
        zp = rng.integers(qmin, qmax + 1, c) if qmin == 0 else rng.integers(-2, 3, c)
    else:
        scale = np.float32(rng.uniform(0.02, 0.2))
        zp = np.array(rng.integers(qmin // 2, qmax // 2 + 1))
    axis_attr = {"axis": 1} if per_axis else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **axis_attr),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **axis_attr)]
    inits = [init("s", scale), zp_tensor("z", qname, zp)]
    model = make_model(nodes, (3, c, 6, 7), inits, outputs=(("q", et), "y"))
    onnx.checker.check_model(model)
    x = rnd(rng, 3, c, 6, 7, scale=float(np.max(scale)) * (qmax - qmin) * 0.4)
    s_b = np.broadcast_to(np.asarray(scale).reshape((1, -1, 1, 1) if per_axis else ()), x.shape)
    ties = (np.arange(x[0, :, 0].size).reshape(x[0, :, 0].shape) % 9 - 4 + 0.5)
    x[0, :, 0] = (ties * s_b[0, :, 0]).astype(np.float32)
    x[1, :, 1] = 1e6                                     # saturate high
    x[1, :, 2] = -1e6                                    # saturate low
    return model, x, scale, zp


def qdq_weight_conv_case(qname: str):
    """QDQ export layout: int weight initializer -> DequantizeLinear(axis 0) -> Conv; also
    returns the integer weights and an input batch."""
    rng = np.random.default_rng(11)
    et, npdt, qmin, qmax = QT[qname]
    cout, cin = 5, 3
    wq = rng.integers(qmin, qmax + 1, (cout, cin, 3, 3))
    wt = helper.make_tensor("wq", et, list(wq.shape), wq.reshape(-1).tolist())
    ws = rng.uniform(0.01, 0.05, cout).astype(np.float32)
    wz = helper.make_tensor("wz", et, [cout], [0 if qmin < 0 else 8] * cout)
    act_t = TensorProto.INT8 if qname.startswith("int") else TensorProto.UINT8
    az = helper.make_tensor("az", et if qname in ("int4", "uint4") else act_t, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "as", "az"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "as", "az"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["xd", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    inits = [wt, init("ws", ws), wz, init("as", np.float32(0.25)), az, init("b", rnd(rng, cout))]
    model = make_model(nodes, (2, cin, 6, 6), inits)
    onnx.checker.check_model(model)
    x = np.abs(rnd(rng, 2, cin, 6, 6)) if qmin == 0 else rnd(rng, 2, cin, 6, 6)
    return model, x, wq


# ------------------------------------------------------------------------------- a small CNN

def small_cnn(rng):
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g1", "be1", "m1", "v1"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "g2", "be2", "m2", "v2"], ["n2"]),
             helper.make_node("Relu", ["n2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = [init("w1", rnd(rng, 8, 1, 3, 3, scale=0.5)), init("b1", rnd(rng, 8)),
             init("w2", rnd(rng, 12, 8, 3, 3, scale=0.2))]
    for i, c in ((1, 8), (2, 12)):
        inits += [init(f"g{i}", 1 + 0.1 * rnd(rng, c)), init(f"be{i}", rnd(rng, c)),
                  init(f"m{i}", rnd(rng, c)), init(f"v{i}", 1 + np.abs(rnd(rng, c)))]
    inits += [init("fw", rnd(rng, 10, 12)), init("fb", rnd(rng, 10))]
    return make_model(nodes, ("N", 1, 12, 12), inits)
