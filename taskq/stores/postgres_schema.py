"""The tables and functions of :class:`~taskq.stores.postgres.PostgresStore`, one
PostgreSQL schema per app, and their forward-only migrations.

The schema is named after the app's exchange (:func:`schema_name`), so two apps on one
database never share a record, as two apps on one Redis never share a key. Its
``schema_version`` table holds one row, the version of the last migration applied;
:func:`migrate` applies the missing ones in order, each in its own transaction under a
transaction-level advisory lock (no session state: PgBouncer's transaction mode keeps
it), so that processes starting together create the schema once. A schema newer than
this code is refused, never downgraded.

Every state move is one ``UPDATE ... WHERE state = ANY(<the states it may come from>)``
inside ``write()``: the transition table is generated here from
:data:`taskq.status.TRANSITIONS`, never copied by hand, as the Redis store's Lua is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from taskq.status import CANCELLABLE, TRANSITIONS, TaskState

#: The version :data:`MIGRATIONS` brings a schema to.
LATEST = 1

#: PostgreSQL's limit on an identifier, in bytes.
_MAX_NAME = 63


def schema_name(exchange: str) -> str:
    """The schema of the app whose exchange is ``exchange``: lower case, and every
    character an unquoted identifier may not hold (``-``, ``.``, ``:``, ...) becomes
    ``_``, so the name reads the same in ``psql`` without quotes. Upper case letters are
    lowered rather than replaced (``MyApp`` -> ``myapp``, as PostgreSQL folds them)."""
    name = re.sub(r"[^a-z0-9_]", "_", exchange.lower())
    if not name or name[0].isdigit():
        name = f"_{name}"
    return name.encode()[:_MAX_NAME].decode(errors="ignore")


def quote(name: str) -> str:
    """``name`` as a quoted identifier: an overriding ``store_schema`` is used as given."""
    return '"' + name.replace('"', '""') + '"'


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_array(states: Iterable[TaskState]) -> str:
    return "ARRAY[" + ", ".join(_sql_string(s.value) for s in sorted(states)) + "]::text[]"


def _allowed_from() -> str:
    """A ``CASE`` giving, for the target state ``p_to``, the states it may come from."""
    rows = []
    for to in TaskState:
        sources = [c for c, allowed in TRANSITIONS.items() if c is not None and to in allowed]
        rows.append(f"WHEN {_sql_string(to.value)} THEN {_sql_array(sources)}")
    return "CASE p_to " + " ".join(rows) + " ELSE ARRAY[]::text[] END"


_FINAL = _sql_array(s for s in TaskState if s.finished)
_FROM_NOTHING = _sql_array(TRANSITIONS[None])
_STARTED = _sql_string(TaskState.STARTED)
_RETRYING = _sql_string(TaskState.RETRYING)
_SUCCEEDED = _sql_string(TaskState.SUCCEEDED)
_CANCELLED = _sql_string(TaskState.CANCELLED)
_QUEUED = _sql_string(TaskState.QUEUED)

# {s} is the quoted schema. Times are the server's (now(): the statement's start), so
# every host writing to one database agrees on them. A record is live while
# expires_at is NULL or ahead of now(); an expired one reads as absent until the purge
# (PostgresStore's periodic bounded delete) removes it.
_V1 = f"""
CREATE TABLE {{s}}.tasks (
    id text PRIMARY KEY,
    name text NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    result text,
    error text,
    call text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    written bigint NOT NULL,
    expires_at timestamptz
);
CREATE SEQUENCE {{s}}.writes;
CREATE INDEX tasks_written ON {{s}}.tasks (written);
CREATE INDEX tasks_name_written ON {{s}}.tasks (name, written);
CREATE INDEX tasks_expires ON {{s}}.tasks (expires_at) WHERE expires_at IS NOT NULL;

CREATE FUNCTION {{s}}.write(
    p_id text, p_name text, p_to text, p_only_new boolean, p_result text, p_error text,
    p_call text, p_ttl double precision
) RETURNS {{s}}.tasks LANGUAGE plpgsql AS $$
DECLARE
    rec {{s}}.tasks;
    expires timestamptz := now() + p_ttl * interval '1 second';
    allowed text[] := {_allowed_from()};
