"""The path and query parameters the routes share, with their bounds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from runpack_tasks.jobstore.payloads import MAX_SAFE_INTEGER

#: Most rows one page of a list holds.
MAX_PAGE = 500
#: Largest ``offset`` a list takes (JSON's safe integer range; beyond it a 400).
MAX_OFFSET = MAX_SAFE_INTEGER
#: How many rows of a list to return (400 outside 1..MAX_PAGE); give the default with
#: ``= n`` where the parameter is declared.
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"At most {MAX_PAGE}")]
#: How many rows of a list to skip (400 outside 0..MAX_OFFSET).
PageOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
#: A job or runner id in a path: NUL cannot be stored, so it is refused (400), not looked up.
PathId = Annotated[str, Path(pattern=r"^[^\x00]+$")]
