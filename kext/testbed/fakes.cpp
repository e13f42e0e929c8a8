/*
 * libkern and IOKit fakes (declared in include/xvpci_fake.h).
 *
 * Each method cites what it transcribes. Tags: xnu-8796.141.3 for
 * iokit/Kernel and libkern; line numbers are from that tag. Where the real
 * method does more than the test bed can (power management, registry
 * planes other than service/device-tree, locking on SMP), the comment says
 * what is left out. The test bed is single-threaded: "interrupt context" is
 * the poll loop (testbed.hpp: tb::poll), the matching thread is the job
 * queue (tb::runJobs).
 */
#include "testbed.hpp"

#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

/* ---- test-bed hooks ------------------------------------------------------ */

[[noreturn]] void xvpci_tb_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "PANIC: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
    _exit(3);
}

/* ---- IOLib (xnu iokit/Kernel/IOLib.cpp) ---------------------------------- */

void IOLog(const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    char line[1024];
    vsnprintf(line, sizeof(line), format, ap);
    va_end(ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    printf("  IOLog: %s\n", line);
    tb::iologLines().push_back(line);
}

void *IOMalloc(size_t size) { return malloc(size ? size : 1); }
void *IOMallocZero(size_t size) { return calloc(1, size ? size : 1); }
void IOFree(void *address, size_t) { free(address); }
void *IOMallocAligned(size_t size, size_t alignment)
{
    void *p = nullptr;
    return posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size) ? nullptr : p;
}
void IOFreeAligned(void *address, size_t) { free(address); }
void IOSleep(unsigned ms) { usleep(ms * 1000); }
void IODelay(unsigned us) { usleep(us); }
void IOPause(unsigned ns) { usleep(ns / 1000 + 1); }
/* Locks: the test bed runs one thread, so locks only check pairing. */
struct IOLockFake {
    int held;
};
IOLock *IOLockAlloc() { return new IOLockFake{0}; }
void IOLockFree(IOLock *lock) { delete lock; }
void IOLockLock(IOLock *lock) { lock->held++; }
void IOLockUnlock(IOLock *lock) { lock->held--; }
bool IOLockTryLock(IOLock *lock) { return lock->held++ == 0; }
IOSimpleLock *IOSimpleLockAlloc() { return new IOLockFake{0}; }
void IOSimpleLockFree(IOSimpleLock *lock) { delete lock; }
void IOSimpleLockLock(IOSimpleLock *lock) { lock->held++; }
void IOSimpleLockUnlock(IOSimpleLock *lock) { lock->held--; }
IOInterruptState IOSimpleLockLockDisableInterrupt(IOSimpleLock *lock) { lock->held++; return 0; }
void IOSimpleLockUnlockEnableInterrupt(IOSimpleLock *lock, IOInterruptState) { lock->held--; }
IORecursiveLock *IORecursiveLockAlloc() { return new IOLockFake{0}; }
void IORecursiveLockFree(IORecursiveLock *lock) { delete lock; }
void IORecursiveLockLock(IORecursiveLock *lock) { lock->held++; }
void IORecursiveLockUnlock(IORecursiveLock *lock) { lock->held--; }
uint64_t mach_absolute_time()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec; /* x86 macOS: 1 tick = 1 ns */
}
void clock_get_uptime(uint64_t *result) { *result = mach_absolute_time(); }
void absolutetime_to_nanoseconds(uint64_t abstime, uint64_t *result) { *result = abstime; }
void nanoseconds_to_absolutetime(uint64_t ns, uint64_t *result) { *result = ns; }
bool PE_parse_boot_argn(const char *, void *, int) { return false; /* no boot-args in the test bed */ }

/* ---- OSMetaClass (xnu libkern/c++/OSMetaClass.cpp) ----------------------- */

static std::map<std::string, const OSMetaClass *> &classRegistry()
{
    static std::map<std::string, const OSMetaClass *> registry;
    return registry;
}

OSMetaClass::OSMetaClass(const char *name, const OSMetaClass *superClass, Factory factory)
    : fName(name), fSuper(superClass), fFactory(factory)
{
    classRegistry()[name] = this; /* OSMetaClass::postModLoad: sAllClassesDict */
}

const OSMetaClass *OSMetaClass::getMetaClassWithName(const char *name)
{
    auto it = classRegistry().find(name);
    return it == classRegistry().end() ? nullptr : it->second;
}

/* OSMetaClass::allocClassWithName (OSMetaClass.cpp): look up, then alloc(). */
OSObject *OSMetaClass::allocClassWithName(const char *name)
{
    const OSMetaClass *meta = getMetaClassWithName(name);
    return meta ? meta->alloc() : nullptr;
}

bool OSMetaClass::isKindOf(const char *name) const
{
    for (const OSMetaClass *m = this; m; m = m->fSuper) {
        if (!strcmp(m->fName, name)) return true;
    }
    return false;
}

/* OSMetaClassBase::metaCast(const char *): walks the superclass chain. */
bool OSMetaClassBase::metaCast(const char *name) const { return getMetaClass()->isKindOf(name); }

const OSMetaClass OSObject::gMetaClass("OSObject", nullptr, nullptr);
const OSMetaClass *const OSObject::metaClass = &OSObject::gMetaClass;
const OSMetaClass *OSObject::getMetaClass() const { return &gMetaClass; }
OSObject::OSObject() : fRetain(1) {}
void *OSObject::operator new(size_t size) { return calloc(1, size); }
void OSObject::operator delete(void *mem, size_t) { ::free(mem); }
OSObject::~OSObject() {}
bool OSObject::init() { return true; }
/* OSObject::free (OSObject.cpp): deletes the object. */
void OSObject::free() { delete this; }
void OSObject::retain() const { fRetain++; }
/* OSObject::release / taggedRelease: free() when the count reaches zero. */
void OSObject::release() const
{
    if (--fRetain == 0) const_cast<OSObject *>(this)->free();
}

/* ---- containers ---------------------------------------------------------- */

OSDefineMetaClassAndStructors(OSString, OSObject)
OSString *OSString::withCString(const char *cString)
{
    OSString *s = new OSString;
    s->fText = strdup(cString ? cString : "");
    return s;
}
bool OSString::isEqualTo(const char *cString) const { return cString && !strcmp(fText, cString); }
bool OSString::isEqualTo(const OSMetaClassBase *other) const
{
    const OSString *s = OSDynamicCast(OSString, other);
    return s && !strcmp(fText, s->fText);
}
void OSString::free()
{
    ::free(fText);
    fText = nullptr;
    OSObject::free();
}

OSDefineMetaClassAndStructors(OSSymbol, OSString)
/* OSSymbol::withCString (OSSymbol.cpp): one interned, immortal symbol per string. */
const OSSymbol *OSSymbol::withCString(const char *cString)
{
    static std::map<std::string, OSSymbol *> pool;
    auto it = pool.find(cString);
    if (it != pool.end()) {
        it->second->retain();
        return it->second;
    }
    OSSymbol *s = new OSSymbol;
    s->fText = strdup(cString);
    s->retain(); /* the pool's reference */
    pool[cString] = s;
    return s;
}

OSDefineMetaClassAndStructors(OSBoolean, OSObject)
static OSBoolean *makeBoolean(bool value)
{
    OSBoolean *b = new OSBoolean;
    b->fValue = value;
    b->retain();
    return b;
}
static OSBoolean *gTrue = makeBoolean(true);
static OSBoolean *gFalse = makeBoolean(false);
OSBoolean *const &kOSBooleanTrue = gTrue;
OSBoolean *const &kOSBooleanFalse = gFalse;
OSBoolean *OSBoolean::withBoolean(bool value)
{
    OSBoolean *b = value ? gTrue : gFalse;
    b->retain();
    return b;
}

