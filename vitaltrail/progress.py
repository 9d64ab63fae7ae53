"""Progress on the terminal that log lines do not overwrite (and that does not overwrite them).

rich draws the live line; while it is shown, log records go through rich's stderr proxy, which
prints them above the line. Off a terminal (CI, a pipe, docker logs) rich draws nothing until
the end, where it prints the final state once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class LiveProgress:
    """One task's bar and a free-text status beside it."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: float, status: str) -> None:
        self._progress.update(self._task, completed=completed, status=status)


@contextmanager
def live_progress(
    description: str, total: float | None, console: Console | None = None
) -> Iterator[LiveProgress]:
    """Show ``description``, a bar to ``total`` (None: no bar) and a status, until the block ends."""
    columns = [TextColumn("{task.description}"), TimeElapsedColumn()]
    if total is not None:
        columns.insert(1, BarColumn(bar_width=24))
    progress = Progress(
        *columns,
        TextColumn("{task.fields[status]}"),
        console=console or Console(stderr=True),
        redirect_stderr=True,
        redirect_stdout=False,
    )
    with progress:
        task = progress.add_task(description, total=total, status="")
        # Log handlers hold the stderr they were made with; point them at rich's proxy for now.
        moved = [
            (handler, handler.setStream(sys.stderr))
            for handler in logging.getLogger().handlers
            if type(handler) is logging.StreamHandler and handler.stream is not sys.stderr
        ]
        try:
            yield LiveProgress(progress, task)
        finally:
            for handler, stream in moved:
                handler.setStream(stream)
