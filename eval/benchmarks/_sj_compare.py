"""One quantized RoBERTa, run as an SNN by SpikingJelly 2.0's SpikeZIP-TF recipe and by snmfm.

SpikingJelly's `SpikeZIPTFQANNRecipe` does not quantize: it converts a QANN that already carries
SpikeZIP-style quantizer modules (attributes ``s, sym, pos_max, neg_min, level``) at fixed names
inside each RoBERTa self-attention (``query_quan, key_quan, value_quan, attn_quan,
after_attn_quan``), and turns every other module with those attributes into an ST-BIF neuron,
every nn.Linear/LayerNorm/Embedding into a temporal-difference op and every nn.ReLU into an
Identity.  So one network is built three ways from the same numbers:

1. an HF `transformers` RobertaModel (random weights, ReLU MLP, post-LN) with a linear head on the
   first token, mapped onto an snmfm `TextEncoder` (same function; checked in FP32);
2. the snmfm QANN: `calibrate` + `quantize` (per-channel integer weights, MSE activation scales),
   then every scale rounded to the nearest float32 so SpikingJelly's float32 thresholds hold the
   same value;
3. the SpikeZIP QANN: the HF module tree with the snmfm QANN's dequantized weights (w_int * s_w)
   and one SpikeZIP quantizer per snmfm quantizer, at the same place:

| snmfm quantizer (input of ...)  | SpikeZIP QANN quantizer                                    |
|---------------------------------|------------------------------------------------------------|
| attn.qkv.quant (LN output)      | `quant` of a wrapper around `attention.self` (not in the recipe's attention: added) |
| attn.qk.quant_a / quant_b (Q, K)| `query_quan`, `key_quan` (recipe-required)                  |
| attn.av.quant_b (V)             | `value_quan` (recipe-required)                              |
| attn.av.quant_a (softmax, unsigned) | `attn_quan` (recipe-required, sym=False)               |
| attn.proj.quant (context)       | `after_attn_quan` (recipe-required)                         |
| mlp.fc1.quant (LN output)       | `intermediate.dense = Sequential(quant, Linear)` (added)    |
| mlp.fc2.quant (ReLU, unsigned)  | `output.dense = Sequential(quant(sym=False), Linear)`; the ReLU before it becomes Identity in SJ, which is exact only because this unsigned quantizer follows |
| head.quant (CLS token)          | `head = Sequential(quant, Linear)` (added)                  |

The residual stream and the embedding sum are not quantized in either model.  What still differs
is arithmetic, not placement: SpikingJelly runs the QANN and the SNN in float (float32 by default;
the bench also runs it in float64), releases each linear bias as bias/level over the first `level`
steps, and integrates x/s into a float membrane; snmfm accumulates integer codes.

Limits of the recipe met on the way (SpikingJelly 2.0.0, transformers 5.23):
* transformers 5 unpacks ``attention_output, attn_weights = self.self(...)``; the recipe's
  converted attention (like its example's QANN) returns ``(context,)``: "ValueError: not enough
  values to unpack (expected 2, got 1)".  `InputQuantized` adapts the return value.
* GELU is not converted: HF's GELUActivation stays and is applied to each step's increment, so a
  GELU RoBERTa converts without error but its SNN is wrong (top-1 0.875, max rel err 0.16 on a small
  float64 example at A4, T=64).  Hence ReLU here, as in SpikeZIP-TF.
* Multi-step mode ([T, B, L] token ids) fails inside HF's embeddings ("too many values to
  unpack"): the recipe's documented single-step loop is what is timed.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.compress import calibrate, quantize
from snmfm.models import ModelConfig, TextEncoder
from snmfm.nn import quantizers

PAD_ID = 1          # RoBERTa's padding index; positions of real tokens start at PAD_ID + 1
FIRST_TOKEN = 3     # sampled token ids avoid <s>, <pad>, </s>


def have_spikingjelly() -> bool:
    """Both packages installed (found without importing them: importing takes seconds)."""
    from importlib.util import find_spec
    return find_spec("spikingjelly") is not None and find_spec("transformers") is not None


# ---- SpikeZIP-style QANN modules (the interface the recipe reads) ------------------------------
class SpikeZIPQuantizer(nn.Module):
    """q(x) = s * clamp(floor(x/s + 1/2), neg_min, pos_max): the quantizer of the recipe's example,
    built from an snmfm Quantizer (same scale, same integer range)."""

    def __init__(self, scale: float, qmin: int, qmax: int, dtype=torch.float32):
        super().__init__()
        self.sym = qmin < 0
        self.level = qmax - qmin + 1
        self.s = nn.Parameter(torch.tensor(scale, dtype=dtype), requires_grad=False)
        self.register_buffer("pos_max", torch.tensor(float(qmax), dtype=dtype))
        self.register_buffer("neg_min", torch.tensor(float(qmin), dtype=dtype))

    @classmethod
    def like(cls, q, dtype) -> "SpikeZIPQuantizer":
        return cls(float(q.scale), q.qmin, q.qmax, dtype)

    def forward(self, x):
        return torch.clamp(torch.floor(x / self.s + 0.5), float(self.neg_min), float(self.pos_max)) * self.s


class QRobertaSelfAttention(nn.Module):
    """RoBERTa self-attention with the five quantizers the recipe requires (as in its example)."""

    def __init__(self, hidden: int, heads: int, quants: dict[str, SpikeZIPQuantizer]):
        super().__init__()
        self.num_attention_heads = heads
        self.attention_head_size = hidden // heads
        self.all_head_size = hidden
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        for name, q in quants.items():
            setattr(self, name, q)
        self.dropout = nn.Dropout(0.0)
        self.position_embedding_type = "absolute"
        self.is_decoder = False

    def _heads(self, x):
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(self, hidden_states, attention_mask=None, **_):
        q = self._heads(self.query_quan(self.query(hidden_states)))
        k = self._heads(self.key_quan(self.key(hidden_states)))
        v = self._heads(self.value_quan(self.value(hidden_states)))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.attn_quan(F.softmax(scores, dim=-1))
        ctx = self.after_attn_quan(probs @ v)
        ctx = ctx.transpose(1, 2).reshape(*ctx.shape[:1], -1, self.all_head_size)
        return (ctx,)


class InputQuantized(nn.Module):
    """Puts snmfm's qkv input quantizer in front of the attention, and adapts the return value:
    transformers 5 unpacks ``out, weights = self.self(...)`` while the recipe's converted attention
    returns ``(context,)``."""

    def __init__(self, quant: nn.Module, attn: nn.Module):
        super().__init__()
        self.quant = quant
        self.attn = attn

    def forward(self, hidden_states, attention_mask=None, **_):
        out = self.attn(self.quant(hidden_states), attention_mask=attention_mask)
        return out[0], None


class QRobertaClassifier(nn.Module):
    """HF RobertaModel + a quantized linear head on the first token (logits [B, n_classes])."""

    def __init__(self, roberta: nn.Module, head: nn.Module):
        super().__init__()
        self.roberta = roberta
        self.head = head

    def forward(self, input_ids):
        h = self.roberta(input_ids=input_ids).last_hidden_state
        return self.head(h[:, 0])


# ---- building the three models ---------------------------------------------------------------
def hf_roberta(hidden=64, layers=2, heads=4, d_ff=128, vocab=256, seq_len=32, seed=0,
               init_std=0.1, act="relu"):
    from transformers import RobertaConfig, RobertaModel
    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=d_ff, hidden_act=act,
                        max_position_embeddings=seq_len + PAD_ID + 1, type_vocab_size=1,
                        layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        pad_token_id=PAD_ID, initializer_range=init_std)
    return RobertaModel(cfg, add_pooling_layer=False).eval()


@torch.no_grad()
def snmfm_from_roberta(hf, n_classes: int, seq_len: int, seed: int = 0) -> TextEncoder:
    """The snmfm TextEncoder computing the same function (plus a head on the CLS token).
    RobertaModel is BERT with positions offset by PAD_ID + 1; snmfm.models.hf.from_hf does not map
    RobertaModel (yet), so the weights are copied here."""
    c = hf.config
    cfg = ModelConfig(kind="text", d_model=c.hidden_size, n_layers=c.num_hidden_layers,
                      n_heads=c.num_attention_heads, d_ff=c.intermediate_size, norm="post",
                      act={"relu": "relu", "gelu": "gelu"}[c.hidden_act],
                      ln_eps=c.layer_norm_eps, vocab_size=c.vocab_size, max_len=seq_len,
                      type_vocab_size=c.type_vocab_size, embed_ln=True, pool="cls", n_classes=n_classes)
    torch.manual_seed(seed + 1)
    m = TextEncoder(cfg).eval()
    e = hf.embeddings
    m.embed.tok.weight.copy_(e.word_embeddings.weight)
    m.embed.pos.weight.copy_(e.position_embeddings.weight[PAD_ID + 1: PAD_ID + 1 + seq_len])
    m.embed.typ.weight.copy_(e.token_type_embeddings.weight)
    _copy_ln(m.embed.ln, e.LayerNorm)
    for blk, layer in zip(m.trunk.blocks, hf.encoder.layer):
        a = layer.attention.self
        blk.attn.qkv.linear.weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        blk.attn.qkv.linear.bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        _copy_linear(blk.attn.proj.linear, layer.attention.output.dense)
        _copy_ln(blk.ln1, layer.attention.output.LayerNorm)
        _copy_linear(blk.mlp.fc1.linear, layer.intermediate.dense)
        _copy_linear(blk.mlp.fc2.linear, layer.output.dense)
        _copy_ln(blk.ln2, layer.output.LayerNorm)
    return m


def _copy_linear(dst: nn.Linear, src: nn.Linear) -> None:
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_ln(dst, src) -> None:
    dst.ln.weight.copy_(src.weight)
    dst.ln.bias.copy_(src.bias)


def _deq(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantized weight w_int * s_w (float64) and bias of an snmfm QuantLinear in a QANN."""
    return layer.w_int * layer.w_scale[:, None], layer.linear.bias


