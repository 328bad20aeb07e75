"""The application's tasks, on its app. In production the worker and the web process
get their URLs from TASKQ_BROKER_URL / TASKQ_STORE_URL; in the tests, the taskq_app
fixture runs the same app object on the embedded broker and store."""

from __future__ import annotations

from shop import mail
from taskq import TaskQueue

app = TaskQueue(exchange="shop")


@app.task(name="emails.send", max_retries=5, retry_backoff=30)
def send_email(to: str, template: str, context: dict[str, str]) -> str:
    """Sync, as a blocking SMTP client is: it runs in the worker's thread pool."""
    return mail.deliver(to, template, context)
