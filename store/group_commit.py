"""Group commit for threads that each wait for their own small write.

Each thread hands a unit of work to ``GroupCommit.run`` and blocks until
it is committed. The first thread that finds no commit under way becomes
the leader: it runs every unit waiting at that moment in one transaction
and commits, while the units that arrive meanwhile wait for the next
leader. So N threads share one commit. With SQLite in WAL mode and
``synchronous=FULL`` that is one fsync and one turn of the write lock
instead of N. The threads that share it also stop waiting for each other
in SQLite's busy handler, which sleeps 1 ms, then 2, 5, 10 ms and longer
between its tries. Unlike a writer thread, this needs no thread of its
own, because the callers are threads that must wait anyway.

When a group fails, its units run again one by one, each in a transaction
of its own, so a unit the database rejects fails only its own caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class _Unit:
    """One caller's work and, once it has run, its result or error."""

    def __init__(self, work: Callable[[Session], Any]) -> None:
        self.work = work
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Run the units of work of concurrent callers, several per transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._condition = threading.Condition()
        self._waiting: list[_Unit] = []
        self._writing = False

    def run(self, work: Callable[[Session], Result]) -> Result:
        """Run ``work(session)`` in a transaction shared with other callers
        and return its result once that transaction is committed.

        ``work`` must not commit or roll back, and may run twice: a second
        time alone when its group failed. Raises what ``work`` or the
        commit raised when the unit fails on its own.
        """
        mine = _Unit(work)
        with self._condition:
            self._waiting.append(mine)
            while self._writing and not mine.done:
                self._condition.wait()
            leader = not mine.done
            if leader:
                self._writing = True
                group, self._waiting = self._waiting, []
        if leader:
            try:
                self._run_group(group)
            finally:
                with self._condition:
                    self._writing = False
                    self._condition.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _run_group(self, group: list[_Unit]) -> None:
        try:
            self._run_together(group)
        finally:
            # After a BaseException (a worker's time limit, KeyboardInterrupt)
            # no caller may be left waiting for a unit that never runs.
            for unit in group:
                if not unit.done:
                    unit.error = RuntimeError("the group commit was interrupted")
                    unit.done = True

    def _run_together(self, group: list[_Unit]) -> None:
        try:
            with self.sessions.begin() as session:
                results = [unit.work(session) for unit in group]
        except Exception as error:
            if len(group) == 1:
                group[0].error, group[0].done = error, True
                return
            log.warning(
                "group commit of %d units failed; running them one by one",
                len(group), exc_info=True,
            )
            for unit in group:
                self._run_alone(unit)
            return
        for unit, result in zip(group, results, strict=True):
            unit.result, unit.done = result, True

    def _run_alone(self, unit: _Unit) -> None:
        try:
            with self.sessions.begin() as session:
                unit.result = unit.work(session)
        except Exception as error:  # handed to the caller, which raises it
            unit.error = error
        unit.done = True
