"""How to represent a record's value: build, encode and decode cost per record, side by side in one
run (this machine is noisy; ratios hold, µs do not).

The record mix is the real one: the online-retail replay folded by the organisation (ledger and
shoppers' books), batch by batch as the dataflow reads the log, every record it emits kept. Each
candidate represents the same values:

- dict: what storepulse used before core/records.py (a dict per value, the order's items as an
  orjson.Fragment, the envelope a slotted dataclass encoded by orjson);
- msgspec Struct: core/records.py and core/changes.py as they are (the order's items as msgspec.Raw);
- slotted dataclass: the same fields (generated from the Structs; not frozen, which would cost more
  to build), encoded by orjson natively, decoded by orjson then the class (a customer's money entries
  into their class too);
- NamedTuple: the same fields; orjson writes tuples as arrays, so encoding goes through _asdict().

CPU µs per record (thread time: the machine is shared), best of --repeat: build (the value from its
fields), encode (what the SQLite read model writes: the value for its records table and the whole
record for the change feed), decode of the value (SQLite's records()), of the whole record (Redis's
records()) and of change-feed messages of 100 records (what the gateway follows). The typed
candidates decode every field, the order's items included (the read side lists them).

    .venv/bin/python bench/records.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
import msgspec  # noqa: E402
import orjson  # noqa: E402

from core import changes, records  # noqa: E402
from core.config import parse_config  # noqa: E402
from flows.organisation import Organisation  # noqa: E402
from flows.sources import BATCH  # noqa: E402
from ingest.replay import map_file  # noqa: E402

RETAIL = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CONFIG = parse_config('[orgs.retail]\ntimezone = "Europe/London"\ncurrency = "GBP"\ntoken = "bench-token-0123456789"\n'
                      '[orgs.retail.stores.shop]\nprovider = "events"\nsecret = "k"\n', {})
RAW_FIELDS = {"items", "event"}  # pre-serialised JSON in the typed values


def record_mix() -> list[changes.Record[Any]]:
    events = map_file(RETAIL, "online-retail", "retail", "shop").events
    org = Organisation.new(CONFIG.orgs["retail"])
    out = []
    for i in range(0, len(events), BATCH):
        out += [c for c in org.apply_all(events[i:i + BATCH]) if isinstance(c, changes.Record)]
    return out


def plain(value: Any) -> Any:
    """A value as builtins (dicts, lists), its raw JSON fields decoded."""
    return orjson.loads(msgspec.json.encode(value))


# --- the candidates: each gives (build, encode, decode value, decode record) per record ----------------------


@dataclasses.dataclass(frozen=True, slots=True)
class OldRecord:  # the envelope before core/changes.py
    org: str
    version: int
    kind: str
    key: str
    day: str
    value: Any


def dict_candidate(mix: list[changes.Record[Any]]) -> dict[str, Callable[[], object]]:
    fields = [_dict_fields(r.value) for r in mix]
    values = [dict(**f) for f in fields]
    recs = [OldRecord(r.org, r.version, str(r.kind), r.key, r.day, v) for r, v in zip(mix, values)]
    blobs = [orjson.dumps(v) for v in values]
    bodies = [orjson.dumps(r) for r in recs]
    messages = _messages(bodies)
    return {
        "build": lambda: [dict(**f) for f in fields],
        "encode": lambda: [(orjson.dumps(r.value), orjson.dumps(r)) for r in recs],
        "decode value": lambda: [orjson.loads(b) for b in blobs],
        "decode record": lambda: [OldRecord(**orjson.loads(b)) for b in bodies],
        "decode feed": lambda: [[OldRecord(**d) for d in orjson.loads(m)] for m in messages],
    }


def _messages(bodies: list[bytes], per: int = 100) -> list[bytes]:
    """Change-feed messages as the read models publish them: a JSON array of records."""
    return [b"[" + b",".join(bodies[i:i + per]) + b"]" for i in range(0, len(bodies), per)]


def _dict_fields(value: Any) -> dict[str, Any]:
    d = plain(value)
    for f in RAW_FIELDS & d.keys():
        d[f] = orjson.Fragment(msgspec.json.encode(getattr(value, f)))
    return d


def struct_candidate(mix: list[changes.Record[Any]]) -> dict[str, Callable[[], object]]:
    kw = [(type(r.value), {f: getattr(r.value, f) for f in r.value.__struct_fields__}) for r in mix]
    blobs = [(type(r.value), r.value_json()) for r in mix]
    bodies = [(type(r.value), r.to_json()) for r in mix]

    def typed(v: Any) -> Any:
        """The value, and an order's items decoded (kept, as the others keep theirs)."""
        return (v, v.lines()) if type(v) is records.Order else v

    messages = _messages([b for _, b in bodies])
    return {
        "build": lambda: [cls(**f) for cls, f in kw],
        "encode": lambda: [(r.value_json(), r.to_json()) for r in mix],
        "decode value": lambda: [typed(changes.value_from_json(k, b)) for k, b in blobs],
        "decode record": lambda: [typed(changes.record_from_json(k, b).value) for k, b in bodies],
        "decode feed": lambda: [[typed(r.value) for r in changes.changes_from_json(m)] for m in messages],
    }


