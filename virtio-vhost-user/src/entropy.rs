//! The host's entropy source for the rng device.

use std::fs::File;
use std::io::{self, Read};

use rand_core::TryRng;

/// Random bytes from the host kernel (`/dev/urandom`, which never blocks
/// once the kernel's pool is initialised).
#[derive(Debug)]
pub struct HostEntropy {
    source: File,
}

impl HostEntropy {
    /// Opens `/dev/urandom`.
    ///
    /// # Errors
    /// It cannot be opened.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            source: File::open("/dev/urandom")?,
        })
    }
}

impl TryRng for HostEntropy {
    type Error = io::Error;

    fn try_next_u32(&mut self) -> Result<u32, io::Error> {
        let mut b = [0u8; 4];
        self.source.read_exact(&mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, io::Error> {
        let mut b = [0u8; 8];
        self.source.read_exact(&mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), io::Error> {
        self.source.read_exact(dst)
    }
}
