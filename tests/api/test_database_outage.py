"""PostgreSQL unreachable: requests that need it get a 503 to retry, never a 500."""

from __future__ import annotations

from pathlib import Path

from tests.support import EMBEDDED, free_port, serving_in_process


def test_requests_get_a_503_with_retry_after_while_postgres_cannot_be_reached(
    tmp_path: Path,
) -> None:
    # Given an API whose PostgreSQL does not answer (nothing listens on its port)
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/runpack"
    with (
        serving_in_process(nowhere, EMBEDDED, tmp_path) as server,
        server.client("submit") as client,
    ):
        # When a client submits a job and asks for one
        submitted = client.post(
            "/api/jobs/submit", json={"job_type": "noop", "input_params": {"n": 1}}
        )
        status = client.get("/api/jobs/00000000-0000-0000-0000-000000000000")

    # Then both are told to try again later, as an error body, not an internal error
    for answer in (submitted, status):
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"error": "the database is unavailable; try again"}
        assert answer.headers["Retry-After"] == "1"
