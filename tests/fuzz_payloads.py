"""Hypothesis strategies for tests/test_fuzz.py: hostile and malformed MQTT messages for the cloud's
ingest and the hub's command handling, each tagged with what the receiver must make of it.

Every hostile strategy builds something that is certain to break the contract (pydantic's lax mode
turns ``"7"`` into 7 and ``"yes"`` into True, so those are never used as "wrong types"); the valid
strategies build payloads through the contract's own models and only vary how they are serialized.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from wire.contract import (
    MAX_PAYLOAD_BYTES,
    Command,
    CommandResult,
    DeviceInfo,
    Event,
    HubRequest,
    HubStatus,
    PairingEvent,
    Topics,
    is_hub_id,
    utcnow,
)

HUB = "hub-1"
IEEE = "00:12:4b:00:01:02:03:04"  # the one device the cloud knows
T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROOT = "spoke/v1/hubs"


@dataclass(frozen=True)
class Wire:
    """One message and what the ingest must do with it.

    expect: "event" (a valid Event: stored, duplicate or unknown device, as the ledger says),
    "invalid" (refused by ``decode``), "unknown_command" (a valid result nobody asked for) or
    "to_hub" (a valid message on a cloud -> hub topic).
    """

    topic: str
    payload: bytes
    expect: str
    event: Event | None = None

    def __repr__(self) -> str:
        return f"Wire({short(self.topic)}, {short(self.payload)}, {self.expect})"


def short(value: str | bytes, limit: int = 300) -> str:
    """A repr that stays readable in a failure report (payloads go up to 256 KiB)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(value)} long)"


class Raw:
    """A JSON token spliced in verbatim (NaN, 1e400, deep nesting) where json.dumps cannot."""

    def __init__(self, text: str) -> None:
        self.text = text


def dumps(data: Any, **kw: Any) -> bytes:
    raws: list[str] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(type(obj).__name__)

    text = json.dumps(data, default=default, **kw)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw)
    return text.encode()


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------

ieees = st.binary(min_size=8, max_size=8).map(lambda b: ":".join(f"{x:02x}" for x in b))
other_ieees = ieees.filter(lambda i: i != IEEE)
other_hubs = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda h: h != HUB)
names = st.one_of(st.sampled_from(["switch", "level", "temperature", "switch@2", "on", "level"]),
                  st.text(min_size=1, max_size=64))
finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), finite, st.none(),
                   st.text(max_size=300), st.integers(10**300, 10**330))
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), finite, st.text(max_size=30))
json_any = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
not_a_hub_id = st.one_of(st.sampled_from(["", "bad hub", "-x", "hub/1", "hub+", "hüb", "hub-1\n",
                                          "x" * 64, "x" * 5000]),
                         st.text(max_size=80).filter(lambda s: not is_hub_id(s)))
not_an_ieee = st.one_of(st.sampled_from([IEEE.upper(), IEEE.replace(":", ""), IEEE[:-3], IEEE + ":05",
                                         IEEE.replace(":", "-"), IEEE + "\n", ""]),
                        st.text(max_size=30).filter(lambda s: s.count(":") != 7))
# Never a number, a bool ("y", "on", "t" ...) or a date, whatever lax mode tries.
letters = st.text(alphabet="abcxz ", min_size=1, max_size=10)
# Values no lax coercion can turn into what a field wants.
wrong_any = st.sampled_from([[], [1], {}, {"a": 1}])
long_text = st.integers(65, 60_000).map(lambda n: "y" * n)
non_finite = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"),
                              Raw("-1e999")])
