"""dbeta_hf.utils: atomic writes, owned output folders, one writer per folder (PID + host locks), paths kept inside
their root."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest

from dbeta_hf.utils import (
    LOCK_NAME,
    MARKER_NAME,
    ForeignEntriesError,
    OutputLock,
    OutputLockedError,
    OwnedOutput,
    PathOutsideRootError,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    is_inside,
    join_inside,
    open_owned_output,
    parse_temp_name,
    pid_alive,
    publish_dir,
    read_lock,
    remove_stale_temps,
    temp_path,
    this_host,
)


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


@pytest.fixture
def live_pid():
    """The PID of a running process of this host (killed after the test)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def _write_lock(folder, pid, host=None, purpose="someone else's build"):
    folder.mkdir(parents=True, exist_ok=True)
    content = {"pid": pid, "host": host or this_host(), "started": "2025-01-01T00:00:00+00:00", "purpose": purpose}
    (folder / LOCK_NAME).write_text(json.dumps(content))
    return content


# ----------------------------------------------------------------------------------------------- atomic writes
def test_temp_names_are_recognised():
    tmp = temp_path("/x/build_summary.json")
    assert tmp.parent.as_posix() == "/x" and parse_temp_name(tmp.name) == ("build_summary.json", os.getpid())
    assert parse_temp_name("build_summary.json.tmp-1234") == ("build_summary.json", 1234)  # the older form
    assert parse_temp_name("train-00001-of-00003.tmp-77-0123abcd") == ("train-00001-of-00003", 77)
    for name in ("build_summary.json", "notes.tmp", "a.tmp-x", "a.tmp-12-XYZ"):
        assert parse_temp_name(name) is None, name


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and target.read_text().endswith("\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "half")
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary left behind


def test_atomic_dir_publishes_complete_folders_only(tmp_path):
    final = tmp_path / "checkpoint-1"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed while saving")
    assert list(tmp_path.iterdir()) == []  # neither the final folder nor the temporary one
    with atomic_dir(final) as tmp:
        (tmp / "weights.bin").write_text("v1")
    assert (final / "weights.bin").read_text() == "v1"
    with pytest.raises(FileExistsError):
        with atomic_dir(final) as tmp:
            (tmp / "weights.bin").write_text("v2")
    assert (final / "weights.bin").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]
    with atomic_dir(final, replace=True) as tmp:
        (tmp / "weights.bin").write_text("v2")
    assert (final / "weights.bin").read_text() == "v2" and [p.name for p in tmp_path.iterdir()] == ["checkpoint-1"]
    other = tmp_path / "other"
    other.mkdir()
    assert publish_dir(other, tmp_path / "renamed") == tmp_path / "renamed" and not other.exists()


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path, live_pid):
    dead = _dead_pid()
    (tmp_path / f"build_summary.json.tmp-{dead}").write_text("x")
    (tmp_path / f"shard.tmp-{dead}-0123abcd").mkdir()
    (tmp_path / f"plan.json.tmp-{live_pid}-0123abcd").write_text("x")  # a running writer's
    (tmp_path / f"mine.tmp-{os.getpid()}-0123abcd").write_text("x")
    (tmp_path / "notes.txt").write_text("user file")
    assert remove_stale_temps(tmp_path, finals=["plan.json", "other"]) == []
    assert remove_stale_temps(tmp_path) == sorted([f"build_summary.json.tmp-{dead}", f"shard.tmp-{dead}-0123abcd"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"plan.json.tmp-{live_pid}-0123abcd", f"mine.tmp-{os.getpid()}-0123abcd", "notes.txt"]
    )


# ----------------------------------------------------------------------------------------------- locks
def test_lock_records_the_writer_and_refuses_a_second_one(tmp_path, live_pid):
    folder = tmp_path / "out"
    with OutputLock(folder, purpose="test build") as lock:
        holder = read_lock(folder)
        assert holder["pid"] == os.getpid() and holder["host"] == this_host() and holder["purpose"] == "test build"
        with OutputLock(folder):  # re-entrant within one process
            pass
        assert read_lock(folder) == holder
        assert lock.took_over is None
    assert read_lock(folder) is None  # released

    _write_lock(folder, live_pid, purpose="python -m dbeta_hf.data build ptbxl")
    with pytest.raises(OutputLockedError) as info:
        OutputLock(folder).acquire()
    message = str(info.value)
    assert f"PID {live_pid} on host {this_host()}" in message and "dbeta_hf.data build ptbxl" in message
    assert info.value.holder["pid"] == live_pid
    assert read_lock(folder)["pid"] == live_pid  # left alone


def test_stale_lock_is_reported_and_taken_over(tmp_path, caplog):
    folder = tmp_path / "out"
    dead = _dead_pid()
    stale = _write_lock(folder, dead)
    with caplog.at_level(logging.WARNING):
        with OutputLock(folder) as lock:
            assert lock.took_over == stale
            assert read_lock(folder)["pid"] == os.getpid()
    assert f"PID {dead}" in caplog.text and "stale" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == []  # no guard or temporary left


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    folder = tmp_path / "out"
    _write_lock(folder, _dead_pid(), host="some-other-node")
    with pytest.raises(OutputLockedError, match="some-other-node.*delete"):
        OutputLock(folder).acquire()


def test_lock_waits_for_the_holder_when_asked(tmp_path, live_pid):
    folder = tmp_path / "out"
    _write_lock(folder, live_pid)
    threading.Timer(0.3, lambda: (folder / LOCK_NAME).unlink()).start()
    with OutputLock(folder, timeout=10, poll_interval=0.05):
        assert read_lock(folder)["pid"] == os.getpid()


