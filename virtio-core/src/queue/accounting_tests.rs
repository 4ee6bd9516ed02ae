//! What both engines accept as a completion, and what a failed operation
//! leaves behind (virtio 1.4 §"The Virtqueue Used Ring", §"Packed
//! Virtqueues"). Driven by our driver side; each test runs on both formats.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::cell::Cell;
use std::vec;

use zerocopy::IntoBytes;

use super::*;
use crate::driver::{PackedDriver, SplitDriver, Used};
use crate::memory::{MemoryError, Region};

const SIZE: u16 = 8;
const RING: u64 = 0x1000;
const DATA: u64 = 0x4000;
const MEM: usize = 0x10000;

/// Memory whose stores and reads can be made to fail, to see that a failed
/// operation changes nothing.
struct Flaky<'a> {
    inner: Region<'a>,
    fail_stores: Cell<bool>,
    fail_reads_from: Cell<Option<(u64, u64)>>,
}

impl GuestMemory for Flaky<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if let Some((start, len)) = self.fail_reads_from.get()
            && addr >= start
            && addr < start + len
        {
            return Err(MemoryError::OutOfBounds {
                addr,
                len: buf.len() as u64,
            });
        }
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        if self.fail_stores.get() {
            return Err(MemoryError::OutOfBounds {
                addr,
                len: buf.len() as u64,
            });
        }
        self.inner.write(addr, buf)
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.inner.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        if self.fail_stores.get() {
            return Err(MemoryError::OutOfBounds { addr, len: 2 });
        }
        self.inner.store_u16_release(addr, value)
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.inner.check_range(addr, len)
    }
}

enum Drv {
    Split(SplitDriver),
    Packed(PackedDriver<16>),
}

impl Drv {
    fn add(&mut self, mem: &Flaky<'_>, w: &[Segment]) -> u16 {
        let id = match self {
            Self::Split(d) => d.add(&mem.inner, &[], w).unwrap(),
            Self::Packed(d) => d.add(&mem.inner, &[], w).unwrap(),
        };
        match self {
            Self::Split(d) => d.publish_avail(&mem.inner).unwrap(),
            Self::Packed(d) => d.publish_avail(&mem.inner).unwrap(),
        };
        id
    }
    fn used(&mut self, mem: &Flaky<'_>) -> Option<Used> {
        match self {
            Self::Split(d) => d.pop_used(&mem.inner).unwrap(),
            Self::Packed(d) => d.pop_used(&mem.inner).unwrap(),
        }
    }
}

/// The ring formats this build has engines for (`true`: packed).
const RING_FORMATS: &[bool] = if cfg!(feature = "packed") {
    &[false, true]
} else {
    &[false]
};

