"""An automation's definition: what triggers it, the condition, where it goes, when and how often.
Parsed from a TOML table ([orgs.X.automations.ID]) or the API's JSON, into a frozen `Automation`;
every error is a `DefinitionError` naming the key path (`orgs.acme.automations.big-order.wait`, or
`$.if.all[0].spent` inside a rule). Pure: data in, data out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.events import Kind
from core.rules import Rule, RuleError, parse_rule

SEGMENT_ENTERED, SEGMENT_EXITED = "segment.entered", "segment.exited"
CART_ABANDONED, QUOTA_CROSSED, SCHEDULE = "cart.abandoned", "quota.crossed", "schedule"
# Every canonical event kind, and what the books decide.
EVENT_KINDS = tuple(k.value for k in Kind if not k.value.startswith("definition."))  # control events fire nothing
TRIGGERS = (*EVENT_KINDS, CART_ABANDONED, SEGMENT_ENTERED, SEGMENT_EXITED, QUOTA_CROSSED, SCHEDULE)
LOCALES = ("en", "de", "es", "fr", "it")
MESSAGE_PARTS = ("subject", "text", "html", "slack_text", "json")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = ("trigger", "segment", "schedule", "digest", "if", "send", "wait", "cancel_on", "cooldown", "once", "locale",
        "templates")
DIGESTS = ("day", "week")  # a schedule's digest: yesterday, or the seven days to yesterday (core/digest.py)
DEFINITION_TYPE = "automation"  # the type of an automation's control events (core/definitions.py): "automation/<id>"
MAX_WAIT_MS = 30 * 86_400_000  # a pending action is state: a month at most

_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^(\d{1,7})([smhd])$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DefinitionError(ValueError):
    """A definition that does not parse: `path` is where (a config key path or a JSON path), `problem` what."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


@dataclass(frozen=True, slots=True)
class Schedule:
    """A local time of day (minutes after midnight) on some weekdays (0 = Monday), in the org's time zone."""

    minute: int
    days: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Automation:
    id: str
    trigger: str
    send: tuple[str, ...]  # channel ids
    condition: Rule | None = None  # `if`, parsed
    condition_json: Any = None  # `if` as written (the API gives it back)
    segment: str | None = None  # for segment.entered / segment.exited
    schedule: Schedule | None = None  # for schedule
    wait_ms: int = 0
    cancel_on: frozenset[str] = frozenset()
    cooldown_ms: int = 0
    once: bool = False
    locale: str | None = None  # None: the organisation's
    templates: Mapping[str, str] = field(default_factory=dict)  # message part -> template text
    digest: str | None = None  # for schedule: "day" or "week", the digest it sends (notifier/digests.py)

    def to_json(self) -> dict[str, Any]:
        """The definition as the API shows it (and takes it back)."""
        out: dict[str, Any] = {"trigger": self.trigger, "send": list(self.send)}
        if self.segment is not None:
            out["segment"] = self.segment
        if self.schedule is not None:
            m = self.schedule.minute
            out["schedule"] = {"at": f"{m // 60:02d}:{m % 60:02d}", "days": [DAYS[d] for d in self.schedule.days]}
        if self.digest is not None:
            out["digest"] = self.digest
        if self.condition_json is not None:
            out["if"] = self.condition_json
        if self.wait_ms:
            out["wait"] = show_duration(self.wait_ms)
        if self.cancel_on:
            out["cancel_on"] = sorted(self.cancel_on)
        if self.cooldown_ms:
            out["cooldown"] = show_duration(self.cooldown_ms)
        if self.once:
            out["once"] = True
        if self.locale is not None:
            out["locale"] = self.locale
        if self.templates:
            out["templates"] = dict(self.templates)
        return out


