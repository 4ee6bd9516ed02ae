//! Tests of the device-side packed ring. Each test of a MUST names its
//! clause; the names all contain `packed`.
#![allow(clippy::arithmetic_side_effects)]

use std::vec;
use std::vec::Vec;

use zerocopy::IntoBytes;

use super::*;
use crate::memory::Region;
#[cfg(feature = "driver")]
use crate::queue::Segment;
use crate::queue::TakeChain;
use crate::queue::{AccessError, Chain, NotificationData, Queue};
use crate::spec::PvirtqDesc;

const Q: u16 = 5;
const DESC: u64 = 0x1000;
const DRV_EVT: u64 = 0x2000;
const DEV_EVT: u64 = 0x2004;
const DATA: u64 = 0x4000;
const MEM: usize = 0x10000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
#[cfg(feature = "indirect")]
const INDIRECT: u16 = 4;
const AVAIL: u16 = 1 << 7;
const USED: u16 = 1 << 15;

fn config() -> QueueConfig {
    QueueConfig {
        size: Q,
        desc_addr: DESC,
        driver_addr: DRV_EVT,
        device_addr: DEV_EVT,
    }
}

fn with_queue(features: Features, f: impl FnOnce(&Region, &mut PackedQueue<64>)) {
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let mut q = PackedQueue::<64>::new(&mem, config(), features).unwrap();
    f(&mem, &mut q);
}

/// Writes an available descriptor at `slot` for the driver lap `wrap`.
fn put(mem: &Region, slot: u16, addr: u64, len: u32, id: u16, flags: u16, wrap: bool) {
    let avail = if wrap { AVAIL } else { USED };
    let d = PvirtqDesc {
        addr: addr.into(),
        len: len.into(),
        id: id.into(),
        flags: (flags | avail).into(),
    };
    mem.write_obj(DESC + 16 * u64::from(slot), &d).unwrap();
}

/// An indirect table entry.
#[cfg(feature = "indirect")]
fn put_table(mem: &Region, table: u64, i: u16, addr: u64, len: u32, flags: u16) {
    let d = PvirtqDesc {
        addr: addr.into(),
        len: len.into(),
        id: 0.into(),
        flags: flags.into(),
    };
    mem.write_obj(table + 16 * u64::from(i), &d).unwrap();
}

fn desc_at(mem: &Region, slot: u16) -> PvirtqDesc {
    mem.read_obj(DESC + 16 * u64::from(slot)).unwrap()
}

fn chain_err(e: QueueError) -> ChainError {
    match e {
        QueueError::Chain(c) => c,
        other => panic!("expected a chain error, got {other:?}"),
    }
}

fn pop4(mem: &Region, q: &mut PackedQueue<64>) -> Result<Option<Chain<4>>, QueueError> {
    q.take(mem)
}

// virtio 1.4 §"Structure Size and Alignment": the descriptor ring is
// 16-aligned, the event suppression structures 4-aligned, and the queue size
// need not be a power of 2 (at most 2^15).
#[test]
fn packed_config_takes_any_size_and_checks_alignment() {
    let mut buf = vec![0u64; MEM / 8];
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let f = Features::RING_PACKED;
    let with = |c: QueueConfig| PackedQueue::<64>::new(&mem, c, f).map(|q| q.size());
    assert_eq!(
        with(QueueConfig {
            size: 3,
            ..config()
        }),
        Ok(3)
    );
    assert_eq!(
        with(QueueConfig {
            size: 0,
            ..config()
        }),
        Err(ConfigError::ZeroSize)
    );
    assert_eq!(
        with(QueueConfig {
            size: 32769,
            ..config()
        }),
        Err(ConfigError::SizeTooLarge(32769))
    );
    for (c, area) in [
        (
            QueueConfig {
                desc_addr: DESC + 8,
                ..config()
            },
            RingArea::Descriptors,
        ),
        (
            QueueConfig {
                driver_addr: DRV_EVT + 2,
                ..config()
            },
            RingArea::Driver,
        ),
        (
            QueueConfig {
                device_addr: DEV_EVT + 1,
                ..config()
            },
            RingArea::Device,
        ),
    ] {
        assert!(matches!(with(c), Err(ConfigError::Misaligned { area: a, .. }) if a == area));
    }
    assert!(matches!(
        with(QueueConfig {
            device_addr: MEM as u64,
            ..config()
        }),
        Err(ConfigError::OutOfMemory {
            area: RingArea::Device,
            ..
        })
    ));
    // The Queue enum picks the packed engine from the feature bit.
    let q = Queue::<64>::new(
        &mem,
        QueueConfig {
            size: 3,
            ..config()
        },
        f,
    )
    .unwrap();
    assert!(q.is_packed());
    assert_eq!(q.size(), 3);
}

