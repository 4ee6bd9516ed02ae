//! The split virtqueue, device side (virtio 1.4 §"Split Virtqueues").

use super::chain::{Chain, Head};
use super::error::{ChainError, ChainErrorKind, ConfigError, QueueError, RingArea};
use super::inflight::InFlight;
use super::{QueueConfig, check_areas, vring_need_event, walk_limit};
use crate::memory::GuestMemory;
use crate::spec::{
    DescFlags, Features, Le16, MAX_QUEUE_SIZE, SPLIT_AVAIL_ALIGN, SPLIT_DESC_ALIGN,
    SPLIT_USED_ALIGN, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY, VirtqDesc, VirtqUsedElem,
    split_avail_size, split_desc_table_size, split_used_size,
};

/// Offsets inside the rings (virtio 1.4 §"The Virtqueue Available Ring", §"The Virtqueue Used Ring").
const AVAIL_IDX: u64 = 2;
const AVAIL_RING: u64 = 4;
const USED_FLAGS: u64 = 0;
const USED_IDX: u64 = 2;
const USED_RING: u64 = 4;
const DESC_SIZE: u64 = 16;
const USED_ELEM_SIZE: u64 = 8;

impl QueueConfig {
    /// Checks this configuration for a split ring: the size is a power of
    /// two in `1..=32768`, each area is aligned (16 / 2 / 4) and wholly in
    /// `mem` (virtio 1.4 §"Split Virtqueues"). Device and driver side both
    /// build on it.
    ///
    /// # Errors
    /// The first rule broken, as a [`ConfigError`].
    pub fn check_split<M: GuestMemory>(&self, mem: &M) -> Result<(), ConfigError> {
        let (config, size) = (self, self.size);
        if size == 0 {
            return Err(ConfigError::ZeroSize);
        }
        if size > MAX_QUEUE_SIZE {
            return Err(ConfigError::SizeTooLarge(size));
        }
        if !size.is_power_of_two() {
            return Err(ConfigError::SizeNotPowerOfTwo(size));
        }
        let areas = [
            (
                RingArea::Descriptors,
                config.desc_addr,
                SPLIT_DESC_ALIGN,
                split_desc_table_size(size),
            ),
            (
                RingArea::Driver,
                config.driver_addr,
                SPLIT_AVAIL_ALIGN,
                split_avail_size(size),
            ),
            (
                RingArea::Device,
                config.device_addr,
                SPLIT_USED_ALIGN,
                split_used_size(size),
            ),
        ];
        check_areas(mem, &areas)
    }
}

/// Device side of one split virtqueue of up to `S` descriptors.
///
/// Addresses were checked against guest memory when the queue was built, so
/// ring offsets below cannot overflow; every access is still checked, since
/// guest memory may change (vhost-user can remove a region).
///
/// `S` sizes the in-flight table (a few bytes per head): the queue refuses a
/// completion for a head it did not hand out, or handed out and already
/// took back, in O(1).
#[derive(Clone, Debug)]
pub struct SplitQueue<const S: usize> {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
    indirect: bool,
    in_order: bool,
    /// Next available-ring index the device will read.
    next_avail: u16,
    /// The driver's available index as last read (validated): while
    /// `next_avail` is behind it, `pop` need not read the index again.
    shadow_avail: u16,
    /// Used index after the buffers pushed so far (published or not).
    next_used: u16,
    /// Used index last stored to the ring.
    published_used: u16,
    /// IN_ORDER only: used index at which the next used element goes, and
    /// the last buffer pushed since (its id and length).
    batch_start: u16,
    batch_last: Option<(u16, u32)>,
    /// Heads popped and not yet returned.
    inflight: InFlight<S>,
}

/// A walk that cannot go on: the first problem met, else `kind`; the
/// chain's end was not reached.
fn stop(bad: Option<ChainErrorKind>, kind: ChainErrorKind) -> WalkError {
    WalkError::Chain {
        kind: bad.unwrap_or(kind),
        reached_end: false,
    }
}

/// How a descriptor walk ended without a valid chain.
enum WalkError {
    /// A ring structure could not be read: nothing is consumed.
    Ring(QueueError),
    /// The chain is malformed; `reached_end` says whether the walk found
    /// its last descriptor (so a status area there can be salvaged).
    Chain {
        kind: ChainErrorKind,
        reached_end: bool,
    },
}

impl<const S: usize> SplitQueue<S> {
    /// Builds the queue the driver configured, with the negotiated features
    /// (`INDIRECT_DESC`, `EVENT_IDX` and `IN_ORDER` are honoured).
    ///
    /// # Errors
    /// [`ConfigError`] if the size is not a power of two in `1..=32768`, an
    /// area is misaligned, or an area is not inside `mem`
    /// (virtio 1.4 §"Split Virtqueues": alignment 16 / 2 / 4), or the size
    /// is above `S`.
    pub fn new<M: GuestMemory>(
        mem: &M,
        config: QueueConfig,
        features: Features,
    ) -> Result<Self, ConfigError> {
        config.check_split(mem)?;
        let size = config.size;
        if usize::from(size) > S {
            return Err(ConfigError::SizeAboveCapacity { size, capacity: S });
        }
        Ok(Self {
            size,
            desc: config.desc_addr,
            avail: config.driver_addr,
            used: config.device_addr,
            event_idx: features.contains(Features::EVENT_IDX),
            indirect: features.contains(Features::INDIRECT_DESC),
            in_order: features.contains(Features::IN_ORDER),
            next_avail: 0,
            shadow_avail: 0,
            next_used: 0,
            published_used: 0,
            batch_start: 0,
            batch_last: None,
            inflight: InFlight::new(),
        })
    }

    /// `INDIRECT_DESC` negotiated and compiled in (cargo feature
    /// `indirect`; without it the table walk is not linked and an indirect
    /// descriptor is refused as not negotiated).
    #[inline(always)]
    fn indirect(&self) -> bool {
        cfg!(feature = "indirect") && self.indirect
    }

