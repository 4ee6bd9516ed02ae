//! Driver side of the packed ring (virtio 1.4 §"Supplying Buffers to The
//! Device", §"Receiving Used Buffers From The Device", packed variants).
//!
//! The driver keeps per-buffer-id state (slots taken, writable length) in a
//! `Q`-entry table of its own, so `Q` must be at least the queue size. As on
//! the device side, the first descriptor of a batch is made available last,
//! by [`PackedDriver::publish_avail`].

use super::{DriverError, Used};
use crate::memory::GuestMemory;
use crate::queue::{QueueConfig, RingPosition, Segment, vring_need_event};
use crate::spec::{
    DescFlags, Features, PvirtqDesc, RING_EVENT_FLAGS_DESC, RING_EVENT_FLAGS_DISABLE,
    RING_EVENT_FLAGS_ENABLE, packed_desc_ring_size,
};

const DESC_SIZE: u64 = 16;
const DESC_FLAGS: u64 = 14;

#[derive(Clone, Copy, Debug, Default)]
struct IdState {
    /// Ring slots the buffer took (0: the id is free).
    descs: u16,
    /// Device-writable bytes in the buffer.
    writable: u32,
    /// Free list link.
    next_free: u16,
}

/// Driver side of one packed virtqueue of at most `Q` entries.
#[derive(Clone, Debug)]
pub struct PackedDriver<const Q: usize> {
    size: u16,
    desc: u64,
    driver_event: u64,
    device_event: u64,
    event_idx: bool,
    in_order: bool,
    ids: [IdState; Q],
    free_head: u16,
    /// Free ring slots.
    num_free: u16,
    next_avail: RingPosition,
    /// The first descriptor of the unpublished batch: slot and flags.
    first_pending: Option<(u16, u16)>,
    /// Slots made available since the last publish.
    unpublished: u16,
    next_used: RingPosition,
    outstanding: u16,
    /// IN_ORDER: the oldest outstanding id (ids are handed out in ring
    /// order), and the used descriptor of the batch being expanded.
    in_order_head: u16,
    batch: Option<(u16, u32)>,
}

impl<const Q: usize> PackedDriver<Q> {
    /// A compact layout for a ring of `size` at `base` (16-aligned):
    /// descriptor ring, then the driver and device event suppression
    /// structures.
    pub fn layout(base: u64, size: u16) -> QueueConfig {
        let driver_addr = base.wrapping_add(packed_desc_ring_size(size));
        QueueConfig {
            size,
            desc_addr: base,
            driver_addr,
            device_addr: driver_addr.wrapping_add(4),
        }
    }

    /// Bytes [`PackedDriver::layout`] uses from `base`.
    pub fn layout_len(size: u16) -> u64 {
        packed_desc_ring_size(size) + 8
    }

