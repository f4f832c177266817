"""Live pairing progress in the terminal: countdown, joins, interview steps, capabilities."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

STEP_LABELS = {
    "joined": "joined",
    "node_descriptor": "node descriptor",
    "endpoints": "endpoints",
    "simple_descriptor": "clusters",
    "basic_attributes": "basic attributes",
    "interviewed": "interviewed",
    "bind": "bound",
    "configure_reporting": "reporting configured",
    "state_read": "state read",
    "adopted": "ready",
}


@dataclass
class JoiningDevice:
    ieee: str
    steps: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    manufacturer: str | None = None
    model: str | None = None
    capabilities: list[str] = field(default_factory=list)
    done: bool = False


class PairingView:
    """Folds PairingEvents (as JSON dicts) into what the screen shows."""

    def __init__(self) -> None:
        self.until: float | None = None
        self.closed = False
        self.devices: dict[str, JoiningDevice] = {}
        self.notes: list[str] = []

    def apply(self, event: dict[str, Any]) -> None:
        step = event.get("step")
        ieee = event.get("ieee")
        if step == "permit_open" and event.get("until"):
            self.until = datetime.fromisoformat(event["until"]).timestamp()
            self.closed = False
            return
        if step == "permit_closed":
            self.closed = True
            return
        if step == "refused":
            self.notes.append(f"refused {ieee}: {event.get('detail')}")
            return
        if not ieee:
            return
        dev = self.devices.setdefault(ieee, JoiningDevice(ieee))
        dev.manufacturer = event.get("manufacturer") or dev.manufacturer
        dev.model = event.get("model") or dev.model
        if event.get("capabilities"):
            dev.capabilities = list(event["capabilities"])
        label = STEP_LABELS.get(str(step))
        if event.get("ok") is False:
            dev.failures.append(f"{step}: {event.get('detail')}")
        elif label and label not in dev.steps:
            dev.steps.append(label)
        if step == "adopted":
            dev.done = True

    def render(self) -> Group:
        if self.closed:
            head = Text("Permit join closed.", style="bold")
        elif self.until:
            left = max(0, int(self.until - time.time()))
            head = Text(f"Permit join open: {left} s left. Power on or reset a device to pair "
                        "it (Ctrl-C stops).", style="bold green")
        else:
            head = Text("Opening permit join…")
        table = Table(expand=False)
        table.add_column("device", no_wrap=True)  # its IEEE address whole, to copy
        table.add_column("progress", overflow="fold")
        table.add_column("capabilities", overflow="fold")
        for d in self.devices.values():
            name = " ".join(x for x in (d.manufacturer, d.model) if x) or "?"
            progress = " → ".join(d.steps) + ("" if not d.failures else
                                              f"  [red]{'; '.join(d.failures[-2:])}[/]")
            table.add_row(f"{name}\n[dim]{d.ieee}[/]", progress, ", ".join(d.capabilities))
        parts: list[Any] = [head, table] if self.devices else [head]
        parts.extend(Text(n, style="yellow") for n in self.notes[-3:])
        return Group(*parts)


def print_new_devices(devices: list[dict[str, Any]]) -> None:
    """The devices that joined, by the id to use next: the cloud's when they came through it, the
    IEEE address on the hub's own machine; never cut (spoke.listing)."""
    from spoke.listing import print_list

    key = "id" if all(d.get("id") for d in devices) else "ieee"
    print_list((key, "manufacturer", "model", "capabilities"),
               [(d.get(key) or "", d.get("manufacturer") or "", d.get("model") or "",
                 ", ".join(sorted(d.get("capabilities") or {}))) for d in devices],
               title="New devices")
