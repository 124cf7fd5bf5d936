"""Per-record signal pipeline shared by all builders: physical signal in, stored ``ecg`` out.

`prepare_ecg` takes what a reader returns (signal (leads, T), sampling rate, lead names, units) and
either returns the (12, 5000) float16 millivolt array with the list of flags of the record, or raises
`RecordSkipped` with one reason of `dbeta_hf.data.summary.SKIP_REASONS`. The checks run cheapest first:

1. units -> millivolts (`ecg_signal.to_millivolts`); 2. lead names -> canonical order
(`ecg_signal.reorder_leads`), all 12 leads required (``missing_leads``); 3. sampling rate (invalid, or
not 500 Hz with ``resample=False``: ``wrong_sampling_rate``); 4. length at 500 Hz below
``min_num_samples`` (``wrong_length``); 5. NaN / inf (``nan``, or repaired with ``nan_policy="zero"`` /
``"interpolate"``); 6. flat leads (``flat_lead``, or kept with ``flat_lead_policy="keep"``); then
resampling (`ecg_signal.resample_signal`), crop / zero-pad to 5000 samples (`ecg_signal.fix_length`,
first 5000 samples kept) and the float16 range check (``amplitude_out_of_range``).

Two cheap measurements feed the dataset-level sanity checks of the build summary: the peak-to-peak
amplitude of lead II (units) and which arrangement of the augmented leads satisfies Goldberger's
equations (aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2; lead order).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from itertools import permutations
from typing import Sequence

import numpy as np
import wfdb

from .. import ecg_signal
from ..ecg_signal import CANONICAL_LEAD_NAMES
from ..utils.paths import PathOutsideRootError, join_inside
from .features import NUM_SAMPLES, SAMPLING_RATE
from .summary import (
    FLAT_LEAD,
    MISSING_FILE,
    MISSING_LEADS,
    NAN,
    OUT_OF_RANGE,
    PATH_OUTSIDE_ROOT,
    UNREADABLE_HEADER,
    UNREADABLE_SIGNAL,
    WRONG_LENGTH,
    WRONG_SAMPLING_RATE,
    RecordSkipped,
)

__all__ = ["SignalOptions", "prepare_ecg", "read_wfdb_record", "lead_order_key", "amplitude_bin", "amplitude_quantiles"]

NAN_POLICIES = ("skip", "zero", "interpolate")
FLAT_LEAD_POLICIES = ("skip", "keep")
FLOAT16_MAX = 65504.0
CANONICAL_AUGMENTED = "aVR,aVL,aVF"
UNDETERMINED = "undetermined"


@dataclass(frozen=True)
class SignalOptions:
    """How records are validated and converted. Part of the cache fingerprint.

    Attributes:
        num_samples: stored length at 500 Hz (5000 = 10 s).
        min_num_samples: records with fewer samples (after resampling to 500 Hz) are skipped as
            ``wrong_length``; `None` zero-pads every shorter record (flagged ``padded``).
        resample: resample other sampling rates to 500 Hz (flagged ``resampled``); if False they are
            skipped as ``wrong_sampling_rate``.
        crop: which window a longer record keeps (``"start"``: the first 10 s, as D-BETA's evaluation).
        nan_policy: ``"skip"`` the record, or repair the bad samples with ``"zero"`` / ``"interpolate"``
            (flagged ``nan_zeroed``).
        flat_lead_policy: ``"skip"`` records with a flat lead, or ``"keep"`` them (flagged ``flat_lead_kept``).
        flat_tolerance: a lead whose samples span at most this many mV is flat.
    """

    num_samples: int = NUM_SAMPLES
    min_num_samples: int | None = NUM_SAMPLES
    resample: bool = True
    crop: str = "start"
    nan_policy: str = "skip"
    flat_lead_policy: str = "skip"
    flat_tolerance: float = 1e-6

    def __post_init__(self):
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        if self.flat_lead_policy not in FLAT_LEAD_POLICIES:
            raise ValueError(f"flat_lead_policy must be one of {FLAT_LEAD_POLICIES}, got {self.flat_lead_policy!r}")
        if self.min_num_samples is not None and not 0 < int(self.min_num_samples) <= self.num_samples:
            raise ValueError(
                f"min_num_samples must be in [1, num_samples={self.num_samples}] or None, got {self.min_num_samples!r}"
            )
        if self.flat_tolerance < 0:
            raise ValueError(f"flat_tolerance must be >= 0, got {self.flat_tolerance}")
        if self.crop not in ("start", "center", "centre"):
            raise ValueError(f"crop must be 'start' or 'center', got {self.crop!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _lead_list(indices: Sequence[int]) -> str:
    return ",".join(CANONICAL_LEAD_NAMES[i] for i in indices)


def prepare_ecg(
    signal: np.ndarray,
    fs: float,
    lead_names: Sequence[str] | None,
    units: str | Sequence[str],
    options: SignalOptions,
) -> tuple[np.ndarray, list[str], dict]:
    """Validate and convert one record. See the module docstring for the order of the checks.

    Returns:
        ``(ecg, flags, stats)``: ``ecg`` (12, num_samples) float16 in mV, the flags of the record, and
        ``{"lead_order": key, "amplitude_bin": int | None}`` for the summary.

    Raises:
        RecordSkipped: with the reason.
    """
    try:
        sig = ecg_signal.to_millivolts(signal, units)
    except ValueError as error:
        raise RecordSkipped(UNREADABLE_HEADER, f"units: {error}") from None
    try:
        sig, mask = ecg_signal.reorder_leads(sig, lead_names)
    except ValueError as error:
        raise RecordSkipped(MISSING_LEADS, str(error).split(". ")[0]) from None
    if not mask.all():
        raise RecordSkipped(MISSING_LEADS, "absent: " + _lead_list(np.flatnonzero(~mask)))

    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise RecordSkipped(WRONG_SAMPLING_RATE, f"sampling rate {fs!r}") from None
    if not math.isfinite(fs) or fs <= 0:
        raise RecordSkipped(WRONG_SAMPLING_RATE, f"invalid sampling rate {fs}")
    flags: list[str] = []
    if fs != SAMPLING_RATE:
        if not options.resample:
            raise RecordSkipped(WRONG_SAMPLING_RATE, f"{fs:g} Hz (resample=False)")
        flags.append("resampled")
    length_at_target = int(math.ceil(sig.shape[-1] * SAMPLING_RATE / fs))
    if options.min_num_samples is not None and length_at_target < options.min_num_samples:
        at = f" = {length_at_target} at {SAMPLING_RATE} Hz" if fs != SAMPLING_RATE else ""
        raise RecordSkipped(
            WRONG_LENGTH,
            f"{sig.shape[-1]} samples at {fs:g} Hz{at}, need >= {options.min_num_samples} at {SAMPLING_RATE} Hz",
        )

    bad = ecg_signal.non_finite_leads(sig)
    if bad:
        if options.nan_policy == "skip":
            raise RecordSkipped(NAN, "leads " + _lead_list(bad))
        sig = ecg_signal.handle_non_finite(sig, options.nan_policy)
        flags.append("nan_zeroed")
    flat = ecg_signal.flat_leads(sig, tol=options.flat_tolerance)
    if flat:
        if options.flat_lead_policy == "skip":
            raise RecordSkipped(FLAT_LEAD, "leads " + _lead_list(flat))
        flags.append("flat_lead_kept")

    stats = {"lead_order": lead_order_key(sig), "amplitude_bin": amplitude_bin(sig[1])}

    if fs != SAMPLING_RATE:
        try:
            sig = ecg_signal.resample_signal(sig, fs, SAMPLING_RATE)
        except ValueError as error:
            raise RecordSkipped(WRONG_SAMPLING_RATE, f"cannot resample {fs:g} Hz: {error}") from None
    if sig.shape[-1] > options.num_samples:
        flags.append("cropped")
    sig, num_padded = ecg_signal.fix_length(sig, options.num_samples, crop=options.crop)
    if num_padded:
        flags.append("padded")
    peak = float(np.abs(sig).max()) if sig.size else 0.0
    if not peak <= FLOAT16_MAX:
        raise RecordSkipped(OUT_OF_RANGE, f"|x| up to {peak:.3g} mV does not fit float16; check the units")
    return sig.astype(np.float16), flags, stats


# --------------------------------------------------------------------------------------- sanity checks
_PERMUTATIONS = list(permutations(range(3)))
_AUGMENTED = ("aVR", "aVL", "aVF")


def lead_order_key(sig: np.ndarray, tolerance: float = 0.1) -> str:
    """Which stored augmented leads fit the Goldberger slots aVR, aVL, aVF (canonical = ``"aVR,aVL,aVF"``).

    `sig` is (12, T) in canonical order. For each of the 6 arrangements of rows 3-5 the relative squared
    residual against -(I+II)/2, I-II/2 and II-I/2 is computed; the best one is returned as the names of the
    rows that fill the aVR, aVL and aVF slots (``"aVR,aVF,aVL"`` means the rows named aVL and aVF are
    swapped). Returns ``"undetermined"`` when no arrangement fits within `tolerance` (augmented leads not
    derived from I and II, noise, flat limb leads).
    """
    lead_i, lead_ii = sig[0], sig[1]
    expected = np.stack([-(lead_i + lead_ii) / 2.0, lead_i - lead_ii / 2.0, lead_ii - lead_i / 2.0])
    energy = float(np.sum(expected * expected))
    if not np.isfinite(energy) or energy <= 1e-12:
        return UNDETERMINED
    actual = sig[3:6]
    best, best_error = None, np.inf
    for perm in _PERMUTATIONS:
        diff = actual[list(perm)] - expected
        error = float(np.sum(diff * diff)) / energy
        if error < best_error:
            best, best_error = perm, error
    if best is None or not best_error <= tolerance:
        return UNDETERMINED
    return ",".join(_AUGMENTED[i] for i in best)


# Peak-to-peak histogram: bins of 0.05 decades (about 12 %), from 1 uV.
_BINS_PER_DECADE = 20


def amplitude_bin(lead: np.ndarray) -> int | None:
    values = lead[np.isfinite(lead)]
    if values.size == 0:
        return None
    span = float(values.max() - values.min())
    if span <= 0:
        return None
    return int(math.floor(math.log10(span) * _BINS_PER_DECADE))


def amplitude_quantiles(histogram: dict, quantiles=(0.05, 0.5, 0.95)) -> dict:
    """Approximate quantiles (mV) of the per-record lead II peak-to-peak amplitude from its histogram."""
    items = sorted((int(k), int(v)) for k, v in histogram.items() if int(v) > 0)
    total = sum(v for _, v in items)
    if not total:
        return {}
    out = {}
    for q in quantiles:
        threshold = q * total
        running = 0
        for bin_index, count in items:
            running += count
            if running >= threshold:
                out[f"p{int(round(q * 100)):02d}"] = round(10 ** ((bin_index + 0.5) / _BINS_PER_DECADE), 4)
                break
    out["records"] = total
    return out


# --------------------------------------------------------------------------------------- WFDB reading
def read_wfdb_record(record_path: str, root: str | None = None) -> tuple[np.ndarray, float, list[str], list[str]]:
    """`ecg_signal.read_wfdb` with its errors turned into skip reasons.

    ``missing_file`` for an absent header or signal file, ``unreadable_header`` for a header that cannot
    be parsed or that lists fewer signal lines than it declares, ``unreadable_signal`` for a signal file
    that cannot be decoded (e.g. truncated). With `root`, a header that names a signal file outside `root`
    (``../x.dat``, an absolute path elsewhere) is ``path_outside_root`` and nothing is read.
    """
    if root is not None:
        _check_signal_files_inside(record_path, root)
    try:
        return ecg_signal.read_wfdb(record_path)
    except FileNotFoundError as error:
        raise RecordSkipped(MISSING_FILE, _short(error)) from None
    except ValueError as error:
        if str(error).startswith("Could not parse the WFDB header") or _header_is_broken(record_path):
            raise RecordSkipped(UNREADABLE_HEADER, _short(error)) from None
        raise RecordSkipped(UNREADABLE_SIGNAL, _short(error)) from None


def _header_file_names(header_file: str) -> list[str]:
    """The first field of each signal (or segment) line of a WFDB header: the file names it reads. [] when the
    header cannot be read or parsed (`ecg_signal.read_wfdb` then reports the problem)."""
    try:
        with open(header_file, encoding="latin-1") as handle:
            lines = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
        count = int(lines[0].split()[1])
    except (OSError, IndexError, ValueError):
        return []
    return [line.split()[0] for line in lines[1 : 1 + count]]


def _check_signal_files_inside(record_path: str, root: str) -> None:
    directory = os.path.dirname(record_path)
    for name in _header_file_names(record_path + ".hea"):
        try:
            join_inside(root, os.path.join(directory, name))
        except PathOutsideRootError:
            raise RecordSkipped(PATH_OUTSIDE_ROOT, f"{record_path}.hea names the signal file {name!r}") from None


def _short(error: BaseException, limit: int = 200) -> str:
    text = str(error)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _header_is_broken(record_path: str) -> bool:
    """True when the header parses but is inconsistent (e.g. declares 12 signals and lists 5)."""
    try:
        header = wfdb.rdheader(record_path)
    except Exception:
        return True
    names = list(header.sig_name or [])
    files = list(getattr(header, "file_name", None) or [])
    return header.n_sig is None or len(names) != header.n_sig or len(files) != header.n_sig
