/*
 * Fakes of IOPCIFamily's public and private classes (IOPCIDevice.h,
 * IOPCIBridge.h, IOPCIPrivate.h of IOPCIFamily-726.0.5; 484.140.2 where it
 * differs). Included by xvpci_fake.h; behaviour in kext/testbed/fakes.cpp and
 * kext/testbed/configurator.cpp.
 */

#ifndef XVPCI_FAKE_PCI_H
#define XVPCI_FAKE_PCI_H

/* IOPCIDevice.h (726.0.5) lines 119-162 */
union IOPCIAddressSpace {
    UInt32 bits;
    struct {
        unsigned int registerNum : 8;
        unsigned int functionNum : 3;
        unsigned int deviceNum : 5;
        unsigned int busNum : 8;
        unsigned int space : 2;
        unsigned int resv : 3;
        unsigned int t : 1;
        unsigned int prefetch : 1;
        unsigned int reloc : 1;
    } s;
    struct {
        unsigned int registerNum : 8;
        unsigned int functionNum : 3;
        unsigned int deviceNum : 5;
        unsigned int busNum : 8;
        unsigned int registerNumExtended : 4;
        unsigned int resv : 4;
    } es;
};
typedef union IOPCIAddressSpace IOPCIAddressSpace;

enum {
    kIOPCIConfigVendorID = 0x00,
    kIOPCIConfigDeviceID = 0x02,
    kIOPCIConfigCommand = 0x04,
    kIOPCIConfigStatus = 0x06,
    kIOPCIConfigRevisionID = 0x08,
    kIOPCIConfigClassCode = 0x09,
    kIOPCIConfigCacheLineSize = 0x0C,
    kIOPCIConfigLatencyTimer = 0x0D,
    kIOPCIConfigHeaderType = 0x0E,
    kIOPCIConfigBIST = 0x0F,
    kIOPCIConfigBaseAddress0 = 0x10,
    kIOPCIConfigBaseAddress1 = 0x14,
    kIOPCIConfigBaseAddress2 = 0x18,
    kIOPCIConfigBaseAddress3 = 0x1C,
    kIOPCIConfigBaseAddress4 = 0x20,
    kIOPCIConfigBaseAddress5 = 0x24,
    kIOPCIConfigCardBusCISPtr = 0x28,
    kIOPCIConfigSubSystemVendorID = 0x2C,
    kIOPCIConfigSubSystemID = 0x2E,
    kIOPCIConfigExpansionROMBase = 0x30,
    kIOPCIConfigCapabilitiesPtr = 0x34,
    kIOPCIConfigInterruptLine = 0x3C,
    kIOPCIConfigInterruptPin = 0x3D,
    kIOPCIConfigMinimumGrant = 0x3E,
    kIOPCIConfigMaximumLatency = 0x3F,
};
enum {
    kIOPCICommandIOSpace = 0x0001,
    kIOPCICommandMemorySpace = 0x0002,
    kIOPCICommandBusMaster = 0x0004,
    kIOPCICommandBusLead = 0x0004,
    kIOPCICommandInterruptDisable = 0x0400,
};
enum { kIOPCIStatusCapabilities = 0x0010 };
enum {
    kIOPCIPowerManagementCapability = 0x01,
    kIOPCIMSICapability = 0x05,
    kIOPCIPCIExpressCapability = 0x10,
    kIOPCIMSIXCapability = 0x11,
};
enum { kIOPCIConfigSpace = 0, kIOPCIIOSpace = 1, kIOPCI32BitMemorySpace = 2, kIOPCI64BitMemorySpace = 3 };
enum { kIOPCIDeviceOffState = 0, kIOPCIDeviceDozeState = 1, kIOPCIDeviceOnState = 2, kIOPCIDevicePausedState = 3 };
enum { kMSIX = 0x01 }; /* IOPCIPrivate.h:523 */
enum { kIOPCIMSIFlagRespect = 0x00000001 };
#define kIOPCIResourcedKey "IOPCIResourced"
#define kIOPCIMSIFlagsKey "pci-msi-flags"
#define kIOPCIMSILimitKey "pci-msi-limit"
#define kIOPCIMSIMessageControlKey "IOPCIMSIMessageControl"
#define kIOPCIMSIXMessageControlKey "IOPCIMSIXMessageControl"
enum { kCheckLinkParents = 1, kCheckLinkForPower = 2, kCheckLinkInTraining = 4 };
enum { kIOPCIResourceTypeMemory = 0, kIOPCIResourceTypePrefetchMemory = 1, kIOPCIResourceTypeIO = 2, kIOPCIResourceTypeBusNumber = 3, kIOPCIResourceTypeCount = 4 };
typedef int tIOPCILinkSpeed;

