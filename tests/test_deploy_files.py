"""The deployment files agree with the code: Dockerfile, docker-compose.yml, .env.example.

Nothing here needs Docker: the files are parsed, and every command they run is checked
against the real ``runpack`` CLI, every variable against the real settings.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from runpack_api.cli import app
from runpack_tasks.settings import RunpackSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

#: ``NAME=value`` and ``# NAME=value`` lines of an env file.
ENV_LINE = re.compile(r"^\s*(?P<commented>#\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
#: A Compose interpolation: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}``...
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
#: The URL a python healthcheck fetches.
PROBED_URL = re.compile(r"urlopen\(\s*['\"](?P<url>https?://[^'\"]+)['\"]")

ROLES = ("api", "worker", "beat", "flower")


# --- loading ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose().get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml defines no services"
    return found


def runpack_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def argv(command: str | list[Any]) -> list[str]:
    """A Compose or Dockerfile command as the argument list the entrypoint receives."""
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def service_argv(name: str) -> list[str]:
    service = services()[name]
    assert "command" in service, f"service {name!r} has no command"
    return argv(service["command"])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def interpolated(value: str, placeholder: str = "secret") -> str:
    """value with Compose's ``${...}`` interpolations replaced, as Compose would."""
    return re.sub(r"\$\{[^}]*\}", placeholder, value)


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name V`` or ``--name=V`` in args."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
    return None


@cache
def subcommands() -> frozenset[str]:
    # typer may ship its own copy of click: ask for the group's commands, not its class
    commands = getattr(typer.main.get_command(app), "commands", None)
    assert isinstance(commands, dict), "the runpack CLI is not a command group"
    return frozenset(commands)


@cache
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instructions(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile() if kw == keyword]


def exec_form(keyword: str) -> list[str]:
    found = instructions(keyword)
    assert len(found) == 1, f"the Dockerfile needs exactly one {keyword}, has {len(found)}"
    parsed = json.loads(found[0])
    assert isinstance(parsed, list), f"{keyword} is not in exec (JSON array) form"
    return [str(part) for part in parsed]


@cache
def env_example() -> list[tuple[str, str, bool]]:
    """(name, value, commented out) for every assignment in .env.example."""
    entries = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line)
        if match:
            entries.append((match["name"], match["value"].strip(), bool(match["commented"])))
    return entries


def unknown_settings(names: set[str]) -> list[str]:
    fields = RunpackSettings.model_fields
    return sorted(name for name in names if name.removeprefix("RUNPACK_").lower() not in fields)


def has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return not check.get("disable") and bool(check.get("test"))


def healthy_dependencies(service: dict[str, Any]) -> set[str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):  # the short form waits only for "started"
        return set()
    return {
        name for name, spec in depends.items() if (spec or {}).get("condition") == "service_healthy"
    }


def probed_port(check_test: list[str] | str) -> int | None:
    text = " ".join(check_test) if isinstance(check_test, list) else check_test
    match = PROBED_URL.search(text)
    return urlsplit(match["url"]).port if match else None


# --- commands -----------------------------------------------------------------------------


