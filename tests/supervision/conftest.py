"""Fixtures of the supervision tests: a database of their own per module, the real app under uvicorn, and
the hand-worked world of ``world.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from tests.registry.support import Client, Database, Server, create_database, data_key, drop_database, login
from tests.supervision.world import PASSWORD, World, build

from eldercare.platform.crypto import Vault
from eldercare.platform.stack.model import StackInfo


@pytest.fixture(scope="module")
def sup_db(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "sup")
    yield db
    drop_database(stack, db)


@pytest.fixture(scope="module")
def world(stack: StackInfo, sup_db: Database) -> World:
    return build(sup_db.url, Vault(data_key(stack)))


@pytest.fixture(scope="module")
def api(stack: StackInfo, sup_db: Database) -> Iterator[str]:
    with Server(database_url=sup_db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        yield server.base


@pytest.fixture(scope="module")
def as_user(api: str, world: World) -> Callable[[str], Client]:
    sessions: dict[str, Client] = {}

    def get(username: str) -> Client:
        if username not in sessions:
            sessions[username] = login(api, username, PASSWORD)
        return sessions[username]

    return get
