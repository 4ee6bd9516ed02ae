//! Guest memory from the file descriptors the frontend sends.
//!
//! `SET_MEM_TABLE` (or `ADD_MEM_REG` one at a time) gives, per region, a
//! file descriptor, the offset of the region in it, its guest physical
//! address and the address at which the frontend itself maps it. Each region
//! is mapped shared (`memmap2::MmapRaw`: a mapping that only hands out raw
//! pointers, so creating it needs no `unsafe`) and handed to
//! [`virtio_core::memory::MappedMemory`], which owns it and serves it as
//! guest memory. Turning a mapping into a region is the one `unsafe` step,
//! and it lives in virtio-core's memory module with the rest; this crate
//! forbids `unsafe`.
//!
//! # A file that shrinks under the mapping
//!
//! Touching a shared mapping past the end of its file raises `SIGBUS`, which
//! would kill the daemon and every connection in it. A frontend (or anyone
//! holding the file) can shrink the file after `SET_MEM_TABLE`, so checking
//! its size at map time is not enough. The daemon therefore maps a region
//! only from a file sealed against shrinking (`F_SEAL_SHRINK`, checked with
//! `F_GET_SEALS`): QEMU's `memory-backend-memfd` seals its memfd by default
//! (`seal=on`). Other files (`memory-backend-file` on tmpfs or hugetlbfs, a
//! memfd with `seal=off`) are refused with [`MapError::Unsealed`], an error
//! on that connection only, unless the daemon runs with
//! [`UnsealedMemory::Accept`] (`--allow-unsealed-memory`): then whoever can
//! truncate the file can kill the daemon, a risk the operator takes.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io;

use memmap2::MmapOptions;
use virtio_core::memory::{GuestMemory, MappedMemory, MemoryError, RegionError};

/// Most memory regions the daemon accepts (`GET_MAX_MEM_SLOTS`).
pub const MAX_REGIONS: usize = 32;

/// Whether regions may come from files not sealed against shrinking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnsealedMemory {
    /// Refuse them ([`MapError::Unsealed`]): nothing the frontend does to
    /// its files can fault the daemon.
    #[default]
    Refuse,
    /// Map them anyway: shrinking such a file while it is mapped kills the
    /// daemon (`SIGBUS`) on its next access.
    Accept,
}

/// One region as the frontend describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    /// Guest physical address of the first byte.
    pub guest_addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Where the frontend maps it (ring addresses are given in this space).
    pub user_addr: u64,
    /// Offset of the region in the file descriptor.
    pub mmap_offset: u64,
}

/// Why a region could not be mapped or served.
#[derive(Debug)]
#[non_exhaustive]
pub enum MapError {
    /// A length or address does not fit (the region runs past `u64::MAX`, or
    /// its size does not fit in `usize`).
    Overflow,
    /// `mmap` failed.
    Map(io::Error),
    /// The region could not join the table (overlap, too many, alignment).
    Region(RegionError),
    /// No region starts at this guest address (`REM_MEM_REG`).
    NoSuchRegion(u64),
    /// The table is in use (an access is in progress on this thread).
    Busy,
    /// The region's file is not sealed against shrinking
    /// ([`UnsealedMemory::Refuse`]).
    Unsealed,
    /// The region runs past the end of its file.
    BeyondFile {
        /// `mmap_offset + size`.
        end: u64,
        /// The file's length.
        file_len: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow => f.write_str("memory region size or address overflows"),
            Self::Map(e) => write!(f, "cannot map memory region: {e}"),
            Self::Region(e) => write!(f, "cannot add memory region: {e}"),
            Self::NoSuchRegion(a) => write!(f, "no memory region at guest address {a:#x}"),
            Self::Busy => f.write_str("guest memory is in use"),
            Self::Unsealed => f.write_str(
                "memory region file is not sealed against shrinking (F_SEAL_SHRINK): use \
                 memory-backend-memfd with seal=on (QEMU's default), or run the daemon with \
                 --allow-unsealed-memory and accept that truncating the file kills it",
            ),
            Self::BeyondFile { end, file_len } => write!(
                f,
                "memory region ends at {end:#x}, past its file's end {file_len:#x}"
            ),
        }
    }
}

