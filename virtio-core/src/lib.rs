//! The device side of virtio: wire formats, guest memory and virtqueues.
//!
//! `cargo add virtio-backend-core` (the library is `virtio_core`).
//!
//! This crate is the foundation the rest of the family builds on. Its layers,
//! from the wire up:
//!
//! * [`spec`] — every ring structure as a `#[repr(C)]` `zerocopy` type, the
//!   device IDs, and the device-independent feature and status bits. No
//!   logic.
//! * [`memory`] — [`memory::GuestMemory`], the only way the device touches
//!   what the driver shares: bounds-checked copies, acquire/release ring
//!   indices, fences. One contiguous region or a fixed set of regions. The
//!   only module with `unsafe`.
//! * [`queue`] — the device-side ring engines. A chain is walked and
//!   validated once into a [`queue::Chain`] snapshot; requests are read and
//!   responses written through cursors; completions are published in
//!   batches with the notification decision made once per batch.
//! * [`device`] — [`device::DeviceCore`], the status state machine every
//!   transport drives (features, queue setup, interrupts, config
//!   generation), and the [`device::VirtioDevice`] trait devices implement.
//!   Devices see only validated chains.
//! * [`driver`] (feature `driver`) — the other end of the rings, for tests,
//!   benches, fuzzing and Rust guests.
//!
//! # Invariants
//!
//! The driver is untrusted. Nothing it writes can make this crate panic,
//! loop without bound, or access memory outside what [`memory::GuestMemory`]
//! serves. Malformed chains come back as typed errors that carry the head,
//! so the device can return the buffer; a corrupt ring says it needs a
//! reset. No heap is used; sizes are const generics.
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod device;
#[cfg(feature = "driver")]
pub mod driver;
pub mod memory;
pub mod queue;
pub mod spec;
