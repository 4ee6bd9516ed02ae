//! The generic device: a device type the project does not ship, written in
//! C against validated requests (`vio_req`).

use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Reader, Writer};
use virtio_core::spec::{DeviceId, Features};

use super::{Tagged, handle, put, rc};
use crate::backend::{Ctx, vio_generic_ops};
use crate::{
    VIO_EBADF, VIO_EINVAL, VIO_EIO, VIO_ERANGE, VIO_GENERIC_MAX_CONFIG, VIO_MALFORMED_NEEDS_RESET,
    VIO_MALFORMED_RETURN_EMPTY, VIO_MAX_QUEUE_SIZE, VIO_MAX_QUEUES, VIO_OK,
};

/// Most segments of one generic request.
const SEGMENTS: usize = 16;

/// What a generic device is.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_generic_cfg {
    /// The virtio device ID (1 ..= 0xffff, not a transport-reserved 0).
    pub device_id: u32,
    /// Number of virtqueues (1 ..= `VIO_MAX_QUEUES`).
    pub num_queues: u16,
    /// Largest queue size the driver may choose (1 ..= `VIO_MAX_QUEUE_SIZE`).
    pub queue_size: u16,
    /// Device feature bits (bits 0–23 and 50–127 of the spec's ranges that
    /// fit 64 bits; transport bits are the library's and are ignored).
    pub features: u64,
    /// Bytes of configuration space (0 ..= `VIO_GENERIC_MAX_CONFIG`).
    pub config_len: u32,
    /// `VIO_MALFORMED_RETURN_EMPTY` or `VIO_MALFORMED_NEEDS_RESET`.
    pub malformed: u8,
}

/// The generic device model.
#[derive(Debug)]
pub(crate) struct GenericBody {
    cfg: vio_generic_cfg,
    id: DeviceId,
    request: extern "C" fn(*mut c_void, u16, *mut vio_req) -> c_int,
    ops: vio_generic_ops,
    ctx: Ctx,
    failed: u32,
}

impl GenericBody {
    pub(crate) fn new(cfg: vio_generic_cfg, ops: vio_generic_ops, ctx: Ctx) -> Result<Self, c_int> {
        let request = ops.request.ok_or(VIO_EINVAL)?;
        if cfg.device_id == 0 || cfg.device_id > 0xffff {
            return Err(VIO_EINVAL);
        }
        let id = DeviceId::from(cfg.device_id);
        if cfg.num_queues == 0 || cfg.num_queues > VIO_MAX_QUEUES {
            return Err(VIO_ERANGE);
        }
        if cfg.queue_size == 0 || cfg.queue_size > VIO_MAX_QUEUE_SIZE {
            return Err(VIO_ERANGE);
        }
        if cfg.config_len > VIO_GENERIC_MAX_CONFIG {
            return Err(VIO_ERANGE);
        }
        if cfg.malformed != VIO_MALFORMED_RETURN_EMPTY && cfg.malformed != VIO_MALFORMED_NEEDS_RESET
        {
            return Err(VIO_EINVAL);
        }
        Ok(Self {
            cfg,
            id,
            request,
            ops,
            ctx,
            failed: 0,
        })
    }
}

impl VirtioDevice for GenericBody {
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        if self.cfg.malformed == VIO_MALFORMED_NEEDS_RESET {
            MalformedChain::NeedsReset
        } else {
            MalformedChain::ReturnEmpty
        }
    }

    fn device_id(&self) -> DeviceId {
        self.id
    }

    fn features(&self) -> Features {
        Features::from_bits_retain(self.cfg.features)
    }

    fn num_queues(&self) -> u16 {
        self.cfg.num_queues
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.cfg.queue_size
    }

    fn config_len(&self) -> u32 {
        self.cfg.config_len
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        data.fill(0);
        let Some(read) = self.ops.read_config else {
            return;
        };
        // Only the part inside the space reaches C.
        let end = offset.saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
        let inside = end.min(self.cfg.config_len).saturating_sub(offset) as usize;
        if let Some(part) = data.get_mut(..inside)
            && !part.is_empty()
        {
            read(self.ctx.0, offset, part.as_mut_ptr(), part.len());
        }
    }

    fn write_config(&mut self, offset: u32, data: &[u8]) {
        let Some(write) = self.ops.write_config else {
            return;
        };
        let end = offset.saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
        let inside = end.min(self.cfg.config_len).saturating_sub(offset) as usize;
        if let Some(part) = data.get(..inside)
            && !part.is_empty()
        {
            write(self.ctx.0, offset, part.as_ptr(), part.len());
        }
    }

    fn reset(&mut self) {
        if let Some(reset) = self.ops.reset {
            reset(self.ctx.0);
        }
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<SEGMENTS>::new();
        while queues.pop(queue, &mut chain) {
            let mut live = Live {
                reader: chain.reader(mem),
                writer: chain.writer(mem),
            };
            let mut req = ReqObj {
                magic: AtomicU32::new(ReqObj::MAGIC),
                completed: false,
                live: NonNull::from(&mut live).cast(),
                vtable: &Live::<M>::VTABLE,
            };
            let handle = core::ptr::from_mut(&mut req).cast::<vio_req>();
            let status = (self.request)(self.ctx.0, queue, handle);
            // The handle dies here, whatever C kept of it.
            req.magic.store(0, Ordering::Release);
            if status < 0 {
                self.failed = self.failed.saturating_add(1);
                queues.push_used(queue, chain.head(), 0);
                queues.set_needs_reset();
                return;
            }
            queues.push_used(queue, chain.head(), live.writer.bytes_written());
        }
    }
}

