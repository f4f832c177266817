"""The embedded MQTT broker (amqtt 0.12) for the demo and tests, enforcing Spoke's broker rules.

Accounts and ACLs come from a dynamic-security file in Mosquitto's format (``cloud.dynsec``) through
an amqtt plugin; the cloud manages them over ``$CONTROL/dynamic-security/v1`` as it does Mosquitto's.
amqtt speaks MQTT 3.1.1 only (the cloud's ``mqtt_protocol = "auto"`` falls back to it) and has no
shared subscriptions (a ``$share/...`` filter is accepted but matches nothing): a cloud with several
workers needs Mosquitto.

Three places where amqtt 0.12.1 itself lets a client past the rules are closed in ``SpokeBroker``
(and a fourth where it loses messages: a broadcast ended by a subscription made meanwhile):
it touched (deleted or took over) an existing session with the same client id before authenticating
the newcomer, and never checked a last will's topic; it replayed retained messages for every
client's subscriptions to a reconnecting client, without checking that client may receive them; and
it cannot route ``$CONTROL`` messages to a plugin.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session
from amqtt.utils import gen_client_id

from cloud.broker_rules import CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC
from cloud.dynsec import Access, Dynsec

log = logging.getLogger(__name__)

_ACCESS = {Action.PUBLISH: Access.PUBLISH_SEND, Action.RECEIVE: Access.PUBLISH_RECEIVE,
           Action.SUBSCRIBE: Access.SUBSCRIBE}


class DynsecPlugin(BaseAuthPlugin, BaseTopicPlugin):
    """amqtt authentication and topic plugin over a dynamic-security file."""

    @dataclass
    class Config:
        config_file: str

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.dynsec = Dynsec(Path(self.config.config_file))

    async def authenticate(self, *, session: Session) -> bool | None:
        return self.dynsec.authenticate(session.username, session.password,
                                        session.client_id or "")

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        if session is None or topic is None or action not in _ACCESS:
            return False
        return self.dynsec.allows(session.username, _ACCESS[action], topic)


def broker_config(host: str, port: int, dynsec_file: Path) -> dict[str, Any]:
    """amqtt's BrokerConfig as a dict: one TCP listener, the rules plugin, no $SYS, no websocket."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {f"{__name__}.DynsecPlugin": {"config_file": str(dynsec_file)}},
    }


class _Subscriptions(dict[str, list[tuple[Session, int]]]):
    """amqtt 0.12.1 walks its subscriptions while awaiting (access checks, queueing for absent
    sessions): a client subscribing meanwhile ended the walk with "dictionary changed size during
    iteration", and the message never reached the subscribers not yet walked. The walk goes over a
    snapshot instead.

    It also walked every topic filter of every client for each message (and formatted a debug
    line for each that did not match): with a few hundred hubs, three filters each, most of the
    broker's time. The filters with wildcards are kept apart, so a message meets its exact filter
    by lookup and only the wildcard filters (the cloud's) by matching."""

    def __init__(self, initial: dict[str, list[tuple[Session, int]]] | None = None) -> None:
        super().__init__()
        self.wildcards: set[str] = set()
        for topic_filter, subs in (initial or {}).items():
            self[topic_filter] = subs

    def __setitem__(self, topic_filter: str, subs: list[tuple[Session, int]]) -> None:
        if "+" in topic_filter or "#" in topic_filter:
            self.wildcards.add(topic_filter)
        super().__setitem__(topic_filter, subs)

    def __delitem__(self, topic_filter: str) -> None:
        self.wildcards.discard(topic_filter)
        super().__delitem__(topic_filter)

    def items(self) -> list[tuple[str, list[tuple[Session, int]]]]:  # type: ignore[override]
        return [(topic, list(subs)) for topic, subs in super().items()]

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def matching(self, topic: str, matches: Callable[[str, str], bool]
                 ) -> list[tuple[str, list[tuple[Session, int]]]]:
        """A snapshot of the subscriptions whose filter matches ``topic``."""
        found = [(topic, list(self[topic]))] if topic in self and topic not in self.wildcards \
            else []
        found.extend((f, list(self[f])) for f in list(self.wildcards) if matches(topic, f))
        return found


