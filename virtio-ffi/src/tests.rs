//! The C API driven from Rust: storage, handles, every device kind over
//! the MMIO entry points, the generic device's request handle, the shm
//! device end.
#![allow(
    unsafe_code,
    clippy::undocumented_unsafe_blocks,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used
)]

use core::ffi::{c_int, c_void};
use core::ptr::{null, null_mut};
use std::boxed::Box;
use std::println;
use std::vec;
use std::vec::Vec;

use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{QueueConfig, Segment};
use virtio_core::spec::Features;
use virtio_transport_mmio::regs::*;

use crate::backend::*;
use crate::ffi::*;
use crate::*;

/// 8-aligned storage for any object.
fn store(len: usize) -> Vec<u64> {
    vec![0u64; len.div_ceil(8)]
}

#[test]
fn sizes() {
    let mut s = 0usize;
    let mut a = 0usize;
    type Query = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
    let queries: [(&str, Query, usize); 9] = [
        ("mem", vio_mem_storage, VIO_MEM_STORAGE_SIZE),
        ("rng", vio_rng_storage, VIO_RNG_STORAGE_SIZE),
        ("block", vio_block_storage, VIO_BLOCK_STORAGE_SIZE),
        ("console", vio_console_storage, VIO_CONSOLE_STORAGE_SIZE),
        ("i2c", vio_i2c_storage, VIO_I2C_STORAGE_SIZE),
        ("gpio", vio_gpio_storage, VIO_GPIO_STORAGE_SIZE),
        ("generic", vio_generic_storage, VIO_GENERIC_STORAGE_SIZE),
        ("mmio", vio_mmio_storage, VIO_MMIO_STORAGE_SIZE),
        ("shm", vio_shm_storage, VIO_SHM_STORAGE_SIZE),
    ];
    for (name, f, bound) in queries {
        assert_eq!(unsafe { f(&mut s, &mut a) }, VIO_OK);
        println!("{name}: {s} align {a}");
        assert!(a <= VIO_STORAGE_ALIGN && s <= bound);
        assert_eq!(unsafe { f(null_mut(), null_mut()) }, VIO_EINVAL);
        assert_eq!(unsafe { f(&mut s, null_mut()) }, VIO_OK);
    }
    #[cfg(feature = "driver")]
    {
        assert_eq!(unsafe { vio_drv_storage(&mut s, &mut a) }, VIO_OK);
        println!("drv: {s} align {a}");
        assert!(s <= VIO_DRV_STORAGE_SIZE);
    }
}

const BASE: u64 = 0x1000;

fn guest(len: usize) -> Guest {
    guest_at(BASE, len)
}

/// Guest memory for a test: the `vio_mem` and a driver-side view.
struct Guest {
    _host: Vec<u64>,
    _mstore: Vec<u64>,
    mem: *mut vio_mem,
    view: Region<'static>,
}

fn guest_at(base: u64, len: usize) -> Guest {
    let mut host = vec![0u64; len / 8];
    let ptr = host.as_mut_ptr().cast::<c_void>();
    let mut mstore = store(VIO_MEM_STORAGE_SIZE);
    let mut mem = null_mut();
    let rc = unsafe {
        vio_mem_init_window(
            mstore.as_mut_ptr().cast(),
            VIO_MEM_STORAGE_SIZE,
            base,
            ptr,
            len,
            &mut mem,
        )
    };
    assert_eq!(rc, VIO_OK);
    let view = unsafe { Region::from_raw_parts(base, ptr.cast(), len) }.unwrap();
    Guest {
        _host: host,
        _mstore: mstore,
        mem,
        view,
    }
}

/// A driver of one MMIO device through the C entry points.
struct MmioDrv {
    t: *mut vio_mmio,
    q: Vec<SplitDriver>,
}

impl MmioDrv {
    fn w(&self, off: u32, v: u32) -> c_int {
        unsafe { vio_mmio_write(self.t, off, 4, v) }
    }
    fn r(&self, off: u32) -> u32 {
        let mut v = 0;
        assert_eq!(unsafe { vio_mmio_read(self.t, off, 4, &mut v) }, VIO_OK);
        v
    }
    /// Status handshake with VERSION_1 and `queues` queues of 8 at `area`.
    fn up(t: *mut vio_mmio, g: &Guest, queues: u16, area: u64) -> Self {
        Self::up_with(t, g, queues, area, 0)
    }
    fn up_with(t: *mut vio_mmio, g: &Guest, queues: u16, area: u64, feat0: u32) -> Self {
        let mut d = Self { t, q: Vec::new() };
        assert_eq!(d.r(MAGIC_VALUE), 0x7472_6976);
        d.w(STATUS, 0);
        d.w(STATUS, 1);
        d.w(STATUS, 3);
        d.w(DRIVER_FEATURES_SEL, 0);
        d.w(DRIVER_FEATURES, feat0);
        d.w(DRIVER_FEATURES_SEL, 1);
        d.w(DRIVER_FEATURES, 1); // VERSION_1
        d.w(STATUS, 0xb);
        assert_ne!(d.r(STATUS) & 8, 0, "FEATURES_OK refused");
        for qi in 0..queues {
            let cfg: QueueConfig = SplitDriver::layout(area + u64::from(qi) * 0x400, 8);
            d.w(QUEUE_SEL, u32::from(qi));
            d.w(QUEUE_SIZE, 8);
            d.w(QUEUE_DESC_LOW, cfg.desc_addr as u32);
            d.w(QUEUE_DESC_HIGH, 0);
            d.w(QUEUE_DRIVER_LOW, cfg.driver_addr as u32);
            d.w(QUEUE_DRIVER_HIGH, 0);
            d.w(QUEUE_DEVICE_LOW, cfg.device_addr as u32);
            d.w(QUEUE_DEVICE_HIGH, 0);
            d.w(QUEUE_READY, 1);
            d.q.push(SplitDriver::new(&g.view, cfg, Features::VERSION_1).unwrap());
        }
        d.w(STATUS, 0xf);
        assert_eq!(d.r(STATUS), 0xf);
        d
    }
    /// One request on `queue`; returns the used length.
    fn run(&mut self, g: &Guest, queue: u16, rd: &[Segment], wr: &[Segment]) -> u32 {
        let q = &mut self.q[usize::from(queue)];
        q.add(&g.view, rd, wr).unwrap();
        q.publish_avail(&g.view).unwrap();
        assert_eq!(
            unsafe { vio_mmio_write(self.t, QUEUE_NOTIFY, 4, u32::from(queue)) },
            VIO_OK
        );
        let used = self.q[usize::from(queue)]
            .pop_used(&g.view)
            .unwrap()
            .expect("used");
        used.len
    }
}

