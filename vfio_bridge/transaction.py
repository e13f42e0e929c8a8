"""Device transactions: what a device was asked to do and what it did.

A raw log records accesses (doorbells, DMA, interrupts); a model's decoder
(beside the model: :mod:`.models.nvme_transactions`, :mod:`.models.edu_transactions`)
turns them into transactions, the level at which the device is specified. The
transaction diff (``harness/difflog/transactions.py``) compares two streams of
them; anything that produces :class:`Transaction` objects (a decoder, a QEMU
trace converter for the reference device) can be diffed.

Rule 1: a transaction splits into what was *asked* (``op``, ``params``,
``written`` extents' data, ``payload_in``): the content commands are matched
by; and what the device *did* (``status``, ``result``, ``read`` extents' data,
``payload_out``, ``irq``): compared between matched commands.

Rule 2: block data is described per logical block (:class:`Extent`), so that
two runs whose block layer merged or split requests differently can still be
compared block by block. Digests are :func:`vfio_bridge.logformat.block_digests`
values, or :data:`ZERO_BLOCK` for a block of zeroes (also what Write Zeroes and
deallocation leave).

Rule 3: ``queue``, ``cid``, ``seqs``, ``t_ns``, ``submitted`` and ``completed`` are
context for people (and links to the raw events); they are never compared as
values. ``submitted``/``completed`` order commands within their own side only
(which writes a flush covers: those completed before it was submitted).

Rule 4: a source that cannot supply a field (a trace has no data digests)
names it in ``unknown``; the diff skips it and the report says so. Field
names for ``unknown``: ``"data"`` (extent digests and payloads), ``"result"``,
``"irq"``, ``"status"``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Canonical content of an all-zero logical block, whatever its size.
ZERO_BLOCK = "zero"


@dataclass(frozen=True, slots=True)
class Extent:
    """``blocks`` logical blocks from ``lba``; ``digests`` one per block, or empty when
    the source does not know the data."""

    lba: int
    blocks: int
    digests: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.lba + self.blocks


@dataclass(slots=True)
class Transaction:
    """One command (NVMe) or operation (edu) of a device, decoded from its log.

    Treated as a value: nothing changes one once its source made it. (Not a frozen
    dataclass only because a frozen one takes about three times as long to build,
    and a log has one per command.)"""

    #: What was asked, by name: ``write``, ``read``, ``identify``, ``factorial``...
    op: str
    #: The command's parameters that define it, as sorted ``(name, value)`` pairs
    #: (NVMe: ``opcode``, ``nsid``, admin command dwords that matter...).
    params: tuple[tuple[str, int], ...] = ()
    #: Blocks the device was given to store (write, write zeroes, deallocate).
    written: tuple[Extent, ...] = ()
    #: Blocks the device returned (read); digests are what it returned.
    read: tuple[Extent, ...] = ()
    #: Digest of non-block data the device took in (a range list, edu DMA to device).
    payload_in: str | None = None
    #: Digest of non-block data the device gave out (an Identify page, edu DMA to RAM).
    payload_out: str | None = None
    #: Completion status (NVMe: SCT << 8 | SC); None: the command never completed.
    status: int | None = None
    #: Command-specific result (NVMe completion DW0, edu's factorial).
    result: int | None = None
    #: Vector of the interrupt raised after completion; None: none was raised.
    irq: int | None = None
    #: Vector the device was set up to signal this completion on; None: no interrupt due.
    irq_expected: int | None = None
    #: Context only (never compared): submission queue and command id.
    queue: int | None = None
    cid: int | None = None
    #: Raw events (``seq``) that make up the transaction, in log order.
    seqs: tuple[int, ...] = ()
    #: Monotonic time of its first event.
    t_ns: int = 0
    #: Context for the ordering checks (positions in the source's own order: a log's
    #: ``seq``, a trace's line number): when the command was submitted (the tail
    #: doorbell that made its entry visible) and when its completion was posted.
    #: Never compared across sides as numbers; None when the source cannot say.
    submitted: int | None = None
    completed: int | None = None
    #: Positions of the first and last data transfer of a block command (None: it
    #: moved none, or the source cannot say: ``"data"`` in ``unknown``); a completion
    #: must come after its data (the diff checks it within the side).
    data_moved: tuple[int, int] | None = None
    #: Fields the source could not supply (Rule 4).
    unknown: frozenset[str] = frozenset()

    def param(self, name: str, default: int | None = None) -> int | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def key(self) -> tuple[object, ...]:
        """What the command asked for: the content transactions are matched by."""
        return (
            self.op,
            self.params,
            tuple((e.lba, e.blocks, e.digests) for e in self.written),
            tuple((e.lba, e.blocks) for e in self.read),
            self.payload_in,
        )

    @property
    def signalled(self) -> bool:
        """Whether the completion interrupt the device owed was raised (on its vector)."""
        return self.irq_expected is None or self.irq == self.irq_expected

    def describe(self) -> str:
        """``write LBA 2048+8`` and the like, for people (a block command's parameters
        only when set: ``fua=0x1``)."""
        parts = [self.op]
        extents = self.written or self.read
        if extents:
            parts.append(", ".join(f"LBA {e.lba}+{e.blocks}" for e in extents[:4]))
            if len(extents) > 4:
                parts.append(f"(+{len(extents) - 4} ranges)")
        shown = [
            (k, v) for k, v in self.params if k not in ("opcode", "nsid") and (v or not extents)
        ]
        if shown:
            parts.append(" ".join(f"{k}={v:#x}" for k, v in shown[:4]))
        return " ".join(parts)


__all__ = ["ZERO_BLOCK", "Extent", "Transaction"]