    /// `EVENT_IDX` negotiated and compiled in (cargo feature `event-idx`;
    /// without it the event paths are not linked and the queue behaves as
    /// without the feature).
    #[inline(always)]
    fn event_idx(&self) -> bool {
        cfg!(feature = "event-idx") && self.event_idx
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The next available index the device will consume (vhost-user's
    /// `GET_VRING_BASE`).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// The used index including buffers pushed but not yet published.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// Chains popped and not yet returned.
    pub fn in_flight(&self) -> u16 {
        self.inflight.count()
    }

    /// Restarts from given ring indices (vhost-user's `SET_VRING_BASE`, or
    /// resuming a migrated queue). Pending unpublished completions are lost
    /// and no chain is in flight any more.
    pub fn set_indices(&mut self, next_avail: u16, used: u16) {
        self.inflight.clear();
        self.next_avail = next_avail;
        self.shadow_avail = next_avail;
        self.next_used = used;
        self.published_used = used;
        self.batch_start = used;
        self.batch_last = None;
    }

    /// Forgets all ring state, as after a queue or device reset: the device
    /// then starts again at index 0 (virtio 1.4 §"Virtqueue Reset", `RING_RESET`).
    pub fn reset(&mut self) {
        self.set_indices(0, 0);
    }

    fn ring_err(area: RingArea) -> impl Fn(crate::memory::MemoryError) -> QueueError {
        move |error| QueueError::Ring { area, error }
    }

    /// `base + index * stride`; cannot overflow for an area that was checked
    /// at construction (index < size).
    fn slot(base: u64, index: u16, stride: u64) -> u64 {
        base.wrapping_add(u64::from(index).wrapping_mul(stride))
    }

    /// Index into the rings for a free-running index.
    fn wrap(&self, index: u16) -> u16 {
        index & self.size.wrapping_sub(1)
    }

    /// Number of buffers the driver has made available and the device has
    /// not taken yet.
    ///
    /// # Errors
    /// [`QueueError::AvailIndexTooFar`] if the driver's index is more than the
    /// queue size ahead (ring corrupt), [`QueueError::Ring`] if unreachable.
    pub fn pending<M: GuestMemory>(&self, mem: &M) -> Result<u16, QueueError> {
        let avail_idx = mem
            .load_u16_acquire(self.avail.wrapping_add(AVAIL_IDX))
            .map_err(Self::ring_err(RingArea::Driver))?;
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending > self.size {
            return Err(QueueError::AvailIndexTooFar {
                avail_idx,
                next_avail: self.next_avail,
            });
        }
        Ok(pending)
    }

    /// Takes the next available chain, walks and validates it into
    /// `chain` (caller-owned storage, overwritten in place).
    ///
    /// Returns `Ok(false)` when the driver has nothing available.
    ///
    /// The walk reads each descriptor once and at most
    /// `max(queue size, N)` buffer descriptors: a chain longer than the
    /// queue is a driver error (virtio 1.4 §"The Virtqueue Descriptor
    /// Table": the driver MUST NOT create a chain longer than the Queue
    /// Size), but one that arrives through an indirect table and fits in
    /// `N` is served. That is a deliberate tolerance: Linux builds such
    /// chains when a device's `seg_max` exceeds the ring size, and serving
    /// them is what keeps its data.
    ///
    /// # Errors
    /// [`QueueError::Chain`] for a malformed chain: it has been consumed and
    /// must be completed via [`QueueError::head`]; its
    /// [`ChainError::salvage`] says where an error status can go. The other
    /// errors mean the ring is corrupt ([`QueueError::needs_reset`]);
    /// nothing was consumed.
    #[inline]
    pub fn pop<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        chain: &mut Chain<N>,
    ) -> Result<bool, QueueError> {
        if self.next_avail == self.shadow_avail {
            let pending = self.pending(mem)?;
            if pending == 0 {
                return Ok(false);
            }
            self.shadow_avail = self.next_avail.wrapping_add(pending);
        }
        let entry = Self::slot(
            self.avail.wrapping_add(AVAIL_RING),
            self.wrap(self.next_avail),
            2,
        );
        let head = mem
            .read_obj::<Le16>(entry)
            .map_err(Self::ring_err(RingArea::Driver))?
            .get();
        self.take_at(mem, head, chain, 1)
    }

    /// Takes the chain at descriptor `head` again without reading the
    /// available ring: for a backend that restarts with chains in flight
    /// and resubmits them from its own record (vhost-user's inflight
    /// tracking, [`crate::device::Journal`]). The chain is walked and
    /// validated as [`Self::pop`] does and is in flight afterwards;
    /// `next_avail` does not move (the restarted ring already resumes past
    /// the chains in flight).
    ///
    /// # Errors
    /// As [`Self::pop`]; a head out of range or already in flight is
    /// [`QueueError::HeadOutOfRange`] / [`QueueError::HeadInFlight`].
    pub fn resubmit<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        head: u16,
        chain: &mut Chain<N>,
    ) -> Result<bool, QueueError> {
        self.take_at(mem, head, chain, 0)
    }

