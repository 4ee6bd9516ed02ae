//! In-flight tracking (`VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`): a record of
//! the chains the device holds, in a region the frontend keeps across a
//! restart of this daemon.
//!
//! When the daemon dies (killed, crashed) the frontend keeps the guest
//! running, waits for a new daemon (`-chardev socket,reconnect=1`) and
//! rewinds each ring to its used index. For a device that completes in the
//! order it pops, that alone loses nothing: the chains in flight are
//! exactly the ones after the used index, and they are popped again. A
//! device that holds chains and returns them out of order (GPIO interrupt
//! waits, held event buffers) would take returned chains twice and lose
//! held ones. The record fixes that: the daemon allocates a memfd
//! (`GET_INFLIGHT_FD`), the frontend keeps it and hands it to the next
//! daemon (`SET_INFLIGHT_FD`), which resubmits the chains the record says
//! are in flight before anything new, and resumes each ring past them.
//!
//! The layout is the vhost-user specification's split-ring one ("Inflight
//! I/O tracking"), native byte order, one region per queue of
//! `16 + 16 × queue size` bytes rounded up to 64:
//!
//! ```text
//! u64 features (0) | u16 version (1) | u16 desc_num | u16 last_batch_head | u16 used_idx
//! desc[desc_num]: u8 inflight | u8 pad[5] | u16 next | u64 counter
//! ```
//!
//! and the record follows the core's [`Journal`] calls: a chain taken sets
//! its entry's `counter` and `inflight`; a chain returned joins the batch
//! list (`next`, `last_batch_head`); a publication clears `inflight` on the
//! batch and stores `used_idx`. A crash between the ring's used index store
//! and that clearing leaves `used_idx` behind the ring: on restart the
//! batch list, as long as the ring moved, is cleared first.
//!
//! Packed rings are not recorded (their layout keeps whole descriptors);
//! they restart by the frontend's rewind, which is exact for the devices
//! that complete in order (block, rng, console, I2C, SPI, RPMB).
//!
//! The memfd this daemon creates is sealed against shrinking and growing;
//! a region handed over by `SET_INFLIGHT_FD` must be sealed the same way
//! (or the daemon runs with `--allow-unsealed-memory`), as guest memory
//! must: a file shrunk under the mapping would kill the daemon.

use std::fs::File;
use std::os::fd::AsFd;

use memmap2::MmapOptions;
use rustix::fs::{MemfdFlags, SealFlags};
use virtio_core::device::Journal;
use virtio_core::memory::{GuestMemory, MappedMemory};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::memory::UnsealedMemory;

/// Bytes of a queue region's header.
const HEADER: u64 = 16;
/// Bytes of one descriptor's state.
const DESC: u64 = 16;
/// Region version this daemon writes (0 means "never initialised").
const VERSION: u16 = 1;

/// Bytes one queue of `queue_size` descriptors takes in the region.
pub fn queue_region_len(queue_size: u16) -> u64 {
    // At most 16 + 16 × 65535: no overflow.
    let raw = HEADER.wrapping_add(DESC.wrapping_mul(u64::from(queue_size)));
    raw.div_ceil(64).wrapping_mul(64)
}

/// Why a region cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum InflightError {
    /// No queues, a queue size of 0, or a size or offset that overflows.
    Geometry,
    /// The file is smaller than `mmap_offset + mmap_size`, or `mmap_size`
    /// is smaller than the queues need.
    TooSmall {
        /// What the queues need.
        need: u64,
        /// What the frontend gave.
        have: u64,
    },
    /// The file is not sealed against shrinking.
    Unsealed,
    /// Creating, sizing, sealing or mapping the memfd failed.
    Io(std::io::Error),
}

impl std::fmt::Display for InflightError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Geometry => f.write_str("inflight region: no queues or a size that overflows"),
            Self::TooSmall { need, have } => {
                write!(f, "inflight region: {have} bytes, the queues need {need}")
            }
            Self::Unsealed => f.write_str("inflight region: file not sealed against shrinking"),
            Self::Io(e) => write!(f, "inflight region: {e}"),
        }
    }
}

impl std::error::Error for InflightError {}

