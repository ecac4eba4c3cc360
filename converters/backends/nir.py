"""NIR export and import of converted MLP / conv networks.

**The graph snmfm writes** (`to_nir`, `export(model, "nir", path=...)`) uses only standard NIR nodes --
Input, Linear, Conv2d, Flatten, IF, Output:

    input -> encode -> if0 -> [flatten] -> op0 -> if1 -> ... -> if{L-1} -> [flatten] -> op{L-1} -> output

* Units.  Hidden layers are in *integer units* (see `converters.backends.chain`): Linear / Conv2d
  weights are the QANN's integer weights W_int, and IF thresholds are s_out / (s_in * w_scale) per
  neuron, so every synaptic event adds an exact integer to a membrane.  The input neurons (if0) are in
  units of the input quantizer's step s_0: `encode` multiplies x by 1/s_0, if0 thresholds are 1.
  The last op (op{L-1}) is the readout: weights W_int * s_in * w_scale, i.e. float output units.
* Initial membrane s/2 and the bias (which acts once in snmfm, while NIR biases act every step).
  NIR neurons start at v = 0, so both arrive as a current at step 1 through a *pulse channel*: the
  graph input has one extra feature (MLP) or channel (conv) that the caller sets to 1 at step 1 (with x)
  and to 0 afterwards (`nir_input(x, T)` builds this).  Each IF layer carries one extra relay neuron
  (an extra channel for conv layers) with threshold 0.75, which receives 1 at step 1 and so spikes
  exactly once, at step 1; every op has an extra input column (conv: one kernel tap of the extra input
  channel, in bounds for every output position) whose weights are threshold/2 + bias / (s_in * w_scale)
  -- the initial membrane -- and relays the pulse to the next layer's relay neuron.  All biases in the
  file are zero.  Relay neurons are not snmfm neurons: readers drop them from spike counts.
* Reset and threshold.  snmfm's neurons reset by subtraction and fire at most once per step.  NIR
  1.0.8's IF node has a reset *value* (v_reset, written as 0) and no field for the reset mechanism;
  the mechanism is stated in the graph metadata (``snmfm_neuron``) and readers must use it: with
  reset-to-value the charge above threshold is lost (see `converters.backends.nir_readers`).
  Thresholds are stored one float64 ulp below s_out / (s_in * w_scale), so that NIR's strict
  "v > v_threshold" equals snmfm's "V >= threshold".
* What NIR cannot express: the -1 spikes and the count bounds [qmin, qmax] of snmfm's neurons (there is
  no ternary or bounded IF primitive).  They are kept in node metadata (``snmfm_qmin``, ``snmfm_qmax``,
  with the exact scales, biases and weight scales), which `import_nir` uses to rebuild the exact
  network; a plain IF reader runs one-sided, unbounded neurons, exact for ReLU networks as long as
  snmfm's neurons emit no -1 spike and do not saturate.  A ReLU after the last layer (the readout) is
  not a spiking primitive either: it is recorded in the graph metadata (``snmfm_tail``) and applied to
  the summed output.

**Reading** (`import_nir(path_or_graph) -> SpikingModel`): a graph written by snmfm is rebuilt exactly
(integer weights, scales, biases, ranges from the metadata).  A graph written elsewhere made of
Input, Affine / Linear / Conv2d, Flatten and IF nodes is imported under snmfm's conventions -- input
presented once at step 1 through a unit-scale input quantizer, each IF neuron an unsigned neuron with
the node's threshold, initial membrane threshold/2, biases applied once, weights quantized to `w_bits`
per output channel unless they already are integers -- which is exact for graphs that follow these
conventions and otherwise an approximation, good enough to charge the network on both accelerators.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from converters.backends.chain import Chain, NeuronSite, WeightOp, qann_from_chain, strict_threshold
from converters.snn import ConversionError

FORMAT = "snmfm.nir/1"
RELAY_THRESHOLD = 0.75  # a relay neuron receives 1 at step 1: it fires once (> and >= alike) and never again
SUPPORTED_NODES = "Input, Output, Affine, Linear, Conv2d, Flatten, IF"

DESCRIPTION = ("NIR: Input -> encode (Linear/Conv2d 1x1: x/s_0) -> IF -> [Flatten] -> Linear/Conv2d (integer "
               "weights) -> IF -> ... -> readout Linear/Conv2d (float weights) -> Output. IF thresholds "
               "s_out/(s_in*w_scale) (one ulp below, NIR fires on v > v_thr), r = 1, v_reset = 0; the neurons reset "
               "by subtraction, which NIR's IF cannot state (metadata snmfm_neuron; reset-to-value readers lose "
               "the charge above threshold). Initial membrane threshold/2 and biases arrive at step 1 through "
               "a pulse channel (input gets one extra feature/channel = 1 at step 1; each IF layer one relay "
               "neuron/channel, threshold 0.75). Not expressible in NIR: -1 spikes and count bounds (kept in "
               "metadata for import_nir) and a ReLU on the output (metadata snmfm_tail).")


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - exercised only without the optional package
        raise ImportError("NIR export/import needs the 'nir' package: pip install 'snmfm[nir]'") from e
    return nir


# ---- shapes and the pulse (relay) encoding ----------------------------------------------------------
def _out_hw(hw, op: WeightOp):
    kh, kw = op.w_int.shape[2:]
    return ((hw[0] + 2 * op.padding[0] - kh) // op.stride[0] + 1,
            (hw[1] + 2 * op.padding[1] - kw) // op.stride[1] + 1)


def _neuron_shapes(chain: Chain, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-sample shape of each neuron layer (without the relay)."""
    shapes = [tuple(input_shape)]
    for op in chain.ops[:-1]:
        prev = shapes[-1]
        if op.kind == "linear":
            shapes.append((op.w_int.shape[0],))
        else:
            if len(prev) != 3:
                raise ConversionError(f"conv layer {op.name!r} needs a [C, H, W] input, got shape {prev}")
            shapes.append((op.w_int.shape[0], *_out_hw(prev[1:], op)))
    return shapes


