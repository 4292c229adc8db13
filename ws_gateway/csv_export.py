"""CSV of the read API's answers (`?format=csv`, or `Accept: text/csv`): what spreadsheets and Looker
Studio pull. The CSV is the JSON answer's table, flattened, so it cannot say anything the JSON does
not (docs/sharing.md, "CSV"):

- the table is the endpoint's list (`orders` of /orders, `points` of /series, ...), or `?table=` names
  another list of the answer (`most_abandoned_products` of /carts); an answer without a list
  (/figures, /journey, /quota) is one row;
- a row's nested objects become dotted columns (`amount.amount`, `amount.currency`, `amount.exponent`),
  a list inside a row is its JSON text, null is an empty cell, true/false are written so;
- a text cell starting with = + - @ (or a tab or carriage return) gets a leading ' so that a
  spreadsheet shows it rather than runs it (OWASP "CSV injection"); numbers are never touched.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

# The list each endpoint (the last part of its path) answers with.
TABLES = {"orders": "orders", "products": "products", "pairs": "pairs", "customers": "customers", "series": "points",
          "carts": "latest_carts", "attribution": "campaigns", "rejected": "rejected", "quarantine": "quarantined",
          "connections": "connections"}
MEDIA_TYPE = "text/csv; charset=utf-8"
_RISKY = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt not in ("csv", "json"):
            raise HTTPException(400, f"format must be csv or json, got {fmt!r}")
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def rows(body: Mapping[str, Any], endpoint: str, table: str | None) -> list[Mapping[str, Any]]:
    """The rows of an answer's table: `table`, else the endpoint's own list, else the answer itself."""
    lists = {k: v for k, v in body.items() if isinstance(v, list) or (isinstance(v, dict) and v and
                                                                       all(isinstance(x, dict) for x in v.values()))}
    name = table or TABLES.get(endpoint)
    if table is not None and table not in lists:
        raise HTTPException(400, f"table must be one of {', '.join(lists) or '(none: this answer is one row)'}, got {table!r}")
    if name is None or name not in lists:
        return [body]
    found = lists[name]
    if isinstance(found, dict):  # {"web": {...}, "email": {...}}: one row per key
        return [{"key": k, **v} for k, v in found.items()]
    return [x if isinstance(x, dict) else {"value": x} for x in found]


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    text = str(value)
    return f"'{text}" if isinstance(value, str) and text.startswith(_RISKY) else text


def to_csv(table: list[Mapping[str, Any]]) -> str:
    flat = [flatten(r) for r in table]
    columns = list(dict.fromkeys(k for r in flat for k in r))  # in the order they first appear
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(columns)
    for r in flat:
        writer.writerow([cell(r.get(c)) for c in columns])
    return out.getvalue()


def negotiate(request: Request, response: Response) -> Response:
    """`response` (a read endpoint's JSON) as CSV when the request asks for it; errors stay JSON."""
    if response.status_code != 200 or not wants_csv(request):
        return response
    if not (response.media_type or "").startswith("application/json"):
        return response  # the endpoint wrote its own CSV (a segment's members: ws_gateway/segments.py)
    endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    text = to_csv(rows(orjson.loads(bytes(response.body)), endpoint, request.query_params.get("table")))
    return Response(text, media_type=MEDIA_TYPE, headers={"Content-Disposition": f'inline; filename="{endpoint}.csv"'})