impl From<std::io::Error> for InflightError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<rustix::io::Errno> for InflightError {
    fn from(e: rustix::io::Errno) -> Self {
        Self::Io(e.into())
    }
}

/// The region as mapped.
#[derive(Debug)]
struct Region {
    mem: MappedMemory<1>,
    /// The mapped file, kept to map it again ([`Inflight::for_queue`]).
    file: File,
    offset: u64,
    size: u64,
    num_queues: u16,
    queue_size: u16,
    /// The device's queue that this record's queue 0 is (0, or the queue a
    /// worker thread serves).
    first: u16,
}

impl Region {
    fn base(&self, queue: u16) -> Option<u64> {
        let queue = queue.checked_add(self.first)?;
        (queue < self.num_queues)
            .then(|| u64::from(queue).wrapping_mul(queue_region_len(self.queue_size)))
    }

    fn desc(&self, queue: u16, head: u16) -> Option<u64> {
        let base = self.base(queue)?;
        (head < self.queue_size).then(|| {
            base.wrapping_add(HEADER)
                .wrapping_add(DESC.wrapping_mul(u64::from(head)))
        })
    }

    /// A field of the region (native byte order, as the frontend's side
    /// lays it out). Inside the region, checked when it was mapped: the
    /// access cannot fail, and a field that could not be read reads as 0.
    fn get<T: FromBytes + IntoBytes>(&self, addr: u64) -> T {
        self.mem.read_obj(addr).unwrap_or_else(|_| T::new_zeroed())
    }

    fn set<T: IntoBytes + Immutable>(&self, addr: u64, value: T) {
        let _ = self.mem.write_obj(addr, &value);
    }

    fn inflight(&self, desc: u64) -> bool {
        self.get::<u8>(desc) == 1
    }

    fn set_inflight(&self, desc: u64, on: bool) {
        self.set(desc, u8::from(on));
    }
}

/// Per-queue bookkeeping that lives in the daemon, not in the region.
#[derive(Debug, Default, Clone)]
struct QueueState {
    /// Recorded (split ring started with the region).
    recording: bool,
    /// Chains returned since the last publication (the batch list's length).
    batch: u16,
    /// Heads to resubmit, oldest first.
    resubmit: std::collections::VecDeque<u16>,
}

/// The daemon's [`Journal`]: the frontend's inflight region, once it gave
/// one. Records nothing until then, and nothing for packed rings.
#[derive(Debug, Default)]
pub struct Inflight {
    region: Option<Region>,
    queues: Vec<QueueState>,
    /// The next `counter` value: orders the chains taken.
    counter: u64,
}

