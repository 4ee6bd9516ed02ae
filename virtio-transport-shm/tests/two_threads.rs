//! The device end and the driver end in two threads over one window, with
//! polled-flag doorbells: enumeration, bring-up and real I/O on an entropy
//! and a block device, then a reset and a second bring-up.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use virtio_core::driver::{PackedDriver, SplitDriver};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::{BlkReqHeader, Block, BlockOptions, RamDisk};
use virtio_devices::rng::Rng;
use virtio_devices::rng::test_utils::CountingRng as Counter;
use virtio_transport_shm::layout::{self, Bump};
use virtio_transport_shm::{DataArea, DeviceEnd, DriverEnd, FlagDoorbell, Layout, ShmDevice};
use zerocopy::IntoBytes;

const LAYOUT: Layout = match Layout::new(4, 64, 8192) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

#[test]
fn driver_and_device_in_two_threads() {
    let rounds: u8 = if cfg!(miri) { 2 } else { 200 };
    let mut backing = vec![0u64; LAYOUT.window_len() as usize / 8];
    let window = Region::new(0, backing.as_mut_bytes()).unwrap();
    layout::init(&window, &LAYOUT).unwrap();
    let to_device = AtomicBool::new(false);
    let to_driver = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let mut disk = vec![0u8; 16 * 512];

    thread::scope(|s| {
        let (window, stop, to_device, to_driver) = (&window, &stop, &to_device, &to_driver);
        let disk = &mut disk;
        let device = s.spawn(move || {
            let data = DataArea::new(window, &LAYOUT);
            let devices = (
                ShmDevice::<_, _, 1>::new(Rng::new(Counter(0)), data),
                ShmDevice::<_, _, 1>::new(
                    Block::new(RamDisk::new(disk), BlockOptions::default()),
                    data,
                ),
            );
            let bell = FlagDoorbell(to_driver);
            let mut dev = DeviceEnd::attach(window, LAYOUT, devices, bell).unwrap();
            let mine = FlagDoorbell(to_device);
            while !stop.load(Ordering::Acquire) {
                if mine.take() {
                    while dev.process().work_left() {}
                } else {
                    thread::yield_now();
                }
            }
            dev.stats()
        });

        let idle = || thread::yield_now();
        let mut drv: DriverEnd<_, _, _, 2> =
            DriverEnd::attach(window, LAYOUT, FlagDoorbell(to_device), idle).unwrap();
        assert_eq!(drv.devices().unwrap(), 0b11);
        assert_eq!(drv.device_info(0).unwrap().device_id.get(), 4);
        assert_eq!(drv.device_info(1).unwrap().device_id.get(), 2);
        let data = drv.data();
        let mut alloc = Bump::new(&LAYOUT);

        for _reset in 0..2 {
            // rng: a few requests, the bytes count up across them.
            let base = alloc.alloc(SplitDriver::layout_len(4), 16).unwrap();
            let rq = SplitDriver::layout(base, 4);
            let mut q = SplitDriver::new(&data, rq, Features::VERSION_1).unwrap();
            drv.bring_up(0, Features::empty(), &[rq]).unwrap();
            let buf = alloc.alloc(8, 8).unwrap();
            for _ in 0..rounds.min(4) {
                q.add(&data, &[], &[Segment { addr: buf, len: 8 }]).unwrap();
                if q.publish_avail(&data).unwrap() {
                    drv.notify(0, 0, 0).unwrap();
                }
                let used = loop {
                    if let Some(u) = q.pop_used(&data).unwrap() {
                        break u;
                    }
                    drv.wait_used(0, 0).unwrap();
                };
                assert_eq!(used.len, 8);
                let mut got = [0u8; 8];
                data.read(buf, &mut got).unwrap();
                assert_eq!(got[1], got[0].wrapping_add(1));
            }

            // block: write then read back `rounds` sectors.
            let base = alloc.alloc(SplitDriver::layout_len(8), 16).unwrap();
            let bq = SplitDriver::layout(base, 8);
            let mut q = SplitDriver::new(&data, bq, Features::VERSION_1).unwrap();
            drv.bring_up(1, Features::empty(), &[bq]).unwrap();
            let hdr = alloc.alloc(16, 16).unwrap();
            let sector = alloc.alloc(512, 16).unwrap();
            let status = alloc.alloc(1, 1).unwrap();
            for i in 0..rounds {
                for type_ in [1u32, 0] {
                    let h = BlkReqHeader {
                        type_: type_.into(),
                        reserved: 0.into(),
                        sector: u64::from(i % 16).into(),
                    };
                    data.write(hdr, h.as_bytes()).unwrap();
                    let (hs, ds, ss) = (
                        Segment { addr: hdr, len: 16 },
                        Segment {
                            addr: sector,
                            len: 512,
                        },
                        Segment {
                            addr: status,
                            len: 1,
                        },
                    );
                    if type_ == 1 {
                        data.write(sector, &[i; 512]).unwrap();
                        q.add(&data, &[hs, ds], &[ss]).unwrap();
                    } else {
                        data.write(sector, &[0; 512]).unwrap();
                        q.add(&data, &[hs], &[ds, ss]).unwrap();
                    }
                    if q.publish_avail(&data).unwrap() {
                        drv.notify(1, 0, 0).unwrap();
                    }
                    loop {
                        if q.pop_used(&data).unwrap().is_some() {
                            break;
                        }
                        drv.wait_used(1, 0).unwrap();
                    }
                    let mut st = [9u8];
                    data.read(status, &mut st).unwrap();
                    assert_eq!(st[0], 0);
                }
                let mut back = [0u8; 512];
                data.read(sector, &mut back).unwrap();
                assert!(back.iter().all(|b| *b == i));
            }
            // Reset both; the second round sets everything up again.
            assert_eq!(drv.set_status(0, 0).unwrap(), 0);
            assert_eq!(drv.set_status(1, 0).unwrap(), 0);
            alloc = Bump::new(&LAYOUT);
        }
        assert_eq!(drv.stray_messages(), 0);
        stop.store(true, Ordering::Release);
        let stats = device.join().unwrap();
        assert_eq!(stats.discarded(), 0);
        assert_eq!(stats.ring_errors, 0);
        assert!(stats.events_used > 0);
    });
}

