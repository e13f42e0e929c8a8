/*
 * IOPCIFamily fakes: IOPCIDevice, IOPCIBridge, IOPCIHostBridge, the
 * configurator's host-bridge enumeration, and IOPCIMessagedInterruptController.
 *
 * Sources (read with the fetch tool, transcribed, not copied):
 *   IOPCIFamily-726.0.5: IOPCIDevice.cpp, IOPCIBridge.cpp, IOPCIConfigurator.cpp,
 *   IOPCIMessagedInterruptController.cpp; line numbers are from that tag.
 *   IOPCIFamily-484.140.2 (macOS 12) behaves the same in every method used here
 *   unless a comment says otherwise.
 *
 * What the configurator fake leaves out: bridges below the host bridge (the
 * window has none), I/O space and prefetchable ranges, expansion ROMs,
 * power management, hot plug, link training, ACS/LTR/L1 substates.
 */
#include "testbed.hpp"

#include <vector>

/* ---- IOPCIDevice --------------------------------------------------------- */

OSDefineMetaClassAndStructors(IOPCIDevice, IOService)

/* IOPCIDevice::init (IOPCIDevice.cpp): allocates reserved (ExpansionData) and the
   property table; the state every later path dereferences. */
bool IOPCIDevice::init(OSDictionary *propTable)
{
    if (!IOService::init(propTable)) return false;
    reserved = IOMallocType(ExpansionData);
    if (!reserved) return false;
    reserved->pciPMState = kIOPCIDeviceOnState;
    space.bits = 0;
    return true;
}
void IOPCIDevice::free()
{
    if (reserved) {
        for (int i = 0; i < 6; i++) {
            OSSafeReleaseNULL(reserved->deviceMemoryMap[i]);
            OSSafeReleaseNULL(reserved->deviceMemory[i]);
        }
        IOFreeType(reserved, ExpansionData);
    }
    delete[] savedConfig;
    IOService::free();
}
bool IOPCIDevice::attach(IOService *provider) { return IOService::attach(provider); }
void IOPCIDevice::detach(IOService *provider) { IOService::detach(provider); }

/* IOPCIDevice::matchPropertyTable (IOPCIDevice.cpp:922): the parent bridge matches
   (IOPCIBridge::matchNubWithPropertyTable -> pciMatchNub, IOPCIBridge.cpp:4524). */
bool IOPCIDevice::matchPropertyTable(OSDictionary *table, SInt32 *score)
{
    return parent ? tb::pciMatchNub(this, table, score) : false;
}
bool IOPCIDevice::matchPropertyTable(OSDictionary *table)
{
    SInt32 score = 0;
    return matchPropertyTable(table, &score);
}
/* IOPCIDevice::getResources (IOPCIDevice.cpp:1059): the bridge fills in resources. */
IOReturn IOPCIDevice::getResources()
{
    if (!reserved) panic("IOPCIDevice::getResources: reserved is NULL (nub never init()ed)");
    return parent ? parent->getNubResources(this) : kIOReturnNotAttached;
}
/* IOPCIDevice::callPlatformFunction (IOPCIDevice.cpp): to the parent bridge, which
   passes unknown functions to its provider (IOPCIBridge.cpp:2858). */
IOReturn IOPCIDevice::callPlatformFunction(const OSSymbol *functionName, bool wait, void *p1, void *p2, void *p3, void *p4)
{
    /* IOPCIDevice.cpp:1571: super (IOService: the provider, i.e. the parent bridge);
       the ASPM special case is not modelled. */
    return IOService::callPlatformFunction(functionName, wait, p1, p2, p3, p4);
}

/* Config accessors (IOPCIDevice.cpp:1157-1230): to the parent bridge. */
UInt32 IOPCIDevice::configRead32(IOPCIAddressSpace s, UInt8 offset) { return parent ? parent->configRead32(s, offset) : 0xFFFFFFFF; }
void IOPCIDevice::configWrite32(IOPCIAddressSpace s, UInt8 offset, UInt32 data) { if (parent) parent->configWrite32(s, offset, data); }
UInt16 IOPCIDevice::configRead16(IOPCIAddressSpace s, UInt8 offset) { return parent ? parent->configRead16(s, offset) : 0xFFFF; }
void IOPCIDevice::configWrite16(IOPCIAddressSpace s, UInt8 offset, UInt16 data) { if (parent) parent->configWrite16(s, offset, data); }
UInt8 IOPCIDevice::configRead8(IOPCIAddressSpace s, UInt8 offset) { return parent ? parent->configRead8(s, offset) : 0xFF; }
void IOPCIDevice::configWrite8(IOPCIAddressSpace s, UInt8 offset, UInt8 data) { if (parent) parent->configWrite8(s, offset, data); }
/* IOPCIDevice.cpp:1232-1270 (configAccess: inactive or no reserved -> all-ones). */
static bool configAccess(IOPCIDevice *d) { return !d->isInactive() && d->reserved && d->parent; }
UInt32 IOPCIDevice::configRead32(UInt8 offset) { return configAccess(this) ? parent->configRead32(space, offset) : 0xFFFFFFFF; }
void IOPCIDevice::configWrite32(UInt8 offset, UInt32 data) { if (configAccess(this)) parent->configWrite32(space, offset, data); }
UInt16 IOPCIDevice::configRead16(UInt8 offset) { return configAccess(this) ? parent->configRead16(space, offset) : 0xFFFF; }
void IOPCIDevice::configWrite16(UInt8 offset, UInt16 data) { if (configAccess(this)) parent->configWrite16(space, offset, data); }
UInt8 IOPCIDevice::configRead8(UInt8 offset) { return configAccess(this) ? parent->configRead8(space, offset) : 0xFF; }
void IOPCIDevice::configWrite8(UInt8 offset, UInt8 data) { if (configAccess(this)) parent->configWrite8(space, offset, data); }
/* extendedConfigRead32 and friends (IOPCIDevice.cpp:1275-1330): space with
   es.registerNumExtended = offset >> 8, then the (space, UInt8 offset) accessor. */
