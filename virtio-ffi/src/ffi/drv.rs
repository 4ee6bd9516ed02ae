//! `vio_drv` (feature `driver`): the Rust driver end of the shared-memory
//! transport with two request helpers (entropy, block), so a C test image
//! can serve devices to a driver in the same image. Not a general driver
//! API.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32};

use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::BlkReqHeader;
use virtio_transport_shm::layout::Bump;
use virtio_transport_shm::{DataArea, DriverEnd, Spin};
use zerocopy::IntoBytes;

use super::memory::{MemObj, mem_obj, vio_mem};
use super::shm::{CDoorbell, attach_error, layout};
use super::{Tagged, handle, lock, put, rc, report, storage};
use crate::mem::FfiMem;
use crate::{VIO_EINVAL, VIO_EIO, VIO_ENOSPC, VIO_ERANGE, VIO_OK, VIO_SHM_MAX_DEVICES};

const DEVS: usize = VIO_SHM_MAX_DEVICES as usize;
/// Queue size the helpers use.
const QSIZE: u16 = 8;
/// Bytes of the helpers' request buffer (one sector).
const BUF: u64 = 512;

/// The driver end of a window (opaque).
#[allow(non_camel_case_types)]
pub struct vio_drv {
    _opaque: [u8; 0],
}

struct Dev {
    q: SplitDriver,
    buf: u64,
    hdr: u64,
    status: u64,
}

struct Inner {
    end: DriverEnd<'static, FfiMem, CDoorbell, Spin, DEVS>,
    alloc: Bump,
    devs: [Option<Dev>; DEVS],
}

#[repr(C)]
pub(crate) struct DrvObj {
    magic: AtomicU32,
    busy: AtomicBool,
    mem: NonNull<MemObj>,
    inner: UnsafeCell<Inner>,
}

impl Tagged for DrvObj {
    const MAGIC: u32 = 0x5652_4456; // "VDRV"
}

/// Storage for a `vio_drv`: size and alignment into the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_drv_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DrvObj>(size, align) }
}

