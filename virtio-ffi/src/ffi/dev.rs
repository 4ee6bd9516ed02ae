//! `vio_dev`: devices with C callback backends, and [`AnyDev`], the one
//! device type every transport is built over.

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use virtio_core::device::FeaturesError;
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::spec::{DeviceId, Features};
#[cfg(feature = "block")]
use virtio_devices::block::{Block, BlockOptions, RangeCommand};
#[cfg(feature = "console")]
use virtio_devices::console::Console;
#[cfg(feature = "gpio")]
use virtio_devices::gpio::Gpio;
#[cfg(feature = "i2c")]
use virtio_devices::i2c::I2cAdapter;
#[cfg(feature = "rng")]
use virtio_devices::rng::Rng;

#[cfg(feature = "generic")]
use super::generic::{GenericBody, vio_generic_cfg};
use super::{Tagged, handle, put, rc, report, storage};
#[cfg(feature = "block")]
use crate::VIO_BLOCK_READ_ONLY;
#[cfg(any(feature = "block", feature = "gpio"))]
use crate::VIO_ERANGE;
use crate::backend::Ctx;
#[cfg(feature = "block")]
use crate::backend::{CBlock, vio_block_ops};
#[cfg(feature = "console")]
use crate::backend::{CConsole, vio_console_ops};
#[cfg(feature = "gpio")]
use crate::backend::{CGpio, vio_gpio_ops};
#[cfg(feature = "i2c")]
use crate::backend::{CI2c, I2C_BYTES, I2C_MSGS, vio_i2c_ops};
#[cfg(feature = "rng")]
use crate::backend::{CRng, vio_rng_ops};
use crate::{VIO_EBADF, VIO_EBUSY, VIO_EINVAL, VIO_MAX_QUEUE_SIZE, VIO_OK};
#[cfg(feature = "gpio")]
use crate::{VIO_GPIO_MAX_LINES, VIO_GPIO_PLATFORM_EVENTS};

/// A device of any kind (opaque).
#[allow(non_camel_case_types)]
pub struct vio_dev {
    _opaque: [u8; 0],
}

/// Which device a `vio_dev` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(dead_code)] // the kinds whose feature is off
pub(crate) enum Kind {
    Rng = 1,
    Block,
    Console,
    I2c,
    Gpio,
    Generic,
}

/// The first part of every device object.
#[repr(C)]
pub(crate) struct DevHeader {
    magic: AtomicU32,
    kind: Kind,
    /// Claimed by a transport (or by a device call in progress).
    claimed: AtomicBool,
    /// GPIO edges reported by `vio_gpio_irq` and not yet delivered.
    rise: AtomicU32,
    fall: AtomicU32,
    level: AtomicU32,
}

impl Tagged for DevHeader {
    const MAGIC: u32 = 0x5645_4456; // "VDEV"
}

impl DevHeader {
    /// Drops a claim taken by [`claim`].
    pub(crate) fn unclaim(&self) {
        self.claimed.store(false, Ordering::Release);
    }
}

/// A device object: the header, then the device model.
#[repr(C)]
pub(crate) struct DevObj<T> {
    hdr: DevHeader,
    body: UnsafeCell<T>,
}

#[cfg(feature = "rng")]
pub(crate) type RngBody = Rng<CRng>;
#[cfg(feature = "block")]
pub(crate) type BlockBody = Block<CBlock>;
#[cfg(feature = "console")]
pub(crate) type ConsoleBody = Console<CConsole, 1>;
#[cfg(feature = "i2c")]
pub(crate) type I2cBody = I2cAdapter<CI2c, I2C_MSGS, I2C_BYTES>;
#[cfg(feature = "gpio")]
pub(crate) type GpioBody = Gpio<CGpio, { VIO_GPIO_MAX_LINES as usize }>;

