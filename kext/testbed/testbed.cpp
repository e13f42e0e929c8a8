/*
 * Test-bed runtime: the platform expert, the root PCI bridge over sysfs,
 * the matching thread (a job queue run to completion), the CPU taking
 * interrupts (doorbell poll), and the configurator's host-bridge enumeration.
 */
#include "testbed.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace tb {

std::vector<std::string> &notes()
{
    static std::vector<std::string> v;
    return v;
}
std::vector<std::string> &iologLines()
{
    static std::vector<std::string> v;
    return v;
}
std::vector<IOWorkLoop *> &workLoops()
{
    static std::vector<IOWorkLoop *> v;
    return v;
}

/* ---- platform ------------------------------------------------------------ */

class TestbedPlatform : public IOPlatformExpert {
    OSDeclareDefaultStructors(TestbedPlatform)
};
OSDefineMetaClassAndStructors(TestbedPlatform, IOPlatformExpert)

/* The I/O APIC's controller, for INTx vectors: registration only (no INTx is
   observed in the test bed: the window and the test driver use MSI-X). */
class TestbedIOAPIC : public IOInterruptController {
    OSDeclareDefaultStructors(TestbedIOAPIC)
public:
    bool initWithVectors(unsigned count)
    {
        if (!IOInterruptController::init()) return false;
        vectors = IONewZero(IOInterruptVector, count);
        return vectors != nullptr;
    }
    int getVectorType(IOInterruptVectorNumber, IOInterruptVector *) override { return kIOInterruptTypeLevel; }
};
OSDefineMetaClassAndStructors(TestbedIOAPIC, IOInterruptController)

static int addInterruptProperty(IOInterruptController *c, IOService *device, UInt32 vector, UInt32 flags);
static TestbedIOAPIC *gIOAPIC;
static TestbedPlatform *gPlatform;
static IOPCIMessagedInterruptController *gMessaged;
static std::map<std::string, unsigned> gPlatformCalls;
static bool gAtInterrupt;
static std::set<IOPCIDevice *> gResolved;
static IOPCIHostBridgeData *gBridgeData;
static constexpr UInt32 kVectorBase = 0x50, kVectorCount = 128;

IOPlatformExpert *platform() { return gPlatform; }
IOPCIMessagedInterruptController *messagedController() { return gMessaged; }
bool atInterruptLevel() { return gAtInterrupt; }
void recordPlatformCall(IOService *, const char *name) { gPlatformCalls[name]++; }
unsigned platformCalls(const char *name) { return gPlatformCalls[name]; }
static std::map<IOPCIDevice *, unsigned> gIntx;
void recordIntxRequest(IOPCIDevice *nub) { gIntx[nub]++; }
unsigned intxRequests(IOPCIDevice *nub) { return gIntx[nub]; }
bool interruptsResolved(IOPCIDevice *nub) { return gResolved.count(nub) != 0; }
void setInterruptsResolved(IOPCIDevice *nub) { gResolved.insert(nub); }
/* x86 builds of IOPCIFamily (ACPI_SUPPORT) share one IOPCIHostBridgeData
   (IOPCIBridge.cpp:603-614, InitSharedBridgeData). */
IOPCIHostBridgeData *sharedBridgeData()
{
    if (!gBridgeData) {
        gBridgeData = OSTypeAlloc(IOPCIHostBridgeData);
        gBridgeData->initWithParameters(0);
    }
    gBridgeData->retain();
    return gBridgeData;
}

/* AppleACPIPlatformExpert's platform functions, as IOPCIFamily calls them:
   GetMessagedInterruptController hands out the one messaged controller;
   GetMessagedInterruptAddress (IOPCIMessagedInterruptController.cpp:480) gives a
   vector's message: here an address in the doorbell page (see hw.hpp). There are
   no INTx routes: ResolvePCIInterrupt fails (and is counted). */
