"""From JSON-like data to a typed rule, or a `RuleError` that names the JSON path and what is wrong.

    parse_rule({"all": [{"orders": {"gte": 3}}, {"spent": {"gte": "5000.00", "within": "90d"}}]},
               currency="EUR", timezone="Europe/Berlin")

The grammar (docs/segments.md has the meaning of each criterion):

    rule       = {"all": [rule, ...]} | {"any": [rule, ...]} | {"not": rule} | condition
    condition  = {criterion: {comparison: value, qualifier: value, ...}}   one criterion, one comparison
    comparison = eq | ne | gt | gte | lt | lte | between: [a, b] | in: [...] | exists: true/false
                 (time criteria: before | after | on | exists)
    qualifier  = within: "30m" | "24h" | "90d", since / until: "YYYY-MM-DD" (local days, both included),
                 product / category / brand (for bought_*), name (for attribute)

Money is a decimal string in the organisation's currency ("5000.00"), held as integer minor units.
Dates are days in the organisation's time zone, held as the instant (ms) of a local midnight.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from difflib import get_close_matches
from zoneinfo import ZoneInfo

from core.clock import local_midnight
from core.money import exponent, to_minor
from core.rules.criteria import CRITERIA, ITEM_FIELDS, Criterion, Kind, Subject, Value
from core.rules.tree import (
    EVER,
    After,
    AllOf,
    AnyEntry,
    AnyOf,
    Attribute,
    Before,
    Compare,
    Current,
    Exists,
    InSegment,
    ItemFilter,
    Label,
    Moment,
    Not,
    On,
    Op,
    Rule,
    Scalar,
    Sum,
    Tally,
    TimeTest,
    Window,
)

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
MAX_DAYS = 3660  # ten years: a window longer than that would keep every order for ever
MAX_DEPTH = 12  # all / any / not inside one another
MAX_CONDITIONS = 64  # per rule: each costs evaluation time on every event that touches the segment
MAX_VALUES = 1000  # in a list of `in`
_UNIT_MS = {"m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
_DURATION = re.compile(r"^(\d{1,7})([mhd])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_AMOUNT = re.compile(r"^-?\d{1,15}(\.\d+)?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

COMPARISONS = tuple(op.value for op in Op)
TIME_TESTS = ("before", "after", "on", "exists")
WINDOW_QUALIFIERS = ("within", "since", "until")


class RuleError(ValueError):
    """A rule that does not parse: `path` is where in the JSON (`$.all[1].spent.within`), `problem` what."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def parse_rule(data: object, *, currency: str, timezone: str, subject: Subject = Subject.CUSTOMER) -> Rule:
    """The typed rule that `data` (parsed JSON) states, for an organisation's currency and time zone.

    Raises RuleError naming the JSON path and what is wrong.
    """
    return _Parser(currency, ZoneInfo(timezone), subject).rule(data, "$")


