"""The change-feed record of an automation defined or deleted through the API (a control event in the
log, flows/automations.py). Registered in core/records.py like every kind.

    automation  key <automation id>  day ""

The gateway lists the config's automations with these over them (ws_gateway/automations.py).
"""

from __future__ import annotations

from msgspec import Raw

from core.records import RecordKind, Value


class AutomationDefinition(Value, frozen=True):
    """An automation as the API defined it (`definition`: its JSON, as GET shows it), or deleted."""

    KIND = RecordKind.AUTOMATION
    id: str
    definition: Raw  # JSON: {"trigger", "send", ...} (core/automations/definition.py Automation.to_json)
    deleted: bool = False
