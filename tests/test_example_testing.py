"""examples/testing: a user's project testing its own tasks with taskq's pytest plugin,
run as that project runs it, with its own pytest.ini (found from the path given)."""

from __future__ import annotations

from tests.deployment import ROOT, environment, run_python

PROJECT = ROOT / "examples" / "testing"


async def test_the_testing_example_projects_tests_pass() -> None:
    ran = await run_python(
        "-m", "pytest", "-p", "no:cacheprovider", "-q", str(PROJECT), env=environment()
    )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "4 passed" in ran.stdout, ran.stdout
