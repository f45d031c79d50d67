"""The `sharing-broker` command: serve the API, or write its OpenAPI spec."""

import argparse
import sys
from pathlib import Path

import yaml

from service.config import ConfigError, Settings

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


def _openapi(args: argparse.Namespace) -> int:
    generated = openapi_yaml()
    if args.check:
        committed = Path(args.output).read_text(encoding="utf-8")
        if committed != generated:
            print(f"{args.output} is out of date: run `sharing-broker openapi`", file=sys.stderr)
            return 1
        return 0
    Path(args.output).write_text(generated, encoding="utf-8")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", "--bind", args.bind, "--workers", str(args.workers), "service.wsgi:app"]
    return run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sharing-broker")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--bind", default="0.0.0.0:8000")
    serve.add_argument("--workers", type=int, default=2)
    serve.set_defaults(run=_serve)
    openapi = commands.add_parser("openapi", help="write the OpenAPI spec generated from the code")
    openapi.add_argument("--output", default="openapi/openapi.yaml")
    openapi.add_argument("--check", action="store_true", help="fail if the file differs")
    openapi.set_defaults(run=_openapi)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"sharing-broker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
