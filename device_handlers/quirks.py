"""zha-quirks applied to zigpy devices the way ZHA applies them.

ZHA's gateway hands zigpy two hooks when it creates the ControllerApplication: ZHA's quirk
registry resolver (``zha.quirks.DEVICE_REGISTRY.resolve``), which zigpy calls on every freshly
interviewed device to replace it with its quirk, and zha-quirks' handler for frames from devices
that are not initialized yet (Xiaomi's quick init).

``zhaquirks.setup()`` fills that registry by importing every quirk module: some 500 modules, and
through the v2 quirk builder ZHA's entity platforms with every radio library they name. That costs
about 50 MB of resident memory and seconds of start-up, while a hub needs the quirks of the models
it has. So a hub given an index path loads quirks by an index instead (``QuirkIndex``): for every
(manufacturer, model) key of ZHA's registry, the quirks registered under it in the order the full
load leaves them, and the quirks every device may need (those without a model, and the modules
that handle frames of uninitialized devices). A child process builds the index once per installed
zha-quirks, zha and zigpy (it runs ``zhaquirks.setup()`` and exits, so its memory is not the
hub's); resolving a device imports the modules its keys name, registers what they define, and
orders the registry's entries for those keys as the full load orders them, so every device
resolves to the quirk it resolves to with every module loaded.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import zigpy.device

LOGGER = logging.getLogger(__name__)

INDEX_FORMAT = 1
# What the index depends on: a new version of any of these rebuilds it.
_INDEXED_PACKAGES = ("zha-quirks", "zha", "zigpy")

_setup_lock = threading.RLock()
_setup_done = False
setup_seconds: float | None = None  # how long loading took (None: not run yet)


def ensure_quirks_loaded() -> None:
    """Run ``zhaquirks.setup()`` once per process (it registers every v1 and v2 quirk)."""
    global _setup_done, setup_seconds
    if _setup_done:
        return
    with _setup_lock:
        if _setup_done:
            return
        started = time.perf_counter()
        try:
            import zhaquirks

            zhaquirks.setup()
        except Exception:  # devices then pair as they are, without their quirks
            LOGGER.exception("zha-quirks could not be loaded; devices pair without quirks")
        setup_seconds = time.perf_counter() - started
        _setup_done = True
        LOGGER.info("zha-quirks loaded in %.1f s", setup_seconds)


# ------------------------------------------------------------------------------ the index
def _entry_id(entry: Any) -> str:
    """A registry entry as the index names it: where the quirk is defined."""
    source = entry.source
    if source is None:
        return ""
    return f"{source.module}:{source.line}:{source.label}"


def _module_of(entry_id: str) -> str:
    """The module a quirk class is defined in, from its entry id."""
    return entry_id.split(":", 1)[0]


def installed_versions() -> dict[str, str]:
    found = {}
    for name in _INDEXED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = ""
    return found


def build_index() -> dict[str, Any]:
    """Load every quirk as ``zhaquirks.setup()`` does and describe ZHA's registry as the index
    keeps it: each entry with the module whose import registers it (a v2 quirk names the module
    of its builder, which may not be the one that defines it). Meant for a process of its own:
    the modules it imports stay imported."""
    import pkgutil

    import zhaquirks
    import zhaquirks.legacy
    from zha.quirks import DEVICE_REGISTRY

    registered_by: dict[str, str] = {}
    for _finder, name, _ispkg in pkgutil.walk_packages(zhaquirks.__path__, "zhaquirks."):
        before = {id(e) for e in DEVICE_REGISTRY}
        importlib.import_module(name)  # v2 quirks register now, v1 ones at the end of setup()
        for entry in DEVICE_REGISTRY:
            if id(entry) not in before:
                registered_by.setdefault(_entry_id(entry), name)
    zhaquirks.setup()  # the modules are imported: this registers the v1 quirks, in its order

    def described(entries: Iterable[Any]) -> list[list[str]]:
        # a v1 quirk registers when the module defining its class is imported
        return [[i, registered_by.get(i) or _module_of(i)] for i in map(_entry_id, entries)]

    return {
        "format": INDEX_FORMAT,
        "versions": installed_versions(),
        "keys": [[manufacturer, model, described(entries)]
                 for (manufacturer, model), entries in DEVICE_REGISTRY._registry.items()
                 if entries],
        "wildcard": described(DEVICE_REGISTRY._wildcard_registry),
        "always": sorted({h.__module__
                          for h in zhaquirks.legacy._uninitialized_device_message_handlers}),
    }


def _run_builder(path: Path) -> dict[str, Any]:
    """The index, built by a child process (written to ``path`` when it can be)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = ("import json, sys; from device_handlers.quirks import build_index; "
            "json.dump(build_index(), sys.stdout)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True,
                         timeout=300)
    index: dict[str, Any] = json.loads(out.stdout)
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(path)
    except OSError as exc:  # a read-only data dir: built again at the next start
        LOGGER.warning("cannot keep the zha-quirks index in %s: %s", path, exc)
    return index


