"""Hypothesis strategies for tests/test_fuzz.py: hostile and malformed MQTT messages for the cloud's
ingest and the hub's command handling, each tagged with what the receiver must make of it.

Every hostile strategy builds something that is certain to break the contract (pydantic's lax mode
turns ``"7"`` into 7 and ``"yes"`` into True, so those are never used as "wrong types"); the valid
strategies build payloads through the contract's own models and only vary how they are serialized.
"""

from __future__ import annotations

import json
import math
import random
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
    "bad_topic" (not a Spoke topic), "invalid" (refused by ``decode`` for its payload),
    "unknown_command" (a valid result nobody asked for) or "to_hub" (a valid message on a
    cloud -> hub topic).
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
                   st.text(max_size=300), st.integers(10**300, 10**308))  # doubles reach 1.8e308
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), finite, st.text(max_size=30))
json_any = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
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
                              Raw("-1e999"), Raw("1" + "0" * 330), Raw("-" + "9" * 400)])
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


# Strategies are built once, here: building them inside each draw costs more than the ingest.
flags = st.booleans()
seqs = st.one_of(st.integers(1, 60), st.integers(1, 60), st.integers(1, 2**63 - 1))
units = st.one_of(st.none(), st.sampled_from(["%", "°C", "W", "µg/m³", "lx"]), st.text(max_size=16))
extra_fields = st.dictionaries(st.text(max_size=10), json_leaves, max_size=3)
shuffles = st.integers(0, 2**32)
indents = st.sampled_from([None, 2])


def draw_event(draw: st.DrawFn, hub_id: str = HUB, ieee: str | None = IEEE) -> Event:
    return Event(hub_id=hub_id, seq=draw(seqs), ts=draw(timestamps), ieee=ieee or draw(ieees),
                 capability=draw(names), attribute=draw(names), value=draw(values),
                 unit=draw(units))


def draw_written(draw: st.DrawFn, message: Any) -> bytes:
    """A valid message as some peer may write it: compact or not, extra fields, no "v", no zone."""
    if draw(flags):
        return message.to_bytes()  # type: ignore[no-any-return]
    data = message.model_dump(mode="json")
    if draw(flags):
        extra = draw(extra_fields)
        data.update({k: v for k, v in extra.items() if k not in type(message).model_fields})
    if draw(flags):
        data.pop("v")
    ts = getattr(message, "ts", None)
    if isinstance(ts, datetime) and draw(flags):
        try:
            data["ts"] = ts.astimezone(UTC).replace(tzinfo=None).isoformat()  # naive: UTC
        except OverflowError:
            pass
    order = list(data)
    random.Random(draw(shuffles)).shuffle(order)
    return dumps({k: data[k] for k in order}, ensure_ascii=draw(flags), indent=draw(indents))


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
COMMON = {"v": st.sampled_from([2, 0, -1, None, "v1", [1]]), "hub_id": not_a_hub_id}
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


def breaks(fields: dict[str, st.SearchStrategy[Any]], required: list[str]
           ) -> st.SearchStrategy[tuple[str, Any]]:
    """(field, a value that breaks it) or ("drop", a required field)."""
    return st.one_of(st.tuples(st.just("drop"), st.sampled_from(required)),
                     *(st.tuples(st.just(name), bad) for name, bad in sorted(fields.items())))


def broken(data: dict[str, Any], change: tuple[str, Any]) -> dict[str, Any]:
    name, bad = change
    if name == "drop":
        data.pop(bad)
    else:
        data[name] = bad
    return data


KINDS = st.sampled_from(sorted(BASES))
BREAK = {kind: breaks({**COMMON, **BAD_FIELDS[kind]}, REQUIRED[kind]) for kind in BASES}
fractions = st.floats(0, 1, exclude_max=True)
big_sizes = st.integers(MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES * 4)
damages = st.sampled_from(["cut", "big", "pad", "utf-16", "utf-32", "badutf8", "nul"])
bad_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])


@st.composite
def mutated(draw: st.DrawFn) -> Wire:
    """A valid message of one kind with one field broken (or gone) on its own topic."""
    kind = draw(KINDS)
    data = broken(BASES[kind].model_dump(mode="json"), draw(BREAK[kind]))
    return Wire(TOPICS[kind], dumps(data), "invalid")


def cut(draw: st.DrawFn, payload: bytes) -> bytes:
    """A proper prefix of a JSON object, which is never JSON."""
    return payload[: 1 + int(draw(fractions) * (len(payload) - 1))]


@st.composite
def damaged(draw: st.DrawFn) -> Wire:
    """A valid message whose bytes are broken: cut, oversized, re-encoded, or invalid UTF-8."""
    kind = draw(KINDS)
    payload = BASES[kind].to_bytes()
    how = draw(damages)
    if how == "cut":
        payload = cut(draw, payload)
    elif how == "big":
        data = BASES[kind].model_dump(mode="json")
        data["padding"] = "p" * draw(big_sizes)
        payload = dumps(data)
    elif how == "pad":
        payload = payload + b" " * (MAX_PAYLOAD_BYTES + 1 - len(payload))
    elif how.startswith("utf-"):
        payload = payload.decode().encode(how)
    elif how == "badutf8":
        at = payload.index(b'"hub_id":"') + len(b'"hub_id":"')
        payload = payload[:at] + draw(bad_utf8) + payload[at:]
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
    st.text(max_size=100),
    st.builds(lambda hub, kind: f"{ROOT}/{hub}/{kind}", not_a_hub_id,
              st.sampled_from(["events", "status", "results"])),
    st.builds(lambda kind: f"{ROOT}/{HUB}/{kind}", st.text(max_size=20).filter(
        lambda k: k not in {"status", "events", "commands", "results", "requests", "pairing"})),
)


