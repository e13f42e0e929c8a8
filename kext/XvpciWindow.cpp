/*
 * xvpci window kext; XvpciWindow.hpp says what it is and why it is built so.
 *
 * Citations "file tag:line" are to apple-oss-distributions/IOPCIFamily; "484"
 * is tag IOPCIFamily-484.40.6 (macOS 12.0), "726" is IOPCIFamily-726.0.5.
 * The numbered points are those of issue 17 (what the previous kext got wrong):
 *
 *  1, 2  No nub of ours, no createNub/constructProperties: IOPCIBridge's
 *        versions return 0 and a bare `new` (IOPCIBridge.cpp 484:2241-2249,
 *        726:3055-3063). IOPCIConfigurator builds the child nubs; IOPCIBridge::
 *        probeBus initialises and publishes them (726:3819 initializeNub,
 *        726:4138 publishNub; 484:2568, 484:2752).
 *  3     The bridge is an IOPCIHostBridge whose provider is a plain IOService:
 *        IOPCIHostBridge::configure sets the shared hostBridgeData (IOPCIBridge.cpp
 *        484:320-323, 726:678-682) and the configurator's "!host bridge" panic
 *        tests only the direct provider (IOPCIConfigurator.cpp 484:521+532,
 *        726:603+614).
 *  4     Child MSI-X: see XvpciWindow::childInitialized / childMessage /
 *        syncChildMsix. The window registers exactly one interrupt.
 *  5     configRegister(): offset | registerNumExtended << 8.
 *  6     Interrupt Pin reads 0: IOPCIBridge::resolveInterrupts asks the platform
 *        for an INTx route whenever the pin is 1-4 (IOPCIBridge.cpp 484:4209+4255,
 *        726:6178+6224), through the bridge's provider, which is not in ACPI.
 *  7     Masking is in hardware: IOPCIMessagedInterruptController::disableVectorHard
 *        sets the child's MSI-X mask bit (IOPCIMessagedInterruptController.cpp
 *        484:858-869, 726:899-910); the window latches the message in the child's
 *        PBA and sends it on unmask (window.py _deliver_unmasked). This kext has
 *        no interrupt controller of its own, so nothing here can drop an edge.
 *  8     No getNubResources override: IOPCIBridge::getNubResources builds device
 *        memory tagged with IOPCIAddressSpace values (IOPCIBridge.cpp 484:2966-3006,
 *        726:4369-4409).
 *  9     The window's one interrupt is unregistered by the index it was
 *        registered with; the nub and bridge are never terminated (IOPCIFamily
 *        has no "remove host bridge": IOPCIConfigurator::addHostBridge has no
 *        inverse); a failed start unwinds what it did, and joins no power tree.
 *        After a reset or wake IOPCIFamily rewrites the child's MSI-X table and
 *        then its Message Control (IOPCIMessagedInterruptController.cpp
 *        484:690 restoreDeviceState -> 484:580-629 initDevice, 726:726 -> 726:603-652);
 *        that config write comes through this bridge and re-routes the entries.
 * 10     Kmod info: the build (harness/kext.py, Makefile) compiles a kmod_info
 *        object with KMOD_EXPLICIT_DECL, _realmain and _antimain.
 */

#include "XvpciWindow.hpp"

#include <IOKit/IOLib.h>
#include <libkern/OSAtomic.h>

#define LOG(fmt, ...) IOLog("xvpci-window: " fmt "\n", ##__VA_ARGS__)

OSDefineMetaClassAndStructors(XvpciWindow, IOService)
OSDefineMetaClassAndStructors(XvpciHostBridge, IOPCIHostBridge)

