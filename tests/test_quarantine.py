"""One bad event never stops the figures (flows/quarantine.py, flows/dataflow.py `_OrgLogic`).

The organisation step is driven directly first: an event whose fold raises half way is quarantined
and the organisation rolled back, so its state is exactly that of the same events without it
(checked by feeding both a further batch). Then through `storepulse up`: poison rows in the log (as
an older storepulse could have appended them) are quarantined and listed, both organisations'
figures keep moving, and a frozen dataflow turns the figures stale where users look.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from bytewax.operators import StatefulBatchLogic

import flows.dataflow as dataflow
from core.changes import Bucket, Change, Record
from core.config import parse_config
from core.events import Event, Item, Kind
from core.records import Quarantined, RecordKind
from flows.dataflow import _Context, _OrgLogic
from flows.revenue import DEFAULT_HORIZON_MS, RevenueLedger
from flows.sinks import Output
from flows.sources import CaughtUp
from state.log import DEFAULT_PARTITIONS
from tests.helpers import (
    TOKENS,
    Storepulse,
    free_port,
    payment_intent_succeeded,
    recv_json,
    wait_api,
    wait_for,
    wait_json,
    wait_ws,
)

CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_795_338_000_000  # 2026-11-22 10:00 Berlin
NOW = T0 + 3_600_000


def paid(n: int, amount: int = 1000, customer: str | None = None) -> Event:
    return Event(id=f"e{n}", kind=Kind.ORDER_PAID, org="o", store="s", time=T0 + n * 1000, amount=amount,
                 currency="EUR", order=f"o{n}", customer=customer or f"c{n % 3}", items=(Item(f"p{n % 4}", 1, amount),))


def new_logic(tmp_path: Path, resume: bytes | None = None) -> _OrgLogic:
    return _OrgLogic(resume, _Context(dict(CONFIG.orgs), tmp_path / "segments", DEFAULT_HORIZON_MS, lambda: NOW))


def changes(outputs: Any) -> list[Change]:
    return [c for out in outputs[0] for c in out.changes]


def values(changes: list[Change]) -> dict[tuple[str, str], Any]:
    """Each key's newest value, as the read model keeps it (quarantine records apart)."""
    best: dict[tuple[str, str], Change] = {}
    for c in changes:
        k = ("bucket", c.key) if isinstance(c, Bucket) else (c.kind, c.key)
        if k[0] != RecordKind.QUARANTINE and (k not in best or c.version > best[k].version):
            best[k] = c
    return {k: (c.gross, c.refunds, c.orders, c.paid_orders, c.items) if isinstance(c, Bucket) else c.value
            for k, c in best.items()}


