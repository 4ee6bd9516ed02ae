/*
 * Three devices written in C (entropy, RAM block, and a generic "echo"
 * device that answers each request with its bytes reversed) behind the
 * virtio-mmio trap entry points, driven by a small split-ring driver
 * written here from the virtio 1.x spec: the C program plays the
 * hypervisor that traps the guest's register accesses. Exits with main()'s
 * status through semihosting.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "virtio_backend.h"

/* virtio-mmio registers (virtio 1.x, "MMIO Device Register Layout"). */
enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_DEVICE_FEATURES = 0x010,
    R_DEVICE_FEATURES_SEL = 0x014, R_DRIVER_FEATURES = 0x020, R_DRIVER_FEATURES_SEL = 0x024,
    R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
    R_QUEUE_NOTIFY = 0x050, R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070,
    R_QUEUE_DESC_LOW = 0x080, R_QUEUE_DESC_HIGH = 0x084, R_QUEUE_DRIVER_LOW = 0x090,
    R_QUEUE_DRIVER_HIGH = 0x094, R_QUEUE_DEVICE_LOW = 0x0a0, R_QUEUE_DEVICE_HIGH = 0x0a4,
    R_CONFIG = 0x100,
};
enum { S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8 };

#define QSIZE 8u
#define F_WRITE 2u
#define F_NEXT 1u

struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
struct avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[QSIZE];
    uint16_t used_event;
};
struct used_elem {
    uint32_t id;
    uint32_t len;
};
struct used {
    uint16_t flags;
    uint16_t idx;
    struct used_elem ring[QSIZE];
    uint16_t avail_event;
};
/* One queue's rings, laid out as the spec aligns them. */
struct rings {
    struct desc desc[QSIZE] __attribute__((aligned(16)));
    struct avail avail __attribute__((aligned(2)));
    struct used used __attribute__((aligned(4)));
};

/* Guest memory: guest address == address here. */
static struct {
    struct rings rings[3];
    uint8_t buf[3][1024];
} guest __attribute__((aligned(64)));

static uint8_t disk[8u * 512u];
static uint64_t mem_store[VIO_MEM_STORAGE_SIZE / 8];
static uint64_t rng_store[VIO_RNG_STORAGE_SIZE / 8];
static uint64_t blk_store[VIO_BLOCK_STORAGE_SIZE / 8];
static uint64_t gen_store[VIO_GENERIC_STORAGE_SIZE / 8];
static uint64_t mmio_store[3][VIO_MMIO_STORAGE_SIZE / 8];

static uint32_t irq_rises;

static void irq_line(void *ctx, uint8_t level)
{
    (void)ctx;
    irq_rises += level;
}

static uint32_t seed = 0x9e3779b9u;
static int rng_fill(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(seed >> 24);
    }
    return 0;
}

static int blk_read(void *ctx, uint64_t sector, uint8_t *buf, size_t len)
{
    memcpy(buf, (uint8_t *)ctx + sector * 512u, len);
    return 0;
}

static int blk_write(void *ctx, uint64_t sector, const uint8_t *buf, size_t len)
{
    memcpy((uint8_t *)ctx + sector * 512u, buf, len);
    return 0;
}

/* The generic device: read the request, answer it reversed, complete. */
static uint32_t echo_requests;
static int echo_request(void *ctx, uint16_t queue, vio_req *req)
{
    (void)ctx;
    (void)queue;
    uint32_t in_len = 0;
    uint32_t out_len = 0;
    uint8_t data[64];
    if (vio_req_readable_len(req, &in_len) != VIO_OK || vio_req_writable_len(req, &out_len) != VIO_OK) {
        return -1;
    }
    if (in_len > sizeof data || out_len < in_len) {
        return -1; /* the device enters DEVICE_NEEDS_RESET */
    }
    /* Asking for more than the driver gave is refused, not overrun. */
    if (vio_req_read(req, data, in_len + 1u) != VIO_ERANGE) {
        return -1;
    }
    if (vio_req_read(req, data, in_len) != VIO_OK) {
        return -1;
    }
    for (uint32_t i = 0; i < in_len / 2u; i++) {
        uint8_t t = data[i];
        data[i] = data[in_len - 1u - i];
        data[in_len - 1u - i] = t;
    }
    if (vio_req_write(req, data, in_len) != VIO_OK || vio_req_complete(req) != VIO_OK) {
        return -1;
    }
    echo_requests++;
    return 0;
}

/* ---- the driver side: register accesses as trapped guest accesses ---- */

struct drv {
    vio_mmio *t;
    struct rings *r;
    uint16_t avail_idx;
    uint16_t used_idx;
};

static uint32_t rd(struct drv *d, uint32_t off)
{
    uint32_t v = 0;
    if (vio_mmio_read(d->t, off, 4, &v) != VIO_OK) {
        return 0xffffffffu;
    }
    return v;
}

static int wr(struct drv *d, uint32_t off, uint32_t v)
{
    int rc = vio_mmio_write(d->t, off, 4, v);
    while (rc == VIO_WORK_LEFT) {
        rc = vio_mmio_poll(d->t);
    }
    return rc;
}

