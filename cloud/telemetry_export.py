"""The export of telemetry to InfluxDB: a thread that empties the queue the ingest fills.

The ingest queues each stored event's point in ``telemetry_outbox`` in the transaction that stores
the event, so a point is exported exactly when its event is in the ledger. This thread takes the
oldest points in batches, writes them to InfluxDB and deletes them only once InfluxDB accepted them.
While InfluxDB is unreachable or refuses, the points stay in the database (across restarts too) and
the write is retried with backoff doubling up to ``influx_export_max_backoff``; nothing is dropped.
A write that InfluxDB took but whose deletion failed is written again: InfluxDB keeps a point of the
same series and time once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cloud.settings import CloudSettings
from cloud.storage.base import TelemetryWriter
from cloud.storage.sql_outbox import SqlTelemetryOutbox

log = logging.getLogger(__name__)

_FIRST_BACKOFF = 0.5
_STOP_GRACE = 5.0  # beyond the InfluxDB client's own request timeout


class TelemetryExport:
    """Moves queued telemetry points to InfluxDB in one thread (several processes may share it)."""

    def __init__(self, outbox: SqlTelemetryOutbox, writer: TelemetryWriter, *, batch: int,
                 interval: float, max_backoff: float, write_timeout: float = 10.0) -> None:
        self.outbox = outbox
        self.writer = writer
        self.batch = batch
        self.interval = interval
        self.max_backoff = max_backoff
        self._write_timeout = write_timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._exported = 0
        self._failures = 0  # failed attempts since the process started
        self._failing = 0  # failed attempts in a row, 0 while exporting works
        self._last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: CloudSettings, outbox: SqlTelemetryOutbox,
                      writer: TelemetryWriter) -> TelemetryExport:
        return cls(outbox, writer, batch=settings.influx_export_batch,
                   interval=settings.influx_export_interval,
                   max_backoff=settings.influx_export_max_backoff)

    # Lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="spoke-telemetry-export",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the write in progress (the queue stays for the next start)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self._write_timeout + _STOP_GRACE)
            if self._thread.is_alive():
                log.error("the telemetry export did not stop in time")
            self._thread = None

    # What operators and metrics read --------------------------------------------------------------
    def backlog(self) -> tuple[int, float]:
        """(points waiting in the queue, age in seconds of the oldest); reads the database, so it
        raises ``StoreUnavailable`` while the database is down."""
        return self.outbox.backlog()

    def snapshot(self) -> dict[str, Any]:
        """Counters since the process started: points exported, failed attempts (in all and in a
        row now), and the last failure."""
        with self._lock:
            return {"exported": self._exported, "failures": self._failures,
                    "failing": self._failing, "last_error": self._last_error}

    # Worker ---------------------------------------------------------------------------------------
    def forward(self) -> int:
        """Write one batch of the oldest queued points and delete them; how many there were."""
        with self.outbox.take(self.batch) as points:
            if points:
                self.writer.write(points)
        return len(points)

    def _run(self) -> None:
        delay = _FIRST_BACKOFF
        while not self._stopping.is_set():
            try:
                sent = self.forward()
            except Exception as exc:  # InfluxDB or the database down: keep the points, try again
                self._failed(exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            delay = _FIRST_BACKOFF
            self._succeeded(sent)
            if sent < self.batch:  # the queue is empty for now
                self._stopping.wait(self.interval)

    def _failed(self, exc: Exception, delay: float) -> None:
        with self._lock:
            self._failures += 1
            self._failing += 1
            self._last_error = str(exc)
            failing = self._failing
        log.error("telemetry export to InfluxDB failed (attempt %d, the points stay queued), "
                  "retrying in %.1fs: %s", failing, delay, exc)

    def _succeeded(self, sent: int) -> None:
        with self._lock:
            self._exported += sent
            recovered = self._failing
            self._failing = 0
        if recovered:
            log.info("telemetry export to InfluxDB works again after %d failed attempts",
                     recovered)
