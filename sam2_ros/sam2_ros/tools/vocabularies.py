"""Tokenizers built from vocabularies made up on the spot, for detectors with random weights.

Published vocabularies cannot be had where weights cannot (CI, an offline robot). transformers 5
takes a vocabulary as a dict while transformers 4 (Humble's Python 3.10) takes only files; both
read files, so the vocabulary is written to files first.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence


def bert_tokenizer(words: Sequence[str]):
    """Return a BERT WordPiece tokenizer whose token ids are the words' positions."""
    from transformers import BertTokenizerFast

    with tempfile.TemporaryDirectory() as folder:
        vocab = Path(folder) / "vocab.txt"
        vocab.write_text("".join(f"{word}\n" for word in words))
        return BertTokenizerFast(str(vocab))


def clip_tokenizer(vocab: dict[str, int], merges: Sequence[tuple[str, str]], max_length: int):
    """Return a CLIP byte-pair tokenizer of this vocabulary and these merges."""
    from transformers import CLIPTokenizerFast

    with tempfile.TemporaryDirectory() as folder:
        vocab_file, merges_file = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return CLIPTokenizerFast(str(vocab_file), str(merges_file), model_max_length=max_length)
