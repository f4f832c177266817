"""Files that hold secrets are their owner's alone: the cloud's database (token hashes, the registry)
and its -wal/-shm, the hub's zigpy database and network backups (the Zigbee network key), the hub's
store; 0600, in folders Spoke creates 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.auth import create_token
from cloud.broker_credentials import ensure_broker_secret
from cloud.settings import CloudSettings
from cloud.storage import open_storage
from hub.control import request
from tests.conftest import BrokerAddress
from tests.stack import running_stack


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The usual umask, under which a plain open() makes files everyone can read."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_cloud_database_and_its_folders_are_private(tmp_path: Path):
    db = tmp_path / "new" / "data" / "cloud.db"
    storage = open_storage(CloudSettings(database_url=f"sqlite:///{db}"))
    try:
        create_token(storage.registry, "t")  # a write, so the -wal and -shm exist
        files = [db, db.with_name("cloud.db-wal"), db.with_name("cloud.db-shm")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert (mode(tmp_path / "new"), mode(db.parent)) == (0o700, 0o700)
    finally:
        storage.close()


def test_a_database_others_could_read_is_tightened_when_opened(tmp_path: Path):
    db = tmp_path / "cloud.db"
    storage = open_storage(CloudSettings(database_url=f"sqlite:///{db}"))
    storage.close()
    db.chmod(0o644)
    db.with_name("cloud.db-wal").write_bytes(b"")  # a leftover from an older version
    db.with_name("cloud.db-wal").chmod(0o644)
    storage = open_storage(CloudSettings(database_url=f"sqlite:///{db}"))
    try:
        assert create_token(storage.registry, "t")[1]  # still a working database
        assert (mode(db), mode(db.with_name("cloud.db-wal"))) == (0o600, 0o600)
    finally:
        storage.close()


async def test_the_hub_keeps_its_network_key_private(tmp_path: Path, mosquitto: BrokerAddress):
    async with running_stack(tmp_path, mosquitto) as stack:
        await stack.wait_for_devices(1)
        assert stack.hub is not None
        settings = stack.hub.settings
        answer = await request(settings.control_socket, {"op": "backup"})
        assert answer["ok"], answer
        backup = Path(answer["path"])
        assert b"network_key" in backup.read_bytes()
        data = settings.hub_data_dir
        private = [backup, *settings.backup_dir.iterdir(), settings.zigbee_db, settings.outbox_db,
                   *data.glob("*.db-wal"), *data.glob("*.db-shm"), tmp_path / "cloud.db",
                   tmp_path / "cloud.db-wal", tmp_path / "cloud.db-shm"]
        assert {str(p): mode(p) for p in private} == {str(p): 0o600 for p in private}
        assert (mode(data), mode(settings.backup_dir)) == (0o700, 0o700)


def test_the_broker_secret_gets_a_private_folder(tmp_path: Path):
    secret = tmp_path / ".spoke" / "broker-secret"
    assert ensure_broker_secret(secret)
    assert (mode(secret), mode(secret.parent)) == (0o600, 0o700)
