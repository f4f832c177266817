"""The cloud process: storage, ingest and command services, and the HTTP server, wired together."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from cloud.broker_sync import BrokerSync
from cloud.commands import CommandService
from cloud.ingest import Ingest
from cloud.live import LiveFeed
from cloud.live_observer import LiveObserver
from cloud.management import ManagementService
from cloud.metrics import CloudMetrics
from cloud.metrics_token import ensure_metrics_token
from cloud.rate_limits import Limiter
from cloud.settings import CloudSettings
from cloud.storage import Storage, open_storage
from cloud.telemetry_export import TelemetryExport

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class CloudServices:
    """Everything the API calls into; built once per process."""

    settings: CloudSettings
    storage: Storage
    ingest: Ingest
    commands: CommandService
    management: ManagementService
    broker_sync: BrokerSync
    limiter: Limiter
    metrics: CloudMetrics
    live: LiveFeed
    telemetry_export: TelemetryExport | None = None  # with telemetry_backend "influxdb"
    live_observer: LiveObserver | None = None  # with mqtt_shared_group: events stored elsewhere
    metrics_token: str | None = None  # read (or created) when the cloud starts

    @classmethod
    def build(cls, settings: CloudSettings) -> CloudServices:
        """Open storage; wire ingested results and device changes to the requests waiting for
        them (nothing is connected yet)."""
        storage = open_storage(settings)
        metrics = CloudMetrics()
        services: list[CloudServices] = []
        registry = storage.registry
        live = LiveFeed(registry.hub_account, registry.get_device, registry.get_hub,
                        queue_size=settings.live_queue_size, per_token=settings.live_streams_per_token)
        ingest = Ingest(
            settings, storage,
            on_result=lambda record: services[0].commands.resolve(record),
            on_devices=lambda ids: services[0].management.devices_changed(ids),
            observe=metrics, live=live,
        )
        metrics.watch(ingest, storage.registry.fleet_counts)
        commands = CommandService(settings, storage.registry, ingest.publish, observe=metrics)
        management = ManagementService(settings, storage.registry, commands)
        export = None
        if storage.telemetry_outbox is not None and storage.telemetry_sink is not None:
            export = TelemetryExport.from_settings(settings, storage.telemetry_outbox,
                                                   storage.telemetry_sink)
            metrics.watch_export(export)
        services.append(cls(settings=settings, storage=storage, ingest=ingest, commands=commands,
                            management=management,
                            broker_sync=BrokerSync(settings, storage.registry),
                            limiter=Limiter(storage.usage, *settings.rate_limits()),
                            metrics=metrics, live=live, telemetry_export=export,
                            live_observer=(LiveObserver(settings, live)
                                           if settings.mqtt_shared_group else None)))
        return services[0]

    def start(self) -> None:
        self.metrics_token = ensure_metrics_token(self.settings.metrics_token_file)
        if self.telemetry_export is not None:
            self.telemetry_export.start()
        self.ingest.start()
        if self.settings.broker_sync:
            self.broker_sync.start()

    def stop(self) -> None:
        self.live.end_all()
        if self.live_observer is not None:
            self.live_observer.stop()
        self.broker_sync.stop()
        self.ingest.stop()
        if self.telemetry_export is not None:
            self.telemetry_export.stop()  # what is still queued stays for the next start
        self.storage.close()


def bind_api_socket(config: uvicorn.Config, settings: CloudSettings) -> socket.socket:
    """Bind the API's listening socket, with Nagle's algorithm off for what it accepts."""
    try:
        sock = config.bind_socket()
    except SystemExit:
        raise OSError(f"the cloud could not start on {settings.cloud_host}:"
                      f"{settings.cloud_port} (see the log above)") from None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # uvicorn's socket says protocol 0, so asyncio leaves Nagle's algorithm on for the
        # connections it accepts: a response written in two parts then waits for the client's
        # delayed ACK, 40 ms on every keep-alive request. Accepted sockets inherit this option.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def run_cloud(
    settings: CloudSettings,
    *,
    services: CloudServices | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the API and run the ingest until cancelled (or SIGINT/SIGTERM); then stop cleanly."""
    from cloud.api.app import create_app

    app = create_app(settings, services)
    # log_config=None: uvicorn's lines go through the process's own logging (JSON lines too)
    # instead of handlers of its own.
    config = uvicorn.Config(app, host=settings.cloud_host, port=settings.cloud_port,
                            log_level="info", access_log=False, lifespan="on", log_config=None)
    server = _Server(config, before_shutdown=lambda: _end_streams(app))
    # Take the port before the services start: a cloud that cannot serve must not join the
    # broker's shared subscription first (its share of the events would wait for it in vain).
    sock = bind_api_socket(config, settings)
    task = asyncio.create_task(_serve(server, settings, sock))
    try:
        # uvicorn has no startup event to await; it only sets a flag.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            log.info("cloud API on http://%s:%s", settings.cloud_host, bound_port(server))
            if started is not None:
                started.set()
        await asyncio.shield(task)  # a cancel must not cut uvicorn's shutdown (and lifespan) short
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise


class _Server(uvicorn.Server):
    """uvicorn's server, ending the live streams before it waits for open responses to finish
    (a stream never finishes on its own)."""

    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._before_shutdown()
        await super().shutdown(sockets)


def _end_streams(app: Any) -> None:
    services: CloudServices | None = getattr(app.state, "services", None)
    if services is not None:
        services.live.end_all()


async def _serve(server: uvicorn.Server, settings: CloudSettings, sock: socket.socket) -> None:
    """uvicorn's serve(), with its sys.exit on a failed startup turned into an OSError."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        raise OSError(f"the cloud could not start on {settings.cloud_host}:"
                      f"{settings.cloud_port} (see the log above)") from None


def bound_port(server: uvicorn.Server) -> int | None:
    """The port a started uvicorn server listens on (useful with ``cloud_port = 0``)."""
    for srv in server.servers:
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return None
