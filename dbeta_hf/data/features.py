"""Column types of the built datasets and the metadata (class names, ...) stored with them.

Storage format (a project decision; the pretraining collator relies on it): the ``ecg`` column is a
``datasets.Array2D(shape=(12, 5000), dtype="float16")`` in **millivolts**, leads in the canonical order
``I, II, III, aVR, aVL, aVF, V1..V6``, sampled at 500 Hz. A build that cuts records into segments stores its own
length instead (PhysioNet 2021 with ``segment_seconds=5``: ``(12, 2500)``); the length is in the schema and in the
metadata (``num_samples``), `dataset_num_samples` reads it and `check_num_samples` refuses a consumer built for
another length (a 5000-sample feature extractor would otherwise zero-pad every 5 s segment to 10 s). float16 keeps about 3 significant digits
(rounding error at most 0.5 uV up to 1 mV, 4 uV up to 10 mV), below the 5 uV ADC step of MIMIC-IV-ECG,
and halves the size of the store (120 KB per ECG).

Labels are multi-hot ``List(Value("float32"), length=num_classes)``. The class names, and the other
facts about a build, are stored as JSON in ``DatasetInfo.description`` on a line starting with
``dbeta_hf-metadata:``. `DatasetInfo` is written by ``save_to_disk`` and read back by ``load_from_disk``,
is kept by ``select``/``filter``/``map``/``shuffle``/``with_format`` and merged (identically) by
``concatenate_datasets``, so `dataset_class_names` works on every derived dataset.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from datasets import Array2D, Dataset, DatasetDict, DatasetInfo, Features, List, Value

from ..ecg_signal import CANONICAL_LEAD_NAMES

__all__ = [
    "NUM_LEADS",
    "NUM_SAMPLES",
    "SAMPLING_RATE",
    "ECG_DTYPE",
    "ecg_feature",
    "labels_feature",
    "make_info",
    "dataset_metadata",
    "dataset_class_names",
    "dataset_num_samples",
    "check_num_samples",
]

NUM_LEADS = 12
NUM_SAMPLES = 5000
SAMPLING_RATE = 500
ECG_DTYPE = "float16"
METADATA_PREFIX = "dbeta_hf-metadata: "


def ecg_feature(num_samples: int = NUM_SAMPLES) -> Array2D:
    """The ``ecg`` column type: (12, num_samples) float16 millivolts."""
    return Array2D(shape=(NUM_LEADS, num_samples), dtype=ECG_DTYPE)


def labels_feature(num_classes: int) -> List:
    """The ``labels`` column type: a multi-hot float32 vector of fixed length."""
    return List(Value("float32"), length=num_classes)


def make_info(
    *,
    features: Features,
    dataset: str,
    title: str,
    metadata: Mapping[str, Any],
    citation: str = "",
    homepage: str = "",
    license: str = "",
) -> DatasetInfo:
    """A `DatasetInfo` whose description carries `metadata` (JSON) for `dataset_metadata`."""
    ecg = features.get("ecg") if features is not None else None
    meta = {
        "dataset": dataset,
        **({"num_samples": int(ecg.shape[1])} if isinstance(ecg, Array2D) else {}),
        "ecg_units": "mV",
        "ecg_dtype": ECG_DTYPE,
        "sampling_rate": SAMPLING_RATE,
        "lead_names": list(CANONICAL_LEAD_NAMES),
        **dict(metadata),
    }
    description = f"{title}\nBuilt by dbeta_hf.data.\n{METADATA_PREFIX}{json.dumps(meta, sort_keys=True)}"
    return DatasetInfo(
        description=description,
        citation=citation,
        homepage=homepage,
        license=license,
        features=features,
        dataset_name=dataset,
    )


def _info_of(dataset: Dataset | DatasetDict) -> DatasetInfo:
    if isinstance(dataset, DatasetDict):
        if not dataset:
            raise ValueError("the DatasetDict is empty; it has no metadata")
        dataset = next(iter(dataset.values()))
    info = getattr(dataset, "info", None)
    if info is None:
        raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    return info


def dataset_metadata(dataset: Dataset | DatasetDict) -> dict:
    """The metadata dict that the builder stored with `dataset` (class names, task, source, ...).

    Raises:
        ValueError: if `dataset` was not built by `dbeta_hf.data` (or its `DatasetInfo` was replaced).
    """
    description = _info_of(dataset).description or ""
    for line in description.splitlines():
        if line.startswith(METADATA_PREFIX):
            return json.loads(line[len(METADATA_PREFIX) :])
    raise ValueError(
        "This dataset carries no dbeta_hf metadata (its DatasetInfo.description has no "
        f"'{METADATA_PREFIX.strip()}' line). Was it built with dbeta_hf.data, and was its info kept? "
        "Pass the class names explicitly instead."
    )


def dataset_class_names(dataset: Dataset | DatasetDict) -> list[str]:
    """The class names of the ``labels`` column, in column order.

    Works after ``save_to_disk``/``load_from_disk``, ``select``, ``map``, ``with_format``, ... (see the module
    docstring). Raises `ValueError` for a dataset without labels (MIMIC-IV-ECG).
    """
    meta = dataset_metadata(dataset)
    names = meta.get("class_names")
    if not names:
        raise ValueError(f"the {meta.get('dataset', 'given')} dataset has no labels (no class names stored)")
    features = (
        next(iter(dataset.values())).features if isinstance(dataset, DatasetDict) else dataset.features
    )
    labels = features.get("labels")
    length = getattr(labels, "length", None)
    if length not in (None, -1) and length != len(names):
        raise ValueError(f"stored class names ({len(names)}) do not match the labels length ({length})")
    return list(names)


def check_class_names(names: Sequence[str]) -> list[str]:
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicated class names: {duplicated}")
    if not names:
        raise ValueError("a labelled dataset needs at least one class")
    return names


def dataset_num_samples(dataset: Dataset | DatasetDict, column: str = "ecg") -> int:
    """The number of samples per lead of the stored ECGs (5000, or 2500 for 5 s segments), read from the schema
    (so it also works for builds made before the metadata recorded it)."""
    features = next(iter(dataset.values())).features if isinstance(dataset, DatasetDict) else dataset.features
    feature = features.get(column)
    if not isinstance(feature, Array2D):
        raise ValueError(
            f"the dataset has no fixed-shape {column!r} column (an Array2D of (leads, samples)); columns: "
            f"{list(features)}"
        )
    return int(feature.shape[1])


def check_num_samples(dataset: Dataset | DatasetDict, num_samples: int, consumer: str = "the feature extractor") -> int:
    """Raise `ValueError` unless the stored ECGs have `num_samples` samples, naming the fix; return the length.

    Call it where a dataset meets a model or feature extractor built for a fixed length: a 5000-sample feature
    extractor would zero-pad 2500-sample (5 s) segments to 10 s instead of failing.
    """
    stored = dataset_num_samples(dataset)
    if stored != int(num_samples):
        try:
            segment = dataset_metadata(dataset).get("segment_seconds")
        except ValueError:
            segment = None
        what = f"{segment:g} s segments" if segment else f"{stored / SAMPLING_RATE:g} s records"
        raise ValueError(
            f"the dataset stores {stored}-sample ECGs ({what} at {SAMPLING_RATE} Hz) but {consumer} makes "
            f"{int(num_samples)} samples, which would pad or crop every ECG; use num_samples={stored} (e.g. "
            f"DBetaECGFeatureExtractor.from_pretrained(path, num_samples={stored})) or build the dataset with the "
            f"length you want"
        )
    return stored
