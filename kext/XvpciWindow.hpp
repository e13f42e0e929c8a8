/*
 * xvpci window kext for macOS 12 and later: turns the children of an xvpci
 * window device (a VMD-style PCI function, 8086:a77f, vfio_bridge/models/window.py)
 * into ordinary IOPCIDevice nubs that Apple's own IOPCIFamily enumerates,
 * sizes, assigns, powers and hands to stock drivers (e.g. the NVMe stack).
 *
 * Structure (the pattern of acidanthera/MacHyperVSupport HyperVPCIBridge):
 *
 *   IOPCIDevice 8086:a77f (the window, on the real PCI bus)
 *     XvpciWindow        IOService driver: maps CFGBAR, MEMBAR1, MEMBAR2,
 *                        enables the window's MSI-X, owns every device access
 *       IOService nub    plain nub named "xvpci-window-bus" (not an IOPCIDevice)
 *         XvpciHostBridge  IOPCIHostBridge: CFGBAR is its config space on one
 *                          nonzero bus, MEMBAR1 its memory range; IOPCIConfigurator
 *                          does enumeration, BAR assignment, properties, power
 *           IOPCIDevice    the child, with its own MSI-X vectors routed
 *                          through window MSI-X entries 1..7
 *
 * Targets: macOS 12 (IOPCIFamily 484.x) and later. IOPCIHostBridge first
 * appears in IOPCIFamily 484 (macOS 12) and MacKernelSDK declares it only for
 * a 12.0 deployment target; before it, a bridge on a non-PCI provider would
 * have to rebuild the shared host-bridge data itself, which is private. Every
 * IOPCIFamily behaviour relied on was read at tags 484.40.6 (macOS 12.0) and
 * 726.0.5 (current); XvpciWindow.cpp cites file:line at both where they differ.
 *
 * Names the Linux test bed (kext/testbed/) uses: the classes XvpciWindow and
 * XvpciHostBridge, their public methods below, and the accessors of
 * XvpciRegs.hpp. Renames are announced in kext/testbed/NOTES-from-K1.md.
 */

#ifndef XVPCI_WINDOW_HPP
#define XVPCI_WINDOW_HPP

#include <IOKit/IOMemoryDescriptor.h>
#include <IOKit/IOService.h>
#include <IOKit/pci/IOPCIBridge.h>
#include <IOKit/pci/IOPCIDevice.h>

#include "XvpciRegs.hpp"

namespace xvpci {

constexpr unsigned kMaxWindows = 4;
/* Child functions with MSI-X we route; the window itself has only device 0. */
constexpr unsigned kMaxRoutes = 8;
/* The bus of window i is kFirstBus + i: nonzero, because bus-0 devices are
   restored early on wake (before this bridge's provider is back), and high, to
   stay clear of the buses ACPI describes (Linux vmd starts at 224 too). */
constexpr UInt8 kFirstBus = 0xE0;
/* Window MSI-X entry 0 stays the window's own (the one interrupt XvpciWindow
   registers); children are routed to entries 1..kWindowVectors-1. */
constexpr unsigned kFirstChildWindowVector = 1;
/* IOPCIPrivate.h (484.40.6:284-285,338; 726.0.5:337-338,434), private to IOPCIFamily. */
constexpr const char *kMsiFlagsKey = "pci-msi-flags";
constexpr const char *kMsiLimitKey = "pci-msi-limit";
constexpr UInt32 kMsiFlagRespect = 0x00000001;
constexpr const char *kNubName = "xvpci-window-bus";

/* Config register a (space, offset) pair names: IOPCIDevice passes registers
   above 0xFF in space.es.registerNumExtended (the old kext ignored it, so 0x100
   aliased the vendor ID). */
inline UInt32 configRegister(IOPCIAddressSpace space, UInt8 offset)
{
    return static_cast<UInt32>(offset) | (static_cast<UInt32>(space.es.registerNumExtended) << 8);
}

/* CFGBAR offset of a function's register (window.py: bus << 20 | devfn << 12 | reg;
   the window's bus 0 is the bridge's bus). */
inline UInt32 ecamOffset(IOPCIAddressSpace space, UInt32 reg)
{
    return (static_cast<UInt32>(space.es.deviceNum) << 15) | (static_cast<UInt32>(space.es.functionNum) << 12) |
           (reg & (kCfgFunctionBytes - 1));
}

/* The child's Interrupt Pin (0x3D) reads 0 in an access of `width` bytes at `reg`. */
inline UInt32 hideInterruptPin(UInt32 reg, unsigned width, UInt32 value)
{
    constexpr UInt32 kPin = 0x3D;
    if (reg <= kPin && kPin < reg + width) {
        value &= ~(0xFFU << (8 * (kPin - reg)));
    }
    return value;
}

/* Window vectors a child with `entries` MSI-X entries gets when `available`
   are free: a power of two (IOPCIFamily allocates aligned blocks of system
   vectors, IOPCIMessagedInterruptController.cpp 726.0.5:742-748), at least 1
   if any is free. */
inline unsigned windowVectorsFor(unsigned entries, unsigned available)
{
    unsigned limit = entries < available ? entries : available;
    unsigned count = limit ? 1 : 0;
    while (count * 2 <= limit) {
        count *= 2;
    }
    return count;
}

}  // namespace xvpci

