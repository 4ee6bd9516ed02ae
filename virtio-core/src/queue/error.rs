//! What can go wrong on a queue, and what the device should do about it.

use core::fmt;

use super::{Head, Salvage};
use crate::memory::MemoryError;

/// One of the three parts of a ring, for errors that name one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RingArea {
    /// The Descriptor Area (descriptor table / packed descriptor ring).
    Descriptors,
    /// The Driver Area (split available ring / packed driver event suppression).
    Driver,
    /// The Device Area (split used ring / packed device event suppression).
    Device,
}

/// Why a queue configuration was refused when the queue was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// The queue size is 0.
    ZeroSize,
    /// A split ring's size must be a power of two (virtio 1.4 §"Split Virtqueues").
    SizeNotPowerOfTwo(u16),
    /// Queue sizes are at most 32768.
    SizeTooLarge(u16),
    /// An area is not aligned as the ring format requires (§"Split Virtqueues" table).
    Misaligned {
        /// The area.
        area: RingArea,
        /// Its guest address.
        addr: u64,
    },
    /// The size is above what the queue's in-flight table can track (the
    /// capacity `S` of the engine, [`super::Queue`]).
    SizeAboveCapacity {
        /// The queue size.
        size: u16,
        /// Entries the in-flight table holds.
        capacity: usize,
    },
    /// An area is not wholly inside guest memory.
    OutOfMemory {
        /// The area.
        area: RingArea,
        /// The memory error.
        error: MemoryError,
    },
    /// The driver negotiated `RING_PACKED` but this build has no packed
    /// engine (cargo feature `packed` off; the device core does not offer
    /// the bit then, so only a direct caller of [`super::Queue::new`] sees
    /// this).
    PackedNotCompiled,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => f.write_str("queue size is 0"),
            Self::SizeNotPowerOfTwo(s) => write!(f, "split queue size {s} is not a power of two"),
            Self::SizeTooLarge(s) => write!(f, "queue size {s} is above 32768"),
            Self::SizeAboveCapacity { size, capacity } => {
                write!(
                    f,
                    "queue size {size} is above the {capacity} chains this queue can track"
                )
            }
            Self::Misaligned { area, addr } => {
                write!(f, "{area:?} area at {addr:#x} is misaligned")
            }
            Self::OutOfMemory { area, error } => write!(f, "{area:?} area: {error}"),
            Self::PackedNotCompiled => f.write_str("packed ring not compiled in"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// What exactly is wrong with a descriptor chain.
///
/// The spec gives the device no rule for malformed chains; every one of these
/// breaks a driver MUST (named in each variant's doc). The device completes
/// the chain through [`ChainError::head`] instead of dropping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChainErrorKind {
    /// `next` links revisit a descriptor: more descriptors were visited than
    /// the table holds (§"The Virtqueue Descriptor Table": "loops in the descriptor chain are
    /// forbidden").
    Loop,
    /// More buffer descriptors than the queue size (§"Indirect Descriptors": "MUST NOT
    /// create a descriptor chain longer than the Queue Size").
    LongerThanQueue {
        /// The queue size.
        size: u16,
    },
    /// `next` names an entry beyond the table it is in.
    NextOutOfRange {
        /// The `next` value.
        next: u16,
        /// Entries in the table being walked.
        entries: u32,
    },
    /// INDIRECT set together with NEXT (§"Indirect Descriptors").
    IndirectWithNext,
    /// INDIRECT inside an indirect table (§"Indirect Descriptors").
    NestedIndirect,
    /// INDIRECT used although `VIRTIO_F_INDIRECT_DESC` was not negotiated.
    IndirectNotNegotiated,
    /// An indirect table whose length is zero or not a multiple of 16.
    IndirectTableLength {
        /// The length in bytes.
        len: u32,
    },
    /// The indirect table itself is not inside guest memory.
    IndirectTableOutOfMemory {
        /// Table address.
        addr: u64,
        /// Table length.
        len: u32,
    },
    /// A device-readable descriptor after a device-writable one (§"Message Framing").
    ReadableAfterWritable,
    /// A buffer not wholly inside guest memory.
    SegmentOutOfMemory {
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
    },
    /// The chain's total length is over `u32::MAX` (§"The Virtqueue Descriptor Table": "MUST NOT add
    /// a descriptor chain longer than 2^32 bytes").
    TotalLengthOverflow,
    /// Packed ring: a descriptor in the middle of a NEXT list is not
    /// available (§"Next Flag": the driver makes a list's first descriptor
    /// available only after the rest). The chain ends at the slot before.
    NotAvailableMidChain {
        /// The slot that was not available.
        slot: u16,
    },
    /// More non-empty segments than the `Chain<N>` the device asked for
    /// (the device's "reasonable limit" on chain length, §"Message Framing").
    TooManySegments {
        /// The capacity `N`.
        capacity: usize,
    },
}

