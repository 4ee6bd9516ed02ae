//! Virtio device models over the ecosystem's backend traits.
//!
//! `cargo add virtio-backend-devices` (the library is `virtio_devices`).
//!
//! Each device implements [`virtio_core::device::VirtioDevice`]: it is
//! handed validated chains by [`virtio_core::device::DeviceCore`], parses
//! each request once through the chain's reader, calls its backend, and
//! writes the response through the chain's writer. Devices never see a
//! transport; put a [`DeviceCore`](virtio_core::device::DeviceCore) around
//! one and attach it with any transport (e.g. `virtio-transport-mmio`).
//!
//! Each module is behind the cargo feature of the same name (see [Features](#features)).
//!
//! | module | device | id | backend |
//! |---|---|---|---|
//! | [`rng`] | entropy | 4 | [`rand_core::TryRng`] |
//! | [`console`] | console (with multiport) | 3 | [`embedded_io::Read`] + [`embedded_io::Write`] + [`embedded_io::ReadReady`] |
//! | [`block`] | block | 2 | [`block::BlockStorage`] (RAM disk included) |
//! | [`gpio`] | GPIO (with interrupts) | 41 | [`gpio::GpioBank`] ([`gpio::PinBank`] over `embedded_hal::digital` pins; a loopback with `test-utils`) |
//! | [`spi`] | SPI controller | 45 | [`embedded_hal::spi::SpiBus`] + chip-select [`embedded_hal::digital::OutputPin`]s, or an [`embedded_hal::spi::SpiDevice`] per chip select |
//! | [`rpmb`] | RPMB (replay-protected storage, HMAC-SHA256) | 28 | [`rpmb::RpmbStorage`] + [`rpmb::KeyStore`] (RAM models with `test-utils`) |
//! | [`sound`] | sound (PCM streams, jacks, channel maps, controls) | 25 | [`sound::PcmBackend`] (a null sink/source included) |
//! | [`watchdog`] | watchdog (de-facto protocol, not in the virtio spec) | 35 | [`watchdog::Clock`] + [`watchdog::ExpiryAction`] |
//! | [`scmi`] | SCMI platform (base, power, performance, clock, sensor, reset, voltage; delayed responses and notifications) | 32 | one trait per protocol (a simulated platform with `test-utils`) |
//! | [`iommu`] | IOMMU (with [`iommu::Translated`], a memory view through it) | 23 | an endpoint list from the platform |
//! | [`i2c`] | I2C adapter | 34 | [`embedded_hal::i2c::I2c`] (a 24C02 EEPROM model with `test-utils`) |
//!
//! # Invariants
//!
//! Nothing a driver puts in a request can make a device panic: requests are
//! read through bounds-checked cursors, guest-controlled numbers go through
//! checked arithmetic, and every request is completed (with an error status
//! where the device has one, otherwise with used length 0).
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

#[cfg(feature = "block")]
pub mod block;
#[cfg(feature = "console")]
pub mod console;
#[cfg(feature = "gpio")]
pub mod gpio;
#[cfg(feature = "i2c")]
pub mod i2c;
#[cfg(feature = "iommu")]
pub mod iommu;
#[cfg(feature = "rng")]
pub mod rng;
#[cfg(feature = "rpmb")]
pub mod rpmb;
#[cfg(feature = "scmi")]
pub mod scmi;
#[cfg(feature = "sound")]
pub mod sound;
#[cfg(feature = "spi")]
pub mod spi;
#[cfg(feature = "watchdog")]
pub mod watchdog;

#[cfg(test)]
mod harness;