// virtio 1.4 §"The Virtqueue Descriptor Table" (packed, device normative):
// the device MUST NOT use a descriptor unless it observes the AVAIL bit
// changed — the zeroed ring, and descriptors of the wrong lap, are not
// available.
// spec: packed.descriptor-table.2
#[test]
fn packed_descriptor_is_used_only_once_avail_bit_matches_wrap() {
    with_queue(Features::RING_PACKED, |mem, q| {
        assert_eq!(pop4(mem, q), Ok(None));
        assert!(!q.has_available(mem).unwrap());
        // AVAIL = USED = 1: a used descriptor, not available.
        mem.write_obj(
            DESC,
            &PvirtqDesc {
                addr: DATA.into(),
                len: 4.into(),
                id: 0.into(),
                flags: (AVAIL | USED).into(),
            },
        )
        .unwrap();
        assert_eq!(pop4(mem, q), Ok(None));
        // Made available for lap 0 while the device expects lap 1.
        put(mem, 0, DATA, 4, 0, 0, false);
        assert_eq!(pop4(mem, q), Ok(None));
        put(mem, 0, DATA, 4, 0, 0, true);
        assert!(q.has_available(mem).unwrap());
        assert!(pop4(mem, q).unwrap().is_some());
    });
}

// virtio 1.4 §"Next Flag: Descriptor Chaining": the Buffer ID is in the last
// descriptor of the list; §"Scatter-Gather Support" (device normative): the
// device MUST use the descriptors of a list in the order they were made
// available.
// spec: packed.scatter-gather-support.1, packed.virtqueues.1
#[test]
fn packed_chain_takes_id_from_last_descriptor_and_keeps_order() {
    with_queue(Features::RING_PACKED, |mem, q| {
        mem.write(DATA, &[1, 2, 3]).unwrap();
        mem.write(DATA + 0x100, &[4, 5]).unwrap();
        put(mem, 0, DATA, 3, 77, NEXT, true);
        put(mem, 1, DATA + 0x100, 2, 77, NEXT, true);
        put(mem, 2, DATA + 0x200, 6, 3, WRITE, true);
        let chain = pop4(mem, q).unwrap().unwrap();
        assert_eq!(chain.id(), 3);
        assert_eq!(chain.head().descs(), 3);
        assert_eq!((chain.readable_len(), chain.writable_len()), (5, 6));
        assert_eq!(chain.reader(mem).read_obj::<[u8; 5]>(), Ok([1, 2, 3, 4, 5]));
        assert_eq!(
            q.next_avail(),
            RingPosition {
                slot: 3,
                wrap: true
            }
        );
    });
}

// virtio 1.4 §"Write Flag" and §"Element Address and Length": a used
// descriptor's len is the bytes written and WRITE says whether any were;
// AVAIL and USED both equal the device wrap counter (§"Driver and Device
// Ring Wrap Counters"); the device then skips the list's length.
#[test]
fn packed_used_descriptor_has_id_len_write_and_both_wrap_bits() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 8, 9, NEXT, true);
        put(mem, 1, DATA + 0x100, 8, 9, WRITE, true);
        put(mem, 2, DATA + 0x200, 8, 4, 0, true);
        let a = pop4(mem, q).unwrap().unwrap();
        let b = pop4(mem, q).unwrap().unwrap();
        let mut w = a.writer(mem);
        w.write_all(&[0xee; 5]).unwrap();
        q.push_used(mem, a.head(), w.bytes_written()).unwrap();
        q.push_used(mem, b.head(), 0).unwrap();
        assert!(q.publish_used(mem).unwrap());
        let u = desc_at(mem, 0);
        assert_eq!((u.id.get(), u.len.get()), (9, 5));
        assert_eq!(u.flags.get(), AVAIL | USED | WRITE);
        // The second used descriptor lands after the two slots of the first.
        let u = desc_at(mem, 2);
        assert_eq!(u.id.get(), 4);
        assert_eq!(u.flags.get(), AVAIL | USED, "nothing written: no WRITE");
        // The device never wrote the readable buffer or the slot it skipped.
        assert_eq!(desc_at(mem, 1).flags.get(), AVAIL | WRITE);
        assert_eq!(
            q.next_used(),
            RingPosition {
                slot: 3,
                wrap: true
            }
        );
    });
}