impl Inflight {
    /// No region yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `GET_INFLIGHT_FD`: a fresh, zeroed, sealed memfd for `num_queues`
    /// queues of `queue_size`, mapped as this connection's record. Returns
    /// the file and its size.
    ///
    /// # Errors
    /// [`InflightError`].
    pub fn create(
        &mut self,
        num_queues: u16,
        queue_size: u16,
    ) -> Result<(File, u64), InflightError> {
        let len = Self::need(num_queues, queue_size)?;
        let fd = rustix::fs::memfd_create(
            "virtio-vhost-user-inflight",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let file = File::from(fd);
        self.map(&file, 0, len, num_queues, queue_size, 0)?;
        Ok((file, len))
    }

    /// `SET_INFLIGHT_FD`: the region the frontend kept (from this daemon's
    /// `GET_INFLIGHT_FD`, or a predecessor's), at `offset` for `size`
    /// bytes. Replaces any earlier one; queues started from now on recover
    /// from it.
    ///
    /// # Errors
    /// [`InflightError`]; the record is then off.
    pub fn adopt(
        &mut self,
        file: &File,
        offset: u64,
        size: u64,
        num_queues: u16,
        queue_size: u16,
        unsealed: UnsealedMemory,
    ) -> Result<(), InflightError> {
        self.region = None;
        let need = Self::need(num_queues, queue_size)?;
        if size < need {
            return Err(InflightError::TooSmall { need, have: size });
        }
        let end = offset.checked_add(size).ok_or(InflightError::Geometry)?;
        let file_len = file.metadata()?.len();
        if end > file_len {
            return Err(InflightError::TooSmall {
                need: end,
                have: file_len,
            });
        }
        let seals = rustix::fs::fcntl_get_seals(file.as_fd()).unwrap_or(SealFlags::empty());
        if unsealed == UnsealedMemory::Refuse && !seals.contains(SealFlags::SHRINK) {
            return Err(InflightError::Unsealed);
        }
        self.map(file, offset, size, num_queues, queue_size, 0)
    }

    /// The same region mapped again as the record of one queue, `queue`,
    /// seen as that record's queue 0: for a queue served on its own thread
    /// by a core of one queue. Without a region, a record of nothing.
    ///
    /// # Errors
    /// [`InflightError`] if the region cannot be mapped again.
    pub fn for_queue(&self, queue: u16) -> Result<Self, InflightError> {
        let mut record = Self::new();
        if let Some(r) = &self.region {
            record.map(&r.file, r.offset, r.size, r.num_queues, r.queue_size, queue)?;
        }
        Ok(record)
    }

    fn need(num_queues: u16, queue_size: u16) -> Result<u64, InflightError> {
        if num_queues == 0 || queue_size == 0 {
            return Err(InflightError::Geometry);
        }
        Ok(u64::from(num_queues).wrapping_mul(queue_region_len(queue_size)))
    }

    fn map(
        &mut self,
        file: &File,
        offset: u64,
        size: u64,
        num_queues: u16,
        queue_size: u16,
        first: u16,
    ) -> Result<(), InflightError> {
        let len = usize::try_from(size).map_err(|_| InflightError::Geometry)?;
        let map = MmapOptions::new().offset(offset).len(len).map_raw(file)?;
        let mut mem = MappedMemory::new();
        mem.add(0, map)
            .map_err(|e| InflightError::Io(std::io::Error::other(e.to_string())))?;
        self.region = Some(Region {
            mem,
            file: file.try_clone()?,
            offset,
            size,
            num_queues,
            queue_size,
            first,
        });
        self.queues = vec![QueueState::default(); usize::from(num_queues)];
        self.counter = 0;
        Ok(())
    }

    /// Whether a region is mapped.
    pub fn is_mapped(&self) -> bool {
        self.region.is_some()
    }

    /// A split ring of `size` descriptors starts on `queue` with the
    /// driver's `used.idx` at `used`: recover what the region says was in
    /// flight (queued for resubmission, oldest first) and return where the
    /// ring resumes (`used` + chains in flight). `None` when there is no
    /// record for this queue (no region, another queue size, or a region
    /// never written: it is initialised now and the frontend's base
    /// stands).
    pub fn start_split(&mut self, queue: u16, size: u16, used: u16) -> Option<u16> {
        let region = self.region.as_ref()?;
        let state = self.queues.get_mut(usize::from(queue))?;
        *state = QueueState::default();
        let base = region.base(queue)?;
        if size != region.queue_size {
            log::warn!(
                "virtqueue {queue}: size {size}, inflight region made for {}: not recorded",
                region.queue_size
            );
            return None;
        }
        state.recording = true;
        if region.get::<u16>(base.wrapping_add(8)) != VERSION
            || region.get::<u16>(base.wrapping_add(10)) != size
        {
            // Never written (or by something else): start it clean.
            for head in 0..size {
                if let Some(desc) = region.desc(queue, head) {
                    region.set_inflight(desc, false);
                }
            }
            region.set::<u64>(base, 0);
            region.set::<u16>(base.wrapping_add(10), size);
            region.set::<u16>(base.wrapping_add(12), 0);
            region.set::<u16>(base.wrapping_add(14), used);
            region.set::<u16>(base.wrapping_add(8), VERSION);
            return None;
        }
        // The ring moved past the record's used index: the last batch was
        // published before its entries were cleared. Clear them now.
        let recorded = region.get::<u16>(base.wrapping_add(14));
        let mut left = used.wrapping_sub(recorded).min(size);
        let mut head = region.get::<u16>(base.wrapping_add(12));
        while left > 0 {
            let Some(desc) = region.desc(queue, head) else {
                break;
            };
            region.set_inflight(desc, false);
            head = region.get::<u16>(desc.wrapping_add(6));
            left = left.wrapping_sub(1);
        }
        region.set::<u16>(base.wrapping_add(14), used);
        let mut held: Vec<(u64, u16)> = (0..size)
            .filter_map(|h| {
                let desc = region.desc(queue, h)?;
                region
                    .inflight(desc)
                    .then(|| (region.get::<u64>(desc.wrapping_add(8)), h))
            })
            .collect();
        held.sort_unstable();
        if let Some((last, _)) = held.last() {
            self.counter = self.counter.max(last.wrapping_add(1));
        }
        let count = u16::try_from(held.len()).unwrap_or(size);
        state.resubmit = held.into_iter().map(|(_, h)| h).collect();
        if count > 0 {
            log::info!(
                "virtqueue {queue}: resubmitting {count} chain(s) in flight before the restart"
            );
        }
        Some(used.wrapping_add(count))
    }

    /// `queue` stops or runs a packed ring: no recording for it.
    pub fn stop(&mut self, queue: u16) {
        if let Some(state) = self.queues.get_mut(usize::from(queue)) {
            *state = QueueState::default();
        }
    }

    /// Chains queued for resubmission on `queue` (for tests and logs).
    pub fn pending_resubmissions(&self, queue: u16) -> usize {
        self.queues
            .get(usize::from(queue))
            .map_or(0, |s| s.resubmit.len())
    }

    fn recording(&mut self, queue: u16) -> Option<(&Region, &mut QueueState)> {
        let region = self.region.as_ref()?;
        let state = self.queues.get_mut(usize::from(queue))?;
        state.recording.then_some((region, state))
    }
}

impl Journal for Inflight {
    fn resubmit(&mut self, queue: u16) -> Option<u16> {
        self.queues
            .get_mut(usize::from(queue))?
            .resubmit
            .pop_front()
    }