OSDefineMetaClassAndStructors(OSNumber, OSObject)
OSNumber *OSNumber::withNumber(unsigned long long value, unsigned numberOfBits)
{
    OSNumber *n = new OSNumber;
    n->fBits = numberOfBits;
    n->fValue = numberOfBits >= 64 ? value : value & ((1ULL << numberOfBits) - 1);
    return n;
}
OSNumber *OSNumber::withNumber(const char *value, unsigned numberOfBits)
{
    return withNumber(strtoull(value, nullptr, 0), numberOfBits);
}
bool OSNumber::isEqualTo(const OSMetaClassBase *other) const
{
    const OSNumber *n = OSDynamicCast(OSNumber, other);
    return n && n->fValue == fValue;
}

OSDefineMetaClassAndStructors(OSData, OSObject)
OSData *OSData::withBytes(const void *bytes, unsigned numBytes)
{
    OSData *d = new OSData;
    d->appendBytes(bytes, numBytes);
    return d;
}
OSData *OSData::withCapacity(unsigned) { return new OSData; }
const void *OSData::getBytesNoCopy(unsigned start, unsigned numBytes) const
{
    return start + numBytes <= fLength ? fBytes + start : nullptr;
}
bool OSData::appendBytes(const void *bytes, unsigned numBytes)
{
    fBytes = static_cast<unsigned char *>(realloc(fBytes, fLength + numBytes + 1));
    if (bytes) memcpy(fBytes + fLength, bytes, numBytes);
    else memset(fBytes + fLength, 0, numBytes);
    fLength += numBytes;
    return true;
}
bool OSData::isEqualTo(const void *bytes, unsigned numBytes) const
{
    return numBytes == fLength && !memcmp(bytes, fBytes, numBytes);
}
bool OSData::isEqualTo(const OSMetaClassBase *other) const
{
    const OSData *d = OSDynamicCast(OSData, other);
    return d && isEqualTo(d->fBytes, d->fLength);
}
void OSData::free()
{
    ::free(fBytes);
    OSObject::free();
}

OSDefineMetaClassAndAbstractStructors(OSCollection, OSObject)

OSDefineMetaClassAndStructors(OSArray, OSCollection)
OSArray *OSArray::withCapacity(unsigned capacity)
{
    OSArray *a = new OSArray;
    a->fCapacity = capacity ? capacity : 1;
    a->fItems = static_cast<OSObject **>(calloc(a->fCapacity, sizeof(OSObject *)));
    return a;
}
OSArray *OSArray::withArray(const OSArray *array, unsigned capacity)
{
    OSArray *a = withCapacity(capacity > array->fCount ? capacity : array->fCount);
    a->merge(array);
    return a;
}
OSArray *OSArray::withObjects(const OSObject *objects[], unsigned count, unsigned capacity)
{
    OSArray *a = withCapacity(capacity > count ? capacity : count);
    for (unsigned i = 0; i < count; i++) a->setObject(objects[i]);
    return a;
}
/* OSArray::setObject (OSArray.cpp): retains, grows as needed. */
bool OSArray::setObject(unsigned index, const OSMetaClassBase *anObject)
{
    const OSObject *object = dynamic_cast<const OSObject *>(anObject);
    if (!object || index > fCount) return false;
    if (fCount == fCapacity) {
        fCapacity = fCapacity * 2 + 4;
        fItems = static_cast<OSObject **>(realloc(fItems, fCapacity * sizeof(OSObject *)));
    }
    memmove(&fItems[index + 1], &fItems[index], (fCount - index) * sizeof(OSObject *));
    object->retain();
    fItems[index] = const_cast<OSObject *>(object);
    fCount++;
    return true;
}
bool OSArray::setObject(const OSMetaClassBase *anObject) { return setObject(fCount, anObject); }
bool OSArray::replaceObject(unsigned index, const OSMetaClassBase *anObject)
{
    const OSObject *object = dynamic_cast<const OSObject *>(anObject);
    if (!object || index >= fCount) return false;
    object->retain();
    fItems[index]->release();
    fItems[index] = const_cast<OSObject *>(object);
    return true;
}
void OSArray::removeObject(unsigned index)
{
    if (index >= fCount) return;
    OSObject *old = fItems[index];
    memmove(&fItems[index], &fItems[index + 1], (fCount - index - 1) * sizeof(OSObject *));
    fCount--;
    old->release();
}
void OSArray::flushCollection()
{
    while (fCount) removeObject(fCount - 1);
}
unsigned OSArray::getNextIndexOfObject(const OSMetaClassBase *anObject, unsigned index) const
{
    for (unsigned i = index; i < fCount; i++) {
        if (fItems[i] == anObject) return i;
    }
    return (unsigned)-1;
}
bool OSArray::merge(const OSArray *otherArray)
{
    for (unsigned i = 0; i < otherArray->fCount; i++) setObject(otherArray->fItems[i]);
    return true;
}
void OSArray::free()
{
    flushCollection();
    ::free(fItems);
    OSObject::free();
}

OSDefineMetaClassAndStructors(OSDictionary, OSCollection)
OSDictionary *OSDictionary::withCapacity(unsigned) { return new OSDictionary; }
OSDictionary *OSDictionary::withDictionary(const OSDictionary *dict, unsigned)
{
    OSDictionary *d = new OSDictionary;
    d->merge(dict);
    return d;
}
OSObject *OSDictionary::getObject(const char *aKey) const
{
    for (unsigned i = 0; i < fCount; i++) {
        if (fKeys[i]->isEqualTo(aKey)) return fValues[i];
    }
    return nullptr;
}
/* OSDictionary::setObject (OSDictionary.cpp): replaces an existing key, retains. */
bool OSDictionary::setObject(const char *aKey, const OSMetaClassBase *anObject)
{
    const OSObject *object = dynamic_cast<const OSObject *>(anObject);
    if (!object || !aKey) return false;
    object->retain();
    for (unsigned i = 0; i < fCount; i++) {
        if (fKeys[i]->isEqualTo(aKey)) {
            fValues[i]->release();
            fValues[i] = const_cast<OSObject *>(object);
            return true;
        }
    }
    if (fCount == fCapacity) {
        fCapacity = fCapacity * 2 + 4;
        fKeys = static_cast<const OSSymbol **>(realloc(fKeys, fCapacity * sizeof(OSSymbol *)));
        fValues = static_cast<OSObject **>(realloc(fValues, fCapacity * sizeof(OSObject *)));
    }
    fKeys[fCount] = OSSymbol::withCString(aKey);
    fValues[fCount] = const_cast<OSObject *>(object);
    fCount++;
    return true;
}
void OSDictionary::removeObject(const char *aKey)
{
    for (unsigned i = 0; i < fCount; i++) {
        if (fKeys[i]->isEqualTo(aKey)) {
            OSObject *old = fValues[i];
            fKeys[i]->release();
            memmove(&fKeys[i], &fKeys[i + 1], (fCount - i - 1) * sizeof(OSSymbol *));
            memmove(&fValues[i], &fValues[i + 1], (fCount - i - 1) * sizeof(OSObject *));
            fCount--;
            old->release();
            return;
        }
    }
}
bool OSDictionary::merge(const OSDictionary *other)
{
    for (unsigned i = 0; other && i < other->fCount; i++) setObject(other->fKeys[i]->getCStringNoCopy(), other->fValues[i]);
    return true;
}
void OSDictionary::free()
{
    while (fCount) removeObject(fKeys[fCount - 1]->getCStringNoCopy());
    ::free(fKeys);
    ::free(fValues);
    OSObject::free();
}

