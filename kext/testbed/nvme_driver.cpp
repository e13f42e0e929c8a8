/*
 * XvpciTestNVMe: a small IOKit driver doing what macOS's NVMe driver does
 * first, on whatever IOPCIDevice it matches (class 0x0108xx): map BAR0
 * through the nub's device memory, read CAP/VS, reset, admin queues, Identify
 * by DMA, I/O queues, write blocks and read them back, completions by
 * interrupt (the nub's first messaged interrupt source). It only uses the
 * IOKit API, so it runs unchanged on the nub the kext publishes and on the
 * directly attached device.
 */
#include "nvme_driver.hpp"

#include <map>

class XvpciTestNVMe : public IOService {
    OSDeclareDefaultStructors(XvpciTestNVMe)
public:
    bool start(IOService *provider) override;
    void stop(IOService *provider) override;
    bool ping();
    void shutdown();
    void twoSources();

private:
    struct Queue {
        IOBufferMemoryDescriptor *memory;
        uint64_t phys;
        unsigned entries, tail, head, phase;
    };
    bool run();
    bool makeQueue(Queue &q, unsigned entries, unsigned entrySize);
    uint64_t physOf(IOBufferMemoryDescriptor *buffer, IOByteCount offset = 0);
    uint32_t rd(unsigned off) { return *reinterpret_cast<volatile uint32_t *>(fRegs + off); }
    void wr(unsigned off, uint32_t v) { *reinterpret_cast<volatile uint32_t *>(fRegs + off) = v; }
    bool submit(Queue &sq, unsigned qid, const uint32_t cmd[16]);
    bool waitCompletion(Queue &cq, unsigned qid, uint16_t cid, uint16_t *status, bool byInterrupt = true);
    bool completionPosted(Queue &cq);
    bool waitReady(bool ready);
    static void interrupt(OSObject *target, void *refCon, IOService *nub, int source);

    IOPCIDevice *fNub = nullptr;
    IOMemoryMap *fMap = nullptr;
    IOVirtualAddress fRegs = 0;
    unsigned fStride = 4;
    int fSource = -1;
    volatile unsigned fInterrupts = 0;
    uint16_t fNextCid = 1;
    Queue fAsq{}, fAcq{}, fIosq{}, fIocq{};
    tbnvme::Result *fResult = nullptr;
};

OSDefineMetaClassAndStructors(XvpciTestNVMe, IOService)

namespace tbnvme {
std::deque<Result> &results()
{
    static std::deque<Result> v; /* stable addresses: drivers keep pointers */
    return v;
}
bool ping(Result &r) { return r.driver && static_cast<XvpciTestNVMe *>(r.driver)->ping(); }
void twoSources(Result &r)
{
    if (r.driver) static_cast<XvpciTestNVMe *>(r.driver)->twoSources();
}
void shutdown(Result &r)
{
    if (r.driver) static_cast<XvpciTestNVMe *>(r.driver)->shutdown();
}
}

/* One admin command (Get Features, number of queues), its completion by interrupt. */
bool XvpciTestNVMe::ping()
{
    uint32_t cmd[16] = {};
    uint16_t cid = fNextCid++, status = 0;
    cmd[0] = 0x0A | (cid << 16);
    cmd[10] = 7;
    submit(fAsq, 0, cmd);
    bool ok = waitCompletion(fAcq, 0, cid, &status) && status == 0;
    printf("  nvme[%s]: Get Features %s\n", fResult->where, ok ? "completed by interrupt" : "did not complete by interrupt");
    return ok;
}

/* A second interrupt source registered and enabled (MSI-X entry 1, unused by the
   queues): does a completion on entry 0 still reach the handler? With one shared
   system vector per function, IOPCIMessagedInterruptController then dispatches
   only entries whose PBA bit is set (726:834-842), and an unmasked entry has none. */
