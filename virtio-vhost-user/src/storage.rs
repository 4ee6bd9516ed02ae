//! A [`BlockStorage`] over a host file with positioned I/O.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FallocateFlags;
use virtio_devices::block::BlockStorage;

/// Bytes per virtio-blk sector.
const SECTOR: u64 = 512;

/// Why a file-backed block operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileStorageError {
    /// The sector range does not fit in the file.
    OutOfRange {
        /// First sector of the request.
        sector: u64,
        /// Bytes requested.
        len: usize,
    },
    /// The host file system failed.
    Io(io::Error),
}

impl fmt::Display for FileStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { sector, len } => {
                write!(
                    f,
                    "{len} bytes at sector {sector} run past the end of the image"
                )
            }
            Self::Io(e) => write!(f, "image I/O failed: {e}"),
        }
    }
}

impl std::error::Error for FileStorageError {}

/// A disk image file. The capacity is the file's length in whole sectors
/// when opened; a trailing partial sector is not served.
///
/// Opened with [`FileStorage::open_direct`], I/O bypasses the host's page
/// cache (`O_DIRECT`) through an aligned bounce buffer: the guest's data
/// lands on the disk without a second copy in host memory, and a `FLUSH`
/// only has the disk's own cache left to drain.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    /// The capacity in sectors, shared with the [`Self::share`]d handles
    /// that serve the same device's other queues, so a resize seen by one
    /// is seen by all.
    sectors: Arc<AtomicU64>,
    read_only: bool,
    /// `O_DIRECT`: every transfer goes through this (offsets are whole
    /// sectors; the buffer is page-aligned).
    bounce: Option<Box<Bounce>>,
}

/// Bytes of one `O_DIRECT` transfer.
const BOUNCE: usize = 64 * 1024;

/// A page-aligned buffer for `O_DIRECT`.
#[repr(C, align(4096))]
struct Bounce([u8; BOUNCE]);

impl fmt::Debug for Bounce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bounce({BOUNCE} bytes)")
    }
}

fn bounce() -> Box<Bounce> {
    Box::new(Bounce([0; BOUNCE]))
}

impl FileStorage {
    /// Opens `path` for reading and writing, or only reading.
    ///
    /// # Errors
    /// The file cannot be opened or its length read.
    pub fn open(path: &Path, read_only: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        Self::from_file(file, read_only)
    }

    /// Opens `path` with `O_DIRECT` (the host page cache bypassed).
    ///
    /// # Errors
    /// The file cannot be opened so (tmpfs, for one, refuses `O_DIRECT`).
    pub fn open_direct(path: &Path, read_only: bool) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = i32::try_from(rustix::fs::OFlags::DIRECT.bits()).unwrap_or(0);
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(direct)
            .open(path)?;
        let mut storage = Self::from_file(file, read_only)?;
        storage.bounce = Some(bounce());
        Ok(storage)
    }

    /// True when opened with `O_DIRECT`.
    pub fn direct(&self) -> bool {
        self.bounce.is_some()
    }

    /// Serves an open file.
    ///
    /// # Errors
    /// Its length cannot be read.
    pub fn from_file(file: File, read_only: bool) -> io::Result<Self> {
        let sectors = file.metadata()?.len() / SECTOR;
        Ok(Self {
            file,
            sectors: Arc::new(AtomicU64::new(sectors)),
            read_only,
            bounce: None,
        })
    }

    /// Re-reads the image's length (after the host resized it); `true`
    /// when the capacity changed. Requests past a shrunk end then fail.
    ///
    /// # Errors
    /// The length cannot be read.
    pub fn refresh_capacity(&mut self) -> io::Result<bool> {
        let sectors = self.file.metadata()?.len() / SECTOR;
        let changed = self.sectors.swap(sectors, Ordering::Relaxed) != sectors;
        Ok(changed)
    }

    /// True when opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Another handle on the same image (one per connection), with a
    /// capacity of its own: each connection sees a resize when it refreshes.
    ///
    /// # Errors
    /// `dup` failed.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
            sectors: Arc::new(AtomicU64::new(self.sectors.load(Ordering::Relaxed))),
            read_only: self.read_only,
            bounce: self.bounce.as_ref().map(|_| bounce()),
        })
    }

    /// Another handle for the same device (a queue served on its own
    /// thread): positioned I/O on a duplicate of the file, its own bounce
    /// buffer, and the capacity shared with this handle.
    ///
    /// # Errors
    /// `dup` failed.
    pub fn share(&self) -> io::Result<Self> {
        Ok(Self {
            file: self.file.try_clone()?,
            sectors: Arc::clone(&self.sectors),
            read_only: self.read_only,
            bounce: self.bounce.as_ref().map(|_| bounce()),
        })
    }

    /// Byte offset of `sector` after checking `len` bytes fit.
    fn offset(&self, sector: u64, len: usize) -> Result<u64, FileStorageError> {
        let start = sector
            .checked_mul(SECTOR)
            .ok_or_else(|| out_of(sector, len))?;
        let end = u64::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .ok_or_else(|| out_of(sector, len))?;
        let capacity = self.sectors.load(Ordering::Relaxed).saturating_mul(SECTOR);
        if end > capacity {
            return Err(out_of(sector, len));
        }
        Ok(start)
    }
}

