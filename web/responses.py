"""JSON responses of every HTTP endpoint (webhooks, events API, read API), rendered one way.

orjson, not Starlette's JSONResponse (json.dumps): that was an eighth of a webhook's CPU time, and
the read API's lists run to thousands of rows. Non-string keys (a day number, a count) are written
as strings, as json.dumps writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status, media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Every error body is {"error": "what was wrong"}."""
    response = json_response({"error": message}, status)
    if headers:
        response.headers.update(headers)
    return response
