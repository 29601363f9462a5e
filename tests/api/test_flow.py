"""The seed's flow over HTTP: submit, register, claim, heartbeat, complete, cached resubmit."""

from __future__ import annotations

from tests.support import ApiServer, register, submit, unique_params


def test_seed_flow_end_to_end(server: ApiServer) -> None:
    # Given a new job
    params = unique_params(name="Ada", processing_time=1)
    created = submit(server, "hello_world", params)
    assert created.status_code == 201
    job_id = created.json()["job_id"]
    assert created.json()["status"] == "pending"

    # When a runner registers, finds, claims, heartbeats and completes it
    runner_id = register(server, ["hello_world"])
    with server.client("runner", runner_id) as runner:
        assert runner.get("/api/runner/verify").json()["runner_name"] == "runner"
        available = runner.get("/api/runner/jobs/available", params={"types[]": "hello_world"})
        assert job_id in [job["job_id"] for job in available.json()["jobs"]]
        claim = runner.post(f"/api/runner/jobs/{job_id}/claim")
        assert claim.status_code == 200
        assert claim.json()["job"] == {
            "job_id": job_id,
            "job_type": "hello_world",
            "input_params": params,
        }
        beat = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 5, "progress_total": 10, "console_output": "halfway"},
        )
        assert beat.json() == {"success": True, "message": "Heartbeat recorded"}
        with server.client("submit") as client:
            status = client.get(f"/api/jobs/{job_id}").json()
        assert status["status"] == "in_progress"
        assert status["progress"] == {"current": 5, "total": 10}
        done = runner.post(
            f"/api/runner/jobs/{job_id}/complete",
            json={"output_data": {"greeting": "Hello, Ada!"}, "console_output": "halfway\ndone"},
        )
        assert done.status_code == 200

    # Then a resubmission answers 200 with the cached result, and so do check and status
    again = submit(server, "hello_world", params)
    assert again.status_code == 200
    assert again.json()["job_id"] == job_id
    assert again.json()["status"] == "completed"
    assert again.json()["result"] == {
        "output_data": {"greeting": "Hello, Ada!"},
        "console_output": "halfway\ndone",
    }
    with server.client("submit") as client:
        checked = client.post(
            "/api/jobs/check", json={"job_type": "hello_world", "input_params": params}
        ).json()
        status = client.get(f"/api/jobs/{job_id}").json()
    assert checked["exists"] is True and checked["result"]["output_data"] == {
        "greeting": "Hello, Ada!"
    }
    assert status["status"] == "completed" and status["result"]["console_output"].endswith("done")


def test_key_order_and_number_spelling_find_the_same_job(server: ApiServer) -> None:
    tag = unique_params()["test_id"]
    first = submit(server, "x", {"a": 1, "b": 2.0, "tag": tag})
    with server.client("submit") as client:
        second = client.post(
            "/api/jobs/submit",
            content=f'{{"input_params": {{"tag": "{tag}", "b": 2, "a": 1.0e0}}, "job_type": "x"}}',
            headers={"Content-Type": "application/json"},
        )
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["job_id"] == first.json()["job_id"]


def test_check_never_creates(server: ApiServer) -> None:
    params = unique_params()
    with server.client("submit") as client:
        answer = client.post("/api/jobs/check", json={"job_type": "x", "input_params": params})
    assert answer.json() == {"exists": False, "message": "No job with this type and parameters"}
    assert submit(server, "x", params).status_code == 201