    fn taken(&mut self, queue: u16, head: u16) {
        let counter = self.counter;
        let Some((region, _)) = self.recording(queue) else {
            return;
        };
        let Some(desc) = region.desc(queue, head) else {
            return;
        };
        region.set::<u64>(desc.wrapping_add(8), counter);
        region.set_inflight(desc, true);
        self.counter = counter.wrapping_add(1);
    }

    fn returned(&mut self, queue: u16, head: u16) {
        let Some((region, state)) = self.recording(queue) else {
            return;
        };
        let (Some(base), Some(desc)) = (region.base(queue), region.desc(queue, head)) else {
            return;
        };
        region.set::<u16>(
            desc.wrapping_add(6),
            region.get::<u16>(base.wrapping_add(12)),
        );
        region.set::<u16>(base.wrapping_add(12), head);
        state.batch = state.batch.saturating_add(1);
    }

    fn published(&mut self, queue: u16, used: u16) {
        let Some((region, state)) = self.recording(queue) else {
            return;
        };
        let Some(base) = region.base(queue) else {
            return;
        };
        let mut head = region.get::<u16>(base.wrapping_add(12));
        for _ in 0..std::mem::take(&mut state.batch) {
            let Some(desc) = region.desc(queue, head) else {
                break;
            };
            region.set_inflight(desc, false);
            head = region.get::<u16>(desc.wrapping_add(6));
        }
        region.set::<u16>(base.wrapping_add(14), used);
    }

    fn active(&mut self) -> Option<&mut dyn Journal> {
        if self.region.is_some() && self.queues.iter().any(|q| q.recording) {
            Some(self)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

    use super::*;

    /// The region as another implementation reads it: raw bytes at the
    /// specification's offsets.
    fn raw(file: &File) -> Vec<u8> {
        use std::io::Read;
        let mut bytes = Vec::new();
        let mut f = file.try_clone().unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    }

    fn desc_inflight(bytes: &[u8], queue: u16, qs: u16, head: u16) -> u8 {
        let at = u64::from(queue) * queue_region_len(qs) + HEADER + DESC * u64::from(head);
        bytes[at as usize]
    }

    #[test]
    fn region_is_sized_per_queue_and_sealed() {
        let mut j = Inflight::new();
        let (file, len) = j.create(2, 128).unwrap();
        assert_eq!(len, 2 * queue_region_len(128));
        assert_eq!(
            queue_region_len(128),
            2112,
            "16 + 16 × 128 rounded up to 64"
        );
        assert_eq!(file.metadata().unwrap().len(), len);
        let seals = rustix::fs::fcntl_get_seals(&file).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW));
        assert!(matches!(j.create(0, 128), Err(InflightError::Geometry)));
    }

