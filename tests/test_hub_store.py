"""The hub's durable store: the outbox keeps order and sequence across restarts, lets rows go only
when the cloud acknowledges them, keeps its ledger epoch (a new store starts a new one), is bounded
by size and age with every drop counted, and the command journal makes commands run at most once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from hub.store import HubStore


def _payload(seq: int) -> bytes:
    return f'{{"seq": {seq}}}'.encode()


def test_outbox_survives_a_restart_in_order_with_its_sequence(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    for _ in range(5):
        store.add_event("t/events", _payload)
    assert store.ack(1) == 1  # the cloud committed the first one
    store.close()

    again = HubStore(tmp_path / "hub.db")
    assert again.last_seq == 5
    assert again.pending == 4
    assert [r.payload for r in again.pending_rows(0, 10)] == [_payload(s) for s in (2, 3, 4, 5)]
    assert again.add_event("t/events", _payload) == 6  # the sequence only grows
    # Everything acknowledged: the outbox empties, the sequence does not reset.
    assert again.ack(6) == 5
    assert again.acked_seq == 6
    again.close()
    third = HubStore(tmp_path / "hub.db")
    assert third.pending == 0
    assert third.add_event("t/events", _payload) == 7


def test_full_outbox_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db", max_rows=100)
    for _ in range(130):
        store.add_event("t/events", _payload)
    assert store.pending == 100
    assert store.dropped == 30
    assert store.dropped_upto == 30  # the cloud stops waiting for 1..30
    rows = store.pending_rows(0, 1000)
    assert rows[0].payload == _payload(31)  # the oldest went first
    assert rows[-1].payload == _payload(130)
    store.close()
    assert HubStore(tmp_path / "hub.db", max_rows=100).dropped == 30  # the count persists


def test_stale_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db", max_age=0.2)
    store.add_event("t/events", _payload)
    store.add_event("t/events", _payload)
    time.sleep(0.3)
    store.add_event("t/events", _payload)
    assert store.trim() == 2
    assert store.dropped == 2
    assert [r.payload for r in store.pending_rows(0, 10)] == [_payload(3)]


def test_command_journal_answers_a_redelivery_instead_of_running_again(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    assert store.begin_command("c1") == (True, None)
    assert store.begin_command("c1") == (False, None)  # journaled, no answer yet (running/crashed)
    store.finish_command("c1", b"result")
    store.close()
    again = HubStore(tmp_path / "hub.db")
    assert again.begin_command("c1") == (False, b"result")
    assert again.begin_command("c2") == (True, None)


def test_the_epoch_is_kept_and_a_new_store_starts_a_new_one(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    epoch = store.epoch
    store.add_event("t/events", _payload)
    store.close()
    assert HubStore(tmp_path / "hub.db").epoch == epoch
    (tmp_path / "hub.db").unlink()
    fresh = HubStore(tmp_path / "hub.db")  # the store was lost (new SD card)
    assert fresh.epoch != epoch
    assert fresh.add_event("t/events", _payload) == 1


def test_results_wait_for_their_own_acknowledgement(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.db")
    store.add_event("t/events", _payload)
    store.add_result("t/results", "cmd-a", b"a")
    store.add_result("t/results", "cmd-b", b"b")
    assert store.ack(1, ["cmd-b", "unknown"]) == 2  # event 1 and result b
    assert [r.payload for r in store.pending_rows(0, 10)] == [b"a"]
    assert store.ack(1) == 0  # an old mark again changes nothing
    assert store.pending == 1


def test_an_outbox_from_before_the_ledger_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
            payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
        INSERT INTO meta VALUES ('seq', 2);
    """)
    old.execute("INSERT INTO outbox(topic, payload, created) VALUES(?, ?, ?)",
                ("spoke/v1/hubs/h/events", json.dumps({"seq": 2}).encode(), time.time()))
    old.execute("INSERT INTO outbox(topic, payload, created) VALUES(?, ?, ?)",
                ("spoke/v1/hubs/h/results", json.dumps({"id": "c1"}).encode(), time.time()))
    old.commit()
    old.close()
    store = HubStore(path)
    assert store.last_seq == 2 and store.pending == 2
    assert store.ack(2, ["c1"]) == 2
    assert store.pending == 0
