"""The hub's link to Home Assistant: MQTT discovery, state and commands on a local broker.

A second paho client, independent of the cloud link: either broker may be down, and nothing here
waits on the cloud's link, the outbox or the radio. It publishes, retained, each device's entity
configurations (``hub.ha_discovery``), its JSON state and availability, and the bridge's own state
(``online`` at connect, ``offline`` as its last will); it republishes them all on every connect and
when Home Assistant's birth message arrives, and empties the configurations of a removed device (or
of an entity whose capability is gone). Configurations of this hub's that the broker still holds
from before (a device removed while the hub or the broker was away) are emptied when they come
back at connect; other hubs' and other integrations' are left alone.

Commands arrive on the entities' command topics and run through the hub's ``CommandExecutor``
(``run_local``): the same checks, Zigbee exchange and read back as a cloud command. They are taken
at QoS 0 on a clean session, so the broker never delivers one twice nor keeps one for later; a
retained message on a command topic is never acted on; payloads over ``MAX_COMMAND_BYTES``, bad JSON,
unknown entities and wrong values are logged and dropped. A local command's result is not sent to
the cloud (which never issued it); the state it changes reaches the cloud as events.

The hub's Zigbee groups (``hub.ha_groups``) are lights of their own, and their scenes scene
entities: their configs follow the group table (``groups_changed``, told by the ``GroupManager``
after each change) and the members' descriptions, their state the members' events; their commands
run through the ``GroupManager`` as the cloud's group requests do, each one group-addressed frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.commands import CommandExecutor
from hub.ha_discovery import (
    CommandRefused,
    Entity,
    device_configs,
    device_entities,
    hub_configs,
    hub_node_id,
)
from hub.ha_groups import GroupLight, group_commands, group_configs, group_light
from hub.mqtt_client import LOOP_STOP_TIMEOUT, LoopHandoff, joined, no_delay
from hub.settings import HubSettings
from mqtt_tls import tls_context
from wire.contract import CommandStatus, DeviceInfo, GroupInfo, State, Value, WireError
from wire.homeassistant import OFFLINE, ONLINE, GroupCommandTopic, HaTopics

if TYPE_CHECKING:
    from hub.groups import GroupManager

LOGGER = logging.getLogger(__name__)
MAX_COMMAND_BYTES = 4096  # Home Assistant's commands are a few dozen bytes
MAX_PENDING_COMMANDS = 64  # commands waiting their turn; more are dropped, not queued without end
STATE_DELAY = 0.05  # changes of one device within this many seconds go out as one state message


@dataclass
class _Known:
    """What Home Assistant was told of one device."""

    info: DeviceInfo
    entities: dict[str, Entity] = field(default_factory=dict)
    configs: dict[str, bytes] = field(default_factory=dict)  # discovery topic -> payload sent
    state: State = field(default_factory=dict)
    shape: tuple[Any, ...] | None = None  # what the configs were built from
    sent: dict[str, str] = field(default_factory=dict)  # state and availability topics -> sent

    def forget(self) -> None:
        """Send everything again (a new connection, Home Assistant restarted)."""
        self.configs.clear()
        self.shape = None
        self.sent.clear()


def _shape(info: DeviceInfo) -> tuple[Any, ...]:
    """What a device's entity configs depend on: descriptions that differ only in state values
    or availability (most of them) build the same configs."""
    return (info.name, info.manufacturer, info.model,
            tuple(sorted((i, tuple(sorted(a))) for i, a in info.capabilities.items())),
            repr(info.constraints),
            # a thermostat's modes follow whether it heats, cools or both
            tuple(sorted((i, str(a["control_sequence"])) for i, a in info.capabilities.items()
                         if "control_sequence" in a)))


class HaBridge(LoopHandoff):
    def __init__(self, settings: HubSettings, executor: CommandExecutor,
                 describe: Callable[[], Iterable[DeviceInfo]], sw_version: str,
                 groups: GroupManager | None = None) -> None:
        self.settings = settings
        self.hub_id = settings.hub_id
        self.executor = executor
        self.describe = describe  # every device's current description
        self.sw_version = sw_version
        self.topics = HaTopics(settings.ha_discovery_prefix, settings.ha_base)
        self.connected = asyncio.Event()
        self.refused = 0  # command messages not acted on
        self._known: dict[str, _Known] = {}
        self._dirty: set[str] = set()  # devices whose state waits for STATE_DELAY
        self.groups = groups
        self._table: list[GroupInfo] = []  # the group table last read
        self._lights: dict[int, GroupLight] = {}  # the groups that are lights, by group id
        self._member_of: dict[str, set[int]] = {}  # a device's groups, by IEEE address
        self._group_configs: dict[str, bytes] = {}  # discovery topic -> payload sent
        self._group_sent: dict[str, str] = {}  # group state topic -> payload sent
        self._dirty_groups: set[int] = set()
        self._state_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = asyncio.Lock()  # commands run one after the other, in arrival order
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"spoke-ha-{self.hub_id}", clean_session=True,
                                  protocol=mqtt.MQTTv311)
        if settings.ha_username:
            password = settings.ha_password.get_secret_value() if settings.ha_password else None
            self.client.username_pw_set(settings.ha_username, password)
        if settings.ha_tls_ca is not None:
            self.client.tls_set_context(tls_context(settings.ha_tls_ca, settings.ha_tls_cert,
                                                    settings.ha_tls_key,
                                                    settings.ha_tls_server_name))
        self.client.will_set(self.topics.bridge_state, OFFLINE, qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_queued_messages_set(0)
        self.client.on_socket_open = no_delay
        self.client.on_connect = self._paho_connect
        self.client.on_disconnect = self._paho_disconnect
        self.client.on_message = self._paho_message
        self.client.on_connect_fail = self._paho_connect_fail
        self.unreachable = False  # said so once per outage

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.settings.ha_host or "", self.settings.ha_port,
                                  keepalive=self.settings.mqtt_keepalive)
        self.client.loop_start()

    async def stop(self) -> None:
        """Say ``offline`` (a clean disconnect sends no last will) and let go of the broker."""
        if self._state_timer is not None:
            self._state_timer.cancel()
        if self.connected.is_set():
            info = self.client.publish(self.topics.bridge_state, OFFLINE, qos=1, retain=True)
            await joined(lambda: info.wait_for_publish(2), 3)
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=LOOP_STOP_TIMEOUT)
        self.client.disconnect()
        await joined(self.client.loop_stop, LOOP_STOP_TIMEOUT)

    # ------------------------------------------------------------------ from the hub (LocalMirror)
    def device(self, info: DeviceInfo) -> None:
        """A device's new description: new name, capabilities, availability or state."""
        known = self._known.get(info.ieee)
        if known is None:
            known = self._known[info.ieee] = _Known(info)
        known.info = info
        for instance, attrs in info.capabilities.items():
            known.state.setdefault(instance, {}).update(attrs)
        if self.connected.is_set() and self._announce(known) and info.ieee in self._member_of:
            self._announce_groups()  # a member's capabilities make its groups' configs
        elif self.connected.is_set():
            self._dirty_groups.update(self._member_of.get(info.ieee, ()))
            self._schedule_flush()

    def device_removed(self, ieee: str) -> None:
        known = self._known.pop(ieee, None)
        self._dirty.discard(ieee)
        if ieee in self._member_of:
            self._announce_groups()
        if known is None or not self.connected.is_set():
            return
        for topic in known.configs:
            self._publish(topic, b"")
        for topic in {*(self.topics.entity_state(ieee, oid) for oid, e in known.entities.items()
                        if e.state is not None),
                      self.topics.device_state(ieee), self.topics.device_availability(ieee)}:
            self._publish(topic, b"")
        LOGGER.info("Home Assistant: device %s removed (%d entities)", ieee, len(known.configs))

    def event(self, ieee: str, instance: str, attribute: str, value: Value) -> None:
        known = self._known.get(ieee)
        if known is None:
            return  # described (and its state sent) once the hub describes it
        known.state.setdefault(instance, {})[attribute] = value
        if not self.connected.is_set():
            return
        self._dirty.add(ieee)
        self._dirty_groups.update(self._member_of.get(ieee, ()))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._state_timer is None and self._loop is not None:
            self._state_timer = self._loop.call_later(STATE_DELAY, self._flush_states)

    def groups_changed(self) -> None:
        """The group table changed: its configs follow (emptied for a group or scene gone)."""
        self._read_table()
        self._announce_groups()

    # ------------------------------------------------------------------ to Home Assistant
    def _publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos, retain=True)

    def _announce_all(self) -> None:
        """Everything, again: on connect and on Home Assistant's birth."""
        for info in self.describe():
            known = self._known.setdefault(info.ieee, _Known(info))
            known.info = info
            for instance, attrs in info.capabilities.items():
                known.state.setdefault(instance, {}).update(attrs)
        for known in self._known.values():
            known.forget()  # republish every config and state, even unchanged
        for topic, config in hub_configs(self.hub_id, self.topics, self.sw_version).items():
            self._publish(topic, json.dumps(config))
        self._publish(self.topics.bridge_state, ONLINE)
        for known in list(self._known.values()):
            self._announce(known)
        self._read_table()
        before, self._group_configs = self._group_configs, {}
        self._group_sent.clear()
        self._announce_groups()
        for topic in before.keys() - self._group_configs.keys():
            self._publish(topic, b"")

    def _announce(self, known: _Known) -> bool:
        """Configs that changed (empty ones for entities gone), availability and state; whether
        the configs were built again."""
        info = known.info
        shape = _shape(info)
        rebuilt = shape != known.shape
        if rebuilt:
            known.shape = shape
            known.entities = device_entities(info, self.topics)
            configs = {topic: json.dumps(config, sort_keys=True).encode() for topic, config in
                       device_configs(info, known.entities, self.topics, self.hub_id).items()}
            for topic in known.configs.keys() - configs.keys():
                self._publish(topic, b"")  # the capability is gone: so is the entity
            for topic, payload in configs.items():
                if known.configs.get(topic) != payload:
                    self._publish(topic, payload)
            known.configs = configs
        self._publish_changed(known, self.topics.device_availability(info.ieee),
                              ONLINE if info.available else OFFLINE)
        self._publish_state(known)
        return rebuilt

    # ------------------------------------------------------------------ groups
    def _read_table(self) -> None:
        table = self.groups.table() if self.groups is not None else None
        if table is not None:  # None: the radio is not up; the groups are as they were
            self._table = table

    def _announce_groups(self) -> None:
        """The groups' configs that changed (empty ones for groups and scenes gone) and state."""
        infos = {ieee: known.info for ieee, known in self._known.items()}
        self._lights = {g.group_id: light for g in self._table
                        if (light := group_light(g, infos)) is not None}
        self._member_of = {}
        for group in self._table:
            for member in group.members:
                self._member_of.setdefault(member.ieee, set()).add(group.group_id)
        if not self.connected.is_set():
            return
        configs = {topic: json.dumps(config, sort_keys=True).encode() for topic, config in
                   group_configs(self._table, self._lights, self.topics, self.hub_id,
                                 self.sw_version).items()}
        for topic in self._group_configs.keys() - configs.keys():
            self._publish(topic, b"")
        for topic, payload in configs.items():
            if self._group_configs.get(topic) != payload:
                self._publish(topic, payload)
        self._group_configs = configs
        lit = {self.topics.group_state(group_id) for group_id in self._lights}
        for topic in [t for t in self._group_sent if t not in lit]:
            del self._group_sent[topic]
            self._publish(topic, b"")
        for group_id in self._lights:
            self._publish_group_state(group_id)

    def _group_states(self, light: GroupLight) -> dict[str, Any]:
        return light.state({ieee: self._known[ieee].state for ieee, _ in light.members
                            if ieee in self._known})

    def _publish_group_state(self, group_id: int) -> None:
        light = self._lights.get(group_id)
        if light is None:
            return
        topic, payload = self.topics.group_state(group_id), json.dumps(self._group_states(light))
        if self._group_sent.get(topic) != payload:
            self._publish(topic, payload, qos=0)
            self._group_sent[topic] = payload

    def _publish_changed(self, known: _Known, topic: str, payload: str, qos: int = 1) -> None:
        if known.sent.get(topic) != payload:
            self._publish(topic, payload, qos)
            known.sent[topic] = payload

    def _publish_state(self, known: _Known) -> None:
        """QoS 0, as Zigbee2MQTT sends state: a local broker over TCP loses nothing while the
        connection holds, every state goes again on reconnect, and no acknowledgement per
        message costs the hub's CPU."""
        ieee = known.info.ieee
        state = {instance: known.state.get(instance, {}) for instance in known.info.capabilities}
        self._publish_changed(known, self.topics.device_state(ieee), json.dumps(state), qos=0)
        for oid, entity in known.entities.items():
            own = entity.state(known.state) if entity.state is not None else None
            if own is not None:
                self._publish_changed(known, self.topics.entity_state(ieee, oid),
                                      json.dumps(own), qos=0)

    def _flush_states(self) -> None:
        self._state_timer = None
        dirty, self._dirty = self._dirty, set()
        if not self.connected.is_set():
            return
        for ieee in dirty:
            known = self._known.get(ieee)
            if known is not None:
                self._publish_state(known)
        groups, self._dirty_groups = self._dirty_groups, set()
        for group_id in groups:
            self._publish_group_state(group_id)

    # ------------------------------------------------------------------ from Home Assistant
    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic.startswith(self.topics.prefix + "/") and topic.endswith("/config"):
            if retained:
                self._sweep(topic, payload)
            return
        if topic == self.topics.status:
            if payload.strip() == ONLINE.encode() and not retained:
                LOGGER.info("Home Assistant came online: publishing discovery again")
                self._announce_all()
            return
        if retained:
            self._refuse(topic, "a retained command is never acted on")
            return
        if len(payload) > MAX_COMMAND_BYTES:
            self._refuse(topic, f"payload of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
            return
        if len(self._tasks) >= MAX_PENDING_COMMANDS:
            self._refuse(topic, f"{len(self._tasks)} commands are waiting already")
            return
        task = asyncio.ensure_future(self._command(topic, payload))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _sweep(self, topic: str, payload: bytes) -> None:
        """A retained config the broker holds from before this connection: one of this hub's
        that is no longer current (a device removed, or a capability gone, while the hub or
        this link was away) is cleared. Another hub's or integration's is left alone."""
        try:
            _, node, _ = self.topics.parse_config(topic)
        except WireError:
            return
        if not payload or node is None or not node.startswith("spoke_") or topic in self._current():
            return
        try:
            config = json.loads(payload)
            via = config["device"].get("via_device")
            ids = config["device"].get("identifiers")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return
        if via == hub_node_id(self.hub_id) or ids == [hub_node_id(self.hub_id)]:
            LOGGER.info("Home Assistant: clearing %s (no longer one of this hub's entities)",
                        topic)
            self._publish(topic, b"")

    def _current(self) -> set[str]:
        topics = set(hub_configs(self.hub_id, self.topics, self.sw_version))
        for known in self._known.values():
            topics.update(known.configs)
        topics.update(self._group_configs)
        return topics

    async def _command(self, topic: str, payload: bytes) -> None:
        try:
            target = self.topics.parse_command(topic)
        except WireError as exc:
            self._refuse(topic, str(exc))
            return
        if isinstance(target, GroupCommandTopic):
            await self._group_command(topic, target.group_id, payload)
            return
        known = self._known.get(target.ieee)
        entity = known.entities.get(target.object_id) if known is not None else None
        if known is None or entity is None:
            self._refuse(topic, f"no entity {target.object_id!r} on device {target.ieee}")
            return
        try:
            steps = entity.commands(target.field, payload, known.state)
        except CommandRefused as exc:
            self._refuse(topic, str(exc))
            return
        async with self._turn:
            for step in steps:
                result = await self.executor.run_local(target.ieee, step.instance, step.command,
                                                       dict(step.args))
                if result.status != CommandStatus.SUCCEEDED:
                    LOGGER.warning("Home Assistant command on %s: %s.%s failed: %s (%s)", topic,
                                   step.instance, step.command, result.error, result.error_code)
                    break
        # The state as read back (or as it still is, after a failure): Home Assistant shows it.
        if self.connected.is_set() and target.ieee in self._known:
            self._publish_state(self._known[target.ieee])

    async def _group_command(self, topic: str, group_id: int, payload: bytes) -> None:
        group = next((g for g in self._table if g.group_id == group_id), None)
        if group is None or self.groups is None:
            self._refuse(topic, f"no group {group_id}")
            return
        light = self._lights.get(group_id)
        said = self._group_states(light).get("state") if light is not None else None
        try:
            steps = group_commands(light, payload, None if said is None else said == "ON",
                                   {s.scene_id for s in group.scenes})
        except CommandRefused as exc:
            self._refuse(topic, str(exc))
            return
        async with self._turn:
            for step in steps:
                result = await self.groups.run_local(step.action, group_id, **step.fields)
                ok = result.status == CommandStatus.SUCCEEDED
                # Counted with the devices' local commands (the status, /metrics).
                self.executor.counts["local_succeeded" if ok else "local_failed"] += 1
                if not ok:
                    LOGGER.warning("Home Assistant command on %s: %s failed: %s (%s)", topic,
                                   step.action, result.error, result.error_code)
                    break
        if self.connected.is_set():
            self._publish_group_state(group_id)  # the members as read back

    def _refuse(self, topic: str, reason: str) -> None:
        self.refused += 1
        LOGGER.warning("Home Assistant: ignored message on %s: %s", topic, reason)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOGGER.error("Home Assistant command failed", exc_info=task.exception())

    # ------------------------------------------------------------------ paho callbacks (thread)
    def _paho_connect(self, client: mqtt.Client, userdata: object, flags: object,
                      reason_code: object, properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            self._call(LOGGER.warning, "Home Assistant's broker %s:%s refused the hub: %s",
                       self.settings.ha_host, self.settings.ha_port, str(reason_code))
            return
        # QoS 0: a command is delivered at most once, and never kept for a later session.
        client.subscribe([(f, 0) for f in self.topics.command_filters]
                         + [(self.topics.status, 1), (self.topics.config_filter, 1)])
        self._call(self._connected)

    def _paho_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._call(self._connect_failed)

    def _connect_failed(self) -> None:
        if not self.unreachable:
            self.unreachable = True
            LOGGER.warning("Home Assistant's broker %s:%s is unreachable; retrying",
                           self.settings.ha_host, self.settings.ha_port)

    def _connected(self) -> None:
        self.unreachable = False
        LOGGER.info("Home Assistant: connected to %s:%s (discovery under %s/, state under %s/)",
                    self.settings.ha_host, self.settings.ha_port, self.topics.prefix,
                    self.topics.base)
        self.connected.set()
        self._announce_all()

    def _paho_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                         reason_code: object, properties: object) -> None:
        self._call(self._disconnected, str(reason_code))

    def _disconnected(self, reason: str) -> None:
        if self.connected.is_set():
            LOGGER.warning("Home Assistant: connection to its broker lost (%s); reconnecting",
                           reason)
        self.connected.clear()

    def _paho_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._call(self._on_message, msg.topic, bytes(msg.payload), bool(msg.retain))
