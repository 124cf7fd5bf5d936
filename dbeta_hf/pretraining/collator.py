"""Batch collator for D-BETA pretraining: N3S negatives, MLM masking and lead masking, seeded per batch.

Masking map: MLM masking (`mlm_mask_tokens`) and lead masking (`mask_leads`) are here, in the collator, because they
edit the data and their labels travel with the batch; MEM token masking (`modeling_dbeta.random_masking`) is in the
model, because it drops ECG tokens after the conv features, and the collator can draw its `noise` from the batch's
seeded generator (`mem_noise_tokens`) so that evaluation losses repeat run to run. `modeling_dbeta`'s module
docstring says the same from the model's side.

:class:`DBetaPreTrainingCollator` turns rows ``{"ecg": (12, S) array, "report": str, [id column]}`` into

==================  ============  =====================================================================
key                 shape, dtype  meaning
==================  ============  =====================================================================
``ecg_values``      (B, C, S) f32 the lead-masked ECG the model sees (it is also the MEM target)
``input_ids``       (B, L) int64  the fed report (own or N3S negative), MLM-masked
``attention_mask``  (B, L) int64  1 on real tokens (including ``</s>``), 0 on padding
``mlm_labels``      (B, L) int64  original token id at MLM-selected positions, -100 elsewhere
``match_labels``    (B,) int64    1 = the text belongs to the ECG, 0 = N3S negative
``lead_mask``       (B, C) bool   only with ``return_lead_mask=True``: True where a lead is present (recorded and
                                  not zeroed by lead masking)
``ets_labels``      (B, B) float  only with ``same_report_positives=True`` (see there)
``mlm_positions``   (B, K) long   MLM target positions per row, -1 padded (``return_mlm_positions``, on by default)
``noise``           (B, T) f32    only with ``mem_noise_tokens=T``: the noise that drives the model's MEM masking
``ets_input_ids``   (B, L') int64 only with ``statement_dropout > 0``: the ETS view of each fed text, some statements
                                  dropped (with ``ets_attention_mask``; ``ets_labels`` then follow the subset rule)
==================  ============  =====================================================================

What it does per batch of B rows (the released official collator: reference spec C.1, C.3, D.1, D.2):

* **Inputs through the processor.** The ECGs go through the :class:`~dbeta_hf.DBetaProcessor`'s feature extractor
  and the texts through the processor's tokenizer call, so pretraining batches meet the same input contract and
  value checks as inference inputs (NaN/inf, amplitude, all-zero recordings; empty reports, token ids outside the
  model's vocabulary). Reports are normalized once, by the processor's rule (`DBetaProcessor.prepare_text`).

* **N3S negatives.** ``int(B * negative_fraction + u)``, ``u ~ U[0, 1)``, rows are chosen without replacement
  (the official rule, with ``negative_fraction=0.5``). Each gets a report drawn uniformly from its own
  report's candidate table in the precomputed :class:`~dbeta_hf.pretraining.n3s.N3SIndex` and ``match_labels = 0``.
  The negative text is what is tokenised and fed (the official collator differs: reference spec C.3). No text
  model runs here.
* **Without an index** (``n3s_index=None``), the negatives are *in-batch*: a negative row gets the report of
  another row of the same batch, drawn uniformly among the rows whose normalized report differs from its
  own (the ALBEF/M3AE-style random negative). If every row of the batch has the same report, a negative
  row has no candidate and stays a positive; that is counted in ``stats["negatives_without_candidate"]``
  and warned about once. ``negative_fraction=0`` disables negatives altogether (all ``match_labels = 1``).
* **Reports missing from the index** raise ``KeyError`` (default ``missing_report="raise"``), because it
  means the index was built from another corpus. ``missing_report="in_batch"`` instead gives such rows,
  when they are chosen as negatives, an in-batch negative; every missing report is counted in
  ``stats["missing_reports"]`` and warned about once.
* **MLM** (:func:`mlm_mask_tokens`) on the text that is fed (negative or not): each non-special token (never padding, ``</s>``,
  ``<unk>`` or a sentinel) is selected with probability ``mlm_probability`` (0.25); of the selected, 80% are
  replaced by ``mask_token`` (T5 has no mask token; ``<extra_id_0>`` by default), 10% by a random
  non-special token and 10% kept. ``mlm_labels`` hold the original ids there, -100 elsewhere (the official MLM
  collator: reference spec C.1).
* **Lead masking** (:func:`mask_leads`): each lead of each row is zeroed with probability ``lead_mask_prob`` (0.5), as the
  official ``RandomLeadsMask`` applied to every pretraining sample; zeroed leads are exactly 0.0.
* **ECG input**: numpy arrays, torch tensors or nested lists of any real dtype, 12 leads in canonical order, in
  millivolts at the feature extractor's rate (the dataset builders store float16 millivolts at 500 Hz). The feature
  extractor converts them to float32 without any scaling and crops recordings longer than ``num_samples`` to their
  first ``num_samples``; shorter ones raise ``ValueError`` (the model has no sample-level padding mask, so padded
  zeros would be MEM targets). Give a ``datasets`` table ``.with_format("numpy")`` (or ``"torch"``): its default
  Python format yields nested lists, which are much slower to convert. The outputs are the same for every format.

**Reproducibility.** All randomness of a batch comes from one ``torch.Generator`` seeded from ``seed``, the
epoch (:meth:`set_epoch`) and a stable hash of the rows in batch order: the row's id column when it has one
(``id_column="auto"`` looks for ``idx``, ``study_id``, ``ecg_id``, ``exam_id``, ``record_id``, ``sample_id``, ``id``), else
the normalized report plus a checksum of the ECG samples. A batch is therefore the same whichever
``DataLoader`` worker builds it and however many workers there are. Different batches (and, once
``set_epoch`` is called, different epochs) get different draws. With ``transformers.Trainer`` use
:class:`DBetaCollatorEpochCallback` to call ``set_epoch`` (it reaches the workers unless
``dataloader_persistent_workers=True``), and set ``remove_unused_columns=False`` so that ``ecg`` and
``report`` reach the collator.

``stats`` counters live in the process that runs the collator (each DataLoader worker has its own copy).
"""

