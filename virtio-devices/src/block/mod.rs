//! The block device (ID 2, virtio 1.4 §"Block Device").
//!
//! One request queue. Each request is a 16-byte header, then data
//! (device-readable for writes, device-writable for reads), then one status
//! byte the device writes last, at the very end of the writable part. A
//! request is served in three steps:
//!
//! 1. **Check the chain's shape**: at least one writable byte for the
//!    status (otherwise the request cannot be answered and the device enters
//!    `DEVICE_NEEDS_RESET`), at most `seg_max` data segments, no segment
//!    above `size_max`. A chain the queue itself rejected never gets here:
//!    the device core writes `IOERR` into its status byte.
//! 2. **Parse** the header into a [`RequestType`] and check the request
//!    against the negotiated features and the disk (multiple of 512 bytes,
//!    inside the capacity, discard segments valid).
//! 3. **Run** it on the [`BlockStorage`] and answer: data written to the
//!    writable part, anything not written zero-filled, and the
//!    [`Status`] byte last. The used length is the whole writable part.

mod storage;
mod wire;

pub use storage::{BlockStorage, RamDisk, RamDiskError};
pub use wire::*;

use virtio_core::device::{
    DeviceQueues, FeaturesError, MalformedChain, OPT_IN_RING_FEATURES, VirtioDevice,
    read_config_bytes,
};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Reader, Writer};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

/// Most segments of one request chain (header and status included).
pub const CHAIN_SEGMENTS: usize = 64;
/// Most segments a request's header and status can take: the 16-byte header
/// split into one-byte descriptors, and the status byte in its own.
const FRAMING_SEGMENTS: u32 = HEADER_BYTES + 1;
/// The largest `seg_max` the device offers: what the chain capacity holds
/// however the driver splits the header and status (virtio 1.4 §"Message
/// Framing": the device MUST NOT assume a particular arrangement), so no
/// request within `seg_max` is refused for its shape.
pub const MAX_SEG_MAX: u32 = (CHAIN_SEGMENTS as u32).wrapping_sub(FRAMING_SEGMENTS);
/// The request header's size.
const HEADER_BYTES: u32 = size_of::<BlkReqHeader>() as u32;
/// The status a malformed chain is answered with.
const IOERR: &[u8] = &[Status::IoErr as u8];
/// Most segments in one discard or write-zeroes request.
pub const MAX_DISCARD_SEGMENTS: u32 = 16;

/// Bytes moved per storage call.
const CHUNK: usize = 4096;
const SECTOR: u64 = SECTOR_SIZE as u64;

/// Limits of the `DISCARD` or `WRITE_ZEROES` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeCommand {
    /// Most sectors per segment.
    pub max_sectors: u32,
    /// Most segments per request (at most [`MAX_DISCARD_SEGMENTS`]).
    pub max_segments: u32,
    /// `DISCARD`: alignment in sectors. `WRITE_ZEROES`: whether the unmap
    /// hint may deallocate (non-zero = yes).
    pub alignment_or_may_unmap: u32,
}

/// What the block device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOptions {
    /// Offer `RO`: every write fails with `IOERR` and writes nothing.
    pub read_only: bool,
    /// Offer `FLUSH`.
    pub flush: bool,
    /// Offer `BLK_SIZE` with this block size.
    pub blk_size: Option<u32>,
    /// Most data segments per request (`SEG_MAX`, always offered; capped at
    /// [`MAX_SEG_MAX`]).
    pub seg_max: u32,
    /// Offer `SIZE_MAX` with this largest segment.
    pub size_max: Option<u32>,
    /// Offer `DISCARD`.
    pub discard: Option<RangeCommand>,
    /// Offer `WRITE_ZEROES`.
    pub write_zeroes: Option<RangeCommand>,
    /// The `GET_ID` answer (NUL-padded ASCII).
    pub id: [u8; ID_BYTES],
    /// Largest queue size the driver may choose.
    pub queue_size: u16,
    /// Request queues (`MQ` offered above 1). Requests are independent,
    /// so every queue is served alike; the transport's `DeviceCore` must
    /// have room for them.
    pub queues: u16,
}

impl Default for BlockOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            flush: true,
            blk_size: None,
            seg_max: MAX_SEG_MAX,
            size_max: None,
            discard: None,
            write_zeroes: None,
            id: [0; ID_BYTES],
            queue_size: 128,
            queues: 1,
        }
    }
}

/// Counters of what the device did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests answered `OK`.
    pub ok: u32,
    /// Requests answered `IOERR`.
    pub io_errors: u32,
    /// Requests answered `UNSUPP`.
    pub unsupported: u32,
    /// Chains whose status byte could not be written (no room for one, or
    /// guest memory there stopped being reachable after the chain was
    /// validated): the request cannot be answered, so the device entered
    /// `DEVICE_NEEDS_RESET`.
    pub no_status: u32,
}

