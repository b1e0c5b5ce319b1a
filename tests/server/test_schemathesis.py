"""schemathesis against /openapi.json: no 5xx, and every answer matches the documented schema.

Runs with the admin token against the shared test server, a bounded number of examples per
operation, positive and negative data (so malformed input must come back as a 4xx, not a 500).
The Python API is driven directly (schemathesis' pytest plugin does not load under pytest 9).
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.relay_server import RelayServer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15  # per operation and mode: 40 operations x 2 modes stays well under a minute


def test_api_answers_as_documented(server: RelayServer) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers)
    failures: dict[str, str] = {}
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)
                statuses[response.status_code // 100 * 100] += 1

            try:
                call()
            except Unsatisfiable:  # no parameter or body to make invalid (e.g. GET /healthz)
                assert mode is GenerationMode.NEGATIVE and not operation.body and not operation.query
            except Exception as exc:  # collect every operation's failure, then report them all
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    # the run reached the handlers: both accepted and refused calls, and never a 5xx
    assert statuses[200] > 50 and statuses[400] > 50 and statuses[500] == 0, statuses
    print(f"schemathesis: {len(operations)} operations, answers by class: {dict(statuses)}")