impl fmt::Display for ChainErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Loop => f.write_str("descriptor chain loops"),
            Self::LongerThanQueue { size } => {
                write!(f, "descriptor chain is longer than the queue size {size}")
            }
            Self::NextOutOfRange { next, entries } => {
                write!(
                    f,
                    "next index {next} is outside a table of {entries} descriptors"
                )
            }
            Self::IndirectWithNext => f.write_str("descriptor has both INDIRECT and NEXT"),
            Self::NestedIndirect => f.write_str("INDIRECT descriptor inside an indirect table"),
            Self::IndirectNotNegotiated => {
                f.write_str("INDIRECT descriptor but VIRTIO_F_INDIRECT_DESC was not negotiated")
            }
            Self::IndirectTableLength { len } => {
                write!(
                    f,
                    "indirect table length {len} is zero or not a multiple of 16"
                )
            }
            Self::IndirectTableOutOfMemory { addr, len } => {
                write!(
                    f,
                    "indirect table {addr:#x}+{len:#x} is outside guest memory"
                )
            }
            Self::ReadableAfterWritable => {
                f.write_str("device-readable descriptor after a device-writable one")
            }
            Self::SegmentOutOfMemory { addr, len } => {
                write!(f, "buffer {addr:#x}+{len:#x} is outside guest memory")
            }
            Self::TotalLengthOverflow => f.write_str("chain is longer than 2^32 - 1 bytes"),
            Self::NotAvailableMidChain { slot } => {
                write!(
                    f,
                    "descriptor at slot {slot} in the middle of a chain is not available"
                )
            }
            Self::TooManySegments { capacity } => {
                write!(f, "chain has more than {capacity} segments")
            }
        }
    }
}

/// A malformed chain, with the head the device needs to return it and the
/// device-writable areas the walk could still locate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChainError {
    pub(crate) head: Head,
    pub(crate) kind: ChainErrorKind,
    pub(crate) salvage: Salvage,
}

impl ChainError {
    /// The chain's head: pass it to `push_used` to return the buffer.
    pub fn head(&self) -> Head {
        self.head
    }

    /// What is wrong with the chain.
    pub fn kind(&self) -> ChainErrorKind {
        self.kind
    }

    /// Where the device can still write an error status: the chain's
    /// first writable descriptor and, when the walk reached the chain's
    /// end, its last descriptor if that is writable. Both were checked to
    /// lie inside guest memory. A malformed request must not read as a
    /// success, so a device with a status field writes an error there
    /// (the device core does it from [`crate::device::MalformedChain`]).
    pub fn salvage(&self) -> Salvage {
        self.salvage
    }
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chain with head {}: {}", self.head.id(), self.kind)
    }
}

impl core::error::Error for ChainError {}

/// Why a queue operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueError {
    /// One chain is malformed; it was consumed and must be completed
    /// through [`ChainError::head`]. The queue stays usable.
    Chain(ChainError),
    /// The driver's available index is more than the queue size ahead of the
    /// device: the ring is corrupt (a driver never exposes more buffers than
    /// the ring holds). Needs reset.
    AvailIndexTooFar {
        /// The driver's available index.
        avail_idx: u16,
        /// The device's next available index.
        next_avail: u16,
    },
    /// An available-ring entry names a descriptor beyond the table, so there
    /// is no valid head to return. Needs reset.
    HeadOutOfRange {
        /// The entry's value.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// A ring structure (not a buffer) could not be accessed. Needs reset.
    Ring {
        /// The area.
        area: RingArea,
        /// The memory error.
        error: MemoryError,
    },
    /// The device returned a head that is not a valid buffer id for this
    /// queue (a device bug, refused so the driver's ring is not corrupted).
    InvalidUsedId {
        /// The id passed to `push_used`.
        id: u16,
    },
    /// The device returned a head that is not in flight: never handed out
    /// by `pop`, or already completed (a device bug, refused so no buffer
    /// is completed twice; nothing is written).
    NotInFlight {
        /// The buffer id of the head.
        id: u16,
    },
    /// The driver made a buffer available that the device still holds
    /// (split: a head index in flight; packed: a buffer id in flight, or
    /// more slots in flight than the ring has). The ring is corrupt;
    /// nothing was consumed. Needs reset.
    HeadInFlight {
        /// The head index (split) or buffer id (packed).
        slot: u16,
    },
}

impl QueueError {
    /// The head of the malformed chain, when there is one to return.
    pub fn head(&self) -> Option<Head> {
        match self {
            Self::Chain(e) => Some(e.head),
            _ => None,
        }
    }

    /// True when the ring itself is corrupt or unreachable and the device
    /// should enter `DEVICE_NEEDS_RESET` (virtio 1.4 §"Device Status Field": the device
    /// SHOULD set it on an error it cannot recover from).
    pub fn needs_reset(&self) -> bool {
        matches!(
            self,
            Self::AvailIndexTooFar { .. }
                | Self::HeadOutOfRange { .. }
                | Self::Ring { .. }
                | Self::HeadInFlight { .. }
        )
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chain(e) => e.fmt(f),
            Self::AvailIndexTooFar {
                avail_idx,
                next_avail,
            } => write!(
                f,
                "available index {avail_idx} is more than the queue size ahead of {next_avail}"
            ),
            Self::HeadOutOfRange { head, size } => {
                write!(
                    f,
                    "available ring names descriptor {head} in a queue of {size}"
                )
            }
            Self::Ring { area, error } => write!(f, "{area:?} area: {error}"),
            Self::InvalidUsedId { id } => write!(f, "used id {id} is not a buffer of this queue"),
            Self::NotInFlight { id } => {
                write!(
                    f,
                    "used buffer {id} is not in flight (never popped, or already completed)"
                )
            }
            Self::HeadInFlight { slot } => {
                write!(
                    f,
                    "driver made descriptor {slot} available while the device holds it"
                )
            }
        }
    }
}

impl core::error::Error for QueueError {}

impl From<ChainError> for QueueError {
    fn from(e: ChainError) -> Self {
        Self::Chain(e)
    }
}
