"""How pytest-xdist shares the tests among its workers.

Like ``--dist loadscope`` (a module's tests go to one worker, which sets up the module's
fixtures once), with two changes, because this suite's modules differ a hundredfold in
time and a test's count says nothing of it:

- A module's tests on each backend are a work unit of their own: its fixtures are made per
  backend anyway, and its two halves can run on two workers at once.
- ``LONGEST_FIRST`` are sent out first, the rest in collection order after them: a long
  module handed out last kept one worker busy alone for minutes at the end.
"""

from __future__ import annotations

import re

import pytest
from xdist.scheduler import LoadScopeScheduling

#: The modules whose tests take longest (most of it waiting on the processes they start),
#: longest first.
LONGEST_FIRST = (
    "tests/api/test_fuzz_schema.py",
    "tests/tasks/test_celery_execution.py",
    "tests/api/test_http_runner.py",
    "tests/tasks/test_celery_recovery.py",
    "tests/api/test_runner_recovery.py",
    "tests/api/test_cli.py",
    "tests/tasks/test_result_lifetime_celery.py",
    "tests/dashboard/test_dashboard.py",
    "tests/tasks/test_celery_rabbitmq.py",
    "tests/tasks/test_faults.py",
    "tests/api/test_runner_cancel.py",
    "tests/api/test_wakeups.py",
)
#: The backend a test runs on, as its id names it (``test_x[postgres]``, ``[embedded-admin]``).
_BACKEND = re.compile(r"[\[-](embedded|postgres)[\]-]")


def longest_first(items: list[pytest.Item]) -> None:
    """Put the tests of ``LONGEST_FIRST`` first, in its order; the rest keep theirs."""
    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def work_unit(nodeid: str) -> str:
    """The work unit of a test: its module (or class) as ``loadscope`` splits it off the
    test's id, and the backend the id names, if any."""
    scope = nodeid.rsplit("::", 1)[0]
    backend = _BACKEND.search(nodeid)
    return f"{scope}[{backend.group(1)}]" if backend else scope


class BackendScopes(LoadScopeScheduling):
    """``loadscope`` with a work unit per module and backend, in collection order (run
    with ``--no-loadscope-reorder``)."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)
