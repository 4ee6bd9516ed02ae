//! The watchdog with a fake clock: no test sleeps.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::vec::Vec;

use virtio_core::device::Service;
use virtio_core::spec::{DeviceStatus, Features};

use super::*;
use crate::harness::Harness;

#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<Duration>>);

impl FakeClock {
    fn advance(&self, secs: u64) {
        self.0.set(self.0.get() + Duration::from_secs(secs));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
}

#[derive(Clone, Default)]
struct Log(Rc<RefCell<Vec<Duration>>>);

impl ExpiryAction for Log {
    fn expired(&mut self, since_ping: Duration) {
        self.0.borrow_mut().push(since_ping);
    }
}

type H = Harness<Watchdog<FakeClock, Log>, 1>;

fn rig() -> (H, FakeClock, Log) {
    let clock = FakeClock::default();
    let log = Log::default();
    let dog = Watchdog::new(clock.clone(), log.clone()).with_queue_size(64);
    (Harness::new(dog, Features::empty(), &[0]), clock, log)
}

/// One ping as the de-facto driver sends it: one writable descriptor.
fn ping(h: &mut H) -> (u32, u8) {
    let buf = h.space(4);
    let used = h.request(0, &[], &[buf]);
    (used.len, h.read(buf)[0])
}

/// What an embedder's timer does: poll the core.
fn tick(h: &mut H) {
    let mut s = h.core.poll();
    while s.work_left() {
        s = h.core.poll();
    }
}

fn fired(log: &Log) -> usize {
    log.0.borrow().len()
}

#[test]
fn a_ping_is_acknowledged_and_arms_it() {
    let (mut h, clock, log) = rig();
    assert_eq!(h.core.device().deadline(), None);
    // Unarmed: time passes and nothing happens.
    clock.advance(1000);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
    assert!(!h.core.device().is_armed());
    assert_eq!(ping(&mut h), (4, PING_ACK));
    assert!(h.core.device().is_armed());
    assert_eq!(
        h.core.device().deadline(),
        Some(Duration::from_secs(1000) + DEFAULT_TIMEOUT)
    );
}

#[test]
fn pings_in_time_keep_it_quiet() {
    let (mut h, clock, log) = rig();
    for _ in 0..30 {
        assert_eq!(ping(&mut h).1, PING_ACK);
        clock.advance(19);
        tick(&mut h);
    }
    // Exactly the timeout is still in time.
    ping(&mut h);
    clock.advance(20);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
    assert_eq!(h.core.device().stats().pings, 31);
}

#[test]
fn a_missed_deadline_fires_once() {
    let (mut h, clock, log) = rig();
    ping(&mut h);
    clock.advance(21);
    tick(&mut h);
    assert_eq!(*log.0.borrow(), [Duration::from_secs(21)]);
    assert_eq!(h.core.device().deadline(), None);
    for _ in 0..10 {
        clock.advance(30);
        tick(&mut h);
    }
    assert_eq!(fired(&log), 1, "once per deadline");
    // A ping after it fired re-arms it.
    ping(&mut h);
    clock.advance(5);
    tick(&mut h);
    assert_eq!(fired(&log), 1);
    clock.advance(16);
    tick(&mut h);
    assert_eq!(fired(&log), 2);
    assert_eq!(h.core.device().stats().expiries, 2);
}

#[test]
fn a_late_ping_does_not_hide_the_miss() {
    let (mut h, clock, log) = rig();
    ping(&mut h);
    clock.advance(25);
    // The deadline passed before this ping arrived: the notification that
    // brings it checks first.
    ping(&mut h);
    assert_eq!(fired(&log), 1);
    clock.advance(10);
    tick(&mut h);
    assert_eq!(fired(&log), 1, "re-armed by the late ping");
}

#[test]
fn the_timeout_is_configurable() {
    let clock = FakeClock::default();
    let log = Log::default();
    let dog = Watchdog::new(clock.clone(), log.clone())
        .with_queue_size(64)
        .with_timeout(Duration::from_millis(1500));
    assert_eq!(dog.timeout(), Duration::from_millis(1500));
    let mut h: H = Harness::new(dog, Features::empty(), &[0]);
    ping(&mut h);
    clock.advance(1);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
    clock.advance(1);
    tick(&mut h);
    assert_eq!(fired(&log), 1);
}

#[test]
fn a_reset_disarms_it() {
    let (mut h, clock, log) = rig();
    ping(&mut h);
    h.core.set_status(0);
    assert!(!h.core.device().is_armed());
    clock.advance(100);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
    // The driver comes back and pings: armed again.
    h.core.set_status(1 | 2);
    h.core.set_driver_features(Features::VERSION_1);
    h.core.set_status(1 | 2 | 8);
    h.setup_queue(0);
    h.core.set_status(1 | 2 | 4 | 8);
    assert!(h.core.status().contains(DeviceStatus::DRIVER_OK));
    ping(&mut h);
    clock.advance(21);
    tick(&mut h);
    assert_eq!(fired(&log), 1);
}

#[test]
fn resume_restarts_the_timer() {
    let (mut h, clock, log) = rig();
    ping(&mut h);
    clock.advance(15);
    // Paused here for an hour.
    clock.advance(3600);
    h.core.device_mut().resume();
    clock.advance(15);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
    clock.advance(6);
    tick(&mut h);
    assert_eq!(fired(&log), 1);
}

#[test]
fn a_chain_that_is_not_a_ping_does_not_count() {
    let (mut h, clock, log) = rig();
    let out = h.put(&[0; 4]);
    let used = h.request(0, &[out], &[]);
    assert_eq!(used.len, 0);
    let out = h.put(&[0; 4]);
    let buf = h.space(4);
    let used = h.request(0, &[out], &[buf]);
    assert_eq!(used.len, 0);
    assert_eq!(h.read(buf), [0xee; 4], "nothing written");
    assert!(!h.core.device().is_armed());
    assert_eq!(h.core.device().stats().invalid, 2);
    clock.advance(100);
    tick(&mut h);
    assert_eq!(fired(&log), 0);
}

#[test]
fn a_ping_storm_cannot_starve_other_queues() {
    // Two devices served by one embedder loop, round robin: a guest
    // flooding the watchdog and a second device with one request.
    let (mut storm, clock, log) = rig();
    let (mut other, _, _) = rig();
    storm.core.set_budget(4);
    let bufs: Vec<_> = (0..32).map(|_| storm.space(1)).collect();
    for b in &bufs {
        storm.add(0, &[], &[*b]);
    }
    let waiting = other.space(1);
    other.add(0, &[], &[waiting]);

    // One round of the loop: each device gets one bounded call.
    let s = storm.core.notify(0);
    assert_eq!(s, Service::WorkLeft, "the budget ran out, work is left");
    assert_eq!(storm.core.device().stats().pings, 4, "exactly the budget");
    let o = other.core.notify(0);
    assert_eq!(o, Service::Done);
    assert_eq!(
        other.used(0).map(|u| u.len),
        Some(1),
        "served in the same round"
    );

    // The storm drains over later rounds, and expiry checks still run.
    let mut rounds = 1;
    let mut s = s;
    while s.work_left() {
        s = storm.core.poll();
        rounds += 1;
    }
    assert_eq!(rounds, 8);
    assert_eq!(storm.core.device().stats().pings, 32);
    let mut done = 0;
    while storm.used(0).is_some() {
        done += 1;
    }
    assert_eq!(done, 32);
    clock.advance(21);
    tick(&mut storm);
    assert_eq!(fired(&log), 1);
}
