//! Test doubles shared by the property tests.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    dead_code
)]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use virtio_core::driver::{DriverError, PackedDriver, SplitDriver, Used};
use virtio_core::memory::{GuestMemory, MemoryError, Region};
use virtio_core::queue::{Chain, Head, PackedQueue, QueueError, Segment, SplitQueue};

/// Guest memory that records every write, so a property can check where
/// the device wrote.
pub struct Watched<'a> {
    pub inner: Region<'a>,
    pub writes: RefCell<Vec<(u64, u64)>>,
}

impl<'a> Watched<'a> {
    pub fn new(inner: Region<'a>) -> Self {
        Self {
            inner,
            writes: RefCell::new(Vec::new()),
        }
    }

    /// The first recorded write that is not wholly inside one of `areas`
    /// (`(start, len)` pairs).
    pub fn stray_write(&self, areas: &[(u64, u64)]) -> Option<(u64, u64)> {
        self.writes.borrow().iter().copied().find(|&(addr, len)| {
            !areas
                .iter()
                .any(|&(start, n)| addr >= start && addr + len <= start + n)
        })
    }
}

impl GuestMemory for Watched<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.inner.write(addr, buf)?;
        self.writes.borrow_mut().push((addr, buf.len() as u64));
        Ok(())
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.inner.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.inner.store_u16_release(addr, value)?;
        self.writes.borrow_mut().push((addr, 2));
        Ok(())
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.inner.check_range(addr, len)
    }
}