class IOPCIBridge;
class IOPCIHostBridge;
class IOPCIMessagedInterruptController;
struct IOPCIConfigEntry;
class IOPCIHostBridgeData;

/* IOPCIDevice: the nub (IOPCIDevice.h; ExpansionData fields named as in IOPCIPrivate.h) */
class IOPCIDevice : public IOService {
    OSDeclareDefaultStructors(IOPCIDevice)
    friend class IOPCIBridge;
    friend class IOPCIMessagedInterruptController;

public:
    struct ExpansionData {
        IOPCIConfigEntry *configEntry;
        IOPCIHostBridge *hostBridge;
        uint16_t msiCapability;
        uint8_t msiMode;
        uint8_t msiEnable;
        uint16_t msiControl;
        uint32_t msiVectorCount;
        uint32_t msiPhysVectorCount;
        IOInterruptVector *msiVectors;
        IOVirtualAddress msiTable;
        IOVirtualAddress msiPBA;
        uint32_t msiSaveAddress0, msiSaveAddress1, msiSaveData;
        uint8_t pciPMState;
        uint16_t expressCapability;
        uint16_t powerCapability;
        IODeviceMemory *deviceMemory[6];
        IOMemoryMap *deviceMemoryMap[6];
        uint32_t domainId;
        bool hardwareResetNeeded;
    };
    IOPCIAddressSpace space;
    UInt32 *savedConfig = nullptr;
    IOPCIBridge *parent = nullptr;
    IOMemoryMap *ioMap = nullptr;
    ExpansionData *reserved = nullptr;

    bool init(OSDictionary *propTable = nullptr) override;
    void free() override;
    bool attach(IOService *provider) override;
    void detach(IOService *provider) override;
    bool matchPropertyTable(OSDictionary *table, SInt32 *score) override;
    bool matchPropertyTable(OSDictionary *table) override;
    IOReturn getResources() override;
    using IORegistryEntry::getProperty;
    OSObject *getProperty(const char *aKey) const override;
    IOReturn callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *p1, void *p2,
                                  void *p3, void *p4) override;
    using IOService::callPlatformFunction;

    virtual UInt32 configRead32(IOPCIAddressSpace space, UInt8 offset);
    virtual void configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data);
    virtual UInt16 configRead16(IOPCIAddressSpace space, UInt8 offset);
    virtual void configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data);
    virtual UInt8 configRead8(IOPCIAddressSpace space, UInt8 offset);
    virtual void configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data);
    virtual UInt32 configRead32(UInt8 offset);
    virtual void configWrite32(UInt8 offset, UInt32 data);
    virtual UInt16 configRead16(UInt8 offset);
    virtual void configWrite16(UInt8 offset, UInt16 data);
    virtual UInt8 configRead8(UInt8 offset);
    virtual void configWrite8(UInt8 offset, UInt8 data);
    virtual UInt32 extendedConfigRead32(IOByteCount offset);
    virtual void extendedConfigWrite32(IOByteCount offset, UInt32 data);
    virtual UInt16 extendedConfigRead16(IOByteCount offset);
    virtual void extendedConfigWrite16(IOByteCount offset, UInt16 data);
    virtual UInt8 extendedConfigRead8(IOByteCount offset);
    virtual void extendedConfigWrite8(IOByteCount offset, UInt8 data);
    virtual UInt32 findPCICapability(UInt8 capabilityID, UInt8 *offset = nullptr);
    virtual UInt32 extendedFindPCICapability(UInt32 capabilityID, IOByteCount *offset = nullptr);
    virtual UInt32 setConfigBits(UInt8 offset, UInt32 mask, UInt32 value);
    virtual bool setMemoryEnable(bool enable);
    virtual bool setIOEnable(bool enable, bool exclusive = false);
    virtual bool setBusMasterEnable(bool enable);
    virtual bool setBusLeadEnable(bool enable);
    virtual UInt8 getBusNumber(void) { return space.s.busNum; }
    virtual UInt8 getDeviceNumber(void) { return space.s.deviceNum; }
    virtual UInt8 getFunctionNumber(void) { return space.s.functionNum; }
    virtual IODeviceMemory *getDeviceMemoryWithRegister(UInt8 reg);
    virtual IOMemoryMap *mapDeviceMemoryWithRegister(UInt8 reg, IOOptionBits options = 0);
    virtual IODeviceMemory *ioDeviceMemory(void);
    IOReturn deviceMemoryRead32(uint8_t memoryIndex, uint64_t offset, uint32_t *readData, IOOptionBits options = 0);
    IOReturn deviceMemoryWrite32(uint8_t memoryIndex, uint64_t offset, uint32_t data, IOOptionBits options = 0);
    IOReturn setProperties(OSObject *) { return kIOReturnUnsupported; }
};

