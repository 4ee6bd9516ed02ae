//! RAM models of the RPMB stores for tests, demos and fuzzing (feature
//! `test-utils`): nothing here survives power loss.

use core::fmt;

use super::storage::{Key, KeyStore, RpmbStorage};
use super::wire::BLOCK_BYTES;

/// Why a RAM model's operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RamError {
    /// A failure the test injected.
    Injected,
    /// The range is outside the storage.
    OutOfRange,
    /// The key was programmed already.
    AlreadyProgrammed,
}

impl fmt::Display for RamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Injected => "injected failure",
            Self::OutOfRange => "blocks outside the storage",
            Self::AlreadyProgrammed => "key already programmed",
        })
    }
}

impl core::error::Error for RamError {}

/// A key held in RAM (for tests and demos: it does not survive power
/// loss), with injectable failures.
#[derive(Clone, Debug, Default)]
pub struct RamKeyStore {
    key: Option<Key>,
    /// The next [`KeyStore::program`] fails.
    pub fail_program: bool,
    /// [`KeyStore::key`] fails.
    pub fail_read: bool,
}

impl RamKeyStore {
    /// A store with no key.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose key is already programmed.
    pub fn programmed(key: Key) -> Self {
        Self {
            key: Some(key),
            ..Self::default()
        }
    }
}

impl KeyStore for RamKeyStore {
    type Error = RamError;

    fn key(&mut self) -> Result<Option<Key>, RamError> {
        if self.fail_read {
            return Err(RamError::Injected);
        }
        Ok(self.key)
    }

    fn program(&mut self, key: &Key) -> Result<(), RamError> {
        if core::mem::take(&mut self.fail_program) {
            return Err(RamError::Injected);
        }
        if self.key.is_some() {
            return Err(RamError::AlreadyProgrammed);
        }
        self.key = Some(*key);
        Ok(())
    }
}

/// Data blocks and a write counter in a byte slice (whole blocks; a
/// trailing partial block is not used), with injectable failures. A write
/// changes the blocks and the counter together or, when it fails, neither.
#[derive(Debug)]
pub struct RamStorage<'a> {
    data: &'a mut [u8],
    counter: u32,
    /// Reads fail.
    pub fail_read: bool,
    /// Writes fail (nothing changes).
    pub fail_write: bool,
    /// [`RpmbStorage::write_counter`] fails.
    pub fail_counter: bool,
}

impl<'a> RamStorage<'a> {
    /// Storage over `data`, counter 0.
    pub fn new(data: &'a mut [u8]) -> Self {
        Self::with_counter(data, 0)
    }

    /// Storage over `data` whose counter is already `counter` (to test a
    /// counter near its maximum, or a device built again over kept state).
    pub fn with_counter(data: &'a mut [u8], counter: u32) -> Self {
        Self {
            data,
            counter,
            fail_read: false,
            fail_write: false,
            fail_counter: false,
        }
    }

    /// The bytes stored.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    /// The counter, without the failure injection.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    fn range(&mut self, block: u32, len: usize) -> Result<&mut [u8], RamError> {
        let start = (block as usize)
            .checked_mul(BLOCK_BYTES)
            .ok_or(RamError::OutOfRange)?;
        let end = start.checked_add(len).ok_or(RamError::OutOfRange)?;
        let whole = (self.blocks() as usize).saturating_mul(BLOCK_BYTES);
        if end > whole {
            return Err(RamError::OutOfRange);
        }
        self.data.get_mut(start..end).ok_or(RamError::OutOfRange)
    }
}

impl RpmbStorage for RamStorage<'_> {
    type Error = RamError;

    fn blocks(&self) -> u32 {
        u32::try_from(self.data.len() / BLOCK_BYTES).unwrap_or(u32::MAX)
    }

    fn write_counter(&mut self) -> Result<u32, RamError> {
        if self.fail_counter {
            return Err(RamError::Injected);
        }
        Ok(self.counter)
    }

    fn read(&mut self, block: u32, buf: &mut [u8]) -> Result<(), RamError> {
        if self.fail_read {
            return Err(RamError::Injected);
        }
        buf.copy_from_slice(self.range(block, buf.len())?);
        Ok(())
    }

    fn write(&mut self, block: u32, data: &[u8], counter: u32) -> Result<(), RamError> {
        if self.fail_write {
            return Err(RamError::Injected);
        }
        self.range(block, data.len())?.copy_from_slice(data);
        self.counter = counter;
        Ok(())
    }
}