/// The cursors of the request being served.
struct Live<'a, M> {
    reader: Reader<'a, M>,
    writer: Writer<'a, M>,
}

/// Type-erased access to a [`Live`] (its memory type is the transport's).
struct VTable {
    read: unsafe fn(NonNull<()>, &mut [u8]) -> c_int,
    write: unsafe fn(NonNull<()>, &[u8]) -> c_int,
    readable: unsafe fn(NonNull<()>) -> u32,
    writable: unsafe fn(NonNull<()>) -> u32,
}

impl<M: GuestMemory> Live<'_, M> {
    const VTABLE: VTable = VTable {
        read: Self::read,
        write: Self::write,
        readable: Self::readable,
        writable: Self::writable,
    };

    /// # Safety
    /// `p` is the `Live<M>` of the request being served, unaliased.
    unsafe fn get<'x>(p: NonNull<()>) -> &'x mut Self {
        // SAFETY: the caller's contract; `vio_req` only ever points at the
        // `Live<M>` it was built with, whose `M` chose this vtable.
        unsafe { p.cast::<Self>().as_mut() }
    }

    unsafe fn read(p: NonNull<()>, buf: &mut [u8]) -> c_int {
        // SAFETY: the vtable's contract.
        let live = unsafe { Self::get(p) };
        if buf.len() > live.reader.remaining() as usize {
            return VIO_ERANGE;
        }
        match live.reader.read_exact(buf) {
            Ok(()) => VIO_OK,
            Err(_) => VIO_EIO,
        }
    }

    unsafe fn write(p: NonNull<()>, buf: &[u8]) -> c_int {
        // SAFETY: the vtable's contract.
        let live = unsafe { Self::get(p) };
        if buf.len() > live.writer.remaining() as usize {
            return VIO_ERANGE;
        }
        match live.writer.write_all(buf) {
            Ok(()) => VIO_OK,
            Err(_) => VIO_EIO,
        }
    }

    unsafe fn readable(p: NonNull<()>) -> u32 {
        // SAFETY: the vtable's contract.
        unsafe { Self::get(p) }.reader.remaining()
    }

    unsafe fn writable(p: NonNull<()>) -> u32 {
        // SAFETY: the vtable's contract.
        unsafe { Self::get(p) }.writer.remaining()
    }
}

/// A request of a generic device, valid only during the `request`
/// callback that received it (opaque).
#[allow(non_camel_case_types)]
pub struct vio_req {
    _opaque: [u8; 0],
}

/// What a `vio_req` handle points at.
#[repr(C)]
struct ReqObj {
    magic: AtomicU32,
    completed: bool,
    live: NonNull<()>,
    vtable: &'static VTable,
}

impl Tagged for ReqObj {
    const MAGIC: u32 = 0x5152_4556; // "VERQ"
}

/// The live request behind a handle, not yet completed.
///
/// # Safety
/// `req` is null or points to at least 4 readable bytes.
unsafe fn live_req<'a>(req: *mut vio_req) -> Result<&'a mut ReqObj, c_int> {
    // SAFETY: the caller's contract.
    unsafe { handle::<ReqObj>(req.cast()) }?;
    // SAFETY: the tag says it is the `vio_req` of the callback now running
    // (it is cleared when the callback returns), which the library does not
    // touch until then; C calls in one at a time (the transport is locked,
    // so the only caller is the callback's own thread).
    let r = unsafe { &mut *req.cast::<ReqObj>() };
    if r.completed {
        return Err(VIO_EBADF);
    }
    Ok(r)
}

