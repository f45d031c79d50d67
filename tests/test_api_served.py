"""Schemathesis served by gunicorn: every check it has, each phase included (examples,
coverage, fuzzing and stateful runs that follow the spec's links).

It runs in the first lane only, on whichever server that is: a run takes minutes, and
the in-process contract test (`test_api_contract.py`) keeps the fallback lane honest."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ADMIN_TOKEN
from tests.servers.broker import BrokerProcess


def test_every_check_against_the_served_broker(couch, settings, registered, tmp_path):
    """`schemathesis run --checks all`, as an admin, with a fixed seed; what it may not
    count as a failure is in `schemathesis.toml` and `schemathesis_hooks.py`, with why.

    Its `ignored_auth` check sends bad credentials on purpose, again and again; the served
    broker's failed-login bounds are raised so that those get 401, not 429. The bounds
    themselves are tested in `test_users.py`.
    """
    broker = BrokerProcess(
        couch,
        settings.state_db,
        ADMIN_TOKEN,
        BROKER_FAILED_LOGINS_PER_NAME="100000",
        BROKER_FAILED_LOGINS_PER_CLIENT="100000",
        BROKER_LONGEST_WAIT="1",  # long polls answer well inside Schemathesis's 10 s
    )
    config = Path(__file__).with_name("schemathesis.toml")
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(config)),
        *("run", f"{broker.url}/openapi.json"),
        *("--checks", "all", "--max-examples", "15", "--seed", "20261207"),
        *("--header", f"Authorization: Bearer {ADMIN_TOKEN}", "--no-color"),
    ]
    root = str(Path(__file__).resolve().parents[1])  # the hooks module's package
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": root}
    try:
        run = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
    finally:
        broker.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
