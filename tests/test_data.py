"""Built-in datasets: deterministic, disjoint splits; real content; no downloads."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snmfm.data import SPLITS, split_indices, split_of_name
from snmfm.data import stdlib, tabular, vqa


def _assert_partition(parts: dict, n: int):
    seen = np.concatenate([parts[s] for s in SPLITS])
    assert len(seen) == n and len(np.unique(seen)) == n, "splits overlap or miss examples"


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 500), seed=st.integers(0, 2**31 - 1),
       f=st.tuples(st.floats(0.1, 0.8), st.floats(0.0, 0.2)))
def test_split_indices_partition_every_index_exactly_once(n, seed, f):
    fractions = (f[0], f[1], 1.0 - f[0] - f[1])
    parts = split_indices(n, fractions, seed)
    _assert_partition(parts, n)
    assert all((np.diff(parts[s]) > 0).all() for s in SPLITS)
    again = split_indices(n, fractions, seed)
    assert all((parts[s] == again[s]).all() for s in SPLITS)


def test_split_indices_rejects_fractions_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(10, (0.5, 0.1, 0.1))


def test_stratified_split_keeps_every_class_in_test():
    _, y = tabular._digits()
    test = tabular.digit_indices("test")
    assert set(y[test]) == set(range(10))


@pytest.mark.parametrize("indices, n", [(tabular.digit_indices, 1797), (tabular.wdbc_indices, 569)])
def test_tabular_splits_are_disjoint_and_cover_the_dataset(indices, n):
    _assert_partition({s: indices(s) for s in SPLITS}, n)


def test_split_does_not_depend_on_the_order_seed():
    a, b = tabular.digits("test", seed=0), tabular.digits("test", seed=5)
    assert sorted(a.ids) == sorted(b.ids) and a.ids != b.ids
    order = [a.ids.index(i) for i in b.ids]
    assert torch.equal(a.inputs[0][order], b.inputs[0])


def test_digits_are_images_in_unit_range_with_matching_labels():
    d = tabular.digits("train")
    x, _ = tabular._digits()
    _, y = tabular._digits()
    assert d.inputs[0].shape == (len(d), 1, 8, 8)
    assert 0.0 <= float(d.inputs[0].min()) and float(d.inputs[0].max()) <= 1.0
    assert torch.equal(d.targets, torch.from_numpy(y[list(d.ids)]))


def test_wdbc_is_standardised_with_train_statistics_only():
    train, test = tabular.wdbc("train"), tabular.wdbc("test")
    assert train.inputs[0].shape[1] == 30
    assert train.inputs[0].mean(0).abs().max() < 1e-4
    assert (train.inputs[0].std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert test.inputs[0].mean(0).abs().max() > 1e-3  # test statistics were not used
    assert set(train.targets.tolist()) == {0, 1}


def test_shift_images_translates_without_changing_zero_shift():
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 3, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    assert torch.equal(tabular.shift_images(img, g, max_shift=0), img)
    shifted = tabular.shift_images(img.repeat(50, 1, 1, 1), g, max_shift=1)
    ys, xs = torch.nonzero(shifted[:, 0] > 0, as_tuple=True)[1:]
    assert shifted.sum((1, 2, 3)).eq(1).all()
    assert set(ys.tolist()) <= {2, 3, 4} and set(xs.tolist()) <= {3, 4, 5}


def test_stdlib_modules_belong_to_exactly_one_split_and_test_modules_are_held_out():
    names = {s: {m.name for m in stdlib.modules(s)} for s in SPLITS}
    assert not names["train"] & names["test"] and not names["train"] & names["calib"]
    assert not names["calib"] & names["test"]
    for s, ns in names.items():
        assert all(split_of_name(n, stdlib.SPLIT_FRACTIONS) == s for n in ns)
    windows = stdlib.windows("test", 64)
    assert set(windows.ids) <= names["test"]


def test_stdlib_windows_are_next_byte_pairs_of_real_python():
    w = stdlib.windows("calib", 32)
    x, y = w.inputs[0], w.targets
    assert x.shape == y.shape and x.shape[1] == 32 and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    text = bytes(x[:50].flatten().tolist()).decode("utf-8", errors="replace")
    assert "def " in text or "import " in text or "class " in text


def test_stdlib_corpus_info_records_what_was_read():
    info = stdlib.corpus_info()
    for s in SPLITS:
        assert info[s]["modules"] >= 1 and len(info[s]["sha256"]) == 64
        assert info[s]["bytes"] <= stdlib.SPLIT_BYTES[s]
    assert info == stdlib.corpus_info()


def test_split_of_name_is_a_function_of_the_name_only():
    assert split_of_name("json.py") == split_of_name("json.py")
    counts = {s: 0 for s in SPLITS}
    for i in range(2000):
        counts[split_of_name(f"m{i}.py")] += 1
    assert 1450 < counts["train"] < 1750 and counts["calib"] > 50 and counts["test"] > 200


def test_vqa_answers_are_true_of_the_image():
    d = vqa.vqa("test")
    _, labels = tabular._digits()
    images, tokens = d.inputs
    assert tokens.shape == (len(d), vqa.PROMPT_LEN + vqa.ANSWER_LEN)
    assert (d.targets[:, 1] == vqa.EOS).all()
    for row, target, image_id in zip(tokens[:300], d.targets[:300], d.ids[:300]):
        q = vqa.decode(row[:vqa.PROMPT_LEN]).split()
        digit = int(labels[image_id])
        a = vqa.decode(target)
        if q[0] == "what":
            assert a == vqa.DIGIT_WORDS[digit]
        elif q[2] in ("even", "odd"):
            assert a == ("yes" if (digit % 2 == 0) == (q[2] == "even") else "no")
        else:
            n = vqa.DIGIT_WORDS.index(q[4])
            assert a == ("yes" if (digit > n if q[2] == "greater" else digit < n) else "no")


def test_vqa_test_images_are_never_training_images():
    train_ids = set(vqa.vqa("train").ids)
    assert not train_ids & set(vqa.vqa("test").ids)
    assert not train_ids & set(vqa.vqa("calib").ids)
    assert set(vqa.vqa("test").ids) == set(tabular.digit_indices("test").tolist())


def test_vqa_questions_are_the_same_for_every_order_seed():
    a, b = vqa.vqa("calib", seed=0), vqa.vqa("calib", seed=3)
    key = lambda d: sorted(zip(d.ids, map(tuple, d.inputs[1].tolist())))  # noqa: E731
    assert key(a) == key(b)


def test_vqa_vocabulary_round_trips_and_rejects_unknown_words():
    words = vqa.question("greater", 7)
    assert vqa.decode(vqa.prompt_ids(words)) == " ".join(words)
    with pytest.raises(ValueError, match="not in the vqa vocabulary"):
        vqa.encode(["banana"])
