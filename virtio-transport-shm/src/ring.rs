//! The single-producer single-consumer message rings.
//!
//! Each end owns one [`Producer`] and one [`Consumer`]. A producer writes a
//! whole slot, then publishes it with a release store of its index; a
//! consumer reads the peer's index with an acquire load, copies the slot
//! out (it never looks at the slot again: copy, then validate), then
//! releases the slot with a release store of its own index. Each side keeps
//! the index it writes in a private copy: what the peer writes there is
//! never read back.

use core::fmt;

use virtio_core::memory::{GuestMemory, MemoryError};

use crate::MAX_MSG_SIZE;
use crate::layout::{Layout, offset};

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RingError {
    /// No free slot (producer side).
    Full,
    /// The message does not fit a slot, or is shorter than a header.
    BadLength(usize),
    /// The peer's index is more than a ring's worth away from ours: the
    /// peer is broken or hostile. A consumer drops everything published
    /// (it catches up with the producer index) and goes on.
    Corrupt {
        /// The peer's index.
        peer: u16,
        /// Our index.
        ours: u16,
    },
    /// The window refused an access.
    Memory(MemoryError),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("message ring full"),
            Self::BadLength(n) => write!(f, "message of {n} bytes does not fit a slot"),
            Self::Corrupt { peer, ours } => {
                write!(f, "peer ring index {peer} is impossible from ours ({ours})")
            }
            Self::Memory(e) => write!(f, "message ring access failed: {e}"),
        }
    }
}

impl core::error::Error for RingError {}

impl From<MemoryError> for RingError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

/// Which ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Direction {
    /// Ring A, driver → device.
    ToDevice,
    /// Ring B, device → driver.
    ToDriver,
}

/// Where one ring lives in the window. Offsets, not addresses: the window
/// is at most 4 GiB (`Layout` keeps u32 offsets) and the index fields sit
/// in the first 64 bytes, so the state is 12 bytes, not 32.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    slots_at: u32,
    slots: u16,
    slot_size: u16,
    prod_at: u8,
    cons_at: u8,
}

impl Geometry {
    fn new(layout: &Layout, dir: Direction) -> Self {
        let (slots_at, prod_at, cons_at) = match dir {
            Direction::ToDevice => (
                layout.to_device_off(),
                offset::TO_DEVICE_PROD,
                offset::TO_DEVICE_CONS,
            ),
            Direction::ToDriver => (
                layout.to_driver_off(),
                offset::TO_DRIVER_PROD,
                offset::TO_DRIVER_CONS,
            ),
        };
        // A layout's offsets fit (it checks the window against u32); were
        // one not to, the ring would point outside the window and every
        // access would fail its bounds check.
        let narrow = |v: u64| u8::try_from(v).unwrap_or(u8::MAX);
        Self {
            slots_at: u32::try_from(slots_at).unwrap_or(u32::MAX),
            slots: layout.slots(),
            slot_size: layout.slot_size(),
            prod_at: narrow(prod_at),
            cons_at: narrow(cons_at),
        }
    }

    fn prod_at(&self) -> u64 {
        u64::from(self.prod_at)
    }

    fn cons_at(&self) -> u64 {
        u64::from(self.cons_at)
    }

    fn slot_addr(&self, index: u16) -> u64 {
        // slots is a power of two, so the mask is the modulo; the product
        // is below the window length, which fits a u32.
        let i = u64::from(index & self.slots.wrapping_sub(1));
        u64::from(self.slots_at).wrapping_add(i.wrapping_mul(u64::from(self.slot_size)))
    }
}

/// The producer side of one ring.
#[derive(Clone, Debug)]
pub struct Producer {
    g: Geometry,
    prod: u16,
}

impl Producer {
    /// The producer of `dir` in a window laid out as `layout`, starting at
    /// index 0 (a freshly initialised window).
    pub fn new(layout: &Layout, dir: Direction) -> Self {
        Self {
            g: Geometry::new(layout, dir),
            prod: 0,
        }
    }

