//! Test doubles shared by the property tests.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects, dead_code)]

use std::cell::RefCell;

use proptest::prelude::*;

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

/// One request of a random stream: buffer sizes, whether to send it
/// indirect, and how much of its writable part the device fills.
#[derive(Clone, Debug)]
pub struct Req {
    pub readable: Vec<u32>,
    pub writable: Vec<u32>,
    pub indirect: bool,
    /// How much of the writable part the device fills, in 1/255ths.
    pub fill: u8,
}

/// Requests of up to three readable and three writable buffers (at least
/// one buffer) of 1 to 47 bytes.
pub fn req() -> impl Strategy<Value = Req> {
    (
        prop::collection::vec(1u32..48, 0..4),
        prop::collection::vec(1u32..48, 0..4),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_filter("a chain has a buffer", |(r, w, _, _)| {
            !r.is_empty() || !w.is_empty()
        })
        .prop_map(|(readable, writable, indirect, fill)| Req {
            readable,
            writable,
            indirect,
            fill,
        })
}

/// Guest memory per request slot, and where the slots start.
pub const SLOT: u64 = 1024;
pub const DATA: u64 = 0x10000;

/// Byte `i` of request `req`'s data, so every byte is checkable.
pub fn pattern(req: usize, i: u32) -> u8 {
    (req as u32)
        .wrapping_mul(31)
        .wrapping_add(i.wrapping_mul(7)) as u8
}
