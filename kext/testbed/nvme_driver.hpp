/* The test driver's results (see nvme_driver.cpp). */
#ifndef XVPCI_TB_NVME_DRIVER_HPP
#define XVPCI_TB_NVME_DRIVER_HPP

#include "testbed.hpp"

#include <deque>

namespace tbnvme {
struct Result {
    IOPCIDevice *nub;
    void *driver;
    char where[64];
    bool ok;
    char error[160];
    uint64_t bar0Phys, cap;
    uint32_t vs;
    char model[41], serial[21];
    uint64_t blocks;
    uint32_t blockSize;
    bool dataMatches;
    unsigned bytesVerified;
    unsigned interrupts, completionsByInterrupt;
    bool timedOut;
    bool postedWhileDisabled, interruptAfterEnable;
    unsigned handledWhileDisabled;
    bool maskedPosted, replayedOnUnmask;
    unsigned maskedDelivered;
    bool twoSourcesRan, twoSourcesDelivered;
};
std::deque<Result> &results();
/* After the run: one more command completed by interrupt; controller shutdown. */
bool ping(Result &r);
void shutdown(Result &r);
void twoSources(Result &r);
}

#endif
