//! The C callback tables and the adapters that make them the ecosystem
//! traits the device models take (`rand_core::TryRng`, `BlockStorage`,
//! `embedded_io`, `embedded_hal::i2c::I2c`, `GpioBank`).
//!
//! No `unsafe` here: a callback is a plain `extern "C" fn` pointer, and
//! calling one is safe Rust; the contract that it is sound to call (it
//! exists for the object's life, honours the arguments) is taken on by the
//! `unsafe` init function that stored it ([`crate::ffi`]).

use core::ffi::{c_int, c_void};
use core::fmt;

#[cfg(feature = "i2c")]
use embedded_hal::i2c::{
    ErrorKind, ErrorType as I2cErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};
#[cfg(feature = "block")]
use virtio_devices::block::BlockStorage;
#[cfg(feature = "gpio")]
use virtio_devices::gpio::{Direction, GpioBank, LineError};

#[cfg(feature = "i2c")]
use crate::{VIO_I2C_NACK, VIO_I2C_NACK_DATA};

/// The C context pointer, passed back to every callback untouched.
#[derive(Clone, Copy, Debug)]
pub struct Ctx(pub *mut c_void);

// `Ctx` is an opaque value the library never dereferences; it only hands
// it back to the C code that gave it.
impl Ctx {
    #[allow(dead_code)]
    fn get(self) -> *mut c_void {
        self.0
    }
}

#[cfg(feature = "rng")]
/// Entropy device callbacks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_rng_ops {
    /// Fills `len` bytes at `buf` with entropy. Returns 0, or a negative
    /// value on failure (the request is then returned with the bytes filled
    /// so far). Required.
    pub fill: Option<extern "C" fn(ctx: *mut c_void, buf: *mut u8, len: usize) -> c_int>,
}

#[cfg(feature = "block")]
/// Block device callbacks. Sector numbers and counts are already checked
/// against the capacity; `len` is a non-zero multiple of 512.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_block_ops {
    /// Reads `len / 512` sectors from `sector` into `buf`. 0 or negative
    /// (the request fails with `VIRTIO_BLK_S_IOERR`). Required.
    pub read:
        Option<extern "C" fn(ctx: *mut c_void, sector: u64, buf: *mut u8, len: usize) -> c_int>,
    /// Writes `len / 512` sectors from `buf` at `sector`; stable when it
    /// returns 0. NULL for a read-only device (`VIRTIO_BLK_F_RO`).
    pub write:
        Option<extern "C" fn(ctx: *mut c_void, sector: u64, buf: *const u8, len: usize) -> c_int>,
    /// Commits written data. NULL: `VIRTIO_BLK_F_FLUSH` is not offered.
    pub flush: Option<extern "C" fn(ctx: *mut c_void) -> c_int>,
    /// Deallocates `sectors` sectors from `sector`. NULL: `DISCARD` is not
    /// offered.
    pub discard: Option<extern "C" fn(ctx: *mut c_void, sector: u64, sectors: u32) -> c_int>,
}

#[cfg(feature = "console")]
/// Console device callbacks (one port, no multiport).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_console_ops {
    /// Sends `len` bytes the driver transmitted. Returns the number of
    /// bytes taken (1..=len; it is called again for the rest), or negative
    /// on failure. Required.
    pub tx: Option<extern "C" fn(ctx: *mut c_void, buf: *const u8, len: usize) -> c_int>,
    /// Copies up to `len` bytes of input into `buf`. Returns the number
    /// copied (0 for none now) or negative. NULL: no input.
    pub rx: Option<extern "C" fn(ctx: *mut c_void, buf: *mut u8, len: usize) -> c_int>,
    /// Returns > 0 when input is waiting, 0 when not. NULL: input is
    /// looked for by calling `rx`.
    pub rx_ready: Option<extern "C" fn(ctx: *mut c_void) -> c_int>,
}

#[cfg(feature = "i2c")]
/// One I2C message of a transfer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_i2c_msg {
    /// The bytes to write, or room for the bytes read.
    pub buf: *mut u8,
    /// Length of `buf`.
    pub len: u32,
    /// `VIO_I2C_MSG_READ` for a read, 0 for a write.
    pub flags: u32,
}

#[cfg(feature = "i2c")]
/// I2C adapter callbacks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_i2c_ops {
    /// Runs `count` messages to the 7-bit address `addr` as one transaction
    /// (repeated starts between them, one stop at the end). Returns 0,
    /// `VIO_I2C_NACK` (address not acknowledged), `VIO_I2C_NACK_DATA` (data
    /// not acknowledged) or another negative value (bus error). Every
    /// answer but 0 answers the requests `VIRTIO_I2C_MSG_ERR`. Required.
    pub transfer: Option<
        extern "C" fn(ctx: *mut c_void, addr: u16, msgs: *mut vio_i2c_msg, count: usize) -> c_int,
    >,
}