def valid_topic(topic: str) -> bool:
    try:
        Topics.parse(topic)
    except ValueError:
        return False
    return True


garbage_payloads = st.one_of(
    st.binary(max_size=500),
    st.text(max_size=200).map(str.encode),
    json_any.filter(lambda v: not isinstance(v, dict) or "hub_id" not in v).map(dumps),
    st.dictionaries(st.sampled_from(["seq", "ts", "ieee", "value", "online", "id", "step", "v"]),
                    json_any).map(dumps),  # never a hub_id, which every payload needs
    st.sampled_from([b"null", b"[]", b"{}", b"{", b"\"\"", b"NaN", b"\xef\xbb\xbf{}", b" " * 100]),
    deep.map(lambda raw: raw.text.encode()),
    st.integers(1, 60_000).map(lambda n: b"[" * n),
)


spoke_topics = st.one_of(st.sampled_from(sorted(TOPICS.values())),
                        st.builds(Topics.device, st.just(HUB), other_ieees),
                        st.builds(Topics.events, other_hubs))


@st.composite
def garbage(draw: st.DrawFn) -> Wire:
    """Random bytes, text or JSON on a hostile topic (refused for the topic alone) or on a Spoke
    topic (never an empty device payload, which removes a device)."""
    if draw(flags):
        return Wire(draw(hostile_topics), draw(garbage_payloads), "bad_topic")
    topic = draw(spoke_topics)
    payload = draw(garbage_payloads)
    if payload == b"" and "/devices/" in topic:
        payload = b" "
    return Wire(topic, payload, "invalid")


not_event_topics = st.sampled_from([TOPICS["status"], TOPICS["results"], TOPICS["pairing"],
                                    TOPICS["device"]])
command_topics = st.sampled_from([TOPICS["device"], TOPICS["results"]])


# Valid messages on a topic of another kind, where they must not pass for that kind.
CROSSED = [(TOPICS["events"], BASES["device"]), (TOPICS["events"], BASES["status"]),
           (TOPICS["status"], BASES["results"]), (TOPICS["device"], BASES["results"]),
           (TOPICS["device"], BASES["pairing"]), (TOPICS["device"], BASES["events"])]
crossed = st.sampled_from([(topic, message.to_bytes()) for topic, message in CROSSED])


@st.composite
def misrouted(draw: st.DrawFn) -> Wire:
    """A message valid on its own, on a topic it does not belong to (other kind, hub or device)."""
    which = draw(st.integers(0, 6))
    device = BASES["device"].to_bytes()
    if which == 0:
        return Wire(Topics.events(draw(other_hubs)), draw_event(draw).to_bytes(), "invalid")
    if which == 1:
        return Wire(draw(not_event_topics), draw_event(draw).to_bytes(), "invalid")
    if which == 2:
        return Wire(Topics.device(HUB, draw(other_ieees)), device, "invalid")
    if which == 3:
        return Wire(Topics.device(draw(other_hubs), IEEE), device, "invalid")
    if which == 4:
        status = HubStatus(hub_id=draw(other_hubs), online=True).to_bytes()
        return Wire(TOPICS["status"], status, "invalid")
    if which == 5:
        return Wire(draw(command_topics), command(HUB, IEEE).to_bytes(), "invalid")
    topic, payload = draw(crossed)
    return Wire(topic, payload, "invalid")


def command(hub_id: str, ieee: str, **kw: Any) -> Command:
    return Command(id=kw.pop("id", "c-1"), hub_id=hub_id, ieee=ieee, capability="switch",
                   command="on", expires_at=kw.pop("expires_at", utcnow() + timedelta(hours=1)),
                   **kw)


past_seqs = st.integers(1, 5)
result_hubs = st.one_of(st.just(HUB), other_hubs)
result_ids = st.text(min_size=1, max_size=64)
result_statuses = st.sampled_from(["succeeded", "failed", "expired"])


@st.composite
def semantic(draw: st.DrawFn) -> Wire:
    """Valid by the contract but refused by meaning: unknown devices and hubs, seqs already
    stored, results nobody asked for, messages meant for hubs."""
    which = draw(st.integers(0, 5))
    if which == 0:  # an unknown device of the known hub
        ev = draw_event(draw, ieee=draw(other_ieees))
    elif which == 1:  # an unknown hub
        ev = draw_event(draw, hub_id=draw(other_hubs), ieee=None)
    elif which == 2:  # a sequence number from the past (seeded 1..5), with any content
        ev = draw_event(draw).model_copy(update={"seq": draw(past_seqs)})
    elif which == 3:
        hub_id = draw(result_hubs)
        result = _result(hub_id, id=draw(result_ids), status=draw(result_statuses))
        return Wire(Topics.results(hub_id), draw_written(draw, result), "unknown_command")
    elif which == 4:
        return Wire(Topics.commands(HUB), command(HUB, IEEE).to_bytes(), "to_hub")
    else:
        request = HubRequest(id="r-1", hub_id=HUB, action="permit_join", duration=60,
                             expires_at=utcnow() + timedelta(minutes=5))
        return Wire(Topics.requests(HUB), request.to_bytes(), "to_hub")
    return Wire(Topics.events(ev.hub_id), draw_written(draw, ev), "event", ev)


@st.composite
def valid_events(draw: st.DrawFn) -> Wire:
    ev = draw_event(draw)
    return Wire(Topics.events(HUB), draw_written(draw, ev), "event", ev)


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
