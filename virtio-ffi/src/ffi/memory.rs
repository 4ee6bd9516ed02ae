//! `vio_mem`: guest memory objects.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU32, Ordering};

#[cfg(feature = "mem-table")]
use virtio_core::memory::MultiRegion;
use virtio_core::memory::{Region, RegionError};

use super::{Tagged, handle, put, rc, report, storage};
use crate::mem::FfiMem;
#[cfg(feature = "mem-table")]
use crate::mem::MAX_REGIONS;
use crate::{VIO_EBUSY, VIO_EINVAL, VIO_ENOSPC, VIO_ERANGE, VIO_OK};

/// Guest memory: one window or a table of regions (opaque).
#[allow(non_camel_case_types)]
pub struct vio_mem {
    _opaque: [u8; 0],
}

/// One region of a memory table (`vio_mem_init_table`, feature `mem-table`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_region {
    /// The guest address of the region's first byte.
    pub guest_base: u64,
    /// Where the region is in this core's address space.
    pub host: *mut c_void,
    /// Bytes in the region (non-zero).
    pub len: usize,
}

#[repr(C)]
pub(crate) struct MemObj {
    magic: AtomicU32,
    /// Transports using this memory (it cannot be de-initialised).
    pub(crate) users: AtomicU32,
    pub(crate) mem: FfiMem,
}

impl Tagged for MemObj {
    const MAGIC: u32 = 0x4d45_4d56; // "VMEM"
}

impl MemObj {
    /// Counts a user; undone by [`MemObj::release`].
    pub(crate) fn acquire(&self) {
        self.users.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn release(&self) {
        self.users.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A `vio_mem` handle as the memory object.
///
/// # Safety
/// As for [`handle`].
pub(crate) unsafe fn mem_obj<'a>(mem: *const vio_mem) -> Result<&'a MemObj, c_int> {
    // SAFETY: the caller's contract.
    unsafe { handle::<MemObj>(mem.cast()) }
}

fn region_error(e: RegionError) -> c_int {
    match e {
        RegionError::Full => VIO_ENOSPC,
        RegionError::Overflow => VIO_ERANGE,
        _ => VIO_EINVAL,
    }
}

/// Builds a region from C's description.
///
/// # Safety
/// `host .. host + len` is valid for reads and writes for as long as the
/// memory object lives, and only accessed through this library or by
/// other agents (the driver), never through C objects the compiler
/// assumes it owns exclusively.
unsafe fn region(guest_base: u64, host: *mut c_void, len: usize) -> Result<Region<'static>, c_int> {
    if host.is_null() {
        return Err(VIO_EINVAL);
    }
    if len == 0 {
        return Err(VIO_ERANGE);
    }
    // Keep guest addresses within what `isize` can index on this target.
    if isize::try_from(len).is_err() {
        return Err(VIO_ERANGE);
    }
    // SAFETY: the caller's contract is `from_raw_parts`'s.
    unsafe { Region::from_raw_parts(guest_base, host.cast(), len) }.map_err(region_error)
}

/// Storage for a `vio_mem`: writes its size and alignment to the non-null
/// pointers. `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mem_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<MemObj>(size, align) }
}

/// Guest memory of one window: guest addresses `guest_base ..
/// guest_base + len` are `host .. host + len` here. `host` and
/// `guest_base` must agree modulo 8 (`VIO_EINVAL`); `len` must be
/// non-zero (`VIO_ERANGE`).
///
/// Returns 0 and the handle in `*out`, or `VIO_EINVAL` (NULL argument),
/// `VIO_EFAULT` (misaligned storage), `VIO_ENOSPC` (storage too small),
/// `VIO_ERANGE` (zero or oversized length, or a window past the end of the
/// 64-bit guest address space).
///
/// # Safety
/// `storage` is null or `storage_len` writable bytes that stay put until
/// `vio_mem_deinit`; `host` is null or `len` bytes valid for reads and
/// writes for the object's life; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mem_init_window(
    storage_ptr: *mut c_void,
    storage_len: usize,
    guest_base: u64,
    host: *mut c_void,
    len: usize,
    out: *mut *mut vio_mem,
) -> c_int {
    let r = (|| {
        if out.is_null() {
            return Err(VIO_EINVAL);
        }
        let p = storage::<MemObj>(storage_ptr, storage_len)?;
        // SAFETY: the caller's contract for `host`.
        let window = unsafe { region(guest_base, host, len) }?;
        let obj = MemObj {
            magic: AtomicU32::new(MemObj::MAGIC),
            users: AtomicU32::new(0),
            mem: FfiMem::Window(window),
        };
        // SAFETY: `storage` checked the pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: `out` is non-null (checked) and writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_mem>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

#[cfg(feature = "mem-table")]
/// Guest memory of `count` regions (1 ..= `VIO_MAX_REGIONS`), which must
/// not overlap. The table is copied; it need not outlive the call, the
/// regions must.
///
/// Returns 0, or as `vio_mem_init_window`, and `VIO_ERANGE` for a count of
/// 0 or above `VIO_MAX_REGIONS`, `VIO_EINVAL` for overlapping regions.
///
/// # Safety
/// As for `vio_mem_init_window`, for every region; `regions` is null or
/// `count` readable entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mem_init_table(
    storage_ptr: *mut c_void,
    storage_len: usize,
    regions: *const vio_region,
    count: usize,
    out: *mut *mut vio_mem,
) -> c_int {
    let r = (|| {
        if out.is_null() || regions.is_null() {
            return Err(VIO_EINVAL);
        }
        if count == 0 || count > MAX_REGIONS {
            return Err(VIO_ERANGE);
        }
        if !regions.is_aligned() {
            return Err(crate::VIO_EFAULT);
        }
        let p = storage::<MemObj>(storage_ptr, storage_len)?;
        // SAFETY: non-null, aligned, `count` (≤ MAX_REGIONS) readable
        // entries by the caller's contract.
        let table = unsafe { core::slice::from_raw_parts(regions, count) };
        let mut multi = MultiRegion::new();
        for r in table {
            // SAFETY: the caller's contract for each region.
            let region = unsafe { region(r.guest_base, r.host, r.len) }?;
            multi.add(region).map_err(|e| match e {
                RegionError::Overlap => VIO_EINVAL,
                e => region_error(e),
            })?;
        }
        let obj = MemObj {
            magic: AtomicU32::new(MemObj::MAGIC),
            users: AtomicU32::new(0),
            mem: FfiMem::Table(multi),
        };
        // SAFETY: `storage` checked the pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: `out` is non-null and writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_mem>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Ends a memory object; its storage may then be reused. `VIO_EBUSY` while
/// a transport uses it, `VIO_EBADF` for a handle that is not a live
/// `vio_mem`.
///
/// # Safety
/// `mem` is null or a pointer to at least 4 readable bytes (a handle).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_mem_deinit(mem: *mut vio_mem) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let obj = unsafe { mem_obj(mem) }?;
        if obj.users.load(Ordering::Acquire) != 0 {
            return Err(VIO_EBUSY);
        }
        obj.magic
            .compare_exchange(MemObj::MAGIC, 0, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| crate::VIO_EBADF)?;
        Ok(VIO_OK)
    })();
    rc(r)
}