def show_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def duration(value: object, at: str) -> int:
    """Milliseconds of "90s", "30m", "4h" or "7d"."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise DefinitionError(at, f"{value!r} is not a duration (write e.g. \"90s\", \"30m\", \"4h\" or \"7d\")")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_automation(automation_id: str, table: object, at: str, *, currency: str, timezone: str,
                     locales: tuple[str, ...] = LOCALES) -> Automation:
    """The Automation a table states; `at` is its key path, used in every error."""
    if not _NAME.match(automation_id):
        raise DefinitionError(at, "automation ids use letters, digits, '-' and '_' only (at most 64)")
    if not isinstance(table, Mapping):
        raise DefinitionError(at, "must be a table (an object)")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise DefinitionError(f"{at}.{unknown[0]}", f"unknown key; the keys are {', '.join(KEYS)}")
    trigger = _trigger(table.get("trigger"), f"{at}.trigger")
    segment = _segment(trigger, table.get("segment"), f"{at}.segment")
    schedule = _schedule(trigger, table.get("schedule"), f"{at}.schedule")
    digest = table.get("digest")
    if digest is not None and (trigger != SCHEDULE or digest not in DIGESTS):
        raise DefinitionError(f"{at}.digest", f'"day" or "week" with trigger = "schedule", got {digest!r}')
    condition = None
    if "if" in table:
        try:
            condition = parse_rule(table["if"], currency=currency, timezone=timezone)
        except RuleError as exc:
            raise DefinitionError(f"{at}.if{exc.path[1:]}", exc.problem) from None
    wait = duration(table["wait"], f"{at}.wait") if "wait" in table else 0
    if wait > MAX_WAIT_MS:
        raise DefinitionError(f"{at}.wait", "at most 30d")
    cancel_on = _kinds(table.get("cancel_on", []), f"{at}.cancel_on")
    if cancel_on and not wait:
        raise DefinitionError(f"{at}.cancel_on", "only means something with a `wait` (it drops a pending send)")
    cooldown = duration(table["cooldown"], f"{at}.cooldown") if "cooldown" in table else 0
    once = table.get("once", False)
    if not isinstance(once, bool):
        raise DefinitionError(f"{at}.once", f"must be true or false, got {once!r}")
    if once and cooldown:
        raise DefinitionError(f"{at}.once", "give `once` or `cooldown`, not both")
    locale = table.get("locale")
    if locale is not None and locale not in locales:
        raise DefinitionError(f"{at}.locale", f"{locale!r} is not one of {', '.join(locales)}")
    return Automation(automation_id, trigger, _send(table.get("send"), f"{at}.send"), condition,
                      table.get("if"), segment, schedule, wait, cancel_on, cooldown, once, locale,
                      _templates(table.get("templates", {}), f"{at}.templates"), digest)


def parse_automations(tables: object, at: str, *, currency: str, timezone: str) -> dict[str, Automation]:
    """Every [AT.ID] table of an organisation's automations."""
    if not isinstance(tables, Mapping):
        raise DefinitionError(at, "must be a table of [" + at + ".ID] tables")
    return {i: parse_automation(i, t, f"{at}.{i}", currency=currency, timezone=timezone) for i, t in tables.items()}


def _trigger(value: object, at: str) -> str:
    if value is None:
        raise DefinitionError(at, f"missing (required): one of {', '.join(TRIGGERS)}")
    if value not in TRIGGERS:
        raise DefinitionError(at, f"{value!r} is not a trigger; the triggers are {', '.join(TRIGGERS)}")
    return str(value)


def _segment(trigger: str, value: object, at: str) -> str | None:
    if trigger in (SEGMENT_ENTERED, SEGMENT_EXITED):
        if not isinstance(value, str) or not _NAME.match(value):
            raise DefinitionError(at, f"{trigger} needs the segment's id, e.g. segment = \"big-spenders\"")
        return value
    if value is not None:
        raise DefinitionError(at, f"only for segment.entered / segment.exited, not {trigger}")
    return None


def _schedule(trigger: str, value: object, at: str) -> Schedule | None:
    if trigger != SCHEDULE:
        if value is not None:
            raise DefinitionError(at, f"only for trigger = \"schedule\", not {trigger}")
        return None
    if not isinstance(value, Mapping):
        raise DefinitionError(at, 'trigger "schedule" needs schedule = { at = "08:00", days = ["mon", ...] }')
    unknown = sorted(set(value) - {"at", "days"})
    if unknown:
        raise DefinitionError(f"{at}.{unknown[0]}", "unknown key; the keys are at, days")
    clock = _CLOCK.match(value["at"]) if isinstance(value.get("at"), str) else None
    if clock is None:
        raise DefinitionError(f"{at}.at", f"{value.get('at')!r} is not a local time HH:MM such as \"08:00\"")
    days = value.get("days", list(DAYS))
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        raise DefinitionError(f"{at}.days", f"a non-empty list of {', '.join(DAYS)}, got {days!r}")
    return Schedule(int(clock.group(1)) * 60 + int(clock.group(2)), tuple(sorted({DAYS.index(d) for d in days})))


def _kinds(value: object, at: str) -> frozenset[str]:
    if not isinstance(value, list) or any(v not in EVENT_KINDS for v in value):
        raise DefinitionError(at, f"a list of event kinds ({', '.join(EVENT_KINDS)}), got {value!r}")
    return frozenset(value)


def _send(value: object, at: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or any(not isinstance(v, str) or not _NAME.match(v) for v in value):
        raise DefinitionError(at, f"a non-empty list of channel ids, e.g. send = [\"ops\"], got {value!r}")
    return tuple(dict.fromkeys(value))


def _templates(value: object, at: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise DefinitionError(at, f"a table of message parts ({', '.join(MESSAGE_PARTS)}) to template texts")
    for part, text in value.items():
        if part not in MESSAGE_PARTS:
            raise DefinitionError(f"{at}.{part}", f"unknown message part; the parts are {', '.join(MESSAGE_PARTS)}")
        if not isinstance(text, str):
            raise DefinitionError(f"{at}.{part}", "must be a template text (a string)")
    from core.automations.messages import check_templates  # messages imports this module

    check_templates(value, at)
    return dict(value)
