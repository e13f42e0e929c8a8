"""Declarative registers: offsets, widths, fields, access rules and reset values.

A model lists :class:`Register` objects; :class:`RegisterFile` compiles them
into masks once, so an access is a dict lookup and a few integer operations.
Side effects are named methods of the model, bound at construction.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


class Access(enum.Enum):
    RO = "ro"  #: read-only; writes are ignored
    RW = "rw"  #: read-write
    W1C = "w1c"  #: write 1 to clear
    WO = "wo"  #: write-only; reads return 0


@dataclass(frozen=True, slots=True)
class Field:
    """Bits ``[lsb, lsb + width)`` of a register with their own access rule."""

    name: str
    lsb: int
    width: int = 1
    access: Access = Access.RW
    reset: int = 0

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True, slots=True)
class Register:
    """One register of a BAR.

    ``read`` names a model method returning the live value (for registers whose
    value is computed); ``write`` names a method called with the value the
    guest wrote, after the stored value was updated by the access rules.
    Without ``fields`` the register's ``access`` covers all bits; with fields,
    bits no field covers are reserved and read as zero.
    """

    name: str
    offset: int
    size: int = 4
    access: Access = Access.RW
    reset: int = 0
    fields: tuple[Field, ...] = ()
    read: str | None = None
    write: str | None = None
    doc: str = ""
    #: Holds a guest memory address (queue base...): the diff maps such values
    #: like DMA addresses, since they legitimately differ between paths.
    address: bool = False
    #: Part of the device's state: its final value is compared at the end of a
    #: transaction-level diff (control registers, not counters or addresses).
    state: bool = False

    def __post_init__(self) -> None:
        if self.size not in (1, 2, 4, 8):
            raise ValueError(f"register {self.name}: size {self.size} is not 1, 2, 4 or 8")
        if self.offset % self.size:
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not aligned")
        width = self.size * 8
        for f in self.fields:
            if f.lsb + f.width > width:
                raise ValueError(f"register {self.name}: field {f.name} exceeds {width} bits")

    def masks(self) -> tuple[int, int, int, int]:
        """``(write, w1c, write_only, reset)`` bit masks for this register."""
        full = (1 << (self.size * 8)) - 1
        parts = self.fields or (Field(self.name, 0, self.size * 8, self.access, self.reset),)
        wmask = w1c = wo = 0
        reset = 0
        for f in parts:
            if f.access in (Access.RW, Access.WO):
                wmask |= f.mask
            if f.access is Access.W1C:
                w1c |= f.mask
            if f.access is Access.WO:
                wo |= f.mask
            reset |= (f.reset << f.lsb) & f.mask
        if not self.fields:
            reset = self.reset & full
        return wmask & full, w1c & full, wo & full, reset


ReadHook = Callable[[], int]
WriteHook = Callable[[int], None]


@dataclass(slots=True)
class _Compiled:
    reg: Register
    wmask: int
    w1c: int
    read_mask: int
    reset: int
    value: int = 0
    on_read: ReadHook | None = None
    on_write: WriteHook | None = None
    fields: dict[str, Field] = field(default_factory=dict)
    full: int = 0  # every bit of the register
    keep: int = 0  # the bits a write leaves as they are (~wmask)

    def guest_read(self) -> int:
        """The value a guest reads (its read hook's, or the stored one), write-only bits 0."""
        value = self.on_read() if self.on_read is not None else self.value
        return value & self.read_mask

    def guest_write(self, value: int, lane: int = -1) -> None:
        """Apply a guest write to the bytes ``lane`` covers (all by default), then the hook."""
        if lane == -1:  # the whole register, as nearly every write is: masks made once
            new = (self.value & self.keep) | (value & self.wmask)
            if self.w1c:
                new &= ~(value & self.w1c)
        else:
            wmask = self.wmask & lane
            new = (self.value & ~wmask) | (value & wmask)
            new &= ~(value & self.w1c & lane)
        self.value = new
        if self.on_write is not None:
            self.on_write(value)


class RegisterFile:
    """The live registers of one BAR, addressable by offset (guest) or name (model)."""

    def __init__(self, registers: Iterable[Register], owner: object | None = None) -> None:
        self._by_name: dict[str, _Compiled] = {}
        self._by_byte: dict[int, _Compiled] = {}
        for reg in registers:
            if reg.name in self._by_name:
                raise ValueError(f"register {reg.name} declared twice")
            wmask, w1c, wo, reset = reg.masks()
            full = (1 << (reg.size * 8)) - 1
            compiled = _Compiled(
                reg,
                wmask,
                w1c,
                full & ~wo,
                reset,
                reset,
                fields={f.name: f for f in reg.fields},
                full=full,
                keep=~wmask,
            )
            if owner is not None:
                compiled.on_read = _bind(owner, reg.read, reg.name)
                compiled.on_write = _bind(owner, reg.write, reg.name)
            for byte in range(reg.offset, reg.offset + reg.size):
                if byte in self._by_byte:
                    other = self._by_byte[byte].reg.name
                    raise ValueError(f"registers {other} and {reg.name} overlap at {byte:#x}")
                self._by_byte[byte] = compiled
            self._by_name[reg.name] = compiled

    # --- guest side ----------------------------------------------------------

    def covers(self, offset: int) -> bool:
        return offset in self._by_byte

    def accessors(
        self, offset: int, size: int
    ) -> tuple[Callable[[], int], Callable[[int], None]] | None:
        """How to read and write the register that is exactly ``size`` bytes at
        ``offset``, as :meth:`read` and :meth:`write` would; None if there is none."""
        reg = self._exactly_at(offset, size)
        return None if reg is None else (reg.guest_read, reg.guest_write)

    def _exactly_at(self, offset: int, size: int) -> _Compiled | None:
        """The register that is exactly ``size`` bytes at ``offset``, if there is one."""
        reg = self._by_byte.get(offset)
        if reg is not None and reg.reg.offset == offset and reg.reg.size == size:
            return reg
        return None

    def read(self, offset: int, size: int) -> int:
        """Read ``size`` bytes at ``offset``; bytes no register covers read as zero."""
        reg = self._exactly_at(offset, size)
        if reg is not None:
            return reg.guest_read()
        return self._read_bytes(offset, size)

    def _read_bytes(self, offset: int, size: int) -> int:
        result = 0
        pos = 0
        while pos < size:
            reg = self._by_byte.get(offset + pos)
            if reg is None:
                pos += 1
                continue
            value = reg.guest_read()
            start = offset + pos - reg.reg.offset
            take = min(reg.reg.size - start, size - pos)
            chunk = (value >> (start * 8)) & ((1 << (take * 8)) - 1)
            result |= chunk << (pos * 8)
            pos += take
        return result

    def write(self, offset: int, size: int, value: int) -> bool:
        """Apply a guest write; returns False when no register is at ``offset``."""
        reg = self._exactly_at(offset, size)
        if reg is not None:
            reg.guest_write(value)
            return True
        return self._write_bytes(offset, size, value)

    def _write_bytes(self, offset: int, size: int, value: int) -> bool:
        hit = False
        pos = 0
        while pos < size:
            reg = self._by_byte.get(offset + pos)
            if reg is None:
                pos += 1
                continue
            start = offset + pos - reg.reg.offset
            take = min(reg.reg.size - start, size - pos)
            lane = ((1 << (take * 8)) - 1) << (start * 8)
            chunk = ((value >> (pos * 8)) << (start * 8)) & lane
            reg.guest_write(chunk, lane)
            hit = True
            pos += take
        return hit

    # --- model side ----------------------------------------------------------

    def __getitem__(self, name: str) -> int:
        return self._by_name[name].value

    def __setitem__(self, name: str, value: int) -> None:
        reg = self._by_name[name]
        reg.value = value & reg.full

    def get_field(self, name: str, field_name: str) -> int:
        reg = self._by_name[name]
        f = reg.fields[field_name]
        return (reg.value & f.mask) >> f.lsb

    def set_field(self, name: str, field_name: str, value: int) -> None:
        reg = self._by_name[name]
        f = reg.fields[field_name]
        reg.value = (reg.value & ~f.mask) | ((value << f.lsb) & f.mask)

    def reset(self) -> None:
        for reg in self._by_name.values():
            reg.value = reg.reset

    def names(self) -> list[str]:
        return list(self._by_name)

    def register(self, name: str) -> Register:
        return self._by_name[name].reg


def _bind(owner: object, method: str | None, reg_name: str) -> Callable | None:
    if method is None:
        return None
    bound = getattr(owner, method, None)
    if not callable(bound):
        raise TypeError(f"register {reg_name}: {type(owner).__name__} has no method {method}()")
    return bound
