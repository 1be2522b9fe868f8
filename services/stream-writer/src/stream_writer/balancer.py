"""Which leases a worker should take or steal: pure logic, tested with hypothesis.

The rules are those of the Kinesis Client Library's lease taker: a lease is expired when its
counter has not moved for the expiry time as seen on *this* worker's clock (no comparison
of clocks between machines); expired and unowned leases are taken first; a worker below its
fair share (ceil(leases / workers)) steals one lease at a time from the most loaded worker.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseState:
    """What the balancer needs to know about one lease."""

    shard_id: str
    owner: str | None
    counter: int


@dataclass(frozen=True)
class Plan:
    """Leases to take (expired or unowned) and to steal (live, from the most loaded worker)."""

    take: tuple[str, ...]
    steal: tuple[str, ...]


class ExpiryTracker:
    """Remembers, per lease, when this worker last saw its counter or owner change."""

    def __init__(self, expiry_s: float) -> None:
        self._expiry_s = expiry_s
        self._seen: dict[str, tuple[int, str | None, float]] = {}

    def next_expiry(self, me: str, now: float | None = None) -> float | None:
        """Earliest future time at which a lease held by another worker would expire."""
        now = time.monotonic() if now is None else now
        times = [
            changed_at + self._expiry_s
            for _, owner, changed_at in self._seen.values()
            if owner is not None and owner != me and changed_at + self._expiry_s > now
        ]
        return min(times, default=None)

    def observe(self, leases: Iterable[LeaseState], now: float | None = None) -> set[str]:
        """Record a scan; return the ids of leases that are unowned or expired."""
        now = time.monotonic() if now is None else now
        expired: set[str] = set()
        current: dict[str, tuple[int, str | None, float]] = {}
        for lease in leases:
            previous = self._seen.get(lease.shard_id)
            if previous is not None and previous[:2] == (lease.counter, lease.owner):
                changed_at = previous[2]
            else:
                changed_at = now
            current[lease.shard_id] = (lease.counter, lease.owner, changed_at)
            if lease.owner is None or now - changed_at >= self._expiry_s:
                expired.add(lease.shard_id)
        self._seen = current
        return expired


def plan(leases: Sequence[LeaseState], expired: set[str], me: str) -> Plan:
    """Decide what ``me`` takes or steals, given the leases that can be worked on now.

    ``leases`` holds only leases that can be processed now (not finished, parents done).
    Leases held by ``me`` never count as expired here: the renewer keeps them alive.
    """
    if not leases:
        return Plan((), ())
    live_counts: Counter[str] = Counter()
    for lease in leases:
        if lease.owner is not None and (lease.owner == me or lease.shard_id not in expired):
            live_counts[lease.owner] += 1
    workers = set(live_counts) | {me}
    target = math.ceil(len(leases) / len(workers))
    mine = live_counts[me]
    need = target - mine
    if need <= 0:
        return Plan((), ())
    takeable = sorted(
        lease.shard_id for lease in leases if lease.shard_id in expired and lease.owner != me
    )
    if takeable:
        return Plan(tuple(takeable[:need]), ())
    # Steal only from a worker above target, or at target while we are two or more below:
    # either way the victim keeps at least as many as we end with, so no ping-pong.
    victim, victim_count = max(
        ((owner, count) for owner, count in live_counts.items() if owner != me),
        key=lambda item: (item[1], item[0]),
        default=(None, 0),
    )
    if victim is None or not (
        victim_count > target or (victim_count == target and mine < target - 1)
    ):
        return Plan((), ())
    candidates = sorted(lease.shard_id for lease in leases if lease.owner == victim)
    return Plan((), (candidates[0],))
