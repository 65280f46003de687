"""Property-based requests from the service's own OpenAPI schema (schemathesis) against the real app
on localhost: whatever the client sends, no 5xx, and every refusal is a 4xx that says why."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serve_helpers import start_app, stop_app

UPLOAD_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = start_app(tmp_path_factory.mktemp("serve-schema"), overrides={
        "limits": {"max_bytes": UPLOAD_LIMIT, "max_width": 1920, "max_height": 1080},
        "jobs": {"chunk_frames": 12, "overlap_frames": 3, "poll_s": 0.5, "max_running_jobs": 1},
        "retention": {"min_free_bytes": 0}})
    yield served
    stop_app()


def refusal_says_why(response) -> None:
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        assert detail, f"{response.status_code} without a reason: {response.text[:200]}"


def check_operation(operation, app, seen: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:
        who = "admin" if case.path.startswith("/metrics") else (
            "rights_holder" if case.path.startswith("/v1/consent") else "operator")
        # the schema declares the key headers, so generated cases carry random ones: send the real key instead
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("authorization", "x-api-key")}
        response = case.call(headers={"Authorization": f"Bearer {app.keys[who]}"}, timeout=60)
        where = f"{case.method} {case.formatted_path}"
        key = f"{case.method} {case.path} {response.status_code}"
        seen[key] = seen.get(key, 0) + 1
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
        refusal_says_why(response)
        if case.path == "/v1/jobs" and case.method == "POST" and response.status_code in (200, 201):
            with app.client() as client:  # a generated job need not render
                client.delete(f"/v1/jobs/{response.json()['id']}")

    run()


def test_no_request_makes_a_5xx_and_every_refusal_has_a_reason(app):
    schema = schemathesis.openapi.from_url(app.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/jobs", "/v1/jobs/{job_id}", "/healthz"}
    seen: dict[str, int] = {}
    for operation in operations:
        check_operation(operation, app, seen)
    print("\n".join(f"{n:4d}  {key}" for key, n in sorted(seen.items())))
    assert sum(seen.values()) >= 10 * len(operations)
    assert not any(k.endswith(" 401") for k in seen)  # every case was authenticated, so the routes themselves ran
