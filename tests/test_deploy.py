"""The Dockerfile and docker-compose.yml, checked without a Docker engine."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dotenv_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:?message} and ${VAR:-default}."""
    return re.sub(
        r"\$\{(\w+)(?::[?-]([^}]*))?\}", lambda m: env.get(m.group(1), m.group(2) or ""), value
    )


def test_compose_runs_couchdb_its_init_and_the_broker():
    services = compose()["services"]
    assert set(services) == {"couchdb", "couchdb-init", "broker"}
    assert re.fullmatch(r"couchdb:3\.\d+\.\d+", services["couchdb"]["image"])
    assert services["couchdb-init"]["image"] == services["couchdb"]["image"]
    assert services["couchdb-init"]["depends_on"]["couchdb"]["condition"] == "service_healthy"
    init = services["broker"]["depends_on"]["couchdb-init"]["condition"]
    assert init == "service_completed_successfully"
    assert "_replicator" in services["couchdb-init"]["command"][0]
    assert "_users" in services["couchdb-init"]["command"][0]


def test_compose_healthchecks_probe_couchdb_and_readiness():
    services = compose()["services"]
    assert "/_up" in " ".join(services["couchdb"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["broker"]["healthcheck"]["test"])


def test_compose_ports_match_the_servers():
    services = compose()["services"]
    assert services["couchdb"]["ports"] == ["127.0.0.1:5984:5984"]
    assert services["broker"]["ports"] == ["127.0.0.1:8000:8000"]
    from service import gunicorn_conf

    assert gunicorn_conf.bind.endswith(":8000")


def test_compose_gives_the_broker_a_valid_configuration():
    env = dotenv_example()
    broker_env = {
        key: substitute(str(value), env)
        for key, value in compose()["services"]["broker"]["environment"].items()
    }
    settings = Settings.from_env(broker_env)
    assert settings.couchdb_url == "http://couchdb:5984"
    assert settings.couchdb_password == env["COUCHDB_PASSWORD"]
    couchdb_env = compose()["services"]["couchdb"]["environment"]
    assert substitute(couchdb_env["COUCHDB_USER"], env) == settings.couchdb_user


def test_compose_refuses_to_start_without_credentials():
    couchdb_env = compose()["services"]["couchdb"]["environment"]
    assert ":?" in couchdb_env["COUCHDB_PASSWORD"]
    assert ":?" in compose()["services"]["broker"]["environment"]["BROKER_ADMIN_TOKENS"]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(__file__).parents[1] / ".venv/bin/hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_gunicorn_as_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'CMD ["sharing-broker", "serve"]' in text


def test_the_two_server_example_gives_the_broker_both_servers():
    """`docker compose -f docker-compose.yml -f docker-compose.two-servers.yml` merges the
    second file's broker settings over the first's."""
    extra = yaml.safe_load((ROOT / "docker-compose.two-servers.yml").read_text())["services"]
    env = dotenv_example()
    merged = {**compose()["services"]["broker"]["environment"], **extra["broker"]["environment"]}
    settings = Settings.from_env({key: substitute(str(v), env) for key, v in merged.items()})
    servers = {s.name: s for s in settings.servers}
    assert servers["home"].url == "http://couchdb-home:5984"
    # Replicators on both servers reach the first one by its service name.
    assert servers["default"].replication_url == "http://couchdb:5984"
    assert servers["home"].replication_url == "http://couchdb-home:5984"
    assert "couchdb-home-init" in extra["broker"]["depends_on"]
    assert "_replicator" in extra["couchdb-home-init"]["command"][0]