/// The block device over a [`BlockStorage`].
#[derive(Debug)]
pub struct Block<S> {
    storage: S,
    options: BlockOptions,
    negotiated: Features,
    stats: BlockStats,
}

/// A request that failed, with the status to answer.
type Outcome = Result<(), Status>;

impl<S: BlockStorage> Block<S> {
    /// A block device over `storage`.
    pub fn new(storage: S, mut options: BlockOptions) -> Self {
        options.seg_max = options.seg_max.clamp(1, MAX_SEG_MAX);
        options.queues = options.queues.max(1);
        for cmd in [&mut options.discard, &mut options.write_zeroes]
            .into_iter()
            .flatten()
        {
            cmd.max_segments = cmd.max_segments.clamp(1, MAX_DISCARD_SEGMENTS);
        }
        Self {
            storage,
            options,
            negotiated: Features::empty(),
            stats: BlockStats::default(),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutably (call `DeviceCore::config_changed` if the
    /// capacity changes).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The options the device was made with (after clamping), e.g. to make
    /// another instance over a second handle on the same storage.
    pub fn options(&self) -> BlockOptions {
        self.options
    }

    /// What the device did so far.
    pub fn stats(&self) -> BlockStats {
        self.stats
    }

    /// The configuration space as the driver sees it.
    pub fn config(&self) -> BlkConfig {
        let o = &self.options;
        let mut c = BlkConfig {
            capacity: self.storage.capacity().into(),
            size_max: o.size_max.unwrap_or(0).into(),
            seg_max: o.seg_max.into(),
            blk_size: o.blk_size.unwrap_or(SECTOR_SIZE).into(),
            num_queues: o.queues.into(),
            ..BlkConfig::default()
        };
        if let Some(d) = o.discard {
            c.max_discard_sectors = d.max_sectors.into();
            c.max_discard_seg = d.max_segments.into();
            c.discard_sector_alignment = d.alignment_or_may_unmap.into();
        }
        if let Some(w) = o.write_zeroes {
            c.max_write_zeroes_sectors = w.max_sectors.into();
            c.max_write_zeroes_seg = w.max_segments.into();
            c.write_zeroes_may_unmap = u8::from(w.alignment_or_may_unmap != 0);
        }
        c
    }

    fn negotiated(&self, bit: u64) -> bool {
        self.negotiated.bits() & bit != 0
    }

    /// Serves one chain; returns the used length, or `None` when its status
    /// byte cannot be written and so the request cannot be answered.
    fn serve<M: GuestMemory, const N: usize>(&mut self, chain: &Chain<N>, mem: &M) -> Option<u32> {
        let Some(status_at) = chain
            .writable_segments()
            .last()
            .map(|s| s.addr.wrapping_add(u64::from(s.len)).wrapping_sub(1))
        else {
            self.stats.no_status = self.stats.no_status.saturating_add(1);
            return None;
        };
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        let status = match self.check_shape(chain).and_then(|()| {
            let header: BlkReqHeader = reader.read_obj().map_err(|_| Status::IoErr)?;
            self.run(&header, &mut reader, &mut writer)
        }) {
            Ok(()) => Status::Ok,
            Err(status) => status,
        };
        let Some((used, status)) = finish(&mut writer, mem, status_at, status) else {
            self.stats.no_status = self.stats.no_status.saturating_add(1);
            return None;
        };
        let counter = match status {
            Status::Ok => &mut self.stats.ok,
            Status::IoErr => &mut self.stats.io_errors,
            Status::Unsupp => &mut self.stats.unsupported,
        };
        *counter = counter.saturating_add(1);
        Some(used)
    }

    /// `SEG_MAX` and `SIZE_MAX` (virtio 1.4 §"Block Device / Feature bits":
    /// the limits the driver agreed to). `seg_max` counts data segments:
    /// segments that hold only header bytes, and a last segment that holds
    /// only the status byte, do not count, however the driver split them.
    fn check_shape<const N: usize>(&self, chain: &Chain<N>) -> Outcome {
        if data_segments(chain) > self.options.seg_max as usize {
            return Err(Status::IoErr);
        }
        if let Some(max) = self.options.size_max
            && chain.segments().iter().any(|s| s.len > max)
        {
            return Err(Status::IoErr);
        }
        Ok(())
    }

    /// Checks that `sectors` sectors from `sector` are on the disk.
    fn check_range(&self, sector: u64, sectors: u64) -> Outcome {
        match sector.checked_add(sectors) {
            Some(end) if end <= self.storage.capacity() => Ok(()),
            _ => Err(Status::IoErr),
        }
    }

    fn run<M: GuestMemory>(
        &mut self,
        header: &BlkReqHeader,
        reader: &mut Reader<'_, M>,
        writer: &mut Writer<'_, M>,
    ) -> Outcome {
        let sector = header.sector.get();
        // The data area is the writable part less the status byte.
        let data_room = writer.remaining().saturating_sub(1);
        match RequestType::from(header.type_.get()) {
            RequestType::In => self.read(sector, data_room, writer),
            RequestType::Out => self.write(sector, reader),
            RequestType::Flush if self.negotiated(F_FLUSH) => {
                self.storage.flush().map_err(|_| Status::IoErr)
            }
            RequestType::GetId => {
                let Some(id) = self.options.id.get(..ID_BYTES.min(data_room as usize)) else {
                    return Err(Status::IoErr);
                };
                writer.write_all(id).map_err(|_| Status::IoErr)
            }
            RequestType::Discard if self.negotiated(F_DISCARD) => {
                self.ranges(reader, self.options.discard, false)
            }
            RequestType::WriteZeroes if self.negotiated(F_WRITE_ZEROES) => {
                self.ranges(reader, self.options.write_zeroes, true)
            }
            // Not negotiated, zoned (virtio 1.4 §"Block Device / Device
            // Operation": without ZONED, zone requests MUST get UNSUPP),
            // lifetime, secure erase, or unknown.
            _ => Err(Status::Unsupp),
        }
    }

    fn read<M: GuestMemory>(
        &mut self,
        sector: u64,
        len: u32,
        writer: &mut Writer<'_, M>,
    ) -> Outcome {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(Status::IoErr);
        }
        self.check_range(sector, u64::from(len / SECTOR_SIZE))?;
        let mut buf = [0u8; CHUNK];
        let mut at = sector;
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            let part = buf.get_mut(..n).ok_or(Status::IoErr)?;
            self.storage.read(at, part).map_err(|_| Status::IoErr)?;
            writer.write_all(part).map_err(|_| Status::IoErr)?;
            at = at.saturating_add(n as u64 / SECTOR);
            left = left.saturating_sub(n);
        }
        Ok(())
    }

    fn write<M: GuestMemory>(&mut self, sector: u64, reader: &mut Reader<'_, M>) -> Outcome {
        // virtio 1.4 §"Block Device / Device Operation": with RO offered,
        // IOERR and no data written.
        if self.options.read_only {
            return Err(Status::IoErr);
        }
        let len = reader.remaining();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(Status::IoErr);
        }
        self.check_range(sector, u64::from(len / SECTOR_SIZE))?;
        let mut buf = [0u8; CHUNK];
        let mut at = sector;
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            let part = buf.get_mut(..n).ok_or(Status::IoErr)?;
            reader.read_exact(part).map_err(|_| Status::IoErr)?;
            self.storage.write(at, part).map_err(|_| Status::IoErr)?;
            at = at.saturating_add(n as u64 / SECTOR);
            left = left.saturating_sub(n);
        }
        Ok(())
    }

    /// `DISCARD` / `WRITE_ZEROES`: every segment is read and checked before
    /// any is applied; an unknown flag in any of them answers `UNSUPP`
    /// before any other check can answer `IOERR`.
    fn ranges<M: GuestMemory>(
        &mut self,
        reader: &mut Reader<'_, M>,
        limits: Option<RangeCommand>,
        zeroes: bool,
    ) -> Outcome {
        let limits = limits.ok_or(Status::Unsupp)?;
        const SEG_LEN: u32 = size_of::<BlkDiscardWriteZeroes>() as u32;
        let len = reader.remaining();
        let count = len / SEG_LEN;
        if len == 0 || !len.is_multiple_of(SEG_LEN) || count > limits.max_segments {
            return Err(Status::IoErr);
        }
        let mut segments: heapless::Vec<BlkDiscardWriteZeroes, { MAX_DISCARD_SEGMENTS as usize }> =
            heapless::Vec::new();
        for _ in 0..count {
            let seg: BlkDiscardWriteZeroes = reader.read_obj().map_err(|_| Status::IoErr)?;
            segments.push(seg).map_err(|_| Status::IoErr)?;
        }
        // virtio 1.4 §"Block Device / Device Operation": the device MUST set
        // the status to UNSUPP for an unknown flag in any segment, and for
        // DISCARD with `unmap` set.
        if segments.iter().any(|seg| {
            let flags = seg.flags.get();
            flags & !SEGMENT_F_UNMAP != 0 || (!zeroes && flags & SEGMENT_F_UNMAP != 0)
        }) {
            return Err(Status::Unsupp);
        }
        if self.options.read_only {
            return Err(Status::IoErr);
        }
        for seg in &segments {
            let sectors = seg.num_sectors.get();
            if sectors > limits.max_sectors {
                return Err(Status::IoErr);
            }
            self.check_range(seg.sector.get(), u64::from(sectors))?;
        }
        for seg in &segments {
            let (sector, sectors) = (seg.sector.get(), seg.num_sectors.get());
            if zeroes {
                self.storage.write_zeroes(sector, sectors)
            } else {
                self.storage.discard(sector, sectors)
            }
            .map_err(|_| Status::IoErr)?;
        }
        Ok(())
    }
}

