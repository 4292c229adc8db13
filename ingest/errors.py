"""Why a delivery was refused. Each carries the HTTP status and a message for the sender."""

from __future__ import annotations


class Rejected(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadSignature(Rejected):
    status = 400


class BadPayload(Rejected):
    status = 400


class TooLarge(Rejected):
    status = 413


class UnknownStore(Rejected):
    status = 404


class UnsupportedMediaType(Rejected):
    status = 415


class SlowBody(Rejected):
    """The body did not arrive in time, or the sender closed the connection before its end."""

    status = 408
