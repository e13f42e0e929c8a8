/*
 * Fakes of the libkern, IOKit and IOPCIFamily classes the xvpci kext uses,
 * for running kext/XvpciWindow.cpp unchanged as a Linux user program.
 *
 * Theory of operation. Every framework header the kext includes resolves to
 * this one file (kext/testbed/include/{IOKit,libkern,mach}/... are one-line
 * shims). Declarations keep Apple's names and signatures; behaviour lives in
 * kext/testbed/fakes.cpp, where each method cites the file and tag it is
 * transcribed from:
 *   IOPCIFamily-726.0.5 (macOS 26) and IOPCIFamily-484.140.2 (macOS 12),
 *   xnu-8796.141.3 (iokit/Kernel).
 * Hardware below the fakes is the real QEMU machine as seen from Linux user
 * space (kext/testbed/hw.hpp): sysfs config files and BAR resources, pinned
 * pages at physical addresses from /proc/self/pagemap, and MSI messages
 * written by QEMU into one of those pages.
 *
 * The class layouts are not Apple's (no vtable padding, no binary
 * compatibility); only names, signatures and behaviour are.
 */

#ifndef XVPCI_FAKE_H
#define XVPCI_FAKE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef __LITTLE_ENDIAN__
#define __LITTLE_ENDIAN__ 1
#endif

/* ---- basic types (xnu libkern/OSTypes.h, IOKit/IOTypes.h, IOReturn.h) ---- */
typedef uint8_t UInt8;
typedef uint16_t UInt16;
typedef uint32_t UInt32;
typedef unsigned long long UInt64; /* as on macOS (libkern/OSTypes.h), so signatures mangle alike */
typedef int8_t SInt8;
typedef int16_t SInt16;
typedef int32_t SInt32;
typedef int64_t SInt64;
typedef bool Boolean;
typedef int IOReturn;
typedef uint32_t IOOptionBits;
typedef UInt64 IOByteCount;
typedef UInt64 IOVirtualAddress;
typedef UInt64 IOPhysicalAddress;
typedef UInt64 IOPhysicalLength;
typedef UInt64 IOPhysicalAddress64;
typedef UInt64 IOPhysicalLength64;
typedef UInt64 addr64_t;
typedef unsigned long vm_size_t;
typedef unsigned long vm_address_t;
typedef UInt64 mach_vm_address_t;
typedef UInt64 mach_vm_size_t;
typedef UInt32 IOItemCount;
typedef int kern_return_t;
typedef int IOInterruptVectorNumber;
typedef void *task_t;
typedef uint32_t IOPMPowerFlags;
typedef int IODirection;
typedef void *IORegistryPlane_t;
#define KERN_SUCCESS 0
#define KERN_FAILURE 5
#define TRUE true
#define FALSE false
#define APPLE_KEXT_OVERRIDE override
#define APPLE_KEXT_DEPRECATED
#define APPLE_KEXT_COMPATIBILITY_VIRTUAL virtual
#define __private_extern__ __attribute__((visibility("hidden")))
#define __unused __attribute__((unused))
#define kernel_task nullptr

#define iokit_common_err(x) ((IOReturn)(0xe0000000u | (x)))
#define kIOReturnSuccess 0
#define kIOReturnError iokit_common_err(0x2bc)
#define kIOReturnNoMemory iokit_common_err(0x2bd)
#define kIOReturnNoResources iokit_common_err(0x2be)
#define kIOReturnNoDevice iokit_common_err(0x2c0)
#define kIOReturnBadArgument iokit_common_err(0x2c2)
#define kIOReturnUnsupported iokit_common_err(0x2c7)
#define kIOReturnInternalError iokit_common_err(0x2c9)
#define kIOReturnIOError iokit_common_err(0x2ca)
#define kIOReturnNotReady iokit_common_err(0x2d8)
#define kIOReturnBusy iokit_common_err(0x2d5)
#define kIOReturnTimeout iokit_common_err(0x2d6)
#define kIOReturnNotAttached iokit_common_err(0x2d9)
#define kIOReturnNoSpace iokit_common_err(0x2db)
#define kIOReturnNoInterrupt iokit_common_err(0x2df)
#define kIOReturnOverrun iokit_common_err(0x2e8)
#define kIOReturnNotFound iokit_common_err(0x2f0)
#define kIOReturnNotPermitted iokit_common_err(0x2e2)
#define kIOReturnInvalid iokit_common_err(0x1)
#define kIOReturnMessageTooLarge iokit_common_err(0x2e1)

