"""Real English sentences that ship with snmfm (files/sentences.txt), for text-encoder fidelity runs.

`load_sentences()` reads the shipped file: 600 sentences in a fixed order.  They were extracted
offline from English prose that ships with installed software (scikit-learn's dataset
descriptions and CPython's standard-library docstrings); `extract_sentences()` is the extractor,
kept so the file's origin can be checked and the file regenerated (`python -m snmfm.data.sentences`).

`load_train_sentences()` reads files/sentences_train.txt: 996 more sentences from the same sources
(`extract_sentences(n=100000, per_module=40)` minus every sentence of sentences.txt), for recovery
fine-tuning (QAT distillation) of text encoders, so that all 600 shipped sentences stay held out.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

SENTENCES_FILE = Path(__file__).resolve().parent / "files" / "sentences.txt"
TRAIN_SENTENCES_FILE = SENTENCES_FILE.with_name("sentences_train.txt")

_CODE_CHARS = set("()[]{}=<>|\\`@#$*_~^;")
_SKIP_MODULES = ("antigravity", "this", "idlelib", "turtledemo", "tkinter", "lib2to3", "test",
                 "ensurepip", "pydoc_data")


def _read(path: Path, n: int | None) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    if n is not None:
        if n > len(out):
            raise ValueError(f"asked for {n} sentences; {path.name} has {len(out)}")
        out = out[:n]
    return out


def load_sentences(n: int | None = None) -> list[str]:
    """The shipped sentences in file order (the first `n` if given)."""
    return _read(SENTENCES_FILE, n)


def load_train_sentences(n: int | None = None) -> list[str]:
    """The training sentences (disjoint from `load_sentences()`), in file order."""
    return _read(TRAIN_SENTENCES_FILE, n)


# ---- how the file was made ---------------------------------------------------------------------
def _clean_rst(t: str) -> str:
    t = re.sub(r":\w+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", t)   # :func:`name` -> name
    t = re.sub(r"`([^`<]*?)\s*<[^>]*>`_+", r"\1", t)              # `text <url>`__ -> text
    t = re.sub(r"``([^`]*)``", r"\1", t)
    return re.sub(r"\*\*([^*]*)\*\*", r"\1", t)


def _paragraphs(text: str) -> list[str]:
    """Unindented prose paragraphs (code blocks, tables, directives and lists dropped)."""
    paras, cur = [], []
    for line in text.splitlines():
        st = line.strip()
        skip = (not st or line.startswith(("    ", "\t"))
                or st.startswith((".. ", "===", "---", "***", ">>>", ":", "- ", "* ", "|", "+"))
                or re.fullmatch(r"[=\-~^*]+", st))
        if skip:
            if cur:
                paras.append(" ".join(cur))
                cur = []
            continue
        cur.append(st)
    if cur:
        paras.append(" ".join(cur))
    return paras


def _sentences(paras: list[str]) -> list[str]:
    out = []
    for p in paras:
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", re.sub(r"\s+", " ", p)):
            s = s.strip()
            if not 6 <= len(s.split()) <= 32 or not re.match(r"[A-Z][a-z]", s) or not s.endswith("."):
                continue
            if any(c in _CODE_CHARS for c in s) or not s.isascii():
                continue
            if re.search(r"\b(e\.g|i\.e|etc|vs|al|cf|Fig|No)\.$", s):  # split at an abbreviation
                continue
            if re.search(r"https?:|www\.|\.\w+\(|\bself\b|\bNone\b|\bTrue\b|\bFalse\b|\.py\b|\w\.\w", s):
                continue
            if sum(c.isdigit() for c in s) > 6:
                continue
            out.append(s)
    return out


def extract_sentences(n: int = 600, per_module: int = 6) -> list[str]:
    """Re-extract the sentence list from installed scikit-learn and the Python standard library.

    Depends on the installed versions (the shipped file came from scikit-learn 1.9.1 and
    CPython 3.11.7); imports many stdlib modules, so it is slow-ish and meant to be run by hand."""
    import importlib
    import inspect
    import sys
    import warnings

    import sklearn

    rows: list[tuple[str, str]] = []
    descr = Path(sklearn.__file__).resolve().parent / "datasets" / "descr"
    for f in sorted(descr.glob("*.rst")):
        rows += [(f"sklearn:{f.name}", s) for s in _sentences(_paragraphs(_clean_rst(f.read_text())))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(m for m in sys.stdlib_module_names
                           if not m.startswith("_") and m not in _SKIP_MODULES):
            try:
                mod = importlib.import_module(name)
            except Exception:  # platform-specific modules
                continue
            docs = [inspect.getdoc(mod) or ""]
            for attr, obj in sorted(vars(mod).items()):
                if (not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                        and getattr(obj, "__module__", None) == name):
                    docs.append(inspect.getdoc(obj) or "")
            for doc in docs:
                rows += [(f"python:{name}", s) for s in _sentences(_paragraphs(_clean_rst(doc)))]
    seen, per_src, picked = set(), {}, []
    for src, s in rows:
        cap = 60 if src.startswith("sklearn") else per_module
        if s.lower() in seen:
            continue
        seen.add(s.lower())
        if per_src.get(src, 0) >= cap:
            continue
        per_src[src] = per_src.get(src, 0) + 1
        picked.append(s)
    random.Random(0).shuffle(picked)
    return picked[:n]


if __name__ == "__main__":
    for sentence in extract_sentences():
        print(sentence)
