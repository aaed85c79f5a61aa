"""The PostgreSQL state store: shared state for many runners; the only package that imports
psycopg (an optional extra: `pip install 'qc-live-reconciler[postgres]'`), imported only
when a `postgresql://` location is opened.

- `schema`: the DDL, versioned in `reconciler_meta`, and its migration;
- `session`: the connection, the transactions writes are sent in, fencing, and errors
  told without the URL's password;
- `lock`: the apply lock, a row with a heartbeat held by the session's connection;
- `store`: `PostgresStateStore`, records, intents, history, plans, export and import;
- `leadership`: `PostgresLeadership`, the lease of highly available `watch`.
"""

from reconciler.state.postgres.leadership import PostgresLeadership
from reconciler.state.postgres.schema import SCHEMA_VERSION
from reconciler.state.postgres.store import PostgresStateStore

__all__ = ["SCHEMA_VERSION", "PostgresLeadership", "PostgresStateStore"]
