//! The exported C functions: the only module with `unsafe`.
//!
//! Every object is a `#[repr(C)]` struct whose first field is an
//! `AtomicU32` type tag ("magic"), written by `init` and cleared by
//! `deinit`; a handle is a pointer to it. Each function checks a handle for
//! null, alignment and tag before it forms a reference, and takes the
//! object's lock (an atomic flag) before it forms a `&mut` to what is
//! inside the `UnsafeCell`, so a second caller (another thread, a
//! preempting interrupt, a re-entering callback) gets `VIO_EBUSY` instead
//! of an aliased `&mut`.
//!
//! What cannot be checked is the C side of the contract, stated on each
//! function under `# Safety`: a non-null pointer points to what its type
//! says (a handle returned by the library, storage of the given length,
//! a buffer of the given length), and storage is not moved, reused or
//! freed while its object is alive.

use core::ffi::{c_int, c_void};
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use crate::{VIO_EBADF, VIO_EBUSY, VIO_EFAULT, VIO_EINVAL, VIO_ENOSPC, VIO_OK};

mod dev;
#[cfg(feature = "driver")]
mod drv;
#[cfg(feature = "generic")]
mod generic;
mod memory;
mod mmio;
mod shm;

pub use dev::*;
#[cfg(feature = "driver")]
pub use drv::*;
#[cfg(feature = "generic")]
pub use generic::*;
pub use memory::*;
pub use mmio::*;
pub use shm::*;

/// An object whose first field is its type tag.
pub(crate) trait Tagged {
    const MAGIC: u32;
}

/// Checks caller storage for an object of type `T`.
fn storage<T>(storage: *mut c_void, len: usize) -> Result<NonNull<T>, c_int> {
    let p = NonNull::new(storage.cast::<T>()).ok_or(VIO_EINVAL)?;
    if !p.as_ptr().is_aligned() {
        return Err(VIO_EFAULT);
    }
    if len < size_of::<T>() {
        return Err(VIO_ENOSPC);
    }
    Ok(p)
}

/// Checks a handle: non-null, aligned for `T`, tagged `T::MAGIC`.
///
/// # Safety
/// `p` is null or points to at least 4 readable bytes that no one writes
/// except through atomics (any object of this library, live or not).
unsafe fn handle<'a, T: Tagged>(p: *const c_void) -> Result<&'a T, c_int> {
    let p = NonNull::new(p.cast_mut()).ok_or(VIO_EINVAL)?.cast::<T>();
    if !p.as_ptr().is_aligned() {
        return Err(VIO_EFAULT);
    }
    // SAFETY: the caller guarantees 4 readable bytes at `p`; every object of
    // this library is `repr(C)` with an `AtomicU32` tag first, and `p` is
    // aligned for `T` (at least the tag's alignment, as `T` holds one).
    let magic = unsafe { &*p.as_ptr().cast::<AtomicU32>() };
    if magic.load(Ordering::Acquire) != T::MAGIC {
        return Err(VIO_EBADF);
    }
    // SAFETY: the tag says `p` is a live `T` that `init` wrote; `T` is only
    // ever mutated through atomics and `UnsafeCell`s behind locks, so a
    // shared reference is sound.
    Ok(unsafe { p.as_ref() })
}

/// A held lock on an object's `UnsafeCell` (released on drop).
pub(crate) struct Guard<'a>(&'a AtomicBool);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Takes a lock, or says the object is busy.
pub(crate) fn lock(flag: &AtomicBool) -> Result<Guard<'_>, c_int> {
    if flag.swap(true, Ordering::Acquire) {
        Err(VIO_EBUSY)
    } else {
        Ok(Guard(flag))
    }
}

/// Folds a `Result<(), c_int>` into the C return value.
fn rc(r: Result<c_int, c_int>) -> c_int {
    match r {
        Ok(v) | Err(v) => v,
    }
}