/// Attaches the driver end to `window`, which the device end created with
/// the same layout. `doorbell` signals the device end (e.g. pends the
/// interrupt whose handler calls `vio_shm_process`); the driver end spins
/// while it waits.
///
/// Returns 0; `VIO_EINVAL`, `VIO_EFAULT`, `VIO_ENOSPC`, `VIO_EBADF`,
/// `VIO_EPROTO` as for `vio_shm_init`.
///
/// # Safety
/// As for `vio_shm_init`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn vio_drv_init(
    storage_ptr: *mut c_void,
    storage_len: usize,
    window: *mut vio_mem,
    slots: u16,
    slot_size: u16,
    data_len: u32,
    doorbell: Option<extern "C" fn(ctx: *mut c_void)>,
    ctx: *mut c_void,
    out: *mut *mut vio_drv,
) -> c_int {
    let r = (|| {
        if out.is_null() || !out.is_aligned() {
            return Err(VIO_EINVAL);
        }
        let p = storage::<DrvObj>(storage_ptr, storage_len)?;
        let lay = layout(slots, slot_size, data_len)?;
        // SAFETY: the caller's contract.
        let m = unsafe { mem_obj(window) }?;
        // SAFETY: live, and kept so by `acquire` below.
        let win: &'static FfiMem = unsafe { &*core::ptr::addr_of!(m.mem) };
        let end = DriverEnd::attach(win, lay, CDoorbell { cb: doorbell, ctx }, Spin)
            .map_err(attach_error)?
            .with_max_waits(1_000_000);
        m.acquire();
        let obj = DrvObj {
            magic: AtomicU32::new(DrvObj::MAGIC),
            busy: AtomicBool::new(false),
            mem: NonNull::from(m),
            inner: UnsafeCell::new(Inner {
                end,
                alloc: Bump::new(&lay),
                devs: [None, None, None, None],
            }),
        };
        // SAFETY: `storage` checked pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: non-null, aligned, writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_drv>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Runs `f` with the lock held.
///
/// # Safety
/// `d` is null or points to at least 4 readable bytes.
unsafe fn with<R>(
    d: *mut vio_drv,
    f: impl FnOnce(&mut Inner) -> Result<R, c_int>,
) -> Result<R, c_int> {
    // SAFETY: the caller's contract.
    let obj = unsafe { handle::<DrvObj>(d.cast()) }?;
    let _guard = lock(&obj.busy)?;
    // SAFETY: the lock is ours.
    f(unsafe { &mut *obj.inner.get() })
}

impl Inner {
    /// Brings device `dev` up with one queue the first time.
    fn dev(&mut self, dev: u16) -> Result<&mut Dev, c_int> {
        let i = usize::from(dev);
        if i >= DEVS {
            return Err(VIO_ERANGE);
        }
        let mem: DataArea<'static, FfiMem> = self.end.data();
        if self.devs.get(i).is_some_and(Option::is_none) {
            let base = self
                .alloc
                .alloc(SplitDriver::layout_len(QSIZE), 16)
                .ok_or(VIO_ENOSPC)?;
            let (Some(buf), Some(hdr), Some(status)) = (
                self.alloc.alloc(BUF, 16),
                self.alloc.alloc(16, 16),
                self.alloc.alloc(1, 1),
            ) else {
                return Err(VIO_ENOSPC);
            };
            let cfg = SplitDriver::layout(base, QSIZE);
            let q = SplitDriver::new(&mem, cfg, Features::VERSION_1).map_err(|_| VIO_EIO)?;
            self.end
                .bring_up(dev, Features::empty(), &[cfg])
                .map_err(|_| VIO_EIO)?;
            if let Some(slot) = self.devs.get_mut(i) {
                *slot = Some(Dev {
                    q,
                    buf,
                    hdr,
                    status,
                });
            }
        }
        self.devs.get_mut(i).and_then(Option::as_mut).ok_or(VIO_EIO)
    }

    /// One request on device `dev`'s queue; returns the used length.
    fn request(
        &mut self,
        dev: u16,
        readable: &[Segment],
        writable: &[Segment],
    ) -> Result<u32, c_int> {
        let mem = self.end.data();
        let d = self.dev(dev)?;
        d.q.add(&mem, readable, writable).map_err(|_| VIO_EIO)?;
        let notify = d.q.publish_avail(&mem).map_err(|_| VIO_EIO)?;
        if notify {
            self.end.notify(dev, 0, 0).map_err(|_| VIO_EIO)?;
        }
        loop {
            let d = self.dev(dev)?;
            if let Some(used) = d.q.pop_used(&mem).map_err(|_| VIO_EIO)? {
                return Ok(used.len);
            }
            self.end.wait_used(dev, 0).map_err(|_| VIO_EIO)?;
        }
    }
}

/// Reads `len` (1 ..= 512) bytes of entropy from device `dev` (an entropy
/// device) into `buf`; the count the device wrote goes to `*got`.
///
/// Returns 0; `VIO_EINVAL` (NULL), `VIO_ERANGE` (`len`, or `dev` ≥
/// `VIO_SHM_MAX_DEVICES`), `VIO_EBADF`, `VIO_EBUSY`, `VIO_EIO` (the
/// device or the bus failed), `VIO_ENOSPC` (data area full).
///
/// # Safety
/// `d` null or a handle; `buf` null or `len` writable bytes; `got` null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_drv_rng_read(
    d: *mut vio_drv,
    dev: u16,
    buf: *mut u8,
    len: usize,
    got: *mut u32,
) -> c_int {
    let r = (|| {
        if buf.is_null() || got.is_null() {
            return Err(VIO_EINVAL);
        }
        let n = u32::try_from(len)
            .ok()
            .filter(|n| (1..=BUF as u32).contains(n))
            .ok_or(VIO_ERANGE)?;
        // SAFETY: the caller's contract.
        let used = unsafe {
            with(d, |inner| {
                let b = inner.dev(dev)?.buf;
                let used = inner.request(dev, &[], &[Segment { addr: b, len: n }])?;
                let mut tmp = [0u8; BUF as usize];
                let part = tmp.get_mut(..len).ok_or(VIO_ERANGE)?;
                inner.end.data().read(b, part).map_err(|_| VIO_EIO)?;
                // SAFETY: `buf` is `len` writable bytes by contract.
                let dst = core::slice::from_raw_parts_mut(buf, len);
                dst.copy_from_slice(part);
                Ok(used)
            })
        }?;
        // SAFETY: non-null, writable by contract.
        unsafe { put(got, used) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Reads (`write` 0) or writes (`write` non-zero) the 512-byte sector
/// `sector` of block device `dev` from/to `buf`.
///
/// Returns 0; `VIO_EIO` also when the device answered a status other than
/// `VIRTIO_BLK_S_OK`; otherwise as `vio_drv_rng_read`.
///
/// # Safety
/// `d` null or a handle; `buf` null or 512 bytes, writable for a read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_drv_blk(
    d: *mut vio_drv,
    dev: u16,
    sector: u64,
    buf: *mut u8,
    write: c_int,
) -> c_int {
    let r = (|| {
        if buf.is_null() {
            return Err(VIO_EINVAL);
        }
        // SAFETY: the caller's contract.
        unsafe {
            with(d, |inner| {
                let mem = inner.end.data();
                let (b, h, s) = {
                    let dv = inner.dev(dev)?;
                    (dv.buf, dv.hdr, dv.status)
                };
                let header = BlkReqHeader {
                    type_: u32::from(write != 0).into(),
                    reserved: 0.into(),
                    sector: sector.into(),
                };
                mem.write(h, header.as_bytes()).map_err(|_| VIO_EIO)?;
                mem.write(s, &[0xff]).map_err(|_| VIO_EIO)?;
                // SAFETY: `buf` is 512 bytes by contract (writable for a read).
                let data = core::slice::from_raw_parts_mut(buf, BUF as usize);
                let hs = Segment { addr: h, len: 16 };
                let ds = Segment {
                    addr: b,
                    len: BUF as u32,
                };
                let ss = Segment { addr: s, len: 1 };
                if write != 0 {
                    mem.write(b, data).map_err(|_| VIO_EIO)?;
                    inner.request(dev, &[hs, ds], &[ss])?;
                } else {
                    inner.request(dev, &[hs], &[ds, ss])?;
                }
                let mut st = [0xffu8];
                mem.read(s, &mut st).map_err(|_| VIO_EIO)?;
                if st != [0] {
                    return Err(VIO_EIO);
                }
                if write == 0 {
                    mem.read(b, data).map_err(|_| VIO_EIO)?;
                }
                Ok(VIO_OK)
            })
        }
    })();
    rc(r)
}

/// Ends the driver end (the window may then be de-initialised). Returns 0,
/// `VIO_EINVAL`, `VIO_EBADF`, `VIO_EBUSY`.
///
/// # Safety
/// `d` is null or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_drv_deinit(d: *mut vio_drv) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let obj = unsafe { handle::<DrvObj>(d.cast()) }?;
        let guard = lock(&obj.busy)?;
        obj.magic
            .compare_exchange(
                DrvObj::MAGIC,
                0,
                core::sync::atomic::Ordering::AcqRel,
                core::sync::atomic::Ordering::Acquire,
            )
            .map_err(|_| crate::VIO_EBADF)?;
        // SAFETY: the memory is live: our `acquire` kept it so.
        unsafe { obj.mem.as_ref() }.release();
        drop(guard);
        Ok(VIO_OK)
    })();
    rc(r)
}
