"""The tenancy/config model: organisations and their store connections, parsed from TOML text.

Parsing is pure (text and environment in, Config out); reading the file is the caller's job.
Every error names the key and says what is wrong, so a bad config stops start-up readably.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.automations.definition import LOCALES, Automation, DefinitionError, parse_automations
from core.channels import Channel, ChannelConfigError, Smtp, make_channel, make_smtp
from core.definitions import SegmentDefinition
from core.money import EXPONENTS

# A store's provider: a vendor posting webhooks (ingest/app.py ADAPTERS), or "events", any site
# through the events API. The one list of them.
PROVIDERS = ("stripe", "woocommerce", "shopify", "events")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    org: str
    provider: str
    secret: str
    currency: str  # the store's own currency; defaults to the organisation's
    # For backfill sync: Stripe secret key / WooCommerce consumer key, WooCommerce consumer secret,
    # and the API's base URL (the shop's site for WooCommerce; Stripe's default unless set).
    api_key: str | None = None
    api_secret: str | None = None
    api_url: str | None = None
    shop_domain: str | None = None  # Shopify: deliveries must name this shop (apps share one secret)


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    timezone: str
    currency: str  # presentation currency
    token_sha256: bytes  # SHA-256 of the bearer token: the token itself is never held
    stores: Mapping[str, Store]
    abandon_after_minutes: int = 60  # a cart with no checkout for this long is abandoned
    plan_limit: int | None = None  # paid orders per rolling 30 days that the plan allows
    locale: str = "en"  # messages' language, money and dates (core/automations/messages.py)
    automations: Mapping[str, Automation] = field(default_factory=dict)  # [orgs.X.automations.ID]
    channels: Mapping[str, Channel] = field(default_factory=dict)  # [orgs.X.channels.ID] (core/channels.py)
    allowed_lateness_ms: int = 5 * 60_000  # the watermark trails the latest event time by this much
    segments: Mapping[str, SegmentDefinition] = field(default_factory=dict)  # [orgs.X.segments.ID]
    product_segments: bool = False  # keep the predefined product segments live (costly: docs/segments.md)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Config:
    orgs: Mapping[str, Org]
    rates_file: str | None = None  # ECB eurofxref-hist.csv format; relative to the config file
    smtp: Smtp | None = None  # [smtp]: how e-mail channels send (core/channels.py)

    def store(self, store_id: str) -> Store | None:
        for org in self.orgs.values():
            if store_id in org.stores:
                return org.stores[store_id]
        return None

    def org_for_token(self, token: str) -> Org | None:
        """The organisation of a bearer token: its hash compared with each org's in constant time."""
        digest = hashlib.sha256(token.encode(errors="surrogatepass")).digest()
        found = None
        for org in self.orgs.values():
            if hmac.compare_digest(org.token_sha256, digest):
                found = org
        return found


# --- the schema -----------------------------------------------------------------------------------
#
# A small table of keys with validators rather than msgspec Structs: msgspec would name the path
# ("Expected `int` >= 30 - at `$.orgs.acme.abandon_after`") but neither the unit, the value given nor
# an example, and its own checks (a time zone, a currency, an env: secret, a token's hash) could name
# only the table, not the key. Here every error is "<key path>: what is wrong (and what to write)".