// virtio 1.4 §"Packed Virtqueues" (device normative): the device MUST start
// writing device descriptors into the ring in the order in which they
// complete — out of order relative to how they were made available.
// spec: packed.virtqueues.2
#[test]
fn packed_out_of_order_completion_writes_in_completion_order() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 8, 10, NEXT, true);
        put(mem, 1, DATA + 0x100, 8, 10, WRITE, true);
        put(mem, 2, DATA + 0x200, 8, 11, WRITE, true);
        let a = pop4(mem, q).unwrap().unwrap();
        let b = pop4(mem, q).unwrap().unwrap();
        q.push_used(mem, b.head(), 1).unwrap();
        q.publish_used(mem).unwrap();
        let u = desc_at(mem, 0);
        assert_eq!((u.id.get(), u.len.get()), (11, 1));
        q.push_used(mem, a.head(), 2).unwrap();
        q.publish_used(mem).unwrap();
        // b took one slot, so a's used descriptor goes to slot 1.
        let u = desc_at(mem, 1);
        assert_eq!((u.id.get(), u.len.get()), (10, 2));
        assert_eq!(u.flags.get(), AVAIL | USED | WRITE);
    });
}

// virtio 1.4 §"Multi-buffer requests": the first used descriptor is marked
// used after the rest, so the driver never sees part of a batch.
#[test]
fn packed_batch_is_invisible_until_publish() {
    with_queue(Features::RING_PACKED, |mem, q| {
        for slot in 0..3 {
            put(mem, slot, DATA, 8, slot, WRITE, true);
        }
        let chains: Vec<Chain<1>> = (0..3).map(|_| q.take(mem).unwrap().unwrap()).collect();
        for c in &chains {
            q.push_used(mem, c.head(), 8).unwrap();
        }
        // id and len are written, but the first flags still say available.
        assert_eq!(desc_at(mem, 0).flags.get(), AVAIL | WRITE);
        assert_eq!(desc_at(mem, 0).id.get(), 0);
        // The later ones are whole (one store of len, id and flags): the
        // driver polls only the slot after the last one it processed
        // (§"Polling of available and used descriptors"), so it cannot
        // reach them before the first.
        for slot in 1..3 {
            let u = desc_at(mem, slot);
            assert_eq!((u.id.get(), u.len.get()), (slot, 8));
            assert_eq!(u.flags.get(), AVAIL | USED | WRITE);
            assert_eq!(u.addr.get(), DATA, "the buffer address is left alone");
        }
        assert!(q.publish_used(mem).unwrap());
        assert_eq!(desc_at(mem, 0).flags.get(), AVAIL | USED | WRITE);
        assert!(
            !q.publish_used(mem).unwrap(),
            "nothing new, no notification"
        );
    });
}

// virtio 1.4 §"In-order use of descriptors" (packed): with IN_ORDER the
// device writes one used descriptor per batch, with the id of the last
// buffer, at the batch's first slot, and skips the batch's size; a partly
// written buffer closes the batch.
#[test]
fn packed_in_order_writes_one_used_descriptor_per_batch() {
    with_queue(Features::RING_PACKED | Features::IN_ORDER, |mem, q| {
        put(mem, 0, DATA, 8, 0, WRITE, true);
        put(mem, 1, DATA + 0x100, 4, 1, NEXT | WRITE, true);
        put(mem, 2, DATA + 0x200, 4, 1, WRITE, true);
        put(mem, 3, DATA + 0x300, 8, 2, WRITE, true);
        put(mem, 4, DATA + 0x400, 8, 3, WRITE, true);
        let c: Vec<Chain<2>> = (0..4).map(|_| q.take(mem).unwrap().unwrap()).collect();
        q.push_used(mem, c[0].head(), 8).unwrap();
        q.push_used(mem, c[1].head(), 8).unwrap();
        q.push_used(mem, c[2].head(), 3).unwrap(); // partial: closes the run
        q.push_used(mem, c[3].head(), 8).unwrap();
        q.publish_used(mem).unwrap();
        let u = desc_at(mem, 0);
        assert_eq!((u.id.get(), u.len.get()), (2, 3));
        assert_eq!(u.flags.get() & (AVAIL | USED), AVAIL | USED);
        // The next batch starts after the 4 slots of the first.
        let u = desc_at(mem, 4);
        assert_eq!((u.id.get(), u.len.get()), (3, 8));
        assert_eq!(u.flags.get() & (AVAIL | USED), AVAIL | USED);
        // The slots in between were not touched.
        assert_eq!(desc_at(mem, 1).flags.get(), AVAIL | NEXT | WRITE);
        assert_eq!(
            q.next_used(),
            RingPosition {
                slot: 0,
                wrap: false
            }
        );
    });
}

