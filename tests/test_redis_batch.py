"""Batched enqueue on a real Redis. Every message of a batch arrives once
and in order, through one pipeline instead of one script call each, also
when Redis has lost its scripts. Enqueues outside a batch still go out at
once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from mailgate.redis_batch import enqueue_batch
from tests.process import free_port
from tests.redis_server import PrivateRedis

QUEUE = "batch"
MESSAGE_COUNT = 50


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    namespace = f"mailgate-test-{uuid.uuid4().hex[:12]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)
    yield broker
    clean_up(broker)


def record_actor(broker: dramatiq.Broker) -> dramatiq.Actor:
    def record(number: int) -> None:
        pass

    return dramatiq.actor(record, broker=broker, actor_name="record", queue_name=QUEUE)


def clean_up(broker: RedisBroker) -> None:
    keys = list(broker.client.scan_iter(f"{broker.namespace}*"))
    if keys:
        broker.client.delete(*keys)
    broker.close()


def queued_args(broker: RedisBroker, count: int) -> list[tuple[Any, ...]]:
    """Fetch ``count`` messages from the queue, ack them, return their args."""
    consumer = broker.consume(QUEUE, prefetch=count, timeout=200)
    found: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 10
    try:
        while len(found) < count and time.monotonic() < deadline:
            message = next(consumer)
            if message is not None:
                found.append(tuple(message.args))
                consumer.ack(message)
    finally:
        consumer.close()
    return found


def count_dispatch_calls(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count EVALSHA calls of the dispatch script sent outside a pipeline."""
    calls: list[int] = []
    dispatch_sha = broker.scripts["dispatch"].sha
    execute_command = broker.client.execute_command

    def counting(*args: Any, **options: Any) -> Any:
        if args[:2] == ("EVALSHA", dispatch_sha):
            calls.append(1)
        return execute_command(*args, **options)

    monkeypatch.setattr(broker.client, "execute_command", counting)
    return calls


def test_batch_arrives_in_order(broker: RedisBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    actor = record_actor(broker)
    direct_calls = count_dispatch_calls(broker, monkeypatch)
    enqueue_batch(actor, [(number,) for number in range(MESSAGE_COUNT)])
    assert direct_calls == []
    assert queued_args(broker, MESSAGE_COUNT) == [(number,) for number in range(MESSAGE_COUNT)]
    assert broker.client.llen(f"{broker.namespace}:{QUEUE}") == 0


def test_send_after_batch_not_held(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = record_actor(broker)
    enqueue_batch(actor, [(1,), (2,)])
    direct_calls = count_dispatch_calls(broker, monkeypatch)
    actor.send(3)
    assert len(direct_calls) == 1
    assert queued_args(broker, 3) == [(1,), (2,), (3,)]


def test_batch_loads_lost_script(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    broker = RedisBroker(url=server.url, namespace="mailgate-test-noscript")
    try:
        actor = record_actor(broker)
        assert broker.client.script_exists(broker.scripts["dispatch"].sha) == [False]
        enqueue_batch(actor, [(number,) for number in range(5)])
        assert queued_args(broker, 5) == [(number,) for number in range(5)]
        assert broker.client.llen(f"{broker.namespace}:{QUEUE}") == 0
    finally:
        broker.close()
        server.stop()


def test_single_message_sent_directly(
    broker: RedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = record_actor(broker)
    direct_calls = count_dispatch_calls(broker, monkeypatch)
    enqueue_batch(actor, [(7,)])
    assert len(direct_calls) == 1
    assert queued_args(broker, 1) == [(7,)]


def test_unreachable_redis_raises() -> None:
    broker = RedisBroker(
        url=f"redis://127.0.0.1:{free_port()}/0", namespace="mailgate-test-unreachable",
        socket_connect_timeout=1,
    )
    actor = record_actor(broker)
    try:
        with pytest.raises(redis.ConnectionError):
            enqueue_batch(actor, [(1,), (2,)])
    finally:
        broker.close()


def test_stub_broker_sends_each() -> None:
    broker = StubBroker()
    actor = record_actor(broker)
    enqueue_batch(actor, [(1,), (2,), (3,)])
    queue = broker.queues[QUEUE]
    assert queue.qsize() == 3
