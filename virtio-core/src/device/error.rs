//! Why the core refused a driver's request, and why it needs a reset.

use core::fmt;

use crate::queue::{ConfigError, QueueError};

/// Why a queue configuration write was refused (the transport decides how
/// to report it; on virtio-mmio the write is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum QueueSetupError {
    /// The queue index is not one of the device's queues.
    NoSuchQueue(u16),
    /// The queue is enabled: its configuration may not change
    /// (virtio 1.4 §"MMIO Device Register Layout": "When QueueReady is not
    /// zero, the driver MUST NOT access QueueSize, QueueDesc...").
    QueueEnabled(u16),
    /// The size is above the queue's maximum.
    SizeAboveMax {
        /// The size written.
        size: u32,
        /// The queue's maximum.
        max: u16,
    },
    /// A split ring was negotiated and the size is not a power of two.
    SizeNotPowerOfTwo(u16),
    /// `RING_RESET` was not negotiated, so a queue cannot be reset alone.
    RingResetNotNegotiated,
}

impl fmt::Display for QueueSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchQueue(q) => write!(f, "queue {q} does not exist"),
            Self::QueueEnabled(q) => write!(f, "queue {q} is enabled; its setup cannot change"),
            Self::SizeAboveMax { size, max } => {
                write!(f, "queue size {size} is above the maximum {max}")
            }
            Self::SizeNotPowerOfTwo(s) => {
                write!(f, "split queue size {s} is not a power of two")
            }
            Self::RingResetNotNegotiated => f.write_str("VIRTIO_F_RING_RESET was not negotiated"),
        }
    }
}

impl core::error::Error for QueueSetupError {}

/// Why `FEATURES_OK` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FeaturesError {
    /// The driver accepted bits the device did not offer (the bits).
    NotOffered(u64),
    /// The driver did not accept `VERSION_1`; this device has no legacy
    /// interface (virtio 1.4 §"Reserved Feature Bits": the device MAY fail).
    Version1Missing,
    /// The device refuses this combination (e.g. a feature without the one
    /// it depends on).
    Rejected,
}

impl fmt::Display for FeaturesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOffered(bits) => write!(f, "driver accepted unoffered features {bits:#x}"),
            Self::Version1Missing => f.write_str("driver did not accept VIRTIO_F_VERSION_1"),
            Self::Rejected => f.write_str("device rejects this feature combination"),
        }
    }
}

impl core::error::Error for FeaturesError {}

/// Why the device entered `DEVICE_NEEDS_RESET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NeedsResetCause {
    /// A queue's ring is corrupt or unreachable.
    Queue {
        /// The queue.
        queue: u16,
        /// What the engine reported.
        error: QueueError,
    },
    /// An enabled queue's configuration could not be built into a ring.
    QueueConfig {
        /// The queue.
        queue: u16,
        /// Why.
        error: ConfigError,
    },
    /// A malformed chain on a device whose rule is
    /// [`super::MalformedChain::NeedsReset`].
    MalformedChain {
        /// The queue.
        queue: u16,
        /// What the engine reported.
        error: QueueError,
    },
    /// The driver disabled a queue while the device held chains from it
    /// and enabled it again without a queue reset: those chains can never
    /// be returned (virtio 1.4 §"MMIO Device Register Layout": the device
    /// MUST NOT access a queue whose QueueReady is zero).
    AbandonedChains {
        /// The queue.
        queue: u16,
        /// Chains that were in flight.
        count: u16,
    },
    /// The device itself gave up.
    Device,
}

impl fmt::Display for NeedsResetCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue { queue, error } => write!(f, "queue {queue}: {error}"),
            Self::QueueConfig { queue, error } => write!(f, "queue {queue} setup: {error}"),
            Self::MalformedChain { queue, error } => {
                write!(f, "queue {queue}: malformed chain: {error}")
            }
            Self::AbandonedChains { queue, count } => write!(
                f,
                "queue {queue} was re-enabled without a reset while {count} chains were in flight"
            ),
            Self::Device => f.write_str("the device reported an unrecoverable error"),
        }
    }
}

impl core::error::Error for NeedsResetCause {}