def _relay_tap(op: WeightOp) -> tuple[int, int]:
    """A kernel position that reads an in-bounds input pixel for every output position."""
    tap = []
    for k, p in zip(op.w_int.shape[2:], op.padding):
        if p > k - 1 - p:
            raise ConversionError(f"NIR export: conv {op.name!r} (kernel {k}, padding {p}) has no kernel tap "
                                  "inside the input at every position, so the step-1 pulse cannot carry its "
                                  "bias and initial membrane; use padding <= (kernel - 1) / 2")
        tap.append(p)
    return tuple(tap)


def _with_relay(shape):
    return (shape[0] + 1, *shape[1:])


def _full(shape, per_channel: np.ndarray, relay_value: float) -> np.ndarray:
    """Per-neuron array over `shape` + relay (channel 0 of shape is the channel / feature axis)."""
    out = np.empty(_with_relay(shape), dtype=np.float64)
    out[:-1] = per_channel.reshape(-1, *([1] * (len(shape) - 1))) if per_channel.ndim else per_channel
    out[-1] = relay_value
    return out


def nir_input(x: torch.Tensor, T: int) -> torch.Tensor:
    """Input for a graph written by snmfm: [T, B, ...] with x and the pulse channel (=1) at step 1,
    zeros after.  The pulse is appended as the last feature (flat input) or last channel ([C, H, W])."""
    x = x.to(torch.float64)
    ones = torch.ones(x.shape[0], 1, *x.shape[2:], dtype=x.dtype)
    first = torch.cat([x, ones], 1)
    seq = torch.zeros(T, *first.shape, dtype=x.dtype)
    seq[0] = first
    return seq