REQUIRED: Any = object()  # a Key's default when the key must be given


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a table: how its value is checked, and its default when absent."""

    check: Callable[[Any, str], Any]  # (the TOML value, its key path) -> the value kept; ConfigError if bad
    default: Any = REQUIRED
    secret: bool = False  # a string that may say "env:NAME": that variable's value is checked instead


@dataclass(frozen=True, slots=True)
class Tables:
    """A table of [PATH.NAME] tables, each with `keys`; `noun` is what a NAME names."""

    noun: str
    keys: Mapping[str, Key | Tables]
    default: Any = REQUIRED


def _text(value: Any, at: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: must be a non-empty string, got {value!r}")
    return value


def _from_env(value: str, at: str, env: Mapping[str, str]) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in env or not env[name]:
            raise ConfigError(f"{at}: environment variable {name!r} is not set (the key says {value!r})")
        return env[name]
    return value


def _token_sha256(value: str, at: str) -> bytes:
    """The SHA-256 of an org token, given as the token or as "sha256:<64 hex digits>" of it."""
    if value.startswith("sha256:"):
        hexdigest = value[len("sha256:"):].strip().lower()
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ConfigError(f"{at}: sha256: must be followed by the 64 hex digits of the token's SHA-256 "
                              "(printf %s TOKEN | sha256sum)")
        return bytes.fromhex(hexdigest)
    if len(value) < 16:
        raise ConfigError(f"{at}: must be at least 16 characters (it guards the org's data)")
    return hashlib.sha256(value.encode()).digest()


def _currency(value: Any, at: str) -> str:
    code = _text(value, at)
    if code not in EXPONENTS:
        raise ConfigError(f"{at}: {code!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
    return code


def _timezone(value: Any, at: str) -> str:
    name = _text(value, at)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{at}: {name!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
    return name


def _provider(value: Any, at: str) -> str:
    provider = _text(value, at)
    if provider not in PROVIDERS:
        raise ConfigError(f"{at}: {provider!r} is not one of {', '.join(PROVIDERS)}")
    return provider


def _url(value: Any, at: str) -> str:
    url = _text(value, at)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{at}: must start with http:// or https://, got {url!r}")
    return url


def _domain(value: Any, at: str) -> str:
    return _text(value, at).lower()


def _whole(low: int, high: int | None, what: str) -> Callable[[Any, str], int]:
    """A check for a whole number from `low` to `high` (no upper bound: None); `what` says so to the user."""

    def check(value: Any, at: str) -> int:
        if (not isinstance(value, int) or isinstance(value, bool) or value < low
                or (high is not None and value > high)):
            raise ConfigError(f"{at}: {what}, got {value!r}")
        return value

    return check


def _locale(value: Any, at: str) -> str:
    if value not in LOCALES:
        raise ConfigError(f"{at}: {value!r} is not one of {', '.join(LOCALES)}")
    return str(value)


def _raw(value: Any, at: str) -> Any:
    return value  # checked whole afterwards, with the organisation's currency and time zone


_DURATION = re.compile(r"^(\d{1,9})(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _lateness(value: Any, at: str) -> int:
    """A duration such as "5m" or "30s", in ms: from 0 up to a day."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)] if match else -1
    if not 0 <= ms <= _UNIT_MS["d"]:
        raise ConfigError(f"{at}: must be a duration from \"0s\" to \"1d\" such as \"5m\" or \"30s\", got {value!r}")
    return ms