#[cfg(feature = "gpio")]
/// GPIO callbacks. `line` is below the `ngpio` given at init.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_gpio_ops {
    /// Reads the line's level into `*value` (0 or 1). 0 or negative.
    /// Required.
    pub get: Option<extern "C" fn(ctx: *mut c_void, line: u16, value: *mut u8) -> c_int>,
    /// Drives an output line. 0 or negative. Required.
    pub set: Option<extern "C" fn(ctx: *mut c_void, line: u16, value: u8) -> c_int>,
    /// Sets the direction (`VIO_GPIO_DIR_NONE/OUT/IN`; `value` is the level
    /// an output starts at). 0 or negative (the line cannot). Required.
    pub direction:
        Option<extern "C" fn(ctx: *mut c_void, line: u16, direction: u8, value: u8) -> c_int>,
}

#[cfg(feature = "generic")]
/// Generic device callbacks.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types)]
pub struct vio_generic_ops {
    /// One validated request from `queue`. Read it with `vio_req_read`,
    /// answer with `vio_req_write`, finish with `vio_req_complete`. The
    /// handle is valid only during this call. Return 0 (a request not yet
    /// completed is completed with the bytes written so far) or negative:
    /// the request is returned with used length 0 and the device enters
    /// `DEVICE_NEEDS_RESET`. Required.
    pub request:
        Option<extern "C" fn(ctx: *mut c_void, queue: u16, req: *mut crate::ffi::vio_req) -> c_int>,
    /// Reads `len` bytes of the configuration space at `offset` into `buf`
    /// (bytes past the space are zero-filled already). NULL: the space
    /// reads as zeroes.
    pub read_config: Option<extern "C" fn(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize)>,
    /// The driver wrote configuration bytes. NULL: writes are ignored.
    pub write_config:
        Option<extern "C" fn(ctx: *mut c_void, offset: u32, buf: *const u8, len: usize)>,
    /// The device was reset: forget per-driver state. May be NULL.
    pub reset: Option<extern "C" fn(ctx: *mut c_void)>,
}

#[cfg(feature = "rng")]
/// Entropy from C.
#[derive(Debug)]
pub struct CRng {
    pub(crate) fill: extern "C" fn(*mut c_void, *mut u8, usize) -> c_int,
    pub(crate) ctx: Ctx,
}

/// The C generator failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendError(pub c_int);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend callback returned {}", self.0)
    }
}

impl core::error::Error for BackendError {}

#[cfg(feature = "rng")]
impl rand_core::TryRng for CRng {
    type Error = BackendError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        if dst.is_empty() {
            return Ok(());
        }
        match (self.fill)(self.ctx.get(), dst.as_mut_ptr(), dst.len()) {
            0 => Ok(()),
            e => Err(BackendError(e)),
        }
    }
}

#[cfg(feature = "block")]
/// Sectors from C.
#[derive(Debug)]
pub struct CBlock {
    pub(crate) ops: vio_block_ops,
    pub(crate) capacity: u64,
    pub(crate) ctx: Ctx,
}

#[cfg(feature = "block")]
fn status(rc: c_int) -> Result<(), BackendError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(BackendError(rc))
    }
}

#[cfg(feature = "block")]
impl BlockStorage for CBlock {
    type Error = BackendError;

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let read = self.ops.read.ok_or(BackendError(crate::VIO_EINVAL))?;
        status(read(self.ctx.get(), sector, buf.as_mut_ptr(), buf.len()))
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Self::Error> {
        let write = self.ops.write.ok_or(BackendError(crate::VIO_EINVAL))?;
        status(write(self.ctx.get(), sector, buf.as_ptr(), buf.len()))
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        match self.ops.flush {
            Some(flush) => status(flush(self.ctx.get())),
            None => Ok(()),
        }
    }

    fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), Self::Error> {
        match self.ops.discard {
            Some(discard) => status(discard(self.ctx.get(), sector, sectors)),
            None => Ok(()),
        }
    }
}

#[cfg(feature = "console")]
/// One console port in C.
#[derive(Debug)]
pub struct CConsole {
    pub(crate) ops: vio_console_ops,
    pub(crate) ctx: Ctx,
}

#[cfg(feature = "console")]
impl embedded_io::Error for BackendError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

#[cfg(feature = "console")]
impl embedded_io::ErrorType for CConsole {
    type Error = BackendError;
}

#[cfg(feature = "console")]
impl embedded_io::Read for CConsole {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some(rx) = self.ops.rx else {
            return Ok(0);
        };
        let rc = rx(self.ctx.get(), buf.as_mut_ptr(), buf.len());
        // A C answer above `len` is clamped: never trust it as a length.
        usize::try_from(rc)
            .map(|n| n.min(buf.len()))
            .map_err(|_| BackendError(rc))
    }
}

#[cfg(feature = "console")]
impl embedded_io::ReadReady for CConsole {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        match (self.ops.rx_ready, self.ops.rx) {
            (Some(ready), _) => Ok(ready(self.ctx.get()) > 0),
            (None, Some(_)) => Ok(true),
            (None, None) => Ok(false),
        }
    }
}

