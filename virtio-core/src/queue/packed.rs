//! The packed virtqueue, device side (virtio 1.4 §"Packed Virtqueues").
//!
//! One ring of descriptors is shared both ways. The driver makes a
//! descriptor available by writing its `flags` with AVAIL equal to its wrap
//! counter and USED the inverse; the device marks a buffer used by writing
//! one descriptor, at the next used slot, with AVAIL = USED = its own wrap
//! counter, and then skips as many slots as the buffer took. Both wrap
//! counters start at 1 and flip each time their side passes the last slot.
//!
//! # Batching
//!
//! [`PackedQueue::push_used`] writes a used descriptor's `id` and `len` at
//! once and its `flags` too, except for the first descriptor of a batch:
//! that one's `flags` are stored by [`PackedQueue::publish_used`], with
//! release ordering, after everything else. The driver only ever polls the
//! slot it expects next, so it sees a whole batch at once, as with the split
//! ring's single index store (and as §"Multi-buffer requests" asks).
//!
//! # Malformed chains
//!
//! A packed chain occupies consecutive ring slots and the driver needs the
//! used descriptor to skip exactly that many. So when a chain is malformed,
//! [`PackedQueue::pop`] keeps reading the rest of it (its `flags` and `id`
//! only) to its last descriptor before it reports the error: the [`Head`]
//! in the error then carries the buffer id and slot count, and completing
//! it keeps device and driver in step.

use super::chain::{Chain, Head};
use super::error::{ChainError, ChainErrorKind, ConfigError, QueueError, RingArea};
use super::inflight::InFlight;
use super::position::RingPosition;
use super::{QueueConfig, vring_need_event, walk_limit};
use crate::memory::{GuestMemory, MemoryError};
use crate::spec::{
    DescFlags, Features, Le16, Le32, PvirtqDesc, PvirtqUsedTail, RING_EVENT_FLAGS_DESC,
    RING_EVENT_FLAGS_DISABLE, RING_EVENT_FLAGS_ENABLE,
};

const DESC_SIZE: u64 = 16;
/// Offsets inside a `pvirtq_desc`.
const DESC_LEN: u64 = 8;
const DESC_ID: u64 = 12;
const DESC_FLAGS: u64 = 14;
/// Offsets inside a `pvirtq_event_suppress`.
const EVENT_OFF_WRAP: u64 = 0;
const EVENT_FLAGS: u64 = 2;

/// Device side of one packed virtqueue of up to `S` descriptors.
///
/// Queue sizes need not be powers of two. Addresses were checked against
/// guest memory when the queue was built, so slot offsets cannot overflow;
/// every access is still checked, since guest memory may change.
///
/// `S` sizes the in-flight table (buffer ids the device holds): a
/// completion for a chain not in flight is refused, in one probe for a
/// driver whose ids are below the queue size.
#[derive(Clone, Debug)]
pub struct PackedQueue<const S: usize> {
    size: u16,
    desc: u64,
    /// Driver Event Suppression (the device reads it).
    driver_event: u64,
    /// Device Event Suppression (the device writes it).
    device_event: u64,
    event_idx: bool,
    indirect: bool,
    in_order: bool,
    /// Next slot the device will read, with the driver's wrap counter.
    next_avail: RingPosition,
    /// Next slot a used descriptor goes to, with the device's wrap counter.
    next_used: RingPosition,
    /// Ring slots taken by popped chains and not yet returned.
    in_flight: u16,
    /// Slots `next_used` moved since the last publish.
    unpublished: u16,
    /// The first used descriptor written since the last publish: its slot
    /// and the flags still to be stored there.
    first_pending: Option<(u16, u16)>,
    /// IN_ORDER only: slots taken by the run of buffers pushed since the
    /// last used descriptor, and the last buffer's id and length.
    batch_descs: u16,
    batch_last: Option<(u16, u32)>,
    /// Chains popped and not yet returned, by the slot they start at.
    inflight: InFlight<S>,
}

