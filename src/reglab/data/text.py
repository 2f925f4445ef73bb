"""A PTB-style word-level corpus from the Project Gutenberg texts (``reglab data get
gutenberg``)."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import torch

from reglab._validation import check_positive_int
from reglab.data._store import DatasetNotFoundError, data_dir
from reglab.data.fetch import GUTENBERG_COMPLETE

__all__ = ["Corpus", "gutenberg", "tokenize"]

UNK, EOS = "<unk>", "<eos>"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|[0-9]+")
_PARAGRAPH = re.compile(r"\n\s*\n")


def tokenize(text: str) -> list[str]:
    """PTB-style tokens: lowercased words (apostrophes kept inside them), every number as
    ``N``, punctuation dropped, ``<eos>`` after each paragraph (blank-line separated).

    >>> tokenize("Call me Ishmael. Some 3 years ago--\\n\\nNever mind.")
    ['call', 'me', 'ishmael', 'some', 'N', 'years', 'ago', '<eos>', 'never', 'mind', '<eos>']
    """
    tokens: list[str] = []
    for paragraph in _PARAGRAPH.split(text.lower()):
        words = ["N" if w[0].isdigit() else w for w in _WORD.findall(paragraph)]
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens


@dataclass(frozen=True)
class Corpus:
    """Token ids (1-D ``torch.long``) of the three splits and the vocabulary (id -> word;
    ``<unk>`` is 0, ``<eos>`` is 1)."""

    vocab: tuple[str, ...]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


@lru_cache(maxsize=2)
def gutenberg(
    vocab_size: int = 10000, chunk: int = 10000, root: str | os.PathLike[str] | None = None
) -> Corpus:
    """The 18 Gutenberg texts as one token stream (files in name order), cut into contiguous
    chunks of ``chunk`` tokens; of every 20 chunks, the 19th goes to validation, the 20th to
    test and the rest to training (90 / 5 / 5). The vocabulary is the ``vocab_size − 2`` most
    frequent training words plus ``<unk>`` and ``<eos>``; rarer words map to ``<unk>``."""
    vocab_size = check_positive_int(vocab_size, "vocab_size", "gutenberg", minimum=3)
    chunk = check_positive_int(chunk, "chunk", "gutenberg")
    folder = data_dir(root) / "gutenberg"
    if not (folder / GUTENBERG_COMPLETE).is_file():
        raise DatasetNotFoundError(
            f"The Gutenberg texts are not in {folder}. Run: reglab data get gutenberg"
        )
    stream: list[str] = []
    for path in sorted(folder.glob("*.txt")):
        stream.extend(tokenize(path.read_text(encoding="latin-1")))
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i in range(0, len(stream), chunk):
        part = {18: "val", 19: "test"}.get((i // chunk) % 20, "train")
        splits[part].extend(stream[i : i + chunk])
    counts = Counter(w for w in splits["train"] if w != EOS)
    vocab = (UNK, EOS, *(w for w, _ in counts.most_common(vocab_size - 2)))
    index = {w: i for i, w in enumerate(vocab)}

    def ids(words: list[str]) -> torch.Tensor:
        return torch.tensor([index.get(w, 0) for w in words], dtype=torch.long)

    return Corpus(vocab, ids(splits["train"]), ids(splits["val"]), ids(splits["test"]))