// virtio 1.4 §"Indirect Flag: Scatter-Gather Support": the table holds
// packed descriptors of which only WRITE is valid (NEXT and id are ignored),
// and WRITE on the INDIRECT descriptor itself is ignored.
#[test]
#[cfg(feature = "indirect")]
fn packed_indirect_table_is_walked_with_only_write_honoured() {
    with_queue(Features::RING_PACKED | Features::INDIRECT_DESC, |mem, q| {
        let table = DATA + 0x1000;
        mem.write(DATA, &[7; 4]).unwrap();
        put_table(mem, table, 0, DATA, 4, NEXT);
        put_table(mem, table, 1, DATA + 0x100, 6, WRITE);
        put_table(mem, table, 2, DATA + 0x200, 2, WRITE | NEXT);
        put(mem, 0, table, 48, 21, INDIRECT | WRITE, true);
        let chain = pop4(mem, q).unwrap().unwrap();
        assert_eq!(chain.id(), 21);
        assert_eq!(chain.head().descs(), 1);
        assert_eq!((chain.readable_len(), chain.writable_len()), (4, 8));
        assert_eq!(chain.reader(mem).read_obj::<[u8; 4]>(), Ok([7; 4]));
        q.push_used(mem, chain.head(), 8).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(
            q.next_used(),
            RingPosition {
                slot: 1,
                wrap: true
            }
        );
    });
}

// virtio 1.4 §"Indirect Descriptors" (packed, driver normative): the driver
// MUST NOT write direct descriptors with INDIRECT in a list linked by NEXT —
// neither as its head nor further down. The chain is still returned whole.
#[test]
#[cfg(feature = "indirect")]
fn packed_rejects_indirect_inside_a_next_list() {
    with_queue(Features::RING_PACKED | Features::INDIRECT_DESC, |mem, q| {
        let table = DATA + 0x1000;
        put_table(mem, table, 0, DATA, 4, 0);
        put(mem, 0, table, 16, 1, INDIRECT | NEXT, true);
        put(mem, 1, DATA, 4, 1, 0, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::IndirectWithNext);
        assert_eq!((e.head().id(), e.head().descs()), (1, 2));
        put(mem, 2, DATA, 4, 2, NEXT, true);
        put(mem, 3, table, 16, 2, INDIRECT, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::IndirectWithNext);
        assert_eq!((e.head().id(), e.head().descs()), (2, 2));
    });
}

// virtio 1.4 §"Indirect Descriptors" (packed, driver normative): the driver
// MUST NOT set the INDIRECT flag unless VIRTIO_F_INDIRECT_DESC was
// negotiated, nor any flag but WRITE inside a table; a table must hold
// whole descriptors and be in memory.
#[test]
#[cfg(feature = "indirect")]
fn packed_rejects_bad_indirect_tables() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA + 0x1000, 16, 1, INDIRECT, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::IndirectNotNegotiated);
    });
    with_queue(Features::RING_PACKED | Features::INDIRECT_DESC, |mem, q| {
        let table = DATA + 0x1000;
        put_table(mem, table, 0, DATA, 4, INDIRECT);
        let cases = [
            (table, 16, ChainErrorKind::NestedIndirect),
            (table, 0, ChainErrorKind::IndirectTableLength { len: 0 }),
            (table, 20, ChainErrorKind::IndirectTableLength { len: 20 }),
            (
                MEM as u64 - 16,
                32,
                ChainErrorKind::IndirectTableOutOfMemory {
                    addr: MEM as u64 - 16,
                    len: 32,
                },
            ),
            // More entries than the queue size (§"Scatter-Gather Support":
            // no list longer than the Queue Size).
            (table, 16 * 6, ChainErrorKind::LongerThanQueue { size: Q }),
        ];
        for (slot, (addr, len, kind)) in cases.into_iter().enumerate() {
            let slot = slot as u16;
            put(mem, slot, addr, len, 40 + slot, INDIRECT, true);
            let e = chain_err(pop4(mem, q).unwrap_err());
            assert_eq!(e.kind(), kind);
            assert_eq!(e.head().id(), 40 + slot);
            q.push_used(mem, e.head(), 0).unwrap();
        }
        q.publish_used(mem).unwrap();
    });
}

