/*
 * xvpci-testbed: runs kext/XvpciWindow.cpp (linked in unchanged) on the real
 * window device inside the Linux guest, and the test driver on the child it
 * publishes and on the directly attached device; then checks issue 17's
 * points 1-10 against what happened.
 *
 *   xvpci-testbed --personalities FILE --bundle-id ID [--paths window,direct]
 *
 * FILE: one personality per line, tab-separated key=value; a value "#N" is a
 * number, "k.sub=v" puts sub=v in dictionary k (from Info.plist, by the harness).
 * Output: "CHECK <n> PASS|FAIL <what>" per point, "RESULT <path> ..." per test
 * driver run, and a last line "TESTBED PASS" or "TESTBED FAIL".
 */
#include "nvme_driver.hpp"

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <functional>
#include <string>

extern "C" {
/* libkmod's c_start.c: _start calls _realmain when the kext set it. Weak here so a
   kext that defines neither still links (and check 10 says so). */
extern kmod_info_t kmod_info __attribute__((weak));
extern kmod_start_func_t *_realmain __attribute__((weak));
}

namespace {

int gFailures;

void check(int point, bool pass, const std::string &what)
{
    printf("CHECK %d %s %s\n", point, pass ? "PASS" : "FAIL", what.c_str());
    if (!pass) gFailures++;
}

bool loadPersonalities(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("test bed: cannot read %s\n", path);
        return false;
    }
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        OSDictionary *p = OSDictionary::withCapacity(8);
        for (char *save = nullptr, *field = strtok_r(line, "\t", &save); field; field = strtok_r(nullptr, "\t", &save)) {
            char *eq = strchr(field, '=');
            if (!eq) continue;
            *eq = 0;
            const char *key = field, *value = eq + 1;
            OSObject *object;
            if (value[0] == '#') object = OSNumber::withNumber(strtoull(value + 1, nullptr, 0), 32);
            else object = OSString::withCString(value);
            const char *dot = strchr(key, '.');
            if (dot) {
                std::string outer(key, dot - key);
                OSDictionary *sub = OSDynamicCast(OSDictionary, p->getObject(outer.c_str()));
                if (!sub) {
                    sub = OSDictionary::withCapacity(2);
                    p->setObject(outer.c_str(), sub);
                    sub->release();
                }
                sub->setObject(dot + 1, object);
            } else {
                p->setObject(key, object);
            }
            object->release();
        }
        tb::addPersonality(p);
        p->release();
    }
    fclose(f);
    return true;
}

void walk(IORegistryEntry *root, const std::function<void(IORegistryEntry *)> &visit)
{
    OSArray *kids = root->childrenIn(gIOServicePlane);
    for (unsigned i = 0; i < kids->getCount(); i++) {
        IORegistryEntry *e = OSDynamicCast(IORegistryEntry, kids->getObject(i));
        visit(e);
        walk(e, visit);
    }
    kids->release();
}

const tbnvme::Result *resultFor(IOPCIDevice *nub)
{
    for (const tbnvme::Result &r : tbnvme::results()) {
        if (r.nub == nub) return &r;
    }
    return nullptr;
}

void printResult(const char *path, const tbnvme::Result *r)
{
    if (!r) {
        printf("RESULT %s ran=0\n", path);
        return;
    }
    printf("RESULT %s ran=1 ok=%d vs=%#x model='%s' serial='%s' blocks=%llu block_size=%u verified=%u interrupts=%u by_interrupt=%u error='%s'\n",
           path, r->ok, r->vs, r->model, r->serial, (unsigned long long)r->blocks, r->blockSize, r->bytesVerified, r->interrupts,
           r->completionsByInterrupt, r->error);
}
}

