"""What a share looks like to callers: its replications and their live status."""

from collections.abc import Callable, Mapping
from dataclasses import asdict

from service.sharing.core.model import Access, Database, Direction, Share, Status
from service.sharing.placing.replicator import ReplicationStatus, replicator_doc_id


def replication_ids(share: Share) -> list[str]:
    """The ids of the replicator docs a share has while it is live."""
    if share.current_status not in (Status.PROVISIONING, Status.ACTIVE, Status.REVOKING):
        return []
    directions = list(Direction)[: 2 if share.access is Access.READ_WRITE else 1]
    return [replicator_doc_id(share.id, d) for d in directions]


def describe(
    share: Share,
    databases: Mapping[str, Database],
    status_of: Callable[[str], ReplicationStatus] | None = None,
) -> dict:
    """The share as the API returns it, with the parties' `databases` that the caller may
    see (by Configuration UUID); `status_of` adds each replication's live status."""
    two_way = share.access is Access.READ_WRITE
    view = {
        "id": share.id,
        "owner": share.owner,
        "recipient": share.recipient,
        "access": str(share.access),
        "collections": share.collections,
        "rules": share.rules,
        "status": str(share.current_status),
        "created_at": share.created_at,
        "updated_at": share.updated_at,
        "expires_at": share.expires_at,
        "db_sharing_doc_id": share.db_sharing_doc_id if two_way else None,
        "operation": _operation(share),
        "replications": [],
    }
    ends = {
        Direction.OWNER_TO_RECIPIENT: (share.owner, share.recipient),
        Direction.RECIPIENT_TO_OWNER: (share.recipient, share.owner),
    }
    for doc_id, direction in zip(replication_ids(share), Direction, strict=False):
        source, target = (databases.get(end) for end in ends[direction])
        replication = {
            "id": doc_id,
            "direction": str(direction),
            "source_database": source and source.database,
            "source_server": source and source.server,
            "target_database": target and target.database,
            "target_server": target and target.server,
        }
        if status_of is not None:
            replication["replication_status"] = asdict(status_of(replication["id"]))
        view["replications"].append(replication)
    return view


def _operation(share: Share) -> dict | None:
    if share.operation is None:
        return None
    return {"name": share.operation.name, "done": list(share.operation.done)}
