/*
 * An edu-like device served by libvfio-user, for bench/mmio.py only.
 *
 * BAR0 is 1 MiB of memory space, as on QEMU's edu and our edu model: the
 * identification register at 0 reads 0x010000ED and the liveness register at
 * 4 reads back the inverse of what was last written. Nothing else: no
 * interrupts, no DMA use, so every MMIO access costs only the library's
 * request path and this callback, which is what the benchmark compares.
 *
 * usage: libvfio_user_edu SOCKET
 * Prints "ready: ..." once the socket listens, serves clients one after the
 * other, and leaves on SIGTERM or SIGINT.
 */

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvfio-user.h"

#define EDU_BAR0_SIZE (1u << 20)
#define EDU_IDENT 0x010000EDu
#define EDU_IDENT_REG 0x00
#define EDU_LIVENESS_REG 0x04

static uint32_t liveness;
static volatile sig_atomic_t stopping;

static void on_signal(int signum)
{
    (void)signum;
    stopping = 1;
}

static void log_line(vfu_ctx_t *ctx, int level, const char *msg)
{
    (void)ctx;
    (void)level;
    fprintf(stderr, "libvfio_user_edu: %s\n", msg);
}

static uint32_t read_reg(loff_t reg)
{
    switch (reg) {
    case EDU_IDENT_REG:
        return EDU_IDENT;
    case EDU_LIVENESS_REG:
        return liveness;
    default:
        return 0;
    }
}

/* Like QEMU's edu: 4-byte accesses at 4-byte offsets; others read zero, write nothing. */
static ssize_t bar0_access(vfu_ctx_t *ctx, char *buf, size_t count, loff_t offset,
                           bool is_write)
{
    uint32_t value = 0;

    (void)ctx;
    if (count != 4 || (offset & 3) != 0) {
        if (!is_write) {
            memset(buf, 0, count);
        }
        return (ssize_t)count;
    }
    if (is_write) {
        memcpy(&value, buf, 4);
        if (offset == EDU_LIVENESS_REG) {
            liveness = ~value;
        }
    } else {
        value = read_reg(offset);
        memcpy(buf, &value, 4);
    }
    return (ssize_t)count;
}

static void fail(vfu_ctx_t *ctx, const char *what)
{
    int saved = errno;
    fprintf(stderr, "libvfio_user_edu: %s: %s\n", what, strerror(saved));
    if (ctx != NULL) {
        vfu_destroy_ctx(ctx);
    }
    exit(EXIT_FAILURE);
}

int main(int argc, char *argv[])
{
    struct sigaction act;
    vfu_ctx_t *ctx;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
        return 2;
    }
    /* No SA_RESTART: a signal ends a blocking accept or receive with EINTR. */
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);

    ctx = vfu_create_ctx(VFU_TRANS_SOCK, argv[1], 0, NULL, VFU_DEV_TYPE_PCI);
    if (ctx == NULL) {
        fail(NULL, "vfu_create_ctx");
    }
    if (vfu_setup_log(ctx, log_line, LOG_ERR) < 0) {
        fail(ctx, "vfu_setup_log");
    }
    if (vfu_pci_init(ctx, VFU_PCI_TYPE_CONVENTIONAL, PCI_HEADER_TYPE_NORMAL, 0) < 0) {
        fail(ctx, "vfu_pci_init");
    }
    vfu_pci_set_id(ctx, 0x1234, 0x11e8, 0x1af4, 0x1100);
    vfu_pci_set_class(ctx, 0x00, 0xff, 0x00);
    if (vfu_setup_region(ctx, VFU_PCI_DEV_BAR0_REGION_IDX, EDU_BAR0_SIZE, bar0_access,
                         VFU_REGION_FLAG_RW | VFU_REGION_FLAG_MEM, NULL, 0, -1, 0) < 0) {
        fail(ctx, "vfu_setup_region");
    }
    if (vfu_setup_device_nr_irqs(ctx, VFU_DEV_INTX_IRQ, 1) < 0) {
        fail(ctx, "vfu_setup_device_nr_irqs");
    }
    if (vfu_setup_device_dma(ctx, LIBVFIO_USER_MAX_DMA_REGIONS, NULL, NULL) < 0) {
        fail(ctx, "vfu_setup_device_dma");
    }
    if (vfu_realize_ctx(ctx) < 0) {
        fail(ctx, "vfu_realize_ctx");
    }
    printf("ready: libvfio-user edu on %s\n", argv[1]);
    fflush(stdout);

    while (!stopping) {
        if (vfu_attach_ctx(ctx) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail(ctx, "vfu_attach_ctx");
        }
        while (!stopping) {
            if (vfu_run_ctx(ctx) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == ENOTCONN) {
                    break; /* the client left: wait for the next one */
                }
                fail(ctx, "vfu_run_ctx");
            }
        }
    }
    vfu_destroy_ctx(ctx);
    return EXIT_SUCCESS;
}