/// A claimed device: the transport that holds it has exclusive use of the
/// model for as long as it holds it (the claim is taken at attach and
/// dropped by the transport's deinit, and the transport only calls in
/// under its own lock).
#[derive(Debug)]
pub(crate) enum AnyDev {
    #[cfg(feature = "rng")]
    Rng(NonNull<DevObj<RngBody>>),
    #[cfg(feature = "block")]
    Block(NonNull<DevObj<BlockBody>>),
    #[cfg(feature = "console")]
    Console(NonNull<DevObj<ConsoleBody>>),
    #[cfg(feature = "i2c")]
    I2c(NonNull<DevObj<I2cBody>>),
    #[cfg(feature = "gpio")]
    Gpio(NonNull<DevObj<GpioBody>>),
    #[cfg(feature = "generic")]
    Generic(NonNull<DevObj<GenericBody>>),
}

// SAFETY: `AnyDev` is an exclusive claim on a device object (see the type
// docs); moving the claim to another thread moves the exclusive access
// with it. The C callbacks inside are the C side's to make thread-safe.
unsafe impl Send for AnyDev {}

/// Borrows the model behind a claim.
///
/// # Safety
/// `p` is a live device object claimed by the caller, and no other
/// reference to its body exists for the returned lifetime.
unsafe fn body<'a, T>(p: NonNull<DevObj<T>>) -> &'a mut T {
    // SAFETY: the caller's contract: live, claimed, unaliased.
    unsafe { &mut *(*p.as_ptr()).body.get() }
}