class XvpciHostBridge;

/* Matches the window (IOPCIDevice 8086:a77f) and owns every access to it. */
class XvpciWindow : public IOService {
    OSDeclareDefaultStructors(XvpciWindow)

public:
    bool start(IOService *provider) APPLE_KEXT_OVERRIDE;
    void stop(IOService *provider) APPLE_KEXT_OVERRIDE;
    void free() APPLE_KEXT_OVERRIDE;

    /* ---- used by XvpciHostBridge; safe with interrupts off (no locks, no allocation) */
    UInt8 bus() const { return fBus; }
    IOPhysicalAddress memoryBase() const { return fMem1Phys; }
    IOPhysicalLength memoryLength() const { return fMem1Length; }
    UInt32 configRead(IOPCIAddressSpace space, UInt8 offset, unsigned width);
    void configWrite(IOPCIAddressSpace space, UInt8 offset, unsigned width, UInt32 value);

    /* ---- used by XvpciHostBridge in thread context */
    /* A child nub was initialised: give it window vectors if it has MSI-X. */
    void childInitialized(IOPCIDevice *child);
    /* IOPCIFamily asks for the child's message: keep the system's, hand out the window's. */
    IOReturn childMessage(IOPCIDevice *child, UInt32 message[3]);

    /* ---- the window's own interrupt (window MSI-X entry 0) */
    static void windowInterrupt(OSObject *target, void *refCon, IOService *nub, int source);

private:
    struct Route {
        bool used;
        bool haveMessage;
        UInt8 bus, device, function;
        UInt8 msixCap;           /* child's MSI-X capability offset */
        UInt8 firstWindowVector; /* window entries firstWindowVector .. + windowVectors - 1 */
        UInt8 windowVectors;
        UInt32 addressLo, addressHi, baseData; /* the system's message for the first vector */
    };
    struct WindowEntry {
        bool valid;
        UInt32 addressLo, addressHi, data;
    };

    bool mapWindow();
    bool enableWindowInterrupt();
    bool publishNub();
    void unwind();
    UInt32 cfgRead(IOPCIAddressSpace space, UInt32 reg, unsigned width);
    void cfgWrite(IOPCIAddressSpace space, UInt32 reg, unsigned width, UInt32 value);
    UInt8 findCapability(IOPCIAddressSpace space, UInt8 id);
    Route *routeFor(IOPCIAddressSpace space);
    void syncChildMsix(Route &route);
    void programWindowEntry(unsigned vector, const WindowEntry &entry);
    void resyncWindowEntries();

    IOPCIDevice *fWindow;
    IOService *fNub;
    IOMemoryMap *fCfgMap, *fMem1Map, *fMem2Map;
    volatile UInt8 *fCfg, *fMem1, *fMem2;
    IOByteCount fCfgLength, fMem2Length;
    IOPhysicalAddress fMem1Phys;
    IOPhysicalLength fMem1Length;
    int fWindowIrq; /* registered interrupt index of the window, -1 if none */
    unsigned fSlot;
    UInt8 fBus;
    unsigned fNextWindowVector;
    unsigned fStrayInterrupts;
    Route fRoutes[xvpci::kMaxRoutes];
    WindowEntry fWindowEntries[xvpci::kWindowVectors];
};

/*
 * The host bridge on the window's nub. IOPCIHostBridge is private to
 * IOPCIFamily and its fields grew after macOS 12 (IOPCIPrivate.h 484.40.6:616-628
 * has bridgeData only; 664.0.3 adds _publishNotifier; 726.0.5:857-879 adds
 * _domainId): an instance is allocated with sizeof(XvpciHostBridge) as compiled
 * against the macOS 12 declaration, so the first bytes after the base are
 * padding that newer base classes may use, and this class keeps no state of
 * its own: it finds its window in a static table (XvpciWindow.cpp) by `this`.
 */
class XvpciHostBridge : public IOPCIHostBridge {
    OSDeclareDefaultStructors(XvpciHostBridge)

public:
    bool start(IOService *provider) APPLE_KEXT_OVERRIDE;
    bool configure(IOService *provider) APPLE_KEXT_OVERRIDE;
    bool initializeNub(IOPCIDevice *nub, OSDictionary *from) APPLE_KEXT_OVERRIDE;
    using IOPCIHostBridge::callPlatformFunction;
    IOReturn callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *param1, void *param2,
                                  void *param3, void *param4) APPLE_KEXT_OVERRIDE;

    UInt8 firstBusNum() APPLE_KEXT_OVERRIDE;
    UInt8 lastBusNum() APPLE_KEXT_OVERRIDE;
    IOPCIAddressSpace getBridgeSpace() APPLE_KEXT_OVERRIDE;
    IODeviceMemory *ioDeviceMemory() APPLE_KEXT_OVERRIDE;
    UInt32 configRead32(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data) APPLE_KEXT_OVERRIDE;
    UInt16 configRead16(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data) APPLE_KEXT_OVERRIDE;
    UInt8 configRead8(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data) APPLE_KEXT_OVERRIDE;

private:
    /* Room for base-class growth after macOS 12 (16 bytes by 726.0.5); never touched here. */
    UInt8 fBaseGrowth[64] __attribute__((unused));
};

#endif
