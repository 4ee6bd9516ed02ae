//! The watchdog fed an arbitrary sequence of pings, chains that are not
//! pings, clock steps, notifications, timer polls and device resets,
//! under a small budget, with a fake clock, checked against a reference
//! model of the de-facto protocol.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! a ping comes back with the byte 1 at its start and used length = its
//! length, anything else with used length 0 and its buffers untouched;
//! every chain comes back in order; the expiry action runs exactly when
//! the model says (once per missed deadline, never while disarmed).
#![no_main]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::watchdog::{Clock, ExpiryAction, PING_ACK, Watchdog};
use virtio_fuzz::{DATA, Guarded, MEM_LEN, WatchdogInput, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;

#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<Duration>>);

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
}

#[derive(Clone, Default)]
struct Count(Rc<RefCell<u32>>);

impl ExpiryAction for Count {
    fn expired(&mut self, _since: Duration) {
        *self.0.borrow_mut() += 1;
    }
}

/// The protocol as appendix A describes it.
#[derive(Default)]
struct Model {
    last: Option<Duration>,
    fired: bool,
    expiries: u32,
}

impl Model {
    fn check(&mut self, now: Duration, timeout: Duration) {
        if let Some(at) = self.last
            && !self.fired
            && now - at > timeout
        {
            self.fired = true;
            self.expiries += 1;
        }
    }
}

struct Pending {
    id: u16,
    ping: bool,
    buf: Segment,
    readable: Option<Segment>,
}

fn bring_up<'m>(
    core: &mut DeviceCore<Watchdog<FakeClock, Count>, &'m Guarded<'m>, 1>,
    mem: &'m Guarded<'m>,
) -> SplitDriver {
    core.set_status(0);
    let features = core.device_features() - Features::RING_PACKED;
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let cfg = SplitDriver::layout(0, QSIZE);
    // A fresh ring: clear what the last session left.
    mem.raw().write(0, &[0u8; 0x2800]).expect("ring area");
    let drv = SplitDriver::new(mem, cfg, core.negotiated_features()).expect("ring");
    core.set_queue_size(0, u32::from(QSIZE)).expect("size");
    core.set_queue_area(0, RingArea::Descriptors, cfg.desc_addr)
        .expect("desc");
    core.set_queue_area(0, RingArea::Driver, cfg.driver_addr)
        .expect("driver");
    core.set_queue_area(0, RingArea::Device, cfg.device_addr)
        .expect("device");
    core.set_queue_ready(0, true).expect("ready");
    core.set_status(1 | 2 | 4 | 8);
    drv
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = WatchdogInput::parse(data) else {
        return;
    };
    let timeout = Duration::from_secs(u64::from(input.options >> 2) + 1);
    let clock = FakeClock::default();
    let count = Count::default();
    let dog = Watchdog::new(clock.clone(), count.clone())
        .with_timeout(timeout)
        .with_queue_size(QSIZE);
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut core: DeviceCore<_, &Guarded<'_>, 1> = DeviceCore::new(dog, &mem);
    core.set_budget(1 + u32::from(input.options & 3));
    let mut drv = bring_up(&mut core, &mem);
    let mut model = Model::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut at = DATA;

    for (kind, arg) in input.ops {
        match kind {
            0 | 1 => {
                if at + 64 > MEM_LEN as u64 || pending.len() >= usize::from(QSIZE) {
                    continue;
                }
                let ping = kind == 0;
                let len = if ping {
                    u32::from(arg % 8) + 1
                } else {
                    u32::from(arg % 3)
                };
                let b = Segment {
                    addr: at,
                    len: len.max(1),
                };
                mem.raw().write(at, &[0xa5; 8]).expect("buffer");
                at += 16;
                let readable = (!ping).then(|| {
                    let r = Segment { addr: at, len: 4 };
                    mem.raw().write(at, &[0x5a; 4]).expect("buffer");
                    at += 16;
                    r
                });
                let writable: Vec<Segment> = if ping || len > 0 { vec![b] } else { vec![] };
                let readable_segs: Vec<Segment> = readable.into_iter().collect();
                let Ok(id) = drv.add(&mem, &readable_segs, &writable) else {
                    continue;
                };
                drv.publish_avail(&mem).expect("publish");
                pending.push(Pending {
                    id,
                    ping,
                    buf: b,
                    readable,
                });
            }
            2 => clock
                .0
                .set(clock.0.get() + Duration::from_secs(u64::from(arg))),
            3 => {
                let now = clock.0.get();
                model.check(now, timeout);
                let mut s = core.notify(0);
                let mut rounds = 0;
                while s.work_left() {
                    rounds += 1;
                    assert!(rounds < 100, "the device never finishes");
                    s = core.poll();
                }
                let mut got = Vec::new();
                while let Some(u) = drv.pop_used(&mem).expect("valid used") {
                    got.push(u);
                }
                assert_eq!(got.len(), pending.len(), "every chain comes back");
                for (u, p) in got.iter().zip(&pending) {
                    assert_eq!(u.id, p.id, "in order");
                    let mut first = [0u8];
                    mem.raw().read(p.buf.addr, &mut first).expect("buffer");
                    if p.ping {
                        assert_eq!(u.len, p.buf.len);
                        assert_eq!(first[0], PING_ACK);
                    } else {
                        assert_eq!(u.len, 0);
                        assert_eq!(first[0], 0xa5, "a non-ping was written");
                    }
                    if let Some(r) = p.readable {
                        let mut b = [0u8; 4];
                        mem.raw().read(r.addr, &mut b).expect("readable");
                        assert_eq!(b, [0x5a; 4], "a readable buffer was written");
                    }
                }
                if pending.iter().any(|p| p.ping) {
                    model.last = Some(now);
                    model.fired = false;
                }
                pending.clear();
                at = DATA;
            }
            _ if arg == 0xff => {
                drv = bring_up(&mut core, &mem);
                model.last = None;
                model.fired = false;
                pending.clear();
                at = DATA;
            }
            _ => {
                model.check(clock.0.get(), timeout);
                let mut s = core.poll();
                while s.work_left() {
                    s = core.poll();
                }
                // A poll may also serve queued pings left by the budget.
                if !pending.is_empty() {
                    continue;
                }
            }
        }
        assert_eq!(
            *count.0.borrow(),
            model.expiries,
            "the action ran when the model did not say so (or did not run)"
        );
    }
});
