//! The IOMMU device (ID 23, virtio 1.4 §"IOMMU Device"), and
//! [`Translated`]: the memory view that puts any other device of this crate
//! behind it.
//!
//! Two queues: `requestq` (0) takes ATTACH, DETACH, MAP, UNMAP and PROBE,
//! each answered in order with the 4-byte tail at the end of the writable
//! part; `eventq` (1) holds the driver's buffers until a translation fault
//! needs one.
//!
//! # Sharing the tables without `unsafe` or a heap
//!
//! The device changes the domain and mapping tables; the [`Translated`]
//! views read them on every access of the devices behind the IOMMU. Both
//! borrow one caller-owned [`IommuTables`]: its state is in a
//! `core::cell::RefCell` (borrowed only for the length of one request or
//! one lookup, never across a call into other code, with `try_borrow*` so
//! a surprise is an error answer, not a panic), and a `Cell` generation
//! counter is bumped by every change a translation could see. A
//! [`Translated`] caches the last window it found with the generation it
//! found it at, so a hit reads no table at all. `RefCell` makes the tables
//! `!Sync`: the IOMMU and the devices behind it run on one thread (the
//! embedder's loop), which is how every device here is driven anyway. The
//! capacities are const generics (`D` domains, `N` mappings, `E`
//! endpoints) in `heapless` containers; a full table answers `NOMEM` and
//! changes nothing.
//!
//! Faults go the other way: a failing access of a [`Translated`] queues a
//! [`Fault`] in the tables (up to [`FAULT_QUEUE`]; more are counted and
//! dropped, which the spec allows when no buffer is available), and the
//! device writes them into held eventq buffers when it is polled
//! ([`DeviceCore::poll`](virtio_core::device::DeviceCore::poll)) or the
//! driver posts a buffer. The embedder polls the IOMMU's core after
//! serving the devices behind it ([`IommuTables::pending_faults`] says
//! whether there is anything to deliver).
//!
//! # Answers
//!
//! * A chain whose writable part has fewer than 4 bytes has no tail: it is
//!   returned unwritten with used length 0 (the spec's "unable to set
//!   status"). An unknown request type, and PROBE when `F_PROBE` is not
//!   offered, likewise (virtio 1.4 §"Device operations": the device SHOULD
//!   NOT write the buffer and SHOULD set the used length to zero); the
//!   Linux driver reads that as `IOERR`.
//! * A chain the queue engine rejects gets `IOERR` in its last 4 bytes
//!   ([`MalformedChain::StatusAtEnd`]): a malformed request never reads as
//!   success.
//! * Otherwise the whole writable part is written: zeroes (or PROBE's
//!   properties) and the tail, whose `reserved` is zero. A readable part
//!   too short for its type is `INVAL`; MAP and UNMAP without
//!   `F_MAP_UNMAP` negotiated, and PROBE offered but not negotiated, are
//!   `UNSUPP`.
//! * Ranges: `virt_start <= virt_end` (else `INVAL`), inside
//!   `input_range` and aligned to the granule (`virt_start`, `phys_start`,
//!   `virt_end + 1`; else `RANGE`); a domain ID outside `domain_range` is
//!   `RANGE`; an endpoint the platform did not list is `NOENT`; MAP or
//!   UNMAP of a domain that does not exist, and DETACH from one, `NOENT`.
//! * MAP refuses (`INVAL`) an overlap with an existing mapping or with a
//!   reserved region of an endpoint in the domain; a MAP is one table
//!   insertion, so a refused or `NOMEM` MAP leaves the table as it was.
//!   UNMAP that would split a mapping is `RANGE` and removes nothing.
//! * ATTACH checks `reserved` and `flags` (`INVAL`; `ATTACH_F_BYPASS` is
//!   known only with `F_BYPASS_CONFIG` negotiated), bypass consistency with
//!   an existing domain (`INVAL`), and reserved regions of the endpoint
//!   mapped in the domain it joins (`UNSUPP`). An endpoint attached
//!   elsewhere is detached first, as by a DETACH; a domain whose last
//!   endpoint leaves ceases to exist with its mappings.
//! * `bypass` in the configuration is written only with
//!   `F_BYPASS_CONFIG` offered; any non-zero byte is stored as 1, so the
//!   device never presents another value. It survives a device reset and
//!   goes back to its initial value on [`IommuTables::system_reset`].