impl std::error::Error for MapError {}

/// The mapped regions and the guest-memory view over them.
#[derive(Debug, Default)]
pub struct MemoryTable {
    /// The mappings, served as guest memory (virtio-core owns them and the
    /// one `unsafe` step of turning a mapping into a region).
    mem: MappedMemory<MAX_REGIONS>,
    /// What the frontend said of each region, in the order added.
    specs: Vec<RegionSpec>,
    /// Each region's file (a duplicate of the frontend's descriptor), so
    /// the table can be mapped again for another thread
    /// ([`Self::duplicate`]).
    files: Vec<File>,
    /// What the regions were accepted under.
    unsealed: UnsealedMemory,
}

impl MemoryTable {
    /// An empty table: every access fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table with exactly these regions (`SET_MEM_TABLE`). Nothing is
    /// kept if any region fails.
    ///
    /// # Errors
    /// [`MapError`] for the first region that cannot be mapped or added.
    pub fn from_regions(
        regions: Vec<(RegionSpec, File)>,
        unsealed: UnsealedMemory,
    ) -> Result<Self, MapError> {
        let mut table = Self::new();
        for (spec, file) in regions {
            table.add(spec, &file, unsealed)?;
        }
        Ok(table)
    }

    /// Maps `file` and serves it at `spec.guest_addr` (`ADD_MEM_REG`).
    ///
    /// # Errors
    /// [`MapError`]; the table is unchanged then.
    pub fn add(
        &mut self,
        spec: RegionSpec,
        file: &File,
        unsealed: UnsealedMemory,
    ) -> Result<(), MapError> {
        let len = usize::try_from(spec.size).map_err(|_| MapError::Overflow)?;
        spec.guest_addr
            .checked_add(spec.size)
            .ok_or(MapError::Overflow)?;
        spec.user_addr
            .checked_add(spec.size)
            .ok_or(MapError::Overflow)?;
        // A mapping past the end of a file faults (SIGBUS) on access, so a
        // region must lie inside its file (memfd and tmpfs files are
        // regular files with a size).
        let meta = file.metadata().map_err(MapError::Map)?;
        let end = spec
            .mmap_offset
            .checked_add(spec.size)
            .ok_or(MapError::Overflow)?;
        if meta.is_file() && end > meta.len() {
            return Err(MapError::BeyondFile {
                end,
                file_len: meta.len(),
            });
        }
        // Files that cannot be sealed (not a memfd) answer EINVAL: no seals.
        let seals = rustix::fs::fcntl_get_seals(file).unwrap_or(rustix::fs::SealFlags::empty());
        if unsealed == UnsealedMemory::Refuse && !seals.contains(rustix::fs::SealFlags::SHRINK) {
            return Err(MapError::Unsealed);
        }
        let map = MmapOptions::new()
            .offset(spec.mmap_offset)
            .len(len)
            .map_raw(file)
            .map_err(MapError::Map)?;
        let kept = file.try_clone().map_err(MapError::Map)?;
        self.mem
            .add(spec.guest_addr, map)
            .map_err(MapError::Region)?;
        self.specs.push(spec);
        self.files.push(kept);
        self.unsealed = unsealed;
        Ok(())
    }

    /// Unmaps the region at `guest_addr` (`REM_MEM_REG`).
    ///
    /// # Errors
    /// [`MapError::NoSuchRegion`].
    pub fn remove(&mut self, guest_addr: u64) -> Result<(), MapError> {
        if !self.mem.remove(guest_addr) {
            return Err(MapError::NoSuchRegion(guest_addr));
        }
        if let Some(i) = self.specs.iter().position(|s| s.guest_addr == guest_addr) {
            self.specs.remove(i);
            self.files.remove(i);
        }
        Ok(())
    }

