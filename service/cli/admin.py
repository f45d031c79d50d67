"""Admin commands over the HTTP API: `databases ...` and `shares ...`."""

import argparse
import json
import sys

from service.cli.client import BrokerClient

RULES_HELP = 'JSON, like \'[{"type": "item", "where": {"data.item_type": "container"}}]\''


def print_result(args: argparse.Namespace, data: object, line) -> None:
    """JSON with --json, else one line per item."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    for item in data if isinstance(data, list) else [data]:
        print(line(item))


def _database_line(d: dict) -> str:
    return f"{d['config_uuid']}  {d['database']}  {d['server']}  {d['registered_at']}"


def _share_line(s: dict) -> str:
    collections = ",".join(s["collections"]) if s["collections"] is not None else "all"
    return (
        f"{s['id']}  {s['status']}  {s['owner']} -> {s['recipient']}  {s['access']}  {collections}"
    )


def _preview_line(p: dict) -> str:
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(p["counts"].items()))
    return f"{p['total']} docs would leave the owner's database: {counts or 'none'}"


def databases(args: argparse.Namespace, api: BrokerClient) -> int:
    if args.action == "register":
        body = {"database": args.database, "server": args.server}
        data = api.json("POST", "/v1/databases", json=body)
    elif args.action == "list":
        data = api.all_pages("/v1/databases", {})
    elif args.action == "show":
        data = api.json("GET", f"/v1/databases/{args.config_uuid}")
    else:
        api.call("DELETE", f"/v1/databases/{args.config_uuid}")
        print(f"removed {args.config_uuid}", file=sys.stderr)
        return 0
    print_result(args, data, _database_line)
    return 0


def shares(args: argparse.Namespace, api: BrokerClient) -> int:
    if args.action == "create":
        body = {
            "owner": args.owner,
            "recipient": args.recipient,
            "access": args.access,
            "collections": args.collection or None,
            "rules": args.rules,
            "auto_accept": not args.invite,
        }
        if args.dry_run:
            data = api.json("POST", "/v1/shares", json=body, params={"dry_run": "true"})
            print_result(args, data, _preview_line)
            return 0
        data = api.json("POST", "/v1/shares", json=body)
    elif args.action == "list":
        filters = {"database": args.database, "role": args.role, "status": args.status}
        data = api.all_pages("/v1/shares", {k: v for k, v in filters.items() if v})
    elif args.action == "show":
        data = api.json("GET", f"/v1/shares/{args.share_id}")
    elif args.action == "preview":
        print_result(args, api.json("GET", f"/v1/shares/{args.share_id}/preview"), _preview_line)
        return 0
    elif args.action == "patch":
        data = _patch(args, api)
    else:
        params = {"purge": "true" if args.purge else "false"}
        data = api.json("DELETE", f"/v1/shares/{args.share_id}", params=params)
    print_result(args, data, _share_line)
    return 0


def _patch(args: argparse.Namespace, api: BrokerClient) -> dict:
    body = {}
    if args.access:
        body["access"] = args.access
    if args.all_collections:
        body["collections"] = None
    elif args.collection:
        body["collections"] = args.collection
    if args.rules is not None:
        body["rules"] = args.rules
    etag = api.call("GET", f"/v1/shares/{args.share_id}").headers["ETag"]
    return api.json("PATCH", f"/v1/shares/{args.share_id}", json=body, headers={"If-Match": etag})


def reconcile(args: argparse.Namespace, api: BrokerClient) -> int:
    report = api.json("POST", "/v1/reconcile")
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    elif report["skipped"]:
        print(f"skipped: {report['skipped']}")
    else:
        for entry in report["repaired"]:
            print(f"repaired: {_finding(entry)}: {entry['action']}")
        for entry in report["errors"]:
            print(f"could not repair: {_finding(entry)}: {entry['error']}", file=sys.stderr)
        print(f"{len(report['found'])} found, {len(report['repaired'])} repaired")
    return 1 if report["errors"] else 0


def _finding(entry: dict) -> str:
    """A reconcile finding in words: its kind, then what it is about (`share 1f2e…; part
    credentials`)."""
    about = [
        f"{name.replace('_', ' ')} {_words(value)}"
        for name, value in sorted(entry.items(), key=lambda item: item[0] != "share_id")
        if name not in ("kind", "action", "error")
    ]
    return f"{entry['kind']} ({'; '.join(about)})" if about else entry["kind"]


def _words(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    db = commands.add_parser("databases", help="register, list, show or remove databases")
    db_actions = db.add_subparsers(dest="action", required=True)
    register = db_actions.add_parser("register", parents=[common])
    register.add_argument("database")
    register.add_argument("--server", default="default", help="the server that holds it")
    db_actions.add_parser("list", parents=[common])
    for action in ("show", "remove"):
        db_actions.add_parser(action, parents=[common]).add_argument("config_uuid")
    db.set_defaults(run_api=databases)

    sh = commands.add_parser("shares", help="create, list, show, preview, patch or revoke shares")
    sh_actions = sh.add_subparsers(dest="action", required=True)
    create = sh_actions.add_parser("create", parents=[common])
    create.add_argument("--owner", required=True)
    create.add_argument("--recipient", required=True)
    create.add_argument("--access", choices=["read", "read-write"], required=True)
    create.add_argument("--collection", action="append", help="repeat; none means all")
    create.add_argument("--invite", action="store_true", help="wait for the recipient's consent")
    create.add_argument("--rules", type=json.loads, help=RULES_HELP)
    create.add_argument("--dry-run", action="store_true", help="only show what would be shared")
    listing = sh_actions.add_parser("list", parents=[common])
    listing.add_argument("--database")
    listing.add_argument("--role", choices=["owner", "recipient", "any"])
    listing.add_argument("--status")
    sh_actions.add_parser("show", parents=[common]).add_argument("share_id")
    sh_actions.add_parser("preview", parents=[common]).add_argument("share_id")
    patch = sh_actions.add_parser("patch", parents=[common])
    patch.add_argument("share_id")
    patch.add_argument("--access", choices=["read", "read-write"])
    scope = patch.add_mutually_exclusive_group()
    scope.add_argument("--collection", action="append")
    scope.add_argument("--all-collections", action="store_true")
    patch.add_argument("--rules", type=json.loads, help=RULES_HELP)
    revoke = sh_actions.add_parser("revoke", parents=[common])
    revoke.add_argument("share_id")
    revoke.add_argument("--purge", action="store_true")
    sh.set_defaults(run_api=shares)

    rec = commands.add_parser("reconcile", parents=[common], help="repair drift, once")
    rec.set_defaults(run_api=reconcile)