static IOPCIAddressSpace extended(IOPCIAddressSpace s, IOByteCount offset)
{
    s.es.registerNumExtended = (offset >> 8) & 0xF;
    return s;
}
UInt32 IOPCIDevice::extendedConfigRead32(IOByteCount offset)
{
    if (!configAccess(this) || offset > 0x1000 - 4) return 0xFFFFFFFF;
    return configRead32(extended(space, offset), (UInt8)offset);
}
void IOPCIDevice::extendedConfigWrite32(IOByteCount offset, UInt32 data)
{
    if (!configAccess(this) || offset > 0x1000 - 4) return;
    configWrite32(extended(space, offset), (UInt8)offset, data);
}
UInt16 IOPCIDevice::extendedConfigRead16(IOByteCount offset)
{
    if (!configAccess(this) || offset > 0x1000 - 2) return 0xFFFF;
    return configRead16(extended(space, offset), (UInt8)offset);
}
void IOPCIDevice::extendedConfigWrite16(IOByteCount offset, UInt16 data)
{
    if (!configAccess(this) || offset > 0x1000 - 2) return;
    configWrite16(extended(space, offset), (UInt8)offset, data);
}
UInt8 IOPCIDevice::extendedConfigRead8(IOByteCount offset)
{
    if (!configAccess(this) || offset > 0x1000 - 1) return 0xFF;
    return configRead8(extended(space, offset), (UInt8)offset);
}
void IOPCIDevice::extendedConfigWrite8(IOByteCount offset, UInt8 data)
{
    if (!configAccess(this) || offset > 0x1000 - 1) return;
    configWrite8(extended(space, offset), (UInt8)offset, data);
}
/* findPCICapability (IOPCIDevice.cpp:1334 -> IOPCIBridge::findPCICapability): walk
   the standard list from 0x34. */
UInt32 IOPCIDevice::findPCICapability(UInt8 capabilityID, UInt8 *offset)
{
    if (!configAccess(this)) return 0;
    return parent->findPCICapability(space, capabilityID, offset);
}
/* extendedFindPCICapability (IOPCIDevice.cpp:1340): standard IDs in the standard
   list; IDs >= 0x100 in the extended list from 0x100 (IOPCIConfigurator.cpp,
   findPCICapability with extended ids). */
UInt32 IOPCIDevice::extendedFindPCICapability(UInt32 capabilityID, IOByteCount *offset)
{
    if (!configAccess(this)) return 0;
    if (capabilityID < 0x100) {
        UInt8 found = offset ? (UInt8)*offset : 0;
        UInt32 r = parent->findPCICapability(space, (UInt8)capabilityID, &found);
        if (offset) *offset = found;
        return r;
    }
    IOByteCount at = 0x100;
    for (int guard = 0; at && guard < 64; guard++) {
        UInt32 header = extendedConfigRead32(at);
        if (header == 0 || header == 0xFFFFFFFF) break;
        if ((header & 0xFFFF) == (capabilityID & 0xFFFF)) {
            if (offset) *offset = at;
            return header;
        }
        at = (header >> 20) & 0xFFC;
    }
    return 0;
}
/* setConfigBits (IOPCIDevice.cpp:1347), setBusLeadEnable/setMemoryEnable (1360-1376). */
UInt32 IOPCIDevice::setConfigBits(UInt8 reg, UInt32 mask, UInt32 value)
{
    UInt32 bits = extendedConfigRead32(reg);
    UInt32 was = bits & mask;
    bits &= ~mask;
    bits |= value & mask;
    extendedConfigWrite32(reg, bits);
    return was;
}
bool IOPCIDevice::setBusLeadEnable(bool enable) { return 0 != setConfigBits(kIOPCIConfigCommand, kIOPCICommandBusLead, enable ? kIOPCICommandBusLead : 0); }
bool IOPCIDevice::setBusMasterEnable(bool enable) { return setBusLeadEnable(enable); }
bool IOPCIDevice::setMemoryEnable(bool enable) { return 0 != setConfigBits(kIOPCIConfigCommand, kIOPCICommandMemorySpace, enable ? kIOPCICommandMemorySpace : 0); }
bool IOPCIDevice::setIOEnable(bool enable, bool) { return 0 != setConfigBits(kIOPCIConfigCommand, kIOPCICommandIOSpace, enable ? kIOPCICommandIOSpace : 0); }
/* getDeviceMemoryWithRegister (IOPCIDevice.cpp:1408): the range whose tag's low byte
   is the register; mapDeviceMemoryWithRegister (1430) maps it. */
IODeviceMemory *IOPCIDevice::getDeviceMemoryWithRegister(UInt8 reg)
{
    OSArray *array = OSDynamicCast(OSArray, getProperty(gIODeviceMemoryKey));
    if (!array) return nullptr;
    for (unsigned i = 0; i < array->getCount(); i++) {
        IODeviceMemory *range = OSDynamicCast(IODeviceMemory, array->getObject(i));
        if (range && reg == (range->getTag() & 0xff)) return range;
    }
    return nullptr;
}
IOMemoryMap *IOPCIDevice::mapDeviceMemoryWithRegister(UInt8 reg, IOOptionBits options)
{
    IODeviceMemory *range = getDeviceMemoryWithRegister(reg);
    return range ? range->map(options) : nullptr;
}
IODeviceMemory *IOPCIDevice::ioDeviceMemory(void) { return parent ? parent->ioDeviceMemory() : nullptr; }
/* deviceMemoryRead32 (IOPCIDevice.cpp:2468): through reserved->deviceMemoryMap[index],
   which IOPCIBridge::getNubResources fills (IOPCIBridge.cpp:4398-4420). */
