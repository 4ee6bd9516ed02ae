//! `vio_mmio`: the virtio-mmio register block as a trap entry.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_core::device::{DeviceCore, Service};
use virtio_transport_mmio::{InterruptLine, MmioTransport, Width};

use super::dev::{AnyDev, claim, vio_dev};
use super::memory::{MemObj, mem_obj, vio_mem};
use super::{Tagged, handle, lock, put, rc, report, storage};
use crate::mem::FfiMem;
use crate::{
    VIO_EBADF, VIO_EINVAL, VIO_EIO, VIO_MAX_QUEUE_SIZE, VIO_MAX_QUEUES, VIO_OK, VIO_WORK_LEFT,
};

const Q: usize = VIO_MAX_QUEUES as usize;
const S: usize = VIO_MAX_QUEUE_SIZE as usize;

/// A virtio-mmio device (opaque).
#[allow(non_camel_case_types)]
pub struct vio_mmio {
    _opaque: [u8; 0],
}

/// The interrupt line, to C.
#[derive(Debug)]
pub(crate) struct CIrq {
    cb: Option<extern "C" fn(ctx: *mut c_void, level: u8)>,
    ctx: *mut c_void,
}

impl InterruptLine for CIrq {
    fn set_level(&mut self, asserted: bool) {
        if let Some(cb) = self.cb {
            cb(self.ctx, u8::from(asserted));
        }
    }
}

type Transport = MmioTransport<AnyDev, &'static FfiMem, CIrq, Q, S>;

#[repr(C)]
pub(crate) struct MmioObj {
    magic: AtomicU32,
    busy: AtomicBool,
    mem: NonNull<MemObj>,
    t: UnsafeCell<Transport>,
}

impl Tagged for MmioObj {
    const MAGIC: u32 = 0x4f49_4d56; // "VMIO"
}

/// Storage for a `vio_mmio`: size and alignment into the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<MmioObj>(size, align) }
}

