//! The RPMB device's stores in one image file, crash-safe.
//!
//! # Layout
//!
//! ```text
//! 0        superblock   "VRPMBIMG", version, data blocks, CRC
//! 512      key record   "VRPMBKEY", programmed flag, key, CRC
//! 4096     journal slot 0 ┐ each: "VRPMBJNL", sequence, new counter,
//! 4096+S   journal slot 1 ┘ first block, block count, CRC, then the data
//! DATA     data blocks, 256 bytes each
//! ```
//!
//! # Why nothing acknowledged is lost, and nothing is half-written
//!
//! The write counter is not stored on its own: it is the counter of the
//! newest valid journal record (0 when there is none). An authenticated
//! write ([`RpmbStorage::write`]) is a redo log entry:
//!
//! 1. the record (header, data, CRC-32 over both) goes into the slot
//!    **not** holding the newest record, then `fdatasync`: from here the
//!    write is durable, and it is the commit point;
//! 2. the data is copied to the data area, then `fdatasync` again;
//! 3. only then does the device answer the driver.
//!
//! Opening the image ([`open`]) reads both slots, ignores one whose CRC
//! does not match (a record torn by a crash in step 1), and replays the
//! valid ones oldest first into the data area (idempotent). So a crash
//! (SIGKILL, power loss) at any instant leaves, after reopening, either
//! the old blocks with the old counter (the crash came before the record
//! was whole) or the new blocks with the new counter (it came after),
//! never a mix; and since the other slot is only overwritten after the
//! write it holds was applied and synced, the previous state can always
//! be rebuilt. `tests/rpmb_crash.rs` kills a process writing through this
//! file hundreds of times and checks exactly that.
//!
//! The key record is one 512-byte sector written once and synced before
//! `PROGRAM_KEY` is answered; a record torn by a crash during programming
//! (never acknowledged) fails its CRC and reads as "no key".
//!
//! A new image is written to `IMAGE.tmp`, synced, renamed over `IMAGE`
//! and the directory synced, so a crash while creating leaves no image or
//! a whole one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use virtio_devices::rpmb::{
    BLOCK_BYTES, BLOCKS_PER_UNIT, Key, KeyStore, MAX_CAPACITY, RpmbStorage,
};

const SUPER_MAGIC: &[u8; 8] = b"VRPMBIMG";
const KEY_MAGIC: &[u8; 8] = b"VRPMBKEY";
const JOURNAL_MAGIC: &[u8; 8] = b"VRPMBJNL";
const VERSION: u32 = 1;
const KEY_OFF: u64 = 512;
const SLOT0_OFF: u64 = 4096;
/// Most blocks one record holds (`max_wr_cnt` can be at most 255).
pub const MAX_WRITE_BLOCKS: usize = 255;
/// Bytes of a journal record's header.
const JOURNAL_HEADER: usize = 32;
/// Bytes of one journal slot: header and the largest write, rounded up.
const SLOT_BYTES: u64 = 69_632;
const _: () = assert!((JOURNAL_HEADER + MAX_WRITE_BLOCKS * BLOCK_BYTES) as u64 <= SLOT_BYTES);
/// Where the data blocks start.
const DATA_OFF: u64 = SLOT0_OFF + 2 * SLOT_BYTES;

/// Why a file-backed RPMB operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RpmbFileError {
    /// The host file system failed.
    Io(io::Error),
    /// The file is not an RPMB image of this version.
    NotAnImage,
    /// The blocks are outside the image.
    OutOfRange,
    /// The key was programmed already.
    AlreadyProgrammed,
}

impl fmt::Display for RpmbFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "RPMB image I/O failed: {e}"),
            Self::NotAnImage => f.write_str("not an RPMB image (bad magic, version or checksum)"),
            Self::OutOfRange => f.write_str("blocks outside the image"),
            Self::AlreadyProgrammed => f.write_str("the key is already programmed"),
        }
    }
}

impl std::error::Error for RpmbFileError {}

impl From<io::Error> for RpmbFileError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xedb88320), bitwise: the
/// records are small and written rarely.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }
    !crc
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        v.copy_from_slice(s);
    }
    u32::from_le_bytes(v)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at.saturating_add(8)) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Creates a new image at `path` with `units` of 128 KiB (1–128), no key