OSDefineMetaClassAndStructors(OSIterator, OSObject)
OSObject *OSIterator::getNextObject() { return fItems ? fItems->getObject(fNext++) : nullptr; }
void OSIterator::free()
{
    OSSafeReleaseNULL(fItems);
    OSObject::free();
}

/* ---- registry (xnu iokit/Kernel/IORegistryEntry.cpp) --------------------- */

static const IORegistryPlane gServicePlaneStorage{"IOService"};
static const IORegistryPlane gDTPlaneStorage{"IODeviceTree"};
static const IORegistryPlane gPowerPlaneStorage{"IOPower"};
const IORegistryPlane *gIOServicePlane = &gServicePlaneStorage;
const IORegistryPlane *gIODTPlane = &gDTPlaneStorage;
const IORegistryPlane *gIOPowerPlane = &gPowerPlaneStorage;
const OSSymbol *gIODeviceMemoryKey = OSSymbol::withCString("IODeviceMemory");
const OSSymbol *gIOInterruptControllersKey = OSSymbol::withCString("IOInterruptControllers");
const OSSymbol *gIOInterruptSpecifiersKey = OSSymbol::withCString("IOInterruptSpecifiers");
const OSSymbol *gIOPublishNotification = OSSymbol::withCString("IOServicePublish");
const OSSymbol *gIOMatchedNotification = OSSymbol::withCString("IOServiceMatched");
const OSSymbol *gIOFirstPublishNotification = OSSymbol::withCString("IOServiceFirstPublish");
const OSSymbol *gIOTerminatedNotification = OSSymbol::withCString("IOServiceTerminate");
const OSSymbol *gIOBusyInterest = OSSymbol::withCString("IOBusyInterest");
const OSSymbol *gIOGeneralInterest = OSSymbol::withCString("IOGeneralInterest");
const OSSymbol *gIONameMatchKey = OSSymbol::withCString("IONameMatch");
const OSSymbol *gIOPlatformGetMessagedInterruptAddressKey = OSSymbol::withCString("GetMessagedInterruptAddress");
const OSSymbol *gIOPlatformGetMessagedInterruptControllerKey = OSSymbol::withCString("GetMessagedInterruptController");
const OSSymbol *gIOPlatformResolvePCIInterruptKey = OSSymbol::withCString("ResolvePCIInterrupt");
const OSSymbol *gIOPlatformSetDeviceInterruptsKey = OSSymbol::withCString("SetDeviceInterrupts");
const OSSymbol *gIOPlatformFreeDeviceResourcesKey = OSSymbol::withCString("IOPlatformFreeDeviceResources");
const OSSymbol *gIOPCIDeviceChangedKey = OSSymbol::withCString("IOPCIDeviceChanged");

struct IORegistryEntry::Links {
    std::map<const IORegistryPlane *, std::vector<IORegistryEntry *>> parents, children;
    std::string name, location;
};

OSDefineMetaClassAndStructors(IORegistryEntry, OSObject)
/* IORegistryEntry::init(OSDictionary *) (IORegistryEntry.cpp): takes the table as the property table. */
bool IORegistryEntry::init(OSDictionary *dictionary)
{
    static uint64_t nextID = 0x100000100;
    if (!OSObject::init()) return false;
    fLinks = new Links;
    fID = nextID++;
    if (dictionary) {
        dictionary->retain();
        fProperties = dictionary;
    } else {
        fProperties = OSDictionary::withCapacity(16);
    }
    return true;
}
void IORegistryEntry::free()
{
    OSSafeReleaseNULL(fProperties);
    delete fLinks;
    fLinks = nullptr;
    OSObject::free();
}
OSObject *IORegistryEntry::getProperty(const char *aKey) const { return fProperties ? fProperties->getObject(aKey) : nullptr; }
OSObject *IORegistryEntry::copyProperty(const char *aKey) const
{
    OSObject *o = getProperty(aKey);
    if (o) o->retain();
    return o;
}
bool IORegistryEntry::setProperty(const char *aKey, OSObject *anObject) { return fProperties && fProperties->setObject(aKey, anObject); }
bool IORegistryEntry::setProperty(const char *aKey, const char *aString)
{
    OSString *s = OSString::withCString(aString);
    bool ok = setProperty(aKey, s);
    s->release();
    return ok;
}
bool IORegistryEntry::setProperty(const char *aKey, bool aBoolean) { return setProperty(aKey, aBoolean ? kOSBooleanTrue : kOSBooleanFalse); }
bool IORegistryEntry::setProperty(const char *aKey, unsigned long long aValue, unsigned int aNumberOfBits)
{
    OSNumber *n = OSNumber::withNumber(aValue, aNumberOfBits);
    bool ok = setProperty(aKey, n);
    n->release();
    return ok;
}
bool IORegistryEntry::setProperty(const char *aKey, void *bytes, unsigned int length)
{
    OSData *d = OSData::withBytes(bytes, length);
    bool ok = setProperty(aKey, d);
    d->release();
    return ok;
}
void IORegistryEntry::removeProperty(const char *aKey)
{
    if (fProperties) fProperties->removeObject(aKey);
}
OSDictionary *IORegistryEntry::dictionaryWithProperties() const { return OSDictionary::withDictionary(fProperties); }
/* IORegistryEntry::getName: the name set, else IOName/name properties, else the class name. */
const char *IORegistryEntry::getName(const IORegistryPlane *) const
{
    if (fLinks && !fLinks->name.empty()) return fLinks->name.c_str();
    if (OSString *s = OSDynamicCast(OSString, getProperty(kIONameKey))) return s->getCStringNoCopy();
    if (OSData *d = OSDynamicCast(OSData, getProperty("name"))) return static_cast<const char *>(d->getBytesNoCopy());
    return getMetaClass()->getClassName();
}
const OSSymbol *IORegistryEntry::copyName(const IORegistryPlane *plane) const { return OSSymbol::withCString(getName(plane)); }
void IORegistryEntry::setName(const char *name, const IORegistryPlane *) { fLinks->name = name; }
void IORegistryEntry::setLocation(const char *location, const IORegistryPlane *) { fLinks->location = location; }
const char *IORegistryEntry::getLocation(const IORegistryPlane *) const { return fLinks->location.c_str(); }
/* attachToParent: links both ways in the plane and retains each other. */
bool IORegistryEntry::attachToParent(IORegistryEntry *parent, const IORegistryPlane *plane)
{
    if (!parent || !fLinks || !parent->fLinks) return false;
    fLinks->parents[plane].push_back(parent);
    parent->fLinks->children[plane].push_back(this);
    retain();
    parent->retain();
    return true;
}
void IORegistryEntry::detachFromParent(IORegistryEntry *parent, const IORegistryPlane *plane)
{
    auto &ps = fLinks->parents[plane];
    for (auto it = ps.begin(); it != ps.end(); ++it) {
        if (*it == parent) {
            ps.erase(it);
            auto &cs = parent->fLinks->children[plane];
            for (auto c = cs.begin(); c != cs.end(); ++c) {
                if (*c == this) {
                    cs.erase(c);
                    break;
                }
            }
            parent->release();
            release();
            return;
        }
    }
}
IORegistryEntry *IORegistryEntry::getParentEntry(const IORegistryPlane *plane) const
{
    auto it = fLinks->parents.find(plane);
    return it == fLinks->parents.end() || it->second.empty() ? nullptr : it->second.front();
}
IORegistryEntry *IORegistryEntry::getChildEntry(const IORegistryPlane *plane) const
{
    auto it = fLinks->children.find(plane);
    return it == fLinks->children.end() || it->second.empty() ? nullptr : it->second.front();
}
OSArray *IORegistryEntry::childrenIn(const IORegistryPlane *plane) const
{
    OSArray *a = OSArray::withCapacity(4);
    auto it = fLinks->children.find(plane);
    if (it != fLinks->children.end()) {
        for (IORegistryEntry *e : it->second) a->setObject(e);
    }
    return a;
}
OSIterator *IORegistryEntry::getChildIterator(const IORegistryPlane *plane) const
{
    OSIterator *i = new OSIterator;
    i->fItems = childrenIn(plane);
    return i;
}
bool IORegistryEntry::inPlane(const IORegistryPlane *plane) const
{
    if (!fLinks) return false;
    auto p = fLinks->parents.find(plane);
    auto c = fLinks->children.find(plane);
    return (p != fLinks->parents.end() && !p->second.empty()) || (c != fLinks->children.end() && !c->second.empty());
}
void IORegistryEntry::detachAll(const IORegistryPlane *plane)
{
    while (IORegistryEntry *p = getParentEntry(plane)) detachFromParent(p, plane);
}