IOReturn platformFunction(const char *name, void *p1, void *p2, void *p3, void *p4)
{
    gPlatformCalls[std::string("platform:") + name]++;
    if (!strcmp(name, "GetMessagedInterruptController")) {
        *static_cast<IOPCIMessagedInterruptController **>(p2) = gMessaged;
        return kIOReturnSuccess;
    }
    /* AppleACPIPlatformExpert resolves INTx from ACPI _PRT, which describes the
       root bus only (QEMU q35: hw/i386/acpi-build.c, links LNKE-LNKH, GSI 16-23,
       by (slot + pin) & 3). p1 is the asking bridge's provider: only the root
       bridge's (the platform) is in ACPI. */
    if (!strcmp(name, "ResolvePCIInterrupt")) {
        if (p1 != gPlatform) return kIOReturnUnsupported;
        unsigned slot = (unsigned)(uintptr_t)p2, pin = (unsigned)(uintptr_t)p3;
        *static_cast<uint32_t *>(p4) = 16 + ((slot + pin) & 3);
        return kIOReturnSuccess;
    }
    /* SetDeviceInterrupts: the nub's next interrupt is that GSI on the I/O APIC. */
    if (!strcmp(name, "SetDeviceInterrupts")) {
        IOService *nub = static_cast<IOService *>(p1);
        uint32_t irq = *static_cast<uint32_t *>(p2);
        addInterruptProperty(gIOAPIC, nub, irq, kIOInterruptTypeLevel);
        return kIOReturnSuccess;
    }
    if (!strcmp(name, "GetMessagedInterruptAddress")) {
        (void)p1;
        (void)p2;
        unsigned vector = (unsigned)(uintptr_t)p3;
        uint32_t *message = static_cast<uint32_t *>(p4);
        uint64_t address = hw::doorbellAddress(vector);
        message[0] = (uint32_t)address;
        message[1] = (uint32_t)(address >> 32);
        message[2] = hw::doorbellToken(vector);
        return kIOReturnSuccess;
    }
    return kIOReturnUnsupported;
}

/* addDeviceInterruptProperties (IOPCIMessagedInterruptController.cpp:309): append
   the controller's name and an 8-byte specifier (vector, flags); returns the
   device index of the new entry. */
int addDeviceInterruptProperties(IOPCIMessagedInterruptController *c, IOService *device, UInt32 vector, UInt32 flags)
{
    return addInterruptProperty(c, device, vector, flags);
}
static int addInterruptProperty(IOInterruptController *c, IOService *device, UInt32 vector, UInt32 flags)
{
    OSArray *liveCtrls = OSDynamicCast(OSArray, device->IORegistryEntry::getProperty(gIOInterruptControllersKey));
    OSArray *liveSpecs = OSDynamicCast(OSArray, device->IORegistryEntry::getProperty(gIOInterruptSpecifiersKey));
    OSArray *controllers = liveCtrls ? OSArray::withArray(liveCtrls) : OSArray::withCapacity(1);
    OSArray *specifiers = liveSpecs ? OSArray::withArray(liveSpecs) : OSArray::withCapacity(1);
    OSData *spec = OSData::withCapacity(8);
    spec->appendBytes(&vector, 4);
    spec->appendBytes(&flags, 4);
    int index = (int)specifiers->getCount();
    const OSSymbol *name = c->copyName();
    specifiers->setObject(spec);
    controllers->setObject(name);
    device->IORegistryEntry::setProperty(gIOInterruptControllersKey, controllers);
    device->IORegistryEntry::setProperty(gIOInterruptSpecifiersKey, specifiers);
    controllers->release();
    specifiers->release();
    spec->release();
    name->release();
    return index;
}

std::vector<Registration> &registrations()
{
    static std::vector<Registration> v;
    return v;
}
static Registration &registration(IOService *nub, int source)
{
    for (Registration &r : registrations()) {
        if (r.nub == nub && r.source == source) return r;
    }
    registrations().push_back(Registration{nub, source, 0, 0, 0, false});
    return registrations().back();
}
void recordRegistration(IOService *nub, int source, bool registered)
{
    Registration &r = registration(nub, source);
    if (registered) r.registers++;
    r.registered = registered;
}
void recordUnregistration(IOService *nub, int source, bool wasRegistered)
{
    Registration &r = registration(nub, source);
    r.unregisters++;
    if (!wasRegistered) r.strayUnregisters++;
}
static unsigned gSkipped;
void recordDispatchSkipped(IOPCIDevice *, uint32_t) { gSkipped++; }
unsigned dispatchSkipped() { return gSkipped; }

