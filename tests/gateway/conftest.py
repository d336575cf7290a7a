"""Fixtures of the gateway tests: the platform (migrated database and a running ingest), a home broker, the
shared SisFall recordings and the shipped fall model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.gateway.support import HomeBroker, home_broker
from tests.platform_procs import Proc, run_eldercare, stack_env

from eldercare.gateway.fall import data, model
from eldercare.platform.db.migrate import migrate
from eldercare.platform.stack.model import StackInfo

SISFALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "sisfall" / "sisfall_50hz.npz"


@pytest.fixture(scope="module")
def platform(stack: StackInfo) -> Iterator[Proc]:
    """The database migrated and an ``eldercare ingest`` storing what gateways send."""
    migrate(stack.database_url)
    with run_eldercare("ingest", ["ingest", "--name", "gateway-tests"], stack_env(stack)) as ingest:
        ingest.wait_for("subscribed, storing", timeout=30)
        yield ingest


@pytest.fixture(scope="session")
def sisfall() -> Path:
    """The shared recordings (a test that needs them fails, never skips, when they are missing)."""
    assert SISFALL.is_file(), f"the shared SisFall data is missing: {SISFALL}"
    return SISFALL


@pytest.fixture(scope="session")
def dataset(sisfall: Path) -> data.Dataset:
    return data.load(sisfall)


@pytest.fixture(scope="session")
def shipped() -> model.FallModel:
    return model.load()


@pytest.fixture
def home() -> Iterator[HomeBroker]:
    with home_broker() as broker:
        yield broker
