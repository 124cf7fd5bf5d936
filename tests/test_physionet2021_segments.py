"""PhysioNet/CinC 2021 on fairseq-signals' protocol (every full 5 s segment a row) and the record-level aggregation
of segment outputs."""

from __future__ import annotations

import numpy as np
import pytest

from data_fixtures import Challenge2021Record, default_physionet2021_records, write_physionet2021

from dbeta_hf.data import (
    FAIRSEQ_SIGNALS_SOURCES,
    check_num_samples,
    dataset_class_names,
    dataset_metadata,
    dataset_num_samples,
    load_build_summary,
    load_physionet2021,
)
from dbeta_hf.data.physionet2021 import segment_num_samples, segment_rows
from dbeta_hf.data.summary import BuildSummary, ShardTally
from dbeta_hf.evaluation.segments import aggregate_segment_scores

R = Challenge2021Record


def _records():
    """The default records plus a 250 Hz Georgia record, a 3 s CPSC-Extra record and a 12.3 s PTB-XL record."""
    return default_physionet2021_records() + [
        R("georgia", "E00003", "164889003", fs=250.0, seed=20),
        R("cpsc_2018_extra", "Q0002", "164889003", seconds=3.0, seed=21),
        R("ptb-xl", "HR00002", "164889003,59118001", seconds=12.3, seed=22),
    ]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root, expected = write_physionet2021(tmp_path_factory.mktemp("c21"), _records())
    ds, summary = load_physionet2021(
        root, cache_dir=tmp_path_factory.mktemp("cache"), segment_seconds=5, return_summary=True,
        split_fractions=(0.5, 0.25, 0.25),
    )
    return root, expected, ds, summary


def test_every_full_segment_is_a_row_of_its_record(segmented):
    _, expected, ds, _ = segmented
    assert dataset_num_samples(ds) == 2500 and ds["train"].features["ecg"].shape == (12, 2500)
    assert list(ds["train"].features) == ["record_id", "segment_index", "source", "age", "sex", "ecg", "labels"]
    rows = [r for split in ds for r in ds[split].with_format("numpy")]
    per_record: dict[str, list] = {}
    for row in rows:
        per_record.setdefault(row["record_id"], []).append(row)
    # 15 s -> 3 segments, 8 s -> 1, 10 s -> 2, 12.3 s -> 2; other sources, 250 Hz, 3 s and broken records absent
    assert {r: len(v) for r, v in per_record.items()} == {
        "A0001": 3, "Q0001": 1, "HR00001": 2, "HR00002": 2, "E00001": 2, "E00002": 2, "JS00001": 2, "JS10647": 2}
    for record, segments in per_record.items():
        signal = expected[record]["signal"]
        assert [int(s["segment_index"]) for s in segments] == list(range(len(segments)))
        for segment in segments:
            start = 2500 * int(segment["segment_index"])
            np.testing.assert_allclose(segment["ecg"], signal[:, start:start + 2500], atol=2e-3)
            np.testing.assert_array_equal(segment["labels"], segments[0]["labels"])
            assert segment["source"] == segments[0]["source"]
    names = dataset_class_names(ds)
    assert {names[i] for i, v in enumerate(per_record["HR00002"][0]["labels"]) if v > 0.5} == {"AF", "CRBBB|RBBB"}


def test_a_records_segments_share_its_split(segmented):
    _, _, ds, summary = segmented
    owner = {}
    for split in ds:
        for record in ds[split]["record_id"]:
            assert owner.setdefault(record, split) == split
    assert summary.loaded_per_split == {s: len(set(ds[s]["record_id"])) for s in ds}
    assert summary.rows_per_split == {s: len(ds[s]) for s in ds}


def test_the_summary_counts_skipped_records_and_dropped_remainders(segmented):
    _, _, ds, summary = segmented
    summary.check()
    assert summary.records_found == 14 and summary.records_loaded == 8 and summary.rows == 16
    assert summary.skipped == {
        "excluded_source": 2,  # st_petersburg_incart and ptb: not among fairseq-signals' default sources
        "missing_file": 1, "unreadable_header": 1,
        "wrong_sampling_rate": 1,  # the 250 Hz record: fairseq-signals keeps 500 Hz only
        "shorter_than_segment": 1,  # the 3 s record
    }
    # 8 s -> 1500 samples after the first segment, 12.3 s (6150 samples) -> 1150
    assert summary.dropped_samples == {"segment_remainder": {"records": 2, "samples": 2650}}
    assert "resampled" not in summary.flagged and "padded" not in summary.flagged and "cropped" not in summary.flagged
    # class counts are per record, not per segment
    positives = sum(counts["AF"] for counts in summary.class_positives.values())
    assert positives == 3  # A0001, E00001, HR00002 (the 250 Hz and 3 s AF records are skipped)
    assert summary.options["segment_seconds"] == 5.0 and summary.options["sources"] == list(FAIRSEQ_SIGNALS_SOURCES)
    assert summary.options["signal"]["resample"] is False and summary.options["signal"]["num_samples"] == 2500
    text = summary.format()
    assert "rows:    16" in text and "dropped samples (segment_remainder): 2650 (5.3 s at 500 Hz) of 2" in text
    assert "shorter_than_segment" in text
    meta = dataset_metadata(ds)
    assert meta["segment_seconds"] == 5.0 and meta["segment_samples"] == 2500 and meta["num_samples"] == 2500
    again = BuildSummary.from_dict(summary.to_dict())
    assert again.rows_per_split == summary.rows_per_split and again.dropped_samples == summary.dropped_samples