macro_rules! with_dev {
    ($self:expr, $d:ident => $e:expr) => {
        // SAFETY: an `AnyDev` is only made by `claim`, which took the
        // device's claim flag; the transport holding it calls in under its
        // own lock, one call at a time, so this is the only reference.
        match $self {
            #[cfg(feature = "rng")]
            AnyDev::Rng(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
            #[cfg(feature = "block")]
            AnyDev::Block(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
            #[cfg(feature = "console")]
            AnyDev::Console(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
            #[cfg(feature = "i2c")]
            AnyDev::I2c(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
            #[cfg(feature = "gpio")]
            AnyDev::Gpio(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
            #[cfg(feature = "generic")]
            AnyDev::Generic(p) => {
                // SAFETY: see the macro: the claim makes this the only
                // reference to the body.
                let $d = unsafe { body(*p) };
                $e
            }
        }
    };
}

impl AnyDev {
    fn header(&self) -> &DevHeader {
        let p = match self {
            #[cfg(feature = "rng")]
            Self::Rng(p) => p.cast::<DevHeader>(),
            #[cfg(feature = "block")]
            Self::Block(p) => p.cast(),
            #[cfg(feature = "console")]
            Self::Console(p) => p.cast(),
            #[cfg(feature = "i2c")]
            Self::I2c(p) => p.cast(),
            #[cfg(feature = "gpio")]
            Self::Gpio(p) => p.cast(),
            #[cfg(feature = "generic")]
            Self::Generic(p) => p.cast(),
        };
        // SAFETY: every device object is `repr(C)` with the header first,
        // alive while claimed; the header is only mutated through atomics.
        unsafe { p.as_ref() }
    }

    /// Gives the claim back (the transport's deinit).
    pub(crate) fn release(&self) {
        self.header().claimed.store(false, Ordering::Release);
    }

    #[cfg(feature = "gpio")]
    /// Delivers edges `vio_gpio_irq` recorded.
    fn drain_gpio(&mut self) {
        #[allow(irrefutable_let_patterns)]
        let AnyDev::Gpio(p) = self else { return };
        let p = *p;
        // SAFETY: as in `header`.
        let hdr = unsafe { p.cast::<DevHeader>().as_ref() };
        let rise = hdr.rise.swap(0, Ordering::AcqRel);
        let fall = hdr.fall.swap(0, Ordering::AcqRel);
        let level = hdr.level.load(Ordering::Acquire);
        let both = rise | fall;
        if both == 0 {
            return;
        }
        // SAFETY: as in `with_dev`.
        let gpio = unsafe { body(p) };
        for line in 0..VIO_GPIO_MAX_LINES {
            let bit = 1u32 << line;
            if both & bit == 0 {
                continue;
            }
            let last = level & bit != 0;
            if rise & bit != 0 && fall & bit != 0 {
                // Both edges since the last delivery: the one before the
                // last level first.
                gpio.input_changed(line, !last);
            }
            gpio.input_changed(line, last);
        }
    }
}

impl VirtioDevice for AnyDev {
    fn malformed_chain(&self, queue: u16) -> MalformedChain {
        with_dev!(self, d => d.malformed_chain(queue))
    }
    fn device_id(&self) -> DeviceId {
        with_dev!(self, d => d.device_id())
    }
    fn features(&self) -> Features {
        with_dev!(self, d => d.features())
    }
    fn num_queues(&self) -> u16 {
        with_dev!(self, d => d.num_queues())
    }
    fn max_queue_size(&self, queue: u16) -> u16 {
        with_dev!(self, d => d.max_queue_size(queue)).min(VIO_MAX_QUEUE_SIZE)
    }
    fn config_len(&self) -> u32 {
        with_dev!(self, d => d.config_len())
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        with_dev!(self, d => d.read_config(offset, data));
    }
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        with_dev!(self, d => d.write_config(offset, data));
    }
    fn check_features(&self, features: Features) -> Result<(), FeaturesError> {
        with_dev!(self, d => d.check_features(features))
    }
    fn activate(&mut self, features: Features) {
        with_dev!(self, d => d.activate(features));
    }
    fn reset(&mut self) {
        with_dev!(self, d => d.reset());
    }
    fn queue_reset(&mut self, queue: u16) {
        with_dev!(self, d => d.queue_reset(queue));
    }
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        #[cfg(feature = "gpio")]
        self.drain_gpio();
        with_dev!(self, d => d.queue_notify(queue, queues));
    }
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        #[cfg(feature = "gpio")]
        self.drain_gpio();
        with_dev!(self, d => d.poll(queues));
    }
}

/// Claims a device for a transport.
///
/// # Safety
/// `dev` is null or points to at least 4 readable bytes.
pub(crate) unsafe fn claim(dev: *mut vio_dev) -> Result<AnyDev, c_int> {
    // SAFETY: the caller's contract.
    let hdr = unsafe { handle::<DevHeader>(dev.cast()) }?;
    if hdr.claimed.swap(true, Ordering::AcqRel) {
        return Err(VIO_EBUSY);
    }
    let p = NonNull::from(hdr);
    Ok(match hdr.kind {
        #[cfg(feature = "rng")]
        Kind::Rng => AnyDev::Rng(p.cast()),
        #[cfg(feature = "block")]
        Kind::Block => AnyDev::Block(p.cast()),
        #[cfg(feature = "console")]
        Kind::Console => AnyDev::Console(p.cast()),
        #[cfg(feature = "i2c")]
        Kind::I2c => AnyDev::I2c(p.cast()),
        #[cfg(feature = "gpio")]
        Kind::Gpio => AnyDev::Gpio(p.cast()),
        #[cfg(feature = "generic")]
        Kind::Generic => AnyDev::Generic(p.cast()),
        // A kind whose feature is off has no init function: never reached.
        #[allow(unreachable_patterns)]
        _ => {
            hdr.unclaim();
            return Err(VIO_EBADF);
        }
    })
}

/// Writes a device object into checked storage and returns its handle.
///
/// # Safety
/// `storage_ptr` is null or `storage_len` writable bytes that stay put;
/// `out` is null or writable.
unsafe fn place<T>(
    storage_ptr: *mut c_void,
    storage_len: usize,
    kind: Kind,
    out: *mut *mut vio_dev,
    make: impl FnOnce() -> Result<T, c_int>,
) -> c_int {
    let r = (|| {
        if out.is_null() {
            return Err(VIO_EINVAL);
        }
        let p = storage::<DevObj<T>>(storage_ptr, storage_len)?;
        let obj = DevObj {
            hdr: DevHeader {
                magic: AtomicU32::new(DevHeader::MAGIC),
                kind,
                claimed: AtomicBool::new(false),
                rise: AtomicU32::new(0),
                fall: AtomicU32::new(0),
                level: AtomicU32::new(0),
            },
            body: UnsafeCell::new(make()?),
        };
        // SAFETY: `storage` checked pointer, alignment and size.
        unsafe { p.as_ptr().write(obj) };
        // SAFETY: `out` is non-null and writable by contract.
        unsafe { put(out, p.as_ptr().cast::<vio_dev>()) }?;
        Ok(VIO_OK)
    })();
    rc(r)
}

#[cfg(feature = "rng")]
/// Storage for an entropy device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_rng_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<RngBody>>(size, align) }
}

#[cfg(feature = "block")]
/// Storage for a block device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_block_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<BlockBody>>(size, align) }
}

