"""Framework-free ECG signal utilities (numpy / scipy / wfdb, no torch).

These functions are the single implementation of lead naming, lead reordering, unit conversion,
resampling, cropping / padding and NaN handling used by `DBetaECGFeatureExtractor` and by the dataset
builders. Every function takes and returns arrays shaped **(leads, samples)** (time on the last axis)
and never modifies its input in place.

Conventions:

* Canonical lead order: ``I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6`` (`CANONICAL_LEAD_NAMES`, defined here
  and re-exported as `dbeta_hf.CANONICAL_LEAD_NAMES`). Note that MIMIC-IV-ECG headers store
  ``I, II, III, aVR, aVF, aVL, V1..V6`` (aVF before aVL) and PTB-XL writes ``AVR, AVL, AVF``;
  `reorder_leads` maps both to the canonical order.
* Lead names are matched case-insensitively, ignoring surrounding white space. The CODE-15 spellings
  ``DI``, ``DII``, ``DIII`` are accepted as ``I``, ``II``, ``III``. Holter "modified" leads (``MLII``,
  ``MLIII``, ``MV1``...) are **not** accepted: they come from chest-placed electrodes and are not the
  standard limb / precordial leads. If you decide to use one as its standard counterpart anyway, rename it
  yourself (for example pass ``["II"]`` for an ``MLII`` row) so that the substitution is explicit.
* Units: ``V``, ``mV`` and ``uV`` (also ``µV`` / ``μV`` and the spelled-out words), case-insensitive.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Sequence

import numpy as np
from scipy import signal as scipy_signal

logger = logging.getLogger(__name__)

__all__ = [
    "CANONICAL_LEAD_NAMES",
    "LEAD_NAME_ALIASES",
    "NON_FINITE_POLICIES",
    "CROP_POLICIES",
    "canonical_lead_name",
    "validate_lead_names",
    "reorder_leads",
    "resample_signal",
    "resample_signal_fft",
    "RESAMPLE_METHODS",
    "resampling_ratio",
    "resampling_margin",
    "unit_scale",
    "to_millivolts",
    "fix_length",
    "non_finite_leads",
    "handle_non_finite",
    "flat_leads",
    "mark_float32_overflow",
    "implausible_amplitude",
    "implausibly_small_amplitude",
    "read_wfdb",
]

# The row order of every model input: the standard 12-lead order (the feature extractor maps other orders to it).
CANONICAL_LEAD_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

# Spellings accepted in addition to the canonical names (keys are case-folded).
LEAD_NAME_ALIASES = {"di": "I", "dii": "II", "diii": "III"}
_CANONICAL_BY_KEY = {name.casefold(): name for name in CANONICAL_LEAD_NAMES}
_MODIFIED_LEADS = {"mli", "mlii", "mliii", "mv1", "mv2", "mv3", "mv4", "mv5", "mv6", "ml1", "ml2", "ml3"}

# Millivolts per unit. Keys are case-folded; note that "µ".casefold() == "μ" (Greek mu).
_MILLIVOLTS_PER_UNIT = {
    "v": 1000.0,
    "volt": 1000.0,
    "volts": 1000.0,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
}

NON_FINITE_POLICIES = ("error", "zero", "interpolate")
_RESAMPLE_HALF_LENGTH = 20  # low-pass half-length in units of max(up, down) (scipy's default: 10)
_RESAMPLE_BETA = 10.0  # Kaiser window beta (scipy's default: 5)
CROP_POLICIES = ("start", "center")
FLOAT32_MAX = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------------------------- leads
def canonical_lead_name(name: str) -> str:
    """Return the canonical spelling of an ECG lead name.

    Matching is case-insensitive and ignores surrounding white space (``"AVR"``, ``"avr"`` and ``" aVR "``
    all give ``"aVR"``). The CODE-15 aliases ``DI``, ``DII`` and ``DIII`` map to ``I``, ``II`` and ``III``.

    Raises:
        TypeError: if `name` is not a string.
        ValueError: for an unknown name (the message lists the valid ones) and for Holter "modified" leads
            such as ``MLII``, which are not standard 12-lead leads.
    """
    if not isinstance(name, str):
        raise TypeError(f"ECG lead names must be strings, got {name!r} ({type(name).__name__})")
    key = name.strip().casefold()
    if key in _CANONICAL_BY_KEY:
        return _CANONICAL_BY_KEY[key]
    if key in LEAD_NAME_ALIASES:
        return LEAD_NAME_ALIASES[key]
    valid = ", ".join(CANONICAL_LEAD_NAMES)
    if key in _MODIFIED_LEADS:
        raise ValueError(
            f"ECG lead {name!r} is a Holter 'modified' lead (chest-placed electrodes), not a standard 12-lead lead, "
            f"so it is not mapped automatically. If you want to use it as a standard lead anyway, rename it "
            f"explicitly in `lead_names` (e.g. 'II' for 'MLII'). Valid names: {valid}."
        )
    raise ValueError(
        f"Unknown ECG lead name {name!r}. Valid names (case-insensitive): {valid}; aliases: DI, DII, DIII. "
        "Drop rows that are not standard 12-lead leads (e.g. Frank X/Y/Z) before calling."
    )


def _as_2d_float(signal: np.ndarray, what: str = "signal") -> np.ndarray:
    array = np.asarray(signal)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"the ECG {what} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"the ECG {what} must be a 2-D (leads, samples) array, got shape {array.shape}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    return array


def validate_lead_names(
    lead_names: Sequence[str] | None, num_rows: int, num_samples: int | None = None
) -> list[str] | None:
    """Check that `lead_names` can describe an ECG with `num_rows` rows; return the canonical names.

    Without names (`None`) the ECG must have exactly 12 rows (canonical order) and `None` is returned.
    `num_samples` is only used to recognise a transposed (samples, leads) array in the error message.

    Raises:
        TypeError: `lead_names` is a single string or holds non-strings.
        ValueError: wrong number of rows or names, unknown or duplicated lead names.
    """
    num_leads = len(CANONICAL_LEAD_NAMES)
    if lead_names is None:
        if num_rows != num_leads:
            hint = ""
            if num_samples == num_leads:
                hint = " It looks like a (samples, leads) array: transpose it (e.g. `ecg.T`)."
            raise ValueError(
                f"Got an ECG with {num_rows} rows and no `lead_names`. Without `lead_names` the input must have "
                f"exactly {num_leads} rows in the canonical order {', '.join(CANONICAL_LEAD_NAMES)}; pass "
                f"`lead_names` (one name per row) for other layouts or lead subsets.{hint}"
            )
        return None
    if isinstance(lead_names, str):
        raise TypeError(f"`lead_names` must be a list of names (one per row), e.g. [{lead_names!r}], not a string")
    lead_names = list(lead_names)
    if len(lead_names) != num_rows:
        hint = ""
        if num_samples is not None and num_samples == len(lead_names):
            hint = " It looks like a (samples, leads) array: transpose it (e.g. `ecg.T`)."
        raise ValueError(
            f"`lead_names` has {len(lead_names)} names but the ECG has {num_rows} rows; give exactly one name "
            f"per row.{hint}"
        )
    canonical = [canonical_lead_name(name) for name in lead_names]
    seen: dict[str, int] = {}
    for row, name in enumerate(canonical):
        if name in seen:
            first = seen[name]
            raise ValueError(
                f"Duplicated ECG lead {name!r}: rows {first} ({lead_names[first]!r}) and {row} ({lead_names[row]!r}) "
                "name the same lead. Each lead may appear only once."
            )
        seen[name] = row
    return canonical


def reorder_leads(signal: np.ndarray, lead_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Put the rows of `signal` into the canonical 12-lead order.

    Args:
        signal: array of shape (leads, samples).
        lead_names: the name of each row of `signal`, in row order (any case, aliases allowed, see
            `canonical_lead_name`). A subset of the 12 leads is allowed (e.g. ``["II"]`` or the six limb
            leads); absent leads are filled with zeros. `None` means `signal` has exactly 12 rows that are
            already in canonical order.

    Returns:
        `(ordered, lead_mask)`: `ordered` has shape (12, samples) (floating dtype of the input, float64 for
        integer input) and `lead_mask` (12,) bool is True for the leads present in `signal`.

    Raises:
        ValueError: wrong number of rows, unknown or duplicated lead names (see `validate_lead_names`).
    """
    signal = _as_2d_float(signal)
    num_rows, num_samples = signal.shape
    num_leads = len(CANONICAL_LEAD_NAMES)
    canonical = validate_lead_names(lead_names, num_rows, num_samples)
    if canonical is None:
        return signal.copy(), np.ones(num_leads, dtype=bool)
    ordered = np.zeros((num_leads, num_samples), dtype=signal.dtype)
    lead_mask = np.zeros(num_leads, dtype=bool)
    for row, name in enumerate(canonical):
        index = CANONICAL_LEAD_NAMES.index(name)
        ordered[index] = signal[row]
        lead_mask[index] = True
    return ordered, lead_mask