def _linear_from(layer, dtype) -> nn.Linear:
    w, b = _deq(layer)
    lin = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return lin.to(dtype)


@torch.no_grad()
def spikezip_qann(hf, qann: TextEncoder, dtype=torch.float32) -> QRobertaClassifier:
    """The SpikeZIP-style QANN of the snmfm QANN `qann` on the HF module tree `hf`."""
    rob = copy.deepcopy(hf).to(torch.float64)
    e, E = rob.embeddings, qann.embed
    L = E.pos.weight.shape[0]
    e.word_embeddings.weight.copy_(E.tok.weight)
    e.position_embeddings.weight[PAD_ID + 1: PAD_ID + 1 + L].copy_(E.pos.weight)
    e.token_type_embeddings.weight.copy_(E.typ.weight)
    e.LayerNorm.weight.copy_(E.ln.ln.weight)
    e.LayerNorm.bias.copy_(E.ln.ln.bias)
    d = qann.config.d_model
    for blk, layer in zip(qann.trunk.blocks, rob.encoder.layer):
        at = blk.attn
        Q = lambda q: SpikeZIPQuantizer.like(q, torch.float64)  # noqa: E731
        att = QRobertaSelfAttention(d, at.n_heads, dict(
            query_quan=Q(at.qk.quant_a), key_quan=Q(at.qk.quant_b), value_quan=Q(at.av.quant_b),
            attn_quan=Q(at.av.quant_a), after_attn_quan=Q(at.proj.quant))).to(torch.float64)
        w, b = _deq(at.qkv)
        for i, lin in enumerate((att.query, att.key, att.value)):
            lin.weight.copy_(w[i * d:(i + 1) * d])
            lin.bias.copy_(b[i * d:(i + 1) * d])
        layer.attention.self = InputQuantized(Q(at.qkv.quant), att)
        layer.attention.output.dense = _linear_from(at.proj, torch.float64)
        layer.attention.output.LayerNorm.weight.copy_(blk.ln1.ln.weight)
        layer.attention.output.LayerNorm.bias.copy_(blk.ln1.ln.bias)
        layer.intermediate.dense = nn.Sequential(Q(blk.mlp.fc1.quant), _linear_from(blk.mlp.fc1, torch.float64))
        layer.output.dense = nn.Sequential(Q(blk.mlp.fc2.quant), _linear_from(blk.mlp.fc2, torch.float64))
        layer.output.LayerNorm.weight.copy_(blk.ln2.ln.weight)
        layer.output.LayerNorm.bias.copy_(blk.ln2.ln.bias)
    head = nn.Sequential(SpikeZIPQuantizer.like(qann.head.quant, torch.float64),
                         _linear_from(qann.head, torch.float64))
    return QRobertaClassifier(rob, head).to(dtype).eval()


