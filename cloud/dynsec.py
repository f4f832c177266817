"""Mosquitto's dynamic-security model in Python, for the embedded broker.

The same JSON file format (clients with PBKDF2-SHA512 hashes and an optional bound client id, roles
with ACLs, default access), the same checks (publishClientSend, publishClientReceive, subscribe
literal/pattern; roles and ACLs by priority, first match decides, else the default), and the subset
of the ``$CONTROL/dynamic-security/v1`` commands Spoke sends. Groups and the anonymous group are not
implemented: Spoke uses neither, and a configuration with groups is refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cloud.broker_credentials import PasswordHash, hash_password, verify_password, write_private

log = logging.getLogger(__name__)


class Access(StrEnum):
    PUBLISH_SEND = "publishClientSend"
    PUBLISH_RECEIVE = "publishClientReceive"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


_ACL_TYPES = ("publishClientSend", "publishClientReceive", "subscribeLiteral", "subscribePattern",
              "unsubscribeLiteral", "unsubscribePattern")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a topic name against a filter (a leading wildcard never matches "$...")."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    want, have = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(have) or level not in ("+", have[i]):
            return False
    return len(want) == len(have)


def _strip_hash(topic_filter: str) -> tuple[str, bool]:
    if topic_filter == "#":
        return "", True
    if topic_filter.endswith("/#"):
        return topic_filter[:-2], True
    return topic_filter, False


def filter_covers(acl: str, sub: str) -> bool:
    """Whether ACL filter ``acl`` grants subscription filter ``sub`` (Mosquitto's sub_acl_check:
    "+" and "#" in the ACL match anything, in the subscription only themselves)."""
    if acl == "#":
        return True
    acl_rest, acl_hash = _strip_hash(acl)
    sub_rest, sub_hash = _strip_hash(sub)
    if sub_hash and not acl_hash:
        return False
    acl_levels, sub_levels = acl_rest.split("/"), sub_rest.split("/")
    if len(acl_levels) > len(sub_levels) or (len(sub_levels) > len(acl_levels) and not acl_hash):
        return False
    return all(a in ("+", s) for a, s in zip(acl_levels, sub_levels, strict=False))


@dataclass
class Acl:
    acltype: str
    topic: str
    allow: bool
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "priority": self.priority,
                "allow": self.allow}


@dataclass
class Role:
    rolename: str
    acls: list[Acl] = field(default_factory=list)
    textname: str | None = None
    textdescription: str | None = None

    def ordered(self, acltype: str) -> list[Acl]:
        return sorted((a for a in self.acls if a.acltype == acltype),
                      key=lambda a: (-a.priority, a.topic))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"rolename": self.rolename,
                               "acls": [a.to_json() for a in self.acls]}
        for key in ("textname", "textdescription"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        return doc


@dataclass
class Client:
    username: str
    password: PasswordHash | None = None
    clientid: str | None = None
    textname: str | None = None
    textdescription: str | None = None
    disabled: bool = False
    roles: list[tuple[str, int]] = field(default_factory=list)  # (rolename, priority)

    def to_json(self, *, secrets: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"username": self.username,
                               "roles": [{"rolename": r, "priority": p} for r, p in self.roles],
                               "groups": []}
        for key in ("clientid", "textname", "textdescription"):
            if getattr(self, key):
                doc[key] = getattr(self, key)
        if self.disabled:
            doc["disabled"] = True
        if secrets and self.password is not None:
            doc.update(self.password)
        return doc


def _acls(doc: dict[str, Any]) -> list[Acl]:
    return [Acl(a["acltype"], a["topic"], bool(a.get("allow", False)), int(a.get("priority", 0)))
            for a in doc.get("acls") or [] if a.get("acltype") in _ACL_TYPES and a.get("topic")]


def _roles(doc: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["rolename"], int(r.get("priority", -1))) for r in doc.get("roles") or []]


class DynsecError(ValueError):
    """A configuration file the embedded broker cannot use."""


class Dynsec:
    """The accounts and rules of the embedded broker, kept in ``path`` (rewritten on every change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise DynsecError(f"no dynamic-security file at {path}") from None
        except ValueError as exc:
            raise DynsecError(f"{path} is not valid JSON: {exc}") from None
        if doc.get("groups"):
            raise DynsecError(f"{path}: groups are not supported by the embedded broker")
        self.default = {a.value: False for a in Access}
        self.default.update({k: bool(v) for k, v in (doc.get("defaultACLAccess") or {}).items()
                             if k in self.default})
        self.roles = {r["rolename"]: Role(r["rolename"], _acls(r), r.get("textname"),
                                          r.get("textdescription"))
                      for r in doc.get("roles") or []}
        self.clients: dict[str, Client] = {}
        for c in doc.get("clients") or []:
            stored: PasswordHash | None = None
            if c.get("password") and c.get("salt"):
                stored = {"password": c["password"], "salt": c["salt"],
                          "iterations": int(c.get("iterations", 101))}
            self.clients[c["username"]] = Client(
                c["username"], stored, c.get("clientid"), c.get("textname"),
                c.get("textdescription"), bool(c.get("disabled")), _roles(c))

    def save(self) -> None:
        doc = {"clients": [c.to_json(secrets=True) for c in self.clients.values()], "groups": [],
               "roles": [r.to_json() for r in self.roles.values()],
               "defaultACLAccess": self.default}
        write_private(self.path, json.dumps(doc, indent=2) + "\n")

    # Checks ---------------------------------------------------------------------------------------
    def authenticate(self, username: str | None, password: str | None, client_id: str) -> bool:
        client = self.clients.get(username or "")
        if client is None or password is None or client.password is None or client.disabled:
            return False
        if client.clientid and client.clientid != client_id:
            return False
        return verify_password(client.password, password)

    def allows(self, username: str | None, access: Access, topic: str) -> bool:
        client = self.clients.get(username or "")
        if client is None:
            return False
        for rolename, _ in sorted(client.roles, key=lambda r: (-r[1], r[0])):
            verdict = self._role_verdict(self.roles.get(rolename), access, topic)
            if verdict is not None:
                return verdict
        return self.default[access.value] and not topic.startswith("$CONTROL")

    @staticmethod
    def _role_verdict(role: Role | None, access: Access, topic: str) -> bool | None:
        if role is None:
            return None
        if access in (Access.PUBLISH_SEND, Access.PUBLISH_RECEIVE):
            for acl in role.ordered(access.value):
                if topic_matches(acl.topic, topic):
                    return acl.allow
            return None
        for acl in role.ordered(f"{access.value}Literal"):
            if acl.topic == topic:
                return acl.allow
        for acl in role.ordered(f"{access.value}Pattern"):
            if filter_covers(acl.topic, topic):
                return acl.allow
        return None

    # $CONTROL/dynamic-security/v1 -----------------------------------------------------------------
    def handle(self, payload: bytes) -> tuple[bytes, set[str]]:
        """Carry out a command message; (the response message, usernames to disconnect)."""
        kick: set[str] = set()
        responses: list[dict[str, Any]] = []
        try:
            commands = json.loads(payload)["commands"]
            assert isinstance(commands, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            responses.append({"command": "Unknown command", "error": "Invalid/missing commands"})
            commands = []
        changed = False
        for command in commands:
            name = command.get("command") if isinstance(command, dict) else None
            handler = self._COMMANDS.get(name or "")
            reply: dict[str, Any] = {"command": name or "Unknown command"}
            if isinstance(command, dict) and "correlationData" in command:
                reply["correlationData"] = command["correlationData"]
            if handler is None:
                reply["error"] = "Unknown command" if name else "Missing command"
            else:
                try:
                    data, modified = handler(self, command, kick)
                except (KeyError, TypeError, ValueError) as exc:
                    reply["error"] = f"Invalid/missing {exc}"
                    data, modified = None, False
                if isinstance(data, str):
                    reply["error"] = data
                elif data is not None:
                    reply["data"] = data
                changed |= modified
            responses.append(reply)
        if changed:
            self.save()
        return json.dumps({"responses": responses}).encode(), kick

    # Each command: (None | data dict | error string, whether the state changed).
    def _create_client(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        username = c["username"]
        if username in self.clients:
            return "Client already exists", False
        if any(r not in self.roles for r, _ in _roles(c)):
            return "Role not found", False
        password = c.get("password")
        self.clients[username] = Client(
            username, hash_password(password) if password else None, c.get("clientid") or None,
            c.get("textname"), c.get("textdescription"), False, _roles(c))
        return None, True

    def _delete_client(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        if self.clients.pop(c["username"], None) is None:
            return "Client not found", False
        kick.add(c["username"])
        return None, True

    def _set_client_password(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        client = self.clients.get(c["username"])
        if client is None:
            return "Client not found", False
        if not c["password"]:
            return "Empty password is not allowed", False
        client.password = hash_password(c["password"])
        kick.add(client.username)
        return None, True

    def _set_disabled(self, c: dict[str, Any], kick: set[str], disabled: bool
                      ) -> tuple[Any, bool]:
        client = self.clients.get(c["username"])
        if client is None:
            return "Client not found", False
        client.disabled = disabled
        if disabled:
            kick.add(client.username)
        return None, True

    def _enable_client(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        return self._set_disabled(c, kick, False)

    def _disable_client(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        return self._set_disabled(c, kick, True)

    def _get_client(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        client = self.clients.get(c["username"])
        if client is None:
            return "Client not found", False
        return {"client": client.to_json(secrets=False)}, False

    def _list_clients(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        clients = [cl.to_json(secrets=False) if c.get("verbose") else cl.username
                   for cl in sorted(self.clients.values(), key=lambda cl: cl.username)]
        return {"totalCount": len(clients), "clients": clients}, False

    def _create_role(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        if c["rolename"] in self.roles:
            return "Role already exists", False
        self.roles[c["rolename"]] = Role(c["rolename"], _acls(c), c.get("textname"),
                                         c.get("textdescription"))
        return None, True

    def _modify_role(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        role = self.roles.get(c["rolename"])
        if role is None:
            return "Role does not exist", False
        if isinstance(c.get("acls"), list):
            role.acls = _acls(c)
        for key in ("textname", "textdescription"):
            if key in c:
                setattr(role, key, c[key])
        return None, True

    def _delete_role(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        if self.roles.pop(c["rolename"], None) is None:
            return "Role not found", False
        for client in self.clients.values():
            if any(r == c["rolename"] for r, _ in client.roles):
                client.roles = [(r, p) for r, p in client.roles if r != c["rolename"]]
                kick.add(client.username)
        return None, True

    def _get_role(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        role = self.roles.get(c["rolename"])
        return ("Role not found", False) if role is None else ({"role": role.to_json()}, False)

    def _list_roles(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        roles = [r.to_json() if c.get("verbose") else r.rolename
                 for r in sorted(self.roles.values(), key=lambda r: r.rolename)]
        return {"totalCount": len(roles), "roles": roles}, False

    def _get_default(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        return {"acls": [{"acltype": k, "allow": v} for k, v in self.default.items()]}, False

    def _set_default(self, c: dict[str, Any], kick: set[str]) -> tuple[Any, bool]:
        for action in c["acls"]:
            if action.get("acltype") in self.default:
                self.default[action["acltype"]] = bool(action.get("allow"))
        return None, True

    _COMMANDS: dict[str, Callable[[Dynsec, dict[str, Any], set[str]], tuple[Any, bool]]] = {
        "createClient": _create_client, "deleteClient": _delete_client,
        "setClientPassword": _set_client_password, "enableClient": _enable_client,
        "disableClient": _disable_client,
        "getClient": _get_client, "listClients": _list_clients, "createRole": _create_role,
        "modifyRole": _modify_role, "deleteRole": _delete_role, "getRole": _get_role,
        "listRoles": _list_roles, "getDefaultACLAccess": _get_default,
        "setDefaultACLAccess": _set_default,
    }