# ----------------------------------------------------------------------------------------------- resampling
def _rate(value: float, name: str) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number in Hz, got {value!r}") from None
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"`{name}` must be a positive number of Hz, got {value!r}")
    return rate


_RATIO_TOLERANCE = 1e-6  # largest relative error of the rational approximation of target_sr / orig_sr
_RATIO_DENOMINATORS = (1000, 10_000)  # denominators tried in turn (the first one within the tolerance wins)


def resampling_ratio(
    orig_sr: float, target_sr: float, max_denominator: int | None = None, warn: bool = True
) -> tuple[int, int]:
    """`(up, down)`: the rational approximation of ``target_sr / orig_sr`` that `resample_signal` uses.

    Without `max_denominator` the smallest of the denominators 1000 and 10000 whose approximation is within 1e-6
    (relative) of the exact ratio is used, so 360 -> 500 Hz is 25/18 and 499.9 -> 500 Hz is 5000/4999 (a rate close
    to the target is not rounded to 1/1). A warning is logged when the ratio is off by more than 1e-6.
    """
    orig_sr = _rate(orig_sr, "orig_sr")
    target_sr = _rate(target_sr, "target_sr")
    exact = Fraction(repr(target_sr)) / Fraction(repr(orig_sr))
    for denominator in (max_denominator,) if max_denominator is not None else _RATIO_DENOMINATORS:
        ratio = exact.limit_denominator(denominator)
        if ratio != 0 and abs(float(ratio) - float(exact)) <= _RATIO_TOLERANCE * float(exact):
            break
    if ratio == 0:
        raise ValueError(
            f"cannot resample from {orig_sr} Hz to {target_sr} Hz: the ratio is too extreme to approximate with a "
            f"denominator of at most {denominator}"
        )
    relative_error = abs(float(ratio) - float(exact)) / float(exact)
    if warn and relative_error > _RATIO_TOLERANCE:
        logger.warning(
            "Resampling %s Hz -> %s Hz uses the ratio %s/%s, which is off by %.2e (relative): the output rate is "
            "%.6f Hz.",
            orig_sr, target_sr, ratio.numerator, ratio.denominator, relative_error, orig_sr * float(ratio),
        )
    return ratio.numerator, ratio.denominator