/// The data segments of a request: all but those holding only header bytes
/// (the first 16 readable bytes) and a last writable segment holding only
/// the status byte.
fn data_segments<const N: usize>(chain: &Chain<N>) -> usize {
    let mut framing = 0usize;
    let mut at = 0u32;
    for seg in chain.readable_segments() {
        if at.saturating_add(seg.len) > HEADER_BYTES {
            break;
        }
        at = at.saturating_add(seg.len);
        framing = framing.saturating_add(1);
    }
    if chain.writable_segments().last().is_some_and(|s| s.len == 1) {
        framing = framing.saturating_add(1);
    }
    chain.segments().len().saturating_sub(framing)
}

/// Zero-fills what the request left unwritten before the status byte, then
/// writes the status byte (at `status_at`, the writable part's last byte)
/// last. Returns the used length and the status written, or `None` if the
/// status byte could not be written.
///
/// Guest memory that stops being reachable after the chain was validated
/// (a region the frontend removed, an IOMMU mapping the driver took away)
/// makes a write fail. A fault in the data area turns the status into
/// `IOERR`: a request whose data did not all arrive never reads as success.
/// The used length is then the part written from the start (virtio 1.4
/// §"The Virtqueue Used Ring": at least `len` bytes were written from the
/// first writable byte), and the status byte is still written in its place.
fn finish<M: GuestMemory>(
    writer: &mut Writer<'_, M>,
    mem: &M,
    status_at: u64,
    status: Status,
) -> Option<(u32, Status)> {
    let zero = [0u8; 512];
    while writer.remaining() > 1 {
        let n = (writer.remaining().saturating_sub(1) as usize).min(zero.len());
        let Some(part) = zero.get(..n) else { break };
        if writer.write_all(part).is_err() {
            // The writer stopped at the fault, short of the status byte.
            mem.write_obj(status_at, &(Status::IoErr as u8)).ok()?;
            return Some((writer.bytes_written(), Status::IoErr));
        }
    }
    writer.write_all(&[status as u8]).ok()?;
    Some((writer.bytes_written(), status))
}