/* IOPCIBridge (IOPCIBridge.h, 726.0.5) */
class IOPCIBridge : public IOService {
    OSDeclareAbstractStructors(IOPCIBridge)
    friend class IOPCIDevice;
    friend class IOPCIHostBridge;
    friend class IOPCIMessagedInterruptController;
    friend struct IOPCIConfiguratorFake;

public:
    struct RangeEntry {
        IOPhysicalAddress start;
        IOPhysicalLength length;
        IOPhysicalAddress next;
    };
    struct ExpansionData {
        IOPCIHostBridgeData *hostBridgeData;
        RangeEntry rangeLists[kIOPCIResourceTypeCount][8];
        unsigned rangeCount[kIOPCIResourceTypeCount];
        IOPCIMessagedInterruptController *messagedInterruptController;
        uint32_t domainId;
        bool readyToProbe;
        bool childrenInReset;
    };

    bool init(OSDictionary *propTable = nullptr) override;
    void free() override;
    bool start(IOService *provider) override;
    void stop(IOService *provider) override;
    IOService *probe(IOService *provider, SInt32 *score) override;
    IOReturn callPlatformFunction(const OSSymbol *functionName, bool waitForFunction, void *p1, void *p2,
                                  void *p3, void *p4) override;
    using IOService::callPlatformFunction;

    virtual bool configure(IOService *provider);
    virtual void probeBus(IOService *provider, UInt8 busNum);
    virtual UInt8 firstBusNum(void);
    virtual UInt8 lastBusNum(void);
    virtual void spaceFromProperties(OSDictionary *propTable, IOPCIAddressSpace *space);
    virtual OSDictionary *constructProperties(IOPCIAddressSpace space);
    virtual IOPCIDevice *createNub(OSDictionary *from);
    virtual bool initializeNub(IOPCIDevice *nub, OSDictionary *from);
    virtual bool publishNub(IOPCIDevice *nub, UInt32 index);
    virtual bool addBridgeMemoryRange(IOPhysicalAddress start, IOPhysicalLength length, bool host);
    virtual bool addBridgeIORange(IOByteCount start, IOByteCount length);
    virtual bool addBridgePrefetchableMemoryRange(addr64_t start, addr64_t length);
    virtual IOReturn getNubResources(IOService *nub);
    virtual IODeviceMemory *ioDeviceMemory(void) = 0;
    virtual IOPCIAddressSpace getBridgeSpace(void) = 0;
    virtual UInt32 configRead32(IOPCIAddressSpace space, UInt8 offset) = 0;
    virtual void configWrite32(IOPCIAddressSpace space, UInt8 offset, UInt32 data) = 0;
    virtual UInt16 configRead16(IOPCIAddressSpace space, UInt8 offset) = 0;
    virtual void configWrite16(IOPCIAddressSpace space, UInt8 offset, UInt16 data) = 0;
    virtual UInt8 configRead8(IOPCIAddressSpace space, UInt8 offset) = 0;
    virtual void configWrite8(IOPCIAddressSpace space, UInt8 offset, UInt8 data) = 0;
    virtual UInt32 findPCICapability(IOPCIAddressSpace space, UInt8 capabilityID, UInt8 *offset = nullptr);
    virtual IOReturn checkLink(uint32_t options = 0);
    virtual IOReturn setLinkSpeed(tIOPCILinkSpeed, bool) { return kIOReturnUnsupported; }
    virtual IOReturn getLinkSpeed(tIOPCILinkSpeed *) { return kIOReturnUnsupported; }
    virtual bool isDTNub(IOPCIDevice *) { return true; }
    virtual IOReturn resolveInterrupts(IOPCIDevice *nub);
    virtual IOReturn resolveMSIInterrupts(IOService *provider, IOPCIDevice *nub);
    virtual IOReturn resolveLegacyInterrupts(IOService *provider, IOPCIDevice *nub);
    IOReturn getDTNubAddressing(IOPCIDevice *nub);