IOReturn IOPCIDevice::deviceMemoryRead32(uint8_t memoryIndex, uint64_t offset, uint32_t *readData, IOOptionBits)
{
    if (!reserved || memoryIndex >= 6) return kIOReturnBadArgument;
    IOMemoryMap *map = reserved->deviceMemoryMap[memoryIndex];
    if (!map) return kIOReturnNoMemory;
    if (offset + 4 > map->getLength()) return kIOReturnOverrun;
    *readData = ml_io_read32(map->getVirtualAddress() + offset);
    return kIOReturnSuccess;
}
IOReturn IOPCIDevice::deviceMemoryWrite32(uint8_t memoryIndex, uint64_t offset, uint32_t data, IOOptionBits)
{
    if (!reserved || memoryIndex >= 6) return kIOReturnBadArgument;
    IOMemoryMap *map = reserved->deviceMemoryMap[memoryIndex];
    if (!map) return kIOReturnNoMemory;
    if (offset + 4 > map->getLength()) return kIOReturnOverrun;
    *reinterpret_cast<volatile uint32_t *>(map->getVirtualAddress() + offset) = data;
    return kIOReturnSuccess;
}
/* IOPCIDevice::getProperty for the interrupt keys (IOPCIDevice.cpp:1835-1865):
   resolve the nub's interrupts lazily, once, through the parent bridge. */
OSObject *tb::pciInterruptProperty(IOPCIDevice *nub, const char *key)
{
    if (!nub->reserved || !nub->parent) return nullptr;
    if (!tb::interruptsResolved(nub)) {
        tb::setInterruptsResolved(nub);
        OSArray *controllers = OSArray::withCapacity(1);
        OSArray *specifiers = OSArray::withCapacity(1);
        nub->IORegistryEntry::setProperty(gIOInterruptControllersKey, controllers);
        nub->IORegistryEntry::setProperty(gIOInterruptSpecifiersKey, specifiers);
        controllers->release();
        specifiers->release();
        nub->parent->resolveInterrupts(nub);
    }
    return nub->IORegistryEntry::getProperty(key);
}

OSObject *IOPCIDevice::getProperty(const char *aKey) const
{
    if (!strcmp(aKey, "IOInterruptControllers") || !strcmp(aKey, "IOInterruptSpecifiers")) {
        return tb::pciInterruptProperty(const_cast<IOPCIDevice *>(this), aKey);
    }
    return IORegistryEntry::getProperty(aKey);
}

/* ---- IOPCIBridge --------------------------------------------------------- */

OSDefineMetaClassAndAbstractStructors(IOPCIBridge, IOService)

/* IOPCIBridge::init (IOPCIBridge.cpp:1412): allocates reserved. */
bool IOPCIBridge::init(OSDictionary *propTable)
{
    if (!IOService::init(propTable)) return false;
    reserved = IOMallocType(ExpansionData);
    return reserved != nullptr;
}
void IOPCIBridge::free()
{
    if (reserved) IOFreeType(reserved, ExpansionData);
    IOService::free();
}
IOService *IOPCIBridge::probe(IOService *provider, SInt32 *score) { return IOService::probe(provider, score); }

/* IOPCIBridge::start (IOPCIBridge.cpp:1320-1400): configure(); PMinit; join the
   provider's power tree; for a bridge whose provider is not an IOPCIDevice, add it
   to the configurator as a host bridge (which enumerates); probeBus(firstBusNum);
   registerService. */
bool IOPCIBridge::start(IOService *provider)
{
    if (!IOService::start(provider)) return false;
    reserved->domainId = 0;
    if (!configure(provider)) {
        stop(provider);
        return false;
    }
    IOPCIDevice *pciDevice = OSDynamicCast(IOPCIDevice, provider);
    PMinit();
    provider->joinPMtree(this);
    if (!pciDevice) {
        if (tb::configuratorAddHostBridge(this) != kIOReturnSuccess) {
            stop(provider);
            return false;
        }
    }
    reserved->readyToProbe = true;
    probeBus(provider, firstBusNum());
    registerService();
    return true;
}
/* IOPCIBridge::stop (IOPCIBridge.cpp:1403): PMstop if initialised. */
void IOPCIBridge::stop(IOService *provider)
{
    if (fPMInit) PMstop();
    IOService::stop(provider);
}
/* IOPCIBridge::configure (IOPCIBridge.cpp:2869): true (host bridges add ranges first). */
bool IOPCIBridge::configure(IOService *) { return true; }
IOReturn IOPCIBridge::callPlatformFunction(const OSSymbol *functionName, bool wait, void *p1, void *p2, void *p3, void *p4)
{
    return IOService::callPlatformFunction(functionName, wait, p1, p2, p3, p4);
}
UInt8 IOPCIBridge::firstBusNum(void) { return 0; }
UInt8 IOPCIBridge::lastBusNum(void) { return 255; }
/* spaceFromProperties (IOPCIBridge.cpp): the first "reg" cell. */
void IOPCIBridge::spaceFromProperties(OSDictionary *propTable, IOPCIAddressSpace *space)
{
    space->bits = 0;
    if (OSData *reg = OSDynamicCast(OSData, propTable ? propTable->getObject("reg") : nullptr)) {
        if (reg->getLength() >= 4) space->bits = *static_cast<const UInt32 *>(reg->getBytesNoCopy());
    }
}
/* constructProperties (IOPCIBridge.cpp:3055): returns 0 in every version. */
OSDictionary *IOPCIBridge::constructProperties(IOPCIAddressSpace) { return nullptr; }
/* createNub (IOPCIBridge.cpp:3060): a bare `new IOPCIDevice`, not init()ed. */
IOPCIDevice *IOPCIBridge::createNub(OSDictionary *) { return new IOPCIDevice; }
/* initializeNub (IOPCIBridge.cpp:3065): space from properties, parent, then (726)
   reserved->hostBridgeData->_useLinkStatusSerializer and nub->reserved timers. */
