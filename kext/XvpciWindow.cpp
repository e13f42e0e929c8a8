/* xvpci window bridge for macOS; see XvpciWindow.hpp for what it does. */

#include "XvpciWindow.hpp"

#include <IOKit/IOLib.h>
#include <IOKit/IOPlatformExpert.h>
#include <libkern/OSAtomic.h>

#define LOG(fmt, ...) IOLog("xvpci-window: " fmt "\n", ##__VA_ARGS__)

namespace {
constexpr UInt8 kCfgBar = kIOPCIConfigBaseAddress0;
constexpr UInt8 kMemBar1 = kIOPCIConfigBaseAddress2;
constexpr UInt32 kMsiAddress = 0xFEE00000;
constexpr UInt8 kCapMsix = 0x11;
constexpr UInt16 kMsixEnable = 0x8000;
constexpr UInt32 kMsixEntrySize = 16;
constexpr UInt32 kMsixVectorMasked = 1;
}

OSDefineMetaClassAndStructors(XvpciChildInterrupts, IOInterruptController)
OSDefineMetaClassAndStructors(XvpciWindow, IOPCIBridge)

/* ---- child interrupt controller ------------------------------------------ */

bool XvpciChildInterrupts::initWithWindow(XvpciWindow *window, unsigned sources)
{
    if (!IOInterruptController::init()) {
        return false;
    }
    fWindow = window;
    fSources = sources;
    vectors = IONew(IOInterruptVector, sources);
    if (vectors == nullptr) {
        return false;
    }
    bzero(vectors, sizeof(IOInterruptVector) * sources);
    for (unsigned i = 0; i < sources; i++) {
        vectors[i].interruptLock = IOLockAlloc();
        if (vectors[i].interruptLock == nullptr) {
            return false;
        }
    }
    controllerLock = IOSimpleLockAlloc();
    return controllerLock != nullptr;
}

void XvpciChildInterrupts::free()
{
    if (vectors != nullptr) {
        for (unsigned i = 0; i < fSources; i++) {
            if (vectors[i].interruptLock != nullptr) {
                IOLockFree(vectors[i].interruptLock);
            }
        }
        IODelete(vectors, IOInterruptVector, fSources);
        vectors = nullptr;
    }
    if (controllerLock != nullptr) {
        IOSimpleLockFree(controllerLock);
        controllerLock = nullptr;
    }
    IOInterruptController::free();
}

IOReturn XvpciChildInterrupts::getInterruptType(IOService *, int source, int *interruptType)
{
    if (interruptType == nullptr || source < 0 || static_cast<unsigned>(source) >= fSources) {
        return kIOReturnBadArgument;
    }
    /* MSI-X messages: edge triggered, and PCI messaged so drivers looking for MSI find them. */
    *interruptType = kIOInterruptTypeEdge | kIOInterruptTypePCIMessaged;
    return kIOReturnSuccess;
}

IOInterruptAction XvpciChildInterrupts::getInterruptHandlerAddress()
{
    return OSMemberFunctionCast(IOInterruptAction, this, &XvpciChildInterrupts::handleInterrupt);
}

IOReturn XvpciChildInterrupts::handleInterrupt(void *, IOService *, int source)
{
    if (source < 0 || static_cast<unsigned>(source) >= fSources) {
        return kIOReturnBadArgument;
    }
    IOInterruptVector *vector = &vectors[source];
    vector->interruptActive = 1;
    if (!vector->interruptDisabledSoft && vector->interruptRegistered && vector->handler != nullptr) {
        vector->handler(vector->target, vector->refCon, vector->nub, vector->source);
    }
    vector->interruptActive = 0;
    return kIOReturnSuccess;
}

int XvpciChildInterrupts::getVectorType(IOInterruptVectorNumber, IOInterruptVector *)
{
    return kIOInterruptTypeEdge | kIOInterruptTypePCIMessaged;
}

void XvpciChildInterrupts::disableVectorHard(IOInterruptVectorNumber vectorNumber, IOInterruptVector *)
{
    fWindow->setChildVectorMasked(static_cast<unsigned>(vectorNumber), true);
}

void XvpciChildInterrupts::enableVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *)
{
    fWindow->setChildVectorMasked(static_cast<unsigned>(vectorNumber), false);
}

void XvpciChildInterrupts::dispatch(unsigned source)
{
    handleInterrupt(nullptr, nullptr, static_cast<int>(source));
}

/* ---- the bridge ---------------------------------------------------------- */