namespace {

constexpr UInt8 kCapMsix = 0x11;
constexpr UInt16 kMsixTableSizeMask = 0x7FF;
constexpr UInt32 kAllOnes = 0xFFFFFFFF;

/*
 * Windows and their bridges, out of line of XvpciHostBridge (see its
 * declaration). Written in thread context before the bridge starts, read by
 * config accessors that may run with interrupts off: plain pointers, no lock.
 */
struct Slot {
    XvpciWindow *volatile window;
    IOService *volatile nub;
    XvpciHostBridge *volatile bridge;
};
Slot gSlots[xvpci::kMaxWindows];

XvpciWindow *windowOf(const XvpciHostBridge *bridge)
{
    for (Slot &slot : gSlots) {
        if (slot.bridge == bridge) {
            return slot.window;
        }
    }
    return nullptr;
}

UInt32 onesOf(unsigned width)
{
    return width >= 4 ? kAllOnes : (1U << (8 * width)) - 1;
}

OSData *u32Data(UInt32 value)
{
    return OSData::withBytes(&value, sizeof(value));
}

}  // namespace

/* ==== XvpciWindow: the driver of the window device ======================== */

bool XvpciWindow::start(IOService *provider)
{
    fWindowIrq = -1;
    fSlot = xvpci::kMaxWindows;
    fNextWindowVector = xvpci::kFirstChildWindowVector;
    if (!IOService::start(provider)) {
        return false;
    }
    fWindow = OSDynamicCast(IOPCIDevice, provider);
    if (fWindow == nullptr) {
        return false;
    }
    for (unsigned i = 0; i < xvpci::kMaxWindows; i++) {
        if (OSCompareAndSwapPtr(nullptr, this, reinterpret_cast<void *volatile *>(&gSlots[i].window))) {
            fSlot = i;
            break;
        }
    }
    if (fSlot == xvpci::kMaxWindows) {
        LOG("more than %u windows", xvpci::kMaxWindows);
        return false;
    }
    fBus = static_cast<UInt8>(xvpci::kFirstBus + fSlot);
    /* Memory decode for the MEMBARs, bus mastering for the window's own MSI-X
       writes and the child's DMA, which the window forwards upstream. */
    fWindow->setMemoryEnable(true);
    fWindow->setBusMasterEnable(true);
    if (!mapWindow() || !enableWindowInterrupt() || !publishNub()) {
        unwind();
        return false;
    }
    LOG("bus %#x: CFGBAR %llu KiB, MEMBAR1 %#llx+%#llx", fBus, (unsigned long long)(fCfgLength >> 10),
        (unsigned long long)fMem1Phys, (unsigned long long)fMem1Length);
    return true;
}

bool XvpciWindow::mapWindow()
{
    const UInt8 cfgBar = kIOPCIConfigBaseAddress0 + 4 * xvpci::kCfgBarIndex;
    const UInt8 mem1Bar = kIOPCIConfigBaseAddress0 + 4 * xvpci::kMemBar1Index;
    const UInt8 mem2Bar = kIOPCIConfigBaseAddress0 + 4 * xvpci::kMemBar2Index;
    fCfgMap = fWindow->mapDeviceMemoryWithRegister(cfgBar);
    fMem1Map = fWindow->mapDeviceMemoryWithRegister(mem1Bar);
    fMem2Map = fWindow->mapDeviceMemoryWithRegister(mem2Bar);
    IODeviceMemory *mem1 = fWindow->getDeviceMemoryWithRegister(mem1Bar);
    if (fCfgMap == nullptr || fMem1Map == nullptr || fMem2Map == nullptr || mem1 == nullptr) {
        LOG("cannot map CFGBAR, MEMBAR1 or MEMBAR2");
        return false;
    }
    fCfg = reinterpret_cast<volatile UInt8 *>(fCfgMap->getVirtualAddress());
    fCfgLength = fCfgMap->getLength();
    fMem1 = reinterpret_cast<volatile UInt8 *>(fMem1Map->getVirtualAddress());
    fMem1Phys = mem1->getPhysicalAddress();
    fMem1Length = fMem1Map->getLength();
    fMem2 = reinterpret_cast<volatile UInt8 *>(fMem2Map->getVirtualAddress());
    fMem2Length = fMem2Map->getLength();
    if (fCfgLength < xvpci::kCfgBarBusBytes ||
        fMem2Length < xvpci::kWindowMsixTable + xvpci::kWindowVectors * xvpci::kMsixEntryBytes) {
        LOG("CFGBAR or MEMBAR2 smaller than the window's layout");
        return false;
    }
    return true;
}