class SpokeBroker(Broker):
    """amqtt's broker with the rules enforced before a client can touch anyone's session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _Subscriptions()

    @property
    def rules(self) -> DynsecPlugin:
        plugin = self.plugins_manager.get_plugin(DynsecPlugin.__name__)
        assert isinstance(plugin, DynsecPlugin)
        return plugin

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        # amqtt 0.12.1's own version, with the login and the will checked first: a refused client
        # must not delete, update or take over the session of the client whose id it gave.
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager)
        except MQTTError:
            await writer.close()
            raise
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(exc) from exc
        if not self._admissible(session):
            log.info("refused MQTT client %r (user %r) from %s", session.client_id,
                     session.username, remote_address)
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError("not authorized")
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for attr in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive",
                         "username", "password"):
                setattr(existing, attr, getattr(session, attr))
            session, existing.parent = existing, 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    def _admissible(self, session: Session) -> bool:
        if not self.rules.dynsec.authenticate(session.username, session.password,
                                              session.client_id or ""):
            return False
        return not session.will_flag or self.rules.dynsec.allows(
            session.username, Access.PUBLISH_SEND, session.will_topic or "")

    async def _handle_message_delivery(self, client_session: Session,
                                       handler: BrokerProtocolHandler,
                                       wait_deliver: asyncio.Future[Any]) -> bool:
        message = wait_deliver.result()
        if message is not None and message.topic == CONTROL_TOPIC:
            await self._control(client_session, bytes(message.data or b""))
            return True
        return await super()._handle_message_delivery(client_session, handler, wait_deliver)

    async def _control(self, session: Session, payload: bytes) -> None:
        dynsec = self.rules.dynsec
        if not dynsec.allows(session.username, Access.PUBLISH_SEND, CONTROL_TOPIC):
            log.warning("%s may not use %s", session.username, CONTROL_TOPIC)
            return
        response, kick = dynsec.handle(payload)
        await self.internal_message_broadcast(CONTROL_RESPONSE_TOPIC, response)
        if kick:
            await self.kick(kick)

    async def kick(self, usernames: set[str]) -> None:
        """Disconnect every client logged in as one of these (without its will, as Mosquitto)."""
        for session, handler in list(self._sessions.values()):
            if session.username in usernames and session.transitions.is_connected():
                log.info("disconnecting %r: its account changed", session.client_id)
                session.will_flag = False
                await handler.handle_connection_closed()

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        """amqtt 0.12.1's own, walking only the subscriptions that match the message's topic."""
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for _filter, subscriptions in self._subscriptions.matching(topic, self._matches):
            for target_session, sub_qos in subscriptions:
                qos = broadcast.get("qos", sub_qos)
                if not await self._topic_filtering(target_session, topic=topic,
                                                   action=Action.RECEIVE):
                    continue
                connected = target_session.transitions.state == "connected"
                # Kept for a session that is away, as amqtt does (MQTT 3.1.2.4).
                if (not connected and not target_session.clean_session
                        and qos in (QOS_1, QOS_2) and not target_session.is_anonymous):
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if not connected:
                    continue
                handler = self._get_handler(target_session)
                if handler:
                    running_tasks.append(asyncio.ensure_future(
                        handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)))

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        topic_filter, qos = subscription
        if not any(s.client_id == session.client_id
                   for s, _ in self._subscriptions.get(topic_filter, [])):
            return  # another client's subscription
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if self._matches(topic, topic_filter) and await self._topic_filtering(
                    session, topic=topic, action=Action.RECEIVE):
                sends.append(asyncio.ensure_future(handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, retained.qos or qos), retain=True)))
        if sends:
            await asyncio.wait(sends)


async def start_broker(host: str = "127.0.0.1", port: int = 1883, *,
                       dynsec_file: Path) -> SpokeBroker:
    """Start an embedded broker on ``host:port`` in the running event loop, with the accounts and
    rules of ``dynsec_file`` (see ``cloud.broker_accounts.write_dynsec_config``)."""
    logging.getLogger("transitions").setLevel(logging.WARNING)  # amqtt's state machine chatter
    Dynsec(dynsec_file)  # a missing or unusable file is one clear error, not a plugin traceback
    broker = SpokeBroker(broker_config(host, port, dynsec_file))
    try:
        await broker.start()
    except BrokerError as exc:  # amqtt wraps the listener's OSError
        raise OSError(str(exc.__cause__ or exc)) from None
    log.info("embedded MQTT broker listening on %s:%s", host, port)
    return broker


async def stop_broker(broker: Broker, within: float = 5.0) -> None:
    """Shut the broker down; one whose shutdown hangs (amqtt can wait on a client session that
    never ends) is left after ``within`` seconds rather than holding the process."""
    try:
        await asyncio.wait_for(broker.shutdown(), within)
    except TimeoutError:
        log.warning("embedded MQTT broker did not shut down within %.0f s; leaving it", within)
        return
    log.info("embedded MQTT broker stopped")