bool IOPCIBridge::initializeNub(IOPCIDevice *nub, OSDictionary *from)
{
    spaceFromProperties(from, &nub->space);
    nub->parent = this;
    if (ioDeviceMemory()) nub->ioMap = ioDeviceMemory()->map();
    if (!reserved->hostBridgeData) panic("IOPCIBridge::initializeNub: NULL hostBridgeData dereferenced (IOPCIBridge.cpp:3078, 726.0.5)");
    if (!nub->reserved) panic("IOPCIBridge::initializeNub: nub->reserved is NULL (nub not init()ed), dereferenced at IOPCIBridge.cpp:3087");
    return true;
}
/* publishNub (IOPCIBridge.cpp:3199): location, config shadow (savedConfig from the
   first 64 dwords), then registerService. */
bool IOPCIBridge::publishNub(IOPCIDevice *nub, UInt32)
{
    if (!nub) return false;
    if (!nub->reserved) panic("IOPCIBridge::publishNub: nub->reserved is NULL (IOPCIBridge.cpp:3247)");
    char location[24];
    if (nub->space.s.functionNum) snprintf(location, sizeof(location), "%X,%X", nub->space.s.deviceNum, nub->space.s.functionNum);
    else snprintf(location, sizeof(location), "%X", nub->space.s.deviceNum);
    nub->setLocation(location);
    nub->savedConfig = new UInt32[64];
    for (int i = 0; i < 64; i++) nub->savedConfig[i] = nub->configRead32((UInt8)(i << 2));
    bool ok = nub->attach(this);
    if (ok) nub->registerService();
    return ok;
}
/* addBridgeMemoryRange (IOPCIBridge.cpp:4177): appended to the memory range list
   (ignoring ACPIPCI's made-up 0x80000000/0x7f000000). */
bool IOPCIBridge::addBridgeMemoryRange(IOPhysicalAddress start, IOPhysicalLength length, bool)
{
    if (start == 0x80000000 && length == 0x7f000000) return false;
    unsigned &n = reserved->rangeCount[kIOPCIResourceTypeMemory];
    if (n >= 8) return false;
    reserved->rangeLists[kIOPCIResourceTypeMemory][n++] = RangeEntry{start, length, start};
    return true;
}
bool IOPCIBridge::addBridgeIORange(IOByteCount start, IOByteCount length)
{
    unsigned &n = reserved->rangeCount[kIOPCIResourceTypeIO];
    if (n >= 8) return false;
    reserved->rangeLists[kIOPCIResourceTypeIO][n++] = RangeEntry{start, length, start};
    return true;
}
bool IOPCIBridge::addBridgePrefetchableMemoryRange(addr64_t start, addr64_t length)
{
    unsigned &n = reserved->rangeCount[kIOPCIResourceTypePrefetchMemory];
    if (n >= 8) return false;
    reserved->rangeLists[kIOPCIResourceTypePrefetchMemory][n++] = RangeEntry{start, length, start};
    return true;
}
/* getDTNubAddressing (IOPCIBridge.cpp:4299): IODeviceMemory per "assigned-addresses"
   entry (5 cells: phys.hi space, phys.mid, phys.lo, size.hi, size.lo), tagged with
   the phys.hi IOPCIAddressSpace (constructRange). */
IOReturn IOPCIBridge::getDTNubAddressing(IOPCIDevice *nub)
{
    OSData *addresses = OSDynamicCast(OSData, nub->getProperty("assigned-addresses"));
    if (!addresses) return kIOReturnSuccess;
    OSArray *existing = OSDynamicCast(OSArray, nub->getProperty(gIODeviceMemoryKey));
    OSArray *array = existing ? OSArray::withArray(existing) : OSArray::withCapacity(4);
    const UInt32 *reg = static_cast<const UInt32 *>(addresses->getBytesNoCopy());
    unsigned num = addresses->getLength() / (5 * 4);
    for (unsigned i = 0; i < num; i++, reg += 5) {
        uint64_t phys = ((uint64_t)reg[1] << 32) | reg[2];
        uint64_t len = ((uint64_t)reg[3] << 32) | reg[4];
        IODeviceMemory *range = IODeviceMemory::withRange(phys, len);
        range->setTag(reg[0]);
        array->setObject(range);
        range->release();
    }
    if (array->getCount()) nub->setProperty(gIODeviceMemoryKey, array);
    array->release();
    return kIOReturnSuccess;
}
/* getNubResources (IOPCIBridge.cpp:4369): once per nub (IOPCIResourced), device
   memory from the addressing, then one IOMemoryMap per memory range into
   reserved->deviceMemory[]/deviceMemoryMap[] (what deviceMemoryRead* and
   PCIDriverKit use). */
IOReturn IOPCIBridge::getNubResources(IOService *service)
{
    IOPCIDevice *nub = (IOPCIDevice *)service;
    if (service->getProperty(kIOPCIResourcedKey)) return kIOReturnSuccess;
    service->setProperty(kIOPCIResourcedKey, true);
    IOReturn err = getDTNubAddressing(nub);
    if (err == kIOReturnSuccess) {
        OSArray *memory = nub->getDeviceMemory();
        for (unsigned i = 0; memory && i < memory->getCount() && i < 6; i++) {
            IODeviceMemory *range = OSDynamicCast(IODeviceMemory, memory->getObject(i));
            if (!range) continue;
            IOPCIAddressSpace s;
            s.bits = range->getTag();
            range->retain();
            nub->reserved->deviceMemory[i] = range;
            if (s.s.space == kIOPCI32BitMemorySpace || s.s.space == kIOPCI64BitMemorySpace) {
                nub->reserved->deviceMemoryMap[i] = range->map();
            }
        }
    }
    return err;
}
/* findPCICapability (IOPCIBridge.cpp): status bit 4, then the list from 0x34. */
UInt32 IOPCIBridge::findPCICapability(IOPCIAddressSpace space, UInt8 capabilityID, UInt8 *found)
{
    UInt8 offset = 0;
    UInt32 data = 0;
    if (found) {
        offset = *found;
        *found = 0;
    }
    if (0 == ((kIOPCIStatusCapabilities << 16) & configRead32(space, kIOPCIConfigCommand))) return 0;
    if (offset == 0) offset = configRead8(space, kIOPCIConfigCapabilitiesPtr);
    else offset = configRead8(space, offset + 1);
    for (int guard = 0; offset && guard < 48; guard++) {
        data = configRead32(space, offset & ~3);
        if (capabilityID == (data & 0xff)) {
            if (found) *found = offset & ~3;
            return data;
        }
        offset = (data >> 8) & 0xfc;
    }
    return 0;
}
IOReturn IOPCIBridge::checkLink(uint32_t) { return kIOReturnSuccess; }
/* resolveInterrupts (IOPCIBridge.cpp:6157): legacy first, then MSI. */
IOReturn IOPCIBridge::resolveInterrupts(IOPCIDevice *nub)
{
    IOService *provider = getProvider();
    IOReturn lret = resolveLegacyInterrupts(provider, nub);
    IOReturn ret = resolveMSIInterrupts(provider, nub);
    return ret == kIOReturnSuccess ? ret : lret;
}
/* resolveMSIInterrupts (IOPCIBridge.cpp:6185): get the platform's messaged
   controller (callPlatformFunction GetMessagedInterruptController), then
   allocateDeviceInterrupts for the nub's MSI/MSI-X capability. */
