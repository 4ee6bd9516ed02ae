//! Guest memory as C describes it: one window (base + length) or a table
//! of regions. Both are `virtio-core` memories; this enum picks one at
//! run time so every transport is built once.

#[cfg(feature = "mem-table")]
use virtio_core::memory::MultiRegion;
use virtio_core::memory::{GuestMemory, MemoryError, Region};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Most regions of a region table (`vio_mem_init_table`).
pub const MAX_REGIONS: usize = 8;

/// One window or a table of regions.
///
/// Not boxed (no heap): a window object is as large as a table one.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum FfiMem {
    /// One contiguous window.
    Window(Region<'static>),
    /// Up to [`MAX_REGIONS`] non-overlapping regions (feature `mem-table`).
    #[cfg(feature = "mem-table")]
    Table(MultiRegion<'static, MAX_REGIONS>),
}

impl GuestMemory for FfiMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match self {
            Self::Window(r) => r.read(addr, buf),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.read(addr, buf),
        }
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        match self {
            Self::Window(r) => r.write(addr, buf),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.write(addr, buf),
        }
    }

    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        match self {
            Self::Window(r) => r.load_u16_acquire(addr),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.load_u16_acquire(addr),
        }
    }

    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        match self {
            Self::Window(r) => r.store_u16_release(addr, value),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.store_u16_release(addr, value),
        }
    }

    fn fence(&self) {
        match self {
            Self::Window(r) => r.fence(),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.fence(),
        }
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        match self {
            Self::Window(r) => r.check_range(addr, len),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.check_range(addr, len),
        }
    }

    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: u64) -> Result<T, MemoryError> {
        match self {
            Self::Window(r) => r.read_obj(addr),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.read_obj(addr),
        }
    }

    fn write_obj<T: IntoBytes + Immutable>(&self, addr: u64, value: &T) -> Result<(), MemoryError> {
        match self {
            Self::Window(r) => r.write_obj(addr, value),
            #[cfg(feature = "mem-table")]
            Self::Table(t) => t.write_obj(addr, value),
        }
    }
}
