"""Log pairs for the raw diff's golden test, and the fixture that records its results.

Every pair the diff tests build (tests/test_diff.py, tests/loggen.py workloads
and their perturbations), perturbations of two pairs of real logs recorded by
``xvpci run --model nvme`` (fio-pattern and fs-verify, stored compressed under
tests/fixtures/difflog/), and a few hand-made pairs with identical twins. The
golden fixture holds what the engine made of each pair when it was recorded;
``tests/test_diff_golden.py`` asserts that today's engine still does.

Regenerate (only when a change of results is intended and reviewed):
``python -m tests.diff_cases --write``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.difflog import DiffResult, Rules, diff_logs
from tests.loggen import HEADER, dma, irq, mmio, random_edits, workload, write_log

FIXTURES = Path(__file__).parent / "fixtures" / "difflog"
GOLDEN = FIXTURES / "golden.json.gz"
#: Real logs: ``xvpci run --model nvme --paths direct,window --workload W`` (QEMU 11.1.3, TCG).
REAL = ("fio-pattern", "fs-verify")


@dataclass
class Case:
    name: str
    a: Path
    b: Path
    rules: Rules | None = None
    allow_truncated: bool = False

    def run(self) -> DiffResult:
        return diff_logs(self.a, self.b, self.rules, self.allow_truncated)


def _events(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt") as handle:
        lines = handle.read().splitlines()
    header = json.loads(lines[0])
    events = [json.loads(line) for line in lines[1:]]
    if events and "kind" not in events[-1]:
        events.pop()
    for event in events:
        del event["seq"]
        del event["t_ns"]
    return header, events


def _perturb(events: list[dict[str, Any]], seed: int, edits: int) -> list[dict[str, Any]]:
    """Drop, duplicate, swap and poke events at random (model-level noise)."""
    return random_edits(events, random.Random(seed), edits)


def _drop_nth(events: list[dict[str, Any]], kind: str, every: int) -> list[dict[str, Any]]:
    seen = 0
    out = []
    for event in events:
        if event["kind"] == kind:
            seen += 1
            if seen % every == 0:
                continue
        out.append(event)
    return out


def _edit(events: list, kind: str, nth: int, change: Callable[[list, int], None]) -> list:
    positions = [
        n
        for n, e in enumerate(events)
        if e["kind"] == kind and (kind != "mmio_read" or e["bar"] == 2)
    ]
    out = list(events)
    change(out, positions[nth])
    return out


def _set(key: str, value: Any) -> Callable[[list, int], None]:
    return lambda ev, i: ev.__setitem__(i, {**ev[i], key: value})


def twins(transactions: int) -> list[dict[str, Any]]:
    """Commands whose doorbell writes, completion writes and interrupts are all alike:
    only their neighbours in other streams tell one command's from another's."""
    events: list[dict[str, Any]] = []
    for n in range(transactions):
        events.append(mmio("mmio_write", 0, 0x1000, 1))  # the same doorbell value each time
        events.append(dma("dma_read", 0x200000 + 64 * n, bytes([n & 0xFF]) * 64))
        events.append(dma("dma_write", 0x300000, bytes(16)))  # the same completion each time
        events.append(irq(0))
        events.append(mmio("mmio_read", 2, 0x10, n))
    return events


#: Per twin stream: the kind of its events, and what to insert as an extra one.
TWIN_KINDS = {
    "irq": ("irq", irq(0)),
    "doorbell": ("mmio_write", mmio("mmio_write", 0, 0x1000, 1)),
    "completion": ("dma_write", dma("dma_write", 0x300000, bytes(16))),
}
#: The command whose twin goes missing, or after whose last event an extra one comes.
TWIN_COMMAND = 20
TWIN_COMMANDS = 60


def twin_edit(name: str, edit: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Logs A and B where B lacks (edit "missing") or has an extra (edit "extra") twin,
    and its index: in A for a missing one, in B for an extra one."""
    a = twins(TWIN_COMMANDS)
    kind, extra = TWIN_KINDS[name]
    b = list(a)
    if edit == "missing":
        index = [n for n, e in enumerate(a) if e["kind"] == kind][TWIN_COMMAND]
        b.pop(index)
    else:
        index = 5 * (TWIN_COMMAND + 1)  # between two commands
        b.insert(index, extra)
    return a, b, index


