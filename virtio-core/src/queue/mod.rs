//! Device-side virtqueues.
//!
//! A device holds one queue engine per virtqueue and drives it in four steps:
//!
//! 1. [`SplitQueue::pop`] reads the next available chain, walks and validates
//!    every descriptor once (direct and indirect) and fills a [`Chain`] the
//!    caller owns: a snapshot of the chain's segments. Nothing is read from
//!    the descriptor table again, so a driver rewriting descriptors
//!    mid-request cannot change what was validated. The chain is filled in
//!    place, so a request costs what its segments cost, not the capacity.
//! 2. The device parses its request with [`Chain::reader`] and writes its
//!    response with [`Chain::writer`]; the cursors hide how the driver split
//!    the buffer into descriptors.
//! 3. [`SplitQueue::push_used`] returns the chain (by its [`Head`]) with the
//!    number of bytes written. A chain can be held and completed later, in any
//!    order (unless `IN_ORDER` was negotiated). Each engine keeps an
//!    in-flight table (one entry per descriptor, capacity `S`), so it accepts
//!    a head exactly once and refuses one it never handed out
//!    ([`QueueError::NotInFlight`]); a used length above the chain's
//!    writable length is clamped to it; a failed completion changes nothing.
//! 4. [`SplitQueue::publish_used`] makes a batch of used buffers visible with
//!    one index store and says whether the driver wants a notification.
//!
//! Malformed input never panics: [`SplitQueue::pop`] returns a
//! [`QueueError`]. If the error carries a [`Head`] ([`QueueError::head`]) the
//! chain was consumed from the available ring and the device must still
//! return it; the walk went on to the chain's end where it could, and
//! [`ChainError::salvage`] names the writable descriptors where an error
//! status can go, so a malformed request never reads as a success.
//! Errors without a head mean the ring itself is corrupt
//! ([`QueueError::needs_reset`]); nothing was consumed and the device should
//! enter `DEVICE_NEEDS_RESET`.
//!
//! [`vring_need_event`] and [`NotificationData`] are shared with the driver
//! side and the packed ring.

mod chain;
mod error;
mod inflight;
#[cfg(feature = "packed")]
mod packed;
mod position;
mod split;

pub use chain::{AccessError, Chain, Head, Reader, Salvage, Segment, Writer};
pub use error::{ChainError, ChainErrorKind, ConfigError, QueueError, RingArea};
#[cfg(feature = "packed")]
pub use packed::PackedQueue;
pub use position::RingPosition;
pub use split::SplitQueue;

use crate::memory::GuestMemory;
use crate::spec::Features;

/// One virtqueue of up to `S` descriptors in whichever ring format the
/// driver negotiated.
///
/// A device holds a `Queue` per virtqueue and never needs to know which
/// format it is: [`Queue::new`] picks the engine from
/// [`Features::RING_PACKED`], and every method forwards to it (enum
/// dispatch, no trait objects). Without the `packed` cargo feature there is
/// only the split engine (the packed one is not compiled or linked) and
/// [`Queue::new`] refuses `RING_PACKED` ([`ConfigError::PackedNotCompiled`]). `S` sizes the in-flight table that makes
/// every completion checked: three bytes per descriptor.
#[derive(Clone, Debug)]
pub enum Queue<const S: usize> {
    /// A split ring (virtio 1.4 §"Split Virtqueues").
    Split(SplitQueue<S>),
    /// A packed ring (virtio 1.4 §"Packed Virtqueues"); cargo feature
    /// `packed`.
    #[cfg(feature = "packed")]
    Packed(PackedQueue<S>),
}

/// Forwards a call to whichever engine the queue holds.
macro_rules! dispatch {
    ($self:expr, $q:ident => $call:expr) => {
        match $self {
            Queue::Split($q) => $call,
            #[cfg(feature = "packed")]
            Queue::Packed($q) => $call,
        }
    };
}

impl<const S: usize> Queue<S> {
    /// Builds the engine for the negotiated ring format.
    ///
    /// # Errors
    /// [`ConfigError`] if the configuration does not suit the format.
    pub fn new<M: GuestMemory>(
        mem: &M,
        config: QueueConfig,
        features: Features,
    ) -> Result<Self, ConfigError> {
        if features.contains(Features::RING_PACKED) {
            #[cfg(feature = "packed")]
            return PackedQueue::new(mem, config, features).map(Self::Packed);
            #[cfg(not(feature = "packed"))]
            return Err(ConfigError::PackedNotCompiled);
        } else {
            SplitQueue::new(mem, config, features).map(Self::Split)
        }
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        dispatch!(self, q => q.size())
    }