    #[test]
    fn records_taken_returned_and_published_in_the_specified_layout() {
        let mut j = Inflight::new();
        let (file, _) = j.create(1, 8).unwrap();
        assert_eq!(
            j.start_split(0, 8, 0),
            None,
            "fresh region: frontend's base"
        );
        let bytes = raw(&file);
        assert_eq!(u16::from_ne_bytes([bytes[8], bytes[9]]), VERSION);
        assert_eq!(u16::from_ne_bytes([bytes[10], bytes[11]]), 8);
        j.taken(0, 3);
        j.taken(0, 5);
        j.returned(0, 3);
        let bytes = raw(&file);
        assert_eq!(
            desc_inflight(&bytes, 0, 8, 3),
            1,
            "returned, not yet published"
        );
        assert_eq!(desc_inflight(&bytes, 0, 8, 5), 1);
        j.published(0, 1);
        let bytes = raw(&file);
        assert_eq!(desc_inflight(&bytes, 0, 8, 3), 0);
        assert_eq!(desc_inflight(&bytes, 0, 8, 5), 1);
        assert_eq!(u16::from_ne_bytes([bytes[14], bytes[15]]), 1);
    }

    #[test]
    fn a_successor_resubmits_in_taking_order_and_resumes_past_them() {
        let mut first = Inflight::new();
        let (file, len) = first.create(1, 8).unwrap();
        first.start_split(0, 8, 0);
        for head in [6, 2, 4] {
            first.taken(0, head);
        }
        first.returned(0, 2);
        first.published(0, 1);
        drop(first);
        let mut next = Inflight::new();
        next.adopt(&file, 0, len, 1, 8, UnsealedMemory::Refuse)
            .unwrap();
        // used.idx 1: chains 6 and 4 are still the device's.
        assert_eq!(next.start_split(0, 8, 1), Some(3));
        assert_eq!(next.resubmit(0), Some(6));
        assert_eq!(next.resubmit(0), Some(4));
        assert_eq!(next.resubmit(0), None);
        // New chains are ordered after the resubmitted ones.
        next.taken(0, 1);
        let bytes = raw(&file);
        let at = (HEADER + DESC) as usize + 8;
        assert_eq!(u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap()), 3);
    }

    #[test]
    fn a_batch_published_before_the_crash_cleared_it_is_not_resubmitted() {
        let mut first = Inflight::new();
        let (file, len) = first.create(1, 8).unwrap();
        first.start_split(0, 8, 0);
        first.taken(0, 1);
        first.taken(0, 2);
        first.returned(0, 1);
        first.returned(0, 2);
        // The ring's used index reached 2, then the daemon died before
        // `published` cleared the batch.
        drop(first);
        let mut next = Inflight::new();
        next.adopt(&file, 0, len, 1, 8, UnsealedMemory::Refuse)
            .unwrap();
        assert_eq!(next.start_split(0, 8, 2), Some(2));
        assert_eq!(next.resubmit(0), None);
    }

    #[test]
    fn an_unsealed_or_short_region_is_refused() {
        let file = File::from(rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC).unwrap());
        file.set_len(4096).unwrap();
        let mut j = Inflight::new();
        assert!(matches!(
            j.adopt(&file, 0, 4096, 1, 8, UnsealedMemory::Refuse),
            Err(InflightError::Unsealed)
        ));
        assert!(matches!(
            j.adopt(&file, 0, 64, 1, 8, UnsealedMemory::Accept),
            Err(InflightError::TooSmall { .. })
        ));
        assert!(matches!(
            j.adopt(&file, 4000, 1024, 1, 8, UnsealedMemory::Accept),
            Err(InflightError::TooSmall { .. })
        ));
        assert!(!j.is_mapped());
        j.adopt(&file, 0, 4096, 1, 8, UnsealedMemory::Accept)
            .unwrap();
        assert!(j.is_mapped());
    }
}