fn mmio(
    dev: *mut vio_dev,
    g: &Guest,
    irq: Option<extern "C" fn(*mut c_void, u8)>,
) -> (Vec<u64>, *mut vio_mmio) {
    let mut st = store(VIO_MMIO_STORAGE_SIZE);
    let mut t = null_mut();
    let rc = unsafe {
        vio_mmio_init(
            st.as_mut_ptr().cast(),
            VIO_MMIO_STORAGE_SIZE,
            dev,
            g.mem,
            irq,
            null_mut(),
            &mut t,
        )
    };
    assert_eq!(rc, VIO_OK);
    (st, t)
}

extern "C" fn fill_counting(_ctx: *mut c_void, buf: *mut u8, len: usize) -> c_int {
    let b = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8 ^ 0x5a;
    }
    0
}

extern "C" fn count_irq(ctx: *mut c_void, level: u8) {
    if !ctx.is_null() {
        unsafe { *ctx.cast::<u32>() += u32::from(level) };
    }
}

#[test]
fn rng_over_mmio_and_handle_checks() {
    let g = guest(0x4000);
    let ops = vio_rng_ops {
        fill: Some(fill_counting),
    };
    let mut ds = store(VIO_RNG_STORAGE_SIZE);
    let mut dev = null_mut();
    // Argument checks first.
    assert_eq!(
        unsafe { vio_rng_init(null_mut(), 4096, &ops, null_mut(), &mut dev) },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe { vio_rng_init(ds.as_mut_ptr().cast(), 8, &ops, null_mut(), &mut dev) },
        VIO_ENOSPC
    );
    let odd = unsafe { ds.as_mut_ptr().cast::<u8>().add(1) }.cast();
    assert_eq!(
        unsafe { vio_rng_init(odd, 4096, &ops, null_mut(), &mut dev) },
        VIO_EFAULT
    );
    assert_eq!(
        unsafe { vio_rng_init(ds.as_mut_ptr().cast(), 4096, null(), null_mut(), &mut dev) },
        VIO_EINVAL
    );
    let none = vio_rng_ops { fill: None };
    assert_eq!(
        unsafe { vio_rng_init(ds.as_mut_ptr().cast(), 4096, &none, null_mut(), &mut dev) },
        VIO_EINVAL
    );
    let n = ds.len() * 8;
    assert_eq!(
        unsafe { vio_rng_init(ds.as_mut_ptr().cast(), n, &ops, null_mut(), &mut dev) },
        VIO_OK
    );

    // Wrong handles: a memory object is not a device, a device is not memory.
    let mut t = null_mut();
    let mut ts = store(VIO_MMIO_STORAGE_SIZE);
    let tn = ts.len() * 8;
    assert_eq!(
        unsafe {
            vio_mmio_init(
                ts.as_mut_ptr().cast(),
                tn,
                g.mem.cast(),
                g.mem,
                None,
                null_mut(),
                &mut t,
            )
        },
        VIO_EBADF
    );
    assert_eq!(
        unsafe {
            vio_mmio_init(
                ts.as_mut_ptr().cast(),
                tn,
                dev,
                dev.cast(),
                None,
                null_mut(),
                &mut t,
            )
        },
        VIO_EBADF
    );
    assert_eq!(unsafe { vio_gpio_irq(dev, 0, 1) }, VIO_EBADF);

    let mut irqs = 0u32;
    let mut t = null_mut();
    let rc = unsafe {
        vio_mmio_init(
            ts.as_mut_ptr().cast(),
            tn,
            dev,
            g.mem,
            Some(count_irq),
            (&raw mut irqs).cast(),
            &mut t,
        )
    };
    assert_eq!(rc, VIO_OK);
    // Claimed: a second transport and deinit are refused; memory is in use.
    let mut ts2 = store(VIO_MMIO_STORAGE_SIZE);
    let mut t2 = null_mut();
    assert_eq!(
        unsafe {
            vio_mmio_init(
                ts2.as_mut_ptr().cast(),
                tn,
                dev,
                g.mem,
                None,
                null_mut(),
                &mut t2,
            )
        },
        VIO_EBUSY
    );
    assert_eq!(unsafe { vio_dev_deinit(dev) }, VIO_EBUSY);
    assert_eq!(unsafe { vio_mem_deinit(g.mem) }, VIO_EBUSY);

    let mut d = MmioDrv::up(t, &g, 1, BASE);
    assert_eq!(d.r(DEVICE_ID), 4);
    let buf = BASE + 0x2000;
    let len = d.run(&g, 0, &[], &[Segment { addr: buf, len: 32 }]);
    assert_eq!(len, 32);
    let mut got = [0u8; 32];
    g.view.read(buf, &mut got).unwrap();
    assert_eq!(got[3], 3 ^ 0x5a);
    assert!(irqs >= 1, "interrupt line never rose");

    // Invalid accesses are counted and reported.
    let mut v = 7;
    assert_eq!(unsafe { vio_mmio_read(t, 0x001, 4, &mut v) }, VIO_EIO);
    assert_eq!(v, 0);
    assert_eq!(unsafe { vio_mmio_read(t, 0, 3, &mut v) }, VIO_EINVAL);
    assert_eq!(unsafe { vio_mmio_read(t, 0, 4, null_mut()) }, VIO_EINVAL);
    assert_eq!(unsafe { vio_mmio_write(t, MAGIC_VALUE, 4, 1) }, VIO_EIO);
    let mut errors = 0;
    assert_eq!(unsafe { vio_mmio_errors(t, &mut errors) }, VIO_OK);
    assert_eq!(errors, 2);
    assert_eq!(unsafe { vio_mmio_poll(t) }, VIO_OK);

    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_EBADF);
    assert_eq!(unsafe { vio_mmio_poll(t) }, VIO_EBADF);
    assert_eq!(unsafe { vio_dev_deinit(dev) }, VIO_OK);
    assert_eq!(unsafe { vio_dev_deinit(dev) }, VIO_EBADF);
    assert_eq!(unsafe { vio_mem_deinit(g.mem) }, VIO_OK);
}