/* ---- kmod (xnu osfmk/mach/kmod.h) ---- */
typedef kern_return_t kmod_start_func_t(struct kmod_info *ki, void *data);
typedef kern_return_t kmod_stop_func_t(struct kmod_info *ki, void *data);
typedef struct kmod_info {
    struct kmod_info *next;
    int32_t info_version;
    uint32_t id;
    char name[64];
    char version[64];
    int32_t reference_count;
    void *reference_list;
    uint64_t address;
    uint64_t size;
    uint64_t hdr_size;
    kmod_start_func_t *start;
    kmod_stop_func_t *stop;
} kmod_info_t;
#define KMOD_INFO_NAME kmod_info
#define KMOD_INFO_VERSION 1
#define KMOD_EXPLICIT_DECL(name, version, start, stop)                                          \
    __attribute__((visibility("default"))) kmod_info_t KMOD_INFO_NAME = {                      \
        0, KMOD_INFO_VERSION, 0xffffffffu, #name, version, -1, 0, 0, 0, 0, start, stop};
#define KMOD_DECL(name, version) KMOD_EXPLICIT_DECL(name, version, _start, _stop)

/* ---- xvpci test-bed hooks (not Apple API) ---- */
[[noreturn]] void xvpci_tb_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define panic(...) xvpci_tb_panic(__VA_ARGS__)

/* ---- IOLib (xnu iokit/IOKit/IOLib.h) ---- */
extern "C" void IOLog(const char *format, ...) __attribute__((format(printf, 1, 2)));
void *IOMalloc(size_t size);
void *IOMallocZero(size_t size);
void IOFree(void *address, size_t size);
void *IOMallocAligned(size_t size, size_t alignment);
void IOFreeAligned(void *address, size_t size);
#define IONew(type, count) (static_cast<type *>(IOMalloc(sizeof(type) * (count))))
#define IONewZero(type, count) (static_cast<type *>(IOMallocZero(sizeof(type) * (count))))
#define IODelete(ptr, type, count) IOFree((ptr), sizeof(type) * (count))
#define IOSafeDeleteNULL(ptr, type, count) do { if (ptr) { IODelete(ptr, type, count); (ptr) = nullptr; } } while (0)
#define IOMallocType(type) (static_cast<type *>(IOMallocZero(sizeof(type))))
#define IOFreeType(ptr, type) IOFree((ptr), sizeof(type))
void IOSleep(unsigned milliseconds);
void IODelay(unsigned microseconds);
void IOPause(unsigned nanoseconds);
struct IOLockFake;
typedef IOLockFake IOLock;
typedef IOLockFake IOSimpleLock;
typedef IOLockFake IORecursiveLock;
typedef int IOInterruptState;
IOLock *IOLockAlloc();
void IOLockFree(IOLock *lock);
void IOLockLock(IOLock *lock);
void IOLockUnlock(IOLock *lock);
bool IOLockTryLock(IOLock *lock);
IOSimpleLock *IOSimpleLockAlloc();
void IOSimpleLockFree(IOSimpleLock *lock);
void IOSimpleLockLock(IOSimpleLock *lock);
void IOSimpleLockUnlock(IOSimpleLock *lock);
IOInterruptState IOSimpleLockLockDisableInterrupt(IOSimpleLock *lock);
void IOSimpleLockUnlockEnableInterrupt(IOSimpleLock *lock, IOInterruptState state);
IORecursiveLock *IORecursiveLockAlloc();
void IORecursiveLockFree(IORecursiveLock *lock);
void IORecursiveLockLock(IORecursiveLock *lock);
void IORecursiveLockUnlock(IORecursiveLock *lock);
uint64_t mach_absolute_time();
void clock_get_uptime(uint64_t *result);
void absolutetime_to_nanoseconds(uint64_t abstime, uint64_t *result);
void nanoseconds_to_absolutetime(uint64_t ns, uint64_t *result);
#define OSSynchronizeIO() __sync_synchronize()
#define OSMemoryBarrier() __sync_synchronize()
#define ml_io_read32(addr) (*reinterpret_cast<volatile uint32_t *>(addr))
inline SInt32 OSIncrementAtomic(volatile SInt32 *address) { return __sync_fetch_and_add(address, 1); }
inline SInt32 OSDecrementAtomic(volatile SInt32 *address) { return __sync_fetch_and_sub(address, 1); }
inline bool OSCompareAndSwap(UInt32 oldValue, UInt32 newValue, volatile UInt32 *address)
{
    return __sync_bool_compare_and_swap(address, oldValue, newValue);
}
inline bool OSCompareAndSwapPtr(void *oldValue, void *newValue, void *volatile *address)
{
    return __sync_bool_compare_and_swap(address, oldValue, newValue);
}
inline UInt32 OSBitOrAtomic(UInt32 mask, volatile UInt32 *address) { return __sync_fetch_and_or(address, mask); }
inline UInt32 OSBitAndAtomic(UInt32 mask, volatile UInt32 *address) { return __sync_fetch_and_and(address, mask); }
#define OSSwapLittleToHostInt32(x) (x)
#define OSSwapHostToLittleInt32(x) (x)
#define OSSwapLittleToHostInt64(x) (x)
#define OSSwapHostToLittleInt64(x) (x)
#define OSSwapLittleToHostInt16(x) (x)
#define OSSwapHostToLittleInt16(x) (x)
bool PE_parse_boot_argn(const char *arg_string, void *arg_ptr, int max_arg);

/* ---- libkern: OSObject and OSMetaClass (xnu libkern/c++/OSMetaClass.h) ---- */
class OSObject;
class OSMetaClass;
class OSSymbol;
class OSString;
class OSDictionary;
class OSArray;
class OSIterator;

class OSMetaClassBase {
public:
    virtual ~OSMetaClassBase() {}
    virtual const OSMetaClass *getMetaClass() const = 0;
    bool metaCast(const char *name) const;
    virtual void retain() const = 0;
    virtual void release() const = 0;
    template <typename T> static T *safeMetaCast(const OSMetaClassBase *obj)
    {
        return obj ? dynamic_cast<T *>(const_cast<OSMetaClassBase *>(obj)) : nullptr;
    }
};

class OSMetaClass {
public:
    typedef OSObject *(*Factory)();
    OSMetaClass(const char *name, const OSMetaClass *superClass, Factory factory);
    const char *getClassName() const { return fName; }
    const OSMetaClass *getSuperClass() const { return fSuper; }
    OSObject *alloc() const { return fFactory ? fFactory() : nullptr; }
    static OSObject *allocClassWithName(const char *name);
    static const OSMetaClass *getMetaClassWithName(const char *name);
    bool isKindOf(const char *name) const;

private:
    const char *fName;
    const OSMetaClass *fSuper;
    Factory fFactory;
};

#define OSDeclareCommonStructors(className)                                                       \
public:                                                                                          \
    static const OSMetaClass gMetaClass;                                                         \
    static const OSMetaClass *const metaClass;                                                   \
    const OSMetaClass *getMetaClass() const override;
#define OSDeclareDefaultStructors(className, ...)                                                 \
    OSDeclareCommonStructors(className) public : className();                                    \
    ~className() override;                                                                       \
public:
#define OSDeclareAbstractStructors(className, ...) OSDeclareDefaultStructors(className)
#define OSDeclareFinalStructors(className, ...) OSDeclareDefaultStructors(className)
#define OSDeclareDefaultStructorsWithDispatch(className, ...) OSDeclareDefaultStructors(className)
#define OSDefineMetaClassCommon(className, superclassName, factory)                               \
    const OSMetaClass className::gMetaClass(#className, &superclassName::gMetaClass, factory);    \
    const OSMetaClass *const className::metaClass = &className::gMetaClass;                     \
    const OSMetaClass *className::getMetaClass() const { return &gMetaClass; }                   \
    className::className() {}                                                                    \
    className::~className() {}
#define OSDefineMetaClassAndStructors(className, superclassName)                                  \
    OSDefineMetaClassCommon(className, superclassName,                                           \
                            []() -> OSObject * { return new className; })
#define OSDefineMetaClassAndFinalStructors(className, superclassName)                             \
    OSDefineMetaClassAndStructors(className, superclassName)
#define OSDefineMetaClassAndAbstractStructors(className, superclassName)                          \
    OSDefineMetaClassCommon(className, superclassName, nullptr)
#define OSMetaClassDeclareReservedUnused(className, index)
#define OSMetaClassDeclareReservedUsed(className, index)
#define OSMetaClassDefineReservedUnused(className, index)
#define OSMetaClassDefineReservedUsed(className, index)
#define OSDynamicCast(type, inst) (OSMetaClassBase::safeMetaCast<type>(inst))
#define OSRequiredCast(type, inst) (OSMetaClassBase::safeMetaCast<type>(inst))
#define OSTypeID(type) (&type::gMetaClass)
#define OSTypeIDInst(inst) ((inst)->getMetaClass())
#define OSTypeAlloc(type) (static_cast<type *>(type::gMetaClass.alloc()))
#define OSCheckTypeInst(typeinst, inst) ((inst) && (typeinst) && (inst)->getMetaClass() == (typeinst)->getMetaClass())
#define OSSafeReleaseNULL(inst) do { if (inst) { (inst)->release(); } (inst) = nullptr; } while (0)
#define OSSafeRelease(inst) do { if (inst) { (inst)->release(); } } while (0)
/* xnu libkern/c++/OSMetaClass.h, _ptmf2ptf: OSMemberFunctionCast turns a pointer
   to member into a plain function taking the object first. Itanium ABI: an odd
   value is 1 + the offset of a virtual function's slot in self's vtable. */
template <typename Func> inline void *OSMemberFunctionAddress(const void *self, Func func)
{
    union {
        Func member;
        uintptr_t words[2];
    } u;
    u.member = func;
    if (u.words[0] & 1) {
        const char *object = static_cast<const char *>(self) + u.words[1];
        const char *vtable = *reinterpret_cast<const char *const *>(object);
        return *reinterpret_cast<void *const *>(vtable + u.words[0] - 1);
    }
    return reinterpret_cast<void *>(u.words[0]);
}
#define OSMemberFunctionCast(cptrtype, self, func) (reinterpret_cast<cptrtype>(OSMemberFunctionAddress((self), (func))))

class OSObject : public OSMetaClassBase {
public:
    static const OSMetaClass gMetaClass;
    static const OSMetaClass *const metaClass;
    const OSMetaClass *getMetaClass() const override;
    OSObject();
    /* OSObject::operator new (xnu libkern/c++/OSObject.cpp): zero-filled memory, so
       members a kext never sets start as 0. */
    static void *operator new(size_t size);
    static void operator delete(void *mem, size_t size);
    virtual bool init();
    virtual void free();
    void retain() const override;
    void release() const override;
    int getRetainCount() const { return fRetain; }
    virtual bool isEqualTo(const OSMetaClassBase *other) const { return other == this; }
    virtual bool serialize(void *) const { return false; }

protected:
    ~OSObject() override;

private:
    mutable int fRetain;
};

/* ---- containers (xnu libkern/c++/OS*.h) ---- */
class OSString : public OSObject {
    OSDeclareDefaultStructors(OSString)
public:
    static OSString *withCString(const char *cString);
    const char *getCStringNoCopy() const { return fText; }
    unsigned getLength() const { return fText ? (unsigned)strlen(fText) : 0; }
    bool isEqualTo(const char *cString) const;
    bool isEqualTo(const OSMetaClassBase *other) const override;
    void free() override;

protected:
    char *fText = nullptr;
};

class OSSymbol : public OSString {
    OSDeclareDefaultStructors(OSSymbol)
public:
    static const OSSymbol *withCString(const char *cString);
    static const OSSymbol *withCStringNoCopy(const char *cString) { return withCString(cString); }
    static const OSSymbol *withString(const OSString *aString) { return withCString(aString->getCStringNoCopy()); }
};

class OSBoolean : public OSObject {
    OSDeclareDefaultStructors(OSBoolean)
public:
    static OSBoolean *withBoolean(bool value);
    bool isTrue() const { return fValue; }
    bool isFalse() const { return !fValue; }
    bool getValue() const { return fValue; }
    bool fValue = false;
};
extern OSBoolean *const &kOSBooleanTrue;
extern OSBoolean *const &kOSBooleanFalse;

class OSNumber : public OSObject {
    OSDeclareDefaultStructors(OSNumber)
public:
    static OSNumber *withNumber(unsigned long long value, unsigned numberOfBits);
    static OSNumber *withNumber(const char *value, unsigned numberOfBits);
    unsigned char unsigned8BitValue() const { return (unsigned char)fValue; }
    unsigned short unsigned16BitValue() const { return (unsigned short)fValue; }
    unsigned int unsigned32BitValue() const { return (unsigned int)fValue; }
    unsigned long long unsigned64BitValue() const { return fValue; }
    unsigned numberOfBits() const { return fBits; }
    void setValue(unsigned long long value) { fValue = value; }
    bool isEqualTo(const OSMetaClassBase *other) const override;

private:
    unsigned long long fValue = 0;
    unsigned fBits = 0;
};

class OSData : public OSObject {
    OSDeclareDefaultStructors(OSData)
public:
    static OSData *withBytes(const void *bytes, unsigned numBytes);
    static OSData *withBytesNoCopy(void *bytes, unsigned numBytes) { return withBytes(bytes, numBytes); }
    static OSData *withCapacity(unsigned capacity);
    const void *getBytesNoCopy() const { return fBytes; }
    const void *getBytesNoCopy(unsigned start, unsigned numBytes) const;
    unsigned getLength() const { return fLength; }
    bool appendBytes(const void *bytes, unsigned numBytes);
    bool isEqualTo(const void *bytes, unsigned numBytes) const;
    bool isEqualTo(const OSMetaClassBase *other) const override;
    void free() override;

private:
    unsigned char *fBytes = nullptr;
    unsigned fLength = 0;
};

class OSCollection : public OSObject {
    OSDeclareAbstractStructors(OSCollection)
public:
    virtual unsigned getCount() const = 0;
};

class OSArray : public OSCollection {
    OSDeclareDefaultStructors(OSArray)
public:
    static OSArray *withCapacity(unsigned capacity);
    static OSArray *withArray(const OSArray *array, unsigned capacity = 0);
    static OSArray *withObjects(const OSObject *objects[], unsigned count, unsigned capacity = 0);
    unsigned getCount() const override { return fCount; }
    OSObject *getObject(unsigned index) const { return index < fCount ? fItems[index] : nullptr; }
    OSObject *getLastObject() const { return fCount ? fItems[fCount - 1] : nullptr; }
    bool setObject(const OSMetaClassBase *anObject);
    bool setObject(unsigned index, const OSMetaClassBase *anObject);
    bool replaceObject(unsigned index, const OSMetaClassBase *anObject);
    void removeObject(unsigned index);
    void flushCollection();
    unsigned getNextIndexOfObject(const OSMetaClassBase *anObject, unsigned index) const;
    bool merge(const OSArray *otherArray);
    void free() override;

private:
    OSObject **fItems = nullptr;
    unsigned fCount = 0;
    unsigned fCapacity = 0;
};

class OSDictionary : public OSCollection {
    OSDeclareDefaultStructors(OSDictionary)
public:
    static OSDictionary *withCapacity(unsigned capacity);
    static OSDictionary *withDictionary(const OSDictionary *dict, unsigned capacity = 0);
    unsigned getCount() const override { return fCount; }
    OSObject *getObject(const char *aKey) const;
    OSObject *getObject(const OSString *aKey) const { return aKey ? getObject(aKey->getCStringNoCopy()) : nullptr; }
    OSObject *getObject(const OSSymbol *aKey) const { return aKey ? getObject(aKey->getCStringNoCopy()) : nullptr; }
    bool setObject(const char *aKey, const OSMetaClassBase *anObject);
    bool setObject(const OSString *aKey, const OSMetaClassBase *anObject) { return setObject(aKey->getCStringNoCopy(), anObject); }
    bool setObject(const OSSymbol *aKey, const OSMetaClassBase *anObject) { return setObject(aKey->getCStringNoCopy(), anObject); }
    void removeObject(const char *aKey);
    void removeObject(const OSString *aKey) { removeObject(aKey->getCStringNoCopy()); }
    void removeObject(const OSSymbol *aKey) { removeObject(aKey->getCStringNoCopy()); }
    bool merge(const OSDictionary *other);
    const OSSymbol *keyAt(unsigned index) const { return index < fCount ? fKeys[index] : nullptr; }
    OSObject *valueAt(unsigned index) const { return index < fCount ? fValues[index] : nullptr; }
    void free() override;

private:
    const OSSymbol **fKeys = nullptr;
    OSObject **fValues = nullptr;
    unsigned fCount = 0;
    unsigned fCapacity = 0;
};

class OSIterator : public OSObject {
    OSDeclareDefaultStructors(OSIterator)
public:
    virtual void reset() { fNext = 0; }
    virtual OSObject *getNextObject();
    virtual bool isValid() { return true; }
    OSArray *fItems = nullptr;
    unsigned fNext = 0;
    void free() override;
};
typedef OSIterator OSCollectionIterator;

/* ---- registry and services (xnu iokit/IOKit/IORegistryEntry.h, IOService.h) ---- */
struct IORegistryPlane {
    const char *name;
};
extern const IORegistryPlane *gIOServicePlane;
extern const IORegistryPlane *gIODTPlane;
extern const IORegistryPlane *gIOPowerPlane;
extern const OSSymbol *gIODeviceMemoryKey;
extern const OSSymbol *gIOInterruptControllersKey;
extern const OSSymbol *gIOInterruptSpecifiersKey;
extern const OSSymbol *gIOPublishNotification;
extern const OSSymbol *gIOMatchedNotification;
extern const OSSymbol *gIOFirstPublishNotification;
extern const OSSymbol *gIOTerminatedNotification;
extern const OSSymbol *gIOBusyInterest;
extern const OSSymbol *gIOGeneralInterest;
extern const OSSymbol *gIONameMatchKey;
extern const OSSymbol *gIOPlatformGetMessagedInterruptAddressKey;
extern const OSSymbol *gIOPlatformGetMessagedInterruptControllerKey;
extern const OSSymbol *gIOPlatformResolvePCIInterruptKey;
extern const OSSymbol *gIOPlatformSetDeviceInterruptsKey;
extern const OSSymbol *gIOPlatformFreeDeviceResourcesKey;
extern const OSSymbol *gIOPCIDeviceChangedKey;
#define kIOProviderClassKey "IOProviderClass"
#define kIOClassKey "IOClass"
#define kIONameMatchKey "IONameMatch"
#define kIOPropertyMatchKey "IOPropertyMatch"
#define kIOProbeScoreKey "IOProbeScore"
#define kIOMatchCategoryKey "IOMatchCategory"
#define kIOPCIMatchKey "IOPCIMatch"
#define kIOPCIClassMatchKey "IOPCIClassMatch"
#define kIOPCIPrimaryMatchKey "IOPCIPrimaryMatch"
#define kIONameKey "IOName"
#define kIOInterruptControllersKey "IOInterruptControllers"
#define kIOInterruptSpecifiersKey "IOInterruptSpecifiers"

enum {
    kIOServiceRequired = 0x00000001,
    kIOServiceTerminate = 0x00000004,
    kIOServiceSynchronous = 0x00000002,
    kIOServiceAsynchronous = 0x00000008,
};
enum { kIOInterruptTypeEdge = 0x00000000, kIOInterruptTypeLevel = 0x00000001 };
#define kIOInterruptTypePCIMessaged 0x00010000
#define kIOInterruptTypePCIMessagedX 0x00020000
#define kIOPMPowerOn 0x00000002
#define kIOPMDeviceUsable 0x00008000
#define kIOPMPowerOff 0
#define kIOPMAckImplied 0
#define kIOPMInitialDeviceState 0x00000001
#define kIOPMPowerStateVersion1 1
struct IOPMPowerState {
    unsigned long version;
    IOPMPowerFlags capabilityFlags;
    IOPMPowerFlags outputPowerCharacter;
    IOPMPowerFlags inputPowerRequirement;
    unsigned long staticPower, stateOrder, powerToAttain, timeToAttain, settleUpTime, timeToLower, settleDownTime, powerDomainBudget;
};
enum { kIOMessageServiceIsTerminated = 0xe0000010 };
typedef UInt32 IOMessage;

class IOService;
class IOPCIDevice;
class IOMemoryMap;
class IODeviceMemory;
class IOInterruptController;
class IOWorkLoop;
class IONotifier;
class IOPlatformExpert;
typedef void (*IOInterruptHandler)(void *target, void *refCon, void *nub, int source);
typedef void (*IOInterruptAction)(OSObject *target, void *refCon, IOService *nub, int source);
typedef bool (*IOServiceMatchingNotificationHandler)(void *target, void *refCon, IOService *newService, IONotifier *notifier);
typedef IOReturn (*IOServiceInterestHandler)(void *target, void *refCon, UInt32 messageType, IOService *provider, void *messageArgument, size_t argSize);

class IORegistryEntry : public OSObject {
    OSDeclareDefaultStructors(IORegistryEntry)
public:
    virtual bool init(OSDictionary *dictionary = nullptr);
    bool init() override { return init(nullptr); }
    void free() override;
    virtual OSObject *getProperty(const char *aKey) const;
    OSObject *getProperty(const OSString *aKey) const { return getProperty(aKey->getCStringNoCopy()); }
    OSObject *getProperty(const OSSymbol *aKey) const { return getProperty(aKey->getCStringNoCopy()); }
    OSObject *getProperty(const char *aKey, const IORegistryPlane *, IOOptionBits = 0) const { return getProperty(aKey); }
    OSObject *copyProperty(const char *aKey) const;
    OSObject *copyProperty(const OSSymbol *aKey) const { return copyProperty(aKey->getCStringNoCopy()); }
    OSObject *copyProperty(const OSString *aKey) const { return copyProperty(aKey->getCStringNoCopy()); }
    bool propertyExists(const char *aKey) const { return getProperty(aKey) != nullptr; }
    virtual bool setProperty(const char *aKey, OSObject *anObject);
    bool setProperty(const OSSymbol *aKey, OSObject *anObject) { return setProperty(aKey->getCStringNoCopy(), anObject); }
    bool setProperty(const OSString *aKey, OSObject *anObject) { return setProperty(aKey->getCStringNoCopy(), anObject); }
    bool setProperty(const char *aKey, const char *aString);
    bool setProperty(const char *aKey, bool aBoolean);
    bool setProperty(const char *aKey, unsigned long long aValue, unsigned int aNumberOfBits);
    bool setProperty(const char *aKey, void *bytes, unsigned int length);
    virtual void removeProperty(const char *aKey);
    void removeProperty(const OSSymbol *aKey) { removeProperty(aKey->getCStringNoCopy()); }
    OSDictionary *getPropertyTable() const { return fProperties; }
    OSDictionary *dictionaryWithProperties() const;
    const char *getName(const IORegistryPlane * = nullptr) const;
    const OSSymbol *copyName(const IORegistryPlane * = nullptr) const;
    void setName(const char *name, const IORegistryPlane * = nullptr);
    void setLocation(const char *location, const IORegistryPlane * = nullptr);
    const char *getLocation(const IORegistryPlane * = nullptr) const;
    uint64_t getRegistryEntryID() const { return fID; }
    virtual bool attachToParent(IORegistryEntry *parent, const IORegistryPlane *plane);
    virtual void detachFromParent(IORegistryEntry *parent, const IORegistryPlane *plane);
    IORegistryEntry *getParentEntry(const IORegistryPlane *plane) const;
    IORegistryEntry *getChildEntry(const IORegistryPlane *plane) const;
    OSIterator *getChildIterator(const IORegistryPlane *plane) const;
    OSArray *childrenIn(const IORegistryPlane *plane) const;
    bool inPlane(const IORegistryPlane *plane = nullptr) const;
    void detachAll(const IORegistryPlane *plane);

protected:
    OSDictionary *fProperties = nullptr;
    struct Links;
    Links *fLinks = nullptr;
    uint64_t fID = 0;
};

class IOService : public IORegistryEntry {
    OSDeclareDefaultStructors(IOService)
public:
    bool init(OSDictionary *dictionary = nullptr) override;
    void free() override;
    virtual IOService *probe(IOService *provider, SInt32 *score);
    virtual bool start(IOService *provider);
    virtual void stop(IOService *provider);
    virtual bool attach(IOService *provider);
    virtual void detach(IOService *provider);
    virtual bool terminate(IOOptionBits options = 0);
    virtual bool finalize(IOOptionBits options);
    virtual bool willTerminate(IOService *provider, IOOptionBits options);
    virtual bool didTerminate(IOService *provider, IOOptionBits options, bool *defer);
    virtual void registerService(IOOptionBits options = 0);
    virtual bool matchPropertyTable(OSDictionary *table, SInt32 *score);
    virtual bool matchPropertyTable(OSDictionary *table);
    virtual IOReturn getResources();
    virtual IOReturn message(UInt32 type, IOService *provider, void *argument = nullptr);
    virtual IOReturn messageClients(UInt32 type, void *argument = nullptr, size_t argSize = 0);
    virtual IOReturn callPlatformFunction(const OSSymbol *functionName, bool waitForFunction,
                                          void *param1, void *param2, void *param3, void *param4);
    virtual IOReturn callPlatformFunction(const char *functionName, bool waitForFunction,
                                          void *param1, void *param2, void *param3, void *param4);
    IOService *getProvider() const;
    OSIterator *getClientIterator() const;
    OSIterator *getProviderIterator() const;
    IOService *getClient() const;
    bool isInactive() const { return fInactive; }
    bool isOpen(const IOService *forClient = nullptr) const;
    virtual bool open(IOService *forClient, IOOptionBits options = 0, void *arg = nullptr);
    virtual void close(IOService *forClient, IOOptionBits options = 0);
    virtual IOWorkLoop *getWorkLoop() const;
    IONotifier *addMatchingNotification(const OSSymbol *type, OSDictionary *matching,
                                        IOServiceMatchingNotificationHandler handler, void *target,
                                        void *ref = nullptr, SInt32 priority = 0);
    IONotifier *registerInterest(const OSSymbol *typeOfInterest, IOServiceInterestHandler handler,
                                 void *target, void *ref = nullptr);
    static OSDictionary *serviceMatching(const char *className, OSDictionary *table = nullptr);
    static OSDictionary *nameMatching(const char *name, OSDictionary *table = nullptr);
    static IOService *waitForMatchingService(OSDictionary *matching, uint64_t timeout = UINT64_MAX);
    static OSIterator *getMatchingServices(OSDictionary *matching);
    static IOPlatformExpert *getPlatform();
    static IOService *getResourceService();
    void adjustBusy(SInt32 delta);
    UInt32 getBusyState() { return fBusy; }

    /* device memory (xnu IOService.cpp) */
    virtual OSArray *getDeviceMemory();
    virtual void setDeviceMemory(OSArray *array);
    virtual unsigned int getDeviceMemoryCount();
    virtual IODeviceMemory *getDeviceMemoryWithIndex(unsigned int index);
    virtual IOMemoryMap *mapDeviceMemoryWithIndex(unsigned int index, IOOptionBits options = 0);

    /* interrupts (xnu IOService.cpp, lookupInterrupt and friends) */
    virtual IOReturn registerInterrupt(int source, OSObject *target, IOInterruptAction handler, void *refCon = nullptr);
    virtual IOReturn unregisterInterrupt(int source);
    virtual IOReturn getInterruptType(int source, int *interruptType);
    virtual IOReturn enableInterrupt(int source);
    virtual IOReturn disableInterrupt(int source);
    virtual IOReturn causeInterrupt(int source);

    /* power management: recorded, not modelled (see fakes.cpp) */
    virtual void PMinit();
    virtual void PMstop();
    virtual void joinPMtree(IOService *driver);
    virtual IOReturn registerPowerDriver(IOService *controllingDriver, IOPMPowerState *powerStates, unsigned long numberOfStates);
    virtual IOReturn changePowerStateTo(unsigned long ordinal);
    virtual IOReturn changePowerStateToPriv(unsigned long ordinal);
    virtual IOReturn makeUsable();
    virtual IOReturn setPowerState(unsigned long powerStateOrdinal, IOService *whatDevice);
    virtual IOReturn addPowerChild(IOService *theChild);
    virtual IOReturn powerOverrideOnPriv();
    bool pmJoined() const { return fPMJoined; }
    bool pmInitialised() const { return fPMInit; }

    /* test-bed bookkeeping (not Apple API) */
    bool fStarted = false;
    bool fRegistered = false;
    bool fInactive = false;
    bool fPMJoined = false;
    bool fPMInit = false;
    UInt32 fBusy = 0;
    IOService *fProvider = nullptr;
    bool fPlatformCaller = false;
};

class IONotifier : public OSObject {
    OSDeclareDefaultStructors(IONotifier)
public:
    virtual void remove();
    virtual bool disable() { return true; }
    virtual void enable(bool) {}
};

/* ---- memory (xnu IOMemoryDescriptor.h, IODeviceMemory.h, IOBufferMemoryDescriptor.h) ---- */
enum {
    kIODirectionNone = 0x0,
    kIODirectionIn = 0x1,
    kIODirectionOut = 0x2,
    kIODirectionOutIn = 0x3,
    kIODirectionInOut = 0x3,
};
enum {
    kIOMapAnywhere = 0x00000001,
    kIOMapDefaultCache = 0x00000000,
    kIOMapInhibitCache = 0x00000100,
    kIOMapWriteThruCache = 0x00000200,
    kIOMapCopybackCache = 0x00000300,
    kIOMapWriteCombineCache = 0x00000400,
    kIOMapReadOnly = 0x00001000,
    kIOMemoryPhysicallyContiguous = 0x00000010,
    kIOMemoryKernelUserShared = 0x00000200,
    kIOMemoryMapperNone = 0x00000800,
    kIOMemoryHostOnly = 0x00001000,
};
enum { kIOMemoryMapperNoneFlag = 0x00000800 };
#define kIOMemoryMapperNone 0x00000800

class IOMemoryDescriptor : public OSObject {
    OSDeclareAbstractStructors(IOMemoryDescriptor)
public:
    static IOMemoryDescriptor *withPhysicalAddress(IOPhysicalAddress address, IOByteCount withLength, IODirection withDirection);
    static IOMemoryDescriptor *withAddressRange(mach_vm_address_t address, mach_vm_size_t length, IOOptionBits options, task_t task);
    virtual IOByteCount getLength() const { return fLength; }
    virtual void setTag(IOOptionBits tag) { fTag = tag; }
    virtual IOOptionBits getTag() { return fTag; }
    virtual IODirection getDirection() const { return fDirection; }
    virtual addr64_t getPhysicalSegment(IOByteCount offset, IOByteCount *length, IOOptionBits options = 0);
    IOPhysicalAddress getPhysicalAddress();
    virtual IOReturn prepare(IODirection forDirection = kIODirectionNone);
    virtual IOReturn complete(IODirection forDirection = kIODirectionNone);
    IOMemoryMap *map(IOOptionBits options = 0);
    IOMemoryMap *createMappingInTask(task_t intoTask, mach_vm_address_t atAddress, IOOptionBits options,
                                     mach_vm_size_t offset = 0, mach_vm_size_t length = 0);
    IOByteCount readBytes(IOByteCount offset, void *bytes, IOByteCount withLength);
    IOByteCount writeBytes(IOByteCount offset, const void *bytes, IOByteCount withLength);

    /* test bed: a descriptor is one physical range (device memory) or a list of
       pinned pages with a user address (buffers). */
    IOPhysicalAddress fPhys = 0;
    IOByteCount fLength = 0;
    IOOptionBits fTag = 0;
    IODirection fDirection = kIODirectionNone;
    void *fVirt = nullptr;
    int fPrepared = 0;
};

class IOGeneralMemoryDescriptor : public IOMemoryDescriptor {
    OSDeclareDefaultStructors(IOGeneralMemoryDescriptor)
};

class IODeviceMemory : public IOMemoryDescriptor {
    OSDeclareDefaultStructors(IODeviceMemory)
public:
    struct InitElement {
        IOPhysicalAddress start;
        IOPhysicalLength length;
        IOOptionBits tag;
    };
    static IODeviceMemory *withRange(IOPhysicalAddress start, IOPhysicalLength length);
    static IODeviceMemory *withSubRange(IODeviceMemory *of, IOPhysicalAddress offset, IOPhysicalLength length);
    static OSArray *arrayFromList(InitElement list[], IOItemCount count);
};

class IOMemoryMap : public OSObject {
    OSDeclareDefaultStructors(IOMemoryMap)
public:
    virtual IOVirtualAddress getVirtualAddress() { return fVirt; }
    mach_vm_address_t getAddress() { return fVirt; }
    mach_vm_size_t getSize() { return fLength; }
    virtual IOByteCount getLength() { return fLength; }
    virtual IOPhysicalAddress getPhysicalAddress() { return fPhys; }
    virtual IOMemoryDescriptor *getMemoryDescriptor() { return fMemory; }
    virtual IOReturn unmap();
    void free() override;
    IOVirtualAddress fVirt = 0;
    IOByteCount fLength = 0;
    IOPhysicalAddress fPhys = 0;
    IOMemoryDescriptor *fMemory = nullptr;
    void *fMapping = nullptr;
    size_t fMappingLength = 0;
};

class IOBufferMemoryDescriptor : public IOGeneralMemoryDescriptor {
    OSDeclareDefaultStructors(IOBufferMemoryDescriptor)
public:
    static IOBufferMemoryDescriptor *withOptions(IOOptionBits options, vm_size_t capacity, vm_size_t alignment = 1);
    static IOBufferMemoryDescriptor *inTaskWithPhysicalMask(task_t inTask, IOOptionBits options,
                                                            mach_vm_size_t capacity, mach_vm_address_t physicalMask);
    static IOBufferMemoryDescriptor *inTaskWithOptions(task_t inTask, IOOptionBits options, vm_size_t capacity, vm_size_t alignment = 1);
    static IOBufferMemoryDescriptor *withCapacity(vm_size_t capacity, IODirection withDirection, bool withContiguousMemory = false);
    void *getBytesNoCopy() { return fVirt; }
    void *getBytesNoCopy(vm_size_t start, vm_size_t withLength);
    void setLength(vm_size_t length) { fLength = length; }
    vm_size_t getCapacity() const { return fCapacity; }
    addr64_t getPhysicalSegment(IOByteCount offset, IOByteCount *length, IOOptionBits options = 0) override;
    void free() override;
    vm_size_t fCapacity = 0;
    uint64_t *fPages = nullptr; /* physical address of each 4 KiB page */
};

/* ---- DMA (xnu IODMACommand.h) ---- */
class IODMACommand : public OSObject {
    OSDeclareDefaultStructors(IODMACommand)
public:
    struct Segment32 { UInt32 fIOVMAddr, fLength; };
    struct Segment64 { UInt64 fIOVMAddr, fLength; };
    enum MappingOptions {
        kMapped = 0x00000000,
        kBypassed = 0x00000001,
        kNonCoherent = 0x00000002,
        kTypeMask = 0x0000000f,
        kNoCacheStore = 0x00000010,
        kOnChip = 0x00000020,
        kIterateOnly = 0x00000040,
    };
    typedef bool (*SegmentFunction)(IODMACommand *target, Segment64 segment, void *segments, UInt32 segmentIndex);
    static bool OutputHost64(IODMACommand *, Segment64, void *, UInt32);
    static bool OutputLittle64(IODMACommand *, Segment64, void *, UInt32);
    static bool OutputHost32(IODMACommand *, Segment64, void *, UInt32);
    static IODMACommand *withSpecification(SegmentFunction outSegFunc, UInt8 numAddressBits, UInt64 maxSegmentSize,
                                           MappingOptions mappingOptions = kMapped, UInt64 maxTransferSize = 0,
                                           UInt32 alignment = 1, void *mapper = nullptr, void *refCon = nullptr);
    virtual IOReturn setMemoryDescriptor(const IOMemoryDescriptor *mem, bool autoPrepare = true);
    virtual IOReturn clearMemoryDescriptor(bool autoComplete = true);
    virtual IOReturn prepare(UInt64 offset = 0, UInt64 length = 0, bool flushCache = true, bool synchronize = true);
    virtual IOReturn complete(bool invalidateCache = true, bool synchronize = true);
    virtual IOReturn genIOVMSegments(UInt64 *offset, void *segments, UInt32 *numSegments);
    const IOMemoryDescriptor *getMemoryDescriptor() const { return fMemory; }

private:
    SegmentFunction fOutput = nullptr;
    UInt8 fAddressBits = 64;
    UInt64 fMaxSegment = 0;
    const IOMemoryDescriptor *fMemory = nullptr;
    bool fPrepared = false;
};

/* ---- interrupts (xnu iokit/IOKit/IOInterruptController.h, IOInterruptEventSource.h) ---- */
struct IOInterruptSource {
    IOInterruptController *interruptController;
    OSData *vectorData;
};
struct IOInterruptVector {
    volatile char interruptActive;
    volatile char interruptDisabledSoft;
    volatile char interruptDisabledHard;
    volatile char interruptRegistered;
    IOLock *interruptLock;
    IOService *nub;
    int source;
    void *target;
    IOInterruptHandler handler;
    void *refCon;
    class IOSharedInterruptController *sharedController;
};
typedef IOInterruptVector *IOInterruptVectorRef;

class IOInterruptController : public IOService {
    OSDeclareAbstractStructors(IOInterruptController)
public:
    virtual IOReturn registerInterrupt(IOService *nub, int source, void *target, IOInterruptHandler handler, void *refCon);
    virtual IOReturn unregisterInterrupt(IOService *nub, int source);
    virtual IOReturn getInterruptType(IOService *nub, int source, int *interruptType);
    virtual IOReturn enableInterrupt(IOService *nub, int source);
    virtual IOReturn disableInterrupt(IOService *nub, int source);
    virtual IOReturn causeInterrupt(IOService *nub, int source);
    virtual IOInterruptAction getInterruptHandlerAddress(void);
    virtual IOReturn handleInterrupt(void *refCon, IOService *nub, int source);
    virtual bool vectorCanBeShared(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual void initVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual int getVectorType(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual void disableVectorHard(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual void enableVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual void causeVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector);
    virtual void setCPUInterruptProperties(IOService *service);
    virtual void sendIPI(unsigned int, bool) {}
    virtual void cancelDeferredIPI(unsigned int) {}

protected:
    IOInterruptVector *vectors = nullptr;
    IOSimpleLock *controllerLock = nullptr;
};

class IOSharedInterruptController : public IOInterruptController {
    OSDeclareDefaultStructors(IOSharedInterruptController)
};

class IOEventSource : public OSObject {
    OSDeclareAbstractStructors(IOEventSource)
public:
    typedef void (*Action)(OSObject *owner, ...);
    virtual void enable() { fEnabled = true; }
    virtual void disable() { fEnabled = false; }
    virtual bool isEnabled() const { return fEnabled; }
    virtual bool checkForWork() { return false; }
    virtual void setWorkLoop(IOWorkLoop *workLoop) { fWorkLoop = workLoop; }
    IOWorkLoop *getWorkLoop() const { return fWorkLoop; }
    void signalWorkAvailable();
    OSObject *owner = nullptr;
    bool fEnabled = false;
    IOWorkLoop *fWorkLoop = nullptr;
};

class IOInterruptEventSource : public IOEventSource {
    OSDeclareDefaultStructors(IOInterruptEventSource)
public:
    typedef void (*Action)(OSObject *owner, IOInterruptEventSource *sender, int count);
    static IOInterruptEventSource *interruptEventSource(OSObject *owner, Action action, IOService *provider = nullptr, int intIndex = 0);
    virtual bool init(OSObject *owner, Action action, IOService *provider = nullptr, int intIndex = 0);
    void free() override;
    void enable() override;
    void disable() override;
    bool checkForWork() override;
    virtual void interruptOccurred(void *, IOService *nub, int ind);
    IOService *getProvider() const { return fProvider; }
    int getIntIndex() const { return fIntIndex; }
    Action getAction() const { return fAction; }

protected:
    Action fAction = nullptr;
    IOService *fProvider = nullptr;
    int fIntIndex = 0;
    bool fRegistered = false;
    volatile unsigned fProduced = 0;
    unsigned fConsumed = 0;
};

class IOFilterInterruptEventSource : public IOInterruptEventSource {
    OSDeclareDefaultStructors(IOFilterInterruptEventSource)
public:
    typedef bool (*Filter)(OSObject *, IOFilterInterruptEventSource *);
    static IOFilterInterruptEventSource *filterInterruptEventSource(OSObject *owner, Action action, Filter filter,
                                                                    IOService *provider, int intIndex = 0);
    virtual bool init(OSObject *owner, Action action, Filter filter, IOService *provider, int intIndex = 0);
    void interruptOccurred(void *, IOService *nub, int ind) override;
    virtual void signalInterrupt();

private:
    Filter fFilter = nullptr;
};

class IOTimerEventSource : public IOEventSource {
    OSDeclareDefaultStructors(IOTimerEventSource)
public:
    typedef void (*Action)(OSObject *owner, IOTimerEventSource *sender);
    static IOTimerEventSource *timerEventSource(OSObject *owner, Action action = nullptr);
    IOReturn setTimeoutMS(UInt32) { return kIOReturnSuccess; }
    IOReturn setTimeoutUS(UInt32) { return kIOReturnSuccess; }
    void cancelTimeout() {}
};

class IOCommandGate : public IOEventSource {
    OSDeclareDefaultStructors(IOCommandGate)
public:
    typedef IOReturn (*Action)(OSObject *owner, void *arg0, void *arg1, void *arg2, void *arg3);
    static IOCommandGate *commandGate(OSObject *owner, Action action = nullptr);
    virtual IOReturn runAction(Action action, void *arg0 = nullptr, void *arg1 = nullptr, void *arg2 = nullptr, void *arg3 = nullptr);
    virtual IOReturn runCommand(void *arg0 = nullptr, void *arg1 = nullptr, void *arg2 = nullptr, void *arg3 = nullptr);
    Action fAction = nullptr;
};

class IOWorkLoop : public OSObject {
    OSDeclareDefaultStructors(IOWorkLoop)
public:
    static IOWorkLoop *workLoop();
    virtual IOReturn addEventSource(IOEventSource *newEvent);
    virtual IOReturn removeEventSource(IOEventSource *toRemove);
    typedef IOReturn (*Action)(OSObject *target, void *arg0, void *arg1, void *arg2, void *arg3);
    virtual IOReturn runAction(Action action, OSObject *target, void *arg0 = nullptr, void *arg1 = nullptr,
                               void *arg2 = nullptr, void *arg3 = nullptr);
    /* test bed: run pending event sources (the work loop thread's loop body) */
    bool runEventSources();
    void free() override;
    OSArray *fSources = nullptr;
};

/* ---- platform expert (xnu iokit/IOKit/IOPlatformExpert.h) ---- */
class IOPlatformExpert : public IOService {
    OSDeclareDefaultStructors(IOPlatformExpert)
public:
    virtual IOReturn registerInterruptController(OSSymbol *name, IOInterruptController *interruptController);
    virtual IOInterruptController *lookUpInterruptController(OSSymbol *name);
    virtual bool atInterruptLevel(void);
    IOReturn callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *param1,
                                  void *param2, void *param3, void *param4) override;
    OSDictionary *fControllers = nullptr;
};
#define getPMRootDomain() (IOService::getPlatform())

#include "xvpci_fake_pci.h"

#endif
