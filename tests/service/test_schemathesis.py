"""Property-based API testing: schemathesis generates requests from /openapi.json.

Every documented route gets valid and invalid inputs; the checks fail on any 5xx, on a
status code the document does not list, on a wrong content type, and on a response body
that does not match its schema. The SSE stream is excluded (it never ends); it has its
own test in test_api.py. Bounded examples keep the run well under 60 s.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tickwork import Scheduler, Task, cron, every
from tickwork.service.api import create_app
from tickwork.testing import FakeClock

from .conftest import OK_HANDLER, T0, boom

_sched = Scheduler(clock=FakeClock(T0), timezone="UTC", max_retries=0)
_sched.add_task(Task(id="alpha", name="Alpha", handler=OK_HANDLER, schedule=every(minutes=5)))
_sched.add_task(Task(id="beta", handler=boom, schedule=cron("0 * * * *"),
                     dependencies=["alpha"]))
app = create_app(_sched)

schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/events")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