IOReturn IOPCIBridge::resolveMSIInterrupts(IOService *provider, IOPCIDevice *nub)
{
    if (!reserved->messagedInterruptController) {
        callPlatformFunction(gIOPlatformGetMessagedInterruptControllerKey, false, (void *)provider,
                             (void *)&reserved->messagedInterruptController, nullptr, nullptr);
    }
    uint16_t msiCapability = nub->reserved->msiCapability;
    if (msiCapability && reserved->messagedInterruptController) {
        return reserved->messagedInterruptController->allocateDeviceInterrupts(nub, nullptr, msiCapability);
    }
    return kIOReturnUnsupported;
}
/* resolveLegacyInterrupts (IOPCIBridge.cpp:6217): Interrupt Pin 1-4 asks the
   provider's platform function ResolvePCIInterrupt for a route. */
IOReturn IOPCIBridge::resolveLegacyInterrupts(IOService *provider, IOPCIDevice *nub)
{
    uint32_t pin = nub->configRead8(kIOPCIConfigInterruptPin);
    if (pin == 0 || pin > 4) return kIOReturnUnsupported;
    pin--;
    tb::recordIntxRequest(nub);
    uint32_t irq = 0;
    if (kIOReturnSuccess == provider->callPlatformFunction(gIOPlatformResolvePCIInterruptKey, false, provider,
                                                            (void *)(uintptr_t)nub->space.s.deviceNum,
                                                            (void *)(uintptr_t)pin, &irq)) {
        nub->configWrite8(kIOPCIConfigInterruptLine, irq & 0xff);
    } else {
        irq = nub->configRead8(kIOPCIConfigInterruptLine);
        if (0 == irq || 0xff == irq) return kIOReturnUnsupported;
        irq &= 0xf;
    }
    /* IOPCIBridge.cpp:6254: the platform adds the INTx vector to the nub's interrupts. */
    return provider->callPlatformFunction(gIOPlatformSetDeviceInterruptsKey, false, nub, (void *)&irq, (void *)1, (void *)false);
}
/* probeBus (IOPCIBridge.cpp:4146 -> probeBusGated 3772): take the nubs the
   configurator hung in the provider's device-tree plane, initializeNub, find
   capabilities (MSI-X when there is no MSI, 3829-3838), publishNub each. */
void IOPCIBridge::probeBus(IOService *provider, UInt8)
{
    OSIterator *kids = provider->getChildIterator(gIODTPlane);
    std::vector<IOPCIDevice *> nubs;
    while (OSObject *o = kids->getNextObject()) {
        IOPCIDevice *nub = OSDynamicCast(IOPCIDevice, o);
        if (!nub || nub->inPlane(gIOServicePlane) || !nub->reserved || !nub->reserved->configEntry) continue;
        if (nub->getProperty("vendor-id") == nullptr) continue;
        nub->retain();
        initializeNub(nub, nub->getPropertyTable());
        IOByteCount msiCapa = 0, capa = 0;
        nub->extendedFindPCICapability(kIOPCIMSICapability, &msiCapa);
        if (!msiCapa && nub->extendedFindPCICapability(kIOPCIMSIXCapability, &capa)) {
            nub->reserved->msiCapability = (uint16_t)capa;
            nub->reserved->msiMode |= kMSIX;
        } else {
            nub->reserved->msiCapability = (uint16_t)msiCapa;
        }
        capa = 0;
        if (nub->extendedFindPCICapability(kIOPCIPCIExpressCapability, &capa)) nub->reserved->expressCapability = (uint16_t)capa;
        nubs.push_back(nub);
    }
    kids->release();
    UInt32 idx = 0;
    for (IOPCIDevice *nub : nubs) {
        publishNub(nub, ++idx);
        nub->release();
    }
}

/* ---- IOPCIHostBridge (IOPCIBridge.cpp:597-690) ---------------------------- */

OSDefineMetaClassAndAbstractStructors(IOPCIHostBridge, IOPCIBridge)
OSDefineMetaClassAndStructors(IOPCIHostBridgeData, OSObject)
/* probe (IOPCIBridge.cpp:599): !ACPI_SUPPORT builds: a new IOPCIHostBridgeData per
   bridge; ACPI (x86) builds: the shared gBridgeData. Either way bridgeData is set. */
IOService *IOPCIHostBridge::probe(IOService *provider, SInt32 *score)
{
    IOPCIBridge::probe(provider, score);
    _domainId = 0;
    bridgeData = tb::sharedBridgeData();
    return this;
}
/* start (IOPCIBridge.cpp:639): super::start, then a publish notifier. */
bool IOPCIHostBridge::start(IOService *provider)
{
    if (!bridgeData) panic("IOPCIHostBridge::start: bridgeData is NULL (probe() not run), dereferenced at IOPCIBridge.cpp:644");
    return IOPCIBridge::start(provider);
}
void IOPCIHostBridge::free(void)
{
    OSSafeReleaseNULL(bridgeData);
    IOPCIBridge::free();
}
/* configure (IOPCIBridge.cpp:678): reserved->hostBridgeData = bridgeData, then super. */
bool IOPCIHostBridge::configure(IOService *provider)
{
    reserved->hostBridgeData = bridgeData;
    reserved->hostBridgeData->retain();
    return IOPCIBridge::configure(provider);
}

