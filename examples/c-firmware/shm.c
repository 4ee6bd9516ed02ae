/*
 * An entropy device and a RAM block device, written in C against
 * virtio_backend.h, served over the shared-memory (virtio-msg) transport
 * to the library's driver end in the same image. The driver end runs in
 * thread mode; its doorbell pends an NVIC interrupt whose handler runs the
 * device end. Exits with main()'s status through semihosting.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "virtio_backend.h"

/* The window: 4 slots of 64 bytes per ring, 4 KiB of data area. */
#define SLOTS 4u
#define SLOT_SIZE 64u
#define DATA_LEN 4096u
#define WINDOW_BYTES 8192u
#define SECTORS 16u

static uint64_t window[WINDOW_BYTES / 8];
static uint8_t disk[SECTORS * 512u];

/* Storage for every object, sized by the header's bounds. */
static uint64_t mem_store[VIO_MEM_STORAGE_SIZE / 8];
static uint64_t rng_store[VIO_RNG_STORAGE_SIZE / 8];
static uint64_t blk_store[VIO_BLOCK_STORAGE_SIZE / 8];
static uint64_t shm_store[VIO_SHM_STORAGE_SIZE / 8];
static uint64_t drv_store[VIO_DRV_STORAGE_SIZE / 8];

static vio_shm *volatile device_end;

/* xorshift32: a stand-in for a hardware TRNG, NOT cryptographic. */
static uint32_t rng_state = 0x2545f491u;

static int rng_fill(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        buf[i] = (uint8_t)rng_state;
    }
    return 0;
}

static int blk_read(void *ctx, uint64_t sector, uint8_t *buf, size_t len)
{
    uint8_t *d = ctx;
    memcpy(buf, d + sector * 512u, len);
    return 0;
}

static int blk_write(void *ctx, uint64_t sector, const uint8_t *buf, size_t len)
{
    uint8_t *d = ctx;
    memcpy(d + sector * 512u, buf, len);
    return 0;
}

static int blk_flush(void *ctx)
{
    (void)ctx;
    return 0;
}

/* Driver -> device doorbell: pend the device end's interrupt. */
static void ring_device(void *ctx)
{
    (void)ctx;
    nvic_pend(DOORBELL_IRQ);
}

/* The device end runs here, one budget per interrupt. */
void doorbell_irq_handler(void)
{
    vio_shm *end = device_end;
    if (end != NULL && vio_shm_process(end) == VIO_WORK_LEFT) {
        nvic_pend(DOORBELL_IRQ);
    }
}

static void print_size(const char *name, int (*query)(size_t *, size_t *))
{
    size_t size = 0;
    size_t align = 0;
    if (query(&size, &align) == VIO_OK) {
        put_str("  ");
        put_str(name);
        put_str(": ");
        put_u32((uint32_t)size);
        put_str(" bytes, align ");
        put_u32((uint32_t)align);
        put_str("\n");
    }
}

