"""Whether a record's value fits storage: every integer within 64 bits. Pure.

The check runs on every change the dataflow emits (flows/quarantine.py `unstorable`), tens per event
with live segments, so it is planned once per value class from its field types instead of walking
every field of every value: a plan reads only the fields whose type can hold an integer (`int`,
`int | None`, and lists, tuples, dicts and structs holding some), and skips strings, booleans and raw
JSON. A segment member or change has one such field, an order four.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
from msgspec import Struct, inspect

from core.records import value_types

LO, HI = -(2**63), 2**63 - 1

Check = Callable[[Any], bool]  # true when every integer the value holds is within 64 bits


def fits(value: Struct) -> bool:
    """Whether every integer `value` holds (through the fields its class declares) is within 64 bits."""
    return plan(type(value))(value)


def plan(cls: type[Struct]) -> Check:
    """The check of a value of class `cls`, planned at its first use."""
    check = PLANS.get(cls)
    if check is None:
        check = PLANS[cls] = _struct_plan(cls) or _always
    return check


def _always(value: object) -> bool:
    return True


def _int(n: object) -> bool:
    return n is None or LO <= n <= HI  # type: ignore[operator]  # an int where the type says one (None if optional)


def _plan(t: inspect.Type) -> Check | None:
    """The check of a value of type `t`, or None when no integer can be in it."""
    if isinstance(t, inspect.IntType):
        return _int
    if isinstance(t, inspect.UnionType):
        if all(_plan(u) is None for u in t.types):
            return None
        if all(isinstance(u, (inspect.IntType, inspect.NoneType)) for u in t.types):
            return _int  # int | None: the common case, one comparison
        return _walk  # which member a value is of is known only from the value: every integer in it, as found
    if isinstance(t, (inspect.ListType, inspect.VarTupleType, inspect.SetType, inspect.FrozenSetType)):
        item = _plan(t.item_type)
        return None if item is None else (lambda v: all(item(x) for x in v))
    if isinstance(t, inspect.TupleType):
        parts_at = [(i, p) for i, p in enumerate(_plan(u) for u in t.item_types) if p is not None]
        return None if not parts_at else (lambda v: all(p(v[i]) for i, p in parts_at))
    if isinstance(t, inspect.DictType):
        key, value = _plan(t.key_type), _plan(t.value_type)
        if key is None and value is None:
            return None
        return lambda v: all((key is None or key(k)) and (value is None or value(x)) for k, x in v.items())
    if isinstance(t, inspect.StructType):
        return _struct_plan(t.cls)
    if isinstance(t, (inspect.AnyType, inspect.CustomType)):
        return _walk  # a type the plan cannot see into: every integer in it, as found
    return None  # str, bool, bytes, Raw (already JSON), None, enums of strings, ...


def _struct_plan(cls: type[Struct]) -> Check | None:
    info = inspect.type_info(cls)
    assert isinstance(info, inspect.StructType)
    ints = [f.name for f in info.fields if _plan(f.type) is _int]
    others = [(attrgetter(f.name), p) for f in info.fields if (p := _plan(f.type)) is not None and p is not _int]
    if not ints and not others:
        return None
    if len(ints) == 1 and not others:  # most kinds of a segment's records: one field, one getter, one comparison
        one = attrgetter(ints[0])

        def check_one(v: Any) -> bool:
            n = one(v)
            return n is None or LO <= n <= HI

        return check_one
    get = attrgetter(*ints) if len(ints) > 1 else (lambda v: (getattr(v, ints[0]),)) if ints else (lambda v: ())

    def check(v: Any) -> bool:
        return all(n is None or LO <= n <= HI for n in get(v)) and all(p(g(v)) for g, p in others)

    return check


def _walk(value: object) -> bool:
    t = type(value)
    if t is int:
        return LO <= value <= HI  # type: ignore[operator]  # an int (type(value) is int: not narrowed)
    if isinstance(value, Struct):
        return all(_walk(v) for v in msgspec.structs.astuple(value))
    if t is list or t is tuple:
        return all(_walk(v) for v in value)  # type: ignore[attr-defined]  # a list or tuple (not narrowed)
    if t is dict:
        return all(_walk(v) for v in value.values())  # type: ignore[attr-defined]  # a dict (not narrowed)
    return True


PLANS: dict[type, Check] = {}  # by value class: its check, once planned (`plan`)
for _cls in value_types().values():  # every record kind's, at import: a type the plan cannot read fails here, not in a fold
    plan(_cls)