    /// Free slots as of now.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] if the consumer's index is impossible, or a
    /// memory error.
    pub fn free<W: GuestMemory>(&self, window: &W) -> Result<u16, RingError> {
        let cons = window.load_u16_acquire(self.g.cons_at())?;
        let used = self.prod.wrapping_sub(cons);
        if used > self.g.slots {
            return Err(RingError::Corrupt {
                peer: cons,
                ours: self.prod,
            });
        }
        Ok(self.g.slots.wrapping_sub(used))
    }

    /// Writes `msg` into the next slot and publishes it (release store).
    ///
    /// # Errors
    /// [`RingError::Full`], [`RingError::BadLength`] (shorter than 8 or
    /// longer than a slot), [`RingError::Corrupt`], or a memory error;
    /// nothing is published then.
    pub fn push<W: GuestMemory>(&mut self, window: &W, msg: &[u8]) -> Result<(), RingError> {
        if msg.len() < 8 || msg.len() > usize::from(self.g.slot_size) {
            return Err(RingError::BadLength(msg.len()));
        }
        if self.free(window)? == 0 {
            return Err(RingError::Full);
        }
        window.write(self.g.slot_addr(self.prod), msg)?;
        self.prod = self.prod.wrapping_add(1);
        window.store_u16_release(self.g.prod_at(), self.prod)?;
        Ok(())
    }
}

/// A message copied out of a slot.
#[derive(Clone)]
pub struct Slot {
    buf: [u8; MAX_MSG_SIZE],
    len: usize,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            buf: [0; MAX_MSG_SIZE],
            len: 0,
        }
    }
}

impl Slot {
    /// The slot's bytes (the whole slot; the message header says how many
    /// of them are the message).
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// What [`Consumer::pop`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Popped {
    /// The ring was full before this slot was released: ring the
    /// producer's doorbell so it learns there is room.
    pub was_full: bool,
}

/// The consumer side of one ring.
#[derive(Clone, Debug)]
pub struct Consumer {
    g: Geometry,
    cons: u16,
}

impl Consumer {
    /// The consumer of `dir` in a window laid out as `layout`, starting at
    /// index 0.
    pub fn new(layout: &Layout, dir: Direction) -> Self {
        Self {
            g: Geometry::new(layout, dir),
            cons: 0,
        }
    }

    /// Messages published and not yet taken.
    ///
    /// # Errors
    /// [`RingError::Corrupt`] or a memory error.
    pub fn pending<W: GuestMemory>(&self, window: &W) -> Result<u16, RingError> {
        let prod = window.load_u16_acquire(self.g.prod_at())?;
        let avail = prod.wrapping_sub(self.cons);
        if avail > self.g.slots {
            return Err(RingError::Corrupt {
                peer: prod,
                ours: self.cons,
            });
        }
        Ok(avail)
    }

    /// Copies the next published slot into `out` and releases it; `None`
    /// when the ring is empty.
    ///
    /// # Errors
    /// [`RingError::Corrupt`]: the producer index is impossible; everything
    /// published is dropped (our index catches up with it) so the ring can
    /// go on. A memory error.
    pub fn pop<W: GuestMemory>(
        &mut self,
        window: &W,
        out: &mut Slot,
    ) -> Result<Option<Popped>, RingError> {
        let avail = match self.pending(window) {
            Ok(n) => n,
            Err(RingError::Corrupt { peer, ours }) => {
                self.cons = peer;
                window.store_u16_release(self.g.cons_at(), peer)?;
                return Err(RingError::Corrupt { peer, ours });
            }
            Err(e) => return Err(e),
        };
        if avail == 0 {
            return Ok(None);
        }
        let len = usize::from(self.g.slot_size).min(MAX_MSG_SIZE);
        let buf = out.buf.get_mut(..len).unwrap_or_default();
        window.read(self.g.slot_addr(self.cons), buf)?;
        out.len = len;
        self.cons = self.cons.wrapping_add(1);
        window.store_u16_release(self.g.cons_at(), self.cons)?;
        Ok(Some(Popped {
            was_full: avail == self.g.slots,
        }))
    }
}