/*
 * The window's MSI-X is enabled by registering one of its interrupts
 * (IOPCIMessagedInterruptController::registerInterrupt -> enableDeviceMSI,
 * 484:80-114, 726:98-134). Exactly one: with one registration the
 * controller runs that handler for any message of the window's system vector;
 * with more it runs only sub-vectors whose PBA bit is set (726:834-842,
 * 484:798-806), and QEMU sets a PBA bit only while the entry is masked, so the
 * handlers would never run. Children do not use this vector at all.
 */
bool XvpciWindow::enableWindowInterrupt()
{
    for (int index = 0; index < 64; index++) {
        int type = 0;
        if (fWindow->getInterruptType(index, &type) != kIOReturnSuccess) {
            break;
        }
        if (!(type & kIOInterruptTypePCIMessaged)) {
            continue;
        }
        if (fWindow->registerInterrupt(index, this, &XvpciWindow::windowInterrupt, nullptr) != kIOReturnSuccess) {
            break;
        }
        fWindowIrq = index;
        fWindow->enableInterrupt(index);
        return true;
    }
    LOG("the window has no usable MSI-X interrupt");
    return false;
}

bool XvpciWindow::publishNub()
{
    IOService *nub = OSTypeAlloc(IOService);
    if (nub == nullptr || !nub->init()) {
        OSSafeReleaseNULL(nub);
        return false;
    }
    nub->setName(xvpci::kNubName);
    nub->setProperty("xvpci-window-bus", fBus, 8);
    if (!nub->attach(this)) {
        nub->release();
        return false;
    }
    fNub = nub;
    gSlots[fSlot].nub = nub;
    nub->release(); /* attach holds it */
    nub->registerService();
    return true;
}

void XvpciWindow::unwind()
{
    if (fWindowIrq >= 0) {
        fWindow->disableInterrupt(fWindowIrq);
        fWindow->unregisterInterrupt(fWindowIrq);
        fWindowIrq = -1;
    }
    if (fNub != nullptr) {
        fNub->detach(this); /* not registered yet when we get here */
        fNub = nullptr;
    }
    OSSafeReleaseNULL(fCfgMap);
    OSSafeReleaseNULL(fMem1Map);
    OSSafeReleaseNULL(fMem2Map);
    fCfg = fMem1 = fMem2 = nullptr;
    if (fSlot < xvpci::kMaxWindows) {
        gSlots[fSlot].nub = nullptr;
        gSlots[fSlot].window = nullptr;
        fSlot = xvpci::kMaxWindows;
    }
}

/* Reached only if the window device itself goes away (never in QEMU): the
   nub and bridge cannot be removed, so only the window's interrupt is released
   and the mappings stay until free(). */
void XvpciWindow::stop(IOService *provider)
{
    if (fWindowIrq >= 0) {
        fWindow->disableInterrupt(fWindowIrq);
        fWindow->unregisterInterrupt(fWindowIrq);
        fWindowIrq = -1;
    }
    IOService::stop(provider);
}

void XvpciWindow::free()
{
    OSSafeReleaseNULL(fCfgMap);
    OSSafeReleaseNULL(fMem1Map);
    OSSafeReleaseNULL(fMem2Map);
    IOService::free();
}

/* ---- config space: CFGBAR --------------------------------------------------- */

UInt32 XvpciWindow::cfgRead(IOPCIAddressSpace space, UInt32 reg, unsigned width)
{
    UInt32 at = xvpci::ecamOffset(space, reg);
    if (fCfg == nullptr || space.es.busNum != fBus || at + width > fCfgLength) {
        return onesOf(width); /* other buses do not exist */
    }
    switch (width) {
    case 1:
        return xvpci::regRead8(fCfg, at);
    case 2:
        return xvpci::regRead16(fCfg, at);
    default:
        return xvpci::regRead32(fCfg, at);
    }
}

