"""The few operations every snmfm model is built from, each one a *site* the QANN and SNN can see.

A reference model is ordinary float32 PyTorch.  Every activation that may become spikes enters a
`Quantizer`, and the quantizer sits *inside* the module that consumes it (`QuantLinear`,
`QuantConv2d`, `QuantMatMul`, `QuantFeatureEmbed`), so pairing a scale with the integer weights that
read it is structural, not bookkeeping.

Modes of a `Quantizer` (set by `snmfm.compress`):

* ``off``   -- identity; the float model.
* ``calib`` -- identity that records the values it sees (for scale search on real inputs).
* ``fake``  -- float fake quantisation with a learned step size (LSQ, Esser et al., ICLR 2020),
  used for quantisation-aware fine-tuning.
* ``int``   -- the QANN: ``codes(x) = clamp(floor(x / s + 1/2), qmin, qmax)``, integers.

In ``int`` mode the consumer multiplies integer codes by integer weights in float64.  Products and
sums of integers below 2**53 are exact in float64 whatever order BLAS adds them in, so the
accumulator is the same integer in the QANN (one pass) and in the SNN (sum over time steps); the
scale is applied once, after the integer accumulation.  That is what makes SNN == QANN exact
(see ../DESIGN: "Exact means integer").  Rounding is half-up (floor(x/s + 1/2)) because that is
what a signed IF neuron with initial membrane s/2 and threshold s computes.

Non-spiking units (`LayerNorm`, `Softmax`, `GELU`, `Tanh`) are thin modules so the hardware
models can find and charge them as digital units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snmfm import _kernels, rowskip

QUANT_MODES = ("off", "calib", "fake", "int")


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a `bits`-bit quantizer: signed [-2^(b-1), 2^(b-1)-1], unsigned [0, 2^b-1]."""
    if bits < 1:
        raise ValueError(f"bit width must be >= 1, got {bits}")
    if signed:
        if bits < 2:
            raise ValueError("a signed quantizer needs at least 2 bits")
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


_F32_EXACT = 2**24  # every integer of magnitude <= 2^24 is exact in float32
_TF32_EXACT = 2**11  # TF32 keeps 10 mantissa bits (+ the implicit one): integers up to 2^11


def _tf32_int_matmul(a: torch.Tensor, b: torch.Tensor, bound: float) -> torch.Tensor:
    """a @ b on a GPU's TF32 tensor cores, exactly, as float64: every operand is an integer of
    magnitude <= 2^11 (exact in TF32), products and sums are accumulated in float32 (exact below
    2^24), so K is cut into slices whose partial sums stay below 2^24 and the slices are added in
    float64.  Why: at 8-bit codes the float64 (or untensored float32) GEMMs were most of an SNN
    step on an H200; tensor cores run them about 7x faster (eval/benchmarks/bench_gpu.py), and
    tests/test_gpu.py checks the result against float64 bit for bit."""
    K = a.shape[-1]
    per = max(1.0, bound / max(1, K))  # largest |product|
    k_slice = max(1, int((_F32_EXACT - 1) // per))
    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    flags = torch.backends.cuda.matmul
    prev = flags.allow_tf32
    flags.allow_tf32 = True
    try:
        if k_slice >= K:
            return (a32 @ b32).to(torch.float64)
        acc = None
        for k0 in range(0, K, k_slice):
            part = (a32[..., k0:k0 + k_slice] @ b32[..., k0:k0 + k_slice, :]).to(torch.float64)
            acc = part if acc is None else acc.add_(part)
        return acc
    finally:
        flags.allow_tf32 = prev


def int_matmul(a: torch.Tensor, b: torch.Tensor, bound: float,
               scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               operand_max: float | None = None) -> torch.Tensor:
    """a @ b for integer-valued float tensors (float32 or float64), exactly; times `scale`, plus
    `bias` (along the last axis), if given.  `bound` >= max |a| * max |b| * K bounds every partial
    sum; when it is below 2^24 the float32 GEMM is exact too (and about twice as fast), otherwise
    float64 (exact below 2^53).  The result is float64 (float32 -> float64 is exact), computed as
    float64(acc) * scale, rounded, + bias, rounded: on the CPU in one fused pass
    (snmfm._kernels.dequant), elsewhere by torch in place; the two give the same bits.  The QANN
    and the SNN both call this, with the same bound.  `operand_max` >= max(max |a|, max |b|): on a
    GPU, operands up to 2^11 run on TF32 tensor cores, exactly (`_tf32_int_matmul`)."""
    if bound >= 2**53:
        raise OverflowError(f"integer accumulation bound {bound:.3g} exceeds float64's exact range")
    # A CUDA float32 GEMM may run on TF32 tensor cores (10-bit mantissa inputs) when the user
    # allowed it; codes and weights up to 2^11 survive that, but not in general: then float64.
    tf32 = a.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    if a.device.type == "cuda" and operand_max is not None and operand_max <= _TF32_EXACT \
            and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)):
        acc = _tf32_int_matmul(a, b, bound)
    elif bound < _F32_EXACT and not tf32:
        acc = a.to(torch.float32) @ b.to(torch.float32)
        fused = _fused_epilogue(acc, scale, bias)
        if fused is not None:
            return fused
        acc = acc.to(torch.float64)
    else:
        acc = a.to(torch.float64) @ b.to(torch.float64)
    if scale is not None:
        acc.mul_(scale)
    if bias is not None:
        acc.add_(bias.detach().to(torch.float64))
    return acc


