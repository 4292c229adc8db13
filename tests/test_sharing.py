"""Read-only share links: the pure rules, the durable store (SQLite and Redis), and a real
`storepulse up` answering reads with a share token, refusing every write, and forgetting revoked links."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from core.config import parse_config
from core.shares import ShareError, expiry, new_share, token_sha256
from state.redis_shares import RedisShareStore
from state.sqlite_shares import SqliteShareStore
from tests.helpers import ORGS_TOML, TOKENS, RedisServer, Storepulse, payment_intent_succeeded, wait_json, wait_ws

NOW = 1_780_000_000_000
DAY = 86_400_000
CONFIG = parse_config(ORGS_TOML, {"ACME_EU2_SECRET": "x"})
ACME = CONFIG.orgs["acme"]


@pytest.mark.unit
def test_expiry_is_a_duration_or_an_instant_in_the_next_year() -> None:
    assert expiry("30d", NOW) == NOW + 30 * DAY and expiry("12h", NOW) == NOW + 12 * 3_600_000
    assert expiry("2026-06-01T00:00:00+00:00", NOW) == 1_780_272_000_000
    for bad, said in [("0d", "duration"), ("soon", "duration"), ("2026-06-01T00:00:00", "no UTC offset"),
                      ("2020-01-01T00:00:00+00:00", "not in the future"), ("400d", "more than 366 days")]:
        with pytest.raises(ShareError, match=said):
            expiry(bad, NOW)


@pytest.mark.unit
def test_a_share_is_scoped_timed_and_shows_no_secret() -> None:
    share = new_share(ACME, ["acme-stripe"], "client A", NOW + DAY, NOW, "shr_1", "sps_secret")
    assert share.token_sha256 == token_sha256("sps_secret") and share.active(NOW) and not share.active(NOW + DAY)
    assert list(share.scoped(ACME).stores) == ["acme-stripe"]
    shown = share.to_json(NOW)
    assert "sps_secret" not in json.dumps(shown) and share.token_sha256 not in json.dumps(shown)
    assert shown["status"] == "active" and share.to_json(NOW + DAY)["status"] == "expired"
    with pytest.raises(ShareError, match="has no store 'tokyo-stripe'"):
        new_share(ACME, ["tokyo-stripe"], "", NOW + DAY, NOW, "shr_2", "sps_x")
    with pytest.raises(ShareError, match="starts with sps_"):
        new_share(ACME, [], "", NOW + DAY, NOW, "shr_3", "plain")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> SqliteShareStore | RedisShareStore:
    s: SqliteShareStore | RedisShareStore = (SqliteShareStore(tmp_path / "shares.sqlite3") if request.param == "sqlite"
                                             else RedisShareStore(redis_server.url))
    request.addfinalizer(s.close)
    return s


def test_the_store_keeps_links_by_hash_and_revokes_once(store: SqliteShareStore | RedisShareStore) -> None:
    org = f"acme{uuid.uuid4().hex[:6]}"  # the Redis server is shared by the session
    acme = ACME.__class__(org, ACME.timezone, ACME.currency, ACME.token_sha256, ACME.stores)
    a = new_share(acme, [], "a", NOW + DAY, NOW, f"shr_a{org}", "sps_a" + org)
    b = new_share(acme, ["acme-site"], "b", NOW + DAY, NOW + 1, f"shr_b{org}", "sps_b" + org)
    store.add(a)
    store.add(b)
    assert store.by_hash(token_sha256("sps_a" + org)) == a and store.by_hash(token_sha256("sps_nope")) is None
    assert store.list(org) == [b, a]
    revoked = store.revoke(org, a.id, NOW + 5)
    assert revoked is not None and revoked.revoked_at == NOW + 5 and not revoked.active(NOW + 6)
    again = store.revoke(org, a.id, NOW + 9)
    assert again is not None and again.revoked_at == NOW + 5  # the first revocation stands
    assert store.by_hash(a.token_sha256) == revoked
    assert store.revoke("tokyo", a.id, NOW) is None and store.revoke(org, "shr_none", NOW) is None


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(sp: Storepulse, **body: object) -> dict[str, object]:
    r = httpx.post(f"{sp.base}/api/v1/orgs/acme/shares", json=body, headers=_h(TOKENS["acme"]), timeout=10)
    assert r.status_code == 201, r.text
    created: dict[str, object] = r.json()
    return created


def test_a_share_token_reads_its_organisation_and_writes_nothing(storepulse: Storepulse) -> None:
    assert storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}",
                                                                           1234)).status_code == 200
    made = _create(storepulse, expires="7d", label="agency client")
    token = str(made["token"])
    assert token.startswith("sps_") and made["portal_url"] == f"{storepulse.base}/#token={token}"
    base = f"{storepulse.base}/api/v1/orgs"
    for what in ("figures", "series?from=2026-01-01&to=2026-01-02", "orders", "customers", "carts", "journey", "attribution",
                 "connections", "quota", "health"):
        r = httpx.get(f"{base}/acme/{what}", headers=_h(token), timeout=10)
        assert r.status_code == 200, (what, r.text)
    assert httpx.get(f"{base}/acme/figures", params={"token": token}, timeout=10).status_code == 200  # a spreadsheet's URL
    assert httpx.get(f"{base}/tokyo/figures", headers=_h(token), timeout=10).status_code == 403
    # the automations' results read the delivery log, whose payloads name customers: not through a share link
    owner = httpx.get(f"{base}/acme/automations", params={"period": "7d"}, headers=_h(TOKENS["acme"]), timeout=10)
    shared = httpx.get(f"{base}/acme/automations", params={"period": "7d"}, headers=_h(token), timeout=10)
    assert owner.status_code == shared.status_code == 200 and "results" in owner.json() and "results" not in shared.json()
    # every write answers 403, registered route or not, and so do the links' own endpoints
    for method, path in [("POST", "/acme/shares"), ("DELETE", f"/acme/shares/{made['share']['id']}"),  # type: ignore[index]
                         ("POST", "/acme/segments"), ("PUT", "/acme/automations/x"), ("POST", "/acme/deliveries/x/replay")]:
        for auth in ({"headers": _h(token)}, {"params": {"token": token}}):
            r = httpx.request(method, base + path, timeout=10, **auth)  # type: ignore[arg-type]
            assert r.status_code == 403 and r.json() == {"error": "a share link is read-only"}, (method, path, r.text)
    assert httpx.get(f"{base}/acme/shares", headers=_h(token), timeout=10).status_code == 403
    listed = httpx.get(f"{base}/acme/shares", headers=_h(TOKENS["acme"]), timeout=10).json()["shares"]
    assert any(s["id"] == made["share"]["id"] and s["status"] == "active" for s in listed)  # type: ignore[index]
    assert token not in json.dumps(listed) and token_sha256(token) not in json.dumps(listed)
    # the live feed takes it too
    with connect(f"ws://127.0.0.1:{storepulse.ws_port}/v1/live", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": token}))
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and (snapshot["currency"], snapshot["exponent"]) == ("EUR", 2)
        assert snapshot["figures"]["total"]["all"]["gross_revenue"]["exponent"] == 2
    revoked = httpx.delete(f"{base}/acme/shares/{made['share']['id']}", headers=_h(TOKENS["acme"]), timeout=10)  # type: ignore[index]
    assert revoked.status_code == 200 and revoked.json()["share"]["status"] == "revoked"
    r = httpx.get(f"{base}/acme/figures", headers=_h(token), timeout=10)
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert token not in storepulse.log_tail(10**7)  # never written to the server's log


def test_a_share_of_some_stores_sees_only_them(storepulse: Storepulse) -> None:
    pi = f"pi_{uuid.uuid4().hex}"
    assert storepulse.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uuid.uuid4().hex}", pi, 777)).status_code == 200
    assert storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}",
                                                                           555)).status_code == 200
    full = {"Authorization": f"Bearer {TOKENS['acme']}"}
    base = f"{storepulse.base}/api/v1/orgs/acme"
    wait_json(storepulse, lambda: httpx.get(f"{base}/orders", params={"period": "all", "limit": 1000}, headers=full).json(),
              lambda b: any(o["order"] == pi for o in b["orders"]))
    token = str(_create(storepulse, stores=["acme-stripe"], expires="1h")["token"])
    one = httpx.get(f"{base}/figures", params={"period": "all"}, headers=_h(token), timeout=10).json()
    alone = httpx.get(f"{base}/figures", params={"period": "all", "store": "acme-stripe"}, headers=full, timeout=10).json()
    skip = ("store", "freshness")
    assert {k: v for k, v in one.items() if k not in skip} == {k: v for k, v in alone.items() if k not in skip}
    assert httpx.get(f"{base}/figures", params={"store": "acme-site"}, headers=_h(token), timeout=10).status_code == 404
    assert [c["store"] for c in httpx.get(f"{base}/connections", headers=_h(token), timeout=10).json()["connections"]] == [
        "acme-stripe"]
    assert httpx.get(f"{base}/quota", headers=_h(token), timeout=10).status_code == 403
    # a link of two stores: their total, and nothing of the third
    two = str(_create(storepulse, stores=["acme-stripe", "acme-site"])["token"])
    orders = httpx.get(f"{base}/orders", params={"period": "all", "limit": 1000}, headers=_h(two), timeout=10).json()["orders"]
    assert orders and {o["store"] for o in orders} <= {"acme-stripe", "acme-site"} and pi not in {o["order"] for o in orders}
    both = httpx.get(f"{base}/figures", params={"period": "all"}, headers=_h(two), timeout=10).json()
    each = [httpx.get(f"{base}/figures", params={"period": "all", "store": s}, headers=full, timeout=10).json()
            for s in ("acme-stripe", "acme-site")]
    assert both["paid_orders"] == sum(f["paid_orders"] for f in each)
    assert both["gross_revenue"]["amount"] == sum(f["gross_revenue"]["amount"] for f in each)
    everyone = httpx.get(f"{base}/customers", params={"period": "all", "limit": 1000}, headers=_h(two), timeout=10).json()
    assert all(c["customer"] for c in everyone["customers"])  # answers; other stores' money is not in it
    # the live feed of a link of some stores: their total and each of them, nothing of the others
    with connect(f"ws://127.0.0.1:{storepulse.ws_port}/v1/live", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": two}))
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and set(snapshot["figures"]["stores"]) == {"acme-stripe", "acme-site"}
        assert snapshot["figures"]["total"]["all"]["paid_orders"] == both["paid_orders"]
        pushed = f"pi_{uuid.uuid4().hex}"
        assert storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uuid.uuid4().hex}", pushed, 300)).status_code == 200
        wait_ws(ws, lambda m: m.get("type") == "figures"
                and m["figures"]["total"]["all"]["paid_orders"] == both["paid_orders"] + 1)


def test_bad_requests_to_the_links_api_say_what_is_wrong(storepulse: Storepulse) -> None:
    url = f"{storepulse.base}/api/v1/orgs/acme/shares"
    for body, said in [(b"nope", "must be JSON"), (b"[]", "JSON object"), (b'{"stores": "acme-site"}', "list of store ids"),
                       (b'{"stores": ["tokyo-stripe"]}', "has no store 'tokyo-stripe'"), (b'{"expires": "forever"}', "duration")]:
        r = httpx.post(url, content=body, headers=_h(TOKENS["acme"]), timeout=10)
        assert r.status_code == 400 and said in r.json()["error"], r.text
    assert httpx.post(url, json={}, headers=_h(TOKENS["tokyo"]), timeout=10).status_code == 403
    assert httpx.post(url, json={}, timeout=10).status_code == 401
    assert httpx.delete(f"{url}/shr_none", headers=_h(TOKENS["acme"]), timeout=10).status_code == 404


def test_the_command_line_creates_lists_and_revokes(storepulse: Storepulse) -> None:
    made = storepulse.cli("share", "create", "--org", "acme", "--store", "acme-site", "--label", "cli", "--url", storepulse.base)
    assert made.returncode == 0, made.stderr
    token = made.stdout.split("token (shown only now): ")[1].split()[0]
    assert f"portal: {storepulse.base}/#token={token}" in made.stdout
    share_id = made.stdout.split()[1]
    assert httpx.get(f"{storepulse.base}/api/v1/orgs/acme/journey", headers=_h(token), timeout=10).status_code == 200
    listed = storepulse.cli("share", "list", "--org", "acme")
    assert share_id in listed.stdout and "active" in listed.stdout and token not in listed.stdout
    assert storepulse.cli("share", "revoke", "--org", "acme", share_id).returncode == 0
    assert httpx.get(f"{storepulse.base}/api/v1/orgs/acme/journey", headers=_h(token), timeout=10).status_code == 401
    bad = storepulse.cli("share", "create", "--org", "acme", "--expires", "999d")
    assert bad.returncode == 2 and "more than 366 days" in bad.stderr


def test_me_says_who_a_token_is(storepulse: Storepulse) -> None:
    url = f"{storepulse.base}/api/v1/me"
    own = httpx.get(url, headers=_h(TOKENS["acme"]), timeout=10).json()
    assert own == {"org": "acme", "kind": "organisation", "read_only": False, "stores": ["acme-stripe", "acme-eu2", "acme-site"],
                   "currency": "EUR", "timezone": "Europe/Berlin", "expires_at": None}
    made = _create(storepulse, stores=["acme-site"], expires="2h")
    shared = httpx.get(url, params={"token": made["token"]}, timeout=10).json()
    assert shared["kind"] == "share" and shared["read_only"] and shared["stores"] == ["acme-site"]
    assert shared["expires_at"] == made["share"]["expires_at"]  # type: ignore[index]
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers=_h("sps_not-a-link"), timeout=10).status_code == 401