def resampling_margin(up: int, down: int) -> int:
    """Input samples on each side of an output sample that the `resample_signal` low-pass reaches (plus one)."""
    return int(np.ceil(_RESAMPLE_HALF_LENGTH * max(up, down) / up)) + 1


def _resampling_input(signal) -> np.ndarray:
    """`signal` as a float array with samples to resample (integers become float64; other dtypes are refused)."""
    array = np.asarray(signal)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"the ECG signal must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if array.ndim == 0 or array.shape[-1] == 0:
        raise ValueError(f"cannot resample an ECG with no samples (shape {array.shape})")
    return array


def resample_signal(
    signal: np.ndarray, orig_sr: float, target_sr: float, max_denominator: int | None = None, *,
    method: str = "polyphase",
) -> np.ndarray:
    """Resample `signal` along its last axis from `orig_sr` to `target_sr` Hz.

    ``method="fft"`` is `resample_signal_fft` instead (``scipy.signal.resample``, as D-BETA's zero-shot notebook
    resamples CODE-15); the default, ``"polyphase"``, is described below.

    Uses `scipy.signal.resample_poly` (polyphase FIR low-pass, so downsampling is anti-aliased) with
    ``up / down`` the rational approximation of ``target_sr / orig_sr`` given by `resampling_ratio` (250 -> 500 Hz
    is 2/1, 360 -> 500 Hz is 25/18, 400 -> 500 Hz is 5/4, 499.9 -> 500 Hz is 5000/4999); any ratio of positive
    rates works. The output has ``ceil(samples * up / down)`` samples (CODE-15: 4096 at 400 Hz -> 5120 at 500 Hz);
    output sample ``k`` lies at input time ``k * down / up`` (the first samples coincide).

    The anti-aliasing low-pass is longer and sharper than scipy's default (a Kaiser-windowed sinc with
    ``2 * 20 * max(up, down) + 1`` taps and beta 10, instead of ``10 * max(up, down)`` half-length and beta 5),
    with its cutoff at the lower of the two Nyquist frequencies:
    in-band gain error below 1e-5 relative up to 80 % of the lower Nyquist frequency (scipy's default gives
    about 7e-4, i.e. 5 uV on a 7 mV baseline) and about 75 dB rejection of what would alias. The per-lead mean
    is removed before filtering and restored afterwards, so a baseline offset comes out exact, and the
    signal is extended beyond its ends by the straight line through its first and last samples
    (``padtype="line"``), which avoids edge transients. Equal rates (or a ratio that rounds to 1/1 within
    1e-6) return a copy.
    """
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"unknown resampling method {method!r}; choose one of {list(RESAMPLE_METHODS)}")
    if method == "fft":
        return resample_signal_fft(signal, orig_sr, target_sr)
    array = _resampling_input(signal)
    up, down = resampling_ratio(orig_sr, target_sr, max_denominator)
    if up == down:
        return array.copy()
    max_rate = max(up, down)
    num_taps = 2 * _RESAMPLE_HALF_LENGTH * max_rate + 1
    taps = scipy_signal.firwin(num_taps, 1.0 / max_rate, window=("kaiser", _RESAMPLE_BETA))
    mean = array.mean(axis=-1, keepdims=True)
    resampled = scipy_signal.resample_poly(array - mean, up, down, axis=-1, window=taps, padtype="line")
    return resampled + mean


