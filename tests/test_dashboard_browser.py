"""The dashboard end to end in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright, which never downloads a browser here), against RabbitMQ + Redis: send tasks
and see the counts move, open a failed task, requeue a dead letter, cancel a delayed
task; screenshots of each page under a temp folder (and, with
``TASKQ_DASHBOARD_SCREENSHOTS=DIR``, into DIR: how examples/dashboard/*.png are made)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from taskq import TaskFailed, TaskQueue, Worker
from taskq.dashboard import create_app
from tests.conftest import remove_app

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Chromium is not installed: apt-get install -y chromium chromium-driver (.ci/run does)",
)


def register(app: TaskQueue) -> None:
    @app.task(name="shop.double")
    async def double(x: int) -> int:
        await asyncio.sleep(0.05)
        return 2 * x

    @app.task(name="shop.charge", max_retries=0)
    async def charge(order: int) -> None:
        raise ValueError(f"card declined for order {order}")

    @app.task(name="shop.remind")
    async def remind(order: int) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard_url(amqp_url: str, redis_url: str, exchange: str) -> Iterator[str]:
    """``taskq dashboard`` as the command serves it (uvicorn), in a thread of its own
    with its own app, loop and connections."""
    import uvicorn

    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    register(app)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app, poll_interval=0.5), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest_asyncio.fixture
async def shop(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[TaskQueue]:
    """The application's side: sends and runs tasks, with events on."""
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange, events=True)
    register(app)
    await app.connect()
    try:
        yield app
    finally:
        await remove_app(app, list(app.tasks), redis_url)


@pytest_asyncio.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        try:
            yield page
        finally:
            await browser.close()


async def shoot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    keep = os.environ.get("TASKQ_DASHBOARD_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / f"dashboard-{name}.png")
    return path


async def test_counts_move_a_failed_task_opens_a_dead_letter_requeues_a_delayed_task_cancels(
    dashboard_url: str, shop: TaskQueue, page: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    double, charge, remind = (shop.tasks[n] for n in ("shop.double", "shop.charge", "shop.remind"))
    await page.goto(dashboard_url + "#/tasks")
    await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    succeeded = page.locator('#counts [data-state="succeeded"] b')
    await expect(succeeded).to_have_text("0", timeout=10_000)

    async with Worker(shop, concurrency=4):
        # Given tasks sent and run, the counts move without a reload.
        handles = [await double.delay(x) for x in range(5)]
        for handle in handles:
            await handle.result(timeout=10)
        await expect(succeeded).to_have_text("5", timeout=15_000)
        await expect(page.locator("#feed")).to_contain_text("shop.double", timeout=10_000)
        await shoot(page, tmp_path, "tasks")

        # A failed task: its page shows the error with its traceback and arguments.
        failed = await charge.delay(42)
        with pytest.raises(TaskFailed):
            await failed.result(timeout=10)
        await page.goto(dashboard_url + "#/failures")
        link = page.locator(f'#failed a[href="#/task/{failed.id}"]')
        await expect(link).to_be_visible(timeout=15_000)
        await expect(page.locator(f'#dead tr[data-task-id="{failed.id}"]')).to_contain_text(
            "card declined"
        )
        await shoot(page, tmp_path, "failures")
        await link.click()
        await expect(page.locator("#task-state")).to_have_text("failed", timeout=10_000)
        await expect(page.locator("#traceback")).to_contain_text("card declined for order 42")
        await expect(page.locator("#send-args")).to_have_value(
            '{\n  "args": [\n    42\n  ],\n  "kwargs": {}\n}'
        )
        await shoot(page, tmp_path, "task")

        # Its dead letter requeued from the failures page (confirmed): it runs again.
        await page.goto(dashboard_url + "#/failures")
        requeue = page.locator(f'#dead button.requeue[data-id="{failed.id}"]')
        await requeue.click()
        await expect(page.locator("#toast")).to_contain_text("Requeued 1", timeout=10_000)

        async def attempts_again() -> int:
            status = await shop.store.get(failed.id)
            return 0 if status is None or status.state.value != "failed" else status.attempts

        deadline = time.monotonic() + 15
        while await attempts_again() != 1 or (await shop.store.get(failed.id)) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

        # A delayed task cancelled from its page.
        delayed = await remind.send(args=(7,), countdown=120)
        await page.goto(dashboard_url + f"#/task/{delayed.id}")
        await expect(page.locator("#task-state")).to_have_text("queued", timeout=10_000)
        # No dead letter: its arguments come from its queued record, ready to send again.
        await expect(page.locator("#send-args")).to_have_value(
            '{\n  "args": [\n    7\n  ],\n  "kwargs": {}\n}'
        )
        await expect(page.locator("#args-note")).to_have_count(0)
        await page.locator("#cancel-btn").click()
        await expect(page.locator("#task-state")).to_have_text("cancelled", timeout=10_000)
        assert (await shop.store.get(delayed.id)).state.value == "cancelled"  # type: ignore[union-attr]

        # The queues page: the live queue table and the workers heard from.
        await page.goto(dashboard_url + "#/queues")
        row = page.locator(f'#queues tr[data-queue="{shop.topology.exchange}.shop.double"]')
        await expect(row.locator(".consumers")).to_have_text("1", timeout=10_000)
        await shoot(page, tmp_path, "queues")
