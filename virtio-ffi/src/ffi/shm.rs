//! `vio_shm`: the device end of a shared-memory (virtio-msg) window.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_core::device::Service;
use virtio_transport_shm::device::{Event, Refusal};
use virtio_transport_shm::msg::{Builder, Request};
use virtio_transport_shm::{
    AttachError, BusDevice, DataArea, DeviceEnd, DeviceSet, Doorbell, Layout, ShmDevice,
};

use super::dev::{AnyDev, claim, vio_dev};
use super::memory::{MemObj, mem_obj, vio_mem};
use super::{Tagged, handle, lock, put, rc, report, storage};
use crate::mem::FfiMem;
use crate::{
    VIO_EINVAL, VIO_ENOSPC, VIO_EPROTO, VIO_ERANGE, VIO_MAX_QUEUE_SIZE, VIO_MAX_QUEUES, VIO_OK,
    VIO_SHM_CREATE, VIO_SHM_MAX_DEVICES, VIO_WORK_LEFT,
};

const Q: usize = VIO_MAX_QUEUES as usize;
const S: usize = VIO_MAX_QUEUE_SIZE as usize;
const DEVS: usize = VIO_SHM_MAX_DEVICES as usize;

/// The device end of a shared-memory window (opaque).
#[allow(non_camel_case_types)]
pub struct vio_shm {
    _opaque: [u8; 0],
}

/// A doorbell that calls C.
#[derive(Debug)]
pub(crate) struct CDoorbell {
    pub(crate) cb: Option<extern "C" fn(ctx: *mut c_void)>,
    pub(crate) ctx: *mut c_void,
}

impl Doorbell for CDoorbell {
    fn ring(&mut self) {
        if let Some(cb) = self.cb {
            cb(self.ctx);
        }
    }
}

type BusDev = ShmDevice<AnyDev, DataArea<'static, FfiMem>, Q, S>;

/// The devices of one bus, numbered in the order given.
pub(crate) struct Bus {
    devs: [Option<BusDev>; DEVS],
    count: u16,
}

impl Bus {
    fn get(&mut self, dev: u16) -> Option<&mut BusDev> {
        self.devs.get_mut(usize::from(dev)).and_then(Option::as_mut)
    }
}

impl DeviceSet for Bus {
    fn count(&self) -> u16 {
        self.count
    }

    fn handle(
        &mut self,
        dev: u16,
        request: &Request<'_>,
        out: &mut Builder,
        max_msg: usize,
    ) -> Option<Result<bool, Refusal>> {
        self.get(dev).map(|d| d.handle(request, out, max_msg))
    }

    fn poll(&mut self) {
        self.devs.iter_mut().flatten().for_each(BusDevice::poll);
    }

    fn work_left(&self) -> bool {
        self.devs.iter().flatten().any(BusDevice::work_left)
    }

    fn next_event(&mut self, dev: u16) -> Option<Event> {
        self.get(dev).and_then(BusDevice::next_event)
    }
}

type End = DeviceEnd<'static, FfiMem, Bus, CDoorbell>;

#[repr(C)]
pub(crate) struct ShmObj {
    magic: AtomicU32,
    busy: AtomicBool,
    mem: NonNull<MemObj>,
    end: UnsafeCell<End>,
}

impl Tagged for ShmObj {
    const MAGIC: u32 = 0x4d48_5356; // "VSHM"
}

/// Storage for a `vio_shm`: size and alignment into the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_shm_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<ShmObj>(size, align) }
}

/// The window layout from C's numbers.
pub(crate) fn layout(slots: u16, slot_size: u16, data_len: u32) -> Result<Layout, c_int> {
    Layout::new(slots, slot_size, data_len).map_err(|_| VIO_EINVAL)
}

pub(crate) fn attach_error(e: AttachError) -> c_int {
    match e {
        AttachError::WindowTooSmall { .. } => VIO_ENOSPC,
        _ => VIO_EPROTO,
    }
}

/// The device end of the window `window` (a `vio_mem`, guest address 0 =
/// the window's first byte) with `count` devices (1 ..=
/// `VIO_SHM_MAX_DEVICES`), device numbers 0, 1, … in the order of `devs`.
/// The layout (`slots` per ring, a power of two; `slot_size` bytes per
/// message, 48 ..= 280 and a multiple of 8; `data_len` bytes of data area)
/// must be the one the driver end uses. With `VIO_SHM_CREATE` in `flags`
/// this end zeroes the window and writes its header; without, it checks
/// the header the driver end wrote. `doorbell` (may be NULL for a polled
/// driver) is called to signal the driver. The devices are claimed until
/// `vio_shm_deinit`.
///
/// Returns 0 and the handle in `*out`; `VIO_EINVAL` (NULL, unknown flags,
/// a layout the transport refuses), `VIO_EFAULT`, `VIO_ENOSPC` (storage,
/// or a window smaller than the layout), `VIO_ERANGE` (device count),
/// `VIO_EBADF` (a handle that is not live), `VIO_EBUSY` (a device already
/// claimed, or listed twice), `VIO_EPROTO` (the window does not hold the
/// layout).
///
/// # Safety
/// `storage` is null or `storage_len` writable bytes that stay put until
/// `vio_shm_deinit`; `window` null or a handle; `devs` null or `count`
/// readable handles; `out` null or writable; `doorbell` sound to call
/// with `ctx` (from the context `vio_shm_process` runs in).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn vio_shm_init(
    storage_ptr: *mut c_void,
    storage_len: usize,
    window: *mut vio_mem,
    slots: u16,
    slot_size: u16,
    data_len: u32,
    flags: u32,
    devs: *const *mut vio_dev,
    count: usize,
    doorbell: Option<extern "C" fn(ctx: *mut c_void)>,
    ctx: *mut c_void,
    out: *mut *mut vio_shm,
) -> c_int {
    let r = (|| {
        if out.is_null() || !out.is_aligned() || devs.is_null() {
            return Err(VIO_EINVAL);
        }
        if flags & !VIO_SHM_CREATE != 0 {
            return Err(VIO_EINVAL);
        }
        if count == 0 || count > DEVS {
            return Err(VIO_ERANGE);
        }
        if !devs.is_aligned() {
            return Err(crate::VIO_EFAULT);
        }
        let p = storage::<ShmObj>(storage_ptr, storage_len)?;
        let lay = layout(slots, slot_size, data_len)?;
        // SAFETY: the caller's contract.
        let m = unsafe { mem_obj(window) }?;
        // SAFETY: `m` is live and stays so while we hold it (`acquire`).
        let win: &'static FfiMem = unsafe { &*core::ptr::addr_of!(m.mem) };
        // SAFETY: non-null, aligned, `count` (≤ DEVS) readable by contract.
        let handles = unsafe { core::slice::from_raw_parts(devs, count) };
        let data = DataArea::new(win, &lay);
        let mut claimed: [Option<AnyDev>; DEVS] = [None, None, None, None];
        let mut failed = None;
        for (h, slot) in handles.iter().zip(claimed.iter_mut()) {
            // SAFETY: the caller's contract.
            match unsafe { claim(*h) } {
                Ok(d) => *slot = Some(d),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let undo = |claimed: &[Option<AnyDev>; DEVS]| {
            claimed.iter().flatten().for_each(AnyDev::release);
        };
        if let Some(e) = failed {
            undo(&claimed);
            return Err(e);
        }
        let bus = Bus {
            devs: claimed.map(|d| d.map(|d| ShmDevice::new(d, data))),
            count: u16::try_from(count).unwrap_or(0),
        };
        let bell = CDoorbell { cb: doorbell, ctx };
        let made = if flags & VIO_SHM_CREATE != 0 {
            DeviceEnd::create(win, lay, bus, bell)
        } else {
            DeviceEnd::attach(win, lay, bus, bell)
        };
        // On failure the bus was consumed: release through the handles.
        let end = match made {
            Ok(end) => end,
            Err(e) => {
                for h in handles {
                    // SAFETY: these were claimed above and are live.
                    if let Ok(hdr) = unsafe { handle::<super::dev::DevHeader>((*h).cast()) } {
                        hdr.unclaim();
                    }
                }
                return Err(attach_error(e));
            }
        };
        m.acquire();
        let obj = ShmObj {
            magic: AtomicU32::new(ShmObj::MAGIC),
            busy: AtomicBool::new(false),
            mem: NonNull::from(m),
            end: UnsafeCell::new(end),
        };
        // SAFETY: `storage` checked pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: `out` is non-null, aligned and writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_shm>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Runs `f` on the device end with its lock held.
///
/// # Safety
/// `t` is null or points to at least 4 readable bytes.
unsafe fn with<R>(t: *mut vio_shm, f: impl FnOnce(&mut End) -> R) -> Result<R, c_int> {
    // SAFETY: the caller's contract.
    let obj = unsafe { handle::<ShmObj>(t.cast()) }?;
    let _guard = lock(&obj.busy)?;
    // SAFETY: the lock is ours: no other reference exists until it drops.
    Ok(f(unsafe { &mut *obj.end.get() }))
}

fn service(s: Service) -> c_int {
    if s.work_left() { VIO_WORK_LEFT } else { VIO_OK }
}

/// Serves what the driver sent (call it when the device's doorbell
/// rings): messages, queue work within each device's budget, events.
///
/// Returns 0, `VIO_WORK_LEFT` (budget spent with work left: call again,
/// e.g. re-pend the doorbell interrupt), `VIO_EINVAL`, `VIO_EBADF`,
/// `VIO_EBUSY` (already inside a call).
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_shm_process(t: *mut vio_shm) -> c_int {
    // SAFETY: the caller's contract.
    rc(unsafe { with(t, |e| service(e.process())) })
}

/// Gives every device a turn outside a driver message (console input, a
/// GPIO edge) and sends the events that produced.
///
/// Returns as `vio_shm_process`.
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_shm_poll(t: *mut vio_shm) -> c_int {
    // SAFETY: the caller's contract.
    rc(unsafe { with(t, |e| service(e.poll())) })
}

/// What the device end did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(non_camel_case_types)]
pub struct vio_shm_stats {
    /// Messages taken from the driver.
    pub received: u32,
    /// Answers sent.
    pub responses: u32,
    /// `EVENT_USED` messages sent.
    pub events_used: u32,
    /// Messages discarded (malformed, for absent devices, refused).
    pub discarded: u32,
    /// Impossible ring indices seen.
    pub ring_errors: u32,
}

/// Copies the counters into `*stats`.
///
/// Returns 0, `VIO_EINVAL`, `VIO_EBADF`, `VIO_EBUSY`.
///
/// # Safety
/// `t` is null or a handle; `stats` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_shm_get_stats(t: *mut vio_shm, stats: *mut vio_shm_stats) -> c_int {
    let r = (|| {
        if stats.is_null() {
            return Err(VIO_EINVAL);
        }
        // SAFETY: the caller's contract.
        let s = unsafe { with(t, |e| e.stats()) }?;
        let v = vio_shm_stats {
            received: s.received,
            responses: s.responses,
            events_used: s.events_used,
            discarded: s.discarded(),
            ring_errors: s.ring_errors,
        };
        // SAFETY: non-null and writable by contract.
        unsafe { put(stats, v) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Ends the device end: the devices are released, the window may be
/// de-initialised. Returns 0, `VIO_EINVAL`, `VIO_EBADF`, `VIO_EBUSY`.
///
/// # Safety
/// `t` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_shm_deinit(t: *mut vio_shm) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let obj = unsafe { handle::<ShmObj>(t.cast()) }?;
        let guard = lock(&obj.busy)?;
        obj.magic
            .compare_exchange(ShmObj::MAGIC, 0, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| crate::VIO_EBADF)?;
        // SAFETY: the lock is ours and the tag is gone.
        let end = unsafe { &mut *obj.end.get() };
        for d in end.devices().devs.iter().flatten() {
            d.device().release();
        }
        // SAFETY: the memory is live: our `acquire` kept it so.
        unsafe { obj.mem.as_ref() }.release();
        drop(guard);
        Ok(VIO_OK)
    })();
    rc(r)
}

#[allow(dead_code)]
const _: c_int = VIO_ERANGE;
