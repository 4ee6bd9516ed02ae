//! What a block device stores its sectors in.

use core::fmt;

use super::wire::SECTOR_SIZE;

const SECTOR_BYTES: usize = SECTOR_SIZE as usize;
const SECTOR_SHIFT: u32 = SECTOR_SIZE.trailing_zeros();

/// Storage behind a block device, in 512-byte sectors.
///
/// The device checks every request against [`BlockStorage::capacity`]
/// before calling: `buf.len()` is a non-zero multiple of 512 and the range
/// lies inside the storage. An error makes the request fail with `IOERR`.
pub trait BlockStorage {
    /// Why an operation failed.
    type Error: fmt::Debug;

    /// Size in 512-byte sectors.
    fn capacity(&self) -> u64;

    /// Reads `buf.len() / 512` sectors starting at `sector`.
    ///
    /// # Errors
    /// A storage failure.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `buf.len() / 512` sectors starting at `sector`. When this
    /// returns the write is stable (the device offers `FLUSH` but not
    /// `CONFIG_WCE`, so completed writes must be committed, virtio 1.4
    /// §"Block Device / Device Operation").
    ///
    /// # Errors
    /// A storage failure.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Self::Error>;

    /// Commits written data (a no-op for storage whose writes are stable).
    ///
    /// # Errors
    /// A storage failure.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The driver no longer needs `sectors` sectors from `sector`; storage
    /// may deallocate them (their content is then unspecified).
    ///
    /// # Errors
    /// A storage failure.
    fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), Self::Error> {
        let _ = (sector, sectors);
        Ok(())
    }

    /// Makes `sectors` sectors from `sector` read as zeroes. The default
    /// writes zeroed sectors one at a time.
    ///
    /// # Errors
    /// A storage failure.
    fn write_zeroes(&mut self, sector: u64, sectors: u32) -> Result<(), Self::Error> {
        let zero = [0u8; SECTOR_SIZE as usize];
        for i in 0..u64::from(sectors) {
            self.write(sector.saturating_add(i), &zero)?;
        }
        Ok(())
    }
}

impl<T: BlockStorage + ?Sized> BlockStorage for &mut T {
    type Error = T::Error;
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Self::Error> {
        (**self).write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        (**self).flush()
    }
    fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), Self::Error> {
        (**self).discard(sector, sectors)
    }
    fn write_zeroes(&mut self, sector: u64, sectors: u32) -> Result<(), Self::Error> {
        (**self).write_zeroes(sector, sectors)
    }
}

/// Why a [`RamDisk`] access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RamDiskError {
    /// The range is not inside the disk.
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Bytes.
        len: usize,
    },
}

impl fmt::Display for RamDiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { sector, len } => {
                write!(f, "{len} bytes at sector {sector} are outside the disk")
            }
        }
    }
}

impl core::error::Error for RamDiskError {}

/// A disk in a byte slice (whole sectors; a trailing partial sector is not
/// used). Discarded sectors read as zeroes.
#[derive(Debug)]
pub struct RamDisk<'a> {
    data: &'a mut [u8],
}

impl<'a> RamDisk<'a> {
    /// A disk over `data`.
    pub fn new(data: &'a mut [u8]) -> Self {
        Self { data }
    }

    /// The disk's bytes.
    pub fn data(&self) -> &[u8] {
        self.data
    }

    fn range(&mut self, sector: u64, len: usize) -> Result<&mut [u8], RamDiskError> {
        let err = RamDiskError::OutOfRange { sector, len };
        let start = sector
            .checked_mul(u64::from(SECTOR_SIZE))
            .and_then(|s| usize::try_from(s).ok())
            .ok_or(err)?;
        let end = start.checked_add(len).ok_or(err)?;
        let whole = self.capacity_bytes();
        if end > whole {
            return Err(err);
        }
        self.data.get_mut(start..end).ok_or(err)
    }

    fn capacity_bytes(&self) -> usize {
        self.data.len() & !(SECTOR_BYTES - 1)
    }
}

impl BlockStorage for RamDisk<'_> {
    type Error = RamDiskError;

    fn capacity(&self) -> u64 {
        (self.data.len() >> SECTOR_SHIFT) as u64
    }

    // `range` returns exactly `buf.len()` bytes; zips rather than
    // `copy_from_slice` keep a length-mismatch panic path out of firmware.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), RamDiskError> {
        let len = buf.len();
        for (dst, src) in buf.iter_mut().zip(self.range(sector, len)?.iter()) {
            *dst = *src;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), RamDiskError> {
        for (dst, src) in self.range(sector, buf.len())?.iter_mut().zip(buf) {
            *dst = *src;
        }
        Ok(())
    }

    fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), RamDiskError> {
        self.write_zeroes(sector, sectors)
    }

    fn write_zeroes(&mut self, sector: u64, sectors: u32) -> Result<(), RamDiskError> {
        let len = (sectors as usize).checked_mul(SECTOR_SIZE as usize).ok_or(
            RamDiskError::OutOfRange {
                sector,
                len: usize::MAX,
            },
        )?;
        self.range(sector, len)?.fill(0);
        Ok(())
    }
}
