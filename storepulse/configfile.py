"""Reading the TOML config file, and writing the demo one `storepulse up` starts with."""

from __future__ import annotations

import base64
import os
import re
import secrets
import tomllib
from pathlib import Path

from core.config import Config, ConfigError, parse_config
from core.rates import Rates, RatesFileError, parse_ecb_csv

DEFAULT_PATH = Path("storepulse.toml")


def load_config(path: Path) -> Config:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return parse_config(text, os.environ)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_rates(config: Config, config_path: Path, data_dir: Path | None = None) -> Rates | None:
    """The rates file named by the config, relative to the config file's folder; without one, the ECB
    history downloaded into `data_dir` or shipped with storepulse (storepulse/rates_source.py)."""
    if config.rates_file is None:
        from storepulse.rates_source import default_rates

        try:
            return default_rates(data_dir)[0]
        except (OSError, RatesFileError) as exc:
            raise ConfigError(f"the ECB rates in {data_dir}: {exc} (run `storepulse rates update` again)") from None
    path = (config_path.parent / config.rates_file).resolve()
    try:
        return parse_ecb_csv(path.read_text())
    except OSError as exc:
        raise ConfigError(f"rates_file: cannot read {path}: {exc.strerror}") from None
    except RatesFileError as exc:
        raise ConfigError(f"rates_file {path}: {exc}") from None


INBOX_URL = re.compile(r'url = "http://127\.0\.0\.1:(\d+)/demo/inbox"')


def demo_config(data_dir: Path, http_port: int) -> Path:
    """A demo organisation with a store of each provider (the shop simulator feeds them all), and an
    abandoned-cart automation sending to the demo's own inbox (storepulse/demo/inbox.py) on this
    server's port; written once, so its token survives restarts (a start on another port moves the
    inbox's URL to it)."""
    path = data_dir / "demo.toml"
    inbox = f'url = "http://127.0.0.1:{http_port}/demo/inbox"'
    if path.exists():
        text = path.read_text()
        if (found := INBOX_URL.search(text)) is not None and found.group(0) != inbox:
            path.write_text(text.replace(found.group(0), inbox))
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        stores = "".join(
            f'\n[orgs.demo.stores.demo-{name}]\nprovider = "{provider}"\nsecret = "{prefix}{secrets.token_urlsafe(24)}"\n'
            + (f'currency = "{currency}"\n' if currency else "")
            for name, provider, prefix, currency in [("stripe", "stripe", "whsec_", None), ("woo", "woocommerce", "", None),
                                                     ("shopify", "shopify", "", "USD"), ("site", "events", "", None)])
        path.write_text(
            "# Written by `storepulse up` because no config was given. Copy it and edit to taste.\n"
            "[orgs.demo]\n"
            'timezone = "Europe/Berlin"\n'
            'currency = "EUR"\n'
            f'token = "{secrets.token_urlsafe(24)}"\n'
            "plan_limit = 2000\n"  # the simulator's ~1,000 paid orders a month: the quota view shows about half used
            + stores
            + "\n# Where the automations' deliveries go in the demo: its own receiver (GET /demo/inbox with the token).\n"
            "[orgs.demo.channels.demo-inbox]\n"
            'kind = "webhook"\n'
            f"{inbox}\n"
            f'secret = "whsec_{base64.b64encode(secrets.token_bytes(24)).decode()}"\n'
            "allow_private = true\n"
            "\n[orgs.demo.automations.abandoned-cart]\n"
            'trigger = "cart.abandoned"\n'
            'wait = "1h"\n'
            'cancel_on = ["order.paid"]\n'
            'send = ["demo-inbox"]\n'
        )
        path.chmod(0o600)
    return path


def demo_credentials(path: Path) -> tuple[str, dict[str, str]]:
    """The demo organisation's token and its stores' secrets, in clear, for `storepulse up` to print
    once at start-up: the demo's own, written by demo_config. A real config's are never printed."""
    org = tomllib.loads(path.read_text())["orgs"]["demo"]
    return org["token"], {store_id: store["secret"] for store_id, store in org["stores"].items()}