mod tables;
mod translated;
mod wire;

pub use tables::*;
pub use translated::Translated;
pub use wire::*;

use heapless::Deque;
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Head, Writer};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

/// Most segments of one request or event chain.
pub const CHAIN_SEGMENTS: usize = 8;
/// The request queue.
pub const REQUESTQ: u16 = 0;
/// The event queue.
pub const EVENTQ: u16 = 1;
/// Event buffers the device can hold: the eventq's largest size, so every
/// buffer the driver posts can be held.
pub const EVENT_BUFFERS: usize = 64;

const IOERR: &[u8] = &[Status::IoErr as u8, 0, 0, 0];
const TAIL: u32 = size_of::<ReqTail>() as u32;
const FAULT_BYTES: u32 = size_of::<FaultReport>() as u32;

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IommuStats {
    /// Requests answered `OK`.
    pub ok: u32,
    /// Requests answered with another status.
    pub errors: u32,
    /// Requests returned unwritten (no tail, unknown type, PROBE not offered).
    pub unanswered: u32,
    /// Fault reports written into event buffers.
    pub faults: u32,
    /// Event buffers returned unused (smaller than a fault report).
    pub bad_event_buffers: u32,
}

/// A held event buffer: its head and the contiguous 24 bytes the report
/// goes in.
#[derive(Clone, Copy, Debug)]
struct Held {
    head: Head,
    addr: u64,
}

/// The IOMMU device over caller-owned tables (see the module docs).
#[derive(Debug)]
pub struct Iommu<'t, const D: usize, const N: usize, const E: usize> {
    tables: &'t IommuTables<D, N, E>,
    negotiated: u64,
    queue_size: u16,
    held: Deque<Held, EVENT_BUFFERS>,
    stats: IommuStats,
    last_status: Option<Status>,
}

impl<'t, const D: usize, const N: usize, const E: usize> Iommu<'t, D, N, E> {
    /// The device over `tables`, with a requestq of up to 64.
    pub fn new(tables: &'t IommuTables<D, N, E>) -> Self {
        Self {
            tables,
            negotiated: 0,
            queue_size: 64,
            held: Deque::new(),
            stats: IommuStats::default(),
            last_status: None,
        }
    }

