"""The newcomer's commands: `scripts/dev` checks its ports first; `scripts/setup` skips what
has not changed."""

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def test_a_taken_port_is_named_in_one_line_before_anything_is_installed():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("scripts/dev", BROKER_PORT=str(port), COUCHDB_URL="http://127.0.0.1:1")

    assert result.returncode == 1
    assert "setup:" not in result.stdout  # nothing was installed first
    [line] = result.stderr.splitlines()
    assert line.startswith(f"dev: port {port} is taken, and the broker needs it;")
    suggested = int(line.rsplit("BROKER_PORT=", 1)[1].split()[0])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))  # free, as said


def test_a_second_setup_installs_nothing():
    run("scripts/setup", "--test")
    again = run("scripts/setup", "--test")
    assert again.returncode == 0, again.stderr
    assert "setup: the broker in .venv is up to date (pyproject.toml unchanged)" in again.stdout
    assert "npm" not in again.stdout and "pip" not in again.stdout
