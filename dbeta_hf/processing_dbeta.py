"""Processor for D-BETA: the ECG feature extractor and the Flan-T5 tokenizer behind one call."""

from __future__ import annotations

import os
from typing import Any, Sequence

from transformers import AutoTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import TensorType, logging

from .feature_extraction_dbeta import DBetaECGFeatureExtractor
from .text_normalization import normalize_report

DEFAULT_TOKENIZER = "google/flan-t5-base"

logger = logging.get_logger(__name__)


class DBetaProcessor(ProcessorMixin):
    r"""
    Constructs a D-BETA processor: a [`DBetaECGFeatureExtractor`] for the ECG and a T5 tokenizer (Flan-T5-base in
    D-BETA) for the report text.

    Reports are normalized the way D-BETA pretraining normalized them before tokenising
    ([`~dbeta_hf.text_normalization.normalize_report`]: lower case, `ekg` -> `ecg`, `***` / `=-` / `=`
    decorations stripped from the ends; the official pass, twice), so that machine reports and prompts look like
    the pretraining text. Set `normalize_text=False` to tokenise text as given.

    Args:
        feature_extractor ([`DBetaECGFeatureExtractor`]):
            The ECG feature extractor.
        tokenizer ([`PreTrainedTokenizerBase`]):
            The text tokenizer (a T5 tokenizer: pad=0, eos=1).
        normalize_text (`bool`, *optional*, defaults to `True`):
            Apply `normalize_report` to every text before tokenising it.

    Example:

    ```python
    >>> import numpy as np
    >>> from dbeta_hf import DBetaProcessor

    >>> processor = DBetaProcessor.from_tokenizer("google/flan-t5-base")
    >>> inputs = processor(ecg=np.random.randn(12, 5000), sampling_rate=500, text="*** Sinus rhythm. Normal EKG ***")
    >>> sorted(inputs.keys())
    ['attention_mask', 'ecg_values', 'input_ids', 'lead_mask']
    ```
    """

    # transformers 5 infers the two sub-processors from the __init__ signature and loads them through the Auto
    # classes (D-BETA's feature extractor is registered with AutoFeatureExtractor on `import dbeta_hf`). The v4-era
    # `feature_extractor_class = "AutoFeatureExtractor"` form still works but logs a deprecation warning.

    def __init__(self, feature_extractor=None, tokenizer=None, normalize_text: bool = True, **kwargs):
        if feature_extractor is None:
            raise ValueError("DBetaProcessor needs a `feature_extractor` (a DBetaECGFeatureExtractor)")
        if tokenizer is None:
            raise ValueError(
                "DBetaProcessor needs a `tokenizer`; use DBetaProcessor.from_tokenizer('google/flan-t5-base') to "
                "build one with the default D-BETA tokenizer"
            )
        # by class name: with trust_remote_code the feature extractor and this class come from two dynamic modules,
        # so the DBetaECGFeatureExtractor class object this module sees is not the one that was loaded
        if not any(cls.__name__ == DBetaECGFeatureExtractor.__name__ for cls in type(feature_extractor).__mro__):
            raise TypeError(
                f"`feature_extractor` must be a DBetaECGFeatureExtractor, got {type(feature_extractor).__name__}"
            )
        self.normalize_text = bool(normalize_text)
        super().__init__(feature_extractor, tokenizer, **kwargs)

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer_name_or_path: str | os.PathLike | Any = DEFAULT_TOKENIZER,
        normalize_text: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **feature_extractor_kwargs,
    ) -> "DBetaProcessor":
        """
        Build a processor from a tokenizer and feature-extractor settings.

        Args:
            tokenizer_name_or_path (`str`, `os.PathLike` or a tokenizer, *optional*):
                Defaults to `"google/flan-t5-base"` (D-BETA's text encoder). Hub id or local directory passed to `AutoTokenizer.from_pretrained`, or a tokenizer instance.
            normalize_text (`bool`, *optional*, defaults to `True`):
                See [`DBetaProcessor`].
            tokenizer_kwargs (`dict`, *optional*):
                Extra arguments for `AutoTokenizer.from_pretrained` (e.g. `local_files_only=True`).
            feature_extractor_kwargs:
                Settings of the [`DBetaECGFeatureExtractor`] (`sampling_rate`, `num_samples`, `crop`, ...).
        """
        if isinstance(tokenizer_name_or_path, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path, **(tokenizer_kwargs or {}))
        else:
            if tokenizer_kwargs:
                raise ValueError("tokenizer_kwargs can only be used when the tokenizer is given by name or path")
            tokenizer = tokenizer_name_or_path
        return cls(DBetaECGFeatureExtractor(**feature_extractor_kwargs), tokenizer, normalize_text=normalize_text)

    def __call__(
        self,
        ecg=None,
        text: str | Sequence[str] | None = None,
        sampling_rate: float | Sequence[float] | None = None,
        lead_names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        units: str | Sequence[str] | None = None,
        padding: bool | str = True,
        truncation: bool | str = True,
        max_length: int | None = 256,
        return_tensors: str | TensorType | None = "pt",
        **ecg_kwargs,
    ) -> BatchFeature:
        """
        Prepare ECGs and / or texts for the model.

        Args:
            ecg (`np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                Recording(s) of shape `(leads, samples)` or `(batch, leads, samples)`; see
                [`DBetaECGFeatureExtractor.__call__`] for the full contract.
            text (`str` or `list[str]`, *optional*):
                Report(s) or prompt(s). Normalized with `normalize_report` unless `normalize_text=False`.
            sampling_rate (`float` or `list[float]`, *optional*):
                Sampling rate of `ecg` in Hz; required whenever `ecg` is given.
            lead_names (`list[str]` or `list[list[str]]`, *optional*):
                Name of each ECG row; `None` means 12 rows in canonical order.
            units (`str` or `list[str]`, *optional*):
                Units of `ecg` (`"V"`, `"mV"` or `"uV"`); `"mV"` for floating-point input, required for integers.
            padding, truncation, max_length:
                Passed to the tokenizer (defaults: pad to the longest text, truncate at 256 tokens).
            return_tensors (`str` or [`~utils.TensorType`], *optional*, defaults to `"pt"`):
                Tensor type of every output.
            ecg_kwargs:
                `return_num_padded_samples`, `crop`, `non_finite`: passed to the feature extractor.

        Returns:
            [`BatchFeature`] with `ecg_values` and `lead_mask` when `ecg` is given, and `input_ids` and
            `attention_mask` when `text` is given.
        """
        if ecg is None and text is None:
            raise ValueError("DBetaProcessor needs `ecg`, `text` or both; got neither")
        if ecg is None and (sampling_rate is not None or lead_names is not None or ecg_kwargs):
            raise ValueError("`sampling_rate`, `lead_names` and other ECG options were given without `ecg`")

        data: dict[str, Any] = {}
        if ecg is not None:
            ecg_inputs = self.feature_extractor(
                ecg,
                sampling_rate=sampling_rate,
                lead_names=lead_names,
                units=units,
                return_tensors=return_tensors,
                **ecg_kwargs,
            )
            data.update(ecg_inputs)
        if text is not None:
            texts = self._prepare_text(text)
            text_inputs = self.tokenizer(
                texts, padding=padding, truncation=truncation, max_length=max_length, return_tensors=return_tensors
            )
            self._report_truncation(texts, truncation, max_length)
            self._warn_unknown_only(texts, text_inputs["input_ids"])
            data.update(text_inputs)
        return BatchFeature(data=data)

    def _prepare_text(self, text: str | Sequence[str]) -> list[str]:
        if isinstance(text, str):
            texts = [text]
        elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            texts = list(text)
        else:
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}")
        if not texts:
            raise ValueError("`text` is an empty list")
        prepared = [normalize_report(t) for t in texts] if self.normalize_text else texts
        empty = [index for index, t in enumerate(prepared) if not t.strip()]
        if empty:
            shown = ", ".join(f"{index} ({texts[index]!r})" for index in empty[:5])
            raise ValueError(
                f"text(s) {shown} are empty{' after normalization (decoration such as *** is removed)' if self.normalize_text else ''}: "
                "they would tokenise to a lone </s>. Drop them or give them a report"
            )
        return prepared

    def _report_truncation(self, texts: list[str], truncation, max_length: int | None) -> None:
        """Log how many texts were cut at `max_length` tokens (they lose their end)."""
        if not truncation or truncation == "do_not_truncate" or max_length is None:
            return
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        cut = [length for length in lengths if length > max_length]
        if cut:
            logger.warning(
                f"{len(cut)} of {len(texts)} text(s) were longer than max_length={max_length} tokens and were "
                f"truncated (longest: {max(cut)} tokens); pass a larger max_length to keep them whole."
            )

    def _warn_unknown_only(self, texts: list[str], input_ids) -> None:
        """Warn when the tokenizer maps every token of a text to <unk> (wrong tokenizer or wrong language)."""
        unk = self.tokenizer.unk_token_id
        if unk is None:
            return
        special = set(self.tokenizer.all_special_ids) - {unk}
        rows = input_ids.tolist() if hasattr(input_ids, "tolist") else list(input_ids)
        unknown_only = []
        for index, ids in enumerate(rows):
            ids = [i for i in ids if i not in special]
            # a bare word-boundary piece ('▁' in SentencePiece vocabularies) carries no content
            content = [i for i, token in zip(ids, self.tokenizer.convert_ids_to_tokens(ids)) if token.strip("\u2581 ")]
            if content and all(i == unk for i in content):
                unknown_only.append(index)
        if unknown_only:
            shown = ", ".join(f"{index} ({texts[index][:40]!r})" for index in unknown_only[:5])
            logger.warning(
                f"{len(unknown_only)} text(s) are entirely unknown to the tokenizer (every token is <unk>): {shown}. "
                "The model sees no words: check that the tokenizer is the checkpoint's and the text is English."
            )

    @property
    def model_input_names(self) -> list[str]:
        return list(self.feature_extractor.model_input_names) + ["input_ids", "attention_mask"]


__all__ = ["DBetaProcessor"]
