"""Enqueue many Dramatiq messages to Redis in one round trip.

Dramatiq's RedisBroker (checked against 2.2) enqueues each message with
its own EVALSHA of the broker's dispatch script, so N messages cost N
round trips to Redis, and it has no batch enqueue (``group`` enqueues its
messages one by one too). ``enqueue_batch`` still calls
``broker.enqueue`` for each message, so message ids and middleware hooks
stay Dramatiq's own, but the EVALSHA calls of the calling thread go into
one Redis pipeline that is sent at the end.

This relies on ``RedisBroker.scripts["dispatch"]`` being a redis-py
``Script`` called as ``dispatch(args=..., keys=...)``. With any other
broker, or a dispatch script of another shape, the messages are sent one
by one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

log = logging.getLogger(__name__)

_install_lock = threading.Lock()


class _PipelinedDispatch:
    """The broker's dispatch script: queued as EVALSHA on the calling
    thread's open pipeline if it has one, and run at once otherwise."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.local = threading.local()

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        pipeline: Pipeline | None = getattr(self.local, "pipeline", None)
        if client is not None or pipeline is None:
            return self.script(keys=keys, args=args, client=client)
        keys = list(keys or ())
        return pipeline.evalsha(self.script.sha, len(keys), *keys, *(args or ()))

    def __getattr__(self, name: str) -> Any:
        # Anything else (``sha``, ``registered_client``) is the wrapped Script's.
        if name in ("script", "local"):
            raise AttributeError(name)
        return getattr(self.script, name)


def _pipelined_dispatch(broker: dramatiq.Broker) -> _PipelinedDispatch | None:
    """Return the broker's dispatch wrapper, installing it on first use, or
    None when the broker cannot enqueue through a pipeline."""
    if not isinstance(broker, RedisBroker):
        return None
    scripts = getattr(broker, "scripts", None)
    if not isinstance(scripts, dict):
        return None
    with _install_lock:
        dispatch = scripts.get("dispatch")
        if isinstance(dispatch, _PipelinedDispatch):
            return dispatch
        if not isinstance(dispatch, Script):
            return None
        wrapper = _PipelinedDispatch(dispatch)
        scripts["dispatch"] = wrapper
        return wrapper


def enqueue_batch(actor: dramatiq.Actor, arguments: list[tuple[Any, ...]]) -> None:
    """Enqueue one message to ``actor`` per tuple of positional arguments.

    On a RedisBroker two or more messages go to Redis in one pipeline, one
    round trip. Raises what Redis raised. Some messages of the batch may
    then be enqueued and others not. Dramatiq's ``after_enqueue`` hooks
    have run for all of them by then.
    """
    dispatch = _pipelined_dispatch(actor.broker)
    if dispatch is None or len(arguments) < 2:
        for args in arguments:
            actor.send(*args)
        return
    try:
        _send_pipelined(actor, dispatch, arguments)
    except NoScriptError:
        # Redis has lost its script cache (a restart or SCRIPT FLUSH), so
        # no EVALSHA of the batch ran: load the script and send them again.
        log.info("Redis has no dispatch script; loading it and enqueueing again")
        dispatch.script.registered_client.script_load(dispatch.script.script)
        _send_pipelined(actor, dispatch, arguments)


def _send_pipelined(
    actor: dramatiq.Actor, dispatch: _PipelinedDispatch, arguments: list[tuple[Any, ...]]
) -> None:
    pipeline = actor.broker.client.pipeline(transaction=False)
    dispatch.local.pipeline = pipeline
    try:
        for args in arguments:
            actor.send(*args)
    finally:
        dispatch.local.pipeline = None
    pipeline.execute()