bad_timestamps = st.one_of(
    letters, wrong_any, st.sampled_from(["2024-13-45T00:00:00Z", "2024-01-01T25:00:00Z",
                                         "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                         "", "T", "2024-01-01T00:00:00+25:00"]),
    st.integers(min_value=10**20))


def nested(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


deep = st.integers(40, 30_000).map(nested)


# --------------------------------------------------------------------------------------------------
# Valid messages (built by the contract's models) and how they are written
# --------------------------------------------------------------------------------------------------


@st.composite
def events(draw: st.DrawFn, hub_id: str = HUB, ieee: str | None = IEEE) -> Event:
    seq = draw(st.one_of(st.integers(1, 60), st.integers(1, 60), st.integers(1, 2**63 - 1)))
    return Event(hub_id=hub_id, seq=seq, ts=draw(timestamps), ieee=ieee or draw(ieees),
                 capability=draw(names), attribute=draw(names), value=draw(values),
                 unit=draw(st.one_of(st.none(), st.sampled_from(["%", "°C", "W", "µg/m³", "lx"]),
                                     st.text(max_size=16))))


@st.composite
def written(draw: st.DrawFn, message: Any) -> bytes:
    """A valid message as some peer may write it: compact or not, extra fields, no "v", no zone."""
    data = message.model_dump(mode="json")
    if draw(st.booleans()):
        return message.to_bytes()
    if draw(st.booleans()):
        data.update(draw(st.dictionaries(st.text(max_size=10).filter(
            lambda k: k not in type(message).model_fields), json_any, max_size=3)))
    if draw(st.booleans()):
        data.pop("v")
    ts = getattr(message, "ts", None)
    if isinstance(ts, datetime) and draw(st.booleans()):
        try:
            data["ts"] = ts.astimezone(UTC).replace(tzinfo=None).isoformat()  # naive: UTC
        except OverflowError:
            pass
    order = draw(st.permutations(list(data)))
    return dumps({k: data[k] for k in order}, ensure_ascii=draw(st.booleans()),
                 indent=draw(st.sampled_from([None, 2])))


def _result(hub_id: str = HUB, **kw: Any) -> CommandResult:
    return CommandResult(**{"id": "cmd-1", "hub_id": hub_id, "ieee": IEEE, "status": "failed", **kw})


BASES: dict[str, Any] = {
    "events": Event(hub_id=HUB, seq=7, ts=T0, ieee=IEEE, capability="switch", attribute="on",
                    value=True),
    "status": HubStatus(hub_id=HUB, online=True, version="test", metrics={"load": 0.5}),
    "device": DeviceInfo(hub_id=HUB, ieee=IEEE, nwk=0x1234, manufacturer="Acme", model="Plug 1",
                         capabilities={"switch": {"on": False}}),
    "results": _result(state={"switch": {"on": True}}, error="x", duration_ms=1.5),
    "pairing": PairingEvent(hub_id=HUB, step="joined", ieee=IEEE, detail="hello"),
}
TOPICS = {"events": Topics.events(HUB), "status": Topics.status(HUB),
          "device": Topics.device(HUB, IEEE), "results": Topics.results(HUB),
          "pairing": Topics.pairing(HUB)}

# Per kind: field -> values that break it for certain. Dropping a required field breaks it too.
_COMMON = {"v": st.sampled_from([2, 0, -1, None, "v1", [1]]), "hub_id": not_a_hub_id}
BAD_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "events": {
        "seq": st.one_of(st.integers(max_value=0), st.integers(min_value=2**63), letters, wrong_any,
                         st.none(), finite.filter(lambda f: not f.is_integer()), non_finite),
        "ts": bad_timestamps, "ieee": not_an_ieee, "capability": st.one_of(long_text, st.just(""),
                                                                          wrong_any, st.none()),
        "attribute": st.one_of(long_text, st.just(""), wrong_any, st.none()),
        "value": st.one_of(wrong_any, non_finite, deep, json_any.filter(
            lambda v: isinstance(v, list | dict))),
        "unit": st.one_of(wrong_any, st.integers(), st.text(min_size=17, max_size=3000)),
    },
    "status": {"online": st.one_of(wrong_any, st.none(), st.integers(2, 9), letters),
               "metrics": st.one_of(st.sampled_from([[], [1], "abc"]), st.fixed_dictionaries(
                   {"a": st.one_of(non_finite, letters, wrong_any)})),
               "devices": st.one_of(letters, wrong_any, finite.filter(lambda f: not f.is_integer())),
               "ts": bad_timestamps, "pairing_until": bad_timestamps},
    "device": {"ieee": not_an_ieee, "available": st.one_of(wrong_any, st.integers(2, 9), letters),
               "power_source": letters, "nwk": st.one_of(letters, st.integers(max_value=-1),
                                                         st.integers(min_value=2**16)),
               "capabilities": st.one_of(st.just([]), letters, st.fixed_dictionaries(
                   {"switch": st.one_of(st.just([1]), letters, st.fixed_dictionaries(
                       {"on": st.one_of(wrong_any, non_finite, deep)}))})),
               "manufacturer": st.one_of(wrong_any, st.integers()), "ts": bad_timestamps},
    "results": {"id": st.one_of(st.just(""), long_text, st.integers(), wrong_any),
                "status": st.sampled_from(["pending", "timeout", "done", "", 1, None]),
                "state": st.one_of(st.just([]), st.just({"a": 1}), st.just({"a": {"b": [1]}})),
                "duration_ms": st.one_of(non_finite, letters), "ieee": not_an_ieee},
    "pairing": {"step": st.one_of(letters, st.just("hacked")), "ok": st.one_of(wrong_any, letters),
                "detail": st.integers(513, 5000).map(lambda n: "d" * n),
                "capabilities": st.one_of(letters, st.just({"a": 1})), "until": bad_timestamps},
}
REQUIRED = {"events": ["hub_id", "seq", "ts", "ieee", "capability", "attribute", "value"],
            "status": ["hub_id", "online"], "device": ["hub_id", "ieee", "capabilities"],
            "results": ["id", "hub_id", "status"], "pairing": ["hub_id", "step"]}


@st.composite
def mutated(draw: st.DrawFn) -> Wire:
    """A valid message of one kind with one field broken (or gone) on its own topic."""
    kind = draw(st.sampled_from(list(BASES)))
    data = BASES[kind].model_dump(mode="json")
    fields = {**_COMMON, **BAD_FIELDS[kind]}
    if draw(st.integers(0, 5)) == 0:
        data.pop(draw(st.sampled_from(REQUIRED[kind])))
    else:
        name = draw(st.sampled_from(sorted(fields)))
        data[name] = draw(fields[name])
    return Wire(TOPICS[kind], dumps(data), "invalid")


@st.composite
def damaged(draw: st.DrawFn) -> Wire:
    """A valid message whose bytes are broken: cut, oversized, re-encoded, or invalid UTF-8."""
    kind = draw(st.sampled_from(list(BASES)))
    payload = BASES[kind].to_bytes()
    how = draw(st.sampled_from(["cut", "big", "pad", "utf16", "badutf8", "nul"]))
    if how == "cut":
        payload = payload[: draw(st.integers(1, len(payload) - 1))]
    elif how == "big":
        data = BASES[kind].model_dump(mode="json")
        data["padding"] = "p" * draw(st.integers(MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES * 4))
        payload = dumps(data)
    elif how == "pad":
        payload = payload + b" " * (MAX_PAYLOAD_BYTES + 1 - len(payload))
    elif how == "utf16":
        payload = payload.decode().encode(draw(st.sampled_from(["utf-16", "utf-32"])))
    elif how == "badutf8":
        at = payload.index(b'"hub_id":"') + len(b'"hub_id":"')
        payload = payload[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + \
            payload[at:]
    else:
        payload = payload[:1] + b"\x00" + payload[1:]
    return Wire(TOPICS[kind], payload, "invalid")


hostile_topics = st.one_of(
    st.sampled_from([
        "", "/", "#", "+", "spoke", "spoke/v1", ROOT, f"{ROOT}/{HUB}", f"{ROOT}/+/events",
        f"{ROOT}/#", f"{ROOT}/{HUB}/#", f"{ROOT}/{HUB}/+", f"spoke/v2/hubs/{HUB}/events",
        f"Spoke/v1/hubs/{HUB}/events", f"spoke/v1/hub/{HUB}/events", f"/spoke/v1/hubs/{HUB}/events",
        f"{ROOT}/{HUB}/events/", f"{ROOT}/{HUB}/events/extra", f"{ROOT}/{HUB}/EVENTS",
        f"{ROOT}/{HUB}/telemetry", f"{ROOT}/{HUB}/devices", f"{ROOT}/{HUB}/devices/+",
        f"{ROOT}/{HUB}/devices/00124B0001020304", f"{ROOT}/{HUB}/devices/00124b000102030",
        f"{ROOT}/{HUB}/devices/{IEEE}", f"{ROOT}/{HUB}/devices/00124b0001020304/x",
        f"{ROOT}//events", f"{ROOT}/hüb/events", f"{ROOT}/hub 1/events", f"{ROOT}/{HUB}\n/events",
        f"{ROOT}/{'h' * 64}/events", f"{ROOT}/{'h' * 20_000}/events", f"{ROOT}/{HUB}/events\x00",
        "spoke/v1/hubs/hub-1/status/../events",
    ]),
    st.text(max_size=200),
    st.builds(lambda hub, kind: f"{ROOT}/{hub}/{kind}", not_a_hub_id,
              st.sampled_from(["events", "status", "results"])),
    st.builds(lambda kind: f"{ROOT}/{HUB}/{kind}", st.text(max_size=20).filter(
        lambda k: k not in {"status", "events", "commands", "results", "requests", "pairing"})),
)


def _valid_topic(topic: str) -> bool:
    try:
        Topics.parse(topic)
    except ValueError:
        return False
    return True


garbage_payloads = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(str.encode),
    json_any.filter(lambda v: not isinstance(v, dict) or "hub_id" not in v).map(dumps),
    st.dictionaries(st.sampled_from(["seq", "ts", "ieee", "value", "online", "id", "step", "v"]),
                    json_any).map(dumps),  # never a hub_id, which every payload needs
    st.sampled_from([b"null", b"[]", b"{}", b"{", b"\"\"", b"NaN", b"\xef\xbb\xbf{}", b" " * 100]),
    deep.map(lambda raw: raw.text.encode()),
    st.integers(1, 60_000).map(lambda n: b"[" * n),
)


@st.composite
def garbage(draw: st.DrawFn) -> Wire:
    """Random bytes, text or JSON on any topic, hostile or not (never an empty device payload)."""
    topic = draw(st.one_of(hostile_topics, st.sampled_from(list(TOPICS.values())), st.builds(
        Topics.device, st.just(HUB), other_ieees), st.builds(Topics.events, other_hubs)))
    payload = draw(garbage_payloads)
    if payload == b"" and "/devices/" in topic:
        payload = b" "
    return Wire(topic, payload, "invalid")


@st.composite
def misrouted(draw: st.DrawFn) -> Wire:
    """A message valid on its own, on a topic it does not belong to (other kind, hub or device)."""
    ev = draw(events())
    device = BASES["device"]
    choices = [
        Wire(Topics.events(draw(other_hubs)), ev.to_bytes(), "invalid"),
        Wire(draw(st.sampled_from([TOPICS["status"], TOPICS["results"], TOPICS["pairing"],
                                   TOPICS["device"]])), ev.to_bytes(), "invalid"),
        Wire(Topics.device(HUB, draw(other_ieees)), device.to_bytes(), "invalid"),
        Wire(Topics.device(draw(other_hubs), IEEE), device.to_bytes(), "invalid"),
        Wire(TOPICS["events"], device.to_bytes(), "invalid"),
        Wire(TOPICS["status"], HubStatus(hub_id=draw(other_hubs), online=True).to_bytes(), "invalid"),
        Wire(TOPICS["status"], BASES["results"].to_bytes(), "invalid"),
        Wire(TOPICS["device"], BASES["results"].to_bytes(), "invalid"),
        Wire(TOPICS["device"], BASES["pairing"].to_bytes(), "invalid"),
        Wire(TOPICS["device"], command(HUB, IEEE).to_bytes(), "invalid"),
        Wire(TOPICS["results"], command(HUB, IEEE).to_bytes(), "invalid"),
        Wire(TOPICS["events"], BASES["status"].to_bytes(), "invalid"),
    ]
    return draw(st.sampled_from(choices))


def command(hub_id: str, ieee: str, **kw: Any) -> Command:
    return Command(id=kw.pop("id", "c-1"), hub_id=hub_id, ieee=ieee, capability="switch",
                   command="on", expires_at=kw.pop("expires_at", utcnow() + timedelta(hours=1)),
                   **kw)


@st.composite
def semantic(draw: st.DrawFn) -> Wire:
    """Valid by the contract but refused by meaning: unknown devices and hubs, seqs already
    stored, results nobody asked for, messages meant for hubs."""
    which = draw(st.integers(0, 5))
    if which == 0:  # an unknown device of the known hub
        ev = draw(events(ieee=None).filter(lambda e: e.ieee != IEEE))
    elif which == 1:  # an unknown hub
        ev = draw(events(hub_id=draw(other_hubs), ieee=None))
    elif which == 2:  # a sequence number from the past (seeded 1..5), with any content
        ev = draw(events()).model_copy(update={"seq": draw(st.integers(1, 5))})
    elif which == 3:
        hub_id = draw(st.one_of(st.just(HUB), other_hubs))
        result = _result(hub_id, id=draw(st.text(min_size=1, max_size=64)),
                         status=draw(st.sampled_from(["succeeded", "failed", "expired"])))
        return Wire(Topics.results(hub_id), draw(written(result)), "unknown_command")
    elif which == 4:
        return Wire(Topics.commands(HUB), command(HUB, IEEE).to_bytes(), "to_hub")
    else:
        request = HubRequest(id="r-1", hub_id=HUB, action="permit_join", duration=60,
                             expires_at=utcnow() + timedelta(minutes=5))
        return Wire(Topics.requests(HUB), request.to_bytes(), "to_hub")
    return Wire(Topics.events(ev.hub_id), draw(written(ev)), "event", ev)


@st.composite
def valid_events(draw: st.DrawFn) -> Wire:
    ev = draw(events())
    return Wire(Topics.events(HUB), draw(written(ev)), "event", ev)


ingest_messages = st.one_of(valid_events(), valid_events(), mutated(), damaged(), garbage(),
                            misrouted(), semantic())


def finite_json(value: Any) -> bool:
    """True when a stored JSON document holds only finite numbers."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_json(v) for v in value)
    return True


# --------------------------------------------------------------------------------------------------
# The hub's commands and requests topics
# --------------------------------------------------------------------------------------------------

HUB_DEVICE = "00:0d:6f:00:0a:bc:de:f0"  # the FakeRadio device of tests/test_device_handlers_fakes
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
GOOD = [("switch", "on", st.just({})), ("switch", "off", st.just({})),
        ("switch", "toggle", st.just({})),
        ("level", "set_level", st.fixed_dictionaries(
            {"level": st.floats(0, 100)}, optional={"transition": st.floats(0, 6553)}))]
future = st.timedeltas(timedelta(minutes=1), timedelta(days=3650))
past = st.timedeltas(timedelta(seconds=1), timedelta(days=3650))


@st.composite
def _command_data(draw: st.DrawFn, hub_id: str = HUB, ieee: str = HUB_DEVICE,
                  expired: bool = False) -> dict[str, Any]:
    capability, name, args = draw(st.sampled_from(GOOD))
    delta = draw(past) if expired else draw(future)
    expires = utcnow() - delta if expired else utcnow() + delta
    data = Command(id=draw(command_ids), hub_id=hub_id, ieee=ieee, capability=capability,
                   command=name, args=draw(args), expires_at=expires).model_dump(mode="json")
    if draw(st.booleans()):  # no zone: UTC
        data["expires_at"] = expires.replace(tzinfo=None).isoformat()
    return data


def _delivery(data: dict[str, Any], expect: str, error_code: str | None = None) -> Delivery:
    return Delivery(COMMANDS_TOPIC, dumps(data), "command", data["id"], expect, error_code)


bad_capability = st.one_of(
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
        return _delivery(draw(_command_data()), "succeeded")
    if which == 1:  # expired: never run, whatever the device
        ieee = draw(st.one_of(st.just(HUB_DEVICE), ieees))
        return _delivery(draw(_command_data(ieee=ieee, expired=True)), "expired", "expired")
    if which == 2:
        data = draw(_command_data(ieee=draw(ieees.filter(lambda i: i != HUB_DEVICE))))
        return _delivery(data, "failed", "unknown_device")
    data = draw(_command_data())
    data["capability"], data["command"], data["args"] = draw(bad_capability)
    return _delivery(data, "failed", "invalid")


COMMAND_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.just(""), st.integers(65, 3000).map(lambda n: "i" * n), st.integers(),
                    wrong_any, st.none()),
    "hub_id": not_a_hub_id, "ieee": not_an_ieee, "v": _COMMON["v"],
    "capability": st.one_of(st.just(""), long_text, wrong_any, st.integers()),
    "command": st.one_of(st.just(""), long_text, wrong_any, st.integers()),
    "args": st.one_of(st.sampled_from([[], "on", 1, None]), st.fixed_dictionaries(
        {"level": st.one_of(non_finite, wrong_any, deep)})),
    "expires_at": bad_timestamps, "issued_at": bad_timestamps,
}


@st.composite
def refused_commands(draw: st.DrawFn) -> Delivery:
    """Commands the executor must refuse: broken fields, another hub's, garbage, damaged bytes."""
    data = draw(_command_data(ieee=draw(st.one_of(st.just(HUB_DEVICE), ieees))))
    which = draw(st.integers(0, 5))
    if which == 0:
        name = draw(st.sampled_from(sorted(COMMAND_FIELDS)))
        data[name] = draw(COMMAND_FIELDS[name])
    elif which == 1:
        data.pop(draw(st.sampled_from(["id", "hub_id", "ieee", "capability", "command",
                                       "expires_at"])))
    elif which == 2:  # for another hub, on ours
        data["hub_id"] = draw(other_hubs)
    elif which == 3:
        return Delivery(COMMANDS_TOPIC, draw(garbage_payloads), "reject")
    elif which == 4:  # an id JSON allows but no store can keep (a lone surrogate)
        payload = dumps(data).replace(dumps(data["id"]), b'"\\ud800' + dumps(data["id"])[1:], 1)
        return Delivery(COMMANDS_TOPIC, payload, "reject")
    else:
        payload = dumps(data)
        how = draw(st.sampled_from(["cut", "big", "deep"]))
        if how == "cut":
            payload = payload[: draw(st.integers(1, len(payload) - 1))]
        elif how == "big":
            data["args"] = {"level": 50, "pad": "p" * MAX_PAYLOAD_BYTES}
            payload = dumps(data)
        else:
            data["args"] = {"level": draw(deep)}
            payload = dumps(data)
        return Delivery(COMMANDS_TOPIC, payload, "reject")
    return Delivery(COMMANDS_TOPIC, dumps(data), "reject")


REQUEST_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": COMMAND_FIELDS["id"], "hub_id": not_a_hub_id, "ieee": not_an_ieee, "v": _COMMON["v"],
    "action": st.one_of(letters, wrong_any, st.just("RENAME")), "expires_at": bad_timestamps,
    "duration": st.one_of(st.integers(255, 10**6), st.integers(max_value=-1), letters, wrong_any),
    "name": st.one_of(st.integers(129, 5000).map(lambda n: "n" * n), wrong_any, st.integers()),
}


@st.composite
def hostile_requests(draw: st.DrawFn) -> Delivery:
    """Management requests that must change nothing: broken, expired, for another hub, for an
    unknown device, or needing a radio this hub does not have."""
    ieee = draw(st.one_of(st.just(HUB_DEVICE), ieees))
    data = HubRequest(id=draw(command_ids), hub_id=HUB, action="rename", ieee=ieee,
                      name=draw(st.text(min_size=1, max_size=128)),
                      expires_at=utcnow() + draw(future)).model_dump(mode="json")
    which = draw(st.integers(0, 5))
    if which == 0:
        data["expires_at"] = (utcnow() - draw(past)).isoformat()
    elif which == 1:
        data["hub_id"] = draw(other_hubs)
    elif which == 2:
        data["ieee"] = draw(ieees.filter(lambda i: i != HUB_DEVICE))
        data["action"] = draw(st.sampled_from(["rename", "remove"]))
    elif which == 3:
        data["action"] = draw(st.sampled_from(["permit_join", "close_join"]))
        data["duration"] = draw(st.integers(0, 254))
    elif which == 4:
        name = draw(st.sampled_from(sorted(REQUEST_FIELDS)))
        data[name] = draw(REQUEST_FIELDS[name])
    else:
        return Delivery(REQUESTS_TOPIC, draw(garbage_payloads), "request")
    return Delivery(REQUESTS_TOPIC, dumps(data), "request")


ignored = st.one_of(
    st.builds(lambda hub, c: Delivery(Topics.commands(hub), dumps(c), "ignored"), other_hubs,
              _command_data()),
    st.builds(lambda topic, payload: Delivery(topic, payload, "ignored"),
              hostile_topics.filter(lambda t: not _valid_topic(t)), garbage_payloads),
)

hub_deliveries = st.one_of(commands_for_the_hub(), commands_for_the_hub(), refused_commands(),
                           refused_commands(), hostile_requests(), ignored)