#[cfg(feature = "console")]
impl embedded_io::Write for CConsole {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let Some(tx) = self.ops.tx else {
            return Err(BackendError(crate::VIO_EINVAL));
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let rc = tx(self.ctx.get(), buf.as_ptr(), buf.len());
        match usize::try_from(rc) {
            // 0 would make `write_all` fail with WriteZero: an error too.
            Ok(n) if n > 0 => Ok(n.min(buf.len())),
            _ => Err(BackendError(rc)),
        }
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(feature = "i2c")]
/// Most messages of one I2C transaction handed to C.
pub const I2C_MSGS: usize = 8;
#[cfg(feature = "i2c")]
/// Most bytes of one I2C transaction.
pub const I2C_BYTES: usize = 256;

#[cfg(feature = "i2c")]
/// An I2C bus in C.
#[derive(Debug)]
pub struct CI2c {
    pub(crate) transfer: extern "C" fn(*mut c_void, u16, *mut vio_i2c_msg, usize) -> c_int,
    pub(crate) ctx: Ctx,
}

#[cfg(feature = "i2c")]
/// How a C transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct I2cFailure(c_int);

#[cfg(feature = "i2c")]
impl embedded_hal::i2c::Error for I2cFailure {
    fn kind(&self) -> ErrorKind {
        match self.0 {
            VIO_I2C_NACK => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            VIO_I2C_NACK_DATA => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data),
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(feature = "i2c")]
impl I2cErrorType for CI2c {
    type Error = I2cFailure;
}

#[cfg(feature = "i2c")]
impl I2c<SevenBitAddress> for CI2c {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let empty = vio_i2c_msg {
            buf: core::ptr::null_mut(),
            len: 0,
            flags: 0,
        };
        let mut msgs = [empty; I2C_MSGS];
        let mut count = 0usize;
        for (op, slot) in operations.iter_mut().zip(msgs.iter_mut()) {
            let (buf, flags) = match op {
                Operation::Read(b) => (&mut **b, crate::VIO_I2C_MSG_READ),
                Operation::Write(b) => {
                    // C gets a mutable pointer type for both directions; a
                    // write's bytes are only read (documented).
                    let len = b.len();
                    slot.buf = b.as_ptr().cast_mut();
                    slot.len = u32::try_from(len).map_err(|_| I2cFailure(crate::VIO_ERANGE))?;
                    slot.flags = 0;
                    count = count.saturating_add(1);
                    continue;
                }
            };
            slot.buf = buf.as_mut_ptr();
            slot.len = u32::try_from(buf.len()).map_err(|_| I2cFailure(crate::VIO_ERANGE))?;
            slot.flags = flags;
            count = count.saturating_add(1);
        }
        if count != operations.len() {
            return Err(I2cFailure(crate::VIO_ERANGE));
        }
        match (self.transfer)(self.ctx.get(), u16::from(address), msgs.as_mut_ptr(), count) {
            0 => Ok(()),
            e => Err(I2cFailure(e)),
        }
    }
}

#[cfg(feature = "gpio")]
/// GPIO lines in C.
#[derive(Debug)]
pub struct CGpio {
    pub(crate) get: extern "C" fn(*mut c_void, u16, *mut u8) -> c_int,
    pub(crate) set: extern "C" fn(*mut c_void, u16, u8) -> c_int,
    pub(crate) direction: extern "C" fn(*mut c_void, u16, u8, u8) -> c_int,
    pub(crate) lines: u16,
    pub(crate) ctx: Ctx,
}

#[cfg(feature = "gpio")]
impl CGpio {
    fn check(&self, line: u16) -> Result<(), LineError> {
        if line < self.lines {
            Ok(())
        } else {
            Err(LineError::Unsupported)
        }
    }
}

#[cfg(feature = "gpio")]
impl GpioBank for CGpio {
    fn set_direction(
        &mut self,
        line: u16,
        direction: Direction,
        value: bool,
    ) -> Result<(), LineError> {
        self.check(line)?;
        let d = match direction {
            Direction::None => crate::VIO_GPIO_DIR_NONE,
            Direction::Out => crate::VIO_GPIO_DIR_OUT,
            Direction::In => crate::VIO_GPIO_DIR_IN,
        };
        match (self.direction)(self.ctx.get(), line, d, u8::from(value)) {
            0 => Ok(()),
            _ => Err(LineError::Unsupported),
        }
    }

    fn get_value(&mut self, line: u16) -> Result<bool, LineError> {
        self.check(line)?;
        let mut v = 0u8;
        match (self.get)(self.ctx.get(), line, &mut v) {
            0 => Ok(v != 0),
            _ => Err(LineError::Pin),
        }
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<(), LineError> {
        self.check(line)?;
        match (self.set)(self.ctx.get(), line, u8::from(value)) {
            0 => Ok(()),
            _ => Err(LineError::Pin),
        }
    }
}
