"""``taskq dashboard [APP_PATH] [--host 127.0.0.1] [--port 8080] [--auth user:password]``:
serve the web dashboard (:mod:`taskq.dashboard`) until Ctrl-C / SIGTERM.

Without ``APP_PATH`` the app comes from ``TASKQ_BROKER_URL``, ``TASKQ_STORE_URL`` and
``TASKQ_EXCHANGE`` (the page then knows the tasks only by the names in the store). It
listens on 127.0.0.1 unless ``--host`` says otherwise; ``--auth`` (else
``TASKQ_DASHBOARD_AUTH``) turns on HTTP basic auth, and the password is never printed.
``--management-url`` (else ``TASKQ_MANAGEMENT_URL``) feeds the queue figures from
RabbitMQ's management API, which alone knows unacked counts.
"""

from __future__ import annotations

import argparse
import os
import signal
from types import FrameType
from typing import Any

from taskq.brokers.amqp_management import MANAGEMENT_URL_ENV
from taskq.cli.common import RET_OK, app_for
from taskq.errors import ConfigurationError
from taskq.logs import get_logger
from taskq.urls import mask_url

log = get_logger(__name__)


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "dashboard",
        parents=[logging_options],
        help="serve the web dashboard: queues, tasks, failures, workers, schedules",
    )
    parser.add_argument(
        "app_path",
        metavar="APP_PATH",
        nargs="?",
        help="an app, e.g. examples.app:app (default: one built from TASKQ_* variables)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    parser.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        default=None,
        help="HTTP basic auth (default: TASKQ_DASHBOARD_AUTH; none if unset)",
    )
    parser.add_argument(
        "--management-url",
        metavar="URL",
        default=None,
        help="RabbitMQ's management API, e.g. http://user:pass@host:15672, for unacked "
        "counts (default: TASKQ_MANAGEMENT_URL, else port 15672 of the broker's host with the "
        "broker URL's credentials, if it answers; without one: ready and consumers only)",
    )
    parser.set_defaults(run=cmd_dashboard, default_level="info")


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from taskq.dashboard import BasicAuth, create_app
        from taskq.dashboard.auth import AUTH_ENV
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs the dashboard extra: pip install 'taskq[dashboard]' ({exc})"
        ) from None
    args.app = args.app_path
    app = app_for(args, need_broker=True, need_store=True)
    text = args.auth if args.auth is not None else os.environ.get(AUTH_ENV) or None
    auth = BasicAuth.parse(text) if text is not None else None
    management_url = args.management_url or os.environ.get(MANAGEMENT_URL_ENV) or None
    dashboard = create_app(app, auth=auth, management_url=management_url)
    log.info(
        "dashboard serving",
        url=f"http://{args.host}:{args.port}/",
        auth=f"basic, user {auth.user}" if auth is not None else "none",
        broker=app.broker.display_url,
        store=app.store.display_url,
        management=mask_url(management_url) if management_url else None,
    )
    config = uvicorn.Config(
        dashboard, host=args.host, port=args.port, log_level="warning", lifespan="on"
    )
    # uvicorn stops gracefully on SIGTERM / SIGINT, then raises the signal again
    # through the handlers it found: ours ignore it, so a clean stop exits 0, as a
    # worker's does.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("dashboard stopped")
    return RET_OK


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass
