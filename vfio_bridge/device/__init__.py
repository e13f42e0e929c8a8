"""Device-model API: declarative registers and the :class:`DeviceModel` base class."""

from ..pci.capabilities import Msi, MsiX, PciExpress, PowerManagement
from ..pci.config import BarKind
from .device import (
    Bar,
    BarRange,
    Buffer,
    Bus,
    Descriptor,
    DeviceModel,
    DmaError,
    IrqType,
    Option,
    Takeover,
    whole_number,
)
from .registers import Access, Field, Register, RegisterFile

__all__ = [
    "Access",
    "Bar",
    "BarKind",
    "BarRange",
    "Buffer",
    "Bus",
    "Descriptor",
    "DeviceModel",
    "DmaError",
    "Field",
    "IrqType",
    "Msi",
    "MsiX",
    "Option",
    "PciExpress",
    "PowerManagement",
    "Register",
    "RegisterFile",
    "Takeover",
    "whole_number",
]