fn out_of(sector: u64, len: usize) -> FileStorageError {
    FileStorageError::OutOfRange { sector, len }
}

/// Each request queue of a block device over an image is served on its own
/// thread ([`crate::worker`]): requests on different queues are independent,
/// and every shard does positioned I/O on its own handle of the image.
impl crate::worker::Shardable for virtio_devices::block::Block<FileStorage> {
    fn shard(&self) -> io::Result<Self> {
        Ok(Self::new(self.storage().share()?, self.options()))
    }
}

impl BlockStorage for FileStorage {
    type Error = FileStorageError;

    fn capacity(&self) -> u64 {
        self.sectors.load(Ordering::Relaxed)
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), FileStorageError> {
        let at = self.offset(sector, buf.len())?;
        let Some(bounce) = self.bounce.as_mut() else {
            return self
                .file
                .read_exact_at(buf, at)
                .map_err(FileStorageError::Io);
        };
        let mut done = 0u64;
        for part in buf.chunks_mut(BOUNCE) {
            let staged = bounce.0.get_mut(..part.len()).unwrap_or_default();
            self.file
                .read_exact_at(staged, at.saturating_add(done))
                .map_err(FileStorageError::Io)?;
            part.copy_from_slice(staged);
            done = done.saturating_add(part.len() as u64);
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), FileStorageError> {
        let at = self.offset(sector, buf.len())?;
        self.write_at(at, buf)
    }

    fn flush(&mut self) -> Result<(), FileStorageError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(FileStorageError::Io)
    }

    /// Punches a hole (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): the range's
    /// blocks go back to the host file system and read as zeroes. A file
    /// system that cannot punch holes keeps the data, which `DISCARD`
    /// allows.
    fn discard(&mut self, sector: u64, sectors: u32) -> Result<(), FileStorageError> {
        let (at, len) = self.range(sector, sectors)?;
        match self.fallocate(FallocateFlags::PUNCH_HOLE, at, len) {
            Err(e) if unsupported(&e) => Ok(()),
            other => other,
        }
    }

    /// `fallocate(ZERO_RANGE)`, else a punched hole, else zeroes written.
    fn write_zeroes(&mut self, sector: u64, sectors: u32) -> Result<(), FileStorageError> {
        let (at, len) = self.range(sector, sectors)?;
        for how in [FallocateFlags::ZERO_RANGE, FallocateFlags::PUNCH_HOLE] {
            match self.fallocate(how, at, len) {
                Err(e) if unsupported(&e) => continue,
                other => return other,
            }
        }
        let zero = [0u8; 64 * 1024];
        let mut done = 0u64;
        while done < len {
            let n = len.saturating_sub(done).min(zero.len() as u64);
            let part = zero.get(..n as usize).unwrap_or_default();
            self.write_at(at.saturating_add(done), part)?;
            done = done.saturating_add(n);
        }
        Ok(())
    }
}

