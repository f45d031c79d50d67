"""Independent CouchDB requests sent at the same time."""

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def run_together(*calls: Callable[[], object]) -> list:
    """Run the calls at once and return their results in order.

    Every call runs to its end; then the first error, in the calls' order, is raised.
    """
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
    return [future.result() for future in futures]


def run_each(*calls: Callable[[], object]) -> list[Exception | None]:
    """Run the calls at once, each to its end; return each one's error, or None."""

    def outcome(call: Callable[[], object]) -> Exception | None:
        try:
            call()
        except Exception as exc:  # handed back to the caller, who decides
            return exc
        return None

    return run_together(*(lambda c=call: outcome(c) for call in calls))