def _fused_epilogue(acc: torch.Tensor, scale, bias) -> torch.Tensor | None:
    """float64(acc) * scale + bias in one numba pass, for a float32 CPU accumulator whose scale is
    a scalar or a vector along the last axis; None where that does not apply (torch does it)."""
    if not _kernels.available() or acc.device.type != "cpu" or acc.dim() < 1 or acc.numel() == 0:
        return None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (acc, scale, bias)):
        return None  # autograd needs torch's ops
    N = acc.shape[-1]
    arrs = _scale_bias_arrays(scale, bias, N)
    if arrs is None:
        return None
    acc = acc.contiguous()
    out = torch.empty(acc.shape, dtype=torch.float64)
    _kernels.dequant(acc.view(-1, N).numpy(), *arrs, out.view(-1, N).numpy())
    return out


def _scale_bias_arrays(scale, bias, N: int):
    """(scale, bias) as float64 numpy arrays for the dequant kernels (scale [1] or [N], bias [0]
    or [N]), or None where the kernels' layout does not apply."""
    if scale is None:
        s = _ONE
    elif scale.dim() == 0 or (scale.dim() == 1 and scale.shape[0] in (1, N)):
        s = scale.detach().to(torch.float64).reshape(-1)
    else:
        return None
    if bias is None:
        bb = _NO_BIAS
    elif bias.dim() == 1 and bias.shape[0] == N:
        bb = bias.detach().to(torch.float64)
    else:
        return None
    return s.contiguous().numpy(), bb.contiguous().numpy()


def _epilogue_arrays(scale, bias, N: int):
    """(scale, bias) as the float64 numpy arrays `_fused_epilogue` hands to the dequant kernel, or
    None where that epilogue does not apply."""
    if not _kernels.available() or torch.backends.cuda.matmul.allow_tf32:
        return None
    return _scale_bias_arrays(scale, bias, N)


_ONE = torch.ones(1, dtype=torch.float64)
_NO_BIAS = torch.zeros(0, dtype=torch.float64)


def _absmax_code(q) -> int:
    return max(abs(q.qmin), abs(q.qmax))


