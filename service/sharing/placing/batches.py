"""Group commit: edits of one database asked for at the same time go in one round."""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class _Ticket:
    item: object
    done: bool = False
    result: object = None
    error: BaseException | None = None


@dataclass
class GroupCommit:
    """Items for one key submitted while a round for that key runs wait for it to end, then
    go together in the next round, run by the first of their threads; the others wait for
    their results. A round that fails fails each of its items."""

    _guard: threading.Lock = field(default_factory=threading.Lock)
    _queued: dict[Hashable, list[_Ticket]] = field(default_factory=dict)
    _rounds: dict[Hashable, threading.Lock] = field(default_factory=dict)

    def submit(self, key: Hashable, item: object, run: Callable[[list], list]) -> object:
        """Return `item`'s result from `run(items)`, which answers each item in order."""
        ticket = _Ticket(item)
        with self._guard:
            self._queued.setdefault(key, []).append(ticket)
            round_lock = self._rounds.setdefault(key, threading.Lock())
        with round_lock:
            if not ticket.done:
                with self._guard:
                    batch = self._queued.pop(key)
                self._run(batch, run)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    @staticmethod
    def _run(batch: list[_Ticket], run: Callable[[list], list]) -> None:
        try:
            results = run([ticket.item for ticket in batch])
            for ticket, result in zip(batch, results, strict=True):
                ticket.result = result
        except Exception as exc:  # each waiting request raises it as its own
            for ticket in batch:
                ticket.error = exc
        for ticket in batch:
            ticket.done = True
