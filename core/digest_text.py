"""A digest in words, in the organisation's language: English, German, Spanish, French or Italian.

Numbers, money and dates go through Babel (CLDR data: "1.234,56 €" in German, "1 234,56 €" in French)
rather than hand-made formats; the sentences are this module's catalogue. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent

from core.automations.messages import money
from core.digest import Digest, Insight, InsightKind, Measure, Span

LANGUAGES = ("en", "de", "es", "fr", "it")

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "colon": ": ", "subject.day": "{org}: {date} — {revenue} revenue, {orders} orders",
        "subject.week": "{org}: week to {date} — {revenue} revenue, {orders} orders",
        "compare.day": "the average of the last four {weekdays}",
        "compare.week": "the average of the previous four weeks",
        "revenue": "Revenue", "net_revenue": "Net revenue", "orders": "Orders", "aov": "Average order value",
        "carts": "Carts", "abandoned": "abandoned", "top": "Top products", "unit.one": "unit", "unit.other": "units",
        "segments": "Segments", "quota.label": "Paid orders in the last 30 days", "insights": "What stands out",
        "vs": "{change} against {compare}{colon}{baseline}", "same": "the same as {compare}",
        "no_baseline": "nothing to compare with yet", "of": "{count} of {limit}",
        InsightKind.REVENUE_UP: "Revenue was {percent} above {compare}.",
        InsightKind.REVENUE_DOWN: "Revenue was {percent} below {compare}.",
        InsightKind.ORDERS_UP: "{percent} more orders than {compare}.",
        InsightKind.ORDERS_DOWN: "{percent} fewer orders than {compare}.",
        InsightKind.AOV_UP: "The average order was {percent} larger than {compare}.",
        InsightKind.AOV_DOWN: "The average order was {percent} smaller than {compare}.",
        InsightKind.NO_ORDERS: "No paid orders, against an average of {baseline}: check the shop and its webhooks.",
        InsightKind.ABANDONMENT_UP: "Cart abandonment rose by {points} points against {compare}.",
        InsightKind.ABANDONMENT_DOWN: "Cart abandonment fell by {points} points against {compare}.",
        InsightKind.TOP_PRODUCT: "{subject} made {percent} of the revenue.",
        InsightKind.QUOTA: "{percent} of the plan's {limit} paid orders in 30 days are used.",
    },
    "de": {
        "colon": ": ", "subject.day": "{org}: {date} — {revenue} Umsatz, {orders} Bestellungen",
        "subject.week": "{org}: Woche bis {date} — {revenue} Umsatz, {orders} Bestellungen",
        "compare.day": "dem Durchschnitt der letzten vier {weekdays}",
        "compare.week": "dem Durchschnitt der vier Wochen davor",
        "revenue": "Umsatz", "net_revenue": "Nettoumsatz", "orders": "Bestellungen", "aov": "Durchschnittlicher Bestellwert",
        "carts": "Warenkörbe", "abandoned": "abgebrochen", "top": "Top-Produkte", "unit.one": "Stück", "unit.other": "Stück",
        "segments": "Segmente", "quota.label": "Bezahlte Bestellungen der letzten 30 Tage", "insights": "Was auffällt",
        "vs": "{change} gegenüber {compare}{colon}{baseline}", "same": "gleich wie {compare}",
        "no_baseline": "noch kein Vergleich möglich", "of": "{count} von {limit}",
        InsightKind.REVENUE_UP: "Der Umsatz lag {percent} über {compare}.",
        InsightKind.REVENUE_DOWN: "Der Umsatz lag {percent} unter {compare}.",
        InsightKind.ORDERS_UP: "Die Zahl der Bestellungen lag {percent} über {compare}.",
        InsightKind.ORDERS_DOWN: "Die Zahl der Bestellungen lag {percent} unter {compare}.",
        InsightKind.AOV_UP: "Der durchschnittliche Bestellwert lag {percent} über {compare}.",
        InsightKind.AOV_DOWN: "Der durchschnittliche Bestellwert lag {percent} unter {compare}.",
        InsightKind.NO_ORDERS: "Keine bezahlten Bestellungen, bei durchschnittlich {baseline}: bitte Shop und Webhooks "
                               "prüfen.",
        InsightKind.ABANDONMENT_UP: "Die Abbruchrate der Warenkörbe stieg um {points} Punkte gegenüber {compare}.",
        InsightKind.ABANDONMENT_DOWN: "Die Abbruchrate der Warenkörbe sank um {points} Punkte gegenüber {compare}.",
        InsightKind.TOP_PRODUCT: "{subject} brachte {percent} des Umsatzes.",
        InsightKind.QUOTA: "{percent} der {limit} bezahlten Bestellungen in 30 Tagen Ihres Tarifs sind verbraucht.",
    },
    "es": {
        "colon": ": ", "subject.day": "{org}: {date} — {revenue} de ingresos, {orders} pedidos",
        "subject.week": "{org}: semana hasta el {date} — {revenue} de ingresos, {orders} pedidos",
        "compare.day": "la media de los últimos cuatro {weekdays}",
        "compare.week": "la media de las cuatro semanas anteriores",
        "revenue": "Ingresos", "net_revenue": "Ingresos netos", "orders": "Pedidos", "aov": "Valor medio del pedido",
        "carts": "Carritos", "abandoned": "abandonados", "top": "Productos más vendidos", "unit.one": "unidad", "unit.other": "unidades",
        "segments": "Segmentos", "quota.label": "Pedidos pagados en los últimos 30 días", "insights": "Lo más destacado",
        "vs": "{change} frente a {compare}{colon}{baseline}", "same": "igual que {compare}",
        "no_baseline": "aún no hay con qué comparar", "of": "{count} de {limit}",
        InsightKind.REVENUE_UP: "Los ingresos fueron un {percent} superiores a {compare}.",
        InsightKind.REVENUE_DOWN: "Los ingresos fueron un {percent} inferiores a {compare}.",
        InsightKind.ORDERS_UP: "Un {percent} más de pedidos que {compare}.",
        InsightKind.ORDERS_DOWN: "Un {percent} menos de pedidos que {compare}.",
        InsightKind.AOV_UP: "El pedido medio fue un {percent} mayor que {compare}.",
        InsightKind.AOV_DOWN: "El pedido medio fue un {percent} menor que {compare}.",
        InsightKind.NO_ORDERS: "Ningún pedido pagado, frente a una media de {baseline}: revise la tienda y sus webhooks.",
        InsightKind.ABANDONMENT_UP: "El abandono de carritos subió {points} puntos frente a {compare}.",
        InsightKind.ABANDONMENT_DOWN: "El abandono de carritos bajó {points} puntos frente a {compare}.",
        InsightKind.TOP_PRODUCT: "{subject} generó el {percent} de los ingresos.",
        InsightKind.QUOTA: "Se ha usado el {percent} de los {limit} pedidos pagados en 30 días del plan.",
    },
    "fr": {
        "colon": " : ", "subject.day": "{org} : {date} — {revenue} de chiffre d’affaires, {orders} commandes",
        "subject.week": "{org} : semaine jusqu’au {date} — {revenue} de chiffre d’affaires, {orders} commandes",
        "compare.day": "la moyenne des quatre derniers {weekdays}",
        "compare.week": "la moyenne des quatre semaines précédentes",
        "revenue": "Chiffre d’affaires", "net_revenue": "Chiffre d’affaires net", "orders": "Commandes",
        "aov": "Panier moyen", "carts": "Paniers", "abandoned": "abandonnés", "top": "Meilleurs produits",
        "unit.one": "unité", "unit.other": "unités", "segments": "Segments", "quota.label": "Commandes payées sur les 30 derniers jours",
        "insights": "À retenir",
        "vs": "{change} par rapport à {compare}{colon}{baseline}", "same": "comme {compare}",
        "no_baseline": "rien à comparer pour l’instant", "of": "{count} sur {limit}",
        InsightKind.REVENUE_UP: "Le chiffre d’affaires a dépassé de {percent} {compare}.",
        InsightKind.REVENUE_DOWN: "Le chiffre d’affaires était inférieur de {percent} à {compare}.",
        InsightKind.ORDERS_UP: "{percent} de commandes en plus par rapport à {compare}.",
        InsightKind.ORDERS_DOWN: "{percent} de commandes en moins par rapport à {compare}.",
        InsightKind.AOV_UP: "Le panier moyen était supérieur de {percent} à {compare}.",
        InsightKind.AOV_DOWN: "Le panier moyen était inférieur de {percent} à {compare}.",
        InsightKind.NO_ORDERS: "Aucune commande payée, contre {baseline} en moyenne : vérifiez la boutique et ses "
                               "webhooks.",
        InsightKind.ABANDONMENT_UP: "L’abandon de panier a augmenté de {points} points par rapport à {compare}.",
        InsightKind.ABANDONMENT_DOWN: "L’abandon de panier a baissé de {points} points par rapport à {compare}.",
        InsightKind.TOP_PRODUCT: "{subject} a fait {percent} du chiffre d’affaires.",
        InsightKind.QUOTA: "{percent} des {limit} commandes payées sur 30 jours de l’offre sont utilisées.",
    },
    "it": {
        "colon": ": ", "subject.day": "{org}: {date} — {revenue} di fatturato, {orders} ordini",
        "subject.week": "{org}: settimana fino al {date} — {revenue} di fatturato, {orders} ordini",
        "compare.day": "alla media {weekdays}",
        "compare.week": "alla media delle quattro settimane precedenti",
        "revenue": "Fatturato", "net_revenue": "Fatturato netto", "orders": "Ordini", "aov": "Valore medio dell’ordine",
        "carts": "Carrelli", "abandoned": "abbandonati", "top": "Prodotti più venduti", "unit.one": "pezzo", "unit.other": "pezzi",
        "segments": "Segmenti", "quota.label": "Ordini pagati negli ultimi 30 giorni", "insights": "Da notare",
        "vs": "{change} rispetto {compare}{colon}{baseline}", "same": "in linea {compare}",
        "no_baseline": "ancora nulla da confrontare", "of": "{count} su {limit}",
        InsightKind.REVENUE_UP: "Il fatturato è stato del {percent} superiore {compare}.",
        InsightKind.REVENUE_DOWN: "Il fatturato è stato del {percent} inferiore {compare}.",
        InsightKind.ORDERS_UP: "Il {percent} di ordini in più rispetto {compare}.",
        InsightKind.ORDERS_DOWN: "Il {percent} di ordini in meno rispetto {compare}.",
        InsightKind.AOV_UP: "L’ordine medio è stato del {percent} più alto rispetto {compare}.",
        InsightKind.AOV_DOWN: "L’ordine medio è stato del {percent} più basso rispetto {compare}.",
        InsightKind.NO_ORDERS: "Nessun ordine pagato, contro una media di {baseline}: controllare il negozio e i "
                               "webhook.",
        InsightKind.ABANDONMENT_UP: "L’abbandono dei carrelli è salito di {points} punti rispetto "
                                    "{compare}.",
        InsightKind.ABANDONMENT_DOWN: "L’abbandono dei carrelli è sceso di {points} punti rispetto "
                                      "{compare}.",
        InsightKind.TOP_PRODUCT: "{subject} ha fatto il {percent} del fatturato.",
        InsightKind.QUOTA: "È stato usato il {percent} dei {limit} ordini pagati in 30 giorni del piano.",
    },
}


@dataclass(frozen=True, slots=True)
class DigestText:
    subject: str
    text: str  # plain text, one line per figure, then the insights
    insights: tuple[str, ...]


def language(locale: str) -> str:
    """The catalogue for a locale ("de_AT", "de-CH", "fr"): its language if we have it, else English."""
    lang = locale.replace("-", "_").split("_")[0].lower()
    return lang if lang in _TEXT else "en"


@dataclass(frozen=True, slots=True)
class _Format:
    """Numbers, money and percentages in one locale (Babel)."""

    locale: str
    currency: str

    def number(self, n: int) -> str:
        return format_decimal(n, locale=self.locale)

    def money(self, minor: int) -> str:
        return money(minor, self.currency, self.locale)

    def percent(self, p: int) -> str:
        return format_percent(Decimal(p) / 100, locale=self.locale)

    def permille(self, p: int) -> str:
        return format_percent(Decimal(p) / 1000, locale=self.locale, decimal_quantization=False)

    def plural(self, n: int) -> str:
        """"one" or "other": the CLDR plural category of a count (French says "1 unité" and "0 unité")."""
        return "one" if Locale.parse(self.locale).plural_form(n) == "one" else "other"


def render_digest(d: Digest, locale: str = "en", org_name: str | None = None) -> DigestText:
    """The digest as a subject, a text and its insights as sentences, in `locale` ("de_DE", "fr", ...)."""
    lang = language(locale)
    t = _TEXT[lang]
    f = _Format(locale.replace("-", "_") if lang != "en" else "en", d.currency)
    last = date.fromisoformat(d.last)
    compare = t["compare.week"] if d.span is Span.WEEK else t["compare.day"].format(
        weekdays=_weekdays(lang, format_date(last, "EEEE", locale=f.locale)))

    def line(label: str, m: Measure, show: str, baseline: str) -> str:
        if m.change is None:
            return f"{t[label]}{t['colon']}{show} ({t['no_baseline']})"
        if m.change == 0:
            return f"{t[label]}{t['colon']}{show} ({t['same'].format(compare=compare)})"
        change = ("+" if m.change > 0 else "\u2212") + f.percent(abs(m.change))
        return f"{t[label]}{t['colon']}{show} ({t['vs'].format(change=change, compare=compare, baseline=baseline, colon=t['colon'])})"

    sentences = tuple(_sentence(t[i.kind], i, compare, f) for i in d.insights)
    lines = [
        line("revenue", d.revenue, f.money(d.revenue.value), f.money(d.revenue.baseline)),
        line("net_revenue", d.net_revenue, f.money(d.net_revenue.value), f.money(d.net_revenue.baseline)),
        line("orders", d.orders, f.number(d.orders.value), f.number(d.orders.baseline)),
        line("aov", d.aov, f.money(d.aov.value), f.money(d.aov.baseline)),
        f"{t['carts']}{t['colon']}{f.number(d.carts)}, {t['abandoned']}{t['colon']}{f.number(d.abandoned)}"
        + (f" ({f.permille(d.abandonment.value)})" if d.carts else ""),
    ]
    if d.top_products:
        lines.append(f"{t['top']}{t['colon'].rstrip()}")
        lines += [f"  {n}. {p.name or p.product}{t['colon']}{f.number(p.units)} {t['unit.' + f.plural(p.units)]}, {f.money(p.revenue)}"
                  for n, p in enumerate(d.top_products, 1)]
    if d.segments:
        lines.append(f"{t['segments']}{t['colon']}" + ", ".join(
            f"{s.segment} +{f.number(s.entered)} \u2212{f.number(s.exited)}" for s in d.segments))
    if d.quota is not None and d.quota.limit:
        lines.append(f"{t['quota.label']}{t['colon']}{t['of'].format(count=f.number(d.quota.count), limit=f.number(d.quota.limit))}")
    if sentences:
        lines += ["", f"{t['insights']}{t['colon'].rstrip()}"] + [f"- {s}" for s in sentences]
    subject = t[f"subject.{d.span}"].format(org=org_name or d.org, date=format_date(last, "long", locale=f.locale),
                                            revenue=f.money(d.revenue.value), orders=f.number(d.orders.value))
    return DigestText(subject, "\n".join(lines) + "\n", sentences)


def _weekdays(lang: str, weekday: str) -> str:
    """The plural of a weekday's name, as the comparison phrase needs it ("Tuesdays", "Dienstage")."""
    if lang == "en":
        return weekday + "s"
    if lang == "de":
        return weekday + "e"
    if lang in ("es", "fr"):  # "martes" stays, "sábado" -> "sábados", "mardi" -> "mardis"
        return weekday if weekday.endswith("s") else weekday + "s"
    # Italian: "martedì" stays; "sabato" -> "sabati", "domenica" -> "domeniche" (and the article agrees)
    if weekday == "domenica":
        return "delle ultime quattro domeniche"
    return "degli ultimi quattro " + ("sabati" if weekday == "sabato" else weekday)


def _sentence(template: str, i: Insight, compare: str, f: _Format) -> str:
    return template.format(compare=compare, percent=f.percent(i.percent), points=f.number(i.percent),
                           baseline=f.number(i.baseline), limit=f.number(i.baseline), subject=i.subject)
