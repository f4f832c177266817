"""The hub's own durable state in one SQLite file (WAL): the outbox, the event sequence, the journal
of executed commands, and the names people gave devices.

Every event is written to the outbox, with its sequence number, before it is published; a row leaves
the outbox only when the broker has acknowledged it. A command id is journaled before it runs, so a
redelivered command is answered from the journal instead of running twice.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    received REAL NOT NULL,
    result BLOB
);
CREATE TABLE IF NOT EXISTS names (ieee TEXT PRIMARY KEY, name TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    retain: bool


class HubStore:
    """Synchronous on purpose: each call is one short local transaction (well under a millisecond
    with WAL and synchronous=NORMAL), cheaper than a thread hop."""

    def __init__(self, path: Path, *, max_rows: int = 100_000, max_age: float = 7 * 86400) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_rows = max_rows
        self.max_age = max_age
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._seq = self._meta("seq")
        self._rows = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, key: str, by: int) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (key, by))

    # ------------------------------------------------------------------ outbox
    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def dropped(self) -> int:
        return self._meta("dropped")

    @property
    def pending(self) -> int:
        return self._rows

    def add_event(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Allocate the next sequence number, build the payload with it and queue it, atomically."""
        seq = self._seq + 1
        payload: bytes = build(seq)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO meta(key, value) VALUES('seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (seq,))
            self.db.execute("INSERT INTO outbox(topic, payload, retain, created) VALUES(?,?,0,?)",
                            (topic, payload, time.time()))
        self._seq = seq
        self._rows += 1
        if self._rows > self.max_rows:
            self.trim()
        return seq

    def add(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox(topic, payload, retain, created) VALUES(?,?,?,?)",
            (topic, payload, int(retain), time.time()))
        self._rows += 1
        return int(cur.lastrowid or 0)

    def pending_rows(self, after: int, limit: int) -> list[OutboxRow]:
        rows = self.db.execute(
            "SELECT id, topic, payload, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit)).fetchall()
        return [OutboxRow(r[0], r[1], bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, row_id: int) -> None:
        cur = self.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        self._rows -= cur.rowcount

    def trim(self) -> int:
        """Drop the oldest rows beyond the size bound and rows older than the age bound; count them."""
        cutoff = time.time() - self.max_age
        with self.db:
            self.db.execute("BEGIN")
            old = self.db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
            excess = max(0, self._rows - old - self.max_rows)
            if excess:
                self.db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                    (excess,))
            if old + excess:
                self._bump("dropped", old + excess)
        self._rows = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        if old + excess:
            LOGGER.warning("outbox full or stale: dropped %d oldest messages (total dropped %d)",
                           old + excess, self.dropped)
        return old + excess

    # ------------------------------------------------------------------ command journal
    def begin_command(self, command_id: str) -> tuple[bool, bytes | None]:
        """Record a command id before running it. Returns (first time?, stored result if any)."""
        try:
            self.db.execute("INSERT INTO commands(id, received) VALUES(?, ?)",
                            (command_id, time.time()))
            return True, None
        except sqlite3.IntegrityError:
            row = self.db.execute("SELECT result FROM commands WHERE id = ?",
                                  (command_id,)).fetchone()
            return False, (bytes(row[0]) if row and row[0] is not None else None)

    def finish_command(self, command_id: str, result: bytes) -> None:
        self.db.execute("UPDATE commands SET result = ? WHERE id = ?", (result, command_id))

    def prune_commands(self, older_than: float) -> None:
        self.db.execute("DELETE FROM commands WHERE received < ?", (time.time() - older_than,))

    # ------------------------------------------------------------------ names
    def names(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT ieee, name FROM names").fetchall())

    def set_name(self, ieee: str, name: str | None) -> None:
        if name:
            self.db.execute("INSERT INTO names(ieee, name) VALUES(?, ?) "
                            "ON CONFLICT(ieee) DO UPDATE SET name = excluded.name", (ieee, name))
        else:
            self.db.execute("DELETE FROM names WHERE ieee = ?", (ieee,))