/* ---- IOPCIMessagedInterruptController (IOPCIMessagedInterruptController.cpp) -- */

OSDefineMetaClassAndStructors(IOPCIMessagedInterruptController, IOInterruptController)
/* init (268): numVectors vectors from baseVector, each with a lock. */
bool IOPCIMessagedInterruptController::init(UInt32 numVectors, UInt32 baseVector)
{
    if (!IOInterruptController::init()) return false;
    _vectorBase = baseVector;
    _vectorCount = numVectors;
    vectors = IONewZero(IOInterruptVector, numVectors);
    for (UInt32 i = 0; i < numVectors; i++) vectors[i].interruptLock = IOLockAlloc();
    setName("IOPCIMessagedInterruptController");
    return true;
}
/* API_ENTRY (66-76): the vector is the first word of the nub's specifier, rebased to
   the MSI-X entry index only when the function's entries share one vector (sub-vectors);
   for non-shared vectors vectorNumber stays the controller-wide number, which
   disableVectorHard/enableVector then use as the table index (as in IOPCIFamily). */
#define API_ENTRY()                                                                           \
    [[maybe_unused]] IOPCIDevice *device_ = OSDynamicCast(IOPCIDevice, nub);                                  \
    OSArray *specs_ = OSDynamicCast(OSArray, nub->IORegistryEntry::getProperty(gIOInterruptSpecifiersKey)); \
    OSData *spec_ = specs_ ? OSDynamicCast(OSData, specs_->getObject(source)) : nullptr;    \
    if (!spec_) return kIOReturnNoInterrupt;                                                  \
    IOInterruptVectorNumber vectorNumber = *static_cast<const UInt32 *>(spec_->getBytesNoCopy()); \
    IOInterruptVector *vector = &vectors[vectorNumber];                                      \
    if (IOInterruptVector *subVectors_ = (IOInterruptVector *)vector->sharedController) {    \
        vectorNumber = source - vector->source; /* now the MSI-X entry index */             \
        vector = subVectors_ + vectorNumber;                                                  \
    }
/* registerInterrupt (98): fill in, start hard- and soft-disabled, enableDeviceMSI. */
IOReturn IOPCIMessagedInterruptController::registerInterrupt(IOService *nub, int source, void *target, IOInterruptHandler handler, void *refCon)
{
    API_ENTRY();
    if (vector->interruptRegistered) return kIOReturnNoResources;
    vector->handler = handler;
    vector->nub = nub;
    vector->source = source;
    vector->target = target;
    vector->refCon = refCon;
    initVector(vectorNumber, vector);
    vector->interruptDisabledHard = 1;
    vector->interruptDisabledSoft = 1;
    vector->interruptRegistered = 1;
    tb::recordRegistration(nub, source, true);
    enableDeviceMSI(device_);
    return kIOReturnSuccess;
}
/* unregisterInterrupt (137): soft disable, hard disable, clear, disableDeviceMSI. */
IOReturn IOPCIMessagedInterruptController::unregisterInterrupt(IOService *nub, int source)
{
    API_ENTRY();
    tb::recordUnregistration(nub, source, vector->interruptRegistered != 0);
    if (!vector->interruptRegistered) return kIOReturnSuccess;
    disableInterrupt(nub, source);
    disableVectorHard(vectorNumber, vector);
    vector->interruptActive = 0;
    vector->interruptDisabledSoft = 0;
    vector->interruptDisabledHard = 0;
    vector->interruptRegistered = 0;
    vector->nub = nullptr;
    vector->source = 0;
    vector->handler = nullptr;
    vector->target = nullptr;
    vector->refCon = nullptr;
    tb::recordRegistration(nub, source, false);
    disableDeviceMSI(device_);
    return kIOReturnSuccess;
}
/* getInterruptType (176): from the nub's MSI mode. */
IOReturn IOPCIMessagedInterruptController::getInterruptType(IOService *nub, int, int *interruptType)
{
    if (!interruptType) return kIOReturnBadArgument;
    IOPCIDevice *device = OSDynamicCast(IOPCIDevice, nub);
    if (!device) return kIOReturnBadArgument;
    *interruptType = kIOInterruptTypeEdge | kIOInterruptTypePCIMessaged | ((kMSIX & device->reserved->msiMode) ? kIOInterruptTypePCIMessagedX : 0);
    return kIOReturnSuccess;
}
/* enableInterrupt (192): clear soft; if hard-disabled, enableVector. */
IOReturn IOPCIMessagedInterruptController::enableInterrupt(IOService *nub, int source)
{
    API_ENTRY();
    if (vector->interruptDisabledSoft) {
        vector->interruptDisabledSoft = 0;
        if (vector->interruptDisabledHard) {
            vector->interruptDisabledHard = 0;
            enableVector(vectorNumber, vector);
        }
    }
    return kIOReturnSuccess;
}
/* disableInterrupt (216): soft only. */
IOReturn IOPCIMessagedInterruptController::disableInterrupt(IOService *nub, int source)
{
    API_ENTRY();
    (void)vectorNumber;
    (void)device_;
    vector->interruptDisabledSoft = 1;
    return kIOReturnSuccess;
}
/* allocateDeviceInterrupts (384-600), MSI-X branch: one vector per function unless
   pci-msi-flags says kIOPCIMSIFlagRespect (448-460); message from the platform via
   the nub's GetMessagedInterruptAddress (480-486, which a bridge may intercept);
   with fewer vectors than entries, a sub-vector array whose entries all share the
   function vector (521-543); table and PBA addresses from the nub's BAR maps
   (560-575); control with enable and function mask clear (582). */