/* ---- IOService (xnu iokit/Kernel/IOService.cpp) -------------------------- */

OSDefineMetaClassAndStructors(IOService, IORegistryEntry)
bool IOService::init(OSDictionary *dictionary) { return IORegistryEntry::init(dictionary); }
void IOService::free() { IORegistryEntry::free(); }
/* IOService::probe: returns this (IOService.cpp). */
IOService *IOService::probe(IOService *, SInt32 *) { return this; }
/* IOService::start: true; IOService::stop: nothing (IOService.cpp). */
bool IOService::start(IOService *) { return true; }
void IOService::stop(IOService *) {}
/* IOService::attach: attachToParent(provider, gIOServicePlane) (IOService.cpp). */
bool IOService::attach(IOService *provider)
{
    if (!provider) return false;
    bool ok = attachToParent(provider, gIOServicePlane);
    if (ok) fProvider = provider;
    return ok;
}
void IOService::detach(IOService *provider)
{
    retain(); /* the link may hold the last reference */
    detachFromParent(provider, gIOServicePlane);
    if (fProvider == provider) fProvider = OSDynamicCast(IOService, getParentEntry(gIOServicePlane));
    release();
}
IOService *IOService::getProvider() const { return OSDynamicCast(IOService, getParentEntry(gIOServicePlane)); }
IOService *IOService::getClient() const { return OSDynamicCast(IOService, getChildEntry(gIOServicePlane)); }
OSIterator *IOService::getClientIterator() const { return getChildIterator(gIOServicePlane); }
OSIterator *IOService::getProviderIterator() const
{
    OSIterator *i = new OSIterator;
    i->fItems = OSArray::withCapacity(1);
    if (IORegistryEntry *p = getParentEntry(gIOServicePlane)) i->fItems->setObject(p);
    return i;
}
bool IOService::isOpen(const IOService *) const { return false; }
bool IOService::open(IOService *, IOOptionBits, void *) { return true; }
void IOService::close(IOService *, IOOptionBits) {}
IOWorkLoop *IOService::getWorkLoop() const
{
    IOService *p = getProvider();
    return p ? p->getWorkLoop() : nullptr; /* IOService::getWorkLoop: the provider's */
}
/* IOService::registerService (IOService.cpp): marks the service registered and starts
   matching on the matching thread (asynchronous unless kIOServiceSynchronous). */
void IOService::registerService(IOOptionBits options)
{
    fRegistered = true;
    tb::queueMatching(this, options);
}
/* IOService::terminate: marks inactive, then stop/detach of clients then self
   (IOService::terminatePhase1/2, scheduleStop). The test bed runs them at once. */
bool IOService::terminate(IOOptionBits options)
{
    if (fInactive) return true;
    fInactive = true;
    retain(); /* kept alive until its own detach has run (xnu: the termination thread holds it) */
    OSArray *clients = childrenIn(gIOServicePlane);
    for (unsigned i = 0; i < clients->getCount(); i++) {
        if (IOService *c = OSDynamicCast(IOService, clients->getObject(i))) c->terminate(options);
    }
    clients->release();
    IOService *provider = getProvider();
    if (fStarted) {
        stop(provider);
        fStarted = false;
    }
    if (provider) detach(provider);
    release();
    return true;
}
bool IOService::finalize(IOOptionBits) { return true; }
bool IOService::willTerminate(IOService *, IOOptionBits) { return true; }
bool IOService::didTerminate(IOService *, IOOptionBits, bool *defer)
{
    if (defer) *defer = false;
    return true;
}
/* IOService::matchPropertyTable(table, score): true; families refine it. */
bool IOService::matchPropertyTable(OSDictionary *, SInt32 *) { return true; }
bool IOService::matchPropertyTable(OSDictionary *table)
{
    SInt32 score = 0;
    return matchPropertyTable(table, &score);
}
IOReturn IOService::getResources() { return kIOReturnSuccess; }
IOReturn IOService::message(UInt32, IOService *, void *) { return kIOReturnUnsupported; }
IOReturn IOService::messageClients(UInt32 type, void *argument, size_t)
{
    OSArray *clients = childrenIn(gIOServicePlane);
    for (unsigned i = 0; i < clients->getCount(); i++) {
        if (IOService *c = OSDynamicCast(IOService, clients->getObject(i))) c->message(type, this, argument);
    }
    clients->release();
    return kIOReturnSuccess;
}
/* IOService::callPlatformFunction (IOService.cpp): pass to the provider; the root
   of the service plane is the platform expert. */
IOReturn IOService::callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *p1, void *p2, void *p3, void *p4)
{
    IOService *provider = getProvider();
    if (provider) {
        tb::recordPlatformCall(provider, functionName->getCStringNoCopy());
        return provider->callPlatformFunction(functionName, waitForFunction, p1, p2, p3, p4);
    }
    return getPlatform()->callPlatformFunction(functionName, waitForFunction, p1, p2, p3, p4);
}
IOReturn IOService::callPlatformFunction(const char *functionName, bool waitForFunction, void *p1, void *p2, void *p3, void *p4)
{
    const OSSymbol *sym = OSSymbol::withCString(functionName);
    IOReturn r = callPlatformFunction(sym, waitForFunction, p1, p2, p3, p4);
    sym->release();
    return r;
}
IONotifier *IOService::addMatchingNotification(const OSSymbol *, OSDictionary *, IOServiceMatchingNotificationHandler, void *, void *, SInt32)
{
    return new IONotifier; /* notifications are not delivered in the test bed */
}
IONotifier *IOService::registerInterest(const OSSymbol *, IOServiceInterestHandler, void *, void *) { return new IONotifier; }
OSDictionary *IOService::serviceMatching(const char *className, OSDictionary *table)
{
    if (!table) table = OSDictionary::withCapacity(2);
    OSString *s = OSString::withCString(className);
    table->setObject(kIOProviderClassKey, s);
    s->release();
    return table;
}
OSDictionary *IOService::nameMatching(const char *name, OSDictionary *table)
{
    if (!table) table = OSDictionary::withCapacity(2);
    OSString *s = OSString::withCString(name);
    table->setObject(kIONameMatchKey, s);
    s->release();
    return table;
}
IOService *IOService::waitForMatchingService(OSDictionary *, uint64_t) { return nullptr; }
OSIterator *IOService::getMatchingServices(OSDictionary *) { return nullptr; }
IOService *IOService::getResourceService() { return getPlatform(); }
void IOService::adjustBusy(SInt32 delta) { fBusy += delta; }

