//! A C ABI over the virtio device side, for C RTOS firmware (Zephyr,
//! NuttX, bare metal).
//!
//! `cargo add virtio-backend-ffi` (the library is `virtio_ffi`).
//!
//! C code gets the whole device side: device models whose backends are C
//! callbacks (entropy, block, console, I2C, GPIO, and a *generic* device
//! for a protocol the project does not ship), the virtio-mmio register
//! block as a trap entry, and the shared-memory (virtio-msg) device end. The
//! validated-chain model crosses the ABI intact: C never sees a descriptor,
//! a ring index or a guest address. The generic device's requests reach C
//! as a `vio_req` handle whose read/write cursors copy each byte of the
//! driver's buffers at most once and never past the chain.
//!
//! # Objects and storage
//!
//! Every object lives in storage the caller provides (no heap, no
//! `malloc`): `vio_<kind>_size()` / `vio_<kind>_align()` say how much, and
//! the `VIO_<KIND>_STORAGE_SIZE` constants in the header are upper bounds
//! valid on every supported target (checked at compile time), for
//! `static` storage. `vio_<kind>_init` writes the object and hands back its
//! handle; the storage must then stay put (not moved, not reused) until
//! `vio_<kind>_deinit` returns 0.
//!
//! * `vio_mem` — guest memory: one window or a table of regions.
//! * `vio_dev` — one device (any kind); a transport *claims* it while
//!   attached (`VIO_EBUSY` for a second claim).
//! * `vio_mmio` — a virtio-mmio register block over one device.
//! * `vio_shm` — the device end of a shared-memory window with up to
//!   `VIO_SHM_MAX_DEVICES` devices.
//! * `vio_drv` (feature `driver`) — the Rust driver end, for test images.
//!
//! # Return values
//!
//! Every function returns an `int`: [`VIO_OK`] (0), [`VIO_WORK_LEFT`] (1,
//! only from the functions that serve queues: call `..._poll` again), or a
//! negative errno-style code: [`VIO_EINVAL`], [`VIO_EBADF`],
//! [`VIO_ENOSPC`], [`VIO_EFAULT`], [`VIO_EBUSY`], [`VIO_ERANGE`],
//! [`VIO_EIO`], [`VIO_EPROTO`]. Every pointer is checked for null and
//! alignment, every handle for its type tag, every length against its
//! bound. Nothing a C caller passes makes the library panic (the crate
//! denies the constructs that could); for a no_std staticlib the
//! `panic-handler` feature still provides a handler, which calls the hook
//! set with `vio_set_panic_hook` and then spins.
//!
//! # Concurrency
//!
//! One call at a time per transport: a call that finds the transport in
//! use (another thread, an interrupt handler that preempted it, or a
//! callback re-entering it) returns [`VIO_EBUSY`] and does nothing.
//! `vio_gpio_irq` only touches atomics and may be called from any
//! interrupt at any time.
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![no_std]
// `unsafe` is confined to the `ffi` module (the C boundary); everything
// else is safe Rust. `deny` rather than `forbid` so that one module can
// allow it.
#![deny(unsafe_code)]

// On hosted targets (the host C test, a Linux process) std supplies the
// panic runtime; nothing of std is used. A panic never unwinds through an
// `extern "C"` function: Rust aborts there.
#[cfg(not(target_os = "none"))]
extern crate std;

pub mod backend;
#[allow(unsafe_code)]
pub mod ffi;
pub mod mem;

use core::ffi::c_int;

/// Header version: major.
pub const VIO_VERSION_MAJOR: u32 = 0;
/// Header version: minor.
pub const VIO_VERSION_MINOR: u32 = 1;
/// Header version as one number: `major << 16 | minor`.
pub const VIO_VERSION: u32 = (VIO_VERSION_MAJOR << 16) | VIO_VERSION_MINOR;

/// Success.
pub const VIO_OK: c_int = 0;
/// Success, and queue work is left: call the transport's `poll` again
/// (the driver will not notify for it).
pub const VIO_WORK_LEFT: c_int = 1;
/// An argument is invalid: a NULL pointer, a missing required callback,
/// an unknown width, a value out of its domain.
pub const VIO_EINVAL: c_int = -22;
/// The handle is not a live object of the expected kind (never
/// initialised, already de-initialised, or another kind of object).
pub const VIO_EBADF: c_int = -9;
/// The storage is too small, or a table is full.
pub const VIO_ENOSPC: c_int = -28;
/// A pointer is not aligned as its type needs.
pub const VIO_EFAULT: c_int = -14;
/// The object is in use: a device attached to a transport, memory used by
/// a transport, a transport already inside a call.
pub const VIO_EBUSY: c_int = -16;
/// A length or count is out of range (too large, or past the end of a
/// request's buffers).
pub const VIO_ERANGE: c_int = -34;
/// The operation failed at the device or driver: an invalid register
/// access (counted by the transport), a request the device answered with
/// an error status, a guest-memory fault.
pub const VIO_EIO: c_int = -5;
/// The shared-memory window does not hold the expected layout, or the
/// peer broke the protocol.
pub const VIO_EPROTO: c_int = -71;

