/*
 * Host unit test of the C API: every exported function with NULL
 * pointers, zero and huge lengths, misaligned storage, wrong and dead
 * handles, and the documented codes; plus one request through the generic
 * device's vio_req cursors. Built with -fsanitize=address,undefined by
 * run.sh; any crash, sanitizer report or wrong code fails it.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "virtio_backend.h"

static int failures;
static int checks;

#define EXPECT(expr, want)                                                                  \
    do {                                                                                    \
        int got_ = (expr);                                                                  \
        checks++;                                                                           \
        if (got_ != (want)) {                                                               \
            fprintf(stderr, "%s:%d: %s = %d, want %s (%d)\n", __FILE__, __LINE__, #expr, got_, \
                    #want, (want));                                                         \
            failures++;                                                                     \
        }                                                                                   \
    } while (0)

#define ALIGNED __attribute__((aligned(VIO_STORAGE_ALIGN)))

/* Storage, one per object, plus spares. */
static uint8_t mem_st[VIO_MEM_STORAGE_SIZE] ALIGNED;
static uint8_t mem2_st[VIO_MEM_STORAGE_SIZE] ALIGNED;
static uint8_t rng_st[VIO_RNG_STORAGE_SIZE] ALIGNED;
static uint8_t gen_st[VIO_GENERIC_STORAGE_SIZE] ALIGNED;
static uint8_t blk_st[VIO_BLOCK_STORAGE_SIZE] ALIGNED;
static uint8_t con_st[VIO_CONSOLE_STORAGE_SIZE] ALIGNED;
static uint8_t i2c_st[VIO_I2C_STORAGE_SIZE] ALIGNED;
static uint8_t gpio_st[VIO_GPIO_STORAGE_SIZE] ALIGNED;
static uint8_t mmio_st[VIO_MMIO_STORAGE_SIZE] ALIGNED;
static uint8_t shm_st[VIO_SHM_STORAGE_SIZE] ALIGNED;
static uint8_t drv_st[VIO_DRV_STORAGE_SIZE] ALIGNED;
static uint64_t window[8192 / 8];
static uint64_t zeroes[64]; /* a "handle" that was never initialised */

static int fill(void *ctx, uint8_t *buf, size_t len) { (void)ctx; memset(buf, 0x42, len); return 0; }
static int bread(void *c, uint64_t s, uint8_t *b, size_t l) { (void)c; (void)s; memset(b, 0, l); return 0; }
static int tx(void *c, const uint8_t *b, size_t l) { (void)c; (void)b; return (int)l; }
static int xfer(void *c, uint16_t a, vio_i2c_msg *m, size_t n) { (void)c; (void)a; (void)m; (void)n; return 0; }
static int gget(void *c, uint16_t l, uint8_t *v) { (void)c; (void)l; *v = 0; return 0; }
static int gset(void *c, uint16_t l, uint8_t v) { (void)c; (void)l; (void)v; return 0; }
static int gdir(void *c, uint16_t l, uint8_t d, uint8_t v) { (void)c; (void)l; (void)d; (void)v; return 0; }

static vio_shm *the_shm;
static void ring_device(void *ctx) { (void)ctx; while (vio_shm_process(the_shm) == VIO_WORK_LEFT) {} }