/// A `u64`-backed buffer holding `bytes` (a multiple of 8 long).
pub fn host_from(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// One request of a random stream: buffer sizes, whether to send it
/// indirect, and how much of its writable part the device fills.
#[derive(Clone, Debug)]
pub struct Req {
    pub readable: Vec<u32>,
    pub writable: Vec<u32>,
    pub indirect: bool,
    /// How much of the writable part the device fills, in 1/255ths.
    pub fill: u8,
}

/// Requests of up to three readable and three writable buffers (at least
/// one buffer) of 1 to 47 bytes.
pub fn req() -> impl Strategy<Value = Req> {
    (
        prop::collection::vec(1u32..48, 0..4),
        prop::collection::vec(1u32..48, 0..4),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_filter("a chain has a buffer", |(r, w, _, _)| {
            !r.is_empty() || !w.is_empty()
        })
        .prop_map(|(readable, writable, indirect, fill)| Req {
            readable,
            writable,
            indirect,
            fill,
        })
}

/// Guest memory per request slot, and where the slots start.
pub const SLOT: u64 = 1024;
pub const DATA: u64 = 0x10000;

/// Byte `i` of request `req`'s data, so every byte is checkable.
pub fn pattern(req: usize, i: u32) -> u8 {
    (req as u32)
        .wrapping_mul(31)
        .wrapping_add(i.wrapping_mul(7)) as u8
}

/// A driver and a device on one ring, whichever the format.
pub trait RingPair {
    fn num_free(&self) -> u16;
    fn add(&mut self, mem: &Region, table: Option<u64>, rd: &[Segment], wr: &[Segment]) -> u16;
    fn publish_avail(&mut self, mem: &Region);
    fn pop(&mut self, mem: &Region) -> Result<Option<Chain<8>>, QueueError>;
    fn push_used(&mut self, mem: &Region, head: Head, len: u32);
    fn publish_used(&mut self, mem: &Region);
    fn pop_used(&mut self, mem: &Region) -> Result<Option<Used>, DriverError>;
}

pub struct Split(pub SplitDriver, pub SplitQueue<256>);
pub struct Packed(pub PackedDriver<64>, pub PackedQueue<256>);

macro_rules! ring_pair {
    ($t:ty) => {
        impl RingPair for $t {
            fn num_free(&self) -> u16 {
                self.0.num_free()
            }
            fn add(
                &mut self,
                mem: &Region,
                table: Option<u64>,
                rd: &[Segment],
                wr: &[Segment],
            ) -> u16 {
                match table {
                    Some(t) => self.0.add_indirect(mem, t, rd, wr).unwrap(),
                    None => self.0.add(mem, rd, wr).unwrap(),
                }
            }
            fn publish_avail(&mut self, mem: &Region) {
                self.0.publish_avail(mem).unwrap();
            }
            fn pop(&mut self, mem: &Region) -> Result<Option<Chain<8>>, QueueError> {
                let mut chain = Chain::new();
                Ok(self.1.pop(mem, &mut chain)?.then_some(chain))
            }
            fn push_used(&mut self, mem: &Region, head: Head, len: u32) {
                self.1.push_used(mem, head, len).unwrap();
            }
            fn publish_used(&mut self, mem: &Region) {
                self.1.publish_used(mem).unwrap();
            }
            fn pop_used(&mut self, mem: &Region) -> Result<Option<Used>, DriverError> {
                self.0.pop_used(mem)
            }
        }
    };
}
ring_pair!(Split);
ring_pair!(Packed);

/// What the driver saw for one request: its number, the used length and
/// the bytes the device wrote.
pub type Outcome = (usize, u32, Vec<u8>);

pub struct Stream<'a> {
    pub reqs: &'a [Req],
    pub choices: &'a [u8],
    pub in_order: bool,
    pub indirect: bool,
    pub size: u16,
}

/// Drives `reqs` through `ring`: bursts of adds, a device that takes
/// everything and completes a chosen number in a chosen order, then the
/// driver collecting. Returns what the driver saw, in collection order.
pub fn run(
    ring: &mut dyn RingPair,
    mem: &Region,
    s: &Stream,
) -> Result<Vec<Outcome>, TestCaseError> {
    let mut choice = s.choices.iter().copied().cycle();
    let mut free_slots: Vec<u64> = (0..u64::from(s.size))
        .rev()
        .map(|i| DATA + i * SLOT)
        .collect();
    let mut by_id: HashMap<u16, (usize, u64, u32)> = HashMap::new();
    let mut device_held: Vec<Chain<8>> = Vec::new();
    let mut returned = HashSet::new();
    let mut seen = Vec::new();
    let mut next_req = 0;
    let mut rounds = 0;
    while returned.len() < s.reqs.len() {
        rounds += 1;
        prop_assert!(rounds < 10_000, "no progress");
        let burst = usize::from(choice.next().unwrap() % 8) + 1;
        for _ in 0..burst {
            let Some(r) = s.reqs.get(next_req) else { break };
            let use_indirect = s.indirect && r.indirect;
            let need = if use_indirect {
                1
            } else {
                (r.readable.len() + r.writable.len()) as u16
            };
            if need > ring.num_free() || free_slots.is_empty() {
                break;
            }
            let slot = free_slots.pop().unwrap();
            let mut at = slot + 256; // the first 256 bytes hold an indirect table
            let mut place = |lens: &[u32], fill: bool| -> Vec<Segment> {
                let mut segs = Vec::new();
                let mut n = 0u32;
                for &len in lens {
                    let bytes: Vec<u8> = if fill {
                        (0..len).map(|i| pattern(next_req, n + i)).collect()
                    } else {
                        vec![0xee; len as usize]
                    };
                    mem.write(at, &bytes).unwrap();
                    segs.push(Segment { addr: at, len });
                    at += u64::from(len);
                    n += len;
                }
                segs
            };
            let rd = place(&r.readable, true);
            let wr = place(&r.writable, false);
            let id = ring.add(mem, use_indirect.then_some(slot), &rd, &wr);
            let fresh = by_id.insert(id, (next_req, slot, 0)).is_none();
            prop_assert!(fresh, "id {} handed out twice", id);
            next_req += 1;
        }
        ring.publish_avail(mem);

        while let Some(chain) = ring.pop(mem).unwrap() {
            let (req, _, _) = by_id[&chain.id()];
            let r = &s.reqs[req];
            prop_assert_eq!(chain.readable_len(), r.readable.iter().sum::<u32>());
            prop_assert_eq!(chain.writable_len(), r.writable.iter().sum::<u32>());
            let mut got = vec![0u8; chain.readable_len() as usize];
            chain.reader(mem).read_exact(&mut got).unwrap();
            let want: Vec<u8> = (0..chain.readable_len()).map(|i| pattern(req, i)).collect();
            prop_assert_eq!(got, want);
            device_held.push(chain);
        }

        let n = (usize::from(choice.next().unwrap()) % (device_held.len() + 1))
            .max(1)
            .min(device_held.len());
        for _ in 0..n {
            let pick = if s.in_order {
                0
            } else {
                usize::from(choice.next().unwrap()) % device_held.len()
            };
            let chain = device_held.remove(pick);
            let entry = by_id.get_mut(&chain.id()).unwrap();
            let r = &s.reqs[entry.0];
            let len = chain.writable_len() * u32::from(r.fill) / 255;
            let bytes: Vec<u8> = (0..len).map(|i| pattern(entry.0, i) ^ 0x55).collect();
            let mut w = chain.writer(mem);
            w.write_all(&bytes).unwrap();
            entry.2 = w.bytes_written();
            ring.push_used(mem, chain.head(), w.bytes_written());
        }
        ring.publish_used(mem);

        while let Some(used) = ring.pop_used(mem).unwrap() {
            let (req, slot, written) = by_id.remove(&used.id).unwrap();
            prop_assert_eq!(used.len, written);
            prop_assert!(returned.insert(req), "request returned twice");
            let start = slot + 256 + u64::from(s.reqs[req].readable.iter().sum::<u32>());
            let mut got = vec![0u8; used.len as usize];
            mem.read(start, &mut got).unwrap();
            seen.push((req, used.len, got));
            free_slots.push(slot);
        }
    }
    prop_assert_eq!(ring.num_free(), s.size);
    Ok(seen)
}

pub fn memory(size: u16) -> Vec<u64> {
    vec![0u64; ((DATA + SLOT * u64::from(size)) / 8) as usize]
}
