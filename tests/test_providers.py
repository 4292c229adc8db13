"""The providers are listed once (core.config.PROVIDERS): every one has its way in and its metrics."""

import pytest

from core.config import PROVIDERS
from ingest.app import ADAPTERS
from ingest.metrics import _TOPICS
from storepulse.commands.sync import SYNCED

pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone


def test_every_provider_has_an_adapter_or_is_the_events_api() -> None:
    assert (*ADAPTERS, "events") == PROVIDERS
    assert set(_TOPICS) == set(PROVIDERS) and set(SYNCED) <= set(ADAPTERS)
