"""The PostgreSQL schema: its DDL, one script a version, and the migration a session runs
when it connects.

The version is kept in `reconciler_meta` and the schema migrated in the database, under a
transaction-level advisory lock, so that runners starting together migrate once.  Besides
the tables, the schema holds the two functions writes are fenced with (`reconciler_fence`,
`reconciler_holds_lock`): the session sends them as a transaction's first statement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from reconciler.errors import StateError

SCHEMA_VERSION = 5

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE reconciler_deployments (
        workspace text NOT NULL,
        name text NOT NULL,
        project_id bigint NOT NULL,
        spec_hash text NOT NULL,
        deploy_id text,
        owned boolean NOT NULL,
        compile_id text,
        node_id text,
        compile_verified boolean NOT NULL DEFAULT true,
        created_at double precision,
        updated_at double precision,
        last_action text,
        last_outcome text,
        spec_json text,
        on_delete text NOT NULL DEFAULT 'stop',
        protected boolean NOT NULL DEFAULT false,
        source_modified text,
        restarts integer NOT NULL DEFAULT 0,
        last_restart_at double precision,
        PRIMARY KEY (workspace, name)
    );
    CREATE TABLE reconciler_intents (
        workspace text NOT NULL,
        attempt_id text NOT NULL,
        name text NOT NULL,
        project_id bigint NOT NULL,
        spec_hash text NOT NULL,
        created_at double precision NOT NULL,
        kind text NOT NULL DEFAULT 'create',
        old_deploy_id text,
        spec_json text,
        on_delete text NOT NULL DEFAULT 'stop',
        closed_at double precision,
        outcome text,
        deploy_id text,
        PRIMARY KEY (workspace, attempt_id)
    );
    CREATE INDEX reconciler_intents_open ON reconciler_intents (workspace, created_at)
        WHERE closed_at IS NULL;
    CREATE TABLE reconciler_history (
        id bigserial PRIMARY KEY,
        workspace text NOT NULL,
        at double precision NOT NULL,
        name text,
        project_id bigint,
        action text NOT NULL,
        outcome text NOT NULL,
        deploy_id text,
        detail text
    );
    CREATE INDEX reconciler_history_by_workspace ON reconciler_history (workspace, id);
    CREATE TABLE reconciler_applied_plans (
        workspace text NOT NULL,
        nonce text NOT NULL,
        applied_at double precision NOT NULL,
        PRIMARY KEY (workspace, nonce)
    );
    CREATE TABLE reconciler_locks (
        workspace text PRIMARY KEY,
        token text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        backend_pid integer NOT NULL,
        backend_start timestamptz,
        epoch bigint,
        acquired_at double precision NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE reconciler_leases (
        workspace text PRIMARY KEY,
        holder text NOT NULL,
        epoch bigint NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        acquired_at timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    -- Fencing: the first statement of a daemon's every write transaction.
    CREATE FUNCTION reconciler_fence(p_workspace text, p_holder text, p_epoch bigint)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM reconciler_leases
        WHERE workspace = p_workspace AND holder = p_holder AND epoch = p_epoch
          AND expires_at > clock_timestamp()
        FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the lease of workspace % has passed from epoch %',
                p_workspace, p_epoch USING ERRCODE = 'RF001';
        END IF;
    END $$;
    -- The first statement of a run's intents: its apply lock is still its own.
    CREATE FUNCTION reconciler_holds_lock(p_workspace text, p_token text)
    RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM reconciler_locks
        WHERE workspace = p_workspace AND token = p_token AND expires_at > clock_timestamp()
        FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the apply lock of workspace % expired or was taken over',
                p_workspace USING ERRCODE = 'RL001';
        END IF;
    END $$
    """,
    # GitOps: the commit that asked for each action (DESIGN §15).
    2: """
    ALTER TABLE reconciler_deployments ADD COLUMN revision text;
    ALTER TABLE reconciler_intents ADD COLUMN revision text;
    ALTER TABLE reconciler_history ADD COLUMN revision text
    """,
    # Deploy windows: a deployment's window, recorded so that a prune stays gated by it.
    3: """
    ALTER TABLE reconciler_deployments ADD COLUMN window_json text
    """,
    # Paper first: the code each deployment runs, and the candidates with their evidence.
    4: """
    ALTER TABLE reconciler_deployments ADD COLUMN digest text;
    ALTER TABLE reconciler_intents ADD COLUMN digest text;
    CREATE TABLE reconciler_candidates (
        workspace text NOT NULL,
        name text NOT NULL,
        digest text NOT NULL,
        data text NOT NULL,
        updated_at double precision NOT NULL,
        PRIMARY KEY (workspace, name, digest)
    )
    """,
    # Ownership after a crash: when a create sent under an intent can no longer land (see
    # the SQLite store's migration 7 for the value given to intents already open).
    5: """
    ALTER TABLE reconciler_intents ADD COLUMN lands_by double precision;
    UPDATE reconciler_intents SET lands_by = created_at + 900 WHERE closed_at IS NULL
    """,
}


def migrate(
    conn: psycopg.Connection[tuple[Any, ...]],
    location: str,
    describe_error: Callable[[str, BaseException], StateError],
) -> None:
    """Bring the schema of `conn` to SCHEMA_VERSION; refuse a newer one (StateError)."""
    try:
        row = conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone()
        current = int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        current = 0
    except psycopg.Error as error:
        raise describe_error("cannot read the schema version", error) from None
    if current == SCHEMA_VERSION:
        return
    try:
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('reconciler:migrate:' || current_schema()))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS reconciler_meta "
                "(key text PRIMARY KEY, value text NOT NULL)"
            )
            row = conn.execute(
                "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
            ).fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StateError(
                    f"state database {location} has schema version {current}, newer "
                    f"than this reconciler understands ({SCHEMA_VERSION}); upgrade "
                    "qc-live-reconciler"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                if _MIGRATIONS[version].strip():
                    conn.execute(_MIGRATIONS[version].encode())
            conn.execute(
                "INSERT INTO reconciler_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION),),
            )
    except psycopg.Error as error:
        raise describe_error("cannot migrate the schema", error) from None
