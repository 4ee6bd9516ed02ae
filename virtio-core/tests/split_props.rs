//! Property tests of the split queue against the driver side and a model.
#![allow(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, HashSet};

mod common;

use common::Watched;
use proptest::prelude::*;
use proptest::test_runner::Config;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, QueueConfig, Segment, SplitQueue, vring_need_event};
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 3 } else { 256 },
        failure_persistence: None,
        ..Config::default()
    }
}

use common::{DATA, SLOT, pattern, req};

struct InFlight {
    req: usize,
    slot: u64,
    written: u32,
}

// Property (a): any sequence of legal chains of random shape goes driver →
// device → driver with every byte intact and exactly one used element per
// chain, whatever the features, batch boundaries and completion order.
proptest! {
    #![proptest_config(config())]
    #[test]
    fn legal_chains_round_trip(
        size_log in 3u32..7,
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
        let mut buf = vec![0u64; ((DATA + SLOT * u64::from(size)) / 8) as usize];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = SplitDriver::layout(0, size);
        let mut drv = SplitDriver::new(&mem, cfg, features).unwrap();
        let mut dev = SplitQueue::new(&mem, cfg, features).unwrap();

        let mut choice = choices.iter().copied().cycle();
        let mut free_slots: Vec<u64> = (0..u64::from(size)).map(|i| DATA + i * SLOT).collect();
        let mut by_id: HashMap<u16, InFlight> = HashMap::new();
        let mut device_held: Vec<Chain<8>> = Vec::new();
        let mut returned = HashSet::new();
        let mut next_req = 0;
        let mut rounds = 0;
        while returned.len() < reqs.len() {
            rounds += 1;
            prop_assert!(rounds < 10_000, "no progress");
            // Driver: add a random number of requests, then publish.
            let burst = usize::from(choice.next().unwrap() % 8) + 1;
            for _ in 0..burst {
                let Some(r) = reqs.get(next_req) else { break };
                let use_indirect = indirect && r.indirect;
                let need = if use_indirect { 1 } else { (r.readable.len() + r.writable.len()) as u16 };
                if need > drv.num_free() || free_slots.is_empty() {
                    break;
                }
                let slot = free_slots.pop().unwrap();
                let mut at = slot + 256; // the first 256 bytes hold an indirect table
                let mut place = |lens: &[u32], fill: bool| -> Vec<Segment> {
                    let mut segs = Vec::new();
                    let mut n = 0u32;
                    for &len in lens {
                        if fill {
                            let bytes: Vec<u8> = (0..len).map(|i| pattern(next_req, n + i)).collect();
                            mem.write(at, &bytes).unwrap();
                        } else {
                            mem.write(at, &vec![0xee; len as usize]).unwrap();
                        }
                        segs.push(Segment { addr: at, len });
                        at += u64::from(len);
                        n += len;
                    }
                    segs
                };
                let rd = place(&r.readable, true);
                let wr = place(&r.writable, false);
                let id = if use_indirect {
                    drv.add_indirect(&mem, slot, &rd, &wr).unwrap()
                } else {
                    drv.add(&mem, &rd, &wr).unwrap()
                };
                let fresh = by_id.insert(id, InFlight { req: next_req, slot, written: 0 }).is_none();
                prop_assert!(fresh, "id {} handed out twice", id);
                next_req += 1;
            }
            drv.publish_avail(&mem).unwrap();

            // Device: take everything available, checking the readable bytes.
            while let Some(chain) = dev.pop::<_, 8>(&mem).unwrap() {
                let f = &by_id[&chain.id()];
                let r = &reqs[f.req];
                prop_assert_eq!(chain.readable_len(), r.readable.iter().sum::<u32>());
                prop_assert_eq!(chain.writable_len(), r.writable.iter().sum::<u32>());
                let mut got = vec![0u8; chain.readable_len() as usize];
                chain.reader(&mem).read_exact(&mut got).unwrap();
                let want: Vec<u8> = (0..chain.readable_len()).map(|i| pattern(f.req, i)).collect();
                prop_assert_eq!(got, want);
                device_held.push(chain);
            }

            // Device: complete a random number, in a random order unless
            // IN_ORDER, then publish the batch.
            let n = (usize::from(choice.next().unwrap()) % (device_held.len() + 1)).max(1).min(device_held.len());
            for _ in 0..n {
                let pick = if in_order { 0 } else { usize::from(choice.next().unwrap()) % device_held.len() };
                let chain = device_held.remove(pick);
                let f = by_id.get_mut(&chain.id()).unwrap();
                let r = &reqs[f.req];
                let len = chain.writable_len() * u32::from(r.fill) / 255;
                let bytes: Vec<u8> = (0..len).map(|i| pattern(f.req, i) ^ 0x55).collect();
                let mut w = chain.writer(&mem);
                w.write_all(&bytes).unwrap();
                f.written = w.bytes_written();
                dev.push_used(&mem, chain.head(), w.bytes_written()).unwrap();
            }
            dev.publish_used(&mem).unwrap();

            // Driver: collect and check what came back.
            while let Some(used) = drv.pop_used(&mem).unwrap() {
                let f = by_id.remove(&used.id).unwrap();
                prop_assert_eq!(used.len, f.written);
                prop_assert!(returned.insert(f.req), "request returned twice");
                let r = &reqs[f.req];
                let start = f.slot + 256 + u64::from(r.readable.iter().sum::<u32>());
                let mut got = vec![0u8; f.written as usize];
                mem.read(start, &mut got).unwrap();
                let want: Vec<u8> = (0..f.written).map(|i| pattern(f.req, i) ^ 0x55).collect();
                prop_assert_eq!(got, want);
                free_slots.push(f.slot);
            }
        }
        prop_assert_eq!(drv.outstanding(), 0);
        prop_assert_eq!(drv.num_free(), size);
    }
}

