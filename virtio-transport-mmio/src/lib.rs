//! virtio-mmio, version 2, as a pure state machine over
//! [`virtio_core::device::DeviceCore`].
//!
//! `cargo add virtio-backend-mmio` (the library is `virtio_transport_mmio`).
//!
//! A hypervisor traps the guest's accesses to the device's MMIO window and
//! calls [`MmioTransport::read`] / [`MmioTransport::write`] with the offset
//! and width; the transport translates the register protocol
//! (virtio 1.4 §"Virtio Over MMIO") into calls on the device core, and
//! drives an [`InterruptLine`] from `InterruptStatus`. No memory is mapped
//! here and nothing blocks: a `QueueNotify` write serves the queue before
//! it returns.
//!
//! # Layers
//!
//! * [`regs`] — the register offsets and [`Width`].
//! * [`MmioTransport`] — the register block: feature words, queue
//!   selection and setup, status, interrupts, shared memory regions,
//!   `QueueReset`, `ConfigGeneration` and the byte/halfword/word
//!   configuration space.
//! * [`MmioError`] — what an invalid access was.
//!
//! # Invalid accesses (defined behaviour)
//!
//! Every invalid access reads 0 or writes nothing, is counted, and the
//! [`MmioError`] is kept ([`MmioTransport::last_error`]); the `try_*`
//! variants return it. Nothing panics:
//!
//! | access | result |
//! |---|---|
//! | control register (< 0x100) not 32-bit | [`MmioError::BadWidth`] |
//! | not aligned to its width | [`MmioError::Unaligned`] |
//! | no register there (legacy registers included) | [`MmioError::UnknownOffset`] |
//! | write to a read-only register | [`MmioError::ReadOnly`] |
//! | read of a write-only register | [`MmioError::WriteOnly`] |
//! | config access past the config space | [`MmioError::ConfigOutOfRange`] |
//! | queue setup while `QueueReady` is 1, `QueueSel` out of range, `QueueSize` above the max or (split ring) not a power of two, `QueueReset` without `RING_RESET` | [`MmioError::Queue`] |
//! | `QueueReady`/`QueueReset` not 0 or 1, `Status` above 0xff | [`MmioError::InvalidValue`] |
//!
//! Reads that name a queue or shared memory region that does not exist are
//! not errors: `QueueSizeMax` reads 0 and `QueueReady` 0 (the spec's "not
//! available"), `SHMLen*`/`SHMBase*` read all ones.
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![no_std]
#![forbid(unsafe_code)]

mod error;
pub mod regs;
mod transport;

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;

pub use error::MmioError;
pub use regs::Width;
pub use transport::{MAX_SHM_REGIONS, MmioTransport};

/// The device's interrupt line to the driver's interrupt controller.
///
/// The transport calls [`InterruptLine::set_level`] only when the level
/// changes: asserted while any `InterruptStatus` bit is set, deasserted once
/// the driver acknowledged them all.
pub trait InterruptLine {
    /// Drives the line high (`true`) or low.
    fn set_level(&mut self, asserted: bool);
}

impl<T: InterruptLine + ?Sized> InterruptLine for &mut T {
    fn set_level(&mut self, asserted: bool) {
        (**self).set_level(asserted);
    }
}

/// A shared memory region the device offers (virtio 1.4 §"Shared Memory
/// Regions"), described by the `SHM*` registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ShmRegion {
    /// The device-specific region id (`SHMSel`).
    pub id: u8,
    /// Guest physical base address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}