/* The generic device's request: the cursors' bounds and lifetime. */
static int requests;
static int request(void *ctx, uint16_t queue, vio_req *req)
{
    (void)ctx;
    uint32_t r = 99, w = 0;
    uint8_t buf[32];
    requests++;
    EXPECT(queue, 0);
    EXPECT(vio_req_readable_len(req, &r), VIO_OK);
    EXPECT((int)r, 0);
    EXPECT(vio_req_writable_len(req, &w), VIO_OK);
    EXPECT((int)w, 16);
    EXPECT(vio_req_readable_len(req, NULL), VIO_EINVAL);
    EXPECT(vio_req_writable_len(req, NULL), VIO_EINVAL);
    EXPECT(vio_req_read(req, buf, 1), VIO_ERANGE);
    EXPECT(vio_req_read(req, buf, SIZE_MAX), VIO_ERANGE);
    EXPECT(vio_req_read(req, NULL, 0), VIO_OK);
    EXPECT(vio_req_read(req, NULL, 1), VIO_EINVAL);
    EXPECT(vio_req_write(req, NULL, 1), VIO_EINVAL);
    EXPECT(vio_req_write(req, NULL, 0), VIO_OK);
    EXPECT(vio_req_write(req, buf, SIZE_MAX), VIO_ERANGE);
    EXPECT(vio_req_write(req, buf, 17), VIO_ERANGE);
    memset(buf, 0x5a, sizeof buf);
    EXPECT(vio_req_write(req, buf, 16), VIO_OK);
    EXPECT(vio_req_write(req, buf, 1), VIO_ERANGE);
    EXPECT(vio_req_complete(req), VIO_OK);
    EXPECT(vio_req_complete(req), VIO_EBADF);
    EXPECT(vio_req_write(req, buf, 1), VIO_EBADF);
    EXPECT(vio_req_read(req, buf, 0), VIO_EBADF);
    EXPECT(vio_req_readable_len(req, &r), VIO_EBADF);
    EXPECT(vio_req_writable_len(req, &w), VIO_EBADF);
    return 0;
}

typedef int (*storage_fn)(size_t *, size_t *);

static void test_storage(void)
{
    const storage_fn fns[] = {vio_mem_storage,     vio_rng_storage,  vio_block_storage, vio_console_storage,
                              vio_i2c_storage,     vio_gpio_storage, vio_generic_storage, vio_mmio_storage,
                              vio_shm_storage,     vio_drv_storage};
    const size_t bounds[] = {VIO_MEM_STORAGE_SIZE,  VIO_RNG_STORAGE_SIZE,  VIO_BLOCK_STORAGE_SIZE,
                             VIO_CONSOLE_STORAGE_SIZE, VIO_I2C_STORAGE_SIZE, VIO_GPIO_STORAGE_SIZE,
                             VIO_GENERIC_STORAGE_SIZE, VIO_MMIO_STORAGE_SIZE, VIO_SHM_STORAGE_SIZE,
                             VIO_DRV_STORAGE_SIZE};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        size_t size = 0, align = 0;
        EXPECT(fns[i](NULL, NULL), VIO_EINVAL);
        EXPECT(fns[i](&size, NULL), VIO_OK);
        EXPECT(fns[i](NULL, &align), VIO_OK);
        EXPECT(size <= bounds[i] && align <= VIO_STORAGE_ALIGN && size > 0, 1);
        /* A misaligned out pointer is refused, not written. */
        uint8_t raw[16] ALIGNED;
        EXPECT(fns[i]((size_t *)(void *)(raw + 1), NULL), VIO_EFAULT);
    }
    uint32_t v = 0;
    EXPECT(vio_version(NULL), VIO_EINVAL);
    EXPECT(vio_version(&v), VIO_OK);
    EXPECT((int)v, VIO_VERSION);
    EXPECT(vio_set_panic_hook(NULL), VIO_OK);
}

static vio_mem *test_mem(void)
{
    vio_mem *m = NULL;
    /* window */
    EXPECT(vio_mem_init_window(NULL, sizeof mem_st, 0, window, sizeof window, &m), VIO_EINVAL);
    EXPECT(vio_mem_init_window(mem_st, 0, 0, window, sizeof window, &m), VIO_ENOSPC);
    EXPECT(vio_mem_init_window(mem_st, 1, 0, window, sizeof window, &m), VIO_ENOSPC);
    EXPECT(vio_mem_init_window(mem_st + 1, sizeof mem_st - 1, 0, window, sizeof window, &m), VIO_EFAULT);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 0, NULL, sizeof window, &m), VIO_EINVAL);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 0, window, 0, &m), VIO_ERANGE);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 0, window, SIZE_MAX, &m), VIO_ERANGE);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, UINT64_MAX - 7, window, 64, &m), VIO_ERANGE);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 3, window, sizeof window, &m), VIO_EINVAL);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 0, window, sizeof window, NULL), VIO_EINVAL);
    /* table */
    vio_region regs[2] = {{0x1000, window, 512}, {0x2000, window + 128, 512}};
    vio_region overlap[2] = {{0x1000, window, 512}, {0x1100, window + 128, 512}};
    vio_mem *t = NULL;
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, NULL, 2, &t), VIO_EINVAL);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, regs, 0, &t), VIO_ERANGE);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, regs, VIO_MAX_REGIONS + 1, &t), VIO_ERANGE);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, regs, SIZE_MAX, &t), VIO_ERANGE);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, overlap, 2, &t), VIO_EINVAL);
    EXPECT(vio_mem_init_table(mem2_st, 4, regs, 2, &t), VIO_ENOSPC);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, regs, 2, NULL), VIO_EINVAL);
    EXPECT(vio_mem_init_table(mem2_st, sizeof mem2_st, regs, 2, &t), VIO_OK);
    EXPECT(vio_mem_deinit(t), VIO_OK);
    EXPECT(vio_mem_deinit(t), VIO_EBADF);
    EXPECT(vio_mem_deinit(NULL), VIO_EINVAL);
    EXPECT(vio_mem_deinit((vio_mem *)(void *)zeroes), VIO_EBADF);
    EXPECT(vio_mem_deinit((vio_mem *)(void *)((uint8_t *)zeroes + 1)), VIO_EFAULT);
    EXPECT(vio_mem_init_window(mem_st, sizeof mem_st, 0, window, sizeof window, &m), VIO_OK);
    return m;
}

