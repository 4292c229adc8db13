"""The dashboard's message catalogues, read as files: every key the page's code names exists in the
English catalogue (the browser test checks that every language has exactly the English keys)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

STATIC = Path(__file__).resolve().parent.parent / "ws_gateway" / "static"
CALLS = re.compile(r"""\bt\(\s*"([a-z0-9_.]+)"|data-i18n(?:-label|-placeholder)?="([a-z0-9_.]+)"|title: "(view\.[a-z]+)\"""")
KEY = re.compile(r'^\s*"([a-z0-9_.]+)":', re.M)


def _keys(lang: str) -> set[str]:
    text = (STATIC / "messages" / f"{lang}.js").read_text()
    # several keys share a line: take every "key": at a line start or after a comma
    return set(KEY.findall(text)) | set(re.findall(r',\s*"([a-z0-9_.]+)":', text))


def _used() -> set[str]:
    used: set[str] = set()
    for path in [*STATIC.glob("*.js"), *STATIC.glob("views/*.js"), STATIC / "dashboard.html"]:
        for groups in CALLS.findall(path.read_text()):
            used.update(g for g in groups if g)
    return used


def test_every_key_the_code_names_is_in_the_english_catalogue() -> None:
    used = _used()
    assert len(used) > 100, "the scan found too few keys: the pattern no longer matches the code"
    assert sorted(used - _keys("en")) == []


def test_every_language_has_the_english_keys() -> None:
    en = _keys("en")
    for lang in ("de", "es", "fr", "it"):
        assert _keys(lang) == en, lang


def test_the_predefined_segments_are_named_in_every_language() -> None:
    """messages/<lang>.js names every predefined segment ("segment.<id>"), and English names each as the
    server does (core/definitions.py): the dashboard shows these for predefined segments."""
    import flows.organisation  # noqa: F401  (the record kinds' value classes, as the server imports them)
    from core.definitions import predefined_product_segments, predefined_segments

    server = {d.id: d.name for d in [*predefined_segments().values(), *predefined_product_segments().values()]}
    for lang in ("en", "de", "es", "fr", "it"):
        text = (STATIC / "messages" / f"{lang}.js").read_text()
        names = dict(re.findall(r'"segment\.([a-z0-9_]+)": "([^"]+)"', text))
        assert names.keys() == server.keys(), lang
        if lang == "en":
            assert names == server
        else:  # translated, each of them
            assert [i for i in server if names[i] == server[i]] == [], lang


def test_the_rule_builder_offers_every_customer_criterion_named_in_every_language() -> None:
    """rule_builder.js lists exactly the server's customer criteria (core/rules/criteria.py), and every
    criterion and comparison it shows (keys it builds, which the scan above cannot see) is in every catalogue."""
    from core.rules.criteria import CUSTOMER_CRITERIA

    text = (STATIC / "rule_builder.js").read_text()
    table = text[text.index("export const CRITERIA = {"):text.index("};", text.index("export const CRITERIA"))]
    criteria = dict(re.findall(r'^  (\w+): \{ type: "(\w+)"', table, re.M))
    assert set(criteria) == set(CUSTOMER_CRITERIA)
    ops_table = text[text.index("const OPS = {"):text.index("};", text.index("const OPS = {"))]
    ops = {k: re.findall(r'"(\w+)"', v) for k, v in re.findall(r'^  (\w+): \[([^\]]*)\]', ops_table, re.M)}
    assert set(ops) == set(criteria.values())
    named = {"moment", "name", "segment"}  # their comparisons read differently: "is", "more than ... ago"
    wanted = {f"crit.{c}" for c in criteria} | {f"op.{t}_{o}" if t in named else f"op.{o}" for t, os in ops.items() for o in os}
    wanted |= {f"builder.unit_{u}{a}" for u in ("d", "h") for a in ("", "_ago")} | {"builder.all", "builder.any", "builder.product",
                                                                                 "builder.category", "builder.brand"}
    for lang in ("en", "de", "es", "fr", "it"):
        assert sorted(wanted - _keys(lang)) == [], lang


def test_the_automation_form_names_every_trigger_day_and_field_in_every_language() -> None:
    """automation_form.js builds its keys (trigger.<kind>, day.<day>, cancel.<kind>, auto.<field>): each is in
    every catalogue, and each trigger it offers is one the server takes (core/automations/definition.py)."""
    from core.automations.definition import DAYS, TRIGGERS

    text = (STATIC / "automation_form.js").read_text()

    def listed(name: str) -> list[str]:
        found = re.search(rf"const {name} = \[([^\]]*)\]", text)
        assert found, name
        return re.findall(r'"([a-z._]+)"', found.group(1))

    triggers, days, cancels, units = listed("TRIGGERS"), listed("DAYS"), listed("CANCELS"), listed("UNITS")
    assert set(triggers) <= set(TRIGGERS) and tuple(days) == DAYS
    fields = set(re.findall(r'\b(?:select|input|checks)\("(\w+)"', text))
    fields |= {f for d in re.findall(r'\bduring\("(\w+)"', text) for f in (d, f"{d}_unit")}
    assert {"trigger", "segment", "wait", "wait_unit", "cooldown", "send", "subject", "often"} <= fields
    wanted = {f"trigger.{k}" for k in triggers} | {f"day.{d}" for d in days} | {f"cancel.{k}" for k in cancels}
    wanted |= {f"auto.{f}" for f in fields} | {f"auto.unit_{u}" for u in units}
    wanted |= {f"auto.often_{o}" for o in ("always", "once", "cooldown")}
    for lang in ("en", "de", "es", "fr", "it"):
        assert sorted(wanted - _keys(lang)) == [], lang
