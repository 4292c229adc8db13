"""The notifier's pure parts: retry schedule, answers, channel config, signatures, messages."""

from __future__ import annotations

import asyncio
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.channels import Channel, Smtp, scrub
from core.config import ConfigError, parse_config
from notifier import mail, slack, unsubscribe, webhook
from notifier.actions import Action, Message, action_key, delivery_id, filled
from notifier.guard import Refused, check_url, refused_address
from notifier.outbox import Delivery, Status
from notifier.schedule import (
    STANDARD_RETRY,
    Outcome,
    Verdict,
    delay_ms,
    http_outcome,
    next_try,
    retry_after_ms,
    smtp_outcome,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEAD = '[orgs.acme]\ncurrency = "EUR"\ntoken = "acme-token-0123456789"\n'


def delivery(n: int = 1, automation: str = "big-order", **payload: object) -> Delivery:
    a = Action(action_key(automation, f"c{n}", f"e{n}"), "acme", automation, "crm", "order.paid", f"c{n}", f"e{n}", T0, T0,
               payload=dict(payload), message=Message(text=f"order {n} paid", slack_text=f"*order {n}*"))
    return Delivery(delivery_id(a.key, a.channel), a, Status.PENDING, T0, T0)


def test_the_standard_schedule_is_ten_attempts_with_jitter_that_only_stretches() -> None:
    assert [delay_ms(n, STANDARD_RETRY, 0.0) for n in range(1, 10)] == [
        5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000, 72_000_000, 86_400_000]
    assert delay_ms(10, STANDARD_RETRY, 0.0) is None  # the 10th failure was the last attempt
    assert delay_ms(1, STANDARD_RETRY, 0.999) == 5_499
    retry = Outcome(Verdict.RETRY, 503, "HTTP 503")
    assert next_try(retry, 1, (1000, 2000), T0, 0.0) == T0 + 1000
    assert next_try(retry, 2, (1000, 2000), T0, 0.5) == T0 + 2100
    assert next_try(retry, 3, (1000, 2000), T0, 0.0) is None
    assert next_try(Outcome(Verdict.DEAD, 400), 1, (1000,), T0, 0.0) is None
    # Retry-After replaces the schedule's delay, but not the count of attempts
    assert next_try(Outcome(Verdict.RETRY, 429, "", 30_000), 1, (1000,), T0, 0.0) == T0 + 30_000
    assert next_try(Outcome(Verdict.RETRY, 429, "", 30_000), 2, (1000,), T0, 0.0) is None


def test_retry_after_in_seconds_or_a_date() -> None:
    assert retry_after_ms("7", T0) == 7000
    assert retry_after_ms("Tue, 14 Nov 2023 22:13:30 GMT", T0) == 10_000  # T0 is 22:13:20 UTC
    assert retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", T0) == 0
    assert retry_after_ms("999999999", T0) == 86_400_000
    assert retry_after_ms("soon", T0) is None and retry_after_ms(None, T0) is None


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (408, Verdict.RETRY), (429, Verdict.RETRY), (410, Verdict.GONE), (400, Verdict.DEAD), (401, Verdict.DEAD),
    (404, Verdict.DEAD), (301, Verdict.DEAD),
])
def test_what_an_http_answer_means(status: int, verdict: Verdict) -> None:
    assert http_outcome(status, "3", T0).verdict == verdict


def test_retry_after_is_read_on_429_and_503_only() -> None:
    assert http_outcome(429, "3", T0).retry_after_ms == 3000
    assert http_outcome(503, "3", T0).retry_after_ms == 3000
    assert http_outcome(500, "3", T0).retry_after_ms is None


def test_smtp_4xx_is_transient_5xx_permanent() -> None:
    assert smtp_outcome(451, "try later").verdict == Verdict.RETRY
    assert smtp_outcome(550, "no such user").verdict == Verdict.DEAD
    assert "550 no such user" in smtp_outcome(550, "no such user").error


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "::1",
                                     "fe80::1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"])