    /* test bed: which bridge data a config/teardown path would dereference */
    IOPCIHostBridgeData *hostBridgeDataForTest() const { return reserved ? reserved->hostBridgeData : nullptr; }
    ExpansionData *testbedReserved() const { return reserved; }

protected:
    ExpansionData *reserved = nullptr;
};

class IOPCIHostBridgeData : public OSObject {
    OSDeclareDefaultStructors(IOPCIHostBridgeData)
public:
    bool initWithParameters(uint32_t domainId) { fDomainId = domainId; return true; }
    uint32_t fDomainId = 0;
    bool _useLinkStatusSerializer = false;
    bool _supportsOffloadEngine = false;
};

/* IOPCIPrivate.h (726.0.5) lines 857-879; MacKernelSDK declares it in IOPCIBridge.h */
class IOPCIHostBridge : public IOPCIBridge {
    OSDeclareDefaultStructors(IOPCIHostBridge)
public:
    bool start(IOService *provider) override;
    void free(void) override;
    IOService *probe(IOService *provider, SInt32 *score) override;
    bool configure(IOService *provider) override;
    IOPCIHostBridgeData *bridgeData = nullptr;
    uint32_t _domainId = 0;
    IODeviceMemory *ioDeviceMemory(void) override { return nullptr; }
    IOPCIAddressSpace getBridgeSpace(void) override { IOPCIAddressSpace s; s.bits = 0; return s; }

protected:
    IOReturn setLinkSpeed(tIOPCILinkSpeed, bool) override { return kIOReturnUnsupported; }
    IOReturn getLinkSpeed(tIOPCILinkSpeed *) override { return kIOReturnUnsupported; }
};

/* IOPCIMessagedInterruptController (IOPCIPrivate.h / .cpp, 726.0.5) */
class IOPCIMessagedInterruptController : public IOInterruptController {
    OSDeclareDefaultStructors(IOPCIMessagedInterruptController)
public:
    bool init(UInt32 numVectors, UInt32 baseVector);
    IOReturn registerInterrupt(IOService *nub, int source, void *target, IOInterruptHandler handler, void *refCon) override;
    IOReturn unregisterInterrupt(IOService *nub, int source) override;
    IOReturn getInterruptType(IOService *nub, int source, int *interruptType) override;
    IOReturn enableInterrupt(IOService *nub, int source) override;
    IOReturn disableInterrupt(IOService *nub, int source) override;
    IOReturn handleInterrupt(void *refCon, IOService *nub, int source) override;
    bool vectorCanBeShared(IOInterruptVectorNumber, IOInterruptVector *) override { return false; }
    void initVector(IOInterruptVectorNumber, IOInterruptVector *) override {}
    int getVectorType(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) override;
    void disableVectorHard(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) override;
    void enableVector(IOInterruptVectorNumber vectorNumber, IOInterruptVector *vector) override;
    IOReturn allocateDeviceInterrupts(IOService *entry, void *deviceAddress, UInt32 msiCapability);
    void initDevice(IOPCIDevice *device);
    void enableDeviceMSI(IOPCIDevice *device);
    void disableDeviceMSI(IOPCIDevice *device);
    /* test bed: the CPU took system vector `vector` (its message was written) */
    void deliver(unsigned vector);
    UInt32 _vectorBase = 0;
    UInt32 _vectorCount = 0;
    UInt32 _nextFree = 0;
};

#define kIOPCIConfiguratorDeepIdle 0
#define gIOPCIFlags 0

#endif