    /// Zeroes the ring and both event suppression structures in `mem` and
    /// returns the driver.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a configuration a packed ring cannot have
    /// ([`QueueConfig::check_packed`]), [`DriverError::QueueFull`] if
    /// `size > Q`, [`DriverError::Memory`] otherwise.
    pub fn new<M: GuestMemory>(
        mem: &M,
        config: QueueConfig,
        features: Features,
    ) -> Result<Self, DriverError> {
        config.check_packed(mem)?;
        let size = config.size;
        if usize::from(size) > Q {
            return Err(DriverError::QueueFull);
        }
        for i in 0..size {
            mem.write_obj(
                config.desc_addr + u64::from(i) * DESC_SIZE,
                &PvirtqDesc::default(),
            )?;
        }
        mem.write(config.driver_addr, &[0; 4])?;
        mem.write(config.device_addr, &[0; 4])?;
        let mut ids = [IdState::default(); Q];
        for (i, state) in ids.iter_mut().enumerate() {
            state.next_free = (i + 1) as u16;
        }
        Ok(Self {
            size,
            desc: config.desc_addr,
            driver_event: config.driver_addr,
            device_event: config.device_addr,
            event_idx: features.contains(Features::EVENT_IDX),
            in_order: features.contains(Features::IN_ORDER),
            ids,
            free_head: 0,
            num_free: size,
            next_avail: RingPosition::START,
            first_pending: None,
            unpublished: 0,
            next_used: RingPosition::START,
            outstanding: 0,
            in_order_head: 0,
            batch: None,
        })
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free ring slots.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Buffers added and not yet collected.
    pub fn outstanding(&self) -> u16 {
        self.outstanding
    }

    /// Where the next descriptor goes (what `NOTIFICATION_DATA` carries).
    pub fn next_avail(&self) -> RingPosition {
        self.next_avail
    }

    fn slot_addr(&self, slot: u16) -> u64 {
        self.desc + u64::from(slot) * DESC_SIZE
    }

    /// `at` moved on by `n <= size` slots (no division: at most one lap).
    fn advance(&self, at: RingPosition, n: u16) -> RingPosition {
        let next = u32::from(at.slot) + u32::from(n);
        let size = u32::from(self.size);
        if next < size {
            RingPosition {
                slot: next as u16,
                wrap: at.wrap,
            }
        } else {
            RingPosition {
                slot: (next - size) as u16,
                wrap: !at.wrap,
            }
        }
    }

    fn alloc_id(&mut self) -> u16 {
        if self.in_order {
            return (u32::from(self.in_order_head) + u32::from(self.outstanding))
                .rem_euclid(u32::from(self.size)) as u16;
        }
        let id = self.free_head;
        self.free_head = self.ids.get(usize::from(id)).map_or(0, |s| s.next_free);
        id
    }

    fn free_id(&mut self, id: u16) {
        if let Some(state) = self.ids.get_mut(usize::from(id)) {
            state.descs = 0;
            state.next_free = self.free_head;
        }
        if !self.in_order {
            self.free_head = id;
        }
    }

    /// Writes `n` descriptors from `make(i)` at the next available slots.
    fn place<M: GuestMemory>(
        &mut self,
        mem: &M,
        n: u16,
        writable: u32,
        mut make: impl FnMut(u16) -> (Segment, DescFlags),
    ) -> Result<u16, DriverError> {
        if n == 0 {
            return Err(DriverError::EmptyChain);
        }
        if n > self.num_free {
            return Err(DriverError::QueueFull);
        }
        let id = self.alloc_id();
        let mut at = self.next_avail;
        for i in 0..n {
            let (seg, mut flags) = make(i);
            flags.set(DescFlags::NEXT, i + 1 < n);
            // §"Placing Available Buffers": AVAIL = wrap counter, USED = its
            // inverse.
            flags.set(DescFlags::AVAIL, at.wrap);
            flags.set(DescFlags::USED, !at.wrap);
            // Only the batch's first descriptor waits for its `flags`:
            // `publish_avail` stores them last, with release ordering. The
            // device polls only the slot after the last one it processed
            // (§"Polling of available and used descriptors"), so it reads
            // every later descriptor of the batch after acquiring that
            // store, and each is one plain write (as Linux's driver does).
            let first = self.first_pending.is_none();
            if first {
                self.first_pending = Some((at.slot, flags.bits()));
            }
            mem.write_obj(
                self.slot_addr(at.slot),
                &PvirtqDesc {
                    addr: seg.addr.into(),
                    len: seg.len.into(),
                    id: id.into(),
                    flags: if first { 0 } else { flags.bits() }.into(),
                },
            )?;
            at = self.advance(at, 1);
        }
        if let Some(state) = self.ids.get_mut(usize::from(id)) {
            state.descs = n;
            state.writable = writable;
        }
        self.next_avail = at;
        self.num_free -= n;
        self.unpublished += n;
        self.outstanding += 1;
        Ok(id)
    }

    fn writable_len(writable: &[Segment]) -> u32 {
        writable.iter().fold(0u32, |t, s| t.saturating_add(s.len))
    }

    /// Adds a chain of `readable` then `writable` buffers, one descriptor
    /// each (published by [`Self::publish_avail`]). Returns its buffer id.
    ///
    /// # Errors
    /// [`DriverError::QueueFull`], [`DriverError::EmptyChain`], or a memory
    /// error.
    pub fn add<M: GuestMemory>(
        &mut self,
        mem: &M,
        readable: &[Segment],
        writable: &[Segment],
    ) -> Result<u16, DriverError> {
        let n =
            u16::try_from(readable.len() + writable.len()).map_err(|_| DriverError::QueueFull)?;
        let all = readable
            .iter()
            .map(|s| (*s, DescFlags::empty()))
            .chain(writable.iter().map(|s| (*s, DescFlags::WRITE)));
        let mut all = all;
        self.place(mem, n, Self::writable_len(writable), |_| {
            all.next()
                .unwrap_or((Segment { addr: 0, len: 0 }, DescFlags::empty()))
        })
    }

    /// Adds a chain as one INDIRECT descriptor pointing at a table of
    /// packed descriptors the driver writes at `table` (16 bytes per
    /// buffer, memory the caller owns until the buffer is used).
    ///
    /// # Errors
    /// As for [`Self::add`].
    pub fn add_indirect<M: GuestMemory>(
        &mut self,
        mem: &M,
        table: u64,
        readable: &[Segment],
        writable: &[Segment],
    ) -> Result<u16, DriverError> {
        let n =
            u32::try_from(readable.len() + writable.len()).map_err(|_| DriverError::QueueFull)?;
        if n == 0 {
            return Err(DriverError::EmptyChain);
        }
        let all = readable
            .iter()
            .map(|s| (s, DescFlags::empty()))
            .chain(writable.iter().map(|s| (s, DescFlags::WRITE)));
        for (i, (seg, flags)) in all.enumerate() {
            mem.write_obj(
                table + i as u64 * DESC_SIZE,
                &PvirtqDesc {
                    addr: seg.addr.into(),
                    len: seg.len.into(),
                    id: 0.into(),
                    flags: flags.bits().into(),
                },
            )?;
        }
        let desc = Segment {
            addr: table,
            len: n.saturating_mul(16),
        };
        self.place(mem, 1, Self::writable_len(writable), |_| {
            (desc, DescFlags::INDIRECT)
        })
    }

    /// Makes the chains added since the last call visible (the batch's
    /// first `flags`, stored last with release ordering) and says whether
    /// the device must be notified, from its Device Event Suppression
    /// structure (DISABLE: no; DESC with `EVENT_IDX`: if the batch made the
    /// named slot available; otherwise yes).
    ///
    /// # Errors
    /// A memory error.
    pub fn publish_avail<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        let Some((slot, flags)) = self.first_pending.take() else {
            return Ok(false);
        };
        mem.store_u16_release(self.slot_addr(slot) + DESC_FLAGS, flags)?;
        let moved = core::mem::take(&mut self.unpublished);
        mem.fence();
        let event_flags = mem.load_u16_acquire(self.device_event + 2)? & 0x3;
        let off_wrap = mem.load_u16_acquire(self.device_event)?;
        Ok(match event_flags {
            RING_EVENT_FLAGS_DISABLE => false,
            RING_EVENT_FLAGS_DESC if self.event_idx => {
                let event = RingPosition::from_u16(off_wrap);
                let mut event_idx = event.slot;
                if event.wrap != self.next_avail.wrap {
                    event_idx = event_idx.wrapping_sub(self.size);
                }
                let new = self.next_avail.slot;
                vring_need_event(event_idx, new, new.wrapping_sub(moved))
            }
            _ => true,
        })
    }

