/*
 * Device-register access of the xvpci kext, and the window's register layout.
 *
 * Every load or store the kext makes to the window device (CFGBAR, MEMBAR1,
 * MEMBAR2) goes through the six inline accessors below; nothing else in
 * XvpciWindow.cpp dereferences a device pointer. On macOS they are plain
 * volatile accesses of memory mapped with IOPCIDevice::mapDeviceMemoryWithRegister.
 *
 * Test bed hook (kext/testbed/, see NOTES-from-K1.md there): compile with
 * -DXVPCI_REGS_HEADER='"file.hpp"' and that header replaces the accessors
 * (it must define the same six functions in namespace xvpci), so the same
 * XvpciWindow.cpp runs on Linux against the real window's sysfs BAR mappings,
 * with accesses counted or traced as the test bed likes.
 *
 * The layout constants mirror vfio_bridge/models/window.py (the device the
 * guest sees); tests/test_kext_check.py checks that they agree.
 */

#ifndef XVPCI_REGS_HPP
#define XVPCI_REGS_HPP

#include <libkern/OSTypes.h>

namespace xvpci {

/* window.py: CFGBAR, MEMBAR1, MEMBAR2 = 0, 2, 4 (BAR indices; config offsets 0x10, 0x18, 0x20) */
constexpr unsigned kCfgBarIndex = 0;
constexpr unsigned kMemBar1Index = 2;
constexpr unsigned kMemBar2Index = 4;
/* window.py: CFGBAR_SIZE = 1 << 20: ECAM for one bus (bus << 20 | devfn << 12 | reg). */
constexpr UInt32 kCfgBarBusBytes = 1U << 20;
constexpr UInt32 kCfgFunctionBytes = 1U << 12;
/* window.py: MEMBAR2_RESERVED = 0x2000, the window's MSI-X table at MEMBAR2 + 0, PBA at + 0x1000. */
constexpr UInt32 kWindowMsixTable = 0;
constexpr UInt32 kWindowMsixPba = 0x1000;
/* window.py: WINDOW_VECTORS = 8 */
constexpr unsigned kWindowVectors = 8;
/* window.py: MSI_ADDRESS; a child message to 0xFEE00000 | w << 12 raises window vector w. */
constexpr UInt32 kMsiAddress = 0xFEE00000;
constexpr UInt32 kMsixEntryBytes = 16;

}  // namespace xvpci

#ifdef XVPCI_REGS_HEADER
#include XVPCI_REGS_HEADER
#else
namespace xvpci {

inline UInt32 regRead32(volatile void *base, UInt32 offset)
{
    return *reinterpret_cast<volatile UInt32 *>(static_cast<volatile UInt8 *>(base) + offset);
}

inline UInt16 regRead16(volatile void *base, UInt32 offset)
{
    return *reinterpret_cast<volatile UInt16 *>(static_cast<volatile UInt8 *>(base) + offset);
}

inline UInt8 regRead8(volatile void *base, UInt32 offset)
{
    return *(static_cast<volatile UInt8 *>(base) + offset);
}

inline void regWrite32(volatile void *base, UInt32 offset, UInt32 value)
{
    *reinterpret_cast<volatile UInt32 *>(static_cast<volatile UInt8 *>(base) + offset) = value;
}

inline void regWrite16(volatile void *base, UInt32 offset, UInt16 value)
{
    *reinterpret_cast<volatile UInt16 *>(static_cast<volatile UInt8 *>(base) + offset) = value;
}

inline void regWrite8(volatile void *base, UInt32 offset, UInt8 value)
{
    *(static_cast<volatile UInt8 *>(base) + offset) = value;
}

}  // namespace xvpci
#endif

#endif