bool XvpciWindow::start(IOService *provider)
{
    fWindow = OSDynamicCast(IOPCIDevice, provider);
    if (fWindow == nullptr) {
        return false;
    }
    fWindow->setMemoryEnable(true);
    fWindow->setBusMasterEnable(true);
    if (!mapWindow()) {
        return false;
    }
    if (!IOPCIBridge::start(provider)) {
        LOG("IOPCIBridge::start failed");
        return false;
    }
    if (!fPublished && !publishChildren()) {
        return false;
    }
    registerService();
    return true;
}

bool XvpciWindow::mapWindow()
{
    fCfgMap = fWindow->mapDeviceMemoryWithRegister(kCfgBar);
    fMem1Map = fWindow->mapDeviceMemoryWithRegister(kMemBar1);
    IODeviceMemory *mem1 = fWindow->getDeviceMemoryWithRegister(kMemBar1);
    if (fCfgMap == nullptr || fMem1Map == nullptr || mem1 == nullptr) {
        LOG("cannot map CFGBAR or MEMBAR1 of the window");
        return false;
    }
    fCfg = reinterpret_cast<volatile UInt8 *>(fCfgMap->getVirtualAddress());
    fCfgSize = fCfgMap->getLength();
    fMem1Phys = mem1->getPhysicalAddress();
    fMem1Virt = fMem1Map->getVirtualAddress();
    fMem1Size = fMem1Map->getLength();
    fMem1Next = 0;
    LOG("CFGBAR %llu KiB, MEMBAR1 at %#llx (%llu KiB)", (unsigned long long)(fCfgSize >> 10),
        (unsigned long long)fMem1Phys, (unsigned long long)(fMem1Size >> 10));
    return true;
}

void XvpciWindow::stop(IOService *provider)
{
    if (fWindow != nullptr) {
        for (int index = 0; index < static_cast<int>(fWindowVectors); index++) {
            fWindow->disableInterrupt(index);
            fWindow->unregisterInterrupt(index);
        }
    }
    IOPCIBridge::stop(provider);
}

void XvpciWindow::free()
{
    for (unsigned i = 0; i < fChildCount; i++) {
        OSSafeReleaseNULL(fChildren[i].memory);
    }
    OSSafeReleaseNULL(fCfgMap);
    OSSafeReleaseNULL(fMem1Map);
    OSSafeReleaseNULL(fInterrupts);
    OSSafeReleaseNULL(fControllerName);
    IOPCIBridge::free();
}

UInt8 XvpciWindow::firstBusNum() { return 0; }

UInt8 XvpciWindow::lastBusNum()
{
    /* One bus per MiB of CFGBAR. */
    return static_cast<UInt8>(fCfgSize > (1 << 20) ? (fCfgSize >> 20) - 1 : 0);
}

void XvpciWindow::probeBus(IOService *, UInt8)
{
    if (!fPublished) {
        publishChildren();
    }
}

IODeviceMemory *XvpciWindow::ioDeviceMemory() { return nullptr; /* no I/O space behind the window */ }

IOPCIAddressSpace XvpciWindow::getBridgeSpace()
{
    return fWindow->space;
}

volatile UInt8 *XvpciWindow::configAddress(IOPCIAddressSpace space, UInt8 offset)
{
    IOByteCount at = (static_cast<IOByteCount>(space.s.busNum) << 20) | (space.s.deviceNum << 15) |
                     (space.s.functionNum << 12) | offset;
    if (fCfg == nullptr || at + 4 > fCfgSize) {
        return nullptr;
    }
    return fCfg + at;
}

UInt32 XvpciWindow::configRead32(IOPCIAddressSpace space, UInt8 offset)
{
    volatile UInt8 *at = configAddress(space, offset & ~3);
    return at ? *reinterpret_cast<volatile UInt32 *>(at) : 0xFFFFFFFF;
}

void XvpciWindow::configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data)
{
    if (volatile UInt8 *at = configAddress(space, offset & ~3)) {
        *reinterpret_cast<volatile UInt32 *>(at) = data;
    }
}

UInt16 XvpciWindow::configRead16(IOPCIAddressSpace space, UInt8 offset)
{
    volatile UInt8 *at = configAddress(space, offset & ~1);
    return at ? *reinterpret_cast<volatile UInt16 *>(at) : 0xFFFF;
}

void XvpciWindow::configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data)
{
    if (volatile UInt8 *at = configAddress(space, offset & ~1)) {
        *reinterpret_cast<volatile UInt16 *>(at) = data;
    }
}

UInt8 XvpciWindow::configRead8(IOPCIAddressSpace space, UInt8 offset)
{
    volatile UInt8 *at = configAddress(space, offset);
    return at ? *at : 0xFF;
}

void XvpciWindow::configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data)
{
    if (volatile UInt8 *at = configAddress(space, offset)) {
        *at = data;
    }
}

