"""The share lifecycle: invite, accept or decline, change and revoke.

Each operation is recorded so a crash can be finished, and audited.

Before acting, an operation is written into the share record with its target. Every step is
idempotent, so the record is not written again until the operation ends: a resume redoes
what is not marked done. When an operation fails, the record keeps the steps it got through
in `operation.done`. A failed create is rolled back; a failed change is brought back to what
the share was; a failed revoke is finished by revoking again. Whatever cannot be undone
stays visible in the record's `operation`.
"""

from service.sharing.lifecycle.provision import Provisioning
from service.sharing.lifecycle.recovery import Recovering


class ShareService(Provisioning, Recovering):
    """Creates, changes and revokes shares: each family of operations in its own module,
    on the shared base (`base`, `parties`, `placement`). Recovery finishes the others'
    operations, so it builds on revoke and change."""