void XvpciTestNVMe::twoSources()
{
    fResult->twoSourcesRan = false;
    int second = -1;
    for (int index = fSource + 1; index < fSource + 8; index++) {
        int type = 0;
        if (fNub->getInterruptType(index, &type) != kIOReturnSuccess) break;
        if (type & kIOInterruptTypePCIMessaged) {
            second = index;
            break;
        }
    }
    if (second < 0 || fNub->registerInterrupt(second, this, &XvpciTestNVMe::interrupt) != kIOReturnSuccess) return;
    fNub->enableInterrupt(second);
    unsigned before = fInterrupts;
    uint32_t cmd[16] = {};
    uint16_t cid = fNextCid++, status = 0;
    cmd[0] = 0x0A | (cid << 16);
    cmd[10] = 7;
    submit(fAsq, 0, cmd);
    uint64_t deadline = mach_absolute_time() + 2ULL * 1000000000ULL;
    while (fInterrupts == before && mach_absolute_time() < deadline) {
        tb::poll();
        IODelay(500);
    }
    fResult->twoSourcesDelivered = fInterrupts != before;
    fResult->twoSourcesRan = waitCompletion(fAcq, 0, cid, &status, false) && status == 0;
    fNub->disableInterrupt(second);
    fNub->unregisterInterrupt(second);
    printf("  nvme[%s]: with sources %d and %d registered, a completion %s by interrupt\n", fResult->where, fSource, second,
           fResult->twoSourcesDelivered ? "arrived" : "did NOT arrive");
}

/* Normal shutdown (CC.SHN = 01b), as the driver does on stop. */
void XvpciTestNVMe::shutdown()
{
    if (!fRegs) return;
    wr(0x14, (rd(0x14) & ~(3u << 14)) | (1u << 14));
    for (int i = 0; i < 2000 && ((rd(0x1C) >> 2) & 3) != 2; i++) IODelay(500);
}

#define FAIL(...)                                                                                \
    do {                                                                                         \
        snprintf(fResult->error, sizeof(fResult->error), __VA_ARGS__);                          \
        printf("  nvme[%s]: FAILED: %s\n", fResult->where, fResult->error);                     \
        return false;                                                                            \
    } while (0)

bool XvpciTestNVMe::start(IOService *provider)
{
    if (!IOService::start(provider)) return false;
    fNub = OSDynamicCast(IOPCIDevice, provider);
    if (!fNub) return false;
    tbnvme::results().push_back(tbnvme::Result{});
    fResult = &tbnvme::results().back();
    fResult->nub = fNub;
    fResult->driver = this;
    snprintf(fResult->where, sizeof(fResult->where), "%s@%s", fNub->getName(), fNub->getLocation());
    fResult->ok = run();
    return true;
}

void XvpciTestNVMe::stop(IOService *provider)
{
    if (fSource >= 0) {
        fNub->disableInterrupt(fSource);
        fNub->unregisterInterrupt(fSource);
    }
    OSSafeReleaseNULL(fMap);
    IOService::stop(provider);
}

uint64_t XvpciTestNVMe::physOf(IOBufferMemoryDescriptor *buffer, IOByteCount offset)
{
    /* IODMACommand with 64-bit host segments, at most a page each (PRP entries). */
    IODMACommand *dma = IODMACommand::withSpecification(IODMACommand::OutputHost64, 64, 4096);
    dma->setMemoryDescriptor(buffer);
    UInt64 at = offset;
    IODMACommand::Segment64 segment{};
    UInt32 n = 1;
    IOReturn r = dma->genIOVMSegments(&at, &segment, &n);
    dma->clearMemoryDescriptor();
    dma->release();
    return r == kIOReturnSuccess && n == 1 ? segment.fIOVMAddr : 0;
}

bool XvpciTestNVMe::makeQueue(Queue &q, unsigned entries, unsigned entrySize)
{
    q.memory = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionInOut | kIOMemoryPhysicallyContiguous,
                                                                entries * entrySize, 0xFFFFFFFFFFFFF000ULL);
    if (!q.memory) return false;
    q.phys = physOf(q.memory);
    q.entries = entries;
    q.tail = q.head = 0;
    q.phase = 1;
    return q.phys != 0;
}

