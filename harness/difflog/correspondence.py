"""Which guest address of one log is which of the other's, learned while aligning.

The guest's allocators place buffers differently on each path, so the same
buffer has another address in each log. The alignment binds the addresses of
each pair of events it matches, one to one; two addresses agree when they are
bound to each other or neither is bound yet, and an event whose address is
bound to another one than its counterpart's is a divergence (it used another
buffer).
"""

from __future__ import annotations

import collections

from .normalize import Item


class Correspondence:
    """Which guest address of log A is which of log B's, learned from the events the
    alignment pairs (:meth:`bind`): a one-to-one map. Two addresses agree when they
    are bound to each other, or neither is bound yet (they may be).

    Numbering each log's addresses by first appearance, as this replaces, made one
    address only one log touched shift the numbers of all that came after it.
    """

    def __init__(self) -> None:
        self.a_to_b: dict[int, int] = {}
        self.b_to_a: dict[int, int] = {}
        #: Bound pairs of different addresses: while there are none, the same line in
        #: both logs agrees (the fast lane's condition).
        self.crossed = 0

    def trial(self) -> Correspondence:
        """A correspondence that starts as this one and binds on its own (for looking
        ahead: what it binds is not kept here)."""
        trial = Correspondence()
        trial.a_to_b = collections.ChainMap({}, self.a_to_b)  # type: ignore[assignment]
        trial.b_to_a = collections.ChainMap({}, self.b_to_a)  # type: ignore[assignment]
        return trial

    def agree(self, a: int | None, b: int | None) -> bool:
        """Whether A's address ``a`` may be B's ``b`` (None: no address, agreeing only
        with none)."""
        if a is None or b is None:
            return a is b
        bound = self.a_to_b.get(a)
        if bound is not None:
            return bound == b
        return b not in self.b_to_a

    def agree_items(self, a: Item, b: Item) -> bool:
        """Whether the addresses of two items (of A and of B) agree, each pair and all
        of them together (one address of A twice in ``a`` is one of B twice in ``b``)."""
        if not self.agree(a.addr, b.addr):
            return False
        if not a.addrs and not b.addrs:
            return True
        if len(a.addrs) != len(b.addrs):
            return False
        seen_a: dict[int, int] = {}
        seen_b: dict[int, int] = {}
        if a.addr is not None and b.addr is not None:
            seen_a[a.addr], seen_b[b.addr] = b.addr, a.addr
        for x, y in zip(a.addrs, b.addrs, strict=True):
            if seen_a.setdefault(x, y) != y or seen_b.setdefault(y, x) != x:
                return False
            if not self.agree(x, y):
                return False
        return True

    def bind(self, a: int | None, b: int | None) -> None:
        """Record that ``a`` (of A) is ``b`` (of B), unless either is bound already."""
        if a is None or b is None or a in self.a_to_b or b in self.b_to_a:
            return
        self.a_to_b[a] = b
        self.b_to_a[b] = a
        if a != b:
            self.crossed += 1

    def bind_items(self, a: Item, b: Item) -> None:
        """Bind the addresses of two items that agree (:meth:`agree_items`), pair by pair."""
        self.bind(a.addr, b.addr)
        for x, y in zip(a.addrs, b.addrs, strict=False):
            self.bind(x, y)

    def same_address(self, address: int) -> None:
        """The same address in both logs, in the same line while nothing is crossed."""
        if address not in self.a_to_b:
            self.a_to_b[address] = address
            self.b_to_a[address] = address