void XvpciWindow::cfgWrite(IOPCIAddressSpace space, UInt32 reg, unsigned width, UInt32 value)
{
    UInt32 at = xvpci::ecamOffset(space, reg);
    if (fCfg == nullptr || space.es.busNum != fBus || at + width > fCfgLength) {
        return;
    }
    switch (width) {
    case 1:
        xvpci::regWrite8(fCfg, at, static_cast<UInt8>(value));
        break;
    case 2:
        xvpci::regWrite16(fCfg, at, static_cast<UInt16>(value));
        break;
    default:
        xvpci::regWrite32(fCfg, at, value);
        break;
    }
}

/* Every device and function of the bus goes to CFGBAR, like the Linux vmd
   driver's accesses: the window answers all-ones for the absent ones itself. */
UInt32 XvpciWindow::configRead(IOPCIAddressSpace space, UInt8 offset, unsigned width)
{
    UInt32 reg = xvpci::configRegister(space, offset) & ~(width - 1);
    return xvpci::hideInterruptPin(reg, width, cfgRead(space, reg, width));
}

void XvpciWindow::configWrite(IOPCIAddressSpace space, UInt8 offset, unsigned width, UInt32 value)
{
    UInt32 reg = xvpci::configRegister(space, offset) & ~(width - 1);
    Route *route = routeFor(space);
    /* IOPCIFamily writes Message Control last, after the table, both when it
       first sets the child up and when it restores it (initDevice, 484:629,
       726:652): re-route the entries before the function can use them. */
    if (route != nullptr && route->msixCap != 0 && reg <= route->msixCap + 2U && route->msixCap + 2U < reg + width) {
        syncChildMsix(*route);
    }
    cfgWrite(space, reg, width, value);
}

UInt8 XvpciWindow::findCapability(IOPCIAddressSpace space, UInt8 id)
{
    if (!(cfgRead(space, kIOPCIConfigStatus, 2) & kIOPCIStatusCapabilities)) {
        return 0;
    }
    UInt8 pointer = static_cast<UInt8>(cfgRead(space, kIOPCIConfigCapabilitiesPtr, 1)) & ~3;
    for (unsigned guard = 0; pointer >= 0x40 && guard < 48; guard++) {
        if (cfgRead(space, pointer, 1) == id) {
            return pointer;
        }
        pointer = static_cast<UInt8>(cfgRead(space, pointer + 1U, 1)) & ~3;
    }
    return 0;
}

XvpciWindow::Route *XvpciWindow::routeFor(IOPCIAddressSpace space)
{
    for (Route &route : fRoutes) {
        if (route.used && route.bus == space.es.busNum && route.device == space.es.deviceNum &&
            route.function == space.es.functionNum) {
            return &route;
        }
    }
    return nullptr;
}

/* ---- child MSI-X through window MSI-X entries ------------------------------------
 *
 * How a child's MSI-X reaches the CPU, and why it survives
 * IOPCIMessagedInterruptController (IOPCIMessagedInterruptController.cpp):
 *  - By default a function gets ONE system vector shared by all its entries
 *    (484:446-449, 726:466-469) and, once its driver registers more than one
 *    entry, the vector's handler runs only the entries whose PBA bit is set
 *    (484:798-806, 726:834-842). The window model, like QEMU, sets a PBA bit
 *    only while the entry is masked, so those handlers would never run.
 *  - "pci-msi-flags" with kIOPCIMSIFlagRespect and "pci-msi-limit" L on the
 *    nub give it L consecutive system vectors of its own, one per entry, not
 *    shared (484:446-453, 726:466-473; the non-shared branch 726:556-563), and
 *    entry i carries data + i (484:603, 726:626). No PBA is ever read.
 *  - The message comes from the bridge's GetMessagedInterruptAddress hook
 *    (484:475, 726:497). childMessage() keeps the system's message and hands
 *    IOPCIFamily the window's (address 0xFEE00000 | w << 12, same data), which
 *    it writes into every entry and saves for wake.
 *  - Before Message Control is written, syncChildMsix() points entry i, whose
 *    data is base + k, at window vector w + k and programs window MSI-X entry
 *    w + k with the system's address and data base + k. A child message then
 *    leaves the window as exactly the message IOPCIFamily allocated for it.
 */