def pairs(tmp: Path) -> Iterator[Case]:
    """Every log pair, written under ``tmp``."""
    window_header = {**HEADER, "path": "window"}

    def case(name: str, a: list, b: list, header_b: dict | None = None, **options: Any) -> Case:
        log_a = write_log(tmp / f"{name}.a.jsonl", a)
        log_b = write_log(tmp / f"{name}.b.jsonl", b, header_b or window_header)
        return Case(name, log_a, log_b, **options)

    base = workload(200)
    yield case("identical", base, base)
    yield case(
        "interleaved",
        workload(300),
        sorted(workload(300), key=lambda e: e["kind"][:3] + str(e.get("bar", ""))),
    )
    b = list(workload(100))
    irqs = [n for n, e in enumerate(b) if e["kind"] == "irq"]
    b[irqs[0]], b[irqs[1]] = b[irqs[1]], b[irqs[0]]
    yield case("irq_swap", workload(100), b)
    yield case("polls", workload(100, seed=1), workload(100, seed=2))
    yield case("addresses", workload(100, base=0x100000), workload(100, base=0x7F3000))
    a = workload(120)
    edits = {
        "changed_value": ("mmio_read", 40, _set("value", 0xBAD)),
        "missing_write": ("mmio_write", 30, lambda ev, i: ev.pop(i)),
        "extra_write": (
            "mmio_write",
            30,
            lambda ev, i: ev.insert(i, mmio("mmio_write", 0, 0x1000, 0xEE)),
        ),
        "changed_payload": (
            "dma_read",
            25,
            lambda ev, i: ev.__setitem__(i, dma("dma_read", ev[i]["addr"], b"\xff" * 64)),
        ),
        "missing_interrupt": ("irq", 50, lambda ev, i: ev.pop(i)),
        "changed_width": ("mmio_write", 30, _set("size", 2)),
    }
    for name, (kind, nth, change) in edits.items():
        yield case(f"edit_{name}", a, _edit(a, kind, nth, change))
    b = [{**e, "value": e["value"] ^ 0x80} if e.get("bar") == 2 else e for e in workload(50)]
    yield case("register_values", workload(50), b)
    masked = Rules().merge({"mask": [{"kind": "mmio", "bar": 2, "offset": 0x10, "mask": 0xFF7F}]})
    yield case("register_values_masked", workload(50), b, rules=masked)
    a = workload(3000)
    yield case("missing_stream", a, [e for e in a if e["kind"] != "irq"])
    rng = random.Random(7)
    base = workload(80)
    for trial in range(20):
        b = random_edits(base, rng)
        yield case(f"random_edits_{trial}", base, b)
    big = workload(2000, seed=3)
    for seed in range(6):
        yield case(f"perturbed_{seed}", big, _perturb(big, seed, 2 + 8 * seed))
    yield case("every_7th_irq_dropped", big, _drop_nth(big, "irq", 7))
    yield case("every_5th_dma_dropped", big, _drop_nth(big, "dma_read", 5))
    yield case("truncated_b", big, big[: len(big) // 2], allow_truncated=True)
    # Identical twins: a missing / an extra one among alike events, in three streams.
    for name in TWIN_KINDS:
        for edit in ("missing", "extra"):
            a, b, _ = twin_edit(name, edit)
            yield case(f"twins_{edit}_{name}", a, b)
    for name in REAL:
        header_a, direct = _events(FIXTURES / f"{name}.direct.jsonl.xz")
        header_b, window = _events(FIXTURES / f"{name}.window.jsonl.xz")

        def real(
            label: str, a: list, b: list, header_b: dict = header_b, header_a: dict = header_a
        ) -> Case:
            log_a = write_log(tmp / f"{label}.a.jsonl", a, header_a)
            log_b = write_log(tmp / f"{label}.b.jsonl", b, header_b)
            return Case(label, log_a, log_b)

        yield real(f"real_{name}", direct, window)
        yield real(f"real_{name}_reversed", window, direct, header_a)
        yield real(f"real_{name}_self", direct, direct, header_a)
        for seed in range(3):
            yield real(
                f"real_{name}_perturbed_{seed}", direct, _perturb(window, seed, 5 + 20 * seed)
            )
        yield real(f"real_{name}_irq_every_9th", direct, _drop_nth(window, "irq", 9))


def _position(divergence: Any) -> tuple[int, bool]:
    seq_a, seq_b = divergence.seq_a, divergence.seq_b
    return (seq_a if seq_a is not None else seq_b or 0, seq_a is None)


def summarise(result: DiffResult) -> dict[str, Any]:
    """What the golden fixture keeps of a result: everything but the events' bodies,
    which the divergences' sequence numbers and a digest of the events stand for."""
    # Divergences at the same position (A's event and B's event of the same seq) were
    # listed in the order their streams settled, which depends on how the logs were
    # read; the fixture lists them A's first.
    divergences = sorted(result.divergences, key=_position)
    events = hashlib.sha256()
    for divergence in divergences:
        events.update(json.dumps([divergence.a, divergence.b], sort_keys=True).encode())
    return {
        "equivalent": result.equivalent,
        "total_divergences": result.total_divergences,
        "by_kind": dict(sorted(result.by_kind.items())),
        "events_a": dict(sorted(result.events_a.items())),
        "events_b": dict(sorted(result.events_b.items())),
        "matched": result.matched,
        "reordered": result.reordered,
        "streams": result.streams,
        "divergences": [[d.kind, d.stream, d.seq_a, d.seq_b, d.detail] for d in divergences],
        "divergence_events_sha256": events.hexdigest(),
    }


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the golden fixture")
    args = parser.parse_args()
    golden: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xvpci-golden-") as tmp:
        for case in pairs(Path(tmp)):
            golden[case.name] = summarise(case.run())
            print(case.name, golden[case.name]["total_divergences"])
    if args.write:
        with gzip.open(GOLDEN, "wt") as out:
            json.dump(golden, out, separators=(",", ":"), sort_keys=True)
        print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes, {len(golden)} cases)")


if __name__ == "__main__":
    main()