    /// The same regions mapped again (the same pages, a second mapping):
    /// guest memory for a queue served on another thread.
    ///
    /// # Errors
    /// [`MapError`] if a region cannot be mapped again.
    pub fn duplicate(&self) -> Result<Self, MapError> {
        let mut table = Self::new();
        for (spec, file) in self.specs.iter().zip(&self.files) {
            table.add(*spec, file, self.unsealed)?;
        }
        Ok(table)
    }

    /// The regions, in the order they were added.
    pub fn specs(&self) -> impl Iterator<Item = RegionSpec> + '_ {
        self.specs.iter().copied()
    }

    /// Translates an address in the frontend's address space (ring
    /// addresses in `SET_VRING_ADDR`) to a guest physical address.
    pub fn user_to_guest(&self, user_addr: u64) -> Option<u64> {
        self.specs.iter().find_map(|spec| {
            let offset = user_addr.checked_sub(spec.user_addr)?;
            (offset < spec.size).then(|| spec.guest_addr.checked_add(offset))?
        })
    }
}

/// The guest memory a [`virtio_core::device::DeviceCore`] serves from: a
/// [`MemoryTable`] the connection can replace while the core holds it.
///
/// The core owns its memory and offers no way to swap it, so the table sits
/// behind a `RefCell`: the connection is single-threaded, and no access
/// through the core is in progress while a protocol message replaces the
/// table. An access that would overlap a replacement (impossible in this
/// daemon) fails as out of bounds instead of panicking.
#[derive(Debug, Default)]
pub struct GuestRam {
    table: RefCell<MemoryTable>,
}

impl GuestRam {
    /// Guest memory with no regions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole table (`SET_MEM_TABLE`); the old mappings go.
    pub fn replace(&self, table: MemoryTable) -> Result<(), MapError> {
        let mut slot = self.table.try_borrow_mut().map_err(|_| MapError::Busy)?;
        *slot = table;
        Ok(())
    }

    /// Runs `f` on the table (to add or remove a region).
    ///
    /// # Errors
    /// What `f` returns.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut MemoryTable) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let mut table = self.table.try_borrow_mut().map_err(|_| MapError::Busy)?;
        f(&mut table)
    }

    /// Translates a frontend address to a guest address
    /// ([`MemoryTable::user_to_guest`]).
    pub fn user_to_guest(&self, user_addr: u64) -> Option<u64> {
        self.table.try_borrow().ok()?.user_to_guest(user_addr)
    }

    /// The same guest memory mapped again, for a queue served on another
    /// thread ([`MemoryTable::duplicate`]); it does not follow later
    /// changes to this table.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn duplicate(&self) -> Result<Self, MapError> {
        let table = self.table.try_borrow().map_err(|_| MapError::Busy)?;
        Ok(Self {
            table: RefCell::new(table.duplicate()?),
        })
    }

    /// Number of mapped regions.
    pub fn num_regions(&self) -> usize {
        self.table.try_borrow().map_or(0, |t| t.specs.len())
    }

    fn with<T>(
        &self,
        addr: u64,
        len: usize,
        f: impl FnOnce(&MappedMemory<MAX_REGIONS>) -> Result<T, MemoryError>,
    ) -> Result<T, MemoryError> {
        match self.table.try_borrow() {
            Ok(table) => f(&table.mem),
            Err(_) => Err(MemoryError::OutOfBounds {
                addr,
                len: len as u64,
            }),
        }
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        self.with(addr, len, |m| m.read(addr, buf))
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.with(addr, buf.len(), |m| m.write(addr, buf))
    }

    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.with(addr, 2, |m| m.load_u16_acquire(addr))
    }

    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.with(addr, 2, |m| m.store_u16_release(addr, value))
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        match self.table.try_borrow() {
            Ok(table) => table.mem.check_range(addr, len),
            Err(_) => Err(MemoryError::OutOfBounds { addr, len }),
        }
    }
}
