"""Progress for long phases that reads well on a terminal and in a batch-job log.

``progress(iterable_or_total, desc, unit)`` is a tqdm-like bar (iterate it, or ``update(n)`` it, and
use it as a context manager). Where it reports is chosen by ``SPHERE_PROGRESS``:

* ``tqdm``: a tqdm bar on stderr;
* ``log``: plain lines through :mod:`logging` (logger ``editors.progress``, level INFO), at most one
  every ``SPHERE_PROGRESS_INTERVAL`` seconds (default 30) plus the first and the last, e.g.
  ``evaluating 15000 records (pre): 1200/15000 prompts, 35.0 prompt/s, eta 6 min``; a SLURM log
  gets readable lines instead of one huge line of tqdm's carriage returns;
* ``off``: nothing;
* ``auto`` (the default): ``tqdm`` when stderr is a terminal, else ``log``.

Updates are meant per batch (of prompts, requests, texts), never per token: a log-mode update is a
clock read and a comparison. It lives in ``editors`` so that editors may use it; ``sphere`` imports
it from here (imports point sphere → editors, never back).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

log = logging.getLogger("editors.progress")

MODES = ("auto", "tqdm", "log", "off")
DEFAULT_INTERVAL_S = 30.0

_mode_override: str | None = None


def set_mode(mode: str | None) -> None:
    """Choose the mode for this process (``None``: back to ``SPHERE_PROGRESS`` / auto)."""
    global _mode_override
    if mode is not None and mode not in MODES:
        raise ValueError(f"progress mode {mode!r}; expected one of {MODES}")
    _mode_override = mode


def resolve_mode(mode: str | None = None, stream: Any = None) -> str:
    """``tqdm``, ``log`` or ``off``: ``mode`` if given, else ``set_mode``'s, else ``SPHERE_PROGRESS``,
    else auto (tqdm when ``stream``, stderr by default, is a terminal)."""
    chosen = (mode or _mode_override or os.environ.get("SPHERE_PROGRESS") or "auto").strip().lower()
    if chosen not in MODES:
        raise ValueError(f"SPHERE_PROGRESS={chosen!r}; expected one of {MODES}")
    if chosen == "auto":
        stream = sys.stderr if stream is None else stream
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):  # closed or replaced streams
            tty = False
        return "tqdm" if tty else "log"
    return chosen


def _interval() -> float:
    raw = os.environ.get("SPHERE_PROGRESS_INTERVAL")
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        return max(0.0, float(raw))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _rate(r: float) -> str:
    return f"{r:.1f}" if r < 100 else f"{r:.0f}"


class Progress(Generic[T]):
    """A bar in one of the modes (see the module docstring); build it with :func:`progress`.

    ``min_s``: a phase shorter than this shows nothing (log mode: the first line comes at the first
    update after ``min_s`` seconds, and the last only if a first was written; tqdm: its ``delay``),
    for phases repeated many times in a run (one batch's z optimisation). ``interval``: seconds
    between log lines (default ``SPHERE_PROGRESS_INTERVAL`` or 30). ``clock``: for tests.
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        initial: int = 0,
        mode: str | None = None,
        disable: bool = False,
        leave: bool = True,
        min_s: float = 0.0,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        level: int = logging.INFO,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.mode = "off" if disable else resolve_mode(mode)
        self.interval = _interval() if interval is None else interval
        self._clock, self._log, self._level = clock, logger or log, level
        self._postfix = ""
        self._closed = False
        self._bar: Any = None
        self._initial = initial
        self._min_s = min_s
        self._logged = False
        self._t0 = self._last = clock()
        if self.mode == "tqdm":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, delay=min_s)
        elif self.mode == "log" and min_s <= 0:
            self._emit()  # the first line

    # -- the tqdm-like surface --------------------------------------------------------------------
    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("progress(total=...) is not iterable; call update(n)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log":
            now = self._clock()
            if self._logged:
                if now - self._last >= self.interval and (self.total is None or self.n < self.total):
                    self._emit(now)
            elif now - self._t0 >= self._min_s:
                self._emit(now)  # the first line of a phase that outlasted ``min_s``

    def set_postfix(self, **values: Any) -> None:
        """Extra ``key=value`` shown after the count (e.g. the current loss); floats as 4 significant digits."""
        text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        self.set_postfix_str(text)

    def set_postfix_str(self, text: str) -> None:
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and self._logged:
            self._emit(final=True)  # the last line

    # -- log mode ---------------------------------------------------------------------------------
    def line(self, now: float | None = None, final: bool = False) -> str:
        """The log line for the current count."""
        now = self._clock() if now is None else now
        elapsed = now - self._t0
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else None
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{count} {self.unit}s"]
        if final:
            parts.append(
                f"done in {_duration(elapsed)}" + (f" ({_rate(rate)} {self.unit}/s)" if rate else "")
            )
        elif rate:
            parts.append(f"{_rate(rate)} {self.unit}/s")
            if self.total is not None and self.n < self.total:
                parts.append(f"eta {_duration((self.total - self.n) / rate)}")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

    def _emit(self, now: float | None = None, final: bool = False) -> None:
        now = self._clock() if now is None else now
        self._last, self._logged = now, True
        self._log.log(self._level, "%s", self.line(now, final))


@overload
def progress(
    iterable_or_total: Iterable[T], desc: str = ..., unit: str = ..., **kwargs: Any
) -> Progress[T]: ...
@overload
def progress(
    iterable_or_total: int | None = ..., desc: str = ..., unit: str = ..., **kwargs: Any
) -> Progress[Any]: ...
def progress(
    iterable_or_total: Iterable[T] | int | None = None, desc: str = "", unit: str = "it", **kwargs: Any
) -> Progress[Any]:
    """A :class:`Progress` over an iterable (iterate it) or a total count (``update`` it)."""
    if iterable_or_total is None or isinstance(iterable_or_total, int):
        return Progress(None, total=iterable_or_total, desc=desc, unit=unit, **kwargs)
    return Progress(iterable_or_total, desc=desc, unit=unit, **kwargs)