void XvpciTestNVMe::interrupt(OSObject *target, void *, IOService *, int)
{
    XvpciTestNVMe *self = OSDynamicCast(XvpciTestNVMe, target);
    if (self) self->fInterrupts++;
}

bool XvpciTestNVMe::waitReady(bool ready)
{
    for (int i = 0; i < 20000; i++) {
        uint32_t csts = rd(0x1C);
        if (csts == 0xFFFFFFFF) return false;
        if (((csts & 1) != 0) == ready) return true;
        IODelay(500);
    }
    return false;
}

bool XvpciTestNVMe::submit(Queue &sq, unsigned qid, const uint32_t cmd[16])
{
    volatile uint32_t *slot = reinterpret_cast<volatile uint32_t *>(static_cast<char *>(sq.memory->getBytesNoCopy()) + sq.tail * 64);
    for (int i = 0; i < 16; i++) slot[i] = cmd[i];
    __sync_synchronize();
    sq.tail = (sq.tail + 1) % sq.entries;
    wr(0x1000 + (2 * qid) * fStride, sq.tail);
    return true;
}

bool XvpciTestNVMe::completionPosted(Queue &cq)
{
    volatile uint32_t *entry = reinterpret_cast<volatile uint32_t *>(static_cast<char *>(cq.memory->getBytesNoCopy()) + cq.head * 16);
    return ((entry[3] >> 16) & 1) == cq.phase;
}

bool XvpciTestNVMe::waitCompletion(Queue &cq, unsigned qid, uint16_t cid, uint16_t *status, bool byInterrupt)
{
    uint64_t deadline = mach_absolute_time() + 20ULL * 1000000000ULL;
    unsigned seen = fInterrupts;
    while (true) {
        tb::poll();
        bool interrupted = fInterrupts != seen;
        if ((interrupted || !byInterrupt) && completionPosted(cq)) break;
        if (mach_absolute_time() > deadline) {
            fResult->timedOut = true;
            return false;
        }
        IODelay(200);
    }
    volatile uint32_t *entry = reinterpret_cast<volatile uint32_t *>(static_cast<char *>(cq.memory->getBytesNoCopy()) + cq.head * 16);
    uint32_t dw3 = entry[3];
    *status = (uint16_t)(dw3 >> 17);
    bool match = (dw3 & 0xFFFF) == cid;
    cq.head = (cq.head + 1) % cq.entries;
    if (cq.head == 0) cq.phase ^= 1;
    wr(0x1000 + (2 * qid + 1) * fStride, cq.head);
    fResult->completionsByInterrupt += byInterrupt ? 1 : 0;
    return match;
}

