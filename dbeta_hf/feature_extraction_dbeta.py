"""Feature extractor for D-BETA: turns raw 12-lead ECG recordings into the model's `ecg_values`.

D-BETA was pretrained on MIMIC-IV-ECG: 12 leads, 10 s at 500 Hz (5000 samples), amplitudes in millivolts,
no filtering and no normalization (reference spec D.3). `DBetaECGFeatureExtractor` declares those
expectations in `preprocessor_config.json` and converts any recording to them, loudly:

* the sampling rate of the input is required and other rates are resampled (anti-aliased polyphase);
* rows are mapped to the canonical lead order by name (MIMIC's aVF/aVL order, PTB-XL's upper-case names,
  CODE-15's DI/DII/DIII, lead subsets), absent leads are zero and reported in `lead_mask`;
* units are converted to millivolts;
* recordings are cropped or zero-padded to 10 s, and padding is logged (and returned on request);
* NaN / infinite samples raise an error unless a policy is chosen;
* an amplitude impossible for the declared units raises, an all-zero recording is warned about.

These value checks are the only ones on ECG values: the model checks shapes only. `check_values` runs them on ECGs
that are already model inputs (prepared datasets), for the pretraining collator and the evaluation code.

Recordings that already have the output rate, the canonical 12 leads and at least `num_samples` samples (the
pretraining collator's rows) are cropped, stacked and screened once as a float32 batch (`_passes_value_checks`);
the recordings the screen cannot clear, and all others, go through the per-record path, the only code that raises
or warns. The outputs and messages are the per-record path's, bit for bit.

The signal processing itself lives in the framework-free `dbeta_hf.ecg_signal`.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Sequence

import numpy as np
from scipy import signal as scipy_signal
from transformers import AutoFeatureExtractor
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import TensorType, is_torch_tensor, logging

from .configuration_dbeta import DBetaConfig, DBetaECGConfig
from .input_convention import check_input_normalization, lead_names_for_order, lead_order_name, per_record_minmax
from .ecg_signal import (
    CANONICAL_LEAD_NAMES,
    MAX_PLAUSIBLE_MEDIAN_ABS_MV,
    MIN_PLAUSIBLE_LEAD_SPAN_MV,
    NON_FINITE_POLICIES,
    RESAMPLE_METHODS,
    _crop_policy,
    canonical_lead_name,
    fix_length,
    handle_non_finite,
    implausible_amplitude,
    implausibly_small_amplitude,
    mark_float32_overflow,
    read_wfdb,
    reorder_leads,
    resample_signal,
    resampling_margin,
    resampling_ratio,
    to_millivolts,
    unit_scale,
    validate_lead_names,
)

logger = logging.get_logger(__name__)

_MAX_ITEMS_IN_MESSAGES = 5
# keys that transformers writes into preprocessor_config.json or passes through from_pretrained
_TRANSFORMERS_KEYS = ("feature_extractor_type", "processor_class", "auto_map", "padding_side")


class _instance_or_default:
    """Method descriptor: on an instance it is a normal method; on the class it runs on a default instance."""

    def __init__(self, function):
        self.function = function
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__

    def __get__(self, instance, owner):
        target = instance if instance is not None else owner()
        return self.function.__get__(target, owner)


class DBetaECGFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Constructs a D-BETA ECG feature extractor.

    Input contract of [`~DBetaECGFeatureExtractor.__call__`]: each recording is an array of shape
    `(leads, samples)` (time on the **last** axis) in physical units, together with its sampling rate and,
    unless it already has the 12 leads in canonical order, the name of each row. The output is always
    `ecg_values` of shape `(batch, 12, num_samples)` (float32, millivolts, canonical lead order, `sampling_rate`
    Hz) and `lead_mask` of shape `(batch, 12)` (bool, True where the lead was present in the input).

    The defaults reproduce D-BETA's pretraining input (MIMIC-IV-ECG: 10 s at 500 Hz in mV, no filter, no
    normalization).

    Args:
        feature_size (`int`, *optional*):
            Number of output leads; defaults to `len(lead_names)` (12) and must equal it.
        sampling_rate (`int`, *optional*, defaults to 500):
            Sampling rate (Hz) of `ecg_values`. Inputs at other rates are resampled to it.
        resample_method (`str`, *optional*, defaults to `"polyphase"`):
            How other rates are resampled (`dbeta_hf.ecg_signal.resample_signal`): `"polyphase"` (anti-aliased
            polyphase Kaiser filter) or `"fft"` (`scipy.signal.resample` of the whole recording to
            `int(samples * sampling_rate / input_rate)` samples, as the official zero-shot notebook resamples
            CODE-15 from 400 to 500 Hz; docs/DIFFERENCES.md section 9), then cropped or padded.
        num_samples (`int`, *optional*, defaults to 5000):
            Length of `ecg_values` (10 s at 500 Hz). Longer recordings are cropped, shorter ones padded.
        lead_names (`list[str]`, *optional*):
            Output lead order, by default the canonical `["I", "II", "III", "aVR", "aVL", "aVF", "V1", ...,
            "V6"]`. Any order or subset of the 12 standard leads may be configured (e.g. to feed a checkpoint
            that was trained in MIMIC-IV-ECG's native I, II, III, aVR, aVF, aVL order).
        units (`str`, *optional*, defaults to `"mV"`):
            Units of `ecg_values` (`"V"`, `"mV"` or `"uV"`).
        padding_value (`float`, *optional*, defaults to 0.0):
            Value appended to recordings shorter than `num_samples` (padding is always at the end).
        crop (`str`, *optional*, defaults to `"start"`):
            Window kept from longer recordings: `"start"` (the first `num_samples` samples, as D-BETA's CODE-15
            evaluation does) or `"center"`.
        non_finite (`str`, *optional*, defaults to `"error"`):
            What to do with NaN / infinite samples: `"error"` (raise, naming the batch item and the leads),
            `"zero"` (set them to 0) or `"interpolate"` (linear interpolation within the lead). A lead with no
            finite sample at all is treated as absent (zeros, `lead_mask` False) by `"zero"` and `"interpolate"`.
        do_filter (`bool`, *optional*, defaults to `False`):
            Apply a zero-phase Butterworth band-pass (`scipy.signal.sosfiltfilt`, odd extension of
            `1 / filter_band[0]` seconds at each end) at `sampling_rate`, before cropping. Off in D-BETA.
        filter_band (`tuple[float, float]`, *optional*, defaults to `(0.5, 100.0)`):
            Pass band in Hz of the optional filter.
        filter_order (`int`, *optional*, defaults to 4):
            Butterworth order of the optional filter (doubled by the forward-backward pass).
        do_normalize (`bool`, *optional*, defaults to `False`):
            Z-score each present lead over its unpadded samples: `(x - mean) / (std + normalize_eps)`. Off in
            D-BETA (its optional normalization: reference spec D.3).
        normalize_eps (`float`, *optional*, defaults to 1e-6):
            Added to the standard deviation when `do_normalize=True`.
        lead_order (`str`, *optional*):
            The checkpoint's input channel order by name (`dbeta_hf.input_convention`): `"standard"` (I, II, III,
            aVR, aVL, aVF, V1-V6) or `"mimic"` (I, II, III, aVR, aVF, aVL, V1-V6, MIMIC-IV-ECG's stored order);
            sets `lead_names`. Saved (as `"custom"` for any other `lead_names`), so the processor of a model
            always records the order it expects.
        input_normalization (`str`, *optional*):
            `"none"` (millivolts), `"per-lead-zscore"` (sets `do_normalize=True`) or `"per-record-minmax"` (MERL's
            and MELP's `(x - min) / (max - min + 1e-8)` with one minimum and maximum over all present leads, taken
            after cropping / padding in the output lead order, the padding included; absent leads stay 0;
            `dbeta_hf.input_convention.per_record_minmax`). Saved alongside `lead_order`.
        return_attention_mask (`bool`, *optional*, defaults to `False`):
            Not supported (D-BETA uses no sample-level mask); kept for API compatibility and must stay False.
        check_amplitude (`bool`, *optional*, defaults to `True`):
            Refuse recordings whose amplitude cannot be in the declared units (median |x| above 50 mV or median
            lead span above 100 mV once converted, as with microvolts or ADC counts passed as millivolts; see
            `dbeta_hf.ecg_signal.implausible_amplitude`). Set to False only for signals that are not ECGs.

    Unknown settings are an error (a misspelt `num_sample=2500` would otherwise be stored and ignored).

    Example:

    ```python
    >>> import numpy as np
    >>> from dbeta_hf import DBetaECGFeatureExtractor

    >>> feature_extractor = DBetaECGFeatureExtractor()
    >>> ecg = np.random.randn(12, 4096)  # CODE-15: 400 Hz, canonical order, mV
    >>> inputs = feature_extractor(ecg, sampling_rate=400, return_tensors="pt")
    >>> inputs["ecg_values"].shape, inputs["lead_mask"].shape
    (torch.Size([1, 12, 5000]), torch.Size([1, 12]))
    ```
    """

    model_input_names = ["ecg_values", "lead_mask"]

    def __init__(
        self,
        feature_size: int | None = None,
        sampling_rate: int = 500,
        num_samples: int = 5000,
        resample_method: str = "polyphase",
        lead_names: Sequence[str] | None = None,
        units: str = "mV",
        padding_value: float = 0.0,
        crop: str = "start",
        non_finite: str = "error",
        do_filter: bool = False,
        filter_band: Sequence[float] = (0.5, 100.0),
        filter_order: int = 4,
        do_normalize: bool | None = None,
        normalize_eps: float = 1e-6,
        lead_order: str | None = None,
        input_normalization: str | None = None,
        return_attention_mask: bool = False,
        check_amplitude: bool = True,
        **kwargs,
    ):
        self._reject_unknown_settings(kwargs)
        lead_names, do_normalize, input_normalization = self._apply_input_convention(
            lead_names, do_normalize, lead_order, input_normalization)
        if feature_size is None:
            feature_size = len(lead_names)
        if feature_size != len(lead_names):
            raise ValueError(
                f"feature_size ({feature_size}) must equal the number of output `lead_names` ({len(lead_names)})"
            )
        if return_attention_mask:
            raise ValueError(
                "DBetaECGFeatureExtractor does not return an attention mask (D-BETA uses none); padding is reported "
                "by `return_num_padded_samples=True` and by a logged warning. Leave return_attention_mask=False."
            )
        padding_side = kwargs.get("padding_side", "right")
        if padding_side != "right":
            raise ValueError(
                f"DBetaECGFeatureExtractor pads at the end only (padding_side='right'), got {padding_side!r}"
            )
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=False,
            **kwargs,
        )
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float)) or not sampling_rate > 0:
            raise ValueError(f"sampling_rate must be a positive number of Hz, got {sampling_rate!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        unit_scale(units)  # validates
        if resample_method not in RESAMPLE_METHODS:
            raise ValueError(f"resample_method must be one of {list(RESAMPLE_METHODS)}, got {resample_method!r}")
        if non_finite not in NON_FINITE_POLICIES:
            raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}, got {non_finite!r}")
        filter_band = [float(f) for f in filter_band]
        if len(filter_band) != 2 or not 0 < filter_band[0] < filter_band[1] < sampling_rate / 2:
            raise ValueError(
                f"filter_band must be (low, high) Hz with 0 < low < high < sampling_rate / 2 = {sampling_rate / 2}, "
                f"got {filter_band}"
            )
        if isinstance(filter_order, bool) or not isinstance(filter_order, int) or filter_order < 1:
            raise ValueError(f"filter_order must be a positive integer, got {filter_order!r}")

        self.num_samples = num_samples
        self.resample_method = resample_method
        self.lead_names = lead_names
        self.units = units
        self.crop = _crop_policy(crop)
        self.non_finite = non_finite
        self.do_filter = bool(do_filter)
        self.filter_band = filter_band
        self.filter_order = filter_order
        self.do_normalize = bool(do_normalize)
        self.normalize_eps = float(normalize_eps)
        self.check_amplitude = bool(check_amplitude)
        self.lead_order = lead_order_name(self.lead_names)
        self.input_normalization = input_normalization

    @classmethod
    def _reject_unknown_settings(cls, kwargs: dict) -> None:
        unknown = sorted(set(kwargs) - set(_TRANSFORMERS_KEYS))
        if unknown:
            valid = [name for name in inspect.signature(cls.__init__).parameters if name not in ("self", "kwargs")]
            raise TypeError(
                f"{cls.__name__} got unknown setting(s) {unknown}; valid settings: {', '.join(valid)}. Per-call "
                "options (sampling_rate of the input, lead_names of its rows, units) go to the __call__."
            )

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict[str, Any], **kwargs):
        """As `FeatureExtractionMixin.from_dict`; a load-time override of one form of a setting (`lead_names` or
        `lead_order`, `do_normalize` or `input_normalization`) replaces the saved value of the other form."""
        feature_extractor_dict = dict(feature_extractor_dict)
        for pair in (("lead_names", "lead_order"), ("do_normalize", "input_normalization")):
            for given, saved in (pair, pair[::-1]):
                if given in kwargs and saved not in kwargs:
                    feature_extractor_dict.pop(saved, None)
        return super().from_dict(feature_extractor_dict, **kwargs)

    @classmethod
    def _apply_input_convention(cls, lead_names, do_normalize, lead_order, input_normalization):
        """Resolve `lead_order` / `input_normalization` into `lead_names` / `do_normalize` (True only for
        ``"per-lead-zscore"``) and the input normalization's name; conflicts raise."""
        names = list(CANONICAL_LEAD_NAMES) if lead_names is None else cls._validate_output_leads(lead_names)
        if lead_order is not None:
            if lead_order == "custom":  # a saved config with explicit lead_names
                if lead_names is None or lead_order_name(names) != "custom":
                    raise ValueError(
                        "lead_order='custom' needs lead_names=[...] that is neither the standard nor the mimic order"
                    )
            else:
                order = lead_names_for_order(lead_order)
                if lead_names is not None and names != order:
                    raise ValueError(
                        f"lead_order={lead_order!r} means lead_names={order}, but lead_names={list(lead_names)} was "
                        "also given; pass one of them"
                    )
                names = order
        if input_normalization is not None:
            wanted = check_input_normalization(input_normalization) == "per-lead-zscore"
            if do_normalize is not None and bool(do_normalize) != wanted:
                raise ValueError(
                    f"input_normalization={input_normalization!r} contradicts do_normalize={do_normalize!r}; pass one "
                    "of them"
                )
            do_normalize = wanted
        else:
            input_normalization = "per-lead-zscore" if do_normalize else "none"
        return names, bool(do_normalize), input_normalization

    @staticmethod
    def _validate_output_leads(lead_names: Sequence[str]) -> list[str]:
        if isinstance(lead_names, str):
            raise TypeError(f"lead_names must be a list of lead names, not the string {lead_names!r}")
        names = [canonical_lead_name(name) for name in lead_names]
        if not names:
            raise ValueError("lead_names must name at least one output lead")
        if len(set(names)) != len(names):
            raise ValueError(f"lead_names must not repeat a lead, got {list(lead_names)}")
        return names

    # ------------------------------------------------------------------------------------------ main entry
    def __call__(
        self,
        ecg: np.ndarray | Any | Sequence[np.ndarray | Any],
        sampling_rate: float | Sequence[float] | None = None,
        lead_names: Sequence[str] | Sequence[Sequence[str]] | None = None,
        units: str | Sequence[str] | None = None,
        return_tensors: str | TensorType | None = None,
        return_num_padded_samples: bool = False,
        crop: str | None = None,
        non_finite: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Convert one or several ECG recordings into model inputs.

        Args:
            ecg (`np.ndarray`, `torch.Tensor` or a list of them):
                One recording of shape `(leads, samples)`, a batch of shape `(batch, leads, samples)`, or a list
                of recordings of shape `(leads, samples)` whose lengths (and rates, and leads) may differ. Time
                is the last axis: transpose `(samples, leads)` arrays first.
            sampling_rate (`float` or `list[float]`):
                Sampling rate in Hz of the input (one value, or one per recording). **Required**; recordings at
                another rate than `self.sampling_rate` are resampled (`resample_method`).
            lead_names (`list[str]` or `list[list[str]]`, *optional*):
                Name of each input row, shared by all recordings or one list per recording. Case-insensitive
                (`"AVR"` = `"aVR"`), CODE-15's `"DI"`/`"DII"`/`"DIII"` accepted; any subset of the 12 standard
                leads (e.g. `["II"]`); absent leads are zero and False in `lead_mask`. Unknown or duplicated
                names raise. `None` means exactly 12 rows in canonical order (I, II, III, aVR, aVL, aVF,
                V1-V6). MIMIC-IV-ECG files store I, II, III, aVR, **aVF, aVL**, V1-V6: pass their names.
            units (`str` or `list[str]`, *optional*):
                Units of the input, `"V"`, `"mV"` or `"uV"` (`"µV"`), for all rows or one per row. Floating-point
                input defaults to `"mV"`; integer input (often ADC counts) must name its units (divide ADC counts by
                the gain first). A recording whose amplitude is implausible for its units is an error (see
                `check_amplitude`); an all-zero recording is warned about and gets an all-False `lead_mask`.
            return_tensors (`str` or [`~utils.TensorType`], *optional*):
                `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.
            return_num_padded_samples (`bool`, *optional*, defaults to `False`):
                Also return `num_padded_samples` (batch,): samples appended to each recording (at the output
                rate). Not a model input. Padding is logged as a warning either way.
            crop (`str`, *optional*):
                Override `self.crop` for this call (`"start"` or `"center"`).
            non_finite (`str`, *optional*):
                Override `self.non_finite` for this call (`"error"`, `"zero"` or `"interpolate"`).

        Returns:
            [`BatchFeature`] with `ecg_values` (batch, 12, num_samples) float32 and `lead_mask` (batch, 12) bool
            (and `num_padded_samples` (batch,) int64 if requested). A single recording gives a batch of one.
        """
        if kwargs:
            raise TypeError(
                f"{self.__class__.__name__}.__call__ got unexpected argument(s) {sorted(kwargs)}; the output length "
                "and lead layout are settings of the feature extractor (num_samples, lead_names, crop)"
            )
        if sampling_rate is None:
            raise ValueError(
                f"`sampling_rate` is required: pass the rate (Hz) at which `ecg` was recorded, e.g. "
                f"feature_extractor(ecg, sampling_rate=500). This feature extractor outputs {self.sampling_rate} Hz "
                "and resamples other rates; guessing the rate would silently corrupt the signal."
            )
        crop = self.crop if crop is None else _crop_policy(crop)
        non_finite = self.non_finite if non_finite is None else non_finite
        if non_finite not in NON_FINITE_POLICIES:
            raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}, got {non_finite!r}")

        recordings = self._split_batch(ecg)
        batch_size = len(recordings)
        rates = self._per_item_rates(sampling_rate, batch_size)
        names = self._per_item_lead_names(lead_names, batch_size)

        values, masks, padded = self._process_items(recordings, rates, names, units, crop, non_finite)
        self._report_padding(padded)
        data = {"ecg_values": values, "lead_mask": masks}
        if return_num_padded_samples:
            data["num_padded_samples"] = np.asarray(padded, dtype=np.int64)
        return BatchFeature(data=data, tensor_type=return_tensors)

    @_instance_or_default
    def from_wfdb(
        self,
        record_path: str | os.PathLike | Sequence[str | os.PathLike],
        lead_names: Sequence[str] | None = None,
        units: str | Sequence[str] | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Read one or several WFDB records (`.hea` + `.dat`) and convert them like [`~DBetaECGFeatureExtractor.__call__`].

        Callable on an instance (its settings apply) or on the class, `DBetaECGFeatureExtractor.from_wfdb(path)`,
        which uses the default D-BETA settings (500 Hz, 5000 samples, canonical lead order, mV).

        The sampling rate, the signal names and the per-signal units come from each header (MIMIC-IV-ECG:
        500 Hz, I, II, III, aVR, aVF, aVL, V1-V6, mV; PTB-XL: upper-case AVR/AVL/AVF), so leads end up in the
        canonical order whatever the file order.

        Args:
            record_path (`str`, `os.PathLike` or a list of them):
                Record path(s) without extension (`.../40689238`); `.hea` / `.dat` suffixes are accepted.
            lead_names (`list[str]`, *optional*):
                Override the header's signal names (for headers with non-standard names).
            units (`str` or `list[str]`, *optional*):
                Override the header's units.
            return_tensors (`str` or [`~utils.TensorType`], *optional*):
                `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.
            kwargs:
                `return_num_padded_samples`, `crop`, `non_finite`, passed to `__call__`.

        Raises:
            FileNotFoundError: a header or signal file is missing.
            ValueError: a header cannot be parsed, or the record fails the checks of `__call__`.
        """
        paths = [record_path] if isinstance(record_path, (str, os.PathLike)) else list(record_path)
        if not paths:
            raise ValueError("from_wfdb needs at least one record path")
        recordings, rates, names = [], [], []
        for path in paths:
            signal, fs, header_names, header_units = read_wfdb(path)
            record_names = list(header_names if lead_names is None else lead_names)
            try:
                validate_lead_names(record_names, *signal.shape)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"WFDB record {os.fspath(path)!r}: {error} Pass `lead_names=` to override the header's signal names."
                ) from error
            try:
                signal = to_millivolts(signal, header_units if units is None else units)
            except ValueError as error:
                raise ValueError(
                    f"WFDB record {os.fspath(path)!r}: {error} Pass `units=` to override the header."
                ) from error
            recordings.append(signal)
            rates.append(fs)
            names.append(record_names)
        return self(
            recordings, sampling_rate=rates, lead_names=names, units="mV", return_tensors=return_tensors, **kwargs
        )

    def pad(self, processed_features, return_tensors: str | TensorType | None = None, **kwargs) -> BatchFeature:
        """
        Collate already extracted features (a list of per-example dicts, e.g. rows of a `datasets.Dataset`
        mapped through this extractor) into one batch.

        Every example already has exactly `num_samples` samples, so this only stacks `ecg_values`,
        `lead_mask` and (if present) `num_padded_samples`; it does not accept raw recordings (call the
        feature extractor on those instead). Unlike [`SequenceFeatureExtractor.pad`], it handles the
        `(leads, samples)` layout.
        """
        if isinstance(processed_features, dict):
            processed_features = [processed_features]
        if not processed_features:
            raise ValueError("pad() needs at least one example")
        keys = [k for k in ("ecg_values", "lead_mask", "num_padded_samples") if k in processed_features[0]]
        if "ecg_values" not in keys:
            raise ValueError(f"pad() expects examples with 'ecg_values', got keys {list(processed_features[0])}")
        data = {}
        for key in keys:
            unbatched_ndim = {"ecg_values": 2, "lead_mask": 1, "num_padded_samples": 0}[key]
            arrays = []
            for index, example in enumerate(processed_features):
                if key not in example:
                    raise ValueError(f"example {index} has no {key!r}")
                value = self._to_numpy(example[key]) if key != "lead_mask" else np.asarray(example[key], dtype=bool)
                if value.ndim == unbatched_ndim + 1 and value.shape[0] == 1:  # a batch of one
                    value = value[0]
                arrays.append(value)
            shapes = {a.shape for a in arrays}
            if len(shapes) != 1:
                raise ValueError(
                    f"cannot stack {key!r} of shapes {sorted(shapes)}; run every example through the feature extractor "
                    "first so that all have the same shape"
                )
            data[key] = np.stack(arrays)
        data["ecg_values"] = data["ecg_values"].astype(np.float32)
        if "lead_mask" in data:
            data["lead_mask"] = data["lead_mask"].astype(bool)
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------ batch path
    def _process_items(
        self, recordings: list[np.ndarray], rates: list[float], names: list, units, crop: str, non_finite: str
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """`(ecg_values, lead_mask, num_padded)` of a batch: (B, leads, num_samples) float32, (B, leads) bool, B ints.

        The recordings that already have the output rate, the canonical 12 leads and at least `num_samples` samples
        (`_uniform_items`) are cropped and stacked, and their value checks run once on the stacked batch
        (`_batch_values`, `_passes_value_checks`). Every other recording, and every recording the batch checks
        cannot clear, goes through the per-record path (`_process_one`) in item order, so the outputs, errors and
        warnings are exactly those of the per-record path.
        """
        batch_size = len(recordings)
        uniform = self._uniform_items(recordings, rates, names, units)
        batch, passed = self._batch_values([recordings[i] for i in uniform], units, crop)
        cleared = {item: row for row, item in enumerate(uniform) if passed[row]}
        padded = [0] * batch_size
        if len(cleared) == batch_size:
            return batch, np.ones(batch.shape[:2], dtype=bool), padded
        values = np.empty((batch_size, len(self.lead_names), self.num_samples), dtype=np.float32)
        masks = np.ones((batch_size, len(self.lead_names)), dtype=bool)
        for item, (recording, rate, item_names) in enumerate(zip(recordings, rates, names)):
            if item in cleared:
                values[item] = batch[cleared[item]]
                continue
            try:
                values[item], masks[item], padded[item] = self._process_one(
                    recording, rate, item_names, units, crop, non_finite, item=item if batch_size > 1 else None
                )
            except (ValueError, TypeError) as error:
                message = str(error)
                if batch_size > 1 and not message.startswith("ECG item"):
                    message = f"ECG item {item}: {message}"
                raise type(error)(message) from error
        return values, masks, padded

    def _uniform_items(self, recordings: list[np.ndarray], rates: list[float], names: list, units) -> list[int]:
        """The items whose conversion is a crop and a cast only: the output `sampling_rate`, 12 rows in canonical
        order (no `lead_names`), at least `num_samples` samples, units given as one string (or float input, read as
        mV), and settings without filter, normalization or output units other than mV. None when another setting
        applies or `units` is invalid (the per-record path then raises its error)."""
        if self.do_filter or self.do_normalize or self.input_normalization != "none" or unit_scale(self.units) != 1.0:
            return []
        if units is not None and not isinstance(units, str):
            return []
        try:
            unit_scale("mV" if units is None else units)
        except (TypeError, ValueError):
            return []
        return [
            item
            for item, (recording, rate, item_names) in enumerate(zip(recordings, rates, names))
            if item_names is None and rate == self.sampling_rate and recording.ndim == 2
            and recording.shape[0] == len(CANONICAL_LEAD_NAMES) and recording.shape[1] >= self.num_samples
            and (units is not None or recording.dtype.kind == "f")
        ]

    def _batch_values(self, recordings: list[np.ndarray], units, crop: str) -> tuple[np.ndarray, np.ndarray]:
        """Crop `recordings` (uniform, see `_uniform_items`) to their output window and stack them: (n, leads,
        num_samples) float32 in mV in `lead_names` order, with the (n,) bool result of `_passes_value_checks`.

        The values are bit-identical to the per-record path's: float16 / float32 millivolts are cast to float32
        directly (exact), anything else takes the per-record arithmetic (float64, times the unit scale, values beyond
        the float32 range marked infinite, then the float32 cast)."""
        scale = unit_scale("mV" if units is None else units)
        exact = scale == 1.0 and all(r.dtype in (np.float16, np.float32) for r in recordings)
        batch = np.empty((len(recordings), len(CANONICAL_LEAD_NAMES), self.num_samples),
                         dtype=np.float32 if exact else np.float64)
        for row, recording in enumerate(recordings):  # a copy per record; the checks below run on the whole batch
            start = 0 if crop == "start" else (recording.shape[1] - self.num_samples) // 2
            batch[row] = recording[:, start:start + self.num_samples]
        if not exact:
            if scale != 1.0:
                batch *= scale
            batch = mark_float32_overflow(batch).astype(np.float32)
        passed = self._passes_value_checks(batch)
        if self.lead_names != CANONICAL_LEAD_NAMES:
            batch = batch[:, [CANONICAL_LEAD_NAMES.index(name) for name in self.lead_names]]
        return batch, passed

    def _passes_value_checks(self, batch: np.ndarray) -> np.ndarray:
        """(B,) bool: True for each record of `batch` (B, leads, samples), float32 millivolts, that certainly passes
        the value checks of `_checked_signal` without an error or a warning; False means "not cleared", and the
        caller then runs `_checked_signal` itself on that record (it alone raises and warns, with its messages).

        Sufficient conditions only, each with a factor of two to the limits of `implausible_amplitude` and
        `implausibly_small_amplitude`: every value finite; not all zeros; every |x| <= 25 mV (so the median |x| is
        below 50 mV, and every lead's 1st-99th percentile span below 50 mV, half of `MAX_PLAUSIBLE_LEAD_SPAN_MV`);
        every lead constant (a flat lead, left out of the median span) or with more than 1 % of its samples (plus 3) at least
        0.01 mV above its mean and as many at least 0.01 mV below (so its 1st and 99th percentiles are at least
        0.02 mV apart, twice the small-amplitude limit).
        """
        if batch.shape[-1] == 0:
            return np.zeros(batch.shape[0], dtype=bool)
        high, low = batch.max(axis=-1), batch.min(axis=-1)  # NaN propagates
        with np.errstate(invalid="ignore", over="ignore"):
            passed = (np.isfinite(high) & np.isfinite(low)).all(axis=-1) & ((high != 0) | (low != 0)).any(axis=-1)
            if not self.check_amplitude:
                return passed
            high64, low64 = high.astype(np.float64), low.astype(np.float64)
            passed &= (np.maximum(np.abs(high64), np.abs(low64)) <= MAX_PLAUSIBLE_MEDIAN_ABS_MV / 2).all(axis=-1)
            need = math.ceil(0.01 * batch.shape[-1]) + 3
            pivot = batch.mean(axis=-1, keepdims=True)
            above = np.count_nonzero(batch >= pivot + MIN_PLAUSIBLE_LEAD_SPAN_MV, axis=-1)
            below = np.count_nonzero(batch <= pivot - MIN_PLAUSIBLE_LEAD_SPAN_MV, axis=-1)
            passed &= ((high == low) | ((above >= need) & (below >= need))).all(axis=-1)
        return passed

    # ------------------------------------------------------------------------------------------ helpers
    def _process_one(
        self,
        recording: np.ndarray,
        sampling_rate: float,
        lead_names: Sequence[str] | None,
        units: str | Sequence[str],
        crop: str,
        non_finite: str,
        item: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        # `_split_batch` has already checked that `recording` is 2-D (leads, samples)
        if recording.shape[0] == 0 or recording.shape[1] == 0:
            raise ValueError(f"got an empty ECG of shape {recording.shape}; each recording needs leads and samples")

        row_names = list(lead_names) if lead_names is not None else None
        canonical_rows = validate_lead_names(row_names, *recording.shape) or list(CANONICAL_LEAD_NAMES)
        message_names = row_names if row_names is not None else list(CANONICAL_LEAD_NAMES)
        units = self._input_units(recording, units)

        # crop to the output window (plus the resampling filter's reach) first: a long recording is never copied whole
        num_input = recording.shape[-1]
        start, stop, skip = self._input_window(num_input, sampling_rate, crop)
        recording = recording[:, start:stop]
        if (start, stop, skip) != (0, num_input, 0):
            crop = "start"  # the output window begins at output sample `skip` of the cut

        signal_mv = mark_float32_overflow(to_millivolts(recording.astype(np.float64), units))
        signal, empty_rows, all_zero = self._checked_signal(
            signal_mv, units, non_finite, item, message_names, "; its lead_mask is all False"
        )

        signal = resample_signal(signal, sampling_rate, self.sampling_rate, method=self.resample_method)[:, skip:]
        ordered, mask = reorder_leads(signal, row_names)
        for row in empty_rows:
            mask[CANONICAL_LEAD_NAMES.index(canonical_rows[row])] = False
        if all_zero:
            mask[:] = False
        if self.lead_names != CANONICAL_LEAD_NAMES:
            index = [CANONICAL_LEAD_NAMES.index(name) for name in self.lead_names]
            ordered, mask = ordered[index], mask[index]

        if self.do_filter:
            ordered = self._bandpass(ordered)
        fixed, num_padded = fix_length(ordered, self.num_samples, crop=crop, pad_value=self.padding_value)
        if self.do_normalize:
            valid = self.num_samples - num_padded
            segment = fixed[mask, :valid]
            mean = segment.mean(axis=-1, keepdims=True)
            std = segment.std(axis=-1, keepdims=True)
            fixed[mask, :valid] = (segment - mean) / (std + self.normalize_eps)
        elif self.input_normalization == "per-record-minmax" and mask.any():
            # MERL / MELP: one minimum and maximum over the record as fed (padding included); absent leads stay 0
            fixed[mask] = per_record_minmax(fixed[mask])
        return fixed, mask, num_padded

    def _checked_signal(
        self, signal_mv: np.ndarray, units, non_finite: str, item: int | None, lead_names: Sequence[str],
        all_zero_consequence: str = "",
    ) -> tuple[np.ndarray, list[int], bool]:
        """The value checks of one recording (leads, samples) given in millivolts: NaN / inf meet the `non_finite`
        policy, an amplitude impossible for `units` raises (`check_amplitude`), an all-zero recording is warned about.
        Returns the recording in `self.units` without non-finite values, the rows that had no finite sample, and
        whether the recording is all zeros."""
        signal = signal_mv / unit_scale(self.units)
        empty_rows = [row for row in range(signal.shape[0]) if not np.isfinite(signal[row]).any()]
        signal = handle_non_finite(signal, non_finite, item=item, lead_names=lead_names)
        if empty_rows:
            logger.warning(
                f"ECG lead(s) {', '.join(lead_names[r] for r in empty_rows)} contain no finite sample; treated as "
                "absent (zeros, lead_mask False)."
            )
        self._check_amplitude(signal_mv, units, item)
        # after the float32 cast of the model input: values below float32's range (1e-300) become zeros there
        all_zero = not signal.astype(np.float32).any()
        if not all_zero:
            self._check_small_amplitude(signal_mv.astype(np.float32), units, item)
        if all_zero:
            where = f"ECG item {item}" if item is not None else "The ECG"
            logger.warning(f"{where} is all zeros (no signal at all){all_zero_consequence}.")
        return signal, empty_rows, all_zero

    @_instance_or_default
    def check_values(self, ecg_values: np.ndarray | Any) -> None:
        """
        Run the value checks of [`~DBetaECGFeatureExtractor.__call__`] on ECGs that are already model inputs.

        Callable on an instance (its `units`, `lead_names` and `check_amplitude` apply) or on the class with the
        default settings, `DBetaECGFeatureExtractor.check_values(batch)`. Nothing is converted or returned.

        Args:
            ecg_values (`np.ndarray` or `torch.Tensor`):
                A batch `(batch, leads, samples)` in this extractor's `units` and `lead_names` order, e.g. the
                `ecg_values` of a dataset that was prepared beforehand.

        Raises:
            ValueError: an empty batch, NaN / infinite values (naming the item and the lead), or an amplitude that
                is impossible for the units (see `check_amplitude`). An all-zero recording is warned about.
        """
        values = self._to_numpy(ecg_values)
        if values.ndim != 3 or values.shape[0] == 0:
            raise ValueError(f"ecg_values must be a non-empty (batch, leads, samples) batch, got shape {values.shape}")
        if values.shape[1] != len(self.lead_names):
            raise ValueError(
                f"ecg_values has {values.shape[1]} leads, this feature extractor's output has {len(self.lead_names)} "
                f"({', '.join(self.lead_names)}); prepare raw recordings with the feature extractor itself"
            )
        cleared = np.zeros(len(values), dtype=bool)
        if unit_scale(self.units) == 1.0:  # one pass over the batch clears the ordinary records (`_passes_value_checks`)
            exact = values.dtype in (np.float16, np.float32)
            cleared = self._passes_value_checks(
                (values if exact else mark_float32_overflow(values.astype(np.float64))).astype(np.float32, copy=False)
            )
        for item in np.flatnonzero(~cleared).tolist():
            recording = values[item]
            signal_mv = mark_float32_overflow(to_millivolts(recording.astype(np.float64), self.units))
            self._checked_signal(signal_mv, self.units, "error", item if len(values) > 1 else None, self.lead_names)

    @staticmethod
    def _input_units(recording: np.ndarray, units: str | Sequence[str] | None) -> str | Sequence[str]:
        if units is not None:
            return units
        if recording.dtype.kind in "iu":
            raise ValueError(
                f"got integer ECG values ({recording.dtype}) without `units`: integers are usually ADC counts. Divide "
                "them by the gain (ADC counts per mV, in the WFDB header: 200 for MIMIC-IV-ECG, 1000 for PTB-XL) and "
                "pass the floats, or pass units='mV' / 'uV' if the integers are already physical values."
            )
        return "mV"

    def _check_amplitude(self, signal_mv: np.ndarray, units: str | Sequence[str], item: int | None = None) -> None:
        if not self.check_amplitude:
            return
        problem = implausible_amplitude(signal_mv)
        if problem is not None:
            declared = units if isinstance(units, str) else list(units)
            if implausible_amplitude(signal_mv / 1000.0) is None:
                fix = "The values look like microvolts: pass units='uV'."
            else:
                fix = "If they are ADC counts, divide them by the gain (ADC counts per mV, in the WFDB header) first."
            where = f"ECG item {item}: " if item is not None else ""
            raise ValueError(
                f"{where}the ECG amplitude is implausible for units={declared!r}: {problem}. {fix} "
                "DBetaECGFeatureExtractor(check_amplitude=False) turns this check off."
            )

    def _check_small_amplitude(self, signal_mv: np.ndarray, units, item: int | None) -> None:
        """Warn (not refuse: a flat-line recording can be real) when the amplitude is implausibly small for the
        declared units, naming the likely unit (`implausibly_small_amplitude`)."""
        if not self.check_amplitude:
            return
        problem = implausibly_small_amplitude(signal_mv)
        if problem is not None:
            where = f"ECG item {item}" if item is not None else "The ECG"
            declared = units if isinstance(units, str) else list(units)
            logger.warning(f"{where}: the amplitude is implausibly small for units={declared!r}: {problem}.")

    def _input_window(self, num_input: int, sampling_rate: float, crop: str) -> tuple[int, int, int]:
        """`(start, stop, skip)`: resampling `recording[:, start:stop]` and dropping its first `skip` output samples
        gives the output window (the first `num_samples` samples, or the central ones) of the whole recording.

        The cut keeps the resampling filter's reach (`resampling_margin`) on both sides and starts on a multiple
        of `down` input samples, so the output grid is the same as for the whole recording. Recordings that will
        be padded, and all recordings when `do_filter=True` (the band-pass sees the whole recording), are kept
        whole.
        """
        up, down = resampling_ratio(sampling_rate, self.sampling_rate, warn=False)
        num_output = -(-num_input * up // down)
        if num_output <= self.num_samples or self.do_filter or (self.resample_method == "fft" and up != down):
            # kept whole: the band-pass, and the FFT resampler, see the whole recording
            return 0, num_input, 0
        first_output = 0 if crop == "start" else (num_output - self.num_samples) // 2
        margin = resampling_margin(up, down) if up != down else 0
        start = max(0, (first_output * down // up - margin) // down * down)
        stop = min(num_input, -(-(first_output + self.num_samples) * down // up) + margin)
        return start, stop, first_output - start * up // down

    def _bandpass(self, signal: np.ndarray) -> np.ndarray:
        sos = scipy_signal.butter(
            self.filter_order, self.filter_band, btype="bandpass", fs=self.sampling_rate, output="sos"
        )
        # odd extension of 1 / low-cut seconds (2 s for 0.5 Hz) keeps the high-pass edge transients small
        padlen = min(int(round(self.sampling_rate / self.filter_band[0])), signal.shape[-1] - 1)
        return scipy_signal.sosfiltfilt(sos, signal, axis=-1, padlen=padlen)

    @staticmethod
    def _to_numpy(value: Any, index: int | None = None) -> np.ndarray:
        if is_torch_tensor(value):
            value = value.detach().cpu()
            if value.is_floating_point() and value.element_size() < 4:  # float16 / bfloat16 have no numpy twin
                value = value.float()
            value = value.numpy()
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            where = f" (item {index})" if index is not None else ""
            raise TypeError(f"ECG input{where} must hold real numbers, got dtype {array.dtype}")
        return array

    def _split_batch(self, ecg: Any) -> list[np.ndarray]:
        if isinstance(ecg, (list, tuple)):
            if len(ecg) == 0:
                raise ValueError("got an empty list of ECGs")
            recordings = [self._to_numpy(item, index) for index, item in enumerate(ecg)]
            for index, array in enumerate(recordings):
                if array.ndim != 2:
                    raise ValueError(
                        f"ECG item {index} has shape {array.shape}; each item of a list must be a 2-D (leads, samples) "
                        "array (to pass one recording given as nested lists, wrap it in np.asarray)"
                    )
            return recordings
        if not (isinstance(ecg, np.ndarray) or is_torch_tensor(ecg)):
            raise TypeError(
                f"`ecg` must be a numpy array, a torch tensor or a list of them, got {type(ecg).__name__}"
            )
        array = self._to_numpy(ecg)
        if array.ndim == 2:
            return [array]
        if array.ndim == 3:
            if array.shape[0] == 0:
                raise ValueError(f"got an empty batch of ECGs (shape {array.shape})")
            return list(array)
        raise ValueError(
            f"`ecg` must have shape (leads, samples) or (batch, leads, samples), got {array.shape}; for a single lead "
            "use shape (1, samples) with lead_names=[name]"
        )

    @staticmethod
    def _per_item_rates(sampling_rate: Any, batch_size: int) -> list[float]:
        if isinstance(sampling_rate, (list, tuple, np.ndarray)):
            rates = list(sampling_rate)
            if len(rates) != batch_size:
                raise ValueError(f"got {len(rates)} sampling rates for {batch_size} ECGs; pass one rate or one per ECG")
        else:
            rates = [sampling_rate] * batch_size
        for index, rate in enumerate(rates):
            if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or not (
                np.isfinite(rate) and rate > 0
            ):
                where = f" for ECG item {index}" if batch_size > 1 else ""
                raise ValueError(f"`sampling_rate` must be a positive number of Hz{where}, got {rate!r}")
        return [float(rate) for rate in rates]

    @staticmethod
    def _per_item_lead_names(lead_names: Any, batch_size: int) -> list[list[str] | None]:
        if lead_names is None:
            return [None] * batch_size
        if isinstance(lead_names, str):
            raise TypeError(f"`lead_names` must be a list of names (one per row), e.g. [{lead_names!r}], not a string")
        lead_names = list(lead_names)
        if lead_names and all(isinstance(n, str) for n in lead_names):
            return [lead_names] * batch_size
        if all(n is None or (isinstance(n, (list, tuple)) and all(isinstance(x, str) for x in n)) for n in lead_names):
            if len(lead_names) != batch_size:
                raise ValueError(
                    f"got {len(lead_names)} lists of lead names for {batch_size} ECGs; pass one list shared by all "
                    "ECGs or one list per ECG"
                )
            return [None if n is None else list(n) for n in lead_names]
        raise TypeError(
            "`lead_names` must be a list of lead-name strings, or one such list per ECG, got "
            f"{lead_names!r}"
        )

    def _report_padding(self, padded: list[int]) -> None:
        items = [(i, n) for i, n in enumerate(padded) if n > 0]
        if not items:
            return
        # the record length (at the model's rate, after resampling), then how much padding it got
        shown = ", ".join(
            f"item {i}: {self.num_samples - n} samples ({(self.num_samples - n) / self.sampling_rate:g} s), {n} padded"
            for i, n in items[:_MAX_ITEMS_IN_MESSAGES]
        )
        more = f", and {len(items) - _MAX_ITEMS_IN_MESSAGES} more" if len(items) > _MAX_ITEMS_IN_MESSAGES else ""
        logger.warning(
            f"{len(items)} of {len(padded)} ECG(s) were shorter than {self.num_samples} samples "
            f"({self.num_samples / self.sampling_rate:g} s at {self.sampling_rate} Hz) and were padded at the end with "
            f"{self.padding_value}: {shown}{more}. Pass return_num_padded_samples=True to get the counts."
        )


__all__ = ["DBetaECGFeatureExtractor"]

# The installed package registers the feature extractor with AutoFeatureExtractor when this module is imported (see
# dbeta_hf/auto_registration.py); a copy of this file in a saved folder, loaded with trust_remote_code, is
# registered by transformers itself instead.
if __name__.startswith("dbeta_hf."):
    AutoFeatureExtractor.register(DBetaConfig, DBetaECGFeatureExtractor, exist_ok=True)
    AutoFeatureExtractor.register(DBetaECGConfig, DBetaECGFeatureExtractor, exist_ok=True)
    DBetaECGFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