#[cfg(feature = "console")]
/// Storage for a console device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_console_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<ConsoleBody>>(size, align) }
}

#[cfg(feature = "i2c")]
/// Storage for an I2C adapter device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_i2c_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<I2cBody>>(size, align) }
}

#[cfg(feature = "gpio")]
/// Storage for a GPIO device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_gpio_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<GpioBody>>(size, align) }
}

#[cfg(feature = "generic")]
/// Storage for a generic device: writes its size and alignment to the non-null
/// pointers; `VIO_EINVAL` if both are NULL.
///
/// # Safety
/// Each pointer is null or valid for writing a `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_generic_storage(size: *mut usize, align: *mut usize) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { report::<DevObj<GenericBody>>(size, align) }
}

/// Reads a callback table.
///
/// # Safety
/// `ops` is null or a readable `T`.
unsafe fn ops<T: Copy>(ops: *const T) -> Result<T, c_int> {
    let p = NonNull::new(ops.cast_mut()).ok_or(VIO_EINVAL)?;
    if !p.as_ptr().is_aligned() {
        return Err(crate::VIO_EFAULT);
    }
    // SAFETY: non-null, aligned, readable by contract; every bit pattern C
    // can put in a table of nullable function pointers is a valid
    // `Option<extern "C" fn>`.
    Ok(unsafe { p.as_ptr().read() })
}

#[cfg(feature = "rng")]
/// An entropy device (virtio-rng, ID 4) whose bytes come from `ops->fill`.
/// The table is copied. `ctx` is passed to every callback.
///
/// Returns 0 and the handle in `*out`; `VIO_EINVAL` (NULL `ops`, `out` or
/// storage, or `fill` NULL), `VIO_EFAULT` (misaligned), `VIO_ENOSPC`
/// (storage too small).
///
/// # Safety
/// `storage` is null or `storage_len` writable bytes that stay put until
/// `vio_dev_deinit`; `ops` null or readable; `out` null or writable; the
/// callbacks are sound to call with `ctx` for the device's life.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_rng_init(
    storage: *mut c_void,
    storage_len: usize,
    ops: *const vio_rng_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let table = match unsafe { self::ops(ops) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage, storage_len, Kind::Rng, out, || {
            let fill = table.fill.ok_or(VIO_EINVAL)?;
            Ok(Rng::new(CRng {
                fill,
                ctx: Ctx(ctx),
            })
            .with_queue_size(VIO_MAX_QUEUE_SIZE))
        })
    }
}

#[cfg(feature = "block")]
/// What a block device offers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_block_cfg {
    /// Size in 512-byte sectors (non-zero).
    pub capacity: u64,
    /// `VIO_BLOCK_READ_ONLY` or 0.
    pub flags: u32,
    /// The `GET_ID` answer (NUL-padded ASCII).
    pub id: [u8; 20],
}