def token_batch(batch: int, seq_len: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_TOKEN, vocab, (batch, seq_len), generator=g)


def build(hidden=64, layers=2, heads=4, d_ff=128, vocab=256, seq_len=32, n_classes=10, batch=32,
          w_bits=8, a_bits=8, seed=0, calib_batches=4, act="relu") -> dict:
    """Everything both simulators need: HF FP model, snmfm FP model and QANN, the eval tokens.
    act="gelu" builds the GELU variant, which the recipe cannot convert (GELU stays an ANN module
    applied to each step's increment); the bench uses ReLU, as SpikeZIP-TF does."""
    hf = hf_roberta(hidden, layers, heads, d_ff, vocab, seq_len, seed, act=act)
    fp = snmfm_from_roberta(hf, n_classes, seq_len, seed)
    calib = [(token_batch(batch, seq_len, vocab, seed + 100 + i),) for i in range(calib_batches)]
    calibrate(fp, calib)
    qann = quantize(fp, w_bits, a_bits)
    for _, q in quantizers(qann):  # SpikingJelly keeps thresholds in float32: use the same values
        q.scale = q.scale.to(torch.float32).to(torch.float64)
    ids = token_batch(batch, seq_len, vocab, seed + 7)
    return dict(hf=hf, fp=fp, qann=qann, ids=ids, level=2**a_bits)


