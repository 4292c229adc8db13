"""An action's message: subject, text, HTML, Slack text and webhook JSON, rendered from templates in the
automation's (else the organisation's) locale, with money and dates formatted by Babel (CLDR) in that
locale and the organisation's time zone. Pure: data in, a message out (Jinja2 and Babel do no I/O here).

User templates (an automation's `templates`) run in Jinja2's ImmutableSandboxedEnvironment: they can
read the variables below and call the two filters, never reach Python internals or change anything;
the HTML part is autoescaped. A template that fails when rendered (e.g. a filter given text) leaves
that part to its default, so one broken template never stops an action.

Variables: automation, trigger, subject, cause, customer (name, else e-mail, else id), email, name (both "" when unknown),
order, cart, store, segment, change, percent, count, limit, amount (formatted), items (each
{product, name, qty, unit_price formatted}), item_count, date (fired, formatted), due_date, payload
(everything the trigger gave, raw). Filters: `money(minor_units, currency)`, `datetime(ms)`.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time, get_datetime_format
from babel.numbers import format_currency
from jinja2 import Template, TemplateSyntaxError, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.automations.definition import MESSAGE_PARTS, DefinitionError
from core.automations.templates import default_for
from core.money import UnknownCurrency, exponent

_TEXT = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=False)
_HTML = ImmutableSandboxedEnvironment(autoescape=True, keep_trailing_newline=False)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    slack_text: str
    json: Any


@functools.lru_cache(maxsize=1024)
def _compiled(source: str, as_html: bool) -> Template:
    return (_HTML if as_html else _TEXT).from_string(source)


def check_templates(templates: Mapping[str, str], at: str) -> None:
    """DefinitionError naming the part (and line) of a template that does not compile."""
    for part, source in templates.items():
        try:
            _compiled(source, part == "html")
        except TemplateSyntaxError as exc:
            raise DefinitionError(f"{at}.{part}", f"template line {exc.lineno}: {exc.message}") from None


@functools.lru_cache(maxsize=16)
def _locale(name: str) -> Locale:
    return Locale.parse(name)  # parsing the CLDR data costs more than formatting: once per locale


# CLDR's currencySpacing, which Babel does not apply: a code next to a digit gets a no-break space
# ("KWD 1,234.567", as browsers' Intl writes it), a symbol ("€1.00") does not
_CODE_DIGIT = re.compile(r"(?<=[A-Z]{3})(?=[0-9])|(?<=[0-9])(?=[A-Z]{3})")


@functools.lru_cache(maxsize=8192)  # Babel takes ~50 µs a call; shops repeat their prices
def money(minor: int, currency: str, locale: str) -> str:
    """Minor units of an ISO 4217 currency as the locale writes money: 123450 EUR -> "1.234,50 €" (de),
    exactly (no float on the way), with the currency's ISO 4217 exponent. Messages and digests use it."""
    try:
        exp = exponent(currency)
    except UnknownCurrency:
        return f"{minor} {currency}"
    return _CODE_DIGIT.sub("\u00a0", str(format_currency(Decimal(minor).scaleb(-exp), currency, locale=_locale(locale))))


def when(ms: int, timezone: str, locale: str) -> str:
    """An instant as the locale writes a date (medium) and a time (short, to the minute), in the time zone."""
    return _minute(ms // 60_000, timezone, locale)


@functools.lru_cache(maxsize=4096)
def _minute(minute: int, timezone: str, locale: str) -> str:
    t = datetime.fromtimestamp(minute * 60, UTC).astimezone(ZoneInfo(timezone))
    loc = _locale(locale)
    pattern = str(get_datetime_format("medium", locale=loc))
    return pattern.replace("{1}", format_date(t, "medium", locale=loc)).replace(
        "{0}", format_time(t, "short", locale=loc))


def variables(automation: str, trigger: str, subject: str, cause: str, at: int, due: int,
              payload: Mapping[str, Any], locale: str, timezone: str) -> dict[str, Any]:
    """What the templates see (module docstring)."""
    currency = str(payload.get("currency") or "")
    items = [{"product": p, "qty": q, "unit_price": money(u, currency, locale), "name": n or p}
             for p, q, u, n in payload.get("items", ())]
    name, email = payload.get("name"), payload.get("email")
    return {
        "automation": automation, "trigger": trigger, "subject": subject, "cause": cause,
        "customer": name or email or payload.get("customer") or subject, "email": email or "", "name": name or "",
        "amount": money(int(payload["amount"]), currency, locale) if "amount" in payload and currency else "",
        "items": items, "item_count": sum(i["qty"] for i in items),
        "date": when(at, timezone, locale), "due_date": when(due, timezone, locale), "payload": dict(payload),
        **{k: payload.get(k, "") for k in ("order", "cart", "store", "segment", "change", "percent", "count", "limit")},
    }


def render(automation: str, trigger: str, subject: str, cause: str, at: int, due: int, payload: Mapping[str, Any], *,
           locale: str, timezone: str, templates: Mapping[str, str] | None = None) -> Rendered:
    """The message of one action: the defaults of `trigger` in `locale`, each part overridden by `templates`."""
    v = variables(automation, trigger, subject, cause, at, due, payload, locale, timezone)
    v["_locale"], v["_timezone"] = locale, timezone  # read by the filters
    subject_t, line_t = default_for(locale, trigger)
    title = _compiled(subject_t, False).render(v).strip()
    line = _compiled(line_t, False).render(v).strip()
    lines = [f"- {i['qty']} × {i['name']} ({i['unit_price']})" for i in v["items"]]
    parts: dict[str, Any] = {
        "subject": title,
        "text": "\n".join([line, *([""] + lines if lines else [])]),
        "html": f"<p>{html.escape(line)}</p>" + (
            "<ul>" + "".join(f"<li>{html.escape(x[2:])}</li>" for x in lines) + "</ul>" if lines else ""),
        "slack_text": f"*{_slack(title)}*\n{_slack(line)}",
        "json": {"automation": automation, "trigger": trigger, "subject": subject, "cause": cause, "fired_at": at,
                 "due_at": due, "locale": locale, "title": title, "text": line, "data": dict(payload)},
    }
    for part, source in (templates or {}).items():
        try:
            out = _compiled(source, part == "html").render(v).strip()
            parts[part] = json.loads(out) if part == "json" else out
        except Exception:  # a user template that fails at render time keeps the default part
            continue
    if "json" not in (templates or {}):  # the webhook's data says what the other parts say
        parts["json"]["title"] = parts["subject"]
        if "text" in (templates or {}):
            parts["json"]["text"] = parts["text"]
    return Rendered(*(parts[p] for p in MESSAGE_PARTS))


@pass_context
def _money_filter(context: Context, minor: Any, currency: Any) -> str:
    return money(int(minor), str(currency), context["_locale"])


@pass_context
def _datetime_filter(context: Context, ms: Any) -> str:
    return when(int(ms), context["_timezone"], context["_locale"])


for _env in (_TEXT, _HTML):
    _env.filters["money"] = _money_filter
    _env.filters["datetime"] = _datetime_filter


def _slack(text: str) -> str:
    """Slack mrkdwn escapes &, < and > (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