    /// Takes and validates the next available chain into `chain`; `false`
    /// when there is none. See [`SplitQueue::pop`] and [`PackedQueue::pop`].
    ///
    /// # Errors
    /// [`QueueError::Chain`] for a malformed chain the device must still
    /// complete; other errors mean the ring is corrupt.
    #[inline]
    pub fn pop<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        chain: &mut Chain<N>,
    ) -> Result<bool, QueueError> {
        dispatch!(self, q => q.pop(mem, chain))
    }

    /// Takes the chain at `head` again without reading the available ring
    /// (a restarted backend's resubmission, [`crate::device::Journal`]);
    /// see [`SplitQueue::resubmit`]. A packed ring has no descriptor table
    /// to find a chain in by its id: `Ok(false)`, nothing taken.
    ///
    /// # Errors
    /// As [`SplitQueue::resubmit`].
    pub fn resubmit<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        head: u16,
        chain: &mut Chain<N>,
    ) -> Result<bool, QueueError> {
        match self {
            Queue::Split(q) => q.resubmit(mem, head, chain),
            #[cfg(feature = "packed")]
            Queue::Packed(_) => {
                let _ = (mem, head, chain);
                Ok(false)
            }
        }
    }

    /// Where the next used buffer goes: split, the used index after every
    /// push so far (after [`Self::publish_used`], the driver's `used.idx`);
    /// packed, the used position as `slot | wrap << 15`.
    pub fn next_used(&self) -> u16 {
        match self {
            Queue::Split(q) => q.next_used(),
            #[cfg(feature = "packed")]
            Queue::Packed(q) => q.next_used().to_u16(),
        }
    }

    /// Chains popped and not yet returned.
    pub fn in_flight(&self) -> u16 {
        dispatch!(self, q => q.in_flight())
    }

    /// Returns a buffer with `written` bytes written; see
    /// [`SplitQueue::push_used`].
    ///
    /// # Errors
    /// As for the engine's `push_used`.
    #[inline]
    pub fn push_used<M: GuestMemory>(
        &mut self,
        mem: &M,
        head: Head,
        written: u32,
    ) -> Result<(), QueueError> {
        dispatch!(self, q => q.push_used(mem, head, written))
    }

    /// Publishes the pushed buffers and says whether to notify the driver;
    /// see [`SplitQueue::publish_used`].
    ///
    /// # Errors
    /// [`QueueError::Ring`] if a ring is unreachable.
    pub fn publish_used<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        dispatch!(self, q => q.publish_used(mem))
    }

    /// Asks the driver to stop notifying; see
    /// [`SplitQueue::disable_notification`].
    ///
    /// # Errors
    /// [`QueueError::Ring`] if a ring is unreachable.
    pub fn disable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        dispatch!(self, q => q.disable_notification(mem))
    }

    /// Asks the driver to notify again and re-checks for buffers added in
    /// the meantime; see [`SplitQueue::enable_notification`].
    ///
    /// # Errors
    /// As for the engine's `enable_notification`.
    pub fn enable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        dispatch!(self, q => q.enable_notification(mem))
    }

    /// Whether the driver has made buffers available that the device has
    /// not taken.
    ///
    /// # Errors
    /// As for `pop`, for a corrupt or unreachable ring.
    pub fn has_available<M: GuestMemory>(&self, mem: &M) -> Result<bool, QueueError> {
        match self {
            Self::Split(q) => Ok(q.pending(mem)? > 0),
            #[cfg(feature = "packed")]
            Self::Packed(q) => q.has_available(mem),
        }
    }

    /// True for a packed ring.
    pub fn is_packed(&self) -> bool {
        #[cfg(feature = "packed")]
        return matches!(self, Self::Packed(_));
        #[cfg(not(feature = "packed"))]
        return false;
    }

    /// Forgets all ring state (queue or device reset).
    pub fn reset(&mut self) {
        dispatch!(self, q => q.reset())
    }
}