/// and counter 0, atomically (temporary file, sync, rename, directory
/// sync).
///
/// # Errors
/// `units` out of range, the file exists, or I/O fails.
pub fn create(path: &Path, units: u8) -> Result<(), RpmbFileError> {
    if units == 0 || units > MAX_CAPACITY {
        return Err(RpmbFileError::OutOfRange);
    }
    if path.exists() {
        return Err(RpmbFileError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "image exists",
        )));
    }
    let blocks = u32::from(units).saturating_mul(BLOCKS_PER_UNIT);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    file.set_len(DATA_OFF.saturating_add(u64::from(blocks).saturating_mul(BLOCK_BYTES as u64)))?;
    let mut sb = [0u8; 512];
    sb[..8].copy_from_slice(SUPER_MAGIC);
    sb[8..12].copy_from_slice(&VERSION.to_le_bytes());
    sb[12..16].copy_from_slice(&blocks.to_le_bytes());
    let crc = crc32(&[&sb[..16]]);
    sb[16..20].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&sb, 0)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

/// Opens an image: recovers it (replays the valid journal records) and
/// returns its key store and its data storage, which share the file.
///
/// # Errors
/// Not an image, or I/O fails.
pub fn open(path: &Path) -> Result<(FileKeyStore, FileRpmbStorage), RpmbFileError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    if file.metadata()?.len() < DATA_OFF {
        return Err(RpmbFileError::NotAnImage);
    }
    let mut sb = [0u8; 512];
    file.read_exact_at(&mut sb, 0)?;
    if sb.get(..8) != Some(&SUPER_MAGIC[..])
        || le32(&sb, 8) != VERSION
        || le32(&sb, 16) != crc32(&[sb.get(..16).unwrap_or_default()])
    {
        return Err(RpmbFileError::NotAnImage);
    }
    let blocks = le32(&sb, 12);
    let len = file.metadata()?.len();
    if len < DATA_OFF.saturating_add(u64::from(blocks).saturating_mul(BLOCK_BYTES as u64)) {
        return Err(RpmbFileError::NotAnImage);
    }
    let mut storage = FileRpmbStorage {
        file: file.try_clone()?,
        blocks,
        counter: 0,
        seq: 0,
        newest_slot: None,
        record: vec![0u8; SLOT_BYTES as usize],
    };
    storage.recover()?;
    let keys = FileKeyStore {
        file,
        key: None,
        loaded: false,
    };
    Ok((keys, storage))
}

/// The key record of an image.
#[derive(Debug)]
pub struct FileKeyStore {
    file: File,
    key: Option<Key>,
    loaded: bool,
}

impl KeyStore for FileKeyStore {
    type Error = RpmbFileError;

    fn key(&mut self) -> Result<Option<Key>, RpmbFileError> {
        if !self.loaded {
            let mut rec = [0u8; 512];
            self.file.read_exact_at(&mut rec, KEY_OFF)?;
            let valid = rec.get(..8) == Some(&KEY_MAGIC[..])
                && rec.get(8) == Some(&1)
                && le32(&rec, 48) == crc32(&[rec.get(..48).unwrap_or_default()]);
            if valid {
                let mut key = [0u8; 32];
                key.copy_from_slice(rec.get(16..48).unwrap_or(&[0; 32]));
                self.key = Some(key);
            }
            self.loaded = true;
        }
        Ok(self.key)
    }

    fn program(&mut self, key: &Key) -> Result<(), RpmbFileError> {
        if self.key()?.is_some() {
            return Err(RpmbFileError::AlreadyProgrammed);
        }
        let mut rec = [0u8; 512];
        rec[..8].copy_from_slice(KEY_MAGIC);
        rec[8] = 1;
        rec[16..48].copy_from_slice(key);
        let crc = crc32(&[&rec[..48]]);
        rec[48..52].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&rec, KEY_OFF)?;
        self.file.sync_data()?;
        self.key = Some(*key);
        Ok(())
    }
}

/// The data blocks and the journal of an image.
#[derive(Debug)]
pub struct FileRpmbStorage {
    file: File,
    blocks: u32,
    counter: u32,
    /// Sequence number of the newest valid record (0: none).
    seq: u64,
    /// The slot holding it.
    newest_slot: Option<u64>,
    /// A record's bytes (header and data), reused.
    record: Vec<u8>,
}

