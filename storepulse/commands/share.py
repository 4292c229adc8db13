"""`storepulse share create|list|revoke`: read-only share links of an organisation (docs/sharing.md),
straight in the share store (the data directory's SQLite, or --redis), no server needed."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.config import Config
from core.shares import ShareError, expiry, new_share
from state.shares import open_shares
from ws_gateway.sharing import make_token


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("share", help="create, list or revoke read-only share links")
    verbs = p.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="a new link; prints its token and portal URL once")
    common(create)
    create.add_argument("--org", required=True)
    create.add_argument("--store", action="append", default=[], help="limit the link to this store (repeat for more)")
    create.add_argument("--expires", default="30d", help='"30d", "12h" or an ISO 8601 instant (at most 366 days ahead)')
    create.add_argument("--label", default="", help="who the link is for")
    create.add_argument("--url", default="http://127.0.0.1:8080", help="the dashboard's base URL, for the portal link")
    ls = verbs.add_parser("list", help="the organisation's links (never their tokens)")
    common(ls)
    ls.add_argument("--org", required=True)
    rv = verbs.add_parser("revoke", help="a link stops working at once")
    common(rv)
    rv.add_argument("--org", required=True)
    rv.add_argument("id")


def run(args: argparse.Namespace, path: Path, config: Config) -> int:
    org = config.orgs.get(args.org)
    if org is None:
        print(f"storepulse share: no organisation {args.org!r} in {path} (it has {', '.join(config.orgs)})", file=sys.stderr)
        return 2
    shares = open_shares(args.data_dir, args.redis)
    now = int(time.time() * 1000)
    try:
        if args.verb == "create":
            share_id, token = make_token()
            try:
                share = new_share(org, args.store, args.label, expiry(args.expires, now), now, share_id, token)
            except ShareError as exc:
                print(f"storepulse share create: {exc}", file=sys.stderr)
                return 2
            shares.add(share)
            print(f"share {share.id} of {org.id} ({', '.join(share.stores) or 'every store'}) until "
                  f"{share.to_json(now)['expires_at']}")
            print(f"  token (shown only now): {token}")
            print(f"  portal: {args.url.rstrip('/')}/#token={token}")
        elif args.verb == "list":
            for s in shares.list(org.id):
                j = s.to_json(now)
                print(f"{s.id}  {j['status']:<8} until {j['expires_at']}  stores {','.join(s.stores) or '*'}  {s.label}")
        else:
            revoked = shares.revoke(org.id, args.id, now)
            if revoked is None:
                print(f"storepulse share revoke: organisation {org.id!r} has no share link {args.id!r}", file=sys.stderr)
                return 1
            print(f"share {revoked.id} revoked")
        return 0
    finally:
        shares.close()
