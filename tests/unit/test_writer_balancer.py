"""Lease arithmetic: expiry by local observation, taking, stealing, fair share, discovery."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_writer.balancer import ExpiryTracker, LeaseState, plan
from stream_writer.lease import SHARD_END, TRIM_HORIZON, Lease
from stream_writer.shard_discovery import initial_checkpoints, parse_shards, ready

pytestmark = pytest.mark.unit


def _leases(owners: list[str | None]) -> list[LeaseState]:
    return [LeaseState(f"shard-{i:02d}", owner, 1) for i, owner in enumerate(owners)]


def test_a_lease_expires_only_after_its_counter_stood_still_for_the_failover_time() -> None:
    tracker = ExpiryTracker(expiry_s=10)
    live = LeaseState("s", "w1", 5)
    assert tracker.observe([live], now=0) == set()
    assert tracker.observe([live], now=9.9) == set()
    assert tracker.observe([live], now=10) == {"s"}
    # The owner renewed: the clock starts again.
    assert tracker.observe([LeaseState("s", "w1", 6)], now=15) == set()
    assert tracker.observe([LeaseState("s", "w1", 6)], now=24) == set()


def test_next_expiry_is_the_soonest_future_expiry_of_another_workers_lease() -> None:
    tracker = ExpiryTracker(expiry_s=10)
    tracker.observe(
        [LeaseState("a", "w1", 1), LeaseState("b", "me", 1), LeaseState("c", None, 1)], now=0
    )
    tracker.observe([LeaseState("a", "w1", 1), LeaseState("d", "w2", 1)], now=4)
    assert tracker.next_expiry("me", now=5) == 10
    # Once a's expiry has passed, the next one is d's; nothing after that.
    assert tracker.next_expiry("me", now=11) == 14
    assert tracker.next_expiry("me", now=15) is None


def test_unowned_leases_are_expired_at_once() -> None:
    assert ExpiryTracker(10).observe([LeaseState("s", None, 3)], now=0) == {"s"}


def test_a_new_worker_takes_unowned_leases_up_to_its_share() -> None:
    leases = _leases([None, None, None, None])
    decision = plan(leases, {lease.shard_id for lease in leases}, "me")
    assert len(decision.take) == 4
    assert decision.steal == ()


def test_expired_leases_are_taken_before_anything_is_stolen() -> None:
    leases = _leases(["dead", "dead", "w1", "w1"])
    decision = plan(leases, {"shard-00", "shard-01"}, "me")
    # Two live workers (w1 and me): the dead worker's leases are the share to take.
    assert decision.take == ("shard-00", "shard-01")
    assert decision.steal == ()


def test_steals_one_lease_from_the_most_loaded_worker() -> None:
    leases = _leases(["w1", "w1", "w1", "w2"])
    decision = plan(leases, set(), "me")
    assert decision.take == ()
    assert decision.steal == ("shard-00",)


def test_no_steal_when_balanced() -> None:
    leases = _leases(["w1", "w1", "me", "me", "w2"])
    assert plan(leases, set(), "w2") == plan(leases, set(), "me")
    assert plan(leases, set(), "w2").steal == ()


@settings(max_examples=60, deadline=None)
@given(
    shards=st.integers(min_value=1, max_value=16),
    workers=st.integers(min_value=1, max_value=6),
    start=st.lists(st.integers(min_value=0, max_value=5), min_size=16, max_size=16),
)
def test_workers_converge_to_a_fair_share(shards: int, workers: int, start: list[int]) -> None:
    names = [f"w{i}" for i in range(workers)]
    # Any starting assignment, some leases unowned.
    owners: list[str | None] = [
        names[start[i]] if start[i] < workers else None for i in range(shards)
    ]
    rounds = 0
    while rounds < 4 * shards + 10:
        rounds += 1
        for me in names:
            leases = [LeaseState(f"s{i:02d}", owner, 0) for i, owner in enumerate(owners)]
            expired = {lease.shard_id for lease in leases if lease.owner is None}
            decision = plan(leases, expired, me)
            for shard_id in decision.take + decision.steal:
                owners[int(shard_id[1:])] = me
        counts = [owners.count(name) for name in names]
        if None not in owners and max(counts) - min(counts) <= 1:
            break
    counts = [owners.count(name) for name in names]
    assert None not in owners
    assert max(counts) <= math.ceil(shards / workers)
    assert max(counts) - min(counts) <= 1
    assert rounds <= shards + 2


def test_parse_shards_reads_parents_and_closed_state() -> None:
    shards = parse_shards(
        [
            {
                "ShardId": "a",
                "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"},
            },
            {
                "ShardId": "b",
                "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"},
            },
            {
                "ShardId": "c",
                "ParentShardId": "a",
                "AdjacentParentShardId": "b",
                "SequenceNumberRange": {"StartingSequenceNumber": "10"},
            },
        ]
    )
    assert [(s.shard_id, s.parents, s.closed) for s in shards] == [
        ("a", (), True),
        ("b", (), True),
        ("c", ("a", "b"), False),
    ]


def test_children_start_at_trim_horizon_and_roots_at_the_initial_position() -> None:
    shards = parse_shards(
        [
            {"ShardId": "a", "SequenceNumberRange": {"EndingSequenceNumber": "9"}},
            {"ShardId": "c", "ParentShardId": "a", "SequenceNumberRange": {}},
        ]
    )
    assert initial_checkpoints(shards, set(), "AT_TIMESTAMP", first_run=True) == {
        "a": "AT_TIMESTAMP",
        "c": TRIM_HORIZON,
    }
    # First run at LATEST: the closed past is skipped, the open shard starts at the tip.
    assert initial_checkpoints(shards, set(), "LATEST", first_run=True) == {
        "a": SHARD_END,
        "c": "LATEST",
    }
    # A child appearing later (a reshard while running) always starts at TRIM_HORIZON.
    assert initial_checkpoints(shards, {"a"}, "LATEST", first_run=False) == {"c": TRIM_HORIZON}


def _lease(shard: str, checkpoint: str, parents: tuple[str, ...] = ()) -> Lease:
    return Lease(shard, None, 0, checkpoint, parents)


def test_a_child_waits_for_every_parent_to_reach_shard_end() -> None:
    child = _lease("c", TRIM_HORIZON, ("a", "b"))
    a_done, b_open = _lease("a", SHARD_END), _lease("b", "42")
    by_shard = {"a": a_done, "b": b_open, "c": child}
    assert not ready(child, by_shard, {"a", "b", "c"})
    by_shard["b"] = _lease("b", SHARD_END)
    assert ready(child, by_shard, {"a", "b", "c"})
    assert not ready(by_shard["b"], by_shard, {"a", "b", "c"})


def test_a_listed_parent_without_a_lease_is_waited_for_but_a_trimmed_one_is_not() -> None:
    child = _lease("c", TRIM_HORIZON, ("a",))
    assert not ready(child, {"c": child}, {"a", "c"})
    assert ready(child, {"c": child}, {"c"})
