"""Visual question answering on digit images: image + question -> one-word answer.

Questions (word tokens):  "what digit is this ?"        -> "zero" .. "nine"
                          "is it even ?" / "is it odd ?" -> "yes" / "no"
                          "is it greater than N ?"       -> "yes" / "no"   (N a digit word)
                          "is it less than N ?"          -> "yes" / "no"
A sequence is the question left-padded to `PROMPT_LEN` tokens, then the answer, then <eos>:
one shape for every example, so batches need no attention mask and generation starts at the same
position for every row.  Images come from the digits splits (split by image: a test image is never
seen in training).
"""
from __future__ import annotations

import numpy as np
import torch

from snmfm.data.splits import TensorData, order
from snmfm.data.tabular import digit_images, digit_indices

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPECIAL = ("<pad>", "<eos>", "?")
WORDS = ("what", "digit", "is", "this", "it", "even", "odd", "greater", "less", "than", "yes", "no")
VOCAB: tuple[str, ...] = SPECIAL + WORDS + DIGIT_WORDS
TOKEN = {w: i for i, w in enumerate(VOCAB)}
PAD, EOS = TOKEN["<pad>"], TOKEN["<eos>"]
PROMPT_LEN = 6          # longest question: "is it greater than five ?"
ANSWER_LEN = 2          # answer word + <eos>
QUESTION_KINDS = ("what", "even", "odd", "greater", "less")


def encode(words: list[str]) -> list[int]:
    try:
        return [TOKEN[w] for w in words]
    except KeyError as e:
        raise ValueError(f"word {e.args[0]!r} is not in the vqa vocabulary: {' '.join(VOCAB)}") from None


def decode(ids) -> str:
    """Token ids -> words, stopping at <eos> and skipping padding."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i != PAD and 0 <= i < len(VOCAB):
            out.append(VOCAB[i])
    return " ".join(out)


def question(kind: str, n: int = 0) -> list[str]:
    if kind == "what":
        return ["what", "digit", "is", "this", "?"]
    if kind in ("even", "odd"):
        return ["is", "it", kind, "?"]
    if kind in ("greater", "less"):
        return ["is", "it", kind, "than", DIGIT_WORDS[n], "?"]
    raise ValueError(f"unknown question kind {kind!r}; allowed: {', '.join(QUESTION_KINDS)}")


def answer(kind: str, digit: int, n: int = 0) -> str:
    if kind == "what":
        return DIGIT_WORDS[digit]
    truth = {"even": digit % 2 == 0, "odd": digit % 2 == 1,
             "greater": digit > n, "less": digit < n}[kind]
    return "yes" if truth else "no"


def prompt_ids(words: list[str]) -> list[int]:
    if len(words) > PROMPT_LEN:
        raise ValueError(f"question of {len(words)} tokens exceeds PROMPT_LEN={PROMPT_LEN}")
    return [PAD] * (PROMPT_LEN - len(words)) + encode(words)


def make_examples(digits: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random question per image: tokens [N, PROMPT_LEN + ANSWER_LEN] (question, answer, eos)
    and answer ids [N, ANSWER_LEN].  Kinds are drawn so that digit questions are 1/3 of all and
    comparisons use thresholds 0..9."""
    n = len(digits)
    kind_draw = torch.randint(0, 6, (n,), generator=gen)   # 0,1 -> what; 2 even; 3 odd; 4 greater; 5 less
    thresholds = torch.randint(0, 10, (n,), generator=gen)
    kinds = ["what", "what", "even", "odd", "greater", "less"]
    seqs, answers = [], []
    for d, k, t in zip(digits.tolist(), kind_draw.tolist(), thresholds.tolist()):
        kind = kinds[k]
        a = [TOKEN[answer(kind, d, t)], EOS]
        seqs.append(prompt_ids(question(kind, t)) + a)
        answers.append(a)
    return torch.tensor(seqs), torch.tensor(answers)


def vqa(split: str, seed: int = 0, split_seed: int = 0, per_image: int = 3) -> TensorData:
    """One split: inputs (images [N,1,8,8], tokens [N, 8]), targets answer ids [N, 2].

    Each image of the split gets `per_image` questions drawn with a generator that depends on the
    split only (the same questions for every seed); `seed` orders the examples."""
    idx = digit_indices(split, split_seed)
    images, labels = digit_images(idx)
    gen = torch.Generator().manual_seed(1000 + {"train": 0, "calib": 1, "test": 2}[split] + split_seed)
    toks, ans = zip(*(make_examples(labels, gen) for _ in range(per_image)))
    tokens, answers = torch.cat(toks), torch.cat(ans)
    images = images.repeat(per_image, 1, 1, 1)
    ids = np.tile(idx, per_image)
    o = order(len(tokens), seed)
    return TensorData((images[o], tokens[o]), answers[o], tuple(int(ids[i]) for i in o))