@dataclass
class QuirkIndex:
    """Which quirk modules a device needs, by its manufacturer and model."""

    # key -> [(entry id, the module that registers it)], the entry that wins first
    keys: dict[tuple[str | None, str | None], list[tuple[str, str]]]
    wildcard: list[tuple[str, str]]
    always: list[str]  # modules every device may need

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QuirkIndex:
        wildcard = [(i, m) for i, m in data["wildcard"]]
        return cls(keys={(man, model): [(i, m) for i, m in entries]
                         for man, model, entries in data["keys"]},
                   wildcard=wildcard,
                   always=sorted({*data["always"], *(m for _, m in wildcard)}))

    @classmethod
    def load(cls, path: Path) -> QuirkIndex:
        """The index kept in ``path``, built first if it is missing or was built for other
        versions of zha-quirks, zha or zigpy."""
        try:
            data = json.loads(path.read_text())
            if data.get("format") == INDEX_FORMAT and data.get("versions") == installed_versions():
                return cls.from_json(data)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        started = time.perf_counter()
        index = cls.from_json(_run_builder(path))
        LOGGER.info("zha-quirks index built in %.1f s", time.perf_counter() - started)
        return index

    def lookup_keys(self, manufacturer: str | None,
                    model: str | None) -> list[tuple[str | None, str | None]]:
        """The registry keys ZHA looks a device up by (``DeviceRegistry.match_entry``)."""
        return [k for k in ((manufacturer, model), (manufacturer, None), (None, model))
                if k in self.keys]

    def modules_for(self, manufacturer: str | None, model: str | None) -> list[str]:
        return list(dict.fromkeys(module for key in self.lookup_keys(manufacturer, model)
                                  for _, module in self.keys[key]))


