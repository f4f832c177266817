"""A real victoria-metrics for the InfluxDB export tests, as a subprocess that can be stopped and
started again on the same storage folder and port.

victoria-metrics takes InfluxDB 2's write API (``/api/v2/write``, line protocol): a point of
measurement ``m`` with field ``f`` becomes the series ``m_f`` with the point's tags as labels, read
back at ``/api/v1/export`` (millisecond timestamps). It keeps numbers only (booleans as 1/0, a string
field as 0) and keeps a point written twice twice, so a test sees duplicates. It does not answer
Flux. New points become visible after a flush (``/internal/force_flush``), so ``export`` flushes first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    values: list[float]
    timestamps_ms: list[int]


@dataclass
class VictoriaMetrics:
    data_dir: Path
    port: int
    log_file: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            [VICTORIA_METRICS, "-storageDataPath", str(self.data_dir),
             "-httpListenAddr", f"127.0.0.1:{self.port}",
             "-search.latencyOffset=0", "-search.disableCache"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"victoria-metrics did not start on port {self.port} "
                           f"(see {self.log_file})")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def export(self, **labels: str) -> list[Series]:
        """Every series whose name starts with ``telemetry_`` and whose labels match."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()
        match = ",".join(['__name__=~"telemetry_.*"',
                          *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
        response = httpx.get(f"{self.url}/api/v1/export", params={"match[]": "{" + match + "}"},
                             timeout=10)
        response.raise_for_status()
        series = []
        for line in response.text.splitlines():
            item: dict[str, Any] = json.loads(line)
            metric = dict(item["metric"])
            name = metric.pop("__name__")
            series.append(Series(name, metric, item["values"], item["timestamps"]))
        return sorted(series, key=lambda s: (s.name, sorted(s.labels.items())))

    def seqs(self, **labels: str) -> list[int]:
        """The ``seq`` field of every point stored (a point stored twice shows twice), sorted."""
        return sorted(int(v) for s in self.export(**labels) if s.name == "telemetry_seq"
                      for v in s.values)
