"""A bare aiosmtpd server whose handler only replies 250. It is the ceiling
of the SMTP cases and the relay that outbound mail is sent to."""

from __future__ import annotations

import time

from aiosmtpd.controller import Controller

from benchmarks.clients import process_context


class CountingHandler:
    """Reply 250 to every DATA and record the time of the first and last."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None

    async def handle_DATA(self, server, session, envelope) -> str:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        return "250 OK"


def _serve(port: int, ready, stop, output) -> None:
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    output.put((handler.count, handler.first, handler.last))


class SinkProcess:
    """The bare server in a child process, so that it has a core of its own
    as mailgate does. ``stop`` returns (count, first, last) of mails received."""

    def __init__(self, port: int) -> None:
        context = process_context()
        self._ready = context.Event()
        self._stop = context.Event()
        self._output = context.Queue()
        self._result: tuple[int, float | None, float | None] | None = None
        self.process = context.Process(
            target=_serve, args=(port, self._ready, self._stop, self._output), daemon=True,
        )
        self.process.start()
        if not self._ready.wait(30):
            self.process.kill()
            raise TimeoutError(f"aiosmtpd sink on port {port} not ready within 30s")

    def stop(self) -> tuple[int, float | None, float | None]:
        """Stop the server; return what it received. Later calls return the same."""
        if self._result is None:
            self._stop.set()
            self._result = self._output.get(timeout=30)
            self.process.join(30)
        return self._result
