"""The REST API fuzzed from its own OpenAPI schema (schemathesis) against the whole running stack:
a real broker, the cloud on a real port and a simulated hub with the demo's devices. No answer
may be a 5xx the route does not declare, a status it does not declare, or a body its schema does
not allow; bad input gets a 4xx.

Each operation is fuzzed with generated ids (mostly unknown: 404s) and with the stack's real ids
(a hub, its devices, a command), in schemathesis' three phases: the schema's examples, its coverage
cases (boundaries, each constraint just broken, other methods) and random data, valid and not.
Removing a device goes last, so that it does not take the device from the operations after it.
Bounded and repeatable: ~25 cases per operation, phase and kind of id, derandomized (about a
minute). It finds what breaks the schema's shape; what hides inside a valid value (a time that
leaves datetime's range in UTC) has its own tests in test_api_input.py.

It sends a `control` token, as an app would: what needs `admin` must never get through."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import SkipTest

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.checks import CheckFunction
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.generation.overrides import Override
from schemathesis.schemas import APIOperation

from cloud.auth import create_token
from tests.conftest import BrokerAddress
from tests.stack import Stack, running_stack

EXAMPLES = 25  # per operation, phase and kind of id
LAST = ("DELETE", "/api/v1/devices/{device_id}")  # it takes the device from the operations after it
# Near the end too: it takes the group (and its scene) from the operations after it.
GROUP_DELETE = ("DELETE", "/api/v1/hubs/{hub_id}/groups/{group_id}")
# A live stream never ends, so no case of it would: tests/test_dashboard_api.py covers it.
STREAMS = {("GET", "/api/v1/stream")}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _checks() -> list[CheckFunction]:
    names = ("not_a_server_error", "status_code_conformance", "response_schema_conformance",
             "content_type_conformance")
    return [getattr(schemathesis.checks, name) for name in names]


def _fuzz_operation(operation: APIOperation, mode: HypothesisTestMode, ids: dict[str, str] | None,
                    call: Callable[[Case], None]) -> str | None:
    """One operation in one phase (the schema's examples, its coverage cases: boundaries, each
    constraint just broken; or random data, valid and not); the failure found, as a report."""
    wanted = {p.name for p in operation.path_parameters}
    override = Override(path_parameters={k: v for k, v in (ids or {}).items() if k in wanted})
    config = HypothesisTestConfig(project=operation.schema.config, modes=[mode],
                                  settings=FUZZ_SETTINGS, override=override)
    try:
        create_test(operation=operation, test_func=call, config=config)()
    except (Unsatisfiable, SkipTest):  # nothing to break (no parameters), or no examples
        return None
    except (Exception, BaseExceptionGroup) as exc:  # the checks' FailureGroup, or a failed request
        ids_kind = "real ids" if ids is not None else "generated ids"
        return f"{operation.label} ({mode.value}, {ids_kind}):\n{exc}"
    return None


def fuzz_api(base_url: str, token: str, ids: dict[str, str]
             ) -> tuple[list[str], dict[str, Counter[int]]]:
    """Fuzz every operation of the API at ``base_url`` with ``token``: the failures found, and
    the statuses each operation answered."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    checks = _checks()
    statuses: dict[str, Counter[int]] = defaultdict(Counter)

    def call(case: Case, **_: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        statuses[case.operation.label][response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers,
                               transport_kwargs={"base_url": base_url, "headers": headers})

    operations = [op for op in (result.ok() for result in schema.get_all_operations())
                  if (op.method.upper(), op.path) not in STREAMS]
    operations.sort(key=lambda op: ((op.method.upper(), op.path) == LAST,
                                    (op.method.upper(), op.path) == GROUP_DELETE))
    assert (operations[-1].method.upper(), operations[-1].path) == LAST, "the API changed"
    failures: list[str] = []
    for operation in operations:
        for known in (None, ids):
            if known is not None and not operation.path_parameters:
                continue  # nothing to fix: the first round covered it
            for mode in HypothesisTestMode:
                failure = _fuzz_operation(operation, mode, known, call)
                if failure is not None:
                    failures.append(failure)
    return failures, statuses


async def _real_ids(stack: Stack) -> dict[str, str]:
    """A hub, a device, a command, a group and its scene the cloud knows, for the path
    parameters."""
    plug = next(d for d in await stack.devices() if "switch" in d["capabilities"])
    response = await stack.api.post(f"/api/v1/devices/{plug['id']}/commands",
                                    json={"capability": "switch", "command": "toggle"})
    assert response.status_code == 200, response.text
    groups = f"/api/v1/hubs/{plug['hub_id']}/groups"
    made = await stack.api.post(groups, json={"name": "fuzzed", "group_id": 1})
    assert made.status_code == 201, made.text
    scene = await stack.api.post(f"{groups}/1/scenes", json={"scene_id": 1})
    assert scene.status_code == 201, scene.text
    return {"hub_id": plug["hub_id"], "device_id": plug["id"], "command_id": response.json()["id"],
            "group_id": "1", "scene_id": "1", "member_id": plug["id"]}


@pytest.mark.timeout(240)
async def test_the_api_answers_every_generated_request_as_its_schema_says(
    tmp_path: Path, mosquitto: BrokerAddress
):
    # a short command timeout: commands the fuzzer sends to a device may legitimately go unanswered
    # and no rate limits: they are tested on their own, here they would only stop the fuzzer
    limits = {"rate_limit_reads": "off", "rate_limit_commands": "off"}
    async with running_stack(tmp_path, mosquitto, cloud={"command_timeout": 1.0, **limits}) as stack:
        await stack.wait_for_devices(5)  # the demo's five
        ids = await _real_ids(stack)
        _, control = await asyncio.to_thread(create_token, stack.services.storage.registry,
                                             "fuzzer", scopes=["control"])
        failures, statuses = await asyncio.to_thread(fuzz_api, stack.base_url, control, ids)
    assert not failures, "\n\n".join(failures)
    # the fuzzer got past the token and the ids into every operation, not only 401s and 404s;
    # what needs the admin scope it never got through
    answered = {label: dict(counts) for label, counts in statuses.items()}
    assert len(answered) == 33, answered
    admin = {"POST /api/v1/tokens", "GET /api/v1/tokens", "DELETE /api/v1/tokens/{token_id}",
             "DELETE /api/v1/devices/{device_id}", "GET /api/v1/usage"}
    for label, counts in answered.items():
        if label == "GET /metrics":  # the operator's metrics token only, which no API token is
            assert 401 in counts and set(counts) <= {401, 405}, counts  # 405: other methods
        elif label in admin:
            assert 403 in counts and all(s >= 400 for s in counts), (label, counts)
        else:
            assert any(s < 300 or s == 422 for s in counts), (label, counts)