def test_a_5000_sample_consumer_is_refused(segmented):
    _, _, ds, _ = segmented
    assert check_num_samples(ds, 2500) == 2500
    with pytest.raises(ValueError, match=r"2500-sample ECGs \(5 s segments at 500 Hz\).*num_samples=2500"):
        check_num_samples(ds["test"], 5000)


def test_explicit_sources_and_the_default_protocol(tmp_path):
    root, _ = write_physionet2021(tmp_path / "c21", _records())
    ds, summary = load_physionet2021(
        root, cache_dir=tmp_path / "cache", segment_seconds=5, sources=["ptb", "cpsc_2018"], return_summary=True)
    assert sorted(set(r for s in ds for r in ds[s]["record_id"])) == ["A0001"]
    assert summary.skipped["wrong_sampling_rate"] == 1  # PTB's 1000 Hz record is not resampled in this protocol
    # the default protocol is unchanged: one (12, 5000) row per record, no segment column, no segment option
    ds, summary = load_physionet2021(root, cache_dir=tmp_path / "cache", return_summary=True)
    assert dataset_num_samples(ds) == 5000 and "segment_index" not in ds["train"].features
    assert "segment_seconds" not in summary.options and summary.dropped_samples == {}
    assert summary.rows_per_split == summary.loaded_per_split
    with pytest.raises(ValueError, match="min_num_samples does not apply"):
        load_physionet2021(root, cache_dir=tmp_path / "cache", segment_seconds=5, min_num_samples=2500)


@pytest.mark.parametrize("seconds", [0, -5, 5.0001, "five", float("nan")])
def test_segment_length_must_be_whole_samples(seconds):
    with pytest.raises(ValueError, match="segment_seconds"):
        segment_num_samples(seconds)


def test_segment_rows():
    ecg = np.arange(2 * 7).reshape(2, 7)
    pieces, remainder = segment_rows(ecg, 3)
    assert [p.tolist() for p in pieces] == [[[0, 1, 2], [7, 8, 9]], [[3, 4, 5], [10, 11, 12]]] and remainder == 1
    assert segment_rows(ecg, 8) == ([], 7)


def test_per_segment_manifests_are_refused_with_the_fix(tmp_path):
    root, _ = write_physionet2021(tmp_path / "c21", _records())
    manifests = tmp_path / "manifest"
    manifests.mkdir()
    (manifests / "train.tsv").write_text("/data/out\ncpsc_2018/A0001_0.mat\t2500\ncpsc_2018/A0001_1.mat\t2500\n")
    (manifests / "valid.tsv").write_text("/data/out\ncpsc_2018/A0001_2.mat\t2500\n")
    (manifests / "test.tsv").write_text("/data/out\nptb-xl/HR00001_0.mat\t2500\n")
    with pytest.raises(ValueError, match="manifest_physionet2021.py --group-by _"):
        load_physionet2021(root, cache_dir=tmp_path / "cache", segment_seconds=5, split_files=manifests)
    (manifests / "valid.tsv").write_text("/data/out\ngeorgia/E00001_1.mat\t2500\n")
    ds = load_physionet2021(root, cache_dir=tmp_path / "cache", segment_seconds=5, split_files=manifests)
    # a listed segment brings its whole record
    assert {s: sorted(ds[s]["record_id"]) for s in ds} == {
        "train": ["A0001"] * 3, "validation": ["E00001"] * 2, "test": ["HR00001"] * 2}


def test_build_command(tmp_path, capsys):
    from datasets import load_from_disk

    from dbeta_hf.data.__main__ import main

    root, _ = write_physionet2021(tmp_path / "c21", _records())
    out = tmp_path / "hf"
    args = ["build", "physionet2021", str(root), "--output", str(out), "-q", "--segment-seconds", "5"]
    assert main(args) == 0
    assert "dropped samples (segment_remainder)" in capsys.readouterr().out
    ds = load_from_disk(str(out))
    assert sum(len(ds[s]) for s in ds) == 16 and dataset_num_samples(ds) == 2500
    summary = load_build_summary(out)
    assert summary.rows == 16 and summary.skipped["shorter_than_segment"] == 1
    assert main(args) == 0 and "up to date" in capsys.readouterr().out
    assert main(["build", "physionet2021", str(root), "--output", str(tmp_path / "x"), "-q", "--segment-seconds", "5",
                 "--min-num-samples", "100"]) == 1
    assert "--min-num-samples does not apply" in capsys.readouterr().err
    assert main(["build", "physionet2021", str(root), "--output", str(tmp_path / "y"), "-q", "--segment-seconds",
                 "0.0001"]) == 1
    assert "whole number of samples" in capsys.readouterr().err