/// Writes `value` to an optional out pointer.
///
/// # Safety
/// `out` is null or valid for writing a `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), c_int> {
    let out = NonNull::new(out).ok_or(VIO_EINVAL)?;
    if !out.as_ptr().is_aligned() {
        return Err(VIO_EFAULT);
    }
    // SAFETY: non-null, aligned, and valid for writes by the caller's
    // contract.
    unsafe { out.as_ptr().write(value) };
    Ok(())
}

/// Reports the storage an object of type `T` needs.
///
/// # Safety
/// Each pointer is null or valid for writing a `usize`.
unsafe fn report<T>(size: *mut usize, align: *mut usize) -> c_int {
    if size.is_null() && align.is_null() {
        return VIO_EINVAL;
    }
    for (p, v) in [(size, size_of::<T>()), (align, align_of::<T>())] {
        if !p.is_null() {
            // SAFETY: the caller's contract for each non-null pointer.
            if let Err(e) = unsafe { put(p, v) } {
                return e;
            }
        }
    }
    VIO_OK
}

/// A C function called on a panic before the handler spins.
static PANIC_HOOK: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Sets a function the panic handler calls (feature `panic-handler`;
/// e.g. to log and reset the core). The library has no reachable panic;
/// this is the last line of defence. `hook` may be NULL to clear it.
/// Always returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn vio_set_panic_hook(hook: Option<extern "C" fn()>) -> c_int {
    let p = hook.map_or(core::ptr::null_mut(), |f| f as *mut c_void);
    PANIC_HOOK.store(p, Ordering::Release);
    VIO_OK
}

/// Calls the panic hook, if one is set.
#[cfg_attr(
    not(all(feature = "panic-handler", target_os = "none")),
    allow(dead_code)
)]
pub(crate) fn panic_hook() {
    let p = PANIC_HOOK.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: `p` was stored from an `extern "C" fn()` by
        // `vio_set_panic_hook`; function and data pointers have the same
        // size on every target this crate supports.
        let f: extern "C" fn() = unsafe { core::mem::transmute::<*mut c_void, extern "C" fn()>(p) };
        f();
    }
}

/// The library's version (`VIO_VERSION`), to check the header against the
/// library linked. Returns 0; `*version` gets the value.
///
/// # Safety
/// `version` is null (`VIO_EINVAL`) or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_version(version: *mut u32) -> c_int {
    // SAFETY: the caller's contract.
    rc(unsafe { put(version, crate::VIO_VERSION) }.map(|()| VIO_OK))
}

/// Checks that `T` fits `bound` bytes with at most `VIO_STORAGE_ALIGN`
/// alignment: the header's storage constants are valid on this target.
const fn fits<T>(bound: usize) -> bool {
    size_of::<T>() <= bound && align_of::<T>() <= crate::VIO_STORAGE_ALIGN
}

const _: () = assert!(fits::<MemObj>(crate::VIO_MEM_STORAGE_SIZE));
#[cfg(feature = "rng")]
const _: () = assert!(fits::<DevObj<RngBody>>(crate::VIO_RNG_STORAGE_SIZE));
#[cfg(feature = "block")]
const _: () = assert!(fits::<DevObj<BlockBody>>(crate::VIO_BLOCK_STORAGE_SIZE));
#[cfg(feature = "console")]
const _: () = assert!(fits::<DevObj<ConsoleBody>>(crate::VIO_CONSOLE_STORAGE_SIZE));
#[cfg(feature = "i2c")]
const _: () = assert!(fits::<DevObj<I2cBody>>(crate::VIO_I2C_STORAGE_SIZE));
#[cfg(feature = "gpio")]
const _: () = assert!(fits::<DevObj<GpioBody>>(crate::VIO_GPIO_STORAGE_SIZE));
#[cfg(feature = "generic")]
const _: () = assert!(fits::<DevObj<GenericBody>>(crate::VIO_GENERIC_STORAGE_SIZE));
const _: () = assert!(fits::<MmioObj>(crate::VIO_MMIO_STORAGE_SIZE));
const _: () = assert!(fits::<ShmObj>(crate::VIO_SHM_STORAGE_SIZE));
#[cfg(feature = "driver")]
const _: () = assert!(fits::<DrvObj>(crate::VIO_DRV_STORAGE_SIZE));
