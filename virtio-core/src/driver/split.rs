//! Driver side of the split ring (virtio 1.4 §"Supplying Buffers to The Device", §"Receiving Used Buffers From The Device").

use super::{DriverError, Used};
use crate::memory::GuestMemory;
use crate::queue::{QueueConfig, Segment, vring_need_event};
use crate::spec::{
    DescFlags, Features, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY, VirtqDesc,
    VirtqUsedElem, split_avail_size, split_desc_table_size, split_used_size,
};

const DESC_SIZE: u64 = 16;

/// Driver side of one split virtqueue.
#[derive(Clone, Debug)]
pub struct SplitDriver {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    event_idx: bool,
    in_order: bool,
    /// Head of the free descriptor list (linked through `next` in the table).
    free_head: u16,
    num_free: u16,
    /// Next available index to fill, and the last one published.
    avail_idx: u16,
    published_avail: u16,
    last_used: u16,
    /// Buffers added and not yet collected.
    outstanding: u16,
    /// IN_ORDER: the oldest outstanding head, and the used element of the
    /// batch being expanded (id and len of its last buffer).
    in_order_head: u16,
    batch: Option<(u16, u32)>,
}

impl SplitDriver {
    /// A compact layout for a ring of `size` at `base` (16-aligned):
    /// descriptor table, then available ring, then used ring (4-aligned).
    pub fn layout(base: u64, size: u16) -> QueueConfig {
        let driver_addr = base.wrapping_add(split_desc_table_size(size));
        let device_addr = driver_addr
            .wrapping_add(split_avail_size(size))
            .wrapping_add(3)
            & !3;
        QueueConfig {
            size,
            desc_addr: base,
            driver_addr,
            device_addr,
        }
    }

    /// Bytes [`SplitDriver::layout`] uses from `base`.
    pub fn layout_len(size: u16) -> u64 {
        let c = Self::layout(0, size);
        c.device_addr.wrapping_add(split_used_size(size))
    }

    /// Initialises the rings in `mem` (zeroed available and used rings, a
    /// free list through the whole table) and returns the driver.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a configuration a split ring cannot have
    /// ([`QueueConfig::check_split`]), [`DriverError::Memory`] otherwise.
    pub fn new<M: GuestMemory>(
        mem: &M,
        config: QueueConfig,
        features: Features,
    ) -> Result<Self, DriverError> {
        config.check_split(mem)?;
        let size = config.size;
        let zero = [0u8; 64];
        for (addr, len) in [
            (config.driver_addr, split_avail_size(size)),
            (config.device_addr, split_used_size(size)),
        ] {
            let mut off = 0;
            while off < len {
                let n = (len - off).min(64) as usize;
                mem.write(addr + off, zero.get(..n).unwrap_or_default())?;
                off += n as u64;
            }
        }
        for i in 0..size {
            let desc = VirtqDesc {
                next: i.wrapping_add(1).into(),
                ..VirtqDesc::default()
            };
            mem.write_obj(config.desc_addr + u64::from(i) * DESC_SIZE, &desc)?;
        }
        Ok(Self {
            size,
            desc: config.desc_addr,
            avail: config.driver_addr,
            used: config.device_addr,
            event_idx: features.contains(Features::EVENT_IDX),
            in_order: features.contains(Features::IN_ORDER),
            free_head: 0,
            num_free: size,
            avail_idx: 0,
            published_avail: 0,
            last_used: 0,
            outstanding: 0,
            in_order_head: 0,
            batch: None,
        })
    }

    /// The queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Buffers added and not yet collected.
    pub fn outstanding(&self) -> u16 {
        self.outstanding
    }

    fn desc_addr(&self, index: u16) -> u64 {
        self.desc + u64::from(index) * DESC_SIZE
    }

    fn read_desc<M: GuestMemory>(&self, mem: &M, addr: u64) -> Result<VirtqDesc, DriverError> {
        Ok(mem.read_obj::<VirtqDesc>(addr)?)
    }

    /// Takes `n` descriptors and writes them with `make(i, next)` (`next` is
    /// the following descriptor's index). Returns the head.
    fn place<M: GuestMemory>(
        &mut self,
        mem: &M,
        n: u16,
        mut make: impl FnMut(u16, u16) -> VirtqDesc,
    ) -> Result<u16, DriverError> {
        if n == 0 {
            return Err(DriverError::EmptyChain);
        }
        if n > self.num_free {
            return Err(DriverError::QueueFull);
        }
        let head = self.free_head;
        let mut index = head;
        for i in 0..n {
            // IN_ORDER: descriptors in ring order (§"The Virtqueue Descriptor Table": next = x + 1,
            // wrapping to 0); otherwise follow the free list.
            let following = if self.in_order {
                (index + 1) % self.size
            } else {
                self.read_desc(mem, self.desc_addr(index))?.next.get()
            };
            mem.write_obj(self.desc_addr(index), &make(i, following))?;
            index = following;
        }
        self.free_head = index;
        self.num_free -= n;
        Ok(head)
    }