static uint32_t lo(const void *p)
{
    return (uint32_t)(uintptr_t)p;
}

/* Brings the device up with VERSION_1 plus `features` (word 0), queue 0. */
static int bring_up(struct drv *d, uint32_t device_id, uint32_t features)
{
    CHECK(rd(d, R_MAGIC) == 0x74726976u && rd(d, R_VERSION) == 2u);
    CHECK(rd(d, R_DEVICE_ID) == device_id);
    CHECK(wr(d, R_STATUS, 0) == VIO_OK);
    CHECK(wr(d, R_STATUS, S_ACK) == VIO_OK);
    CHECK(wr(d, R_STATUS, S_ACK | S_DRIVER) == VIO_OK);
    CHECK(wr(d, R_DEVICE_FEATURES_SEL, 1) == VIO_OK);
    CHECK(rd(d, R_DEVICE_FEATURES) & 1u); /* VERSION_1 */
    CHECK(wr(d, R_DRIVER_FEATURES_SEL, 0) == VIO_OK && wr(d, R_DRIVER_FEATURES, features) == VIO_OK);
    CHECK(wr(d, R_DRIVER_FEATURES_SEL, 1) == VIO_OK && wr(d, R_DRIVER_FEATURES, 1) == VIO_OK);
    CHECK(wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK) == VIO_OK);
    CHECK(rd(d, R_STATUS) & S_FEATURES_OK);
    CHECK(wr(d, R_QUEUE_SEL, 0) == VIO_OK);
    CHECK(rd(d, R_QUEUE_NUM_MAX) >= QSIZE);
    memset(d->r, 0, sizeof *d->r);
    CHECK(wr(d, R_QUEUE_NUM, QSIZE) == VIO_OK);
    CHECK(wr(d, R_QUEUE_DESC_LOW, lo(d->r->desc)) == VIO_OK && wr(d, R_QUEUE_DESC_HIGH, 0) == VIO_OK);
    CHECK(wr(d, R_QUEUE_DRIVER_LOW, lo(&d->r->avail)) == VIO_OK && wr(d, R_QUEUE_DRIVER_HIGH, 0) == VIO_OK);
    CHECK(wr(d, R_QUEUE_DEVICE_LOW, lo(&d->r->used)) == VIO_OK && wr(d, R_QUEUE_DEVICE_HIGH, 0) == VIO_OK);
    CHECK(wr(d, R_QUEUE_READY, 1) == VIO_OK);
    CHECK(wr(d, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK) == VIO_OK);
    CHECK(rd(d, R_STATUS) == (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK));
    return 0;
}

struct seg {
    void *p;
    uint32_t len;
    int writable;
};

/* Submits one chain, notifies, and returns the used length (or -1). */
static int64_t request(struct drv *d, const struct seg *segs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        d->r->desc[i].addr = (uint64_t)(uintptr_t)segs[i].p;
        d->r->desc[i].len = segs[i].len;
        d->r->desc[i].flags = (uint16_t)((segs[i].writable ? F_WRITE : 0u) | (i + 1u < n ? F_NEXT : 0u));
        d->r->desc[i].next = (uint16_t)(i + 1u);
    }
    d->r->avail.ring[d->avail_idx % QSIZE] = 0;
    __sync_synchronize();
    d->avail_idx++;
    d->r->avail.idx = d->avail_idx;
    __sync_synchronize();
    if (wr(d, R_QUEUE_NOTIFY, 0) != VIO_OK) {
        return -1;
    }
    __sync_synchronize();
    if (d->r->used.idx != (uint16_t)(d->used_idx + 1u)) {
        return -1;
    }
    uint32_t len = d->r->used.ring[d->used_idx % QSIZE].len;
    d->used_idx++;
    uint32_t isr = rd(d, R_INTERRUPT_STATUS);
    if ((isr & 1u) == 0 || wr(d, R_INTERRUPT_ACK, isr) != VIO_OK) {
        return -1;
    }
    return len;
}

static int attach(struct drv *d, unsigned i, vio_dev *dev, vio_mem *mem)
{
    d->r = &guest.rings[i];
    d->avail_idx = 0;
    d->used_idx = 0;
    return vio_mmio_init(mmio_store[i], sizeof mmio_store[i], dev, mem, irq_line, NULL, &d->t);
}

