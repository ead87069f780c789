"""A driver-side progress line: done, failed, throughput, ETA."""

from __future__ import annotations

import sys
import time


class Progress:
    """Prints `label: done/total (failed) extra | rate | ETA` at most every `every` seconds."""

    def __init__(
        self, label: str, total: int, unit: str = "videos", every: float = 2.0, stream=None
    ) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.extra = ""
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = self.stream.isatty()

    def update(self, done: int = 0, failed: int = 0, extra: str | None = None) -> None:
        self.done += done
        self.failed += failed
        if extra is not None:
            self.extra = extra
        now = time.monotonic()
        if now - self._last >= self.every and self.done + self.failed < self.total:
            self._last = now
            self._print(final=False)

    def close(self) -> None:
        self._print(final=True)

    def _print(self, final: bool) -> None:
        elapsed = time.monotonic() - self.started
        finished = self.done + self.failed
        rate = finished / elapsed if elapsed > 0 else 0.0
        left = self.total - finished
        eta = (
            f"ETA {int(left / rate) // 60}:{int(left / rate) % 60:02d}" if rate > 0 and left else ""
        )
        parts = [f"{self.label}: {finished}/{self.total} {self.unit}", f"{self.failed} failed"]
        if self.extra:
            parts.append(self.extra)
        parts.append(f"{elapsed:.0f}s" if final or not eta else eta)
        line = " | ".join(parts)
        if self._tty and not final:
            self.stream.write("\r" + line.ljust(100)[:100])
        else:
            self.stream.write(("\r" if self._tty else "") + line + "\n")
        self.stream.flush()