/// A journal record read back.
struct Record {
    seq: u64,
    counter: u32,
    block: u32,
    len: usize,
}

impl FileRpmbStorage {
    fn slot_off(slot: u64) -> u64 {
        SLOT0_OFF.saturating_add(slot.saturating_mul(SLOT_BYTES))
    }

    /// Reads slot `slot` into `self.record`; `None` when it holds no
    /// whole, valid record.
    fn read_slot(&mut self, slot: u64) -> Result<Option<Record>, RpmbFileError> {
        let off = Self::slot_off(slot);
        let head = self
            .record
            .get_mut(..JOURNAL_HEADER)
            .ok_or(RpmbFileError::NotAnImage)?;
        self.file.read_exact_at(head, off)?;
        if head.get(..8) != Some(&JOURNAL_MAGIC[..]) {
            return Ok(None);
        }
        let seq = le64(head, 8);
        let counter = le32(head, 16);
        let block = le32(head, 20);
        let n = le32(head, 24) as usize;
        let crc = le32(head, 28);
        if n == 0 || n > MAX_WRITE_BLOCKS {
            return Ok(None);
        }
        let len = n.saturating_mul(BLOCK_BYTES);
        let end = JOURNAL_HEADER.saturating_add(len);
        let data = self
            .record
            .get_mut(JOURNAL_HEADER..end)
            .ok_or(RpmbFileError::NotAnImage)?;
        self.file
            .read_exact_at(data, off.saturating_add(JOURNAL_HEADER as u64))?;
        let header = self.record.get(..28).unwrap_or_default();
        let data = self.record.get(JOURNAL_HEADER..end).unwrap_or_default();
        if crc32(&[header, data]) != crc {
            return Ok(None);
        }
        Ok(Some(Record {
            seq,
            counter,
            block,
            len,
        }))
    }

    /// Applies the record in `self.record` to the data area.
    fn apply(&self, rec: &Record) -> Result<(), RpmbFileError> {
        let end = u64::from(rec.block).saturating_add((rec.len / BLOCK_BYTES) as u64);
        if end > u64::from(self.blocks) {
            return Err(RpmbFileError::OutOfRange);
        }
        let data = self
            .record
            .get(JOURNAL_HEADER..JOURNAL_HEADER.saturating_add(rec.len))
            .unwrap_or_default();
        let at = DATA_OFF.saturating_add(u64::from(rec.block).saturating_mul(BLOCK_BYTES as u64));
        self.file.write_all_at(data, at)?;
        Ok(())
    }

