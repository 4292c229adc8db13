"""SnapshotFile files (flows/snapshot_files.py): what a snapshot lists is what a restore reads, whatever was
merged, compacted, retired or left half-written by a crash; and an organisation snapshotted
through them comes back equal, while a snapshot writes only what changed."""

from __future__ import annotations

import pickle
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import parse_config
from core.events import Event, Item, Kind
from flows import snapshot_files, snapshots
from flows.organisation import Organisation
from flows.snapshot_files import FANOUT, FileList, SnapshotFiles


def ALL(table, key, value):
    return True


CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_763_762_400_000


def files(store: SnapshotFiles) -> set[str]:
    return {p.name for p in store.dir.iterdir()} if store.dir.exists() else set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.integers(0, 30), st.integers(0, 1000), max_size=12), max_size=40))
def test_a_restore_reads_the_latest_value_of_every_key_whatever_was_merged(saves: list[dict[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        restores_the_latest_values(Path(tmp), saves)


def restores_the_latest_values(root: Path, saves: list[dict[int, int]]) -> None:
    store = SnapshotFiles(root, "o")
    truth: dict[int, int] = {}
    states = []
    for changed in saves:
        truth.update(changed)
        state = store.save({"t": dict(changed)}, ALL, lambda: {"t": dict(truth)})
        states.append((pickle.loads(pickle.dumps(state)), dict(truth)))
    assert len(store.state.files) < FANOUT * (1 + max((s.level for s in store.state.files), default=0))
    # The latest snapshot, restored by a new process: every key with its newest value.
    again = SnapshotFiles(root, "o").load(states[-1][0] if states else FileList(), ALL)
    assert again.get("t", {}) == truth


def test_a_restore_from_the_previous_snapshot_still_finds_its_files(tmp_path: Path, monkeypatch) -> None:
    """Bytewax may resume from an epoch before the latest snapshot: merged-away files stay a while."""
    monkeypatch.setattr(snapshot_files, "RETIRE_SECONDS", 0.0)
    store = SnapshotFiles(tmp_path, "o")
    truth: dict[int, int] = {}
    older, values = FileList(), {}
    for i in range(FANOUT * 3):  # three merges into level 1, one of them by the last save
        older, values = store.state, dict(truth)
        truth[i % 5] = i
        store.save({"t": {i % 5: i}}, ALL, lambda: {"t": dict(truth)})
    assert SnapshotFiles(tmp_path, "o").load(older, ALL)["t"] == values
    # ...and the restore removed every file its snapshot does not list.
    assert files(store) == {s.name for s in older.files}


def test_files_of_an_epoch_that_was_never_committed_are_removed_at_restore(tmp_path: Path) -> None:
    store = SnapshotFiles(tmp_path, "o")
    committed = store.save({"t": {1: "a"}}, ALL, lambda: {"t": {1: "a"}})
    store.save({"t": {1: "b", 2: "c"}}, ALL, lambda: {"t": {1: "b", 2: "c"}})  # the process dies before the commit
    (store.dir / "000000000099-0-deadbeef.seg").write_bytes(b"half a file")
    assert SnapshotFiles(tmp_path, "o").load(committed, ALL) == {"t": {1: "a"}}
    assert files(store) == {s.name for s in committed.files}


def test_dropped_entries_stay_dropped_and_garbage_is_compacted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(snapshot_files, "GARBAGE_SLACK", 10)
    store = SnapshotFiles(tmp_path, "o")
    live: dict[int, int] = {}
    for i in range(200):  # a sliding window: only the last 20 keys are held
        live[i] = i
        live.pop(i - 20, None)
        def keep(t, k, v, i=i):
            return k > i - 20
        state = store.save({"t": {i: i}}, keep, lambda: {"t": dict(live)})
    stored = sum(s.entries for s in state.files)
    assert stored <= 2 * len(live) + snapshot_files.GARBAGE_SLACK + FANOUT
    assert SnapshotFiles(tmp_path, "o").load(state, lambda t, k, v: k > 179) == {"t": live}


def test_a_missing_segment_says_how_to_recover(tmp_path: Path) -> None:
    store = SnapshotFiles(tmp_path, "o")
    state = store.save({"t": {1: 1}}, ALL, lambda: {"t": {1: 1}})
    for p in store.dir.iterdir():
        p.unlink()
    try:
        SnapshotFiles(tmp_path, "o").load(state, ALL)
    except RuntimeError as exc:
        assert "delete <data-dir>/recovery" in str(exc)
    else:
        raise AssertionError("a missing snapshot file must not restore silently")


def paid(i: int, t: int) -> Event:
    return Event(id=f"e{i}", kind=Kind.ORDER_PAID, org="o", store="s", time=t, amount=100 + i, currency="EUR",
                 customer=f"c{i % 7}", order=f"o{i}", items=(Item(f"p{i % 3}", 1 + i % 2, 50),))


def test_an_organisation_comes_back_equal_and_a_snapshot_writes_only_what_changed(tmp_path: Path) -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    stores: dict[str, SnapshotFiles] = {}
    store = stores.setdefault("o", SnapshotFiles(tmp_path, "o"))
    org.apply_all([paid(i, T0 + i * 60_000) for i in range(5000)])
    first = snapshots.save(org, store)
    assert store.last.entries_written >= 5000
    org.apply_all([paid(5000, T0 + 5000 * 60_000)])
    second = snapshots.save(org, store)
    # One new order, its day and hour buckets, its customer's profile and segment state, the profiles' open
    # order, the attribution's order: a few entries, not the 5,000 orders, 7 profiles and 7 segment states again.
    assert store.last.entries_written == 7
    assert len(second) < len(first) + 1000
    back = snapshots.load(second, lambda org_id: SnapshotFiles(tmp_path, org_id))
    assert back.ledger.orders.keys() == org.ledger.orders.keys()
    assert back.ledger.buckets == org.ledger.buckets
    def values(o):
        return {k: f.record_value() for k, f in o.ledger.orders.items()}
    assert values(back) == values(org)
    assert (back.version, back.watermark, back.folded, back.armed) == (org.version, org.watermark, org.folded, False)
    profiles = org.shoppers.profiles
    assert [back.shoppers.profiles.profile(f"c{i}") for i in range(7)] == [profiles.profile(f"c{i}") for i in range(7)]
    assert sorted(back.shoppers.profiles.orders.items()) == sorted(profiles.orders.items())  # final orders
    assert back.shoppers.profiles.held() == profiles.held()
    def held(book):  # the restored customers are held packed until something touches them
        return {k: v for k, v in book.held().items() if k not in ("packed", "steps")}
    assert held(back.segments) == held(org.segments) and back.segments.counts == org.segments.counts
    assert back.segments.held()["packed"] == len(org.segments.customers) > 0
    assert {s: back.segments.members(s) for s in back.segments.counts} == {s: org.segments.members(s) for s in org.segments.counts}
    assert sorted(back.segments.timers) == sorted((c.now.due(), k) for k, c in org.segments.customers.items()
                                                  if c.now.due() is not None)
    def steps(book):  # settled at the watermark, as their next input settles them (an idle one was, when packed)
        return {k: (book._settle(c, book.watermark), len(c.steps))[1] for k, c in book.customers.items()}
    assert steps(back.segments) == steps(org.segments)
    rnd = random.Random(3)
    more = [paid(5001 + i, T0 + rnd.randrange(5000) * 60_000) for i in range(50)]  # late orders, old buckets
    again = [paid(i, T0 + i * 60_000) for i in range(0, 5000, 97)]  # final orders reported again: nothing moves
    assert back.apply_all(more + again) == org.apply_all(more + again)
    assert back.shoppers.profiles.profile("c3") == profiles.profile("c3")


def test_attribution_comes_back_from_the_files_and_goes_on_alike(tmp_path: Path) -> None:
    """E-mail attribution's orders and touches live in the snapshot files: restored from two snapshots
    (the second after the watermark dropped some of both), it decides the rest of the stream alike."""
    def touch(i: int, t: int) -> Event:
        return Event(id=f"t{i}", kind=Kind.EMAIL_ENGAGED, org="o", store="s", time=t, customer=f"c{i % 7}",
                     campaign=f"k{i % 3}", name="open")
    rnd = random.Random(11)
    events = sorted([paid(i, T0 + rnd.randrange(40 * 1440) * 60_000) for i in range(400)]
                    + [touch(i, T0 + rnd.randrange(40 * 1440) * 60_000) for i in range(300)], key=lambda e: e.time)
    org = Organisation.new(CONFIG.orgs["o"])
    store = SnapshotFiles(tmp_path, "o")

    def restored() -> Organisation:
        back = snapshots.load(snapshots.save(org, store), lambda org_id: SnapshotFiles(tmp_path, org_id))
        a, b = org.shoppers.attribution, back.shoppers.attribution
        assert b.held() == a.held() and a.held()["orders"] > 0 and a.held()["touches"] > 0
        assert (b.orders, b.touches, b.by_person, b.sums) == (a.orders, a.touches, a.by_person, a.sums)
        return back

    assert org.apply_all(events[:300])
    restored()
    # touches arriving late, just before orders of the first part: they re-attribute orders already written
    orders = [e for e in events[:300] if e.kind is Kind.ORDER_PAID][-20:]
    late = [Event(id=f"late{i}", kind=Kind.EMAIL_ENGAGED, org="o", store="s", time=o.time - 60_000,
                  customer=o.customer, campaign="late", name="click") for i, o in enumerate(orders)]
    assert any(getattr(r, "kind", None) == "order_attribution" for r in org.apply_all(late))
    back = restored()
    assert back.apply_all(events[300:500]) == org.apply_all(events[300:500])  # the watermark moves ~3 weeks
    back = restored()  # with the orders and touches it dropped gone from the files too
    assert store.last.entries_written < 800
    assert back.apply_all(events[500:]) == org.apply_all(events[500:])
    assert back.shoppers.attribution.held() == org.shoppers.attribution.held()


def test_small_snapshots_after_a_big_one_do_not_rewrite_it(tmp_path: Path) -> None:
    store = SnapshotFiles(tmp_path, "o")
    big = {i: i for i in range(20_000)}
    store.save({"t": dict(big)}, ALL, lambda: {"t": dict(big)})
    first = store.state.files[0]
    for i in range(FANOUT * 2):
        big[i] = -i
        store.save({"t": {i: -i}}, ALL, lambda: {"t": dict(big)})
        assert store.last.entries_written < 100  # each snapshot, merges included, wrote a few entries
    assert store.state.files[0] == first and len(store.state.files) <= 3
    assert SnapshotFiles(tmp_path, "o").load(store.state, ALL) == {"t": big}