/* Device memory (IOService.cpp): the IODeviceMemory property. */
OSArray *IOService::getDeviceMemory() { return OSDynamicCast(OSArray, getProperty(gIODeviceMemoryKey)); }
void IOService::setDeviceMemory(OSArray *array) { setProperty(gIODeviceMemoryKey, array); }
unsigned int IOService::getDeviceMemoryCount()
{
    OSArray *a = getDeviceMemory();
    return a ? a->getCount() : 0;
}
IODeviceMemory *IOService::getDeviceMemoryWithIndex(unsigned int index)
{
    OSArray *a = getDeviceMemory();
    return a ? OSDynamicCast(IODeviceMemory, a->getObject(index)) : nullptr;
}
IOMemoryMap *IOService::mapDeviceMemoryWithIndex(unsigned int index, IOOptionBits options)
{
    IODeviceMemory *range = getDeviceMemoryWithIndex(index);
    return range ? range->map(options) : nullptr;
}

/* Interrupts (IOService.cpp, lookupInterrupt / registerInterrupt and friends):
   the nub's IOInterruptControllers[source] names a controller registered with
   the platform; IOInterruptSpecifiers[source] holds the vector number. */
static IOInterruptController *lookupInterrupt(IOService *nub, int source, int *vector)
{
    OSArray *controllers = OSDynamicCast(OSArray, nub->getProperty(gIOInterruptControllersKey));
    OSArray *specifiers = OSDynamicCast(OSArray, nub->getProperty(gIOInterruptSpecifiersKey));
    if (!controllers || !specifiers || source < 0) return nullptr;
    OSSymbol *name = OSDynamicCast(OSSymbol, controllers->getObject(source));
    OSData *spec = OSDynamicCast(OSData, specifiers->getObject(source));
    if (!name || !spec || spec->getLength() < 4) return nullptr;
    *vector = *static_cast<const int *>(spec->getBytesNoCopy());
    return IOService::getPlatform()->lookUpInterruptController(name);
}
IOReturn IOService::registerInterrupt(int source, OSObject *target, IOInterruptAction handler, void *refCon)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    if (!c) return kIOReturnNoInterrupt;
    return c->registerInterrupt(this, source, target, reinterpret_cast<IOInterruptHandler>(handler), refCon);
}
IOReturn IOService::unregisterInterrupt(int source)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    return c ? c->unregisterInterrupt(this, source) : kIOReturnNoInterrupt;
}
IOReturn IOService::getInterruptType(int source, int *interruptType)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    return c ? c->getInterruptType(this, source, interruptType) : kIOReturnNoInterrupt;
}
IOReturn IOService::enableInterrupt(int source)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    return c ? c->enableInterrupt(this, source) : kIOReturnNoInterrupt;
}
IOReturn IOService::disableInterrupt(int source)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    return c ? c->disableInterrupt(this, source) : kIOReturnNoInterrupt;
}
IOReturn IOService::causeInterrupt(int source)
{
    int vector;
    IOInterruptController *c = lookupInterrupt(this, source, &vector);
    return c ? c->causeInterrupt(this, source) : kIOReturnNoInterrupt;
}

/* Power management (IOServicePM.cpp): not modelled. The test bed records joins and
   stops, which is what the teardown checks look at. */
void IOService::PMinit() { fPMInit = true; }
void IOService::PMstop()
{
    fPMInit = false;
    fPMJoined = false;
}
void IOService::joinPMtree(IOService *driver)
{
    if (driver) driver->fPMJoined = true;
}
IOReturn IOService::registerPowerDriver(IOService *, IOPMPowerState *, unsigned long) { return kIOReturnSuccess; }
IOReturn IOService::changePowerStateTo(unsigned long) { return kIOReturnSuccess; }
IOReturn IOService::changePowerStateToPriv(unsigned long) { return kIOReturnSuccess; }
IOReturn IOService::makeUsable() { return kIOReturnSuccess; }
IOReturn IOService::setPowerState(unsigned long, IOService *) { return kIOPMAckImplied; }
IOReturn IOService::addPowerChild(IOService *) { return kIOReturnSuccess; }
IOReturn IOService::powerOverrideOnPriv() { return kIOReturnSuccess; }

OSDefineMetaClassAndStructors(IONotifier, OSObject)
void IONotifier::remove() { release(); }

/* ---- memory (xnu iokit/Kernel/IOMemoryDescriptor.cpp, IODeviceMemory.cpp) - */

OSDefineMetaClassAndAbstractStructors(IOMemoryDescriptor, OSObject)
OSDefineMetaClassAndStructors(IOGeneralMemoryDescriptor, IOMemoryDescriptor)
OSDefineMetaClassAndStructors(IODeviceMemory, IOMemoryDescriptor)
OSDefineMetaClassAndStructors(IOMemoryMap, OSObject)

IOMemoryDescriptor *IOMemoryDescriptor::withPhysicalAddress(IOPhysicalAddress address, IOByteCount withLength, IODirection withDirection)
{
    IOGeneralMemoryDescriptor *md = new IOGeneralMemoryDescriptor;
    md->fPhys = address;
    md->fLength = withLength;
    md->fDirection = withDirection;
    return md;
}
IOMemoryDescriptor *IOMemoryDescriptor::withAddressRange(mach_vm_address_t, mach_vm_size_t, IOOptionBits, task_t)
{
    return nullptr; /* virtual ranges of other tasks: not in the test bed */
}
/* getPhysicalSegment: for a physical range, the address at offset and what is left. */
addr64_t IOMemoryDescriptor::getPhysicalSegment(IOByteCount offset, IOByteCount *length, IOOptionBits)
{
    if (offset >= fLength) {
        if (length) *length = 0;
        return 0;
    }
    if (length) *length = fLength - offset;
    return fPhys + offset;
}
IOPhysicalAddress IOMemoryDescriptor::getPhysicalAddress() { return getPhysicalSegment(0, nullptr); }
IOReturn IOMemoryDescriptor::prepare(IODirection) { fPrepared++; return kIOReturnSuccess; }
IOReturn IOMemoryDescriptor::complete(IODirection)
{
    if (fPrepared) fPrepared--;
    return kIOReturnSuccess;
}
/* IOMemoryDescriptor::map -> createMappingInTask(kernel_task, 0, options | kIOMapAnywhere). */
IOMemoryMap *IOMemoryDescriptor::map(IOOptionBits options) { return createMappingInTask(kernel_task, 0, options | kIOMapAnywhere, 0, 0); }
IOMemoryMap *IOMemoryDescriptor::createMappingInTask(task_t, mach_vm_address_t, IOOptionBits, mach_vm_size_t offset, mach_vm_size_t length)
{
    if (!length) length = fLength - offset;
    IOMemoryMap *m = new IOMemoryMap;
    m->fLength = length;
    m->fMemory = this;
    retain();
    if (fVirt) {
        m->fVirt = (IOVirtualAddress)(uintptr_t)fVirt + offset;
        m->fPhys = getPhysicalSegment(offset, nullptr);
        return m;
    }
    void *v = hw::mapPhysical(fPhys + offset, length, &m->fMapping, &m->fMappingLength);
    if (!v) {
        IOLog("test bed: no device holds physical range %#llx+%#llx", (unsigned long long)(fPhys + offset), (unsigned long long)length);
        m->release();
        return nullptr;
    }
    m->fVirt = (IOVirtualAddress)(uintptr_t)v;
    m->fPhys = fPhys + offset;
    return m;
}
IOByteCount IOMemoryDescriptor::readBytes(IOByteCount offset, void *bytes, IOByteCount withLength)
{
    if (!fVirt || offset >= fLength) return 0;
    if (withLength > fLength - offset) withLength = fLength - offset;
    memcpy(bytes, static_cast<char *>(fVirt) + offset, withLength);
    return withLength;
}
IOByteCount IOMemoryDescriptor::writeBytes(IOByteCount offset, const void *bytes, IOByteCount withLength)
{
    if (!fVirt || offset >= fLength) return 0;
    if (withLength > fLength - offset) withLength = fLength - offset;
    memcpy(static_cast<char *>(fVirt) + offset, bytes, withLength);
    return withLength;
}
IOReturn IOMemoryMap::unmap()
{
    hw::unmapPhysical(fMapping, fMappingLength);
    fMapping = nullptr;
    return kIOReturnSuccess;
}
void IOMemoryMap::free()
{
    unmap();
    OSSafeReleaseNULL(fMemory);
    OSObject::free();
}