static void test_devices(vio_mem *mem, vio_dev **rng_out, vio_dev **gen_out)
{
    vio_dev *d = NULL;
    const vio_rng_ops rng_ops = {fill};
    const vio_rng_ops no_fill = {NULL};
    EXPECT(vio_rng_init(NULL, sizeof rng_st, &rng_ops, NULL, &d), VIO_EINVAL);
    EXPECT(vio_rng_init(rng_st, 0, &rng_ops, NULL, &d), VIO_ENOSPC);
    EXPECT(vio_rng_init(rng_st + 4, sizeof rng_st - 4, &rng_ops, NULL, &d), VIO_EFAULT);
    EXPECT(vio_rng_init(rng_st, sizeof rng_st, NULL, NULL, &d), VIO_EINVAL);
    EXPECT(vio_rng_init(rng_st, sizeof rng_st, &no_fill, NULL, &d), VIO_EINVAL);
    EXPECT(vio_rng_init(rng_st, sizeof rng_st, &rng_ops, NULL, NULL), VIO_EINVAL);
    EXPECT(vio_rng_init(rng_st, sizeof rng_st, &rng_ops, NULL, &d), VIO_OK);
    *rng_out = d;

    const vio_block_ops bops = {bread, NULL, NULL, NULL};
    const vio_block_ops no_read = {NULL, NULL, NULL, NULL};
    vio_block_cfg cfg = {.capacity = 8, .flags = 0, .id = {0}};
    vio_block_cfg zero = {.capacity = 0, .flags = 0, .id = {0}};
    vio_block_cfg flags = {.capacity = 8, .flags = 0x80, .id = {0}};
    vio_dev *b = NULL;
    EXPECT(vio_block_init(blk_st, sizeof blk_st, NULL, &bops, NULL, &b), VIO_EINVAL);
    EXPECT(vio_block_init(blk_st, sizeof blk_st, &cfg, NULL, NULL, &b), VIO_EINVAL);
    EXPECT(vio_block_init(blk_st, sizeof blk_st, &cfg, &no_read, NULL, &b), VIO_EINVAL);
    EXPECT(vio_block_init(blk_st, sizeof blk_st, &zero, &bops, NULL, &b), VIO_ERANGE);
    EXPECT(vio_block_init(blk_st, sizeof blk_st, &flags, &bops, NULL, &b), VIO_EINVAL);
    EXPECT(vio_block_init(blk_st, 3, &cfg, &bops, NULL, &b), VIO_ENOSPC);
    EXPECT(vio_block_init(blk_st, sizeof blk_st, &cfg, &bops, NULL, &b), VIO_OK);

    const vio_console_ops cops = {tx, NULL, NULL};
    const vio_console_ops no_tx = {NULL, NULL, NULL};
    vio_dev *c = NULL;
    EXPECT(vio_console_init(con_st, sizeof con_st, NULL, NULL, &c), VIO_EINVAL);
    EXPECT(vio_console_init(con_st, sizeof con_st, &no_tx, NULL, &c), VIO_EINVAL);
    EXPECT(vio_console_init(con_st, 1, &cops, NULL, &c), VIO_ENOSPC);
    EXPECT(vio_console_init(con_st, sizeof con_st, &cops, NULL, &c), VIO_OK);

    const vio_i2c_ops iops = {xfer};
    const vio_i2c_ops no_xfer = {NULL};
    vio_dev *i = NULL;
    EXPECT(vio_i2c_init(i2c_st, sizeof i2c_st, NULL, NULL, &i), VIO_EINVAL);
    EXPECT(vio_i2c_init(i2c_st, sizeof i2c_st, &no_xfer, NULL, &i), VIO_EINVAL);
    EXPECT(vio_i2c_init(i2c_st, 100, &iops, NULL, &i), VIO_ENOSPC);
    EXPECT(vio_i2c_init(i2c_st, sizeof i2c_st, &iops, NULL, &i), VIO_OK);

    const vio_gpio_ops gops = {gget, gset, gdir};
    const vio_gpio_ops half = {gget, NULL, gdir};
    vio_dev *g = NULL;
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 8, 0, NULL, NULL, &g), VIO_EINVAL);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 8, 0, &half, NULL, &g), VIO_EINVAL);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 0, 0, &gops, NULL, &g), VIO_ERANGE);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, VIO_GPIO_MAX_LINES + 1, 0, &gops, NULL, &g), VIO_ERANGE);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 0xffff, 0, &gops, NULL, &g), VIO_ERANGE);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 8, 0xffffffffu, &gops, NULL, &g), VIO_EINVAL);
    EXPECT(vio_gpio_init(gpio_st, sizeof gpio_st, 8, VIO_GPIO_PLATFORM_EVENTS, &gops, NULL, &g), VIO_OK);
    EXPECT(vio_gpio_irq(NULL, 0, 1), VIO_EINVAL);
    EXPECT(vio_gpio_irq(d, 0, 1), VIO_EBADF); /* an rng is not a gpio */
    EXPECT(vio_gpio_irq((vio_dev *)(void *)mem, 0, 1), VIO_EBADF);
    EXPECT(vio_gpio_irq((vio_dev *)(void *)zeroes, 0, 1), VIO_EBADF);
    EXPECT(vio_gpio_irq(g, VIO_GPIO_MAX_LINES, 1), VIO_ERANGE);
    EXPECT(vio_gpio_irq(g, 0xffff, 1), VIO_ERANGE);
    EXPECT(vio_gpio_irq(g, 3, 1), VIO_OK);
    EXPECT(vio_gpio_irq(g, 3, 0), VIO_OK);

    const vio_generic_cfg gcfg = {.device_id = 0x4242, .num_queues = 1, .queue_size = 8, .features = 0,
                                  .config_len = 0, .malformed = VIO_MALFORMED_NEEDS_RESET};
    const vio_generic_ops gen_ops = {request, NULL, NULL, NULL};
    const vio_generic_ops no_req = {NULL, NULL, NULL, NULL};
    vio_generic_cfg bad = gcfg;
    vio_dev *x = NULL;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, NULL, &gen_ops, NULL, &x), VIO_EINVAL);
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &gcfg, &no_req, NULL, &x), VIO_EINVAL);
    bad.device_id = 0;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_EINVAL);
    bad.device_id = 0x10000;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_EINVAL);
    bad = gcfg;
    bad.num_queues = 0;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_ERANGE);
    bad.num_queues = VIO_MAX_QUEUES + 1;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_ERANGE);
    bad = gcfg;
    bad.queue_size = VIO_MAX_QUEUE_SIZE + 1;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_ERANGE);
    bad = gcfg;
    bad.config_len = VIO_GENERIC_MAX_CONFIG + 1;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_ERANGE);
    bad = gcfg;
    bad.malformed = 7;
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &bad, &gen_ops, NULL, &x), VIO_EINVAL);
    EXPECT(vio_generic_init(gen_st, sizeof gen_st, &gcfg, &gen_ops, NULL, &x), VIO_OK);
    *gen_out = x;

    /* dev_deinit: wrong, dead and live handles. */
    EXPECT(vio_dev_deinit(NULL), VIO_EINVAL);
    EXPECT(vio_dev_deinit((vio_dev *)(void *)mem), VIO_EBADF);
    EXPECT(vio_dev_deinit((vio_dev *)(void *)zeroes), VIO_EBADF);
    EXPECT(vio_dev_deinit(b), VIO_OK);
    EXPECT(vio_dev_deinit(b), VIO_EBADF);
    EXPECT(vio_dev_deinit(c), VIO_OK);
    EXPECT(vio_dev_deinit(i), VIO_OK);
    EXPECT(vio_dev_deinit(g), VIO_OK);
    EXPECT(vio_gpio_irq(g, 3, 1), VIO_EBADF); /* dead */
}

