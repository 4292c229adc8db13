"""Snapshot files merged a step at a time between batches (SnapshotFiles.stepwise, merge_step): every
snapshot lists complete files and restores the newest value of every key, whatever steps were taken
between saves; the merged file is listed only once written and fsynced, a half-written one is removed
at restore, a merge drops what the eviction rule drops, and an older storepulse fails loudly on a file
written in parts instead of reading part of it."""

from __future__ import annotations

import pickle
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import snapshot_files
from flows.snapshot_files import _PARTS, FANOUT, SnapshotFiles

pytestmark = pytest.mark.unit


def ALL(table: str, key: object, value: object) -> bool:
    return True


def on_disk(store: SnapshotFiles) -> set[str]:
    return {p.name for p in store.dir.iterdir()} if store.dir.exists() else set()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.integers(0, 40), st.integers(0, 1000), max_size=12), st.integers(0, 6)),
                max_size=60))
def test_every_snapshot_restores_the_newest_values_whatever_steps_were_taken_between_saves(
        saves: list[tuple[dict[int, int], int]]) -> None:
    """Saves of two tables with 0-6 merge steps after each (a merge of FANOUT files takes FANOUT reads,
    a write per table chunk and an fsync): each snapshot, restored by a new process, gives every key's newest value."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SnapshotFiles(root, "o", stepwise=True)
        truth: dict[str, dict[int, int]] = {"a": {}, "b": {}}
        merged = 0
        for changed, steps in saves:
            tables = {"a": dict(changed), "b": {k + 1: v for k, v in changed.items() if k % 3 == 0}}
            for name, rows in tables.items():
                truth[name].update(rows)
            before = {s.name for s in store.state.files}
            state = pickle.loads(pickle.dumps(store.save(tables, ALL, lambda: {n: dict(t) for n, t in truth.items()})))
            merged += bool(before - {s.name for s in state.files})
            back = SnapshotFiles(root, "o", stepwise=True).load(state, ALL, prune=False)
            assert {n: back.get(n, {}) for n in truth} == truth
            assert all((root / "o" / s.name).exists() for s in state.files)
            for _ in range(steps):
                store.merge_step(ALL)
        if len(saves) >= 40 and sum(steps for _, steps in saves) >= 200:
            assert merged  # long enough runs did merge some files


def test_the_merged_file_is_listed_once_written_and_a_half_written_one_is_removed_at_restore(tmp_path: Path,
                                                                                          monkeypatch) -> None:
    monkeypatch.setattr(snapshot_files, "MERGE_CHUNK", 3)
    store = SnapshotFiles(tmp_path, "o", stepwise=True)
    for i in range(FANOUT):
        state = store.save({"t": {i: i, 100 + i: i}}, ALL, lambda: {})
    assert len(state.files) == FANOUT and store._merging is not None  # begun, not done: all FANOUT still listed
    for _ in range(FANOUT + 2):  # every file read, two chunks of three written
        assert store.merge_step(ALL)
    partial = on_disk(store) - {s.name for s in state.files}
    assert len(partial) == 1  # the merged file, half written
    shutil.copytree(tmp_path / "o", tmp_path / "crashed" / "o")  # the process dies here: restored from its files
    crashed = SnapshotFiles(tmp_path / "crashed", "o", stepwise=True)
    assert crashed.load(state, ALL) == {"t": {k: k % 100 for k in [*range(FANOUT), *range(100, 100 + FANOUT)]}}
    assert on_disk(crashed) == {s.name for s in state.files}  # the half-written file is gone
    # the store that kept running finishes its merge; the next save lists it instead of the FANOUT files
    while store.merge_step(ALL):
        pass
    (done,) = partial
    state = store.save({"t": {7: 70}}, ALL, lambda: {})
    assert [s.name for s in state.files][0] == done and len(state.files) == 2 and state.files[0].level == 1
    assert SnapshotFiles(tmp_path, "o").load(state, ALL, prune=False)["t"][7] == 70


def test_a_stepwise_merge_drops_what_the_eviction_rule_drops(tmp_path: Path) -> None:
    store = SnapshotFiles(tmp_path, "o", stepwise=True)
    for i in range(FANOUT):
        store.save({"t": {i: i}}, ALL, lambda: {})
    def recent(table: str, key: object, value: object) -> bool:
        return isinstance(key, int) and key >= 5
    while store.merge_step(recent):
        pass
    state = store.save({}, ALL, lambda: {})
    assert len(state.files) == 1 and state.files[0].entries == FANOUT - 5
    assert SnapshotFiles(tmp_path, "o").load(state, ALL) == {"t": {k: k for k in range(5, FANOUT)}}


def test_a_file_written_in_parts_fails_an_older_reader_instead_of_being_read_in_part(tmp_path: Path) -> None:
    store = SnapshotFiles(tmp_path, "o", stepwise=True)
    for i in range(FANOUT):
        store.save({"t": {i: i}, "u": {i: -i}}, ALL, lambda: {})
    while store.merge_step(ALL):
        pass
    state = store.save({}, ALL, lambda: {})
    data = (store.dir / state.files[0].name).read_bytes()
    assert pickle.loads(data) == _PARTS  # what an older storepulse's pickle.loads(...).items() would fail on
    assert SnapshotFiles(tmp_path, "o").load(state, ALL) == {"t": {i: i for i in range(FANOUT)},
                                                             "u": {i: -i for i in range(FANOUT)}}


def test_a_restore_drops_a_merge_under_way(tmp_path: Path) -> None:
    """A rollback (prune=False) to the latest snapshot forgets a merge begun after it; the next save begins again."""
    store = SnapshotFiles(tmp_path, "o", stepwise=True)
    for i in range(FANOUT):
        state = store.save({"t": {i: i}}, ALL, lambda: {})
    store.merge_step(ALL)
    store.load(state, ALL, prune=False)
    assert store._merging is None and not store.merge_step(ALL)
    store.save({"t": {99: 99}}, ALL, lambda: {})
    while store.merge_step(ALL):
        pass
    assert SnapshotFiles(tmp_path, "o").load(store.save({}, ALL, lambda: {}), ALL, prune=False)["t"] == {
        **{i: i for i in range(FANOUT)}, 99: 99}


def test_a_merge_reads_a_file_written_in_parts_a_part_a_step(tmp_path: Path, monkeypatch) -> None:
    """A merge of merged files (the next level up) takes in MERGE_CHUNK entries a step, not a whole file:
    bigger files make more steps, not longer ones."""
    monkeypatch.setattr(snapshot_files, "MERGE_CHUNK", 3)
    store = SnapshotFiles(tmp_path, "o", stepwise=True)
    truth: dict[int, int] = {}
    for i in range(FANOUT * FANOUT):  # 8 merges into level 1, then one of those 8 into level 2
        truth[i] = i
        store.save({"t": {i: i}}, ALL, lambda: {})
        while store.merge_step(ALL):
            pass
    state = store.save({}, ALL, lambda: {})  # lists the last merge and begins the level-2 one
    m = store._merging
    assert m is not None and [s.level for s in m.files] == [1] * FANOUT
    taken = []
    while m.out is None and store.merge_step(ALL):
        taken.append(sum(len(t) for t in m.tables.values()))
    grown = [b - a for a, b in zip([0, *taken], taken, strict=False)]
    assert max(grown) <= 3 and len(grown) >= FANOUT * 3  # each level-1 file: 8 entries in parts of 3
    while store.merge_step(ALL):
        pass
    state = store.save({}, ALL, lambda: {})
    assert [s.level for s in state.files] == [2]
    assert SnapshotFiles(tmp_path, "o").load(state, ALL) == {"t": truth}