    /// Replays the valid records oldest first and takes the counter of the
    /// newest.
    fn recover(&mut self) -> Result<(), RpmbFileError> {
        let a = self.read_slot(0)?.map(|r| (0u64, r));
        let b = self.read_slot(1)?.map(|r| (1u64, r));
        let mut valid: Vec<(u64, Record)> = a.into_iter().chain(b).collect();
        valid.sort_by_key(|(_, r)| r.seq);
        for (slot, rec) in &valid {
            // Re-read: `self.record` holds the last slot read.
            let again = self.read_slot(*slot)?.ok_or(RpmbFileError::NotAnImage)?;
            self.apply(&again)?;
            self.seq = rec.seq;
            self.counter = rec.counter;
            self.newest_slot = Some(*slot);
        }
        if !valid.is_empty() {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

impl RpmbStorage for FileRpmbStorage {
    type Error = RpmbFileError;

    fn blocks(&self) -> u32 {
        self.blocks
    }

    fn write_counter(&mut self) -> Result<u32, RpmbFileError> {
        Ok(self.counter)
    }

    fn read(&mut self, block: u32, buf: &mut [u8]) -> Result<(), RpmbFileError> {
        let end = u64::from(block).saturating_add((buf.len() / BLOCK_BYTES) as u64);
        if end > u64::from(self.blocks) {
            return Err(RpmbFileError::OutOfRange);
        }
        let at = DATA_OFF.saturating_add(u64::from(block).saturating_mul(BLOCK_BYTES as u64));
        self.file.read_exact_at(buf, at)?;
        Ok(())
    }

    fn write(&mut self, block: u32, data: &[u8], counter: u32) -> Result<(), RpmbFileError> {
        let n = data.len() / BLOCK_BYTES;
        let end = u64::from(block).saturating_add(n as u64);
        if n == 0 || n > MAX_WRITE_BLOCKS || end > u64::from(self.blocks) {
            return Err(RpmbFileError::OutOfRange);
        }
        let seq = self.seq.saturating_add(1);
        let slot = match self.newest_slot {
            Some(0) => 1,
            _ => 0,
        };
        let len = n.saturating_mul(BLOCK_BYTES);
        let rec_end = JOURNAL_HEADER.saturating_add(len);
        {
            let rec = self
                .record
                .get_mut(..rec_end)
                .ok_or(RpmbFileError::OutOfRange)?;
            let (head_out, body) = rec.split_at_mut(JOURNAL_HEADER);
            let mut head = [0u8; JOURNAL_HEADER];
            head[..8].copy_from_slice(JOURNAL_MAGIC);
            head[8..16].copy_from_slice(&seq.to_le_bytes());
            head[16..20].copy_from_slice(&counter.to_le_bytes());
            head[20..24].copy_from_slice(&block.to_le_bytes());
            head[24..28].copy_from_slice(&(n as u32).to_le_bytes());
            body.copy_from_slice(data.get(..len).unwrap_or_default());
            let crc = crc32(&[&head[..28], body]);
            head[28..32].copy_from_slice(&crc.to_le_bytes());
            head_out.copy_from_slice(&head);
        }
        let result = (|| {
            // 1: the record, synced: the commit point.
            let rec = self.record.get(..rec_end).unwrap_or_default();
            self.file.write_all_at(rec, Self::slot_off(slot))?;
            self.file.sync_data()?;
            // 2: the data in place, synced, before the other slot (the
            // previous state) may be overwritten by the next write.
            let record = Record {
                seq,
                counter,
                block,
                len,
            };
            self.apply(&record)?;
            self.file.sync_data()?;
            Ok::<(), RpmbFileError>(())
        })();
        match result {
            Ok(()) => {
                self.seq = seq;
                self.counter = counter;
                self.newest_slot = Some(slot);
                Ok(())
            }
            Err(e) => {
                // Whatever reached the disk decides: re-read the journal.
                self.seq = 0;
                self.counter = 0;
                self.newest_slot = None;
                let _ = self.recover();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rpmb-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("image")
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xcbf4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xcbf4_3926);
    }

    #[test]
    fn key_counter_and_data_persist_across_opens() {
        let path = temp("persist");
        create(&path, 2).unwrap();
        assert!(create(&path, 2).is_err(), "never over an existing image");
        let (mut keys, mut st) = open(&path).unwrap();
        assert_eq!(st.blocks(), 1024);
        assert_eq!(keys.key().unwrap(), None);
        assert_eq!(st.write_counter().unwrap(), 0);
        keys.program(&[7; 32]).unwrap();
        assert!(keys.program(&[8; 32]).is_err());
        for i in 0..5u32 {
            st.write(i * 3, &[i as u8; 512], i + 1).unwrap();
        }
        drop((keys, st));
        let (mut keys, mut st) = open(&path).unwrap();
        assert_eq!(keys.key().unwrap(), Some([7; 32]));
        assert_eq!(st.write_counter().unwrap(), 5);
        let mut b = [0u8; 512];
        st.read(12, &mut b).unwrap();
        assert_eq!(b, [4; 512]);
        st.read(0, &mut b).unwrap();
        assert_eq!(b, [0; 512]);
        assert!(st.read(1023, &mut b).is_err());
    }

    #[test]
    fn a_torn_record_reads_as_the_old_state() {
        let path = temp("torn");
        create(&path, 1).unwrap();
        let (_, mut st) = open(&path).unwrap();
        st.write(0, &[1; 256], 1).unwrap();
        st.write(0, &[2; 256], 2).unwrap();
        // Tear the newest record (slot 1): its data half written.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 100], SLOT0_OFF + SLOT_BYTES + 64)
            .unwrap();
        // And the data area as a crash mid-apply of a third write leaves it.
        f.write_all_at(&[9; 256], DATA_OFF).unwrap();
        drop((st, f));
        let (_, mut st) = open(&path).unwrap();
        assert_eq!(st.write_counter().unwrap(), 1);
        let mut b = [0u8; 256];
        st.read(0, &mut b).unwrap();
        assert_eq!(b, [1; 256], "replayed from the valid record");
    }
}