void XvpciWindow::childInitialized(IOPCIDevice *child)
{
    IOPCIAddressSpace space = child->space;
    UInt8 cap = findCapability(space, kCapMsix);
    if (cap == 0) {
        LOG("%u:%u.%u has no MSI-X: the window delivers no other interrupts", space.es.busNum,
            space.es.deviceNum, space.es.functionNum);
        return;
    }
    Route *route = routeFor(space);
    for (unsigned i = 0; route == nullptr && i < xvpci::kMaxRoutes; i++) {
        if (!fRoutes[i].used) {
            route = &fRoutes[i];
        }
    }
    if (route == nullptr) {
        LOG("no route left for %u:%u.%u", space.es.busNum, space.es.deviceNum, space.es.functionNum);
        return;
    }
    if (!route->used) {
        unsigned entries = (cfgRead(space, cap + 2U, 2) & kMsixTableSizeMask) + 1;
        unsigned count = xvpci::windowVectorsFor(entries, xvpci::kWindowVectors - fNextWindowVector);
        if (count == 0) {
            LOG("no window vectors left for %u:%u.%u", space.es.busNum, space.es.deviceNum, space.es.functionNum);
            return;
        }
        bzero(route, sizeof(*route));
        route->bus = static_cast<UInt8>(space.es.busNum);
        route->device = static_cast<UInt8>(space.es.deviceNum);
        route->function = static_cast<UInt8>(space.es.functionNum);
        route->msixCap = cap;
        route->firstWindowVector = static_cast<UInt8>(fNextWindowVector);
        route->windowVectors = static_cast<UInt8>(count);
        fNextWindowVector += count;
        route->used = true;
    }
    OSData *flags = u32Data(xvpci::kMsiFlagRespect);
    OSData *limit = u32Data(route->windowVectors);
    if (flags != nullptr && limit != nullptr) {
        child->setProperty(xvpci::kMsiFlagsKey, flags);
        child->setProperty(xvpci::kMsiLimitKey, limit);
    }
    OSSafeReleaseNULL(flags);
    OSSafeReleaseNULL(limit);
    LOG("%u:%u.%u: MSI-X at %#x, %u vector(s) through window entries %u..%u", route->bus, route->device,
        route->function, cap, route->windowVectors, route->firstWindowVector,
        route->firstWindowVector + route->windowVectors - 1);
}

IOReturn XvpciWindow::childMessage(IOPCIDevice *child, UInt32 message[3])
{
    Route *route = routeFor(child->space);
    if (route == nullptr) {
        return kIOReturnNoResources; /* IOPCIFamily then gives the child no MSI */
    }
    route->addressLo = message[0];
    route->addressHi = message[1];
    route->baseData = message[2];
    route->haveMessage = true;
    message[0] = xvpci::kMsiAddress | (static_cast<UInt32>(route->firstWindowVector) << 12);
    message[1] = 0;
    return kIOReturnSuccess;
}