IOReturn IOPCIMessagedInterruptController::allocateDeviceInterrupts(IOService *entry, void *, UInt32 msiCapability)
{
    IOPCIDevice *device = OSDynamicCast(IOPCIDevice, entry);
    if (!device) return kIOReturnBadArgument;
    uint16_t control = device->configRead16((UInt8)(msiCapability + 2));
    uint32_t msiPhysVectors = (kMSIX & device->reserved->msiMode) ? 1 + (0x7ff & control) : 1u << (0x7 & (control >> 1));
    uint32_t numVectors = msiPhysVectors;
    uint32_t msiFlags = 0;
    if (OSData *data = OSDynamicCast(OSData, entry->getProperty(kIOPCIMSIFlagsKey))) {
        if (data->getLength() >= 4) msiFlags = *static_cast<const uint32_t *>(data->getBytesNoCopy());
    }
    if (!(kIOPCIMSIFlagRespect & msiFlags)) {
        numVectors = 1; /* max per function is one (466-469) */
    } else if (OSData *limit = OSDynamicCast(OSData, entry->getProperty(kIOPCIMSILimitKey))) {
        if (limit->getLength() >= 4) { /* 470-473 */
            uint32_t l = *static_cast<const uint32_t *>(limit->getBytesNoCopy());
            numVectors = msiPhysVectors = l < msiPhysVectors ? l : msiPhysVectors;
        }
    }
    /* allocateInterruptVectors (742-752): a block of numVectors aligned to numVectors;
       MSI-X retries with one fewer until it fits (478-487). */
    uint32_t firstVector = 0;
    bool allocated = false;
    while (!allocated && numVectors > 0) {
        uint32_t at = (_nextFree + numVectors - 1) / numVectors * numVectors;
        if (at + numVectors <= _vectorCount) {
            firstVector = at;
            _nextFree = at + numVectors;
            allocated = true;
        } else if (kMSIX & device->reserved->msiMode) {
            numVectors--;
        } else {
            numVectors >>= 1;
        }
    }
    if (!allocated) return kIOReturnNoSpace;
    uint32_t message[3] = {0, 0, 0};
    IOReturn ret = entry->callPlatformFunction(gIOPlatformGetMessagedInterruptAddressKey, false, entry, (void *)0,
                                               (void *)(uintptr_t)(firstVector + _vectorBase), (void *)&message[0]);
    if (ret != kIOReturnSuccess) return ret;
    uint32_t interruptFlags = kIOInterruptTypeEdge | kIOInterruptTypePCIMessaged | ((kMSIX & device->reserved->msiMode) ? kIOInterruptTypePCIMessagedX : 0);
    if ((kMSIX & device->reserved->msiMode) && numVectors < msiPhysVectors) {
        device->reserved->msiVectors = IONewZero(IOInterruptVector, msiPhysVectors);
        for (uint32_t v = 0; v < msiPhysVectors; v++) device->reserved->msiVectors[v].interruptLock = IOLockAlloc();
        IOInterruptVector *ivector = &vectors[firstVector];
        ivector->handler = OSMemberFunctionCast(IOInterruptHandler, this, &IOPCIMessagedInterruptController::handleInterrupt);
        ivector->nub = device;
        ivector->target = this;
        ivector->refCon = (void *)(uintptr_t)msiPhysVectors;
        ivector->interruptDisabledSoft = 0;
        ivector->interruptDisabledHard = 0;
        ivector->interruptRegistered = 0;
        ivector->sharedController = (IOSharedInterruptController *)device->reserved->msiVectors;
        for (uint32_t v = 0; v < msiPhysVectors; v++) {
            int deviceIndex = tb::addDeviceInterruptProperties(this, entry, firstVector, interruptFlags);
            if (!v) ivector->source = deviceIndex;
        }
    } else {
        device->reserved->msiVectors = &vectors[firstVector];
        for (uint32_t v = firstVector; v < firstVector + numVectors; v++) tb::addDeviceInterruptProperties(this, entry, v, interruptFlags);
    }
    device->reserved->msiSaveAddress0 = message[0];
    device->reserved->msiSaveAddress1 = message[1];
    device->reserved->msiSaveData = message[2];
    device->reserved->msiPhysVectorCount = msiPhysVectors;
    device->reserved->msiVectorCount = numVectors;
    if (kMSIX & device->reserved->msiMode) {
        uint32_t table = device->configRead32((UInt8)(msiCapability + 8));
        UInt8 bar = (UInt8)(kIOPCIConfigBaseAddress0 + ((table & 7) << 2));
        table &= ~7u;
        if (IOMemoryMap *map = device->mapDeviceMemoryWithRegister(bar)) device->reserved->msiPBA = map->getAddress() + table;
        table = device->configRead32((UInt8)(msiCapability + 4));
        bar = (UInt8)(kIOPCIConfigBaseAddress0 + ((table & 7) << 2));
        table &= ~7u;
        if (IOMemoryMap *map = device->mapDeviceMemoryWithRegister(bar)) device->reserved->msiTable = map->getAddress() + table;
    }
    control &= ~((1 << 15) | 1);
    device->reserved->msiControl = control;
    initDevice(device);
    return kIOReturnSuccess;
}
/* initDevice (603): write every table entry with the saved message (data + vector
   for entries that own a vector) and mask = the vector's interruptDisabledHard. */
void IOPCIMessagedInterruptController::initDevice(IOPCIDevice *device)
{
    uint32_t numVectors = device->reserved->msiVectorCount;
    uint32_t msiPhysVectors = device->reserved->msiPhysVectorCount;
    if ((kMSIX & device->reserved->msiMode) && device->reserved->msiTable) {
        IOInterruptVector *vecs = device->reserved->msiVectors;
        uint16_t cmd = device->configRead16(kIOPCIConfigCommand);
        device->configWrite16(kIOPCIConfigCommand, cmd | kIOPCICommandMemorySpace);
        volatile uint32_t *table = reinterpret_cast<volatile uint32_t *>(device->reserved->msiTable);
        for (uint32_t v = 0; v < msiPhysVectors; v++) {
            uint32_t data = device->reserved->msiSaveData;
            if (v < numVectors) data += v;
            table[v * 4 + 0] = device->reserved->msiSaveAddress0;
            table[v * 4 + 1] = device->reserved->msiSaveAddress1;
            table[v * 4 + 2] = data;
            table[v * 4 + 3] = vecs[v].interruptDisabledHard;
        }
        (void)table[0];
        device->configWrite16(kIOPCIConfigCommand, cmd);
    }
    device->configWrite16((UInt8)(device->reserved->msiCapability + 2), device->reserved->msiControl);
}
/* enableDeviceMSI (655): first registration sets the enable bit and INTx-disable +
   bus lead in the command register. */
