"""Progress on long runs: a line per phase, and a bar for counted work on a terminal (plain
lines, every tenth, when the output is a file or a pipe)."""

import sys
import time


class Progress:
    """Says what a run is doing, on stderr, so that stdout keeps the figures alone."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.terminal = stream.isatty()
        self.started = time.monotonic()
        self._last_tenth = -1

    def phase(self, index: int, total: int, name: str) -> None:
        self._line(f"[{index}/{total}] {name}")

    def detail(self, text: str) -> None:
        """A step within the current phase."""
        self._line(f"  {text}")

    def count(self, done: int, total: int, what: str) -> None:
        """`done` of `total` `what`: a bar redrawn in place, or a line at each tenth."""
        if self.terminal:
            filled = round(30 * done / total) if total else 30
            bar = "#" * filled + "." * (30 - filled)
            end = "\n" if done >= total else ""
            self.stream.write(f"\rbench:   [{bar}] {done:,}/{total:,} {what}{end}")
            self.stream.flush()
            return
        tenth = 10 * done // total if total else 10
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._line(f"  {done:,}/{total:,} {what}")

    def _line(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"bench: {elapsed:6.0f} s  {text}", file=self.stream, flush=True)
