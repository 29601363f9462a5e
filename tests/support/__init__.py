"""Test helpers, importable from ``tests.support``.

- backends: the embedded default and PostgreSQL + Redis, fresh databases
- server: keys, the settings of a test server, clients as a role (``ApiServer``)
- inprocess: the API app served in this process (contract tests)
- process: ``runpack api`` as a real process (tests where processes are the point)
- cluster: API, beat, Celery workers and HTTP runners as processes
- api, store: requests every API test makes, and looks at the database behind them
- redis_server: a private redis-server to flush or stop
- private_services: a private PostgreSQL and Redis to restart, pause and flush
- faults: the fault matrix's harness (``bench/faults.py`` and ``tests/tasks/test_faults.py``)
- waiting: wait on a condition with a deadline, free ports
- plain_http: ``get`` and ``post``, and the TLS context every test client shares
"""

from tests.support.api import assert_error, register, submit, unique_params
from tests.support.backends import (
    EMBEDDED,
    IN_CI,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    Backend,
    postgres_backend,
)
from tests.support.cluster import (
    Cluster,
    cluster_around,
    cluster_variables,
    install_example_plugin_once,
    running_cluster,
    tally_runs,
)
from tests.support.inprocess import InProcessServer, serving_in_process
from tests.support.process import (
    ServerProcess,
    database_answers,
    libraries_loaded,
    running_server,
)
from tests.support.redis_server import private_redis
from tests.support.server import GENEROUS_RATES, ApiServer, Keys, server_env
from tests.support.store import database_state, nothing_changes, stored_job
from tests.support.waiting import free_port, wait_for

__all__ = [
    "EMBEDDED",
    "GENEROUS_RATES",
    "IN_CI",
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "ApiServer",
    "Backend",
    "Cluster",
    "InProcessServer",
    "Keys",
    "ServerProcess",
    "assert_error",
    "cluster_around",
    "cluster_variables",
    "database_answers",
    "database_state",
    "free_port",
    "install_example_plugin_once",
    "libraries_loaded",
    "nothing_changes",
    "postgres_backend",
    "private_redis",
    "register",
    "running_cluster",
    "running_server",
    "server_env",
    "serving_in_process",
    "stored_job",
    "submit",
    "tally_runs",
    "unique_params",
    "wait_for",
]
