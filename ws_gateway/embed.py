"""`/embed/{view}`: the dashboard page for one view, to be put in an iframe on another site.

The only responses that may be framed: their policy says `frame-ancestors *` (any site may embed a
view; the data still needs a token, in the URL fragment `#token=...`, best a share link's) and they
carry no X-Frame-Options (web/security.py leaves it off a response whose own policy allows framing).
Every other response keeps `frame-ancestors 'none'` and `X-Frame-Options: DENY`. The page is the
dashboard itself: it reads the view from `location.pathname` and shows that view alone.
"""

from __future__ import annotations

import functools
from importlib.resources import files

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from web.security import page_policy, with_websocket

# The dashboard's views (issue 11): the names the page renders alone under /embed/.
VIEWS = ("overview", "orders", "carts", "products", "customers", "marketing", "segments", "automations", "connections")
FRAMING = "frame-ancestors *"


@functools.cache
def _page(ws_port: int) -> tuple[str, str]:
    page = files("ws_gateway").joinpath("static/dashboard.html").read_text().replace("__WS_PORT__", str(ws_port))
    return page, page_policy(page).replace("frame-ancestors 'none'", FRAMING)


async def embed(request: Request) -> Response:
    view = request.path_params["view"]
    if view not in VIEWS:
        raise HTTPException(404, f"no view {view!r} to embed: use one of {', '.join(VIEWS)}")
    ws_port: int = request.app.state.read_side.ws_port
    page, policy = _page(ws_port)
    return HTMLResponse(page, headers={"Content-Security-Policy": with_websocket(policy, request.url.hostname, ws_port)})


routes: list[BaseRoute] = [Route("/embed/{view}", embed, methods=["GET"])]