int main(int argc, char **argv)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    /* A crash in kext or fake code: say so with a backtrace (addr2line on the host). */
    signal(SIGSEGV, [](int sig) {
        void *frames[32];
        int n = backtrace(frames, 32);
        char line[64];
        int len = snprintf(line, sizeof(line), "CRASH signal %d; backtrace:\n", sig);
        write(1, line, len);
        backtrace_symbols_fd(frames, n, 1);
        _exit(4);
    });
    const char *personalities = nullptr, *bundleId = "io.xvpci.window", *paths = "window,direct";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--personalities")) personalities = argv[i + 1];
        else if (!strcmp(argv[i], "--bundle-id")) bundleId = argv[i + 1];
        else if (!strcmp(argv[i], "--paths")) paths = argv[i + 1];
    }
    if (!personalities) {
        printf("usage: xvpci-testbed --personalities FILE [--bundle-id ID] [--paths window,direct]\n");
        return 2;
    }
    if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) printf("test bed: mlockall failed; DMA pages are locked one by one\n");
    if (!tb::start() || !loadPersonalities(personalities)) return 2;
    /* The test driver: macOS's NVMe driver matches class 0x010802. */
    OSDictionary *driver = OSDictionary::withCapacity(4);
    driver->setObject(kIOClassKey, OSString::withCString("XvpciTestNVMe"));
    driver->setObject(kIOProviderClassKey, OSString::withCString("IOPCIDevice"));
    driver->setObject(kIOPCIClassMatchKey, OSString::withCString("0x01080200&0xffffff00"));
    tb::addPersonality(driver);

    std::vector<hw::Function> functions = hw::scan();
    const hw::Function *window = nullptr, *direct = nullptr;
    for (const hw::Function &f : functions) {
        if (f.vendor == 0x8086 && f.device == 0xa77f) window = &f;
        if (f.classCode == 0x010802) direct = &f; /* sysfs "class": 24 bits */
    }
    bool wantWindow = strstr(paths, "window") != nullptr, wantDirect = strstr(paths, "direct") != nullptr;
    if (wantWindow && !window) {
        printf("test bed: no window device (8086:a77f) in /sys/bus/pci/devices\n");
        return 2;
    }
    if (wantDirect && !direct) {
        printf("test bed: no NVMe function (class 010802) in /sys/bus/pci/devices\n");
        return 2;
    }

    IOPCIDevice *windowNub = nullptr;
    if (wantWindow) {
        printf("== window path: %s %04x:%04x\n", window->bdf.c_str(), window->vendor, window->device);
        windowNub = tb::rootNub(*window);
        tb::runJobs();
    }
    IOPCIDevice *directNub = nullptr;
    if (wantDirect) {
        printf("== direct path: %s %04x:%04x\n", direct->bdf.c_str(), direct->vendor, direct->device);
        directNub = tb::rootNub(*direct);
        tb::runJobs();
        printResult("direct", resultFor(directNub));
    }
    if (!wantWindow) {
        const tbnvme::Result *r = resultFor(directNub);
        printf("TESTBED %s\n", r && r->ok ? "PASS" : "FAIL");
        return r && r->ok ? 0 : 1;
    }

    /* What the kext made of the window. */
    IOService *kextDriver = nullptr;
    std::vector<IOPCIBridge *> bridges;
    std::vector<IOPCIDevice *> childNubs;
    {
        OSArray *kids = windowNub->childrenIn(gIOServicePlane);
        if (kids->getCount()) kextDriver = OSDynamicCast(IOService, kids->getObject(0));
        kids->release();
    }
    walk(windowNub, [&](IORegistryEntry *e) {
        if (IOPCIBridge *b = OSDynamicCast(IOPCIBridge, e)) bridges.push_back(b);
        if (IOPCIDevice *d = OSDynamicCast(IOPCIDevice, e)) childNubs.push_back(d);
    });
    printf("== window: driver %s, %zu bridge(s), %zu child nub(s)\n", kextDriver ? kextDriver->getMetaClass()->getClassName() : "(none)",
           bridges.size(), childNubs.size());
    IOPCIDevice *child = childNubs.empty() ? nullptr : childNubs.front();
    const tbnvme::Result *childResult = child ? resultFor(child) : nullptr;
    printResult("window", childResult);

    /* 1: a nub is created, published and driven. */
    check(1, child && child->fRegistered && childResult,
          child ? "child nub published and matched by the test driver" : "no child IOPCIDevice below the window");
    /* 2: the nub was init()ed (reserved and property table exist). */
    check(2, child && child->reserved && child->getPropertyTable() && child->reserved->configEntry,
          child ? "child nub init()ed by the configurator (reserved, properties, config entry)" : "no child nub to inspect");
    /* 3: the bridge has host-bridge data. */
    IOPCIBridge *bridge = bridges.empty() ? nullptr : bridges.front();
    check(3, bridge && bridge->hostBridgeDataForTest(),
          bridge ? std::string(bridge->getMetaClass()->getClassName()) + (bridge->hostBridgeDataForTest() ? " has hostBridgeData" : " has NULL hostBridgeData")
                 : "no IOPCIBridge below the window");
    /* 4: completions arrive by interrupt through the window under the dispatch rules,
       also with a second source registered. The direct device, whose function has one
       shared vector as IOPCIFamily gives by default, is the control: there the PBA
       rule must drop the completion, or the fake's rule is not live. */
    for (IOPCIDevice *nub : {child, directNub}) {
        if (tbnvme::Result *r = nub ? const_cast<tbnvme::Result *>(resultFor(nub)) : nullptr) {
            if (r->ok) tbnvme::twoSources(*r);
        }
    }
    {
        const tbnvme::Result *d = directNub ? resultFor(directNub) : nullptr;
        if (d && d->twoSourcesRan) {
            printf("CONTROL direct two_sources_delivered=%d skipped_by_pba_rule=%u\n", d->twoSourcesDelivered, tb::dispatchSkipped());
        }
        bool ok = childResult && childResult->ok && childResult->completionsByInterrupt >= 6 && !childResult->timedOut &&
                  childResult->twoSourcesRan && childResult->twoSourcesDelivered;
        check(4, ok, childResult ? "completions by interrupt: " + std::to_string(childResult->completionsByInterrupt) +
                                       ", with two sources registered: " + (childResult->twoSourcesDelivered ? "delivered" : "NOT delivered")
                                 : "no driver ran on a child");
    }
    /* 5 and 6: the bridge's config accessors for the child function. */
    if (bridge) {
        IOPCIAddressSpace space;
        space.bits = 0;
        if (child) space = child->space;
        else {
            space.s.busNum = bridge->firstBusNum();
            for (unsigned dev = 0; dev < 32; dev++) {
                space.s.deviceNum = dev;
                if (bridge->configRead32(space, 0) != 0xFFFFFFFF) break;
            }
        }
        space.s.registerNum = 0;
        IOPCIAddressSpace ext = space;
        ext.es.registerNumExtended = 1;
        UInt32 id = bridge->configRead32(space, 0), at100 = bridge->configRead32(ext, 0);
        char text[160];
        snprintf(text, sizeof(text), "config 0x000 = %#x, 0x100 = %#x", id, at100);
        check(5, id != 0xFFFFFFFF && at100 != id, text);
        UInt8 pin = bridge->configRead8(space, kIOPCIConfigInterruptPin);
        unsigned asked = 0;
        for (IOPCIDevice *d : childNubs) asked += tb::intxRequests(d);
        snprintf(text, sizeof(text), "Interrupt Pin reads %u; INTx routes asked for the window's children: %u", pin, asked);
        check(6, pin == 0 && asked == 0, text);
    } else {
        check(5, false, "no bridge to read config through");
        check(6, false, "no bridge to read config through");
    }
    /* 7: an interrupt raised while the source is disabled is not lost; one raised while
       the entry is masked in hardware is latched and replayed on unmask. */
    {
        const tbnvme::Result *r = childResult;
        bool soft = r && r->postedWhileDisabled && (r->interruptAfterEnable || r->handledWhileDisabled);
        bool hard = r && r->maskedPosted && r->maskedDelivered == 0 && r->replayedOnUnmask;
        char text[240];
        if (r) {
            snprintf(text, sizeof(text),
                     "source disabled: completion posted %s, interrupt seen %s; entry masked: posted %s, "
                     "delivered while masked %u, replayed on unmask %s",
                     r->postedWhileDisabled ? "yes" : "no", (r->interruptAfterEnable || r->handledWhileDisabled) ? "yes" : "no",
                     r->maskedPosted ? "yes" : "no", r->maskedDelivered, r->replayedOnUnmask ? "yes" : "no");
        } else {
            snprintf(text, sizeof(text), "no driver ran on a child");
        }
        check(7, soft && hard, text);
    }
    /* 8: getNubResources fills in the base: deviceMemoryRead32 works; tags are spaces. */
    if (child && childResult) {
        UInt32 vs = 0, directVs = 0;
        IOReturn r = child->deviceMemoryRead32(0, 0x08, &vs);
        /* The same read on the direct device, so both logs carry it. */
        if (directNub) directNub->deviceMemoryRead32(0, 0x08, &directVs);
        IODeviceMemory *bar0 = child->getDeviceMemoryWithRegister(kIOPCIConfigBaseAddress0);
        IOPCIAddressSpace tag;
        tag.bits = bar0 ? bar0->getTag() : 0;
        bool tagOk = bar0 && (tag.s.space == kIOPCI32BitMemorySpace || tag.s.space == kIOPCI64BitMemorySpace) &&
                     tag.s.deviceNum == child->space.s.deviceNum && tag.s.busNum == child->space.s.busNum;
        char text[160];
        snprintf(text, sizeof(text), "deviceMemoryRead32(0, VS) -> %#x (%#x), BAR0 tag %#x", r, vs, tag.bits);
        check(8, r == kIOReturnSuccess && vs == childResult->vs && tagOk, text);
    } else {
        check(8, false, "no child nub with device memory");
    }
    /* 10 before 9 (9 tears the kext down). */
    {
        bool has = &kmod_info != nullptr;
        char text[200];
        snprintf(text, sizeof(text), "kmod_info %s%s%s, _realmain %s", has ? "present, name " : "missing", has ? kmod_info.name : "",
                 has && !strcmp(kmod_info.name, bundleId) ? " (= CFBundleIdentifier)" : "",
                 &_realmain != nullptr ? "present" : "missing");
        check(10, has && !strcmp(kmod_info.name, bundleId) && kmod_info.start && &_realmain != nullptr, text);
    }
    /* 9: what stop, a failed start and a reset leave behind. */
    {
        /* (b) A reset clears the child's MSI-X table; IOPCIFamily restores it from the
           message it saved (restoreDeviceState -> initDevice, IOPCIMessagedInterrupt-
           Controller.cpp 726:726 -> 603-652), table then Message Control. Interrupts
           must still arrive. The same is done to the direct device, so both logs
           carry the same traffic. */
        bool restoredOk = true;
        for (IOPCIDevice *nub : {child, directNub}) {
            tbnvme::Result *r = nub ? const_cast<tbnvme::Result *>(resultFor(nub)) : nullptr;
            if (!r || !r->ok || !nub->reserved->msiTable) {
                if (nub == child) restoredOk = false;
                continue;
            }
            volatile uint32_t *table = reinterpret_cast<volatile uint32_t *>(nub->reserved->msiTable);
            for (uint32_t v = 0; v < nub->reserved->msiPhysVectorCount; v++) {
                table[v * 4 + 3] = 1;
                table[v * 4 + 0] = 0;
                table[v * 4 + 1] = 0;
                table[v * 4 + 2] = 0;
            }
            tb::messagedController()->initDevice(nub);
            bool ok = tbnvme::ping(*r);
            if (nub == child) restoredOk = ok;
            tbnvme::shutdown(*r);
        }
        /* (c) A start that fails (a window without BARs) leaves nothing joined or registered. */
        bool failedStartClean = false;
        if (kextDriver) {
            IOPCIDevice *dummy = OSTypeAlloc(IOPCIDevice);
            dummy->init();
            dummy->setName("pci8086,a77f-without-bars");
            IOService *second = OSDynamicCast(IOService, OSMetaClass::allocClassWithName(kextDriver->getMetaClass()->getClassName()));
            if (second && second->init() && second->attach(dummy)) {
                bool started = second->start(dummy);
                unsigned regs = 0;
                for (const tb::Registration &r : tb::registrations()) regs += r.nub == dummy ? r.registers : 0;
                failedStartClean = !started && !second->pmJoined() && !second->pmInitialised() && regs == 0;
                if (started) second->stop(dummy);
                second->detach(dummy);
            }
            OSSafeReleaseNULL(second);
            dummy->release();
        }
        /* (a) stop unregisters exactly what was registered on the window. */
        unsigned left = 0, stray = 0, registered = 0;
        if (kextDriver) {
            kextDriver->terminate();
            tb::runJobs();
            for (const tb::Registration &r : tb::registrations()) {
                if (r.nub != windowNub) continue;
                registered += r.registers;
                left += r.registered ? 1 : 0;
                stray += r.strayUnregisters;
            }
        }
        char text[320];
        snprintf(text, sizeof(text),
                 "window interrupts registered %u, left after stop %u, stray unregistrations %u; failed start clean: %s; "
                 "interrupts after an MSI-X restore: %s",
                 registered, left, stray, failedStartClean ? "yes" : "no", restoredOk ? "yes" : "no");
        check(9, kextDriver && registered > 0 && left == 0 && stray == 0 && failedStartClean && restoredOk, text);
    }
    bool pass = gFailures == 0 && (!wantDirect || (resultFor(directNub) && resultFor(directNub)->ok));
    printf("TESTBED %s (%d check(s) failed)\n", pass ? "PASS" : "FAIL", gFailures);
    return pass ? 0 : 1;
}