def test_the_runpack_roles_are_built_from_the_dockerfile() -> None:
    built = runpack_services()
    assert set(ROLES) <= set(built), f"missing Runpack services: {set(ROLES) - set(built)}"
    for name, service in built.items():
        build = service["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile_name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
        assert context in {".", "./"}, f"{name} builds from {context!r}"
        assert dockerfile_name in {None, "Dockerfile"}, f"{name} uses {dockerfile_name!r}"


def test_every_command_starts_with_a_real_subcommand() -> None:
    real = subcommands()
    assert {"api", "worker", "beat", "flower"} <= real  # the CLI itself is what we compare to
    commands = {name: service_argv(name) for name in runpack_services()}
    commands["Dockerfile CMD"] = exec_form("CMD")
    wrong = {name: args[:1] for name, args in commands.items() if not args or args[0] not in real}
    assert not wrong, f"not runpack subcommands: {wrong}; the CLI has {sorted(real)}"


def test_every_command_parses_with_its_options() -> None:
    runner = CliRunner()
    commands = {name: service_argv(name) for name in runpack_services()}
    commands["Dockerfile CMD"] = exec_form("CMD")
    for name, args in commands.items():
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, f"{name}: runpack {shlex.join(args)} -> {result.output}"
        assert "Usage" in result.output


def test_the_help_check_does_reject_unknown_options() -> None:
    result = CliRunner().invoke(app, ["worker", "--no-such-option", "2", "--help"])
    assert result.exit_code != 0


def test_the_roles_run_the_expected_commands() -> None:
    for role in ROLES:
        assert service_argv(role)[0] == role, f"service {role} runs {service_argv(role)}"
    assert option(service_argv("api"), "--host") == "0.0.0.0"
    assert option(service_argv("flower"), "--host") == "0.0.0.0"


# --- variables ----------------------------------------------------------------------------


def test_compose_runpack_variables_are_settings() -> None:
    names = {
        name
        for service in services().values()
        for name in environment(service)
        if name.startswith("RUNPACK_")
    }
    assert names, "no RUNPACK_ variable in docker-compose.yml"
    assert not unknown_settings(names), f"not RunpackSettings fields: {unknown_settings(names)}"


def test_env_example_variables_are_settings() -> None:
    names = {name for name, _, _ in env_example() if name.startswith("RUNPACK_")}
    commented = {name for name, _, out in env_example() if out and name.startswith("RUNPACK_")}
    assert names - commented, "no uncommented RUNPACK_ variable in .env.example"
    assert commented, "no commented-out optional RUNPACK_ variable in .env.example"
    assert not unknown_settings(names), f"not RunpackSettings fields: {unknown_settings(names)}"


def test_env_example_values_are_valid_settings() -> None:
    for name, value, _ in env_example():
        if not name.startswith("RUNPACK_") or not value:
            continue
        field = name.removeprefix("RUNPACK_").lower()
        try:
            RunpackSettings.model_validate({field: value})
        except ValidationError as exc:
            pytest.fail(f".env.example: {name}={value} is not a valid value: {exc}")


def test_env_example_has_every_secret_the_deployment_needs() -> None:
    required = {match["name"] for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    required |= {
        f"RUNPACK_{field.upper()}"
        for field in RunpackSettings.model_fields
        if field.endswith("_api_key")
    }
    assert "POSTGRES_PASSWORD" in required
    uncommented = {name for name, _, commented in env_example() if not commented}
    missing = sorted(required - uncommented)
    assert not missing, f".env.example does not set {missing}"


def test_runpack_services_share_env_file_and_point_at_compose_backends() -> None:
    all_services = services()
    for name, service in runpack_services().items():
        env_file = service.get("env_file")
        env_files = [env_file] if isinstance(env_file, str | dict) else env_file or []
        paths = [item if isinstance(item, str) else item.get("path") for item in env_files]
        assert ".env" in paths, f"{name} does not read .env"

        env = environment(service)
        assert "${POSTGRES_PASSWORD" in env.get("RUNPACK_DATABASE_URL", ""), name
        database = urlsplit(interpolated(env.get("RUNPACK_DATABASE_URL", "")))
        broker = urlsplit(interpolated(env.get("RUNPACK_BROKER_URL", "")))
        assert database.scheme == "postgresql", f"{name}: database {database.geturl()!r}"
        assert broker.scheme == "redis", f"{name}: broker {broker.geturl()!r}"
        assert database.hostname in all_services, f"{name}: no service {database.hostname!r}"
        assert broker.hostname in all_services, f"{name}: no service {broker.hostname!r}"
        assert all_services[database.hostname]["image"].startswith("postgres:")
        assert all_services[broker.hostname]["image"].startswith("redis:")


def test_database_url_matches_the_postgres_service() -> None:
    env = environment(services()["postgres"])
    url = urlsplit(interpolated(environment(runpack_services()["api"])["RUNPACK_DATABASE_URL"]))
    assert env.get("POSTGRES_USER") == url.username == "runpack"
    assert env.get("POSTGRES_DB") == url.path.lstrip("/") == "runpack"
    assert "${POSTGRES_PASSWORD" in env.get("POSTGRES_PASSWORD", "")


def test_every_service_restarts_unless_stopped() -> None:
    wrong = {
        n: s.get("restart") for n, s in services().items() if s.get("restart") != "unless-stopped"
    }
    assert not wrong, f"restart policy is not unless-stopped: {wrong}"


# --- topology -----------------------------------------------------------------------------


def test_exactly_one_beat() -> None:
    beats = {name: s for name, s in runpack_services().items() if service_argv(name)[0] == "beat"}
    assert list(beats) == ["beat"], f"beat services: {list(beats)}"
    beat = beats["beat"]
    replicas = (beat.get("deploy") or {}).get("replicas", 1)
    assert int(replicas) <= 1, f"beat has deploy.replicas={replicas}"
    assert int(beat.get("scale", 1)) <= 1, f"beat has scale={beat['scale']}"


def test_backing_services_and_api_have_healthchecks() -> None:
    lacking = [
        name for name in ("postgres", "redis", "api") if not has_healthcheck(services()[name])
    ]
    assert not lacking, f"no healthcheck: {lacking}"


def test_every_service_is_checked_or_waits_for_a_checked_one() -> None:
    all_services = services()
    unchecked = [
        name
        for name, service in all_services.items()
        if not has_healthcheck(service)
        and not any(has_healthcheck(all_services[dep]) for dep in healthy_dependencies(service))
    ]
    assert not unchecked, f"neither health-checked nor waiting for a healthy service: {unchecked}"


def test_api_and_worker_wait_for_healthy_dependencies() -> None:
    all_services = services()
    assert {"postgres", "redis"} <= healthy_dependencies(all_services["api"])
    # the api applies the migrations: what uses the database waits for it to be healthy
    for name in ("worker", "beat"):
        assert "api" in healthy_dependencies(all_services[name]), f"{name} does not wait for api"
    for name, service in all_services.items():
        assert set(service.get("depends_on") or {}) <= set(all_services), name


def test_healthchecks_probe_the_ports_served() -> None:
    for name in ("api", "flower"):
        args = service_argv(name)
        check = services()[name]["healthcheck"]["test"]
        assert probed_port(check) == int(option(args, "--port") or 0), f"{name} probes elsewhere"
        published = [str(p).rsplit(":", 1)[-1] for p in services()[name].get("ports", [])]
        assert option(args, "--port") in published, f"{name} does not publish its port"


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_base_user_and_entrypoint() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]
    assert exec_form("ENTRYPOINT") == ["runpack"]
    users = instructions("USER")
    assert users and users[-1] not in {"root", "0", "0:0"}, f"runs as {users or 'root'}"


def test_dockerfile_copies_and_installs_the_project() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [pattern.rstrip("*") for pattern in include["packages"]["find"]["include"]]
    assert set(packages) == {"runpack_api", "runpack_tasks", "runner_plugins"}
    copied = " ".join(instructions("COPY")).split()
    for needed in (*packages, "pyproject.toml", "README.md"):
        assert any(Path(src).name == needed for src in copied), (
            f"the Dockerfile never copies {needed}"
        )
    assert any("pip install --no-cache-dir ." in run for run in instructions("RUN"))


def test_dockerfile_serves_and_probes_the_same_port() -> None:
    port = option(exec_form("CMD"), "--port")
    assert port is not None
    assert port in " ".join(instructions("EXPOSE")).split()
    checks = instructions("HEALTHCHECK")
    assert len(checks) == 1 and "python" in checks[0] and "/health" in checks[0]
    assert probed_port(checks[0]) == int(port)


def test_dockerignore_keeps_sources_and_drops_local_state() -> None:
    patterns = [
        line.strip().removeprefix("/").removeprefix("**/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = [path, *path.split("/")]
        return any(fnmatch.fnmatch(part, p) for part in parts for p in patterns)

    for kept in (
        "pyproject.toml",
        "README.md",
        "runpack_api/app.py",
        "runpack_tasks/settings.py",
        "runner_plugins/hello_world.py",
    ):
        assert not ignored(kept), f".dockerignore drops {kept}"
    for dropped in (
        ".git",
        ".venv",
        "tests",
        "bench",
        "runpack.db",
        "runpack.keys",
        "runpack-broker",
        ".env",
        "runpack_api/__pycache__",
    ):
        assert ignored(dropped), f".dockerignore keeps {dropped}"


# --- the RabbitMQ override ----------------------------------------------------------------

RABBITMQ_FILE = ROOT / "docker-compose.rabbitmq.yml"


def test_the_rabbitmq_override_points_every_role_at_its_rabbitmq_and_keeps_redis() -> None:
    override = yaml.safe_load(RABBITMQ_FILE.read_text())["services"]
    assert override["rabbitmq"]["image"].startswith("rabbitmq:")
    assert has_healthcheck(override["rabbitmq"])
    assert override["rabbitmq"]["restart"] == "unless-stopped"
    for role in ROLES:
        env = environment(override[role])
        broker = urlsplit(interpolated(env["RUNPACK_BROKER_URL"]))
        redis_url = urlsplit(env["RUNPACK_REDIS_URL"])
        assert (broker.scheme, broker.hostname) == ("amqp", "rabbitmq"), role
        assert redis_url.hostname in services() and redis_url.scheme == "redis", role
        assert "${RABBITMQ_PASSWORD" in env["RUNPACK_BROKER_URL"], role
        assert not unknown_settings(set(env)), role
    for role in ("api", "worker"):
        assert "rabbitmq" in healthy_dependencies(override[role]), role
    assert "RABBITMQ_PASSWORD" in {name for name, _, _ in env_example()}