bool poll()
{
    std::vector<unsigned> taken = hw::doorbellTake();
    gAtInterrupt = true;
    for (unsigned v : taken) gMessaged->deliver(v);
    gAtInterrupt = false;
    std::vector<IOWorkLoop *> loops = workLoops();
    for (IOWorkLoop *w : loops) w->runEventSources();
    return !taken.empty();
}

/* ---- matching (xnu IOService.cpp: doServiceMatch, probeCandidates, startCandidate) */

static std::vector<OSDictionary *> gPersonalities;
static std::deque<IOService *> gJobs;

void addPersonality(OSDictionary *personality)
{
    personality->retain();
    gPersonalities.push_back(personality);
}
void queueMatching(IOService *nub, IOOptionBits)
{
    nub->retain();
    gJobs.push_back(nub);
}

static SInt32 numberOf(OSObject *o)
{
    if (OSNumber *n = OSDynamicCast(OSNumber, o)) return (SInt32)n->unsigned32BitValue();
    return 0;
}

/* IOService::matchInternal / matchPassive: IOProviderClass, IONameMatch,
   IOPropertyMatch, then the family's matchPropertyTable. */
static bool matches(IOService *nub, OSDictionary *table, SInt32 *score)
{
    OSString *providerClass = OSDynamicCast(OSString, table->getObject(kIOProviderClassKey));
    if (!providerClass || !nub->metaCast(providerClass->getCStringNoCopy())) return false;
    if (OSObject *nameMatch = table->getObject(kIONameMatchKey)) {
        bool any = false;
        auto check = [&](OSString *s) {
            if (s && (s->isEqualTo(nub->getName()))) any = true;
        };
        if (OSArray *a = OSDynamicCast(OSArray, nameMatch)) {
            for (unsigned i = 0; i < a->getCount(); i++) check(OSDynamicCast(OSString, a->getObject(i)));
        } else {
            check(OSDynamicCast(OSString, nameMatch));
        }
        if (!any) return false;
    }
    if (OSDictionary *props = OSDynamicCast(OSDictionary, table->getObject(kIOPropertyMatchKey))) {
        for (unsigned i = 0; i < props->getCount(); i++) {
            OSObject *mine = nub->getProperty(props->keyAt(i)->getCStringNoCopy());
            if (!mine || !mine->isEqualTo(props->valueAt(i))) return false;
        }
    }
    return nub->matchPropertyTable(table, score);
}

static void matchNub(IOService *nub)
{
    if (nub->isInactive()) return;
    if (nub->getResources() != kIOReturnSuccess) return;
    struct Candidate {
        OSDictionary *table;
        SInt32 score;
    };
    std::vector<Candidate> candidates;
    for (OSDictionary *p : gPersonalities) {
        SInt32 score = numberOf(p->getObject(kIOProbeScoreKey));
        if (matches(nub, p, &score)) candidates.push_back({p, score});
    }
    std::stable_sort(candidates.begin(), candidates.end(), [](const Candidate &a, const Candidate &b) { return a.score > b.score; });
    std::set<std::string> categoriesDone;
    for (Candidate &c : candidates) {
        OSString *category = OSDynamicCast(OSString, c.table->getObject(kIOMatchCategoryKey));
        std::string cat = category ? category->getCStringNoCopy() : "IODefaultMatchCategory";
        if (categoriesDone.count(cat)) continue;
        OSString *className = OSDynamicCast(OSString, c.table->getObject(kIOClassKey));
        if (!className) continue;
        IOService *inst = OSDynamicCast(IOService, OSMetaClass::allocClassWithName(className->getCStringNoCopy()));
        if (!inst) {
            printf("  matching: class %s is not linked into the test bed\n", className->getCStringNoCopy());
            continue;
        }
        OSDictionary *props = OSDictionary::withDictionary(c.table);
        bool ok = inst->init(props);
        props->release();
        if (ok) ok = inst->attach(nub);
        SInt32 score = c.score;
        if (ok) {
            IOService *probed = inst->probe(nub, &score);
            ok = probed != nullptr;
        }
        if (ok) {
            ok = inst->start(nub);
            if (ok) {
                inst->fStarted = true;
                categoriesDone.insert(cat);
                printf("  matching: %s started on %s\n", className->getCStringNoCopy(), nub->getName());
            } else {
                printf("  matching: %s failed to start on %s\n", className->getCStringNoCopy(), nub->getName());
            }
        }
        if (!ok) inst->detach(nub);
        inst->release();
    }
}