    /// Sets the largest requestq size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The tables.
    pub fn tables(&self) -> &'t IommuTables<D, N, E> {
        self.tables
    }

    /// What the device did so far.
    pub fn stats(&self) -> IommuStats {
        self.stats
    }

    /// The status of the last request answered with one.
    pub fn last_status(&self) -> Option<Status> {
        self.last_status
    }

    /// Event buffers held for fault reports.
    pub fn held_event_buffers(&self) -> usize {
        self.held.len()
    }

    /// The configuration the driver reads.
    pub fn config(&self) -> IommuConfigSpace {
        let c = self.tables.config();
        let (input_start, input_end) = c.input_range.unwrap_or((0, u64::MAX));
        let (domain_start, domain_end) = c.domain_range.unwrap_or((0, u32::MAX));
        IommuConfigSpace {
            page_size_mask: c.page_size_mask.into(),
            input_start: input_start.into(),
            input_end: input_end.into(),
            domain_start: domain_start.into(),
            domain_end: domain_end.into(),
            probe_size: c.probe_size.unwrap_or(0).into(),
            bypass: u8::from(self.tables.bypass()),
            reserved: [0; 3],
        }
    }

    fn count(&mut self, status: Status) {
        self.last_status = Some(status);
        if status == Status::Ok {
            self.stats.ok = self.stats.ok.saturating_add(1);
        } else {
            self.stats.errors = self.stats.errors.saturating_add(1);
        }
    }

    /// Serves one requestq chain: `Some(used)` once its tail is written,
    /// `None` to return it unwritten.
    fn serve<M: GuestMemory>(&mut self, mem: &M, chain: &Chain<CHAIN_SEGMENTS>) -> Option<u32> {
        let room = chain.writable_len();
        if room < TAIL {
            return None;
        }
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        // The type, then the head's `reserved`, which is not looked at: a
        // request cut inside its head still has a type to answer by.
        let mut type_ = [0u8; 1];
        if reader.read_exact(&mut type_).is_err() {
            return Some(self.finish(&mut writer, Status::Inval));
        }
        let [type_] = type_;
        let features = self.negotiated;
        let offered = self.tables.config().features();
        let known = (T_ATTACH..=T_PROBE).contains(&type_);
        if !known || (type_ == T_PROBE && offered & F_PROBE == 0) {
            return None;
        }
        if reader.skip(size_of::<ReqHead>().saturating_sub(1)).is_err() {
            return Some(self.finish(&mut writer, Status::Inval));
        }
        let status = match type_ {
            T_ATTACH => reader
                .read_obj::<AttachBody>()
                .map_or(Status::Inval, |b| self.tables.attach(&b, features)),
            T_DETACH => reader
                .read_obj::<DetachBody>()
                .map_or(Status::Inval, |b| self.tables.detach(&b)),
            T_MAP | T_UNMAP if features & F_MAP_UNMAP == 0 => Status::Unsupp,
            T_MAP => reader
                .read_obj::<MapBody>()
                .map_or(Status::Inval, |b| self.tables.map(&b, features)),
            T_UNMAP => reader
                .read_obj::<UnmapBody>()
                .map_or(Status::Inval, |b| self.tables.unmap(&b)),
            T_PROBE if features & F_PROBE == 0 => Status::Unsupp,
            _ => match reader.read_obj::<ProbeBody>() {
                Ok(b) => return Some(self.probe(&mut writer, &b, room)),
                Err(_) => Status::Inval,
            },
        };
        Some(self.finish(&mut writer, status))
    }

    /// PROBE: the endpoint's RESV_MEM properties, zeroes to `probe_size`
    /// and beyond, the tail.
    fn probe<M: GuestMemory>(
        &mut self,
        writer: &mut Writer<'_, M>,
        body: &ProbeBody,
        room: u32,
    ) -> u32 {
        // `body.reserved` is not looked at.
        let Some(resv) = self.tables.resv_of(body.endpoint.get()) else {
            return self.finish(writer, Status::NoEnt);
        };
        let probe_size = self.tables.config().probe_size.unwrap_or(0);
        if room.saturating_sub(TAIL) < probe_size {
            // No property written: `finish` fills zeroes (an empty list).
            return self.finish(writer, Status::Inval);
        }
        for r in &resv {
            let property = ProbeResvMem {
                head: ProbeProperty {
                    type_: PROBE_T_RESV_MEM.into(),
                    length: (size_of::<ProbeResvMem>() as u16)
                        .saturating_sub(size_of::<ProbeProperty>() as u16)
                        .into(),
                },
                subtype: r.subtype,
                reserved: [0; 3],
                start: r.start.into(),
                end: r.end.into(),
            };
            if writer.write_obj(&property).is_err() {
                return self.finish(writer, Status::DevErr);
            }
        }
        self.finish(writer, Status::Ok)
    }

    /// Zero-fills up to the tail, writes the tail; returns the used length.
    fn finish<M: GuestMemory>(&mut self, writer: &mut Writer<'_, M>, status: Status) -> u32 {
        self.count(status);
        let zero = [0u8; 64];
        while writer.remaining() > TAIL {
            let n = (writer.remaining().saturating_sub(TAIL) as usize).min(zero.len());
            let Some(part) = zero.get(..n) else { break };
            if writer.write_all(part).is_err() {
                return writer.bytes_written();
            }
        }
        let tail = ReqTail {
            status: status as u8,
            reserved: [0; 3],
        };
        let _ = writer.write_obj(&tail);
        writer.bytes_written()
    }

    /// Holds one eventq buffer, or returns it unused when it cannot take a
    /// whole report in its first writable descriptor.
    fn take_event<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        chain: &Chain<CHAIN_SEGMENTS>,
    ) {
        let first = chain.writable_segments().first().copied();
        match first {
            Some(s) if s.len >= FAULT_BYTES => {
                let held = Held {
                    head: chain.head(),
                    addr: s.addr,
                };
                if self.held.push_back(held).is_err() {
                    // Cannot happen: the eventq is at most EVENT_BUFFERS.
                    queues.push_used(EVENTQ, chain.head(), 0);
                }
            }
            _ => {
                self.stats.bad_event_buffers = self.stats.bad_event_buffers.saturating_add(1);
                queues.push_used(EVENTQ, chain.head(), 0);
            }
        }
    }

    /// Writes pending faults into held buffers.
    fn deliver<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        if !queues.is_live(EVENTQ) {
            return;
        }
        while !self.held.is_empty() {
            let Some(fault) = self.tables.take_fault() else {
                return;
            };
            let Some(held) = self.held.pop_front() else {
                return;
            };
            let used = match queues.memory().write_obj(held.addr, &fault.report()) {
                Ok(()) => {
                    self.stats.faults = self.stats.faults.saturating_add(1);
                    FAULT_BYTES
                }
                Err(_) => 0,
            };
            queues.push_used(EVENTQ, held.head, used);
        }
    }
}