bool XvpciWindow::assignBars(Child &child)
{
    child.memory = OSArray::withCapacity(6);
    if (child.memory == nullptr) {
        return false;
    }
    for (UInt8 bar = 0; bar < 6; bar++) {
        UInt8 reg = kIOPCIConfigBaseAddress0 + 4 * bar;
        UInt32 original = configRead32(child.space, reg);
        configWrite32(child.space, reg, 0xFFFFFFFF);
        UInt32 mask = configRead32(child.space, reg);
        configWrite32(child.space, reg, original);
        if (mask == 0 || (mask & 1)) {
            continue; /* not implemented, or I/O space (none behind the window) */
        }
        bool is64 = ((mask >> 1) & 3) == 2;
        UInt64 size = ~static_cast<UInt64>(mask & ~0xFU) + 1;
        if (is64) {
            configWrite32(child.space, reg + 4, 0xFFFFFFFF);
            UInt64 high = configRead32(child.space, reg + 4);
            size = ~((high << 32) | (mask & ~0xFU)) + 1;
        } else {
            size &= 0xFFFFFFFFULL;
        }
        IOByteCount offset = (fMem1Next + size - 1) & ~(size - 1);
        if (size == 0 || offset + size > fMem1Size) {
            LOG("BAR%u of %u bytes does not fit in MEMBAR1", bar, (unsigned)size);
            return false;
        }
        /* Bus addresses are MEMBAR1's own addresses: the window decodes them back. */
        UInt64 address = fMem1Phys + offset;
        configWrite32(child.space, reg, static_cast<UInt32>(address));
        if (is64) {
            configWrite32(child.space, reg + 4, static_cast<UInt32>(address >> 32));
        }
        fMem1Next = offset + size;
        IODeviceMemory *range = IODeviceMemory::withRange(address, size);
        if (range == nullptr) {
            return false;
        }
        range->setTag(reg); /* what mapDeviceMemoryWithRegister() looks up */
        child.memory->setObject(range);
        range->release();
        if (is64) {
            bar++;
        }
    }
    UInt16 command = configRead16(child.space, kIOPCIConfigCommand);
    configWrite16(child.space, kIOPCIConfigCommand,
                  command | kIOPCICommandMemorySpace | kIOPCICommandBusMaster);
    return true;
}

void XvpciWindow::findMsix(Child &child)
{
    UInt8 pointer = configRead8(child.space, kIOPCIConfigCapabilitiesPtr) & ~3;
    for (unsigned guard = 0; pointer != 0 && guard < 48; guard++) {
        if (configRead8(child.space, pointer) == kCapMsix) {
            child.msixCap = pointer;
            child.msixVectors = (configRead16(child.space, pointer + 2) & 0x7FF) + 1;
            UInt32 table = configRead32(child.space, pointer + 4);
            UInt8 bir = table & 7;
            UInt32 barValue = configRead32(child.space, kIOPCIConfigBaseAddress0 + 4 * bir) & ~0xFU;
            child.msixTable = fMem1Virt + (barValue - static_cast<UInt32>(fMem1Phys)) + (table & ~7U);
            return;
        }
        pointer = configRead8(child.space, pointer + 1) & ~3;
    }
}

bool XvpciWindow::publishChildren()
{
    fPublished = true;
    for (UInt8 device = 0; device < 32 && fChildCount < xvpci::kMaxChildren; device++) {
        IOPCIAddressSpace space;
        space.bits = 0;
        space.s.deviceNum = device;
        if (configRead16(space, kIOPCIConfigVendorID) == 0xFFFF) {
            continue; /* absent functions read all-ones */
        }
        Child &child = fChildren[fChildCount];
        bzero(&child, sizeof(child));
        child.space = space;
        if (!assignBars(child)) {
            return false;
        }
        findMsix(child);
        child.firstSource = fSourceCount;
        fSourceCount += child.msixVectors;
        fChildCount++;
    }
    if (fSourceCount > xvpci::kMaxChildVectors) {
        LOG("children have %u MSI-X vectors, more than %u", fSourceCount, xvpci::kMaxChildVectors);
        return false;
    }
    if (fSourceCount > 0 && !setUpWindowInterrupts()) {
        return false;
    }
    for (unsigned i = 0; i < fChildCount; i++) {
        Child &child = fChildren[i];
        OSDictionary *properties = constructProperties(child.space);
        if (properties == nullptr) {
            continue;
        }
        child.nub = createNub(properties);
        if (child.nub != nullptr && initializeNub(child.nub, properties)) {
            child.nub->setDeviceMemory(child.memory);
            if (!publishNub(child.nub, i)) {
                LOG("cannot publish the nub of device %u", child.space.s.deviceNum);
            }
        }
        OSSafeReleaseNULL(properties);
        if (child.nub != nullptr) {
            child.nub->release(); /* the registry holds it now */
        }
    }
    LOG("published %u device(s), %u MSI-X vector(s)", fChildCount, fSourceCount);
    return true;
}

