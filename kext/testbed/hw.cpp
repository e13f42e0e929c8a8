/* See hw.hpp. */
#include "hw.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

namespace hw {

bool trace = false;
static std::vector<Function> gFunctions;
static Pinned gDoorbell;
static constexpr unsigned kDoorbellSlots = 1024;

static bool readText(const std::string &path, std::string &out)
{
    FILE *f = fopen(path.c_str(), "r");
    if (!f) {
        return false;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    out = buf;
    return true;
}

std::vector<Function> scan()
{
    std::vector<Function> found;
    DIR *d = opendir("/sys/bus/pci/devices");
    if (!d) {
        return found;
    }
    while (struct dirent *e = readdir(d)) {
        if (e->d_name[0] == '.') {
            continue;
        }
        Function f;
        f.bdf = e->d_name;
        f.dir = std::string("/sys/bus/pci/devices/") + e->d_name;
        std::string text;
        if (readText(f.dir + "/vendor", text)) f.vendor = (uint16_t)strtoul(text.c_str(), nullptr, 0);
        if (readText(f.dir + "/device", text)) f.device = (uint16_t)strtoul(text.c_str(), nullptr, 0);
        if (readText(f.dir + "/class", text)) f.classCode = (uint32_t)strtoul(text.c_str(), nullptr, 0);
        if (readText(f.dir + "/resource", text)) {
            const char *p = text.c_str();
            for (int i = 0; i < 6 && *p; i++) {
                char *end;
                uint64_t start = strtoull(p, &end, 0);
                uint64_t last = strtoull(end, &end, 0);
                uint64_t flags = strtoull(end, &end, 0);
                f.barStart[i] = start;
                f.barLength[i] = last ? last - start + 1 : 0;
                f.barFlags[i] = flags;
                p = strchr(end, '\n');
                if (!p) break;
                p++;
            }
        }
        found.push_back(f);
    }
    closedir(d);
    gFunctions = found;
    return found;
}

static int configFd(const Function &f)
{
    return open((f.dir + "/config").c_str(), O_RDWR | O_CLOEXEC);
}

bool configRead(const Function &f, unsigned offset, void *out, unsigned width)
{
    int fd = configFd(f);
    if (fd < 0) return false;
    ssize_t n = pread(fd, out, width, offset);
    close(fd);
    if (trace) fprintf(stderr, "hw: cfg read %s +%#x/%u\n", f.bdf.c_str(), offset, width);
    return n == (ssize_t)width;
}

bool configWrite(const Function &f, unsigned offset, const void *in, unsigned width)
{
    int fd = configFd(f);
    if (fd < 0) return false;
    ssize_t n = pwrite(fd, in, width, offset);
    close(fd);
    if (trace) fprintf(stderr, "hw: cfg write %s +%#x/%u\n", f.bdf.c_str(), offset, width);
    return n == (ssize_t)width;
}

void *mapPhysical(uint64_t phys, uint64_t length, void **mapping, size_t *mappingLength)
{
    if (gFunctions.empty()) scan();
    for (const Function &f : gFunctions) {
        for (int i = 0; i < 6; i++) {
            if (!f.barLength[i] || !(f.barFlags[i] & 0x200 /* IORESOURCE_MEM */)) continue;
            if (phys < f.barStart[i] || phys + length > f.barStart[i] + f.barLength[i]) continue;
            uint64_t offset = phys - f.barStart[i];
            uint64_t pageOffset = offset & ~0xFFFULL;
            size_t len = (size_t)(((offset + length + 0xFFF) & ~0xFFFULL) - pageOffset);
            std::string path = f.dir + "/resource" + std::to_string(i);
            int fd = open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC);
            if (fd < 0) return nullptr;
            void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)pageOffset);
            close(fd);
            if (m == MAP_FAILED) return nullptr;
            *mapping = m;
            *mappingLength = len;
            return static_cast<char *>(m) + (offset - pageOffset);
        }
    }
    return nullptr;
}

void unmapPhysical(void *mapping, size_t mappingLength)
{
    if (mapping) munmap(mapping, mappingLength);
}

uint64_t physOf(const void *virt)
{
    static int fd = -1;
    if (fd < 0) fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    uint64_t entry = 0;
    uint64_t page = (uint64_t)(uintptr_t)virt / 4096;
    if (pread(fd, &entry, sizeof(entry), (off_t)(page * 8)) != 8) return 0;
    if (!(entry & (1ULL << 63))) return 0; /* not present */
    uint64_t pfn = entry & ((1ULL << 55) - 1);
    return pfn * 4096 + ((uint64_t)(uintptr_t)virt & 0xFFF);
}

bool allocPinned(size_t length, Pinned &out)
{
    length = (length + 4095) & ~(size_t)4095;
    void *m = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) return false;
    if (mlock(m, length) != 0) {
        munmap(m, length);
        return false;
    }
    memset(m, 0, length);
    out.virt = m;
    out.length = length;
    out.pages.clear();
    for (size_t off = 0; off < length; off += 4096) {
        uint64_t p = physOf(static_cast<char *>(m) + off);
        if (!p) {
            munmap(m, length);
            return false;
        }
        out.pages.push_back(p);
    }
    return true;
}

void freePinned(Pinned &p)
{
    if (p.virt) munmap(p.virt, p.length);
    p.virt = nullptr;
    p.pages.clear();
}

bool doorbellInit()
{
    return gDoorbell.virt || allocPinned(4096, gDoorbell);
}

uint64_t doorbellAddress(unsigned vector) { return gDoorbell.pages[0] + 4 * (vector % kDoorbellSlots); }
uint32_t doorbellToken(unsigned vector) { return 0x5a000000u | vector; }

std::vector<unsigned> doorbellTake()
{
    std::vector<unsigned> taken;
    volatile uint32_t *slots = static_cast<volatile uint32_t *>(gDoorbell.virt);
    for (unsigned v = 0; v < kDoorbellSlots; v++) {
        if (slots[v]) {
            uint32_t token = __atomic_exchange_n(&slots[v], 0u, __ATOMIC_SEQ_CST);
            if ((token & 0xFF000000u) == 0x5a000000u) taken.push_back(token & 0xFFFFFFu);
        }
    }
    return taken;
}
}
