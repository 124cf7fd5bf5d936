"""Turn local copies of the D-BETA datasets into memory-mapped Hugging Face `datasets`.

Pretraining: MIMIC-IV-ECG (`load_mimic_iv_ecg`). Evaluation: PTB-XL super / sub / form / rhythm
(`load_ptbxl`), CPSC2018 (`load_cpsc2018`), Chapman-Shaoxing-Ningbo (`load_chapman_shaoxing_ningbo`), the
CODE-15 test set (`load_code15_test`) and the PhysioNet/CinC Challenge 2021 training data (`load_physionet2021`). Users download the data themselves (PhysioNet, zenodo).

Every loader builds the dataset once, in shards of Arrow files under ``cache_dir`` (default
``$HF_DATASETS_CACHE/dbeta_hf``), and later calls with the same root, files and options reuse it
(memory-mapped, no record is read again). Stored format, identical for all datasets:

* ``ecg``: ``Array2D((12, 5000), "float16")``, millivolts, leads ``I, II, III, aVR, aVL, aVF, V1..V6``,
  500 Hz (other rates are resampled; longer records keep their first 10 s). PhysioNet 2021 with
  ``segment_seconds=5`` stores every full 5 s segment as a row of ``(12, 2500)`` instead
  (`dataset_num_samples`, `check_num_samples`);
* ``labels`` (evaluation sets): multi-hot float32, class names from `dataset_class_names`;
* ``report`` (MIMIC-IV-ECG, PTB-XL): the report text; ids: ``study_id``/``subject_id``, ``ecg_id``, ``record_id``.

Nothing is lost silently: ``return_summary=True`` also returns a `BuildSummary` (records found, loaded,
skipped per reason, flagged), which is logged and written as ``build_summary.json``.

Cache key: the resolved root, the options, size and mtime of the metadata files (``record_list.csv``,
``machine_measurements.csv``, ``ptbxl_database.csv``, ``scp_statements.csv``, ``ecg_tracings.hdf5``,
``gold_standard.csv``), the full record list (paths, labels, reports), the mtimes of the PTB-XL record
folders, the size / mtime of every CPSC / CSN / PhysioNet 2021 header, and the size / mtime_ns of each
record's header and signal file (``<record>.hea`` with ``.dat`` or ``.mat``): a file replaced in place gives
a new build. Paths read from the data (``record_list.csv`` ``path``, PTB-XL ``filename_hr``, the signal files
a WFDB header names) must stay inside the root; others are skipped as ``path_outside_root``. One process
builds a given cache entry at a time; others wait for it and reuse its shards.

Reading: ``with_format("torch")`` gives float32 tensors; ``with_format("numpy")`` upcasts to float32
too, which is about 5x slower than ``with_format("numpy", dtype=np.float16)`` (see
benchmarks/README_data.md). Whole-batch indexing (``ds[list_of_indices]``, or a ``BatchSampler`` with
``DataLoader(batch_size=None)``) is faster than row-by-row access.

Command line: ``python -m dbeta_hf.data build ptbxl /data/ptb-xl/1.0.3 --output /data/hf/ptbxl-super``
(``python -m dbeta_hf.data --help``).

Example::

    from dbeta_hf.data import load_ptbxl, dataset_class_names, label_fraction
    ds = load_ptbxl("/data/ptb-xl/1.0.3", task="super", num_proc=8)
    classes = dataset_class_names(ds)                 # ['CD', 'HYP', 'MI', 'NORM', 'STTC']
    train_1pct = label_fraction(ds["train"], 0.01, seed=0)
    batch = ds["train"].with_format("torch")[:64]     # ecg: (64, 12, 5000) float32 tensor
"""

from .build import DEFAULT_SHARD_SIZE, default_cache_dir
from .code15 import CODE_CLASS_NAMES, CODE_TEST_LEAD_NAMES, load_code15_test
from .features import check_num_samples, dataset_class_names, dataset_metadata, dataset_num_samples
from .mimic_iv_ecg import MIMIC_LEAD_NAMES, load_mimic_iv_ecg
from .physionet_challenge import (
    load_chapman_shaoxing_ningbo,
    load_cpsc2018,
    load_physionet_challenge,
    parse_dx_codes,
    snomed_class_table,
)
from .physionet2021 import FAIRSEQ_SIGNALS_SOURCES, PHYSIONET2021_SOURCES, load_physionet2021, read_fairseq_manifest
from .processing import SignalOptions
from .ptbxl import PTBXL_TASKS, load_ptbxl
from .splits import SplitFiles, label_fraction, read_split_files
from .summary import FLAGS, SKIP_REASONS, BuildSummary, load_build_summary

__all__ = [
    "load_mimic_iv_ecg",
    "load_ptbxl",
    "load_cpsc2018",
    "load_chapman_shaoxing_ningbo",
    "load_physionet_challenge",
    "load_code15_test",
    "load_physionet2021",
    "read_fairseq_manifest",
    "PHYSIONET2021_SOURCES",
    "FAIRSEQ_SIGNALS_SOURCES",
    "label_fraction",
    "dataset_class_names",
    "dataset_metadata",
    "dataset_num_samples",
    "check_num_samples",
    "read_split_files",
    "SplitFiles",
    "snomed_class_table",
    "parse_dx_codes",
    "BuildSummary",
    "load_build_summary",
    "SignalOptions",
    "SKIP_REASONS",
    "FLAGS",
    "PTBXL_TASKS",
    "MIMIC_LEAD_NAMES",
    "CODE_TEST_LEAD_NAMES",
    "CODE_CLASS_NAMES",
    "DEFAULT_SHARD_SIZE",
    "default_cache_dir",
]