def test_private_addresses_are_refused(address: str) -> None:
    assert refused_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refused_address(address) is None


def test_a_url_is_checked_by_what_its_name_resolves_to() -> None:
    async def check(url: str, allow: bool) -> str | None:
        try:
            await check_url(url, allow)
        except Refused as exc:
            return str(exc)
        return None

    assert "loopback" in (asyncio.run(check("http://localhost:9/hook", False)) or "")
    assert "only http:// and https://" in (asyncio.run(check("file:///etc/passwd", True)) or "")
    assert asyncio.run(check("http://localhost:9/hook", True)) is None


def test_channels_and_smtp_from_config() -> None:
    config = parse_config(HEAD + """
[orgs.acme.channels.ops]
kind = "slack"
url = "env:SLACK_URL"
[orgs.acme.channels.crm]
kind = "webhook"
url = "https://crm.example/hooks"
secret = "env:CRM_SECRET"
retry = ["1s", "500ms", "2m"]
[orgs.acme.channels.owner]
kind = "email"
to = ["owner@acme.example"]
[orgs.acme.channels.customer]
kind = "email"
to = "customer"
[smtp]
host = "smtp.example"
from = "Acme <alerts@acme.example>"
password = "env:SMTP_PW"
""", {"SLACK_URL": "https://hooks.slack.com/services/T0/B0/sekrit", "CRM_SECRET": SECRET, "SMTP_PW": "pw"})
    ch = config.orgs["acme"].channels
    assert ch["ops"].url == "https://hooks.slack.com/services/T0/B0/sekrit"
    assert ch["crm"].retry == (1000, 500, 120_000) and ch["crm"].secret == SECRET and not ch["crm"].allow_private
    assert ch["owner"].to == ("owner@acme.example",) and ch["customer"].to_customer
    assert config.smtp == Smtp("smtp.example", 587, "Acme <alerts@acme.example>", None, None, "pw")
    # never a secret in what is shown, nor in a repr that a log could print
    shown = repr([c.public() for c in ch.values()]) + repr(list(ch.values())) + repr(config.smtp)
    assert "sekrit" not in shown and SECRET not in shown and "'pw'" not in shown
    assert ch["ops"].public()["url"] == "https://hooks.slack.com/…" and ch["crm"].public()["secret"] == "(set)"


@pytest.mark.parametrize(("table", "error"), [
    ('kind = "sms"', "orgs.acme.channels.x.kind: 'sms' is not one of slack, email, webhook"),
    ('kind = "webhook"\nurl = "https://a.example"', "orgs.acme.channels.x.secret: missing"),
    ('kind = "webhook"\nurl = "ftp://a.example"\nsecret = "' + SECRET + '"', "orgs.acme.channels.x.url: must be an http"),
    ('kind = "webhook"\nurl = "https://a.example"\nsecret = "hunter2"', "orgs.acme.channels.x.secret: must be a Standard"),
    ('kind = "slack"', "orgs.acme.channels.x.url: missing"),
    ('kind = "slack"\nurl = "https://a.example"\nto = ["a@b.example"]', "orgs.acme.channels.x.to: a slack channel has no to"),
    ('kind = "email"\nto = ["not an address"]', "orgs.acme.channels.x.to: must be \"customer\" or a list"),
    ('kind = "email"\nto = "customer"\nretry = ["soon"]', "orgs.acme.channels.x.retry[0]: 'soon' is not a duration"),
    ('kind = "email"\nto = "customer"\nallow_private = "yes"', "orgs.acme.channels.x.allow_private: must be true or false"),
    ('kind = "slack"\nurl = "env:NOPE"', "orgs.acme.channels.x.url: environment variable 'NOPE' is not set"),
    ('kind = "slack"\nurl = "https://a.example"\ncolour = "red"', "orgs.acme.channels.x: unknown key(s) ['colour']"),
])
def test_bad_channels_name_the_key(table: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(HEAD + "[orgs.acme.channels.x]\n" + table + "\n", {})
    assert error in str(exc.value)


def test_an_error_message_is_scrubbed_of_the_channel_s_credentials() -> None:
    ch = Channel("ops", "acme", "slack", url="https://hooks.slack.com/services/T0/B0/sekrit")
    assert scrub("InvalidURL: https://hooks.slack.com/services/T0/B0/sekrit?x", ch) == "InvalidURL: https://hooks.slack.com/…?x"
    hook = Channel("crm", "acme", "webhook", url="https://crm.example/h", secret=SECRET)
    assert SECRET not in scrub(f"bad {SECRET}", hook)


def test_bad_smtp_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"smtp.from: missing"):
        parse_config(HEAD + '[smtp]\nhost = "smtp.example"\n', {})
    with pytest.raises(ConfigError, match=r"smtp: unknown key\(s\) \['tls'\]"):
        parse_config(HEAD + '[smtp]\nhost = "smtp.example"\ntls = true\n', {})


