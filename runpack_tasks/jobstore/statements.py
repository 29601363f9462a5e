"""Single statements compiled once per dialect and run in autocommit on the driver's connection.

Every state transition is one statement, atomic by itself, and they are the hot path: a
submit, a claim and a completion per job. Through a SQLAlchemy ``Connection`` in a
transaction each cost about 0.4 ms of CPU on top of the database's own work (building the
statement, its cache key, the result metadata) plus a BEGIN and a COMMIT round trip. A
``Statement`` is compiled once per dialect; running it checks a connection out of the
engine's pool, sends the SQL in one round trip (autocommit on PostgreSQL, where psycopg
also prepares it server-side after a few runs), and returns plain tuples.

After a database restart every pooled connection is stale. The first statement to meet
one gets the server's "session ended" error; it renews the engine's pool and is sent again
on a fresh connection (it never ran on the ended session), so a restart costs no caller
an error and the other stale connections are never used.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ClauseElement

#: PostgreSQL's errors for a session the server ended (an administrator's or a crash's
#: shutdown, a server still starting): a statement sent on such a connection never ran.
SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


@dataclass(frozen=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]
    positions: tuple[str, ...] | None  # None: named parameters (psycopg's pyformat)
    json_columns: tuple[int, ...]  # result columns the driver returns as JSON text


class Statement:
    """One SQL statement that returns rows (a SELECT, or RETURNING), for any engine's dialect.

    ``build`` makes the SQLAlchemy statement for a dialect name (an INSERT ... ON CONFLICT
    differs between PostgreSQL and SQLite); its ``bindparam`` names are the parameters of
    ``run``. Values that are dicts or lists are sent as JSON.
    """

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, engine: Engine) -> _Compiled:
        name = engine.dialect.name
        compiled = self._compiled.get(name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(name) or self._compile(engine)
                self._compiled[name] = compiled
        return compiled

    def _compile(self, engine: Engine) -> _Compiled:
        statement = self._build(engine.dialect.name)
        compiled = statement.compile(
            dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        returned = list(getattr(statement, "exported_columns", ()))
        json_columns: tuple[int, ...] = ()
        if engine.dialect.name == "sqlite":  # psycopg decodes json itself
            json_columns = tuple(
                index for index, column in enumerate(returned) if isinstance(column.type, sa.JSON)
            )
        positions = getattr(compiled, "positiontup", None)  # set for positional paramstyles
        return _Compiled(
            sql=str(compiled),
            defaults=dict(compiled.params),
            positions=tuple(positions) if positions is not None else None,
            json_columns=json_columns,
        )

    def run(self, engine: Engine, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with ``params`` (the others keep their statement defaults) and commit;
        returns the rows the statement returns."""
        compiled = self._for(engine)
        values = {**compiled.defaults, **params}
        for key, value in values.items():
            if isinstance(value, dict | list):
                values[key] = orjson.dumps(value).decode()
        args: Any = (
            values if compiled.positions is None else [values[k] for k in compiled.positions]
        )
        rows = _execute(engine, compiled.sql, args)
        if compiled.json_columns:
            rows = [_decode(row, compiled.json_columns) for row in rows]
        return list(rows)


#: Bound parameters a SQLite statement may carry by default since 3.32 (read from the
#: connection where the driver tells it).
_SQLITE_MAX_PARAMS = 32_766


_limits: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def _max_params(engine: Engine) -> int:
    """How many parameters one statement may bind on this SQLite database."""
    limit = _limits.get(engine)
    if limit is None:
        connection = engine.raw_connection()
        try:
            getlimit = getattr(connection.driver_connection, "getlimit", None)
            limit = (
                int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
                if getlimit is not None
                else _SQLITE_MAX_PARAMS
            )
        finally:
            connection.close()
        _limits[engine] = limit
    return limit


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), max(1, size))]