/// Takes one buffer descriptor into `chain`: validated while nothing went
/// wrong (a problem goes into `error`, the chain's end still known), only
/// noted for salvage after.
#[inline(always)]
fn take<M: GuestMemory, const N: usize>(
    mem: &M,
    chain: &mut Chain<N>,
    addr: u64,
    len: u32,
    writable: bool,
    error: &mut Option<(ChainErrorKind, bool)>,
) {
    if error.is_none() {
        if let Err(kind) = chain.push(mem, addr, len, writable) {
            *error = Some((kind, true));
        }
    } else {
        chain.note(mem, addr, len, writable);
    }
}

impl<const S: usize> PackedQueue<S> {
    /// Builds the queue the driver configured, with the negotiated features
    /// (`INDIRECT_DESC`, `EVENT_IDX` and `IN_ORDER` are honoured).
    ///
    /// # Errors
    /// [`ConfigError`] as [`QueueConfig::check_packed`] says, or
    /// [`ConfigError::SizeAboveCapacity`] for a size above `S`.
    pub fn new<M: GuestMemory>(
        mem: &M,
        config: QueueConfig,
        features: Features,
    ) -> Result<Self, ConfigError> {
        config.check_packed(mem)?;
        if usize::from(config.size) > S {
            return Err(ConfigError::SizeAboveCapacity {
                size: config.size,
                capacity: S,
            });
        }
        Ok(Self {
            size: config.size,
            desc: config.desc_addr,
            driver_event: config.driver_addr,
            device_event: config.device_addr,
            event_idx: features.contains(Features::EVENT_IDX),
            indirect: features.contains(Features::INDIRECT_DESC),
            in_order: features.contains(Features::IN_ORDER),
            next_avail: RingPosition::START,
            next_used: RingPosition::START,
            in_flight: 0,
            unpublished: 0,
            first_pending: None,
            batch_descs: 0,
            batch_last: None,
            inflight: InFlight::new(),
        })
    }

