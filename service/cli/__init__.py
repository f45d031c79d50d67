"""The `sharing-broker` command.

Exit codes: 0 done; 1 the API refused the request (4xx); 2 bad usage or settings;
3 the API or CouchDB is unavailable (5xx, or no answer). Errors go to stderr.
"""

import argparse
import os
import sys

from service.cli import admin, server, webhooks
from service.cli.client import ApiError, BrokerClient
from service.config import ConfigError


def _add_common(parser: argparse.ArgumentParser, default) -> None:
    """`--url` and `--json`, taken before or after the command (`default`: SUPPRESS after,
    so a subcommand's unset option does not undo one given before it)."""
    url = os.environ.get("BROKER_URL", "http://127.0.0.1:8000")
    parser.add_argument(
        "--url",
        default=url if default is None else default,
        help="the broker's base URL (BROKER_URL)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="machine-readable output",
    )


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="sharing-broker", description=__doc__)
    _add_common(parser, None)
    commands = parser.add_subparsers(dest="command", required=True)
    server.add_commands(commands)
    admin.add_commands(commands, common)
    webhooks.add_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "run_api"):
            token = os.environ.get("BROKER_TOKEN")
            if not token:
                raise ConfigError("BROKER_TOKEN is not set: the admin token to call the API with")
            return args.run_api(args, BrokerClient(args.url, token))
        return args.run(args)
    except ConfigError as exc:
        print(f"sharing-broker: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        status = f"{exc.status} " if exc.status else ""
        print(f"sharing-broker: {status}{exc.detail}", file=sys.stderr)
        return 1 if exc.status and exc.status < 500 else 3