/* IODeviceMemory::withRange (IODeviceMemory.cpp:46): a physical-address descriptor, tag 0. */
IODeviceMemory *IODeviceMemory::withRange(IOPhysicalAddress start, IOPhysicalLength length)
{
    IODeviceMemory *m = new IODeviceMemory;
    m->fPhys = start;
    m->fLength = length;
    m->fDirection = kIODirectionInOut;
    return m;
}
IODeviceMemory *IODeviceMemory::withSubRange(IODeviceMemory *of, IOPhysicalAddress offset, IOPhysicalLength length)
{
    return withRange(of->fPhys + offset, length);
}
/* IODeviceMemory::arrayFromList (IODeviceMemory.cpp:57): one range per element, tag set. */
OSArray *IODeviceMemory::arrayFromList(InitElement list[], IOItemCount count)
{
    OSArray *array = OSArray::withCapacity((unsigned)count);
    for (IOItemCount i = 0; i < count; i++) {
        IODeviceMemory *range = withRange(list[i].start, list[i].length);
        range->setTag(list[i].tag);
        array->setObject(range);
        range->release();
    }
    return array;
}

/* IOBufferMemoryDescriptor (IOBufferMemoryDescriptor.cpp): wired kernel memory.
   The test bed wires it with mlock and learns physical pages from pagemap; a
   physicalMask is honoured only as "below 4 GiB" when asked (checked, not forced). */
OSDefineMetaClassAndStructors(IOBufferMemoryDescriptor, IOGeneralMemoryDescriptor)
IOBufferMemoryDescriptor *IOBufferMemoryDescriptor::inTaskWithPhysicalMask(task_t, IOOptionBits options, mach_vm_size_t capacity, mach_vm_address_t physicalMask)
{
    hw::Pinned p;
    if (!hw::allocPinned(capacity, p)) return nullptr;
    for (uint64_t page : p.pages) {
        if (physicalMask && (page & ~physicalMask & ~0xFFFULL)) {
            IOLog("test bed: page %#llx outside physical mask %#llx", (unsigned long long)page, (unsigned long long)physicalMask);
            hw::freePinned(p);
            return nullptr;
        }
    }
    if ((options & kIOMemoryPhysicallyContiguous) && capacity > 4096) {
        for (size_t i = 1; i < p.pages.size(); i++) {
            if (p.pages[i] != p.pages[0] + 4096 * i) {
                IOLog("test bed: no physically contiguous memory of %llu bytes", (unsigned long long)capacity);
                hw::freePinned(p);
                return nullptr;
            }
        }
    }
    IOBufferMemoryDescriptor *b = new IOBufferMemoryDescriptor;
    b->fVirt = p.virt;
    b->fLength = capacity;
    b->fCapacity = capacity;
    b->fDirection = options & kIODirectionInOut;
    b->fPages = new uint64_t[p.pages.size()];
    for (size_t i = 0; i < p.pages.size(); i++) b->fPages[i] = p.pages[i];
    return b;
}
IOBufferMemoryDescriptor *IOBufferMemoryDescriptor::withOptions(IOOptionBits options, vm_size_t capacity, vm_size_t)
{
    return inTaskWithPhysicalMask(kernel_task, options, capacity, 0);
}
IOBufferMemoryDescriptor *IOBufferMemoryDescriptor::inTaskWithOptions(task_t t, IOOptionBits options, vm_size_t capacity, vm_size_t)
{
    return inTaskWithPhysicalMask(t, options, capacity, 0);
}
IOBufferMemoryDescriptor *IOBufferMemoryDescriptor::withCapacity(vm_size_t capacity, IODirection withDirection, bool contiguous)
{
    return inTaskWithPhysicalMask(kernel_task, withDirection | (contiguous ? kIOMemoryPhysicallyContiguous : 0), capacity, 0);
}
void *IOBufferMemoryDescriptor::getBytesNoCopy(vm_size_t start, vm_size_t withLength)
{
    return start + withLength <= fCapacity ? static_cast<char *>(fVirt) + start : nullptr;
}
addr64_t IOBufferMemoryDescriptor::getPhysicalSegment(IOByteCount offset, IOByteCount *length, IOOptionBits)
{
    if (offset >= fLength) {
        if (length) *length = 0;
        return 0;
    }
    size_t page = offset / 4096;
    uint64_t phys = fPages[page] + (offset & 0xFFF);
    IOByteCount run = 4096 - (offset & 0xFFF);
    while (offset + run < fLength && fPages[page + 1] == fPages[page] + 4096) {
        page++;
        run += 4096;
    }
    if (offset + run > fLength) run = fLength - offset;
    if (length) *length = run;
    return phys;
}
void IOBufferMemoryDescriptor::free()
{
    hw::Pinned p;
    p.virt = fVirt;
    p.length = (fCapacity + 4095) & ~4095ULL;
    hw::freePinned(p);
    delete[] fPages;
    OSObject::free();
}

/* ---- IODMACommand (xnu iokit/Kernel/IODMACommand.cpp) --------------------- */
OSDefineMetaClassAndStructors(IODMACommand, OSObject)
bool IODMACommand::OutputHost64(IODMACommand *, Segment64 segment, void *segments, UInt32 index)
{
    static_cast<Segment64 *>(segments)[index] = segment;
    return true;
}
bool IODMACommand::OutputLittle64(IODMACommand *c, Segment64 segment, void *segments, UInt32 index) { return OutputHost64(c, segment, segments, index); }
bool IODMACommand::OutputHost32(IODMACommand *, Segment64 segment, void *segments, UInt32 index)
{
    if (segment.fIOVMAddr >> 32) return false;
    static_cast<Segment32 *>(segments)[index] = {(UInt32)segment.fIOVMAddr, (UInt32)segment.fLength};
    return true;
}
IODMACommand *IODMACommand::withSpecification(SegmentFunction outSegFunc, UInt8 numAddressBits, UInt64 maxSegmentSize, MappingOptions, UInt64, UInt32, void *, void *)
{
    IODMACommand *c = new IODMACommand;
    c->fOutput = outSegFunc;
    c->fAddressBits = numAddressBits;
    c->fMaxSegment = maxSegmentSize;
    return c;
}
IOReturn IODMACommand::setMemoryDescriptor(const IOMemoryDescriptor *mem, bool autoPrepare)
{
    if (fMemory) clearMemoryDescriptor();
    fMemory = mem;
    if (mem) mem->retain();
    return autoPrepare ? prepare() : kIOReturnSuccess;
}
IOReturn IODMACommand::clearMemoryDescriptor(bool autoComplete)
{
    if (autoComplete && fPrepared) complete();
    OSSafeReleaseNULL(fMemory);
    return kIOReturnSuccess;
}
IOReturn IODMACommand::prepare(UInt64, UInt64, bool, bool)
{
    fPrepared = true;
    return fMemory ? kIOReturnSuccess : kIOReturnNotReady;
}
IOReturn IODMACommand::complete(bool, bool)
{
    fPrepared = false;
    return kIOReturnSuccess;
}
/* genIOVMSegments: walks the descriptor's physical segments, cut at the maximum
   segment size; no mapper (no VT-d in a QEMU macOS guest), so IOVM = physical. */