// virtio 1.4 §"Scatter-Gather Support" (packed, driver normative): the
// driver MUST place device-writable elements after device-readable ones.
// The malformed chain is skipped whole and the queue goes on.
#[test]
fn packed_rejects_readable_after_writable_and_continues() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 4, 5, NEXT | WRITE, true);
        put(mem, 1, DATA + 0x100, 4, 5, NEXT, true);
        put(mem, 2, DATA + 0x200, 4, 6, 0, true);
        put(mem, 3, DATA + 0x300, 4, 8, WRITE, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::ReadableAfterWritable);
        // The walk went on to the list's end for its id and length.
        assert_eq!((e.head().id(), e.head().descs()), (6, 3));
        q.push_used(mem, e.head(), 0).unwrap();
        let next = pop4(mem, q).unwrap().unwrap();
        assert_eq!(next.id(), 8);
        q.push_used(mem, next.head(), 4).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(desc_at(mem, 0).id.get(), 6);
        assert_eq!(desc_at(mem, 0).flags.get(), AVAIL | USED);
        assert_eq!(desc_at(mem, 3).id.get(), 8);
    });
}

// The device never touches memory outside what the driver shares: a buffer
// outside guest memory, or one that makes the chain over 2^32 bytes
// (§"The Virtqueue Descriptor Table": no chain longer than 2^32 bytes),
// fails the chain.
#[test]
fn packed_rejects_segments_outside_memory_and_total_overflow() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, MEM as u64 - 2, 4, 1, 0, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(
            e.kind(),
            ChainErrorKind::SegmentOutOfMemory {
                addr: MEM as u64 - 2,
                len: 4
            }
        );
        put(mem, 1, u64::MAX, 2, 2, 0, true);
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert!(matches!(
            e.kind(),
            ChainErrorKind::SegmentOutOfMemory { .. }
        ));
    });
    // A memory that claims everything is there, to reach the length check.
    struct Everything<'a>(&'a Region<'a>);
    impl GuestMemory for Everything<'_> {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), MemoryError> {
            self.0.read(a, b)
        }
        fn write(&self, a: u64, b: &[u8]) -> Result<(), MemoryError> {
            self.0.write(a, b)
        }
        fn load_u16_acquire(&self, a: u64) -> Result<u16, MemoryError> {
            self.0.load_u16_acquire(a)
        }
        fn store_u16_release(&self, a: u64, v: u16) -> Result<(), MemoryError> {
            self.0.store_u16_release(a, v)
        }
        fn check_range(&self, _: u64, _: u64) -> Result<(), MemoryError> {
            Ok(())
        }
    }
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, u32::MAX, 1, NEXT, true);
        put(mem, 1, DATA, 2, 1, 0, true);
        let e = chain_err(q.take::<_, 4>(&Everything(mem)).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::TotalLengthOverflow);
    });
}

// virtio 1.4 §"Scatter-Gather Support" (packed, device normative): the
// device MAY limit the number of buffers in a list; a list over the
// device's `Chain<N>` capacity is an error with the whole list skipped.
// spec: packed.scatter-gather-support.2
#[test]
fn packed_rejects_chain_longer_than_capacity_and_continues() {
    with_queue(Features::RING_PACKED, |mem, q| {
        for slot in 0..3 {
            put(mem, slot, DATA, 4, 12, NEXT, true);
        }
        put(mem, 3, DATA, 4, 13, 0, true);
        put(mem, 4, DATA, 4, 14, 0, true);
        let e = chain_err(q.take::<_, 2>(mem).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::TooManySegments { capacity: 2 });
        assert_eq!((e.head().id(), e.head().descs()), (13, 4));
        q.push_used(mem, e.head(), 0).unwrap();
        let next: Chain<2> = q.take(mem).unwrap().unwrap();
        assert_eq!(next.id(), 14);
    });
}

// virtio 1.4 §"Scatter-Gather Support" (packed, driver normative): the
// driver MUST NOT make the first descriptor of a list available before the
// rest. A list running into a descriptor that is not available ends there,
// as an error the device can complete; the device never uses that slot.
#[test]
fn packed_rejects_descriptor_not_available_mid_chain() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 4, 30, NEXT, true);
        put(mem, 1, DATA, 4, 31, NEXT, true);
        // Slot 2 is still zero: not available.
        let e = chain_err(pop4(mem, q).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::NotAvailableMidChain { slot: 2 });
        assert_eq!((e.head().id(), e.head().descs()), (31, 2));
        q.push_used(mem, e.head(), 0).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(pop4(mem, q), Ok(None));
        assert_eq!(desc_at(mem, 2), PvirtqDesc::default());
    });
}

