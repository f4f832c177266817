"""Home Assistant's MQTT topics, as a hub publishes its devices to a local broker.

The only place that builds or parses these topic strings (as ``wire.contract`` is for Spoke's own).
Two roots: the discovery prefix (``homeassistant`` by default), under which Home Assistant reads
retained entity configurations and publishes its birth message, and the hub's base topic
(``spoke/<hub_id>`` by default), under which the hub publishes state and availability and reads
commands:

    <prefix>/<component>/<node_id>/<object_id>/config   retained entity configuration
    <prefix>/status                                      Home Assistant's birth/last will
    <base>/bridge/state                                  online | offline (the hub's last will)
    <base>/<ieee hex>                                    a device's state, JSON, retained
    <base>/<ieee hex>/availability                       online | offline, retained
    <base>/<ieee hex>/<object_id>                        an entity's own JSON state (a light's,
                                                         a thermostat's mode), retained
    <base>/<ieee hex>/<object_id>/set[/<field>]          commands from Home Assistant
    <base>/group/<group id>                              a Zigbee group's JSON light state
    <base>/group/<group id>/set                          its light commands and scene recalls
"""

from __future__ import annotations

import re
from typing import NamedTuple

from wire.contract import WireError, ieee_from_topic, ieee_to_topic

# What Home Assistant accepts for node and object ids in a discovery topic.
_ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
CONFIG_TOPIC_RE = re.compile(
    r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$")
ONLINE = "online"
OFFLINE = "offline"
BRIDGE = "bridge"
AVAILABILITY = "availability"
SET = "set"
GROUP = "group"  # never an IEEE address's topic form (16 hex digits)
# A field of a command topic (climate "temperature", cover "position") is a plain word.
_FIELD_RE = re.compile(r"^[a-z_]{1,32}$")


def safe_id(value: str) -> str:
    """``value`` as a discovery node or object id: anything outside [a-zA-Z0-9_-] becomes "_"."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", value) or "_"


def _checked_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise WireError(f"not a Home Assistant discovery id: {value!r}")
    return value


class CommandTopic(NamedTuple):
    ieee: str
    object_id: str
    field: str | None  # None: the entity's main command topic


class GroupCommandTopic(NamedTuple):
    group_id: int


class HaTopics:
    """Topic builders and parsers for one hub on one local broker."""

    def __init__(self, prefix: str, base: str) -> None:
        if not prefix or any(c in prefix for c in "#+") or not base or any(c in base for c in "#+"):
            raise WireError(f"invalid discovery prefix {prefix!r} or base topic {base!r}")
        self.prefix = prefix.strip("/")
        self.base = base.strip("/")

    # ------------------------------------------------------------------ discovery
    def config(self, component: str, node_id: str, object_id: str) -> str:
        if not re.fullmatch(r"[a-z_]+", component):
            raise WireError(f"invalid component {component!r}")
        return (f"{self.prefix}/{component}/{_checked_id(node_id)}/{_checked_id(object_id)}"
                f"/config")

    @property
    def status(self) -> str:
        """Home Assistant's birth message (``online``) and last will (``offline``)."""
        return f"{self.prefix}/status"

    @property
    def config_filter(self) -> str:
        return f"{self.prefix}/+/+/+/config"

    def parse_config(self, topic: str) -> tuple[str, str | None, str]:
        """(component, node_id, object_id) of a discovery topic; WireError for anything else."""
        match = CONFIG_TOPIC_RE.fullmatch(topic)
        if match is None or match["prefix"] != self.prefix:
            raise WireError(f"not a discovery topic under {self.prefix!r}: {topic!r}")
        return match["component"], match["node_id"], match["object_id"]

    # ------------------------------------------------------------------ state and availability
    @property
    def bridge_state(self) -> str:
        return f"{self.base}/{BRIDGE}/state"

    def device_state(self, ieee: str) -> str:
        return f"{self.base}/{ieee_to_topic(ieee)}"

    def device_availability(self, ieee: str) -> str:
        return f"{self.base}/{ieee_to_topic(ieee)}/{AVAILABILITY}"

    def entity_state(self, ieee: str, object_id: str) -> str:
        return f"{self.base}/{ieee_to_topic(ieee)}/{_checked_id(object_id)}"

    def group_state(self, group_id: int) -> str:
        return f"{self.base}/{GROUP}/{_group_id(group_id)}"

    # ------------------------------------------------------------------ commands
    def group_command(self, group_id: int) -> str:
        return f"{self.base}/{GROUP}/{_group_id(group_id)}/{SET}"

    def command(self, ieee: str, object_id: str, field: str | None = None) -> str:
        topic = f"{self.base}/{ieee_to_topic(ieee)}/{_checked_id(object_id)}/{SET}"
        if field is None:
            return topic
        if not _FIELD_RE.fullmatch(field):
            raise WireError(f"invalid command field {field!r}")
        return f"{topic}/{field}"

    @property
    def command_filters(self) -> list[str]:
        return [f"{self.base}/+/+/{SET}", f"{self.base}/+/+/{SET}/+"]

    def parse_command(self, topic: str) -> CommandTopic | GroupCommandTopic:
        """The device, entity and field a command topic names, or the group; WireError for
        anything else."""
        head = f"{self.base}/"
        if not topic.startswith(head):
            raise WireError(f"not under {self.base!r}: {topic!r}")
        levels = topic[len(head):].split("/")
        if len(levels) not in (3, 4) or levels[2] != SET:
            raise WireError(f"not a command topic: {topic!r}")
        if levels[0] == GROUP:
            if len(levels) != 3 or not re.fullmatch(r"[1-9][0-9]{0,4}", levels[1]):
                raise WireError(f"not a group command topic: {topic!r}")
            return GroupCommandTopic(_group_id(int(levels[1])))
        ieee = ieee_from_topic(levels[0])
        object_id = _checked_id(levels[1])
        field = None
        if len(levels) == 4:
            if not _FIELD_RE.fullmatch(levels[3]):
                raise WireError(f"invalid command field in {topic!r}")
            field = levels[3]
        return CommandTopic(ieee, object_id, field)


def _group_id(group_id: int) -> int:
    """A Zigbee group id as the hub's groups take it (1-0xFFF7)."""
    if isinstance(group_id, bool) or not isinstance(group_id, int) or not 1 <= group_id <= 0xFFF7:
        raise WireError(f"invalid group id {group_id!r}")
    return group_id