def test_failed_job_reports_error_and_resubmission_requeues(server: ApiServer) -> None:
    params = unique_params()
    job_id = submit(server, "flaky", params).json()["job_id"]
    runner_id = register(server, ["flaky"])
    with server.client("runner", runner_id) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        failed = runner.post(
            f"/api/runner/jobs/{job_id}/error",
            json={"error_message": "boom", "console_output": "trace"},
        )
        assert failed.status_code == 200
    with server.client("submit") as client:
        checked = client.post("/api/jobs/check", json={"job_type": "flaky", "input_params": params})
        assert checked.json()["status"] == "failed" and checked.json()["error"] == "boom"
        assert client.get(f"/api/jobs/{job_id}").json()["error"] == "boom"

    requeued = submit(server, "flaky", params)
    assert requeued.status_code == 200
    assert requeued.json() == {
        "job_id": job_id,
        "status": "pending",
        "message": "Job had failed; requeued",
    }
    with server.client("admin") as admin:
        detail = admin.get(f"/api/admin/jobs/{job_id}").json()
    assert detail["attempts"] == 0 and detail["error_message"] is None


def test_release_returns_job_to_pending_without_using_an_attempt(server: ApiServer) -> None:
    job_id = submit(server, "x", unique_params()).json()["job_id"]
    runner_id = register(server, ["x"])
    with server.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{job_id}/claim")
        released = runner.post(f"/api/runner/jobs/{job_id}/release")
        assert released.status_code == 200
        again = runner.post(f"/api/runner/jobs/{job_id}/claim")
        assert again.status_code == 200
    with server.client("admin") as admin:
        assert admin.get(f"/api/admin/jobs/{job_id}").json()["attempts"] == 1


def test_available_accepts_both_type_spellings_and_defaults_to_capabilities(
    server: ApiServer,
) -> None:
    job_type = f"t{unique_params()['test_id'][:10]}"
    job_id = submit(server, job_type, {}).json()["job_id"]
    runner_id = register(server, [job_type])
    with server.client("runner", runner_id) as runner:
        for query in ({"types[]": job_type}, {"types": job_type}, {}):
            jobs = runner.get("/api/runner/jobs/available", params=query).json()["jobs"]
            assert [job["job_id"] for job in jobs] == [job_id], query


def test_admin_listings_detail_and_stats(server: ApiServer) -> None:
    job_type = f"t{unique_params()['test_id'][:10]}"
    ids = [submit(server, job_type, {"n": n}).json()["job_id"] for n in range(3)]
    runner_id = register(server, [job_type], name="lister")
    with server.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{ids[0]}/claim")
    with server.client("admin") as admin:
        listed = admin.get("/api/admin/jobs", params={"job_type": job_type}).json()
        assert listed["total"] == 3
        assert [job["job_id"] for job in listed["jobs"]] == list(reversed(ids))  # newest first
        pending = admin.get(
            "/api/admin/jobs",
            params={"job_type": job_type, "status": "pending", "limit": 1, "offset": 1},
        ).json()
        assert pending["total"] == 2 and len(pending["jobs"]) == 1
        detail = admin.get(f"/api/admin/jobs/{ids[0]}").json()
        assert detail["claimed_by"] == runner_id and detail["status"] == "claimed"
        assert detail["input_params"] == {"n": 0} and len(detail["job_hash"]) == 64
        runners = admin.get("/api/admin/runners").json()
        assert runner_id in [r["runner_id"] for r in runners["runners"]]
        one = admin.get(f"/api/admin/runners/{runner_id}").json()
        assert one["name"] == "lister" and one["is_active"] is True
        assert [job["job_id"] for job in one["jobs"]] == [ids[0]]
        stats = admin.get("/api/admin/stats").json()
        assert stats["jobs"]["claimed"] >= 1 and stats["jobs"]["pending"] >= 2
        assert stats["jobs"]["total"] == sum(
            stats["jobs"][s]
            for s in ("pending", "claimed", "in_progress", "completed", "failed", "expired")
        )
        assert stats["runners"]["active"] >= 1