IOReturn IODMACommand::genIOVMSegments(UInt64 *offset, void *segments, UInt32 *numSegments)
{
    if (!fMemory || !fPrepared) return kIOReturnNotReady;
    IOMemoryDescriptor *md = const_cast<IOMemoryDescriptor *>(fMemory);
    UInt32 n = 0;
    while (n < *numSegments && *offset < md->getLength()) {
        IOByteCount len = 0;
        addr64_t phys = md->getPhysicalSegment(*offset, &len);
        if (!phys || !len) return kIOReturnBadArgument;
        if (fMaxSegment && len > fMaxSegment) len = fMaxSegment;
        if (fAddressBits < 64 && ((phys + len - 1) >> fAddressBits)) return kIOReturnNotPermitted;
        if (!fOutput(this, Segment64{phys, len}, segments, n)) return kIOReturnMessageTooLarge;
        n++;
        *offset += len;
    }
    *numSegments = n;
    return kIOReturnSuccess;
}

/* ---- interrupt controllers (xnu iokit/Kernel/IOInterruptController.cpp) --- */
OSDefineMetaClassAndAbstractStructors(IOInterruptController, IOService)
OSDefineMetaClassAndStructors(IOSharedInterruptController, IOInterruptController)
/* IOInterruptController::registerInterrupt (IOInterruptController.cpp:71): the
   vector is the nub's specifier; it starts hard and soft disabled. */
static IOInterruptVector *vectorFor(IOInterruptVector *vectors, IOService *nub, int source, int *number)
{
    OSArray *specifiers = OSDynamicCast(OSArray, nub->getProperty(gIOInterruptSpecifiersKey));
    OSData *spec = specifiers ? OSDynamicCast(OSData, specifiers->getObject(source)) : nullptr;
    if (!spec || !vectors) return nullptr;
    *number = *static_cast<const int *>(spec->getBytesNoCopy());
    return &vectors[*number];
}
IOReturn IOInterruptController::registerInterrupt(IOService *nub, int source, void *target, IOInterruptHandler handler, void *refCon)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!vector) return kIOReturnNoInterrupt;
    if (vector->interruptRegistered) return kIOReturnNoResources; /* shared vectors: not modelled */
    vector->handler = handler;
    vector->nub = nub;
    vector->source = source;
    vector->target = target;
    vector->refCon = refCon;
    initVector(number, vector);
    vector->interruptDisabledHard = 1;
    vector->interruptDisabledSoft = 1;
    vector->interruptRegistered = 1;
    tb::recordRegistration(nub, source, true);
    return kIOReturnSuccess;
}
/* unregisterInterrupt (IOInterruptController.cpp:196): soft disable, hard disable, clear. */
IOReturn IOInterruptController::unregisterInterrupt(IOService *nub, int source)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!vector) return kIOReturnNoInterrupt;
    tb::recordUnregistration(nub, source, vector->interruptRegistered != 0);
    if (!vector->interruptRegistered) return kIOReturnSuccess;
    tb::recordRegistration(nub, source, false);
    disableInterrupt(nub, source);
    disableVectorHard(number, vector);
    vector->interruptActive = 0;
    vector->interruptDisabledSoft = 0;
    vector->interruptDisabledHard = 0;
    vector->interruptRegistered = 0;
    vector->nub = nullptr;
    vector->source = 0;
    vector->handler = nullptr;
    vector->target = nullptr;
    vector->refCon = nullptr;
    return kIOReturnSuccess;
}
IOReturn IOInterruptController::getInterruptType(IOService *nub, int source, int *interruptType)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!interruptType || !vector) return kIOReturnBadArgument;
    *interruptType = getVectorType(number, vector);
    return kIOReturnSuccess;
}
/* enableInterrupt (IOInterruptController.cpp:244): clear soft disable; if the vector
   was hard-disabled while an interrupt arrived, re-enable it in hardware. */
IOReturn IOInterruptController::enableInterrupt(IOService *nub, int source)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!vector) return kIOReturnNoInterrupt;
    if (vector->interruptDisabledSoft) {
        vector->interruptDisabledSoft = 0;
        if (vector->interruptDisabledHard) {
            vector->interruptDisabledHard = 0;
            enableVector(number, vector);
        }
    }
    return kIOReturnSuccess;
}
/* disableInterrupt (IOInterruptController.cpp:283): soft only. */
IOReturn IOInterruptController::disableInterrupt(IOService *nub, int source)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!vector) return kIOReturnNoInterrupt;
    vector->interruptDisabledSoft = 1;
    return kIOReturnSuccess;
}
IOReturn IOInterruptController::causeInterrupt(IOService *nub, int source)
{
    int number;
    IOInterruptVector *vector = vectorFor(vectors, nub, source, &number);
    if (!vector) return kIOReturnNoInterrupt;
    causeVector(number, vector);
    return kIOReturnSuccess;
}
IOInterruptAction IOInterruptController::getInterruptHandlerAddress(void) { return nullptr; }
IOReturn IOInterruptController::handleInterrupt(void *, IOService *, int) { return kIOReturnInvalid; }
bool IOInterruptController::vectorCanBeShared(IOInterruptVectorNumber, IOInterruptVector *) { return false; }
void IOInterruptController::initVector(IOInterruptVectorNumber, IOInterruptVector *) {}
int IOInterruptController::getVectorType(IOInterruptVectorNumber, IOInterruptVector *) { return kIOInterruptTypeEdge; }
void IOInterruptController::disableVectorHard(IOInterruptVectorNumber, IOInterruptVector *) {}
void IOInterruptController::enableVector(IOInterruptVectorNumber, IOInterruptVector *) {}
void IOInterruptController::causeVector(IOInterruptVectorNumber, IOInterruptVector *) {}
void IOInterruptController::setCPUInterruptProperties(IOService *) {}

/* ---- event sources and work loops (xnu IOEventSource.cpp, IOInterruptEventSource.cpp,
   IOFilterInterruptEventSource.cpp, IOWorkLoop.cpp) -------------------------- */
OSDefineMetaClassAndAbstractStructors(IOEventSource, OSObject)
void IOEventSource::signalWorkAvailable() {}
OSDefineMetaClassAndStructors(IOInterruptEventSource, IOEventSource)
IOInterruptEventSource *IOInterruptEventSource::interruptEventSource(OSObject *owner, Action action, IOService *provider, int intIndex)
{
    IOInterruptEventSource *s = new IOInterruptEventSource;
    if (!s->init(owner, action, provider, intIndex)) {
        s->release();
        return nullptr;
    }
    return s;
}
/* IOInterruptEventSource::init (IOInterruptEventSource.cpp:97): with a provider,
   registers interruptOccurred as the handler of provider's interrupt intIndex. */