    fn write_driver_event<M: GuestMemory>(
        &self,
        mem: &M,
        off_wrap: u16,
        flags: u16,
    ) -> Result<(), DriverError> {
        mem.store_u16_release(self.driver_event, off_wrap)?;
        mem.store_u16_release(self.driver_event + 2, flags)?;
        Ok(())
    }

    /// Asks the device for used buffer notifications again (ENABLE, or with
    /// `EVENT_IDX` DESC at the next used slot). Returns `true` if used
    /// buffers are already waiting.
    ///
    /// # Errors
    /// A memory error.
    pub fn enable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        if self.event_idx {
            self.write_driver_event(mem, self.next_used.to_u16(), RING_EVENT_FLAGS_DESC)?;
        } else {
            self.write_driver_event(mem, 0, RING_EVENT_FLAGS_ENABLE)?;
        }
        mem.fence();
        Ok(self.batch.is_some() || self.used_flags(mem)?.is_some())
    }

    /// Asks the device not to send used buffer notifications.
    ///
    /// # Errors
    /// A memory error.
    pub fn disable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<(), DriverError> {
        mem.store_u16_release(self.driver_event + 2, RING_EVENT_FLAGS_DISABLE)?;
        Ok(())
    }

    /// The flags at the next used slot if the device has marked it used in
    /// the current lap (AVAIL = USED = wrap counter).
    fn used_flags<M: GuestMemory>(&self, mem: &M) -> Result<Option<DescFlags>, DriverError> {
        if self.outstanding == 0 {
            return Ok(None);
        }
        let raw = mem.load_u16_acquire(self.slot_addr(self.next_used.slot) + DESC_FLAGS)?;
        let flags = DescFlags::from_bits_retain(raw);
        let wrap = self.next_used.wrap;
        Ok(
            (flags.contains(DescFlags::AVAIL) == wrap && flags.contains(DescFlags::USED) == wrap)
                .then_some(flags),
        )
    }

    /// Collects the next used buffer, freeing its slots and id. With
    /// `IN_ORDER`, expands one used descriptor per batch into one [`Used`]
    /// per buffer (skipped buffers report their full writable length).
    ///
    /// # Errors
    /// [`DriverError::BadUsedId`] if the device returned an id that is not
    /// outstanding; a memory error.
    pub fn pop_used<M: GuestMemory>(&mut self, mem: &M) -> Result<Option<Used>, DriverError> {
        let (id, batch_len) = match self.batch {
            Some(b) => b,
            None => {
                let Some(flags) = self.used_flags(mem)? else {
                    return Ok(None);
                };
                let desc = mem.read_obj::<PvirtqDesc>(self.slot_addr(self.next_used.slot))?;
                // §"Element Address and Length": len is reserved without WRITE.
                let len = if flags.contains(DescFlags::WRITE) {
                    desc.len.get()
                } else {
                    0
                };
                (desc.id.get(), len)
            }
        };
        let head = if self.in_order {
            self.in_order_head
        } else {
            id
        };
        let state = self
            .ids
            .get(usize::from(head))
            .copied()
            .filter(|s| s.descs > 0 && head < self.size)
            .ok_or(DriverError::BadUsedId(id.into()))?;
        let len = if head == id {
            self.batch = None;
            batch_len
        } else {
            self.batch = Some((id, batch_len));
            state.writable
        };
        self.next_used = self.advance(self.next_used, state.descs);
        self.num_free = self.num_free.saturating_add(state.descs).min(self.size);
        self.outstanding -= 1;
        self.free_id(head);
        if self.in_order {
            self.in_order_head = (head + 1) % self.size;
        }
        Ok(Some(Used { id: head, len }))
    }
}