    /// Chains popped and not yet returned.
    pub fn in_flight(&self) -> u16 {
        self.inflight.count()
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

    /// The next slot the device will read and the driver wrap counter it
    /// expects there (vhost-user's `GET_VRING_BASE` for packed rings).
    pub fn next_avail(&self) -> RingPosition {
        self.next_avail
    }

    /// Where the next used descriptor goes and the device wrap counter,
    /// counting buffers pushed but not yet published.
    pub fn next_used(&self) -> RingPosition {
        let mut at = self.next_used;
        if self.batch_last.is_some() {
            at = at.advance(self.batch_descs, self.size);
        }
        at
    }

    /// Restarts from given ring positions (vhost-user's `SET_VRING_BASE`,
    /// or resuming a migrated queue); every buffer before `next_avail` is
    /// taken as used. Slots outside the ring are reduced modulo its size.
    /// Pending unpublished completions are lost and no chain is in flight
    /// any more.
    pub fn set_positions(&mut self, next_avail: RingPosition, next_used: RingPosition) {
        self.inflight.clear();
        let fit = |p: RingPosition| RingPosition {
            slot: p.slot.checked_rem(self.size).unwrap_or(0),
            ..p
        };
        self.next_avail = fit(next_avail);
        self.next_used = fit(next_used);
        self.in_flight = 0;
        self.unpublished = 0;
        self.first_pending = None;
        self.batch_descs = 0;
        self.batch_last = None;
    }

    /// Forgets all ring state, as after a queue or device reset: both wrap
    /// counters are 1 again and the device starts at slot 0 (virtio 1.4
    /// §"Virtqueue Reset").
    pub fn reset(&mut self) {
        self.set_positions(RingPosition::START, RingPosition::START);
    }

    fn slot_addr(&self, slot: u16) -> u64 {
        self.desc
            .wrapping_add(u64::from(slot).wrapping_mul(DESC_SIZE))
    }

    fn ring_err(area: RingArea) -> impl Fn(MemoryError) -> QueueError {
        move |error| QueueError::Ring { area, error }
    }

    /// Reads a slot's flags (acquire) and says whether the driver made it
    /// available in the lap `wrap`: AVAIL equals `wrap` and USED does not
    /// (§"Driver and Device Ring Wrap Counters").
    fn avail_flags<M: GuestMemory>(
        &self,
        mem: &M,
        at: RingPosition,
    ) -> Result<Option<DescFlags>, QueueError> {
        let raw = mem
            .load_u16_acquire(self.slot_addr(at.slot).wrapping_add(DESC_FLAGS))
            .map_err(Self::ring_err(RingArea::Descriptors))?;
        let flags = DescFlags::from_bits_retain(raw);
        Ok(Self::is_avail(flags, at.wrap).then_some(flags))
    }

    /// Whether `flags` say the driver made a slot available in the lap
    /// `wrap`: AVAIL equals `wrap` and USED does not.
    #[inline]
    fn is_avail(flags: DescFlags, wrap: bool) -> bool {
        // One mask and one compare: the two bits as they must be in lap `wrap`.
        let want = if wrap {
            DescFlags::AVAIL
        } else {
            DescFlags::USED
        };
        flags.intersection(DescFlags::AVAIL | DescFlags::USED) == want
    }

    /// Whether the driver has made a buffer available that the device has
    /// not taken yet.
    ///
    /// # Errors
    /// [`QueueError::Ring`] if the descriptor ring is unreachable.
    pub fn has_available<M: GuestMemory>(&self, mem: &M) -> Result<bool, QueueError> {
        Ok(self.avail_flags(mem, self.next_avail)?.is_some())
    }

    /// Takes the next available chain, walks and validates it into
    /// `chain` (caller-owned storage, overwritten in place).
    ///
    /// Returns `Ok(false)` when the next slot is not available. An indirect
    /// table is read up to `max(queue size, N)` entries: a longer list than
    /// the queue breaks a driver rule (§"Scatter-Gather Support"), but one
    /// that fits in `N` is served (the tolerance [`super::SplitQueue::pop`]
    /// explains).
    ///
    /// # Errors
    /// [`QueueError::Chain`] for a malformed chain: its slots have been
    /// consumed and it must be completed via [`QueueError::head`].
    /// [`QueueError::Ring`] if the descriptor ring is unreachable and
    /// [`QueueError::HeadInFlight`] if the driver made slots available that
    /// the device still holds; nothing was consumed.
    #[inline]
    pub fn pop<M: GuestMemory, const N: usize>(
        &mut self,
        mem: &M,
        chain: &mut Chain<N>,
    ) -> Result<bool, QueueError> {
        let Some(first) = self.avail_flags(mem, self.next_avail)? else {
            return Ok(false);
        };
        chain.start(0);
        let mut error: Option<(ChainErrorKind, bool)> = None;
        let mut at = self.next_avail;
        let mut flags = first;
        // Each descriptor in one read (two 8-byte loads). The first slot's
        // `flags` were loaded on their own with acquire, above, and that
        // value is the one used; the later slots' come from this read, which
        // the head's acquire orders after the driver's writes (the driver
        // makes the head available last, §"Next Flag").
        let mut desc = mem
            .read_obj::<PvirtqDesc>(self.slot_addr(at.slot))
            .map_err(Self::ring_err(RingArea::Descriptors))?;
        let id = loop {
            chain.count_desc();
            let slots = chain.head().descs();
            let (addr, len) = (desc.addr.get(), desc.len.get());
            if flags.contains(DescFlags::INDIRECT) {
                self.take_indirect(mem, chain, addr, len, flags, slots, &mut error);
            } else {
                take(
                    mem,
                    chain,
                    addr,
                    len,
                    flags.contains(DescFlags::WRITE),
                    &mut error,
                );
            }
            let id = desc.id.get();
            if !flags.contains(DescFlags::NEXT) {
                break id;
            }
            // A list is at most the queue size long (§"Scatter-Gather
            // Support"); after `size` slots the walk is back at its start,
            // which the availability check below refuses anyway.
            if slots >= self.size {
                let kind = ChainErrorKind::LongerThanQueue { size: self.size };
                error.get_or_insert((kind, false));
                break id;
            }
            at = at.advance(1, self.size);
            desc = mem
                .read_obj::<PvirtqDesc>(self.slot_addr(at.slot))
                .map_err(Self::ring_err(RingArea::Descriptors))?;
            flags = DescFlags::from_bits_retain(desc.flags.get());
            if !Self::is_avail(flags, at.wrap) {
                // §"Next Flag": the driver makes the first descriptor
                // available only after the rest; one that is not is a
                // broken chain. It ends here, at what was read.
                let kind = ChainErrorKind::NotAvailableMidChain { slot: at.slot };
                error.get_or_insert((kind, false));
                break id;
            }
        };
        chain.set_id(id);
        let slots = chain.head().descs();
        // Slots and buffer ids the device holds cannot be available again:
        // a driver that says so has corrupted the ring.
        if u32::from(self.in_flight).wrapping_add(u32::from(slots)) > u32::from(self.size) {
            return Err(QueueError::HeadInFlight { slot: id });
        }
        let Err(entry) = self.inflight.find(id) else {
            return Err(QueueError::HeadInFlight { slot: id });
        };
        self.next_avail = self.next_avail.advance(slots, self.size);
        // At most `size` slots in flight, checked above.
        self.in_flight = self.in_flight.wrapping_add(slots);
        if let Some(entry) = entry {
            self.inflight.insert_at(entry, id);
        }
        match error {
            None => {
                chain.finish();
                Ok(true)
            }
            Some((kind, reached_end)) => Err(QueueError::Chain(ChainError {
                head: chain.partial_head(),
                kind,
                salvage: chain.salvage(reached_end),
            })),
        }
    }

    /// Takes an INDIRECT ring descriptor (the `slots`-th of its chain, a
    /// table at `addr` of `len` bytes) into `chain`: validates its buffers
    /// until the first problem, which goes into `error` (with whether the
    /// chain's end is still known), and after that only notes where
    /// writable buffers are.
    #[allow(clippy::too_many_arguments)]
    fn take_indirect<M: GuestMemory, const N: usize>(
        &self,
        mem: &M,
        chain: &mut Chain<N>,
        addr: u64,
        len: u32,
        flags: DescFlags,
        slots: u16,
        error: &mut Option<(ChainErrorKind, bool)>,
    ) {
        // §"Indirect Flag": WRITE on this descriptor is ignored; it must not
        // be part of a NEXT list.
        let table_error = if !self.indirect() {
            Some(ChainErrorKind::IndirectNotNegotiated)
        } else if flags.contains(DescFlags::NEXT) || slots > 1 {
            Some(ChainErrorKind::IndirectWithNext)
        } else if len == 0 || !len.is_multiple_of(16) {
            Some(ChainErrorKind::IndirectTableLength { len })
        } else if mem.check_range(addr, u64::from(len)).is_err() {
            Some(ChainErrorKind::IndirectTableOutOfMemory { addr, len })
        } else if len / 16 > walk_limit(self.size, N) {
            Some(ChainErrorKind::LongerThanQueue { size: self.size })
        } else {
            None
        };
        if let Some(kind) = table_error {
            error.get_or_insert((kind, false));
            return;
        }
        for i in 0..len / 16 {
            let entry = addr.wrapping_add(u64::from(i).wrapping_mul(DESC_SIZE));
            let Ok(desc) = mem.read_obj::<PvirtqDesc>(entry) else {
                let kind = ChainErrorKind::IndirectTableOutOfMemory { addr, len };
                error.get_or_insert((kind, false));
                return;
            };
            let f = DescFlags::from_bits_retain(desc.flags.get());
            // Only WRITE is valid inside the table; NEXT and the id are
            // reserved and ignored (the table's length is the list's). An
            // INDIRECT flag, though, asks for a nesting no device supports.
            if f.contains(DescFlags::INDIRECT) {
                error.get_or_insert((ChainErrorKind::NestedIndirect, false));
                return;
            }
            take(
                mem,
                chain,
                desc.addr.get(),
                desc.len.get(),
                f.contains(DescFlags::WRITE),
                error,
            );
        }
    }

    /// Returns a buffer to the driver with `written` bytes written to its
    /// device-writable part. The driver sees it after
    /// [`Self::publish_used`].
    ///
    /// Buffers may be returned in any order (unless `IN_ORDER` was
    /// negotiated); each used descriptor goes to the next used slot and the
    /// device then skips the slots the buffer took (§"Next Flag"). With
    /// `IN_ORDER` a run of fully written buffers costs one used descriptor,
    /// carrying the last buffer's id (§"In-order use of descriptors").
    ///
    /// The used length is `written` clamped to the chain's writable length.
    ///
    /// # Errors
    /// [`QueueError::NotInFlight`] if `head` is not a chain this queue
    /// handed out and has not taken back (a device bug; nothing is
    /// written), [`QueueError::Ring`] if the ring is unreachable. On any
    /// error nothing changes, so the completion can be retried.
    #[inline(always)]
    pub fn push_used<M: GuestMemory>(
        &mut self,
        mem: &M,
        head: Head,
        written: u32,
    ) -> Result<(), QueueError> {
        if head.descs == 0 || head.descs > self.in_flight {
            return Err(QueueError::NotInFlight { id: head.id });
        }
        let Ok(entry) = self.inflight.find(head.id) else {
            return Err(QueueError::NotInFlight { id: head.id });
        };
        let len = head.used_len(written);
        if !self.in_order {
            self.write_used(mem, head.id, len, head.descs)?;
        } else if head.completes_whole(written) {
            // At most `size` slots are in flight, so the run fits in a u16.
            self.batch_descs = self.batch_descs.wrapping_add(head.descs);
            self.batch_last = Some((head.id, len));
        } else {
            let descs = self.batch_descs.wrapping_add(head.descs);
            self.write_used(mem, head.id, len, descs)?;
            self.batch_descs = 0;
            self.batch_last = None;
        }
        self.in_flight = self.in_flight.wrapping_sub(head.descs);
        self.inflight.remove_at(entry);
        Ok(())
    }

    /// IN_ORDER: writes the one used descriptor covering the run.
    fn flush_batch<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        if let Some((id, len)) = self.batch_last.take() {
            let descs = core::mem::take(&mut self.batch_descs);
            self.write_used(mem, id, len, descs)?;
        }
        Ok(())
    }