from __future__ import annotations

import hashlib
import math
import logging
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from transformers import TrainerCallback

from ..ecg_signal import CANONICAL_LEAD_NAMES
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..losses import mlm_positions
from ..processing_dbeta import MAX_TEXT_LENGTH, DBetaProcessor
from .n3s import N3SIndex

logger = logging.getLogger(__name__)

__all__ = ["DBetaPreTrainingCollator", "DBetaCollatorEpochCallback", "mlm_mask_tokens", "mask_leads", "drop_statements",
           "split_statements", "statement_subset_labels"]

DEFAULT_ID_COLUMNS = ("idx", "study_id", "ecg_id", "exam_id", "record_id", "sample_id", "id")
_CHECKSUM_STRIDE = 37  # ECG samples hashed per lead: every 37th (a cheap, exact checksum of the float32 values)


def _row_value(row: Mapping[str, Any], key: str, position: int) -> Any:
    try:
        return row[key]
    except KeyError:
        raise KeyError(
            f"row {position} has no {key!r} column (columns: {sorted(row)}); pass the column name to the "
            f"collator (ecg_column= / report_column=) or, with transformers.Trainer, set "
            f"remove_unused_columns=False"
        ) from None


def _id_bytes(value: Any) -> bytes:
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value
    return repr(value).encode("utf-8")


_STATEMENT_END = re.compile(r"(?<=[.;])\s+")


def split_statements(report: str) -> list[str]:
    """The statements of a normalized report: its sentences, split after every ``.`` or ``;`` followed by white
    space (``"sinus rhythm. normal ecg."`` -> ``["sinus rhythm.", "normal ecg."]``). A report without such a
    boundary is one statement."""
    return [part for part in (p.strip() for p in _STATEMENT_END.split(report)) if part]


