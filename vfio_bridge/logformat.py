"""The transaction log format, defined once.

Everything that writes or reads a log (the recorder, the diff's reader and
normaliser, the reports, the test log generator) takes its names from here.

Rule 1: a log is JSON Lines. The first line is the header, the last a trailer
``{"xvpci_end": true, "events": N}``; a log without the trailer is truncated
(the server was killed or the disk filled up).

Rule 2: the header says what was recorded: the format version (``xvpci_log``),
the payload digest algorithm, the path, the device's identity and its own
description of itself (``device``: BARs and their named registers,
capabilities, DMA descriptors). What a reader makes of that description, for
instance which accesses are path-specific, is the reader's business.

Rule 3: every event carries ``seq`` (from 0, no gaps), ``t_ns`` (monotonic
nanoseconds), ``kind`` and the fields :data:`EVENT_FIELDS` lists for its kind,
plus an optional ``stream`` tag for events that are not the model's own
(:data:`WINDOW_STREAM`).

Rule 4: payloads are logged by digest (:func:`payload_digest`, XXH3-128, which
tells two paths' payloads apart and is not meant to resist a forger); DMA
payloads of at most :data:`INLINE_DATA_LIMIT` bytes, and every tagged DMA
(a queue entry, an address list), also carry their bytes in hex.

Rule 5: a DMA that carries a block device's data (an NVMe read or write) may
add ``block`` (the logical block size) and ``blocks`` (one
:data:`BLOCK_DIGEST_ALGORITHM` digest per logical block, 16 hex digits each,
concatenated: :func:`block_digests`), so that a reader can compare what was
written per logical block however the host merged or split its requests.
These two fields are optional: older logs and other models lack them.

Format history: 1 logged SHA-256 digests under ``sha256``; 2 switched to
XXH3-128 under ``digest``; 3 replaced the header's diff-oriented keys
(``msix``, ``path_specific_config``, ``address_registers``, ``descriptors``)
with the device's description.
"""

from __future__ import annotations

import enum
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import xxhash

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
#: Header key holding the format version; its presence marks an xvpci log.
VERSION_KEY = "xvpci_log"
#: Trailer key of a complete log.
END_KEY = "xvpci_end"

DIGEST_ALGORITHM = "xxh3-128"
payload_digest = xxhash.xxh3_128_hexdigest
#: Format 1: SHA-256 digests, logged under this field name.
LEGACY_DIGEST_ALGORITHM = "sha256"
INLINE_DATA_LIMIT = 64
#: Per-logical-block digests (Rule 5): XXH3-64, 16 hex digits per block.
BLOCK_DIGEST_ALGORITHM = "xxh3-64"
BLOCK_DIGEST_WIDTH = 16

#: Events of a window device itself (its config space, absent-function probes,
#: its MSI-X and interrupts), as opposed to those of the model it hosts.
WINDOW_STREAM = "window"


class Kind(enum.StrEnum):
    """Event kinds; compare equal to the strings in the log."""

    CFG_READ = "cfg_read"
    CFG_WRITE = "cfg_write"
    MMIO_READ = "mmio_read"
    MMIO_WRITE = "mmio_write"
    DMA_READ = "dma_read"
    DMA_WRITE = "dma_write"
    IRQ = "irq"
    RESET = "reset"
    DMA_MAP = "dma_map"
    DMA_UNMAP = "dma_unmap"
    DEVICE_ERROR = "device_error"


#: The fields every event of a kind carries besides ``seq``, ``t_ns`` and ``kind``.
#: Config accesses over 8 bytes carry ``digest`` instead of ``value``; DMA may add
#: ``data`` and ``tag``, and ``block`` with ``blocks`` (Rule 5); ``dma_map`` adds ``shared``
#: and, for a descriptor it did not map, ``reason``; any event may carry ``stream``.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    Kind.CFG_READ: ("offset", "size"),
    Kind.CFG_WRITE: ("offset", "size"),
    Kind.MMIO_READ: ("bar", "offset", "size", "value"),
    Kind.MMIO_WRITE: ("bar", "offset", "size", "value"),
    Kind.DMA_READ: ("addr", "len", "digest"),
    Kind.DMA_WRITE: ("addr", "len", "digest"),
    Kind.IRQ: ("irq_type", "vector"),
    Kind.RESET: ("reason",),
    Kind.DMA_MAP: ("addr", "len", "flags"),
    Kind.DMA_UNMAP: ("addr", "len", "flags"),
    Kind.DEVICE_ERROR: ("error",),
}
KINDS = frozenset(EVENT_FIELDS)