class _LSQRound(torch.autograd.Function):
    """round with a straight-through gradient (LSQ)."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x + 0.5)

    @staticmethod
    def backward(ctx, g):
        return g


@dataclass(frozen=True)
class QuantSpec:
    """What a quantizer site *is*, as data: the integer window [qmin, qmax] of `bits`-bit codes
    (signed or not) and the step `scale`.  The QANN computes codes(x) = clamp(floor(x/scale + 1/2),
    qmin, qmax); a spiking coding (converters.codings) receives this spec per site."""

    bits: int
    signed: bool
    qmin: int
    qmax: int
    scale: float

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin + 1

    def to_dict(self) -> dict:
        return {"bits": self.bits, "signed": self.signed, "qmin": self.qmin, "qmax": self.qmax,
                "scale": self.scale}


class Quantizer(nn.Module):
    """Activation quantizer  q(x) = s * clamp(floor(x/s + 1/2), qmin, qmax).

    `signed` says whether the site can be negative (transformer activations are; softmax
    probabilities and ReLU outputs are not).  The scale `s` is a float64 buffer; `qmin`/`qmax`
    are Python ints, so they survive `deepcopy` and are saved in the model's JSON config.
    """

    def __init__(self, signed: bool = True):
        super().__init__()
        self.signed = signed
        self.mode = "off"
        self.bits: int | None = None
        self.qmin = 0
        self.qmax = 0
        self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float64))
        self.samples: list[torch.Tensor] = []  # calibration reservoir (calib mode only)
        self.max_samples = 1 << 18
        self._seen = 0  # values the reservoir stands for
        self.log_scale: nn.Parameter | None = None  # fake mode (LSQ) only

    def extra_repr(self) -> str:
        return f"signed={self.signed}, mode={self.mode}, bits={self.bits}"

    def set_bits(self, bits: int) -> None:
        self.bits = int(bits)
        self.qmin, self.qmax = qrange(self.bits, self.signed)

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin + 1

    def spec(self) -> QuantSpec:
        """This site's quantization as a frozen QuantSpec (int mode: bits are set)."""
        if self.bits is None:
            raise RuntimeError("Quantizer.spec needs bits; quantize the model first (snmfm.compress.quantize)")
        return QuantSpec(bits=int(self.bits), signed=bool(self.signed), qmin=int(self.qmin),
                         qmax=int(self.qmax), scale=float(self.scale))

    # -- the QANN -----------------------------------------------------------------------------
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes (float64 tensor holding integers) of `x`; QANN mode only.  (An SNN's
        IF neuron, standing in for a quantizer, may hand float32 integers to the consumers.)"""
        if self.mode != "int":
            raise RuntimeError(f"Quantizer.codes needs mode 'int', this one is '{self.mode}'")
        x = x.to(torch.float64)
        return torch.clamp(torch.floor(x / self.scale + 0.5), self.qmin, self.qmax)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "off":
            return x
        if self.mode == "calib":
            self._observe(x)
            return x
        if self.mode == "fake":
            s = torch.exp(self.log_scale).to(x.dtype)
            # LSQ gradient scale g = 1/sqrt(numel * qmax) (Esser et al. 2020, sec. 2.2)
            g = 1.0 / math.sqrt(max(1, x.numel()) * max(1, self.qmax))
            s = s * g + (s - s * g).detach()
            return _LSQRound.apply(torch.clamp(x / s, self.qmin, self.qmax)) * s
        return self.codes(x) * self.scale

    def _observe(self, x: torch.Tensor) -> None:
        """Record `x` for calibration.  `samples` becomes [reservoir, tensor([min, max])]: a uniform
        random sample of at most `max_samples` of all values seen so far (each call enters in
        proportion to its size), and the exact extremes.  The extremes matter: massive activations
        sit in a few tokens x channels, which a subsample misses (all-MiniLM-L6-v2's GELU outputs
        reach 24.7 where a 16k-value subsample saw 5.5, and clipping there cost ~0.01 cosine)."""
        flat = x.detach().reshape(-1).to(torch.float32)
        if not torch.isfinite(flat).all():
            raise ValueError("calibration saw NaN or Inf activations; check the calibration inputs")
        if flat.numel() == 0:
            return
        seen = getattr(self, "_seen", 0) if self.samples else 0  # [] = a fresh reservoir
        n, cap = flat.numel(), self.max_samples
        self._seen = seen + n
        extremes = torch.stack([flat.min(), flat.max()]).cpu()
        old = self.samples[0] if self.samples else extremes[:0]
        if len(self.samples) > 1:
            prev = self.samples[1]
            extremes = torch.stack([torch.minimum(prev[0], extremes[0]), torch.maximum(prev[-1], extremes[1])])
        if seen + n > cap:
            k_new = round(cap * n / (seen + n))
            k_old = min(old.numel(), cap - k_new)
            flat = flat[torch.randint(0, n, (k_new,), generator=_calib_gen(n))]
            if k_old < old.numel():
                old = old[torch.randperm(old.numel(), generator=_calib_gen(seen))[:k_old]]
        self.samples = [torch.cat([old, flat.cpu()]), extremes]


def _calib_gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(1234 + seed % 100003)
    return g


class _IntWeight(nn.Module):
    """Shared machinery of layers whose weights become integers in the QANN."""

    w_bits: int | None

    def _init_int(self) -> None:
        self.w_bits = None
        self.register_buffer("w_int", None)
        self.register_buffer("w_scale", None)  # per output channel

    @property
    def is_int(self) -> bool:
        return self.w_int is not None

    def set_int_weight(self, w_int: torch.Tensor, w_scale: torch.Tensor, bits: int) -> None:
        self.w_bits = int(bits)
        self.w_int = w_int.to(torch.float64)
        self.w_scale = w_scale.to(torch.float64)

    def acc_bound(self) -> float:
        """Bound on |accumulator| partial sums: max|code| * max|w_int| * fan-in."""
        return self._bounds()[0]

    def operand_max(self) -> float:
        """max(max|code|, max|w_int|): what int_matmul needs to pick an exact GEMM."""
        return self._bounds()[1]

    def _bounds(self) -> tuple[float, float]:
        # max|w_int| is read once per weight tensor and version (an in-place change, e.g. an
        # injected fault, bumps the version): reading it every forward synchronised the GPU with
        # the host once per layer and chunk.
        code = float(_absmax_code(self.quant))
        key = (self.w_int.data_ptr(), self.w_int._version, tuple(self.w_int.shape), code)
        d = self.__dict__
        if d.get("_bounds_key") != key:
            fan_in = self.w_int[0].numel() if self.w_int.dim() > 1 else 1
            wmax = float(self.w_int.abs().max())
            d["_bounds_val"] = (code * wmax * fan_in, max(code, wmax))
            d["_bounds_key"] = key
        return d["_bounds_val"]

    def weight_scale_view(self, ndim: int) -> torch.Tensor:
        return self.w_scale


class QuantLinear(_IntWeight):
    """y = W q(x) + b, the quantizer on the input.  QANN: acc = W_int @ codes (exact integers),
    y = acc * (s_x * s_w[c]) + b[c].

    Per-input-channel activation scales (`in_div`, None unless `snmfm.compress.smooth` set it):
    the quantizer reads x / m (m > 0 per input channel, float64) and the weight columns were
    multiplied by m before weight quantisation, so W x = (W diag(m)) (x / m) and the integer
    accumulation W'_int @ codes(x / m) stays exact.  In the SNN it is the same division in the same
    forward (the IF neuron of channel c has the threshold s * m_c), so SNN == QANN still holds."""

    def __init__(self, d_in: int, d_out: int, bias: bool = True, signed: bool = True):
        super().__init__()
        self.quant = Quantizer(signed=signed)
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self._init_int()
        self.register_buffer("in_div", None)

    def set_in_div(self, m: torch.Tensor | None) -> None:
        """Per-input-channel divisor of the quantizer's input (see the class docstring)."""
        if m is not None:
            m = m.detach().to(torch.float64).reshape(-1)
            if m.numel() != self.in_features or not bool((m > 0).all()) or not torch.isfinite(m).all():
                raise ValueError(f"in_div must be {self.in_features} positive finite values")
        self.in_div = m

    def _prescale(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_div is None:
            return x
        if self.quant.mode == "int":
            return x.to(torch.float64) / self.in_div
        return x / self.in_div.to(x.dtype)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prescale(x)
        if self.quant.mode != "int":
            x = self.quant(x)
            if self.is_int and self.quant.mode == "fake":
                w = self.w_int.to(x.dtype) * self.w_scale.to(x.dtype)[:, None]
                return F.linear(x, w, self.linear.bias)
            return self.linear(x)
        if not self.is_int:
            raise RuntimeError("QuantLinear in int mode has no integer weights; call snmfm.compress.quantize")
        codes = self.quant.codes(x)
        w, bound, scale, omax = self.w_int.t(), self.acc_bound(), self.quant.scale * self.w_scale, self.operand_max()

        def gemm(c):
            return int_matmul(c, w, bound, scale=scale, bias=self.linear.bias, operand_max=omax)
        chunk = rowskip.chunk_of(self.quant)  # set on a spiking model's neurons while it runs
        if chunk is not None and rowskip.ENABLED:  # opt-in: only rows whose counts changed (snmfm/rowskip.py)
            ep = _epilogue_arrays(scale, self.linear.bias, self.out_features) if bound < _F32_EXACT else None
            if ep is not None:  # int_matmul's float32 GEMM, its epilogue fused into the row copy
                w32 = w.to(torch.float32)
                y = rowskip.rowwise(self, codes, lambda c: c.to(torch.float32) @ w32, chunk,
                                    n_out=self.out_features, epilogue=ep)
            else:
                y = rowskip.rowwise(self, codes, gemm, chunk, n_out=self.out_features)
            if y is not None:
                return y
        return gemm(codes)


class QuantConv2d(_IntWeight):
    """Conv2d with a quantizer on its input (ViT patch embedding, conv nets)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, signed: bool = True):
        super().__init__()
        self.quant = Quantizer(signed=signed)
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias)
        self._init_int()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant.mode != "int":
            x = self.quant(x)
            if self.is_int and self.quant.mode == "fake":
                w = self.w_int.to(x.dtype) * self.w_scale.to(x.dtype)[:, None, None, None]
                return F.conv2d(x, w, self.conv.bias, self.conv.stride, self.conv.padding)
            return self.conv(x)
        if not self.is_int:
            raise RuntimeError("QuantConv2d in int mode has no integer weights; call snmfm.compress.quantize")
        acc = F.conv2d(self.quant.codes(x).to(torch.float64), self.w_int, None, self.conv.stride, self.conv.padding)
        y = acc * (self.quant.scale * self.w_scale)[None, :, None, None]
        if self.conv.bias is not None:
            y = y + self.conv.bias.to(torch.float64)[None, :, None, None]
        return y


class QuantFeatureEmbed(_IntWeight):
    """Tabular features as tokens: token_f = x_f * W_f + b_f (one learned vector per feature).
    The feature values pass an input quantizer, so in the SNN each feature is an IF neuron whose
    spikes fetch the row W_f (a 1-input linear layer per feature)."""

    def __init__(self, n_features: int, d_model: int):
        super().__init__()
        self.quant = Quantizer(signed=True)
        self.weight = nn.Parameter(torch.randn(n_features, d_model) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_features, d_model))
        self._init_int()

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, F]
        if self.quant.mode != "int":
            x = self.quant(x)
            w = self.weight
            if self.is_int and self.quant.mode == "fake":
                w = self.w_int.to(x.dtype) * self.w_scale.to(x.dtype)[:, None]
            return x[..., None] * w + self.bias
        if not self.is_int:
            raise RuntimeError("QuantFeatureEmbed in int mode has no integer weights; call snmfm.compress.quantize")
        acc = self.quant.codes(x)[..., None] * self.w_int
        return acc * (self.quant.scale * self.w_scale[:, None]) + self.bias.to(torch.float64)


class QuantMatMul(nn.Module):
    """Product of two activations, a @ b (Q K^T, attn V), each through its own quantizer.

    QANN: (codes_a @ codes_b) * s_a * s_b * out_scale.  In the SNN both operands are spike trains
    and the product is computed by the increment identity (converters.spiking_ops)."""

    def __init__(self, signed_a: bool = True, signed_b: bool = True, out_scale: float = 1.0):
        super().__init__()
        self.quant_a = Quantizer(signed=signed_a)
        self.quant_b = Quantizer(signed=signed_b)
        self.out_scale = float(out_scale)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.quant_a.mode != "int":
            return (self.quant_a(a) @ self.quant_b(b)) * self.out_scale
        bound = float(_absmax_code(self.quant_a) * _absmax_code(self.quant_b) * a.shape[-1])
        return int_matmul(self.quant_a.codes(a), self.quant_b.codes(b), bound,
                          scale=self.quant_a.scale * self.quant_b.scale * self.out_scale,
                          operand_max=float(max(_absmax_code(self.quant_a), _absmax_code(self.quant_b))))


# ---- non-spiking units: charged as digital units by both hardware models -------------------
class NonSpiking(nn.Module):
    """Marker base class: a nonlinearity evaluated by a digital unit, never a spike."""

    kind = "nonspiking"


class LayerNorm(NonSpiking):
    kind = "layernorm"

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.ln = nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        return F.layer_norm(x, self.ln.normalized_shape, self.ln.weight.to(x.dtype),
                            self.ln.bias.to(x.dtype), self.ln.eps)


class Softmax(NonSpiking):
    kind = "softmax"

    def forward(self, x):
        return torch.softmax(x, dim=-1)


class GELU(NonSpiking):
    kind = "gelu"

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)


class Tanh(NonSpiking):
    kind = "tanh"

    def forward(self, x):
        return torch.tanh(x)


def quantizers(model: nn.Module):
    """(name, Quantizer) pairs of a model, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Quantizer)]


def set_quant_mode(model: nn.Module, mode: str) -> None:
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quantizer mode {mode!r}; allowed: {', '.join(QUANT_MODES)}")
    for _, q in quantizers(model):
        q.mode = mode
