"""The Raft server's durable state, in SQLite from the standard library: the current term,
the vote, the log and the latest snapshot (issue 5: "SQLite in WAL mode ... fsync before
acknowledging; crash recovery that tolerates a torn last write").

Rules:

1. :meth:`RaftDisk.persist` writes every ``PersistState`` / ``PersistEntries`` /
   ``PersistSnapshot`` / ``CompactLog`` of a batch in **one** transaction and returns
   only once it is durable: WAL mode with ``synchronous=FULL`` fsyncs the write-ahead log
   at each commit. The driver calls it before carrying out the sends that follow those
   effects (the core's ordering rule).
2. A crash at any point leaves either the whole transaction or none of it: SQLite checks
   every WAL frame's checksum and stops at the first torn or missing one, so a torn last
   write is dropped on open, never half-read.
3. What :meth:`load` returns is exactly what was acknowledged: term, vote, the latest
   snapshot and a log that is contiguous (checked; a gap is corruption and raises), from
   index 1 without a snapshot, else from at most the snapshot's index + 1.
4. Commands are stored as msgpack (they are msgpack-encodable by contract); the no-op is
   NULL. ``kind`` is the entry's ``EntryKind`` (a configuration entry's command is its
   ``Configuration.to_wire()``). A database written before ``kind`` existed gets the
   column on open (``ALTER TABLE``, default 0: every old entry was a command).
5. The ``snapshot`` table holds the latest snapshot only: a new one is inserted and the
   previous one deleted in the same transaction, so one of the two is always whole on
   disk. ``CompactLog`` deletes the log rows at or before its index.

This module does file I/O, so it is the driver's, not the core's.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgpack

from federation.raft import (
    CompactLog,
    Configuration,
    Entry,
    EntryKind,
    Persisted,
    PersistEntries,
    PersistSnapshot,
    PersistState,
    Snapshot,
)

__all__ = ["DiskCorrupt", "RaftDisk"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    command BLOB,
    kind INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    configuration BLOB NOT NULL,
    data BLOB NOT NULL
);
"""


class DiskCorrupt(Exception):
    """The stored state breaks an invariant (a gap in the log): refuse to start on it."""


class RaftDisk:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = [row[1] for row in self._db.execute("PRAGMA table_info(log)")]
        if "kind" not in columns:  # a database from before configuration entries
            self._db.execute("ALTER TABLE log ADD COLUMN kind INTEGER NOT NULL DEFAULT 0")
        self.writes = 0

    def close(self) -> None:
        self._db.close()

    def load(self) -> Persisted:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        term = int(meta.get("term", 0))
        vote = meta.get("voted_for")
        snapshot = None
        row = self._db.execute(
            "SELECT idx, term, configuration, data FROM snapshot ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            try:
                conf = Configuration.from_wire(msgpack.unpackb(row[2], raw=False))
            except ValueError as e:
                raise DiskCorrupt(f"{self.path}: snapshot configuration: {e}") from None
            snapshot = Snapshot(int(row[0]), int(row[1]), conf, bytes(row[3]))
        entries: list[Entry] = []
        rows = self._db.execute("SELECT idx, term, command, kind FROM log ORDER BY idx")
        for idx, term_, blob, kind in rows:
            first = snapshot is not None and not entries and idx <= snapshot.index + 1
            if idx != (entries[-1].index + 1 if entries else 1) and not first:
                raise DiskCorrupt(f"{self.path}: log has a gap before index {idx}")
            try:
                entry_kind = EntryKind(kind)
            except ValueError:
                raise DiskCorrupt(f"{self.path}: entry {idx} has unknown kind {kind!r}") from None
            command = None if blob is None else msgpack.unpackb(blob, raw=False)
            entries.append(Entry(term_, idx, command, entry_kind))
        return Persisted(term, vote if vote is None else str(vote), tuple(entries), snapshot)

    def persist(self, effects: Iterable[Any]) -> int:
        """Make the persist effects among ``effects`` durable, in one transaction; returns
        how many there were. Other effects are ignored."""
        todo = [
            e
            for e in effects
            if isinstance(e, PersistState | PersistEntries | PersistSnapshot | CompactLog)
        ]
        if not todo:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for e in todo:
                if isinstance(e, PersistState):
                    db.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [("term", e.term), ("voted_for", e.voted_for)],
                    )
                elif isinstance(e, PersistSnapshot):
                    cur = db.execute(
                        "INSERT INTO snapshot (idx, term, configuration, data) VALUES (?, ?, ?, ?)",
                        (
                            e.index,
                            e.term,
                            msgpack.packb(e.configuration.to_wire(), use_bin_type=True),
                            e.data,
                        ),
                    )
                    db.execute("DELETE FROM snapshot WHERE id < ?", (cur.lastrowid,))
                elif isinstance(e, CompactLog):
                    db.execute("DELETE FROM log WHERE idx <= ?", (e.through_index,))
                else:
                    db.execute("DELETE FROM log WHERE idx >= ?", (e.from_index,))
                    db.executemany(
                        "INSERT INTO log (idx, term, command, kind) VALUES (?, ?, ?, ?)",
                        [
                            (
                                x.index,
                                x.term,
                                None
                                if x.command is None
                                else msgpack.packb(x.command, use_bin_type=True),
                                int(x.kind),
                            )
                            for x in e.entries
                        ],
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.writes += 1
        return len(todo)
