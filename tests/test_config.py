"""Settings from the environment, with <NAME>_FILE for mounted secrets."""

import pytest

from service.cli import main
from service.config import ConfigError, Settings

BASE = {
    "BROKER_COUCHDB_URL": "http://couchdb:5984/",
    "BROKER_COUCHDB_USER": "broker",
    "BROKER_COUCHDB_PASSWORD": "s3cret-canary",
    "BROKER_ADMIN_TOKENS": "token-aaaaaaaaaaaaaaaa, token-bbbbbbbbbbbbbbbb",
}


def test_defaults():
    settings = Settings.from_env(BASE)
    assert settings.couchdb_url == "http://couchdb:5984"
    assert settings.replication_url == "http://couchdb:5984"
    assert settings.state_db == "sharing_broker"
    assert settings.admin_tokens == ("token-aaaaaaaaaaaaaaaa", "token-bbbbbbbbbbbbbbbb")
    assert settings.couch_timeout == (3.05, 10.0)
    assert (settings.replication_mode, settings.max_runs) == ("on_change", 200)
    assert (settings.failed_logins_per_name, settings.failed_logins_per_client) == (5, 50)
    assert settings.max_waiting == 2


def test_the_failed_login_bounds_and_the_waits_are_read():
    env = {**BASE, "BROKER_FAILED_LOGINS_PER_NAME": "3", "BROKER_FAILED_LOGINS_PER_CLIENT": "9"}
    settings = Settings.from_env({**env, "BROKER_MAX_WAITING": "3"})
    assert (settings.failed_logins_per_name, settings.failed_logins_per_client) == (3, 9)
    assert settings.max_waiting == 3


def test_continuous_mode_and_the_runs_at_once():
    env = {**BASE, "BROKER_REPLICATION_MODE": "continuous", "BROKER_MAX_RUNS": "50"}
    settings = Settings.from_env(env)
    assert (settings.replication_mode, settings.max_runs) == ("continuous", 50)


def test_continuous_mode_may_turn_the_followers_off():
    env = {**BASE, "BROKER_REPLICATION_MODE": "continuous", "BROKER_FOLLOW_INTERVAL": "0"}
    assert Settings.from_env(env).follow_interval_seconds == 0


def test_secrets_from_files(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "tokens").write_text("token-cccccccccccccccc\n")
    env = {
        k: v for k, v in BASE.items() if k not in ("BROKER_COUCHDB_PASSWORD", "BROKER_ADMIN_TOKENS")
    }
    env["BROKER_COUCHDB_PASSWORD_FILE"] = str(tmp_path / "pw")
    env["BROKER_ADMIN_TOKENS_FILE"] = str(tmp_path / "tokens")
    env["BROKER_REPLICATION_URL"] = "http://couchdb.internal:5984"
    settings = Settings.from_env(env)
    assert settings.couchdb_password == "from-file"
    assert settings.admin_tokens == ("token-cccccccccccccccc",)
    assert settings.replication_url == "http://couchdb.internal:5984"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"BROKER_COUCHDB_URL": None}, "BROKER_COUCHDB_URL"),
        ({"BROKER_COUCHDB_USER": None}, "BROKER_COUCHDB_USER"),
        ({"BROKER_COUCHDB_PASSWORD": None}, "BROKER_COUCHDB_PASSWORD"),
        ({"BROKER_ADMIN_TOKENS": None}, "BROKER_ADMIN_TOKENS"),
        ({"BROKER_ADMIN_TOKENS": " , "}, "BROKER_ADMIN_TOKENS"),
        ({"BROKER_ADMIN_TOKENS": "short"}, "BROKER_ADMIN_TOKENS"),
        ({"BROKER_COUCHDB_URL": "couchdb:5984"}, "BROKER_COUCHDB_URL"),
        ({"BROKER_COUCHDB_URL": "http://admin:pw@couchdb:5984"}, "BROKER_COUCHDB_URL"),
        ({"BROKER_REPLICATION_URL": "ftp://x"}, "BROKER_REPLICATION_URL"),
        ({"BROKER_COUCHDB_PASSWORD_FILE": "/nonexistent"}, "BROKER_COUCHDB_PASSWORD"),
        ({"BROKER_COUCHDB_READ_TIMEOUT": "soon"}, "BROKER_COUCHDB_READ_TIMEOUT"),
        ({"BROKER_COUCHDB_CONNECT_TIMEOUT": "0"}, "BROKER_COUCHDB_CONNECT_TIMEOUT"),
        ({"BROKER_REPLICATION_MODE": "sometimes"}, "BROKER_REPLICATION_MODE"),
        ({"BROKER_MAX_RUNS": "0"}, "BROKER_MAX_RUNS"),
        ({"BROKER_MAX_RUNS": "lots"}, "BROKER_MAX_RUNS"),
        (
            {"BROKER_REPLICATION_MODE": "on_change", "BROKER_FOLLOW_INTERVAL": "0"},
            "BROKER_FOLLOW_INTERVAL",
        ),
    ],
)
def test_a_bad_setting_is_named_without_its_value(change, named):
    env = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=named) as raised:
        Settings.from_env(env)
    assert "s3cret-canary" not in str(raised.value)
    assert "token-aaaa" not in str(raised.value)