bool IOInterruptEventSource::init(OSObject *inOwner, Action inAction, IOService *inProvider, int inIntIndex)
{
    owner = inOwner;
    fAction = inAction;
    fProvider = inProvider;
    fIntIndex = inIntIndex;
    if (inProvider) {
        IOReturn r = inProvider->registerInterrupt(inIntIndex, this,
            OSMemberFunctionCast(IOInterruptAction, this, &IOInterruptEventSource::interruptOccurred), nullptr);
        if (r != kIOReturnSuccess) return false;
        fRegistered = true;
    }
    return true;
}
void IOInterruptEventSource::free()
{
    if (fProvider && fRegistered) fProvider->unregisterInterrupt(fIntIndex);
    OSObject::free();
}
void IOInterruptEventSource::enable()
{
    fEnabled = true;
    if (fProvider && fRegistered) fProvider->enableInterrupt(fIntIndex);
}
void IOInterruptEventSource::disable()
{
    if (fProvider && fRegistered) fProvider->disableInterrupt(fIntIndex);
    fEnabled = false;
}
/* interruptOccurred (IOInterruptEventSource.cpp:~430, normal): count, signal the work loop. */
void IOInterruptEventSource::interruptOccurred(void *, IOService *, int)
{
    fProduced++;
    signalWorkAvailable();
}
/* checkForWork (IOInterruptEventSource.cpp:~330): run the action with the count. */
bool IOInterruptEventSource::checkForWork()
{
    unsigned produced = fProduced;
    if (produced != fConsumed && fEnabled && fAction) {
        int count = (int)(produced - fConsumed);
        fConsumed = produced;
        fAction(owner, this, count);
    }
    return false;
}
OSDefineMetaClassAndStructors(IOFilterInterruptEventSource, IOInterruptEventSource)
IOFilterInterruptEventSource *IOFilterInterruptEventSource::filterInterruptEventSource(OSObject *owner, Action action, Filter filter, IOService *provider, int intIndex)
{
    IOFilterInterruptEventSource *s = new IOFilterInterruptEventSource;
    if (!s->init(owner, action, filter, provider, intIndex)) {
        s->release();
        return nullptr;
    }
    return s;
}
bool IOFilterInterruptEventSource::init(OSObject *inOwner, Action action, Filter filter, IOService *provider, int intIndex)
{
    fFilter = filter;
    return IOInterruptEventSource::init(inOwner, action, provider, intIndex);
}
/* normalInterruptOccurred (IOFilterInterruptEventSource.cpp): filter at primary level;
   true -> signalInterrupt (work loop runs the action). */
void IOFilterInterruptEventSource::interruptOccurred(void *, IOService *, int)
{
    if (fFilter && fFilter(owner, this)) signalInterrupt();
}
void IOFilterInterruptEventSource::signalInterrupt() { fProduced++; }
OSDefineMetaClassAndStructors(IOTimerEventSource, IOEventSource)
IOTimerEventSource *IOTimerEventSource::timerEventSource(OSObject *owner, Action)
{
    IOTimerEventSource *t = new IOTimerEventSource;
    t->owner = owner;
    return t;
}
OSDefineMetaClassAndStructors(IOCommandGate, IOEventSource)
IOCommandGate *IOCommandGate::commandGate(OSObject *owner, Action action)
{
    IOCommandGate *g = new IOCommandGate;
    g->owner = owner;
    g->fAction = action;
    return g;
}
IOReturn IOCommandGate::runAction(Action action, void *a0, void *a1, void *a2, void *a3) { return action ? action(owner, a0, a1, a2, a3) : kIOReturnBadArgument; }
IOReturn IOCommandGate::runCommand(void *a0, void *a1, void *a2, void *a3) { return runAction(fAction, a0, a1, a2, a3); }
OSDefineMetaClassAndStructors(IOWorkLoop, OSObject)
IOWorkLoop *IOWorkLoop::workLoop()
{
    IOWorkLoop *w = new IOWorkLoop;
    w->fSources = OSArray::withCapacity(4);
    tb::workLoops().push_back(w);
    return w;
}
IOReturn IOWorkLoop::addEventSource(IOEventSource *newEvent)
{
    fSources->setObject(newEvent);
    newEvent->setWorkLoop(this);
    return kIOReturnSuccess;
}
IOReturn IOWorkLoop::removeEventSource(IOEventSource *toRemove)
{
    unsigned i = fSources->getNextIndexOfObject(toRemove, 0);
    if (i != (unsigned)-1) fSources->removeObject(i);
    return kIOReturnSuccess;
}
IOReturn IOWorkLoop::runAction(Action action, OSObject *target, void *a0, void *a1, void *a2, void *a3) { return action(target, a0, a1, a2, a3); }
bool IOWorkLoop::runEventSources()
{
    for (unsigned i = 0; i < fSources->getCount(); i++) {
        if (IOEventSource *s = OSDynamicCast(IOEventSource, fSources->getObject(i))) s->checkForWork();
    }
    return true;
}
void IOWorkLoop::free()
{
    auto &all = tb::workLoops();
    for (auto it = all.begin(); it != all.end(); ++it) {
        if (*it == this) {
            all.erase(it);
            break;
        }
    }
    OSSafeReleaseNULL(fSources);
    OSObject::free();
}

/* ---- platform expert (xnu iokit/Kernel/IOPlatformExpert.cpp) ------------- */
OSDefineMetaClassAndStructors(IOPlatformExpert, IOService)
/* registerInterruptController / lookUpInterruptController (IOPlatformExpert.cpp):
   a name -> controller table. */
IOReturn IOPlatformExpert::registerInterruptController(OSSymbol *name, IOInterruptController *interruptController)
{
    if (!fControllers) fControllers = OSDictionary::withCapacity(4);
    fControllers->setObject(name, interruptController);
    return kIOReturnSuccess;
}
IOInterruptController *IOPlatformExpert::lookUpInterruptController(OSSymbol *name)
{
    return fControllers ? OSDynamicCast(IOInterruptController, fControllers->getObject(name)) : nullptr;
}
bool IOPlatformExpert::atInterruptLevel(void) { return tb::atInterruptLevel(); }
IOReturn IOPlatformExpert::callPlatformFunction(const OSSymbol *functionName, bool, void *p1, void *p2, void *p3, void *p4)
{
    return tb::platformFunction(functionName->getCStringNoCopy(), p1, p2, p3, p4);
}
IOPlatformExpert *IOService::getPlatform() { return tb::platform(); }

/* ---- libkmod (c_start.c, c_stop.c in xnu libkern/kmod): _start/_stop call the
   kext's _realmain/_antimain when set. Weak: a kext without kmod info still links. */
extern kmod_start_func_t *_realmain __attribute__((weak));
extern kmod_stop_func_t *_antimain __attribute__((weak));
__attribute__((weak)) kern_return_t _start(kmod_info_t *ki, void *data)
{
    return (&_realmain && _realmain) ? _realmain(ki, data) : KERN_SUCCESS;
}
__attribute__((weak)) kern_return_t _stop(kmod_info_t *ki, void *data)
{
    return (&_antimain && _antimain) ? _antimain(ki, data) : KERN_SUCCESS;
}
