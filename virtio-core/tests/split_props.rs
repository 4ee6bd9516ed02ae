//! Property tests of the split queue against the driver side and a model.
#![allow(clippy::arithmetic_side_effects)]

mod common;

use common::{Split, Stream, Watched, memory, req, run};
use proptest::prelude::*;
use proptest::test_runner::Config;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, QueueConfig, SplitQueue, vring_need_event};
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 3 } else { 256 },
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]
    // spec: split.message-framing.1
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
        let mut buf = memory(size);
        let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
        let cfg = SplitDriver::layout(0, size);
        let mut ring = Split(
            SplitDriver::new(&mem, cfg, features).unwrap(),
            SplitQueue::<256>::new(&mem, cfg, features).unwrap(),
        );
        // `run` checks every byte both ways, the lengths, and exactly one
        // used element per chain, and that every descriptor comes back.
        run(&mut ring, &mem, &Stream { reqs: &reqs, choices: &choices, in_order, indirect, size })?;
    }
}

// Property (b): random descriptor tables and ring contents never panic,
// never loop, and never make the device access memory outside the region
// (the region refuses it) or write anything but the used ring.
proptest! {
    #![proptest_config(config())]
    // spec: split.descriptor-table.1, split.descriptor-table.2
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
        let mut q = SplitQueue::<256>::new(&mem, cfg, features).unwrap();
        q.set_indices(avail_idx, avail_idx);
        let used_area = (cfg.device_addr, 6 + 8 * u64::from(size));
        // At most `size` chains can be pending; each pop takes one.
        let mut chain = Chain::<4>::new();
        for _ in 0..=size {
            match q.pop(&mem, &mut chain) {
                Ok(false) => break,
                Ok(true) => {
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
    // spec: split.used-buffer-notification-suppression.5, split.used-buffer-notification-suppression.6
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
        let mut q = SplitQueue::<256>::new(&mem, cfg, features).unwrap();
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
        let mut c = Chain::<1>::new();
        for _ in 0..batch {
            assert!(q.pop(&mem, &mut c).unwrap());
            q.push_used(&mem, c.head(), 0).unwrap();
        }
        let new = start.wrapping_add(batch);
        let notify = q.publish_used(&mem).unwrap();
        prop_assert_eq!(notify, vring_need_event(used_event, new, start));
        prop_assert_eq!(notify, model_need_event(used_event, new, start));
    }
}
