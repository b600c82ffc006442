"""Statements webhook intake runs for every delivery, compiled once per dialect, run on the driver's cursor.

``Connection.execute`` spends about 35 µs of Python on each statement on these machines (the
statement's cache key, its parameters, the result's set-up) where SQLite runs the trigger lookup in
15 µs. Intake makes a handful of reads and writes per delivery, so that overhead was a fifth of its
CPU, and the writes run while the database's write lock is held. A ``Prepared`` statement is compiled
once per dialect and run on the DBAPI cursor of the caller's connection (the same transaction), its
values converted by their types' bind processors and its columns by their result processors, as
``execute`` would: rows come back as plain tuples. ``insert_of`` makes the INSERT of a fixed set of
columns (no Python-side default is left out unseen: a column with a callable one must be given).

The statement must bind every value by name or by a fixed literal (no expanding ``IN`` lists: write
``column.in_([literal(v) for v in values])``), so that one compiled form serves every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # positional dialects: the order of the parameters; else every name
    positional: bool
    defaults: dict[str, Any]  # the values bound in the statement itself (literals)
    required: frozenset[str]  # the values each call must give
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # (name, processor) of the values that need one
    columns: tuple[Processor, ...]


class Prepared:
    """``statement``, ready to run on any connection: ``rows`` (a SELECT, or RETURNING), ``run``, ``many``."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        if statement.compile(dialect=sqlite.dialect()).post_compile_params:  # said at import, not at first use
            raise ValueError("a Prepared statement cannot expand a list per call: bind each value (literal(v))")

    def rows(self, connection: Connection, values: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        compiled = self._for(connection.dialect)
        params = _parameters(compiled, values)
        with _cursor(connection, compiled.sql, params) as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if not any(compiled.columns):
            return rows
        return [tuple(value if process is None else process(value) for process, value in zip(compiled.columns, row))
                for row in rows]

    def run(self, connection: Connection, values: Mapping[str, Any] | None = None) -> int:
        """Run it once; the number of rows it changed."""
        compiled = self._for(connection.dialect)
        params = _parameters(compiled, values)
        with _cursor(connection, compiled.sql, params) as cursor:
            cursor.execute(compiled.sql, params)
            return int(cursor.rowcount)

    def many(self, connection: Connection, values: list[Mapping[str, Any]]) -> None:
        """Run it once for each of ``values`` (``executemany``)."""
        compiled = self._for(connection.dialect)
        params = [_parameters(compiled, each) for each in values]
        with _cursor(connection, compiled.sql, params) as cursor:
            cursor.executemany(compiled.sql, params)

    def _for(self, dialect: Dialect) -> _Compiled:
        return self._compiled.get((dialect.name, dialect.driver)) or self._compile(dialect)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.params)
        binds = []
        for name in dict.fromkeys(names):
            process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds.append((name, process))
        returned = getattr(self.statement, "selected_columns", None) or getattr(self.statement, "exported_columns", ())
        columns = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned)
        literals = {name: value for name, value in compiled.params.items() if value is not None}
        found = self._compiled[(dialect.name, dialect.driver)] = _Compiled(
            str(compiled), names, bool(compiled.positional), literals,
            frozenset(compiled.params) - set(literals), tuple(binds), columns)
        return found


@contextmanager
def _cursor(connection: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A DBAPI cursor of ``connection``; the driver's errors raised as ``execute`` raises them (SQLAlchemy's
    ``DBAPIError`` subclasses, the connection invalidated when the error says it was lost)."""
    dbapi_connection = connection.connection
    dialect = connection.dialect
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        yield cursor
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  connection_invalidated=lost, dialect=dialect) from exc
    finally:
        try:
            if cursor is not None:
                cursor.close()
        except Exception:  # an invalidated connection's cursor may be gone already
            pass


def _parameters(compiled: _Compiled, values: Mapping[str, Any] | None) -> Any:
    values = values or {}
    missing = compiled.required.difference(values)
    if missing:
        raise ValueError(f"no value for {', '.join(sorted(missing))}")
    params = {**compiled.defaults, **values}
    for name, process in compiled.binds:
        params[name] = process(params[name])
    return tuple(params[name] for name in compiled.names) if compiled.positional else params


class Inserts:
    """A table's INSERT of the columns it is given, prepared once for each set of them.

    The other columns get their Python defaults, as ``execute`` would give them: scalar ones are part
    of the statement, callable ones called for each row. ``finish`` completes the statement
    (``RETURNING``, ``ON CONFLICT``: then ``insert_function`` is the dialect's ``insert``)."""

    def __init__(self, table: Table, finish: Callable[[Any], Any] = lambda statement: statement,
                 insert_function: Callable[[Table], Any] = insert) -> None:
        self._table = table
        self._finish = finish
        self._insert = insert_function
        self._prepared: dict[tuple[str, ...], tuple[Prepared, tuple[tuple[str, Any], ...]]] = {}

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        prepared, computed = self._of(tuple(values))
        return prepared.rows(connection, _with_defaults(values, computed))

    def many(self, connection: Connection, values: list[Mapping[str, Any]]) -> None:
        """All of ``values`` (which must name the same columns) in one ``executemany``."""
        keys = tuple(values[0])
        if any(each.keys() != values[0].keys() for each in values):
            raise ValueError(f"rows name different columns: {keys} and others")
        prepared, computed = self._of(keys)
        prepared.many(connection, [_with_defaults(each, computed) for each in values])

    def _of(self, keys: tuple[str, ...]) -> tuple[Prepared, tuple[tuple[str, Any], ...]]:
        found = self._prepared.get(keys)
        if found is None:
            table = self._table
            values: dict[str, Any] = {key: bindparam(key, type_=table.c[key].type) for key in keys}
            computed = []
            for column in table.columns:
                if column.key in values or column.default is None:
                    continue
                default = column.default.arg  # type: ignore[attr-defined]
                name = f"default_{column.key}"
                values[column.key] = bindparam(name, None if callable(default) else default, type_=column.type)
                if callable(default):
                    computed.append((name, default))
            found = Prepared(self._finish(self._insert(table).values(values))), tuple(computed)
            self._prepared[keys] = found
        return found


def _with_defaults(values: Mapping[str, Any], computed: tuple[tuple[str, Any], ...]) -> Mapping[str, Any]:
    if not computed:
        return values
    return {**values, **{name: default(None) for name, default in computed}}  # SQLAlchemy's: called with a context