    /// One chained descriptor for `seg`.
    fn desc(seg: Segment, writable: bool, last: bool, next: u16) -> VirtqDesc {
        VirtqDesc {
            addr: seg.addr.into(),
            len: seg.len.into(),
            flags: Self::flags(last, writable).into(),
            next: next.into(),
        }
    }

    fn flags(last: bool, writable: bool) -> u16 {
        let mut f = DescFlags::empty();
        f.set(DescFlags::NEXT, !last);
        f.set(DescFlags::WRITE, writable);
        f.bits()
    }

    /// Segment `i` of a chain of readable then writable buffers.
    fn nth(readable: &[Segment], writable: &[Segment], i: usize) -> (Segment, bool) {
        match readable.get(i) {
            Some(s) => (*s, false),
            None => (
                writable
                    .get(i - readable.len())
                    .copied()
                    .unwrap_or(Segment { addr: 0, len: 0 }),
                true,
            ),
        }
    }

    /// Adds a chain of `readable` then `writable` buffers, one descriptor
    /// each, and puts it in the available ring (published by
    /// [`Self::publish_avail`]). Returns its id (the head index).
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
        let total = readable.len() + writable.len();
        let n = u16::try_from(total).map_err(|_| DriverError::QueueFull)?;
        let head = self.place(mem, n, |i, next| {
            let (seg, w) = Self::nth(readable, writable, usize::from(i));
            Self::desc(seg, w, i + 1 == n, next)
        })?;
        self.make_available(mem, head)?;
        Ok(head)
    }

    /// Adds a chain of `buffers` in the order given, each `(buffer,
    /// device_writable)`, one descriptor each, without checking that the
    /// readable ones come first: for tests of how a device answers a chain
    /// that breaks that rule. Returns its id.
    ///
    /// # Errors
    /// As for [`Self::add`].
    pub fn add_raw<M: GuestMemory>(
        &mut self,
        mem: &M,
        buffers: &[(Segment, bool)],
    ) -> Result<u16, DriverError> {
        let n = u16::try_from(buffers.len()).map_err(|_| DriverError::QueueFull)?;
        let head = self.place(mem, n, |i, next| {
            let (seg, w) = buffers
                .get(usize::from(i))
                .copied()
                .unwrap_or((Segment { addr: 0, len: 0 }, false));
            Self::desc(seg, w, i + 1 == n, next)
        })?;
        self.make_available(mem, head)?;
        Ok(head)
    }

    /// Adds a chain as one INDIRECT descriptor pointing at a table the
    /// driver writes at `table` (16 bytes per buffer, 16-aligned, memory the
    /// caller owns until the buffer is used).
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
        let total = readable.len() + writable.len();
        let n = u16::try_from(total).map_err(|_| DriverError::QueueFull)?;
        if n == 0 {
            return Err(DriverError::EmptyChain);
        }
        for i in 0..n {
            let (seg, w) = Self::nth(readable, writable, usize::from(i));
            let desc = VirtqDesc {
                addr: seg.addr.into(),
                len: seg.len.into(),
                flags: Self::flags(i + 1 == n, w).into(),
                next: (i + 1).into(),
            };
            mem.write_obj(table + u64::from(i) * DESC_SIZE, &desc)?;
        }
        let head = self.place(mem, 1, |_, next| VirtqDesc {
            addr: table.into(),
            len: (u32::from(n) * 16).into(),
            flags: DescFlags::INDIRECT.bits().into(),
            next: next.into(),
        })?;
        self.make_available(mem, head)?;
        Ok(head)
    }

    fn make_available<M: GuestMemory>(&mut self, mem: &M, head: u16) -> Result<(), DriverError> {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        mem.write(slot, &head.to_le_bytes())?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.outstanding += 1;
        Ok(())
    }

    /// Publishes the chains added since the last call (one release store of
    /// the available index) and says whether the device must be notified
    /// (virtio 1.4 §"Available Buffer Notification Suppression" driver side: `NO_NOTIFY` or `avail_event`).
    ///
    /// # Errors
    /// A memory error.
    pub fn publish_avail<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        let old = self.published_avail;
        let new = self.avail_idx;
        if old == new {
            return Ok(false);
        }
        mem.store_u16_release(self.avail + 2, new)?;
        self.published_avail = new;
        mem.fence();
        if self.event_idx {
            let avail_event = mem.load_u16_acquire(self.used + 4 + 8 * u64::from(self.size))?;
            Ok(vring_need_event(avail_event, new, old))
        } else {
            Ok(mem.load_u16_acquire(self.used)? & VIRTQ_USED_F_NO_NOTIFY == 0)
        }
    }

    /// Asks the device for used buffer notifications again: clears
    /// `NO_INTERRUPT`, or with `EVENT_IDX` sets `used_event` to the next used
    /// index. Returns `true` if used buffers are already waiting.
    ///
    /// # Errors
    /// A memory error.
    pub fn enable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        if self.event_idx {
            mem.store_u16_release(self.avail + 4 + 2 * u64::from(self.size), self.last_used)?;
        } else {
            mem.store_u16_release(self.avail, 0)?;
        }
        mem.fence();
        Ok(self.batch.is_some() || mem.load_u16_acquire(self.used + 2)? != self.last_used)
    }

    /// Asks the device not to send used buffer notifications (without
    /// `EVENT_IDX`; with it, `used_event` simply stops moving).
    ///
    /// # Errors
    /// A memory error.
    pub fn disable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<(), DriverError> {
        if !self.event_idx {
            mem.store_u16_release(self.avail, VIRTQ_AVAIL_F_NO_INTERRUPT)?;
        }
        Ok(())
    }

    /// Collects the next used buffer, freeing its descriptors. With
    /// `IN_ORDER`, expands the device's one-element-per-batch completions
    /// into one [`Used`] per buffer (skipped buffers report their full
    /// writable length, §"In-order use of descriptors").
    ///
    /// # Errors
    /// [`DriverError::BadUsedId`] if the device returned something that is
    /// not an outstanding buffer; a memory error.
    pub fn pop_used<M: GuestMemory>(&mut self, mem: &M) -> Result<Option<Used>, DriverError> {
        let (id, batch_len) = match self.batch {
            Some(b) => b,
            None => {
                let used_idx = mem.load_u16_acquire(self.used + 2)?;
                if used_idx == self.last_used {
                    return Ok(None);
                }
                let slot = self.used + 4 + 8 * u64::from(self.last_used % self.size);
                let elem = mem.read_obj::<VirtqUsedElem>(slot)?;
                let id = elem.id.get();
                let id16 = u16::try_from(id)
                    .ok()
                    .filter(|&i| i < self.size)
                    .ok_or(DriverError::BadUsedId(id))?;
                (id16, elem.len.get())
            }
        };
        if self.outstanding == 0 {
            return Err(DriverError::BadUsedId(id.into()));
        }
        let head = if self.in_order {
            self.in_order_head
        } else {
            id
        };
        let (count, last, writable) = self.chain_info(mem, head)?;
        let len = if head == id {
            self.batch = None;
            batch_len
        } else {
            self.batch = Some((id, batch_len));
            writable
        };
        self.last_used = self.last_used.wrapping_add(1);
        self.outstanding -= 1;
        if self.in_order {
            self.in_order_head = (head + count) % self.size;
        } else {
            // Link the chain in front of the free list.
            let mut tail = self.read_desc(mem, self.desc_addr(last))?;
            tail.next = self.free_head.into();
            mem.write_obj(self.desc_addr(last), &tail)?;
            self.free_head = head;
        }
        self.num_free = self.num_free.saturating_add(count).min(self.size);
        Ok(Some(Used { id: head, len }))
    }

    /// Walks our own chain at `head`: descriptors in the ring, the last one's
    /// index, total writable bytes. Bounded by the queue size.
    fn chain_info<M: GuestMemory>(
        &self,
        mem: &M,
        head: u16,
    ) -> Result<(u16, u16, u32), DriverError> {
        let mut index = head;
        let mut writable: u32 = 0;
        for count in 1..=self.size {
            let desc = self.read_desc(mem, self.desc_addr(index))?;
            let flags = DescFlags::from_bits_retain(desc.flags.get());
            if flags.contains(DescFlags::INDIRECT) {
                writable = self.table_writable(mem, desc.addr.get(), desc.len.get() / 16)?;
            } else if flags.contains(DescFlags::WRITE) {
                writable = writable.saturating_add(desc.len.get());
            }
            if !flags.contains(DescFlags::NEXT) {
                return Ok((count, index, writable));
            }
            index = desc.next.get() % self.size;
        }
        Err(DriverError::BadUsedId(head.into()))
    }

    fn table_writable<M: GuestMemory>(
        &self,
        mem: &M,
        table: u64,
        entries: u32,
    ) -> Result<u32, DriverError> {
        let mut writable: u32 = 0;
        for i in 0..entries {
            let desc = mem.read_obj::<VirtqDesc>(table + u64::from(i) * DESC_SIZE)?;
            if DescFlags::from_bits_retain(desc.flags.get()).contains(DescFlags::WRITE) {
                writable = writable.saturating_add(desc.len.get());
            }
        }
        Ok(writable)
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
    use crate::queue::{Chain, ConfigError, SplitQueue};

    const SIZE: u16 = 4;

    fn with_ring(
        features: Features,
        f: impl FnOnce(&Region, &mut SplitDriver, &mut SplitQueue<64>),
    ) {
        let mut buf = vec![0u64; 0x1000];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = SplitDriver::layout(0, SIZE);
        let mut drv = SplitDriver::new(&mem, cfg, features).unwrap();
        let mut dev = SplitQueue::<64>::new(&mem, cfg, features).unwrap();
        f(&mem, &mut drv, &mut dev);
    }

    fn seg(addr: u64, len: u32) -> Segment {
        Segment { addr, len }
    }

    #[test]
    fn driver_refuses_what_does_not_fit() {
        with_ring(Features::empty(), |mem, drv, _| {
            assert_eq!(drv.add(mem, &[], &[]), Err(DriverError::EmptyChain));
            let five = [seg(0x4000, 1); 5];
            assert_eq!(drv.add(mem, &five, &[]), Err(DriverError::QueueFull));
            drv.add(mem, &five[..3], &[]).unwrap();
            assert_eq!(drv.num_free(), 1);
            assert_eq!(drv.add(mem, &five[..2], &[]), Err(DriverError::QueueFull));
            // An indirect chain needs one ring descriptor whatever its length.
            drv.add_indirect(mem, 0x5000, &five, &[]).unwrap();
            assert_eq!(drv.num_free(), 0);
        });
        let mut buf = vec![0u64; 0x100];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = QueueConfig {
            size: 3,
            ..SplitDriver::layout(0, 4)
        };
        assert_eq!(
            SplitDriver::new(&mem, cfg, Features::empty()).unwrap_err(),
            DriverError::Config(ConfigError::SizeNotPowerOfTwo(3))
        );
    }

    // virtio 1.4 §"Available Buffer Notification Suppression" (driver
    // normative): without EVENT_IDX the driver MUST notify if flags is 0 and
    // SHOULD NOT if it is 1; with EVENT_IDX it notifies when avail idx
    // passes avail_event.
    #[test]
    #[cfg(feature = "event-idx")]
    fn kick_decision_follows_the_device() {
        with_ring(Features::empty(), |mem, drv, dev| {
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap());
            assert!(!drv.publish_avail(mem).unwrap(), "nothing new, no kick");
            dev.disable_notification(mem).unwrap();
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(!drv.publish_avail(mem).unwrap());
        });
        with_ring(Features::EVENT_IDX, |mem, drv, dev| {
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap());
            // The device has not asked again: no more kicks.
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(!drv.publish_avail(mem).unwrap());
            let _: Chain<1> = dev.take(mem).unwrap().unwrap();
            let _: Chain<1> = dev.take(mem).unwrap().unwrap();
            assert!(!dev.enable_notification(mem).unwrap());
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            assert!(drv.publish_avail(mem).unwrap());
        });
    }

    // The device is untrusted from the driver's side too: a used id outside
    // the ring is an error, not a panic.
    #[test]
    fn driver_rejects_bogus_used_ids() {
        with_ring(Features::empty(), |mem, drv, _| {
            drv.add(mem, &[seg(0x4000, 1)], &[]).unwrap();
            drv.publish_avail(mem).unwrap();
            let used = SplitDriver::layout(0, SIZE).device_addr;
            mem.write_obj(
                used + 4,
                &VirtqUsedElem {
                    id: 9.into(),
                    len: 0.into(),
                },
            )
            .unwrap();
            mem.store_u16_release(used + 2, 1).unwrap();
            assert_eq!(drv.pop_used(mem), Err(DriverError::BadUsedId(9)));
        });
    }

    // virtio 1.4 §"In-order use of descriptors": one used entry stands for
    // the whole batch; the driver expands it, the skipped buffers counting
    // as completely written.
    #[test]
    fn in_order_driver_expands_batches() {
        with_ring(Features::IN_ORDER, |mem, drv, dev| {
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
            // Descriptors are handed out in ring order, wrapping.
            assert_eq!(drv.add(mem, &[seg(0x4000, 1)], &[]), Ok(3));
            assert_eq!(drv.add(mem, &[seg(0x4000, 1); 2], &[]), Ok(0));
        });
    }
}