// Property (b): random descriptor tables and ring contents never panic,
// never loop, and never make the device access memory outside the region
// (the region refuses it) or write anything but the used ring.
proptest! {
    #![proptest_config(config())]
    #[test]
    fn random_rings_never_panic_loop_or_stray(
        size_log in 0u32..6,
        features in any::<u64>(),
        contents in prop::collection::vec(any::<u8>(), 0x800),
        avail_idx in any::<u16>(),
        base in prop::sample::select(vec![0u64, 0x1000, u64::MAX - 0x7ff]),
    ) {
        let size = 1u16 << size_log;
        let mut buf = common::host_from(&contents);
        let mem = Watched::new(Region::new(base, buf.as_mut_bytes()).unwrap());
        // Rings at fixed offsets; descriptors point anywhere the bytes say.
        let cfg = QueueConfig {
            size,
            desc_addr: base,
            driver_addr: base + 0x400,
            device_addr: base + 0x600,
        };
        let features = Features::from_bits_retain(features);
        let mut q = SplitQueue::new(&mem, cfg, features).unwrap();
        q.set_indices(avail_idx, avail_idx);
        let used_area = (cfg.device_addr, 6 + 8 * u64::from(size));
        // At most `size` chains can be pending; each pop takes one.
        for _ in 0..=size {
            match q.pop::<_, 4>(&mem) {
                Ok(None) => break,
                Ok(Some(chain)) => {
                    q.push_used(&mem, chain.head(), 0).unwrap();
                }
                Err(e) => match e.head() {
                    Some(head) => q.push_used(&mem, head, 0).unwrap(),
                    None => {
                        prop_assert!(e.needs_reset());
                        break;
                    }
                },
            }
        }
        let _ = q.publish_used(&mem);
        let _ = q.enable_notification(&mem);
        let stray = mem.stray_write(&[used_area]);
        prop_assert!(stray.is_none(), "device wrote outside the used ring: {:x?}", stray);
    }
}

/// The model: walk the indices `old .. new` one by one and notify iff one of
/// them is `used_event` (virtio 1.4 §"Used Buffer Notification
/// Suppression": notify when the entry at index `used_event` is written).
fn model_need_event(event: u16, new: u16, old: u16) -> bool {
    let mut i = old;
    while i != new {
        if i == event {
            return true;
        }
        i = i.wrapping_add(1);
    }
    false
}

// Property (c): with EVENT_IDX, the device's notify decision after a batch
// equals vring_need_event(used_event, new, old), for random indices
// including wrap-around at 2^16.
proptest! {
    #![proptest_config(config())]
    #[test]
    fn event_idx_decision_matches_vring_need_event(
        start in any::<u16>(),
        near_wrap in any::<bool>(),
        batch in 1u16..=16,
        event_delta in any::<u16>(),
        event_near in -20i32..20,
    ) {
        let start = if near_wrap { 65530u16.wrapping_add(start % 12) } else { start };
        let used_event = if near_wrap { start.wrapping_add(event_near as u16) } else { event_delta };
        let size = 16u16;
        let mut buf = vec![0u64; 0x2000 / 8];
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = SplitDriver::layout(0, size);
        let features = Features::EVENT_IDX;
        let mut q = SplitQueue::new(&mem, cfg, features).unwrap();
        // A one-descriptor chain at every head; the driver's ring as if it
        // had already gone round `start` times.
        for i in 0..size {
            let d = virtio_core::spec::VirtqDesc { addr: 0x1800u64.into(), len: 1.into(), ..Default::default() };
            mem.write_obj(cfg.desc_addr + 16 * u64::from(i), &d).unwrap();
            mem.write(cfg.driver_addr + 4 + 2 * u64::from(i), &i.to_le_bytes()).unwrap();
        }
        q.set_indices(start, start);
        mem.store_u16_release(cfg.driver_addr + 2, start.wrapping_add(batch)).unwrap();
        mem.store_u16_release(cfg.driver_addr + 4 + 2 * u64::from(size), used_event).unwrap();
        for _ in 0..batch {
            let c: Chain<1> = q.pop(&mem).unwrap().unwrap();
            q.push_used(&mem, c.head(), 0).unwrap();
        }
        let new = start.wrapping_add(batch);
        let notify = q.publish_used(&mem).unwrap();
        prop_assert_eq!(notify, vring_need_event(used_event, new, start));
        prop_assert_eq!(notify, model_need_event(used_event, new, start));
    }
}