/// Liveness with real threads: a driver thread keeps the ring full for a
/// few thousand requests (EVENT_IDX, so it notifies only when the device
/// asked), the device thread runs `process` on each doorbell and again
/// while it returns WorkLeft, with a budget of 2 chains per call. Every
/// request completes within a bounded time.
#[test]
fn a_busy_driver_thread_is_served_to_the_end() {
    use std::time::{Duration, Instant};
    let total: u32 = if cfg!(miri) { 20 } else { 5000 };
    for packed in [false, true] {
        let mut backing = vec![0u64; LAYOUT.window_len() as usize / 8];
        let window = Region::new(0, backing.as_mut_bytes()).unwrap();
        layout::init(&window, &LAYOUT).unwrap();
        let to_device = AtomicBool::new(false);
        let to_driver = AtomicBool::new(false);
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            let (window, stop, to_device, to_driver) = (&window, &stop, &to_device, &to_driver);
            s.spawn(move || {
                let data = DataArea::new(window, &LAYOUT);
                let mut rng = ShmDevice::<_, _, 1, 8>::new(Rng::new(Counter(0)), data);
                rng.core_mut().set_budget(2);
                let bell = FlagDoorbell(to_driver);
                let mut dev = DeviceEnd::attach(window, LAYOUT, (rng,), bell).unwrap();
                let mine = FlagDoorbell(to_device);
                let mut service = virtio_core::device::Service::Done;
                while !stop.load(Ordering::Acquire) {
                    if mine.take() || service.work_left() {
                        service = dev.process();
                    } else {
                        thread::yield_now();
                    }
                }
            });
            let idle = || thread::yield_now();
            let mut drv: DriverEnd<_, _, _, 2> =
                DriverEnd::attach(window, LAYOUT, FlagDoorbell(to_device), idle).unwrap();
            let data = drv.data();
            let mut alloc = Bump::new(&LAYOUT);
            let mut features = Features::VERSION_1 | Features::EVENT_IDX;
            features.set(Features::RING_PACKED, packed);
            let base = alloc.alloc(0x200, 16).unwrap();
            let bufs = alloc.alloc(8 * 8, 8).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let (mut made, mut done) = (0u32, 0u32);
            let mut ring = if packed {
                let cfg = PackedDriver::<8>::layout(base, 8);
                let q = PackedDriver::<8>::new(&data, cfg, features).unwrap();
                drv.bring_up(0, features, &[cfg]).unwrap();
                Ring::Packed(q)
            } else {
                let cfg = SplitDriver::layout(base, 8);
                let q = SplitDriver::new(&data, cfg, features).unwrap();
                drv.bring_up(0, features, &[cfg]).unwrap();
                Ring::Split(q)
            };
            // Collects what came back, then fills the ring; true when the
            // ring says the device asked to be notified.
            let mut add_and_collect = |made: &mut u32, done: &mut u32| {
                while let Some(u) = ring.pop_used(&data) {
                    assert_eq!(u.len, 8);
                    *done += 1;
                }
                let mut kick = false;
                while *made < total && ring.num_free() > 0 {
                    let at = bufs + 8 * u64::from(*made % 8);
                    kick |= ring.add(&data, Segment { addr: at, len: 8 });
                    *made += 1;
                }
                kick
            };
            while done < total {
                assert!(Instant::now() < deadline, "stalled at {done} of {total}");
                if add_and_collect(&mut made, &mut done) {
                    drv.notify(0, 0, 0).unwrap();
                }
                let _ = drv.poll_events();
                thread::yield_now();
            }
            stop.store(true, Ordering::Release);
        });
    }
}

enum Ring {
    Split(SplitDriver),
    Packed(PackedDriver<8>),
}

impl Ring {
    fn num_free(&self) -> u16 {
        match self {
            Self::Split(q) => q.num_free(),
            Self::Packed(q) => q.num_free(),
        }
    }
    /// Adds one writable buffer and publishes it; true if the device asked
    /// to be notified.
    fn add<M: GuestMemory>(&mut self, mem: &M, buf: Segment) -> bool {
        match self {
            Self::Split(q) => {
                q.add(mem, &[], &[buf]).unwrap();
                q.publish_avail(mem).unwrap()
            }
            Self::Packed(q) => {
                q.add(mem, &[], &[buf]).unwrap();
                q.publish_avail(mem).unwrap()
            }
        }
    }
    fn pop_used<M: GuestMemory>(&mut self, mem: &M) -> Option<virtio_core::driver::Used> {
        match self {
            Self::Split(q) => q.pop_used(mem).unwrap(),
            Self::Packed(q) => q.pop_used(mem).unwrap(),
        }
    }
}