void IOPCIMessagedInterruptController::enableDeviceMSI(IOPCIDevice *device)
{
    if (!device || !device->reserved || device->isInactive()) return;
    if (!device->reserved->msiEnable) {
        uint16_t control = device->reserved->msiControl;
        control |= (kMSIX & device->reserved->msiMode) ? (1 << 15) : 1;
        device->reserved->msiControl = control;
        device->configWrite16((UInt8)(device->reserved->msiCapability + 2), control);
        uint16_t cmd = device->configRead16(kIOPCIConfigCommand);
        cmd |= kIOPCICommandInterruptDisable | kIOPCICommandBusLead;
        device->configWrite16(kIOPCIConfigCommand, cmd);
        device->setProperty("IOPCIMSIMode", true);
    }
    device->reserved->msiEnable++;
}
/* disableDeviceMSI (691): last unregistration clears the enable bit. */
void IOPCIMessagedInterruptController::disableDeviceMSI(IOPCIDevice *device)
{
    if (!device || !device->reserved || device->isInactive()) return;
    if (device->reserved->msiEnable && !(--device->reserved->msiEnable)) {
        uint16_t control = device->reserved->msiControl;
        control &= ~((1 << 15) | 1);
        device->reserved->msiControl = control;
        device->configWrite16((UInt8)(device->reserved->msiCapability + 2), control);
        uint16_t cmd = device->configRead16(kIOPCIConfigCommand);
        cmd &= ~kIOPCICommandInterruptDisable;
        device->configWrite16(kIOPCIConfigCommand, cmd);
        device->removeProperty("IOPCIMSIMode");
    }
}
/* handleInterrupt (807-875): a function vector with sub-vectors dispatches only
   sub-vector 0 when exactly one registration exists (msiEnable == 1); otherwise
   only sub-vectors whose PBA bit is set. A hard-disabled vector is marked 3 and
   replayed by enableVector. */
IOReturn IOPCIMessagedInterruptController::handleInterrupt(void *, IOService *, int source)
{
    source -= _vectorBase;
    if (source < 0 || source > (int)_vectorCount) return kIOReturnSuccess;
    IOInterruptVector *vector = &vectors[source];
    IOInterruptVector *subVectors = (IOInterruptVector *)vector->sharedController;
    if (subVectors) {
        IOPCIDevice *device = (IOPCIDevice *)vector->nub;
        uint32_t count = (uint32_t)(uintptr_t)vector->refCon;
        uint64_t bits = 0;
        for (uint32_t s = 0; s < count; s++) {
            if (device->reserved->msiEnable == 1) {
                vector = &subVectors[0];
                count = 1;
            } else {
                uint32_t bit = s & 63;
                if (!bit) bits = reinterpret_cast<volatile uint64_t *>(device->reserved->msiPBA)[s >> 6];
                if (!(bits & (1ULL << bit))) {
                    tb::recordDispatchSkipped(device, s);
                    continue;
                }
                vector = &subVectors[s];
            }
            vector->interruptActive = 1;
            if (vector->interruptRegistered) {
                if (vector->interruptDisabledHard) vector->interruptRegistered = 3;
                else vector->handler(vector->target, vector->refCon, vector->nub, vector->source);
            }
            vector->interruptActive = 0;
        }
    } else {
        vector->interruptActive = 1;
        if (vector->interruptRegistered) {
            if (vector->interruptDisabledHard) vector->interruptRegistered = 3;
            else vector->handler(vector->target, vector->refCon, vector->nub, vector->source);
        }
        vector->interruptActive = 0;
    }
    return kIOReturnSuccess;
}
int IOPCIMessagedInterruptController::getVectorType(IOInterruptVectorNumber, IOInterruptVector *vector)
{
    IOPCIDevice *device = OSDynamicCast(IOPCIDevice, vector->nub);
    if (!device) panic("getVectorType: vector's nub is not an IOPCIDevice");
    return kIOInterruptTypeEdge | kIOInterruptTypePCIMessaged | ((kMSIX & device->reserved->msiMode) ? kIOInterruptTypePCIMessagedX : 0);
}
/* disableVectorHard (899) / enableVector (912): mask bit of the entry; a vector
   marked 3 (arrived while hard-disabled) is replayed before unmasking. */
void IOPCIMessagedInterruptController::disableVectorHard(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector)
{
    IOPCIDevice *device = OSDynamicCast(IOPCIDevice, vector->nub);
    if (device && device->reserved->msiTable) reinterpret_cast<volatile uint32_t *>(device->reserved->msiTable)[vectorNumber * 4 + 3] = 1;
}
void IOPCIMessagedInterruptController::enableVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector)
{
    IOPCIDevice *device = OSDynamicCast(IOPCIDevice, vector->nub);
    if (3 == vector->interruptRegistered) {
        vector->interruptRegistered = 1;
        vector->handler(vector->target, vector->refCon, vector->nub, vector->source);
    }
    if (device && device->reserved->msiTable) reinterpret_cast<volatile uint32_t *>(device->reserved->msiTable)[vectorNumber * 4 + 3] = 0;
}
/* The CPU took system vector `v`: the platform's handler for it (the function
   vector's handler is handleInterrupt itself, set in allocateDeviceInterrupts). */
void IOPCIMessagedInterruptController::deliver(unsigned v)
{
    handleInterrupt(nullptr, nullptr, (int)v);
}
