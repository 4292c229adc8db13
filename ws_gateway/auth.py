"""Bearer tokens: a token belongs to exactly one organisation and sees only its data."""

from __future__ import annotations

from core.config import Config, Org


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def org_for(config: Config, authorization: str | None, org_id: str | None = None) -> Org:
    """The organisation a request may read: 401 without a valid token, 403 for another org's data."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <org token>'")
    org = config.org_for_token(authorization[7:].strip())
    if org is None:
        raise AuthError(401, "the bearer token is not valid")
    if org_id is not None and org.id != org_id:
        raise AuthError(403, f"this token does not give access to organisation {org_id!r}")
    return org