impl<const D: usize, const N: usize, const E: usize> VirtioDevice for Iommu<'_, D, N, E> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Iommu
    }

    fn features(&self) -> Features {
        Features::from_bits_retain(self.tables.config().features())
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        if queue == EVENTQ {
            EVENT_BUFFERS as u16
        } else {
            self.queue_size
        }
    }

    fn config_len(&self) -> u32 {
        size_of::<IommuConfigSpace>() as u32
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    /// Only `bypass` is writable, with `F_BYPASS_CONFIG` offered; any
    /// non-zero value is stored as 1.
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        if !matches!(self.tables.config().bypass, Bypass::Config { .. }) {
            return;
        }
        let Some(at) = CONFIG_BYPASS_OFFSET.checked_sub(offset) else {
            return;
        };
        if let Some(&v) = usize::try_from(at).ok().and_then(|i| data.get(i)) {
            self.tables.set_bypass(v != 0);
        }
    }

    fn activate(&mut self, features: Features) {
        self.negotiated = features.bits();
        if self.tables.config().bypass == Bypass::Legacy {
            self.tables
                .set_legacy_bypass(self.negotiated & F_BYPASS != 0);
        }
    }

    /// No endpoint attached, no domain (virtio 1.4 §"Device
    /// initialization"); held buffers forgotten; `bypass` kept.
    fn reset(&mut self) {
        self.negotiated = 0;
        self.held.clear();
        self.tables.device_reset();
    }

    fn queue_reset(&mut self, queue: u16) {
        if queue == EVENTQ {
            self.held.clear();
        }
    }

    fn malformed_chain(&self, queue: u16) -> MalformedChain {
        if queue == EVENTQ {
            MalformedChain::ReturnEmpty
        } else {
            MalformedChain::StatusAtEnd(IOERR)
        }
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        match queue {
            REQUESTQ => {
                while queues.pop(REQUESTQ, &mut chain) {
                    let used = match self.serve(queues.memory(), &chain) {
                        Some(used) => used,
                        None => {
                            self.stats.unanswered = self.stats.unanswered.saturating_add(1);
                            0
                        }
                    };
                    queues.push_used(REQUESTQ, chain.head(), used);
                }
            }
            EVENTQ => {
                while queues.pop(EVENTQ, &mut chain) {
                    self.take_event(queues, &chain);
                }
            }
            _ => {}
        }
        self.deliver(queues);
    }

    /// Delivers the faults the [`Translated`] views queued.
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.deliver(queues);
    }
}

#[cfg(test)]
mod tests;
