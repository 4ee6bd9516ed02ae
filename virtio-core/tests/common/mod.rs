//! Test doubles shared by the property tests.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects, dead_code)]

use std::cell::RefCell;

use virtio_core::memory::{GuestMemory, MemoryError, Region};

/// Guest memory that records every write, so a property can check where
/// the device wrote.
pub struct Watched<'a> {
    pub inner: Region<'a>,
    pub writes: RefCell<Vec<(u64, u64)>>,
}

impl<'a> Watched<'a> {
    pub fn new(inner: Region<'a>) -> Self {
        Self {
            inner,
            writes: RefCell::new(Vec::new()),
        }
    }

    /// The first recorded write that is not wholly inside one of `areas`
    /// (`(start, len)` pairs).
    pub fn stray_write(&self, areas: &[(u64, u64)]) -> Option<(u64, u64)> {
        self.writes.borrow().iter().copied().find(|&(addr, len)| {
            !areas
                .iter()
                .any(|&(start, n)| addr >= start && addr + len <= start + n)
        })
    }
}

impl GuestMemory for Watched<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.inner.write(addr, buf)?;
        self.writes.borrow_mut().push((addr, buf.len() as u64));
        Ok(())
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.inner.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.inner.store_u16_release(addr, value)?;
        self.writes.borrow_mut().push((addr, 2));
        Ok(())
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.inner.check_range(addr, len)
    }
}

/// A `u64`-backed buffer holding `bytes` (a multiple of 8 long).
pub fn host_from(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}