def test_serve_stops_with_one_line_naming_the_missing_setting(monkeypatch, capsys):
    for name in BASE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("gunicorn.app.wsgiapp.run", lambda: 0)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "sharing-broker: BROKER_COUCHDB_URL is not set"
        " (set BROKER_COUCHDB_URL or BROKER_COUCHDB_URL_FILE)"
    )


def test_the_record_key_is_given_or_derived_and_never_shown():
    derived = Settings.from_env(BASE)
    assert len(derived.record_key) == 64 and "s3cret-canary" not in derived.record_key
    assert derived.record_key == Settings.from_env(BASE).record_key  # every replica agrees
    given = Settings.from_env({**BASE, "BROKER_RECORD_KEY": "k" * 32})
    assert given.record_key == "k" * 32
    assert "k" * 32 not in repr(given) and derived.record_key not in repr(derived)
    with pytest.raises(ConfigError, match="BROKER_RECORD_KEY"):
        Settings.from_env({**BASE, "BROKER_RECORD_KEY": "short"})


TWO = {
    **BASE,
    "BROKER_SERVERS": "home, eu_west",
    "BROKER_SERVER_HOME_URL": "https://home.example:6984/",
    "BROKER_SERVER_HOME_USER": "broker-home",
    "BROKER_SERVER_HOME_PASSWORD": "home-canary",
    "BROKER_SERVER_HOME_REPLICATION_URL": "https://home.internal:6984",
    "BROKER_SERVER_EU_WEST_URL": "http://eu.example:5984",
    "BROKER_SERVER_EU_WEST_USER": "broker-eu",
    "BROKER_SERVER_EU_WEST_PASSWORD": "eu-canary",
}


def test_more_servers_are_named_with_default_first(tmp_path):
    (tmp_path / "pw").write_text("eu-from-file\n")
    env = {k: v for k, v in TWO.items() if k != "BROKER_SERVER_EU_WEST_PASSWORD"}
    env["BROKER_SERVER_EU_WEST_PASSWORD_FILE"] = str(tmp_path / "pw")
    servers = Settings.from_env(env).servers
    assert [(s.name, s.url, s.user, s.replication_url) for s in servers] == [
        ("default", "http://couchdb:5984", "broker", "http://couchdb:5984"),
        ("home", "https://home.example:6984", "broker-home", "https://home.internal:6984"),
        ("eu_west", "http://eu.example:5984", "broker-eu", "http://eu.example:5984"),
    ]
    assert [s.password for s in servers] == ["s3cret-canary", "home-canary", "eu-from-file"]
    assert not any(p in repr(servers) for p in ("s3cret-canary", "home-canary", "eu-from-file"))


def test_one_server_is_the_default():
    assert [s.name for s in Settings.from_env(BASE).servers] == ["default"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"BROKER_SERVERS": "Home"}, "BROKER_SERVERS"),
        ({"BROKER_SERVERS": "default"}, "BROKER_SERVERS"),
        ({"BROKER_SERVERS": "home,home"}, "BROKER_SERVERS"),
        ({"BROKER_SERVERS": "home-1"}, "BROKER_SERVERS"),
        ({"BROKER_SERVER_HOME_URL": None}, "BROKER_SERVER_HOME_URL"),
        ({"BROKER_SERVER_HOME_URL": "home:6984"}, "BROKER_SERVER_HOME_URL"),
        ({"BROKER_SERVER_HOME_URL": "http://u:home-canary@h"}, "BROKER_SERVER_HOME_URL"),
        ({"BROKER_SERVER_HOME_USER": None}, "BROKER_SERVER_HOME_USER"),
        ({"BROKER_SERVER_HOME_PASSWORD": None}, "BROKER_SERVER_HOME_PASSWORD"),
        ({"BROKER_SERVER_HOME_REPLICATION_URL": "ftp://x"}, "BROKER_SERVER_HOME_REPLICATION_URL"),
        ({"BROKER_SERVER_EU_WEST_PASSWORD_FILE": "/nonexistent"}, "BROKER_SERVER_EU_WEST"),
    ],
)
def test_a_bad_server_setting_is_named_without_its_value(change, named):
    env = {k: v for k, v in {**TWO, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=named) as raised:
        Settings.from_env(env)
    assert "home-canary" not in str(raised.value) and "eu-canary" not in str(raised.value)
