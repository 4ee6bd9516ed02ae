//! Liveness and bounds of `DeviceCore` against a driver that follows the
//! spec to the letter and is busy: it adds buffers while the device works
//! and notifies only when the device's suppression state says it must
//! (virtio 1.4 §"Available Buffer Notification Suppression", §"Driver
//! Notifications"). The embedder honours the contract: it delivers every
//! notification and calls `poll` again while a call reports `WorkLeft`.
//!
//! Invariants: every buffer made available is used; no call takes more
//! chains than the budget; nothing is completed twice (the driver side
//! refuses an id it does not hold); the device stays live.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::Config;
use virtio_core::device::{DeviceCore, DeviceQueues, Service, VirtioDevice};
use virtio_core::driver::busy::{BusyDriver, Schedule};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

const MEM: usize = 0x20000;
const RING: u64 = 0x1000;
const DATA: u64 = 0x8000;

/// Completes every chain at once with one byte written, counting the
/// chains of the current call.
#[derive(Default)]
struct Echo {
    this_call: Cell<u32>,
}

impl VirtioDevice for Echo {
    fn device_id(&self) -> DeviceId {
        DeviceId::Entropy
    }
    fn features(&self) -> Features {
        Features::empty()
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn max_queue_size(&self, _: u16) -> u16 {
        64
    }
    fn reset(&mut self) {}
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mut chain = Chain::<4>::new();
        while queues.pop(queue, &mut chain) {
            self.this_call.set(self.this_call.get() + 1);
            let mut w = chain.writer(queues.memory());
            w.write_all(&[0x5a]).unwrap();
            queues.push_used(queue, chain.head(), w.bytes_written());
        }
    }
}

type Core<'d, 'c> = DeviceCore<Echo, &'d BusyDriver<'c, &'d Region<'d>>, 1, 64>;

fn live_core<'d, 'c>(drv: &'d BusyDriver<'c, &'d Region<'d>>, features: Features) -> Core<'d, 'c> {
    let mut core = DeviceCore::new(Echo::default(), drv);
    core.set_status(1 | 2);
    core.set_driver_features(features | Features::VERSION_1);
    core.set_status(1 | 2 | 8);
    let c = drv.config();
    core.set_queue(0, c).unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(1 | 2 | 4 | 8);
    assert!(core.is_live());
    core
}

/// Delivers what the driver and the contract ask for until neither asks
/// for anything: kicks to `notify`, `WorkLeft` to `poll`. Checks each
/// call's bound. Returns the calls made.
fn settle(core: &mut Core<'_, '_>, drv: &BusyDriver<'_, &Region<'_>>, limit: u32) -> u32 {
    let mut service = Service::Done;
    let mut calls = 0;
    loop {
        let kicked = drv.take_kick();
        if !kicked && !service.work_left() {
            return calls;
        }
        core.device().this_call.set(0);
        service = if kicked { core.notify(0) } else { core.poll() };
        calls += 1;
        assert!(
            core.device().this_call.get() <= core.budget(),
            "a call took {} chains, budget {}",
            core.device().this_call.get(),
            core.budget()
        );
        assert!(calls < limit, "no end to the calls");
    }
}

fn features(packed: bool, event_idx: bool, indirect: bool) -> Features {
    let mut f = Features::empty();
    f.set(Features::RING_PACKED, packed);
    f.set(Features::EVENT_IDX, event_idx);
    f.set(Features::INDIRECT_DESC, indirect);
    f
}

// virtio 1.4 §"Available Buffer Notification Suppression" (EVENT_IDX): the
// driver notifies only when its new index passes `avail_event`. A driver
// that adds one buffer during every publish, for 1000 rounds, is served to
// the last buffer: every queue the device took from is re-armed with the
// re-check, and a call that stops on its budget says so.
#[test]
fn a_buffer_added_during_every_publish_is_served_for_1000_rounds() {
    // Miri checks the memory accesses, not the count: fewer rounds there.
    let rounds = if cfg!(miri) { 10 } else { 1000 };
    for packed in [false, true] {
        for indirect in [false, true] {
            for budget in [1, 3, 64] {
                let mut ram = vec![0u64; MEM / 8];
                let mem = Region::new(0, ram.as_mut_bytes()).unwrap();
                let f = features(packed, true, indirect);
                let drv = BusyDriver::new(&mem, RING, 16, DATA, f, indirect).unwrap();
                let mut core = live_core(&drv, f);
                core.set_budget(budget);
                drv.set_schedule(Schedule::Never, 1);
                drv.step().unwrap();
                drv.set_schedule(Schedule::EveryStore, rounds);
                settle(&mut core, &drv, 100_000);
                drv.collect().unwrap();
                assert_eq!(drv.made(), rounds + 1, "packed {packed} budget {budget}");
                assert_eq!(drv.used(), drv.made(), "packed {packed} budget {budget}");
                assert!(core.is_live());
            }
        }
    }
}

