"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real stack:
the broker, the cloud on a real port and a hub with the demo's simulated devices.

``SPOKE_DASHBOARD_SCREENSHOT=1`` makes the first test write docs/dashboard.png (the README shows
it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

from cloud.auth import create_account, create_token
from tests.common import eventually
from tests.conftest import BrokerAddress, missing
from tests.stack import Stack, running_stack

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs"
DEMO_MODELS = {"SIM-TRV-1", "SIM-BULB-CT", "SIM-TH-1", "SIM-PIR-1", "SIM-PLUG-1"}


def _playwright() -> ModuleType:
    """Playwright's asyncio API, or a skip (a failure where SPOKE_TEST_REQUIRE names chromium)."""
    if not Path(CHROMIUM).exists():
        missing("chromium", "chromium is not installed (apt-get install chromium)")
    try:
        return importlib.import_module("playwright.async_api")
    except ImportError:
        missing("chromium", "playwright is not installed (pip install -e '.[dev]')")


@contextlib.asynccontextmanager
async def browser_page(stack: Stack, **context: Any) -> AsyncIterator[Any]:
    """A new page of headless Chromium on the stack's dashboard; page errors and CSP violations
    fail the test."""
    problems: list[str] = []
    async with _playwright().async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            ctx = await browser.new_context(**context)
            page = await ctx.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(message.text)
                    if message.type == "error" and "Content-Security-Policy" in message.text
                    else None)
            await page.goto(stack.base_url + "/")
            yield page
            await ctx.close()
        finally:
            await browser.close()
    assert not problems, problems


