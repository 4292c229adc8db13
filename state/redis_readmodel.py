"""The distributed read model: per organisation a hash of buckets, a hash of their versions and a
version key; records in one hash per (kind, day) with a stamp per (kind, day); changes are published
on one pub/sub channel, one message per organisation per write. One Lua script applies each change
only when its version is newer, so replays after a dataflow restart change nothing and publish nothing.

The keys (docs/operations.md, "The Redis read model's keys"), all under the organisation's hash tag:
  sp:rm:{org}:days                  buckets, field "<grain>|<start>|..." -> Bucket JSON
  sp:rm:{org}:versions              field -> version; a record's field ("r|<kind>|<key>") -> "<version>|<day>"
  sp:rm:{org}:version               the organisation's highest applied version
  sp:rm:{org}:recs:<kind>:<day>     the kind's records of one day, field "r|<kind>|<key>" -> Record JSON
  sp:rm:{org}:stamps:<kind>         day -> count of the applied writes that changed that day's records
  sp:rm:{org}:rec:segment_change    segment changes, all "days" (and the previous layout's kinds)
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import msgspec
import redis
import redis.asyncio as aioredis

from core.changes import Bucket, Change, Record, bucket_from_json, changes_from_json, record_from_json
from core.figures import OPEN_END
from core.records import Value
from state.day_stamps import UNSTAMPED

FEED_CHANNEL = "sp:feed"
V = TypeVar("V", bound=Value)
# Segment changes stay in one hash, as before: a change's "day" (segment and instant) is unique, so a hash
# per day would be a key per change. Segment members are kept by day like the stamped kinds: their "day" is
# their segment, so a segment's members (/segments/{id}/members) are one hash, not every segment's; their
# counts are kept too (the list of a kind's days) but not offered as stamps (UNSTAMPED, state/day_stamps.py).
ONE_HASH = frozenset({"segment_change"})

# One organisation's changes of one write: KEYS[1] the versions hash, KEYS[2] the org's version, KEYS[3..]
# the value hashes of buckets and ONE_HASH records; ARGV[1] the feed channel, ARGV[2] the org's key prefix
# ("sp:rm:{org}:"), then per change: value-hash index (0: a record kept by day, its hash named by kind and day),
# field, version, JSON, kind, day. Applies each change newer than its stored version and publishes the
# applied ones as one JSON array, atomically with the values. A day-kept record's version entry holds its
# day too, so a record whose day changed is removed from the old day's hash here, with the version check
# (the day hashes' names are built here: they share the org's hash tag, so one slot holds them all). A day's
# stamp goes up by one per write that changed its records (not per record: a batch of today's 500 orders
# is one HINCRBY).
_WRITE = """
local applied, touched = {}, {}
local top = tonumber(redis.call('GET', KEYS[2]) or '0')
local prefix = ARGV[2]
for i = 3, #ARGV, 6 do
  local field, v, kind, day = ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 4], ARGV[i + 5]
  local stored = redis.call('HGET', KEYS[1], field)
  local old, oldday = 0, false
  if stored then
    local bar = string.find(stored, '|', 1, true)
    if bar then old, oldday = tonumber(string.sub(stored, 1, bar - 1)), string.sub(stored, bar + 1)
    else old = tonumber(stored) end
  end
  if v > old then
    local at = tonumber(ARGV[i])
    if at > 0 then
      redis.call('HSET', KEYS[at], field, ARGV[i + 3])
      redis.call('HSET', KEYS[1], field, v)
    else
      local days = touched[kind] or {}
      touched[kind] = days
      if oldday and oldday ~= day then
        redis.call('HDEL', prefix .. 'recs:' .. kind .. ':' .. oldday, field)
        days[oldday] = true
      elseif stored and not oldday then
        redis.call('HDEL', prefix .. 'rec:' .. kind, field)  -- written by the previous layout, not yet moved
      end
      redis.call('HSET', prefix .. 'recs:' .. kind .. ':' .. day, field, ARGV[i + 3])
      days[day] = true
      redis.call('HSET', KEYS[1], field, ARGV[i + 2] .. '|' .. day)
    end
    if v > top then top = v end
    applied[#applied + 1] = ARGV[i + 3]
  end
end
for kind, days in pairs(touched) do
  for day in pairs(days) do redis.call('HINCRBY', prefix .. 'stamps:' .. kind, day, 1) end
end
if #applied > 0 then
  redis.call('SET', KEYS[2], top)
  redis.call('PUBLISH', ARGV[1], '[' .. table.concat(applied, ',') .. ']')
end
return #applied
"""

# Moves records of the previous layout (one hash per kind, KEYS[1]) into their days: KEYS[2] the versions
# hash; ARGV[1] the org's key prefix, ARGV[2] the kind, then per record: field, day, JSON as read. A record
# still as read moves (its day stamped as a write would); one a newer write already put in its day (its
# version entry holds a day) is only dropped; one gone was moved by another process opening at once.
_MOVE = """
local prefix, kind = ARGV[1], ARGV[2]
local moved, days = 0, {}
for i = 3, #ARGV, 3 do
  local field, day, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HGET', KEYS[1], field) == json then
    local stored = redis.call('HGET', KEYS[2], field)
    if not (stored and string.find(stored, '|', 1, true)) then
      redis.call('HSET', prefix .. 'recs:' .. kind .. ':' .. day, field, json)
      days[day] = true
      redis.call('HSET', KEYS[2], field, (stored or '0') .. '|' .. day)
      moved = moved + 1
    end
    redis.call('HDEL', KEYS[1], field)
  end
end
for day in pairs(days) do redis.call('HINCRBY', prefix .. 'stamps:' .. kind, day, 1) end
return moved
"""

# A day's records' versions (DayVersioned.day_versions): KEYS[1] the day's hash, KEYS[2] the versions hash;
# the fields and their "<version>|<day>" entries, flat, read at once (HMGET in batches: Lua unpacks at most
# ~8,000 values).
_DAY_VERSIONS = """
local fields = redis.call('HKEYS', KEYS[1])
local out = {}
for i = 1, #fields, 1000 do
  local batch = {unpack(fields, i, math.min(i + 999, #fields))}
  local entries = redis.call('HMGET', KEYS[2], unpack(batch))
  for j = 1, #batch do
    out[#out + 1] = batch[j]
    out[#out + 1] = entries[j] or ''
  end
end
return out
"""

# Records by key, whatever their day (DayVersioned.records_by_key): KEYS[1] the versions hash; ARGV[1] the
# org's key prefix, ARGV[2] the kind, then the fields. Each record's day is its version entry's; its value
# is read from that day's hash in the same script, so a record moving meanwhile is read whole or not at all.
_BY_KEY = """
local prefix, kind, out = ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  local bar = stored and string.find(stored, '|', 1, true)
  if bar then
    local value = redis.call('HGET', prefix .. 'recs:' .. kind .. ':' .. string.sub(stored, bar + 1), ARGV[i])
    if value then out[#out + 1] = value end
  end
end
return out
"""

_KEEP_MAX = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) end
"""

_WRITE_SHA = hashlib.sha1(_WRITE.encode()).hexdigest()
_MOVE_BATCH = 2_000
_OLD_KIND_HASH = re.compile(rb"^sp:rm:\{(.*)\}:rec:([a-z_]+)$")
# Set once every record is in its day: a model opening after that scans no keys (Redis also holds a
# dedupe key per event: a million keys to scan on every open otherwise).
LAYOUT_KEY, LAYOUT = "sp:rm:layout", b"days"
IDENTITY_KEY = "sp:rm:identity"  # made by the first process that asks (state/day_stamps.py Identified)


class _Day(msgspec.Struct):
    day: str


_DAY = msgspec.json.Decoder(_Day)


def _prefix(org: str) -> str:
    return f"sp:rm:{{{org}}}:"


def _keys(org: str, kind: str | None = None) -> list[str]:
    """Values (buckets, or a ONE_HASH kind's records), their versions, and the organisation's version."""
    p = _prefix(org)
    return [f"{p}days" if kind is None else f"{p}rec:{kind}", f"{p}versions", f"{p}version"]


class RedisReadModel:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis = redis.Redis.from_url(url)
        self.moved = migrate(self._redis)

    def write(self, changes: Sequence[Change]) -> None:
        by_org: dict[str, list[Change]] = {}
        for c in changes:
            by_org.setdefault(c.org, []).append(c)
        calls = []
        for org, mine in by_org.items():
            values_of_buckets, versions, version = _keys(org)
            keys = [versions, version]
            index: dict[str, int] = {}
            args: list[object] = [FEED_CHANNEL, _prefix(org)]
            for c in mine:
                if isinstance(c, Record) and c.kind not in ONE_HASH:
                    args += [0, f"r|{c.kind}|{c.key}", c.version, c.to_json(), c.kind, c.day]
                    continue
                values, field = (_keys(org, c.kind)[0], f"r|{c.kind}|{c.key}") if isinstance(c, Record) else (values_of_buckets, c.key)
                if values not in index:
                    keys.append(values)
                    index[values] = len(keys)
                args += [index[values], field, c.version, c.to_json(), "", ""]
            calls.append((_WRITE_SHA, len(keys), *keys, *args))
        try:
            self._send(calls)
        except redis.exceptions.NoScriptError:
            self._redis.script_load(_WRITE)
            self._send(calls)  # what a partial first try applied has its version now: applied once

    def _send(self, calls: list[tuple[Any, ...]]) -> None:
        # EVALSHA directly: redis-py's Script objects ask SCRIPT EXISTS first, one more round trip a write.
        with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(*call)
            pipe.execute()

    def caught_up(self, at: dict[str, int]) -> None:
        # Never back (as SQLite's max()): a restarted worker may report an older time once.
        with self._redis.pipeline(transaction=False) as pipe:
            for org, ms in at.items():
                pipe.eval(_KEEP_MAX, 1, f"sp:rm:{{{org}}}:caught_up", ms)
            pipe.execute()

    def caught_up_at(self, org: str) -> int | None:
        v = self._redis.get(f"sp:rm:{{{org}}}:caught_up")
        return None if v is None else int(v)

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        if kind.KIND in ONE_HASH:
            found = (record_from_json(kind, v) for v in self._redis.hvals(_keys(org, kind.KIND)[0]))
            return [r for r in found if first <= r.day <= last]
        return [record_from_json(kind, v) for day in self._read_days(org, kind.KIND, first, last) for v in day]

    def _read_days(self, org: str, kind: str, first: str, last: str) -> list[list[bytes]]:
        """The values of each day in [first, last], read in one transaction with the days' list: a record
        moving between two days while this reads is in exactly one of them (a day the list gained since
        it was read first, the record's new day, is read again)."""
        p = _prefix(org)
        listed: list[bytes] = self._redis.hkeys(f"{p}stamps:{kind}")  # type: ignore[assignment]  # bytes replies
        days = _in(listed, first, last)
        while True:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hkeys(f"{p}stamps:{kind}")
                for day in days:
                    pipe.hvals(f"{p}recs:{kind}:{day}")
                now, *values = pipe.execute()
            now_days = _in(now, first, last)
            if now_days == days:
                return values
            days = now_days

    def day_versions(self, org: str, kind: type[V], day: str) -> dict[str, int]:
        """Per record of the kind on `day`, its version (state/day_stamps.py DayVersioned): no value read."""
        if kind.KIND in UNSTAMPED or kind.KIND in ONE_HASH:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        p = _prefix(org)
        flat: list[bytes] = self._redis.eval(_DAY_VERSIONS, 2, f"{p}recs:{kind.KIND}:{day}", f"{p}versions")
        strip = len(f"r|{kind.KIND}|")
        out = {}
        for field, entry in zip(flat[::2], flat[1::2], strict=True):
            version, _, on = entry.decode().partition("|")
            if on == day:  # always, read in one script with the day's fields
                out[field.decode()[strip:]] = int(version)
        return out

    def records_by_key(self, org: str, kind: type[V], keys: Sequence[str]) -> list[Record[V]]:
        """The records of the kind with these keys, whatever their day (DayVersioned)."""
        if kind.KIND in UNSTAMPED or kind.KIND in ONE_HASH:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        if not keys:
            return []
        values: list[bytes] = self._redis.eval(_BY_KEY, 1, _keys(org)[1], _prefix(org), kind.KIND,
                                               *(f"r|{kind.KIND}|{k}" for k in keys))
        return [record_from_json(kind, v) for v in values]

    def identity(self) -> str:
        """Made once (SET NX: whichever process asks first), gone with a flushed Redis."""
        self._redis.set(IDENTITY_KEY, uuid.uuid4().hex, nx=True)
        value = self._redis.get(IDENTITY_KEY)
        return value.decode() if isinstance(value, bytes) else str(value)

    def day_stamps(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> dict[str, int]:
        """Per day in [first, last] holding records of the kind (or having held), a stamp that changes
        whenever a write changes that day's records (state/day_stamps.py)."""
        if kind.KIND in UNSTAMPED:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        found: dict[bytes, bytes] = self._redis.hgetall(f"{_prefix(org)}stamps:{kind.KIND}")  # type: ignore[assignment]  # bytes replies
        return {d: int(n) for k, n in found.items() if first <= (d := k.decode()) <= last}

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        days, _, version = _keys(org)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(version)
            pipe.hgetall(days)
            v, found = pipe.execute()
        # A bucket's field is its key, grain first: the other grain (24 hours a day) is not parsed.
        wanted = b"" if grain is None else f"{grain}|".encode()
        return int(v or 0), [bucket_from_json(x) for k, x in found.items() if k.startswith(wanted)]

    async def feed(self) -> AsyncIterator[list[Change] | None]:
        client = aioredis.Redis.from_url(self._url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(FEED_CHANNEL)
            yield None
            async for msg in pubsub.listen():
                if msg["type"] == "message":  # skips the subscribe confirmation
                    yield changes_from_json(msg["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    def close(self) -> None:
        self._redis.close()


def _in(days: list[bytes], first: str, last: str) -> list[str]:
    return sorted(d for k in days if first <= (d := k.decode()) <= last)


def migrate(client: redis.Redis) -> int:
    """Moves every record the previous layout kept in one hash per (org, kind) into its day's hash (all
    kinds but ONE_HASH), counting the day as a write would; returns how many moved. Idempotent, and safe
    while another process does the same (each batch is one script that moves only what is still as it
    was read) or while writes go on: it returns once no such hash is left, so a model that opened reads
    every record from its day."""
    if client.get(LAYOUT_KEY) == LAYOUT:
        return 0
    moved = 0
    for name in client.scan_iter(match="sp:rm:{*}:rec:*", count=1_000):
        found = _OLD_KIND_HASH.match(name)
        if found is None or found[2].decode() in ONE_HASH:
            continue
        org, kind = found[1].decode(), found[2].decode()
        versions = _keys(org)[1]
        while client.exists(name):
            batch: list[bytes | str] = []
            for field, value in client.hscan_iter(name, count=_MOVE_BATCH):
                batch += [field, _DAY.decode(value).day, value]
                if len(batch) >= 3 * _MOVE_BATCH:
                    moved += int(client.eval(_MOVE, 2, name, versions, _prefix(org), kind, *batch))
                    batch = []
            if batch:
                moved += int(client.eval(_MOVE, 2, name, versions, _prefix(org), kind, *batch))
    client.set(LAYOUT_KEY, LAYOUT)
    return moved