@torch.no_grad()
def fp_mapping_error(hf, fp, ids) -> float:
    """max |HF - snmfm| on the last hidden state in FP32 (checks the weight mapping)."""
    ref = hf(input_ids=ids).last_hidden_state
    cfg = fp.config
    saved = (cfg.pool, fp.head)
    try:
        cfg.pool, fp.head = "none", None
        out = fp(ids)
    finally:
        cfg.pool, fp.head = saved
    return float((ref - out).abs().max())


def sj_convert(sj_qann: nn.Module, time_steps: int) -> nn.Module:
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.ann2snn import ModuleConverter, SpikeZIPTFQANNRecipe
    snn = ModuleConverter(recipe=SpikeZIPTFQANNRecipe(time_steps=time_steps, model_family="roberta"),
                          device="cpu").convert(sj_qann).eval()
    functional.set_step_mode(snn, "s")
    return snn


@torch.no_grad()
def sj_run(snn: nn.Module, ids: torch.Tensor, T: int, step_fn=None) -> torch.Tensor:
    """T single steps (the recipe's documented loop); the SNN output is the sum of the step outputs."""
    from spikingjelly.activation_based import functional
    functional.reset_net(snn)
    acc = None
    for t in range(T):
        y = snn(ids)
        acc = y.clone() if acc is None else acc.add_(y)
        if step_fn is not None:
            step_fn(t + 1, acc)
    return acc


def agreement(out: torch.Tensor, ref: torch.Tensor) -> dict:
    """top-1 agreement and max |out - ref| / max |ref| (computed in float64)."""
    out, ref = out.detach().to(torch.float64), ref.detach().to(torch.float64)
    return {"top1": float((out.argmax(-1) == ref.argmax(-1)).to(torch.float64).mean()),
            "max_rel": float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)),
            "equal": bool(torch.equal(out, ref))}


@torch.no_grad()
def sj_curve(snn, ids, ref, T: int, every: int = 1) -> list[dict]:
    """Agreement of SpikingJelly's accumulated output with `ref` after each step (every `every`)."""
    rows = []

    def at(t, acc):
        if t % every == 0 or t == T:
            rows.append({"t": t, **agreement(acc, ref)})
    sj_run(snn, ids, T, at)
    return rows