# ---- export ------------------------------------------------------------------------------------------
def to_nir(chain: Chain, input_shape: tuple[int, ...] | None = None):
    """The chain as an NIR graph (see module docstring).  input_shape: per-sample shape of x, needed
    for conv networks ([C, H, W]); MLPs default to the first layer's input width."""
    nir = _nir()
    op0 = chain.ops[0]
    if input_shape is None:
        if op0.kind != "linear":
            raise ConversionError("NIR export of a conv network needs input_shape=(C, H, W)")
        input_shape = (op0.w_int.shape[1],)
    input_shape = tuple(int(v) for v in input_shape)
    if op0.kind == "linear" and not op0.flatten_input and input_shape != (op0.w_int.shape[1],):
        raise ConversionError(f"input_shape {input_shape} does not match the first layer's {op0.w_int.shape[1]} inputs")
    shapes = _neuron_shapes(chain, input_shape)
    nodes, edges = {}, []

    def add(name, node, src):
        nodes[name] = node
        edges.append((src, name))
        return name

    s0 = chain.neurons[0]
    nodes["input"] = nir.Input(input_type={"input": np.array(_with_relay(input_shape))})
    c_in = input_shape[0]
    enc = np.zeros((c_in + 1, c_in + 1), dtype=np.float64)
    enc[np.arange(c_in), np.arange(c_in)] = 1.0 / s0.scale
    enc[:c_in, c_in] = 0.5              # initial membrane 1/2 (units of s_0)
    enc[c_in, c_in] = 1.0               # pulse -> relay of if0
    if len(input_shape) == 1:
        enc_node = nir.Linear(weight=enc)
    else:
        enc_node = nir.Conv2d(input_shape=input_shape[1:], weight=enc[:, :, None, None], stride=1, padding=0,
                              dilation=1, groups=1, bias=np.zeros(c_in + 1))
    prev = add("encode", enc_node, "input")
    for l, op in enumerate(chain.ops):
        site, shape = chain.neurons[l], shapes[l]
        theta = np.asarray(strict_threshold(chain.threshold(l)).numpy())
        meta = {"snmfm_site": site.name, "snmfm_scale": site.scale, "snmfm_qmin": site.qmin,
                "snmfm_qmax": site.qmax, "snmfm_signed": site.signed}
        thr = _full(shape, theta, RELAY_THRESHOLD)
        prev = add(f"if{l}", nir.IF(r=np.ones_like(thr), v_threshold=thr, v_reset=np.zeros_like(thr),
                                    metadata=meta), prev)
        in_shape = _with_relay(shape)
        if op.flatten_input and len(in_shape) > 1:
            prev = add(f"flatten{l}", nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0,
                                                  end_dim=-1), prev)
            relay_in, n_real_in = int(np.prod(shape)), int(np.prod(shape))
        else:
            relay_in, n_real_in = shape[0], shape[0]
        last = l == chain.depth - 1
        w_int = op.w_int.numpy()
        c_out = w_int.shape[0]
        if last:  # readout: float output units, bias once via the pulse
            w_real = w_int * chain.k(l).numpy().reshape(-1, *([1] * (w_int.ndim - 1)))
            pulse_col = op.bias.numpy() if op.bias is not None else np.zeros(c_out)
            rows = c_out
        else:
            w_real = w_int
            pulse_col = chain.v0(l + 1).numpy()
            rows = c_out + 1
        opmeta = {"snmfm_layer": op.name, "snmfm_w_scale": op.w_scale.numpy(), "snmfm_readout": last}
        if op.bias is not None:
            opmeta["snmfm_bias"] = op.bias.numpy()
        if op.kind == "linear":
            n_in = (relay_in + 1) if not (op.flatten_input and len(in_shape) > 1) else int(np.prod(in_shape))
            w = np.zeros((rows, n_in), dtype=np.float64)
            w[:c_out, :n_real_in] = w_real
            w[:c_out, relay_in] = pulse_col
            if not last:
                w[c_out, relay_in] = 1.0
            prev = add(f"op{l}", nir.Linear(weight=w, metadata=opmeta), prev)
        else:
            a, b = _relay_tap(op)
            kh, kw = w_int.shape[2:]
            w = np.zeros((rows, w_int.shape[1] + 1, kh, kw), dtype=np.float64)
            w[:c_out, :-1] = w_real
            w[:c_out, -1, a, b] = pulse_col
            if not last:
                w[c_out, -1, a, b] = 1.0
            prev = add(f"op{l}", nir.Conv2d(input_shape=shape[1:], weight=w, stride=op.stride, padding=op.padding,
                                            dilation=1, groups=1, bias=np.zeros(rows), metadata=opmeta), prev)
    out_shape = (chain.ops[-1].w_int.shape[0],) if chain.ops[-1].kind == "linear" else \
        (chain.ops[-1].w_int.shape[0], *_out_hw(shapes[-1][1:], chain.ops[-1]))
    add("output", nir.Output(output_type={"output": np.array(out_shape)}), prev)
    meta = {"snmfm_format": FORMAT, "snmfm_tail": ",".join(chain.tail),
            "snmfm_input": "x with one extra feature/channel = 1, presented at step 1 only; zeros after",
            "snmfm_neuron": "IF, reset by subtraction, one spike per step; snmfm adds -1 spikes and count "
                            "bounds [snmfm_qmin, snmfm_qmax]"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


# ---- import ------------------------------------------------------------------------------------------
def _chain_nodes(graph) -> list[tuple[str, object]]:
    """The graph's nodes from Input to Output, which must form one path."""
    nir = _nir()
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    starts = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(starts) != 1:
        raise ConversionError(f"import_nir needs exactly one Input node, found {len(starts)}")
    order, cur = [], starts[0]
    while True:
        node = graph.nodes[cur]
        if not isinstance(node, (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.IF)):
            raise ConversionError(f"unsupported NIR node {cur!r} of type {type(node).__name__}; "
                                  f"import_nir supports {SUPPORTED_NODES}")
        order.append((cur, node))
        if isinstance(node, nir.Output):
            return order
        nxt = succ.get(cur, [])
        if len(nxt) != 1:
            raise ConversionError(f"NIR node {cur!r} has {len(nxt)} successors: import_nir reads feed-forward "
                                  "chains (one path from Input to Output)")
        cur = nxt[0]
        if len(order) > len(graph.nodes):
            raise ConversionError("the NIR graph has a cycle; import_nir reads feed-forward chains")


def _meta_float(m, k):
    return float(np.asarray(m[k]))


def _chain_from_snmfm_graph(graph) -> Chain:
    nir = _nir()
    nodes = _chain_nodes(graph)
    neurons, ops, pending_flatten, last_if = [], [], False, None
    for name, node in nodes:
        if isinstance(node, nir.IF):
            m = node.metadata
            neurons.append(NeuronSite(name=str(m["snmfm_site"]), scale=_meta_float(m, "snmfm_scale"),
                                      qmin=int(np.asarray(m["snmfm_qmin"])), qmax=int(np.asarray(m["snmfm_qmax"])),
                                      signed=bool(np.asarray(m["snmfm_signed"]))))
            last_if = node
        elif isinstance(node, nir.Flatten):
            pending_flatten = True
        elif isinstance(node, (nir.Linear, nir.Conv2d)) and name != "encode":
            m = node.metadata
            w_scale = torch.as_tensor(np.asarray(m["snmfm_w_scale"], dtype=np.float64))
            bias = torch.as_tensor(np.asarray(m["snmfm_bias"], dtype=np.float64)) if "snmfm_bias" in m else None
            c_out = w_scale.shape[0]
            readout = bool(np.asarray(m["snmfm_readout"]))
            w = np.asarray(node.weight, dtype=np.float64)
            n_shape = tuple(int(v) for v in np.asarray(last_if.v_threshold).shape)  # with relay
            if isinstance(node, nir.Linear):
                n_real = int(np.prod(n_shape)) - int(np.prod(n_shape[1:])) if pending_flatten else n_shape[0] - 1
                w_real = w[:c_out, :n_real]
            else:
                w_real = w[:c_out, :-1]
            if readout:
                k = neurons[-1].scale * w_scale.numpy()
                w_real = np.round(w_real / k.reshape(-1, *([1] * (w_real.ndim - 1))))
            w_int = torch.as_tensor(np.round(w_real))
            if isinstance(node, nir.Linear):
                ops.append(WeightOp(str(m["snmfm_layer"]), "linear", w_int, w_scale, bias,
                                    flatten_input=pending_flatten))
            else:
                ops.append(WeightOp(str(m["snmfm_layer"]), "conv2d", w_int, w_scale, bias,
                                    stride=tuple(int(v) for v in node.stride),
                                    padding=tuple(int(v) for v in node.padding), flatten_input=pending_flatten))
            pending_flatten = False
    tail = tuple(t for t in str(graph.metadata.get("snmfm_tail", "")).split(",") if t)
    return Chain(tuple(neurons), tuple(ops), tail)


def _quantize_rows(w: np.ndarray, w_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    if np.all(np.round(w) == w):
        return torch.as_tensor(w, dtype=torch.float64), torch.ones(w.shape[0], dtype=torch.float64)
    from snmfm.compress import quantize_weight
    return quantize_weight(torch.as_tensor(w, dtype=torch.float64), w_bits)


def _chain_from_foreign_graph(graph, w_bits: int, a_bits: int) -> Chain:
    """A graph written elsewhere, read under snmfm's conventions (see module docstring)."""
    nir = _nir()
    nodes = _chain_nodes(graph)
    qmax = 2 ** a_bits - 1
    neurons = [NeuronSite(name="input.quant", scale=1.0, qmin=-(2 ** (a_bits - 1)), qmax=2 ** (a_bits - 1) - 1,
                          signed=True)]
    ops, pending_flatten, pending = [], False, None  # pending: (name, node) weight op awaiting its IF

    def close(name, node, theta):
        w = np.asarray(node.weight, dtype=np.float64)
        bias = np.asarray(node.bias, dtype=np.float64) if getattr(node, "bias", None) is not None else None
        w_int, w_scale = _quantize_rows(w, w_bits)
        # fold the threshold theta[c] into the channel's scale: the next neuron then has threshold 1
        if theta is not None:
            theta = np.array(np.broadcast_to(np.asarray(theta, dtype=np.float64), (w.shape[0],)))
            w_scale = w_scale / torch.as_tensor(theta)
            bias = None if bias is None else bias / theta
        b = None if bias is None or not np.any(bias) else torch.as_tensor(bias)
        if isinstance(node, nir.Conv2d):
            if int(node.groups) != 1 or tuple(np.atleast_1d(node.dilation)) not in ((1,), (1, 1)):
                raise ConversionError(f"NIR Conv2d {name!r}: only groups=1, dilation=1 are supported")
            if isinstance(node.padding, str):
                raise ConversionError(f"NIR Conv2d {name!r}: string padding {node.padding!r} is not supported")
            ops.append(WeightOp(name, "conv2d", w_int, w_scale, b, stride=tuple(int(v) for v in node.stride),
                                padding=tuple(int(v) for v in node.padding), flatten_input=pending_flatten))
        else:
            ops.append(WeightOp(name, "linear", w_int, w_scale, b, flatten_input=pending_flatten))

    for name, node in nodes[1:]:
        if isinstance(node, nir.Flatten):
            if pending is not None:
                raise ConversionError(f"NIR Flatten {name!r} between a weight layer and its IF is not supported")
            pending_flatten = True
        elif isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            if pending is not None:
                raise ConversionError(f"NIR nodes {pending[0]!r} and {name!r}: two weight layers without IF "
                                      "neurons between them are not supported")
            pending = (name, node)
        elif isinstance(node, nir.IF):
            theta = np.asarray(node.v_threshold, dtype=np.float64)
            per_channel = theta.reshape(theta.shape[0], -1)
            if not np.all(per_channel == per_channel[:, :1]):
                raise ConversionError(f"NIR IF {name!r}: thresholds must be constant within a channel")
            if pending is None:
                raise ConversionError(f"NIR IF {name!r} follows no weight layer; import_nir expects "
                                      "Input -> weight layer -> IF -> ...")
            close(*pending, per_channel[:, 0])
            neurons.append(NeuronSite(name=f"{name}", scale=1.0, qmin=0, qmax=qmax, signed=False))
            pending, pending_flatten = None, False
    if pending is not None:
        close(*pending, None)
        tail = ()
    else:  # the graph ends in IF neurons: read their counts out through an identity layer
        n = neurons[-1]
        shape = np.asarray(graph.nodes[nodes[-2][0]].v_threshold).shape
        if len(shape) != 1:
            raise ConversionError("a NIR graph ending in a multi-dimensional IF layer needs a readout layer")
        ops.append(WeightOp(f"{n.name}.readout", "linear", torch.eye(shape[0], dtype=torch.float64),
                            torch.ones(shape[0], dtype=torch.float64), None))
        tail = ()
    if len(neurons) != len(ops):
        raise ConversionError("could not pair every weight layer with its input neurons")
    return Chain(tuple(neurons), tuple(ops), tail)


def read_chain(graph_or_path, *, w_bits: int = 8, a_bits: int = 8) -> Chain:
    nir = _nir()
    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"import_nir needs an NIRGraph or a path, got {type(graph).__name__}")
    if str(graph.metadata.get("snmfm_format", "")) == FORMAT:
        return _chain_from_snmfm_graph(graph)
    return _chain_from_foreign_graph(graph, w_bits, a_bits)


def import_nir(graph_or_path, *, w_bits: int = 8, a_bits: int = 8):
    """An NIR graph (or .nir file) as an snmfm SpikingModel (see module docstring).  Graphs written by
    snmfm come back exactly; w_bits / a_bits apply to graphs written elsewhere (non-integer weights are
    quantized per output channel; IF neurons get a_bits-bit unsigned count ranges).  The returned
    model's input is x itself (not the pulse-augmented NIR input)."""
    from converters.snn import convert
    chain = read_chain(graph_or_path, w_bits=w_bits, a_bits=a_bits)
    qann = qann_from_chain(chain)
    model = convert(qann)
    model.meta["source"] = "nir"
    return model


__all__ = ["DESCRIPTION", "FORMAT", "import_nir", "nir_input", "read_chain", "to_nir"]