BEGIN
    FOR pass IN 1..2 LOOP
        IF NOT p_only_new THEN
            -- The move, if the record is live and in a state it may come from. A
            -- cancel asked for while it ran turns a redelivery or a retry into
            -- cancelled (cancel_requested is only ever set on a started record).
            UPDATE {{s}}.tasks t SET
                state = CASE WHEN t.cancel_requested AND p_to IN ({_STARTED}, {_RETRYING})
                             THEN {_CANCELLED} ELSE p_to END,
                attempts = t.attempts + CASE WHEN p_to = {_STARTED} AND NOT t.cancel_requested
                                             THEN 1 ELSE 0 END,
                started_at = CASE WHEN p_to = {_STARTED} AND NOT t.cancel_requested
                                  THEN now() ELSE t.started_at END,
                result = COALESCE(p_result, t.result),
                error = CASE WHEN p_to = {_SUCCEEDED} THEN NULL
                             ELSE COALESCE(p_error, t.error) END,
                finished_at = CASE WHEN p_to = ANY({_FINAL})
                                     OR (t.cancel_requested AND p_to IN ({_STARTED}, {_RETRYING}))
                                   THEN now() ELSE t.finished_at END,
                cancel_requested = false,
                written = nextval('{{s}}.writes'),
                expires_at = expires
            WHERE t.id = p_id AND t.state = ANY(allowed)
              AND (t.expires_at IS NULL OR t.expires_at > now())
            RETURNING * INTO rec;
            IF FOUND THEN
                IF p_call IS NULL THEN rec.call := NULL; END IF;
                RETURN rec;
            END IF;
        END IF;
        IF pass = 2 OR NOT (p_only_new OR p_to = ANY({_FROM_NOTHING})) THEN
            RETURN NULL;  -- refused (or absent, for a move that cannot create)
        END IF;
        -- No live record in a state the move may come from: create it, over an expired
        -- one. A live record makes this a no-op that locks it until we commit.
        INSERT INTO {{s}}.tasks AS t (id, name, state, attempts, result, error, call,
                                      created_at, started_at, finished_at, written,
                                      expires_at)
        VALUES (p_id, p_name, p_to, CASE WHEN p_to = {_STARTED} THEN 1 ELSE 0 END,
                p_result, CASE WHEN p_to = {_SUCCEEDED} THEN NULL ELSE p_error END, p_call,
                now(), CASE WHEN p_to = {_STARTED} THEN now() END,
                CASE WHEN p_to = ANY({_FINAL}) THEN now() END,
                nextval('{{s}}.writes'), expires)
        ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, state = excluded.state, attempts = excluded.attempts,
            result = excluded.result, error = excluded.error, call = excluded.call,
            created_at = excluded.created_at, started_at = excluded.started_at,
            finished_at = excluded.finished_at, cancel_requested = false,
            written = excluded.written, expires_at = excluded.expires_at
        WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()
        RETURNING * INTO rec;
        IF FOUND THEN
            RETURN rec;
        END IF;
        IF p_only_new THEN
            -- A create refused by a live record: the call fills in one of that name
            -- that has none (a worker's started landed before the publisher's create).
            IF p_call IS NOT NULL THEN
                UPDATE {{s}}.tasks SET call = p_call
                WHERE id = p_id AND name = p_name AND call IS NULL;
            END IF;
            RETURN NULL;
        END IF;
        -- A live record appeared between the UPDATE and the INSERT; it is locked by us
        -- now: the second round's UPDATE sees its committed state.
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION {{s}}.write_many(
    p_ids text[], p_names text[], p_tos text[], p_only_new boolean[], p_results text[],
    p_errors text[], p_calls text[], p_ttl double precision
) RETURNS SETOF {{s}}.tasks LANGUAGE plpgsql AS $$
BEGIN
    -- In order, each write atomic on its own and seeing the ones before it.
    FOR i IN 1..coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN NEXT {{s}}.write(p_ids[i], p_names[i], p_tos[i], p_only_new[i], p_results[i],
                               p_errors[i], p_calls[i], p_ttl);
    END LOOP;
END $$;

CREATE FUNCTION {{s}}.cancel(p_id text, p_ttl double precision)
RETURNS {{s}}.tasks LANGUAGE plpgsql AS $$
DECLARE
    rec {{s}}.tasks;
BEGIN
    UPDATE {{s}}.tasks t SET
        state = CASE WHEN t.state = ANY({_sql_array(CANCELLABLE)}) THEN {_CANCELLED}
                     ELSE t.state END,
        finished_at = CASE WHEN t.state = ANY({_sql_array(CANCELLABLE)}) THEN now()
                           ELSE t.finished_at END,
        cancel_requested = t.cancel_requested OR t.state = {_STARTED},
        written = nextval('{{s}}.writes'),
        expires_at = now() + p_ttl * interval '1 second'
    WHERE t.id = p_id AND t.state = ANY({_sql_array([*CANCELLABLE, TaskState.STARTED])})
      AND (t.expires_at IS NULL OR t.expires_at > now())
    RETURNING * INTO rec;
    IF NOT FOUND THEN  -- finished (left as it is) or absent
        SELECT * INTO rec FROM {{s}}.tasks t
        WHERE t.id = p_id AND (t.expires_at IS NULL OR t.expires_at > now());
    END IF;
    RETURN rec;
