"""The engine proper: prepare an ONNX graph once, then evaluate it in micro-batches (forward), or
record a tape and turn it into ``dL/dinput`` (backward). Ops come from :mod:`.ops`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto

from ..errors import DataError, ModelError, UnsupportedOpError
from ..onnx_loader import model_proto, node_attributes, tensor_to_array
from .ops import OPS, Node
from .ops.base import Inputs
from .ops.quantization import QTYPES

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)

DEFAULT_MEMORY_BYTES = 128 << 20   # working-set budget for automatic micro-batching (bytes)
SCRATCH_FRACTION = 8               # an op's temporary buffers stay within memory_bytes / this
LAZY_DEQUANTIZE_ELEMENTS = 4096    # integer weights from this size on are dequantized per pass


def unsupported_nodes(nodes: Iterable[onnx.NodeProto]) -> list[tuple[str, str]]:
    """(node name, op type) of every node the engine cannot execute, in graph order; a node
    without a name is called ``<op>_<index>``, a non-default domain is prefixed to the op."""
    bad = []
    for idx, nd in enumerate(nodes):
        default_domain = nd.domain in ("", "ai.onnx")
        if not default_domain or nd.op_type not in OPS:
            bad.append((nd.name or f"{nd.op_type}_{idx}",
                        nd.op_type if default_domain else f"{nd.domain}.{nd.op_type}"))
    return bad


@dataclass
class Tape:
    """What ``backward`` needs from one ``forward``: per executed node, the saved context."""

    entries: list[tuple[Node, Any] | None]
    requires: set[str]
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    nbytes: int = 0


class Engine:
    """A prepared ONNX graph evaluated with numpy.

    ``dtype``: float type of the computation (float32; float64 for gradient checks).
    ``memory_bytes``: working-set budget used to pick the micro-batch size in :meth:`run`; one
    op's temporary buffers (e.g. im2col columns) are tiled to stay within 1/SCRATCH_FRACTION of it.
    ``keep_model``: keep the ``onnx.ModelProto`` as ``.model`` (False halves resident weights).
    """

    def __init__(self, model: Any, dtype=np.float32, memory_bytes: int = DEFAULT_MEMORY_BYTES,
                 keep_model: bool = True):
        model = model_proto(model)
        self.model = model if keep_model else None   # keep_model=False frees the proto's weights
        self.dtype = np.dtype(dtype)
        self._nodes_all: list[Node] = []
        self.memory_bytes = int(memory_bytes)
        g = model.graph
        opset = 21
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                opset = int(imp.version)
        self.opset = opset
        self.elem_types: dict[str, int] = {}
        consts: dict[str, np.ndarray] = {}
        for t in g.initializer:
            a = tensor_to_array(t)
            if t.data_type in FLOAT_TYPES:
                a = a.astype(self.dtype)
            consts[t.name] = a
            self.elem_types[t.name] = t.data_type
        init_names = set(consts)
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        if not self.input_names:
            raise ModelError("the model has no graph input (every input is an initializer)")
        self.input_name = self.input_names[0]
        self.output_names = [o.name for o in g.output]
        self.input_shapes = {}
        for i in g.input:
            if i.name in init_names:
                continue
            self.elem_types[i.name] = i.type.tensor_type.elem_type
            dims = i.type.tensor_type.shape.dim
            self.input_shapes[i.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.input_shape = self.input_shapes[self.input_name]

        # Nodes, checked and topologically ordered.
        unsupported = unsupported_nodes(g.node)
        if unsupported:
            raise UnsupportedOpError(unsupported)
        nodes = [Node(idx, nd.name or f"{nd.op_type}_{idx}", nd.op_type, list(nd.input),
                      list(nd.output), node_attributes(nd), OPS[nd.op_type], opset)
                 for idx, nd in enumerate(g.node)]
        nodes = self._toposort(nodes, set(consts) | set(self.input_names))
        self._nodes_all = nodes
        self.memory_bytes = self.memory_bytes        # hand the scratch bound to the nodes
        for nd in nodes:
            if nd.op == "Constant" and nd.attrs.get("value") is not None:
                self.elem_types[nd.outputs[0]] = nd.attrs["value"].data_type
        for nd in nodes:
            if nd.op == "QuantizeLinear":
                nd.attrs["_qtype"] = self._qtype(nd)

        # Fold nodes whose inputs are all constant (e.g. DequantizeLinear of weights); remember
        # them so per-call overrides of their inputs are re-propagated.
        const_names = set(consts)
        self._folded: list[Node] = []
        self._lazy: set[str] = set()      # outputs of lazily dequantized weights (see below)
        runtime: list[Node] = []
        for nd in nodes:
            if self._dequantize_lazily(nd, consts):
                # A QDQ model's integer weights stay integer: their float values are made when
                # a forward pass needs them and freed after their consumer (4x less resident).
                runtime.append(nd)
                self._lazy.update(o for o in nd.outputs if o)
            elif all((not i) or i in const_names for i in nd.inputs):
                outs, _, _ = _run_node(nd, [consts[i] if i else None for i in nd.inputs], False)
                for o, v in zip(nd.outputs, outs):
                    if o:
                        v = np.asarray(v)
                        if v.dtype.kind == "f" and v.dtype != self.dtype:
                            v = v.astype(self.dtype)
                        consts[o] = v
                        const_names.add(o)
                self._folded.append(nd)
            else:
                runtime.append(nd)
        self._consts = consts
        self._nodes = runtime
        self._producer = {o: nd for nd in runtime for o in nd.outputs if o}
        self._plans: dict[tuple, list[Node]] = {}
        self._per_image: dict[tuple, int] = {}

    def _dequantize_lazily(self, nd: Node, consts: Mapping[str, np.ndarray]) -> bool:
        """Whether ``nd`` is a DequantizeLinear of a large integer initializer (the weights of a
        QDQ model), evaluated per forward pass instead of folded into a float constant. Only in
        float32 engines, whose folded value would be the same float32 array."""
        if nd.op != "DequantizeLinear" or self.dtype != np.float32 or not nd.inputs:
            return False
        if not all((not i) or i in consts for i in nd.inputs):
            return False
        w = consts[nd.inputs[0]]
        return w.dtype.kind in "iu" and w.size >= LAZY_DEQUANTIZE_ELEMENTS

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    @memory_bytes.setter
    def memory_bytes(self, value: int) -> None:
        self._memory_bytes = int(value)
        for nd in self._nodes_all:
            nd.attrs["_scratch_bytes"] = self._memory_bytes // SCRATCH_FRACTION

    # ---------------------------------------------------------------------------------- graph
    @staticmethod
    def _toposort(nodes: list[Node], available: set[str]) -> list[Node]:
        avail = set(available) | {""}
        pending = list(nodes)
        out: list[Node] = []
        while pending:
            rest = []
            for nd in pending:
                if all(i in avail for i in nd.inputs):
                    out.append(nd)
                    avail.update(nd.outputs)
                else:
                    rest.append(nd)
            if len(rest) == len(pending):
                missing = sorted({i for nd in rest for i in nd.inputs if i not in avail})
                raise ModelError(f"the graph is not computable: tensor(s) {missing[:5]} have no producer")
            pending = rest
        return out

    def _qtype(self, nd: Node) -> int:
        if "output_dtype" in nd.attrs and int(nd.attrs["output_dtype"]):
            t = int(nd.attrs["output_dtype"])
        elif len(nd.inputs) > 2 and nd.inputs[2]:
            t = self.elem_types.get(nd.inputs[2], TensorProto.UINT8)
        else:
            t = TensorProto.UINT8
        if t not in QTYPES:
            raise UnsupportedOpError([(nd.name, f"QuantizeLinear to {TensorProto.DataType.Name(t)}")])
        return t

    def _plan(self, wanted: tuple[str, ...]) -> list[Node]:
        """Nodes needed to compute ``wanted``, in execution order."""
        plan = self._plans.get(wanted)
        if plan is not None:
            return plan
        need = set(wanted)
        keep: list[Node] = []
        for nd in reversed(self._nodes):
            if any(o in need for o in nd.outputs):
                keep.append(nd)
                need.update(i for i in nd.inputs if i)
        plan = keep[::-1]
        self._plans[wanted] = plan
        return plan

    def graph_nodes(self) -> list[Node]:
        """The nodes evaluated at run time, in execution order (nodes whose inputs are all
        constant were folded into constants when the engine was built)."""
        return list(self._nodes)

    def nodes_of_type(self, op: str) -> list[Node]:
        """The run-time nodes of one ONNX op type, in execution order."""
        return [nd for nd in self._nodes if nd.op == op]

    def tensor_names(self) -> list[str]:
        """Every tensor the graph computes at run time (node outputs), in execution order."""
        return [o for nd in self._nodes for o in nd.outputs if o]

    def constant(self, name: str) -> np.ndarray:
        """The value of an initializer or folded constant (float ones in the engine's dtype)."""
        if name in self._lazy:
            nd = self._producer[name]
            return self.evaluate(nd, {})[name]
        try:
            return self._consts[name]
        except KeyError:
            raise ModelError(f"{name!r} is not an initializer or constant of the model") from None

    def release_constants(self, names: Iterable[str]) -> None:
        """Forget the constants ``names`` (e.g. float weights of layers a caller runs elsewhere);
        the nodes reading them must not be evaluated afterwards."""
        for name in names:
            self._consts.pop(name, None)

    def evaluate(self, node: Node, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one node (from :meth:`graph_nodes`) on its inputs, looked up in ``values`` and then
        in the model's constants; returns its outputs by name. No tape, no micro-batching: for
        callers that walk the graph themselves (the integer deployment)."""
        ins = [None if not i else (values[i] if i in values else self._consts[i]) for i in node.inputs]
        outs, _, _ = _run_node(node, ins, False)
        return {o: v for o, v in zip(node.outputs, outs) if o}

    # -------------------------------------------------------------------------------- forward
    def _consts_with(self, overrides: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        if not overrides:
            return self._consts
        env = dict(self._consts)
        for k, v in overrides.items():
            if k not in env and k not in self._lazy:
                raise ModelError(f"override {k!r} is not an initializer (or constant) of the model")
            v = np.asarray(v)
            if v.dtype.kind == "f":
                v = v.astype(self.dtype, copy=False)
            env[k] = v
        changed = set(overrides)
        for nd in self._folded:
            if any(i in changed for i in nd.inputs) and not all(o in overrides for o in nd.outputs):
                outs, _, _ = _run_node(nd, [env[i] if i else None for i in nd.inputs], False)
                for o, v in zip(nd.outputs, outs):
                    if o:
                        env[o] = np.asarray(v).astype(self.dtype) if np.asarray(v).dtype.kind == "f" else v
                        changed.add(o)
        return env

    def _feeds(self, x) -> dict[str, np.ndarray]:
        if isinstance(x, Mapping):
            feeds = dict(x)
        else:
            feeds = {self.input_name: x}
        for name in self.input_names:
            if name not in feeds:
                raise DataError(f"no value given for model input {name!r}")
        out = {}
        for k, v in feeds.items():
            v = np.asarray(v)
            if v.dtype.kind not in "biuf":      # e.g. ml_dtypes float8 / bfloat16 arrays
                v = v.astype(np.float32)
            if v.dtype.kind == "f" or self.elem_types.get(k) in FLOAT_TYPES:
                v = v.astype(self.dtype, copy=False)
            out[k] = v
        return out

    def forward(self, x, outputs: Iterable[str] | None = None, *,
                overrides: Mapping[str, np.ndarray] | None = None, record: bool = True,
                keep: Iterable[str] | None = None):
        """Evaluate the graph on one batch.

        Returns ``(values, tape)``: ``values`` maps each name in ``outputs`` (default: the graph
        outputs) plus ``keep`` to its array; ``tape`` (None unless ``record``) feeds
        :meth:`backward`. Only the nodes needed for the requested tensors run.
        """
        wanted = list(outputs) if outputs is not None else list(self.output_names)
        if keep:
            wanted += [k for k in keep if k not in wanted]
        return self._forward(self._feeds(x), wanted, self._consts_with(overrides), record)

    def _forward(self, feeds, wanted, env, record, consume=None):
        """One batch through the plan for ``wanted``. ``consume(name, array)``: each wanted
        tensor is handed over as soon as it is computed and then freed like any intermediate
        (after its last reader), instead of being held until the end and returned."""
        values: dict[str, np.ndarray] = {}
        for w in wanted:
            if w not in self._producer and w not in env and w not in feeds:
                raise ModelError(f"tensor {w!r} does not exist in the model")
        plan = self._plan(tuple(wanted))
        const_ids = {id(v) for v in env.values()}
        # reference counts so intermediates are freed as soon as possible
        refs: dict[str, int] = {}
        for nd in plan:
            for i in nd.inputs:
                if i:
                    refs[i] = refs.get(i, 0) + 1
        wanted_set = set() if consume is not None else set(wanted)
        streamed = set(wanted) if consume is not None else set()
        live: dict[str, np.ndarray] = dict(feeds)
        requires = set(feeds) if record else set()
        entries: list = []
        tape_bytes = 0
        peak = live_bytes = sum(v.nbytes for v in feeds.values())
        pinned: set[int] = set(const_ids)     # arrays an op must not overwrite (see _donations)
        for nd in plan:
            if nd.outputs[0] in self._lazy and nd.outputs[0] in env:
                continue                             # the caller overrode the dequantized weight
            ins = Inputs()
            for i in nd.inputs:
                if not i:
                    ins.append(None)
                elif i in live:
                    ins.append(live[i])
                else:
                    ins.append(env[i])
            ins.donated = _donations(nd, live, refs, wanted_set, feeds, pinned)
            grad_node = record and nd.spec.differentiable and any(i in requires for i in nd.inputs)
            outs, saved, scratch = _run_node(nd, ins, grad_node)
            if len(outs) < len(nd.outputs) and any(nd.outputs[len(outs):]):
                missing = next(o for o in nd.outputs[len(outs):] if o)
                raise ModelError(f"node {nd.name!r} ({nd.op}) does not compute its optional output "
                                 f"{missing!r}; ohq-pynq runs it in inference form only")
            # donated inputs the op returned as an output (overwritten in place)
            reused = {id(ins[k]) for k in ins.donated} & {id(v) for v in outs}
            lazy = nd.outputs[0] in self._lazy
            for o, v in zip(nd.outputs, outs):
                if o:
                    live[o] = v
                    if lazy:                         # a weight: counted as a constant, i.e. not
                        const_ids.add(id(v))
                        pinned.add(id(v))
                    elif id(v) not in reused:        # an overwritten input is counted already
                        live_bytes += getattr(v, "nbytes", 0)
                    _pin_aliases(v, ins, pinned)
            del ins
            for o in nd.outputs:
                if o in streamed:                    # the consumer may keep it: never overwritten
                    pinned.add(id(live[o]))
                    if isinstance(live[o], np.ndarray):
                        pinned.add(id(_root(live[o])))
                    consume(o, live[o])
            if grad_node:
                entries.append((nd, saved))
                held = _arrays(saved)
                tape_bytes += sum(a.nbytes for a in held if id(a) not in const_ids)
                for a in held:                       # the tape needs them: never overwrite
                    pinned.add(id(a))
                    pinned.add(id(_root(a)))
                for o, v in zip(nd.outputs, outs):
                    if o and (np.asarray(v).dtype.kind == "f" or nd.op == "QuantizeLinear"):
                        requires.add(o)
            peak = max(peak, live_bytes + tape_bytes + scratch)
            for i in nd.inputs:
                if i and i in refs:
                    refs[i] -= 1
                    if refs[i] == 0 and i in live and i not in wanted_set and i not in feeds:
                        if id(live[i]) not in reused and i not in self._lazy:   # else it lives on as an output
                            live_bytes -= getattr(live[i], "nbytes", 0)
                        del live[i]
            for o in nd.outputs:
                if o and o not in refs and o not in wanted_set and o in live:
                    if o not in self._lazy:
                        live_bytes -= getattr(live[o], "nbytes", 0)
                    del live[o]
        for w in wanted:
            if consume is not None:
                if w not in self._producer:           # a feed or constant: nothing computes it
                    consume(w, feeds[w] if w in feeds else env[w])
                continue
            values[w] = live[w] if w in live else (feeds[w] if w in feeds else env[w])
        self.last_peak_bytes = peak
        tape = None
        if record:
            tape = Tape(entries, requires, self.input_name, feeds[self.input_name].shape,
                        feeds[self.input_name].dtype, tape_bytes)
        return values, tape

    def backward(self, tape: Tape, grads: Mapping[str, np.ndarray], wrt: str | None = None) -> np.ndarray:
        """Reverse-mode gradient: given ``dL/dt`` for some tensors ``t`` computed by the
        ``forward`` that produced ``tape``, return ``dL/d(input)`` (or ``wrt``). Frees the tape."""
        wrt = wrt or tape.input_name
        acc: dict[str, np.ndarray] = {}
        for k, g in grads.items():
            if g is None:
                continue
            acc[k] = np.asarray(g, dtype=tape.input_dtype if tape.input_dtype.kind == "f" else self.dtype)
        for pos in range(len(tape.entries) - 1, -1, -1):
            entry = tape.entries[pos]
            tape.entries[pos] = None          # free what this node saved
            if entry is None:
                continue
            nd, saved = entry
            douts = [acc.pop(o, None) if o else None for o in nd.outputs]
            if douts[0] is None and not (nd.spec.multi_output_grad and any(d is not None for d in douts)):
                continue
            need = [bool(i) and i in tape.requires for i in nd.inputs]
            dins = nd.spec.backward(nd, saved, douts, need)
            del saved, entry
            for i, d, nd_i in zip(nd.inputs, dins, need):
                if d is None or not nd_i:
                    continue
                if i in acc:
                    acc[i] = acc[i] + d
                else:
                    acc[i] = d
        tape.entries.clear()
        g = acc.get(wrt)
        if g is None:
            return np.zeros(tape.input_shape, dtype=tape.input_dtype)
        return np.ascontiguousarray(g).reshape(tape.input_shape)

    # ---------------------------------------------------------------------------- batched run
    def bytes_per_image(self, x, outputs: Iterable[str] | None = None, record: bool = False) -> int:
        """Peak working-set bytes of one image through the graph (measured once per shape).

        ``x``: the input's shape (single-input graphs) or the feeds of a batch, whose batched
        inputs are cut to one image for the probe."""
        if isinstance(x, Mapping):
            feeds = self._feeds(x)
            batched = self._batched_inputs(feeds)[0]
            probe = {k: (v[:1] if k in batched else v) for k, v in feeds.items()}
        else:
            probe = {self.input_name: np.zeros((1,) + tuple(x[1:]), dtype=self.dtype)}
        key = (tuple((k, v.shape[1:] if v.ndim else ()) for k, v in sorted(probe.items())),
               tuple(outputs or ()), record)
        if key not in self._per_image:
            self.forward(probe, outputs, record=record)
            self._per_image[key] = max(int(self.last_peak_bytes), 1)
        return self._per_image[key]

    def auto_batch(self, x, outputs=None, record=False, memory_bytes=None) -> int:
        """Largest micro-batch whose estimated working set fits ``memory_bytes`` (at least 1)."""
        budget = self.memory_bytes if memory_bytes is None else int(memory_bytes)
        return max(1, budget // self.bytes_per_image(x, outputs, record))

    def _batched_inputs(self, feeds) -> tuple[set[str], int, int | None]:
        """(inputs cut into micro-batches, images in the batch, required micro-batch or None).

        An input is batched when the graph declares its first dimension symbolic, or fixed to
        B while the feed holds a multiple of B images (run in chunks of B). All batched inputs
        must hold the same number of images."""
        batched, sizes, fixed = set(), set(), None
        for k, v in feeds.items():
            declared = self.input_shapes.get(k)
            if not declared or not v.ndim:
                continue
            d0 = declared[0]
            if d0 is None or (d0 > 0 and v.shape[0] != d0 and v.shape[0] % d0 == 0):
                batched.add(k)
                sizes.add(v.shape[0])
                if d0 is not None:
                    fixed = d0 if fixed is None else min(fixed, d0)
        if len(sizes) > 1:
            raise DataError(f"the model inputs hold different numbers of images: "
                            f"{', '.join(f'{k}: {feeds[k].shape[0]}' for k in sorted(batched))}")
        return batched, (sizes.pop() if sizes else 1), fixed

    def run(self, x, outputs: Iterable[str] | None = None, batch_size: int | None = None, *,
            overrides: Mapping[str, np.ndarray] | None = None,
            consume=None) -> dict[str, np.ndarray]:
        """Evaluate in micro-batches of ``batch_size`` images (default: fit ``memory_bytes``);
        returns name -> array concatenated along the batch axis. A graph whose batch is fixed to
        B runs a multiple of B images in chunks of B.

        ``consume(name, array)``: stream instead — every requested tensor of every micro-batch is
        handed over as soon as it is computed and freed after its last reader; nothing is
        concatenated and ``{}`` is returned (the micro-batches are the same, so are the values)."""
        feeds = self._feeds(x)
        outputs = list(outputs) if outputs is not None else list(self.output_names)
        batched, n, fixed = self._batched_inputs(feeds)
        if fixed is not None:
            batch_size = fixed
        elif batch_size is None:
            try:
                batch_size = self.auto_batch(feeds, outputs) if n > 1 and batched else n
            except (ValueError, IndexError, ModelError):   # graph hard-codes its batch size: run it whole
                batch_size = n
        batch_size = max(1, int(batch_size))
        env = self._consts_with(overrides)
        if n <= batch_size or not batched:
            return self._forward(feeds, outputs, env, False, consume)[0]
        parts: dict[str, list] = {o: [] for o in outputs}
        for s in range(0, n, batch_size):
            chunk = {k: (v[s:s + batch_size] if k in batched else v) for k, v in feeds.items()}
            vals, _ = self._forward(chunk, outputs, env, False, consume)
            if consume is not None:
                continue
            for o in outputs:
                parts[o].append(vals[o])
            del vals
        if consume is not None:
            return {}
        return {o: (np.concatenate(p, axis=0) if np.ndim(p[0]) else p[0]) for o, p in parts.items()}


_NODE_ERRORS = (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError)


def _run_node(nd, ins, grad):
    """``nd.spec.forward`` with numpy shape/value errors turned into one ModelError naming the node."""
    try:
        return nd.spec.forward(nd, ins, grad)
    except _NODE_ERRORS as err:
        shapes = ", ".join("-" if v is None else str(tuple(np.shape(v))) for v in ins)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"node {nd.name!r} ({nd.op}) cannot run on inputs of shape {shapes}: "
                         f"{first}") from err


# ------------------------------------------------------------------------ in-place donation
# An input array whose last use is this node, that is no graph output, no feed, no constant, owns
# its memory, and that no view, no other tensor name and no tape entry refers to, is "donated":
# the op may overwrite it (in-place elementwise ops: less memory, fewer cache misses).

def _donations(nd, live, refs, wanted, feeds, pinned) -> frozenset:
    """Positions of ``nd``'s inputs the op may overwrite."""
    out = []
    for k, i in enumerate(nd.inputs):
        if not i or refs.get(i) != 1 or i in wanted or i in feeds:
            continue
        a = live.get(i)
        if (isinstance(a, np.ndarray) and a.base is None and a.flags.writeable
                and id(a) not in pinned):
            out.append(k)
    return frozenset(out)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _pin_aliases(v, ins, pinned: set) -> None:
    """An output that is a view, or one of the (not donated) inputs itself, shares memory with
    another tensor: neither may be overwritten from now on."""
    if not isinstance(v, np.ndarray):
        return
    if v.base is not None:
        pinned.add(id(_root(v)))
    else:
        for k, a in enumerate(ins):
            if a is v and k not in ins.donated:
                pinned.add(id(v))


def _arrays(obj) -> list:
    """The arrays in a (nested tuple / list) tape entry."""
    out, stack = [], [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, (tuple, list)):
            stack.extend(e for e in o if not isinstance(e, (int, float, str)))
    return out