#[cfg(feature = "block")]
/// A block device (virtio-blk, ID 2) over `ops`. `FLUSH` is offered when
/// `ops->flush` is set, `DISCARD` when `ops->discard` is, `RO` with
/// `VIO_BLOCK_READ_ONLY` (or when `ops->write` is NULL). Both tables are
/// copied.
///
/// Returns 0, or as `vio_rng_init`; `VIO_EINVAL` also for a NULL `cfg`,
/// NULL `read`, or unknown flags; `VIO_ERANGE` for capacity 0.
///
/// # Safety
/// As for `vio_rng_init`; `cfg` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_block_init(
    storage: *mut c_void,
    storage_len: usize,
    cfg: *const vio_block_cfg,
    ops: *const vio_block_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let (table, cfg) = match unsafe { (self::ops(ops), self::ops(cfg)) } {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage, storage_len, Kind::Block, out, || {
            if table.read.is_none() || cfg.flags & !VIO_BLOCK_READ_ONLY != 0 {
                return Err(VIO_EINVAL);
            }
            if cfg.capacity == 0 {
                return Err(VIO_ERANGE);
            }
            let options = BlockOptions {
                read_only: cfg.flags & VIO_BLOCK_READ_ONLY != 0 || table.write.is_none(),
                flush: table.flush.is_some(),
                discard: table.discard.map(|_| RangeCommand {
                    max_sectors: u32::MAX,
                    max_segments: 1,
                    alignment_or_may_unmap: 1,
                }),
                id: cfg.id,
                queue_size: VIO_MAX_QUEUE_SIZE,
                ..BlockOptions::default()
            };
            Ok(Block::new(
                CBlock {
                    ops: table,
                    capacity: cfg.capacity,
                    ctx: Ctx(ctx),
                },
                options,
            ))
        })
    }
}

#[cfg(feature = "console")]
/// A console device (virtio-console, ID 3, one port): what the driver
/// sends goes to `ops->tx`; input is taken from `ops->rx` when the driver
/// has a receive buffer posted and at each transport poll (call
/// `vio_mmio_poll` / `vio_shm_poll` when input arrives).
///
/// Returns 0, or as `vio_rng_init` (`tx` is required).
///
/// # Safety
/// As for `vio_rng_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_console_init(
    storage: *mut c_void,
    storage_len: usize,
    ops: *const vio_console_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let table = match unsafe { self::ops(ops) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage, storage_len, Kind::Console, out, || {
            if table.tx.is_none() {
                return Err(VIO_EINVAL);
            }
            Ok(Console::new([CConsole {
                ops: table,
                ctx: Ctx(ctx),
            }]))
        })
    }
}

#[cfg(feature = "i2c")]
/// An I2C adapter device (virtio-i2c, ID 34, 7-bit addresses): each
/// transaction the driver sends reaches `ops->transfer` as one message
/// list (at most 8 messages, 256 bytes together; more is answered
/// `VIRTIO_I2C_MSG_ERR` without a call).
///
/// Returns 0, or as `vio_rng_init` (`transfer` is required).
///
/// # Safety
/// As for `vio_rng_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_i2c_init(
    storage: *mut c_void,
    storage_len: usize,
    ops: *const vio_i2c_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let table = match unsafe { self::ops(ops) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage, storage_len, Kind::I2c, out, || {
            let transfer = table.transfer.ok_or(VIO_EINVAL)?;
            Ok(I2cBody::new(CI2c {
                transfer,
                ctx: Ctx(ctx),
            })
            .with_queue_size(VIO_MAX_QUEUE_SIZE))
        })
    }
}

