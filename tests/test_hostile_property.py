"""Property: processing a mutated real mail never raises out of the worker
and always ends in a recorded spool state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.actors import Actors, declare_actors
from mailgate.app import App
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.models import Role, SpoolEntry, SpoolState
from store.spool import Envelope, spool_message
from tests.conftest import SHARED
from tests.hostile.mutations import OPERATIONS, mutate

CORPUS = sorted((SHARED / "corpus").glob("*/*.eml")) + sorted((SHARED / "cases").glob("*.eml"))
RECORDED_STATES = {state.value for state in SpoolState} - {SpoolState.PENDING.value}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Actors]]:
    if not CORPUS:
        pytest.skip("the sample mail in ../shared is absent")
    home = tmp_path_factory.mktemp("property")
    app = App.create(load_settings(home=home, domain="support.example.org"))
    add_queue(app.sessions, "Support", "support@support.example.org")
    add_user(app.sessions, "carol", "carol@example.org", Role.FRONTLINE, ["Support"])
    broker = StubBroker()
    yield app, declare_actors(app, broker)
    broker.close()
    app.close()


mutations = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 10**6), st.integers(0, 10**6)),
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index=st.integers(0, 10**6), changes=mutations)
def test_mutated_mail_ends_recorded(worker: tuple[App, Actors], index: int, changes: list) -> None:
    app, actors = worker
    path: Path = CORPUS[index % len(CORPUS)]
    raw = mutate(path.read_bytes(), changes)
    envelope = Envelope(
        mail_from="ana@example.com", rcpt_tos=("support@support.example.org",), source="smtp"
    )
    spool_id = spool_message(app.sessions, raw, envelope)
    # The actor's own function: what a worker thread runs for this row.
    actors.process_spool.fn(spool_id)
    with app.sessions() as session:
        entry = session.get(SpoolEntry, spool_id)
        assert entry.state in RECORDED_STATES
        if entry.state == SpoolState.FAILED.value:
            assert entry.error