int main(void)
{
    vio_mem *mem = NULL;
    CHECK(vio_mem_init_window(mem_store, sizeof mem_store, (uint64_t)(uintptr_t)&guest, &guest, sizeof guest,
                              &mem) == VIO_OK);

    /* ---- entropy ---- */
    const vio_rng_ops rng_ops = {.fill = rng_fill};
    vio_dev *rng = NULL;
    CHECK(vio_rng_init(rng_store, sizeof rng_store, &rng_ops, NULL, &rng) == VIO_OK);
    struct drv d0;
    CHECK(attach(&d0, 0, rng, mem) == VIO_OK);
    CHECK(bring_up(&d0, 4, 0) == 0);
    uint8_t *b0 = guest.buf[0];
    memset(b0, 0, 32);
    struct seg rs = {b0, 32, 1};
    CHECK(request(&d0, &rs, 1) == 32);
    int varied = 0;
    for (int i = 1; i < 32; i++) {
        varied |= b0[i] != b0[0];
    }
    CHECK(varied);
    /* An invalid access is refused and counted, not a crash. */
    uint32_t v = 0;
    CHECK(vio_mmio_read(d0.t, 0x002, 4, &v) == VIO_EIO && v == 0);
    CHECK(vio_mmio_write(d0.t, R_MAGIC, 4, 0) == VIO_EIO);
    CHECK(vio_mmio_read(d0.t, R_MAGIC, 3, &v) == VIO_EINVAL);
    put_str("PASS rng over mmio\n");

    /* ---- block ---- */
    const vio_block_ops blk_ops = {.read = blk_read, .write = blk_write, .flush = NULL, .discard = NULL};
    vio_block_cfg cfg = {.capacity = 8, .flags = 0, .id = "c-mmio-ramdisk"};
    vio_dev *blk = NULL;
    CHECK(vio_block_init(blk_store, sizeof blk_store, &cfg, &blk_ops, disk, &blk) == VIO_OK);
    struct drv d1;
    CHECK(attach(&d1, 1, blk, mem) == VIO_OK);
    CHECK(bring_up(&d1, 2, 0) == 0);
    CHECK(rd(&d1, R_CONFIG) == 8u); /* capacity, low word */
    uint8_t *hdr = guest.buf[1];
    uint8_t *data = guest.buf[1] + 16;
    uint8_t *status = guest.buf[1] + 16 + 512;
    for (uint32_t s = 0; s < 8; s++) {
        const uint32_t out_hdr[4] = {1u /* OUT */, 0, s, 0};
        memcpy(hdr, out_hdr, sizeof out_hdr);
        memset(data, (int)(0xa0u + s), 512);
        *status = 0xff;
        struct seg w[3] = {{hdr, 16, 0}, {data, 512, 0}, {status, 1, 1}};
        CHECK(request(&d1, w, 3) >= 0 && *status == 0);
    }
    for (uint32_t s = 0; s < 8; s++) {
        const uint32_t in_hdr[4] = {0u /* IN */, 0, s, 0};
        memcpy(hdr, in_hdr, sizeof in_hdr);
        memset(data, 0, 512);
        *status = 0xff;
        struct seg r[3] = {{hdr, 16, 0}, {data, 512, 1}, {status, 1, 1}};
        CHECK(request(&d1, r, 3) == 513 && *status == 0);
        CHECK(data[0] == (uint8_t)(0xa0u + s) && data[511] == (uint8_t)(0xa0u + s));
    }
    /* Past the end: IOERR, never a success. */
    const uint32_t bad_hdr[4] = {0u, 0, 8, 0};
    memcpy(hdr, bad_hdr, sizeof bad_hdr);
    struct seg r[3] = {{hdr, 16, 0}, {data, 512, 1}, {status, 1, 1}};
    CHECK(request(&d1, r, 3) >= 0 && *status == 1);
    put_str("PASS block over mmio\n");

    /* ---- generic echo device ---- */
    const vio_generic_cfg gcfg = {.device_id = 0x1234, .num_queues = 1, .queue_size = QSIZE, .features = 0,
                                  .config_len = 0, .malformed = VIO_MALFORMED_NEEDS_RESET};
    const vio_generic_ops gops = {.request = echo_request, .read_config = NULL, .write_config = NULL,
                                  .reset = NULL};
    vio_dev *gen = NULL;
    CHECK(vio_generic_init(gen_store, sizeof gen_store, &gcfg, &gops, NULL, &gen) == VIO_OK);
    struct drv d2;
    CHECK(attach(&d2, 2, gen, mem) == VIO_OK);
    CHECK(bring_up(&d2, 0x1234, 0) == 0);
    uint8_t *in = guest.buf[2];
    uint8_t *out = guest.buf[2] + 64;
    memcpy(in, "virtio", 6);
    struct seg e[2] = {{in, 6, 0}, {out, 16, 1}};
    CHECK(request(&d2, e, 2) == 6);
    CHECK(memcmp(out, "oitriv", 6) == 0 && echo_requests == 1);
    put_str("PASS generic over mmio\n");

    CHECK(irq_rises >= 3);
    uint32_t errors = 0;
    CHECK(vio_mmio_errors(d0.t, &errors) == VIO_OK && errors == 2);
    CHECK(vio_mmio_deinit(d0.t) == VIO_OK && vio_mmio_deinit(d1.t) == VIO_OK && vio_mmio_deinit(d2.t) == VIO_OK);
    CHECK(vio_dev_deinit(rng) == VIO_OK && vio_dev_deinit(blk) == VIO_OK && vio_dev_deinit(gen) == VIO_OK);
    CHECK(vio_mem_deinit(mem) == VIO_OK);
    put_str("PASS\n");
    return 0;
}
