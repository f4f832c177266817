"""zha-quirks loaded by their index: the registry a device resolves against is ordered as the full
load (``zhaquirks.setup()``) orders it, and a hub whose devices have no quirk imports almost no
quirk module. Each check runs in a process of its own: the test process may have every quirk
loaded already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(code: str, *args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# Loads the modules of every registry key, one key at a time in a shuffled order (as devices
# of those models would resolve), and compares each key's entries with the full load's order.
IN_ANY_ORDER = """
import json, random, sys
from pathlib import Path
from device_handlers.quirks import IndexedQuirks, _entry_id
from zha.quirks import DEVICE_REGISTRY, ModelInfo

quirks = IndexedQuirks(Path(sys.argv[1]))
index = quirks.prepare()
keys = list(index.keys)
random.Random(int(sys.argv[2])).shuffle(keys)
for key in keys:
    quirks._import(dict.fromkeys(module for _, module in index.keys[key]))
    quirks._order(index, [key])
wrong = [list(key) for key in index.keys
         if [_entry_id(e) for e in DEVICE_REGISTRY._registry[ModelInfo(*key)]]
         != [entry_id for entry_id, _ in index.keys[key]]]
wildcard = [_entry_id(e) for e in DEVICE_REGISTRY._wildcard_registry]
print(json.dumps({"keys": len(index.keys), "wrong": wrong[:5],
                  "wildcard": wildcard == [entry_id for entry_id, _ in index.wildcard]}))
"""

# What a hub with devices of one unquirked model has imported after resolving them.
UNQUIRKED = """
import json, sys
from pathlib import Path
import zigpy.device, zigpy.types as t
from device_handlers.quirks import IndexedQuirks
from simulators.unquirk import _offline_app  # a zigpy application that is never started

quirks = IndexedQuirks(Path(sys.argv[1]))
device = zigpy.device.Device(_offline_app(), t.EUI64.convert("02:00:00:00:00:00:00:01"), t.NWK(1))
device.manufacturer, device.model = "Spoke Sim", "SIM-LOADGEN"
resolved = quirks.resolve(device)
print(json.dumps({"same": resolved is device,
                  "quirk_modules": sum(m.startswith("zhaquirks.") for m in sys.modules),
                  "radio_libraries": "bellows" in sys.modules or "zigpy_znp" in sys.modules}))
"""


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quirks") / "zha-quirks-index.json"
    run("import sys; from pathlib import Path; from device_handlers.quirks import QuirkIndex; "
        "QuirkIndex.load(Path(sys.argv[1])); print('{}')", str(path))
    return path


def test_the_index_is_built_once_for_the_installed_versions(index_path: Path) -> None:
    from device_handlers.quirks import installed_versions

    data = json.loads(index_path.read_text())
    assert data["versions"] == installed_versions()
    assert len(data["keys"]) > 1000  # zha-quirks' models
    assert "zhaquirks.xiaomi" in data["always"]  # its handler of uninitialized senders
    # A v2 quirk made by a builder class is found by the module that uses the builder.
    modules = {module for _, _, entries in data["keys"] for _, module in entries}
    assert "zhaquirks.tuya.builder" not in modules


@pytest.mark.parametrize("seed", [1, 2])
def test_quirks_loaded_in_any_order_resolve_as_with_every_quirk(index_path: Path,
                                                                seed: int) -> None:
    found = run(IN_ANY_ORDER, str(index_path), str(seed))
    assert found["keys"] > 1000  # type: ignore[operator]
    assert found["wrong"] == []
    assert found["wildcard"] is True


def test_a_device_without_a_quirk_loads_almost_no_quirk_module(index_path: Path) -> None:
    found = run(UNQUIRKED, str(index_path))
    assert found["same"] is True  # no quirk: the device stays as it is
    assert found["quirk_modules"] < 50  # of some 460 that zhaquirks.setup() imports
    assert found["radio_libraries"] is False


def test_a_stale_or_broken_index_is_built_again(tmp_path: Path) -> None:
    from device_handlers.quirks import QuirkIndex

    path = tmp_path / "zha-quirks-index.json"
    path.write_text('{"format": 1, "versions": {"zha-quirks": "0.0.1"}, "keys": []}')
    index = QuirkIndex.load(path)
    assert len(index.keys) > 1000
    assert json.loads(path.read_text())["versions"]["zha-quirks"] != "0.0.1"