def test_a_saved_build_with_an_empty_split_loads(tmp_path):
    """`datasets` saves a split without rows with no Arrow file unless told to write one shard; the command writes
    one so that load_from_disk reads the empty split."""
    from datasets import load_from_disk

    from dbeta_hf.data.__main__ import main

    root, _ = write_physionet2021(tmp_path / "c21", default_physionet2021_records()[:2])
    assert main(["build", "physionet2021", str(root), "--output", str(tmp_path / "hf"), "-q"]) == 0
    ds = load_from_disk(str(tmp_path / "hf"))
    assert sorted(len(ds[s]) for s in ds) == [0, 0, 2] and ds["validation"].features["ecg"].shape == (12, 5000)


def test_old_shard_markers_count_one_row_per_record():
    tally = ShardTally.from_dict({"found": 2, "loaded": 2, "loaded_per_split": {"train": 2}})
    assert tally.rows_per_split == {"train": 2} and tally.dropped_samples == {}
    assert "rows_per_split" not in ShardTally().to_dict()  # the planning tally (fingerprinted) is unchanged


# --------------------------------------------------------------------------------------------- aggregation
def test_aggregate_mean_and_max_in_record_order():
    ids = ["B", "A", "B", "C", "A", "B"]
    scores = np.array([[0.2, 0.9], [0.6, 0.1], [0.4, 0.3], [0.5, 0.5], [0.0, 0.3], [0.9, 0.0]])
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0], [0, 1], [1, 0]])
    mean = aggregate_segment_scores(ids, scores, labels=labels)
    assert mean.record_ids == ["B", "A", "C"] and mean.num_segments.tolist() == [3, 2, 1] and len(mean) == 3
    np.testing.assert_allclose(mean.scores, [[0.5, 0.4], [0.3, 0.2], [0.5, 0.5]], rtol=1e-6)
    np.testing.assert_array_equal(mean.labels, [[1, 0], [0, 1], [0, 0]])
    peak = aggregate_segment_scores(ids, scores, how="max")
    np.testing.assert_allclose(peak.scores, [[0.9, 0.9], [0.6, 0.3], [0.5, 0.5]])
    assert peak.labels is None
    single = aggregate_segment_scores(np.array(ids), scores[:, 0])
    np.testing.assert_allclose(single.scores, [0.5, 0.3, 0.5], rtol=1e-6)


def test_aggregate_refuses_bad_input():
    ids = ["A", "A", "B"]
    scores = np.array([[0.1], [0.2], [0.3]])
    with pytest.raises(ValueError, match="look like logits"):
        aggregate_segment_scores(ids, scores * 10 - 2)
    with pytest.raises(ValueError, match="record_ids has 2 entries but scores has 3 rows"):
        aggregate_segment_scores(ids[:2], scores)
    with pytest.raises(ValueError, match="segments of record 'A' carry different labels"):
        aggregate_segment_scores(ids, scores, labels=np.array([[1], [0], [0]]))
    with pytest.raises(ValueError, match="how must be one of"):
        aggregate_segment_scores(ids, scores, how="median")
    with pytest.raises(ValueError, match="no record id"):
        aggregate_segment_scores(["A", None, "B"], scores)
    with pytest.raises(ValueError, match="NaN"):
        aggregate_segment_scores(ids, np.array([[0.1], [np.nan], [0.3]]))


def test_aggregate_a_segment_build_back_to_its_records(segmented):
    """Segment outputs of the built test split (here: each segment's mean amplitude squashed to (0, 1)) come back as
    one score per record, with the record's labels, in the order of the records in the split."""
    import torch

    from dbeta_hf.evaluation.metrics import cinc2021_challenge_score

    _, _, ds, _ = segmented
    split = ds["train"].with_format("numpy")[:]
    names = dataset_class_names(ds)
    ecg = split["ecg"].astype(np.float32)
    probabilities = torch.sigmoid(torch.from_numpy(ecg.mean(axis=(1, 2))[:, None].repeat(len(names), 1))).numpy()
    records = aggregate_segment_scores(split["record_id"], probabilities, labels=split["labels"])
    assert records.record_ids == list(dict.fromkeys(split["record_id"].tolist()))
    assert records.num_segments.sum() == len(split["record_id"]) and len(records) < len(split["record_id"])
    first = [split["record_id"].tolist().index(r) for r in records.record_ids]
    np.testing.assert_array_equal(records.labels, split["labels"][first])
    np.testing.assert_allclose(records.scores[0], probabilities[split["record_id"] == records.record_ids[0]].mean(0),
                               rtol=1e-6)
    score = cinc2021_challenge_score(records.labels > 0.5, records.scores >= 0.5, classes=names)
    assert np.isfinite(score)