def test_admin_job_list_pages_with_a_before_cursor(server: ApiServer) -> None:
    job_type = f"t{unique_params()['test_id'][:10]}"
    for n in range(5):
        submit(server, job_type, {"n": n})
    with server.client("admin") as admin:
        whole = admin.get("/api/admin/jobs", params={"job_type": job_type}).json()
        pages, before = [], None
        while True:
            params = {"job_type": job_type, "limit": 2, **({"before": before} if before else {})}
            page = admin.get("/api/admin/jobs", params=params).json()
            assert page["total"] == 5
            pages.append([job["job_id"] for job in page["jobs"]])
            before = page["next_before"]
            if before is None:
                break
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [job_id for page in pages for job_id in page] == [j["job_id"] for j in whole["jobs"]]


def test_admin_deletes_jobs(server: ApiServer) -> None:
    ids = [submit(server, "x", unique_params()).json()["job_id"] for _ in range(3)]
    with server.client("admin") as admin:
        assert admin.delete(f"/api/admin/jobs/{ids[0]}").status_code == 200
        assert admin.get(f"/api/admin/jobs/{ids[0]}").status_code == 404
        batch = admin.post("/api/admin/jobs/batch-delete", json={"job_ids": [*ids[1:], "nope"]})
        assert batch.json()["deleted"] == 2
        assert admin.delete(f"/api/admin/jobs/{ids[1]}").status_code == 404


def test_health_and_docs_need_no_key(server: ApiServer) -> None:
    with server.client() as anyone:
        health = anyone.get("/health")
        spec = anyone.get("/openapi.json").json()
        docs = anyone.get("/docs")
    assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    paths = set(spec["paths"])
    for path in (
        "/api/jobs/submit",
        "/api/jobs/check",
        "/api/jobs/{job_id}",
        "/api/runner/register",
        "/api/runner/verify",
        "/api/runner/jobs/available",
        "/api/runner/jobs/{job_id}/claim",
        "/api/runner/jobs/{job_id}/heartbeat",
        "/api/runner/jobs/{job_id}/complete",
        "/api/runner/jobs/{job_id}/error",
        "/api/runner/jobs/{job_id}/release",
        "/api/admin/jobs",
        "/api/admin/jobs/{job_id}",
        "/api/admin/runners",
        "/api/admin/runners/{runner_id}",
        "/api/admin/stats",
        "/api/admin/jobs/batch-delete",
        "/health",
    ):
        assert path in paths, path
    submit_op = spec["paths"]["/api/jobs/submit"]["post"]
    assert "requestBody" in submit_op and {"200", "201", "400"} <= set(submit_op["responses"])
    assert docs.status_code == 200


def test_a_known_plugin_validates_parameters_at_submit(server: ApiServer) -> None:
    refused = submit(server, "hello_world", {"processing_time": 1000})
    assert refused.status_code == 400
    assert "processing_time" in refused.json()["error"]
    assert submit(server, "primes", {"limit": "many"}).status_code == 400
    # a type no plugin here knows is accepted as it is (an HTTP runner may serve it)
    assert submit(server, "someone_elses_type", unique_params(limit="many")).status_code == 201


def test_cached_answers_still_need_the_submit_key(server: ApiServer) -> None:
    # Given a completed job, whose answers are now served from the cache
    params = unique_params()
    job_id = submit(server, "cached", params).json()["job_id"]
    runner_id = register(server, ["cached"])
    with server.client("runner", runner_id) as runner:
        runner.post(f"/api/runner/jobs/{job_id}/claim")
        runner.post(f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"v": 1}})
    body = {"job_type": "cached", "input_params": params}
    assert submit(server, "cached", params).json()["status"] == "completed"
    # When it is asked for with another role's key, a wrong key or none
    for headers in (server.headers("runner"), {"Authorization": "Bearer wrong"}, {}):
        for method, path, json_body in (
            ("POST", "/api/jobs/submit", body),
            ("POST", "/api/jobs/check", body),
            ("GET", f"/api/jobs/{job_id}", None),
        ):
            with server.client(headers=headers) as client:
                answer = client.request(method, path, json=json_body)
            # Then it is refused like any other request
            assert answer.status_code == 401, (headers, path)
            assert "result" not in answer.json()