    /// Writes a used descriptor at `next_used` and skips `descs` slots.
    ///
    /// The first of a batch gets `len` and `id` now and its `flags` at the
    /// publish, stored last with release ordering. Every later one is one
    /// 8-byte store of `len`, `id` and `flags` together, with no ordering
    /// of its own: the driver polls only the slot after the last one it
    /// processed (§"Polling of available and used descriptors"), so it
    /// reaches this one only after acquiring the batch's first `flags`,
    /// which was released after it (the same scheme as a driver's "make
    /// the head available last", §"Placing Available Buffers").
    #[inline(always)]
    fn write_used<M: GuestMemory>(
        &mut self,
        mem: &M,
        id: u16,
        len: u32,
        descs: u16,
    ) -> Result<(), QueueError> {
        let at = self.next_used;
        let addr = self.slot_addr(at.slot);
        let err = Self::ring_err(RingArea::Descriptors);
        // §"Write Flag": WRITE says whether any data was written; AVAIL and
        // USED both equal the device's wrap counter.
        let mut flags = DescFlags::empty();
        flags.set(DescFlags::WRITE, len > 0);
        flags.set(DescFlags::AVAIL | DescFlags::USED, at.wrap);
        if self.first_pending.is_none() {
            mem.write_obj(addr.wrapping_add(DESC_LEN), &Le32::from(len))
                .map_err(&err)?;
            mem.write_obj(addr.wrapping_add(DESC_ID), &Le16::from(id))
                .map_err(&err)?;
            self.first_pending = Some((at.slot, flags.bits()));
        } else {
            let tail = PvirtqUsedTail {
                len: len.into(),
                id: id.into(),
                flags: flags.bits().into(),
            };
            mem.write_obj(addr.wrapping_add(DESC_LEN), &tail)
                .map_err(&err)?;
        }
        self.next_used = at.advance(descs, self.size);
        self.unpublished = self.unpublished.saturating_add(descs);
        Ok(())
    }

