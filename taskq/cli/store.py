"""``taskq store migrate [--app APP_PATH]``: bring the status store's schema to the
version this taskq needs (the PostgreSQL store: :mod:`taskq.stores.postgres_migrate`),
for deployments whose apps may not create tables. Prints one line: the schema's
version before and after. A store without a schema (Redis) has nothing to do.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from taskq.cli.common import RET_OK, app_for


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
    app_option: argparse.ArgumentParser,
) -> None:
    store = commands.add_parser("store", help="operate the status store (migrate its schema)")
    actions = store.add_subparsers(title="actions", required=True, metavar="ACTION")
    migrate = actions.add_parser(
        "migrate",
        parents=[logging_options, app_option],
        help="create or upgrade the status store's schema (PostgreSQL), then exit",
        description="Apply the status store's missing schema migrations (forward only), "
        "as the app's first connect would: for deployments whose apps may not create "
        "tables. The store is TASKQ_STORE_URL's (schema: TASKQ_STORE_SCHEMA, else named "
        "after TASKQ_EXCHANGE), or --app's.",
    )
    migrate.set_defaults(run=cmd_migrate, default_level="warning")


def cmd_migrate(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=False, need_store=True)
    store = app.store
    done = asyncio.run(store.migrate())
    if done is None:
        print(f"{store.display_url}: no schema to migrate")
    elif done.before == done.after:
        print(f"{store.display_url}: schema {done.schema} at version {done.after}, up to date")
    else:
        print(
            f"{store.display_url}: schema {done.schema} migrated "
            f"from version {done.before} to {done.after}"
        )
    return RET_OK
