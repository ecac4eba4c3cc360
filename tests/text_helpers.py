"""A word-level stand-in for a Hugging Face tokenizer, shared by the MiniLM-shaped tests."""
import torch


class WordTokenizer:
    """Just enough of a Hugging Face tokenizer: a word -> id table, [CLS]=1, [SEP]=2, pad 0."""
    pad_token_id = 0
    vocab_size = 64

    def _ids(self, s):
        return [1] + [3 + sum(map(ord, w)) % 61 for w in s.split()] + [2]

    def __call__(self, s, padding=False, return_tensors=None, truncation=False, max_length=None):
        if isinstance(s, str):
            return {"input_ids": self._ids(s)}
        rows = [self._ids(x) for x in s]
        if not padding:
            return {"input_ids": rows}
        L = max(map(len, rows))
        ids = torch.tensor([r + [0] * (L - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}
