"""Progress bars for long commands (``recembed bundle``, ``export``, ``index build``, evaluation): one helper.

:class:`ProgressBar` is a rich progress bar that stays hidden unless the work lasts longer than ``delay``
seconds (default 1 s: quick commands print nothing extra) and the console is a terminal (no bar in logs, pipes
or CI output). It is transient: the line disappears when the work is done, leaving only the command's summary.
``enabled=False`` (``--no-progress``) hides it always. The bar counts either units (``advance`` /
``update``: users exported, users evaluated) or named steps (``step``: writing the model, building the index).

    with ProgressBar("export", total=len(users), enabled=not no_progress) as bar:
        for batch in ...:
            bar.advance(len(batch))

The training loop keeps its own bar (it shows loss, throughput and the validation metric per epoch).
"""

from __future__ import annotations

import threading
from typing import Any, Self

DELAY_SECONDS = 1.0


class ProgressBar:
    def __init__(self, description: str, total: int | None = None, *, enabled: bool = True,
                 delay: float | None = None, console: Any = None) -> None:
        from rich.console import Console

        self.description, self.total = description, total
        self.console = console if console is not None else Console(stderr=True)
        self.enabled = bool(enabled) and self.console.is_terminal
        self.delay = DELAY_SECONDS if delay is None else delay
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self._steps = 0
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        if not self.enabled:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=self.console, transient=True)
        self._task = self._bar.add_task(self.description, total=self.total)
        if self.delay <= 0:
            self._show()
        else:  # shown only if the work is still running after `delay` seconds (even without any update)
            self._timer = threading.Timer(self.delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _show(self) -> None:
        with self._lock:
            if not self._closed and not self._started:
                self._bar.start()
                self._started = True

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._started:
                self._bar.stop()

    @property
    def shown(self) -> bool:
        """Whether the bar was displayed (the work outlasted ``delay`` on a terminal)."""
        return self._started

    # -- updates --------------------------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n)

    def update(self, completed: int, total: int | None = None) -> None:
        """Set the count done (and the total): the ``progress(done, total)`` callbacks of the library."""
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, **({"total": total} if total is not None else {}))

    def step(self, name: str) -> None:
        """Start the next named step: the previous one counts as done; the bar reads ``description: name``."""
        if self._bar is not None:
            total = self.total if self.total is None or self._steps < self.total else self._steps + 1
            self._bar.update(self._task, completed=self._steps, total=total,
                             description=f"{self.description}: {name}")
        self._steps += 1
