/*
 * xvpci window bridge for macOS: publishes the children of an xvpci window
 * device (a VMD-style PCI function, 8086:a77f) as virtual IOPCIDevice nubs.
 *
 * Config space of a child is the window's CFGBAR (ECAM: bus << 20 |
 * device << 15 | function << 12 | register). Its BARs are ranges of MEMBAR1
 * that this driver assigns and publishes as the nub's IODeviceMemory, so
 * mapDeviceMemoryWithRegister() in any client driver reaches the device model.
 * The child's MSI-X vectors are programmed with the window's message format
 * (0xFEE00000 | window vector << 12) and delivered through the window's own
 * MSI-X interrupts by a small interrupt controller this driver registers.
 * DMA needs nothing: without VT-d, IODMACommand hands out guest physical
 * addresses, which is what the window forwards.
 *
 * Status: type-checked against the Kernel framework headers (MacKernelSDK)
 * with clang; not yet loaded in a macOS guest.
 */

#ifndef XVPCI_WINDOW_HPP
#define XVPCI_WINDOW_HPP

#include <IOKit/IOInterruptController.h>
#include <IOKit/IOMemoryDescriptor.h>
#include <IOKit/pci/IOPCIBridge.h>
#include <IOKit/pci/IOPCIDevice.h>

namespace xvpci {
constexpr unsigned kMaxChildren = 8;
constexpr unsigned kMaxChildVectors = 64;
constexpr unsigned kMaxWindowVectors = 32;
}

class XvpciWindow;

/* Interrupt controller of the children: one source per child MSI-X vector. */
class XvpciChildInterrupts : public IOInterruptController {
    OSDeclareDefaultStructors(XvpciChildInterrupts)

public:
    bool initWithWindow(XvpciWindow *window, unsigned sources);
    void free() APPLE_KEXT_OVERRIDE;

    IOReturn getInterruptType(IOService *nub, int source, int *interruptType) APPLE_KEXT_OVERRIDE;
    IOInterruptAction getInterruptHandlerAddress() APPLE_KEXT_OVERRIDE;
    IOReturn handleInterrupt(void *refCon, IOService *nub, int source) APPLE_KEXT_OVERRIDE;

    int getVectorType(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) APPLE_KEXT_OVERRIDE;
    void disableVectorHard(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) APPLE_KEXT_OVERRIDE;
    void enableVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) APPLE_KEXT_OVERRIDE;

    /* Run the handler of child vector ``source`` (called from a window interrupt). */
    void dispatch(unsigned source);

private:
    XvpciWindow *fWindow;
    unsigned fSources;
};

class XvpciWindow : public IOPCIBridge {
    OSDeclareDefaultStructors(XvpciWindow)

public:
    bool start(IOService *provider) APPLE_KEXT_OVERRIDE;
    void stop(IOService *provider) APPLE_KEXT_OVERRIDE;
    void free() APPLE_KEXT_OVERRIDE;

    void probeBus(IOService *provider, UInt8 busNum) APPLE_KEXT_OVERRIDE;
    UInt8 firstBusNum() APPLE_KEXT_OVERRIDE;
    UInt8 lastBusNum() APPLE_KEXT_OVERRIDE;
    IOReturn getNubResources(IOService *nub) APPLE_KEXT_OVERRIDE;

    IODeviceMemory *ioDeviceMemory() APPLE_KEXT_OVERRIDE;
    IOPCIAddressSpace getBridgeSpace() APPLE_KEXT_OVERRIDE;
    UInt32 configRead32(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data) APPLE_KEXT_OVERRIDE;
    UInt16 configRead16(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data) APPLE_KEXT_OVERRIDE;
    UInt8 configRead8(IOPCIAddressSpace space, UInt8 offset) APPLE_KEXT_OVERRIDE;
    void configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data) APPLE_KEXT_OVERRIDE;

    /* Child MSI-X vector control, used by XvpciChildInterrupts. */
    void setChildVectorMasked(unsigned source, bool masked);

private:
    struct Child {
        IOPCIAddressSpace space;
        IOPCIDevice *nub;
        OSArray *memory;        /* IODeviceMemory per implemented BAR, tagged by register */
        IOVirtualAddress msixTable;
        unsigned msixVectors;
        unsigned firstSource;   /* this child's vectors are sources firstSource.. */
        UInt8 msixCap;
    };

    volatile UInt8 *configAddress(IOPCIAddressSpace space, UInt8 offset);
    bool mapWindow();
    bool assignBars(Child &child);
    void findMsix(Child &child);
    bool publishChildren();
    bool setUpWindowInterrupts();
    static void windowInterrupt(OSObject *target, void *refCon, IOService *nub, int source);

    IOPCIDevice *fWindow;
    IOMemoryMap *fCfgMap;
    IOMemoryMap *fMem1Map;
    volatile UInt8 *fCfg;
    IOByteCount fCfgSize;
    IOPhysicalAddress fMem1Phys;
    IOVirtualAddress fMem1Virt;
    IOByteCount fMem1Size;
    IOByteCount fMem1Next;
    Child fChildren[xvpci::kMaxChildren];
    unsigned fChildCount;
    unsigned fSourceCount;
    unsigned fWindowVectors;
    bool fPublished;
    XvpciChildInterrupts *fInterrupts;
    const OSSymbol *fControllerName;
};

#endif
