"""The in-process app the contract tests use answers as a real ``runpack api`` process does.

Both serve one database. The same requests, refusals and a job's whole round trip (submit,
check, status, admin detail, delete), go to each in turn; the answers must be equal
(status, and body with ids and timestamps masked). The job is deleted at the end, so the
second server starts from the state the first found.
"""

from __future__ import annotations

from typing import Any

from tests.support import ApiServer, ServerProcess
from tests.support.answers import masked
from tests.support.inprocess import InProcessServer

JSON = "application/json"
JOB = b'{"job_type": "same", "input_params": {"n": 1}}'
#: (role, method, path, content type, body); ``{job}`` is the id the submit answered.
CORPUS: list[tuple[str | None, str, str, str | None, bytes | None]] = [
    (None, "POST", "/api/jobs/submit", JSON, JOB),
    ("runner", "POST", "/api/jobs/submit", JSON, JOB),
    ("submit", "POST", "/api/jobs/submit", None, JOB),
    ("submit", "POST", "/api/jobs/check", "text/plain", JOB),
    ("submit", "POST", "/api/jobs/submit", JSON, b'{"job_type": "same"'),
    ("submit", "POST", "/api/jobs/submit", JSON, b'{"job_type": "a b", "input_params": {}}'),
    ("submit", "POST", "/api/jobs/submit", JSON, b'{"job_type": "s", "input_params": [1]}'),
    ("submit", "POST", "/api/jobs/submit", JSON, b""),
    ("submit", "PUT", "/api/jobs/submit", JSON, JOB),
    ("submit", "GET", "/api/jobs/no-such-job", None, None),
    ("submit", "GET", "/api/jobs/a%00b", None, None),
    ("submit", "POST", "/api/jobs/check", JSON, JOB),
    ("admin", "GET", "/api/admin/jobs?offset=9223372036854775808", None, None),
    ("admin", "GET", "/api/admin/jobs?limit=0", None, None),
    ("admin", "GET", "/api/admin/throughput?minutes=99999", None, None),
    ("runner", "POST", "/api/runner/register", JSON, b'{"name": "", "capabilities": []}'),
    ("runner", "GET", "/api/runner/jobs/available?wait=31", None, None),
    ("admin", "GET", "/api/no-such-route", None, None),
    ("submit", "POST", "/api/jobs/submit", JSON, JOB),
    ("submit", "POST", "/api/jobs/check", JSON, JOB),
    ("submit", "GET", "/api/jobs/{job}", None, None),
    ("admin", "GET", "/api/admin/jobs/{job}", None, None),
    ("admin", "DELETE", "/api/admin/jobs/{job}", None, None),
    ("submit", "GET", "/api/jobs/{job}", None, None),
]


def answers(server: ApiServer) -> list[tuple[int, Any]]:
    """Every request of CORPUS sent to ``server``, in order, its answer masked."""
    got, job = [], ""
    for role, method, path, content_type, body in CORPUS:
        headers = {} if content_type is None else {"Content-Type": content_type}
        with server.client(role) as client:
            answer = client.request(method, path.format(job=job), content=body, headers=headers)
        if path == "/api/jobs/submit" and answer.status_code == 201:
            job = answer.json()["job_id"]
        got.append(masked(answer))
    return got


def test_the_in_process_app_answers_as_a_real_server(
    server: InProcessServer, live_server: ServerProcess
) -> None:
    # Given the in-process app and a real server on one database
    # When the same requests go to each, in turn
    in_process, live = answers(server), answers(live_server)

    # Then every answer is the same: refusals, the job's round trip and its deletion
    statuses = [status for status, _ in in_process]
    refusals = [401, 401, 400, 400, 400, 400, 400, 400, 405, 404, 400, 200, 400, 400, 400]
    round_trip = [400, 400, 404, 201, 200, 200, 200, 200, 404]
    assert statuses == refusals + round_trip
    assert in_process == live