    /// Publishes every buffer pushed so far by storing the first pending
    /// used descriptor's `flags` last (release), then decides whether the
    /// driver wants a used buffer notification from its Driver Event
    /// Suppression structure: ENABLE notifies, DISABLE does not, and DESC
    /// (with `EVENT_IDX`) notifies when this batch used the slot and lap it
    /// names.
    ///
    /// # Errors
    /// [`QueueError::Ring`] if the ring or the structure is unreachable.
    pub fn publish_used<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        self.flush_batch(mem)?;
        let Some((slot, flags)) = self.first_pending.take() else {
            return Ok(false);
        };
        mem.store_u16_release(self.slot_addr(slot).wrapping_add(DESC_FLAGS), flags)
            .map_err(Self::ring_err(RingArea::Descriptors))?;
        let moved = core::mem::take(&mut self.unpublished);
        // The used flags must be visible before we read the driver's
        // suppression state, or both sides could skip the notification.
        mem.fence();
        let (off_wrap, event_flags) = self.read_driver_event(mem)?;
        Ok(match event_flags {
            RING_EVENT_FLAGS_DISABLE => false,
            RING_EVENT_FLAGS_DESC if self.event_idx() => {
                self.crossed(RingPosition::from_u16(off_wrap), self.next_used, moved)
            }
            // ENABLE, DESC without EVENT_IDX and the reserved value: notify,
            // the choice that cannot lose a wakeup.
            _ => true,
        })
    }

    /// Did moving to `new` by `moved` slots pass over `event`? Slots are
    /// counted on a line where the lap of `new` is `0..size` and the lap
    /// before it `-size..0`, so `vring_need_event` applies (the computation
    /// Linux's packed ring uses).
    fn crossed(&self, event: RingPosition, new: RingPosition, moved: u16) -> bool {
        let mut event_idx = event.slot;
        if event.wrap != new.wrap {
            event_idx = event_idx.wrapping_sub(self.size);
        }
        vring_need_event(event_idx, new.slot, new.slot.wrapping_sub(moved))
    }

    /// The driver's `off_wrap` and `flags` (the two flag bits only).
    fn read_driver_event<M: GuestMemory>(&self, mem: &M) -> Result<(u16, u16), QueueError> {
        let err = Self::ring_err(RingArea::Driver);
        let flags = mem
            .load_u16_acquire(self.driver_event.wrapping_add(EVENT_FLAGS))
            .map_err(&err)?;
        let off_wrap = mem
            .load_u16_acquire(self.driver_event.wrapping_add(EVENT_OFF_WRAP))
            .map_err(&err)?;
        Ok((off_wrap, flags & 0x3))
    }

    fn write_device_event<M: GuestMemory>(
        &self,
        mem: &M,
        off_wrap: u16,
        flags: u16,
    ) -> Result<(), QueueError> {
        let err = Self::ring_err(RingArea::Device);
        mem.store_u16_release(self.device_event.wrapping_add(EVENT_OFF_WRAP), off_wrap)
            .map_err(&err)?;
        mem.store_u16_release(self.device_event.wrapping_add(EVENT_FLAGS), flags)
            .map_err(&err)
    }

    /// Asks the driver to stop sending available buffer notifications
    /// (Device Event Suppression `flags` = DISABLE).
    ///
    /// # Errors
    /// [`QueueError::Ring`] if the structure is unreachable.
    pub fn disable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<(), QueueError> {
        mem.store_u16_release(
            self.device_event.wrapping_add(EVENT_FLAGS),
            RING_EVENT_FLAGS_DISABLE,
        )
        .map_err(Self::ring_err(RingArea::Device))
    }

    /// Asks the driver to notify on its next available buffer (ENABLE, or
    /// with `EVENT_IDX` DESC at the next slot the device will read), then
    /// checks again for a buffer it made available before it could see the
    /// request.
    ///
    /// Returns `true` if a buffer is available: the device must keep
    /// popping rather than wait for a notification that may never come.
    ///
    /// # Errors
    /// [`QueueError::Ring`] if the ring or structure is unreachable.
    pub fn enable_notification<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, QueueError> {
        if self.event_idx() {
            self.write_device_event(mem, self.next_avail.to_u16(), RING_EVENT_FLAGS_DESC)?;
        } else {
            self.write_device_event(mem, 0, RING_EVENT_FLAGS_ENABLE)?;
        }
        // Our store must be visible before we look at the ring again.
        mem.fence();
        self.has_available(mem)
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