/// A 4-sector disk in the context.
extern "C" fn blk_read(ctx: *mut c_void, sector: u64, buf: *mut u8, len: usize) -> c_int {
    let disk = unsafe { &*ctx.cast::<[u8; 2048]>() };
    let at = sector as usize * 512;
    unsafe { core::ptr::copy_nonoverlapping(disk[at..at + len].as_ptr(), buf, len) };
    0
}

extern "C" fn blk_write(ctx: *mut c_void, sector: u64, buf: *const u8, len: usize) -> c_int {
    let disk = unsafe { &mut *ctx.cast::<[u8; 2048]>() };
    let at = sector as usize * 512;
    unsafe { core::ptr::copy_nonoverlapping(buf, disk[at..at + len].as_mut_ptr(), len) };
    0
}

#[test]
fn block_over_mmio() {
    let g = guest(0x8000);
    let mut disk = Box::new([0u8; 2048]);
    let ops = vio_block_ops {
        read: Some(blk_read),
        write: Some(blk_write),
        flush: None,
        discard: None,
    };
    let cfg = vio_block_cfg {
        capacity: 4,
        flags: 0,
        id: *b"ffi-test\0\0\0\0\0\0\0\0\0\0\0\0",
    };
    let bad = vio_block_cfg { capacity: 0, ..cfg };
    let mut ds = store(VIO_BLOCK_STORAGE_SIZE);
    let mut dev = null_mut();
    let ctx = disk.as_mut_ptr().cast();
    assert_eq!(
        unsafe {
            vio_block_init(
                ds.as_mut_ptr().cast(),
                VIO_BLOCK_STORAGE_SIZE,
                &bad,
                &ops,
                ctx,
                &mut dev,
            )
        },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe {
            vio_block_init(
                ds.as_mut_ptr().cast(),
                VIO_BLOCK_STORAGE_SIZE,
                &cfg,
                &ops,
                ctx,
                &mut dev,
            )
        },
        VIO_OK
    );
    let (_s, t) = mmio(dev, &g, None);
    let mut d = MmioDrv::up(t, &g, 1, BASE);
    assert_eq!(d.r(DEVICE_ID), 2);
    assert_eq!(d.r(CONFIG), 4); // capacity low word
    let (hdr, data, st) = (BASE + 0x2000, BASE + 0x3000, BASE + 0x4000);
    // Write sector 2, read it back; then a read past the end fails IOERR.
    g.view
        .write(hdr, &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    g.view.write(data, &[0xab; 512]).unwrap();
    d.run(
        &g,
        0,
        &[
            Segment { addr: hdr, len: 16 },
            Segment {
                addr: data,
                len: 512,
            },
        ],
        &[Segment { addr: st, len: 1 }],
    );
    let mut s = [9u8];
    g.view.read(st, &mut s).unwrap();
    assert_eq!(s, [0]);
    assert!(disk[1024..1536].iter().all(|b| *b == 0xab));
    g.view
        .write(hdr, &[0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    d.run(
        &g,
        0,
        &[Segment { addr: hdr, len: 16 }],
        &[
            Segment {
                addr: data,
                len: 512,
            },
            Segment { addr: st, len: 1 },
        ],
    );
    g.view.read(st, &mut s).unwrap();
    assert_eq!(s, [1], "read past the end must be IOERR");
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
}

/// Echo device: reads a 4-byte word, answers it reversed, completes;
/// probes the cursor bounds on the way.
extern "C" fn echo(ctx: *mut c_void, queue: u16, req: *mut vio_req) -> c_int {
    let seen = unsafe { &mut *ctx.cast::<u32>() };
    *seen += 1;
    assert_eq!(queue, 0);
    let (mut r, mut w) = (0u32, 0u32);
    assert_eq!(unsafe { vio_req_readable_len(req, &mut r) }, VIO_OK);
    assert_eq!(unsafe { vio_req_writable_len(req, &mut w) }, VIO_OK);
    assert_eq!((r, w), (4, 8));
    let mut word = [0u8; 4];
    // Past the readable part: refused, nothing consumed.
    let mut big = [0u8; 5];
    assert_eq!(
        unsafe { vio_req_read(req, big.as_mut_ptr().cast(), 5) },
        VIO_ERANGE
    );
    assert_eq!(unsafe { vio_req_read(req, null_mut(), 4) }, VIO_EINVAL);
    assert_eq!(
        unsafe { vio_req_read(req, word.as_mut_ptr().cast(), usize::MAX) },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe { vio_req_read(req, word.as_mut_ptr().cast(), 4) },
        VIO_OK
    );
    word.reverse();
    assert_eq!(
        unsafe { vio_req_write(req, big.as_ptr().cast(), 9) },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe { vio_req_write(req, word.as_ptr().cast(), 4) },
        VIO_OK
    );
    assert_eq!(unsafe { vio_req_complete(req) }, VIO_OK);
    assert_eq!(unsafe { vio_req_complete(req) }, VIO_EBADF);
    assert_eq!(
        unsafe { vio_req_write(req, word.as_ptr().cast(), 1) },
        VIO_EBADF
    );
    0
}

#[test]
fn generic_device_request_handle() {
    let g = guest(0x4000);
    let cfg = vio_generic_cfg {
        device_id: 0x1234,
        num_queues: 1,
        queue_size: 8,
        features: 0,
        config_len: 0,
        malformed: VIO_MALFORMED_RETURN_EMPTY,
    };
    let ops = vio_generic_ops {
        request: Some(echo),
        read_config: None,
        write_config: None,
        reset: None,
    };
    let mut seen = 0u32;
    let mut ds = store(VIO_GENERIC_STORAGE_SIZE);
    let mut dev = null_mut();
    let bad = vio_generic_cfg {
        num_queues: 9,
        ..cfg
    };
    assert_eq!(
        unsafe {
            vio_generic_init(
                ds.as_mut_ptr().cast(),
                VIO_GENERIC_STORAGE_SIZE,
                &bad,
                &ops,
                null_mut(),
                &mut dev,
            )
        },
        VIO_ERANGE
    );
    let bad = vio_generic_cfg {
        device_id: 0,
        ..cfg
    };
    assert_eq!(
        unsafe {
            vio_generic_init(
                ds.as_mut_ptr().cast(),
                VIO_GENERIC_STORAGE_SIZE,
                &bad,
                &ops,
                null_mut(),
                &mut dev,
            )
        },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe {
            vio_generic_init(
                ds.as_mut_ptr().cast(),
                VIO_GENERIC_STORAGE_SIZE,
                &cfg,
                &ops,
                (&raw mut seen).cast(),
                &mut dev,
            )
        },
        VIO_OK
    );
    let (_s, t) = mmio(dev, &g, None);
    let mut d = MmioDrv::up(t, &g, 1, BASE);
    assert_eq!(d.r(DEVICE_ID), 0x1234);
    let (inb, outb) = (BASE + 0x2000, BASE + 0x2100);
    g.view.write(inb, &[1, 2, 3, 4]).unwrap();
    let len = d.run(
        &g,
        0,
        &[Segment { addr: inb, len: 4 }],
        &[Segment { addr: outb, len: 8 }],
    );
    assert_eq!(len, 4);
    let mut back = [0u8; 4];
    g.view.read(outb, &mut back).unwrap();
    assert_eq!(back, [4, 3, 2, 1]);
    assert_eq!(seen, 1);
    // Outside a callback there is no live request.
    let mut fake = [0u64; 4];
    assert_eq!(
        unsafe { vio_req_complete(fake.as_mut_ptr().cast()) },
        VIO_EBADF
    );
    assert_eq!(unsafe { vio_req_complete(null_mut()) }, VIO_EINVAL);
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
}

extern "C" fn gpio_get(_: *mut c_void, _line: u16, v: *mut u8) -> c_int {
    unsafe { *v = 0 };
    0
}
extern "C" fn gpio_set(_: *mut c_void, _line: u16, _v: u8) -> c_int {
    0
}
extern "C" fn gpio_dir(_: *mut c_void, _line: u16, _d: u8, _v: u8) -> c_int {
    0
}
extern "C" fn i2c_nack(_: *mut c_void, _addr: u16, _m: *mut vio_i2c_msg, _n: usize) -> c_int {
    VIO_I2C_NACK
}
extern "C" fn con_tx(_: *mut c_void, _b: *const u8, len: usize) -> c_int {
    len as c_int
}

#[test]
fn console_i2c_gpio_come_up() {
    let g = guest(0x4000);
    let mut s1 = store(VIO_CONSOLE_STORAGE_SIZE);
    let mut s2 = store(VIO_I2C_STORAGE_SIZE);
    let mut s3 = store(VIO_GPIO_STORAGE_SIZE);
    let (mut c, mut i, mut p) = (null_mut(), null_mut(), null_mut());
    let cops = vio_console_ops {
        tx: Some(con_tx),
        rx: None,
        rx_ready: None,
    };
    let iops = vio_i2c_ops {
        transfer: Some(i2c_nack),
    };
    let gops = vio_gpio_ops {
        get: Some(gpio_get),
        set: Some(gpio_set),
        direction: Some(gpio_dir),
    };
    assert_eq!(
        unsafe {
            vio_console_init(
                s1.as_mut_ptr().cast(),
                VIO_CONSOLE_STORAGE_SIZE,
                &cops,
                null_mut(),
                &mut c,
            )
        },
        VIO_OK
    );
    assert_eq!(
        unsafe {
            vio_i2c_init(
                s2.as_mut_ptr().cast(),
                VIO_I2C_STORAGE_SIZE,
                &iops,
                null_mut(),
                &mut i,
            )
        },
        VIO_OK
    );
    assert_eq!(
        unsafe {
            vio_gpio_init(
                s3.as_mut_ptr().cast(),
                VIO_GPIO_STORAGE_SIZE,
                0,
                0,
                &gops,
                null_mut(),
                &mut p,
            )
        },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe {
            vio_gpio_init(
                s3.as_mut_ptr().cast(),
                VIO_GPIO_STORAGE_SIZE,
                8,
                2,
                &gops,
                null_mut(),
                &mut p,
            )
        },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe {
            vio_gpio_init(
                s3.as_mut_ptr().cast(),
                VIO_GPIO_STORAGE_SIZE,
                8,
                0,
                &gops,
                null_mut(),
                &mut p,
            )
        },
        VIO_OK
    );
    assert_eq!(unsafe { vio_gpio_irq(p, 3, 1) }, VIO_OK);
    assert_eq!(unsafe { vio_gpio_irq(p, 32, 1) }, VIO_ERANGE);
    for (dev, id, queues, feat) in [(c, 3, 2, 0), (i, 34, 1, 1), (p, 41, 2, 1)] {
        let (_s, t) = mmio(dev, &g, None);
        let d = MmioDrv::up_with(t, &g, queues, BASE, feat);
        assert_eq!(d.r(DEVICE_ID), id);
        assert_eq!(unsafe { vio_mmio_poll(t) }, VIO_OK);
        assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
    }
    // The console transmits; an I2C read to a NACKing bus answers MSG_ERR.
    let (_s, t) = mmio(c, &g, None);
    let mut d = MmioDrv::up(t, &g, 2, BASE);
    g.view.write(BASE + 0x2000, b"hello").unwrap();
    assert_eq!(
        d.run(
            &g,
            1,
            &[Segment {
                addr: BASE + 0x2000,
                len: 5
            }],
            &[]
        ),
        0
    );
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
    let (_s, t) = mmio(i, &g, None);
    let mut d = MmioDrv::up_with(t, &g, 1, BASE, 1);
    g.view
        .write(BASE + 0x2000, &[0x50 << 1, 0, 0, 0, 1, 0, 0, 0])
        .unwrap(); // addr, FAIL_NEXT=0, M_RD
    g.view.write(BASE + 0x2100, &[0xee]).unwrap();
    d.run(
        &g,
        0,
        &[Segment {
            addr: BASE + 0x2000,
            len: 8,
        }],
        &[
            Segment {
                addr: BASE + 0x2200,
                len: 2,
            },
            Segment {
                addr: BASE + 0x2100,
                len: 1,
            },
        ],
    );
    let mut st = [0u8];
    g.view.read(BASE + 0x2100, &mut st).unwrap();
    assert_eq!(st, [1], "NACK must answer VIRTIO_I2C_MSG_ERR");
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
}

#[cfg(feature = "mem-table")]
#[test]
fn memory_table() {
    let mut a = vec![0u64; 64];
    let mut b = vec![0u64; 64];
    let regions = [
        vio_region {
            guest_base: 0x1000,
            host: a.as_mut_ptr().cast(),
            len: 512,
        },
        vio_region {
            guest_base: 0x2000,
            host: b.as_mut_ptr().cast(),
            len: 512,
        },
    ];
    let overlap = [
        regions[0],
        vio_region {
            guest_base: 0x1100,
            ..regions[1]
        },
    ];
    let mut st = store(VIO_MEM_STORAGE_SIZE);
    let mut m = null_mut();
    let n = VIO_MEM_STORAGE_SIZE;
    assert_eq!(
        unsafe { vio_mem_init_table(st.as_mut_ptr().cast(), n, regions.as_ptr(), 0, &mut m) },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe { vio_mem_init_table(st.as_mut_ptr().cast(), n, regions.as_ptr(), 9, &mut m) },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe { vio_mem_init_table(st.as_mut_ptr().cast(), n, overlap.as_ptr(), 2, &mut m) },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe { vio_mem_init_table(st.as_mut_ptr().cast(), n, null(), 2, &mut m) },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe { vio_mem_init_table(st.as_mut_ptr().cast(), n, regions.as_ptr(), 2, &mut m) },
        VIO_OK
    );
    assert_eq!(unsafe { vio_mem_deinit(m) }, VIO_OK);
    // Window edge cases.
    assert_eq!(
        unsafe {
            vio_mem_init_window(
                st.as_mut_ptr().cast(),
                n,
                0,
                a.as_mut_ptr().cast(),
                0,
                &mut m,
            )
        },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe {
            vio_mem_init_window(
                st.as_mut_ptr().cast(),
                n,
                u64::MAX,
                a.as_mut_ptr().cast(),
                16,
                &mut m,
            )
        },
        VIO_ERANGE
    );
    assert_eq!(
        unsafe {
            vio_mem_init_window(
                st.as_mut_ptr().cast(),
                n,
                1,
                a.as_mut_ptr().cast(),
                16,
                &mut m,
            )
        },
        VIO_EINVAL
    );
    assert_eq!(
        unsafe { vio_mem_init_window(st.as_mut_ptr().cast(), n, 0, null_mut(), 16, &mut m) },
        VIO_EINVAL
    );
    let mut v = 0;
    assert_eq!(unsafe { vio_version(&mut v) }, VIO_OK);
    assert_eq!(v, VIO_VERSION);
}

#[cfg(feature = "driver")]
mod shm {
    use super::*;

    extern "C" fn count_ring(ctx: *mut c_void) {
        unsafe { *ctx.cast::<u32>() += 1 };
    }

    extern "C" fn ring_device(ctx: *mut c_void) {
        let shm = unsafe { *ctx.cast::<*mut vio_shm>() };
        while unsafe { vio_shm_process(shm) } == VIO_WORK_LEFT {}
    }

    #[test]
    fn rng_and_block_over_shm() {
        // 4 slots of 64 bytes, 4 KiB data; the window is guest address 0.
        let g = guest_at(0, 8192);
        let mut disk = Box::new([0u8; 2048]);
        let rops = vio_rng_ops {
            fill: Some(fill_counting),
        };
        let bops = vio_block_ops {
            read: Some(blk_read),
            write: Some(blk_write),
            flush: None,
            discard: None,
        };
        let bcfg = vio_block_cfg {
            capacity: 4,
            flags: 0,
            id: [0; 20],
        };
        let (mut s1, mut s2) = (store(VIO_RNG_STORAGE_SIZE), store(VIO_BLOCK_STORAGE_SIZE));
        let (mut r, mut b) = (null_mut(), null_mut());
        assert_eq!(
            unsafe {
                vio_rng_init(
                    s1.as_mut_ptr().cast(),
                    VIO_RNG_STORAGE_SIZE,
                    &rops,
                    null_mut(),
                    &mut r,
                )
            },
            VIO_OK
        );
        assert_eq!(
            unsafe {
                vio_block_init(
                    s2.as_mut_ptr().cast(),
                    VIO_BLOCK_STORAGE_SIZE,
                    &bcfg,
                    &bops,
                    disk.as_mut_ptr().cast(),
                    &mut b,
                )
            },
            VIO_OK
        );
        let mut rings = 0u32;
        let mut ss = store(VIO_SHM_STORAGE_SIZE);
        let mut shm: *mut vio_shm = null_mut();
        let twice = [r, r];
        let n = VIO_SHM_STORAGE_SIZE;
        assert_eq!(
            unsafe {
                vio_shm_init(
                    ss.as_mut_ptr().cast(),
                    n,
                    g.mem,
                    4,
                    64,
                    4096,
                    VIO_SHM_CREATE,
                    twice.as_ptr(),
                    2,
                    None,
                    null_mut(),
                    &mut shm,
                )
            },
            VIO_EBUSY
        );
        let devs = [r, b];
        assert_eq!(
            unsafe {
                vio_shm_init(
                    ss.as_mut_ptr().cast(),
                    n,
                    g.mem,
                    3,
                    64,
                    4096,
                    VIO_SHM_CREATE,
                    devs.as_ptr(),
                    2,
                    None,
                    null_mut(),
                    &mut shm,
                )
            },
            VIO_EINVAL
        );
        assert_eq!(
            unsafe {
                vio_shm_init(
                    ss.as_mut_ptr().cast(),
                    n,
                    g.mem,
                    4,
                    64,
                    4096,
                    VIO_SHM_CREATE,
                    devs.as_ptr(),
                    0,
                    None,
                    null_mut(),
                    &mut shm,
                )
            },
            VIO_ERANGE
        );
        assert_eq!(
            unsafe {
                vio_shm_init(
                    ss.as_mut_ptr().cast(),
                    n,
                    g.mem,
                    4,
                    64,
                    1 << 20,
                    VIO_SHM_CREATE,
                    devs.as_ptr(),
                    2,
                    None,
                    null_mut(),
                    &mut shm,
                )
            },
            VIO_ENOSPC
        );
        assert_eq!(
            unsafe {
                vio_shm_init(
                    ss.as_mut_ptr().cast(),
                    n,
                    g.mem,
                    4,
                    64,
                    4096,
                    VIO_SHM_CREATE,
                    devs.as_ptr(),
                    2,
                    Some(count_ring),
                    (&raw mut rings).cast(),
                    &mut shm,
                )
            },
            VIO_OK
        );
        let mut ds = store(VIO_DRV_STORAGE_SIZE);
        let mut drv = null_mut();
        let ctx = (&raw mut shm).cast();
        assert_eq!(
            unsafe {
                vio_drv_init(
                    ds.as_mut_ptr().cast(),
                    VIO_DRV_STORAGE_SIZE,
                    g.mem,
                    4,
                    64,
                    4096,
                    Some(ring_device),
                    ctx,
                    &mut drv,
                )
            },
            VIO_OK
        );
        let mut buf = [0u8; 16];
        let mut got = 0;
        assert_eq!(
            unsafe { vio_drv_rng_read(drv, 0, buf.as_mut_ptr(), 16, &mut got) },
            VIO_OK
        );
        assert_eq!(got, 16);
        assert_eq!(buf[2], 2 ^ 0x5a);
        let mut sector = [0x33u8; 512];
        assert_eq!(
            unsafe { vio_drv_blk(drv, 1, 3, sector.as_mut_ptr(), 1) },
            VIO_OK
        );
        sector = [0; 512];
        assert_eq!(
            unsafe { vio_drv_blk(drv, 1, 3, sector.as_mut_ptr(), 0) },
            VIO_OK
        );
        assert!(sector.iter().all(|x| *x == 0x33));
        assert_eq!(
            unsafe { vio_drv_blk(drv, 1, 4, sector.as_mut_ptr(), 0) },
            VIO_EIO
        );
        let mut stats = vio_shm_stats::default();
        assert_eq!(unsafe { vio_shm_get_stats(shm, &mut stats) }, VIO_OK);
        assert_eq!(stats.discarded, 0);
        assert!(stats.received > 0);
        assert!(rings > 0, "the device end never rang the driver's doorbell");
        assert_eq!(unsafe { vio_drv_deinit(drv) }, VIO_OK);
        assert_eq!(unsafe { vio_shm_deinit(shm) }, VIO_OK);
        assert_eq!(unsafe { vio_dev_deinit(r) }, VIO_OK);
        assert_eq!(unsafe { vio_mem_deinit(g.mem) }, VIO_OK);
    }
}

/// A rising edge reported with `vio_gpio_irq` reaches the driver's event
/// buffer at the next poll.
#[test]
fn gpio_irq_report_reaches_the_eventq() {
    let g = guest(0x4000);
    let gops = vio_gpio_ops {
        get: Some(gpio_get),
        set: Some(gpio_set),
        direction: Some(gpio_dir),
    };
    let mut st = store(VIO_GPIO_STORAGE_SIZE);
    let mut p = null_mut();
    let flags = VIO_GPIO_PLATFORM_EVENTS;
    assert_eq!(
        unsafe {
            vio_gpio_init(
                st.as_mut_ptr().cast(),
                VIO_GPIO_STORAGE_SIZE,
                8,
                flags,
                &gops,
                null_mut(),
                &mut p,
            )
        },
        VIO_OK
    );
    let (_s, t) = mmio(p, &g, None);
    let mut d = MmioDrv::up_with(t, &g, 2, BASE, 1); // F_IRQ
    let (req, resp, ev, evst) = (BASE + 0x2000, BASE + 0x2100, BASE + 0x2200, BASE + 0x2300);
    // SET_DIRECTION line 3 = IN, then SET_IRQ_TYPE line 3 = EDGE_RISING.
    for (msg, value) in [(3u16, 2u32), (6, 1)] {
        let mut r = [0u8; 8];
        r[..2].copy_from_slice(&msg.to_le_bytes());
        r[2..4].copy_from_slice(&3u16.to_le_bytes());
        r[4..].copy_from_slice(&value.to_le_bytes());
        g.view.write(req, &r).unwrap();
        g.view.write(resp, &[0xff, 0xff]).unwrap();
        d.run(
            &g,
            0,
            &[Segment { addr: req, len: 8 }],
            &[Segment { addr: resp, len: 2 }],
        );
        let mut back = [0xffu8; 1];
        g.view.read(resp, &mut back).unwrap();
        assert_eq!(back, [0], "request {msg:#x} refused");
    }
    // Unmask: post the event buffer for line 3; it is held, not used.
    g.view.write(ev, &3u16.to_le_bytes()).unwrap();
    g.view.write(evst, &[0xff]).unwrap();
    let q = &mut d.q[1];
    q.add(
        &g.view,
        &[Segment { addr: ev, len: 2 }],
        &[Segment { addr: evst, len: 1 }],
    )
    .unwrap();
    q.publish_avail(&g.view).unwrap();
    assert_eq!(unsafe { vio_mmio_write(t, QUEUE_NOTIFY, 4, 1) }, VIO_OK);
    assert!(
        d.q[1].pop_used(&g.view).unwrap().is_none(),
        "event buffer returned early"
    );
    // The platform sees the edge; the next poll delivers it.
    assert_eq!(unsafe { vio_gpio_irq(p, 3, 1) }, VIO_OK);
    assert_eq!(unsafe { vio_mmio_poll(t) }, VIO_OK);
    let used = d.q[1].pop_used(&g.view).unwrap().expect("event delivered");
    assert_eq!(used.len, 1);
    let mut s = [0u8];
    g.view.read(evst, &mut s).unwrap();
    assert_eq!(s, [1], "IRQ_STATUS_VALID");
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
}

static mut CON_INPUT: &[u8] = b"";

extern "C" fn con_rx(_: *mut c_void, buf: *mut u8, len: usize) -> c_int {
    let input = unsafe { CON_INPUT };
    let n = input.len().min(len);
    unsafe { core::ptr::copy_nonoverlapping(input.as_ptr(), buf, n) };
    unsafe { CON_INPUT = &input[n..] };
    n as c_int
}

extern "C" fn con_ready(_: *mut c_void) -> c_int {
    c_int::from(!unsafe { CON_INPUT }.is_empty())
}

/// Records the message list of a transfer and fills reads with 0xa5.
extern "C" fn i2c_record(ctx: *mut c_void, addr: u16, msgs: *mut vio_i2c_msg, n: usize) -> c_int {
    let seen = unsafe { &mut *ctx.cast::<Vec<(u16, u32, u32, u8)>>() };
    for m in unsafe { core::slice::from_raw_parts(msgs, n) } {
        let first = if m.len > 0 { unsafe { *m.buf } } else { 0 };
        if m.flags & VIO_I2C_MSG_READ != 0 {
            unsafe { core::ptr::write_bytes(m.buf, 0xa5, m.len as usize) };
        }
        seen.push((addr, m.len, m.flags, first));
    }
    0
}

#[test]
fn console_input_and_i2c_message_list() {
    let g = guest(0x4000);
    // Console: a receive buffer is held until input arrives, then filled
    // at the next poll.
    let cops = vio_console_ops {
        tx: Some(con_tx),
        rx: Some(con_rx),
        rx_ready: Some(con_ready),
    };
    let mut s1 = store(VIO_CONSOLE_STORAGE_SIZE);
    let mut c = null_mut();
    assert_eq!(
        unsafe {
            vio_console_init(
                s1.as_mut_ptr().cast(),
                VIO_CONSOLE_STORAGE_SIZE,
                &cops,
                null_mut(),
                &mut c,
            )
        },
        VIO_OK
    );
    let (_s, t) = mmio(c, &g, None);
    let mut d = MmioDrv::up(t, &g, 2, BASE);
    let rx = BASE + 0x2000;
    d.q[0]
        .add(&g.view, &[], &[Segment { addr: rx, len: 16 }])
        .unwrap();
    d.q[0].publish_avail(&g.view).unwrap();
    assert_eq!(unsafe { vio_mmio_write(t, QUEUE_NOTIFY, 4, 0) }, VIO_OK);
    assert!(d.q[0].pop_used(&g.view).unwrap().is_none(), "no input yet");
    unsafe { CON_INPUT = b"typed" };
    assert_eq!(unsafe { vio_mmio_poll(t) }, VIO_OK);
    let used = d.q[0].pop_used(&g.view).unwrap().expect("input delivered");
    assert_eq!(used.len, 5);
    let mut got = [0u8; 5];
    g.view.read(rx, &mut got).unwrap();
    assert_eq!(&got, b"typed");
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);

    // I2C: a write of the word address then a read, one transaction.
    let mut seen: Vec<(u16, u32, u32, u8)> = Vec::new();
    let iops = vio_i2c_ops {
        transfer: Some(i2c_record),
    };
    let mut s2 = store(VIO_I2C_STORAGE_SIZE);
    let mut i = null_mut();
    assert_eq!(
        unsafe {
            vio_i2c_init(
                s2.as_mut_ptr().cast(),
                VIO_I2C_STORAGE_SIZE,
                &iops,
                (&raw mut seen).cast(),
                &mut i,
            )
        },
        VIO_OK
    );
    let (_s, t) = mmio(i, &g, None);
    let mut d = MmioDrv::up_with(t, &g, 1, BASE, 1);
    let (h1, h2, wb, rb, st) = (
        BASE + 0x2000,
        BASE + 0x2010,
        BASE + 0x2100,
        BASE + 0x2200,
        BASE + 0x2300,
    );
    // addr 0x50 << 1, flags: FAIL_NEXT (bit 0) on the first, M_RD (bit 1) on the second.
    g.view.write(h1, &[0xa0, 0, 0, 0, 1, 0, 0, 0]).unwrap();
    g.view.write(h2, &[0xa0, 0, 0, 0, 2, 0, 0, 0]).unwrap();
    g.view.write(wb, &[0x0c]).unwrap();
    g.view.write(st, &[0xff, 0xff]).unwrap();
    let q = &mut d.q[0];
    q.add(
        &g.view,
        &[Segment { addr: h1, len: 8 }, Segment { addr: wb, len: 1 }],
        &[Segment { addr: st, len: 1 }],
    )
    .unwrap();
    q.add(
        &g.view,
        &[Segment { addr: h2, len: 8 }],
        &[
            Segment { addr: rb, len: 4 },
            Segment {
                addr: st + 1,
                len: 1,
            },
        ],
    )
    .unwrap();
    q.publish_avail(&g.view).unwrap();
    assert_eq!(unsafe { vio_mmio_write(t, QUEUE_NOTIFY, 4, 0) }, VIO_OK);
    assert_eq!(seen, [(0x50, 1, 0, 0x0c), (0x50, 4, VIO_I2C_MSG_READ, 0)]);
    let mut back = [0u8; 4];
    g.view.read(rb, &mut back).unwrap();
    assert_eq!(back, [0xa5; 4]);
    let mut s = [0xffu8; 2];
    g.view.read(st, &mut s).unwrap();
    assert_eq!(s, [0, 0], "both answered VIRTIO_I2C_MSG_OK");
    assert_eq!(unsafe { vio_mmio_deinit(t) }, VIO_OK);
}
