"""The tenancy/config model: organisations and their store connections, parsed from TOML text.

Parsing is pure (text and environment in, Config out); reading the file is the caller's job.
Every error names the key and says what is wrong, so a bad config stops start-up readably.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Config:
    orgs: Mapping[str, Org]
    rates_file: str | None = None  # ECB eurofxref-hist.csv format; relative to the config file

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


def _str(table: Mapping[str, object], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key}: missing (required)")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: must be a non-empty string, got {value!r}")
    return value


def _secret(value: str, where: str, env: Mapping[str, str]) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in env or not env[name]:
            raise ConfigError(f"{where}: environment variable {name!r} is not set (the key says {value!r})")
        return env[name]
    return value


def _token_sha256(value: str, where: str) -> bytes:
    """The SHA-256 of an org token, given as the token or as "sha256:<64 hex digits>" of it."""
    if value.startswith("sha256:"):
        hexdigest = value[len("sha256:"):].strip().lower()
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise ConfigError(f"{where}: sha256: must be followed by the 64 hex digits of the token's SHA-256 "
                              "(printf %s TOKEN | sha256sum)")
        return bytes.fromhex(hexdigest)
    if len(value) < 16:
        raise ConfigError(f"{where}: must be at least 16 characters (it guards the org's data)")
    return hashlib.sha256(value.encode()).digest()


def _currency(value: str, where: str) -> str:
    if value not in EXPONENTS:
        raise ConfigError(f"{where}: {value!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
    return value


def _timezone(value: str, where: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
    return value


def parse_config(text: str, env: Mapping[str, str]) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    orgs_table = doc.get("orgs")
    if not isinstance(orgs_table, dict) or not orgs_table:
        raise ConfigError("orgs: missing; define at least one [orgs.NAME] table")
    orgs: dict[str, Org] = {}
    store_owner: dict[str, str] = {}
    token_owner: dict[bytes, str] = {}
    for org_id, table in orgs_table.items():
        where = f"orgs.{org_id}"
        if not _NAME.match(org_id):
            raise ConfigError(f"{where}: organisation names use letters, digits, '-' and '_' only")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table")
        timezone = _timezone(_str(table, "timezone", where, "UTC"), f"{where}.timezone")
        currency = _currency(_str(table, "currency", where), f"{where}.currency")
        token = _token_sha256(_secret(_str(table, "token", where), f"{where}.token", env), f"{where}.token")
        if token in token_owner:
            raise ConfigError(f"{where}.token: the same token is used by orgs.{token_owner[token]}; tokens must differ")
        token_owner[token] = org_id
        abandon = table.get("abandon_after", 60)
        if not isinstance(abandon, int) or isinstance(abandon, bool) or not 30 <= abandon <= 180:
            raise ConfigError(f"{where}.abandon_after: minutes from 30 to 180, got {abandon!r}")
        plan_limit = table.get("plan_limit")
        if plan_limit is not None and (not isinstance(plan_limit, int) or isinstance(plan_limit, bool) or plan_limit < 1):
            raise ConfigError(f"{where}.plan_limit: a positive whole number of paid orders per 30 days, got {plan_limit!r}")
        unknown = set(table) - {"timezone", "currency", "token", "stores", "abandon_after", "plan_limit"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        stores: dict[str, Store] = {}
        stores_table = table.get("stores", {})
        if not isinstance(stores_table, dict):
            raise ConfigError(f"{where}.stores: must be a table of [{where}.stores.NAME] tables")
        for store_id, st in stores_table.items():
            swhere = f"{where}.stores.{store_id}"
            if not _NAME.match(store_id):
                raise ConfigError(f"{swhere}: store names use letters, digits, '-' and '_' only")
            if not isinstance(st, dict):
                raise ConfigError(f"{swhere}: must be a table")
            if store_id in store_owner:
                raise ConfigError(
                    f"{swhere}: store id is also used by orgs.{store_owner[store_id]}; "
                    "store ids must be unique because webhook URLs name only the store"
                )
            store_owner[store_id] = org_id
            provider = _str(st, "provider", swhere)
            if provider not in PROVIDERS:
                raise ConfigError(f"{swhere}.provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
            secret = _secret(_str(st, "secret", swhere), f"{swhere}.secret", env)
            store_currency = _currency(_str(st, "currency", swhere, currency), f"{swhere}.currency")
            unknown = set(st) - {"provider", "secret", "currency", "api_key", "api_secret", "api_url", "shop_domain"}
            if unknown:
                raise ConfigError(f"{swhere}: unknown key(s) {sorted(unknown)}")
            api = {k: _secret(_str(st, k, swhere), f"{swhere}.{k}", env) if k in st else None
                   for k in ("api_key", "api_secret")}
            api_url = _str(st, "api_url", swhere) if "api_url" in st else None
            if api_url is not None and not api_url.startswith(("http://", "https://")):
                raise ConfigError(f"{swhere}.api_url: must start with http:// or https://, got {api_url!r}")
            shop_domain = _str(st, "shop_domain", swhere).lower() if "shop_domain" in st else None
            stores[store_id] = Store(store_id, org_id, provider, secret, store_currency, api["api_key"], api["api_secret"],
                                     api_url, shop_domain)
        orgs[org_id] = Org(org_id, timezone, currency, token, stores, abandon, plan_limit)
    rates_file = doc.get("rates_file")
    if rates_file is not None and (not isinstance(rates_file, str) or not rates_file):
        raise ConfigError(f"rates_file: must be a path to an ECB-format CSV, got {rates_file!r}")
    unknown = set(doc) - {"orgs", "rates_file"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}: expected [orgs.NAME] tables and rates_file")
    return Config(orgs, rates_file)