#[cfg(feature = "gpio")]
/// A GPIO device (virtio-gpio, ID 41) with interrupts (`F_IRQ`). It
/// reports `VIO_GPIO_MAX_LINES` lines; `lines` (1 ..= that) are served by
/// the callbacks, the others answer errors. Edges come from
/// `vio_gpio_irq`, and (without `VIO_GPIO_PLATFORM_EVENTS` in `flags`)
/// also from reading enabled input lines with `get` at each poll.
///
/// Returns 0, or as `vio_rng_init` (all three callbacks are required);
/// `VIO_ERANGE` for `lines` 0 or above `VIO_GPIO_MAX_LINES`, `VIO_EINVAL`
/// for unknown flags.
///
/// # Safety
/// As for `vio_rng_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_gpio_init(
    storage: *mut c_void,
    storage_len: usize,
    lines: u16,
    flags: u32,
    ops: *const vio_gpio_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let table = match unsafe { self::ops(ops) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage, storage_len, Kind::Gpio, out, || {
            if lines == 0 || lines > VIO_GPIO_MAX_LINES {
                return Err(VIO_ERANGE);
            }
            if flags & !VIO_GPIO_PLATFORM_EVENTS != 0 {
                return Err(VIO_EINVAL);
            }
            let (Some(get), Some(set), Some(direction)) = (table.get, table.set, table.direction)
            else {
                return Err(VIO_EINVAL);
            };
            let bank = CGpio {
                get,
                set,
                direction,
                lines,
                ctx: Ctx(ctx),
            };
            let gpio = GpioBody::new(bank)
                .map_err(|_| VIO_EINVAL)?
                .with_queue_size(VIO_MAX_QUEUE_SIZE);
            Ok(if flags & VIO_GPIO_PLATFORM_EVENTS != 0 {
                gpio.with_platform_events()
            } else {
                gpio
            })
        })
    }
}

#[cfg(feature = "gpio")]
/// Reports that GPIO `line` is now at `level` (0 or non-zero), e.g. from
/// the pin's interrupt handler. Lock-free: callable from any interrupt,
/// also while a transport is inside a call. The edge is delivered (to an
/// unmasked line whose trigger takes it) at the transport's next call:
/// call `vio_mmio_poll` / `vio_shm_poll` after it.
///
/// Returns 0; `VIO_EINVAL` (NULL), `VIO_EBADF` (not a live GPIO device),
/// `VIO_ERANGE` (`line` ≥ `VIO_GPIO_MAX_LINES`).
///
/// # Safety
/// `dev` is null or points to at least 4 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_gpio_irq(dev: *mut vio_dev, line: u16, level: u8) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let hdr = unsafe { handle::<DevHeader>(dev.cast()) }?;
        if hdr.kind != Kind::Gpio {
            return Err(VIO_EBADF);
        }
        if line >= VIO_GPIO_MAX_LINES {
            return Err(VIO_ERANGE);
        }
        let bit = 1u32 << line;
        if level != 0 {
            hdr.level.fetch_or(bit, Ordering::AcqRel);
            hdr.rise.fetch_or(bit, Ordering::AcqRel);
        } else {
            hdr.level.fetch_and(!bit, Ordering::AcqRel);
            hdr.fall.fetch_or(bit, Ordering::AcqRel);
        }
        Ok(VIO_OK)
    })();
    rc(r)
}

/// Ends a device; its storage may then be reused. `VIO_EBUSY` while a
/// transport holds it, `VIO_EBADF` for a handle that is not a live device.
///
/// # Safety
/// `dev` is null or points to at least 4 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vio_dev_deinit(dev: *mut vio_dev) -> c_int {
    let r = (|| {
        // SAFETY: the caller's contract.
        let hdr = unsafe { handle::<DevHeader>(dev.cast()) }?;
        if hdr.claimed.swap(true, Ordering::AcqRel) {
            return Err(VIO_EBUSY);
        }
        hdr.magic.store(0, Ordering::Release);
        hdr.claimed.store(false, Ordering::Release);
        Ok(VIO_OK)
    })();
    rc(r)
}

#[cfg(feature = "generic")]
/// The generic device's init, here so all device kinds share `place`.
///
/// # Safety
/// As for `vio_rng_init`.
pub(crate) unsafe fn place_generic(
    storage_ptr: *mut c_void,
    storage_len: usize,
    cfg: *const vio_generic_cfg,
    ops: *const crate::backend::vio_generic_ops,
    ctx: *mut c_void,
    out: *mut *mut vio_dev,
) -> c_int {
    // SAFETY: the caller's contract.
    let (table, cfg) = match unsafe { (self::ops(ops), self::ops(cfg)) } {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    // SAFETY: the caller's contract.
    unsafe {
        place(storage_ptr, storage_len, Kind::Generic, out, || {
            GenericBody::new(cfg, table, Ctx(ctx))
        })
    }
}
