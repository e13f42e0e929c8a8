"""An NVMe 1.4 controller (class 01:08:02) for the stock NVMe drivers of Linux and macOS.

Registers, doorbells and the admin and I/O command sets are declared or
implemented here; payload layouts live in :mod:`.nvme_spec`. Queues are
processed as device-side work after the doorbell write that rang them, so
DMA works both through shared memory and through vfio-user DMA messages.
Namespaces are backed by a host file (persisted) or by memory.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..device import (
    Access,
    Bar,
    BarRange,
    Descriptor,
    DeviceModel,
    DmaError,
    Field,
    IrqType,
    MsiX,
    Option,
    PciExpress,
    PowerManagement,
    Register,
    Takeover,
    whole_number,
)
from .nvme_spec import (
    CQE_SIZE,
    PAGE,
    SQE_SIZE,
    NvmeCommand,
    NvmeError,
    NvmeStatus,
    active_namespaces,
    completion,
    identify_controller,
    identify_namespace,
    namespace_descriptors,
    prp_segments,
    smart_log,
)

MAX_IO_QUEUES = 16
MAX_QUEUE_ENTRIES = 1024
MDTS = 5  # 2**5 pages: 128 KiB per command
ZERO_CHUNK = 1 << 20
AERL = 3
DOORBELLS = 0x1000
MSIX_TABLE = 0x2000
MSIX_PBA = 0x3000

# Admin opcodes
DELETE_SQ, CREATE_SQ, GET_LOG_PAGE, DELETE_CQ, CREATE_CQ = 0x00, 0x01, 0x02, 0x04, 0x05
IDENTIFY, ABORT, SET_FEATURES, GET_FEATURES, ASYNC_EVENT = 0x06, 0x08, 0x09, 0x0A, 0x0C
# NVM opcodes
FLUSH, WRITE, READ, WRITE_ZEROES, DATASET_MANAGEMENT = 0x00, 0x01, 0x02, 0x08, 0x09

CAP = (
    (MAX_QUEUE_ENTRIES - 1)  # MQES
    | (1 << 16)  # contiguous queues required
    | (0x20 << 24)  # ready timeout: 16 s
    | (1 << 37)  # NVM command set
)
FEATURE_DEFAULTS = {
    0x01: 0,  # arbitration
    0x02: 0,  # power management: PS0
    0x04: 343,  # temperature threshold, Kelvin
    0x05: 0,  # error recovery
    0x06: 1,  # volatile write cache enabled
    0x08: 0,  # interrupt coalescing
    0x09: 0,  # interrupt vector configuration
    0x0A: 0,  # write atomicity
    0x0B: 0,  # asynchronous event configuration
}
FEATURE_QUEUES = 0x07


def _check_mdts(length: int) -> None:
    if length > PAGE << MDTS:
        raise NvmeError(NvmeStatus.INVALID_FIELD, f"transfer of {length} bytes exceeds MDTS")


class Namespace:
    """Blocks of one namespace, in a host file (``path``) or in memory."""

    def __init__(self, size: int, block_size: int, path: str = "") -> None:
        if block_size not in (512, 4096):
            raise ValueError(f"block size {block_size} is not 512 or 4096")
        if size <= 0 or size % block_size:
            raise ValueError(f"namespace size {size} is not a positive multiple of {block_size}")
        self.block_size = block_size
        self.blocks = size // block_size
        self.path = path
        self._fd = -1
        self._memory: bytearray | None = None
        if path:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
        else:
            self._memory = bytearray(size)

    def check(self, lba: int, count: int) -> None:
        if count <= 0 or lba < 0 or lba + count > self.blocks:
            raise NvmeError(
                NvmeStatus.LBA_OUT_OF_RANGE, f"LBA {lba}+{count} beyond {self.blocks} blocks"
            )

    def read(self, lba: int, count: int) -> bytes:
        start, length = lba * self.block_size, count * self.block_size
        if self._memory is not None:
            return bytes(self._memory[start : start + length])
        return os.pread(self._fd, length, start)

    def write(self, lba: int, data: bytes) -> None:
        start = lba * self.block_size
        if self._memory is not None:
            self._memory[start : start + len(data)] = data
        else:
            os.pwrite(self._fd, data, start)

    def zero(self, lba: int, count: int) -> None:
        # A chunk at a time: Write Zeroes takes 65,536 blocks and a deallocate range
        # the whole namespace (mkfs discards all of it), too much to allocate at once.
        chunk = ZERO_CHUNK // self.block_size
        zeros = bytes(min(count, chunk) * self.block_size)
        for start in range(lba, lba + count, chunk):
            blocks = min(chunk, lba + count - start)
            self.write(start, zeros[: blocks * self.block_size])

    def flush(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class CompletionQueue:
    qid: int
    base: int
    size: int
    vector: int
    interrupts: bool
    tail: int = 0
    head: int = 0
    phase: int = 1
    sqs: set[int] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return (self.tail + 1) % self.size == self.head

    @property
    def pending(self) -> bool:
        return self.tail != self.head


@dataclass
class SubmissionQueue:
    qid: int
    base: int
    size: int
    cqid: int
    head: int = 0
    tail: int = 0


PERTURBATIONS = ("read_byte", "status", "irq", "late_data")


def _parse_perturbation(text: str) -> tuple[str, int]:
    kind, _, number = text.partition("@")
    if kind not in PERTURBATIONS or not number.isdigit() or int(number) < 1:
        raise ValueError(f"{text!r} is not KIND@N with KIND one of {', '.join(PERTURBATIONS)}")
    return kind, int(number)


def _parse_switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{text!r} is not on or off")


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if size and size[-1] in units:
            return int(float(size[:-1]) * units[size[-1]])
        return int(size)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a size in bytes (a number, k, m or g after it)"
        ) from None


class Nvme(DeviceModel):
    name = "nvme"
    description = "NVMe 1.4 controller with one namespace (file- or memory-backed)"
    # Red Hat's QEMU range, with a device ID no Linux quirk matches.
    vendor_id = 0x1B36
    device_id = 0x00EE
    subsystem_vendor_id = 0x1B36
    subsystem_id = 0x00EE
    class_code = 0x010802
    revision = 0x02
    capabilities = (
        PowerManagement(),
        MsiX(
            vectors=MAX_IO_QUEUES + 1,
            table_bar=0,
            table_offset=MSIX_TABLE,
            pba_bar=0,
            pba_offset=MSIX_PBA,
        ),
        PciExpress(),
    )
    # An OS driver disables the controller (CC.EN = 0) before setting it up; firmware
    # that drove it first (SeaBIOS, OVMF's NvmExpressDxe) did the same, but polls.
    takeover = Takeover("cc", mask=0x1, value=0x0)
    descriptors = (
        # Submission entry: command id (the driver's tag), PRP1 and PRP2 (addresses).
        Descriptor("sqe", addresses=(24, 32), ignore=((2, 4),)),
        Descriptor("cqe", ignore=((12, 14),)),  # completion entry: command id
        Descriptor("prp_list", address_list=True),
    )
    options = (
        Option("size", 64 << 20, "namespace size in bytes (suffixes k, m, g)", _parse_size),
        Option("block_size", 512, "logical block size: 512 or 4096", whole_number),
        Option("backing", "", "host file holding the namespace (default: memory)"),
        Option("serial", "XVPCI0001", "serial number reported by Identify"),
        Option(
            "block_digests",
            True,
            "on (default): the log carries a digest per logical block of I/O data, "
            "which the transaction diff compares block by block; off: saves the server "
            "their cost, and the transaction diff then compares no block data",
            _parse_switch,
        ),
        Option(
            "perturb",
            None,
            "for testing validators: KIND@N answers the Nth I/O command wrongly "
            "(read_byte: one byte of a read's data flipped; status: completed with "
            "Internal Error; irq: no completion interrupt for its batch; late_data: a "
            "read or write completed before its data moves, which it does just before "
            "the next entry is fetched: a flush submitted meanwhile covers a write whose "
            "data the device had not taken)",
            _parse_perturbation,
        ),
    )
    bars = (
        Bar(
            0,
            size=0x4000,
            registers=(
                Register("cap", 0x00, size=8, access=Access.RO, reset=CAP),
                Register("vs", 0x08, access=Access.RO, reset=0x00010400),
                Register("intms", 0x0C, read="_interrupt_mask", write="_set_interrupt_mask"),
                Register("intmc", 0x10, read="_interrupt_mask", write="_clear_interrupt_mask"),
                Register(
                    "cc",
                    0x14,
                    fields=(
                        Field("en", 0),
                        Field("css", 4, 3),
                        Field("mps", 7, 4),
                        Field("ams", 11, 3),
                        Field("shn", 14, 2),
                        Field("iosqes", 16, 4),
                        Field("iocqes", 20, 4),
                    ),
                    write="_configure",
                    state=True,
                ),
                Register(
                    "csts",
                    0x1C,
                    fields=(
                        Field("rdy", 0, access=Access.RO),
                        Field("cfs", 1, access=Access.RO),
                        Field("shst", 2, 2, access=Access.RO),
                    ),
                ),
                Register(
                    "aqa", 0x24, fields=(Field("asqs", 0, 12), Field("acqs", 16, 12)), state=True
                ),
                Register("asq", 0x28, size=8, fields=(Field("asqb", 12, 52),), address=True),
                Register("acq", 0x30, size=8, fields=(Field("acqb", 12, 52),), address=True),
                Register("cmbloc", 0x38, access=Access.RO),
                Register("cmbsz", 0x3C, access=Access.RO),
            ),
            ranges=(
                BarRange(
                    "doorbells",
                    DOORBELLS,
                    8 * (MAX_IO_QUEUES + 1),
                    write="_doorbell",
                    names=("SQ{n}TDBL", "CQ{n}HDBL"),
                ),
            ),
        ),
    )

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        self.regs = self.registers(0)
        size, block_size = int(self.opts["size"]), int(self.opts["block_size"])
        self.namespace = Namespace(size - size % block_size, block_size, str(self.opts["backing"]))
        self.serial = str(self.opts["serial"])
        digest = hashlib.sha256(self.serial.encode()).digest()
        self._nguid, self._uuid = digest[:16], digest[16:32]
        self.interrupt_mask = 0
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self.features = dict(FEATURE_DEFAULTS)
        self.io_queues_granted = MAX_IO_QUEUES
        self.aers: collections.deque[int] = collections.deque()
        self._scheduled: set[int] = set()
        self.counters = {"read_bytes": 0, "write_bytes": 0, "reads": 0, "writes": 0}
        perturb = self.opts["perturb"]
        self._perturb: tuple[str, int] | None = perturb  # type: ignore[assignment]
        self._io_commands = 0
        self._perturbing = ""  # the perturbation applying to the command in hand
        # late_data: the data move of a command already completed, done before the next
        # entry fetch (of any queue).
        self._held: Callable[[], None] | None = None
        # Logical block size for the log's per-block digests; 0: none (the option off).
        self._digest_block = self.namespace.block_size if self.opts["block_digests"] else 0

    # --- registers ------------------------------------------------------------

    def _interrupt_mask(self) -> int:
        return self.interrupt_mask

    def _set_interrupt_mask(self, value: int) -> None:
        self.interrupt_mask |= value
        self._update_intx()

    def _clear_interrupt_mask(self, value: int) -> None:
        self.interrupt_mask &= ~value
        self._update_intx()

    def _configure(self, value: int) -> None:
        enabled = bool(self.regs.get_field("csts", "rdy"))
        if value & 1 and not enabled:
            self._enable()
        elif not value & 1 and enabled:
            self._controller_reset()
        if self.regs.get_field("cc", "shn"):
            self.namespace.flush()
            self.regs.set_field("csts", "shst", 2)  # shutdown complete

    def _enable(self) -> None:
        if self.regs.get_field("cc", "mps") != 0:
            self.device_error("fatal", "only 4 KiB memory pages are supported")
            self.regs.set_field("csts", "cfs", 1)
            return
        asqs, acqs = self.regs.get_field("aqa", "asqs") + 1, self.regs.get_field("aqa", "acqs") + 1
        if asqs < 2 or acqs < 2:
            self.device_error("fatal", f"admin queues of {asqs}/{acqs} entries are too small")
            self.regs.set_field("csts", "cfs", 1)
            return
        self.cqs[0] = CompletionQueue(0, self.regs["acq"], acqs, vector=0, interrupts=True)
        self.sqs[0] = SubmissionQueue(0, self.regs["asq"], asqs, cqid=0)
        self.cqs[0].sqs.add(0)
        self.regs.set_field("csts", "shst", 0)
        self.regs.set_field("csts", "rdy", 1)

    def _controller_reset(self) -> None:
        self.sqs.clear()
        self.cqs.clear()
        self.aers.clear()
        self._scheduled.clear()
        self._held = None
        self.features = dict(FEATURE_DEFAULTS)
        self.io_queues_granted = MAX_IO_QUEUES
        self.regs.set_field("csts", "rdy", 0)
        self.regs.set_field("csts", "cfs", 0)
        self.lower_irq()

    def on_reset(self) -> None:
        self.interrupt_mask = 0
        self._controller_reset()

    def _doorbell(self, offset: int, size: int, value: int) -> None:
        qid, is_cq = divmod(offset, 8)
        is_cq = bool(is_cq)
        if size != 4 or offset % 4:
            self.device_error("bad_doorbell", f"doorbell access of {size} bytes at {offset:#x}")
            return
        if is_cq:
            cq = self.cqs.get(qid)
            if cq is None or value >= cq.size:
                self.device_error("bad_doorbell", f"invalid CQ{qid} head doorbell {value}")
                return
            cq.head = value
            self._update_intx()
            for sqid in cq.sqs:  # a full CQ may have stalled its SQs
                self._schedule(sqid)
            return
        sq = self.sqs.get(qid)
        if sq is None or value >= sq.size:
            self.device_error("bad_doorbell", f"invalid SQ{qid} tail doorbell {value}")
            return
        sq.tail = value
        self._schedule(qid)

    def _schedule(self, sqid: int) -> None:
        if sqid not in self._scheduled:
            self._scheduled.add(sqid)
            self.defer(lambda: self._process(sqid))

    # --- queue processing (device-side work) ---------------------------------

    def _process(self, sqid: int) -> None:
        self._scheduled.discard(sqid)
        sq = self.sqs.get(sqid)
        if sq is None:
            return
        cq = self.cqs[sq.cqid]
        posted = silent = False
        while sq.head != sq.tail and not cq.full:
            if self._held is not None:
                held, self._held = self._held, None
                try:
                    held()
                except DmaError as exc:
                    self.device_error("dma_fault", f"held data of a completed command: {exc}")
            try:
                raw = self.dma_read(sq.base + sq.head * SQE_SIZE, SQE_SIZE, "sqe")
            except DmaError as exc:
                self.device_error("fatal", f"cannot fetch SQ{sqid} entry {sq.head}: {exc}")
                self.regs.set_field("csts", "cfs", 1)
                return
            sq.head = (sq.head + 1) % sq.size
            cmd = NvmeCommand.parse(raw)
            if self._perturb is not None and sqid:
                self._io_commands += 1
                kind, number = self._perturb
                self._perturbing = kind if number == self._io_commands else ""
            try:
                result = self._admin(cmd) if sqid == 0 else self._io(cmd)
            except NvmeError as exc:
                self.device_error(
                    f"status_{exc.status:#05x}", f"SQ{sqid} cid {cmd.cid} op {cmd.opcode:#x}: {exc}"
                )
                result = (exc.status, 0)
            except DmaError as exc:
                self.device_error("dma_fault", f"SQ{sqid} cid {cmd.cid}: {exc}")
                result = (NvmeStatus.DATA_TRANSFER_ERROR, 0)
            if result is None:  # async event request: completes later
                continue
            status, dw0 = result
            if self._perturbing == "status":
                status = NvmeStatus.INTERNAL_ERROR
            silent |= self._perturbing == "irq"
            self._perturbing = ""
            posted |= self._post(cq, sq, cmd.cid, status, dw0)
        if posted and not silent:
            self._interrupt(cq)

    def _post(
        self, cq: CompletionQueue, sq: SubmissionQueue, cid: int, status: int, dw0: int
    ) -> bool:
        entry = completion(dw0, sq.head, sq.qid, cid, cq.phase, status)
        try:
            self.dma_write(cq.base + cq.tail * CQE_SIZE, entry, "cqe")
        except DmaError as exc:
            self.device_error("fatal", f"cannot post to CQ{cq.qid}: {exc}")
            self.regs.set_field("csts", "cfs", 1)
            return False
        cq.tail = (cq.tail + 1) % cq.size
        if cq.tail == 0:
            cq.phase ^= 1
        return True

    def _interrupt(self, cq: CompletionQueue) -> None:
        if not cq.interrupts:
            return
        if self.irq_mode() == IrqType.INTX:
            self._update_intx()
        else:
            self.raise_irq(cq.vector)

    def _update_intx(self) -> None:
        if self.irq_mode() != IrqType.INTX:
            return
        level = any(cq.interrupts and cq.pending for cq in self.cqs.values())
        if level and not self.interrupt_mask & 1:
            self.raise_irq(0)
        else:
            self.lower_irq()

    def _read_prp_list(self, addr: int, length: int) -> bytes:
        return self.dma_read(addr, length, "prp_list")

    # --- admin command set ------------------------------------------------------

    def _admin(self, cmd: NvmeCommand) -> tuple[int, int] | None:
        handler = {
            DELETE_SQ: self._delete_sq,
            CREATE_SQ: self._create_sq,
            GET_LOG_PAGE: self._get_log_page,
            DELETE_CQ: self._delete_cq,
            CREATE_CQ: self._create_cq,
            IDENTIFY: self._identify,
            ABORT: lambda c: (NvmeStatus.SUCCESS, 1),  # bit 0: command not aborted
            SET_FEATURES: self._set_features,
            GET_FEATURES: self._get_features,
            ASYNC_EVENT: self._async_event,
        }.get(cmd.opcode)
        if handler is None:
            raise NvmeError(
                NvmeStatus.INVALID_OPCODE, f"admin opcode {cmd.opcode:#x} not supported"
            )
        return handler(cmd)

    def _send(self, cmd: NvmeCommand, data: bytes, length: int | None = None) -> tuple[int, int]:
        """Copy ``data`` (up to ``length`` bytes) to the command's PRPs."""
        data = data[: length if length is not None else len(data)]
        self.dma_scatter(prp_segments(cmd.prp1, cmd.prp2, len(data), self._read_prp_list), data)
        return NvmeStatus.SUCCESS, 0

    def _identify(self, cmd: NvmeCommand) -> tuple[int, int]:
        cns = cmd.cdw10 & 0xFF
        if cns == 0x00:
            if cmd.nsid != 1:
                raise NvmeError(NvmeStatus.INVALID_NAMESPACE, f"identify of namespace {cmd.nsid}")
            ns = self.namespace
            return self._send(cmd, identify_namespace(ns.blocks, ns.block_size, self._nguid))
        if cns == 0x01:
            page = identify_controller(
                self.vendor_id, self.serial, "xvpci NVMe model", "1.0", MDTS, 1, AERL
            )
            return self._send(cmd, page)
        if cns == 0x02:
            return self._send(cmd, active_namespaces(cmd.nsid, 1))
        if cns == 0x03:
            if cmd.nsid != 1:
                raise NvmeError(
                    NvmeStatus.INVALID_NAMESPACE, f"descriptors of namespace {cmd.nsid}"
                )
            return self._send(cmd, namespace_descriptors(self._uuid))
        raise NvmeError(NvmeStatus.INVALID_FIELD, f"identify CNS {cns:#x} not supported")

    def _get_log_page(self, cmd: NvmeCommand) -> tuple[int, int]:
        lid = cmd.cdw10 & 0xFF
        dwords = ((cmd.cdw11 & 0xFFFF) << 16 | (cmd.cdw10 >> 16)) + 1
        offset = cmd.cdw12 | (cmd.cdw13 << 32)
        # As QEMU's nvme_get_log (hw/nvme/ctrl.c) does, before it looks at the log: the
        # page is padded to the length asked, so an unchecked NUMD (up to 16 GiB) would
        # be an allocation a guest or a hostile client chooses.
        _check_mdts(dwords * 4)
        if lid == 0x01:  # error information: no errors recorded
            page = bytes(64)
        elif lid == 0x02:
            c = self.counters
            page = smart_log(
                -(-c["read_bytes"] // 512_000),
                -(-c["write_bytes"] // 512_000),
                c["reads"],
                c["writes"],
            )
        elif lid == 0x03:  # firmware slot information
            page = bytearray(512)
            page[0] = 1
            page[8:16] = b"1.0     "
            page = bytes(page)
        else:
            raise NvmeError(NvmeStatus.INVALID_LOG_PAGE, f"log page {lid:#x} not supported")
        if offset >= len(page):
            raise NvmeError(
                NvmeStatus.INVALID_FIELD, f"log page offset {offset} beyond {len(page)}"
            )
        data = page[offset:].ljust(dwords * 4, b"\0")
        return self._send(cmd, data, dwords * 4)

    def _set_features(self, cmd: NvmeCommand) -> tuple[int, int]:
        fid = cmd.cdw10 & 0xFF
        if cmd.cdw10 >> 31:
            raise NvmeError(NvmeStatus.FEATURE_NOT_SAVEABLE, f"feature {fid:#x} cannot be saved")
        if fid == FEATURE_QUEUES:
            if self.sqs.keys() - {0} or self.cqs.keys() - {0}:
                raise NvmeError(
                    NvmeStatus.INVALID_FIELD, "number of queues set after creating queues"
                )
            wanted = max(cmd.cdw11 & 0xFFFF, cmd.cdw11 >> 16)
            if wanted == 0xFFFF:
                raise NvmeError(NvmeStatus.INVALID_FIELD, "65536 queues requested")
            self.io_queues_granted = min(wanted + 1, MAX_IO_QUEUES)
            granted = self.io_queues_granted - 1
            return NvmeStatus.SUCCESS, granted << 16 | granted
        if fid not in self.features:
            raise NvmeError(NvmeStatus.INVALID_FIELD, f"feature {fid:#x} not supported")
        self.features[fid] = cmd.cdw11
        return NvmeStatus.SUCCESS, 0

    def _get_features(self, cmd: NvmeCommand) -> tuple[int, int]:
        fid, select = cmd.cdw10 & 0xFF, (cmd.cdw10 >> 8) & 0x7
        if select == 3:  # supported capabilities: changeable, not saveable
            return NvmeStatus.SUCCESS, 0x4
        if fid == FEATURE_QUEUES:
            granted = (self.io_queues_granted if select != 1 else MAX_IO_QUEUES) - 1
            return NvmeStatus.SUCCESS, granted << 16 | granted
        if fid not in self.features:
            raise NvmeError(NvmeStatus.INVALID_FIELD, f"feature {fid:#x} not supported")
        value = FEATURE_DEFAULTS[fid] if select == 1 else self.features[fid]
        return NvmeStatus.SUCCESS, value

    def _async_event(self, cmd: NvmeCommand) -> tuple[int, int] | None:
        if len(self.aers) > AERL:
            raise NvmeError(NvmeStatus.ASYNC_EVENT_LIMIT_EXCEEDED, "too many async event requests")
        self.aers.append(cmd.cid)  # no events are ever generated: it stays outstanding
        return None

    def _create_cq(self, cmd: NvmeCommand) -> tuple[int, int]:
        qid, size = cmd.cdw10 & 0xFFFF, (cmd.cdw10 >> 16) + 1
        contiguous, interrupts, vector = cmd.cdw11 & 1, bool(cmd.cdw11 & 2), cmd.cdw11 >> 16
        if not 1 <= qid <= self.io_queues_granted or qid in self.cqs:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_IDENTIFIER, f"CQ id {qid} invalid or in use")
        if not 2 <= size <= MAX_QUEUE_ENTRIES:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_SIZE, f"CQ of {size} entries")
        if not contiguous or cmd.prp1 % PAGE:
            raise NvmeError(NvmeStatus.INVALID_FIELD, "CQ must be contiguous and page aligned")
        if interrupts and vector >= max(1, self.msix_vectors):
            raise NvmeError(NvmeStatus.INVALID_INTERRUPT_VECTOR, f"interrupt vector {vector}")
        self.cqs[qid] = CompletionQueue(qid, cmd.prp1, size, vector, interrupts)
        return NvmeStatus.SUCCESS, 0

    def _create_sq(self, cmd: NvmeCommand) -> tuple[int, int]:
        qid, size = cmd.cdw10 & 0xFFFF, (cmd.cdw10 >> 16) + 1
        contiguous, cqid = cmd.cdw11 & 1, cmd.cdw11 >> 16
        if not 1 <= qid <= self.io_queues_granted or qid in self.sqs:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_IDENTIFIER, f"SQ id {qid} invalid or in use")
        if not 2 <= size <= MAX_QUEUE_ENTRIES:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_SIZE, f"SQ of {size} entries")
        if cqid == 0 or cqid not in self.cqs:
            raise NvmeError(NvmeStatus.COMPLETION_QUEUE_INVALID, f"SQ{qid} names missing CQ{cqid}")
        if not contiguous or cmd.prp1 % PAGE:
            raise NvmeError(NvmeStatus.INVALID_FIELD, "SQ must be contiguous and page aligned")
        self.sqs[qid] = SubmissionQueue(qid, cmd.prp1, size, cqid)
        self.cqs[cqid].sqs.add(qid)
        return NvmeStatus.SUCCESS, 0

    def _delete_sq(self, cmd: NvmeCommand) -> tuple[int, int]:
        qid = cmd.cdw10 & 0xFFFF
        if qid == 0 or qid not in self.sqs:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_IDENTIFIER, f"delete of SQ{qid}")
        sq = self.sqs.pop(qid)
        self.cqs[sq.cqid].sqs.discard(qid)
        return NvmeStatus.SUCCESS, 0

    def _delete_cq(self, cmd: NvmeCommand) -> tuple[int, int]:
        qid = cmd.cdw10 & 0xFFFF
        if qid == 0 or qid not in self.cqs:
            raise NvmeError(NvmeStatus.INVALID_QUEUE_IDENTIFIER, f"delete of CQ{qid}")
        if self.cqs[qid].sqs:
            raise NvmeError(
                NvmeStatus.INVALID_QUEUE_IDENTIFIER, f"CQ{qid} still has submission queues"
            )
        del self.cqs[qid]
        return NvmeStatus.SUCCESS, 0

    # --- NVM command set ----------------------------------------------------------

    def _io(self, cmd: NvmeCommand) -> tuple[int, int]:
        if cmd.nsid != 1:
            raise NvmeError(NvmeStatus.INVALID_NAMESPACE, f"namespace {cmd.nsid}")
        if cmd.psdt:
            raise NvmeError(NvmeStatus.INVALID_FIELD, "SGLs are not supported")
        ns = self.namespace
        if cmd.opcode == FLUSH:
            ns.flush()
            return NvmeStatus.SUCCESS, 0
        if cmd.opcode in (READ, WRITE, WRITE_ZEROES):
            lba, count = cmd.lba_range()
            ns.check(lba, count)
            if cmd.opcode == WRITE_ZEROES:
                ns.zero(lba, count)
                return NvmeStatus.SUCCESS, 0
            length = count * ns.block_size
            _check_mdts(length)
            segments = prp_segments(cmd.prp1, cmd.prp2, length, self._read_prp_list)
            if cmd.opcode == READ:
                data = ns.read(lba, count)
                if self._perturbing == "read_byte":
                    data = bytes([data[0] ^ 0x01]) + data[1:]
                if self._perturbing == "late_data":
                    block = self._digest_block
                    self._held = lambda: self.dma_scatter(segments, data, block)
                else:
                    self.dma_scatter(segments, data, self._digest_block)
                self.counters["reads"] += 1
                self.counters["read_bytes"] += length
            else:
                if self._perturbing == "late_data":
                    block = self._digest_block
                    self._held = lambda: ns.write(lba, self.dma_gather(segments, block))
                else:
                    ns.write(lba, self.dma_gather(segments, self._digest_block))
                self.counters["writes"] += 1
                self.counters["write_bytes"] += length
            return NvmeStatus.SUCCESS, 0
        if cmd.opcode == DATASET_MANAGEMENT:
            if not cmd.cdw11 & 0x4:  # only deallocate does anything
                return NvmeStatus.SUCCESS, 0
            ranges = (cmd.cdw10 & 0xFF) + 1
            raw = self.dma_gather(
                prp_segments(cmd.prp1, cmd.prp2, 16 * ranges, self._read_prp_list)
            )
            for i in range(ranges):
                count = int.from_bytes(raw[16 * i + 4 : 16 * i + 8], "little")
                lba = int.from_bytes(raw[16 * i + 8 : 16 * i + 16], "little")
                if count:
                    ns.check(lba, count)
                    ns.zero(lba, count)
            return NvmeStatus.SUCCESS, 0
        raise NvmeError(NvmeStatus.INVALID_OPCODE, f"I/O opcode {cmd.opcode:#x} not supported")
