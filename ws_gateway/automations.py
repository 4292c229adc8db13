"""GET /api/v1/orgs/{org}/automations and /automations/{id}: the organisation's automation definitions
(core/automations/definition.py), as the config defines them. Each is {"id", "trigger", "send", ...}
in the shape `[orgs.X.automations.ID]` takes, so a definition can be copied back into the config.
The endpoints are registered in ws_gateway/api.py behind `org_route` (token of that organisation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.config import Org
from web.responses import json_response

if TYPE_CHECKING:
    from ws_gateway.api import ReadSide


async def listing(request: Request, side: ReadSide, org: Org) -> Response:
    return json_response({"org": org.id, "locale": org.locale,
                          "automations": [{"id": a.id, **a.to_json()} for _, a in sorted(org.automations.items())]})


async def one(request: Request, side: ReadSide, org: Org) -> Response:
    a = org.automations.get(request.path_params["id"])
    if a is None:
        raise HTTPException(404, f"no automation {request.path_params['id']!r} in organisation {org.id!r}")
    return json_response({"id": a.id, **a.to_json()})
