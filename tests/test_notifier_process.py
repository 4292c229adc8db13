"""The notifier as a user runs it: `storepulse notifier` killed with -9 mid-request, `storepulse up`'s
delivery API and metrics, and the `deliveries` / `notify` commands; on SQLite and on a real Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from notifier.actions import Action, Message, action_key, delivery_id
from notifier.open import open_outbox
from notifier.outbox import Outbox, Status
from notifier.worker import wall_ms
from storepulse import STOREPULSE
from tests.helpers import ORGS_TOML, TOKENS, RedisServer, Storepulse, free_port, wait_for
from tests.receivers import Receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ACME = f'[orgs.acme]\ncurrency = "EUR"\ntoken = "{TOKENS["acme"]}"\n'


def channels_toml(receiver: Receiver, retry: str = '["200ms"]') -> str:
    return (f'\n[orgs.acme.channels.crm]\nkind = "webhook"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
            f"retry = {retry}\nallow_private = true\n")


def action(n: int, channel: str = "crm", **payload: object) -> Action:
    now = wall_ms()
    return Action(action_key("big-order", f"cust-{n}", f"evt-{n}"), "acme", "big-order", channel, "order.paid", f"cust-{n}",
                  f"evt-{n}", now, now, payload=dict(payload), message=Message(text=f"order {n}"))


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, redis_server: RedisServer) -> str | None:
    if request.param == "redis":
        redis.Redis.from_url(redis_server.url).flushdb()
        return redis_server.url
    return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.close()


class NotifierProcess:
    """`storepulse notifier` in its own process group."""

    def __init__(self, workdir: Path, config: Path, redis_url: str | None, *extra: str, name: str = "notifier") -> None:
        self.cmd = [*STOREPULSE, "notifier", "--config", str(config), "--data-dir", str(workdir / "data"),
                    "--notifier-lease", "3", "--notifier-timeout", "2", *extra] + (["--redis", redis_url] if redis_url else [])
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "ACME_EU2_SECRET": "whsec_acme_eu2"})
        wait_for(lambda: "notifier ready" in self.log.read_text() or self._died(), 20, "storepulse notifier to start")

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"storepulse notifier exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return False

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(20)

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def test_kill_9_while_the_receiver_holds_the_request_then_one_distinct_webhook_id(
        tmp_path: Path, backend: str | None, receiver: Receiver) -> None:
    config = tmp_path / "storepulse.toml"
    config.write_text(ACME + channels_toml(receiver))
    outbox: Outbox = open_outbox(tmp_path / "data", backend)
    notifier = NotifierProcess(tmp_path, config, backend)
    try:
        receiver.hold = threading.Event()
        a = action(1)
        outbox.put([a], wall_ms())
        notifier.start()
        assert receiver.arrived.wait(20), "the notifier never reached the receiver"
        notifier.kill()  # kill -9 while the request is held open
        receiver.hold.set()  # the receiver answers 200 to a notifier that is gone: it may count it delivered
        receiver.hold = None
        d = outbox.get(delivery_id(a.key, "crm"))
        assert d is not None and d.status == Status.PENDING and d.attempts == []  # the crash recorded nothing
        notifier.start()  # after the lease (3 s) the new notifier claims it again
        wait_for(lambda: (x := outbox.get(d.id)) is not None and x.status == Status.DELIVERED, 20, "the redelivery")
        assert set(receiver.ids()) == {d.id}  # one distinct webhook-id: the receiver drops the repeat by it
        assert 1 <= len(receiver.ids()) <= 2
        assert notifier.stop() == 0
        assert SECRET not in notifier.log.read_text()
    finally:
        notifier.ensure_stopped()
        outbox.close()


def test_deliveries_and_notify_commands(tmp_path: Path, backend: str | None, receiver: Receiver) -> None:
    config = tmp_path / "storepulse.toml"
    config.write_text(ACME + channels_toml(receiver))
    base = ["--config", str(config), "--data-dir", str(tmp_path / "data")] + (["--redis", backend] if backend else [])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*STOREPULSE, *args, *base], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "ACME_EU2_SECRET": "whsec_acme_eu2"})

    outbox = open_outbox(tmp_path / "data", backend)
    metrics_port = free_port()
    notifier = NotifierProcess(tmp_path, config, backend, "--metrics-port", str(metrics_port))
    try:
        receiver.status = 500
        a = action(1)
        outbox.put([a], wall_ms())
        notifier.start()
        did = delivery_id(a.key, "crm")
        wait_for(lambda: (x := outbox.get(did)) is not None and x.status == Status.DEAD, 20, "the delivery to go dead")
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'storepulse_notifier_deliveries_total{kind="webhook",outcome="dead"} 1.0' in metrics
        assert 'storepulse_notifier_attempts_total{kind="webhook",result="retry"} 1.0' in metrics
        listed = cli("deliveries", "list", "--org", "acme", "--status", "dead")
        assert listed.returncode == 0 and did in listed.stdout and "big-order -> crm  2 attempt(s)" in listed.stdout
        shown = cli("deliveries", "show", did)
        assert shown.returncode == 0 and '"status": "dead"' in shown.stdout and '"status": 500' in shown.stdout
        receiver.status = 200
        replayed = cli("deliveries", "replay", did, "msg_nope")
        assert replayed.returncode == 1 and f"{did}: pending again" in replayed.stdout and "msg_nope: no such delivery" in replayed.stdout
        wait_for(lambda: (x := outbox.get(did)) is not None and x.status == Status.DELIVERED, 20, "the replay")
        assert receiver.delivered_ids() == [did]
        test = cli("notify", "test", "crm")
        assert test.returncode == 0 and re.search(r"acme/crm: delivered 200 in \d+ ms", test.stdout), test.stdout + test.stderr
        assert receiver.json_bodies()[-1]["automation"] == "test"
        assert cli("notify", "test", "nope").returncode == 2
        assert cli("deliveries", "prune", "--older-than", "1d").stdout.startswith("forgot 0 ")
        pruned = cli("deliveries", "prune", "--older-than", "0s")
        assert pruned.stdout.startswith("forgot 1 ") and outbox.get(did) is None, pruned.stdout + pruned.stderr
        assert cli("deliveries", "prune", "--older-than", "soon").returncode == 2
    finally:
        notifier.ensure_stopped()
        outbox.close()


@pytest.fixture
def up(tmp_path: Path, backend: str | None, receiver: Receiver) -> Iterator[Storepulse]:
    sp = Storepulse(tmp_path, backend, config=ORGS_TOML + channels_toml(receiver) +
                    '[orgs.tokyo.channels.ops]\nkind = "slack"\nurl = "https://hooks.slack.com/services/T0/B0/sekrit"\n')
    sp.extra_args = ["--notifier-lease", "3", "--notifier-timeout", "2"]
    sp.start()
    yield sp
    sp.ensure_stopped()


def test_the_delivery_api_of_storepulse_up(up: Storepulse, receiver: Receiver) -> None:
    outbox = open_outbox(up.data_dir, up.redis_url)
    try:
        ok, bad = action(1), action(2)
        receiver.script = [(200, {})] + [(500, {})] * 2  # the first answer 200, the next two 500: one goes dead
        outbox.put([ok], wall_ms())
        wait_for(lambda: (x := outbox.get(delivery_id(ok.key, "crm"))) is not None and x.status == Status.DELIVERED, 20, "delivery")
        outbox.put([bad], wall_ms())
        dead = delivery_id(bad.key, "crm")
        wait_for(lambda: (x := outbox.get(dead)) is not None and x.status == Status.DEAD, 20, "a dead delivery")

        listed = up.get("/api/v1/orgs/acme/deliveries", status="dead").json()["deliveries"]
        assert [d["id"] for d in listed] == [dead]
        assert [(t["status"], t["outcome"]) for t in listed[0]["attempts"]] == [(500, "retry"), (500, "dead")]
        assert set(listed[0]["attempts"][0]) == {"at", "status", "latency_ms", "error", "outcome"}
        assert listed[0]["message"] == {"text": "order 2"} and listed[0]["trigger"] == "order.paid"
        assert [d["id"] for d in up.get("/api/v1/orgs/acme/deliveries", channel="crm", automation="big-order").json()["deliveries"]] \
            == [dead, delivery_id(ok.key, "crm")]
        assert up.get("/api/v1/orgs/tokyo/deliveries", org="tokyo").json()["deliveries"] == []
        assert up.get(f"/api/v1/orgs/acme/deliveries/{dead}").json()["status"] == "dead"
        bogus = up.get("/api/v1/orgs/acme/deliveries", status="lost")
        assert bogus.status_code == 400 and bogus.json() == {
            "error": "status must be one of pending, delivered, dead, cancelled, got 'lost'"}
        assert up.get("/api/v1/orgs/acme/deliveries", channel="nope").status_code == 404
        assert up.get(f"/api/v1/orgs/tokyo/deliveries/{dead}", org="tokyo").status_code == 404  # another org's
        assert httpx.get(f"{up.base}/api/v1/orgs/acme/deliveries").status_code == 401
        assert up.get("/api/v1/orgs/acme/deliveries", org="tokyo").status_code == 403

        replay = httpx.post(f"{up.base}/api/v1/orgs/acme/deliveries/{dead}/replay", headers=_auth("acme"))
        assert replay.status_code == 202 and replay.json()["id"] == dead and replay.json()["status"] == "pending"
        wait_for(lambda: up.get(f"/api/v1/orgs/acme/deliveries/{dead}").json()["status"] == "delivered", 20, "the replay")
        assert receiver.delivered_ids().count(dead) == 1 and receiver.ids().count(dead) == 3  # same webhook-id each time
        assert httpx.post(f"{up.base}/api/v1/orgs/acme/deliveries/msg_nope/replay", headers=_auth("acme")).status_code == 404

        chans = up.get("/api/v1/orgs/acme/channels").json()["channels"]
        assert chans == [{"id": "crm", "kind": "webhook", "allow_private": True, "retry": ["200ms"], "enabled": True,
                          "disabled_reason": None, "url": f"http://127.0.0.1:{receiver.port}/…", "secret": "(set)", "dead": 0}]
        tokyo = up.get("/api/v1/orgs/tokyo/channels/ops", org="tokyo")
        assert tokyo.json()["url"] == "https://hooks.slack.com/…" and "sekrit" not in tokyo.text
        assert up.get("/api/v1/orgs/acme/channels/nope").status_code == 404
        tested = httpx.post(f"{up.base}/api/v1/orgs/acme/channels/crm/test", headers=_auth("acme"), timeout=10)
        assert tested.status_code == 200 and tested.json()["delivered"] and tested.json()["status"] == 200

        metrics = httpx.get(f"{up.base}/metrics").text
        assert re.search(r'storepulse_notifier_deliveries_total\{kind="webhook",outcome="delivered"\} [1-9]', metrics)
        assert re.search(r'storepulse_notifier_attempts_total\{kind="webhook",result="retry"\} [1-9]', metrics)
        assert re.search(r'storepulse_notifier_fired_to_delivered_seconds_count\{kind="webhook"\} [1-9]', metrics)
        assert "storepulse_notifier_pending " in metrics and "storepulse_notifier_oldest_pending_age_seconds " in metrics
        assert "sekrit" not in metrics and SECRET not in metrics
    finally:
        outbox.close()


def test_the_unsubscribe_link(up: Storepulse) -> None:
    from core.config import parse_config
    from notifier import unsubscribe

    org = parse_config(up.config.read_text(), {"ACME_EU2_SECRET": "x"}).orgs["acme"]
    url = unsubscribe.link(up.base, org.token_sha256, "acme", "Ann@Example.com")
    page = httpx.get(url)
    assert page.status_code == 200 and "<form method=post>" in page.text
    assert httpx.post(url).status_code == 200
    outbox = open_outbox(up.data_dir, up.redis_url)
    try:
        assert outbox.suppressed("acme", "ann@example.com") and not outbox.suppressed("tokyo", "ann@example.com")
    finally:
        outbox.close()
    forged = httpx.post(url.replace("ann%40example.com", "bob%40example.com"))
    assert forged.status_code == 400 and "not valid" in forged.json()["error"]


def _auth(org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[org]}"}


def test_two_notifier_processes_on_one_sqlite_file_deliver_each_action_once(tmp_path: Path, receiver: Receiver) -> None:
    """Embedded: two `storepulse notifier` processes share the outbox file (Redis: test_notifier_delivery.py)."""
    config = tmp_path / "storepulse.toml"
    config.write_text(ACME + channels_toml(receiver))
    outbox = open_outbox(tmp_path / "data", None)
    ports = [free_port(), free_port()]
    first, second = (NotifierProcess(tmp_path, config, None, "--notifier-batch", "5", "--metrics-port", str(port), name=f"n{port}")
                     for port in ports)
    try:
        actions = [action(n) for n in range(400)]
        first.start()
        second.start()
        outbox.put(actions, wall_ms())
        wait_for(lambda: outbox.stats().pending == 0, 40, "every action delivered")
        ids = receiver.ids()
        assert len(ids) == 400 and set(ids) == {delivery_id(a.key, "crm") for a in actions}
        counts = [_delivered(port) for port in ports]
        assert sum(counts) == 400 and min(counts) > 0, counts  # both took part, neither sent what the other did
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
        outbox.close()


def _delivered(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = re.search(r'^storepulse_notifier_deliveries_total\{kind="webhook",outcome="delivered"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0
