"""The tag engine: rules return :class:`TagSet` results, resolved until stable.

A rule is a function of the headers returning a :class:`TagSet` or None.
Each TagSet may

* ``add`` tags,
* ``blocks`` tags: any other TagSet adding one of them is discarded and the
  tags are removed from the final set,
* be ``blocked_by`` tags: it is ignored if any of them is in the result,
* apply only ``if_present`` tags are all in the result,
* ``remove`` tags from the final set (without discarding other TagSets).

Because a rule's effect can depend on tags produced by other rules, the set
is recomputed from all rule results until it stops changing.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["TagSet", "resolve_tags", "TagRule"]


@dataclass(frozen=True)
class TagSet:
    """The result of one tag rule."""

    add: frozenset[str] = field(default_factory=frozenset)
    blocks: frozenset[str] = field(default_factory=frozenset)
    blocked_by: frozenset[str] = field(default_factory=frozenset)
    if_present: frozenset[str] = field(default_factory=frozenset)
    remove: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, add: Iterable[str] = (), *, blocks: Iterable[str] = (), blocked_by: Iterable[str] = (),
           if_present: Iterable[str] = (), remove: Iterable[str] = ()) -> TagSet:
        """Build a TagSet from any iterables of tag names."""
        return cls(frozenset(add), frozenset(blocks), frozenset(blocked_by), frozenset(if_present),
                   frozenset(remove))


TagRule = Callable[..., "TagSet | None"]

_MAX_ROUNDS = 10


def _one_round(results: list[TagSet], current: frozenset[str]) -> frozenset[str]:
    # Which results apply given the tags found so far.
    applicable = [r for r in results if r.if_present <= current and not (r.blocked_by & current)]
    blocked = frozenset().union(*(r.blocks for r in applicable)) if applicable else frozenset()
    kept = [r for r in applicable if not (r.add & blocked)]
    tags: set[str] = set()
    removed: set[str] = set()
    for r in kept:
        tags |= r.add
        removed |= r.remove
    return frozenset(tags - blocked - removed)


def resolve_tags(results: Iterable[TagSet | None]) -> frozenset[str]:
    """Resolve rule results into the final tag set.

    Parameters
    ----------
    results : iterable of TagSet or None
        One entry per rule (None: the rule did not fire).

    Returns
    -------
    frozenset of str
    """
    fired = [r for r in results if r is not None]
    current: frozenset[str] = frozenset()
    for _ in range(_MAX_ROUNDS):
        new = _one_round(fired, current)
        if new == current:
            break
        current = new
    return current