int main(void)
{
    uint32_t version = 0;
    CHECK(vio_version(&version) == VIO_OK && version == VIO_VERSION);
    put_str("c-firmware (shm): object sizes on this target\n");
    print_size("vio_mem", vio_mem_storage);
    print_size("rng", vio_rng_storage);
    print_size("block", vio_block_storage);
    print_size("console", vio_console_storage);
    print_size("i2c", vio_i2c_storage);
    print_size("gpio", vio_gpio_storage);
    print_size("generic", vio_generic_storage);
    print_size("vio_mmio", vio_mmio_storage);
    print_size("vio_shm", vio_shm_storage);
    print_size("vio_drv", vio_drv_storage);

    /* Guest address 0 is the window's first byte. */
    vio_mem *mem = NULL;
    CHECK(vio_mem_init_window(mem_store, sizeof mem_store, 0, window, sizeof window, &mem) == VIO_OK);

    const vio_rng_ops rng_ops = {.fill = rng_fill};
    vio_dev *rng = NULL;
    CHECK(vio_rng_init(rng_store, sizeof rng_store, &rng_ops, NULL, &rng) == VIO_OK);

    const vio_block_ops blk_ops = {.read = blk_read, .write = blk_write, .flush = blk_flush, .discard = NULL};
    vio_block_cfg blk_cfg = {.capacity = SECTORS, .flags = 0, .id = "c-firmware-ramdisk"};
    vio_dev *blk = NULL;
    CHECK(vio_block_init(blk_store, sizeof blk_store, &blk_cfg, &blk_ops, disk, &blk) == VIO_OK);

    vio_dev *devs[2] = {rng, blk};
    vio_shm *end = NULL;
    CHECK(vio_shm_init(shm_store, sizeof shm_store, mem, SLOTS, SLOT_SIZE, DATA_LEN, VIO_SHM_CREATE, devs, 2,
                       NULL, NULL, &end) == VIO_OK);
    device_end = end;
    nvic_enable(DOORBELL_IRQ);

    vio_drv *drv = NULL;
    CHECK(vio_drv_init(drv_store, sizeof drv_store, mem, SLOTS, SLOT_SIZE, DATA_LEN, ring_device, NULL, &drv) ==
          VIO_OK);

    /* rng: two reads; the bytes must differ and not be constant. */
    uint8_t first[16];
    uint8_t second[16];
    uint32_t got = 0;
    CHECK(vio_drv_rng_read(drv, 0, first, sizeof first, &got) == VIO_OK && got == sizeof first);
    CHECK(vio_drv_rng_read(drv, 0, second, sizeof second, &got) == VIO_OK && got == sizeof second);
    CHECK(memcmp(first, second, sizeof first) != 0);
    int varied = 0;
    for (size_t i = 1; i < sizeof first; i++) {
        varied |= first[i] != first[0];
    }
    CHECK(varied);
    put_str("rng: ");
    for (size_t i = 0; i < sizeof first; i++) {
        put_hex8(first[i]);
    }
    put_str("\nPASS rng over shm\n");

    /* block: write every sector with its own pattern, read all back, and
     * a read past the end must fail. */
    static uint8_t sector[512];
    for (uint32_t s = 0; s < SECTORS; s++) {
        memset(sector, (int)(s * 37u + 11u), sizeof sector);
        CHECK(vio_drv_blk(drv, 1, s, sector, 1) == VIO_OK);
    }
    for (uint32_t s = 0; s < SECTORS; s++) {
        memset(sector, 0, sizeof sector);
        CHECK(vio_drv_blk(drv, 1, s, sector, 0) == VIO_OK);
        for (size_t i = 0; i < sizeof sector; i++) {
            CHECK(sector[i] == (uint8_t)(s * 37u + 11u));
        }
    }
    CHECK(vio_drv_blk(drv, 1, SECTORS, sector, 0) == VIO_EIO);
    put_str("block: 32 requests (write + read back of 16 sectors) ok, past-the-end read refused\n");
    put_str("PASS block over shm\n");

    vio_shm_stats stats;
    __asm__ volatile("cpsid i" ::: "memory");
    CHECK(vio_shm_get_stats(end, &stats) == VIO_OK);
    __asm__ volatile("cpsie i" ::: "memory");
    put_str("device end: ");
    put_u32(stats.received);
    put_str(" messages, ");
    put_u32(stats.events_used);
    put_str(" EVENT_USED, ");
    put_u32(stats.discarded);
    put_str(" discarded\n");
    CHECK(stats.discarded == 0 && stats.ring_errors == 0);

    /* Teardown in order: objects in use refuse to go. */
    CHECK(vio_dev_deinit(rng) == VIO_EBUSY);
    CHECK(vio_mem_deinit(mem) == VIO_EBUSY);
    CHECK(vio_drv_deinit(drv) == VIO_OK);
    __asm__ volatile("cpsid i" ::: "memory");
    device_end = NULL;
    CHECK(vio_shm_deinit(end) == VIO_OK);
    __asm__ volatile("cpsie i" ::: "memory");
    CHECK(vio_dev_deinit(rng) == VIO_OK && vio_dev_deinit(blk) == VIO_OK);
    CHECK(vio_mem_deinit(mem) == VIO_OK);
    put_str("PASS\n");
    return 0;
}
