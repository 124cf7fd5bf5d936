"""Issue #23 on the data side: a build deletes nothing it did not write, one build per output, paths from the data
stay inside the dataset root, changed signal files are noticed, and nothing half-written or stale is accepted."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_fixtures, also under --import-mode=importlib
import data_fixtures as fx  # noqa: E402
from dbeta_hf import ecg_signal  # noqa: E402
from dbeta_hf.data import load_cpsc2018, load_mimic_iv_ecg, load_ptbxl  # noqa: E402
from dbeta_hf.data.__main__ import main as cli_main  # noqa: E402
from dbeta_hf.data.build import build_dir_for  # noqa: E402
from dbeta_hf.data.ptbxl import build_ptbxl_plan  # noqa: E402
from dbeta_hf.utils import LOCK_NAME, MARKER_NAME, pid_alive, this_host  # noqa: E402

F16_ATOL = 4e-3


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture
def ptbxl_root(tmp_path):
    """A fresh PTB-XL copy per test (some tests change its files)."""
    return fx.write_ptbxl(tmp_path / "ptb-xl")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


def _build_args(root, out, *extra):
    return ["build", "ptbxl", str(root), "--output", str(out), "--shard-size", "3", "-q", *extra]


def _tree(folder: Path) -> dict:
    return {os.fspath(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- ownership
def test_user_folders_named_like_splits_are_listed_and_never_deleted(ptbxl_root, tmp_path, capsys):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    for name in ("train", "test"):
        (out / name).mkdir(parents=True)
        (out / name / "my_notes.txt").write_text(f"user's {name}")
    before = _tree(out)
    assert cli_main(_build_args(root, out)) == 1
    err = capsys.readouterr().err
    assert "test, train" in err and "not written here" in err
    assert cli_main(_build_args(root, out, "--force")) == 1  # --force deletes only what a build wrote
    assert "test, train" in capsys.readouterr().err
    (out / "notes").mkdir()
    assert cli_main(_build_args(root, out, "--force")) == 1
    assert "holds 3 entries that were not written here by this tool: notes, test, train" in capsys.readouterr().err
    assert _tree(out) == before  # nothing written, nothing deleted
    assert sorted(p.name for p in out.iterdir()) == ["notes", "test", "train"]


def test_refusal_lists_every_foreign_entry(ptbxl_root, tmp_path, capsys):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    (out / "test").mkdir(parents=True)
    (out / "notes").mkdir()
    assert cli_main(_build_args(root, out)) == 1
    assert "holds 2 entries that were not written here by this tool: notes, test" in capsys.readouterr().err


def test_force_replaces_only_what_builds_wrote(ptbxl_root, tmp_path, capsys):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    assert cli_main(_build_args(root, out)) == 0
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["tool"] == "dbeta_hf.data build" and marker["created_folder"] is True
    assert sorted(marker["entries"]) == ["build_summary.json", "dataset_dict.json", "test", "train", "validation"]
    assert sorted(p.name for p in out.iterdir()) == sorted(marker["entries"] + [MARKER_NAME])  # no lock, no shards

    # other options with --force: the earlier build's "validation" split (owned) goes, the new splits replace
    split_dir = tmp_path / "splits"
    split_dir.mkdir()
    (split_dir / "x_train.csv").write_text("ecg_id\n1\n2\n3\n")
    (split_dir / "x_test.csv").write_text("ecg_id\n6\n7\n")
    assert cli_main(_build_args(root, out, "--split-dir", str(split_dir))) == 1  # other options need --force
    assert "--force" in capsys.readouterr().err
    assert cli_main(_build_args(root, out, "--split-dir", str(split_dir), "--force")) == 0
    assert list(load_from_disk(out)) == ["train", "test"] and not (out / "validation").exists()
    assert load_from_disk(out)["test"]["ecg_id"] == [6, 7]

    (out / "user_notes.txt").write_text("mine")  # a file the user put there later
    assert cli_main(_build_args(root, out, "--force")) == 1
    assert "user_notes.txt" in capsys.readouterr().err
    assert (out / "user_notes.txt").read_text() == "mine" and list(load_from_disk(out)) == ["train", "test"]


def test_output_of_a_version_without_markers_is_adopted(ptbxl_root, tmp_path, capsys):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    assert cli_main(_build_args(root, out)) == 0
    (out / MARKER_NAME).unlink()  # as written before owner markers existed
    capsys.readouterr()
    assert cli_main(_build_args(root, out)) == 0
    assert "up to date" in capsys.readouterr().out
    assert "train" in json.loads((out / MARKER_NAME).read_text())["entries"]


# ----------------------------------------------------------------------------------------------- one writer
def _slow_build(args):
    original = ecg_signal.read_wfdb

    def slow(path):
        time.sleep(0.25)
        return original(path)

    ecg_signal.read_wfdb = slow
    os._exit(cli_main(args))


def test_second_build_into_the_same_output_is_refused_naming_the_first(ptbxl_root, tmp_path, capsys):
    root, expected = ptbxl_root
    out = tmp_path / "out"
    args = _build_args(root, out)
    child = multiprocessing.get_context("fork").Process(target=_slow_build, args=(args,))
    child.start()
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (out / LOCK_NAME).exists()
        assert cli_main(args) == 1
        err = capsys.readouterr().err
        assert f"PID {child.pid} on host {this_host()}" in err and "dbeta_hf.data build ptbxl" in err
    finally:
        child.join(120)
    assert child.exitcode == 0
    dd = load_from_disk(out)  # the first build is complete and untouched
    assert sum(len(d) for d in dd.values()) == len(expected) - 2  # one without a label, one missing file
    assert not (out / LOCK_NAME).exists()


def test_stale_lock_of_a_killed_build_is_reported_and_taken_over(ptbxl_root, tmp_path, caplog):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": this_host(), "started": "x", "purpose": "killed"}))
    with caplog.at_level(logging.WARNING):
        assert cli_main(_build_args(root, out)) == 0
    assert f"PID {dead}" in caplog.text and "stale" in caplog.text
    assert load_from_disk(out)["test"]["ecg_id"] == [6, 7]


def test_library_build_waits_for_the_running_builder(ptbxl_root, tmp_path):
    root, _ = ptbxl_root
    build_dir = build_dir_for(build_ptbxl_plan(root), tmp_path / "cache", 1000)
    build_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (build_dir / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": this_host(), "started": "x"}))
        threading.Timer(0.5, lambda: (build_dir / LOCK_NAME).unlink()).start()
        start = time.monotonic()
        dd = load_ptbxl(root, cache_dir=tmp_path / "cache")
        assert time.monotonic() - start >= 0.5 and dd["test"]["ecg_id"] == [6, 7]
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------------------------- atomic writes
def test_rerun_recognises_the_temporaries_of_a_killed_build(ptbxl_root, tmp_path, capsys):
    root, _ = ptbxl_root
    out = tmp_path / "out"
    assert cli_main(_build_args(root, out)) == 0
    dead = _dead_pid()
    (out / "build_summary.json").unlink()  # killed while writing the summary (it is written last)
    (out / f"build_summary.json.tmp-{dead}").write_text('{"half": ')
    (out / f"dataset_dict.json.tmp-{dead}-0123abcd").write_text("{")
    assert cli_main(_build_args(root, out)) == 0
    assert capsys.readouterr().err == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER_NAME, "build_summary.json", "dataset_dict.json", "test", "train", "validation"]
    )
    assert json.loads((out / "build_summary.json").read_text())["records_loaded"] == 9


def test_a_shard_that_fails_while_saving_leaves_nothing_behind(ptbxl_root, tmp_path, monkeypatch):
    import datasets

    root, _ = ptbxl_root
    calls = {"n": 0}
    original = datasets.Dataset.save_to_disk

    def failing(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"half")
            raise OSError("disk full")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", failing)
    with pytest.raises(OSError, match="disk full"):
        load_ptbxl(root, cache_dir=tmp_path / "cache", shard_size=3)
    shards = sorted((tmp_path / "cache" / "ptbxl").glob("*/shards/*"))
    assert len(shards) == 1 and (shards[0] / "dbeta_shard.json").is_file()  # only the complete first shard
    monkeypatch.undo()
    assert load_ptbxl(root, cache_dir=tmp_path / "cache", shard_size=3)["test"]["ecg_id"] == [6, 7]


# ----------------------------------------------------------------------------------------------- paths in the data
def _move_outside(root: Path, relative: str, outside: Path, extensions) -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    for extension in extensions:
        shutil.move(root / (relative + extension), outside / Path(relative + extension).name)
    return outside / Path(relative).name


def test_mimic_record_paths_outside_the_root_are_skipped_and_counted(tmp_path):
    records = [fx.MimicRecord(10000032 + i, 40000000 + i, seed=i) for i in range(4)]
    root, _ = fx.write_mimic_iv_ecg(tmp_path / "mimic-iv-ecg" / "1.0", records)
    table = pd.read_csv(root / "record_list.csv", dtype=str)
    outside = tmp_path / "outside"
    climbing = _move_outside(root, table.loc[0, "path"], outside, (".hea", ".dat"))
    absolute = _move_outside(root, table.loc[1, "path"], outside / "abs", (".hea", ".dat"))
    table.loc[0, "path"] = os.path.relpath(climbing, root)  # ../../outside/40000000
    table.loc[1, "path"] = os.fspath(absolute)
    table.to_csv(root / "record_list.csv", index=False)
    dd, summary = load_mimic_iv_ecg(root, cache_dir=tmp_path / "c", return_summary=True)
    assert summary.records_found == 4 and summary.records_loaded == 2
    assert summary.skipped == {"path_outside_root": 2}
    assert any("../../outside/40000000" in e for e in summary.skipped_examples["path_outside_root"])
    assert sorted(i for d in dd.values() for i in d["study_id"]) == [40000002, 40000003]
    summary.check()


def test_ptbxl_filenames_outside_the_root_are_skipped_and_counted(ptbxl_root, tmp_path):
    root, expected = ptbxl_root
    database = pd.read_csv(root / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    row = database.index[database["ecg_id"] == "1"][0]
    moved = _move_outside(root, database.loc[row, "filename_hr"], tmp_path / "elsewhere", (".hea", ".dat"))
    database.loc[row, "filename_hr"] = os.path.relpath(moved, root)
    database.to_csv(root / "ptbxl_database.csv", index=False)
    dd, summary = load_ptbxl(root, cache_dir=tmp_path / "c", return_summary=True)
    assert summary.skipped == {"path_outside_root": 1, "no_label": 1, "missing_file": 1}
    assert 1 not in {i for d in dd.values() for i in d["ecg_id"]}
    assert summary.records_found == len(expected)


def test_signal_file_named_outside_the_root_by_a_header_is_skipped(tmp_path):
    root, _ = fx.write_physionet_challenge(tmp_path / "cpsc", fx.default_cpsc_records()[:3], "cpsc2018")
    folder = root / "Training_WFDB"
    shutil.move(folder / "A0002.mat", tmp_path / "A0002.mat")
    header = folder / "A0002.hea"
    header.write_text(header.read_text().replace("A0002.mat", "../../A0002.mat"))
    dd, summary = load_cpsc2018(root, cache_dir=tmp_path / "c", return_summary=True)
    assert summary.skipped == {"path_outside_root": 1}
    assert "A0002" in summary.skipped_examples["path_outside_root"][0]
    assert sorted(i for d in dd.values() for i in d["record_id"]) == ["A0001", "A0003"]


# ----------------------------------------------------------------------------------------------- fingerprints
def _rewrite_signal_in_place(root: Path, ecg_id: int, seed: int) -> np.ndarray:
    """Write another signal into the same .dat (same size) and give the file a new mtime."""
    relative = f"records500/00000/{ecg_id:05d}_hr"
    dat = root / (relative + ".dat")
    size, mtime = dat.stat().st_size, dat.stat().st_mtime_ns
    signal = fx.synthetic_ecg(5000, 500, seed=seed)
    scratch = root.parent / "scratch"
    fx._wrsamp(scratch, f"{ecg_id:05d}_hr", fx._reorder(signal, fx.PTBXL_LEADS), fx.PTBXL_LEADS, 500, 1000)
    dat.write_bytes((scratch / f"{ecg_id:05d}_hr.dat").read_bytes())
    os.utime(dat, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))
    assert dat.stat().st_size == size
    return signal


def test_changed_signal_file_is_rebuilt_by_the_command_line(ptbxl_root, tmp_path, capsys):
    root, expected = ptbxl_root
    out = tmp_path / "out"
    assert cli_main(_build_args(root, out)) == 0
    before = load_from_disk(out)["test"].with_format("numpy")["ecg"][0]  # ecg_id 6
    np.testing.assert_allclose(before, expected[6]["signal"], atol=F16_ATOL)
    new_signal = _rewrite_signal_in_place(root, 6, seed=99)
    capsys.readouterr()
    assert cli_main(_build_args(root, out)) == 0
    assert "up to date" not in capsys.readouterr().out
    after = load_from_disk(out)["test"].with_format("numpy")["ecg"][0]
    np.testing.assert_allclose(after, new_signal, atol=F16_ATOL)
    assert cli_main(_build_args(root, out)) == 0
    assert "up to date" in capsys.readouterr().out


def test_changed_signal_file_gets_a_new_cache_build(ptbxl_root, tmp_path):
    root, _ = ptbxl_root
    first, s1 = load_ptbxl(root, cache_dir=tmp_path / "c", return_summary=True)
    new_signal = _rewrite_signal_in_place(root, 6, seed=98)
    second, s2 = load_ptbxl(root, cache_dir=tmp_path / "c", return_summary=True)
    assert s2.fingerprint != s1.fingerprint and not s2.from_cache
    np.testing.assert_allclose(second["test"].with_format("numpy")["ecg"][0], new_signal, atol=F16_ATOL)