/// Where the driver placed a virtqueue, as the transport's queue registers
/// (or messages) give it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueConfig {
    /// Number of descriptors in the ring (`QueueSize`).
    pub size: u16,
    /// Guest address of the Descriptor Area (the descriptor table).
    pub desc_addr: u64,
    /// Guest address of the Driver Area (split: the available ring).
    pub driver_addr: u64,
    /// Guest address of the Device Area (split: the used ring).
    pub device_addr: u64,
}

/// Most buffer descriptors one walk reads: the queue size, or the chain
/// capacity when that is larger (the indirect-table tolerance of
/// [`SplitQueue::pop`]).
#[inline]
fn walk_limit(size: u16, capacity: usize) -> u32 {
    u32::from(size).max(u32::try_from(capacity).unwrap_or(u32::MAX))
}

/// Checks each ring area `(area, address, alignment, length)` is aligned
/// and wholly inside `mem`: the placement rules both ring formats share.
fn check_areas<M: GuestMemory>(
    mem: &M,
    areas: &[(RingArea, u64, u64, u64)],
) -> Result<(), ConfigError> {
    for &(area, addr, align, len) in areas {
        // Alignments are powers of two: a mask, not a 64-bit division
        // (which costs a firmware image most of a KiB of runtime library).
        if addr & align.wrapping_sub(1) != 0 {
            return Err(ConfigError::Misaligned { area, addr });
        }
        mem.check_range(addr, len)
            .map_err(|error| ConfigError::OutOfMemory { area, error })?;
    }
    Ok(())
}

/// The EVENT_IDX rule: should the other side be notified now that the index
/// moved from `old` to `new`, given it asked to hear about `event`?
///
/// True iff `event` lies in `old .. new` (modulo 2^16), i.e. the entry at
/// index `event` was written by this update (virtio 1.4 §"Used Buffer Notification Suppression",
/// `vring_need_event` in `virtio-queue.h`).
#[inline]
pub const fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The value of a driver notification when `VIRTIO_F_NOTIFICATION_DATA` is
/// negotiated: `le32 { vq_index: 16, next_off: 15, next_wrap: 1 }`
/// (virtio 1.4 §"Driver Notifications" Driver Notifications).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NotificationData {
    /// The queue notified (or the device-supplied value under
    /// `NOTIF_CONFIG_DATA`).
    pub vq_index: u16,
    /// Split ring: bits 0–14 of the available index. Packed ring: the offset
    /// in the ring where the next available descriptor will be written.
    pub next_off: u16,
    /// Split ring: bit 15 of the available index. Packed ring: the driver's
    /// wrap counter.
    pub next_wrap: bool,
}

impl NotificationData {
    /// Decodes the 32-bit value the driver wrote (already in host order, as
    /// a transport register read gives it).
    pub const fn from_u32(value: u32) -> Self {
        Self {
            vq_index: value as u16,
            next_off: ((value >> 16) & 0x7fff) as u16,
            next_wrap: value >> 31 != 0,
        }
    }

    /// Encodes the value a driver writes.
    pub const fn to_u32(self) -> u32 {
        self.vq_index as u32
            | ((self.next_off as u32 & 0x7fff) << 16)
            | ((self.next_wrap as u32) << 31)
    }

    /// For a split ring: the driver's new available index (`next_off` with
    /// `next_wrap` as bit 15).
    pub const fn split_avail_idx(self) -> u16 {
        (self.next_off & 0x7fff) | ((self.next_wrap as u16) << 15)
    }
}

#[cfg(all(test, feature = "driver"))]
mod accounting_tests;

/// Tests pop into a fresh chain and get it back by value.
#[cfg(test)]
pub(crate) trait TakeChain {
    fn take<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
    ) -> Result<Option<Chain<N>>, QueueError>;
}

#[cfg(test)]
macro_rules! take_chain {
    ($($t:ident),+) => {$(
        impl<const S: usize> TakeChain for $t<S> {
            fn take<M: GuestMemory, const N: usize>(
                &mut self,
                mem: &M,
            ) -> Result<Option<Chain<N>>, QueueError> {
                let mut chain = Chain::new();
                Ok(self.pop(mem, &mut chain)?.then_some(chain))
            }
        }
    )+};
}
#[cfg(test)]
take_chain!(SplitQueue, Queue);
#[cfg(all(test, feature = "packed"))]
take_chain!(PackedQueue);
