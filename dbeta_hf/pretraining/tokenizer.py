"""Train a small T5-compatible tokenizer from report texts (for the offline demo and the tests).

The result has T5's id layout: pad=0, eos=1, unk=2, then the learned pieces, then 100 `<extra_id_N>` sentinels
(`<extra_id_0>` is D-BETA's MLM mask token), so it is a drop-in stand-in for `google/flan-t5-base`'s tokenizer
wherever the real one cannot be downloaded. It is not the Flan-T5 vocabulary: a model trained with it needs it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import T5Tokenizer

from ..text_normalization import normalize_report


def train_t5_tokenizer(texts: Iterable[str], vocab_size: int = 400, extra_ids: int = 100, normalize: bool = True,
                       whole_words: bool = False) -> T5Tokenizer:
    """Train a unigram (SentencePiece-style) tokenizer on `texts` and wrap it as a `T5Tokenizer`.

    Deterministic: the same texts give the same vocabulary and ids in every process (pieces of equal score are
    ordered by their text).

    With `whole_words`, the vocabulary is every word and punctuation mark of `texts` (the most frequent first, up to
    `vocab_size`) plus every single character as a fallback, scored by log frequency, so each known word is one token
    (``"sinus tachycardia."`` -> ``['▁sinus', '▁tachycardia', '.']``). The unigram trainer, on a small corpus of
    repetitive reports, instead splits frequent words into characters (``'▁s', 'in', 'u', 's'``), which a tiny text
    tower with first-token pooling cannot put back together.
    """
    corpus = [normalize_report(t) if normalize else t for t in texts]
    corpus = [t for t in corpus if t]
    if not corpus:
        raise ValueError("train_t5_tokenizer needs at least one non-empty text")
    if whole_words:
        return T5Tokenizer(vocab=_whole_word_vocab(corpus, vocab_size), extra_ids=extra_ids)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", shrinking_factor=0.9
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    pieces = json.loads(tok.to_str())["model"]["vocab"]  # [(piece, score)] in id order, specials first
    return T5Tokenizer(vocab=_deterministic_order(pieces, num_special=3), extra_ids=extra_ids)


def _deterministic_order(pieces: list, num_special: int) -> list[tuple[str, float]]:
    """Order the learned pieces by decreasing score, then by the piece itself.

    The trainer lists pieces of equal score in an order that changes from run to run (it walks hash maps with
    per-process random seeds), so '1' and '2' could swap ids between two trainings on the same texts. Sorting
    ties by the piece text makes the ids a function of the texts alone. The special tokens keep ids 0..2.
    """
    special = [(piece, float(score)) for piece, score in pieces[:num_special]]
    learned = sorted(((piece, float(score)) for piece, score in pieces[num_special:]), key=lambda p: (-p[1], p[0]))
    return special + learned


def _whole_word_vocab(corpus: list[str], vocab_size: int) -> list[tuple[str, float]]:
    """Unigram vocabulary of whole words ("▁word"), punctuation marks and single-character fallbacks."""
    words: Counter = Counter()
    chars: set[str] = set()
    for text in corpus:
        for match in re.finditer(r"\w+|[^\w\s]", text):
            piece = match.group()
            start = match.start()
            words["\u2581" + piece if start == 0 or text[start - 1].isspace() else piece] += 1
            chars.update(piece)
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    fallback = sorted({"\u2581"} | chars | {"\u2581" + c for c in chars})
    budget = vocab_size - len(specials) - len(fallback)
    if budget < 1:
        raise ValueError(f"vocab_size={vocab_size} leaves no room for words after {len(fallback)} character pieces")
    total = sum(words.values())
    kept = [(w, c) for w, c in words.most_common() if w not in fallback][:budget]
    floor = math.log(1.0 / total) - 10.0  # characters only win where no word piece fits
    return specials + [(w, math.log(c / total)) for w, c in kept] + [(c, floor) for c in fallback]