// virtio 1.4 §"Scatter-Gather Support" (packed, driver normative): a list is
// never longer than the Queue Size. A driver that sets NEXT on every slot
// gets its list cut after `size` slots, before the walk would come back to
// its first slot: never an endless walk, never a slot read twice.
#[test]
fn packed_rejects_list_wrapping_onto_itself() {
    with_queue(Features::RING_PACKED, |mem, q| {
        for slot in 0..Q {
            put(mem, slot, DATA, 4, 50 + slot, NEXT, true);
        }
        let e = chain_err(q.take::<_, 8>(mem).unwrap_err());
        assert_eq!(e.kind(), ChainErrorKind::LongerThanQueue { size: Q });
        assert_eq!((e.head().id(), e.head().descs()), (50 + Q - 1, Q));
        q.push_used(mem, e.head(), 0).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(
            q.next_used(),
            RingPosition {
                slot: 0,
                wrap: false
            }
        );
    });
}

// virtio 1.4 §"The Virtqueue Descriptor Table" (packed): the driver MUST NOT
// change a descriptor after making it available — a hostile one may, so the
// device copies, then validates (no double fetch): each ring descriptor and
// each indirect entry is read once per pop, in one 16-byte read. A chain's
// head also has its flags loaded first with acquire, and that is the value
// used (the copy inside the 16-byte read is ignored); the later slots'
// flags are taken from their one read, which the head's acquire orders.
#[test]
#[cfg(feature = "indirect")]
fn packed_every_descriptor_is_read_exactly_once() {
    use core::cell::RefCell;
    use std::collections::HashMap;
    struct Counting<'a> {
        inner: &'a Region<'a>,
        reads: RefCell<HashMap<u64, usize>>,
    }
    impl GuestMemory for Counting<'_> {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), MemoryError> {
            *self.reads.borrow_mut().entry(a).or_default() += 1;
            self.inner.read(a, b)
        }
        fn write(&self, a: u64, b: &[u8]) -> Result<(), MemoryError> {
            self.inner.write(a, b)
        }
        fn load_u16_acquire(&self, a: u64) -> Result<u16, MemoryError> {
            *self.reads.borrow_mut().entry(a).or_default() += 1;
            self.inner.load_u16_acquire(a)
        }
        fn store_u16_release(&self, a: u64, v: u16) -> Result<(), MemoryError> {
            self.inner.store_u16_release(a, v)
        }
        fn check_range(&self, a: u64, l: u64) -> Result<(), MemoryError> {
            self.inner.check_range(a, l)
        }
    }
    with_queue(Features::RING_PACKED | Features::INDIRECT_DESC, |mem, q| {
        put(mem, 0, DATA, 4, 1, NEXT, true);
        put(mem, 1, DATA, 4, 1, 0, true);
        let table = DATA + 0x1000;
        put_table(mem, table, 0, DATA, 4, 0);
        put_table(mem, table, 1, DATA, 4, WRITE);
        put(mem, 2, table, 32, 2, INDIRECT, true);
        let counting = Counting {
            inner: mem,
            reads: RefCell::new(HashMap::new()),
        };
        let _: Chain<4> = q.take(&counting).unwrap().unwrap();
        let _: Chain<4> = q.take(&counting).unwrap().unwrap();
        let reads = counting.reads.borrow();
        for addr in [
            DESC,
            DESC + 14,
            DESC + 16,
            DESC + 32,
            DESC + 46,
            table,
            table + 16,
        ] {
            assert_eq!(reads.get(&addr), Some(&1), "read of {addr:#x}");
        }
        assert_eq!(reads.get(&(DESC + 30)), None, "second slot's flags apart");
        assert_eq!(reads.len(), 7, "{reads:?}");
    });
}

#[cfg(feature = "event-idx")]
fn set_driver_event(mem: &Region, off_wrap: u16, flags: u16) {
    mem.store_u16_release(DRV_EVT, off_wrap).unwrap();
    mem.store_u16_release(DRV_EVT + 2, flags).unwrap();
}

/// Makes `n` one-slot buffers available from slot `from` and completes them.
fn cycle(mem: &Region, q: &mut PackedQueue<64>, n: u16) -> bool {
    let start = q.next_avail();
    for i in 0..n {
        let at = start.advance(i, Q);
        put(mem, at.slot, DATA, 4, at.slot, WRITE, at.wrap);
    }
    for _ in 0..n {
        let c = pop4(mem, q).unwrap().unwrap();
        q.push_used(mem, c.head(), 1).unwrap();
    }
    q.publish_used(mem).unwrap()
}