def child_path(path: str, key: str | int) -> str:
    """`$.all` + 1 -> `$.all[1]`; `$` + "spent" -> `$.spent`; a key that is no identifier -> `$["a b"]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def show(value: object) -> str:
    """A value as the user wrote it (JSON), cut to a readable length."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _quoted(names: Sequence[str], last: str = "or") -> str:
    """"a", "b" or "c"."""
    quoted = [f'"{n}"' for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {last} {quoted[-1]}"


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = get_close_matches(word, choices, n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Parser:
    def __init__(self, currency: str, tz: ZoneInfo, subject: Subject) -> None:
        self.currency, self.tz, self.subject = currency, tz, subject
        self.criteria = CRITERIA[subject]
        self.decimals = exponent(currency)
        self.conditions = 0

    # --- rules ---------------------------------------------------------------------------------

    def rule(self, data: object, path: str, depth: int = 0) -> Rule:
        if depth > MAX_DEPTH:
            raise RuleError(path, f"rules nest at most {MAX_DEPTH} levels deep (all, any, not)")
        if not isinstance(data, dict):
            raise RuleError(path, f'a rule is an object such as {{"orders": {{"gte": 1}}}}, got {show(data)}')
        if not data:
            raise RuleError(path, 'the rule is empty: name a criterion such as "orders", '
                                  'or combine rules with "all", "any" or "not"')
        if len(data) > 1:
            raise RuleError(path, f'one criterion per object, got {_quoted(list(data), "and")}: '
                                  'combine conditions with {"all": [...]} or {"any": [...]}')
        [(key, value)] = data.items()
        inner = child_path(path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise RuleError(inner, f'"{key}" takes a non-empty list of rules, got {show(value)}')
            rules = tuple(self.rule(r, child_path(inner, i), depth + 1) for i, r in enumerate(value))
            return AllOf(rules) if key == "all" else AnyOf(rules)
        if key == "not":
            return Not(self.rule(value, inner, depth + 1))
        criterion = self.criteria.get(key)
        if criterion is None:
            names = ["all", "any", "not", *self.criteria]
            raise RuleError(path, f'unknown criterion "{key}"{_suggest(key, names)}; '
                                  f'a {self.subject.value} rule uses {_quoted(list(self.criteria))}')
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise RuleError(path, f"a rule has at most {MAX_CONDITIONS} conditions: "
                                  "split it into segments and combine them with in_segment")
        return self.condition(criterion, value, inner)

    def condition(self, c: Criterion, body: object, path: str) -> Rule:
        if not isinstance(body, dict):
            example = self.example(c)
            raise RuleError(path, f"expected an object with one comparison, such as {example}, got {show(body)}")
        comparisons = TIME_TESTS if c.kind is Kind.MOMENT else COMPARISONS
        qualifiers = self.qualifiers(c)
        for key in body:
            if key not in comparisons and key not in qualifiers:
                raise RuleError(child_path(path, key), self.misplaced(c, key, comparisons))
        found = [k for k in body if k in comparisons]
        if not found:
            raise RuleError(path, f"needs one comparison ({_quoted(c.comparisons)}), such as {self.example(c)}")
        if len(found) > 1:
            hint = ": use between: [low, high]" if {"gt", "gte"} & set(found) and {"lt", "lte"} & set(found) else \
                ': combine conditions with {"all": [...]} or {"any": [...]}'
            raise RuleError(path, f"one comparison per condition, got {_quoted(found, 'and')}{hint}")
        op = found[0]
        where = child_path(path, op)
        if op not in c.comparisons:
            raise RuleError(where, self.misplaced(c, op, comparisons))
        if c.kind is Kind.MOMENT:
            return Moment(c.name, self.time_test(op, body[op], where))
        compare = Compare(Op(op), self.operand(c, Op(op), body[op], where))
        if c.kind is Kind.TALLY:
            return Tally(c.name, Sum(c.terms, self.window(body, path), self.item(c, body, path)), compare)
        if c.kind is Kind.ANY_ENTRY:
            return AnyEntry(c.name, c.stream, compare, self.window(body, path))
        if c.kind is Kind.CURRENT:
            return Current(c.name, compare)
        if c.kind is Kind.LABEL:
            return Label(c.name, compare)
        if c.kind is Kind.SEGMENT:
            return InSegment(compare)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise RuleError(child_path(path, "name"), 'needs the field\'s "name", such as {"name": "age", "gte": 18}')
        return Attribute(name, compare)

    def qualifiers(self, c: Criterion) -> tuple[str, ...]:
        if c.kind is Kind.ATTRIBUTE:
            return ("name",)
        return (*WINDOW_QUALIFIERS, c.item) if c.item else WINDOW_QUALIFIERS if c.windowed else ()

    def misplaced(self, c: Criterion, key: str, comparisons: Sequence[str]) -> str:
        """Why `key` cannot stand in a condition on `c`."""
        if key in COMPARISONS or key in TIME_TESTS:
            return f'"{key}" does not apply to {c.name}: use {_quoted(c.comparisons)}'
        if key in WINDOW_QUALIFIERS:
            why = " (it is a time: compare it with before, after or on)" if c.kind is Kind.MOMENT else ""
            return f'"{key}" does not apply to {c.name}{why}'
        if key in ITEM_FIELDS:
            if c.item:
                return f'{c.name} counts orders with a {c.item}: to count a {key} use bought_{key}'
            return f'"{key}" applies to bought_{key} only'
        known = [*comparisons, *self.qualifiers(c)]
        return f'unknown key "{key}"{_suggest(key, known)} in a condition on {c.name}'

    # --- values --------------------------------------------------------------------------------

    def operand(self, c: Criterion, op: Op, value: object, path: str) -> Scalar | tuple[Scalar, ...]:
        assert c.value is not None
        if op is Op.EXISTS:
            if not isinstance(value, bool):
                raise RuleError(path, f"exists takes true or false, got {show(value)}")
            return value
        if op is Op.IN:
            if not isinstance(value, list) or not value:
                raise RuleError(path, f"in takes a non-empty list of values, got {show(value)}")
            if len(value) > MAX_VALUES:
                raise RuleError(path, f"in takes at most {MAX_VALUES} values, got {len(value)}")
            return tuple(self.scalar(c.value, v, child_path(path, i)) for i, v in enumerate(value))
        if op is Op.BETWEEN:
            if not isinstance(value, list) or len(value) != 2:
                raise RuleError(path, f"between takes [low, high], got {show(value)}")
            low, high = (self.scalar(c.value, v, child_path(path, i)) for i, v in enumerate(value))
            if isinstance(low, str) != isinstance(high, str) or isinstance(low, bool) or isinstance(high, bool):
                raise RuleError(path, f"between takes two numbers or two texts, got {show(value)}")
            if low > high:  # type: ignore[operator]
                raise RuleError(path, f"the low end {show(value[0])} is above the high end {show(value[1])}")
            return (low, high)
        scalar = self.scalar(c.value, value, path)
        if op in (Op.GT, Op.GTE, Op.LT, Op.LTE) and isinstance(scalar, bool):
            raise RuleError(path, f"{op.value} compares numbers or texts, not true/false")
        return scalar

    def scalar(self, kind: Value, value: object, path: str) -> Scalar:
        if kind is Value.COUNT:
            if not _is_whole(value) or value < 0:  # type: ignore[operator]
                raise RuleError(path, f"expected a whole number of 0 or more, got {show(value)}")
            return value  # type: ignore[return-value]
        if kind is Value.MONEY:
            return self.money(value, path)
        if kind is Value.NAME:
            if not isinstance(value, str) or not value:
                raise RuleError(path, f"expected a name (a non-empty text), got {show(value)}")
            return value
        if isinstance(value, bool | str) or _is_whole(value):
            return value  # type: ignore[return-value]
        if isinstance(value, float) and math.isfinite(value):
            return Decimal(repr(value))  # a JSON number with a fraction: exactly as written
        raise RuleError(path, f"expected a text, a number or true/false, got {show(value)}")

    def money(self, value: object, path: str) -> int:
        example = self.amount_example
        if not isinstance(value, str):
            raise RuleError(path, f'write an amount as a text in {self.currency}, such as "{example}", '
                                  f"got {show(value)}")
        if not _AMOUNT.match(value):
            raise RuleError(path, f'{show(value)} is not an amount: write digits and a dot, such as "{example}"')
        decimals = -Decimal(value).as_tuple().exponent  # type: ignore[operator]
        if decimals > self.decimals:
            allows = "no decimals" if self.decimals == 0 else f"{self.decimals} decimals"
            raise RuleError(path, f"{show(value)} has more decimals than {self.currency} allows ({allows})")
        return to_minor(value, self.currency)

    # --- time ----------------------------------------------------------------------------------

    def time_test(self, op: str, value: object, path: str) -> TimeTest:
        if op == "exists":
            if not isinstance(value, bool):
                raise RuleError(path, f"exists takes true or false, got {show(value)}")
            return Exists(value)
        if op == "on":
            if isinstance(value, str) and _DATE.match(value):
                day = self.calendar_day(value, path)
                return On(start=local_midnight(day, self.tz), end=self.day_end(day))
            days = _DURATION.match(value) if isinstance(value, str) else None
            if days is None or days.group(2) != "d":
                raise RuleError(path, f'on takes whole days ago, such as "0d" (today) or "2d", '
                                      f'or a date such as "2024-01-31", got {show(value)}')
            return On(days_ago=self.days(int(days.group(1)), path))
        if isinstance(value, str) and _DATE.match(value):
            day = self.calendar_day(value, path)
            return Before(at=local_midnight(day, self.tz)) if op == "before" else After(at=self.day_end(day))
        ago = self.duration(value, path, also='or a date such as "2024-01-31"')
        return Before(ago=ago) if op == "before" else After(ago=ago)

    def window(self, body: dict[str, object], path: str) -> Window:
        within = self.duration(body["within"], child_path(path, "within")) if "within" in body else None
        since = until = None
        if "since" in body:
            since = local_midnight(self.calendar_day(body["since"], child_path(path, "since")), self.tz)
        if "until" in body:
            until = self.day_end(self.calendar_day(body["until"], child_path(path, "until")))
        if since is not None and until is not None and since >= until:
            raise RuleError(child_path(path, "until"), f'{show(body["until"])} is before since {show(body["since"])}')
        return Window(within, since, until) if (within, since, until) != (None, None, None) else EVER

    def item(self, c: Criterion, body: dict[str, object], path: str) -> ItemFilter | None:
        if not c.item:
            return None
        name = body.get(c.item)
        if not isinstance(name, str) or not name:
            where = child_path(path, c.item) if c.item in body else path
            raise RuleError(where, f'needs the {c.item} (its id as the shop sends it), '
                                   f'such as {{"{c.item}": "{_ITEM_EXAMPLES[c.item]}", "gte": 1}}')
        return ItemFilter(ITEM_FIELDS[c.item], name)

    def duration(self, value: object, path: str, also: str = "") -> int:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise RuleError(path, f"{show(value)} is not a duration (use 30m, 24h or 90d{', ' + also if also else ''})")
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:
            raise RuleError(path, f"{show(value)} is no time at all: use at least 1{unit}")
        ms = amount * _UNIT_MS[unit]
        if ms > MAX_DAYS * DAY_MS:
            raise RuleError(path, f"{show(value)} is longer than {MAX_DAYS} days")
        return ms

    def days(self, n: int, path: str) -> int:
        if n > MAX_DAYS:
            raise RuleError(path, f"{n} days is longer than {MAX_DAYS} days")
        return n

    def calendar_day(self, value: object, path: str) -> date:
        if isinstance(value, str) and _DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise RuleError(path, f"{show(value)} is not a date (use YYYY-MM-DD, such as 2024-01-31)")

    def day_end(self, day: date) -> int:
        return local_midnight(date.fromordinal(day.toordinal() + 1), self.tz)

    def example(self, c: Criterion) -> str:
        """A condition on `c` that parses, for error messages."""
        if c.kind is Kind.MOMENT:
            return '{"before": "90d"}'
        if c.kind is Kind.ATTRIBUTE:
            return '{"name": "age", "gte": 18}'
        if c.item:
            return f'{{"{c.item}": "{_ITEM_EXAMPLES[c.item]}", "gte": 1}}'
        if c.value is Value.MONEY:
            return f'{{"gte": "{self.amount_example}"}}'
        if c.value is Value.NAME:
            return '{"eq": "..."}'
        return '{"gte": 1}'

    @property
    def amount_example(self) -> str:
        return "100" if self.decimals == 0 else "100." + "0" * self.decimals


_ITEM_EXAMPLES = {"product": "sku-123", "category": "shoes", "brand": "acme"}