impl FileStorage {
    /// Byte offset and length of `sectors` sectors from `sector`, checked.
    fn range(&self, sector: u64, sectors: u32) -> Result<(u64, u64), FileStorageError> {
        let len = u64::from(sectors).saturating_mul(SECTOR);
        let bytes = usize::try_from(len).map_err(|_| out_of(sector, usize::MAX))?;
        Ok((self.offset(sector, bytes)?, len))
    }

    /// Writes `buf` at byte `at` (through the bounce buffer with
    /// `O_DIRECT`).
    fn write_at(&mut self, at: u64, buf: &[u8]) -> Result<(), FileStorageError> {
        let Some(bounce) = self.bounce.as_mut() else {
            return self
                .file
                .write_all_at(buf, at)
                .map_err(FileStorageError::Io);
        };
        let mut done = 0u64;
        for part in buf.chunks(BOUNCE) {
            let staged = bounce.0.get_mut(..part.len()).unwrap_or_default();
            staged.copy_from_slice(part);
            self.file
                .write_all_at(staged, at.saturating_add(done))
                .map_err(FileStorageError::Io)?;
            done = done.saturating_add(part.len() as u64);
        }
        Ok(())
    }

    fn fallocate(&self, how: FallocateFlags, at: u64, len: u64) -> Result<(), FileStorageError> {
        if self.read_only {
            return Err(FileStorageError::Io(io::Error::from(
                io::ErrorKind::PermissionDenied,
            )));
        }
        rustix::fs::fallocate(&self.file, how | FallocateFlags::KEEP_SIZE, at, len)
            .map_err(|e| FileStorageError::Io(e.into()))
    }
}

/// Re-reads a served image's size when a trigger descriptor becomes
/// readable (the daemon connects it to SIGHUP), so a resized image reaches
/// the guest as a capacity change.
#[derive(Debug)]
pub struct ResizeTrigger {
    trigger: std::os::unix::net::UnixStream,
}

impl ResizeTrigger {
    /// Watches `trigger` (each byte written to its peer is one request to
    /// look at the image again).
    ///
    /// # Errors
    /// The socket cannot be made non-blocking.
    pub fn new(trigger: std::os::unix::net::UnixStream) -> io::Result<Self> {
        trigger.set_nonblocking(true)?;
        Ok(Self { trigger })
    }
}

