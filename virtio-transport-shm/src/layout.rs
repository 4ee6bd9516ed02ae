//! The window layout (the [crate docs](crate) draw it) and the data-area
//! memory the device serves its queues from.

use virtio_core::memory::{GuestMemory, MemoryError};

use crate::error::{AttachError, LayoutError};
use crate::{MAX_MSG_SIZE, MIN_MSG_SIZE};

/// `magic`: the bytes `V M S G` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VMSG");
/// Layout version described in the crate docs.
pub const VERSION: u16 = 1;
/// Bytes of the header; ring A's slots start here.
pub const HEADER_LEN: u16 = 64;

/// Header field offsets.
pub mod offset {
    /// `le32 magic`.
    pub const MAGIC: u64 = 0x00;
    /// `le16 version`.
    pub const VERSION: u64 = 0x04;
    /// `le16 header_len`.
    pub const HEADER_LEN: u64 = 0x06;
    /// `le32 window_len`.
    pub const WINDOW_LEN: u64 = 0x08;
    /// `le16 slot_size`.
    pub const SLOT_SIZE: u64 = 0x0c;
    /// `le16 slots`.
    pub const SLOTS: u64 = 0x0e;
    /// `le32 to_device_off`.
    pub const TO_DEVICE_OFF: u64 = 0x10;
    /// `le32 to_driver_off`.
    pub const TO_DRIVER_OFF: u64 = 0x14;
    /// `le32 data_off`.
    pub const DATA_OFF: u64 = 0x18;
    /// `le32 data_len`.
    pub const DATA_LEN: u64 = 0x1c;
    /// `le16` producer index of ring A (driver→device), written by the driver.
    pub const TO_DEVICE_PROD: u64 = 0x20;
    /// `le16` consumer index of ring A, written by the device.
    pub const TO_DEVICE_CONS: u64 = 0x24;
    /// `le16` producer index of ring B (device→driver), written by the device.
    pub const TO_DRIVER_PROD: u64 = 0x28;
    /// `le16` consumer index of ring B, written by the driver.
    pub const TO_DRIVER_CONS: u64 = 0x2c;
}

/// A window layout: ring depth, slot size and data area size, with every
/// offset computed once. Both ends are built from the same `Layout`
/// (typically a `const`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    slots: u16,
    slot_size: u16,
    to_driver_off: u32,
    data_off: u32,
    data_len: u32,
    window_len: u32,
}

impl Layout {
    /// A layout with `slots` message slots of `slot_size` bytes per ring and
    /// a data area of `data_len` bytes.
    ///
    /// # Errors
    /// [`LayoutError`] if a size is out of range (see its variants).
    pub const fn new(slots: u16, slot_size: u16, data_len: u32) -> Result<Self, LayoutError> {
        if slots == 0 || !slots.is_power_of_two() || slots > 32768 {
            return Err(LayoutError::Slots(slots));
        }
        if !slot_size.is_multiple_of(8)
            || (slot_size as usize) < MIN_MSG_SIZE
            || (slot_size as usize) > MAX_MSG_SIZE
        {
            return Err(LayoutError::SlotSize(slot_size));
        }
        if data_len == 0 || !data_len.is_multiple_of(8) {
            return Err(LayoutError::DataLen(data_len));
        }
        // At most 32768 × 280 per ring: these fit a u64 without overflow.
        let ring = (slots as u64).wrapping_mul(slot_size as u64);
        let to_driver = (HEADER_LEN as u64).wrapping_add(ring);
        let end_rings = to_driver.wrapping_add(ring);
        let data_off = end_rings.wrapping_add(63) & !63;
        let window = data_off.wrapping_add(data_len as u64);
        if window > u32::MAX as u64 {
            return Err(LayoutError::TooLarge);
        }
        Ok(Self {
            slots,
            slot_size,
            to_driver_off: to_driver as u32,
            data_off: data_off as u32,
            data_len,
            window_len: window as u32,
        })
    }

    /// Slots per ring.
    pub const fn slots(&self) -> u16 {
        self.slots
    }

    /// Bytes per slot: the bus's maximum message size.
    pub const fn slot_size(&self) -> u16 {
        self.slot_size
    }

    /// Offset of ring A's (driver→device) slots.
    pub const fn to_device_off(&self) -> u64 {
        HEADER_LEN as u64
    }

    /// Offset of ring B's (device→driver) slots.
    pub const fn to_driver_off(&self) -> u64 {
        self.to_driver_off as u64
    }

    /// Offset of the data area.
    pub const fn data_off(&self) -> u64 {
        self.data_off as u64
    }

    /// Bytes in the data area.
    pub const fn data_len(&self) -> u64 {
        self.data_len as u64
    }

    /// Total bytes of the window.
    pub const fn window_len(&self) -> u64 {
        self.window_len as u64
    }

    /// The header fields as `(offset, value, width in bytes)`.
    fn fields(&self) -> [(u64, u32, u8); 10] {
        [
            (offset::VERSION, u32::from(VERSION), 2),
            (offset::HEADER_LEN, u32::from(HEADER_LEN), 2),
            (offset::WINDOW_LEN, self.window_len, 4),
            (offset::SLOT_SIZE, u32::from(self.slot_size), 2),
            (offset::SLOTS, u32::from(self.slots), 2),
            (offset::TO_DEVICE_OFF, u32::from(HEADER_LEN), 4),
            (offset::TO_DRIVER_OFF, self.to_driver_off, 4),
            (offset::DATA_OFF, self.data_off, 4),
            (offset::DATA_LEN, self.data_len, 4),
            (offset::MAGIC, MAGIC, 4),
        ]
    }
}

