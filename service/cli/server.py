"""`serve` and `openapi write`: the commands that run or describe the service itself."""

import argparse
import sys
from pathlib import Path

import yaml

from service.config import Settings

# Placeholder settings: the spec does not depend on any real server or secret.
SPEC_SETTINGS = Settings(
    couchdb_url="http://couchdb.invalid:5984",
    couchdb_user="spec",
    couchdb_password="placeholder-for-the-spec",  # noqa: S106 - never used to connect
    admin_tokens=(),
)


def openapi_yaml() -> str:
    """The OpenAPI spec generated from the code, as YAML."""
    from service.app import create_app

    app = create_app(SPEC_SETTINGS)
    with app.app_context():
        spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)


def write_openapi(args: argparse.Namespace) -> int:
    generated = openapi_yaml()
    if args.check:
        committed = Path(args.output).read_text(encoding="utf-8")
        if committed != generated:
            print(
                f"sharing-broker: {args.output} is out of date: run `sharing-broker openapi write`",
                file=sys.stderr,
            )
            return 1
        return 0
    Path(args.output).write_text(generated, encoding="utf-8")
    return 0


def serve(args: argparse.Namespace) -> int:
    from gunicorn.app.wsgiapp import run

    Settings.from_env()  # fail fast, with one line, before gunicorn starts workers
    sys.argv = ["gunicorn", "--config", "python:service.gunicorn_conf", *args.gunicorn_args]
    return run()


def add_commands(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("serve", help="run the API under gunicorn (service/gunicorn_conf.py)")
    run.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="extra gunicorn options")
    run.set_defaults(run=serve)
    openapi = commands.add_parser("openapi", help="the OpenAPI spec generated from the code")
    openapi_commands = openapi.add_subparsers(dest="openapi_command", required=True)
    write = openapi_commands.add_parser("write", help="write the spec, or --check it")
    write.add_argument("--output", default="openapi/openapi.yaml")
    write.add_argument("--check", action="store_true", help="fail if the file differs")
    write.set_defaults(run=write_openapi)
