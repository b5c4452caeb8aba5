"""The Raft server's durable state (federation/disk.py) on a real disk: round trips, the
log's truncate-and-append rule, a SIGKILLed writer losing nothing it acknowledged, a torn
write-ahead log read back as a clean prefix, and a core restarted from it."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from federation.disk import DiskCorrupt, RaftDisk
from federation.raft import (
    CompactLog,
    Configuration,
    Entry,
    EntryKind,
    Persisted,
    PersistEntries,
    PersistSnapshot,
    PersistState,
    Proposed,
    RaftConfig,
    RaftCore,
    ServerInfo,
    Snapshot,
    SnapshotRequested,
)
from gossamer.core import TimerExpired


def entries(first: int, n: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(
        Entry(term, i, {"Op": "kv", "Key": f"k{i}", "Value": b"v"}) for i in range(first, first + n)
    )


def test_round_trip_and_truncate_then_append(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    d = RaftDisk(path)
    assert d.load() == Persisted()
    d.persist([PersistState(3, "s2"), PersistEntries(1, (Entry(1, 1, None), *entries(2, 4)))])
    d.persist([PersistEntries(3, entries(3, 2, term=3))])  # a conflicting suffix replaced
    d.close()
    p = RaftDisk(path).load()
    assert (p.term, p.voted_for) == (3, "s2")
    assert [(e.index, e.term) for e in p.entries] == [(1, 1), (2, 1), (3, 3), (4, 3)]
    assert p.entries[0].command is None
    assert p.entries[2].command == {"Op": "kv", "Key": "k3", "Value": b"v"}


def test_configuration_entries_keep_their_kind(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    conf = Configuration((ServerInfo("s1", "127.0.0.1:8300"), ServerInfo("s2", "", False)))
    config_entry = Entry(1, 1, conf.to_wire(), EntryKind.CONFIGURATION)
    RaftDisk(path).persist([PersistEntries(1, (config_entry, Entry(1, 2, None), *entries(3, 1)))])
    p = RaftDisk(path).load()
    assert p.entries[0] == config_entry and p.entries[0].kind is EntryKind.CONFIGURATION
    assert Configuration.from_wire(p.entries[0].command) == conf
    assert [e.kind for e in p.entries[1:]] == [EntryKind.COMMAND] * 2


def test_a_database_from_before_entry_kinds_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB);"
        "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, command BLOB);"
        "INSERT INTO meta VALUES ('term', 2), ('voted_for', 's1');"
        "INSERT INTO log VALUES (1, 1, NULL), (2, 2, NULL);"
    )
    db.close()
    d = RaftDisk(path)
    assert d.load() == Persisted(2, "s1", (Entry(1, 1, None), Entry(2, 2, None)))
    d.persist([PersistEntries(3, (Entry(2, 3, [["s1", "", True]], EntryKind.CONFIGURATION),))])
    d.close()
    assert RaftDisk(path).load().entries[2].kind is EntryKind.CONFIGURATION


def test_a_restarted_core_has_its_term_vote_and_log(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    d = RaftDisk(path)

    class Machine:
        def __init__(self) -> None:
            self.applied: list[int] = []

        def apply(self, index: int, command: object) -> int:
            self.applied.append(index)
            return index

    core = RaftCore("s1", ["s1"], Machine(), random.Random(1))
    core.handle(5.0, TimerExpired())
    for i in range(10):
        core.handle(5.0, Proposed(i, {"n": i}))
    d.persist(core.take_effects())
    d.close()
    m = Machine()
    again = RaftCore("s1", ["s1"], m, random.Random(2), persisted=RaftDisk(path).load())
    assert (again.term, again.voted_for, again.last_index) == (core.term, "s1", 11)
    again.handle(10.0, TimerExpired())
    again.handle(10.0, TimerExpired())
    assert m.applied[:10] == list(range(2, 12))  # replayed once it leads again


def test_snapshots_replace_each_other_and_compaction_drops_the_log_head(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    conf = Configuration((ServerInfo("s1", "127.0.0.1:8300"),))
    d = RaftDisk(path)
    d.persist([PersistEntries(1, entries(1, 30))])
    d.persist([PersistSnapshot(10, 1, conf, b"first"), CompactLog(7)])
    d.persist([PersistSnapshot(20, 1, conf, b"second" * 1000), CompactLog(17)])
    assert d._db.execute("SELECT COUNT(*) FROM snapshot").fetchone() == (1,)
    d.close()
    p = RaftDisk(path).load()
    assert p.snapshot == Snapshot(20, 1, conf, b"second" * 1000)
    assert [e.index for e in p.entries] == list(range(18, 31))
    # an installed snapshot past the whole log: the log is dropped
    d = RaftDisk(path)
    d.persist([PersistSnapshot(50, 3, conf, b"third"), CompactLog(50)])
    d.close()
    p = RaftDisk(path).load()
    assert p.snapshot is not None and p.snapshot.index == 50 and p.entries == ()


def test_a_core_restarts_from_its_snapshot_and_trailing_log(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")

    class Counter:
        def __init__(self) -> None:
            self.applied: list[int] = []

        def apply(self, index: int, command: object) -> int:
            self.applied.append(index)
            return index

        def snapshot(self) -> bytes:
            return ",".join(map(str, self.applied)).encode()

        def restore(self, data: bytes) -> None:
            self.applied = [int(x) for x in data.decode().split(",") if x]

    cfg = RaftConfig(snapshot_threshold=8, trailing_logs=3)
    d = RaftDisk(path)
    core = RaftCore("s1", ["s1"], Counter(), random.Random(1), cfg)
    core.handle(5.0, TimerExpired())
    for i in range(20):
        core.handle(5.0, Proposed(i, {"n": i}))
    core.handle(5.0, SnapshotRequested())
    d.persist(core.take_effects())
    d.close()
    p = RaftDisk(path).load()
    assert p.snapshot is not None and p.snapshot.index == 21 and p.entries[0].index == 19
    m = Counter()
    again = RaftCore("s1", None, m, random.Random(2), cfg, persisted=p)
    assert m.applied == list(range(2, 22))  # restored, not replayed
    assert (again.commit_index, again.last_index, again.log_base) == (21, 21, 19)
    assert again.configuration.voters() == ("s1",)  # from the snapshot


def test_a_gap_is_corruption(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    RaftDisk(path).persist([PersistEntries(1, entries(1, 3))])
    db = sqlite3.connect(path)
    db.execute("DELETE FROM log WHERE idx = 2")
    db.commit()
    db.close()
    with pytest.raises(DiskCorrupt, match="gap before index 3"):
        RaftDisk(path).load()


WRITER = textwrap.dedent(
    """
    import sys
    from federation.disk import RaftDisk
    from federation.raft import Entry, PersistEntries, PersistState
    d = RaftDisk(sys.argv[1])
    i = 0
    while True:
        i += 1
        d.persist([PersistState(i, "s1"), PersistEntries(i, (Entry(i, i, {"n": i}),))])
        print(i, flush=True)  # acknowledged only after the commit returned
    """
)


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    acked = 0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the count below
            acked = int(line)
            if acked >= 300:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    p = RaftDisk(path).load()
    assert len(p.entries) >= acked
    assert p.term == len(p.entries) and p.voted_for == "s1"
    assert [e.command for e in p.entries] == [{"n": i} for i in range(1, len(p.entries) + 1)]


def test_a_torn_write_ahead_log_reads_back_as_a_prefix(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    d = RaftDisk(path)
    d._db.execute("PRAGMA wal_autocheckpoint=0")  # keep every commit in the WAL
    for i in range(1, 21):
        d.persist([PersistEntries(i, entries(i, 1))])
    wal = path + "-wal"
    size = os.path.getsize(wal)
    for cut in (1, 100, 4096, size // 3):
        copy = tmp_path / f"torn{cut}"
        copy.mkdir()
        shutil.copy(path, copy / "raft.db")
        shutil.copy(wal, copy / "raft.db-wal")
        with open(copy / "raft.db-wal", "r+b") as f:
            f.truncate(size - cut)
        p = RaftDisk(str(copy / "raft.db")).load()
        assert [e.index for e in p.entries] == list(range(1, len(p.entries) + 1))
        assert len(p.entries) < 20 and p.entries == entries(1, len(p.entries))
    d.close()
