"""Processor for D-BETA: the ECG feature extractor and the Flan-T5 tokenizer behind one call.

The processor and the feature extractor hold every value check of the model inputs (the pretraining collator
prepares its batches with them); the model checks shapes only, so that its forward never waits for the device.
`check_text_inputs` and `DBetaProcessor.check_model_inputs` run the checks on batches built without the processor
(hand-made tensors, another data pipeline).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
from transformers import AutoProcessor, AutoTokenizer
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import TensorType, logging

from .configuration_dbeta import DBetaConfig
from .feature_extraction_dbeta import DBetaECGFeatureExtractor
from .text_normalization import MAX_TEXT_LENGTH, normalize_report

DEFAULT_TOKENIZER = "google/flan-t5-base"
_MAX_ROWS_IN_MESSAGES = 10

logger = logging.get_logger(__name__)


def _as_array(values: Any) -> np.ndarray | list[np.ndarray]:
    """A tensor, an array or nested lists as a 2-D numpy array (a list of 1-D arrays when the rows differ in length)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        return values
    rows = [np.asarray(row) for row in values]
    if not rows:
        return np.zeros((0, 0), dtype=np.int64)
    return np.stack(rows) if len({row.shape for row in rows}) == 1 else rows


def _token_matrix(input_ids: Any, attention_mask: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) int64 ids and bool mask; ragged rows (tokenised without padding) are padded with id 0 and mask 0."""
    ids, mask = _as_array(input_ids), None if attention_mask is None else _as_array(attention_mask)
    if isinstance(ids, list):
        width = max(len(row) for row in ids)
        padded = np.zeros((len(ids), width), dtype=np.int64)
        attended = np.zeros((len(ids), width), dtype=bool)
        for row, values in enumerate(ids):
            padded[row, : len(values)] = values
            attended[row, : len(values)] = True if mask is None else np.asarray(mask[row], dtype=bool)
        return padded, attended
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be a (batch, length) batch of token ids, got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"input_ids must hold integer token ids, got {ids.dtype}")
    attended = np.ones(ids.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if attended.shape != ids.shape:
        raise ValueError(
            f"attention_mask has shape {attended.shape} but input_ids {ids.shape}; pass the attention_mask the "
            "tokenizer returned with these input_ids"
        )
    return ids.astype(np.int64, copy=False), attended


def check_text_inputs(
    input_ids: Any,
    attention_mask: Any | None = None,
    *,
    vocab_size: int | None = None,
    pad_token_id: int | None = 0,
    eos_token_id: int | None = 1,
) -> None:
    """
    Value checks of tokenised texts, on the host before the model sees them.

    Args:
        input_ids (`torch.Tensor`, `np.ndarray` or lists of ids): `(batch, length)` token ids.
        attention_mask (*optional*): `(batch, length)`, 1 on real tokens; `None` attends to every token.
        vocab_size (`int`, *optional*): the model's text vocabulary; ids outside `[0, vocab_size)` are an error.
        pad_token_id / eos_token_id (`int`, *optional*): T5's padding (0) and end-of-text `</s>` (1) ids.

    Raises:
        ValueError: an empty batch, ids outside the vocabulary, an all-zero `attention_mask` row, or a text of only
            `</s>` and padding (an empty report).
    """
    ids, attended = _token_matrix(input_ids, attention_mask)
    if ids.size == 0:
        raise ValueError(f"input_ids is empty (shape {ids.shape}); pass at least one tokenised text")
    if vocab_size is not None:
        out_of_range = (ids < 0) | (ids >= vocab_size)
        if out_of_range.any():
            rows = np.flatnonzero(out_of_range.any(-1))[:_MAX_ROWS_IN_MESSAGES].tolist()
            raise ValueError(
                f"input_ids of text(s) {rows} hold ids outside [0, {vocab_size}) (min {int(ids[out_of_range].min())}, "
                f"max {int(ids[out_of_range].max())}): they come from another tokenizer than the model's text "
                "encoder; tokenise with the checkpoint's DBetaProcessor"
            )
    if not attended.any(-1).all():
        rows = np.flatnonzero(~attended.any(-1))[:_MAX_ROWS_IN_MESSAGES].tolist()
        raise ValueError(
            f"attention_mask rows {rows} are all zero: those texts have no token to attend to. Every text needs at "
            "least one token (the tokenizer's attention_mask has a 1 for each real token)"
        )
    content = attended & ~np.isin(ids, [i for i in (pad_token_id, eos_token_id) if i is not None])
    if not content.any(-1).all():
        rows = np.flatnonzero(~content.any(-1))[:_MAX_ROWS_IN_MESSAGES].tolist()
        raise ValueError(
            f"text(s) {rows} are empty: only padding and the end-of-text token </s> (an empty report, or one of "
            "decoration only such as '***', which text normalization removes). Drop such records or give them a "
            "report"
        )


def check_batch_sizes(num_ecgs: int, num_texts: int) -> None:
    """A paired batch (the fused `DBetaModel` / `DBetaForPreTraining` forward) has one text per ECG."""
    if num_ecgs != num_texts:
        raise ValueError(
            f"ecg_values holds {num_ecgs} ECGs but input_ids {num_texts} texts; pass one text per ECG (for other "
            "pairings, such as one ECG against several prompts, prepare the ECGs and the texts in separate calls and "
            "use get_ecg_features and get_text_features)"
        )


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
    # classes (D-BETA's feature extractor is registered with AutoFeatureExtractor when its module is imported). The v4-era
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

    save_hooks: list = []  # called with the folder after every save (dbeta_hf.register_auto_classes adds the model card's)

    def save_pretrained(self, save_directory, *args, **kwargs):
        result = super().save_pretrained(save_directory, *args, **kwargs)
        for hook in DBetaProcessor.save_hooks:
            hook(save_directory)
        return result

    def __call__(
        self,
        ecg=None,
        text: str | Sequence[str] | None = None,
        sampling_rate: float | Sequence[float] | None = None,
        lead_names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        units: str | Sequence[str] | None = None,
        padding: bool | str = True,
        truncation: bool | str = True,
        max_length: int | None = MAX_TEXT_LENGTH,
        pad_to_multiple_of: int | None = None,
        normalize_text: bool | None = None,
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
            padding, truncation, max_length, pad_to_multiple_of:
                Passed to the tokenizer (defaults: pad to the longest text, truncate at `MAX_TEXT_LENGTH` = 254
                tokens, `</s>` included, the pretraining length).
            normalize_text (`bool`, *optional*):
                Override the processor's `normalize_text` for this call (`False` for texts normalized already).
            return_tensors (`str` or [`~utils.TensorType`], *optional*, defaults to `"pt"`):
                Tensor type of every output.
            ecg_kwargs:
                `return_num_padded_samples`, `crop`, `non_finite`: passed to the feature extractor.

        Returns:
            [`BatchFeature`] with `ecg_values` and `lead_mask` when `ecg` is given, and `input_ids` and
            `attention_mask` when `text` is given. The numbers of ECGs and texts may differ (one ECG scored against
            several prompts with `get_ecg_features` / `get_text_features`); the fused forward of `DBetaModel` and
            `DBetaForPreTraining` takes one text per ECG (`check_model_inputs` checks that).

        Raises:
            ValueError: besides the feature extractor's ECG checks, an empty text (or one of decoration only).
        """
        if ecg is None and text is None:
            raise ValueError("DBetaProcessor needs `ecg`, `text` or both; got neither")
        if ecg is None and (sampling_rate is not None or lead_names is not None or ecg_kwargs):
            raise ValueError("`sampling_rate`, `lead_names` and other ECG options were given without `ecg`")

        data: dict[str, Any] = {}
        if ecg is not None:
            data.update(self.feature_extractor(
                ecg, sampling_rate=sampling_rate, lead_names=lead_names, units=units, return_tensors=return_tensors,
                **ecg_kwargs,
            ))
        if text is not None:
            texts = self.prepare_text(text, normalize_text)
            text_inputs = self.tokenizer(
                texts, padding=padding, truncation=truncation, max_length=max_length,
                pad_to_multiple_of=pad_to_multiple_of, return_tensors=return_tensors,
            )
            self._report_truncation(texts, text_inputs, truncation, max_length)
            self._warn_unknown_only(texts, text_inputs["input_ids"])
            self._check_texts(text_inputs)
            data.update(text_inputs)
        return BatchFeature(data=data)

    def prepare_text(self, text: str | Sequence[str], normalize_text: bool | None = None) -> list[str]:
        """
        The texts as the tokenizer gets them: normalized (`normalize_report`, unless `normalize_text` or the
        processor's setting says otherwise) and checked.

        Raises:
            TypeError: `text` is not a string or a list of strings.
            ValueError: an empty list, or a text that is empty (after normalization: decoration such as `***` is
                removed), which would tokenise to a lone `</s>`.
        """
        if isinstance(text, str):
            texts = [text]
        elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            texts = list(text)
        else:
            raise TypeError(f"`text` must be a string or a list of strings, got {type(text).__name__}")
        if not texts:
            raise ValueError("`text` is an empty list")
        normalize = self.normalize_text if normalize_text is None else bool(normalize_text)
        prepared = [normalize_report(t) for t in texts] if normalize else texts
        empty = [index for index, t in enumerate(prepared) if not t.strip()]
        if empty:
            shown = ", ".join(f"{index} ({texts[index]!r})" for index in empty[:5])
            after = " after normalization (decoration such as *** is removed)" if normalize else ""
            raise ValueError(
                f"text(s) {shown} are empty{after}: they would tokenise to a lone </s>. Drop them or give them a report"
            )
        return prepared

    def _check_texts(self, text_inputs: Mapping[str, Any], vocab_size: int | None = None) -> None:
        check_text_inputs(
            text_inputs["input_ids"], text_inputs.get("attention_mask"), vocab_size=vocab_size,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
        )

    def check_model_inputs(self, inputs: Mapping[str, Any], vocab_size: int | None = None) -> None:
        """
        Every value check of a batch of model inputs built without this processor (hand-made tensors, another data
        pipeline): the feature extractor's ECG checks on `ecg_values` ([`DBetaECGFeatureExtractor.check_values`]),
        [`check_text_inputs`] on `input_ids` / `attention_mask` (and on `ets_input_ids` / `ets_attention_mask`),
        and, when both are given, one text per ECG (the pairing of the fused `DBetaModel` / `DBetaForPreTraining`
        forward).

        Args:
            inputs (`dict` or [`BatchFeature`]): the batch, keyed by the model's argument names.
            vocab_size (`int`, *optional*): the model's text vocabulary (`config.vocab_size`); token ids outside
                it are an error.
        """
        if inputs.get("ecg_values") is not None:
            self.feature_extractor.check_values(inputs["ecg_values"])
        for ids_key, mask_key in (("input_ids", "attention_mask"), ("ets_input_ids", "ets_attention_mask")):
            if inputs.get(ids_key) is not None:
                self._check_texts({"input_ids": inputs[ids_key], "attention_mask": inputs.get(mask_key)}, vocab_size)
        if inputs.get("ecg_values") is not None and inputs.get("input_ids") is not None:
            check_batch_sizes(len(inputs["ecg_values"]), len(inputs["input_ids"]))

    def _report_truncation(self, texts: list[str], text_inputs: Mapping[str, Any], truncation, max_length) -> None:
        """Log how many texts were cut at `max_length` tokens (they lose their end). Only the texts that came out
        `max_length` tokens long can have been cut, so only those are tokenised again."""
        if not truncation or truncation == "do_not_truncate" or max_length is None:
            return
        _, attended = _token_matrix(text_inputs["input_ids"], text_inputs.get("attention_mask"))
        candidates = [texts[row] for row in np.flatnonzero(attended.sum(-1) >= max_length)]
        if not candidates:
            return
        lengths = [len(ids) for ids in self.tokenizer(candidates, truncation=False)["input_ids"]]
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


