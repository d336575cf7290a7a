"""Fixtures of the subsidy tests: a database of their own per module and the real app under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.registry.support import Database, Server, create_database, data_key, drop_database

from eldercare.platform.stack.model import StackInfo


@pytest.fixture(scope="module")
def sub_db(stack: StackInfo) -> Iterator[Database]:
    db = create_database(stack, "subsidy")
    yield db
    drop_database(stack, db)


@pytest.fixture(scope="module")
def api(stack: StackInfo, sub_db: Database) -> Iterator[str]:
    with Server(database_url=sub_db.url, key=data_key(stack), state_dir=stack.state_dir) as server:
        yield server.base
