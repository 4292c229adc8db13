"""The default message of each trigger in each language: a subject and one line, as Jinja2 templates
over the variables of core/automations/messages.py (money and dates already formatted in the locale).
The text, HTML, Slack and webhook parts are built from these two (messages.py `DEFAULT_PARTS`).

`order.*` events use ORDER, every other canonical event kind EVENT, unless named here.
"""

from __future__ import annotations

ORDER, EVENT = "order", "event"

# (locale, trigger or family) -> (subject, line)
DEFAULTS: dict[tuple[str, str], tuple[str, str]] = {
    ("en", "order.paid"): ("New order {{ order }}: {{ amount }}",
                           "{{ customer }} paid {{ amount }} for order {{ order }}"
                           " ({{ item_count }} {{ 'item' if item_count == 1 else 'items' }}) on {{ date }}."),
    ("de", "order.paid"): ("Neue Bestellung {{ order }}: {{ amount }}",
                           "{{ customer }} hat am {{ date }} {{ amount }} für Bestellung {{ order }} bezahlt ({{ item_count }} Artikel)."),
    ("es", "order.paid"): ("Nuevo pedido {{ order }}: {{ amount }}",
                           "{{ customer }} pagó {{ amount }} por el pedido {{ order }}"
                           " ({{ item_count }} {{ 'artículo' if item_count == 1 else 'artículos' }}) el {{ date }}."),
    ("fr", "order.paid"): ("Nouvelle commande {{ order }} : {{ amount }}",
                           "{{ customer }} a payé {{ amount }} pour la commande {{ order }}"
                           " ({{ item_count }} {{ 'article' if item_count == 1 else 'articles' }}) le {{ date }}."),
    ("it", "order.paid"): ("Nuovo ordine {{ order }}: {{ amount }}",
                           "{{ customer }} ha pagato {{ amount }} per l'ordine {{ order }}"
                           " ({{ item_count }} {{ 'articolo' if item_count == 1 else 'articoli' }}) il {{ date }}."),

    ("en", "order.refunded"): ("Refund on order {{ order }}: {{ amount }}",
                               "Order {{ order }} of {{ customer }} was refunded {{ amount }} on {{ date }}."),
    ("de", "order.refunded"): ("Erstattung zu Bestellung {{ order }}: {{ amount }}",
                               "Bestellung {{ order }} von {{ customer }} wurde am {{ date }} mit {{ amount }} erstattet."),
    ("es", "order.refunded"): ("Reembolso del pedido {{ order }}: {{ amount }}",
                               "El pedido {{ order }} de {{ customer }} fue reembolsado con {{ amount }} el {{ date }}."),
    ("fr", "order.refunded"): ("Remboursement de la commande {{ order }} : {{ amount }}",
                               "La commande {{ order }} de {{ customer }} a été remboursée de {{ amount }} le {{ date }}."),
    ("it", "order.refunded"): ("Rimborso dell'ordine {{ order }}: {{ amount }}",
                               "L'ordine {{ order }} di {{ customer }} è stato rimborsato di {{ amount }} il {{ date }}."),

    ("en", ORDER): ("Order {{ order }}: {{ trigger }}",
                    "Order {{ order }} of {{ customer }} ({{ amount }}): {{ trigger }} on {{ date }}."),
    ("de", ORDER): ("Bestellung {{ order }}: {{ trigger }}",
                    "Bestellung {{ order }} von {{ customer }} ({{ amount }}): {{ trigger }} am {{ date }}."),
    ("es", ORDER): ("Pedido {{ order }}: {{ trigger }}",
                    "Pedido {{ order }} de {{ customer }} ({{ amount }}): {{ trigger }} el {{ date }}."),
    ("fr", ORDER): ("Commande {{ order }} : {{ trigger }}",
                    "Commande {{ order }} de {{ customer }} ({{ amount }}) : {{ trigger }} le {{ date }}."),
    ("it", ORDER): ("Ordine {{ order }}: {{ trigger }}",
                    "Ordine {{ order }} di {{ customer }} ({{ amount }}): {{ trigger }} il {{ date }}."),

    ("en", "cart.abandoned"): ("Abandoned cart: {{ amount }}",
                               "{{ customer }} left a cart worth {{ amount }} ({{ item_count }} {{ 'item' if item_count == 1 else 'items' }}) on {{ date }}."),
    ("de", "cart.abandoned"): ("Verlassener Warenkorb: {{ amount }}",
                               "{{ customer }} hat am {{ date }} einen Warenkorb im Wert von {{ amount }} verlassen ({{ item_count }} Artikel)."),
    ("es", "cart.abandoned"): ("Carrito abandonado: {{ amount }}",
                               "{{ customer }} abandonó un carrito de {{ amount }}"
                               " ({{ item_count }} {{ 'artículo' if item_count == 1 else 'artículos' }}) el {{ date }}."),
    ("fr", "cart.abandoned"): ("Panier abandonné : {{ amount }}",
                               "{{ customer }} a abandonné un panier de {{ amount }}"
                               " ({{ item_count }} {{ 'article' if item_count == 1 else 'articles' }}) le {{ date }}."),
    ("it", "cart.abandoned"): ("Carrello abbandonato: {{ amount }}",
                               "{{ customer }} ha abbandonato un carrello di {{ amount }}"
                               " ({{ item_count }} {{ 'articolo' if item_count == 1 else 'articoli' }}) il {{ date }}."),

    ("en", "segment.entered"): ("{{ customer }} entered {{ segment }}",
                                "{{ customer }} entered the segment {{ segment }} on {{ date }}."),
    ("de", "segment.entered"): ("{{ customer }} ist jetzt in {{ segment }}",
                                "{{ customer }} ist am {{ date }} in das Segment {{ segment }} gekommen."),
    ("es", "segment.entered"): ("{{ customer }} entró en {{ segment }}",
                                "{{ customer }} entró en el segmento {{ segment }} el {{ date }}."),
    ("fr", "segment.entered"): ("{{ customer }} est entré dans {{ segment }}",
                                "{{ customer }} est entré dans le segment {{ segment }} le {{ date }}."),
    ("it", "segment.entered"): ("{{ customer }} è entrato in {{ segment }}",
                                "{{ customer }} è entrato nel segmento {{ segment }} il {{ date }}."),

    ("en", "segment.exited"): ("{{ customer }} left {{ segment }}",
                               "{{ customer }} left the segment {{ segment }} on {{ date }}."),
    ("de", "segment.exited"): ("{{ customer }} ist nicht mehr in {{ segment }}",
                               "{{ customer }} hat am {{ date }} das Segment {{ segment }} verlassen."),
    ("es", "segment.exited"): ("{{ customer }} salió de {{ segment }}",
                               "{{ customer }} salió del segmento {{ segment }} el {{ date }}."),
    ("fr", "segment.exited"): ("{{ customer }} a quitté {{ segment }}",
                               "{{ customer }} a quitté le segment {{ segment }} le {{ date }}."),
    ("it", "segment.exited"): ("{{ customer }} è uscito da {{ segment }}",
                               "{{ customer }} è uscito dal segmento {{ segment }} il {{ date }}."),

    ("en", "quota.crossed"): ("Plan quota at {{ percent }} %",
                              "{{ count }} of {{ limit }} paid orders in the last 30 days ({{ percent }} %) on {{ date }}."),
    ("de", "quota.crossed"): ("Kontingent zu {{ percent }} % genutzt",
                              "{{ count }} von {{ limit }} bezahlten Bestellungen in den letzten 30 Tagen ({{ percent }} %) am {{ date }}."),
    ("es", "quota.crossed"): ("Cuota del plan al {{ percent }} %",
                              "{{ count }} de {{ limit }} pedidos pagados en los últimos 30 días ({{ percent }} %) el {{ date }}."),
    ("fr", "quota.crossed"): ("Quota du forfait à {{ percent }} %",
                              "{{ count }} commandes payées sur {{ limit }} ces 30 derniers jours ({{ percent }} %) le {{ date }}."),
    ("it", "quota.crossed"): ("Quota del piano al {{ percent }} %",
                              "{{ count }} di {{ limit }} ordini pagati negli ultimi 30 giorni ({{ percent }} %) il {{ date }}."),

    ("en", "schedule"): ("{{ automation }}: {{ date }}", "Scheduled message {{ automation }} for {{ date }}."),
    ("de", "schedule"): ("{{ automation }}: {{ date }}", "Geplante Nachricht {{ automation }} für {{ date }}."),
    ("es", "schedule"): ("{{ automation }}: {{ date }}", "Mensaje programado {{ automation }} para el {{ date }}."),
    ("fr", "schedule"): ("{{ automation }} : {{ date }}", "Message programmé {{ automation }} pour le {{ date }}."),
    ("it", "schedule"): ("{{ automation }}: {{ date }}", "Messaggio programmato {{ automation }} per il {{ date }}."),

    ("en", EVENT): ("{{ trigger }}: {{ customer }}", "{{ customer }}: {{ trigger }} on {{ date }}."),
    ("de", EVENT): ("{{ trigger }}: {{ customer }}", "{{ customer }}: {{ trigger }} am {{ date }}."),
    ("es", EVENT): ("{{ trigger }}: {{ customer }}", "{{ customer }}: {{ trigger }} el {{ date }}."),
    ("fr", EVENT): ("{{ trigger }} : {{ customer }}", "{{ customer }} : {{ trigger }} le {{ date }}."),
    ("it", EVENT): ("{{ trigger }}: {{ customer }}", "{{ customer }}: {{ trigger }} il {{ date }}."),
}


def default_for(locale: str, trigger: str) -> tuple[str, str]:
    """The (subject, line) templates of a trigger in a locale."""
    found = DEFAULTS.get((locale, trigger))
    if found is None:
        found = DEFAULTS[(locale, ORDER if trigger.startswith("order.") else EVENT)]
    return found