// A driver that refills without end cannot keep one call running: each
// call returns within its budget, reporting work left.
#[test]
fn a_driver_that_refills_without_end_cannot_hold_a_call() {
    for packed in [false, true] {
        let mut ram = vec![0u64; MEM / 8];
        let mem = Region::new(0, ram.as_mut_bytes()).unwrap();
        let f = features(packed, true, false);
        let drv = BusyDriver::new(&mem, RING, 8, DATA, f, false).unwrap();
        let mut core = live_core(&drv, f);
        core.set_budget(5);
        drv.set_schedule(Schedule::Never, 1);
        drv.step().unwrap();
        drv.set_schedule(Schedule::EveryStore, u32::MAX);
        assert!(drv.take_kick());
        let calls = if cfg!(miri) { 5 } else { 100 };
        for i in 0..calls {
            core.device().this_call.set(0);
            let service = if i == 0 { core.notify(0) } else { core.poll() };
            assert_eq!(service, Service::WorkLeft);
            assert!(core.device().this_call.get() <= 5);
        }
        assert!(drv.used() >= 4 * (calls - 1), "served {}", drv.used());
    }
}

// Split ring, a hostile driver on another core: it puts head 0 back and
// bumps avail.idx every time the device reads it. One QueueNotify still
// ends within the budget (virtio 1.4 gives the device no limit, so the
// device sets its own).
#[test]
fn a_hostile_refill_of_the_same_head_is_bounded_too() {
    struct Refill<'a> {
        mem: Region<'a>,
        ring: virtio_core::queue::QueueConfig,
    }
    impl GuestMemory for Refill<'_> {
        fn read(&self, a: u64, b: &mut [u8]) -> Result<(), virtio_core::memory::MemoryError> {
            self.mem.read(a, b)
        }
        fn write(&self, a: u64, b: &[u8]) -> Result<(), virtio_core::memory::MemoryError> {
            self.mem.write(a, b)
        }
        fn load_u16_acquire(&self, a: u64) -> Result<u16, virtio_core::memory::MemoryError> {
            let v = self.mem.load_u16_acquire(a)?;
            if a == self.ring.driver_addr + 2 {
                // avail.idx: one more entry naming head 0 (wherever it is).
                let slot = self.ring.driver_addr + 4 + 2 * u64::from(v % self.ring.size);
                self.mem.write(slot, &0u16.to_le_bytes())?;
                self.mem.store_u16_release(a, v.wrapping_add(1))?;
                return Ok(v.wrapping_add(1));
            }
            Ok(v)
        }
        fn store_u16_release(
            &self,
            a: u64,
            v: u16,
        ) -> Result<(), virtio_core::memory::MemoryError> {
            self.mem.store_u16_release(a, v)
        }
        fn check_range(&self, a: u64, l: u64) -> Result<(), virtio_core::memory::MemoryError> {
            self.mem.check_range(a, l)
        }
    }
    let mut ram = vec![0u64; MEM / 8];
    let region = Region::new(0, ram.as_mut_bytes()).unwrap();
    let ring = virtio_core::driver::SplitDriver::layout(RING, 8);
    let d = virtio_core::spec::VirtqDesc {
        addr: DATA.into(),
        len: 16.into(),
        flags: 2.into(),
        next: 0.into(),
    };
    region.write_obj(ring.desc_addr, &d).unwrap();
    let mem = Refill { mem: region, ring };
    let mut core: DeviceCore<Echo, &Refill<'_>, 1, 64> = DeviceCore::new(Echo::default(), &mem);
    core.set_status(1 | 2);
    core.set_driver_features(Features::VERSION_1);
    core.set_status(1 | 2 | 8);
    core.set_queue(0, ring).unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_budget(16);
    core.set_status(1 | 2 | 4 | 8);
    for _ in 0..10 {
        core.device().this_call.set(0);
        let service = core.notify(0);
        assert_eq!(service, Service::WorkLeft);
        assert!(core.device().this_call.get() <= 16);
    }
    assert!(core.is_live());
}