/// Initialises a window: zeroes the header and both rings, writes the
/// header and writes `magic` last. The creator calls this before the other
/// end attaches; the data area is left as it is.
///
/// # Errors
/// [`AttachError::WindowTooSmall`] or a memory error.
pub fn init<W: GuestMemory>(window: &W, layout: &Layout) -> Result<(), AttachError> {
    window
        .check_range(0, layout.window_len())
        .map_err(|_| AttachError::WindowTooSmall {
            need: layout.window_len(),
        })?;
    let zero = [0u8; 64];
    let mut at = 0u64;
    while at < layout.data_off() {
        let n = layout.data_off().saturating_sub(at).min(64);
        window.write(at, zero.get(..n as usize).unwrap_or_default())?;
        at = at.saturating_add(n);
    }
    for (off, value, width) in layout.fields() {
        let bytes = value.to_le_bytes();
        window.write(off, bytes.get(..usize::from(width)).unwrap_or_default())?;
    }
    window.fence();
    Ok(())
}

/// Checks that a window holds exactly `layout` (magic, version and every
/// size), as the end that did not create it does before attaching.
///
/// # Errors
/// [`AttachError`]: too small, no magic, or a header field that differs.
pub fn check<W: GuestMemory>(window: &W, layout: &Layout) -> Result<(), AttachError> {
    window
        .check_range(0, layout.window_len())
        .map_err(|_| AttachError::WindowTooSmall {
            need: layout.window_len(),
        })?;
    window.fence();
    let magic = read_field(window, offset::MAGIC, 4)?;
    if magic != MAGIC {
        return Err(AttachError::NoMagic(magic));
    }
    for (off, value, width) in layout.fields() {
        if read_field(window, off, width)? != value {
            return Err(AttachError::HeaderMismatch { offset: off });
        }
    }
    Ok(())
}

fn read_field<W: GuestMemory>(window: &W, off: u64, width: u8) -> Result<u32, MemoryError> {
    let mut bytes = [0u8; 4];
    window.read(off, bytes.get_mut(..usize::from(width)).unwrap_or_default())?;
    Ok(u32::from_le_bytes(bytes))
}

/// The device's guest memory: the window's data area and nothing else.
///
/// Addresses are window offsets. An access is served only if all of it lies
/// in `data_off .. data_off + data_len`; anything else — the header, the
/// message rings, beyond the window, an overflowing range — fails with
/// [`MemoryError::OutOfBounds`] / [`MemoryError::Overflow`] and touches
/// nothing, so no descriptor or queue address the driver writes can reach
/// outside the data area.
#[derive(Debug)]
pub struct DataArea<'w, W> {
    window: &'w W,
    start: u64,
    /// Last served offset (`start + len - 1`).
    last: u64,
}

impl<W> Clone for DataArea<'_, W> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<W> Copy for DataArea<'_, W> {}

impl<'w, W: GuestMemory> DataArea<'w, W> {
    /// The data area of `layout` in `window`.
    pub fn new(window: &'w W, layout: &Layout) -> Self {
        Self {
            window,
            start: layout.data_off(),
            // data_len ≥ 8 and the window fits a u32.
            last: layout
                .data_off()
                .wrapping_add(layout.data_len())
                .wrapping_sub(1),
        }
    }

    /// First offset served.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last offset served.
    pub fn end(&self) -> u64 {
        self.last.wrapping_add(1)
    }

    fn check(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        let last = len
            .checked_sub(1)
            .and_then(|l| addr.checked_add(l))
            .ok_or(MemoryError::Overflow { addr, len })?;
        if addr < self.start || last > self.last {
            return Err(MemoryError::OutOfBounds { addr, len });
        }
        Ok(())
    }
}

impl<W: GuestMemory> GuestMemory for DataArea<'_, W> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.check(addr, buf.len() as u64)?;
        self.window.read(addr, buf)
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.check(addr, buf.len() as u64)?;
        self.window.write(addr, buf)
    }

    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.check(addr, 2)?;
        self.window.load_u16_acquire(addr)
    }

    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.check(addr, 2)?;
        self.window.store_u16_release(addr, value)
    }

    fn fence(&self) {
        self.window.fence();
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.check(addr, len)?;
        self.window.check_range(addr, len)
    }
}

/// A bump allocator over the data area, for the driver end to place rings
/// and buffers (a driver may place them however it likes).
#[derive(Clone, Copy, Debug)]
pub struct Bump {
    next: u64,
    end: u64,
}

impl Bump {
    /// Allocates from the whole data area of `layout`.
    pub fn new(layout: &Layout) -> Self {
        Self {
            next: layout.data_off(),
            end: layout.data_off().saturating_add(layout.data_len()),
        }
    }

    /// `len` bytes aligned to `align` (a power of two), as a window offset;
    /// `None` when the data area is used up.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let mask = align.checked_sub(1)?;
        let start = self.next.checked_add(mask)? & !mask;
        let end = start.checked_add(len)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }

    /// Bytes still free (before alignment).
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}