impl<S: BlockStorage> VirtioDevice for Block<S> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Block
    }

    /// `SEG_MAX` always, the options' bits, and `IN_ORDER` (requests are
    /// completed as they come).
    fn features(&self) -> Features {
        let o = &self.options;
        let mut bits = F_SEG_MAX;
        for (on, bit) in [
            (o.read_only, F_RO),
            (o.flush, F_FLUSH),
            (o.blk_size.is_some(), F_BLK_SIZE),
            (o.size_max.is_some(), F_SIZE_MAX),
            (o.discard.is_some(), F_DISCARD),
            (o.write_zeroes.is_some(), F_WRITE_ZEROES),
            (o.queues > 1, F_MQ),
        ] {
            if on {
                bits |= bit;
            }
        }
        Features::from_bits_retain(bits) | (OPT_IN_RING_FEATURES & Features::IN_ORDER)
    }

    fn num_queues(&self) -> u16 {
        self.options.queues
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.options.queue_size
    }

    fn config_len(&self) -> u32 {
        size_of::<BlkConfig>() as u32
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    fn check_features(&self, _features: Features) -> Result<(), FeaturesError> {
        Ok(())
    }

    fn activate(&mut self, features: Features) {
        self.negotiated = features;
    }

    fn reset(&mut self) {
        self.negotiated = Features::empty();
    }

    /// A malformed chain gets `IOERR` in its status byte, the last byte of
    /// its last descriptor (virtio 1.4 §"Block Device / Device Operation":
    /// the status is the final byte the driver reads); without one the
    /// device enters `DEVICE_NEEDS_RESET` rather than leave a stale status
    /// that reads as success.
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        MalformedChain::StatusAtEnd(IOERR)
    }

    fn queue_notify<M: GuestMemory, const C: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, C>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        while queues.pop(queue, &mut chain) {
            match self.serve(&chain, mem) {
                Some(used) => queues.push_used(queue, chain.head(), used),
                None => {
                    // No status byte to answer in: return the buffer and
                    // stop, since the driver would read it as success.
                    queues.push_used(queue, chain.head(), 0);
                    queues.set_needs_reset();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
