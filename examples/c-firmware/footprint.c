/*
 * The footprint image: one entropy device on the shared-memory transport's
 * device end, the library built with only the `rng` feature. The driver
 * lives on another core, so this image only creates the window and serves
 * its doorbell; run under QEMU it serves one (empty) doorbell and exits.
 * Compare with examples/firmware/src/bin/footprint.rs (the same image in Rust).
 */
#include <stdint.h>

#include "board.h"
#include "virtio_backend.h"

static uint64_t window[4672 / 8]; /* 4 slots x 64 B per ring, 4 KiB data */
static uint64_t mem_store[VIO_MEM_STORAGE_SIZE / 8];
static uint64_t rng_store[VIO_RNG_STORAGE_SIZE / 8];
static uint64_t shm_store[VIO_SHM_STORAGE_SIZE / 8];
static vio_shm *volatile device_end;

static uint32_t state = 0x12345678u;
static int fill(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        buf[i] = (uint8_t)state;
    }
    return 0;
}

/* On the real system: the inter-core doorbell interrupt. */
void doorbell_irq_handler(void)
{
    if (device_end != NULL && vio_shm_process(device_end) == VIO_WORK_LEFT) {
        nvic_pend(DOORBELL_IRQ);
    }
}

int main(void)
{
    vio_mem *mem = NULL;
    vio_dev *rng = NULL;
    vio_shm *end = NULL;
    const vio_rng_ops ops = {.fill = fill};
    CHECK(vio_mem_init_window(mem_store, sizeof mem_store, 0, window, sizeof window, &mem) == VIO_OK);
    CHECK(vio_rng_init(rng_store, sizeof rng_store, &ops, NULL, &rng) == VIO_OK);
    vio_dev *devs[1] = {rng};
    CHECK(vio_shm_init(shm_store, sizeof shm_store, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &end) ==
          VIO_OK);
    device_end = end;
    nvic_enable(DOORBELL_IRQ);
    nvic_pend(DOORBELL_IRQ);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    put_str("PASS footprint\n");
    return 0;
}