impl crate::connection::HostEvents<virtio_devices::block::Block<FileStorage>> for ResizeTrigger {
    fn fds<'a>(
        &'a self,
        _device: &'a virtio_devices::block::Block<FileStorage>,
    ) -> Vec<(usize, std::os::fd::BorrowedFd<'a>)> {
        use std::os::fd::AsFd;
        vec![(0, self.trigger.as_fd())]
    }

    fn ready(
        &mut self,
        device: &mut virtio_devices::block::Block<FileStorage>,
        _tokens: &[usize],
    ) -> io::Result<bool> {
        use std::io::Read;
        let mut drained = [0u8; 64];
        loop {
            match (&self.trigger).read(&mut drained) {
                Ok(0) => return Err(io::Error::other("resize trigger closed")),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let changed = device.storage_mut().refresh_capacity()?;
        if changed {
            log::info!("image resized: {} sectors", device.storage().capacity());
        }
        Ok(changed)
    }
}

/// The file system does not do this kind of `fallocate`.
fn unsupported(e: &FileStorageError) -> bool {
    matches!(e, FileStorageError::Io(e) if e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: usize) -> (std::path::PathBuf, File) {
        let path =
            std::env::temp_dir().join(format!("vvu-storage-{}-{len}.img", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len as u64).unwrap();
        (path, file)
    }

    #[test]
    fn reads_back_what_it_wrote_and_stays_inside_the_image() {
        let (path, file) = image(4 * 512 + 100);
        let mut disk = FileStorage::from_file(file, false).unwrap();
        // The trailing partial sector is not served.
        assert_eq!(disk.capacity(), 4);
        disk.write(1, &[0xab; 1024]).unwrap();
        disk.flush().unwrap();
        let mut buf = [0u8; 512];
        disk.read(2, &mut buf).unwrap();
        assert_eq!(buf, [0xab; 512]);
        assert!(matches!(
            disk.read(3, &mut [0u8; 1024]),
            Err(FileStorageError::OutOfRange { sector: 3, .. })
        ));
        assert!(disk.write(u64::MAX, &[0; 1]).is_err());
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[512..1536], &[0xab; 1024][..]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn discard_and_write_zeroes_free_or_zero_the_range_only() {
        use std::os::unix::fs::MetadataExt;
        let (path, file) = image(64 * 1024);
        let mut disk = FileStorage::from_file(file, false).unwrap();
        disk.write(0, &[0x5a; 64 * 1024]).unwrap();
        disk.flush().unwrap();
        let blocks = |p: &std::path::Path| std::fs::metadata(p).unwrap().blocks();
        let before = blocks(&path);
        // Sectors 16..48 (8 KiB..24 KiB) discarded, 64..72 zeroed.
        disk.discard(16, 32).unwrap();
        disk.write_zeroes(64, 8).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 64 * 1024, "the size is kept");
        assert!(on_disk[..8192].iter().all(|&b| b == 0x5a));
        assert!(
            on_disk[8192..24576].iter().all(|&b| b == 0),
            "a hole reads as zeroes"
        );
        assert!(on_disk[24576..32768].iter().all(|&b| b == 0x5a));
        assert!(on_disk[32768..36864].iter().all(|&b| b == 0));
        assert!(on_disk[36864..].iter().all(|&b| b == 0x5a));
        // On a file system that punches holes, the blocks went back.
        assert!(blocks(&path) <= before);
        // Outside the image: an error, nothing changed.
        assert!(disk.discard(120, 16).is_err());
        assert!(disk.write_zeroes(u64::MAX / 512, 1).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn o_direct_reads_and_writes_whole_sectors_through_the_bounce_buffer() {
        // Beside the sources, not in /tmp: tmpfs refuses O_DIRECT (which
        // open_direct reports as an error).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/storage-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("direct-{}.img", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(256 * 1024)
            .unwrap();
        let mut disk = FileStorage::open_direct(&path, false).unwrap();
        assert!(disk.direct());
        // Unaligned caller buffers, lengths across the bounce size.
        let data: Vec<u8> = (0..(BOUNCE + 1536)).map(|i| (i % 253) as u8).collect();
        let mut backing = vec![0u8; data.len() + 1];
        backing[1..].copy_from_slice(&data);
        disk.write(3, &backing[1..]).unwrap();
        disk.flush().unwrap();
        let mut back = vec![0u8; data.len() + 3];
        disk.read(3, &mut back[3..]).unwrap();
        assert_eq!(&back[3..], &data[..]);
        disk.write_zeroes(3, 1).unwrap();
        let mut sector = [0xffu8; 512];
        disk.read(3, &mut sector).unwrap();
        assert_eq!(sector, [0u8; 512]);
        // Another handle is direct too, and sees the same bytes.
        let mut other = disk.try_clone().unwrap();
        assert!(other.direct());
        other.read(4, &mut sector).unwrap();
        assert_eq!(&sector[..], &data[512..1024]);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[4 * 512..3 * 512 + data.len()], &data[512..]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_image_is_an_error() {
        assert!(FileStorage::open(Path::new("/nonexistent/disk.img"), true).is_err());
    }
}