def statement_subset_labels(true_reports: Sequence[str], ets_texts: Sequence[str]) -> torch.Tensor:
    """(B, B) ETS labels: +1 where every statement of the text in column j is a statement of row i's true report
    (the text says only things that are true of ECG i), else -1. Identical reports are a special case."""
    vocabulary: dict[str, int] = {}
    true_sets = [[vocabulary.setdefault(t, len(vocabulary)) for t in split_statements(r)] for r in true_reports]
    text_sets = [[vocabulary.setdefault(t, len(vocabulary)) for t in split_statements(r)] for r in ets_texts]
    true_hot = torch.zeros(len(true_reports), len(vocabulary))
    text_hot = torch.zeros(len(ets_texts), len(vocabulary))
    for row, ids in enumerate(true_sets):
        true_hot[row, ids] = 1.0
    for row, ids in enumerate(text_sets):
        text_hot[row, ids] = 1.0
    # statements of text j missing from report i: text_hot[j] . (1 - true_hot[i])
    missing = (1.0 - true_hot) @ text_hot.T
    return torch.where(missing == 0, 1.0, -1.0)


def drop_statements(texts: Sequence[str], probability: float, generator: torch.Generator) -> list[str]:
    """Drop each statement (`split_statements`) of each text with `probability`, keeping at least one per text (a
    uniformly drawn one when every statement was dropped). Two draws from `generator`: (B, S) and (B,), S = the most
    statements of a text in the batch."""
    parts = [split_statements(t) or [t] for t in texts]
    width = max(len(p) for p in parts)
    kept = torch.rand((len(parts), width), generator=generator) >= probability
    fallback = torch.rand(len(parts), generator=generator)
    out = []
    for row, statements in enumerate(parts):
        keep = [s for s, k in zip(statements, kept[row, : len(statements)].tolist()) if k]
        out.append(" ".join(keep) if keep else statements[int(fallback[row] * len(statements))])
    return out


def same_report_labels(true_reports: Sequence[str], fed_texts: Sequence[str]) -> torch.Tensor:
    """(B, B) ETS labels: +1 where the text fed in column j equals the true report of row i, else -1."""
    vocabulary: dict[str, int] = {}
    true_ids = torch.tensor([vocabulary.setdefault(t, len(vocabulary)) for t in true_reports])
    fed_ids = torch.tensor([vocabulary.setdefault(t, len(vocabulary)) for t in fed_texts])
    return (true_ids[:, None] == fed_ids[None, :]).float() * 2.0 - 1.0


def mlm_mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, generator: torch.Generator, *,
                    special_ids: torch.Tensor, random_token_ids: torch.Tensor, mask_token_id: int,
                    mlm_probability: float = 0.25, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1):
    """MLM masking (BERT's 80/10/10): each non-special, attended token is selected with `mlm_probability`; of the
    selected, `mask_replace_prob` become `mask_token_id`, `random_replace_prob` a token drawn from
    `random_token_ids`, the rest keep their id. Returns (masked ids, labels: the original id where selected, -100
    elsewhere). Three draws from `generator`, always of the full (B, L) shape."""
    special = torch.isin(input_ids, special_ids) | (attention_mask == 0)
    select_draw = torch.rand(input_ids.shape, generator=generator)
    action_draw = torch.rand(input_ids.shape, generator=generator)
    random_tokens = random_token_ids[torch.randint(random_token_ids.numel(), input_ids.shape, generator=generator)]
    selected = (select_draw < mlm_probability) & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    to_mask = selected & (action_draw < mask_replace_prob)
    to_random = selected & ~to_mask & (action_draw < mask_replace_prob + random_replace_prob)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_tokens, masked)
    return masked, labels