def _class_per_kind(make: Callable[[str, list[tuple[str, Any]]], type]) -> dict[type, type]:
    """A class per Struct (value kinds and CustomerMoney), same fields, made by `make`."""
    out = {}
    for struct in [*records.value_types().values(), records.CustomerMoney]:
        hints = typing.get_type_hints(struct)
        out[struct] = make(struct.__name__, [(f, hints[f]) for f in struct.__struct_fields__])
    return out


def _from_builtins(classes: dict[type, type]) -> Callable[[type, dict[str, Any]], Any]:
    money = classes[records.CustomerMoney]

    def convert(struct: type, d: dict[str, Any]) -> Any:
        if struct is records.Customer:
            d["money"] = [money(**m) for m in d["money"]]
        return classes[struct](**d)

    return convert


def _typed_candidate(mix: list[changes.Record[Any]], classes: dict[type, type],
                     to_builtins: Callable[[Any], Any]) -> dict[str, Callable[[], object]]:
    convert = _from_builtins(classes)
    kw = []
    for r in mix:
        d = _dict_fields(r.value)
        if type(r.value) is records.Customer:
            d["money"] = [classes[records.CustomerMoney](**m) for m in d["money"]]
        kw.append((classes[type(r.value)], d))
    recs = [OldRecord(r.org, r.version, str(r.kind), r.key, r.day, cls(**d)) for r, (cls, d) in zip(mix, kw)]
    structs = [type(r.value) for r in mix]
    blobs = [orjson.dumps(to_builtins(r.value)) for r in recs]
    bodies = [orjson.dumps(to_builtins(r)) for r in recs]

    def record(s: type, d: dict[str, Any]) -> OldRecord:
        d["value"] = convert(s, d["value"])
        return OldRecord(**d)

    by_kind = {str(cls.KIND): cls for cls in records.value_types().values()}
    messages = _messages(bodies)
    return {
        "build": lambda: [cls(**d) for cls, d in kw],
        "encode": lambda: [(orjson.dumps(to_builtins(r.value)), orjson.dumps(to_builtins(r))) for r in recs],
        "decode value": lambda: [convert(s, orjson.loads(b)) for s, b in zip(structs, blobs)],
        "decode record": lambda: [record(s, orjson.loads(b)) for s, b in zip(structs, bodies)],
        "decode feed": lambda: [[record(by_kind[d["kind"]], d) for d in orjson.loads(m)] for m in messages],
    }


def dataclass_candidate(mix: list[changes.Record[Any]]) -> dict[str, Callable[[], object]]:
    def make(name: str, fields: list[tuple[str, Any]]) -> type:
        return dataclasses.make_dataclass(name, fields, slots=True)

    return _typed_candidate(mix, _class_per_kind(make), lambda x: x)  # orjson writes dataclasses itself


def namedtuple_candidate(mix: list[changes.Record[Any]]) -> dict[str, Callable[[], object]]:
    def make(name: str, fields: list[tuple[str, Any]]) -> type:
        return typing.NamedTuple(name, fields)  # type: ignore[misc]

    def as_dict(x: Any) -> Any:
        if type(x) is OldRecord:
            return {"org": x.org, "version": x.version, "kind": x.kind, "key": x.key, "day": x.day,
                    "value": as_dict(x.value)}
        d = x._asdict()
        if "money" in d:
            d["money"] = [m._asdict() for m in d["money"]]
        return d

    return _typed_candidate(mix, _class_per_kind(make), as_dict)


# --- timing --------------------------------------------------------------------------------------------------


def best_us(f: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.thread_time()
        f()
        best = min(best, time.thread_time() - t)
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not RETAIL.exists():
        sys.exit(f"{RETAIL} is absent: see ../shared/data/SOURCES.md")
    mix = record_mix()
    n = len(mix)
    kinds = Counter(str(r.kind) for r in mix)
    print(f"record mix of the online-retail replay: {n:,} records, "
          + ", ".join(f"{k} {c:,}" for k, c in kinds.most_common())
          + f"; {sum(len(r.to_json()) for r in mix) / n:,.0f} B of JSON each on average")
    candidates = {"dict (before)": dict_candidate(mix), "msgspec Struct": struct_candidate(mix),
                  "slotted dataclass": dataclass_candidate(mix), "NamedTuple": namedtuple_candidate(mix)}
    phases = ["build", "encode", "decode value", "decode record", "decode feed"]
    print(f"CPU µs per record, best of {args.repeat}:")
    columns = [*phases[:2], "build+encode", *phases[2:]]  # build+encode: the dataflow's share
    print(f"  {'candidate':18s}" + "".join(f"{c:>15s}" for c in columns))
    for name, steps in candidates.items():
        us = {p: best_us(steps[p], n, args.repeat) for p in phases}
        us["build+encode"] = us["build"] + us["encode"]
        print(f"  {name:18s}" + "".join(f"{us[c]:15.2f}" for c in columns))


if __name__ == "__main__":
    main()