#: Keys of a device description that the header repeats at its top level.
IDENTITY_KEYS = ("model", "vendor_id", "device_id", "window")


def header(
    path: str | None = None, /, device: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A header for a log starting now.

    ``device`` is the model's description (``DeviceModel.declaration()``); its
    identity is repeated at the top level for people and tools that only want that.
    ``fields`` adds anything else (``qemu_version``, ``guest``...).
    """
    head: dict[str, Any] = {
        VERSION_KEY: FORMAT_VERSION,
        "digest_algorithm": DIGEST_ALGORITHM,
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "start_t_ns": time.monotonic_ns(),
    }
    if path is not None:
        head["path"] = path
    if device is not None:
        head.update((key, device[key]) for key in IDENTITY_KEYS if key in device)
        head["device"] = device
    head.update(fields)
    return head


@dataclass(frozen=True)
class _Fields:
    """A JSON object's fields: those it must have and those it may, with their shapes.
    A shape is a type (``int``: an unsigned integer), ``[shape]`` (a list of them),
    a tuple of shapes (a list of exactly those) or another :class:`_Fields`."""

    required: dict[str, Any]
    optional: dict[str, Any] = field(default_factory=dict)


_REGISTER = _Fields({"name": str, "offset": int}, {"size": int, "address": bool, "state": bool})
_RANGE = _Fields({"offset": int, "size": int}, {"name": str, "names": [str], "stride": int})
_BAR = _Fields({"index": int}, {"size": int, "registers": [_REGISTER], "ranges": [_RANGE]})
#: Where MSI-X's table and PBA are: (BAR, offset, size) each.
_MSIX_PARTS = {"table": (int, int, int), "pba": (int, int, int)}
_CAPABILITY = _Fields({"name": str, "offset": int, "length": int}, {"id": int, **_MSIX_PARTS})
_DESCRIPTOR = _Fields(
    {"tag": str}, {"addresses": [int], "ignore": [(int, int)], "address_list": bool}
)
_TAKEOVER = _Fields({"bar": int, "offset": int, "mask": int, "value": int}, {"register": str})
_IDENTITY = {"model": str, "vendor_id": int, "device_id": int, "class_code": int}
#: What formats 1 and 2 stated in the header instead of the device's description.
_LEGACY_FIELDS = {
    "msix": _Fields({}, _MSIX_PARTS),
    "path_specific_config": [(int, int)],
    "address_registers": [(int, int, int)],
    "descriptors": [_DESCRIPTOR],
}
#: What Rule 2's header holds that readers use, and the shapes of the device's
#: description (``DeviceModel.declaration()``): the fields readers look up are
#: required, the others checked when present; fields not named are not checked.
HEADER_FIELDS = _Fields(
    {},
    {
        **_IDENTITY,
        **_LEGACY_FIELDS,
        "start_t_ns": int,
        "path": str,
        "digest_algorithm": str,
        "device": _Fields(
            {},
            {
                **_IDENTITY,
                "bars": [_BAR],
                "capabilities": [_CAPABILITY],
                "descriptors": [_DESCRIPTOR],
                "takeover": _TAKEOVER,
            },
        ),
    },
)


def check_header(head: dict[str, Any]) -> str | None:
    """Why ``head`` is not a header readers can use (:data:`HEADER_FIELDS`), or None."""
    problem = _shape_problem(head, HEADER_FIELDS, "header")
    if problem is not None:
        return problem
    device = head.get("device") or {}
    for bar in device.get("bars", ()):
        for window in bar.get("ranges", ()):
            if window.get("stride", 4) == 0:
                return f"header: a range of BAR {bar['index']} has a stride of 0"
            for pattern in window.get("names", ()):
                try:
                    pattern.format(n=0)
                except (KeyError, IndexError, ValueError):
                    return f"header: register name pattern {pattern!r} is not 'NAME{{n}}'-like"
    return None


def _shape_problem(value: Any, shape: Any, where: str) -> str | None:
    if isinstance(shape, _Fields):
        if not isinstance(value, dict):
            return f"{where} is {_short(value)}, not an object"
        for name in shape.required:
            if name not in value:
                return f'{where} has no "{name}"'
        for fields in (shape.required, shape.optional):
            for name, inner in fields.items():
                if name in value:
                    problem = _shape_problem(value[name], inner, f"{where}.{name}")
                    if problem is not None:
                        return problem
        return None
    if isinstance(shape, list | tuple):
        if not isinstance(value, list) or (isinstance(shape, tuple) and len(value) != len(shape)):
            count = f"{len(shape)} " if isinstance(shape, tuple) else ""
            return f"{where} is {_short(value)}, not a list of {count}items"
        for index, item in enumerate(value):
            inner = shape[index] if isinstance(shape, tuple) else shape[0]
            problem = _shape_problem(item, inner, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if type(value) is not shape or (shape is int and value < 0):
        wanted = {int: "an unsigned integer", str: "a string", bool: "true or false"}[shape]
        return f"{where} is {_short(value)}, not {wanted}"
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def digest_algorithm(head: dict[str, Any]) -> str:
    """The algorithm of a log's payload digests (they only compare within one algorithm)."""
    if head.get(VERSION_KEY) == 1:
        return LEGACY_DIGEST_ALGORITHM
    return str(head.get("digest_algorithm", "unknown"))


def dumps(record: dict[str, Any]) -> str:
    """One log line (header, event or trailer), newline included."""
    return json.dumps(record, separators=(",", ":")) + "\n"


def trailer(events: int) -> dict[str, Any]:
    return {END_KEY: True, "events": events}


# --- event lines: the recorder's hot paths format by hand, json.dumps is several
# times slower. Each returns a whole line. Kind names are plain strings indexed by
# the direction (False: read, True: write): an enum member's .value costs more
# than the rest of the line.

_CFG_KINDS = (Kind.CFG_READ.value, Kind.CFG_WRITE.value)
_MMIO_KINDS = (Kind.MMIO_READ.value, Kind.MMIO_WRITE.value)
_DMA_KINDS = (Kind.DMA_READ.value, Kind.DMA_WRITE.value)


def _stream(stream: str | None) -> str:
    return f',"stream":"{stream}"' if stream else ""


def config_line(
    seq: int, t_ns: int, write: bool, offset: int, size: int, data: bytes, stream: str | None
) -> str:
    kind = _CFG_KINDS[write]
    if size <= 8:
        body = f'"offset":{offset},"size":{size},"value":{int.from_bytes(data, "little")}'
    else:
        body = f'"offset":{offset},"size":{size},"digest":"{payload_digest(data)}"'
    return f'{{"seq":{seq},"t_ns":{t_ns},"kind":"{kind}",{body}{_stream(stream)}}}\n'


def mmio_line(
    seq: int,
    t_ns: int,
    write: bool,
    bar: int,
    offset: int,
    size: int,
    value: int,
    stream: str | None,
) -> str:
    tail = f',"stream":"{stream}"}}\n' if stream else "}\n"
    return (
        f'{{"seq":{seq},"t_ns":{t_ns},"kind":"{_MMIO_KINDS[write]}","bar":{bar},'
        f'"offset":{offset},"size":{size},"value":{value}{tail}'
    )


_block_splitters: dict[tuple[int, int], struct.Struct] = {}
_xxh3_64_bytes = xxhash.xxh3_64_digest  # big-endian, as the hex digits are written


def block_digests(data: bytes, block_size: int) -> str:
    """One XXH3-64 digest per ``block_size`` bytes of ``data``, as 16 hex digits each
    (a last partial block is digested as it is).

    On the server's hot path (every I/O command's data): one ``Struct.unpack_from``
    cuts the blocks in C, each block's 8-byte digest is one C call, and the hex of
    all of them is one ``bytes.hex``. Less than half the CPU of slicing a memoryview
    and packing integers, as it did before (``python -m bench.dma --digests-only``)."""
    count, tail = divmod(len(data), block_size)
    splitter = _block_splitters.get((count, block_size))
    if splitter is None:
        splitter = struct.Struct(f"{block_size}s" * count)
        if len(_block_splitters) < 64:
            _block_splitters[(count, block_size)] = splitter
    digests = b"".join(map(_xxh3_64_bytes, splitter.unpack_from(data)))
    if tail:
        digests += _xxh3_64_bytes(data[count * block_size :])
    return digests.hex()


def split_block_digests(text: str) -> tuple[str, ...]:
    """The per-block digests of a ``blocks`` field, one string per block."""
    width = BLOCK_DIGEST_WIDTH
    return tuple(text[i : i + width] for i in range(0, len(text), width))


def dma_line(
    seq: int, t_ns: int, write: bool, addr: int, data: bytes, tag: str | None, block: int = 0
) -> str:
    """A DMA event; ``block`` > 0 adds per-logical-block digests (Rule 5)."""
    kind = _DMA_KINDS[write]
    length = len(data)
    inline = f',"data":"{data.hex()}"' if length <= INLINE_DATA_LIMIT or tag else ""
    if tag:
        inline += f',"tag":"{tag}"'
    if block:
        inline += f',"block":{block},"blocks":"{block_digests(data, block)}"'
    return (
        f'{{"seq":{seq},"t_ns":{t_ns},"kind":"{kind}","addr":{addr},"len":{length},'
        f'"digest":"{payload_digest(data)}"{inline}}}\n'
    )


def irq_line(seq: int, t_ns: int, irq_type: str, vector: int, stream: str | None) -> str:
    return (
        f'{{"seq":{seq},"t_ns":{t_ns},"kind":"irq","irq_type":"{irq_type}",'
        f'"vector":{vector}{_stream(stream)}}}\n'
    )


def event_line(seq: int, t_ns: int, kind: str, fields: dict[str, Any]) -> str:
    """Any event, through json (the rare kinds: reset, dma_map, device_error...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    missing = [name for name in EVENT_FIELDS[kind] if name not in fields]
    if missing:
        raise ValueError(f"{kind} event without {', '.join(missing)}")
    return dumps({"seq": seq, "t_ns": t_ns, "kind": kind, **fields})


class MalformedEvent(ValueError):
    """An event that passes :func:`check_event` but whose content its model's reader
    cannot take (a queue entry shorter than the structure it holds): raised by the
    models' transaction decoders with the event's seq, named with its log by the diff."""


#: What each field of an event holds wherever it appears (unsigned integers or text);
#: fields not named here are not checked.
FIELD_TYPES: dict[str, type] = {
    **dict.fromkeys(
        ("seq", "t_ns", "bar", "offset", "size", "value", "addr", "len", "vector", "flags"),
        int,
    ),
    "block": int,
    **dict.fromkeys(
        ("digest", "data", "tag", "blocks", "stream", "irq_type", "reason", "error", "detail"),
        str,
    ),
}
_ABSENT = object()


def _required(kind: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """A kind's required fields that hold integers, those that hold text, and how many
    keys an event of the kind has with nothing else (``kind`` included)."""
    names = ("seq", "t_ns", *EVENT_FIELDS[kind])
    ints = tuple(n for n in names if FIELD_TYPES.get(n) is int)
    return ints, tuple(n for n in names if FIELD_TYPES.get(n) is str), len(names) + 1


_REQUIRED = {str(kind): _required(kind) for kind in EVENT_FIELDS}
_CONFIG_KINDS = (Kind.CFG_READ.value, Kind.CFG_WRITE.value)


def check_event(record: dict[str, Any]) -> str | None:
    """Why ``record`` is not a well-formed event of a known kind, or None if it is:
    an unknown kind, a field Rule 3 requires missing, or a field of the wrong type
    (:data:`FIELD_TYPES`; a number where an unsigned integer belongs must be one).

    Run on every event a reader parses: the kind's own fields are checked by name,
    and only an event with more than those has all its fields looked up."""
    kind = record.get("kind")
    required = _REQUIRED.get(kind) if type(kind) is str else None
    if required is None:
        return f"unknown event kind {kind!r}"
    ints, texts, plain = required
    for name in ints:
        value = record.get(name, _ABSENT)
        if type(value) is not int or value < 0:
            return _problem(kind, name, value, int)  # type: ignore[arg-type]
    for name in texts:
        value = record.get(name, _ABSENT)
        if type(value) is not str:
            return _problem(kind, name, value, str)  # type: ignore[arg-type]
    if kind in _CONFIG_KINDS and "value" not in record and "digest" not in record:
        return f'{kind} event without "value" or "digest"'
    if len(record) > plain:
        for name, value in record.items():
            expected = FIELD_TYPES.get(name)
            if expected is not None and (
                type(value) is not expected or (expected is int and value < 0)
            ):
                return _problem(kind, name, value, expected)  # type: ignore[arg-type]
        if "data" in record or "blocks" in record or "tag" in record:
            return _payload_problem(kind, record)  # type: ignore[arg-type]
    return None


def _payload_problem(kind: str, record: dict[str, Any]) -> str | None:
    """Rules 4 and 5 for the fields that carry a payload's bytes or block digests:
    ``data`` is the whole payload in hex, ``blocks`` one digest per logical block."""
    length = record.get("len")
    data = record.get("data")
    if data is None and "tag" in record:
        return f'{kind} event: tagged "{record["tag"]}" without its "data"'
    if data is not None:
        if not _is_hex(data):
            return f'{kind} event: "data" is not hex digits in pairs'
        if length is not None and len(data) != 2 * length:
            return f'{kind} event: "data" holds {len(data) // 2} bytes, "len" says {length}'
    if "blocks" in record:
        block = record.get("block")
        if not block or length is None:
            return f'{kind} event: "blocks" without a "block" size above 0 and a "len"'
        digits = BLOCK_DIGEST_WIDTH * -(-length // block)
        if len(record["blocks"]) != digits or not _is_hex(record["blocks"]):
            return f'{kind} event: "blocks" is not {digits} hex digits (one digest per block)'
    return None


def _is_hex(text: str) -> bool:
    try:  # (fromhex skips whitespace: a string with some decodes to fewer bytes)
        return 2 * len(bytes.fromhex(text)) == len(text)
    except ValueError:
        return False


def _problem(kind: str, name: str, value: object, expected: type) -> str:
    if value is _ABSENT:
        return f'{kind} event without "{name}"'
    return f'{kind} event: "{name}" {_wrong(value, expected)}'


def _wrong(value: object, expected: type) -> str:
    """What is wrong with a field's value, for a message. A JSON reader that turns
    integers beyond 64 bits into floats (orjson does) makes one of those a float."""
    if expected is int and isinstance(value, float) and value >= 2**64:
        return f"is {value:.6g}, beyond 64 bits"
    if expected is int and type(value) is int:
        return f"is {value}, below zero"
    return f"is {_short(value)}, not {'an unsigned integer' if expected is int else 'a string'}"


__all__ = [
    "BLOCK_DIGEST_ALGORITHM",
    "BLOCK_DIGEST_WIDTH",
    "DIGEST_ALGORITHM",
    "END_KEY",
    "EVENT_FIELDS",
    "FIELD_TYPES",
    "FORMAT_VERSION",
    "HEADER_FIELDS",
    "IDENTITY_KEYS",
    "INLINE_DATA_LIMIT",
    "KINDS",
    "LEGACY_DIGEST_ALGORITHM",
    "READABLE_VERSIONS",
    "VERSION_KEY",
    "WINDOW_STREAM",
    "Kind",
    "MalformedEvent",
    "block_digests",
    "check_event",
    "check_header",
    "config_line",
    "digest_algorithm",
    "dma_line",
    "dumps",
    "event_line",
    "header",
    "irq_line",
    "mmio_line",
    "payload_digest",
    "split_block_digests",
    "trailer",
]