static void test_mmio(vio_mem *mem, vio_dev *rng)
{
    vio_mmio *t = NULL;
    uint32_t v = 0;
    EXPECT(vio_mmio_init(NULL, sizeof mmio_st, rng, mem, NULL, NULL, &t), VIO_EINVAL);
    EXPECT(vio_mmio_init(mmio_st, 8, rng, mem, NULL, NULL, &t), VIO_ENOSPC);
    EXPECT(vio_mmio_init(mmio_st + 2, sizeof mmio_st - 2, rng, mem, NULL, NULL, &t), VIO_EFAULT);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, NULL, mem, NULL, NULL, &t), VIO_EINVAL);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, rng, NULL, NULL, NULL, &t), VIO_EINVAL);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, (vio_dev *)(void *)mem, mem, NULL, NULL, &t), VIO_EBADF);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, rng, (vio_mem *)(void *)rng, NULL, NULL, &t), VIO_EBADF);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, rng, mem, NULL, NULL, NULL), VIO_EINVAL);
    EXPECT(vio_mmio_init(mmio_st, sizeof mmio_st, rng, mem, NULL, NULL, &t), VIO_OK);
    /* claimed: refused elsewhere */
    static uint8_t other[VIO_MMIO_STORAGE_SIZE] ALIGNED;
    vio_mmio *t2 = NULL;
    EXPECT(vio_mmio_init(other, sizeof other, rng, mem, NULL, NULL, &t2), VIO_EBUSY);
    EXPECT(vio_dev_deinit(rng), VIO_EBUSY);
    EXPECT(vio_mem_deinit(mem), VIO_EBUSY);

    vio_mmio *wrong = (vio_mmio *)(void *)rng;
    vio_mmio *dead = (vio_mmio *)(void *)zeroes;
    EXPECT(vio_mmio_read(NULL, 0, 4, &v), VIO_EINVAL);
    EXPECT(vio_mmio_read(wrong, 0, 4, &v), VIO_EBADF);
    EXPECT(vio_mmio_read(dead, 0, 4, &v), VIO_EBADF);
    EXPECT(vio_mmio_read(t, 0, 4, NULL), VIO_EINVAL);
    EXPECT(vio_mmio_read(t, 0, 0, &v), VIO_EINVAL);
    EXPECT(vio_mmio_read(t, 0, 3, &v), VIO_EINVAL);
    EXPECT(vio_mmio_read(t, 0, 8, &v), VIO_EINVAL);
    EXPECT(vio_mmio_read(t, 0, 0xffffffffu, &v), VIO_EINVAL);
    EXPECT(vio_mmio_read(t, 0xffffffffu, 4, &v), VIO_EIO);
    EXPECT(vio_mmio_read(t, 0xfffffffcu, 4, &v), VIO_EIO);
    EXPECT(vio_mmio_read(t, 0x001, 1, &v), VIO_EIO);
    EXPECT(vio_mmio_read(t, 0, 4, &v), VIO_OK);
    EXPECT(v == 0x74726976u, 1);
    EXPECT(vio_mmio_write(NULL, 0x70, 4, 0), VIO_EINVAL);
    EXPECT(vio_mmio_write(wrong, 0x70, 4, 0), VIO_EBADF);
    EXPECT(vio_mmio_write(dead, 0x70, 4, 0), VIO_EBADF);
    EXPECT(vio_mmio_write(t, 0x70, 5, 0), VIO_EINVAL);
    EXPECT(vio_mmio_write(t, 0xffffffffu, 4, 0), VIO_EIO);
    EXPECT(vio_mmio_write(t, 0x000, 4, 1), VIO_EIO); /* read-only */
    EXPECT(vio_mmio_write(t, 0x070, 4, 0x1ff), VIO_EIO); /* status above 0xff */
    EXPECT(vio_mmio_write(t, 0x050, 4, 0xffffffffu), VIO_OK); /* notify of no queue: harmless */
    EXPECT(vio_mmio_poll(NULL), VIO_EINVAL);
    EXPECT(vio_mmio_poll(wrong), VIO_EBADF);
    EXPECT(vio_mmio_poll(t), VIO_OK);
    uint32_t errors = 0;
    EXPECT(vio_mmio_errors(NULL, &errors), VIO_EINVAL);
    EXPECT(vio_mmio_errors(t, NULL), VIO_EINVAL);
    EXPECT(vio_mmio_errors(dead, &errors), VIO_EBADF);
    EXPECT(vio_mmio_errors(t, &errors), VIO_OK);
    EXPECT((int)errors, 6);
    EXPECT(vio_mmio_deinit(NULL), VIO_EINVAL);
    EXPECT(vio_mmio_deinit(wrong), VIO_EBADF);
    EXPECT(vio_mmio_deinit(t), VIO_OK);
    EXPECT(vio_mmio_deinit(t), VIO_EBADF);
    EXPECT(vio_mmio_read(t, 0, 4, &v), VIO_EBADF);
}

