"""Admin commands for webhook endpoints: `webhooks add|list|show|resume|remove`."""

import argparse
import sys

from service.cli.admin import print_result
from service.cli.client import BrokerClient


def _line(w: dict) -> str:
    kinds = ",".join(w["kinds"]) if w["kinds"] else "all"
    failing = f", {w['failures']} failures: {w['last_error']}" if w["failures"] else ""
    return f"{w['id']}  {w['url']}  {kinds}  {w['state']}{failing}"


def webhooks(args: argparse.Namespace, api: BrokerClient) -> int:
    if args.action == "add":
        body = {"url": args.endpoint, "kinds": args.kind}
        data = api.json("POST", "/v1/webhooks", json=body)
        print(f"secret, shown this once: {data['secret']}", file=sys.stderr)
    elif args.action == "list":
        data = api.json("GET", "/v1/webhooks")["items"]
    elif args.action == "show":
        data = api.json("GET", f"/v1/webhooks/{args.webhook_id}")
    elif args.action == "resume":
        data = api.json("POST", f"/v1/webhooks/{args.webhook_id}/resume")
    else:
        api.call("DELETE", f"/v1/webhooks/{args.webhook_id}")
        print(f"removed {args.webhook_id}", file=sys.stderr)
        return 0
    print_result(args, data, _line)
    return 0


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    hooks = commands.add_parser("webhooks", help="register, list, show, resume or remove endpoints")
    actions = hooks.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", parents=[common])
    add.add_argument("endpoint", help="the URL events are sent to")  # `--url` is the broker's
    add.add_argument("--kind", action="append", help="repeat; none means every kind")
    actions.add_parser("list", parents=[common])
    for action in ("show", "resume", "remove"):
        actions.add_parser(action, parents=[common]).add_argument("webhook_id")
    hooks.set_defaults(run_api=webhooks)