def check_processor_matches_model(processor, model_or_config, where: str = "") -> None:
    """Refuse a processor (or feature extractor) whose ECG window is not the model's: the output `num_samples`,
    `sampling_rate` and number of leads of its feature extractor against `config.ecg_config`. A processor saved
    with another window (e.g. 250 Hz, 2500 samples) next to a 5000-sample model would otherwise score ECGs of a
    length and rate the model was not trained on, without a word. Pure Python (no tensors, no device sync)."""
    feature_extractor = getattr(processor, "feature_extractor", processor)
    config = getattr(model_or_config, "config", model_or_config)
    ecg_config = getattr(config, "ecg_config", config)
    if feature_extractor is None or ecg_config is None:
        return
    made = {"num_samples": getattr(feature_extractor, "num_samples", None),
            "sampling_rate": getattr(feature_extractor, "sampling_rate", None)}
    lead_names = getattr(feature_extractor, "lead_names", None)
    made["num_leads"] = None if lead_names is None else len(lead_names)
    differ = [f"{name} {made[name]} (processor) != {getattr(ecg_config, name)} (model)" for name in made
              if made[name] is not None and getattr(ecg_config, name, None) is not None
              and float(made[name]) != float(getattr(ecg_config, name))]
    if differ:
        raise ValueError(
            f"{where + ': ' if where else ''}the processor's ECG window does not match the model's: {'; '.join(differ)}. "
            "Load the processor saved with this model (DBetaProcessor.from_pretrained(<model folder>)), or build one "
            f"for it: DBetaProcessor.from_tokenizer(..., num_samples={getattr(ecg_config, 'num_samples', None)}, "
            f"sampling_rate={getattr(ecg_config, 'sampling_rate', None)})"
        )


__all__ = ["DBetaProcessor", "MAX_TEXT_LENGTH", "check_batch_sizes", "check_processor_matches_model",
           "check_text_inputs"]

# The installed package registers the processor with AutoProcessor when this module is imported (see
# dbeta_hf/auto_registration.py); a copy of this file in a saved folder, loaded with trust_remote_code, is
# registered by transformers itself instead.
if __name__.startswith("dbeta_hf."):
    AutoProcessor.register(DBetaConfig, DBetaProcessor, exist_ok=True)
    DBetaProcessor.register_for_auto_class("AutoProcessor")