    /// The rest of [`Self::pop`] once the head is known: validate, walk,
    /// record in flight, and move `next_avail` by `advance` (1 for a
    /// chain read from the available ring, 0 for a resubmitted one).
    #[inline(always)]
    fn take_at<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        head: u16,
        chain: &mut Chain<N>,
        advance: u16,
    ) -> Result<bool, QueueError> {
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange {
                head,
                size: self.size,
            });
        }
        // One probe of the in-flight table: where `head` will go (the walk
        // does not touch the table, so the entry stays free).
        let Err(entry) = self.inflight.find(head) else {
            return Err(QueueError::HeadInFlight { slot: head });
        };
        chain.start(head);
        let walked = self.walk(mem, head, chain);
        if let Err(WalkError::Ring(error)) = walked {
            return Err(error);
        }
        // The chain is consumed, valid or not: it is in flight until the
        // device (or the core, for a malformed one) returns it.
        self.next_avail = self.next_avail.wrapping_add(advance);
        if let Some(entry) = entry {
            self.inflight.insert_at(entry, head);
        }
        match walked {
            Ok(()) => {
                chain.finish();
                Ok(true)
            }
            Err(WalkError::Chain { kind, reached_end }) => Err(QueueError::Chain(ChainError {
                head: chain.partial_head(),
                kind,
                salvage: chain.salvage(reached_end),
            })),
            Err(WalkError::Ring(error)) => Err(error),
        }
    }

    /// Walks the chain starting at descriptor `head`, reading each
    /// descriptor exactly once. After the first malformed buffer the walk
    /// goes on to the chain's end (noting only where writable descriptors
    /// are), so the device can still answer the request.
    ///
    /// This loop covers the descriptor table; an INDIRECT descriptor hands
    /// over to [`Self::walk_indirect`], which ends the chain (an indirect
    /// descriptor with NEXT is refused). Direct descriptors need no length
    /// check of their own: the loop check stops them at the queue size,
    /// which is at most the walk limit.
    #[inline]
    fn walk<M: GuestMemory, const N: usize>(
        &self,
        mem: &M,
        head: u16,
        chain: &mut Chain<N>,
    ) -> Result<(), WalkError> {
        let entries = u32::from(self.size);
        // The first thing wrong with a buffer; the walk goes on after it.
        let mut bad: Option<ChainErrorKind> = None;
        let mut index = head;
        // Descriptors visited (loop detection; all of them are buffers,
        // until an indirect one).
        let mut visited: u32 = 0;
        loop {
            visited = visited.wrapping_add(1);
            if visited > entries {
                return Err(stop(bad, ChainErrorKind::Loop));
            }
            let desc = mem
                .read_obj::<VirtqDesc>(Self::slot(self.desc, index, DESC_SIZE))
                .map_err(|error| {
                    WalkError::Ring(QueueError::Ring {
                        area: RingArea::Descriptors,
                        error,
                    })
                })?;
            chain.count_desc();
            let flags = DescFlags::from_bits_retain(desc.flags.get());
            let (d_addr, d_len) = (desc.addr.get(), desc.len.get());
            if flags.contains(DescFlags::INDIRECT) {
                let buffers = visited.wrapping_sub(1);
                return self.walk_indirect(mem, chain, flags, d_addr, d_len, bad, buffers);
            }
            let writable = flags.contains(DescFlags::WRITE);
            if bad.is_none() {
                bad = chain.push(mem, d_addr, d_len, writable).err();
            } else {
                chain.note(mem, d_addr, d_len, writable);
            }
            if !flags.contains(DescFlags::NEXT) {
                return match bad {
                    None => Ok(()),
                    Some(kind) => Err(WalkError::Chain {
                        kind,
                        reached_end: true,
                    }),
                };
            }
            index = desc.next.get();
            if u32::from(index) >= entries {
                let kind = ChainErrorKind::NextOutOfRange {
                    next: index,
                    entries,
                };
                return Err(stop(bad, kind));
            }
        }
    }

    /// The rest of a walk after an INDIRECT descriptor (`flags`, `addr`,
    /// `len`), with `buffers` buffer descriptors before it and the first
    /// problem so far in `bad`.
    #[allow(clippy::too_many_arguments)]
    fn walk_indirect<M: GuestMemory, const N: usize>(
        &self,
        mem: &M,
        chain: &mut Chain<N>,
        flags: DescFlags,
        addr: u64,
        len: u32,
        mut bad: Option<ChainErrorKind>,
        buffers: u32,
    ) -> Result<(), WalkError> {
        // virtio 1.4 §"Indirect Descriptors": the WRITE flag of this descriptor is ignored.
        let kind = if !self.indirect() {
            Some(ChainErrorKind::IndirectNotNegotiated)
        } else if flags.contains(DescFlags::NEXT) {
            Some(ChainErrorKind::IndirectWithNext)
        } else if len == 0 || !len.is_multiple_of(16) {
            Some(ChainErrorKind::IndirectTableLength { len })
        } else if mem.check_range(addr, u64::from(len)).is_err() {
            Some(ChainErrorKind::IndirectTableOutOfMemory { addr, len })
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(stop(bad, kind));
        }
        let table = addr;
        let entries = len / 16;
        // Table entries the chain may still take: `buffers` came before the
        // table, and a chain is at most the walk limit long.
        let room = walk_limit(self.size, N).saturating_sub(buffers);
        let mut index: u16 = 0;
        let mut visited: u32 = 0;
        loop {
            visited = visited.wrapping_add(1);
            if visited > entries {
                return Err(stop(bad, ChainErrorKind::Loop));
            }
            let Ok(desc) = mem.read_obj::<VirtqDesc>(Self::slot(table, index, DESC_SIZE)) else {
                let len = entries.wrapping_mul(16);
                let kind = ChainErrorKind::IndirectTableOutOfMemory { addr: table, len };
                return Err(stop(bad, kind));
            };
            let flags = DescFlags::from_bits_retain(desc.flags.get());
            let (d_addr, d_len) = (desc.addr.get(), desc.len.get());
            if flags.contains(DescFlags::INDIRECT) {
                return Err(stop(bad, ChainErrorKind::NestedIndirect));
            }
            if visited > room {
                let kind = ChainErrorKind::LongerThanQueue { size: self.size };
                return Err(stop(bad, kind));
            }
            let writable = flags.contains(DescFlags::WRITE);
            if bad.is_none() {
                bad = chain.push(mem, d_addr, d_len, writable).err();
            } else {
                chain.note(mem, d_addr, d_len, writable);
            }
            if !flags.contains(DescFlags::NEXT) {
                return match bad {
                    None => Ok(()),
                    Some(kind) => Err(WalkError::Chain {
                        kind,
                        reached_end: true,
                    }),
                };
            }
            index = desc.next.get();
            if u32::from(index) >= entries {
                let kind = ChainErrorKind::NextOutOfRange {
                    next: index,
                    entries,
                };
                return Err(stop(bad, kind));
            }
        }
    }

    /// Returns a buffer to the driver with `written` bytes written to its
    /// device-writable part (clamped to the chain's writable length). The
    /// driver sees it after [`Self::publish_used`].
    ///
    /// With `IN_ORDER`, buffers must be returned in the order they were
    /// popped; a run of fully written buffers then costs one used element
    /// (virtio 1.4 §"In-order use of descriptors": skipped buffers count as used completely), and a
    /// partly written one closes the run with its own element.
    ///
    /// # Errors
    /// [`QueueError::InvalidUsedId`] / [`QueueError::NotInFlight`] for a
    /// device bug: a head this queue never handed out, or already took
    /// back. [`QueueError::Ring`] if the used ring is unreachable. On any
    /// error nothing changes, so the completion can be retried.
    #[inline]
    pub fn push_used<M: GuestMemory>(
        &mut self,
        mem: &M,
        head: Head,
        written: u32,
    ) -> Result<(), QueueError> {
        // Only heads below the queue size are ever in flight, so the range
        // check only picks the error.
        let Ok(entry) = self.inflight.find(head.id) else {
            return Err(if head.id >= self.size {
                QueueError::InvalidUsedId { id: head.id }
            } else {
                QueueError::NotInFlight { id: head.id }
            });
        };
        let len = head.used_len(written);
        let next = self.next_used.wrapping_add(1);
        if !self.in_order {
            self.write_used_elem(mem, self.next_used, head.id, len)?;
        } else if head.completes_whole(written) {
            self.batch_last = Some((head.id, len));
        } else {
            // This one closes the run: one element at the run's first slot.
            self.write_used_elem(mem, self.batch_start, head.id, len)?;
            self.batch_last = None;
            self.batch_start = next;
        }
        self.next_used = next;
        self.inflight.remove_at(entry);
        Ok(())
    }

    #[inline(always)]
    fn write_used_elem<M: GuestMemory>(
        &self,
        mem: &M,
        index: u16,
        id: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let addr = Self::slot(
            self.used.wrapping_add(USED_RING),
            self.wrap(index),
            USED_ELEM_SIZE,
        );
        let elem = VirtqUsedElem {
            id: u32::from(id).into(),
            len: len.into(),
        };
        mem.write_obj(addr, &elem)
            .map_err(Self::ring_err(RingArea::Device))
    }

    /// IN_ORDER: writes the one used element that covers the run since
    /// `batch_start` (at the run's first slot, with the last buffer's id).
    fn flush_batch<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        if let Some((id, len)) = self.batch_last {
            self.write_used_elem(mem, self.batch_start, id, len)?;
            self.batch_last = None;
            self.batch_start = self.next_used;
        }
        Ok(())
    }

    /// Publishes every buffer pushed so far with one release store of the
    /// used index, then decides whether the driver wants a used buffer
    /// notification (virtio 1.4 §"Used Buffer Notification Suppression").
    ///
    /// Returns `true` when the device must notify: without `EVENT_IDX`, when
    /// buffers were published and the driver's `flags` is 0; with
    /// `EVENT_IDX`, when the update moved the used index past `used_event`.
    ///
    /// # Errors
    /// [`QueueError::Ring`] if a ring is unreachable.
    pub fn publish_used<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        self.flush_batch(mem)?;
        let old = self.published_used;
        let new = self.next_used;
        if old == new {
            return Ok(false);
        }
        // virtio 1.4 §"The Virtqueue Used Ring": len and the element are written before idx
        // (the release store orders them).
        mem.store_u16_release(self.used.wrapping_add(USED_IDX), new)
            .map_err(Self::ring_err(RingArea::Device))?;
        self.published_used = new;
        // The index store must be visible before we read the driver's
        // suppression state, or both sides could skip the notification.
        mem.fence();
        if self.event_idx() {
            let used_event = self.read_avail_u16(mem, self.used_event_offset())?;
            Ok(vring_need_event(used_event, new, old))
        } else {
            let flags = self.read_avail_u16(mem, 0)?;
            Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        }
    }

    fn used_event_offset(&self) -> u64 {
        AVAIL_RING.wrapping_add(u64::from(self.size).wrapping_mul(2))
    }

    fn read_avail_u16<M: GuestMemory>(&self, mem: &M, offset: u64) -> Result<u16, QueueError> {
        mem.load_u16_acquire(self.avail.wrapping_add(offset))
            .map_err(Self::ring_err(RingArea::Driver))
    }

    /// Asks the driver to stop sending available buffer notifications while
    /// the device is busy polling (virtio 1.4 §"Available Buffer Notification Suppression"). Without `EVENT_IDX`
    /// this sets `NO_NOTIFY`; with it, the device simply stops moving
    /// `avail_event`, so the driver notifies at most once more.
    ///
    /// # Errors
    /// [`QueueError::Ring`] if the used ring is unreachable.
    pub fn disable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        if self.event_idx() {
            return Ok(());
        }
        mem.store_u16_release(self.used.wrapping_add(USED_FLAGS), VIRTQ_USED_F_NO_NOTIFY)
            .map_err(Self::ring_err(RingArea::Device))
    }

    /// Asks the driver to notify on its next available buffer, then checks
    /// again for buffers it added before it could see the request.
    ///
    /// Returns `true` if buffers are available: the device must keep
    /// popping rather than wait for a notification that may never come.
    /// This closes the race where the driver checks the device's
    /// suppression state just before the device re-enables notifications.
    ///
    /// # Errors
    /// As for [`Self::pending`].
    pub fn enable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        if self.event_idx() {
            let avail_event = self
                .used
                .wrapping_add(USED_RING)
                .wrapping_add(u64::from(self.size).wrapping_mul(USED_ELEM_SIZE));
            mem.store_u16_release(avail_event, self.next_avail)
        } else {
            mem.store_u16_release(self.used.wrapping_add(USED_FLAGS), 0)
        }
        .map_err(Self::ring_err(RingArea::Device))?;
        // Our store must be visible before we re-read the driver's index.
        mem.fence();
        Ok(self.pending(mem)? > 0)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::vec;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::memory::Region;
    use crate::queue::TakeChain;
    use crate::queue::{AccessError, Chain, NotificationData};
    use crate::spec::{VirtqDesc, VirtqUsedElem};

    const Q: u16 = 8;
    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const DATA: u64 = 0x4000;
    const MEM: usize = 0x10000;
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    fn config() -> QueueConfig {
        QueueConfig {
            size: Q,
            desc_addr: DESC,
            driver_addr: AVAIL,
            device_addr: USED,
        }
    }

    fn set_desc(mem: &Region, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = VirtqDesc {
            addr: addr.into(),
            len: len.into(),
            flags: flags.into(),
            next: next.into(),
        };
        mem.write_obj(table + 16 * u64::from(i), &d).unwrap();
    }

    /// Puts `heads` in the available ring after what is already there.
    fn offer(mem: &Region, heads: &[u16]) {
        let mut idx = mem.load_u16_acquire(AVAIL + 2).unwrap();
        for &h in heads {
            mem.write(AVAIL + 4 + 2 * u64::from(idx % Q), &h.to_le_bytes())
                .unwrap();
            idx = idx.wrapping_add(1);
        }
        mem.store_u16_release(AVAIL + 2, idx).unwrap();
    }

    fn used_idx(mem: &Region) -> u16 {
        mem.load_u16_acquire(USED + 2).unwrap()
    }

    fn used_elem(mem: &Region, slot: u16) -> (u32, u32) {
        let e: VirtqUsedElem = mem.read_obj(USED + 4 + 8 * u64::from(slot)).unwrap();
        (e.id.get(), e.len.get())
    }

    fn with_queue(features: Features, f: impl FnOnce(&Region, &mut SplitQueue<64>)) {
        let mut buf = vec![0u64; MEM / 8];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let mut q = SplitQueue::<64>::new(&mem, config(), features).unwrap();
        f(&mem, &mut q);
    }

    fn pop_err(mem: &Region, q: &mut SplitQueue<64>) -> QueueError {
        q.take::<_, 16>(mem).unwrap_err()
    }

    fn chain_kind(e: QueueError) -> ChainErrorKind {
        match e {
            QueueError::Chain(c) => c.kind(),
            other => panic!("expected a chain error, got {other:?}"),
        }
    }

    // virtio 1.4 §"Split Virtqueues": queue size is a power of 2 of at most
    // 32768; the descriptor table is 16-aligned, the available ring 2-aligned
    // and the used ring 4-aligned.
    #[test]
    fn config_rejects_bad_size_alignment_and_placement() {
        let mut buf = vec![0u64; MEM / 8];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let f = Features::empty();
        let with = |c: QueueConfig| SplitQueue::<64>::new(&mem, c, f).unwrap_err();
        assert_eq!(
            with(QueueConfig {
                size: 0,
                ..config()
            }),
            ConfigError::ZeroSize
        );
        assert_eq!(
            with(QueueConfig {
                size: 6,
                ..config()
            }),
            ConfigError::SizeNotPowerOfTwo(6)
        );
        assert_eq!(
            with(QueueConfig {
                size: 65535,
                ..config()
            }),
            ConfigError::SizeTooLarge(65535)
        );
        assert!(matches!(
            with(QueueConfig {
                desc_addr: DESC + 8,
                ..config()
            }),
            ConfigError::Misaligned {
                area: RingArea::Descriptors,
                ..
            }
        ));
        assert!(matches!(
            with(QueueConfig {
                driver_addr: AVAIL + 1,
                ..config()
            }),
            ConfigError::Misaligned {
                area: RingArea::Driver,
                ..
            }
        ));
        assert!(matches!(
            with(QueueConfig {
                device_addr: USED + 2,
                ..config()
            }),
            ConfigError::Misaligned {
                area: RingArea::Device,
                ..
            }
        ));
        assert!(matches!(
            with(QueueConfig {
                device_addr: MEM as u64 - 8,
                ..config()
            }),
            ConfigError::OutOfMemory {
                area: RingArea::Device,
                ..
            }
        ));
    }

    // Resubmission takes a chain by its head without reading the
    // available ring, validates it as `pop` does, and refuses a head that
    // is out of range or already in flight (a restarted backend's record
    // naming a chain twice must not complete it twice).
    #[test]
    fn resubmit_takes_a_chain_by_head_and_leaves_the_avail_ring_alone() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 5, DATA, 8, WRITE, 0);
            let mut chain = Chain::<4>::new();
            assert_eq!(q.resubmit(mem, 5, &mut chain), Ok(true));
            assert_eq!(chain.id(), 5);
            assert_eq!(q.next_avail(), 0);
            assert_eq!(q.in_flight(), 1);
            assert_eq!(
                q.resubmit(mem, 5, &mut chain),
                Err(QueueError::HeadInFlight { slot: 5 })
            );
            assert_eq!(
                q.resubmit(mem, Q, &mut chain),
                Err(QueueError::HeadOutOfRange { head: Q, size: Q })
            );
            q.push_used(mem, chain.head(), 8).unwrap();
            assert!(q.publish_used(mem).unwrap());
            assert_eq!(used_elem(mem, 0), (5, 8));
        });
    }

    #[test]
    fn empty_ring_pops_nothing() {
        with_queue(Features::empty(), |mem, q| {
            assert_eq!(q.take::<_, 4>(mem), Ok(None));
            assert_eq!(q.pending(mem), Ok(0));
        });
    }

    // virtio 1.4 §"Message Framing" (device normative): the device MUST NOT
    // make assumptions about the particular arrangement of descriptors — a
    // header split across descriptors reads the same.
    // spec: split.message-framing.1
    #[test]
    fn reader_and_writer_cross_descriptor_boundaries() {
        with_queue(Features::empty(), |mem, q| {
            mem.write(DATA, &[1, 2, 3]).unwrap();
            mem.write(DATA + 0x100, &[4, 5, 6, 7, 8]).unwrap();
            set_desc(mem, DESC, 0, DATA, 3, NEXT, 1);
            set_desc(mem, DESC, 1, DATA + 0x100, 5, NEXT, 2);
            set_desc(mem, DESC, 2, DATA + 0x200, 2, NEXT | WRITE, 3);
            set_desc(mem, DESC, 3, DATA + 0x300, 4, WRITE, 0);
            offer(mem, &[0]);
            let chain: Chain<4> = q.take(mem).unwrap().unwrap();
            assert_eq!((chain.readable_len(), chain.writable_len()), (8, 6));
            assert_eq!(chain.head().descs(), 4);
            let mut r = chain.reader(mem);
            assert_eq!(r.read_obj::<[u8; 6]>(), Ok([1, 2, 3, 4, 5, 6]));
            assert_eq!(
                r.read_obj::<[u8; 3]>(),
                Err(AccessError::ShortChain {
                    wanted: 3,
                    remaining: 2
                })
            );
            assert_eq!(r.bytes_read(), 6);
            r.skip(1).unwrap();
            assert_eq!(r.read_obj::<u8>(), Ok(8));
            assert_eq!(r.remaining(), 0);
            let mut w = chain.writer(mem);
            w.write_all(&[9, 9, 9]).unwrap();
            assert_eq!(
                w.write_all(&[0; 4]),
                Err(AccessError::ShortChain {
                    wanted: 4,
                    remaining: 3
                })
            );
            w.write_obj(&0x0b0a_u16).unwrap();
            assert_eq!(w.bytes_written(), 5);
            let (mut a, mut b) = ([0u8; 2], [0u8; 4]);
            mem.read(DATA + 0x200, &mut a).unwrap();
            mem.read(DATA + 0x300, &mut b).unwrap();
            assert_eq!((a, b), ([9, 9], [9, 0x0a, 0x0b, 0]));
        });
    }

    // virtio 1.4 §"The Virtqueue Descriptor Table" (device normative): a
    // device MUST NOT write to a device-readable buffer and MUST NOT write
    // to any descriptor table entry.
    // spec: split.descriptor-table.1, split.descriptor-table.2
    #[test]
    fn device_never_writes_readable_buffers_or_the_descriptor_table() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            mem.write(DATA, &[0x5a; 32]).unwrap();
            set_desc(mem, DESC, 0, DATA, 32, NEXT, 1);
            set_desc(mem, DESC, 1, DATA + 0x100, 16, WRITE, 0);
            offer(mem, &[0]);
            let mut before = [0u8; 256];
            mem.read(DESC, &mut before).unwrap();
            let chain: Chain<4> = q.take(mem).unwrap().unwrap();
            let mut w = chain.writer(mem);
            w.write_all(&[0xff; 16]).unwrap();
            q.push_used(mem, chain.head(), w.bytes_written()).unwrap();
            q.publish_used(mem).unwrap();
            let mut after = [0u8; 256];
            mem.read(DESC, &mut after).unwrap();
            assert_eq!(before, after);
            let mut data = [0u8; 32];
            mem.read(DATA, &mut data).unwrap();
            assert_eq!(data, [0x5a; 32]);
        });
    }

    // virtio 1.4 §"The Virtqueue Descriptor Table" (driver normative):
    // "loops in the descriptor chain are forbidden".
    #[test]
    fn rejects_descriptor_loop() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 2, DATA, 1, NEXT, 5);
            set_desc(mem, DESC, 5, DATA, 1, NEXT, 2);
            offer(mem, &[2]);
            let e = pop_err(mem, q);
            assert_eq!(chain_kind(e), ChainErrorKind::Loop);
            assert_eq!(e.head().map(|h| h.id()), Some(2));
            assert!(!e.needs_reset());
        });
    }

    // Same rule inside an indirect table.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_loop_inside_indirect_table() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, table, 0, DATA, 1, NEXT, 1);
            set_desc(mem, table, 1, DATA, 1, NEXT, 0);
            set_desc(mem, DESC, 0, table, 32, INDIRECT, 0);
            offer(mem, &[0]);
            assert_eq!(chain_kind(pop_err(mem, q)), ChainErrorKind::Loop);
        });
    }

    /// An indirect table of `n` one-byte buffers at descriptor 0.
    #[cfg(feature = "indirect")]
    fn offer_indirect(mem: &Region, n: u16) {
        let table = DATA + 0x1000;
        for i in 0..n {
            let flags = if i + 1 < n { NEXT } else { 0 };
            set_desc(mem, table, i, DATA, 1, flags, i + 1);
        }
        set_desc(mem, DESC, 0, table, 16 * u32::from(n), INDIRECT, 0);
        offer(mem, &[0]);
    }

    // virtio 1.4 §"Indirect Descriptors" (driver normative): a driver MUST
    // NOT create a descriptor chain longer than the Queue Size. Linux does,
    // through one indirect table, when a device's seg_max exceeds the ring;
    // the device serves such a chain up to its capacity N (a deliberate
    // tolerance) and reads no more than max(queue size, N) descriptors.
    // spec: split.message-framing.2
    #[test]
    #[cfg(feature = "indirect")]
    fn indirect_chain_longer_than_queue_is_served_up_to_capacity() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            offer_indirect(mem, Q + 1);
            let chain: Chain<16> = q.take(mem).unwrap().unwrap();
            assert_eq!(chain.segments().len(), usize::from(Q) + 1);
            q.push_used(mem, chain.head(), 0).unwrap();
        });
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            offer_indirect(mem, 17);
            let e = q.take::<_, 16>(mem).unwrap_err();
            assert_eq!(chain_kind(e), ChainErrorKind::LongerThanQueue { size: Q });
            // The walk stopped at its bound: the chain's end is unknown.
            let QueueError::Chain(c) = e else {
                unreachable!()
            };
            assert_eq!(c.salvage().tail, None);
        });
    }

    // A chain of direct descriptors then an indirect table also counts
    // every buffer towards the limit.
    #[test]
    #[cfg(feature = "indirect")]
    fn direct_plus_indirect_counts_towards_the_limit() {
        let setup = |mem: &Region| {
            let table = DATA + 0x1000;
            for i in 0..4 {
                set_desc(mem, DESC, i, DATA, 1, NEXT, i + 1);
            }
            set_desc(mem, DESC, 4, table, 16 * 5, INDIRECT, 0);
            for i in 0..5 {
                set_desc(mem, table, i, DATA, 1, if i < 4 { NEXT } else { 0 }, i + 1);
            }
            offer(mem, &[0]);
        };
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            setup(mem);
            assert_eq!(
                chain_kind(q.take::<_, 8>(mem).unwrap_err()),
                ChainErrorKind::LongerThanQueue { size: Q }
            );
        });
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            setup(mem);
            let chain: Chain<9> = q.take(mem).unwrap().unwrap();
            assert_eq!(chain.segments().len(), 9);
        });
    }

    // virtio 1.4 §"The Virtqueue Descriptor Table": the table holds Queue
    // Size descriptors; `next` beyond it names no descriptor.
    #[test]
    fn rejects_next_out_of_range() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, NEXT, Q);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::NextOutOfRange {
                    next: Q,
                    entries: u32::from(Q)
                }
            );
        });
    }

    // virtio 1.4 §"Indirect Descriptors": the table holds len/16 entries.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_next_out_of_range_in_indirect_table() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, table, 0, DATA, 1, NEXT, 2);
            set_desc(mem, DESC, 0, table, 32, INDIRECT, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::NextOutOfRange {
                    next: 2,
                    entries: 2
                }
            );
        });
    }

    // virtio 1.4 §"Indirect Descriptors" (driver normative): a driver MUST
    // NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_indirect_with_next() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            set_desc(mem, DESC, 0, DATA + 0x1000, 16, INDIRECT | NEXT, 1);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::IndirectWithNext
            );
        });
    }

    // virtio 1.4 §"Indirect Descriptors" (driver normative): the driver MUST
    // NOT set VIRTQ_DESC_F_INDIRECT within an indirect descriptor.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_nested_indirect() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, table, 0, DATA + 0x2000, 16, INDIRECT, 0);
            set_desc(mem, DESC, 0, table, 16, INDIRECT, 0);
            offer(mem, &[0]);
            assert_eq!(chain_kind(pop_err(mem, q)), ChainErrorKind::NestedIndirect);
        });
    }

    // virtio 1.4 §"Indirect Descriptors" (driver normative): the driver MUST
    // NOT set VIRTQ_DESC_F_INDIRECT unless VIRTIO_F_INDIRECT_DESC was
    // negotiated.
    #[test]
    fn rejects_indirect_when_not_negotiated() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA + 0x1000, 16, INDIRECT, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::IndirectNotNegotiated
            );
        });
    }

    // virtio 1.4 §"Indirect Descriptors": the table is `struct virtq_desc
    // desc[len / 16]`; a length of 0 or not a multiple of 16 is no table.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_bad_indirect_table_length() {
        for len in [0u32, 24, 15] {
            with_queue(Features::INDIRECT_DESC, |mem, q| {
                set_desc(mem, DESC, 0, DATA + 0x1000, len, INDIRECT, 0);
                offer(mem, &[0]);
                assert_eq!(
                    chain_kind(pop_err(mem, q)),
                    ChainErrorKind::IndirectTableLength { len }
                );
            });
        }
    }

    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_indirect_table_outside_memory() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = MEM as u64 - 16;
            set_desc(mem, DESC, 0, table, 32, INDIRECT, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::IndirectTableOutOfMemory {
                    addr: table,
                    len: 32
                }
            );
        });
    }

    // virtio 1.4 §"Message Framing" (driver normative): the driver MUST
    // place any device-writable descriptor elements after any
    // device-readable descriptor elements.
    #[test]
    fn rejects_readable_after_writable() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 4, WRITE | NEXT, 1);
            set_desc(mem, DESC, 1, DATA + 0x100, 4, 0, 0);
            offer(mem, &[0]);
            let e = pop_err(mem, q);
            assert_eq!(chain_kind(e), ChainErrorKind::ReadableAfterWritable);
            assert_eq!(e.head().map(|h| h.id()), Some(0));
        });
    }

    // Also when the writable descriptor is empty, and across the switch from
    // the ring into an indirect table.
    #[test]
    #[cfg(feature = "indirect")]
    fn rejects_readable_after_empty_writable_and_into_indirect_table() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, DESC, 0, DATA, 0, WRITE | NEXT, 1);
            set_desc(mem, DESC, 1, table, 16, INDIRECT, 0);
            set_desc(mem, table, 0, DATA + 0x100, 4, 0, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::ReadableAfterWritable
            );
        });
    }

    // The device touches no memory the driver did not share: a buffer
    // outside guest memory fails the chain.
    #[test]
    fn rejects_segment_outside_memory() {
        with_queue(Features::empty(), |mem, q| {
            let addr = MEM as u64 - 4;
            set_desc(mem, DESC, 0, DATA, 4, NEXT, 1);
            set_desc(mem, DESC, 1, addr, 8, WRITE, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::SegmentOutOfMemory { addr, len: 8 }
            );
        });
    }

    #[test]
    fn rejects_segment_that_wraps_the_address_space() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, u64::MAX - 1, 4, 0, 0);
            offer(mem, &[0]);
            assert!(matches!(
                chain_kind(pop_err(mem, q)),
                ChainErrorKind::SegmentOutOfMemory { .. }
            ));
        });
    }

    // virtio 1.4 §"The Virtqueue Descriptor Table" (driver normative):
    // drivers MUST NOT add a descriptor chain longer than 2^32 bytes.
    #[test]
    fn rejects_total_length_over_u32() {
        /// Memory that claims to back everything (as a 64-bit host with a
        /// large guest would) so the length rule is reached.
        struct Vast<'a>(&'a Region<'a>);
        impl GuestMemory for Vast<'_> {
            fn read(&self, a: u64, b: &mut [u8]) -> Result<(), crate::memory::MemoryError> {
                self.0.read(a, b)
            }
            fn write(&self, a: u64, b: &[u8]) -> Result<(), crate::memory::MemoryError> {
                self.0.write(a, b)
            }
            fn load_u16_acquire(&self, a: u64) -> Result<u16, crate::memory::MemoryError> {
                self.0.load_u16_acquire(a)
            }
            fn store_u16_release(&self, a: u64, v: u16) -> Result<(), crate::memory::MemoryError> {
                self.0.store_u16_release(a, v)
            }
            fn check_range(&self, _: u64, _: u64) -> Result<(), crate::memory::MemoryError> {
                Ok(())
            }
        }
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 0x8000_0000, NEXT, 1);
            set_desc(mem, DESC, 1, DATA, 0x7fff_ffff, NEXT, 2);
            set_desc(mem, DESC, 2, DATA, 1, 0, 0);
            offer(mem, &[0]);
            assert_eq!(
                chain_kind(q.take::<_, 4>(&Vast(mem)).unwrap_err()),
                ChainErrorKind::TotalLengthOverflow
            );
        });
    }

    // virtio 1.4 §"Message Framing" (device normative): the device MAY have
    // a reasonable limit of descriptors it will allow in a chain; ours is N.
    // spec: split.message-framing.2
    #[test]
    fn rejects_chain_longer_than_capacity() {
        with_queue(Features::empty(), |mem, q| {
            for i in 0..3 {
                set_desc(mem, DESC, i, DATA, 1, if i < 2 { NEXT } else { 0 }, i + 1);
            }
            offer(mem, &[0, 0]);
            let e = q.take::<_, 2>(mem).unwrap_err();
            assert_eq!(
                chain_kind(e),
                ChainErrorKind::TooManySegments { capacity: 2 }
            );
            q.push_used(mem, e.head().unwrap(), 0).unwrap();
            // The same chain fits a larger snapshot.
            assert_eq!(q.take::<_, 3>(mem).unwrap().unwrap().segments().len(), 3);
        });
    }

    // virtio 1.4 §"The Virtqueue Available Ring": a driver exposes at most
    // Queue Size buffers; an index further ahead means a corrupt ring, and
    // the device SHOULD set DEVICE_NEEDS_RESET (§"Device Status Field").
    #[test]
    fn rejects_avail_index_more_than_queue_size_ahead() {
        with_queue(Features::empty(), |mem, q| {
            mem.store_u16_release(AVAIL + 2, Q + 1).unwrap();
            let e = pop_err(mem, q);
            assert_eq!(
                e,
                QueueError::AvailIndexTooFar {
                    avail_idx: Q + 1,
                    next_avail: 0
                }
            );
            assert!(e.needs_reset());
            assert_eq!(e.head(), None);
            // Exactly Q ahead is legal.
            mem.store_u16_release(AVAIL + 2, Q).unwrap();
            assert_eq!(q.pending(mem), Ok(Q));
        });
    }

    #[test]
    fn rejects_head_out_of_range_as_corrupt_ring() {
        with_queue(Features::empty(), |mem, q| {
            offer(mem, &[Q]);
            let e = pop_err(mem, q);
            assert_eq!(e, QueueError::HeadOutOfRange { head: Q, size: Q });
            assert!(e.needs_reset());
        });
    }

    // A malformed chain is never dropped: the device completes it with its
    // head and the queue goes on with the next chain.
    #[test]
    fn failed_chain_is_completed_and_queue_continues() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 3, DATA, 1, NEXT, 3);
            set_desc(mem, DESC, 4, DATA, 4, WRITE, 0);
            offer(mem, &[3, 4]);
            let head = pop_err(mem, q).head().unwrap();
            q.push_used(mem, head, 0).unwrap();
            let chain: Chain<2> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, chain.head(), 4).unwrap();
            assert!(q.publish_used(mem).unwrap());
            assert_eq!(used_idx(mem), 2);
            assert_eq!(used_elem(mem, 0), (3, 0));
            assert_eq!(used_elem(mem, 1), (4, 4));
        });
    }

    // virtio 1.4 §"Indirect Descriptors" (device normative): the device MUST
    // ignore the write-only flag on the descriptor that refers to a table,
    // and MUST handle zero or more chained descriptors followed by one
    // indirect descriptor.
    // spec: split.indirect-descriptors.1, split.indirect-descriptors.2
    #[test]
    #[cfg(feature = "indirect")]
    fn direct_descriptors_then_indirect_table() {
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, DESC, 6, DATA, 2, NEXT, 7);
            set_desc(mem, DESC, 7, table, 48, INDIRECT | WRITE, 0);
            set_desc(mem, table, 0, DATA + 0x10, 3, NEXT, 1);
            set_desc(mem, table, 1, DATA + 0x20, 0, NEXT | WRITE, 2);
            set_desc(mem, table, 2, DATA + 0x30, 5, WRITE, 0);
            offer(mem, &[6]);
            let chain: Chain<4> = q.take(mem).unwrap().unwrap();
            assert_eq!(chain.id(), 6);
            assert_eq!(chain.head().descs(), 2);
            assert_eq!(chain.readable_segments().len(), 2);
            assert_eq!(
                chain.writable_segments(),
                &[crate::queue::Segment {
                    addr: DATA + 0x30,
                    len: 5
                }]
            );
            assert_eq!((chain.readable_len(), chain.writable_len()), (5, 5));
        });
    }

    // virtio 1.4 §"Used Buffer Notification Suppression" (device normative),
    // without EVENT_IDX: if flags is 0 the device MUST send a notification;
    // if it is 1 it SHOULD NOT.
    // spec: split.used-buffer-notification-suppression.2, split.used-buffer-notification-suppression.3
    #[test]
    fn notification_follows_avail_flags_without_event_idx() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, WRITE, 0);
            offer(mem, &[0, 0]);
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, c.head(), 1).unwrap();
            assert!(q.publish_used(mem).unwrap());
            mem.store_u16_release(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT)
                .unwrap();
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, c.head(), 1).unwrap();
            assert!(!q.publish_used(mem).unwrap());
            // The device MUST ignore used_event without EVENT_IDX.
            assert_eq!(used_idx(mem), 2);
        });
    }

    // virtio 1.4 §"Used Buffer Notification Suppression" (device normative):
    // without EVENT_IDX the device MUST ignore used_event. Here used_event
    // names an index this publish does not reach (vring_need_event would
    // say no) and flags is 0: the device notifies all the same.
    // spec: split.used-buffer-notification-suppression.1
    #[test]
    fn used_event_is_ignored_without_event_idx() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, WRITE, 0);
            offer(mem, &[0]);
            let used_event = AVAIL + 4 + 2 * u64::from(Q);
            mem.store_u16_release(used_event, 5).unwrap();
            assert!(!vring_need_event(5, 1, 0));
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, c.head(), 1).unwrap();
            assert!(q.publish_used(mem).unwrap());
        });
    }

    // Nothing published, nothing to notify.
    #[test]
    fn publish_without_new_buffers_does_not_notify() {
        with_queue(Features::empty(), |mem, q| {
            assert_eq!(q.publish_used(mem), Ok(false));
            assert_eq!(used_idx(mem), 0);
        });
    }

    // virtio 1.4 §"Used Buffer Notification Suppression" (device normative),
    // with EVENT_IDX: the device MUST ignore the lower bit of flags, and MUST
    // notify when the used idx that placed the entry equals used_event.
    // spec: split.used-buffer-notification-suppression.4, split.used-buffer-notification-suppression.5, split.used-buffer-notification-suppression.6
    #[test]
    #[cfg(feature = "event-idx")]
    fn event_idx_notifies_exactly_when_used_event_is_crossed() {
        with_queue(Features::EVENT_IDX, |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, WRITE, 0);
            mem.store_u16_release(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT)
                .unwrap();
            let used_event = AVAIL + 4 + 2 * u64::from(Q);
            mem.store_u16_release(used_event, 2).unwrap();
            let mut notified = std::vec::Vec::new();
            for _ in 0..4 {
                offer(mem, &[0]);
                let c: Chain<1> = q.take(mem).unwrap().unwrap();
                q.push_used(mem, c.head(), 1).unwrap();
                notified.push(q.publish_used(mem).unwrap());
            }
            // Entry index 2 was placed by the third publish.
            assert_eq!(notified, [false, false, true, false]);
            // A batch that jumps over used_event also notifies.
            mem.store_u16_release(used_event, 5).unwrap();
            offer(mem, &[0, 0, 0]);
            for _ in 0..3 {
                let c: Chain<1> = q.take(mem).unwrap().unwrap();
                q.push_used(mem, c.head(), 1).unwrap();
            }
            assert!(q.publish_used(mem).unwrap());
        });
    }

    // virtio 1.4 §"Available Buffer Notification Suppression" (device
    // normative), without EVENT_IDX: the device MUST set flags to 0 or 1 and
    // MAY set 1 to advise that notifications are not needed.
    // spec: split.available-buffer-notification-suppression.1, split.available-buffer-notification-suppression.2
    #[test]
    fn disable_and_enable_notification_set_used_flags() {
        with_queue(Features::empty(), |mem, q| {
            q.disable_notification(mem).unwrap();
            assert_eq!(mem.load_u16_acquire(USED), Ok(VIRTQ_USED_F_NO_NOTIFY));
            assert_eq!(q.enable_notification(mem), Ok(false));
            assert_eq!(mem.load_u16_acquire(USED), Ok(0));
        });
    }

    // With EVENT_IDX the device MUST keep flags at 0 and publishes
    // avail_event instead.
    // spec: split.available-buffer-notification-suppression.3, split.available-buffer-notification-suppression.4
    #[test]
    #[cfg(feature = "event-idx")]
    fn event_idx_enable_publishes_avail_event_and_keeps_flags_zero() {
        with_queue(Features::EVENT_IDX, |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, 0, 0);
            offer(mem, &[0, 0, 0]);
            for _ in 0..3 {
                let c: Chain<1> = q.take(mem).unwrap().unwrap();
                q.push_used(mem, c.head(), 0).unwrap();
            }
            q.disable_notification(mem).unwrap();
            assert_eq!(q.enable_notification(mem), Ok(false));
            assert_eq!(mem.load_u16_acquire(USED), Ok(0));
            assert_eq!(mem.load_u16_acquire(USED + 4 + 8 * u64::from(Q)), Ok(3));
        });
    }

    // The lost-wakeup race: a buffer added while notifications were off is
    // found by the re-check in enable_notification, so the device does not
    // go to sleep waiting for a kick the driver decided not to send.
    #[test]
    fn enable_notification_rechecks_for_buffers_added_meanwhile() {
        for features in [Features::empty(), Features::EVENT_IDX] {
            with_queue(features, |mem, q| {
                set_desc(mem, DESC, 0, DATA, 1, 0, 0);
                q.disable_notification(mem).unwrap();
                offer(mem, &[0]);
                assert_eq!(q.enable_notification(mem), Ok(true));
                assert!(q.take::<_, 1>(mem).unwrap().is_some());
                assert_eq!(q.enable_notification(mem), Ok(false));
            });
        }
    }

    // virtio 1.4 §"In-order use of descriptors": with IN_ORDER the device may
    // write one used entry, with the id of the last buffer of the batch, at
    // the slot of the batch's first buffer, and advance idx by the batch.
    #[test]
    fn in_order_batch_writes_one_used_element() {
        with_queue(Features::IN_ORDER, |mem, q| {
            for i in 0..4 {
                set_desc(mem, DESC, i, DATA + 0x10 * u64::from(i), 4, WRITE, 0);
            }
            offer(mem, &[0, 1, 2, 3]);
            let chains: std::vec::Vec<Chain<1>> =
                (0..3).map(|_| q.take(mem).unwrap().unwrap()).collect();
            for c in &chains {
                q.push_used(mem, c.head(), 4).unwrap();
            }
            assert!(q.publish_used(mem).unwrap());
            assert_eq!(used_idx(mem), 3);
            assert_eq!(used_elem(mem, 0), (2, 4));
            assert_eq!(used_elem(mem, 1), (0, 0));
            // A partly written buffer gets its own element: the driver would
            // otherwise assume it was written completely.
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, c.head(), 1).unwrap();
            q.publish_used(mem).unwrap();
            assert_eq!(used_idx(mem), 4);
            assert_eq!(used_elem(mem, 3), (3, 1));
        });
    }

    #[test]
    fn in_order_partial_buffer_inside_a_batch_closes_the_run() {
        with_queue(Features::IN_ORDER, |mem, q| {
            for i in 0..3 {
                set_desc(mem, DESC, i, DATA, 4, WRITE, 0);
            }
            offer(mem, &[0, 1, 2]);
            let chains: std::vec::Vec<Chain<1>> =
                (0..3).map(|_| q.take(mem).unwrap().unwrap()).collect();
            q.push_used(mem, chains[0].head(), 4).unwrap();
            q.push_used(mem, chains[1].head(), 2).unwrap();
            q.push_used(mem, chains[2].head(), 4).unwrap();
            q.publish_used(mem).unwrap();
            assert_eq!(used_idx(mem), 3);
            assert_eq!(used_elem(mem, 0), (1, 2));
            assert_eq!(used_elem(mem, 2), (2, 4));
        });
    }

    // Device bugs are refused rather than corrupting the driver's ring.
    #[test]
    fn push_used_refuses_unknown_id_and_overflow() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, 0, 0);
            offer(mem, &[0]);
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            let mut bad = c.head();
            bad.id = Q;
            assert_eq!(
                q.push_used(mem, bad, 0),
                Err(QueueError::InvalidUsedId { id: Q })
            );
            q.push_used(mem, c.head(), 0).unwrap();
            assert_eq!(
                q.push_used(mem, c.head(), 0),
                Err(QueueError::NotInFlight { id: 0 })
            );
        });
    }

    // virtio 1.4 §"Driver Notifications": le32 {vq_index:16, next_off:15,
    // next_wrap:1}; for a split ring next_off/next_wrap are the avail idx.
    #[test]
    fn notification_data_decodes_split_avail_index() {
        let d = NotificationData::from_u32(0xc005_0003);
        assert_eq!(
            d,
            NotificationData {
                vq_index: 3,
                next_off: 0x4005,
                next_wrap: true
            }
        );
        assert_eq!(d.split_avail_idx(), 0xc005);
        assert_eq!(d.to_u32(), 0xc005_0003);
    }

    // virtio 1.4 §"Virtqueue Reset": after a queue reset the device MUST
    // reset its avail and used state.
    // spec: vq-reset.reset.2
    #[test]
    fn reset_restarts_ring_state() {
        with_queue(Features::empty(), |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, 0, 0);
            offer(mem, &[0, 0]);
            let c: Chain<1> = q.take(mem).unwrap().unwrap();
            q.push_used(mem, c.head(), 0).unwrap();
            q.reset();
            assert_eq!((q.next_avail(), q.next_used()), (0, 0));
            // With the driver's ring reset too, the queue starts from scratch.
            mem.store_u16_release(AVAIL + 2, 0).unwrap();
            assert_eq!(q.take::<_, 1>(mem), Ok(None));
            q.set_indices(5, 5);
            assert_eq!(q.next_avail(), 5);
        });
    }

    // Free-running 16-bit indices wrap around.
    #[test]
    fn indices_wrap_past_u16_max() {
        with_queue(Features::EVENT_IDX, |mem, q| {
            set_desc(mem, DESC, 0, DATA, 1, WRITE, 0);
            q.set_indices(65534, 65534);
            mem.store_u16_release(AVAIL + 2, 65534).unwrap();
            mem.store_u16_release(USED + 2, 65534).unwrap();
            mem.store_u16_release(AVAIL + 4 + 2 * u64::from(Q), 65535)
                .unwrap();
            offer(mem, &[0, 0, 0]);
            assert_eq!(q.pending(mem), Ok(3));
            for _ in 0..3 {
                let c: Chain<1> = q.take(mem).unwrap().unwrap();
                q.push_used(mem, c.head(), 1).unwrap();
            }
            assert!(q.publish_used(mem).unwrap());
            assert_eq!(used_idx(mem), 1);
        });
    }

    // Guest memory as a vhost-user daemon sees it: several regions. The
    // rings sit in one, a buffer straddles two contiguous ones, and a buffer
    // in the gap between regions is refused.
    #[test]
    fn queue_over_multiple_regions() {
        use crate::memory::MultiRegion;
        let (mut low, mut mid, mut high) = (vec![0u64; 0x800], vec![0u64; 0x10], vec![0u64; 0x10]);
        let mut mem = MultiRegion::<3>::new();
        mem.add(Region::new(0, low.as_mut_bytes()).unwrap())
            .unwrap();
        mem.add(Region::new(0x10_0000, mid.as_mut_bytes()).unwrap())
            .unwrap();
        mem.add(Region::new(0x10_0080, high.as_mut_bytes()).unwrap())
            .unwrap();
        let mut q = SplitQueue::<64>::new(&mem, config(), Features::empty()).unwrap();
        let d = |i: u16, addr: u64, len: u32, flags: u16, next: u16| {
            let desc = VirtqDesc {
                addr: addr.into(),
                len: len.into(),
                flags: flags.into(),
                next: next.into(),
            };
            mem.write_obj(DESC + 16 * u64::from(i), &desc).unwrap();
        };
        d(0, 0x10_0070, 0x20, WRITE, 0);
        d(1, 0x20_0000, 4, 0, 0);
        mem.write(AVAIL + 4, &[0, 0, 1, 0]).unwrap();
        mem.store_u16_release(AVAIL + 2, 2).unwrap();
        let chain: Chain<2> = q.take(&mem).unwrap().unwrap();
        let mut w = chain.writer(&mem);
        w.write_all(&[0xab; 0x20]).unwrap();
        q.push_used(&mem, chain.head(), w.bytes_written()).unwrap();
        let e = q.take::<_, 2>(&mem).unwrap_err();
        assert_eq!(
            chain_kind(e),
            ChainErrorKind::SegmentOutOfMemory {
                addr: 0x20_0000,
                len: 4
            }
        );
        q.push_used(&mem, e.head().unwrap(), 0).unwrap();
        assert!(q.publish_used(&mem).unwrap());
        drop(mem);
        assert_eq!(mid[0xe..], [u64::from_ne_bytes([0xab; 8]); 2]);
        assert_eq!(high[..2], [u64::from_ne_bytes([0xab; 8]); 2]);
    }

    // Copy, then validate: each descriptor (ring and indirect) is read exactly
    // once per pop, so a driver rewriting a descriptor after it was checked
    // cannot change what the device uses (no double fetch).
    #[test]
    #[cfg(feature = "indirect")]
    fn every_descriptor_is_read_exactly_once() {
        use core::cell::RefCell;
        use std::collections::HashMap;
        struct Counting<'a> {
            inner: &'a Region<'a>,
            reads: RefCell<HashMap<u64, usize>>,
        }
        impl GuestMemory for Counting<'_> {
            fn read(&self, a: u64, b: &mut [u8]) -> Result<(), crate::memory::MemoryError> {
                *self.reads.borrow_mut().entry(a).or_default() += 1;
                self.inner.read(a, b)
            }
            fn write(&self, a: u64, b: &[u8]) -> Result<(), crate::memory::MemoryError> {
                self.inner.write(a, b)
            }
            fn load_u16_acquire(&self, a: u64) -> Result<u16, crate::memory::MemoryError> {
                self.inner.load_u16_acquire(a)
            }
            fn store_u16_release(&self, a: u64, v: u16) -> Result<(), crate::memory::MemoryError> {
                self.inner.store_u16_release(a, v)
            }
            fn check_range(&self, a: u64, l: u64) -> Result<(), crate::memory::MemoryError> {
                self.inner.check_range(a, l)
            }
        }
        with_queue(Features::INDIRECT_DESC, |mem, q| {
            let table = DATA + 0x1000;
            set_desc(mem, DESC, 1, DATA, 4, NEXT, 2);
            set_desc(mem, DESC, 2, DATA + 0x10, 4, NEXT, 3);
            set_desc(mem, DESC, 3, table, 32, INDIRECT, 0);
            set_desc(mem, table, 0, DATA + 0x20, 4, NEXT | WRITE, 1);
            set_desc(mem, table, 1, DATA + 0x30, 4, WRITE, 0);
            offer(mem, &[1]);
            let counting = Counting {
                inner: mem,
                reads: RefCell::new(HashMap::new()),
            };
            let chain: Chain<4> = q.take(&counting).unwrap().unwrap();
            assert_eq!(chain.segments().len(), 4);
            let reads = counting.reads.borrow();
            for addr in [DESC + 16, DESC + 32, DESC + 48, table, table + 16] {
                assert_eq!(reads.get(&addr), Some(&1), "descriptor at {addr:#x}");
            }
        });
    }
}