class IndexedQuirks:
    """zha-quirks loaded module by module, as devices need them (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._index: QuirkIndex | None = None
        self._failed = False
        self._imported: set[str] = set()
        self._lock = threading.RLock()

    def prepare(self) -> QuirkIndex | None:
        """Load (or build) the index and import the modules every device may need; None when
        there is no index (then every quirk is loaded, as ``zhaquirks.setup()`` does)."""
        with self._lock:
            if self._index is None and not self._failed:
                started = time.perf_counter()
                try:
                    self._index = QuirkIndex.load(self.path)
                    self._import(self._index.always)
                    self._order(self._index, ())
                except Exception:
                    LOGGER.exception("no zha-quirks index: loading every quirk")
                    self._failed = True
                else:
                    LOGGER.info("zha-quirks index ready in %.1f s",
                                time.perf_counter() - started)
            if self._index is None:
                ensure_quirks_loaded()
            return self._index

    def _import(self, modules: Iterable[str]) -> None:
        import zhaquirks

        missing = [m for m in modules if m not in self._imported]
        for module in missing:
            try:
                importlib.import_module(module)
            except Exception:  # a broken quirk module spoils its own devices only
                LOGGER.exception("cannot import quirk module %s", module)
            self._imported.add(module)
        if missing:
            zhaquirks._register_pending_quirks()  # v1 quirks queued by the imports

    def _order(self, index: QuirkIndex, keys: Iterable[tuple[str | None, str | None]]) -> None:
        """Entries of these keys in the order the full load leaves them: a module imported later
        must not put its quirks before those the full load lets win."""
        from zha.quirks import DEVICE_REGISTRY, ModelInfo

        for key in keys:
            rank = {entry_id: i for i, (entry_id, _) in enumerate(index.keys[key])}
            entries = DEVICE_REGISTRY._registry.get(ModelInfo(*key))
            if entries:
                entries.sort(key=lambda e: rank.get(_entry_id(e), -1))
        rank = {entry_id: i for i, (entry_id, _) in enumerate(index.wildcard)}
        DEVICE_REGISTRY._wildcard_registry.sort(key=lambda e: rank.get(_entry_id(e), -1))

    def resolve(self, device: zigpy.device.Device) -> zigpy.device.Device:
        from zha.quirks import DEVICE_REGISTRY

        with self._lock:
            index = self.prepare()
            if index is not None:
                keys = index.lookup_keys(device.manufacturer, device.model)
                modules = index.modules_for(device.manufacturer, device.model)
                if any(m not in self._imported for m in modules):
                    self._import(modules)
                    self._order(index, keys)
        return DEVICE_REGISTRY.resolve(device)

    def uninitialized_packet(self, device: zigpy.device.Device, profile: int, cluster: int,
                             src_ep: int, dst_ep: int, message: bytes) -> None:
        self.prepare()
        from zhaquirks.legacy import handle_message_from_uninitialized_sender

        handle_message_from_uninitialized_sender(device, profile, cluster, src_ep, dst_ep,
                                                 message)


# ------------------------------------------------------------------------------ zigpy's hooks
def resolve_device(device: zigpy.device.Device) -> zigpy.device.Device:
    """zigpy's device resolver with every quirk loaded: the device replaced by its zha-quirk, if
    one matches."""
    ensure_quirks_loaded()
    from zha.quirks import DEVICE_REGISTRY

    return DEVICE_REGISTRY.resolve(device)


def uninitialized_packet(device: zigpy.device.Device, profile: int, cluster: int, src_ep: int,
                         dst_ep: int, message: bytes) -> None:
    """A frame from a device whose interview has not finished: zha-quirks may complete it from
    the frame (Xiaomi devices announce their model in an attribute report)."""
    ensure_quirks_loaded()
    from zhaquirks.legacy import handle_message_from_uninitialized_sender

    handle_message_from_uninitialized_sender(device, profile, cluster, src_ep, dst_ep, message)


def preload() -> None:
    """Start loading every quirk in a background thread, so that the first device to resolve
    does not hold the event loop for the whole load."""
    if not _setup_done:
        threading.Thread(target=ensure_quirks_loaded, name="zhaquirks-setup",
                         daemon=True).start()


_indexed: IndexedQuirks | None = None  # one per process: what it imported stays imported


def quirk_hooks(index_path: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for ``ControllerApplication.new`` that apply zha-quirks: by the index
    kept in ``index_path`` when given (the process's first one: an index describes the installed
    packages, wherever it is kept), else with every quirk loaded.

    With an index this returns once the index is ready (built first, in a child process, after an
    upgrade of zha-quirks): call it off the event loop. A device zigpy resolves then never waits
    for the build, which would hold the loop and let interviews under way time out."""
    global _indexed
    if index_path is None:
        preload()
        return {"device_resolver": resolve_device,
                "uninitialized_packet_handler": uninitialized_packet}
    with _setup_lock:
        if _indexed is None:
            _indexed = IndexedQuirks(index_path)
    _indexed.prepare()
    return {"device_resolver": _indexed.resolve,
            "uninitialized_packet_handler": _indexed.uninitialized_packet}
