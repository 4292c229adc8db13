"""The contract between the automations (what fires) and the notifier (delivering it exactly once).

The dataflow's trigger logic builds one `Action` per (firing, channel) and puts it into an `Outbox`
(notifier/outbox.py). Everything about an action is decided before it is put: who it is for, when
it may be sent (`due_at`) and the rendered message. The notifier only delivers it.

Idempotency: `key` is the sha256 of automation|subject|cause (`action_key`), so a replay of the
dataflow after a crash emits the same key, and the outbox keeps one delivery per (key, channel).
The delivery id (`delivery_id`) derives from both and is the webhook's `webhook-id` and the
e-mail's Message-ID on every retry and replay: the recipient can tell a repeat.
"""

from __future__ import annotations

import hashlib
import html
from typing import Any

import msgspec
from msgspec import Struct

__all__ = ["Action", "Message", "action_key", "decode_action", "delivery_id", "encode_action", "filled"]


class Message(Struct, frozen=True, omit_defaults=True):
    """The message, already rendered by the automations side (its templates, the org's locale).
    A part left empty gets a default from the others (`filled`)."""

    subject: str = ""  # e-mail subject
    text: str = ""  # plain text: the e-mail's text part, Slack's fallback
    html: str = ""  # the e-mail's HTML part
    slack_text: str = ""  # Slack mrkdwn
    json: Any = None  # a webhook's "data" (JSON-able); None: the action's payload


class Action(Struct, frozen=True):
    """One thing to deliver to one channel."""

    key: str  # idempotency key: action_key(automation, subject, cause)
    org: str
    automation: str  # the automation's id ("big-order"); "test" for a channel test
    channel: str  # the org's channel id ([orgs.X.channels.ID])
    trigger: str  # what fired it: "order.paid", "cart.abandoned", "segment.entered", ...
    subject: str  # the customer or order it is about ("" when none)
    cause: str  # the event id that fired it, or "time" for a timer, ...
    fired_at: int  # ms since the epoch: when the trigger fired (event time or the watermark)
    due_at: int  # ms: not sent before (fired_at + the automation's wait)
    locale: str = "en"
    payload: dict[str, Any] = {}  # JSON-able facts the message is about; "email": the customer's address (to = "customer")
    message: Message = Message()


def action_key(automation: str, subject: str, cause: str) -> str:
    """The idempotency key of a firing: the same automation, subject and cause give the same key."""
    return hashlib.sha256(f"{automation}|{subject}|{cause}".encode()).hexdigest()


def delivery_id(key: str, channel: str) -> str:
    """The id of an action's delivery to one channel: webhook-id and Message-ID on every attempt."""
    return "msg_" + hashlib.sha256(f"{key}|{channel}".encode()).hexdigest()[:32]


def filled(action: Action) -> Message:
    """The action's message with every part present: an empty part is derived from the others."""
    m = action.message
    subject = m.subject or f"{action.automation}: {action.trigger}"
    text = m.text or m.slack_text or subject
    return Message(subject=subject, text=text, html=m.html or f"<p>{html.escape(text)}</p>",
                   slack_text=m.slack_text or text, json=action.payload if m.json is None else m.json)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Action)


def encode_action(action: Action) -> bytes:
    return _ENCODER.encode(action)


def decode_action(data: bytes) -> Action:
    return _DECODER.decode(data)