void XvpciWindow::syncChildMsix(Route &route)
{
    if (!route.haveMessage) {
        return;
    }
    IOPCIAddressSpace space;
    space.bits = 0;
    space.es.busNum = route.bus;
    space.es.deviceNum = route.device;
    space.es.functionNum = route.function;
    UInt32 table = cfgRead(space, route.msixCap + 4U, 4);
    UInt32 barReg = kIOPCIConfigBaseAddress0 + 4 * (table & 7);
    UInt64 bar = cfgRead(space, barReg, 4);
    if ((bar & 6) == 4) {
        bar |= static_cast<UInt64>(cfgRead(space, barReg + 4, 4)) << 32;
    }
    UInt64 address = (bar & ~0xFULL) + (table & ~7U);
    unsigned entries = (cfgRead(space, route.msixCap + 2U, 2) & kMsixTableSizeMask) + 1;
    unsigned count = entries < route.windowVectors ? entries : route.windowVectors;
    if (address < fMem1Phys || address + count * xvpci::kMsixEntryBytes > fMem1Phys + fMem1Length) {
        return; /* BAR not assigned inside MEMBAR1 (yet) */
    }
    UInt32 at = static_cast<UInt32>(address - fMem1Phys);
    /* The table is reachable only with memory decode on (so does initDevice, 726:619-620). */
    UInt16 command = static_cast<UInt16>(cfgRead(space, kIOPCIConfigCommand, 2));
    if (!(command & kIOPCICommandMemorySpace)) {
        cfgWrite(space, kIOPCIConfigCommand, 2, command | kIOPCICommandMemorySpace);
    }
    for (unsigned i = 0; i < count; i++) {
        UInt32 entry = at + i * xvpci::kMsixEntryBytes;
        UInt32 data = xvpci::regRead32(fMem1, entry + 8);
        UInt32 k = data - route.baseData;
        if (k >= route.windowVectors) {
            continue; /* not an entry IOPCIFamily programmed from our message */
        }
        unsigned vector = route.firstWindowVector + k;
        WindowEntry target = {true, route.addressLo, route.addressHi, data};
        programWindowEntry(vector, target);
        xvpci::regWrite32(fMem1, entry + 0, xvpci::kMsiAddress | (static_cast<UInt32>(vector) << 12));
        xvpci::regWrite32(fMem1, entry + 4, 0);
    }
    if (!(command & kIOPCICommandMemorySpace)) {
        cfgWrite(space, kIOPCIConfigCommand, 2, command);
    }
}

void XvpciWindow::programWindowEntry(unsigned vector, const WindowEntry &entry)
{
    if (vector >= xvpci::kWindowVectors) {
        return;
    }
    fWindowEntries[vector] = entry;
    UInt32 at = xvpci::kWindowMsixTable + vector * xvpci::kMsixEntryBytes;
    xvpci::regWrite32(fMem2, at + 12, 1); /* masked while it changes; the window latches */
    xvpci::regWrite32(fMem2, at + 0, entry.addressLo);
    xvpci::regWrite32(fMem2, at + 4, entry.addressHi);
    xvpci::regWrite32(fMem2, at + 8, entry.data);
    xvpci::regWrite32(fMem2, at + 12, 0);
}

/* IOPCIFamily rewrites all of the window's entries with its own message when it
   restores the window (initDevice, 726:625-631), which happens before the
   children are restored. A child message arriving in between reaches this
   handler: put the routes back so the next one goes where it belongs. */
void XvpciWindow::resyncWindowEntries()
{
    for (unsigned vector = xvpci::kFirstChildWindowVector; vector < xvpci::kWindowVectors; vector++) {
        if (fWindowEntries[vector].valid) {
            programWindowEntry(vector, fWindowEntries[vector]);
        }
    }
}

void XvpciWindow::windowInterrupt(OSObject *target, void *, IOService *, int)
{
    XvpciWindow *self = OSDynamicCast(XvpciWindow, target);
    if (self == nullptr) {
        return;
    }
    self->fStrayInterrupts++;
    self->resyncWindowEntries();
}

/* ==== XvpciHostBridge: IOPCIFamily's view of the window ===================== */

bool XvpciHostBridge::start(IOService *provider)
{
    /* Bind to the window whose nub we sit on before IOPCIBridge::start calls
       configure, firstBusNum and the config accessors (IOPCIBridge.cpp 484:773-800,
       726:1320-1370). */
    bool bound = false;
    for (Slot &slot : gSlots) {
        if (slot.nub == provider && slot.window != nullptr) {
            slot.bridge = this;
            bound = true;
            break;
        }
    }
    if (!bound) {
        return false;
    }
    return IOPCIHostBridge::start(provider);
}