def quarantined(changes: list[Change]) -> list[Record[Quarantined]]:
    return [c for c in changes if isinstance(c, Record) and isinstance(c.value, Quarantined)]


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folding an event whose id starts with "boom" raises after the ledger changed: a half-folded event."""
    fold = RevenueLedger.fold

    def failing(self: RevenueLedger, e: Event, watermark: int | None) -> None:
        fold(self, e, watermark)
        if e.id.startswith("boom"):
            raise RuntimeError(f"cannot fold {e.id}")

    monkeypatch.setattr(RevenueLedger, "fold", failing)


@pytest.mark.parametrize("snapshotted", [False, True], ids=["before-any-snapshot", "after-a-snapshot"])
def test_a_fold_that_raises_is_quarantined_and_rolled_back(tmp_path: Path, boom: None, snapshotted: bool) -> None:
    first = [paid(n) for n in range(5)]
    second = [paid(5), paid(6, customer="c1"), Event(**{**paid(7).__dict__, "id": "boom-1"}), paid(8), paid(9)]
    third = [paid(10), paid(11, customer="c2")]
    poisoned, clean = new_logic(tmp_path / "p"), new_logic(tmp_path / "c")
    got, want = [], []
    for logic, batches, sink in ((poisoned, (first, second), got), (clean, (first, [e for e in second if e.id != "boom-1"]), want)):
        sink += changes(logic.on_batch(batches[0]))
        if snapshotted:
            logic.snapshot()
        sink += changes(logic.on_batch(batches[1]))
        sink += changes(logic.on_batch(third))  # the state after the rollback folds on exactly as the clean one
    assert values(got) == values(want)
    assert poisoned.org is not None and clean.org is not None and poisoned.org.version == clean.org.version
    poison = quarantined(got)
    assert [(q.key, q.value.reason, q.value.error) for q in poison] == [
        ("boom-1", "fold_failed", "RuntimeError: cannot fold boom-1")]
    assert msgspec.json.decode(poison[0].value.event)["id"] == "boom-1" and poison[0].day == "2026-11-22"
    # The quarantined state snapshots and restores like any other.
    restored = new_logic(tmp_path / "p", poisoned.snapshot())
    assert values(changes(restored.on_batch([paid(12)]))) == values(changes(clean.on_batch([paid(12)])))


def test_out_of_range_and_unstorable_events_are_quarantined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logic = new_logic(tmp_path)
    huge = 2**63 - 1
    out = changes(logic.on_batch([paid(1), Event(**{**paid(2).__dict__, "amount": huge}), paid(3)]))
    assert [(c.key, c.value.reason) for c in quarantined(out)] == [("e2", "out_of_range")]
    assert values(out)[("order", "s:o3")].amount == 1000
    # Were the range check ever skipped, a sum beyond 64 bits is still caught before the read model...
    monkeypatch.setattr(dataflow, "problem", lambda e: None)
    logic = new_logic(tmp_path / "unchecked")
    almost = huge - 5000
    big = [Event(**{**paid(n, customer=f"x{n}").__dict__, "amount": almost, "items": ()}) for n in (4, 5)]
    out = changes(logic.on_batch([*big, paid(6)]))
    poison = quarantined(out)
    assert [(c.key, c.value.reason) for c in poison] == [("e5", "fold_failed")]
    assert poison[0].value.error == ("Unstorable: the day bucket 2026-11-22 of store 's' would hold "
                                        f"{almost + almost}, beyond 64 bits")
    day = next(c for c in out if isinstance(c, Bucket) and c.grain == "day")
    assert (day.gross, day.paid_orders) == (almost + 1000, 2)
    # ... and so is a fold that fails on it (a customer's spend packed in 64 bits, flows/profiles.py).
    out = changes(new_logic(tmp_path / "profile").on_batch([paid(7, customer="x"), Event(**{**big[0].__dict__, "customer": "x", "amount": huge})]))
    assert [(c.key, c.value.error) for c in quarantined(out)] == [("e4", "struct.error: argument out of range")]


def test_caught_up_reaches_the_sink_with_the_batch(tmp_path: Path) -> None:
    logic = new_logic(tmp_path)
    outputs, _ = logic.on_batch([paid(1), CaughtUp("o", NOW - 5)])
    (out,) = list(outputs)
    assert isinstance(out, Output) and out.caught_up_at == NOW - 5 and out.changes
    outputs, _ = logic.on_batch([CaughtUp("o", NOW)])  # nothing changed: the report alone still goes out
    assert [(o.changes, o.caught_up_at) for o in outputs] == [([], NOW)]


# --- through storepulse up ------------------------------------------------------------------------

def uid() -> str:
    return uuid.uuid4().hex[:12]


def append_to_log(sp: Storepulse, rows: list[tuple[str, str, bytes]]) -> None:
    """Rows (org, id, body) appended straight to the embedded log, as an older storepulse could have."""
    with sqlite3.connect(sp.data_dir / "log.sqlite3", timeout=10) as db:
        from state.log import partition_of
        db.executemany("INSERT INTO events (part, org, id, body) VALUES (?, ?, ?, ?)",
                       [(partition_of(org, DEFAULT_PARTITIONS), org, i, body) for org, i, body in rows])


def test_poison_in_the_log_is_quarantined_and_every_organisation_goes_on(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path)
    sp.extra_args = ["--flows-metrics-port", str(flows_port := free_port())]
    try:
        sp.start()
        now = int(time.time())
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1_000)).status_code == 200
        wait_api(sp, "acme", lambda b: b["paid_orders"] == 1, timeout=30)
        huge = Event(id="poison-amount", kind=Kind.ORDER_PAID, org="acme", store="acme-stripe", time=now * 1000,
                     amount=2**63 - 1, currency="EUR", order="pi_poison")
        append_to_log(sp, [("acme", "poison-amount", huge.to_json()),
                           ("acme", "poison-schema", b'{"v": 99, "org": "acme", "id": "poison-schema", "store": "acme-site"}')])
        # Both organisations' figures move after the poison, the poisoned one's included.
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 2_000)).status_code == 200
        assert sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 500, "jpy")).status_code == 200
        acme = wait_api(sp, "acme", lambda b: b["paid_orders"] == 2, timeout=15)
        assert acme["gross_revenue"] == {"amount": 3_000, "currency": "EUR", "exponent": 2}
        assert wait_api(sp, "tokyo", lambda b: b["paid_orders"] == 1, timeout=15)["gross_revenue"]["amount"] == 500
        listed = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/quarantine").json(), lambda b: b["total"] == 2)
        by_id = {q["id"]: q for q in listed["quarantined"]}
        assert by_id["poison-amount"]["reason"] == "out_of_range"
        assert by_id["poison-amount"]["error"].startswith("amount is over the largest amount storepulse takes")
        assert by_id["poison-amount"]["event"]["amount"] == 2**63 - 1
        assert (by_id["poison-schema"]["reason"], by_id["poison-schema"]["store"]) == ("unreadable", "acme-site")
        assert by_id["poison-schema"]["error"] == "SchemaError: event schema version 99 is not supported (expected 1)"
        assert sp.get("/api/v1/orgs/tokyo/quarantine", org="tokyo").json()["total"] == 0
        conns = {c["store"]: c["quarantined"] for c in sp.get("/api/v1/orgs/acme/connections").json()["connections"]}
        assert (conns["acme-stripe"]["count"], conns["acme-stripe"]["last_event_id"]) == (1, "poison-amount")
        assert (conns["acme-site"]["count"], conns["acme-eu2"]["count"]) == (1, 0)
        health = sp.get("/api/v1/orgs/acme/health").json()
        assert health["quarantined"] == 2 and health["figures"]["live"] is True
        text = httpx.get(f"http://127.0.0.1:{flows_port}/metrics", timeout=5).text
        assert 'storepulse_flow_quarantined_total{reason="out_of_range"} 1.0' in text
        assert 'storepulse_flow_quarantined_total{reason="unreadable"} 1.0' in text
        assert "quarantined (out_of_range)" in sp.log_tail(20_000)
        # A restart replays the log from the last snapshot: the poison is quarantined again, never fatal.
        assert sp.stop() == 0
        sp.start()
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 4_000)).status_code == 200
        assert wait_api(sp, "acme", lambda b: b["paid_orders"] == 3, timeout=30)["gross_revenue"]["amount"] == 7_000
        assert sp.get("/api/v1/orgs/acme/quarantine").json()["total"] == 2
    finally:
        sp.ensure_stopped()


def dataflow_pid(sp: Storepulse) -> int:
    """The `storepulse flows` child of `storepulse up` (same process group)."""
    assert sp.proc is not None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if os.getpgid(int(entry)) == sp.proc.pid and b"flows" in cmdline:
                return int(entry)
        except (OSError, ProcessLookupError):
            continue
    raise AssertionError("no dataflow process found under storepulse up")


def test_a_frozen_dataflow_shows_as_stale_figures_and_live_again_when_it_resumes(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path)
    try:
        sp.start()
        def health():
            return httpx.get(f"{sp.base}/healthz", timeout=5)
        wait_for(lambda: health().status_code == 200, 30, "the figures to be live")
        assert health().json() == {"status": "ok", "organisations": 2, "stale": 0}
        with sp.ws(TOKENS["acme"]) as ws:
            assert recv_json(ws)["type"] == "snapshot"
            pid = dataflow_pid(sp)
            os.kill(pid, signal.SIGSTOP)  # alive, holding its place, doing nothing: the hardest stall to see
            try:
                stopped_at = time.time()
                msg = wait_ws(ws, lambda m: m.get("freshness", {}).get("live") is False, timeout=20)
                assert msg["freshness"]["stale_since"] is not None
                stale_since = msg["freshness"]["stale_since"]
                assert abs(_seconds(stale_since) - stopped_at) < 3
                assert health().status_code == 503
                assert health().json() == {"status": "stale", "organisations": 2, "stale": 2}
                figures = sp.figures("acme").json()
                assert figures["freshness"] == {"live": False, "caught_up_at": stale_since, "stale_since": stale_since}
                assert sp.get("/api/v1/orgs/acme/health").json()["figures"]["live"] is False
                metrics = httpx.get(f"{sp.base}/metrics", timeout=5).text
                assert 'storepulse_figures_stale{org="acme"} 1.0' in metrics
            finally:
                os.kill(pid, signal.SIGCONT)
            msg = wait_ws(ws, lambda m: m.get("freshness", {}).get("live") is True, timeout=20)
            assert msg["freshness"]["stale_since"] is None
        wait_for(lambda: health().status_code == 200, 10, "the figures to be live again")
    finally:
        sp.ensure_stopped()


def _seconds(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp()


def test_an_unreadable_recovery_state_stops_that_organisation_only_and_stays_stopped(tmp_path: Path) -> None:
    logic = new_logic(tmp_path, resume=b"not a pickle")
    assert logic.on_batch([paid(1), CaughtUp("o", NOW)]) == ([], StatefulBatchLogic.RETAIN)  # no figures, no "caught up"
    saved = logic.snapshot()
    assert saved == dataflow.BROKEN + b"not a pickle"  # kept as found, for whoever rebuilds it
    again = new_logic(tmp_path, resume=saved)  # a later start does not resume from it, whatever it holds
    assert again.on_batch([paid(2)]) == ([], StatefulBatchLogic.RETAIN) and again.snapshot() == saved
    fine = new_logic(tmp_path)  # another organisation's logic folds as ever
    assert values(changes(fine.on_batch([paid(3)])))


def corrupt_snapshot(recovery: Path, org: str) -> int:
    """Overwrites `org`'s latest organisation snapshot in the Bytewax recovery partitions with unreadable
    bytes (as a disk error, or a state from an incompatible storepulse, would leave it); how many rows."""
    import pickle
    hit = 0
    for part in recovery.glob("part-*.sqlite3"):
        with sqlite3.connect(part) as db:
            hit += db.execute("UPDATE snaps SET ser_change = ? WHERE step_id LIKE '%organisation%' AND state_key = ?"
                              " AND ser_change IS NOT NULL", (pickle.dumps(b"\x80garbage"), org)).rowcount
    return hit


def test_an_organisation_whose_state_cannot_be_read_is_stale_while_the_others_go_on(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path)
    sp.extra_args = ["--flows-metrics-port", str(flows_port := free_port())]
    try:
        sp.start()
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1_000)).status_code == 200
        assert sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 500, "jpy")).status_code == 200
        wait_api(sp, "acme", lambda b: b["paid_orders"] == 1, timeout=30)
        wait_api(sp, "tokyo", lambda b: b["paid_orders"] == 1, timeout=30)
        assert sp.stop() == 0
        assert corrupt_snapshot(sp.data_dir / "recovery", "acme") >= 1
        sp.start()
        assert sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 700, "jpy")).status_code == 200
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 2_000)).status_code == 200
        assert wait_api(sp, "tokyo", lambda b: b["paid_orders"] == 2, timeout=30)["gross_revenue"]["amount"] == 1_200
        wait_for(lambda: sp.get("/api/v1/orgs/acme/health").json()["figures"]["live"] is False, 30, "acme to show as stale")
        assert sp.get("/api/v1/orgs/tokyo/health", org="tokyo").json()["figures"]["live"] is True
        assert httpx.get(f"{sp.base}/healthz", timeout=5).status_code == 503
        assert sp.figures("acme").json()["paid_orders"] == 1  # as before the start: nothing folded, nothing wrong
        assert 'storepulse_flow_unreadable_state{org="acme"} 1.0' in httpx.get(f"http://127.0.0.1:{flows_port}/metrics",
                                                                              timeout=5).text
        assert "organisation acme: its recovery state cannot be read" in sp.log_tail(20_000)
        # The documented rebuild (docs/operations.md): stop, delete the recovery state and the read model, start.
        assert sp.stop() == 0
        import shutil
        shutil.rmtree(sp.data_dir / "recovery")
        (sp.data_dir / "readmodel.sqlite3").unlink()
        sp.start()
        acme = wait_api(sp, "acme", lambda b: b["paid_orders"] == 2, timeout=60)
        assert acme["gross_revenue"]["amount"] == 3_000  # the order that arrived while it was stopped is there
        assert wait_api(sp, "tokyo", lambda b: b["paid_orders"] == 2, timeout=30)["gross_revenue"]["amount"] == 1_200
    finally:
        sp.ensure_stopped()
