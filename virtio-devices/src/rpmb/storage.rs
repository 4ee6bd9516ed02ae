//! Where an RPMB device keeps its key, its write counter and its data.
//!
//! Two traits, split along what must be atomic together:
//!
//! * [`KeyStore`] — the one-time-programmable authentication key (an
//!   eFuse/OTP bank on an island, a key file for a daemon). Programming it
//!   is one step on its own.
//! * [`RpmbStorage`] — the data blocks **and** the write counter. An
//!   authenticated write changes both, and must change both or neither
//!   across a power failure, so they sit behind one trait whose
//!   [`RpmbStorage::write`] takes the new counter with the data: an
//!   implementation makes the pair atomic however its medium allows (a
//!   journal with a commit record, a copy-on-write slot with a sequence
//!   number, write-new-then-rename on a file system).
//!
//! Both persist across device reset and reboot: the device never asks them
//! to forget anything, and a new device built over the same stores sees
//! the same key, counter and data.

use core::fmt;

#[cfg(doc)]
use super::wire::BLOCK_BYTES;
use super::wire::KEY_BYTES;

/// An authentication key.
pub type Key = [u8; KEY_BYTES];

/// The device's one-time-programmable authentication key.
///
/// The device calls [`KeyStore::program`] only while [`KeyStore::key`]
/// says there is none; the store may refuse a second programming too.
pub trait KeyStore {
    /// Why an operation failed.
    type Error: fmt::Debug;

    /// The programmed key, or `None` before programming.
    ///
    /// # Errors
    /// The store cannot be read (the request fails with
    /// `RES_GENERAL_FAILURE`).
    fn key(&mut self) -> Result<Option<Key>, Self::Error>;

    /// Programs the key, durably, once. When this returns `Ok` the key
    /// survives power loss.
    ///
    /// # Errors
    /// Programming failed (`RES_WRITE_FAILURE`); the store must then still
    /// read as unprogrammed or as programmed with exactly `key`.
    fn program(&mut self, key: &Key) -> Result<(), Self::Error>;
}

/// The device's data blocks (256 bytes each) and its write counter.
pub trait RpmbStorage {
    /// Why an operation failed.
    type Error: fmt::Debug;

    /// Blocks of [`BLOCK_BYTES`] the storage holds. The device serves
    /// whole 128 KiB units of them, at most 16 MiB.
    fn blocks(&self) -> u32;

    /// The write counter: 0 on new storage, then the number of
    /// authenticated writes that completed.
    ///
    /// # Errors
    /// The counter cannot be read (`RES_GENERAL_FAILURE`).
    fn write_counter(&mut self) -> Result<u32, Self::Error>;

    /// Reads `buf.len() / 256` blocks starting at `block` (the device
    /// checks the range, and `buf.len()` is a non-zero multiple of 256).
    ///
    /// # Errors
    /// A storage failure (`RES_READ_FAILURE`).
    fn read(&mut self, block: u32, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// One authenticated write: `data` (`data.len() / 256` blocks, checked
    /// by the device) at `block`, and the write counter set to `counter`
    /// (the current one plus one), **as one atomic step**: whatever
    /// happens — an error, a crash, power lost at any instant — the
    /// storage afterwards holds either the old blocks with the old counter
    /// or the new blocks with the new counter, never a mix. When this
    /// returns `Ok` the new state is durable.
    ///
    /// # Errors
    /// A storage failure (`RES_WRITE_FAILURE`); the device then re-reads
    /// [`RpmbStorage::write_counter`] to tell which state the storage is in.
    fn write(&mut self, block: u32, data: &[u8], counter: u32) -> Result<(), Self::Error>;
}

impl<T: KeyStore + ?Sized> KeyStore for &mut T {
    type Error = T::Error;
    fn key(&mut self) -> Result<Option<Key>, Self::Error> {
        (**self).key()
    }
    fn program(&mut self, key: &Key) -> Result<(), Self::Error> {
        (**self).program(key)
    }
}

impl<T: RpmbStorage + ?Sized> RpmbStorage for &mut T {
    type Error = T::Error;
    fn blocks(&self) -> u32 {
        (**self).blocks()
    }
    fn write_counter(&mut self) -> Result<u32, Self::Error> {
        (**self).write_counter()
    }
    fn read(&mut self, block: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(block, buf)
    }
    fn write(&mut self, block: u32, data: &[u8], counter: u32) -> Result<(), Self::Error> {
        (**self).write(block, data, counter)
    }
}