void runJobs()
{
    while (!gJobs.empty()) {
        IOService *nub = gJobs.front();
        gJobs.pop_front();
        matchNub(nub);
        nub->release();
    }
}

/* IOPCIBridge::pciMatchNub (IOPCIBridge.cpp:4524) with matchKeys (4490): IOPCIMatch
   against device/vendor then subsystem, IOPCIPrimaryMatch, IOPCISecondaryMatch,
   IOPCIClassMatch (mask 0xffffff00 on the revision/class dword), each from
   savedConfig; a primary-id match scores 1000 (non-ACPI builds only). */
static bool matchKeys(IOPCIDevice *nub, const char *keys, uint32_t defaultMask, uint8_t regNum)
{
    const char *next;
    bool found = false;
    do {
        uint64_t value = strtoul(keys, (char **)&next, 16);
        if (next == keys) break;
        while (*next == ' ') next++;
        uint64_t mask = defaultMask;
        if (*next == '&') mask = strtoul(next + 1, (char **)&next, 16);
        uint32_t reg = nub->savedConfig ? nub->savedConfig[regNum >> 2] : 0xffffffff;
        found = (value & mask) == (reg & mask);
        keys = next;
    } while (!found);
    return found;
}
bool pciMatchNub(IOPCIDevice *nub, OSDictionary *table, SInt32 *)
{
    struct Keys {
        const char *name;
        uint8_t regs[4];
        uint32_t mask;
    };
    static const Keys keys[] = {{"IOPCIMatch", {kIOPCIConfigVendorID | 1, kIOPCIConfigSubSystemVendorID}, 0xffffffff},
                                {"IOPCIPrimaryMatch", {kIOPCIConfigVendorID}, 0xffffffff},
                                {"IOPCISecondaryMatch", {kIOPCIConfigSubSystemVendorID}, 0xffffffff},
                                {"IOPCIClassMatch", {kIOPCIConfigRevisionID}, 0xffffff00}};
    bool match = true;
    for (const Keys &k : keys) {
        if (!match) break;
        OSString *prop = OSDynamicCast(OSString, table->getObject(k.name));
        if (!prop) continue;
        match = false;
        for (int i = 0; !match && i < 4; i++) {
            uint8_t regNum = k.regs[i];
            match = matchKeys(nub, prop->getCStringNoCopy(), k.mask, regNum & 0xfc);
            if (0 == (1 & regNum)) break;
        }
    }
    return match;
}

/* ---- the platform's PCI root: Linux enumerated the root bus; its config space is
   reached through sysfs, its BARs are where Linux put them. ------------------ */

