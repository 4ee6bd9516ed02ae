//! What an invalid register access was, for the trap handler to log.

use core::fmt;

use virtio_core::device::QueueSetupError;

use crate::Width;

/// Why a register access was refused. Every invalid access has a defined
/// result: a read returns 0, a write changes nothing (see
/// [`crate::MmioTransport::read`] and [`crate::MmioTransport::write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MmioError {
    /// A control register (below 0x100) accessed with a width other than
    /// 32 bits (virtio 1.4 §"MMIO Device Register Layout": the driver MUST
    /// only use 32 bit wide and aligned accesses).
    BadWidth {
        /// The offset.
        offset: u32,
        /// The width used.
        width: Width,
    },
    /// An access not aligned to its width.
    Unaligned {
        /// The offset.
        offset: u32,
        /// The width used.
        width: Width,
    },
    /// No register at this offset (including the legacy-only registers).
    UnknownOffset(u32),
    /// A write to a read-only register.
    ReadOnly(u32),
    /// A read of a write-only register.
    WriteOnly(u32),
    /// A configuration space access past the device's configuration.
    ConfigOutOfRange {
        /// The offset.
        offset: u32,
        /// The width used.
        width: Width,
    },
    /// A value the register does not take (`QueueReady` or `QueueReset`
    /// other than 0/1, `Status` above 0xff).
    InvalidValue {
        /// The offset.
        offset: u32,
        /// The value written.
        value: u32,
    },
    /// `DriverFeatures` written with `DriverFeaturesSel` above 1: no
    /// feature bit above 63 exists.
    FeatureWordOutOfRange {
        /// `DriverFeaturesSel`.
        sel: u32,
        /// The value written.
        value: u32,
    },
    /// A queue register write the device core refused (no such queue,
    /// queue enabled, bad size, `RING_RESET` not negotiated).
    Queue {
        /// `QueueSel`.
        sel: u32,
        /// Why.
        error: QueueSetupError,
    },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadWidth { offset, width } => {
                write!(f, "{width:?} access to control register {offset:#x}")
            }
            Self::Unaligned { offset, width } => {
                write!(f, "unaligned {width:?} access at {offset:#x}")
            }
            Self::UnknownOffset(o) => write!(f, "no register at {o:#x}"),
            Self::ReadOnly(o) => write!(f, "write to read-only register {o:#x}"),
            Self::WriteOnly(o) => write!(f, "read of write-only register {o:#x}"),
            Self::ConfigOutOfRange { offset, width } => {
                write!(
                    f,
                    "{width:?} config access at {offset:#x} is past the config space"
                )
            }
            Self::InvalidValue { offset, value } => {
                write!(f, "value {value:#x} is not valid for register {offset:#x}")
            }
            Self::FeatureWordOutOfRange { sel, value } => {
                write!(
                    f,
                    "driver features word {sel} (value {value:#x}) does not exist"
                )
            }
            Self::Queue { sel, error } => write!(f, "queue {sel}: {error}"),
        }
    }
}

impl core::error::Error for MmioError {}