def mask_leads(ecgs: np.ndarray, lead_mask_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Lead masking (the official `RandomLeadsMask`): zero each lead of each row of `ecgs` (B, C, S), in place, with
    probability `lead_mask_prob`; zeroed leads are exactly 0.0. Returns the (B, C) bool `lead_mask` of the leads
    kept (True = present, as everywhere in the package). One draw of shape (B, C) from `generator`."""
    zeroed = torch.rand(ecgs.shape[:2], generator=generator) < lead_mask_prob
    ecgs.reshape(-1, ecgs.shape[-1])[zeroed.numpy().reshape(-1)] = 0.0  # a row view: cheaper than a broadcast fill
    return ~zeroed


@dataclass
class DBetaPreTrainingCollator:
    """Collate D-BETA pretraining rows into model inputs with N3S negatives, MLM and lead masking.

    Args:
        processor: the model's :class:`~dbeta_hf.DBetaProcessor` (its feature extractor prepares and checks the
            ECGs, its tokenizer call the texts), or a T5 tokenizer of the text encoder (``google/flan-t5-base`` for
            the official model), which is wrapped in a processor with a default feature extractor of
            ``num_samples`` samples.
        n3s_index: precomputed :class:`~dbeta_hf.pretraining.n3s.N3SIndex` (build it from the training reports). Without it,
            negatives are in-batch (see the module docstring).
        negative_fraction: expected fraction of rows that get a negative report (0 disables negatives).
        mlm_probability: fraction of non-special tokens selected for MLM.
        mask_token: token standing in for BERT's [MASK]; must be one token of the tokenizer.
        lead_mask_prob: probability that each lead is zeroed.
        max_length: longest tokenised report, ``</s>`` included (``MAX_TEXT_LENGTH`` = 254, the pretraining length).
        num_samples: samples per lead the model takes; longer recordings are cropped to it. ``None`` (default): the
            processor's feature extractor's (5000 when a tokenizer is given); another value than the feature
            extractor's is an error.
        vocab_size: the model's text vocabulary (``from_config`` sets it); a tokenizer with more tokens is an error,
            since its ids would fall outside the model's embedding.
        seed: base seed of every batch's generator.
        mask_replace_prob / random_replace_prob: of the MLM-selected tokens, the fraction replaced by
            ``mask_token`` (0.8) and by a random token (0.1); the rest keep their id.
        id_column: row key that identifies a sample for seeding; ``"auto"`` picks the first present of
            ``DEFAULT_ID_COLUMNS``; ``None`` always hashes the content (report and ECG checksum).
        ecg_column / report_column: row keys of the signal and of the report.
        missing_report: ``"raise"`` (default) or ``"in_batch"`` for reports absent from ``n3s_index``.
        pad_to_multiple_of: pad the token length to a multiple of this (e.g. 8 for tensor cores).
        same_report_positives: also return ``ets_labels`` (B, B): +1 where the text fed in row j is the ECG of
            row i's own report (after normalization), -1 elsewhere, so that two ECGs whose reports are identical
            (frequent: "sinus rhythm. normal ecg.") are positives of each other's text rather than negatives. Off by
            default: the diagonal-only labels of the official ETS loss (reference spec C.3).
        statement_dropout: with a value > 0, also return an ETS view of each fed text (``ets_input_ids``,
            ``ets_attention_mask``): each statement (sentence, `split_statements`) is dropped with this probability,
            at least one kept, so the ETS loss also aligns ECGs with single findings ("sinus rhythm.") and not only
            with whole reports and their boilerplate ("normal ecg."). ``ets_labels`` are then returned by the subset
            rule (`statement_subset_labels`: +1 where every statement of text j is in ECG i's report), whatever
            ``same_report_positives`` says. MLM and ETM keep the whole fed text. 0 (default, official): no view.
        return_lead_mask: also return ``lead_mask`` (B, C) bool: True where the lead is present (recorded, and kept
            by lead masking), False where it is zero.
        return_mlm_positions: also return ``mlm_positions`` (B, K): the MLM target positions of each row, padded
            with -1 (K = the most targets in a row of the batch). The model then runs its MLM head on exactly those
            positions with a gather whose size the host already knows: no host-device synchronisation.
        mem_noise_tokens: when set (to the model's number of ECG tokens, ``config.num_ecg_tokens``), also return
            ``noise`` (B, mem_noise_tokens), drawn last from the batch's generator: the model's MEM token masking then
            repeats with the batch (reproducible evaluation losses). ``None`` (default): the model draws it.
    """

    processor: Any = field(repr=False)
    n3s_index: N3SIndex | None = None
    negative_fraction: float = 0.5
    mlm_probability: float = 0.25
    mask_token: str = "<extra_id_0>"
    lead_mask_prob: float = 0.5
    max_length: int = MAX_TEXT_LENGTH
    num_samples: int | None = None
    seed: int = 0
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    id_column: str | None = "auto"
    ecg_column: str = "ecg"
    report_column: str = "report"
    missing_report: str = "raise"
    pad_to_multiple_of: int | None = None
    return_lead_mask: bool = False
    same_report_positives: bool = False
    return_mlm_positions: bool = True
    mem_noise_tokens: int | None = None
    statement_dropout: float = 0.0
    vocab_size: int | None = None
    epoch: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"missing_reports": 0, "negatives_without_candidate": 0})

    def __post_init__(self):
        self._check_settings()
        self.processor = self._as_processor(self.processor)
        self.num_samples = self.processor.feature_extractor.num_samples
        self._find_special_tokens()
        self._warned: set[str] = set()

    def _check_settings(self) -> None:
        for name in ("negative_fraction", "mlm_probability", "lead_mask_prob", "mask_replace_prob", "random_replace_prob",
                     "statement_dropout"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            raise ValueError("mask_replace_prob + random_replace_prob must be <= 1")
        if self.missing_report not in ("raise", "in_batch"):
            raise ValueError(f"missing_report must be 'raise' or 'in_batch', got {self.missing_report!r}")
        if int(self.max_length) < 2:
            raise ValueError(f"max_length must be >= 2 (one token and </s>), got {self.max_length}")
        multiple = self.pad_to_multiple_of
        if multiple and int(self.max_length) % int(multiple):
            rounded = -(-int(self.max_length) // int(multiple)) * int(multiple)
            raise ValueError(
                f"max_length={self.max_length} is not a multiple of pad_to_multiple_of={multiple}, which the tokenizer "
                f"refuses; pass max_length={rounded} (or {rounded - int(multiple)})"
            )
        if self.num_samples is not None and int(self.num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.mem_noise_tokens is not None and int(self.mem_noise_tokens) < 1:
            raise ValueError(f"mem_noise_tokens must be >= 1 (the model's config.num_ecg_tokens), got {self.mem_noise_tokens}")
        if self.n3s_index is not None and not isinstance(self.n3s_index, N3SIndex):
            raise TypeError(f"n3s_index must be an N3SIndex (or None), got {type(self.n3s_index).__name__}")

    def _as_processor(self, processor) -> DBetaProcessor:
        """The processor, or a tokenizer wrapped in one whose feature extractor makes `num_samples` samples."""
        if not any(cls.__name__ == DBetaProcessor.__name__ for cls in type(processor).__mro__):
            if not callable(getattr(processor, "convert_tokens_to_ids", None)):
                raise TypeError(f"processor must be a DBetaProcessor or a T5 tokenizer, got {type(processor).__name__}")
            extractor = DBetaECGFeatureExtractor(num_samples=int(self.num_samples or 5000))
            return DBetaProcessor(extractor, processor)
        made = processor.feature_extractor.num_samples
        if self.num_samples is not None and int(self.num_samples) != made:
            raise ValueError(
                f"num_samples={self.num_samples}, but the processor's feature extractor makes {made} samples per lead; "
                f"build the processor with DBetaProcessor.from_tokenizer(..., num_samples={self.num_samples}) or leave "
                "num_samples unset"
            )
        return processor

    def _find_special_tokens(self) -> None:
        """The mask token id, the ids MLM never selects, and the ids a random replacement is drawn from."""
        tok = self.tokenizer
        if tok.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; D-BETA uses a T5 tokenizer (pad id 0)")
        mask_ids = tok.convert_tokens_to_ids([self.mask_token])
        mask_id = mask_ids[0] if mask_ids else None
        if mask_id is None or (mask_id == tok.unk_token_id and self.mask_token != tok.unk_token):
            raise ValueError(
                f"mask_token {self.mask_token!r} is not a token of this tokenizer; T5 tokenizers have the sentinels "
                "'<extra_id_0>' ... '<extra_id_99>' (the default '<extra_id_0>' stands in for [MASK])"
            )
        self.mask_token_id = int(mask_id)
        special = set(int(i) for i in tok.all_special_ids)
        special.update(int(i) for i in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, mask_id) if i is not None)
        vocab_size = len(tok)
        if self.vocab_size is not None and vocab_size > int(self.vocab_size):
            raise ValueError(
                f"the tokenizer has {vocab_size} tokens but the model's text vocabulary only {self.vocab_size}: its "
                "token ids (and the MLM replacements drawn from them) would fall outside the embedding. Use the "
                "tokenizer of the model's text encoder (the checkpoint's DBetaProcessor)"
            )
        added = getattr(tok, "added_tokens_decoder", None) or {}
        special.update(int(i) for i, token in added.items() if getattr(token, "special", False))
        self._special_ids = torch.tensor(sorted(special), dtype=torch.long)
        regular = torch.ones(vocab_size, dtype=torch.bool)
        regular[self._special_ids[self._special_ids < vocab_size]] = False
        self._random_token_ids = torch.nonzero(regular).flatten()
        if self._random_token_ids.numel() == 0:
            raise ValueError("the tokenizer has no non-special token to draw MLM random replacements from")

    @property
    def tokenizer(self):
        """The processor's tokenizer."""
        return self.processor.tokenizer

    # ------------------------------------------------------------------ construction / epochs
    @classmethod
    def from_config(cls, config, processor, n3s_index: N3SIndex | None = None, mem_noise: bool = False,
                    **kwargs) -> "DBetaPreTrainingCollator":
        """Collator for a model of this :class:`~dbeta_hf.DBetaConfig`: its input length (``num_samples``), its text
        vocabulary (``vocab_size``) and, with ``mem_noise=True``, its number of ECG tokens (``mem_noise_tokens``).
        `processor` is a :class:`~dbeta_hf.DBetaProcessor` or a tokenizer (see the class). The other settings are
        the collator's (defaults: the official recipe); ``kwargs`` set them."""
        settings = {"num_samples": config.ecg_config.num_samples,
                    "vocab_size": min(config.vocab_size, config.text_config.vocab_size)}
        if mem_noise:
            settings["mem_noise_tokens"] = config.num_ecg_tokens
        settings.update(kwargs)
        return cls(processor=processor, n3s_index=n3s_index, **settings)

    def set_epoch(self, epoch: int) -> None:
        """Make the draws of the coming epoch differ from the previous ones (same rows, other masks)."""
        self.epoch = int(epoch)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    # ------------------------------------------------------------------ pieces
    def _reports(self, features: Sequence[Mapping[str, Any]]) -> list[str]:
        """The rows' reports, normalized and checked by the processor (an empty report is an error)."""
        reports = []
        for i, row in enumerate(features):
            text = _row_value(row, self.report_column, i)
            if not isinstance(text, str):
                raise TypeError(f"row {i}: report must be a str, got {type(text).__name__}")
            reports.append(text)
        return self.processor.prepare_text(reports)

    def _extract_ecgs(self, features: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, S) float32 ECGs and their (B, C) `lead_mask`, from the processor's feature extractor: millivolts
        at its sampling rate in, cropped to `num_samples`, every value check of the input contract on the way (on
        the stacked batch: the rows are uniform, so the extractor's batch path takes them; `_process_items`)."""
        recordings = []
        for i, row in enumerate(features):
            value = _row_value(row, self.ecg_column, i)
            shape = np.shape(value)  # other layouts get the feature extractor's errors (e.g. a transposed array)
            if len(shape) == 2 and shape[0] == len(CANONICAL_LEAD_NAMES) and shape[1] < self.num_samples:
                raise ValueError(
                    f"row {i}: ecg has {shape[1]} samples, fewer than num_samples={self.num_samples}; resample or pad "
                    "the recordings in the dataset (the model expects 10 s at 500 Hz)"
                )
            recordings.append(value)
        extractor = self.processor.feature_extractor
        try:
            out = extractor(recordings, sampling_rate=extractor.sampling_rate, units="mV", return_tensors="np")
        except ValueError as error:  # the input contract refused a row: name the batch's records too
            column = next((c for c in DEFAULT_ID_COLUMNS if c in features[0]), None) if self.id_column == "auto" \
                else self.id_column
            if column is None or column not in features[0]:
                raise
            ids = ", ".join(f"item {i}: {column}={row.get(column)!r}" for i, row in enumerate(features))
            raise ValueError(f"{error} (the batch's records: {ids})") from error
        return out["ecg_values"], out["lead_mask"]

    def _batch_generator(self, features, reports: list[str], ecgs: np.ndarray) -> torch.Generator:
        column = self.id_column
        if column == "auto":
            column = next((c for c in DEFAULT_ID_COLUMNS if c in features[0]), None)
        digest = hashlib.blake2b(digest_size=8)
        digest.update(f"dbeta-pretraining|seed={int(self.seed)}|epoch={int(self.epoch)}|B={len(features)}|".encode())
        if column is not None:
            for i, row in enumerate(features):
                digest.update(b"id:" + _id_bytes(_row_value(row, column, i)) + b"\x00")
        else:
            sampled = np.ascontiguousarray(ecgs[:, :, ::_CHECKSUM_STRIDE])
            for i, report in enumerate(reports):
                digest.update(b"txt:" + report.encode("utf-8") + b"\x00" + sampled[i].tobytes())
        seed = int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)
        return torch.Generator().manual_seed(seed)

    def _in_batch_negatives(self, reports: list[str], rows: torch.Tensor, weights: torch.Tensor):
        """For each row in ``rows``: another batch row with a different report (uniform), and whether one exists."""
        _, groups = np.unique(np.asarray(reports, dtype=object), return_inverse=True)
        groups = torch.from_numpy(groups.reshape(-1).astype(np.int64))
        candidate = groups[rows][:, None] != groups[None, :]  # (n, B)
        choice = weights.masked_fill(~candidate, -1.0).argmax(dim=1)
        return choice, candidate.any(dim=1)

    def _negatives(self, reports: list[str], ids: torch.Tensor | None, rows: torch.Tensor, generator):
        """(row, negative text) for the chosen rows: N3S when the row's report is indexed, else in-batch.

        The draws are the same whatever the outcome (one N3S column per row when there is an index, then one
        (rows, B) block of in-batch weights), so the rest of the batch's randomness never shifts.
        """
        count = rows.numel()
        use_n3s = [False] * count
        sampled: list[int] = []
        if ids is not None:
            row_ids = ids[rows]
            use_n3s = (row_ids >= 0).tolist()
            sampled = self.n3s_index.sample_negative(row_ids.clamp_min(0), generator=generator).tolist()
        weights = torch.rand((count, len(reports)), generator=generator)
        pairs = []
        if all(use_n3s):
            choice, has_candidate = [], []
        else:
            choice, has_candidate = (t.tolist() for t in self._in_batch_negatives(reports, rows, weights))
        unpaired = 0
        for j, row in enumerate(rows.tolist()):
            if use_n3s[j]:
                pairs.append((row, self.n3s_index.reports[sampled[j]]))
            elif has_candidate[j]:
                pairs.append((row, reports[choice[j]]))
            else:
                unpaired += 1  # no usable negative: the row stays a positive
        if unpaired:
            self.stats["negatives_without_candidate"] += unpaired
            self._warn_once(
                "unpaired",
                "a batch chosen for in-batch negatives has no row with a different report; those rows stay "
                "positives (counted in collator.stats['negatives_without_candidate'])",
            )
        return pairs

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) int64 token ids and attention mask from the processor (the texts are normalized already), padded to
        the longest text (``max_length`` at most)."""
        encoded = self.processor(text=texts, normalize_text=False, max_length=int(self.max_length), truncation=True,
                                 padding="longest", pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        return encoded["input_ids"].to(torch.long), encoded["attention_mask"].to(torch.long)

    def _report_ids(self, reports: list[str]) -> torch.Tensor | None:
        """The N3S index ids of the reports (-1 for the missing ones with ``missing_report="in_batch"``). Every row
        is looked up, negative or not, so that an index built from another corpus fails early."""
        if self.n3s_index is None:
            return None
        missing = "raise" if self.missing_report == "raise" else "ignore"
        ids = torch.from_numpy(self.n3s_index.report_ids(reports, normalize=False, missing=missing))
        num_missing = int((ids < 0).sum())
        if num_missing:
            self.stats["missing_reports"] += num_missing
            self._warn_once(
                "missing",
                f"{num_missing} report(s) of a batch are not in the N3S index; those chosen as negatives get "
                "an in-batch negative instead (counted in collator.stats['missing_reports'])",
            )
        return ids

    def _fed_texts(self, reports: list[str], negative_rows: torch.Tensor, generator) -> tuple[list[str], torch.Tensor]:
        """The text fed with each ECG (its report, or a negative for `negative_rows`) and the (B,) `match_labels`."""
        ids = self._report_ids(reports)
        texts = list(reports)
        match_labels = torch.ones(len(reports), dtype=torch.long)
        if negative_rows.numel():
            for row, text in self._negatives(reports, ids, negative_rows, generator):
                texts[row] = text
                match_labels[row] = 0
        return texts, match_labels

    def _optional_outputs(self, out: dict, reports: list[str], texts: list[str], lead_mask: torch.Tensor,
                          generator: torch.Generator) -> None:
        """The outputs the settings ask for, drawn in this order after the others: MEM noise, then the ETS view."""
        batch = len(reports)
        if self.return_lead_mask:
            out["lead_mask"] = lead_mask
        if self.same_report_positives:
            out["ets_labels"] = same_report_labels(reports, texts)
        if self.return_mlm_positions:
            out["mlm_positions"] = mlm_positions(out["mlm_labels"])
        if self.mem_noise_tokens is not None:
            out["noise"] = torch.rand((batch, int(self.mem_noise_tokens)), generator=generator)
        if self.statement_dropout > 0:  # drawn last: the other draws are those of a collator without the view
            ets_texts = drop_statements(texts, float(self.statement_dropout), generator)
            out["ets_input_ids"], out["ets_attention_mask"] = self._tokenize(ets_texts)
            out["ets_labels"] = statement_subset_labels(reports, ets_texts)

    # ------------------------------------------------------------------ call
    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        features = list(features)
        batch = len(features)
        if batch == 0:
            raise ValueError("cannot collate an empty batch")
        reports = self._reports(features)
        ecgs, recorded = self._extract_ecgs(features)
        generator = self._batch_generator(features, reports, ecgs)

        # draws in a fixed order: negative count and rows, leads, N3S columns, in-batch choices, MLM, MEM noise, ETS view
        offset = torch.rand((), generator=generator, dtype=torch.float64).item()
        num_negatives = min(batch, int(batch * self.negative_fraction + offset))
        negative_rows = torch.randperm(batch, generator=generator)[:num_negatives].sort().values
        kept = mask_leads(ecgs, self.lead_mask_prob, generator)
        texts, match_labels = self._fed_texts(reports, negative_rows, generator)
        token_ids, attention_mask = self._tokenize(texts)
        input_ids, mlm_labels = mlm_mask_tokens(
            token_ids, attention_mask, generator, special_ids=self._special_ids,
            random_token_ids=self._random_token_ids, mask_token_id=self.mask_token_id,
            mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
        )
        out = {
            "ecg_values": torch.from_numpy(ecgs),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mlm_labels": mlm_labels,
            "match_labels": match_labels,
        }
        self._optional_outputs(out, reports, texts, torch.from_numpy(recorded) & kept, generator)
        return out


class DBetaCollatorEpochCallback(TrainerCallback):
    """``transformers.Trainer`` callback that calls ``collator.set_epoch`` at the start of every epoch."""

    def __init__(self, collator: DBetaPreTrainingCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # floor, not round: when resuming mid-epoch, state.epoch is fractional (e.g. 0.75 for epoch 0)
        self.collator.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))
        return control
