/*
 * The test bed's runtime (not Apple API): platform expert, root PCI bridge
 * over sysfs, matching jobs, the interrupt poll loop, and what the point
 * checks record. See README.md.
 */
#ifndef XVPCI_TB_TESTBED_HPP
#define XVPCI_TB_TESTBED_HPP

#include "xvpci_fake.h"
#include "hw.hpp"

#include <string>
#include <vector>

namespace tb {
std::vector<std::string> &notes();
std::vector<std::string> &iologLines();
std::vector<IOWorkLoop *> &workLoops();

/* matching: personalities from the kext's Info.plist and the test driver */
void addPersonality(OSDictionary *personality);
void queueMatching(IOService *nub, IOOptionBits options);
void runJobs();
bool pciMatchNub(IOPCIDevice *nub, OSDictionary *table, SInt32 *score);

/* platform */
IOPlatformExpert *platform();
IOReturn platformFunction(const char *name, void *p1, void *p2, void *p3, void *p4);
void recordPlatformCall(IOService *to, const char *name);
unsigned platformCalls(const char *name);
void recordIntxRequest(IOPCIDevice *nub);
unsigned intxRequests(IOPCIDevice *nub);
bool atInterruptLevel();
IOPCIMessagedInterruptController *messagedController();
int addDeviceInterruptProperties(IOPCIMessagedInterruptController *c, IOService *device, UInt32 vector, UInt32 flags);
OSObject *pciInterruptProperty(IOPCIDevice *nub, const char *key);
bool interruptsResolved(IOPCIDevice *nub);
void setInterruptsResolved(IOPCIDevice *nub);
IOPCIHostBridgeData *sharedBridgeData();
IOReturn configuratorAddHostBridge(IOPCIBridge *bridge);

/* interrupt bookkeeping for the checks */
struct Registration {
    IOService *nub;
    int source;
    int registers, unregisters, strayUnregisters;
    bool registered;
};
std::vector<Registration> &registrations();
void recordRegistration(IOService *nub, int source, bool registered);
void recordUnregistration(IOService *nub, int source, bool wasRegistered);
void recordDispatchSkipped(IOPCIDevice *device, uint32_t entry);
unsigned dispatchSkipped();

/* the CPU: deliver doorbell messages, then run work loops; true if any arrived */
bool poll();

/* the platform's PCI root: one nub per sysfs function, on demand */
IOPCIDevice *rootNub(const hw::Function &function);
bool start();
}

#endif
