"""Device-model API: declarative registers and the :class:`DeviceModel` base class."""

from ..pci.capabilities import Msi, MsiX, PciExpress, PowerManagement
from ..pci.config import BarKind
from .device import (
    INTX,
    MSI,
    MSIX,
    Bar,
    Buffer,
    Bus,
    Descriptor,
    DeviceModel,
    DmaError,
    Option,
    Window,
)
from .registers import Access, Field, Register, RegisterFile

__all__ = [
    "INTX",
    "MSI",
    "MSIX",
    "Access",
    "Bar",
    "BarKind",
    "Buffer",
    "Bus",
    "Descriptor",
    "DeviceModel",
    "DmaError",
    "Field",
    "Msi",
    "MsiX",
    "Option",
    "PciExpress",
    "PowerManagement",
    "Register",
    "RegisterFile",
    "Window",
]