fn both(f: impl Fn(&Flaky<'_>, &mut Drv, &mut Queue<16>)) {
    for &packed in RING_FORMATS {
        let mut buf = vec![0u64; MEM / 8];
        let mem = Flaky {
            inner: Region::new(0, buf.as_mut_bytes()).unwrap(),
            fail_stores: Cell::new(false),
            fail_reads_from: Cell::new(None),
        };
        let mut features = Features::empty();
        features.set(Features::RING_PACKED, packed);
        let (mut drv, cfg) = if packed {
            let cfg = PackedDriver::<16>::layout(RING, SIZE);
            (
                Drv::Packed(PackedDriver::new(&mem.inner, cfg, features).unwrap()),
                cfg,
            )
        } else {
            let cfg = SplitDriver::layout(RING, SIZE);
            (
                Drv::Split(SplitDriver::new(&mem.inner, cfg, features).unwrap()),
                cfg,
            )
        };
        let mut q = Queue::<16>::new(&mem, cfg, features).unwrap();
        f(&mem, &mut drv, &mut q);
    }
}

fn seg(i: u64, len: u32) -> Segment {
    Segment {
        addr: DATA + i * 0x100,
        len,
    }
}

// A completion for a head that is not in flight — already completed, or
// never handed out — is refused with a typed error and writes nothing
// (virtio 1.4 §"The Virtqueue Used Ring": the device returns each buffer it
// took, once).
// spec: packed.virtqueues.2
#[test]
fn a_head_is_accepted_once_and_only_while_in_flight() {
    both(|mem, drv, q| {
        let a = drv.add(mem, &[seg(0, 8)]);
        let b = drv.add(mem, &[seg(1, 8)]);
        let mut ca = Chain::<4>::new();
        let mut cb = Chain::<4>::new();
        assert!(q.pop(mem, &mut ca).unwrap());
        assert!(q.pop(mem, &mut cb).unwrap());
        assert_eq!(q.in_flight(), 2);
        q.push_used(mem, ca.head(), 1).unwrap();
        assert_eq!(
            q.push_used(mem, ca.head(), 1),
            Err(QueueError::NotInFlight { id: a })
        );
        // The refused one did not eat B's completion.
        q.push_used(mem, cb.head(), 2).unwrap();
        assert_eq!(q.in_flight(), 0);
        // A head never popped (forged in-crate; a device cannot make one).
        let forged = Head {
            id: 5,
            descs: 1,
            writable: 8,
            valid: true,
        };
        assert!(matches!(
            q.push_used(mem, forged, 0),
            Err(QueueError::NotInFlight { id: 5 })
        ));
        q.publish_used(mem).unwrap();
        assert_eq!(drv.used(mem), Some(Used { id: a, len: 1 }));
        assert_eq!(drv.used(mem), Some(Used { id: b, len: 2 }));
        assert_eq!(drv.used(mem), None);
    });
}

// A used write that fails changes no state: the same completion retried
// succeeds and the driver sees it once.
#[test]
fn a_failed_used_write_can_be_retried() {
    both(|mem, drv, q| {
        let a = drv.add(mem, &[seg(0, 8)]);
        let mut c = Chain::<4>::new();
        assert!(q.pop(mem, &mut c).unwrap());
        mem.fail_stores.set(true);
        assert!(matches!(
            q.push_used(mem, c.head(), 3),
            Err(QueueError::Ring { .. })
        ));
        mem.fail_stores.set(false);
        assert_eq!(q.in_flight(), 1);
        q.push_used(mem, c.head(), 3).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(drv.used(mem), Some(Used { id: a, len: 3 }));
        assert_eq!(drv.used(mem), None);
    });
}

// The used length is what the device wrote into the buffer: a device
// claiming more than the chain's writable bytes is clamped to them
// (virtio 1.4 §"The Virtqueue Used Ring": len is the bytes written).
#[test]
fn a_used_length_above_the_writable_length_is_clamped() {
    both(|mem, drv, q| {
        let a = drv.add(mem, &[seg(0, 8)]);
        let mut c = Chain::<4>::new();
        assert!(q.pop(mem, &mut c).unwrap());
        q.push_used(mem, c.head(), u32::MAX).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(drv.used(mem), Some(Used { id: a, len: 8 }));
    });
}

// A ring error in pop (the descriptor ring unreadable) consumes nothing:
// once memory is back, the same chain pops.
#[test]
fn a_ring_error_in_pop_consumes_nothing() {
    both(|mem, drv, q| {
        let a = drv.add(mem, &[seg(0, 8)]);
        let mut c = Chain::<4>::new();
        mem.fail_reads_from.set(Some((RING, 16 * u64::from(SIZE))));
        let e = q.pop(mem, &mut c).unwrap_err();
        assert!(e.needs_reset(), "{e}");
        assert_eq!(q.in_flight(), 0);
        mem.fail_reads_from.set(None);
        assert!(q.pop(mem, &mut c).unwrap());
        assert_eq!(c.id(), a);
    });
}

// Split ring: a driver that offers a head the device still holds has
// corrupted the ring (virtio 1.4 §"The Virtqueue Descriptor Table": the
// descriptors of an available buffer belong to the device until used);
// the error needs a reset and nothing is consumed.
#[test]
fn a_head_offered_while_in_flight_is_a_ring_error() {
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let cfg = SplitDriver::layout(RING, SIZE);
    let mut drv = SplitDriver::new(&mem, cfg, Features::empty()).unwrap();
    let mut q = SplitQueue::<16>::new(&mem, cfg, Features::empty()).unwrap();
    drv.add(&mem, &[], &[seg(0, 8)]).unwrap();
    drv.publish_avail(&mem).unwrap();
    let mut c = Chain::<4>::new();
    assert!(q.pop(&mem, &mut c).unwrap());
    // The same head again, in the next available entry.
    let idx = mem.load_u16_acquire(cfg.driver_addr + 2).unwrap();
    mem.write(
        cfg.driver_addr + 4 + 2 * u64::from(idx % SIZE),
        &c.id().to_le_bytes(),
    )
    .unwrap();
    mem.store_u16_release(cfg.driver_addr + 2, idx + 1).unwrap();
    let e = q.pop(&mem, &mut c).unwrap_err();
    assert_eq!(e, QueueError::HeadInFlight { slot: 0 });
    assert!(e.needs_reset());
    assert_eq!(q.next_avail(), 1);
}

// The in-flight table is sized by S: a queue larger than it is refused
// when it is built, never overrun.
#[test]
fn a_queue_larger_than_the_in_flight_table_is_refused() {
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    for &packed in RING_FORMATS {
        let mut features = Features::empty();
        features.set(Features::RING_PACKED, packed);
        let cfg = SplitDriver::layout(RING, 32);
        assert!(matches!(
            Queue::<16>::new(&mem, cfg, features),
            Err(ConfigError::SizeAboveCapacity {
                size: 32,
                capacity: 16
            })
        ));
    }
}

fn salvage_of(e: QueueError) -> (ChainErrorKind, Salvage) {
    match e {
        QueueError::Chain(c) => (c.kind(), c.salvage()),
        other => panic!("expected a chain error, got {other:?}"),
    }
}

// A malformed chain is still walked to its end, so the device can answer
// it: its first writable descriptor and its writable tail are located
// (both inside memory), whatever broke the chain in between.
#[test]
fn a_malformed_chain_keeps_its_status_areas() {
    // Too many segments for the chain (N = 2), status last.
    both(|mem, drv, q| {
        drv.add(mem, &[seg(0, 8), seg(1, 8), seg(2, 1)]);
        let (kind, s) = salvage_of(q.pop(mem, &mut Chain::<2>::new()).unwrap_err());
        assert_eq!(kind, ChainErrorKind::TooManySegments { capacity: 2 });
        assert_eq!(s.first_writable, Some(seg(0, 8)));
        assert_eq!(s.tail, Some(seg(2, 1)));
    });
    // A data buffer outside memory: the first writable is that one, so it
    // is not usable; the tail is.
    both(|mem, drv, q| {
        let outside = Segment {
            addr: MEM as u64 + 0x1000,
            len: 8,
        };
        drv.add(mem, &[outside, seg(2, 1)]);
        let (kind, s) = salvage_of(q.pop(mem, &mut Chain::<4>::new()).unwrap_err());
        assert!(matches!(kind, ChainErrorKind::SegmentOutOfMemory { .. }));
        assert_eq!(s.first_writable, None);
        assert_eq!(s.tail, Some(seg(2, 1)));
    });
    // Split: readable after writable, status last.
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let cfg = SplitDriver::layout(RING, SIZE);
    let mut drv = SplitDriver::new(&mem, cfg, Features::empty()).unwrap();
    let mut q = SplitQueue::<16>::new(&mem, cfg, Features::empty()).unwrap();
    drv.add_raw(
        &mem,
        &[
            (seg(0, 16), false),
            (seg(1, 8), true),
            (seg(2, 4), false),
            (seg(3, 1), true),
        ],
    )
    .unwrap();
    drv.publish_avail(&mem).unwrap();
    let (kind, s) = salvage_of(q.pop(&mem, &mut Chain::<8>::new()).unwrap_err());
    assert_eq!(kind, ChainErrorKind::ReadableAfterWritable);
    assert_eq!(s.first_writable, Some(seg(1, 8)));
    assert_eq!(s.tail, Some(seg(3, 1)));
    // A last descriptor that is readable: no tail.
    drv.add_raw(&mem, &[(seg(0, 16), true), (seg(2, 4), false)])
        .unwrap();
    drv.publish_avail(&mem).unwrap();
    let (_, s) = salvage_of(q.pop(&mem, &mut Chain::<8>::new()).unwrap_err());
    assert_eq!(s.tail, None);
}

// A chain whose end cannot be found (a loop) has no tail: nothing is
// written past what the walk could follow.
#[test]
fn a_looping_chain_has_no_tail() {
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let cfg = SplitDriver::layout(RING, SIZE);
    let mut q = SplitQueue::<16>::new(&mem, cfg, Features::empty()).unwrap();
    let d = crate::spec::VirtqDesc {
        addr: DATA.into(),
        len: 1.into(),
        flags: 3.into(), // NEXT | WRITE
        next: 0.into(),
    };
    mem.write_obj(cfg.desc_addr, &d).unwrap();
    mem.store_u16_release(cfg.driver_addr + 2, 1).unwrap();
    let (kind, s) = salvage_of(q.pop(&mem, &mut Chain::<8>::new()).unwrap_err());
    assert_eq!(kind, ChainErrorKind::Loop);
    assert_eq!(s.tail, None);
    assert_eq!(s.first_writable, Some(Segment { addr: DATA, len: 1 }));
}
