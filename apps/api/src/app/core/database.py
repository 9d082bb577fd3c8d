"""Async engine and sessions; the one place that knows SQLite from PostgreSQL."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import Pool
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.expression import (
    ReleaseSavepointClause,
    RollbackToSavepointClause,
    SavepointClause,
)

from app.core.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# The PostgreSQL role whose row-level security policies guard tenant tables (migrations
# 0003 and 0009).
RLS_ROLE = "collection_app"
READ_ONLY_OPTION = "app_read_only"  # execution option of read sessions' connections


@dataclass(frozen=True, slots=True)
class DbActor:
    """Who the current work acts for, as row-level security sees it: the system, or a user,
    acting in one organization (`org_id`) once the request has chosen it.

    A user without an organization sees only their own memberships, the organizations they
    belong to and invitations to their email; acting in an organization, only its rows.
    """

    user_id: uuid.UUID | None = None
    org_id: uuid.UUID | None = None
    system: bool = False


SYSTEM = DbActor(system=True)
db_actor: contextvars.ContextVar[DbActor | None] = contextvars.ContextVar("db_actor", default=None)


@contextmanager
def acting_as(actor: DbActor | None) -> Iterator[None]:
    """Run the block's database statements as `actor` (PostgreSQL row-level security).

    Every statement runs as the actor of the context it runs in: a transaction begins as
    the actor of that moment, and a statement issued after the actor changed first
    switches the transaction to the new one (one round trip, only when it changed). So a
    request's session may look up who is asking as that user, then act in the
    organization it chose, in one transaction.
    """
    token = db_actor.set(actor)
    try:
        yield
    finally:
        db_actor.reset(token)


def create_engine(settings: Settings, *, poolclass: type[Pool] | None = None) -> AsyncEngine:
    """Create the async engine for the configured database, with dialect set-up applied."""
    url = make_url(settings.effective_database_url)
    options: dict[str, Any] = {"echo": settings.database_echo}
    if poolclass is not None:
        options["poolclass"] = poolclass
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **options
        )
        _configure_sqlite(engine)
        _refuse_writes_in_reads(engine)
        return engine
    if poolclass is None:
        options.update(
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_size,
            pool_recycle=1800,
        )
    engine = create_async_engine(url, **options)
    _configure_postgresql(engine)
    if poolclass is None:
        _ping_idle_connections(engine)
    _refuse_writes_in_reads(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 10.0
"""A pooled PostgreSQL connection unused this long is pinged before it is handed out."""
_IDLE_SINCE = "app.idle_since"  # key in a pooled connection's info: when it was checked in


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """Check a pooled connection before use if it sat idle, as `pool_pre_ping` would on
    every checkout.

    SQLAlchemy's pre-ping costs three round trips (BEGIN, a ping, ROLLBACK) per checkout,
    that is per request; a connection that served a request a moment ago is alive. An
    idle one that fails its ping (the server restarted meanwhile) is replaced before use;
    one that died within the idle window fails its request once, and the pool is renewed
    then, as SQLAlchemy does on any disconnect.
    """
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever failed, this connection is not to be used
            raise sa.exc.DisconnectionError(f"idle connection failed its ping: {exc}") from exc


class WriteInReadSessionError(RuntimeError):
    """A read session (`Database.read()`, a GET request's session) was asked to write.

    On SQLite such a write would upgrade the read transaction to a write one, which fails
    at once ("database is locked", whatever the busy timeout) when another connection
    wrote since the read began; it is refused on PostgreSQL too, so both behave alike.
    """


def _refuse_writes_in_reads(engine: AsyncEngine) -> None:
    """Make an INSERT, UPDATE or DELETE statement in a read session raise
    WriteInReadSessionError (SQL text is not inspected)."""

    @event.listens_for(engine.sync_engine, "before_execute")
    def _check(connection: sa.Connection, statement: Any, *_args: Any) -> None:
        if isinstance(statement, UpdateBase) and connection.get_execution_options().get(
            READ_ONLY_OPTION
        ):
            raise WriteInReadSessionError(
                f"a read session cannot {statement.__visit_name__.upper()}: "
                "open Database.transaction() (or a write request's session) to write"
            )


_SET_ACTOR = sa.text(
    "SELECT set_config('role', :role, true), set_config('app.user_id', :user_id, true),"
    " set_config('app.org_id', :org_id, true), set_config('app.system', :system, true)"
)
_APPLIED_ACTOR = "app.applied_actor"  # key in the connection's info: the actor in force
_UNKNOWN = object()
# Savepoints are the transaction's plumbing, not statements of an actor (and a failed
# statement's savepoint must be rolled back before anything else can run).
_SAVEPOINT_STATEMENTS = (SavepointClause, RollbackToSavepointClause, ReleaseSavepointClause)


def _configure_postgresql(engine: AsyncEngine) -> None:
    """Each statement of an actor runs as RLS_ROLE with the actor's identity set.

    `set_config(..., true)` is transaction-local (like SET LOCAL), so a pooled connection
    never carries one request's identity into the next. The identity is set when a
    transaction begins, and set again before a statement whose context acts as another
    actor than the one in force. Work without an actor (migrations, the run executor)
    keeps the connecting role.
    """

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        actor = db_actor.get()
        connection.info[_APPLIED_ACTOR] = actor
        if actor is not None:
            connection.execute(_SET_ACTOR, _actor_settings(actor))

    @event.listens_for(engine.sync_engine, "before_execute")
    def _follow_actor(connection: sa.Connection, statement: Any, *_args: Any) -> None:
        if not connection.in_transaction() or isinstance(statement, _SAVEPOINT_STATEMENTS):
            return  # the transaction begins next, as the actor of this context
        actor = db_actor.get()
        if connection.info.get(_APPLIED_ACTOR, _UNKNOWN) != actor:
            connection.info[_APPLIED_ACTOR] = actor  # before executing: this fires again
            connection.execute(_SET_ACTOR, _actor_settings(actor))

    @event.listens_for(engine.sync_engine, "rollback_savepoint")
    def _forget_actor(connection: sa.Connection, *_args: Any) -> None:
        # a savepoint's rollback undoes the set_config calls made since: set it anew
        connection.info[_APPLIED_ACTOR] = _UNKNOWN


def _actor_settings(actor: DbActor | None) -> dict[str, str]:
    """The parameters of _SET_ACTOR for `actor`; None is the connecting role itself."""
    if actor is None:
        return {"role": "none", "user_id": "", "org_id": "", "system": "off"}
    return {
        "role": RLS_ROLE,
        "user_id": str(actor.user_id) if actor.user_id else "",
        "org_id": str(actor.org_id) if actor.org_id else "",
        "system": "on" if actor.system else "off",
    }


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that take the write lock up front.

    Python's sqlite3 module begins transactions lazily, and SQLite upgrades a read
    transaction to a write one only if nobody wrote in between; otherwise it fails at
    once with SQLITE_BUSY, ignoring the busy timeout. Beginning write transactions with
    `BEGIN IMMEDIATE` makes writers queue on the busy timeout instead. Readers in WAL
    mode are never blocked by the writer; `Database.read()` begins them DEFERRED.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # Straight to aiosqlite: one trip to its thread, where a statement through the
        # engine takes three (open a cursor, execute, close it). Every transaction pays it.
        driver: Any = connection.connection.dbapi_connection
        driver.run_async(lambda sqlite: sqlite.execute(f"BEGIN {mode}"))


class WriteTurns:
    """Whose turn it is to write, among this process's write transactions on one SQLite file.

    SQLite has one writer at a time. Left to itself, a writer that finds the database
    locked retries in its busy handler, sleeping up to 100 ms between tries, and whoever
    tries right after the lock is freed gets it: under load (a few runs checkpointing) a
    writer can lose for seconds. Here the writers of the process wait in line instead, and
    each is handed the turn the moment the one before it finishes. Urgent writers (the
    schedule engine's fires) go first, but never twice in a row while others wait.

    Writers may run on different event loops (the schedule engine has a thread of its
    own): the line is guarded by a lock, and a turn is handed over on the waiter's loop.
    A writer that has waited `timeout` seconds goes ahead without its turn (SQLite's own
    busy timeout applies from there), so a transaction opened inside another never
    deadlocks here.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._busy = False
        self._last_urgent = False
        self._urgent: deque[_Waiter] = deque()
        self._others: deque[_Waiter] = deque()

    @asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Hold the turn (or, after `timeout`, go ahead without it) for the block."""
        held = await self._wait(urgent)
        try:
            yield
        finally:
            if held:
                self._pass_on()

    async def _wait(self, urgent: bool) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy:
                self._busy, self._last_urgent = True, urgent
                return True
            waiter = _Waiter(loop, loop.create_future())
            line = self._urgent if urgent else self._others
            line.append(waiter)
        try:
            await asyncio.wait({waiter.turn}, timeout=self.timeout)
        except asyncio.CancelledError:
            if self._leave(line, waiter):
                self._pass_on()  # handed the turn as it was cancelled: hand it on
            raise
        return self._leave(line, waiter)

    def _leave(self, line: deque[_Waiter], waiter: _Waiter) -> bool:
        """Step out of the line; whether the turn was handed to `waiter` meanwhile."""
        with self._lock:
            if waiter in line:
                line.remove(waiter)
                return False
        return True

    def _pass_on(self) -> None:
        """Hand the turn to the next writer in line, or free it."""
        with self._lock:
            if self._urgent and not (self._last_urgent and self._others):
                waiter, self._last_urgent = self._urgent.popleft(), True
            elif self._others:
                waiter, self._last_urgent = self._others.popleft(), False
            else:
                self._busy = False
                return
        waiter.loop.call_soon_threadsafe(_hand_over, waiter.turn)


@dataclass(frozen=True, slots=True, eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    turn: asyncio.Future[None]


def _hand_over(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


_write_turns: dict[str, WriteTurns] = {}
_write_turns_lock = threading.Lock()


def write_turns(database_file: str) -> WriteTurns:
    """The line of writers of one SQLite file in this process (every engine on it shares it)."""
    with _write_turns_lock:
        turns = _write_turns.get(database_file)
        if turns is None:
            turns = _write_turns[database_file] = WriteTurns(SQLITE_BUSY_TIMEOUT_MS / 1000)
        return turns


class Database:
    """The engine plus the two session factories the service uses: read-write and read-only."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.write_turns = (
            write_turns(engine.url.database or "") if engine.dialect.name == "sqlite" else None
        )
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self.read_sessions = async_sessionmaker(
            engine.execution_options(sqlite_begin="DEFERRED", **{READ_ONLY_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Open (lazily) the configured database."""
        return cls(create_engine(settings))

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed at the end, rolled back on error.

        On SQLite it waits for its turn among this process's writers (`WriteTurns`);
        `urgent` ones go first.
        """
        if self.write_turns is None:
            async with self.sessions() as session, session.begin():
                yield session
            return
        async with (
            self.write_turns.turn(urgent=urgent),
            self.sessions() as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; on SQLite it does not take the write lock."""
        async with self.read_sessions() as session:
            yield session

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self.read() as session:
            await session.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def insert_ignoring_conflicts(
    session: AsyncSession,
    model: type[Any],
    *,
    index_elements: Sequence[str],
    index_where: sa.ColumnElement[bool] | sa.TextClause | None = None,
) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` into `model`'s table, in the session's dialect.

    Execute it with the rows as parameters (`session.execute(statement, rows)`): the
    statement is then compiled once and cached, and SQLAlchemy batches the rows into
    multi-row VALUES ("insertmanyvalues"), RETURNING included. `index_where` names a
    partial unique index as the conflict target.
    """
    table: sa.Table = model.__table__
    return dialect_insert(session.get_bind().dialect.name, table).on_conflict_do_nothing(
        index_elements=index_elements, index_where=index_where
    )


def dialect_insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` with the dialect's ON CONFLICT clauses."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported dialect {dialect}")
