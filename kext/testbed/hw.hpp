/*
 * The hardware under the fakes: the real QEMU machine, reached from Linux
 * user space inside the guest (root, no IOMMU, no driver bound).
 *
 *  - config space: /sys/bus/pci/devices/<bdf>/config (pread/pwrite; the
 *    kernel turns them into real configuration cycles);
 *  - physical memory of BARs: mmap of /sys/bus/pci/devices/<bdf>/resourceN,
 *    found by the physical address asked for (what an IODeviceMemory::map
 *    of a device range is on macOS);
 *  - DMA memory: anonymous pages, mlocked and touched, their physical
 *    addresses read from /proc/self/pagemap (a guest without an IOMMU hands
 *    devices physical addresses, as a macOS guest in QEMU does);
 *  - interrupts: a pinned "doorbell" page; the fake platform gives the first
 *    system vector of a function the message (page + 4 * vector, token(vector)),
 *    and IOPCIFamily gives the function's further entries data + k, as on x86
 *    where the address names the CPU and the data the vector. QEMU's MSI-X
 *    emulation writes the data into the page when it delivers an unmasked,
 *    pending vector; polling the page is the CPU taking the interrupt, the data
 *    says which vector. Two different vectors of one function arriving between
 *    two polls overwrite each other (an x86 APIC would keep both): the test
 *    driver uses one vector.
 */
#ifndef XVPCI_TB_HW_HPP
#define XVPCI_TB_HW_HPP

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace hw {

struct Function {
    std::string bdf;   /* 0000:00:03.0 */
    std::string dir;   /* /sys/bus/pci/devices/0000:00:03.0 */
    uint16_t vendor = 0, device = 0;
    uint32_t classCode = 0;
    uint64_t barStart[6] = {}, barLength[6] = {};
    uint64_t barFlags[6] = {};
};

std::vector<Function> scan();
bool configRead(const Function &f, unsigned offset, void *out, unsigned width);
bool configWrite(const Function &f, unsigned offset, const void *in, unsigned width);

/* Map [phys, phys + length) of some device's BAR; nullptr if no BAR holds it. */
void *mapPhysical(uint64_t phys, uint64_t length, void **mapping, size_t *mappingLength);
void unmapPhysical(void *mapping, size_t mappingLength);

/* Pinned, zeroed, page-aligned memory; pages[i] = physical address of page i. */
struct Pinned {
    void *virt = nullptr;
    size_t length = 0;
    std::vector<uint64_t> pages;
};
bool allocPinned(size_t length, Pinned &out);
void freePinned(Pinned &p);
uint64_t physOf(const void *virt);

/* Interrupt delivery: the doorbell page. */
bool doorbellInit();
uint64_t doorbellAddress(unsigned vector);
uint32_t doorbellToken(unsigned vector);
/* Vectors (from the data written) whose message arrived since the last call. */
std::vector<unsigned> doorbellTake();

extern bool trace;
}

#endif
