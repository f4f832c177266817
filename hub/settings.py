"""Hub configuration: environment (``SPOKE_*``), the ``[hub]`` table of a TOML file, then defaults."""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from wire.contract import MAX_BATCH_EVENTS

CONFIG_ENV = "SPOKE_CONFIG"
DEFAULT_CONFIG_FILE = "spoke.toml"
RadioType = Literal["sim", "ezsp", "znp", "deconz", "auto"]


def _default_hub_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "hub"
    return f"hub-{host}"


def _toml_values(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
    path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_FILE))
    data: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as f:
            data = dict(tomllib.load(f).get("hub", {}))
    return InitSettingsSource(settings_cls, data)


class HubSettings(BaseSettings):
    """Everything the edge hub needs; each field is ``SPOKE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SPOKE_", env_file=".env", extra="ignore")

    hub_id: str = Field(default_factory=_default_hub_id, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    hub_data_dir: Path = Path(".spoke/hub")
    # Radio
    radio: RadioType = "sim"
    serial_port: str | None = None
    baudrate: int | None = None
    flow_control: Literal["hardware", "software"] | None = None
    channel: int | None = Field(default=None, ge=11, le=26)
    # How long the radio may take to answer at start before the hub gives up with a clear error.
    radio_connect_timeout: float = Field(default=30.0, gt=0)
    # Simulator (radio "sim"): the devices powered on when the simulated network is new, as built-in
    # kind names or ZHA diagnostics files/dirs; simulated time runs `sim_speed` times real time.
    # Comma-separated in the environment (SPOKE_SIM_DEVICES=loadgen,bulb) as well as JSON.
    sim_devices: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    sim_speed: float = Field(default=1.0, gt=0)
    sim_tick: float = Field(default=1.0, gt=0)
    # MQTT
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    # The hub's broker login, from `spoke cloud hub register` (username spoke-hub-<hub id>; the
    # broker accepts it only with that client id).
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    # TLS to the broker, used when a CA is set: the CA that signed the broker's certificate, an
    # optional client certificate and key, and the name to verify instead of mqtt_host.
    mqtt_tls_ca: FilePath | None = None
    mqtt_tls_cert: FilePath | None = None
    mqtt_tls_key: FilePath | None = None
    mqtt_tls_server_name: str | None = None
    mqtt_keepalive: int = Field(default=30, ge=5)
    # Behaviour
    command_timeout: float = Field(default=8.0, gt=0)  # one Zigbee exchange + read back
    state_refresh_on_start: bool = True
    device_info_debounce: float = Field(default=5.0, ge=0)
    # Availability: a mains device silent this long is pinged (unavailable if the ping fails); a
    # battery device silent this long is unavailable. Checked every availability_interval seconds.
    availability_mains_timeout: float = Field(default=600.0, gt=0)
    availability_battery_timeout: float = Field(default=25 * 3600.0, gt=0)
    availability_interval: float = Field(default=60.0, gt=0)
    backup_interval: float = Field(default=24 * 3600.0, gt=0)
    # Radio watchdog: reconnect backoff bounds (seconds).
    radio_retry_min: float = Field(default=1.0, gt=0)
    radio_retry_max: float = Field(default=60.0, gt=0)
    control_channel: bool = True
    # The cloud may refuse a sequence number far beyond what it has committed (as a forgery), so
    # the outbox never holds more than a million events.
    outbox_max_events: int = Field(default=100_000, ge=100, le=1_000_000)
    outbox_max_age: float = Field(default=7 * 24 * 3600, gt=0)
    # Sent events the cloud has not acknowledged after this many seconds: ask where it stands, and
    # send them again if it answers without them.
    ledger_resend_after: float = Field(default=10.0, gt=0)
    # Events are committed to the outbox in groups, at most this many seconds after they happened
    # (one transaction per burst of reports instead of one per event); published once committed.
    outbox_flush_delay: float = Field(default=0.005, ge=0, le=1.0)
    # When the cloud takes batches of events (it says so in its acknowledgements), consecutive
    # events leave in one message of at most this many (1: always one event per message); a batch
    # not full waits at most event_batch_delay seconds after its first event for more. Command
    # results never wait: they go at once, and so do the events before them.
    event_batch_max: int = Field(default=100, ge=1, le=MAX_BATCH_EVENTS)
    event_batch_delay: float = Field(default=0.02, ge=0, le=1.0)
    # On a clean stop, wait this long for the cloud to acknowledge what is still in the outbox.
    shutdown_drain: float = Field(default=5.0, ge=0)
    # The retained status is published again when its counters changed, at most this often
    # (seconds), and every minute regardless.
    status_interval: float = Field(default=5.0, gt=0)
    # Prometheus metrics at http://<metrics_host>:<metrics_port>/metrics (off when unset or 0),
    # for callers that send `Authorization: Bearer <the token in metrics_token_file>`; the file is
    # made (0600, a random token) on the first start, in the data folder unless set.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_token_file: Path | None = None

    # Home Assistant: a second, local broker the hub also publishes its devices to (MQTT
    # discovery) and takes commands from; off unless ha_host is set. Independent of the cloud
    # link: either may be down. TLS as for mqtt_tls_* (used when ha_tls_ca is set).
    ha_host: str | None = None
    ha_port: int = Field(default=1883, ge=1, le=65535)
    ha_username: str | None = None
    ha_password: SecretStr | None = None
    ha_tls_ca: FilePath | None = None
    ha_tls_cert: FilePath | None = None
    ha_tls_key: FilePath | None = None
    ha_tls_server_name: str | None = None
    ha_discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    # Where the hub's state and command topics live; default spoke/<hub_id>.
    ha_base_topic: str | None = Field(default=None, pattern=r"^[^#+\x00]+$")

    @field_validator("sim_devices", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v for v in re.split(r"[,\s]+", value) if v]
        return value

    @property
    def ha_enabled(self) -> bool:
        return bool(self.ha_host)

    @property
    def ha_base(self) -> str:
        return (self.ha_base_topic or f"spoke/{self.hub_id}").strip("/")

    @property
    def zigbee_db(self) -> Path:
        return self.hub_data_dir / "zigbee.db"

    @property
    def outbox_db(self) -> Path:
        return self.hub_data_dir / "outbox.db"

    @property
    def quirk_index(self) -> Path:
        """Which zha-quirks module holds the quirks of which model (device_handlers.quirks)."""
        return self.hub_data_dir / "zha-quirks-index.json"

    @property
    def sim_state(self) -> Path:
        return self.hub_data_dir / "sim-network.json"

    @property
    def sim_stick(self) -> Path:
        return self.hub_data_dir / "sim-stick.json"

    @property
    def backup_dir(self) -> Path:
        return self.hub_data_dir / "backups"

    @property
    def control_socket(self) -> Path:
        return self.hub_data_dir / "control.sock"

    @property
    def metrics_token_path(self) -> Path:
        return self.metrics_token_file or self.hub_data_dir / "metrics-token"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, _toml_values(settings_cls))