END $$;

CREATE FUNCTION {{s}}.reset(p_id text, p_name text, p_ttl double precision)
RETURNS {{s}}.tasks LANGUAGE sql AS $$
    INSERT INTO {{s}}.tasks AS t (id, name, state, created_at, written, expires_at)
    VALUES (p_id, p_name, {_QUEUED}, now(), nextval('{{s}}.writes'),
            now() + p_ttl * interval '1 second')
    ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, state = excluded.state, attempts = 0, result = NULL,
        error = NULL, started_at = NULL, finished_at = NULL, cancel_requested = false,
        -- An expired record is no record: nothing of it is kept.
        created_at = CASE WHEN t.expires_at <= now() THEN now() ELSE t.created_at END,
        call = CASE WHEN t.expires_at <= now() THEN NULL ELSE t.call END,
        written = excluded.written, expires_at = excluded.expires_at
    RETURNING *
$$;

CREATE TABLE {{s}}.workflows (
    id text PRIMARY KEY,
    state text NOT NULL,
    definition text NOT NULL,
    error text,
    failed_step text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    expires_at timestamptz
);
CREATE INDEX workflows_expires ON {{s}}.workflows (expires_at) WHERE expires_at IS NOT NULL;

-- One row per group: its member set and the member that claimed the fire. Written by
-- one INSERT ... ON CONFLICT DO UPDATE, which locks the row: members of one group are
-- counted one after another, never two on stale counts.
CREATE TABLE {{s}}.joins (
    workflow_id text NOT NULL,
    grp text NOT NULL,
    members integer[] NOT NULL,
    fired_by integer,
    expires_at timestamptz,
    PRIMARY KEY (workflow_id, grp)
);
CREATE INDEX joins_expires ON {{s}}.joins (expires_at) WHERE expires_at IS NOT NULL;

-- A broadcast call's per-worker records; they live and expire with the call's record.
CREATE TABLE {{s}}.worker_tasks (
    task_id text NOT NULL,
    worker text NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    result text,
    error text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    expires_at timestamptz,
    PRIMARY KEY (task_id, worker)
);
CREATE INDEX worker_tasks_expires ON {{s}}.worker_tasks (expires_at)
    WHERE expires_at IS NOT NULL;

-- Rate limit schedules (taskq.stores.rate_base), microseconds on the server's clock.
CREATE TABLE {{s}}.rates (
    key text PRIMARY KEY,
    next_free bigint NOT NULL,
    line bigint NOT NULL
);

CREATE FUNCTION {{s}}.take_start(p_key text, p_spacing bigint, p_max_wait bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    now_us bigint;
    v_next bigint;
    v_line bigint;
    v_start bigint;
    v_back bigint;
BEGIN
    -- The row is locked until the commit; waiting for its WAL flush (milliseconds on
    -- a plain disk) would space out every concurrent take by that much. A crash may
    -- lose the last slots taken: the limit may be exceeded once, after a crash.
    SET LOCAL synchronous_commit = off;
    -- Zero times mean "free now", as a missing row does. Locks the row, then reads the
    -- clock: a call that waited for the lock measures from when it got it.
    INSERT INTO {{s}}.rates AS r (key, next_free, line) VALUES (p_key, 0, 0)
    ON CONFLICT (key) DO UPDATE SET key = r.key
    RETURNING r.next_free, r.line INTO v_next, v_line;
    now_us := floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    v_start := greatest(v_next, now_us);
    IF v_start - now_us <= p_max_wait THEN
        UPDATE {{s}}.rates SET next_free = v_start + p_spacing WHERE key = p_key;
        RETURN v_start - now_us;
    END IF;
    v_back := greatest(v_line, v_start);
    UPDATE {{s}}.rates SET line = v_back + p_spacing WHERE key = p_key;
    RETURN now_us - v_back;
END $$;

-- Schedules' last ticks (taskq.stores.schedule_base): never expire.
CREATE TABLE {{s}}.ticks (
    schedule text PRIMARY KEY,
    tick timestamptz NOT NULL
);
"""

#: Forward-only: entry ``n`` brings a schema from version ``n`` to ``n + 1``. Never
#: edit one that has shipped; add the next.
MIGRATIONS: tuple[str, ...] = (_V1,)

assert len(MIGRATIONS) == LATEST


def migration_sql(version: int, schema: str) -> str:
    """The SQL bringing ``schema`` (unquoted) from ``version`` to ``version + 1``."""
    return MIGRATIONS[version].replace("{s}", quote(schema))