/// A C buffer as a slice (`len` 0 allows NULL).
///
/// # Safety
/// `buf` is null or `len` bytes valid for the access.
unsafe fn c_buf<'a>(buf: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(VIO_EINVAL);
    }
    if isize::try_from(len).is_err() {
        return Err(VIO_ERANGE);
    }
    // SAFETY: the caller's contract, and `len` fits `isize`.
    Ok(unsafe { core::slice::from_raw_parts(buf.cast(), len) })
}

/// A generic device: the driver's requests on any of its queues reach
/// `ops->request` as `vio_req` handles. Tables are copied.
///
/// Returns 0; as `vio_rng_init`, and `VIO_EINVAL` (NULL `cfg`, NULL
/// `request`, device ID 0 or above 0xffff, unknown `malformed`),
/// `VIO_ERANGE` (queue count, queue size or config length out of range).
///
/// # Safety
/// As for `vio_rng_init`; `cfg` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_generic_init(
    storage: *mut c_void,
    storage_len: usize,
    cfg: *const vio_generic_cfg,
    ops: *const vio_generic_ops,
    ctx: *mut c_void,
    out: *mut *mut super::dev::vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { super::dev::place_generic(storage, storage_len, cfg, ops, ctx, out) }
}

/// Copies the next `len` bytes of the request's device-readable part into
/// `buf` (each byte is read from guest memory once; the cursor advances).
///
/// Returns 0; `VIO_EINVAL` (NULL `req`, or NULL `buf` with `len` > 0),
/// `VIO_EBADF` (not a live request, or completed), `VIO_ERANGE` (`len` is
/// more than `vio_req_readable_len`; nothing is read), `VIO_EIO` (guest
/// memory fault).
///
/// # Safety
/// `req` is null or the handle the running callback got; `buf` is null
/// or `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_req_read(req: *mut vio_req, buf: *mut c_void, len: usize) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let req = unsafe { live_req(req) }?;
        if len == 0 {
            return Ok(VIO_OK);
        }
        if buf.is_null() {
            return Err(VIO_EINVAL);
        }
        if isize::try_from(len).is_err() {
            return Err(VIO_ERANGE);
        }
        // SAFETY: non-null, `len` writable bytes by contract, fits isize.
        let dst = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        // SAFETY: `live` is the `Live` the vtable was made for, alive for
        // the callback.
        Ok(unsafe { (req.vtable.read)(req.live, dst) })
    })();
    rc(r)
}

/// Appends `len` bytes from `buf` to the request's device-writable part
/// (the cursor advances; the used length is what was written).
///
/// Returns 0; `VIO_EINVAL`, `VIO_EBADF`, `VIO_ERANGE` (more than
/// `vio_req_writable_len`; nothing is written), `VIO_EIO` as for
/// `vio_req_read`.
///
/// # Safety
/// `req` is null or the handle the running callback got; `buf` is null
/// or `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_req_write(req: *mut vio_req, buf: *const c_void, len: usize) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let req = unsafe { live_req(req) }?;
        // SAFETY: the caller's contract.
        let src = unsafe { c_buf(buf, len) }?;
        if src.is_empty() {
            return Ok(VIO_OK);
        }
        // SAFETY: as in `vio_req_read`.
        Ok(unsafe { (req.vtable.write)(req.live, src) })
    })();
    rc(r)
}

/// Bytes of the device-readable part not yet read, into `*len`.
///
/// Returns 0; `VIO_EINVAL` (NULL), `VIO_EBADF`.
///
/// # Safety
/// `req` is null or the handle the running callback got; `len` null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_req_readable_len(req: *mut vio_req, len: *mut u32) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let req = unsafe { live_req(req) }?;
        // SAFETY: as in `vio_req_read`.
        let n = unsafe { (req.vtable.readable)(req.live) };
        // SAFETY: the caller's contract.
        unsafe { put(len, n) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Bytes of the device-writable part not yet written, into `*len`.
///
/// Returns 0; `VIO_EINVAL` (NULL), `VIO_EBADF`.
///
/// # Safety
/// As for `vio_req_readable_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_req_writable_len(req: *mut vio_req, len: *mut u32) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let req = unsafe { live_req(req) }?;
        // SAFETY: as in `vio_req_read`.
        let n = unsafe { (req.vtable.writable)(req.live) };
        // SAFETY: the caller's contract.
        unsafe { put(len, n) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Completes the request: it goes back to the driver, with used length
/// the bytes written, when the callback returns. After this the handle
/// takes no more reads or writes (`VIO_EBADF`).
///
/// Returns 0; `VIO_EINVAL` (NULL), `VIO_EBADF` (not live, or completed
/// already).
///
/// # Safety
/// `req` is null or the handle the running callback got.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_req_complete(req: *mut vio_req) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let req = unsafe { live_req(req) }?;
        req.completed = true;
        Ok(VIO_OK)
    })();
    rc(r)
}
