"""The thread a run makes its ERP posts on, so that the run writes down what one batch
did while the ERP takes the next (issue 13 item 7).

A batch's database work (its attempts with their chain, the records, the run's counters)
took about as long as the ERP's answer; one after the other, a sync ran at a third of the
speed of a bare loop of posts. The lane overlaps the two: never more than one post at a
time, and only posts, so the order and the number of requests the ERP sees are as before.

The lane never touches the database: the run's connection, its transactions and its
locks stay on the run's own thread. A lane call that tried would raise. Where pacing
takes its slots in the database (integrations/pacing.py) the lane makes its calls in
line instead, on the run's thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from types import TracebackType
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")


class DatabaseFromLane(RuntimeError):
    """An ERP call on the lane used the database: the run's thread must make that call."""


class Lane:
    def __init__(self, concurrent: bool) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="erp-lane") if concurrent else None
        )

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        """Start `call(*args)`: on the lane's thread, or here and now when in line.

        On the lane, in a copy of the caller's context variables: the ERP calls' log lines
        name the run and the organization (core/logcontext.py) as the run's own do.
        """
        if self._pool is not None:
            context = contextvars.copy_context()
            return self._pool.submit(context.run, _without_database, call, *args)
        done: Future[T] = Future()
        try:
            done.set_result(call(*args))
        except BaseException as error:  # handed to whoever waits on it, as the pool does
            done.set_exception(error)
        return done

    def close(self) -> None:
        """Wait for the call under way: nothing of the run is left posting behind it."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Lane:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _without_database(call: Callable[..., T], *args: Any) -> T:
    try:
        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(_refuse))
            return call(*args)
    finally:
        # This thread's own: a call that tried the database may have connected first.
        connections.close_all()


def _refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    raise DatabaseFromLane(f"an ERP call on the lane used the database: {sql[:80]}")
