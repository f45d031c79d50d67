"""The docs a newcomer reads agree with the code: the settings tables, and the API table."""

import re
from pathlib import Path

import yaml

from service.cli.server import configuration_doc
from service.settings_reference import TABLES

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# The Flask config key that carries the parsed settings: not an environment setting.
NOT_SETTINGS = {"BROKER_SETTINGS"}


def documented_settings() -> set[str]:
    names = set()
    for _, settings in TABLES:
        for setting in settings:
            names |= {name for name in re.findall(r"[A-Z][A-Z0-9_<>]+", setting.name)}
    return names


def read_settings() -> set[str]:
    """The `BROKER_*` names the code reads; `BROKER_SERVER_{NAME}_…` as `<NAME>`."""
    names = set()
    for path in (ROOT / "service").rglob("*.py"):
        if path.name == "settings_reference.py":
            continue
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r"\bBROKER_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{])", text))
        for suffix in re.findall(r"BROKER_SERVER_\{[^}]+\}_([A-Z_]+)", text):
            names.add(f"BROKER_SERVER_<NAME>_{suffix}")
    return names - NOT_SETTINGS


def test_every_setting_the_code_reads_is_documented_and_no_other():
    documented = documented_settings()
    read = read_settings()
    assert read - documented == set(), "read by the code, missing from the reference"
    stale = {n for n in documented - read if n.startswith("BROKER_") and "<NAME>" not in n}
    assert stale == set(), "in the reference, read nowhere"


def test_the_configuration_tables_are_generated_from_the_reference():
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert configuration_doc(current) == current, "run `sharing-broker docs write`"


def api_table_calls() -> set[tuple[str, str]]:
    """(method, path) of each call docs/api.md's table names, with `{…}` for any parameter."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("| Call | Who | What it does |", 1)[1].split("\n\n", 1)[0]
    calls = set()
    for row in table.splitlines()[2:]:
        cell = row.split(" | ")[0].removeprefix("| ")
        pending, methods, path = [], [], ""
        for part in re.findall(r"`([^`]+)`", cell):
            word, _, rest = part.partition(" ")
            if word in METHODS and not rest:  # `GET`, `DELETE /path`: both methods
                pending.append(word)
                continue
            if word in METHODS:
                methods, pending, path = [*pending, word], [], rest.split(" ")[0]
            elif part.startswith("/"):  # `POST /v1/shares/{id}/accept`, `/decline`
                path = path.rsplit("/", 1)[0] + part
            else:
                continue
            calls |= {(method, _normal(path)) for method in methods}
    return calls


def spec_calls() -> set[tuple[str, str]]:
    spec = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text(encoding="utf-8"))
    return {
        (method.upper(), _normal(path))
        for path, operations in spec["paths"].items()
        for method in operations
        if method.upper() in METHODS
    }


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", re.split(r"[?\[]", path)[0])


def test_the_api_table_names_every_operation_of_the_spec_and_no_other():
    documented, specified = api_table_calls(), spec_calls()
    assert specified - documented == set(), "in the spec, missing from docs/api.md"
    assert documented - specified == set(), "in docs/api.md, not in the spec"
