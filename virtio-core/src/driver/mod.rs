//! Driver side of the rings (feature `driver`).
//!
//! A small, complete driver-side implementation over [`GuestMemory`]: it lays
//! out and initialises a ring, adds direct and indirect chains, decides when
//! to notify the device, and collects used buffers. Tests, benches, fuzz
//! targets, the shared-memory transport's driver end and Rust guests use it.
//!
//! Being our own, it proves nothing about interoperability; the interop tests
//! use drivers we did not write.
//!
//! [`GuestMemory`]: crate::memory::GuestMemory
//!
//! Here the untrusted party is the device: a used id or length it writes
//! never makes this code panic (ids are range-checked, walks bounded by the
//! queue size, counters saturate). Plain arithmetic is used only on values
//! this side chose and checked when the ring was built.
#![allow(clippy::arithmetic_side_effects)]

pub mod busy;
mod packed;
mod split;

use core::fmt;

pub use packed::PackedDriver;
pub use split::SplitDriver;

use crate::memory::MemoryError;
use crate::queue::ConfigError;

/// A buffer the device has returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Used {
    /// The id `add` returned for the buffer.
    pub id: u16,
    /// Bytes the device says it wrote.
    pub len: u32,
}

/// Why a driver-side operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DriverError {
    /// Not enough free descriptors for the chain.
    QueueFull,
    /// A chain needs at least one buffer.
    EmptyChain,
    /// The ring configuration is unusable (size, alignment, placement).
    Config(ConfigError),
    /// The device returned an id that is not an outstanding buffer.
    BadUsedId(u32),
    /// A ring or table is not inside guest memory.
    Memory(MemoryError),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueFull => f.write_str("not enough free descriptors"),
            Self::EmptyChain => f.write_str("chain has no buffers"),
            Self::Config(e) => e.fmt(f),
            Self::BadUsedId(id) => write!(f, "device returned unknown id {id}"),
            Self::Memory(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for DriverError {}

impl From<ConfigError> for DriverError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<MemoryError> for DriverError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}