bool XvpciTestNVMe::run()
{
    /* macOS's NVMe driver: memory and bus lead on, BAR0 by register. */
    fNub->setMemoryEnable(true);
    fNub->setBusMasterEnable(true);
    fMap = fNub->mapDeviceMemoryWithRegister(kIOPCIConfigBaseAddress0);
    if (!fMap) FAIL("mapDeviceMemoryWithRegister(BAR0) returned nothing");
    fRegs = fMap->getVirtualAddress();
    fResult->bar0Phys = fMap->getPhysicalAddress();
    uint64_t cap = rd(0x00) | ((uint64_t)rd(0x04) << 32);
    fResult->cap = cap;
    fResult->vs = rd(0x08);
    fStride = 4u << ((cap >> 32) & 0xF);
    unsigned mqes = (unsigned)(cap & 0xFFFF) + 1;
    printf("  nvme[%s]: BAR0 %#llx CAP %#llx VS %#x\n", fResult->where, (unsigned long long)fResult->bar0Phys,
           (unsigned long long)cap, fResult->vs);
    if (fResult->vs == 0xFFFFFFFF || fResult->vs == 0) FAIL("VS reads %#x", fResult->vs);

    /* The first messaged interrupt source of the nub. */
    for (int index = 0; index < 8; index++) {
        int type = 0;
        if (fNub->getInterruptType(index, &type) != kIOReturnSuccess) break;
        if (type & kIOInterruptTypePCIMessaged) {
            fSource = index;
            break;
        }
    }
    if (fSource < 0) FAIL("the nub has no messaged interrupt source");
    if (fNub->registerInterrupt(fSource, this, &XvpciTestNVMe::interrupt) != kIOReturnSuccess) FAIL("registerInterrupt(%d) failed", fSource);
    fNub->enableInterrupt(fSource);

    /* Reset, admin queues, enable. */
    if (rd(0x14) & 1) {
        wr(0x14, rd(0x14) & ~1u);
    }
    if (!waitReady(false)) FAIL("CSTS.RDY did not clear");
    unsigned entries = mqes < 16 ? mqes : 16;
    if (!makeQueue(fAsq, entries, 64) || !makeQueue(fAcq, entries, 16)) FAIL("cannot allocate admin queues");
    wr(0x24, ((entries - 1) << 16) | (entries - 1));
    wr(0x28, (uint32_t)fAsq.phys);
    wr(0x2C, (uint32_t)(fAsq.phys >> 32));
    wr(0x30, (uint32_t)fAcq.phys);
    wr(0x34, (uint32_t)(fAcq.phys >> 32));
    wr(0x14, (4u << 20) | (6u << 16) | 1u); /* IOCQES 16, IOSQES 64, MPS 4 KiB, NVM, EN */
    if (!waitReady(true)) FAIL("CSTS.RDY did not set");

    /* Identify controller and namespace 1 by DMA. */
    IOBufferMemoryDescriptor *identify = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionIn, 4096, 0xFFFFFFFFFFFFF000ULL);
    if (!identify) FAIL("cannot allocate the Identify buffer");
    uint16_t status = 0;
    uint32_t cmd[16] = {};
    uint16_t cid = fNextCid++;
    cmd[0] = 0x06 | (cid << 16);
    cmd[6] = (uint32_t)physOf(identify);
    cmd[7] = (uint32_t)(physOf(identify) >> 32);
    cmd[10] = 1; /* CNS 1: controller */
    submit(fAsq, 0, cmd);
    if (!waitCompletion(fAcq, 0, cid, &status) || status) FAIL("Identify controller: status %#x%s", status, fResult->timedOut ? " (no interrupt)" : "");
    const char *id = static_cast<const char *>(identify->getBytesNoCopy());
    memcpy(fResult->serial, id + 4, 20);
    memcpy(fResult->model, id + 24, 40);
    for (int i = 39; i >= 0 && fResult->model[i] == ' '; i--) fResult->model[i] = 0;
    for (int i = 19; i >= 0 && fResult->serial[i] == ' '; i--) fResult->serial[i] = 0;
    memset(identify->getBytesNoCopy(), 0, 4096);
    memset(cmd, 0, sizeof(cmd));
    cid = fNextCid++;
    cmd[0] = 0x06 | (cid << 16);
    cmd[1] = 1;
    cmd[6] = (uint32_t)physOf(identify);
    cmd[7] = (uint32_t)(physOf(identify) >> 32);
    cmd[10] = 0; /* CNS 0: namespace */
    submit(fAsq, 0, cmd);
    if (!waitCompletion(fAcq, 0, cid, &status) || status) FAIL("Identify namespace: status %#x", status);
    const uint8_t *ns = static_cast<const uint8_t *>(identify->getBytesNoCopy());
    uint64_t nsze;
    memcpy(&nsze, ns, 8);
    unsigned flbas = ns[26] & 0xF;
    uint32_t lbaf;
    memcpy(&lbaf, ns + 128 + 4 * flbas, 4);
    unsigned lbaShift = (lbaf >> 16) & 0xFF;
    fResult->blocks = nsze;
    fResult->blockSize = 1u << lbaShift;
    identify->release();
    printf("  nvme[%s]: model '%s' serial '%s', namespace 1: %llu blocks of %u bytes\n", fResult->where, fResult->model,
           fResult->serial, (unsigned long long)nsze, fResult->blockSize);

    /* I/O queues on interrupt vector 0. */
    if (!makeQueue(fIocq, 16, 16) || !makeQueue(fIosq, 16, 64)) FAIL("cannot allocate I/O queues");
    memset(cmd, 0, sizeof(cmd));
    cid = fNextCid++;
    cmd[0] = 0x05 | (cid << 16);
    cmd[6] = (uint32_t)fIocq.phys;
    cmd[7] = (uint32_t)(fIocq.phys >> 32);
    cmd[10] = (15u << 16) | 1;
    cmd[11] = (0u << 16) | 2 | 1; /* vector 0, IEN, PC */
    submit(fAsq, 0, cmd);
    if (!waitCompletion(fAcq, 0, cid, &status) || status) FAIL("Create I/O CQ: status %#x", status);
    memset(cmd, 0, sizeof(cmd));
    cid = fNextCid++;
    cmd[0] = 0x01 | (cid << 16);
    cmd[6] = (uint32_t)fIosq.phys;
    cmd[7] = (uint32_t)(fIosq.phys >> 32);
    cmd[10] = (15u << 16) | 1;
    cmd[11] = (1u << 16) | 1; /* CQ 1, PC */
    submit(fAsq, 0, cmd);
    if (!waitCompletion(fAcq, 0, cid, &status) || status) FAIL("Create I/O SQ: status %#x", status);

    /* Write 4 pages at LBA 0 (one PRP per page: PRP1 and a PRP list), read back, compare. */
    const unsigned pages = 4, bytes = pages * 4096;
    IOBufferMemoryDescriptor *out = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionOut, bytes, 0xFFFFFFFFFFFFF000ULL);
    IOBufferMemoryDescriptor *in = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionIn, bytes, 0xFFFFFFFFFFFFF000ULL);
    IOBufferMemoryDescriptor *prpOut = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionOut, 4096, 0xFFFFFFFFFFFFF000ULL);
    IOBufferMemoryDescriptor *prpIn = IOBufferMemoryDescriptor::inTaskWithPhysicalMask(kernel_task, kIODirectionOut, 4096, 0xFFFFFFFFFFFFF000ULL);
    if (!out || !in || !prpOut || !prpIn) FAIL("cannot allocate data buffers");
    uint8_t *o = static_cast<uint8_t *>(out->getBytesNoCopy());
    for (unsigned i = 0; i < bytes; i++) o[i] = (uint8_t)(i * 7 + (i >> 9) * 13 + 0x5a);
    uint64_t *listOut = static_cast<uint64_t *>(prpOut->getBytesNoCopy());
    uint64_t *listIn = static_cast<uint64_t *>(prpIn->getBytesNoCopy());
    for (unsigned p = 1; p < pages; p++) {
        listOut[p - 1] = physOf(out, p * 4096);
        listIn[p - 1] = physOf(in, p * 4096);
    }
    unsigned nlb = bytes / fResult->blockSize;
    for (int pass = 0; pass < 2; pass++) {
        IOBufferMemoryDescriptor *data = pass ? in : out;
        IOBufferMemoryDescriptor *list = pass ? prpIn : prpOut;
        memset(cmd, 0, sizeof(cmd));
        cid = fNextCid++;
        cmd[0] = (pass ? 0x02 : 0x01) | (cid << 16);
        cmd[1] = 1;
        uint64_t prp1 = physOf(data), prp2 = physOf(list);
        cmd[6] = (uint32_t)prp1;
        cmd[7] = (uint32_t)(prp1 >> 32);
        cmd[8] = (uint32_t)prp2;
        cmd[9] = (uint32_t)(prp2 >> 32);
        cmd[10] = 0;
        cmd[11] = 0;
        cmd[12] = nlb - 1;
        submit(fIosq, 1, cmd);
        if (!waitCompletion(fIocq, 1, cid, &status) || status) FAIL("%s: status %#x", pass ? "Read" : "Write", status);
    }
    fResult->dataMatches = !memcmp(out->getBytesNoCopy(), in->getBytesNoCopy(), bytes);
    fResult->bytesVerified = fResult->dataMatches ? bytes : 0;
    out->release();
    in->release();
    prpOut->release();
    prpIn->release();
    if (!fResult->dataMatches) FAIL("data read back differs from data written");
    printf("  nvme[%s]: wrote and read back %u bytes at LBA 0: equal\n", fResult->where, bytes);

    /* An interrupt arriving while the source is disabled is not lost. */
    fNub->disableInterrupt(fSource);
    unsigned before = fInterrupts;
    memset(cmd, 0, sizeof(cmd));
    cid = fNextCid++;
    cmd[0] = 0x0A | (cid << 16);
    cmd[10] = 7; /* Get Features: number of queues */
    submit(fAsq, 0, cmd);
    uint64_t until = mach_absolute_time() + 300ULL * 1000000ULL;
    while (mach_absolute_time() < until && !completionPosted(fAcq)) {
        tb::poll();
        IODelay(500);
    }
    fResult->postedWhileDisabled = completionPosted(fAcq);
    for (int i = 0; i < 50; i++) {
        tb::poll();
        IODelay(500);
    }
    fResult->handledWhileDisabled = fInterrupts - before;
    fNub->enableInterrupt(fSource);
    uint64_t deadline = mach_absolute_time() + 10ULL * 1000000000ULL;
    while (fInterrupts == before && mach_absolute_time() < deadline) {
        tb::poll();
        IODelay(200);
    }
    fResult->interruptAfterEnable = fInterrupts != before;
    if (!waitCompletion(fAcq, 0, cid, &status, false) || status) FAIL("Get Features: status %#x", status);

    /* The same with MSI-X entry 0 masked in hardware (what disableVectorHard does for a
       function's shared vector): the message must be latched (no interrupt, completion
       posted) and sent on unmask. Through the window, the window model latches it in the
       child's PBA and the kext's routing carries the replay. */
    if (fNub->reserved && fNub->reserved->msiTable) {
        volatile uint32_t *entry0 = reinterpret_cast<volatile uint32_t *>(fNub->reserved->msiTable);
        entry0[3] = 1;
        before = fInterrupts;
        memset(cmd, 0, sizeof(cmd));
        cid = fNextCid++;
        cmd[0] = 0x0A | (cid << 16);
        cmd[10] = 7;
        submit(fAsq, 0, cmd);
        until = mach_absolute_time() + 300ULL * 1000000ULL;
        while (mach_absolute_time() < until && !completionPosted(fAcq)) {
            tb::poll();
            IODelay(500);
        }
        for (int i = 0; i < 50; i++) {
            tb::poll();
            IODelay(500);
        }
        fResult->maskedPosted = completionPosted(fAcq);
        fResult->maskedDelivered = fInterrupts - before;
        entry0[3] = 0;
        deadline = mach_absolute_time() + 10ULL * 1000000000ULL;
        while (fInterrupts == before && mach_absolute_time() < deadline) {
            tb::poll();
            IODelay(200);
        }
        fResult->replayedOnUnmask = fInterrupts != before;
        if (!waitCompletion(fAcq, 0, cid, &status, false) || status) FAIL("Get Features (masked): status %#x", status);
        printf("  nvme[%s]: entry 0 masked: completion posted %s, interrupts while masked %u, replayed on unmask %s\n",
               fResult->where, fResult->maskedPosted ? "yes" : "no", fResult->maskedDelivered,
               fResult->replayedOnUnmask ? "yes" : "no");
    }

    fResult->interrupts = fInterrupts;
    printf("  nvme[%s]: %u interrupt(s), %u completion(s) taken by interrupt\n", fResult->where, fInterrupts, fResult->completionsByInterrupt);
    return true;
}