// virtio 1.4 §"Driver and Device Event Suppression": the Driver Event
// Suppression structure controls used buffer notifications: ENABLE notifies,
// DISABLE does not, and DESC (only with EVENT_IDX) notifies when the
// descriptor at the given offset and wrap counter is used.
#[test]
#[cfg(feature = "event-idx")]
fn packed_used_notification_follows_driver_event_suppression() {
    with_queue(Features::RING_PACKED, |mem, q| {
        assert!(cycle(mem, q, 1), "ENABLE (zeroed) notifies");
        set_driver_event(mem, 0, RING_EVENT_FLAGS_DISABLE);
        assert!(!cycle(mem, q, 1));
        // DESC without EVENT_IDX is not valid: notify rather than lose one.
        set_driver_event(mem, 0x7fff, RING_EVENT_FLAGS_DESC);
        assert!(cycle(mem, q, 1));
    });
    with_queue(Features::RING_PACKED | Features::EVENT_IDX, |mem, q| {
        // Ask to hear when slot 2 of the first lap is used.
        set_driver_event(mem, 2 | 0x8000, RING_EVENT_FLAGS_DESC);
        assert!(!cycle(mem, q, 2), "slots 0-1: not yet");
        assert!(cycle(mem, q, 2), "slots 2-3 cover slot 2");
        assert!(!cycle(mem, q, 1), "slot 4: already past");
        // Slot 1 of the second lap (wrap 0); this batch crosses the wrap.
        set_driver_event(mem, 1, RING_EVENT_FLAGS_DESC);
        assert!(!cycle(mem, q, 1), "slot 0 of lap 2");
        assert!(cycle(mem, q, 3), "slots 1-3 of lap 2");
        // An event in the lap before this batch's end, crossed by it.
        set_driver_event(mem, 4, RING_EVENT_FLAGS_DESC);
        assert!(cycle(mem, q, 2), "slot 4 of lap 2, then slot 0 of lap 3");
    });
}

// virtio 1.4 §"Driver and Device Event Suppression": the device writes the
// Device Event Suppression structure to control available buffer
// notifications; DESC mode only with EVENT_IDX. Re-enabling re-checks the
// ring so a buffer added meanwhile is not missed.
#[test]
#[cfg(feature = "event-idx")]
fn packed_device_event_suppression_and_enable_recheck() {
    let read_dev = |mem: &Region| {
        (
            mem.load_u16_acquire(DEV_EVT).unwrap(),
            mem.load_u16_acquire(DEV_EVT + 2).unwrap(),
        )
    };
    with_queue(Features::RING_PACKED, |mem, q| {
        q.disable_notification(mem).unwrap();
        assert_eq!(read_dev(mem).1, RING_EVENT_FLAGS_DISABLE);
        assert!(!q.enable_notification(mem).unwrap());
        assert_eq!(read_dev(mem).1, RING_EVENT_FLAGS_ENABLE);
        // The driver added a buffer while notifications were off.
        q.disable_notification(mem).unwrap();
        put(mem, 0, DATA, 4, 0, 0, true);
        assert!(q.enable_notification(mem).unwrap());
    });
    with_queue(Features::RING_PACKED | Features::EVENT_IDX, |mem, q| {
        for slot in 0..Q {
            put(mem, slot, DATA, 4, slot, 0, true);
            let _ = pop4(mem, q).unwrap().unwrap();
        }
        assert!(!q.enable_notification(mem).unwrap());
        // Next expected: slot 0 of the second lap (wrap 0).
        assert_eq!(read_dev(mem), (0, RING_EVENT_FLAGS_DESC));
        let _ = q.has_available(mem).unwrap();
    });
}

// virtio 1.4 §"Driver Notifications": with NOTIFICATION_DATA a packed ring's
// notification carries the offset and wrap counter of the next descriptor
// the driver will make available.
#[test]
fn packed_notification_data_gives_ring_position() {
    let d = NotificationData::from_u32(0x8004_0002);
    assert_eq!(d.vq_index, 2);
    assert_eq!(
        d.packed_position(),
        RingPosition {
            slot: 4,
            wrap: true
        }
    );
    let p = RingPosition {
        slot: 3,
        wrap: false,
    };
    assert_eq!(RingPosition::from_u16(p.to_u16()), p);
    assert_eq!(RingPosition::from_u16(0x8003).to_u16(), 0x8003);
}

