"""The fault matrix: 1,000 jobs per fault, 0 lost and 0 completed twice in every row.

    python bench/faults.py [--jobs 1000] [--window 20] [--only NAME-PART] [--keep DIR]

Each row starts ``runpack api`` x2, ``runpack worker`` x2, ``runpack beat`` and two
``runpack runner`` on a private PostgreSQL and Redis this script starts on free loopback
ports (never the machine's own), submits the jobs through both APIs over ``--window``
seconds, and breaks one thing two seconds in. It prints one row per fault and exits 1 if
any job was lost or completed twice. What each column means, and how it is measured, is in
``tests/support/faults.py`` (the harness the test suite's smaller matrix shares).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.faults import FAULTS, TARGET_S, Row, format_table, run_matrix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per fault")
    parser.add_argument("--window", type=float, default=20.0, help="seconds to submit them over")
    parser.add_argument("--only", default="", help="run the faults whose name holds this")
    parser.add_argument("--keep", type=Path, help="keep every process's log in this folder")
    args = parser.parse_args()
    faults = [f for f in FAULTS if args.only.lower() in f.name.lower()]
    started = time.monotonic()

    def report(row: Row) -> None:
        verdict = "ok" if row.ok else "FAILED"
        print(f"[{time.monotonic() - started:6.0f} s] {row.fault}: {verdict}", flush=True)
        for line in [*row.notes, *row.problems]:
            print(f"    {line}", flush=True)

    with tempfile.TemporaryDirectory(prefix="runpack-faults-") as scratch:
        folder = args.keep or Path(scratch)
        rows = run_matrix(faults, folder, args.jobs, args.window, report)
    print()
    print(format_table(rows))
    print()
    print(
        f"{len(rows)} faults, {args.jobs} jobs each, in {time.monotonic() - started:.0f} s;"
        f" target: every job finished within {TARGET_S:.0f} s of its fault's end"
        " (heartbeat timeout + 2 reap intervals)"
    )
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