IOReturn XvpciWindow::getNubResources(IOService *service)
{
    IOPCIDevice *nub = OSDynamicCast(IOPCIDevice, service);
    if (nub == nullptr) {
        return kIOReturnBadArgument;
    }
    for (unsigned i = 0; i < fChildCount; i++) {
        Child &child = fChildren[i];
        if (child.nub != nub || child.msixVectors == 0) {
            continue;
        }
        /* The nub's interrupts are sources of our controller, one per MSI-X vector. */
        OSArray *controllers = OSArray::withCapacity(child.msixVectors);
        OSArray *specifiers = OSArray::withCapacity(child.msixVectors);
        for (unsigned v = 0; v < child.msixVectors && controllers && specifiers; v++) {
            UInt32 source = child.firstSource + v;
            OSData *specifier = OSData::withBytes(&source, sizeof(source));
            controllers->setObject(fControllerName);
            specifiers->setObject(specifier);
            OSSafeReleaseNULL(specifier);
        }
        nub->setProperty(gIOInterruptControllersKey, controllers);
        nub->setProperty(gIOInterruptSpecifiersKey, specifiers);
        OSSafeReleaseNULL(controllers);
        OSSafeReleaseNULL(specifiers);
    }
    return kIOReturnSuccess;
}

bool XvpciWindow::setUpWindowInterrupts()
{
    char name[48];
    snprintf(name, sizeof(name), "xvpci-window-%llx", (unsigned long long)fMem1Phys);
    fControllerName = OSSymbol::withCString(name);
    fInterrupts = OSTypeAlloc(XvpciChildInterrupts);
    if (fControllerName == nullptr || fInterrupts == nullptr ||
        !fInterrupts->initWithWindow(this, fSourceCount)) {
        return false;
    }
    getPlatform()->registerInterruptController(const_cast<OSSymbol *>(fControllerName), fInterrupts);
    /* The window's own MSI-X vectors, in the order the platform lists them. */
    for (int index = 0; fWindowVectors < xvpci::kMaxWindowVectors; index++) {
        int type = 0;
        if (fWindow->getInterruptType(index, &type) != kIOReturnSuccess) {
            break;
        }
        if (!(type & kIOInterruptTypePCIMessaged)) {
            continue;
        }
        void *refCon = reinterpret_cast<void *>(static_cast<uintptr_t>(fWindowVectors));
        if (fWindow->registerInterrupt(index, this, &XvpciWindow::windowInterrupt, refCon) !=
            kIOReturnSuccess) {
            break;
        }
        fWindow->enableInterrupt(index);
        fWindowVectors++;
    }
    if (fWindowVectors == 0) {
        LOG("the window offers no MSI-X vectors; children get no interrupts");
        return false;
    }
    return true;
}

void XvpciWindow::windowInterrupt(OSObject *target, void *refCon, IOService *, int)
{
    XvpciWindow *self = OSDynamicCast(XvpciWindow, target);
    if (self == nullptr || self->fInterrupts == nullptr) {
        return;
    }
    /* Child source s is routed to window vector s % windowVectors: run every such source
       (MSI-X sharing, like the Linux vmd driver's per-vector lists). */
    unsigned windowVector = static_cast<unsigned>(reinterpret_cast<uintptr_t>(refCon));
    for (unsigned source = windowVector; source < self->fSourceCount; source += self->fWindowVectors) {
        self->fInterrupts->dispatch(source);
    }
}

void XvpciWindow::setChildVectorMasked(unsigned source, bool masked)
{
    for (unsigned i = 0; i < fChildCount; i++) {
        Child &child = fChildren[i];
        if (source < child.firstSource || source >= child.firstSource + child.msixVectors) {
            continue;
        }
        unsigned vector = source - child.firstSource;
        volatile UInt32 *entry = reinterpret_cast<volatile UInt32 *>(child.msixTable + vector * kMsixEntrySize);
        if (!masked) {
            unsigned windowVector = source % (fWindowVectors ? fWindowVectors : 1);
            entry[0] = kMsiAddress | (windowVector << 12);
            entry[1] = 0;
            entry[2] = 0;
            UInt16 control = configRead16(child.space, child.msixCap + 2);
            if (!(control & kMsixEnable)) {
                configWrite16(child.space, child.msixCap + 2, control | kMsixEnable);
            }
        }
        entry[3] = masked ? kMsixVectorMasked : 0;
        return;
    }
}
