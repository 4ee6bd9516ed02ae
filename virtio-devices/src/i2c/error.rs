//! What can go wrong with one request and with one transaction.

use core::fmt;

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};

/// Why a request's chain is not a request the device can run
/// ([`super::parse`]). Every one of these is answered with `MSG_ERR`, except
/// [`RequestError::NoStatus`], which cannot be answered at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError {
    /// The device-readable part is shorter than the 8-byte out header.
    ShortHeader {
        /// Device-readable bytes in the chain.
        readable: u32,
    },
    /// No device-writable byte for the status: the request cannot be
    /// answered (the device enters `DEVICE_NEEDS_RESET`).
    NoStatus,
    /// The `addr` field is neither a 7-bit nor a 10-bit address.
    BadAddress(u16),
    /// A read request (`M_RD` set) that also carries device-readable data.
    ReadWithWriteBuffer {
        /// Bytes after the header.
        bytes: u32,
    },
    /// A write request (`M_RD` clear) with device-writable room besides the
    /// status byte.
    WriteWithReadBuffer {
        /// Writable bytes before the status byte.
        bytes: u32,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHeader { readable } => write!(
                f,
                "request has {readable} readable bytes, shorter than the 8-byte header"
            ),
            Self::NoStatus => f.write_str("request has no writable byte for its status"),
            Self::BadAddress(a) => write!(f, "addr field {a:#06x} is not a 7- or 10-bit address"),
            Self::ReadWithWriteBuffer { bytes } => {
                write!(f, "read request carries {bytes} bytes of write data")
            }
            Self::WriteWithReadBuffer { bytes } => {
                write!(
                    f,
                    "write request has {bytes} writable bytes besides the status"
                )
            }
        }
    }
}

/// Which part of a transfer was not acknowledged
/// ([`embedded_hal::i2c::NoAcknowledgeSource`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Nack {
    /// The address: no target answered.
    Address,
    /// A data byte.
    Data,
    /// The bus could not tell.
    Unknown,
}

/// A bus failure, from [`embedded_hal::i2c::ErrorKind`] (kept as our own
/// type so it can derive `defmt::Format` with the crate's `defmt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BusError {
    /// A NACK.
    NoAcknowledge(Nack),
    /// A bus error (misplaced START or STOP).
    Bus,
    /// Lost arbitration to another controller.
    ArbitrationLoss,
    /// Data overrun or underrun.
    Overrun,
    /// Anything else the HAL reports.
    Other,
}

impl From<ErrorKind> for BusError {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address) => {
                Self::NoAcknowledge(Nack::Address)
            }
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data) => Self::NoAcknowledge(Nack::Data),
            ErrorKind::NoAcknowledge(_) => Self::NoAcknowledge(Nack::Unknown),
            ErrorKind::Bus => Self::Bus,
            ErrorKind::ArbitrationLoss => Self::ArbitrationLoss,
            ErrorKind::Overrun => Self::Overrun,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAcknowledge(Nack::Address) => f.write_str("address not acknowledged"),
            Self::NoAcknowledge(Nack::Data) => f.write_str("data not acknowledged"),
            Self::NoAcknowledge(Nack::Unknown) => f.write_str("not acknowledged"),
            Self::Bus => f.write_str("bus error"),
            Self::ArbitrationLoss => f.write_str("arbitration lost"),
            Self::Overrun => f.write_str("data overrun"),
            Self::Other => f.write_str("bus failure"),
        }
    }
}

/// Why a request was answered `MSG_ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransferError {
    /// The bus failed the transaction the request was part of.
    Bus(BusError),
    /// The request (or one of its group) was malformed.
    Request(RequestError),
    /// The request set reserved `flags` bits (the value): it asks for
    /// something this version of the spec does not define.
    Unsupported(u32),
    /// A 10-bit address on an adapter built without 10-bit support
    /// ([`super::I2cAdapter::new`]).
    TenBitUnsupported,
    /// The group has more requests than the device holds for one
    /// transaction.
    TooManyMessages,
    /// The group's buffers together exceed the device's transaction buffer.
    TooManyBytes,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bus(e) => write!(f, "transaction failed: {e}"),
            Self::Request(e) => write!(f, "malformed request: {e}"),
            Self::Unsupported(flags) => write!(f, "reserved flags set: {flags:#x}"),
            Self::TenBitUnsupported => f.write_str("10-bit address on a 7-bit adapter"),
            Self::TooManyMessages => f.write_str("too many requests in one transaction"),
            Self::TooManyBytes => f.write_str("transaction larger than the device's buffer"),
        }
    }
}
