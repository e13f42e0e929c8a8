"""What the diff treats as path-specific: defaults plus user rules (TOML).

A rules file may contain, all optional::

    ignore_streams = ["window"]                # event "stream" tags to drop
    ignore_kinds = ["dma_map", "dma_unmap", "reset"]
    compare_config_reads = false               # config reads depend on firmware and QEMU
    compare_irq_type = false                   # VMD children only have MSI-X
    reorder_window = 64                        # how far events may move within a stream

    [[ignore]]                                 # drop accesses to these registers
    kind = "mmio"                              # "mmio" or "cfg"
    bar = 0
    offset = 0x1c
    size = 4                                   # optional: any width when absent

    [[mask]]                                   # compare only some bits of a register
    kind = "cfg"
    offset = 0x04
    mask = 0x0406

    [transaction]                              # the transaction level (transactions.py)
    ignore_blocks = [[2048, 8]]                # [first LBA, count]: contents not compared
    block_history = true                       # false: compare only each block's end content
    ignore_ops = ["get_log_page"]              # commands left out entirely
    ignore_results = ["get_features"]          # commands whose result and data differ by design
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vfio_bridge.logformat import WINDOW_STREAM, Kind

from .reader import LogError

#: Config registers whose values the platform, not the device or its driver, decides.
PATH_SPECIFIC_CONFIG = (
    (0x10, 0x28),  # BARs: addresses differ between paths
    (0x30, 0x34),  # expansion ROM address
    (0x3C, 0x3D),  # interrupt line, written by firmware on the direct path only
)


@dataclass(frozen=True)
class RegisterRule:
    kind: str  # "mmio" or "cfg"
    offset: int
    bar: int | None = None
    size: int | None = None
    mask: int | None = None

    def matches(self, kind: str, bar: int | None, offset: int, size: int) -> bool:
        return (
            kind == self.kind
            and offset == self.offset
            and (self.bar is None or bar == self.bar)
            and (self.size is None or size == self.size)
        )


@dataclass
class Rules:
    ignore_streams: set[str] = field(default_factory=lambda: {WINDOW_STREAM})
    ignore_kinds: set[str] = field(
        default_factory=lambda: {Kind.DMA_MAP, Kind.DMA_UNMAP, Kind.RESET}
    )
    compare_config_reads: bool = False
    compare_irq_type: bool = False
    reorder_window: int = 64
    ignore: list[RegisterRule] = field(default_factory=list)
    masks: list[RegisterRule] = field(
        # Command register: keep memory, bus master and INTx-disable; firmware sets the rest.
        default_factory=lambda: [RegisterRule("cfg", 0x04, size=2, mask=0x0406)]
    )
    #: Transaction level: ``[start, end)`` block ranges whose contents are not compared.
    txn_ignore_blocks: list[tuple[int, int]] = field(default_factory=list)
    txn_block_history: bool = True
    txn_ignore_ops: set[str] = field(default_factory=set)
    txn_ignore_results: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path | None) -> Rules:
        rules = cls()
        if path is None:
            return rules
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise LogError(f"{path}: cannot read rules: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise LogError(f"{path}: invalid TOML: {exc}") from None
        return rules.merge(data, path)

    def merge(self, data: dict[str, Any], origin: object = "rules") -> Rules:
        known = {
            "ignore_streams", "ignore_kinds", "compare_config_reads", "compare_irq_type",
            "reorder_window", "ignore", "mask", "transaction",
        }  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise LogError(f"{origin}: unknown rule keys: {', '.join(sorted(unknown))}")
        if "ignore_streams" in data:
            self.ignore_streams = set(data["ignore_streams"])
        if "ignore_kinds" in data:
            self.ignore_kinds = set(data["ignore_kinds"])
        for flag in ("compare_config_reads", "compare_irq_type"):
            if flag in data:
                setattr(self, flag, bool(data[flag]))
        if "reorder_window" in data:
            self.reorder_window = int(data["reorder_window"])
        if "transaction" in data:
            self._merge_transaction(data["transaction"], origin)
        try:
            self.ignore += [_register_rule(entry) for entry in data.get("ignore", [])]
            self.masks += [_register_rule(entry) for entry in data.get("mask", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise LogError(f"{origin}: bad register rule: {exc}") from None
        return self

    def _merge_transaction(self, table: Any, origin: object) -> None:
        known = {"ignore_blocks", "block_history", "ignore_ops", "ignore_results"}
        if not isinstance(table, dict):
            raise LogError(f"{origin}: [transaction] must be a table")
        unknown = set(table) - known
        if unknown:
            raise LogError(f"{origin}: unknown [transaction] keys: {', '.join(sorted(unknown))}")
        try:
            for start, count in table.get("ignore_blocks", []):
                self.txn_ignore_blocks.append((int(start), int(start) + int(count)))
        except (TypeError, ValueError):
            raise LogError(
                f"{origin}: [transaction] ignore_blocks must be [first LBA, count] pairs"
            ) from None
        if "block_history" in table:
            self.txn_block_history = bool(table["block_history"])
        self.txn_ignore_ops |= {str(op) for op in table.get("ignore_ops", [])}
        self.txn_ignore_results |= {str(op) for op in table.get("ignore_results", [])}


def _register_rule(entry: dict[str, Any]) -> RegisterRule:
    kind = entry["kind"]
    if kind not in ("mmio", "cfg"):
        raise ValueError(f"kind {kind!r} is not mmio or cfg")
    return RegisterRule(
        kind, int(entry["offset"]), entry.get("bar"), entry.get("size"), entry.get("mask")
    )
