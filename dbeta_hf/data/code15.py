"""CODE-15 test set ("CODE-test", Ribeiro et al. 2020, zenodo 3765780): 827 ECGs, 6 expert labels.

Expected layout (``data.zip`` unzipped; ``ROOT/data/...`` is accepted too)::

    ROOT/ecg_tracings.hdf5             dataset "tracings": (827, 4096, 12) float, 400 Hz, zero-padded to 4096
    ROOT/annotations/gold_standard.csv  1dAVb, RBBB, LBBB, SB, AF, ST  (row i = tracing i)

Preprocessing: resample 400 -> 500 Hz (4096 -> 5120 samples) and keep the first 5000 samples, no filtering, no
normalization, as D-BETA's zero-shot notebook, except the resampler: `ecg_signal.resample_signal`'s polyphase
Kaiser filter here, the notebook's FFT ``scipy.signal.resample`` with ``resample_signal(..., method="fft")``.

**Lead order.** The release README (automatic-ecg-diagnosis, ``data/README.md`` and the model README)
gives ``DI, DII, DIII, AVL, AVF, AVR, V1..V6`` -- aVL and aVF *before* aVR -- and this order was
confirmed from the arrays by third parties (ecgbench's CODE-test card: channel 3 fits I - II/2, channel 5
fits -(I+II)/2). It differs from CODE-15% (the training release, standard order). The default
`CODE_TEST_LEAD_NAMES` follows the documented order; the build summary's ``lead_order_check``
(Goldberger's equations on every record) tells you if your copy disagrees, and ``lead_names=`` overrides
it. D-BETA's notebook feeds the file order unchanged.

**Units.** The README says "scale 1e-4V: so it should be multiplied by 1000 in order to obtain the signals
in V", which contradicts itself. Measured amplitudes (median lead-II R wave about 1.5 mV, ecgbench) show the
values are millivolts, and D-BETA's notebook applies no conversion, so the default is ``units="mV"``; the
summary's ``amplitude_mv`` (median lead-II peak-to-peak, typically 1-3 mV) checks it on your copy. Pass
``units="uV"``/``"V"`` or ``scale=`` (mV per stored unit, e.g. 0.1 for true 1e-4 V units) if needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from datasets import Features, Value

from ._common import check_root, finish, read_csv_checked
from .build import BuildPlan, RecordSource, file_signature
from .features import ecg_feature, labels_feature, make_info
from .processing import SignalOptions, prepare_ecg
from .splits import integer_id, ordered_split_names, read_split_files
from .summary import NO_LABEL, NOT_IN_SPLIT_FILES, UNREADABLE_SIGNAL, RecordSkipped, ShardTally

logger = logging.getLogger(__name__)

__all__ = ["load_code15_test", "build_code15_test_plan", "CODE_TEST_LEAD_NAMES", "CODE_CLASS_NAMES"]

DATASET = "code15-test"
TITLE = "CODE-15 test set"
CODE_TEST_LEAD_NAMES = ["DI", "DII", "DIII", "AVL", "AVF", "AVR", "V1", "V2", "V3", "V4", "V5", "V6"]
CODE_CLASS_NAMES = ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]
CODE_SAMPLING_RATE = 400
LAYOUT_HINT = (
    "Pass the folder of the CODE test set (zenodo 3765780, data.zip) that holds ecg_tracings.hdf5 and "
    "annotations/gold_standard.csv."
)
SPLIT_ID_COLUMNS = ("record_id", "index", "row", "id", "ecg_id", "exam_id")
CITATION = (
    "Ribeiro, A. H., Ribeiro, M. H., Paixao, G. M. M., et al. (2020). Automatic diagnosis of the 12-lead ECG "
    "using a deep neural network. Nature Communications 11, 1760. https://doi.org/10.1038/s41467-020-15432-4"
)


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Reading the CODE-15 test set needs h5py: pip install h5py (or pip install 'dbeta_hf[hdf5]')"
        ) from None
    return h5py


class Code15Source(RecordSource):
    dataset = DATASET

    def __init__(self, tracings: str, options: SignalOptions, lead_names: Sequence[str], units: str, scale: float):
        self.tracings = tracings
        self.options = options
        self.lead_names = list(lead_names)
        self.units = units
        self.scale = float(scale)
        self.class_names = list(CODE_CLASS_NAMES)
        self._file = None
        self.features = Features(
            {
                "record_id": Value("int64"),
                "ecg": ecg_feature(options.num_samples),
                "labels": labels_feature(len(self.class_names)),
            }
        )
        self.info = make_info(
            features=self.features,
            dataset=DATASET,
            title="CODE-15 test set (CODE-test, 827 tracings): 6 gold-standard labels, 400 Hz resampled to 500 Hz.",
            metadata={
                "class_names": self.class_names,
                "source_lead_order": self.lead_names,
                "source_units": units,
                "source_scale": self.scale,
                "source_sampling_rate": CODE_SAMPLING_RATE,
            },
            citation=CITATION,
            homepage="https://doi.org/10.5281/zenodo.3765780",
            license="CC BY 4.0",
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def open(self) -> None:
        self._file = _import_h5py().File(self.tracings, "r")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self, task: Mapping[str, Any]):
        if not task.get("keep_unlabeled", True) and not any(v > 0.5 for v in task["labels"]):
            raise RecordSkipped(NO_LABEL, "no gold-standard label")
        try:
            tracing = np.asarray(self._file["tracings"][task["id"]], dtype=np.float64)
        except Exception as error:  # h5py raises OSError / KeyError for damaged files
            raise RecordSkipped(UNREADABLE_SIGNAL, f"row {task['id']}: {type(error).__name__}: {error}") from None
        signal = tracing.T * self.scale if self.scale != 1.0 else tracing.T
        ecg, flags, stats = prepare_ecg(signal, CODE_SAMPLING_RATE, self.lead_names, self.units, self.options)
        return {"record_id": task["id"], "ecg": ecg, "labels": task["labels"]}, flags, stats


def _locate(root: Path) -> Path:
    if (root / "ecg_tracings.hdf5").is_file():
        return root
    if (root / "data" / "ecg_tracings.hdf5").is_file():
        return root / "data"
    return root


def build_code15_test_plan(
    root,
    *,
    lead_names: Sequence[str] = CODE_TEST_LEAD_NAMES,
    units: str = "mV",
    scale: float = 1.0,
    split_files=None,
    split_id_column: str | None = None,
    drop_unlabeled: bool = False,
    signal_options: SignalOptions | None = None,
) -> BuildPlan:
    base = check_root(root, TITLE, [], LAYOUT_HINT)
    root_path = check_root(_locate(base), TITLE, ["ecg_tracings.hdf5", "annotations/gold_standard.csv"], LAYOUT_HINT)
    options = signal_options or SignalOptions(flat_lead_policy="keep")
    h5py = _import_h5py()
    tracings_file = root_path / "ecg_tracings.hdf5"
    gold_file = root_path / "annotations" / "gold_standard.csv"
    try:
        with h5py.File(tracings_file, "r") as handle:
            if "tracings" not in handle:
                raise ValueError(
                    f"{TITLE}: {tracings_file} has no dataset 'tracings' (found {list(handle.keys())})"
                )
            shape = tuple(handle["tracings"].shape)
    except OSError as error:
        raise ValueError(f"{TITLE}: cannot open {tracings_file} as HDF5: {error}") from error
    if len(shape) != 3 or shape[2] != len(lead_names):
        raise ValueError(
            f"{TITLE}: 'tracings' has shape {shape}; expected (records, samples, {len(lead_names)} leads) such as "
            "(827, 4096, 12)"
        )
    gold = read_csv_checked(gold_file, CODE_CLASS_NAMES, f"{TITLE} gold standard")
    if len(gold) != shape[0]:
        raise ValueError(
            f"{TITLE}: {gold_file} has {len(gold)} rows but 'tracings' has {shape[0]} records; the files are joined "
            "by row position, so they must have the same length"
        )
    labels = gold[CODE_CLASS_NAMES].to_numpy(dtype=np.float32)

    sf = None
    if split_files is not None:
        sf = read_split_files(split_files, SPLIT_ID_COLUMNS, integer_id, id_column=split_id_column)
    planning = ShardTally()
    split_names = ordered_split_names(sf.ids) if sf is not None else ["test"]
    splits: dict[str, list] = {name: [] for name in split_names}
    split_of = sf.split_of if sf is not None else None
    for index in range(shape[0]):
        split = split_of.get(index) if split_of is not None else "test"
        if split is None:
            planning.skip(index, NOT_IN_SPLIT_FILES)
            continue
        splits[split].append({"id": index, "labels": labels[index].tolist(), "keep_unlabeled": not drop_unlabeled})
    not_found = len(set(split_of) - set(range(shape[0]))) if split_of is not None else 0
    user_options = {
        "lead_names": list(lead_names),
        "units": units,
        "scale": scale,
        "drop_unlabeled": drop_unlabeled,
        "split_files": sf.sources if sf is not None else None,
        "signal": options.to_dict(),
    }
    return BuildPlan(
        source=Code15Source(os.fspath(tracings_file), options, lead_names, units, scale),
        root=os.fspath(root_path),
        splits=splits,
        options=user_options,
        fingerprint_inputs={
            "files": [file_signature(tracings_file, root_path), file_signature(gold_file, root_path)],
            "shape": list(shape),
        },
        planning=planning,
        split_file_ids_not_found=not_found,
        warnings=[f"{not_found} ids of the split files are not rows of ecg_tracings.hdf5"] if not_found else [],
    )


def load_code15_test(
    root,
    *,
    lead_names: Sequence[str] = CODE_TEST_LEAD_NAMES,
    units: str = "mV",
    scale: float = 1.0,
    num_proc: int | None = None,
    cache_dir=None,
    split_files=None,
    split_id_column: str | None = None,
    drop_unlabeled: bool = False,
    nan_policy: str = "skip",
    flat_lead_policy: str = "keep",
    flat_tolerance: float = 1e-6,
    shard_size: int | None = None,
    force_rebuild: bool = False,
    return_summary: bool = False,
):
    """Build the CODE-15 test set as a `DatasetDict` with a single ``test`` split (827 records).

    Columns: ``record_id`` (int64, the row of ``ecg_tracings.hdf5``), ``ecg`` ((12, 5000) float16 mV, canonical
    order, 500 Hz), ``labels`` (multi-hot float32 over ``1dAVb, RBBB, LBBB, SB, AF, ST``).

    Args:
        root: the folder holding ``ecg_tracings.hdf5`` and ``annotations/gold_standard.csv`` (or its parent).
        lead_names: the lead of each of the 12 channels (default: the documented CODE-test order, see the
            module docstring).
        units: units of the stored values (``"mV"``, see the module docstring).
        scale: extra factor applied before the unit conversion (e.g. 0.1 for values in 1e-4 V with units="mV").
        split_files: per-split row indices (a ``record_id``/``index`` column) instead of one ``test`` split.
        drop_unlabeled: drop records with none of the 6 labels (default False: they are the negatives).
        nan_policy, flat_lead_policy, ...: see `load_mimic_iv_ecg`. Flat leads are kept by default (about 14
            records have one lead at exactly zero), so all 827 records are evaluated.
    """
    options = SignalOptions(nan_policy=nan_policy, flat_lead_policy=flat_lead_policy, flat_tolerance=flat_tolerance)
    plan = build_code15_test_plan(
        root,
        lead_names=lead_names,
        units=units,
        scale=scale,
        split_files=split_files,
        split_id_column=split_id_column,
        drop_unlabeled=drop_unlabeled,
        signal_options=options,
    )
    return finish(
        plan,
        cache_dir=cache_dir,
        num_proc=num_proc,
        shard_size=shard_size,
        force_rebuild=force_rebuild,
        return_summary=return_summary,
    )
