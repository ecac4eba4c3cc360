"""The MiniLM exactness bench's compact export: QANNs with a cut vocabulary and int8 weights load
back into QANNs whose outputs on the remapped sentences equal the originals' bit for bit, and the
SNN check counts exact sentences per coding."""
from __future__ import annotations

import torch

from eval.benchmarks.bench_minilm_exact import _pack, _unpack, exactness, export, load_export
from snmfm.compress import calibrate, quantize, smooth
from snmfm.models import build_model
from text_helpers import WordTokenizer


SENTENCES = ["the cat sat", "a dog ran far away", "spikes are integers", "one", "exact is exact here too",
             "low bits cost little", "the end"]


def _qanns():
    torch.manual_seed(0)
    m = build_model("text", "tiny", vocab_size=64, n_classes=0).eval()
    tok = WordTokenizer()
    data = [tuple(tok(SENTENCES, padding=True)[k] for k in ("input_ids", "attention_mask"))]
    sm = smooth(m, data, alpha=0.9)
    calibrate(sm, data)
    return {"W8A8": quantize(sm, 8, 8), "W8A4": quantize(sm, 8, 4, overrides={"trunk.blocks.0.mlp.fc2": {"a_bits": 6}})}, tok


def test_pack_keeps_integer_tensors_exactly_and_leaves_others():
    t = torch.tensor([[-127.0, 3.0], [0.0, 127.0]], dtype=torch.float64)
    p = _pack(t)
    assert isinstance(p, dict) and p["int"].dtype == torch.int8
    assert torch.equal(_unpack(p), t) and _unpack(p).dtype == torch.float64
    assert _pack(t * 200)["int"].dtype == torch.int16
    assert _pack(t * 300) is not None and not isinstance(_pack(t * 300), dict)
    f = torch.tensor([0.5, 1.0], dtype=torch.float64)
    assert _pack(f) is f


def test_export_round_trip_is_bitwise_and_smaller(tmp_path):
    qanns, tok = _qanns()
    f = export(tmp_path, qanns, tok, SENTENCES, batch_size=3)
    back, batches = load_export(tmp_path)
    assert set(back) == set(qanns)
    orig = {i: tok([s], padding=True) for i, s in enumerate(SENTENCES)}
    for label, q in qanns.items():
        for idx, ids, mask in batches:
            out = back[label](ids, mask)
            for j, i in enumerate(idx):
                o = orig[i]
                ref = q(o["input_ids"], o["attention_mask"])[0]
                n = int(mask[j].sum())
                assert n == o["input_ids"].shape[1]
                assert torch.equal(back[label](ids[j:j + 1, :n], mask[j:j + 1, :n])[0], ref)
                assert torch.equal(out[j], ref) or out.shape[1] != n  # padded rows: the same pooled output
    assert f.stat().st_size < sum(sum(t.numel() * t.element_size() for t in q.state_dict().values())
                                  for q in qanns.values())
    raw = torch.load(f, weights_only=False)
    assert all(isinstance(e["embedding_rows"], dict) for e in raw["qanns"].values())  # int8 rows, exact
    few, fb = load_export(tmp_path, n_eval=3, batch_size=2)
    assert sorted(i for idx, _, _ in fb for i in idx) == [0, 1, 2]


def test_exactness_counts_every_sentence_for_the_stepless_codings(tmp_path):
    qanns, tok = _qanns()
    export(tmp_path, qanns, tok, SENTENCES, batch_size=4)
    back, batches = load_export(tmp_path)
    for coding in ("graded", "sigma-delta", "binary"):
        r = exactness(back["W8A4"], batches, coding)
        assert r["exact"] == r["n"] == len(SENTENCES)
        assert (r["steps_max"] == 1) == (coding != "binary")