def test_webhook_headers_verify_with_the_reference_library() -> None:
    d = delivery(email="x@y.example")
    body = webhook.body(d)
    now = int(time.time())  # the reference verifier accepts a timestamp within 5 minutes of its clock
    headers = webhook.headers(SECRET, d.id, now, body)
    assert headers["webhook-id"] == d.id and headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    verifier = Webhook(SECRET)
    got = verifier.verify(body, headers)
    assert got == {"type": "order.paid", "timestamp": "2023-11-14T22:13:20Z", "data": {"email": "x@y.example"},
                   "automation": "big-order", "org": "acme", "subject": "c1", "cause": "e1"}
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body + b" ", headers)
    assert webhook.body(d) == body  # the same bytes on every attempt


def test_a_burst_to_slack_is_one_message() -> None:
    assert slack.text([delivery(1)]) == "*order 1*"
    burst = [delivery(n) for n in range(12)] + [delivery(99, automation="vip")]
    text = slack.text(burst).splitlines()
    assert text[0] == "*12 × big-order*, *1 × vip*"
    assert text[1:3] == ["• *order 0*", "• *order 1*"] and text[-1] == "… and 3 more" and len(text) == 12


def test_missing_message_parts_get_defaults() -> None:
    m = filled(Action("k", "acme", "big-order", "crm", "order.paid", "", "e", T0, T0, payload={"v": 1},
                      message=Message(text="a < b")))
    assert (m.subject, m.text, m.html, m.slack_text, m.json) == ("big-order: order.paid", "a < b", "<p>a &lt; b</p>", "a < b", {"v": 1})


def test_a_customer_mail_has_both_parts_its_delivery_id_and_a_working_unsubscribe_link() -> None:
    smtp = Smtp("smtp.example", sender="Acme <alerts@acme.example>", public_url="https://sp.example")
    channel = Channel("customer", "acme", "email", to_customer=True)
    d = delivery(email="Ann@Example.com")
    assert mail.recipients(channel, d) == ["Ann@Example.com"]
    msg = mail.message(smtp, channel, d, ["Ann@Example.com"], b"k" * 32, T0)
    assert msg["Message-ID"] == f"<{d.id}@acme.example>" and msg["To"] == "Ann@Example.com"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = msg["List-Unsubscribe"].strip("<>")
    assert url == unsubscribe.link("https://sp.example", b"k" * 32, "acme", "ann@example.com")
    token = url.rpartition("t=")[2]
    assert unsubscribe.valid(b"k" * 32, "acme", "ANN@example.com", token)
    assert not unsubscribe.valid(b"x" * 32, "acme", "ann@example.com", token)
    assert not unsubscribe.valid(b"k" * 32, "acme", "bob@example.com", token)
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert url in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    staff = mail.message(smtp, Channel("owner", "acme", "email", to=("o@acme.example",)), d, ["o@acme.example"], b"k" * 32, T0)
    assert staff["List-Unsubscribe"] is None