class TestbedRootBridge : public IOPCIHostBridge {
    OSDeclareDefaultStructors(TestbedRootBridge)
public:
    std::map<UInt32, hw::Function> functions; /* by bus/dev/fn bits */
    const hw::Function *lookup(IOPCIAddressSpace space)
    {
        IOPCIAddressSpace key;
        key.bits = 0;
        key.s.busNum = space.s.busNum;
        key.s.deviceNum = space.s.deviceNum;
        key.s.functionNum = space.s.functionNum;
        auto it = functions.find(key.bits);
        return it == functions.end() ? nullptr : &it->second;
    }
    template <typename T> T read(IOPCIAddressSpace space, UInt8 offset)
    {
        T value = (T)~0ULL;
        const hw::Function *f = lookup(space);
        if (f) hw::configRead(*f, (space.es.registerNumExtended << 8) | offset, &value, sizeof(T));
        return value;
    }
    template <typename T> void write(IOPCIAddressSpace space, UInt8 offset, T value)
    {
        const hw::Function *f = lookup(space);
        if (f) hw::configWrite(*f, (space.es.registerNumExtended << 8) | offset, &value, sizeof(T));
    }
    UInt32 configRead32(IOPCIAddressSpace s, UInt8 o) override { return read<UInt32>(s, o); }
    void configWrite32(IOPCIAddressSpace s, UInt8 o, UInt32 d) override { write<UInt32>(s, o, d); }
    UInt16 configRead16(IOPCIAddressSpace s, UInt8 o) override { return read<UInt16>(s, o); }
    void configWrite16(IOPCIAddressSpace s, UInt8 o, UInt16 d) override { write<UInt16>(s, o, d); }
    UInt8 configRead8(IOPCIAddressSpace s, UInt8 o) override { return read<UInt8>(s, o); }
    void configWrite8(IOPCIAddressSpace s, UInt8 o, UInt8 d) override { write<UInt8>(s, o, d); }
};
OSDefineMetaClassAndStructors(TestbedRootBridge, IOPCIHostBridge)

static TestbedRootBridge *gRoot;

bool start()
{
    if (!hw::doorbellInit()) {
        printf("test bed: cannot pin the doorbell page (run as root?)\n");
        return false;
    }
    gPlatform = new TestbedPlatform;
    gPlatform->init();
    gPlatform->setName("TestbedPlatform");
    gMessaged = new IOPCIMessagedInterruptController;
    gMessaged->init(kVectorCount, kVectorBase);
    gPlatform->registerInterruptController(const_cast<OSSymbol *>(gMessaged->copyName()), gMessaged);
    gIOAPIC = new TestbedIOAPIC;
    gIOAPIC->initWithVectors(24);
    gIOAPIC->setName("io-apic-0");
    gPlatform->registerInterruptController(const_cast<OSSymbol *>(gIOAPIC->copyName()), gIOAPIC);
    gRoot = new TestbedRootBridge;
    gRoot->init();
    gRoot->setName("PCI0");
    gRoot->bridgeData = sharedBridgeData();
    gRoot->configure(gPlatform);
    gRoot->attach(gPlatform);
    gRoot->fStarted = true;
    return true;
}