bool XvpciHostBridge::configure(IOService *provider)
{
    XvpciWindow *window = windowOf(this);
    if (window == nullptr) {
        return false;
    }
    /* MEMBAR1 is the range the configurator assigns child BARs from
       (IOPCIBridge::addBridgeMemoryRange, 484:2778, 726:4177; used as CPU
       physical addresses, which the window decodes back: window.py decode()). */
    if (!addBridgeMemoryRange(window->memoryBase(), window->memoryLength(), true)) {
        LOG("MEMBAR1 range refused");
        return false;
    }
    return IOPCIHostBridge::configure(provider);
}

bool XvpciHostBridge::initializeNub(IOPCIDevice *nub, OSDictionary *from)
{
    if (!IOPCIHostBridge::initializeNub(nub, from)) {
        return false;
    }
    if (XvpciWindow *window = windowOf(this)) {
        window->childInitialized(nub);
    }
    return true;
}

IOReturn XvpciHostBridge::callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *param1,
                                               void *param2, void *param3, void *param4)
{
    /* gIOPlatformGetMessagedInterruptAddressKey is private to IOPCIFamily
       (IOPCIBridge.cpp 726:98, 833): compare by name. param1 = the child nub,
       param3 = the system vector, param4 = UInt32[3] address lo, hi, data. */
    IOReturn result = IOPCIHostBridge::callPlatformFunction(functionName, waitForFunction, param1, param2,
                                                            param3, param4);
    if (result != kIOReturnSuccess || functionName == nullptr ||
        !functionName->isEqualTo("GetMessagedInterruptAddress")) {
        return result;
    }
    IOPCIDevice *child = OSDynamicCast(IOPCIDevice, static_cast<OSMetaClassBase *>(param1));
    XvpciWindow *window = windowOf(this);
    if (child == nullptr || window == nullptr || param4 == nullptr) {
        return kIOReturnBadArgument;
    }
    return window->childMessage(child, static_cast<UInt32 *>(param4));
}

UInt8 XvpciHostBridge::firstBusNum()
{
    XvpciWindow *window = windowOf(this);
    return window != nullptr ? window->bus() : xvpci::kFirstBus;
}

UInt8 XvpciHostBridge::lastBusNum()
{
    return firstBusNum(); /* CFGBAR holds one bus (window.py CFGBAR_SIZE) */
}

IOPCIAddressSpace XvpciHostBridge::getBridgeSpace()
{
    IOPCIAddressSpace space;
    space.bits = 0;
    return space;
}

IODeviceMemory *XvpciHostBridge::ioDeviceMemory()
{
    return nullptr; /* no I/O space behind the window */
}

UInt32 XvpciHostBridge::configRead32(IOPCIAddressSpace space, UInt8 offset)
{
    XvpciWindow *window = windowOf(this);
    return window != nullptr ? window->configRead(space, offset, 4) : kAllOnes;
}

void XvpciHostBridge::configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data)
{
    if (XvpciWindow *window = windowOf(this)) {
        window->configWrite(space, offset, 4, data);
    }
}

UInt16 XvpciHostBridge::configRead16(IOPCIAddressSpace space, UInt8 offset)
{
    XvpciWindow *window = windowOf(this);
    return static_cast<UInt16>(window != nullptr ? window->configRead(space, offset, 2) : kAllOnes);
}

void XvpciHostBridge::configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data)
{
    if (XvpciWindow *window = windowOf(this)) {
        window->configWrite(space, offset, 2, data);
    }
}

UInt8 XvpciHostBridge::configRead8(IOPCIAddressSpace space, UInt8 offset)
{
    XvpciWindow *window = windowOf(this);
    return static_cast<UInt8>(window != nullptr ? window->configRead(space, offset, 1) : kAllOnes);
}

void XvpciHostBridge::configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data)
{
    if (XvpciWindow *window = windowOf(this)) {
        window->configWrite(space, offset, 1, data);
    }
}
