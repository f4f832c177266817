"""Hypothesis strategies for the hub side of tests/test_fuzz.py: messages on a hub's commands and
requests topics, each tagged with what the hub must answer (shared pieces: tests/fuzz_payloads.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from tests.fuzz_payloads import (
    COMMON,
    HUB,
    bad_timestamps,
    breaks,
    broken,
    cut,
    deep,
    dumps,
    flags,
    garbage_payloads,
    hostile_topics,
    ieees,
    letters,
    long_text,
    non_finite,
    not_a_hub_id,
    not_an_ieee,
    other_hubs,
    short,
    valid_topic,
    wrong_any,
)
from wire.contract import MAX_PAYLOAD_BYTES, Command, HubRequest, Topics, utcnow

HUB_DEVICE = "00:0d:6f:00:0a:bc:de:f0"  # the virtual light the hub rig of tests/test_fuzz.py has
COMMANDS_TOPIC = Topics.commands(HUB)
REQUESTS_TOPIC = Topics.requests(HUB)


@dataclass(frozen=True)
class Delivery:
    """One message delivered to the hub, and what the hub must answer.

    kind: "command" (a valid Command for this hub: ``expect`` is the result's status and
    ``error_code`` its code), "reject" (refused by the executor; answered "failed" once when it
    carries a usable id), "request" (a hostile management request: no effect) or "ignored"
    (not on this hub's command topic: never reaches the executor).
    """

    topic: str
    payload: bytes
    kind: str
    id: str | None = None
    expect: str | None = None
    error_code: str | None = None

    def __repr__(self) -> str:
        return f"Delivery({short(self.topic)}, {short(self.payload)}, {self.kind}, {self.expect})"


def usable_id(payload: bytes) -> str | None:
    """The id a refused command is answered under: a JSON object's "id", a str of 1..64 characters
    that UTF-8 can carry."""
    try:
        command_id = json.loads(payload).get("id")
        if isinstance(command_id, str):
            command_id.encode()
    except (ValueError, AttributeError, TypeError, RecursionError):
        return None
    return command_id if isinstance(command_id, str) and 0 < len(command_id) <= 64 else None


command_ids = st.one_of(st.sampled_from(["c1", "c2", "c3", "c4"]), st.text(min_size=1, max_size=64))
GOOD: st.SearchStrategy[tuple[str, str, st.SearchStrategy[Any]]] = st.sampled_from([
    ("switch", "on", st.just({})), ("switch", "off", st.just({})), ("switch", "toggle", st.just({})),
    ("level", "set_level", st.fixed_dictionaries(
        {"level": st.floats(0, 100)}, optional={"transition": st.floats(0, 6553)}))])
future = st.timedeltas(timedelta(minutes=1), timedelta(days=3650))
past = st.timedeltas(timedelta(seconds=1), timedelta(days=3650))
any_devices = st.one_of(st.just(HUB_DEVICE), ieees)
unknown_devices = ieees.filter(lambda i: i != HUB_DEVICE)


def draw_command(draw: st.DrawFn, ieee: str = HUB_DEVICE, expired: bool = False) -> dict[str, Any]:
    """A valid command for this hub, as JSON data; its expiry with or without a zone."""
    capability, name, args = draw(GOOD)
    expires = utcnow() - draw(past) if expired else utcnow() + draw(future)
    data = Command(id=draw(command_ids), hub_id=HUB, ieee=ieee, capability=capability,
                   command=name, args=draw(args), expires_at=expires).model_dump(mode="json")
    if draw(flags):  # no zone: UTC
        data["expires_at"] = expires.replace(tzinfo=None).isoformat()
    return data


def _delivery(data: dict[str, Any], expect: str, error_code: str | None = None) -> Delivery:
    return Delivery(COMMANDS_TOPIC, dumps(data), "command", data["id"], expect, error_code)


# (capability, command, args) that the vocabulary or the device (switch + level) refuses.
bad_capability: st.SearchStrategy[tuple[str, str, dict[str, Any]]] = st.one_of(
    st.tuples(st.sampled_from(["thermostat", "lock", "switch@2", "level@1", "color", "Switch",
                               " switch", "switch\x00"]), st.just("on"), st.just({})),
    st.tuples(st.text(min_size=1, max_size=64).filter(lambda c: c not in {"switch", "level"}),
              st.just("on"), st.just({})),
    st.tuples(st.sampled_from(["switch", "level"]),
              st.sampled_from(["explode", "ON", "set_level ", "open", "on\n"]), st.just({})),
    st.tuples(st.just("switch"), st.sampled_from(["on", "off", "toggle"]), st.dictionaries(
        st.text(min_size=1, max_size=8), st.one_of(st.none(), st.integers(), letters), min_size=1)),
    st.tuples(st.just("level"), st.just("set_level"), st.one_of(
        st.just({}), st.just({"transition": 1}),
        st.fixed_dictionaries({"level": st.one_of(
            letters, st.none(), st.floats(min_value=100, exclude_min=True, allow_infinity=False),
            st.floats(max_value=0, exclude_max=True, allow_infinity=False))}),
        st.fixed_dictionaries({"level": st.floats(0, 100), "transition": st.one_of(
            letters, st.floats(min_value=6553, exclude_min=True, allow_infinity=False))}),
        st.fixed_dictionaries({"level": st.floats(0, 100), "colour": st.integers()}),
    )),
)


@st.composite
def commands_for_the_hub(draw: st.DrawFn) -> Delivery:
    which = draw(st.integers(0, 4))
    if which == 0:
        return _delivery(draw_command(draw), "succeeded")
    if which == 1:  # expired: never run, whatever the device
        return _delivery(draw_command(draw, draw(any_devices), expired=True), "expired", "expired")
    if which == 2:
        return _delivery(draw_command(draw, draw(unknown_devices)), "failed", "unknown_device")
    data = draw_command(draw)
    data["capability"], data["command"], data["args"] = draw(bad_capability)
    return _delivery(data, "failed", "invalid")


bad_ids = st.one_of(st.just(""), st.integers(65, 3000).map(lambda n: "i" * n), st.integers(),
                    wrong_any, st.none())
COMMAND_BREAKS = breaks({
    "id": bad_ids, "hub_id": not_a_hub_id, "ieee": not_an_ieee, "v": COMMON["v"],
    "capability": st.one_of(st.just(""), long_text, wrong_any, st.integers()),
    "command": st.one_of(st.just(""), long_text, wrong_any, st.integers()),
    "args": st.one_of(st.sampled_from([[], "on", 1, None]), st.fixed_dictionaries(
        {"level": st.one_of(non_finite, wrong_any, deep)})),
    "expires_at": bad_timestamps, "issued_at": bad_timestamps,
}, ["id", "hub_id", "ieee", "capability", "command", "expires_at"])
command_damages = st.sampled_from(["cut", "big", "deep"])


@st.composite
def refused_commands(draw: st.DrawFn) -> Delivery:
    """Commands the executor must refuse: broken fields, another hub's, garbage, damaged bytes."""
    data = draw_command(draw, draw(any_devices))
    which = draw(st.integers(0, 4))
    if which == 0:
        payload = dumps(broken(data, draw(COMMAND_BREAKS)))
    elif which == 1:  # for another hub, on ours
        payload = dumps({**data, "hub_id": draw(other_hubs)})
    elif which == 2:
        payload = draw(garbage_payloads)
    elif which == 3:  # an id JSON allows but no store can keep (a lone surrogate)
        payload = dumps(data).replace(dumps(data["id"]), b'"\\ud800' + dumps(data["id"])[1:], 1)
    else:
        how = draw(command_damages)
        if how == "cut":
            payload = cut(draw, dumps(data))
        elif how == "big":
            payload = dumps({**data, "args": {"level": 50, "pad": "p" * MAX_PAYLOAD_BYTES}})
        else:
            payload = dumps({**data, "args": {"level": draw(deep)}})
    return Delivery(COMMANDS_TOPIC, payload, "reject")


REQUEST_BREAKS = breaks({
    "id": bad_ids, "hub_id": not_a_hub_id, "ieee": not_an_ieee, "v": COMMON["v"],
    "action": st.one_of(letters, wrong_any, st.just("RENAME")), "expires_at": bad_timestamps,
    "duration": st.one_of(st.integers(255, 10**6), st.integers(max_value=-1), letters, wrong_any),
    "name": st.one_of(st.integers(129, 5000).map(lambda n: "n" * n), wrong_any, st.integers()),
}, ["id", "hub_id", "action", "expires_at"])
device_names = st.text(min_size=1, max_size=128)
unknown_device_actions = st.sampled_from(["rename", "remove"])
radio_actions = st.sampled_from(["permit_join", "close_join"])
durations = st.integers(0, 254)


@st.composite
def hostile_requests(draw: st.DrawFn) -> Delivery:
    """Management requests that must change nothing: broken, expired, for another hub, for an
    unknown device, or needing a radio this hub does not have."""
    which = draw(st.integers(0, 5))
    expires = utcnow() - draw(past) if which == 0 else utcnow() + draw(future)
    data = HubRequest(id=draw(command_ids), hub_id=HUB, action="rename", ieee=draw(any_devices),
                      name=draw(device_names), expires_at=expires).model_dump(mode="json")
    if draw(flags):  # no zone: UTC
        data["expires_at"] = expires.replace(tzinfo=None).isoformat()
    if which == 1:
        data["hub_id"] = draw(other_hubs)
    elif which == 2:
        data.update(ieee=draw(unknown_devices), action=draw(unknown_device_actions))
    elif which == 3:
        data.update(action=draw(radio_actions), duration=draw(durations))
    elif which == 4:
        data = broken(data, draw(REQUEST_BREAKS))
    elif which == 5:
        return Delivery(REQUESTS_TOPIC, draw(garbage_payloads), "request")
    return Delivery(REQUESTS_TOPIC, dumps(data), "request")


@st.composite
def ignored(draw: st.DrawFn) -> Delivery:
    """Not this hub's commands topic: another hub's, or no Spoke topic at all."""
    if draw(flags):
        return Delivery(Topics.commands(draw(other_hubs)), dumps(draw_command(draw)), "ignored")
    return Delivery(draw(not_topics), draw(garbage_payloads), "ignored")


not_topics = hostile_topics.filter(lambda t: not valid_topic(t))
# Out of 9: 3 valid commands, 3 refused ones, 2 hostile requests, 1 for nobody here.
_WEIGHTED = [commands_for_the_hub()] * 3 + [refused_commands()] * 3 + [hostile_requests()] * 2 + [
    ignored()]
hub_deliveries = st.integers(0, len(_WEIGHTED) - 1).flatmap(lambda i: _WEIGHTED[i])
