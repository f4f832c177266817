"""The hub's own durable state in one SQLite file (WAL): the event ledger and outbox, the journal of
executed commands, and the names people gave devices.

Every event is written to the outbox with its ledger position (epoch, sequence number) before it is
published, and every command result before it is sent. Events are committed in groups: ``add_event``
queues one in memory and ``flush`` commits what is queued in one transaction (the publisher flushes
within milliseconds, a full queue flushes at once, and everything that reads the outbox or the
ledger flushes first), so a published event is always durable and the sequence numbers the store
reports are always committed ones. A row leaves the outbox only when the cloud
acknowledges that it has committed it (``ack``), never when the broker acknowledged the publish: a
broker that dies before saving its queue must not lose an event. The epoch is made at random when
the store is created, so a hub whose store was lost starts a new ledger the cloud tells apart.
A command id is journaled before it runs, so a redelivered command is answered from the journal.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from private_files import private_sqlite

LOGGER = logging.getLogger(__name__)

RowKind = Literal["event", "result"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'event',
    seq INTEGER,
    ref TEXT
);
CREATE INDEX IF NOT EXISTS ix_outbox_seq ON outbox(seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_outbox_ref ON outbox(ref) WHERE ref IS NOT NULL;
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
    kind: RowKind = "event"
    created: float = 0.0  # when it was written (epoch seconds)


def new_epoch() -> str:
    """A ledger epoch: 16 random hex digits (64 bits, so two stores never share one)."""
    return secrets.token_hex(8)


class HubStore:
    """Synchronous on purpose: each call is one short local transaction (well under a millisecond
    with WAL and synchronous=NORMAL), cheaper than a thread hop."""

    def __init__(self, path: Path, *, max_rows: int = 100_000, max_age: float = 7 * 86400,
                 flush_count: int = 500) -> None:
        private_sqlite(path)
        self.path = path
        self.max_rows = max_rows
        self.max_age = max_age
        self.flush_count = flush_count
        self._queued: list[tuple[str, bytes, float, int]] = []  # events not committed yet
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade()
        self.db.executescript(_SCHEMA)
        self.epoch = self._epoch()
        self._seq = self._meta("seq")
        self._rows = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        self.flush()
        self.db.close()

    def _upgrade(self) -> None:
        """A store written before the ledger had no row kinds: tell its events and results apart
        (their sequence numbers are in the payloads) so they wait for the cloud's acknowledgement."""
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(outbox)")}
        if not columns or "kind" in columns:
            return
        with self.db:
            self.db.execute("BEGIN")
            for ddl in ("kind TEXT NOT NULL DEFAULT 'event'", "seq INTEGER", "ref TEXT"):
                self.db.execute(f"ALTER TABLE outbox ADD COLUMN {ddl}")
            for row_id, topic, payload in self.db.execute(
                    "SELECT id, topic, payload FROM outbox").fetchall():
                try:
                    data = json.loads(payload)
                except ValueError:
                    data = {}
                if topic.endswith("/results"):
                    self.db.execute("UPDATE outbox SET kind = 'result', ref = ? WHERE id = ?",
                                    (data.get("id"), row_id))
                else:
                    self.db.execute("UPDATE outbox SET seq = ? WHERE id = ?",
                                    (data.get("seq"), row_id))

    def _epoch(self) -> str:
        row = self.db.execute("SELECT epoch FROM ledger WHERE id = 1").fetchone()
        if row is not None:
            return str(row[0])
        epoch = new_epoch()
        self.db.execute("INSERT INTO ledger(id, epoch) VALUES(1, ?)", (epoch,))
        LOGGER.debug("new event ledger, epoch %s", epoch)
        return epoch

    def _meta(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def _bump(self, key: str, by: int) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (key, by))

    # ------------------------------------------------------------------ ledger
    @property
    def last_seq(self) -> int:
        self.flush()
        return self._seq

    @property
    def acked_seq(self) -> int:
        """The highest sequence number the cloud acknowledged as committed."""
        return self._meta("acked_seq")

    @property
    def dropped_upto(self) -> int:
        """The highest sequence number the outbox bound dropped before the cloud had it."""
        self.flush()
        return self._meta("dropped_upto")

    @property
    def dropped(self) -> int:
        self.flush()
        return self._meta("dropped")

    @property
    def pending(self) -> int:
        self.flush()
        return self._rows

    def oldest_event_created(self) -> float | None:
        """When the oldest event still waiting for the cloud's acknowledgement was written
        (epoch seconds); None when none waits."""
        self.flush()
        row = self.db.execute("SELECT created FROM outbox WHERE kind = 'event' ORDER BY id "
                              "LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def add_event(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Allocate the next sequence number, build the payload with it and queue it for the next
        flush (at once when ``flush_count`` are queued)."""
        seq = self._seq + 1
        payload: bytes = build(seq)
        self._queued.append((topic, payload, time.time(), seq))
        self._seq = seq
        if len(self._queued) >= self.flush_count:
            self.flush()
        return seq

    @property
    def queued(self) -> int:
        """Events allocated a sequence number and not committed yet."""
        return len(self._queued)

    def flush(self) -> int:
        """Commit the queued events and the ledger's sequence number in one transaction; returns
        how many. A failed commit keeps them queued (and raises): the next flush tries again."""
        if not self._queued:
            return 0
        rows, self._queued = self._queued, []
        try:
            with self.db:
                self.db.execute("BEGIN")
                self._set_meta("seq", rows[-1][3])
                self.db.executemany("INSERT INTO outbox(topic, payload, retain, created, kind, seq) "
                                    "VALUES(?,?,0,?,'event',?)", rows)
        except BaseException:
            self._queued[:0] = rows
            raise
        self._rows += len(rows)
        if self._rows > self.max_rows:
            self.trim()
        return len(rows)

    def add_result(self, topic: str, command_id: str, payload: bytes) -> None:
        """Queue a command result until the cloud acknowledges it by command id."""
        self.flush()  # the outbox keeps the order things happened in
        self.db.execute("INSERT INTO outbox(topic, payload, retain, created, kind, ref) "
                        "VALUES(?,?,0,?,'result',?)", (topic, payload, time.time(), command_id))
        self._rows += 1

    def pending_rows(self, after: int, limit: int) -> list[OutboxRow]:
        self.flush()
        rows = self.db.execute(
            "SELECT id, topic, payload, retain, kind, created FROM outbox WHERE id > ? "
            "ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [OutboxRow(r[0], r[1], bytes(r[2]), bool(r[3]), r[4], r[5]) for r in rows]

    def ack(self, seq: int, results: Sequence[str] = ()) -> int:
        """The cloud committed every event up to ``seq`` and the given results: let them go.
        Returns how many rows left the outbox."""
        self.flush()
        with self.db:
            self.db.execute("BEGIN")
            removed = 0
            if seq > self.acked_seq:
                self._set_meta("acked_seq", seq)
                removed += self.db.execute(
                    "DELETE FROM outbox WHERE kind = 'event' AND seq <= ?", (seq,)).rowcount
            for start in range(0, len(results), 500):
                chunk = list(results[start:start + 500])
                marks = ",".join("?" * len(chunk))
                removed += self.db.execute(
                    f"DELETE FROM outbox WHERE kind = 'result' AND ref IN ({marks})",
                    chunk).rowcount
        self._rows -= removed
        return removed

    def trim(self) -> int:
        """Drop the oldest rows beyond the size bound and rows older than the age bound; count them
        and remember the highest dropped sequence number (the cloud stops waiting for those)."""
        self.flush()
        cutoff = time.time() - self.max_age
        with self.db:
            self.db.execute("BEGIN")
            excess = max(0, self._rows - self.max_rows)
            doomed = ("SELECT id FROM outbox WHERE created < ? "
                      "UNION SELECT id FROM (SELECT id FROM outbox ORDER BY id LIMIT ?)")
            top = self.db.execute(f"SELECT MAX(seq) FROM outbox WHERE id IN ({doomed})",
                                  (cutoff, excess)).fetchone()[0]
            count = self.db.execute(f"DELETE FROM outbox WHERE id IN ({doomed})",
                                    (cutoff, excess)).rowcount
            if count:
                self._bump("dropped", count)
            if top is not None and top > self.dropped_upto:
                self._set_meta("dropped_upto", int(top))
        self._rows = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        if count:
            LOGGER.warning("outbox full or stale: dropped %d oldest messages (total dropped %d)",
                           count, self.dropped)
        return int(count)

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