static void test_shm(vio_mem *mem, vio_dev *gen)
{
    vio_shm *s = NULL;
    vio_dev *devs[2] = {gen, gen};
    vio_dev *bad_devs[1] = {(vio_dev *)(void *)mem};
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, NULL, 1, NULL, NULL, &s), VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 0, NULL, NULL, &s), VIO_ERANGE);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, SIZE_MAX, NULL, NULL, &s),
           VIO_ERANGE);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, 0x80, devs, 1, NULL, NULL, &s), VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 3, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s), VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 0xffff, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s),
           VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 0xffffffffu, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s),
           VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 1u << 20, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s),
           VIO_ENOSPC);
    EXPECT(vio_shm_init(shm_st, 16, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s), VIO_ENOSPC);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, NULL, 4, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s), VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, bad_devs, 1, NULL, NULL, &s),
           VIO_EBADF);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 2, NULL, NULL, &s), VIO_EBUSY);
    memset(window, 0, sizeof window);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, 0, devs, 1, NULL, NULL, &s), VIO_EPROTO);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, NULL),
           VIO_EINVAL);
    EXPECT(vio_shm_init(shm_st, sizeof shm_st, mem, 4, 64, 4096, VIO_SHM_CREATE, devs, 1, NULL, NULL, &s), VIO_OK);
    the_shm = s;

    vio_shm *wrong = (vio_shm *)(void *)gen;
    vio_shm *dead = (vio_shm *)(void *)zeroes;
    EXPECT(vio_shm_process(NULL), VIO_EINVAL);
    EXPECT(vio_shm_process(wrong), VIO_EBADF);
    EXPECT(vio_shm_process(dead), VIO_EBADF);
    EXPECT(vio_shm_process(s), VIO_OK);
    EXPECT(vio_shm_poll(NULL), VIO_EINVAL);
    EXPECT(vio_shm_poll(wrong), VIO_EBADF);
    EXPECT(vio_shm_poll(s), VIO_OK);

    /* The driver end: errors, then one request through the generic device. */
    vio_drv *d = NULL;
    EXPECT(vio_drv_init(NULL, sizeof drv_st, mem, 4, 64, 4096, ring_device, NULL, &d), VIO_EINVAL);
    EXPECT(vio_drv_init(drv_st, 1, mem, 4, 64, 4096, ring_device, NULL, &d), VIO_ENOSPC);
    EXPECT(vio_drv_init(drv_st, sizeof drv_st, mem, 8, 64, 4096, ring_device, NULL, &d), VIO_EPROTO);
    EXPECT(vio_drv_init(drv_st, sizeof drv_st, (vio_mem *)(void *)gen, 4, 64, 4096, ring_device, NULL, &d), VIO_EBADF);
    EXPECT(vio_drv_init(drv_st, sizeof drv_st, mem, 4, 64, 4096, ring_device, NULL, NULL), VIO_EINVAL);
    EXPECT(vio_drv_init(drv_st, sizeof drv_st, mem, 4, 64, 4096, ring_device, NULL, &d), VIO_OK);
    uint8_t buf[512];
    uint32_t got = 0;
    EXPECT(vio_drv_rng_read(NULL, 0, buf, 16, &got), VIO_EINVAL);
    EXPECT(vio_drv_rng_read((vio_drv *)(void *)zeroes, 0, buf, 16, &got), VIO_EBADF);
    EXPECT(vio_drv_rng_read(d, 0, NULL, 16, &got), VIO_EINVAL);
    EXPECT(vio_drv_rng_read(d, 0, buf, 16, NULL), VIO_EINVAL);
    EXPECT(vio_drv_rng_read(d, 0, buf, 0, &got), VIO_ERANGE);
    EXPECT(vio_drv_rng_read(d, 0, buf, SIZE_MAX, &got), VIO_ERANGE);
    EXPECT(vio_drv_rng_read(d, 9, buf, 16, &got), VIO_ERANGE);
    memset(buf, 0, sizeof buf);
    EXPECT(vio_drv_rng_read(d, 0, buf, 16, &got), VIO_OK);
    EXPECT((int)got, 16);
    EXPECT(buf[15], 0x5a);
    EXPECT(requests, 1);
    EXPECT(vio_drv_blk(NULL, 0, 0, buf, 0), VIO_EINVAL);
    EXPECT(vio_drv_blk(d, 0, 0, NULL, 0), VIO_EINVAL);
    EXPECT(vio_drv_blk(d, 9, 0, buf, 0), VIO_ERANGE);

    vio_shm_stats st;
    EXPECT(vio_shm_get_stats(NULL, &st), VIO_EINVAL);
    EXPECT(vio_shm_get_stats(s, NULL), VIO_EINVAL);
    EXPECT(vio_shm_get_stats(wrong, &st), VIO_EBADF);
    EXPECT(vio_shm_get_stats(s, &st), VIO_OK);
    EXPECT((int)st.discarded, 0);

    /* Outside a callback, no request handle is live. */
    EXPECT(vio_req_read(NULL, buf, 1), VIO_EINVAL);
    EXPECT(vio_req_write(NULL, buf, 1), VIO_EINVAL);
    EXPECT(vio_req_readable_len(NULL, &got), VIO_EINVAL);
    EXPECT(vio_req_writable_len(NULL, &got), VIO_EINVAL);
    EXPECT(vio_req_complete(NULL), VIO_EINVAL);
    EXPECT(vio_req_complete((vio_req *)(void *)zeroes), VIO_EBADF);
    EXPECT(vio_req_read((vio_req *)(void *)zeroes, buf, 1), VIO_EBADF);
    EXPECT(vio_req_complete((vio_req *)(void *)d), VIO_EBADF);

    EXPECT(vio_drv_deinit(NULL), VIO_EINVAL);
    EXPECT(vio_drv_deinit((vio_drv *)(void *)s), VIO_EBADF);
    EXPECT(vio_drv_deinit(d), VIO_OK);
    EXPECT(vio_drv_deinit(d), VIO_EBADF);
    EXPECT(vio_shm_deinit(NULL), VIO_EINVAL);
    EXPECT(vio_shm_deinit(wrong), VIO_EBADF);
    EXPECT(vio_shm_deinit(s), VIO_OK);
    EXPECT(vio_shm_deinit(s), VIO_EBADF);
    EXPECT(vio_shm_process(s), VIO_EBADF);
}

int main(void)
{
    vio_dev *rng = NULL;
    vio_dev *gen = NULL;
    test_storage();
    vio_mem *mem = test_mem();
    test_devices(mem, &rng, &gen);
    test_mmio(mem, rng);
    test_shm(mem, gen);
    EXPECT(vio_dev_deinit(rng), VIO_OK);
    EXPECT(vio_dev_deinit(gen), VIO_OK);
    EXPECT(vio_mem_deinit(mem), VIO_OK);
    if (failures != 0) {
        fprintf(stderr, "FAIL: %d of %d checks\n", failures, checks);
        return 1;
    }
    printf("PASS: %d checks\n", checks);
    return 0;
}
