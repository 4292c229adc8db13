"""Pipeline-health alerts: the notifier looks at every organisation's stores and channels once a
`interval` and, for each automation with `trigger = "health"`, puts an action into the outbox when a
problem starts and when it ends (core/health.py decides what is a problem).

Several notifiers may watch at once, and a notifier may restart: an alert's key names the problem's
episode by something every watcher sees alike (the silent store's last delivery, the first minute
of the rejection burst, the channel's disabling reason, the tens of dead letters), so the outbox keeps
each alert once (notifier/actions.py). What a restart forgets is only which problems it had already
seen end: a problem that ended while no notifier watched says nothing more.

The event log is watched by a probe (one read of the log, as the dataflow reads it): a failing probe
opens a `log_unavailable` problem that lasts until a probe succeeds. Its episode is the minute the
watcher first saw it fail, so two notifiers that noticed the same outage in different minutes each
send one alert (they cannot see the same first failure; ingest answers 503 meanwhile and the
vendors retry, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from babel.dates import format_timedelta

from core.config import Config, Org
from core.health import (
    REJECTED_WINDOW_S,
    Check,
    Incidents,
    Problem,
    channel_problems,
    log_unavailable,
    rejected_burst,
    store_silent,
)
from notifier.actions import Action, Message, action_key
from notifier.outbox import Outbox, Status
from state.connections import ConnectionStats
from state.rejected import RejectedStore

log = logging.getLogger("storepulse.notifier")
HEALTH = "health"
DAY_MINUTES = 24 * 60

_TEXT: dict[str, dict[str, tuple[str, str]]] = {  # language -> check -> (opened, resolved)
    "en": {
        Check.STORE_SILENT: ("Store {subject} has sent nothing for {silent_s} (it usually sends something every "
                             "{usual_gap_s})", "Store {subject} is sending again"),
        Check.DELIVERIES_REJECTED: ("{count} deliveries from store {subject} rejected in 10 minutes ({reason}): a "
                                    "rotated signing secret?", "Deliveries from store {subject} are accepted again"),
        Check.CHANNEL_DISABLED: ("Channel {subject} is disabled: {reason}", "Channel {subject} is enabled again"),
        Check.DEAD_LETTERS: ("{dead} deliveries to channel {subject} are dead: replay them from the delivery log",
                             "Channel {subject} has no dead deliveries piling up any more"),
        Check.LOG_UNAVAILABLE: ("The event log has been unavailable for {for_s}: stores' deliveries are refused "
                                "(503) and their senders retry", "The event log is available again"),
    },
    "de": {
        Check.STORE_SILENT: ("Shop {subject} hat seit {silent_s} nichts gesendet (sonst etwa alle {usual_gap_s})",
                             "Shop {subject} sendet wieder"),
        Check.DELIVERIES_REJECTED: ("{count} Zustellungen von Shop {subject} in 10 Minuten abgelehnt ({reason}): "
                                    "ein geänderter Signaturschlüssel?", "Zustellungen von Shop {subject} werden "
                                    "wieder angenommen"),
        Check.CHANNEL_DISABLED: ("Kanal {subject} ist deaktiviert: {reason}", "Kanal {subject} ist wieder aktiv"),
        Check.DEAD_LETTERS: ("{dead} Zustellungen an Kanal {subject} sind gescheitert: im Zustellprotokoll erneut "
                             "senden", "Bei Kanal {subject} häufen sich keine gescheiterten Zustellungen mehr"),
        Check.LOG_UNAVAILABLE: ("Das Ereignisprotokoll ist seit {for_s} nicht erreichbar: Zustellungen der Shops "
                                "werden abgelehnt (503) und erneut versucht", "Das Ereignisprotokoll ist wieder "
                                "erreichbar"),
    },
    "es": {
        Check.STORE_SILENT: ("La tienda {subject} no ha enviado nada desde hace {silent_s} (suele enviar algo cada "
                             "{usual_gap_s})", "La tienda {subject} vuelve a enviar"),
        Check.DELIVERIES_REJECTED: ("{count} entregas de la tienda {subject} rechazadas en 10 minutos ({reason}): "
                                    "¿se cambió la clave de firma?", "Las entregas de la tienda {subject} vuelven "
                                    "a aceptarse"),
        Check.CHANNEL_DISABLED: ("El canal {subject} está desactivado: {reason}", "El canal {subject} vuelve a "
                                 "estar activo"),
        Check.DEAD_LETTERS: ("{dead} entregas al canal {subject} han fallado: reenvíelas desde el registro de entregas",
                             "El canal {subject} ya no acumula entregas fallidas"),
        Check.LOG_UNAVAILABLE: ("El registro de eventos no está disponible desde hace {for_s}: las entregas de las "
                                "tiendas se rechazan (503) y se reintentan", "El registro de eventos vuelve a estar "
                                "disponible"),
    },
    "fr": {
        Check.STORE_SILENT: ("La boutique {subject} n’a rien envoyé depuis {silent_s} (d’habitude, quelque chose "
                             "toutes les {usual_gap_s})", "La boutique {subject} envoie de nouveau"),
        Check.DELIVERIES_REJECTED: ("{count} livraisons de la boutique {subject} refusées en 10 minutes ({reason}) : "
                                    "une clé de signature changée ?", "Les livraisons de la boutique {subject} sont "
                                    "de nouveau acceptées"),
        Check.CHANNEL_DISABLED: ("Le canal {subject} est désactivé : {reason}", "Le canal {subject} est de nouveau "
                                 "actif"),
        Check.DEAD_LETTERS: ("{dead} envois vers le canal {subject} ont échoué : renvoyez-les depuis le journal des "
                             "envois", "Le canal {subject} n’accumule plus d’envois en échec"),
        Check.LOG_UNAVAILABLE: ("Le journal des événements est indisponible depuis {for_s} : les livraisons des "
                                "boutiques sont refusées (503) et réessayées", "Le journal des événements est de "
                                "nouveau disponible"),
    },
    "it": {
        Check.STORE_SILENT: ("Il negozio {subject} non invia nulla da {silent_s} (di solito qualcosa ogni "
                             "{usual_gap_s})", "Il negozio {subject} invia di nuovo"),
        Check.DELIVERIES_REJECTED: ("{count} consegne del negozio {subject} rifiutate in 10 minuti ({reason}): una "
                                    "chiave di firma cambiata?", "Le consegne del negozio {subject} sono di nuovo "
                                    "accettate"),
        Check.CHANNEL_DISABLED: ("Il canale {subject} è disattivato: {reason}", "Il canale {subject} è di nuovo attivo"),
        Check.DEAD_LETTERS: ("{dead} invii al canale {subject} sono falliti: reinviarli dal registro degli invii",
                             "Il canale {subject} non accumula più invii falliti"),
        Check.LOG_UNAVAILABLE: ("Il registro degli eventi non è disponibile da {for_s}: le consegne dei negozi "
                                "vengono rifiutate (503) e ritentate", "Il registro degli eventi è di nuovo "
                                "disponibile"),
    },
}


def words(problem: Problem, opened: bool, locale: str) -> str:
    """The alert's sentence in the locale's language (English when there is none)."""
    lang = locale.replace("-", "_").split("_")[0].lower()
    lang = lang if lang in _TEXT else "en"
    detail: dict[str, object] = {"subject": problem.subject}
    for name, value in problem.detail:
        detail[name] = (format_timedelta(timedelta(seconds=int(value)), threshold=1.5, locale=lang)
                        if name.endswith("_s") and isinstance(value, int) else value)
    return _TEXT[lang][problem.check][0 if opened else 1].format(**detail)


def episode(problem: Problem) -> str:
    """What names one occurrence of a problem alike for every watcher (module docstring)."""
    d = dict(problem.detail)
    if problem.check in (Check.STORE_SILENT, Check.LOG_UNAVAILABLE):
        return f"since {d['since']}"
    if problem.check is Check.DELIVERIES_REJECTED:
        return f"burst {d['first']}"
    if problem.check is Check.DEAD_LETTERS:
        return f"dead {int(d['dead']) // 10}"
    return f"reason {d.get('reason', '')}"


@dataclass
class HealthWatch:
    config: Config
    outbox: Outbox
    stats: ConnectionStats
    rejected: RejectedStore
    clock: Callable[[], float] = time.time  # seconds
    incidents: dict[str, Incidents] = field(default_factory=dict)
    log_probe: Callable[[], object] | None = None  # reads the event log once; raises when it is unavailable
    log_failed_since: float | None = None  # when the probe first failed in the current outage

    def watched(self) -> list[Org]:
        return [o for o in self.config.orgs.values() if any(a.trigger == HEALTH for a in o.automations.values())]

    def problems(self, org: Org, now_s: float) -> list[Problem]:
        found: list[Problem] = []
        down = log_unavailable(self.log_failed_since, now_s)
        if down is not None and self.log_failed_since is not None:
            found.append(Problem(down.check, down.subject, (*down.detail, ("since", int(self.log_failed_since // 60)))))
        minute = int(now_s // 60)
        recent = self.rejected.list(org=org.id, limit=1000)
        for store in org.stores:
            _, _, last = self.stats.activity(store, minute - 60)
            silent = store_silent(store, self.stats.active_minutes(store, minute - DAY_MINUTES, minute), last, now_s)
            if silent is not None and last is not None:
                found.append(Problem(silent.check, silent.subject, (*silent.detail, ("since", int(last)))))
            mine = [(r.received_at, r.reason) for r in recent if r.store == store]
            burst = rejected_burst(store, mine, now_s)
            if burst is not None:
                first = min(t for t, _ in mine if now_s - REJECTED_WINDOW_S < t <= now_s)
                found.append(Problem(burst.check, burst.subject, (*burst.detail, ("first", int(first // 60)))))
        disabled = self.outbox.disabled_channels(org.id)
        dead: dict[str, int] = {}
        for d in self.outbox.list(org.id, status=Status.DEAD, limit=1000):
            dead[d.action.channel] = dead.get(d.action.channel, 0) + 1
        for channel in sorted(set(disabled) | set(dead)):
            found += channel_problems(channel, disabled.get(channel), dead.get(channel, 0))
        return found

    def check_once(self) -> int:
        """Looks once; puts the alerts of problems that started or ended; how many actions it put."""
        now_s = self.clock()
        self._probe_log(now_s)
        actions: list[Action] = []
        for org in self.watched():
            opened, resolved = self.incidents.setdefault(org.id, Incidents()).update(self.problems(org, now_s), now_s)
            for problem, is_open in [*((p, True) for p in opened), *((p, False) for p, _ in resolved)]:
                actions += self._actions(org, problem, is_open, now_s)
        if actions:
            self.outbox.put(actions, int(now_s * 1000))
        return len(actions)

    def _probe_log(self, now_s: float) -> None:
        if self.log_probe is None:
            return
        try:
            self.log_probe()
        except Exception as exc:  # whatever the store raises when it cannot be reached
            if self.log_failed_since is None:
                log.warning("health: the event log is unavailable: %s", exc)
                self.log_failed_since = now_s
            return
        self.log_failed_since = None

    def _actions(self, org: Org, problem: Problem, opened: bool, now_s: float) -> list[Action]:
        out = []
        cause = f"{problem.check}:{problem.subject}:{episode(problem)}:{'opened' if opened else 'resolved'}"
        for a in org.automations.values():
            if a.trigger != HEALTH:
                continue
            locale = a.locale or org.locale
            text = words(problem, opened, locale)
            payload = {"check": str(problem.check), "subject": problem.subject, "state": "opened" if opened else "resolved",
                       **{k: v for k, v in problem.detail}}
            message = Message(subject=text, text=text + "\n", slack_text=("⚠️ " if opened else "✅ ") + text,
                              json={"title": text, **payload})
            at = int(now_s * 1000)
            out += [Action(action_key(a.id, "", cause), org.id, a.id, channel, HEALTH, "", cause, at, at, locale,
                           payload, message) for channel in a.send]
        return out

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        if not self.watched():
            return
        while not stop.is_set():
            try:
                put = await asyncio.to_thread(self.check_once)
                if put:
                    log.info("health: %d alert action(s) put", put)
            except Exception:  # the stores or the outbox unavailable: try again at the next look
                log.exception("health check failed")
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