/// One run of the concurrent model: the driver steps inside the device's
/// calls as `inside` says and between them as `outside` says (0: a driver
/// step, 1: deliver a pending kick, 2: the poll the contract asks for),
/// then adds the rest of `buffers` and everything owed is delivered.
/// Returns whether every buffer was served (and checks the bounds).
#[allow(clippy::too_many_arguments)]
fn run_model(
    packed: bool,
    event_idx: bool,
    indirect: bool,
    size: u16,
    budget: u32,
    buffers: u32,
    inside: &[u8],
    outside: &[u8],
) -> Result<(), String> {
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(0, ram.as_mut_bytes()).unwrap();
    let f = features(packed, event_idx, indirect);
    let drv = BusyDriver::new(&mem, RING, size, DATA, f, indirect).unwrap();
    let mut core = live_core(&drv, f);
    core.set_budget(budget);
    drv.set_schedule(Schedule::Choices(inside), buffers);
    let mut service = Service::Done;
    let over = |core: &Core<'_, '_>| {
        let n = core.device().this_call.get();
        if n > budget {
            Err(format!("a call took {n} chains, budget {budget}"))
        } else {
            Ok(())
        }
    };
    for &what in outside {
        core.device().this_call.set(0);
        match what {
            0 => drv.step().map_err(|e| e.to_string())?,
            1 if drv.take_kick() => service = core.notify(0),
            _ if service.work_left() => service = core.poll(),
            _ => {}
        }
        over(&core)?;
    }
    // The driver adds the rest; after each step (and at the end)
    // everything owed is delivered: pending kicks, and polls while a call
    // reports work left.
    let mut stuck = 0;
    loop {
        loop {
            let kicked = drv.take_kick();
            if !kicked && !service.work_left() {
                break;
            }
            core.device().this_call.set(0);
            service = if kicked { core.notify(0) } else { core.poll() };
            over(&core)?;
        }
        if drv.made() >= buffers || stuck >= 4 {
            break;
        }
        let before = drv.made();
        drv.step().map_err(|e| e.to_string())?;
        stuck = if drv.made() == before { stuck + 1 } else { 0 };
    }
    drv.collect().map_err(|e| e.to_string())?;
    if drv.used() != drv.made() || drv.made() != buffers {
        return Err(format!(
            "made {} of {buffers}, {} used: buffers left unserved",
            drv.made(),
            drv.used()
        ));
    }
    if !core.is_live() {
        return Err(format!("needs reset: {:?}", core.needs_reset_cause()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: if cfg!(miri) { 2 } else { 512 },
        failure_persistence: None,
        ..Config::default()
    })]

    // Random interleavings of a spec-following driver (inside the device's
    // calls, at its ring accesses, and between them) with a device that
    // follows the contract: split and packed, EVENT_IDX on and off,
    // indirect on and off, small rings and budgets.
    #[test]
    fn every_buffer_is_served_whatever_the_interleaving(
        packed: bool,
        event_idx: bool,
        indirect: bool,
        size_log in 1u32..4,
        budget in 1u32..6,
        buffers in 1u32..60,
        inside in proptest::collection::vec(any::<u8>(), 0..400),
        outside in proptest::collection::vec(0u8..3, 1..200),
    ) {
        let r = run_model(packed, event_idx, indirect, 1 << size_log, budget, buffers, &inside, &outside);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

// A bounded model check of the same model: every interleaving of 8
// driver-or-not choices inside the device's ring accesses, with every
// sequence of 3 outside steps, on a ring of 2 with budgets 1 and 2, both
// formats, EVENT_IDX on and off. Exhaustive within those bounds (8 x 256 x
// 27 runs), where the property test samples larger ones.
#[test]
fn every_small_interleaving_is_served() {
    if cfg!(miri) {
        return;
    }
    let mut runs = 0u32;
    for packed in [false, true] {
        for event_idx in [false, true] {
            for budget in [1, 2] {
                for bits in 0u32..256 {
                    let inside: Vec<u8> = (0..8).map(|i| ((bits >> i) & 1) as u8).collect();
                    for steps in 0u32..27 {
                        let outside: Vec<u8> =
                            (0..3).map(|i| ((steps / 3u32.pow(i)) % 3) as u8).collect();
                        if let Err(why) =
                            run_model(packed, event_idx, false, 2, budget, 4, &inside, &outside)
                        {
                            panic!(
                                "packed {packed} event_idx {event_idx} budget {budget} \
                                 inside {inside:?} outside {outside:?}: {why}"
                            );
                        }
                        runs += 1;
                    }
                }
            }
        }
    }
    assert_eq!(runs, 8 * 256 * 27);
}
