#![allow(clippy::arithmetic_side_effects)]

use rand_core::TryRng;
use virtio_core::queue::Segment;
use virtio_core::spec::Features;

use super::test_utils::CountingRng as Counter;
use super::*;
use crate::harness::Harness;

#[derive(Debug)]
struct Broken;
impl core::fmt::Display for Broken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("broken")
    }
}
impl core::error::Error for Broken {}

/// Gives 10 bytes, then fails.
struct Fading(u32);
impl TryRng for Fading {
    type Error = Broken;
    fn try_next_u32(&mut self) -> Result<u32, Broken> {
        Err(Broken)
    }
    fn try_next_u64(&mut self) -> Result<u64, Broken> {
        Err(Broken)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Broken> {
        if self.0 == 0 {
            return Err(Broken);
        }
        self.0 -= 1;
        dst.fill(0xaa);
        Ok(())
    }
}

fn rig<R: TryRng>(rng: R) -> Harness<Rng<R>, 1> {
    Harness::new(Rng::new(rng), Features::empty(), &[0])
}

#[test]
fn fills_writable_buffers() {
    // spec: rng.device-operation.1, split.used-ring.2
    // virtio 1.4 §"Entropy Device / Device Operation": the device MUST
    // place one or more random bytes into the buffer.
    let mut h = rig(Counter::default());
    let a = h.space(100);
    let b = h.space(3);
    let used = h.request(0, &[], &[a, b]);
    assert_eq!(used.len, 103);
    let got = h.read(a);
    assert_eq!(got[0], 1);
    assert_eq!(got[99], 100);
    assert_eq!(h.read(b), [101, 102, 103]);
}

#[test]
fn rejects_readable_buffers() {
    // spec: split.descriptor-table.1
    // virtio 1.4 §"Entropy Device / Driver Requirements: Device Operation":
    // the driver MUST NOT place driver-readable buffers into the queue; the
    // device returns such a chain untouched, and goes on.
    let mut h = rig(Counter::default());
    let r = h.put(&[9; 4]);
    let w = h.space(4);
    let used = h.request(0, &[r], &[w]);
    assert_eq!(used.len, 0);
    assert_eq!(h.read(w), [0xee; 4]);
    assert_eq!(h.read(r), [9; 4]);
    assert_eq!(h.core.device().rejected(), 1);
    let used = h.request(0, &[], &[w]);
    assert_eq!(used.len, 4);
}

#[test]
fn a_failing_generator_returns_what_it_filled() {
    let mut h = rig(Fading(1));
    let w = h.space(100);
    let used = h.request(0, &[], &[w]);
    assert_eq!(used.len, 64);
    assert_eq!(h.core.device().backend_errors(), 1);
    let used = h.request(0, &[], &[w]);
    assert_eq!(used.len, 0);
}

#[test]
fn malformed_chain_gets_used_length_0_and_the_next_succeeds() {
    let mut h = rig(Counter::default());
    let bad = Segment { addr: 0x10, len: 8 };
    let used = h.request(0, &[], &[bad]);
    assert_eq!(used.len, 0);
    assert_eq!(h.core.malformed_chains(0), 1);
    let w = h.space(8);
    assert_eq!(h.request(0, &[], &[w]).len, 8);
}

#[test]
fn in_order_is_offered_and_honoured() {
    // spec: reserved.reserved-feature-bits.5
    let mut h: Harness<Rng<Counter>, 1> =
        Harness::new(Rng::new(Counter::default()), Features::IN_ORDER, &[0]);
    let segs: std::vec::Vec<_> = (0..4).map(|_| h.space(8)).collect();
    let ids: std::vec::Vec<_> = segs.iter().map(|s| h.add(0, &[], &[*s])).collect();
    h.kick(0);
    for id in ids {
        let used = h.used(0).unwrap();
        assert_eq!((used.id, used.len), (id, 8));
    }
}
