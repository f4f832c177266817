"""A minimal cloud for hub benchmarks: it acknowledges one hub's events the way the cloud does,
without storing them, so a benchmark measures the hub and not the cloud's database.

It keeps the contract the hub relies on: a LedgerAck (retained, on the hub's acks topic) carries
the highest *contiguous* sequence number seen for the hub's current epoch, sent at most every
``--every`` seconds while it moved, and again whenever the hub publishes its status (the hub asks
where the cloud stands that way before it resends). Like the cloud, it advertises that it takes
event batches (``--batch-max``, 0 to have the hub send one event per message) and counts the events
of a batch one by one. Run as its own process, as the cloud is:

    python -m bench.ledger_acker --port 1883 --secret-file broker-secret --hub-id bench-hub

It prints ``ready`` once subscribed, then a line with the acknowledged mark when stopped.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.broker_credentials import cloud_password, load_broker_secret
from cloud.broker_rules import CLOUD_USERNAME
from cloud.settings import CloudSettings
from wire.contract import LedgerAck, Topics


class Acker:
    def __init__(self, hub_id: str, batch_max: int = 0) -> None:
        self.hub_id = hub_id
        self.batch_max = batch_max
        self.epoch: str | None = None
        self.mark = 0  # highest contiguous sequence number of ``epoch``
        self.ahead: set[int] = set()  # seen beyond a gap
        self.sent = -1  # the mark last acknowledged
        self.events = 0
        self.lock = threading.Lock()

    def event(self, payload: bytes) -> None:
        data = json.loads(payload)
        epoch = data.get("epoch")
        seqs = [int(e["seq"]) for e in data["events"]] if "events" in data else [int(data["seq"])]
        with self.lock:
            self.events += len(seqs)
            if epoch != self.epoch:  # a new ledger (the hub's store was made anew)
                self.epoch, self.mark, self.ahead, self.sent = epoch, 0, set(), -1
            self.ahead.update(seq for seq in seqs if seq > self.mark)  # copies are counted once
            while self.mark + 1 in self.ahead:
                self.mark += 1
                self.ahead.discard(self.mark)

    def due(self, *, force: bool = False) -> bytes | None:
        with self.lock:
            if self.epoch is None or (self.mark == self.sent and not force):
                return None
            self.sent = self.mark
            return LedgerAck(hub_id=self.hub_id, epoch=self.epoch, seq=self.mark,
                             batch_max=self.batch_max).to_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-file", required=True, help="the broker secret (cloud login)")
    parser.add_argument("--hub-id", required=True)
    parser.add_argument("--every", type=float, default=0.01, help="seconds between acks")
    parser.add_argument("--batch-max", type=int,
                        default=CloudSettings.model_fields["event_batch_max"].default,
                        help="events per batch advertised to the hub (0: single events)")
    args = parser.parse_args()

    acker = Acker(args.hub_id, args.batch_max)
    events, status, acks = (Topics.events(args.hub_id), Topics.status(args.hub_id),
                            Topics.acks(args.hub_id))
    subscribed = threading.Event()
    stop = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"spoke-bench-acker-{args.hub_id}", protocol=mqtt.MQTTv311)
    client.username_pw_set(CLOUD_USERNAME,
                           cloud_password(load_broker_secret(Path(args.secret_file))))

    def publish(payload: bytes | None) -> None:
        if payload is not None:
            client.publish(acks, payload, qos=1, retain=True)

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: object, p: object) -> None:
        c.subscribe([(events, 1), (status, 1)])

    def on_subscribe(c: mqtt.Client, u: object, mid: int, rcs: object, p: object) -> None:
        subscribed.set()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == events:
            acker.event(bytes(msg.payload))
        elif msg.payload:  # the hub asks where the cloud stands: answer even if nothing moved
            publish(acker.due(force=True))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    if not subscribed.wait(10):
        sys.exit("the broker did not take the subscription")
    print("ready", flush=True)
    while not stop.wait(args.every):
        publish(acker.due())
    client.loop_stop()
    client.disconnect()
    print(f"acked {acker.mark} of epoch {acker.epoch}; {acker.events} events received", flush=True)


if __name__ == "__main__":
    main()