/// A virtio-mmio (version 2) register block over `dev`, whose queues live
/// in `mem`. `irq` (may be NULL) is called with 1 when the interrupt line
/// rises and 0 when it falls. The device is claimed until
/// `vio_mmio_deinit`; the memory cannot be de-initialised before.
///
/// Returns 0 and the handle in `*out`; `VIO_EINVAL` (NULL storage, `out`,
/// `dev` or `mem`), `VIO_EFAULT`, `VIO_ENOSPC` (storage), `VIO_EBADF`
/// (`dev` or `mem` not live objects of their kind), `VIO_EBUSY` (`dev`
/// already claimed).
///
/// # Safety
/// `storage` is null or `storage_len` writable bytes that stay put until
/// `vio_mmio_deinit`; `dev`, `mem` null or handles; `out` null or
/// writable; `irq` sound to call with `ctx` for the object's life.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_init(
    storage_ptr: *mut c_void,
    storage_len: usize,
    dev: *mut vio_dev,
    mem: *mut vio_mem,
    irq: Option<extern "C" fn(ctx: *mut c_void, level: u8)>,
    ctx: *mut c_void,
    out: *mut *mut vio_mmio,
) -> c_int {
    let r = (|| {
        if out.is_null() || !out.is_aligned() {
            return Err(VIO_EINVAL);
        }
        let p = storage::<MmioObj>(storage_ptr, storage_len)?;
        // SAFETY: the caller's contract.
        let m = unsafe { mem_obj(mem) }?;
        // SAFETY: the caller's contract.
        let d = unsafe { claim(dev) }?;
        m.acquire();
        // SAFETY: `m` is a live memory object whose storage stays put until
        // its deinit, which `acquire` holds off until ours.
        let mem_ref: &'static FfiMem = unsafe { &*core::ptr::addr_of!(m.mem) };
        let core = DeviceCore::new(d, mem_ref);
        let obj = MmioObj {
            magic: AtomicU32::new(MmioObj::MAGIC),
            busy: AtomicBool::new(false),
            mem: NonNull::from(m),
            t: UnsafeCell::new(MmioTransport::new(core, CIrq { cb: irq, ctx })),
        };
        // SAFETY: `storage` checked pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: `out` is non-null and writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_mmio>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Runs `f` on the transport with its lock held.
///
/// # Safety
/// `t` is null or points to at least 4 readable bytes.
unsafe fn with<R>(t: *mut vio_mmio, f: impl FnOnce(&mut Transport) -> R) -> Result<R, c_int> {
    // SAFETY: the caller's contract.
    let obj = unsafe { handle::<MmioObj>(t.cast()) }?;
    let _guard = lock(&obj.busy)?;
    // SAFETY: the lock is ours: no other reference to the transport exists
    // until the guard drops.
    let t = unsafe { &mut *obj.t.get() };
    Ok(f(t))
}

fn width(w: u32) -> Result<Width, c_int> {
    match w {
        1 => Ok(Width::Byte),
        2 => Ok(Width::HalfWord),
        4 => Ok(Width::Word),
        _ => Err(VIO_EINVAL),
    }
}

fn service(s: Service) -> c_int {
    if s.work_left() { VIO_WORK_LEFT } else { VIO_OK }
}

/// A driver read of `width` bytes (1, 2 or 4) at register `offset`. The
/// value goes to `*value` (0 for an invalid access).
///
/// Returns 0; `VIO_EINVAL` (NULL, or width not 1/2/4), `VIO_EBADF`,
/// `VIO_EBUSY` (the transport is inside another call), `VIO_EIO` (an
/// invalid access: see the virtio-mmio transport's table; it is counted).
///
/// # Safety
/// `t` is null or a handle; `value` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_read(
    t: *mut vio_mmio,
    offset: u32,
    width_bytes: u32,
    value: *mut u32,
) -> c_int {
    let r = (|| {
        if value.is_null() {
            return Err(VIO_EINVAL);
        }
        let w = width(width_bytes)?;
        // SAFETY: the caller's contract.
        let v = unsafe {
            with(t, |t| {
                let before = t.error_count();
                let v = t.read(offset, w);
                (v, t.error_count() != before)
            })
        }?;
        // SAFETY: `value` is non-null and writable by contract.
        unsafe { put(value, v.0) }?;
        Ok(if v.1 { VIO_EIO } else { VIO_OK })
    })();
    rc(r)
}

/// A driver write of `value` (`width` 1, 2 or 4 bytes) at register
/// `offset`. A `QueueNotify` write serves the queue before returning.
///
/// Returns 0, `VIO_WORK_LEFT` (the queue budget ran out: call
/// `vio_mmio_poll` until it returns 0), or `VIO_EINVAL`, `VIO_EBADF`,
/// `VIO_EBUSY`, `VIO_EIO` as for `vio_mmio_read`.
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_write(
    t: *mut vio_mmio,
    offset: u32,
    width_bytes: u32,
    value: u32,
) -> c_int {
    let r = (|| {
        let w = width(width_bytes)?;
        // SAFETY: the caller's contract.
        unsafe {
            with(t, |t| {
                let before = t.error_count();
                let s = t.write(offset, w, value);
                if t.error_count() != before {
                    VIO_EIO
                } else {
                    service(s)
                }
            })
        }
    })();
    rc(r)
}

/// Gives the device a turn outside a driver access (console input, a GPIO
/// edge from `vio_gpio_irq`) and continues queue work left by an earlier
/// call; updates the interrupt line.
///
/// Returns 0, `VIO_WORK_LEFT` (call again), `VIO_EINVAL`, `VIO_EBADF`,
/// `VIO_EBUSY`.
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_poll(t: *mut vio_mmio) -> c_int {
    // SAFETY: the caller's contract.
    rc(unsafe { with(t, |t| service(t.poll())) })
}

/// Invalid register accesses so far, into `*count`.
///
/// Returns 0, `VIO_EINVAL`, `VIO_EBADF`, `VIO_EBUSY`.
///
/// # Safety
/// `t` is null or a handle; `count` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_errors(t: *mut vio_mmio, count: *mut u32) -> c_int {
    let r = (|| {
        if count.is_null() {
            return Err(VIO_EINVAL);
        }
        // SAFETY: the caller's contract.
        let n = unsafe { with(t, |t| t.error_count()) }?;
        // SAFETY: non-null and writable by contract.
        unsafe { put(count, n) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Ends the transport: the device is released (it keeps its state; give
/// it to a new transport or `vio_dev_deinit` it) and the memory may be
/// de-initialised. Returns 0, `VIO_EINVAL`, `VIO_EBADF`, `VIO_EBUSY`.
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mmio_deinit(t: *mut vio_mmio) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let obj = unsafe { handle::<MmioObj>(t.cast()) }?;
        let guard = lock(&obj.busy)?;
        obj.magic
            .compare_exchange(MmioObj::MAGIC, 0, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| VIO_EBADF)?;
        // SAFETY: the lock is ours (and the tag is gone: no later call
        // gets in).
        let tr = unsafe { &mut *obj.t.get() };
        tr.core().device().release();
        // SAFETY: the memory object is live: our `acquire` kept it so.
        unsafe { obj.mem.as_ref() }.release();
        drop(guard);
        Ok(VIO_OK)
    })();
    rc(r)
}

#[allow(dead_code)]
const _: c_int = VIO_EIO;