def _sent(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


def _encoded(
    table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Sequence[Sequence[Any]]:
    """``rows`` with the dicts and lists of their JSON columns as JSON text (only a JSON
    column takes one, so the other values need no look)."""
    json_at = [at for at, name in enumerate(columns) if isinstance(table.c[name].type, sa.JSON)]
    if not json_at:
        return rows
    encoded = []
    for row in rows:
        values = list(row)
        for at in json_at:
            values[at] = _sent(values[at])
        encoded.append(values)
    return encoded


def _returned(engine: Engine, table: sa.Table, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (which returns every column of ``table``) and decode its JSON columns."""
    rows = _execute(engine, sql, args)
    if engine.dialect.name == "sqlite":
        json_columns = tuple(
            index for index, column in enumerate(table.c) if isinstance(column.type, sa.JSON)
        )
        rows = [_decode(row, json_columns) for row in rows]
    return rows


def _type(engine: Engine, column: sa.Column[Any]) -> str:
    return str(column.type.compile(engine.dialect))


@dataclass(frozen=True)
class _InsertSql:
    """The text of ``insert_rows``'s statements for one table, columns and dialect."""

    head: str  # up to the rows
    tail: str  # from ON CONFLICT
    postgres: str | None  # PostgreSQL's whole statement
    read_back: str  # SQLite: the created rows' conflict values by primary key, up to "IN"
    key_at: int  # where the primary key is among the columns
    conflict_at: int


@functools.lru_cache(maxsize=32)
def _insert_sql(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...], conflict: str
) -> _InsertSql:
    """``insert_rows``'s statement text, made once (about 30 us a statement)."""
    preparer = dialect.identifier_preparer
    (key,) = table.primary_key.columns
    head = (
        f"INSERT INTO {preparer.format_table(table)} "
        f"({', '.join(preparer.quote(name) for name in columns)}) "
    )
    tail = f" ON CONFLICT ({preparer.quote(conflict)}) DO NOTHING"
    read_back = (
        f"SELECT json_group_array({preparer.quote(conflict)}) FROM "
        f"{preparer.format_table(table)} WHERE {preparer.quote(key.name)} IN "
    )
    postgres = None
    if dialect.name == "postgresql":
        tail += " RETURNING " + preparer.quote(conflict)
        record = ", ".join(
            f"{preparer.quote(name)} {table.c[name].type.compile(dialect)}" for name in columns
        )
        names = ", ".join(preparer.quote(name) for name in columns)
        postgres = f"{head}SELECT {names} FROM json_to_recordset(%s::json) AS given({record}){tail}"
    return _InsertSql(
        head, tail, postgres, read_back, columns.index(key.name), columns.index(conflict)
    )


def insert_rows(
    engine: Engine,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    conflict: str,
) -> list[Any]:
    """One multi-row ``INSERT INTO table (columns) ... ON CONFLICT (conflict) DO NOTHING``:
    returns the ``conflict`` values of the rows this call created (the caller holds those
    rows already; reading them back whole cost a third of the write).

    On PostgreSQL the rows go as one JSON array of objects, one parameter read by
    ``json_to_recordset``: one statement whatever the count, whose text never changes (so
    psycopg prepares it), and which PostgreSQL parses twice as fast as the same rows as
    ``VALUES`` parameters; ``RETURNING conflict`` names the created rows. One orjson call
    encodes them: sent as one array per column (``unnest``), psycopg's array dumping took
    38 us of CPU a row, this 16.

    On SQLite they go as ``VALUES (...), (...)``, as many rows per statement as its
    bound-parameter limit allows, a dict or list as its JSON text, each statement in a
    transaction of its own. No ``RETURNING`` there: Python's sqlite3 steps through
    returned rows one at a time, letting go of the GIL at each, and beside a busy thread
    (the API's event loop) each step waited for it: a 1000-row insert took 10 ms alone and
    325 ms beside a thread running Python. The count of rows the statement inserted says
    whether all were created, the usual case; when only some were, one more statement
    reads which, by their primary keys (new ones, so a row with one is a row this call
    made), as one JSON array.
    """
    if not rows:
        return []
    text = _insert_sql(engine.dialect, table, tuple(columns), conflict)
    if text.postgres is not None:
        document = orjson.dumps([dict(zip(columns, row, strict=True)) for row in rows])
        return [key for (key,) in _execute(engine, text.postgres, [document.decode()])]
    values = "(" + ", ".join("?" for _ in columns) + ")"
    created: list[Any] = []
    encoded = _encoded(table, columns, rows)
    for chunk in _chunks(encoded, _max_params(engine) // len(columns)):
        sql = text.head + "VALUES " + ", ".join([values] * len(chunk)) + text.tail

        def insert(cursor: Any, chunk: Sequence[Sequence[Any]] = chunk, sql: str = sql) -> None:
            cursor.execute(sql, [value for row in chunk for value in row])
            if cursor.rowcount == len(chunk):
                created.extend(row[text.conflict_at] for row in chunk)
            elif cursor.rowcount > 0:
                cursor.execute(
                    text.read_back + "(" + ", ".join("?" for _ in chunk) + ")",
                    [row[text.key_at] for row in chunk],
                )
                created.extend(orjson.loads(cursor.fetchone()[0]))

        _run(engine, insert)
    return created


def select_in(
    engine: Engine, table: sa.Table, column: str, keys: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """``SELECT * FROM table WHERE column IN (keys)``: on PostgreSQL one statement
    (``= ANY(array)``), on SQLite as few as its bound-parameter limit allows."""
    preparer = engine.dialect.identifier_preparer
    head = (
        "SELECT "
        + ", ".join(preparer.quote(c.name) for c in table.c)
        + f" FROM {preparer.format_table(table)} WHERE {preparer.quote(column)} "
    )
    if engine.dialect.name == "postgresql":
        sql = f"{head}= ANY(%s::{_type(engine, table.c[column])}[])"
        return _returned(engine, table, sql, [list(keys)])
    found: list[tuple[Any, ...]] = []
    for chunk in _chunks(keys, _max_params(engine)):
        sql = head + "IN (" + ", ".join("?" for _ in chunk) + ")"
        found.extend(_returned(engine, table, sql, list(chunk)))
    return found


def _decode(row: tuple[Any, ...], columns: tuple[int, ...]) -> tuple[Any, ...]:
    values = list(row)
    for index in columns:
        if isinstance(values[index], str | bytes):
            values[index] = orjson.loads(values[index])
    return tuple(values)


def _execute(engine: Engine, sql: str, args: Any) -> list[tuple[Any, ...]]:
    """``sql`` run once, its rows fetched (see ``_run``)."""
    rows: list[tuple[Any, ...]] = []

    def fetch(cursor: Any) -> None:
        cursor.execute(sql, args)
        rows[:] = cursor.fetchall()

    _run(engine, fetch)
    return rows


def _run(engine: Engine, work: Callable[[Any], None]) -> None:
    """``work(cursor)`` on a connection of the engine's pool, committed after it (one
    statement in autocommit on PostgreSQL). Run once more on a fresh connection when the
    server had ended the session before it could run (a database restart): the statement
    never ran, so it is safe."""
    try:
        _run_once(engine, work)
    except engine.dialect.loaded_dbapi.Error as exc:
        if getattr(exc, "sqlstate", None) not in SESSION_ENDED:
            raise
        _run_once(engine, work)


def _run_once(engine: Engine, work: Callable[[Any], None]) -> None:
    connection = engine.raw_connection()
    driver = connection.driver_connection
    postgres = engine.dialect.name == "postgresql"
    try:
        if postgres:
            driver.autocommit = True  # type: ignore[union-attr]
        cursor = connection.cursor()
        try:
            work(cursor)
        finally:
            cursor.close()
        if not postgres:
            connection.commit()
    except engine.dialect.loaded_dbapi.Error as exc:
        if engine.dialect.is_disconnect(exc, driver, None):
            connection.invalidate(exc)
            # the other pooled connections went with the server: open new ones
            engine.dispose(close=False)
        else:
            connection.rollback()
        raise
    finally:
        if postgres and connection.is_valid:
            driver.autocommit = False  # type: ignore[union-attr]
        connection.close()