RESAMPLE_METHODS = ("polyphase", "fft")


def resample_signal_fft(signal: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample `signal` along its last axis with ``scipy.signal.resample`` (Fourier method), as D-BETA's zero-shot
    notebook resamples CODE-15 (``example.ipynb``: ``resample(tracing, int(4096 * (500 / 400)), axis=0)``).

    The output has ``int(samples * (target_sr / orig_sr))`` samples, computed as the notebook does (CODE-15: 4096
    at 400 Hz -> 5120 at 500 Hz), and is exactly ``scipy.signal.resample(signal, that_number, axis=-1)`` for a
    float input (integers are converted to float64 first); the dtype of a float input is kept. No mean removal,
    no padding: the FFT treats the recording as periodic, so a recording whose two ends differ rings near both
    ends (the polyphase default of `resample_signal` does not). Equal rates return a copy.
    """
    array = _resampling_input(signal)
    orig_sr = _rate(orig_sr, "orig_sr")
    target_sr = _rate(target_sr, "target_sr")
    if orig_sr == target_sr:
        return array.copy()
    num = int(array.shape[-1] * (target_sr / orig_sr))
    if num < 1:
        raise ValueError(
            f"resampling {array.shape[-1]} samples from {orig_sr} Hz to {target_sr} Hz leaves no sample"
        )
    return scipy_signal.resample(array, num, axis=-1)


# ----------------------------------------------------------------------------------------------- units
def unit_scale(units: str) -> float:
    """Millivolts per one `units` (``"V"`` -> 1000, ``"mV"`` -> 1, ``"uV"`` / ``"µV"`` -> 0.001).

    Raises:
        ValueError: for an unknown unit string (the message lists the accepted ones).
    """
    if not isinstance(units, str):
        raise TypeError(f"ECG units must be strings such as 'mV', got {units!r} ({type(units).__name__})")
    key = units.strip().casefold()
    if key not in _MILLIVOLTS_PER_UNIT:
        raise ValueError(
            f"Unknown ECG units {units!r}. Accepted (case-insensitive): 'V', 'mV', 'uV' (also 'µV'). If the "
            "signal is in ADC counts, convert it to physical units first (divide by the gain, e.g. with "
            "`wfdb.rdsamp`)."
        )
    return _MILLIVOLTS_PER_UNIT[key]


def to_millivolts(signal: np.ndarray, units: str | Sequence[str]) -> np.ndarray:
    """Convert `signal` (leads, samples) to millivolts.

    Args:
        signal: array of shape (leads, samples).
        units: one unit for all leads, or one unit per row (as WFDB headers give per-signal units).

    Returns:
        A new floating array (float64 for integer input) in mV.
    """
    signal = _as_2d_float(signal)
    if isinstance(units, str):
        scale = unit_scale(units)
        return signal * scale if scale != 1.0 else signal.copy()
    units = list(units)
    if len(units) != signal.shape[0]:
        raise ValueError(
            f"got {len(units)} units for an ECG with {signal.shape[0]} rows; pass one unit string for all leads "
            "or exactly one per row"
        )
    scales = np.array([unit_scale(u) for u in units], dtype=signal.dtype)
    return signal * scales[:, None]


# ----------------------------------------------------------------------------------------------- length
def fix_length(
    signal: np.ndarray, num_samples: int, crop: str = "start", pad_value: float = 0.0
) -> tuple[np.ndarray, int]:
    """Crop or pad `signal` along its last axis to exactly `num_samples` samples.

    Args:
        signal: array of shape (..., samples).
        num_samples: target length.
        crop: which window a longer recording keeps: ``"start"`` (the first `num_samples` samples, as
            D-BETA's CODE-15 evaluation does) or ``"center"`` (the middle window; ``"centre"`` also accepted).
        pad_value: value appended at the end of a shorter recording.

    Returns:
        `(fixed, num_padded)` where `num_padded` is the number of samples appended (0 when cropped or
        already the right length).
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    crop = _crop_policy(crop)
    array = np.asarray(signal)
    length = array.shape[-1]
    if length >= num_samples:
        start = 0 if crop == "start" else (length - num_samples) // 2
        return array[..., start : start + num_samples].copy(), 0
    num_padded = int(num_samples - length)
    pad_width = [(0, 0)] * (array.ndim - 1) + [(0, num_padded)]
    return np.pad(array, pad_width, mode="constant", constant_values=pad_value), num_padded


def _crop_policy(crop: str) -> str:
    value = "center" if crop == "centre" else crop
    if value not in CROP_POLICIES:
        raise ValueError(f"`crop` must be one of {CROP_POLICIES} (or 'centre'), got {crop!r}")
    return value


# ----------------------------------------------------------------------------------------------- bad values
def non_finite_leads(signal: np.ndarray) -> list[int]:
    """Indices of the rows of `signal` (leads, samples) that contain a NaN or an infinity."""
    array = np.asarray(signal)
    if array.ndim != 2:
        raise ValueError(f"the ECG signal must be a 2-D (leads, samples) array, got shape {array.shape}")
    if array.dtype.kind != "f":
        return []
    return [int(i) for i in np.flatnonzero(~np.isfinite(array).all(axis=-1))]


def handle_non_finite(
    signal: np.ndarray,
    policy: str = "error",
    item: int | None = None,
    lead_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Deal with NaN / infinite samples in `signal` (leads, samples).

    Args:
        signal: array of shape (leads, samples).
        policy: ``"error"`` raises a `ValueError` naming the item and the leads; ``"zero"`` replaces each bad
            sample by 0; ``"interpolate"`` replaces bad samples by linear interpolation between the nearest
            finite samples of the same lead (holding the first / last finite value at the edges). A lead
            with no finite sample at all becomes all zeros under both ``"zero"`` and ``"interpolate"``.
        item: batch index, used in the error message.
        lead_names: row names, used in the error message.

    Returns:
        A new array without non-finite values (the input itself is never modified).
    """
    if policy not in NON_FINITE_POLICIES:
        raise ValueError(f"the non-finite policy must be one of {NON_FINITE_POLICIES}, got {policy!r}")
    array = np.asarray(signal)
    bad_rows = non_finite_leads(array)
    if not bad_rows:
        return array.copy()
    if policy == "error":
        described = []
        for row in bad_rows:
            count = int((~np.isfinite(array[row])).sum())
            label = f"{lead_names[row]} (row {row})" if lead_names is not None else f"row {row}"
            described.append(f"{label}: {count} of {array.shape[-1]} samples")
        where = f"ECG item {item}" if item is not None else "The ECG"
        raise ValueError(
            f"{where} contains NaN or infinite values in lead(s) {'; '.join(described)} (values beyond the float32 "
            f"range, |x| > {FLOAT32_MAX:.1e}, count as infinite). Clean the recording, or "
            "choose a policy: non_finite='zero' (set them to 0) or non_finite='interpolate' (linear interpolation)."
        )
    fixed = array.astype(np.float64) if array.dtype.kind != "f" else array.copy()
    for row in bad_rows:
        values = fixed[row]
        finite = np.isfinite(values)
        if policy == "zero" or not finite.any():
            values[~finite] = 0.0
        else:
            positions = np.arange(values.shape[0])
            values[~finite] = np.interp(positions[~finite], positions[finite], values[finite])
    return fixed


def flat_leads(signal: np.ndarray, tol: float = 1e-6) -> list[int]:
    """Indices of the rows of `signal` (leads, samples) whose finite samples span at most `tol`.

    Rows without any finite sample also count as flat. Missing leads filled with zeros by `reorder_leads`
    are flat by construction.
    """
    array = np.asarray(signal)
    if array.ndim != 2:
        raise ValueError(f"the ECG signal must be a 2-D (leads, samples) array, got shape {array.shape}")
    flat = []
    for row, values in enumerate(array):
        values = values[np.isfinite(values)] if array.dtype.kind == "f" else values
        if values.size == 0 or float(values.max()) - float(values.min()) <= tol:
            flat.append(row)
    return flat


def mark_float32_overflow(signal: np.ndarray) -> np.ndarray:
    """`signal` with every value beyond the float32 range (|x| > 3.4e38) replaced by an infinity of its sign.

    Model inputs are float32: such a value would become inf silently. Marked as infinite, it meets the same
    non-finite policy as NaN / inf input (`handle_non_finite`).
    """
    array = np.asarray(signal)
    if array.dtype.kind != "f" or array.dtype.itemsize <= 4:
        return array
    overflow = np.abs(array) > FLOAT32_MAX
    if not overflow.any():
        return array
    return np.where(overflow, np.copysign(np.inf, array), array)


# Amplitude plausibility of a recording declared in millivolts. Real ECGs in mV have a median |x| well below
# 5 mV and a 1st-99th percentile span per lead of about 0.5-10 mV (16-bit recorders saturate at a few tens of mV);
# microvolts or ADC counts read as mV give hundreds to thousands. The limits keep a margin of 10x or more.
MAX_PLAUSIBLE_MEDIAN_ABS_MV = 50.0  # median of |x| over the recording
MAX_PLAUSIBLE_LEAD_SPAN_MV = 100.0  # median over the non-flat leads of each lead's 1st-99th percentile span


def _median_lead_span(array: np.ndarray) -> float:
    """Median over the leads that are not flat of the 1st-99th percentile span of their finite samples (0 if none)."""
    spans = []
    for row in array:
        values = row[np.isfinite(row)]
        if values.size:
            low, high = np.percentile(values, [1.0, 99.0])
            if high - low > 0:
                spans.append(high - low)
    return float(np.median(spans)) if spans else 0.0


def implausible_amplitude(signal_mv: np.ndarray) -> str | None:
    """Describe why `signal_mv` (leads, samples), converted to millivolts, cannot be an ECG in mV; `None` if it can.

    Refused (see `MAX_PLAUSIBLE_MEDIAN_ABS_MV`, `MAX_PLAUSIBLE_LEAD_SPAN_MV`): a median |x| above 50 mV, or a median
    lead span (1st-99th percentile, over the leads that are not flat) above 100 mV. Robust statistics: one saturated
    lead or a few spikes do not trigger it. Non-finite samples are ignored.
    """
    array = np.asarray(signal_mv, dtype=np.float64)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return None
    median_abs = float(np.median(np.abs(finite)))
    median_span = _median_lead_span(array)
    if median_abs > MAX_PLAUSIBLE_MEDIAN_ABS_MV or median_span > MAX_PLAUSIBLE_LEAD_SPAN_MV:
        return (
            f"median |x| {median_abs:.4g} mV and median lead span (1st-99th percentile) {median_span:.4g} mV, "
            f"where ECGs have a few mV (limits: {MAX_PLAUSIBLE_MEDIAN_ABS_MV:g} mV and "
            f"{MAX_PLAUSIBLE_LEAD_SPAN_MV:g} mV)"
        )
    return None


# Below this median lead span (1st-99th percentile, mV) a recording that is not all zeros cannot be an ECG in mV:
# ECGs span about 0.5-10 mV per lead, volts read as mV span 0.0005-0.01 ("mV" 1000x too small).
MIN_PLAUSIBLE_LEAD_SPAN_MV = 0.01


def implausibly_small_amplitude(signal_mv: np.ndarray) -> str | None:
    """Describe why `signal_mv` (leads, samples), in millivolts, is too small to be an ECG in mV; `None` if it is
    not (or if it is all zeros / flat: the all-zero check reports that).

    Flagged: a median lead span (1st-99th percentile, over the leads that are not flat) below
    `MIN_PLAUSIBLE_LEAD_SPAN_MV` (0.01 mV); the text names the likely unit (volts when 1000x the values would be
    plausible). Non-finite samples are ignored.
    """
    array = np.asarray(signal_mv, dtype=np.float64)
    span = _median_lead_span(array)
    if span == 0.0 or span >= MIN_PLAUSIBLE_LEAD_SPAN_MV:
        return None
    if MIN_PLAUSIBLE_LEAD_SPAN_MV <= span * 1000.0 <= MAX_PLAUSIBLE_LEAD_SPAN_MV:
        likely = "the values look like volts: pass units='V'"
    else:
        likely = "no unit makes this an ECG (check the gain / scaling of the source)"
    return (f"median lead span (1st-99th percentile) {span:.4g} mV, where ECGs have about 0.5-10 mV (limit "
            f"{MIN_PLAUSIBLE_LEAD_SPAN_MV:g} mV): {likely}")


# ----------------------------------------------------------------------------------------------- WFDB
def _header_signal_files(header_file: str) -> list[str]:
    """The signal files a WFDB header references, from a light check of its text.

    wfdb parses the header again when it reads the record; parsing it only once there halves the cost of a
    record (about 5 ms per parse with wfdb 4.3 and pandas 3), which matters for 800,000 MIMIC-IV-ECG records.
    """
    try:
        with open(header_file, encoding="latin-1") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        fields = lines[0].split()
        num_signals = int(fields[1]) if len(fields) > 1 else 0
        if len(fields) > 2 and not fields[2].split("/")[0].replace(".", "", 1).isdigit():
            raise ValueError(f"sampling frequency {fields[2]!r} is not a number")
        signal_lines = lines[1 : 1 + num_signals]
        if len(signal_lines) != num_signals:
            raise ValueError(f"the record line announces {num_signals} signals, {len(signal_lines)} signal lines follow")
        names = []
        for line in signal_lines:
            parts = line.split()
            if len(parts) < 2 or not parts[1][:1].isdigit():
                raise ValueError(f"malformed signal line {line!r}")
            names.append(parts[0])
    except (OSError, IndexError, ValueError) as error:
        raise ValueError(f"Could not parse the WFDB header {header_file!r}: {type(error).__name__}: {error}") from error
    return sorted(set(names))


def read_wfdb(record_path: str | os.PathLike) -> tuple[np.ndarray, float, list[str], list[str]]:
    """Read a WFDB record (``<record>.hea`` + its signal files) in physical units.

    Args:
        record_path: path of the record without extension (``.../40689238``); a path ending in ``.hea`` or
            ``.dat`` is accepted too.

    Returns:
        `(signal, fs, lead_names, units)`: `signal` float64 of shape (leads, samples) in the header units
        (NaN where the file stores the missing-value code), the sampling rate in Hz, the signal names and the
        per-signal units, all as written in the header (no reordering or conversion).

    Raises:
        FileNotFoundError: the header or one of the signal files it references does not exist.
        ValueError: the header cannot be parsed or the record cannot be read.
    """
    import wfdb  # imported lazily: wfdb pulls in pandas and matplotlib

    path = os.fspath(record_path)
    base = path[:-4] if path.endswith((".hea", ".dat")) else path
    header_file = base + ".hea"
    if not os.path.isfile(header_file):
        raise FileNotFoundError(
            f"WFDB header not found: {header_file!r}. Pass the record path without extension, e.g. "
            "'files/p1000/p10000032/s40689238/40689238'."
        )
    signal_files = _header_signal_files(header_file)
    directory = os.path.dirname(base)
    missing = [name for name in signal_files if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(
            f"WFDB record {base!r}: the header references signal file(s) that do not exist: "
            f"{', '.join(os.path.join(directory, name) for name in missing)}"
        )
    try:
        record = wfdb.rdrecord(base, physical=True)
    except Exception as error:
        raise ValueError(f"Could not read the WFDB record {base!r}: {type(error).__name__}: {error}") from error
    if record.p_signal is None or record.p_signal.size == 0:
        raise ValueError(f"The WFDB record {base!r} contains no samples")
    signal = np.asarray(record.p_signal, dtype=np.float64).T.copy()
    lead_names = [str(name) for name in (record.sig_name or [])]
    units = [str(unit) for unit in (record.units or [])]
    if len(lead_names) != signal.shape[0]:
        raise ValueError(f"The WFDB header {header_file!r} names {len(lead_names)} signals but has {signal.shape[0]}")
    if record.fs is None:
        raise ValueError(f"The WFDB header {header_file!r} has no sampling frequency")
    return signal, float(record.fs), lead_names, units
