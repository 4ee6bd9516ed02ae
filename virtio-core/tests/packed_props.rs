//! Property tests of the packed queue: the same request stream through a
//! split and a packed ring gives the driver the same results, and random
//! packed rings never make the device panic, loop or stray.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};

mod common;

use common::Watched;
use proptest::prelude::*;
use proptest::test_runner::Config;
use virtio_core::driver::{DriverError, PackedDriver, SplitDriver, Used};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, Head, PackedQueue, QueueConfig, QueueError, Segment, SplitQueue};
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..Config::default()
    }
}

/// A driver and a device on one ring, whichever the format.
trait RingPair {
    fn num_free(&self) -> u16;
    fn add(&mut self, mem: &Region, table: Option<u64>, rd: &[Segment], wr: &[Segment]) -> u16;
    fn publish_avail(&mut self, mem: &Region);
    fn pop(&mut self, mem: &Region) -> Result<Option<Chain<8>>, QueueError>;
    fn push_used(&mut self, mem: &Region, head: Head, len: u32);
    fn publish_used(&mut self, mem: &Region);
    fn pop_used(&mut self, mem: &Region) -> Result<Option<Used>, DriverError>;
}

struct Split(SplitDriver, SplitQueue);
struct Packed(PackedDriver<64>, PackedQueue);

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
                self.1.pop(mem)
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

use common::{DATA, Req, SLOT, pattern, req};

/// What the driver saw for one request: its number, the used length and
/// the bytes the device wrote.
type Outcome = (usize, u32, Vec<u8>);

struct Stream<'a> {
    reqs: &'a [Req],
    choices: &'a [u8],
    in_order: bool,
    indirect: bool,
    size: u16,
}

/// Drives `reqs` through `ring`: bursts of adds, a device that takes
/// everything and completes a chosen number in a chosen order, then the
/// driver collecting. Returns what the driver saw, in collection order.
fn run(ring: &mut dyn RingPair, mem: &Region, s: &Stream) -> Result<Vec<Outcome>, TestCaseError> {
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

fn memory(size: u16) -> Vec<u64> {
    vec![0u64; ((DATA + SLOT * u64::from(size)) / 8) as usize]
}

// The same random stream of requests (shapes, sizes, completion order,
// batch boundaries, features) through a split ring and through a packed
// ring of the same size gives the driver identical data and identical
// per-request used lengths, in the same order. A packed ring of a size that
// is not a power of two carries the same requests with the same results.
proptest! {
    #![proptest_config(config())]
    #[test]
    fn packed_and_split_give_the_driver_identical_results(
        size_log in 3u32..6,
        odd_size in 6u16..40,
        event_idx in any::<bool>(),
        in_order in any::<bool>(),
        indirect in any::<bool>(),
        reqs in prop::collection::vec(req(), 1..48),
        choices in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let size = 1u16 << size_log;
        let mut features = Features::VERSION_1;
        features.set(Features::EVENT_IDX, event_idx);
        features.set(Features::IN_ORDER, in_order);
        features.set(Features::INDIRECT_DESC, indirect);
        let stream = Stream { reqs: &reqs, choices: &choices, in_order, indirect, size };

        let mut buf = memory(size);
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = SplitDriver::layout(0, size);
        let mut split = Split(
            SplitDriver::new(&mem, cfg, features).unwrap(),
            SplitQueue::new(&mem, cfg, features).unwrap(),
        );
        let split_seen = run(&mut split, &mem, &stream)?;

        let packed_features = features | Features::RING_PACKED;
        let run_packed = |size: u16| -> Result<Vec<Outcome>, TestCaseError> {
            let mut buf = memory(size);
            let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
            let cfg = PackedDriver::<64>::layout(0, size);
            let mut packed = Packed(
                PackedDriver::new(&mem, cfg, packed_features).unwrap(),
                PackedQueue::new(&mem, cfg, packed_features).unwrap(),
            );
            run(&mut packed, &mem, &Stream { size, ..stream })
        };
        let packed_seen = run_packed(size)?;
        prop_assert_eq!(&split_seen, &packed_seen);

        // Any size: the per-request results are the same, whatever order
        // the smaller or larger ring let them complete in.
        let mut odd_seen = run_packed(odd_size)?;
        let mut by_req = split_seen.clone();
        by_req.sort();
        odd_seen.sort();
        prop_assert_eq!(by_req, odd_seen);
    }
}

// Random packed ring contents (descriptors, flags, indirect tables, event
// structures, starting positions) never make the device panic or loop, and
// never make it access memory outside the region (the region refuses it)
// or write anything but the descriptor ring and its own event structure.
proptest! {
    #![proptest_config(config())]
    #[test]
    fn random_packed_rings_never_panic_loop_or_stray(
        size in 1u16..=48,
        features in any::<u64>(),
        contents in prop::collection::vec(any::<u8>(), 0x800),
        avail in any::<u16>(),
        used in any::<u16>(),
        base in prop::sample::select(vec![0u64, 0x1000, u64::MAX - 0x7ff]),
        complete in any::<bool>(),
    ) {
        let mut buf = common::host_from(&contents);
        let mem = Watched::new(Region::new(base, buf.as_mut_bytes()).unwrap());
        let cfg = QueueConfig {
            size,
            desc_addr: base,
            driver_addr: base + 0x400,
            device_addr: base + 0x404,
        };
        let features = Features::from_bits_retain(features) | Features::RING_PACKED;
        let mut q = PackedQueue::new(&mem, cfg, features).unwrap();
        q.set_positions(
            virtio_core::queue::RingPosition::from_u16(avail),
            virtio_core::queue::RingPosition::from_u16(used),
        );
        let mut held = Vec::new();
        // Each pop takes at least one slot; a ring holds `size` of them.
        for _ in 0..=size {
            match q.pop::<_, 4>(&mem) {
                Ok(None) => break,
                Ok(Some(chain)) => held.push(chain.head()),
                Err(e) => match e.head() {
                    Some(head) => held.push(head),
                    None => {
                        prop_assert!(e.needs_reset());
                        break;
                    }
                },
            }
        }
        if complete {
            held.reverse();
        }
        for head in held {
            q.push_used(&mem, head, 1).unwrap();
        }
        let _ = q.publish_used(&mem);
        let _ = q.enable_notification(&mem);
        q.disable_notification(&mem).unwrap();
        let ring = (cfg.desc_addr, 16 * u64::from(size));
        let dev_event = (cfg.device_addr, 4);
        let stray = mem.stray_write(&[ring, dev_event]);
        prop_assert!(stray.is_none(), "device wrote outside its areas: {:x?}", stray);
    }
}