IOPCIDevice *rootNub(const hw::Function &f)
{
    unsigned domain, bus, dev, fn;
    if (sscanf(f.bdf.c_str(), "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4) return nullptr;
    IOPCIAddressSpace space;
    space.bits = 0;
    space.s.busNum = bus;
    space.s.deviceNum = dev;
    space.s.functionNum = fn;
    gRoot->functions[space.bits] = f;
    OSDictionary *props = OSDictionary::withCapacity(8);
    uint32_t vendor = f.vendor, device = f.device, classCode = f.classCode;
    OSData *d = OSData::withBytes(&vendor, 4);
    props->setObject("vendor-id", d);
    d->release();
    d = OSData::withBytes(&device, 4);
    props->setObject("device-id", d);
    d->release();
    d = OSData::withBytes(&classCode, 4);
    props->setObject("class-code", d);
    d->release();
    uint32_t reg[5] = {space.bits, 0, 0, 0, 0};
    d = OSData::withBytes(reg, sizeof(reg));
    props->setObject("reg", d);
    d->release();
    OSData *assigned = OSData::withCapacity(64);
    for (int i = 0; i < 6; i++) {
        if (!f.barLength[i] || !(f.barFlags[i] & 0x200)) continue;
        IOPCIAddressSpace hi = space;
        hi.s.registerNum = (UInt8)(kIOPCIConfigBaseAddress0 + 4 * i);
        hi.s.space = (f.barFlags[i] & 0x100000 /* IORESOURCE_MEM_64 */) ? kIOPCI64BitMemorySpace : kIOPCI32BitMemorySpace;
        uint32_t cells[5] = {hi.bits, (uint32_t)(f.barStart[i] >> 32), (uint32_t)f.barStart[i], (uint32_t)(f.barLength[i] >> 32), (uint32_t)f.barLength[i]};
        assigned->appendBytes(cells, sizeof(cells));
    }
    props->setObject("assigned-addresses", assigned);
    assigned->release();
    char name[32];
    snprintf(name, sizeof(name), "pci%x,%x", f.vendor, f.device);
    IOPCIDevice *nub = OSTypeAlloc(IOPCIDevice);
    nub->init(props);
    props->release();
    nub->setName(name);
    nub->attachToParent(gPlatform, gIODTPlane);
    gRoot->initializeNub(nub, nub->getPropertyTable());
    IOByteCount capa = 0, msiCapa = 0;
    nub->extendedFindPCICapability(kIOPCIMSICapability, &msiCapa);
    if (!msiCapa && nub->extendedFindPCICapability(kIOPCIMSIXCapability, &capa)) {
        nub->reserved->msiCapability = (uint16_t)capa;
        nub->reserved->msiMode |= kMSIX;
    } else {
        nub->reserved->msiCapability = (uint16_t)msiCapa;
    }
    gRoot->publishNub(nub, 0);
    nub->release();
    return nub;
}

/* ---- IOPCIConfigurator, host-bridge part (IOPCIConfigurator.cpp, 726.0.5) ---- */

}

struct IOPCIConfigEntry {
    IOPCIAddressSpace space;
    uint32_t vendorProduct;
    uint32_t classCode;
    uint8_t headerType;
    IOPCIBridge *hostBridge;
};

namespace tb {

static UInt32 cfg32(IOPCIBridge *hb, IOPCIAddressSpace space, uint32_t offset)
{
    space.es.registerNumExtended = (offset >> 8); /* configRead32(entry, offset), :4652-4673 */
    return hb->configRead32(space, (UInt8)offset);
}
static void cfgw32(IOPCIBridge *hb, IOPCIAddressSpace space, uint32_t offset, UInt32 data)
{
    space.es.registerNumExtended = (offset >> 8);
    hb->configWrite32(space, (UInt8)offset, data);
}

/* addHostBridge (:581-700): a host bridge entry over firstBusNum..lastBusNum whose
   provider must not be an IOPCIDevice (:614), ranges from the bridge's lists;
   bridgeScanBus (:1821): functions 0-7 of devices 0-31, absent = all-ones or 0;
   probeBaseAddressRegister (:2673): write all-ones, read the size mask, restore;
   bridgeAllocateResources (:3631): naturally aligned from the memory ranges; under a
   hypervisor (:628-634) no 64-bit placement, so below 4 GiB; a BAR that does not fit
   stays unassigned; constructProperties (:846) and the nub (:1570-1600): an
   OSTypeAlloc'd, init()ed IOPCIDevice attached under the provider in the
   device-tree plane. */
IOReturn configuratorAddHostBridge(IOPCIBridge *hb)
{
    IOService *dtNub = hb->getProvider();
    if (OSDynamicCast(IOPCIDevice, dtNub)) panic("!host bridge");
    unsigned first = hb->firstBusNum();
    printf("  configurator: host bridge %s, bus %u-%u, %u memory range(s)\n", hb->getMetaClass()->getClassName(), first,
           hb->lastBusNum(), hb->testbedReserved()->rangeCount[kIOPCIResourceTypeMemory]);
    for (unsigned dev = 0; dev < 32; dev++) {
        bool multi = false;
        for (unsigned fn = 0; fn < 8; fn++) {
            if (fn && !multi) break;
            IOPCIAddressSpace space;
            space.bits = 0;
            space.s.busNum = first;
            space.s.deviceNum = dev;
            space.s.functionNum = fn;
            UInt32 vp = cfg32(hb, space, kIOPCIConfigVendorID);
            if (vp == 0xFFFFFFFF || vp == 0) continue;
            IOPCIConfigEntry *entry = new IOPCIConfigEntry{space, vp, cfg32(hb, space, kIOPCIConfigRevisionID) >> 8, 0, hb};
            entry->headerType = (cfg32(hb, space, kIOPCIConfigCacheLineSize) >> 16) & 0xFF;
            if (!fn) multi = entry->headerType & 0x80;
            printf("  configurator: %02x:%02x.%x %04x:%04x class %06x\n", first, dev, fn, vp & 0xFFFF, vp >> 16, entry->classCode);
            OSData *assigned = OSData::withCapacity(64);
            for (unsigned reg = kIOPCIConfigBaseAddress0; reg <= kIOPCIConfigBaseAddress5; reg += 4) {
                UInt32 saved = cfg32(hb, space, reg);
                cfgw32(hb, space, reg, 0xFFFFFFFF);
                UInt32 value = cfg32(hb, space, reg);
                cfgw32(hb, space, reg, saved);
                if (value == 0 || (value & 1)) continue; /* absent, or I/O space (no I/O ranges) */
                bool is64 = (value & 6) == 4;
                uint64_t mask = value & ~0xFULL;
                if (is64) {
                    UInt32 savedHi = cfg32(hb, space, reg + 4);
                    cfgw32(hb, space, reg + 4, 0xFFFFFFFF);
                    mask |= (uint64_t)cfg32(hb, space, reg + 4) << 32;
                    cfgw32(hb, space, reg + 4, savedHi);
                } else {
                    mask |= 0xFFFFFFFF00000000ULL;
                }
                uint64_t size = ~mask + 1;
                uint64_t address = 0;
                bool placed = false;
                for (unsigned r = 0; r < hb->testbedReserved()->rangeCount[kIOPCIResourceTypeMemory] && !placed; r++) {
                    IOPCIBridge::RangeEntry &range = hb->testbedReserved()->rangeLists[kIOPCIResourceTypeMemory][r];
                    uint64_t at = (range.next + size - 1) & ~(size - 1);
                    if (at + size <= range.start + range.length && at + size <= (1ULL << 32)) {
                        address = at;
                        range.next = at + size;
                        placed = true;
                    }
                }
                if (!placed) {
                    printf("  configurator: BAR at %#x (%llu bytes) left unassigned\n", reg, (unsigned long long)size);
                } else {
                    cfgw32(hb, space, reg, (UInt32)address);
                    if (is64) cfgw32(hb, space, reg + 4, (UInt32)(address >> 32));
                    IOPCIAddressSpace hi = space;
                    hi.s.registerNum = (UInt8)reg;
                    hi.s.space = is64 ? kIOPCI64BitMemorySpace : kIOPCI32BitMemorySpace;
                    uint32_t cells[5] = {hi.bits, (uint32_t)(address >> 32), (uint32_t)address, (uint32_t)(size >> 32), (uint32_t)size};
                    assigned->appendBytes(cells, sizeof(cells));
                    printf("  configurator:   BAR %#x -> %#llx (%llu KiB)\n", reg, (unsigned long long)address, (unsigned long long)(size >> 10));
                }
                if (is64) reg += 4;
            }
            OSDictionary *props = OSDictionary::withCapacity(8);
            uint32_t vendor = vp & 0xFFFF, device = vp >> 16, classCode = entry->classCode;
            OSData *d = OSData::withBytes(&vendor, 4);
            props->setObject("vendor-id", d);
            d->release();
            d = OSData::withBytes(&device, 4);
            props->setObject("device-id", d);
            d->release();
            d = OSData::withBytes(&classCode, 4);
            props->setObject("class-code", d);
            d->release();
            uint32_t regCells[5] = {space.bits, 0, 0, 0, 0};
            d = OSData::withBytes(regCells, sizeof(regCells));
            props->setObject("reg", d);
            d->release();
            props->setObject("assigned-addresses", assigned);
            assigned->release();
            char name[32];
            snprintf(name, sizeof(name), "pci%x,%x", vendor, device);
            d = OSData::withBytes(name, (unsigned)strlen(name) + 1);
            props->setObject("name", d);
            d->release();
            IOPCIDevice *nub = OSTypeAlloc(IOPCIDevice);
            bool ok = nub->init(props) && nub->attachToParent(dtNub, gIODTPlane);
            props->release();
            nub->release();
            if (!ok) continue;
            nub->reserved->configEntry = entry;
            nub->reserved->hostBridge = OSDynamicCast(IOPCIHostBridge, hb);
        }
    }
    return kIOReturnSuccess;
}
}
