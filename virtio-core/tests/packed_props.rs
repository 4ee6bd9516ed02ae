//! Property tests of the packed queue: the same request stream through a
//! split and a packed ring gives the driver the same results, and random
//! packed rings never make the device panic, loop or stray.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

mod common;

use common::{Outcome, Packed, Split, Stream, Watched, memory, req, run};
use proptest::prelude::*;
use proptest::test_runner::Config;
use virtio_core::driver::{PackedDriver, SplitDriver};
use virtio_core::memory::Region;
use virtio_core::queue::{Chain, PackedQueue, QueueConfig, SplitQueue};
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

fn config() -> Config {
    Config {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..Config::default()
    }
}

// The same random stream of requests (shapes, sizes, completion order,
// batch boundaries, features) through a split ring and through a packed
// ring of the same size gives the driver identical data and identical
// per-request used lengths, in the same order. A packed ring of a size that
// is not a power of two carries the same requests with the same results.
proptest! {
    #![proptest_config(config())]
    // spec: split.message-framing.1
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
            SplitQueue::<256>::new(&mem, cfg, features).unwrap(),
        );
        let split_seen = run(&mut split, &mem, &stream)?;

        let packed_features = features | Features::RING_PACKED;
        let run_packed = |size: u16| -> Result<Vec<Outcome>, TestCaseError> {
            let mut buf = memory(size);
            let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
            let cfg = PackedDriver::<64>::layout(0, size);
            let mut packed = Packed(
                PackedDriver::new(&mem, cfg, packed_features).unwrap(),
                PackedQueue::<256>::new(&mem, cfg, packed_features).unwrap(),
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
    // spec: packed.descriptor-table.1
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
        let mut q = PackedQueue::<256>::new(&mem, cfg, features).unwrap();
        q.set_positions(
            virtio_core::queue::RingPosition::from_u16(avail),
            virtio_core::queue::RingPosition::from_u16(used),
        );
        let mut held = Vec::new();
        // Each pop takes at least one slot; a ring holds `size` of them.
        let mut chain = Chain::<4>::new();
        for _ in 0..=size {
            match q.pop(&mem, &mut chain) {
                Ok(false) => break,
                Ok(true) => held.push(chain.head()),
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
