"""E-mail channels: one message with a text and an HTML part over an asyncio SMTP client (aiosmtplib).

Message-ID is the delivery id (the same on every retry and replay). Mails to customers (to =
"customer") carry List-Unsubscribe (one-click, RFC 8058) and an unsubscribe link; addresses on the
organisation's suppression list are never sent to. SMTP 4xx: retry; 5xx: dead, and a refused
recipient is suppressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from core.channels import Channel, Smtp
from notifier import unsubscribe
from notifier.actions import filled
from notifier.outbox import Delivery
from notifier.schedule import TIMEOUT_S, Outcome, Verdict, failed, smtp_outcome


def recipients(channel: Channel, d: Delivery) -> list[str]:
    """The channel's addresses, or the customer's (the action's payload "email")."""
    if not channel.to_customer:
        return list(channel.to)
    email = d.action.payload.get("email")
    return [email] if isinstance(email, str) and "@" in email else []


def message(smtp: Smtp, channel: Channel, d: Delivery, to: Sequence[str], org_key: bytes, now_ms: int) -> EmailMessage:
    m = filled(d.action)
    domain = parseaddr(smtp.sender)[1].rpartition("@")[2] or "storepulse.invalid"
    mail = EmailMessage()
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = m.subject
    mail["Message-ID"] = f"<{d.id}@{domain}>"
    mail["Date"] = format_datetime(datetime.fromtimestamp(now_ms / 1000, UTC))
    text, html = m.text, m.html
    if channel.to_customer:
        url = unsubscribe.link(smtp.public_url, org_key, d.action.org, to[0])
        mail["List-Unsubscribe"] = f"<{url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text += f"\n\n--\nUnsubscribe: {url}\n"
        html += f'<p style="font-size:small"><a href="{url.replace("&", "&amp;")}">Unsubscribe</a></p>'
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return mail


@dataclass(frozen=True, slots=True)
class Sent:
    outcome: Outcome
    refused: tuple[str, ...] = ()  # addresses refused for good (5xx): to suppress


async def send(smtp: Smtp, mail: EmailMessage, to: Sequence[str], timeout_s: float = TIMEOUT_S) -> Sent:
    try:
        errors, reply = await aiosmtplib.send(
            mail, recipients=list(to), hostname=smtp.host, port=smtp.port, start_tls=smtp.starttls,
            username=smtp.username, password=smtp.password, timeout=timeout_s)
    except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused
        codes = [r.code for r in exc.recipients]
        outcome = smtp_outcome(max(codes), "; ".join(f"{r.recipient}: {r.message}" for r in exc.recipients))
        return Sent(outcome, tuple(r.recipient for r in exc.recipients if r.code >= 500))
    except aiosmtplib.SMTPResponseException as exc:
        return Sent(smtp_outcome(exc.code, exc.message))
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Sent(failed(f"SMTP {type(exc).__name__}: {exc}"))
    refused = tuple(a for a, r in errors.items() if r.code >= 500)
    note = "; ".join(f"{a}: SMTP {r.code} {r.message}" for a, r in errors.items())
    return Sent(Outcome(Verdict.DELIVERED, int(reply.split()[0]) if reply[:3].isdigit() else 250, note), refused)