def _hold_lock(folder, ready, release):
    with OutputLock(folder, purpose="child writer"):
        ready.set()
        release.wait(30)


def test_two_processes_one_writer(tmp_path):
    """A real second process holds the lock: this one is refused with its PID; after it ends the lock is free."""
    folder = tmp_path / "out"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_lock, args=(folder, ready, release))
    child.start()
    try:
        assert ready.wait(30)
        with pytest.raises(OutputLockedError, match=f"PID {child.pid} on host .*child writer"):
            OutputLock(folder).acquire()
    finally:
        release.set()
        child.join(30)
    with OutputLock(folder) as lock:
        assert lock.took_over is None  # the child released it


def _try_lock(folder, results):
    try:
        OutputLock(folder).acquire()
    except OutputLockedError as error:
        results.put(str(error))
    else:
        results.put("acquired")


def test_a_forked_child_does_not_share_its_parents_lock(tmp_path):
    folder = tmp_path / "out"
    context = multiprocessing.get_context("fork")
    with OutputLock(folder):
        results = context.Queue()
        child = context.Process(target=_try_lock, args=(folder, results))
        child.start()
        outcome = results.get(timeout=30)
        child.join(30)
    assert f"PID {os.getpid()} on host" in outcome


# ----------------------------------------------------------------------------------------------- ownership
def test_foreign_entries_are_all_listed_and_never_deleted(tmp_path):
    folder = tmp_path / "out"
    for name in ("train", "test", "notes"):
        (folder / name).mkdir(parents=True)
        (folder / name / "keep.txt").write_text("user data")
    out = OwnedOutput(folder, "my tool")
    assert out.foreign_entries() == ["notes", "test", "train"]
    with pytest.raises(ForeignEntriesError) as info:
        with open_owned_output(folder, "my tool"):
            pass
    assert info.value.foreign == ["notes", "test", "train"]
    assert "notes, test, train" in str(info.value)
    assert sorted(p.name for p in folder.iterdir()) == ["notes", "test", "train"]  # no marker, no lock written
    with pytest.raises(ValueError, match="refusing to delete"):
        out.remove("train")
    assert (folder / "train" / "keep.txt").exists()
    assert out.foreign_entries(extra_owned=["train", "test", "notes"]) == []


def test_owned_entries_and_their_temporaries(tmp_path, live_pid):
    folder = tmp_path / "out"
    dead = _dead_pid()
    with open_owned_output(folder, "my tool", purpose="test") as out:
        assert out.read_marker() == {"tool": "my tool", "created_folder": True, "entries": []}
        (out.path("model.safetensors")).write_text("w")
        staging = out.path(f".publish.tmp-{dead}-0123abcd")  # a killed writer's claimed staging folder
        staging.mkdir()
        (folder / f"model.safetensors.tmp-{dead}").write_text("half")  # an owned name's temporary
        (folder / f"model.safetensors.tmp-{live_pid}").write_text("running")
        assert out.owned == ["model.safetensors", staging.name]
        assert out.foreign_entries() == []
        (folder / "user.txt").write_text("mine")
        (folder / f"user.txt.tmp-{dead}").write_text("not ours either")
        assert out.foreign_entries() == ["user.txt", f"user.txt.tmp-{dead}"]
        assert out.remove_stale_temps() == sorted([f"model.safetensors.tmp-{dead}", staging.name])
        assert out.owned == ["model.safetensors"]
        assert out.remove_owned() == ["model.safetensors"]
        left = sorted(p.name for p in folder.iterdir())
        assert left == sorted([LOCK_NAME, MARKER_NAME, f"model.safetensors.tmp-{live_pid}", "user.txt",
                               f"user.txt.tmp-{dead}"])
    assert not (folder / LOCK_NAME).exists()


def test_marker_of_another_tool_owns_nothing_for_this_one(tmp_path):
    folder = tmp_path / "out"
    with open_owned_output(folder, "tool A") as out:
        out.path("a.bin").write_text("a")
    with pytest.raises(ForeignEntriesError, match="a.bin.*belongs to 'tool A'"):
        with open_owned_output(folder, "tool B"):
            pass
    existing = tmp_path / "empty"
    existing.mkdir()
    with open_owned_output(existing, "tool A") as out:
        assert out.read_marker()["created_folder"] is False
    with pytest.raises(ValueError, match="one name"):
        OwnedOutput(folder, "tool A").claim("../escape")


# ----------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize(
    "relative, inside",
    [
        ("files/p1000/p1/s2/2", True),
        ("files/../files/x", True),
        ("../outside/x", False),
        ("files/../../outside", False),
        ("/etc/passwd", False),
        ("./x", True),
    ],
)
def test_join_inside(tmp_path, relative, inside):
    root = tmp_path / "root"
    assert is_inside(root, relative) is inside
    if inside:
        assert join_inside(root, relative).startswith(str(root))
    else:
        with pytest.raises(PathOutsideRootError, match="leads outside the root"):
            join_inside(root, relative)
    assert is_inside(root, str(root / "a" / "b"))  # an absolute path inside the root is fine
    assert not is_inside(root, str(tmp_path / "root-sibling" / "x"))  # a name prefix is not a parent


def test_pid_alive(live_pid):
    assert pid_alive(os.getpid()) and pid_alive(live_pid)
    assert not pid_alive(_dead_pid()) and not pid_alive(0) and not pid_alive(-5)