// Against the device-side packed engine.
#[cfg(test)]
#[cfg(feature = "packed")]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::vec;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::memory::Region;
    use crate::queue::TakeChain;
    use crate::queue::{Chain, PackedQueue};

    const SIZE: u16 = 3;
    const F: Features = Features::RING_PACKED;

    fn with_ring(
        features: Features,
        f: impl FnOnce(&Region, &mut PackedDriver<4>, &mut PackedQueue<64>),
    ) {
        let mut buf = vec![0u64; 0x1000];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = PackedDriver::<4>::layout(0, SIZE);
        let mut drv = PackedDriver::new(&mem, cfg, features).unwrap();
        let mut dev = PackedQueue::<64>::new(&mem, cfg, features).unwrap();
        f(&mem, &mut drv, &mut dev);
    }

    fn seg(addr: u64, len: u32) -> Segment {
        Segment { addr, len }
    }

    #[test]
    fn packed_driver_refuses_what_does_not_fit() {
        with_ring(F, |mem, drv, _| {
            assert_eq!(drv.add(mem, &[], &[]), Err(DriverError::EmptyChain));
            let four = [seg(0x4000, 1); 4];
            assert_eq!(drv.add(mem, &four, &[]), Err(DriverError::QueueFull));
            drv.add(mem, &four[..2], &[]).unwrap();
            assert_eq!(drv.add(mem, &four[..2], &[]), Err(DriverError::QueueFull));
            // An indirect chain takes one slot whatever its length.
            drv.add_indirect(mem, 0x5000, &four, &[]).unwrap();
            assert_eq!(drv.num_free(), 0);
        });
        let mut buf = vec![0u64; 0x100];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = PackedDriver::<2>::layout(0, SIZE);
        assert_eq!(
            PackedDriver::<2>::new(&mem, cfg, F).unwrap_err(),
            DriverError::QueueFull,
            "a ring larger than the id table"
        );
    }

    // virtio 1.4 §"Driver and Device Event Suppression": the driver reads
    // the Device Event Suppression structure: DISABLE means no available
    // buffer notification; DESC (EVENT_IDX) means notify when the named
    // descriptor is made available.
    #[test]
    #[cfg(feature = "event-idx")]
    fn packed_kick_decision_follows_the_device() {
        with_ring(F, |mem, drv, dev| {
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap());
            assert!(!drv.publish_avail(mem).unwrap(), "nothing new, no kick");
            dev.disable_notification(mem).unwrap();
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(!drv.publish_avail(mem).unwrap());
        });
        with_ring(F | Features::EVENT_IDX, |mem, drv, dev| {
            // The device waits for slot 0 of lap 1 (enable writes DESC).
            assert!(!dev.enable_notification(mem).unwrap());
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap());
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(!drv.publish_avail(mem).unwrap(), "slot 1: not asked for");
            let _: Chain<1> = dev.take(mem).unwrap().unwrap();
            let _: Chain<1> = dev.take(mem).unwrap().unwrap();
            assert!(!dev.enable_notification(mem).unwrap());
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap(), "slot 2: asked for");
        });
    }

    // virtio 1.4 §"Placing Available Buffers Into The Descriptor Ring" and
    // §"Polling of available and used descriptors": the batch's first
    // descriptor becomes available only at the publish; every later one is
    // written whole at once (its flags included), which the device cannot
    // see before the first.
    #[test]
    fn packed_driver_batch_is_invisible_until_publish() {
        with_ring(F, |mem, drv, dev| {
            drv.add(mem, &[seg(0x4000, 16), seg(0x4100, 16)], &[])
                .unwrap();
            drv.add(mem, &[], &[seg(0x4200, 8)]).unwrap();
            let first: PvirtqDesc = mem.read_obj(0).unwrap();
            assert_eq!(first.flags.get(), 0, "not available before the publish");
            assert_eq!((first.addr.get(), first.len.get()), (0x4000, 16));
            let later: PvirtqDesc = mem.read_obj(DESC_SIZE).unwrap();
            let avail = DescFlags::AVAIL.bits();
            assert_eq!(later.flags.get(), avail, "the chain's end, written whole");
            let third: PvirtqDesc = mem.read_obj(2 * DESC_SIZE).unwrap();
            assert_eq!(third.flags.get(), avail | DescFlags::WRITE.bits());
            let none: Option<Chain<2>> = dev.take(mem).unwrap();
            assert!(none.is_none(), "the device sees nothing before the publish");
            drv.publish_avail(mem).unwrap();
            let first: PvirtqDesc = mem.read_obj(0).unwrap();
            assert_eq!(first.flags.get(), avail | DescFlags::NEXT.bits());
            let a: Chain<2> = dev.take(mem).unwrap().unwrap();
            let b: Chain<2> = dev.take(mem).unwrap().unwrap();
            assert_eq!((a.readable_len(), b.writable_len()), (32, 8));
        });
    }

    // The device is untrusted from the driver's side too: a used id that is
    // not outstanding is an error, not a panic.
    #[test]
    fn packed_driver_rejects_bogus_used_ids() {
        with_ring(F, |mem, drv, _| {
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            drv.publish_avail(mem).unwrap();
            let used = PvirtqDesc {
                id: 3.into(),
                flags: (DescFlags::AVAIL | DescFlags::USED).bits().into(),
                ..PvirtqDesc::default()
            };
            mem.write_obj(0, &used).unwrap();
            assert_eq!(drv.pop_used(mem), Err(DriverError::BadUsedId(3)));
        });
    }

    // virtio 1.4 §"In-order use of descriptors" (packed): one used
    // descriptor stands for a batch; the driver expands it, the skipped
    // buffers counting as completely written.
    #[test]
    fn packed_in_order_driver_expands_batches() {
        with_ring(F | Features::IN_ORDER, |mem, drv, dev| {
            let a = drv.add(mem, &[], &[seg(0x4000, 8)]).unwrap();
            let b = drv
                .add(mem, &[], &[seg(0x4100, 4), seg(0x4200, 4)])
                .unwrap();
            assert_eq!((a, b), (0, 1));
            drv.publish_avail(mem).unwrap();
            for len in [8, 3] {
                let c: Chain<2> = dev.take(mem).unwrap().unwrap();
                dev.push_used(mem, c.head(), len).unwrap();
            }
            dev.publish_used(mem).unwrap();
            assert_eq!(drv.pop_used(mem), Ok(Some(Used { id: 0, len: 8 })));
            assert_eq!(drv.pop_used(mem), Ok(Some(Used { id: 1, len: 3 })));
            assert_eq!(drv.pop_used(mem), Ok(None));
            assert_eq!(drv.num_free(), SIZE);
            assert_eq!(drv.add(mem, &[seg(0x4000, 1)], &[]), Ok(2));
            assert_eq!(drv.add(mem, &[seg(0x4000, 1)], &[]), Ok(0));
        });
    }
}
