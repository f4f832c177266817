"""The ingest benchmark (bench.ingest) end to end at a tiny size, so that it does not rot: a real
Mosquitto, real hub accounts, a real `spoke cloud run`. No timing is asserted, only that every
message was received and stored exactly once and the table shows the figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from bench.ingest import Fleet, run, table


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_event_is_received_raw_and_stored_by_the_cloud(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    postgres_url = None
    if backend == "postgresql":
        server: Engine = request.getfixturevalue("postgres_server")
        postgres_url = server.url.render_as_string(hide_password=False)
    fleet = Fleet(hubs=2, devices_per_hub=2, events_per_hub=40)
    raw, cloud = run(fleet, rounds=1, workdir=tmp_path, postgres_url=postgres_url,
                     sqlite=backend == "sqlite")
    assert (raw.what, raw.messages) == ("raw", 80)
    assert (cloud.what, cloud.stored, cloud.dead_letters) == (backend, 80, 0)
    assert raw.rate > 0 and cloud.rate > 0 and cloud.batches >= 1
    shown = table([raw, cloud], "events")
    assert "bare paho subscriber" in shown and f"spoke cloud ({backend})" in shown


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_batched_events_are_counted_raw_and_stored_beside_single_events(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    postgres_url = None
    if backend == "postgresql":
        server: Engine = request.getfixturevalue("postgres_server")
        postgres_url = server.url.render_as_string(hide_password=False)
    fleet = Fleet(hubs=2, devices_per_hub=2, events_per_hub=45, batch=10)
    raw, batched, singles = run(fleet, rounds=1, workdir=tmp_path, postgres_url=postgres_url,
                                sqlite=backend == "sqlite")
    assert (raw.what, raw.messages, raw.per_message) == ("raw", 90, 10)  # events, not messages
    assert (batched.what, batched.per_message, batched.stored, batched.dead_letters) == (
        backend, 10, 90, 0)
    assert (singles.what, singles.per_message, singles.stored, singles.dead_letters) == (
        backend, 1, 90, 0)
    assert raw.rate > 0 and batched.rate > 0 and singles.rate > 0
    shown = table([raw, batched, singles], "events")
    assert f"spoke cloud ({backend}), 10/msg" in shown and f"spoke cloud ({backend}) " in shown


def test_every_retained_description_is_registered(tmp_path: Path) -> None:
    fleet = Fleet(hubs=3, devices_per_hub=7)
    raw, cloud = run(fleet, rounds=1, devices_mode=True, workdir=tmp_path)
    assert (raw.messages, cloud.messages, cloud.stored) == (21, 21, 21)
    assert cloud.rate > 0