/// `vio_i2c_msg.flags`: a read.
pub const VIO_I2C_MSG_READ: u32 = 1;
/// I2C transfer result: the address was not acknowledged.
pub const VIO_I2C_NACK: c_int = -6;
/// I2C transfer result: a data byte was not acknowledged.
pub const VIO_I2C_NACK_DATA: c_int = -7;

/// GPIO direction: not in use.
pub const VIO_GPIO_DIR_NONE: u8 = 0;
/// GPIO direction: output.
pub const VIO_GPIO_DIR_OUT: u8 = 1;
/// GPIO direction: input.
pub const VIO_GPIO_DIR_IN: u8 = 2;
/// `vio_gpio_init` flag: edges come only from `vio_gpio_irq`; the device
/// does not read input levels through `get` to find them.
pub const VIO_GPIO_PLATFORM_EVENTS: u32 = 1;
/// Lines the GPIO device reports (`ngpio` in its configuration); lines at
/// or above the `lines` given to `vio_gpio_init` answer errors.
pub const VIO_GPIO_MAX_LINES: u16 = 32;

/// `vio_block_cfg.flags`: offer `VIRTIO_BLK_F_RO` (writes fail).
pub const VIO_BLOCK_READ_ONLY: u32 = 1;

/// Most virtqueues of a device behind these transports.
pub const VIO_MAX_QUEUES: u16 = 4;
/// Largest queue size (descriptors) a driver may choose.
pub const VIO_MAX_QUEUE_SIZE: u16 = 64;
/// Most regions of a memory table.
pub const VIO_MAX_REGIONS: u32 = 8;
/// Most devices on one shared-memory bus.
pub const VIO_SHM_MAX_DEVICES: u32 = 4;
/// `vio_shm_init` flag: this end creates the window (zeroes it and writes
/// the header); without it the window must already hold the layout.
pub const VIO_SHM_CREATE: u32 = 1;

/// Generic device: a malformed chain is returned with used length 0 and
/// the device carries on (protocols without a status).
pub const VIO_MALFORMED_RETURN_EMPTY: u8 = 0;
/// Generic device: a malformed chain is returned and the device enters
/// `DEVICE_NEEDS_RESET`.
pub const VIO_MALFORMED_NEEDS_RESET: u8 = 1;
/// Most configuration bytes of a generic device.
pub const VIO_GENERIC_MAX_CONFIG: u32 = 256;

/// Alignment that satisfies every object (storage should be aligned to it).
pub const VIO_STORAGE_ALIGN: usize = 8;
/// Bytes that hold a `vio_mem` on every supported target.
pub const VIO_MEM_STORAGE_SIZE: usize = 384;
/// Bytes that hold an entropy device.
pub const VIO_RNG_STORAGE_SIZE: usize = 96;
/// Bytes that hold a block device.
pub const VIO_BLOCK_STORAGE_SIZE: usize = 256;
/// Bytes that hold a console device.
pub const VIO_CONSOLE_STORAGE_SIZE: usize = 448;
/// Bytes that hold an I2C adapter device.
pub const VIO_I2C_STORAGE_SIZE: usize = 2688;
/// Bytes that hold a GPIO device.
pub const VIO_GPIO_STORAGE_SIZE: usize = 1408;
/// Bytes that hold a generic device.
pub const VIO_GENERIC_STORAGE_SIZE: usize = 160;
/// Bytes that hold a `vio_mmio`.
pub const VIO_MMIO_STORAGE_SIZE: usize = 2304;
/// Bytes that hold a `vio_shm`.
pub const VIO_SHM_STORAGE_SIZE: usize = 8192;
/// Bytes that hold a `vio_drv` (feature `driver`).
pub const VIO_DRV_STORAGE_SIZE: usize = 1024;

#[cfg(not(any(
    feature = "rng",
    feature = "block",
    feature = "console",
    feature = "i2c",
    feature = "gpio",
    feature = "generic"
)))]
compile_error!("virtio-ffi needs at least one device feature");

#[cfg(all(
    test,
    feature = "rng",
    feature = "block",
    feature = "console",
    feature = "i2c",
    feature = "gpio",
    feature = "generic",
    feature = "mem-table"
))]
mod tests;

#[cfg(all(feature = "panic-handler", target_os = "none"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    ffi::panic_hook();
    loop {
        core::hint::spin_loop();
    }
}