async def sign_in(page: Any, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#signin-form button")


async def demo_stack_devices(stack: Stack) -> dict[str, dict[str, Any]]:
    devices = await stack.wait_for_devices(5)
    return {d["model"]: d for d in devices}


async def test_sign_in_control_the_bulb_and_watch_a_chart(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker) as stack:
        by_model = await demo_stack_devices(stack)
        bulb = by_model["SIM-BULB-CT"]
        _, control = await asyncio.to_thread(create_token, stack.services.storage.registry,
                                             "dashboard", scopes=["control"])
        async with browser_page(stack, viewport={"width": 1280, "height": 1000}) as page:
            await sign_in(page, control)
            # The demo's devices are listed, grouped under their hub, with their values.
            await page.wait_for_selector(f"[data-device-id='{bulb['id']}'] [data-value='level.level']")
            shown = await page.locator("[data-device-id] h3").all_inner_texts()
            assert set(shown) == DEMO_MODELS
            assert await page.locator(f"[data-hub-id='{stack.hub_settings.hub_id}']").count() == 1
            # Nothing of the token in the URL, and it is kept for this tab only.
            assert control not in page.url
            assert await page.evaluate("sessionStorage.getItem('spoke.token')") == control
            assert await page.evaluate("localStorage.length") == 0

            # Move the bulb's level slider to about 30 %: the bulb is dimmed, as the API says.
            card = page.locator(f"[data-device-id='{bulb['id']}']")
            slider = card.locator("input[data-control='level']")
            box = await slider.bounding_box()
            assert box is not None
            await page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
            wanted = float(await slider.input_value())
            assert 15 <= wanted <= 45 and abs(wanted - bulb["capabilities"]["level"]["level"]) > 5
            status = card.locator("[data-status='level']")
            await page.wait_for_selector(f"[data-device-id='{bulb['id']}'] "
                                         "[data-status='level'][data-state='done']", timeout=15000)
            assert "level" in await status.inner_text()
            level = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()[
                "capabilities"]["level"]["level"]
            assert abs(level - wanted) <= 1, (level, wanted)

            if os.environ.get("SPOKE_DASHBOARD_SCREENSHOT"):
                await page.wait_for_timeout(1500)  # let the value highlights fade
                DOCS.mkdir(exist_ok=True)
                await page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

            # The sensor's page charts its temperature; a new point arrives without a reload.
            sensor = by_model["SIM-TH-1"]
            await page.evaluate("window.stillTheSamePage = true")
            await card.page.click(f"[data-device-id='{sensor['id']}'] h3 a")
            chart = page.locator("[data-chart='temperature.temperature'][data-loaded='true']")
            await chart.wait_for(timeout=10000)
            await page.wait_for_selector("[data-chart='temperature.temperature'] canvas")
            before = int(await chart.get_attribute("data-points") or 0)

            async def new_point() -> bool:
                return int(await chart.get_attribute("data-points") or 0) > before

            # (waits poll from here: the page's CSP allows no string evaluated as script)
            await eventually(new_point, within=30, what="a new point on the chart")
            assert await page.evaluate("window.stillTheSamePage") is True
            # The range picker asks the server for buckets of the longer range.
            async with page.expect_response(lambda r: "/telemetry/buckets" in r.url) as answer:
                await page.click("button[data-range='604800']")
            body = await (await answer.value).json()
            assert body["bucket_seconds"] == 604800 // 240


async def test_read_token_sees_no_controls_and_sends_no_command(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker) as stack:
        by_model = await demo_stack_devices(stack)
        bulb = by_model["SIM-BULB-CT"]
        _, read = await asyncio.to_thread(create_token, stack.services.storage.registry,
                                          "viewer", scopes=["read"])
        async with browser_page(stack) as page:
            await sign_in(page, read)
            await page.wait_for_selector(f"[data-device-id='{bulb['id']}'] [data-value='level.level']")
            assert await page.locator("[data-device-id]").count() == 5
            assert await page.locator("[data-control]").count() == 0
            assert "read only" in await page.inner_text("#who")
            # A command sent from the page with this token is refused, and the bulb is unchanged.
            status = await page.evaluate(
                """async (id) => (await fetch(`/api/v1/devices/${id}/commands`, {method: "POST",
                     headers: {Authorization: `Bearer ${sessionStorage.getItem("spoke.token")}`,
                               "Content-Type": "application/json"},
                     body: JSON.stringify({capability: "switch", command: "off", args: {}})})).status""",
                bulb["id"])
            assert status == 403
            after = (await stack.api.get(f"/api/v1/devices/{bulb['id']}")).json()
            assert after["capabilities"]["switch"]["on"] is True


async def test_wrong_token_is_refused_and_other_accounts_see_nothing(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker) as stack:
        await demo_stack_devices(stack)
        registry = stack.services.storage.registry
        await asyncio.to_thread(create_account, registry, "neighbour")
        _, other = await asyncio.to_thread(create_token, registry, "n", account="neighbour",
                                           scopes=["control"])
        async with browser_page(stack, viewport={"width": 390, "height": 844}) as page:
            await sign_in(page, "spk_not-a-token")
            await page.wait_for_selector("#signin-error:has-text('refused')")
            assert await page.is_visible("#signin")
            assert await page.evaluate("sessionStorage.getItem('spoke.token')") is None

            await sign_in(page, other)
            await page.wait_for_selector("#overview:not([hidden])")
            await page.wait_for_selector("text=No hubs in this account yet.")
            assert await page.locator("[data-device-id]").count() == 0
            assert await page.locator("[data-hub-id]").count() == 0


async def test_phone_screen_and_pairing_with_interview_steps(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    async with running_stack(tmp_path, amqtt_broker) as stack:
        await demo_stack_devices(stack)
        assert stack.hub is not None
        async with browser_page(stack, viewport={"width": 390, "height": 844},
                                is_mobile=True, has_touch=True) as page:
            await sign_in(page, stack.token)
            await page.wait_for_selector("[data-device-id] [data-value]")
            # Nothing wider than the phone's screen.
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth + 1")

            await page.click("[data-control='pairing']")
            await page.wait_for_selector("[data-pairing='countdown']:has-text('left')")
            joined = await stack.hub.dispatch.control({"op": "join", "source": "bulb"})
            entry = page.locator(f"[data-joining='{joined['ieee']}']")
            await entry.wait_for(timeout=20000)

            async def ready() -> bool:
                return "ready" in await entry.inner_text()

            await eventually(ready, within=30, what="the joined bulb's interview in the page")
            text = await entry.inner_text()
            for step in ("joined", "interviewed", "ready"):
                assert step in text, text
            # The new device appears among the hub's devices without a reload.
            async def six_devices() -> bool:
                return await page.locator("[data-device-id]").count() == 6

            await eventually(six_devices, within=20, what="the new bulb among the devices")
            await page.click("[data-control='pairing']")
            await page.wait_for_selector("[data-pairing='countdown']:has-text('closed')")


async def test_controls_show_the_state_read_back_or_the_apis_error(
        tmp_path: Path, amqtt_broker: BrokerAddress) -> None:
    # Three commands a day: the fourth is refused with 429, whatever else happens.
    async with running_stack(tmp_path, amqtt_broker,
                             cloud={"rate_limit_commands": "3/day"}) as stack:
        by_model = await demo_stack_devices(stack)
        trv, plug, bulb = by_model["SIM-TRV-1"], by_model["SIM-PLUG-1"], by_model["SIM-BULB-CT"]
        async with browser_page(stack, viewport={"width": 1280, "height": 1000}) as page:
            await sign_in(page, stack.token)
            await page.wait_for_selector(f"[data-device-id='{trv['id']}'] "
                                         "[data-value='thermostat.heating_setpoint']")
            setpoint = trv["capabilities"]["thermostat"]["heating_setpoint"]

            async def done(device: dict[str, Any], capability: str) -> str:
                status = f"[data-device-id='{device['id']}'] [data-status='{capability}']"
                await page.wait_for_selector(f"{status}[data-state='done'], "
                                             f"{status}[data-state='failed']", timeout=15000)
                return str(await page.inner_text(status))

            await page.click(f"[data-device-id='{trv['id']}'] [data-control='thermostat-up']")
            shown = await done(trv, "thermostat")
            assert shown.startswith("done") and f"heating_setpoint {setpoint + 0.5:g}" in shown
            after = (await stack.api.get(f"/api/v1/devices/{trv['id']}")).json()
            assert after["capabilities"]["thermostat"]["heating_setpoint"] == setpoint + 0.5

            await page.click(f"[data-device-id='{plug['id']}'] [data-control='switch']")
            assert await done(plug, "switch") == "done: off"
            after = (await stack.api.get(f"/api/v1/devices/{plug['id']}")).json()
            assert after["capabilities"]["switch"]["on"] is False

            # The hub goes away: the page shows it offline (live), and a command answers 409.
            await stack.stop_hub()
            await page.wait_for_selector(
                f"[data-hub-id='{stack.hub_settings.hub_id}'][data-online='false']", timeout=20000)
            await page.wait_for_selector(f"[data-device-id='{bulb['id']}'][data-available='false']",
                                         timeout=20000)
            await page.click(f"[data-device-id='{bulb['id']}'] [data-control='switch']")
            assert "409" in await done(bulb, "switch")
            await page.click(f"[data-device-id='{bulb['id']}'] [data-control='switch']")
            await page.wait_for_selector(f"[data-device-id='{bulb['id']}'] "
                                         "[data-status='switch']:has-text('429')")