def _rule(value: Any, at: str) -> dict[str, Any]:
    """A segment rule as a TOML inline table (checked against the organisation's currency in parse_config)."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(f'{at}: must be a rule as an inline table, e.g. {{orders = {{gte = 3}}}}, got {value!r}')
    return value


def _flag(value: Any, at: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{at}: must be true or false, got {value!r}")
    return value


def _csv_path(value: Any, at: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}: must be a path to an ECB-format CSV, got {value!r}")
    return value


_STORE: Mapping[str, Key | Tables] = {
    "provider": Key(_provider),
    "secret": Key(_text, secret=True),
    "currency": Key(_currency, None),  # None: the organisation's
    "api_key": Key(_text, None, secret=True),
    "api_secret": Key(_text, None, secret=True),
    "api_url": Key(_url, None),
    "shop_domain": Key(_domain, None),
}


def _any(value: Any, at: str) -> Any:
    return value  # checked with the table's other keys (core/channels.py)


def _a_table(value: Any, at: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: must be a table ([{at}])")
    return value


# Channels and the SMTP relay: each key is read here (env: included), the whole table checked by core/channels.py.
_CHANNEL: Mapping[str, Key | Tables] = {
    "kind": Key(_text), "url": Key(_text, None, secret=True), "secret": Key(_text, None, secret=True),
    "to": Key(_any, None), "retry": Key(_any, None), "allow_private": Key(_any, False),
}
_SMTP: Mapping[str, Key | Tables] = {
    "host": Key(_any, None), "port": Key(_any, 587), "from": Key(_any, None), "starttls": Key(_any, None),
    "username": Key(_text, None, secret=True), "password": Key(_text, None, secret=True), "public_url": Key(_any, None),
}
_ORG: Mapping[str, Key | Tables] = {
    "timezone": Key(_timezone, "UTC"),
    "currency": Key(_currency),
    "token": Key(_token_sha256, secret=True),
    "abandon_after": Key(_whole(30, 180, "minutes from 30 to 180"), 60),
    "plan_limit": Key(_whole(1, None, "a positive whole number of paid orders per 30 days"), None),
    "allowed_lateness": Key(_lateness, 5 * 60_000),
    "stores": Tables("store", _STORE, {}),
    "segments": Tables("segment", {"name": Key(_text), "rule": Key(_rule)}, {}),
    "channels": Tables("channel", _CHANNEL, {}),
    "locale": Key(_locale, "en"),
    "automations": Key(_raw, {}),  # core/automations/definition.py
    "product_segments": Key(_flag, False),
}
_CONFIG: Mapping[str, Key | Tables] = {
    "orgs": Tables("organisation", _ORG),
    "rates_file": Key(_csv_path, None),
    "smtp": Key(_a_table, None),
}


def _table(table: Mapping[str, Any], at: str, keys: Mapping[str, Key | Tables], env: Mapping[str, str]) -> dict[str, Any]:
    """The values of `table` (at key path `at`, "" for the top level), checked against `keys`."""
    unknown = set(table) - set(keys)
    if unknown:
        raise ConfigError(f"{at or 'top level'}: unknown key(s) {sorted(unknown)}; the keys are {', '.join(keys)}")
    out = {}
    for name, spec in keys.items():
        path = f"{at}.{name}" if at else name
        if name not in table:
            if spec.default is REQUIRED:
                raise ConfigError(f"{path}: missing; define at least one [{path}.NAME] table" if isinstance(spec, Tables)
                                  else f"{path}: missing (required)")
            out[name] = spec.default
        elif isinstance(spec, Tables):
            out[name] = _tables(table[name], path, spec, env)
        else:
            value = _from_env(_text(table[name], path), path, env) if spec.secret else table[name]
            out[name] = spec.check(value, path)
    return out


def _tables(value: Any, at: str, spec: Tables, env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{at}: must be a table of [{at}.NAME] tables")
    if not value and spec.default is REQUIRED:
        raise ConfigError(f"{at}: missing; define at least one [{at}.NAME] table")
    out = {}
    for name, table in value.items():
        path = f"{at}.{name}"
        if not _NAME.match(name):
            raise ConfigError(f"{path}: {spec.noun} names use letters, digits, '-' and '_' only")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: must be a table")
        out[name] = _table(table, path, spec.keys, env)
    return out


def check_segments(segments: Mapping[str, SegmentDefinition], currency: str, timezone: str, at: str) -> None:
    """Every configured rule parses (with the predefined segments, which in_segment may name)."""
    from core.definitions import predefined_rules
    from core.rules import RuleError, parse_segments

    try:
        parse_segments({**predefined_rules(), **{s.id: s.rule for s in segments.values()}},
                       currency=currency, timezone=timezone)
    except RuleError as exc:
        raise ConfigError(f"{at}: {exc}") from None


def parse_config(text: str, env: Mapping[str, str]) -> Config:
    """The Config of a TOML text; `env` holds the variables that env:NAME values name."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    top = _table(doc, "", _CONFIG, env)
    orgs: dict[str, Org] = {}
    store_owner: dict[str, str] = {}
    token_owner: dict[bytes, str] = {}
    for org_id, org in top["orgs"].items():
        at = f"orgs.{org_id}"
        if org["token"] in token_owner:
            raise ConfigError(f"{at}.token: the same token is used by orgs.{token_owner[org['token']]}; tokens must differ")
        token_owner[org["token"]] = org_id
        stores: dict[str, Store] = {}
        for store_id, store in org["stores"].items():
            if store_id in store_owner:
                raise ConfigError(
                    f"{at}.stores.{store_id}: store id is also used by orgs.{store_owner[store_id]}; "
                    "store ids must be unique because webhook URLs name only the store"
                )
            store_owner[store_id] = org_id
            # the keys of _STORE are Store's fields
            stores[store_id] = Store(id=store_id, org=org_id, **{**store, "currency": store["currency"] or org["currency"]})
        try:
            automations = parse_automations(org["automations"], f"{at}.automations", currency=org["currency"],
                                            timezone=org["timezone"])
        except DefinitionError as exc:
            raise ConfigError(str(exc)) from None
        try:
            channels = {cid: make_channel(org_id, cid, c, f"{at}.channels.{cid}") for cid, c in org["channels"].items()}
        except ChannelConfigError as exc:
            raise ConfigError(str(exc)) from None
        for a in automations.values():
            for c in a.send:
                if c not in channels:
                    raise ConfigError(f"{at}.automations.{a.id}.send: no channel {c!r}: define [{at}.channels.{c}]")
        segments = {sid: SegmentDefinition(sid, seg["name"], seg["rule"]) for sid, seg in org["segments"].items()}
        check_segments(segments, org["currency"], org["timezone"], f"{at}.segments")
        orgs[org_id] = Org(org_id, org["timezone"], org["currency"], org["token"], stores,
                           abandon_after_minutes=org["abandon_after"], plan_limit=org["plan_limit"], channels=channels,
                           locale=org["locale"], automations=automations, allowed_lateness_ms=org["allowed_lateness"],
                           segments=segments, product_segments=org["product_segments"])
    return Config(orgs, top["rates_file"], _smtp(top["smtp"], env))


def _smtp(table: dict[str, Any] | None, env: Mapping[str, str]) -> Smtp | None:
    if table is None:
        return None
    values = {k: v for k, v in _table(table, "smtp", _SMTP, env).items() if v is not None}
    try:
        return make_smtp(values, "smtp")
    except ChannelConfigError as exc:
        raise ConfigError(str(exc)) from None
