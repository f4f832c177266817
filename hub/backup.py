"""Network backups in zigpy's open coordinator backup format: written on start and daily, and
restored onto a new stick (the paired devices stay: they live in zigpy's database and in the
network key and addresses the backup carries)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zigpy.application
import zigpy.backups

from hub.radio import RadioError, controller_class, device_path, load_radio_controls, zigpy_config
from hub.settings import HubSettings
from private_files import private_dir, private_sqlite

LOGGER = logging.getLogger(__name__)
KEEP = 14
DAY = 24 * 3600.0


async def write_backup(app: zigpy.application.ControllerApplication, directory: Path) -> Path:
    """Ask the radio for its current network settings and write them as a JSON file."""
    backup = await app.backups.create_backup(load_devices=True)
    data = backup.as_open_coordinator_json()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"network-backup-{stamp}.json"
    await asyncio.to_thread(_write, path, data)
    await asyncio.to_thread(_prune, directory)
    LOGGER.info("network backup written to %s", path)
    return path


def _write(path: Path, data: dict[str, Any]) -> None:
    """Written 0600 in a 0700 folder: a backup carries the network key."""
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)  # a .tmp left by an older version may be wider
        json.dump(data, f, indent=2)
    tmp.replace(path)


def _prune(directory: Path) -> None:
    for old in sorted(directory.glob("network-backup-*.json"))[:-KEEP]:
        old.unlink(missing_ok=True)


async def periodic_backups(app_getter: Any, directory: Path, interval: float = DAY) -> None:
    """Write a backup now and then every ``interval`` seconds (the app may be replaced on
    reconnects, so it is looked up each time)."""
    while True:
        try:
            await write_backup(app_getter(), directory)
        except Exception as exc:  # a radio that is down now will be backed up next time
            LOGGER.warning("network backup failed: %s", exc)
        await asyncio.sleep(interval)


def load_backup(path: Path) -> zigpy.backups.NetworkBackup:
    try:
        data = json.loads(path.read_text())
        return zigpy.backups.NetworkBackup.from_open_coordinator_json(data)
    except FileNotFoundError:
        raise RadioError(f"backup file {path} does not exist") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RadioError(f"{path} is not an open coordinator backup: {exc}") from None


async def restore_backup(settings: HubSettings, path: Path) -> zigpy.backups.NetworkBackup:
    """Write a backup's network settings onto the (new) radio. The hub must be stopped."""
    backup = await asyncio.to_thread(load_backup, path)
    if settings.radio == "auto":
        raise RadioError("restore needs the radio type: pass --radio ezsp|znp|deconz")
    controls = load_radio_controls(settings)
    try:
        radio_path = device_path(settings, controls)
        private_sqlite(settings.zigbee_db)  # zigpy's database will hold the restored network key
        app = await controller_class(settings.radio).new(
            config=zigpy_config(settings, radio_path), auto_form=False, start_radio=False)
        try:
            await app.connect()
            await app.backups.restore_backup(backup)
            LOGGER.info("restored network %s (channel %d, PAN 0x%04x) onto %s",
                        backup.network_info.extended_pan_id, backup.network_info.channel,
                        backup.network_info.pan_id, radio_path)
        finally:
            await app.shutdown()
    finally:
        if controls is not None:
            controls.close()
    return backup