// virtio 1.4 §"Virtqueue Reset" (device normative): after a queue reset the
// device MUST reset its available and used state — for packed, both wrap
// counters back to 1 and both positions to slot 0.
// spec: vq-reset.reset.2
#[test]
fn packed_reset_restarts_positions_and_wrap_counters() {
    with_queue(Features::RING_PACKED, |mem, q| {
        for _ in 0..3 {
            cycle(mem, q, 3);
        }
        assert_ne!(q.next_avail(), RingPosition::START);
        q.reset();
        assert_eq!(q.next_avail(), RingPosition::START);
        assert_eq!(q.next_used(), RingPosition::START);
        mem.write(DESC, &[0; 16 * Q as usize]).unwrap();
        put(mem, 0, DATA, 4, 9, 0, true);
        let c = pop4(mem, q).unwrap().unwrap();
        q.push_used(mem, c.head(), 0).unwrap();
        q.publish_used(mem).unwrap();
        assert_eq!(desc_at(mem, 0).flags.get(), AVAIL | USED);
    });
}

// virtio 1.4 §"Packed Virtqueues" (device normative): used descriptors go
// into slots the device took, in completion order. Returning more slots than
// are in flight (a device bug) is refused, so the used position never
// overtakes the available one.
// spec: packed.virtqueues.2
#[test]
fn packed_push_used_refuses_more_than_in_flight() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 4, 1, NEXT, true);
        put(mem, 1, DATA, 4, 1, 0, true);
        let c = pop4(mem, q).unwrap().unwrap();
        q.push_used(mem, c.head(), 0).unwrap();
        assert_eq!(
            q.push_used(mem, c.head(), 0),
            Err(QueueError::NotInFlight { id: 1 })
        );
    });
}

// virtio 1.4 §"Driver and Device Ring Wrap Counters": each side flips its
// wrap counter after the last slot. More than three full laps of a ring of
// 5 (not a power of two), with chains of 1 to 3 slots completed out of
// order, through our own driver side.
// spec: packed.virtqueues.1, packed.virtqueues.2
#[cfg(feature = "driver")]
#[test]
fn packed_wraps_many_laps_of_a_non_power_of_two_ring() {
    use crate::driver::{PackedDriver, Used};
    with_queue(Features::RING_PACKED, |mem, q| {
        let mut drv = PackedDriver::<8>::new(mem, config(), Features::RING_PACKED).unwrap();
        let mut slots = 0u32;
        let mut round = 0u32;
        while slots < 4 * u32::from(Q) {
            // Two chains per round: lengths vary so laps end mid-chain.
            let n1 = (round % 3 + 1) as usize;
            let n2 = ((round + 1) % 2 + 1) as usize;
            let w = |i: u64| Segment {
                addr: DATA + 0x100 * i,
                len: 16,
            };
            let a = drv.add(mem, &[], &vec![w(0); n1]).unwrap();
            let b = drv.add(mem, &[], &vec![w(1); n2]).unwrap();
            drv.publish_avail(mem).unwrap();
            let ca = pop4(mem, q).unwrap().unwrap();
            let cb = pop4(mem, q).unwrap().unwrap();
            // Complete the second first.
            q.push_used(mem, cb.head(), round).unwrap();
            q.push_used(mem, ca.head(), round + 1).unwrap();
            q.publish_used(mem).unwrap();
            assert_eq!(drv.pop_used(mem), Ok(Some(Used { id: b, len: round })));
            assert_eq!(
                drv.pop_used(mem),
                Ok(Some(Used {
                    id: a,
                    len: round + 1
                }))
            );
            assert_eq!(drv.pop_used(mem), Ok(None));
            slots += (n1 + n2) as u32;
            round += 1;
        }
        assert!(slots / u32::from(Q) > 3);
        assert_eq!(drv.num_free(), Q);
    });
}

// Reader/Writer see a packed chain like a split one (§"Message Framing":
// no assumption on how the driver splits a buffer).
// spec: split.message-framing.1
#[test]
fn packed_reader_and_writer_cross_descriptors() {
    with_queue(Features::RING_PACKED, |mem, q| {
        put(mem, 0, DATA, 1, 0, NEXT | WRITE, true);
        put(mem, 1, DATA + 0x10, 3, 0, WRITE, true);
        let c = pop4(mem, q).unwrap().unwrap();
        let mut w = c.writer(mem);
        w.write_obj(&0x0403_0201_u32).unwrap();
        assert_eq!(
            w.write_all(&[0]),
            Err(AccessError::ShortChain {
                wanted: 1,
                remaining: 0
            })
        );
        let mut b = [0u8; 3];
        mem.read(DATA + 0x10, &mut b).unwrap();
        assert_eq!(b, [2, 3, 4]);
    });
}
