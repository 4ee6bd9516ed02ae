//! Unit tests: one thread, the device end run directly or from the driver
//! end's idle hook. Clauses cited are from the virtio-msg draft
//! (`transport-msg.tex`, revision 1) unless marked virtio 1.4.
#![allow(clippy::arithmetic_side_effects)]

use core::cell::RefCell;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use virtio_core::device::Service;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, MemoryError, Region};
use virtio_core::queue::{QueueConfig, Segment};
use virtio_core::spec::{DeviceStatus, Features};
use virtio_devices::block::{Block, BlockOptions, RamDisk};
use virtio_devices::rng::Rng;
use zerocopy::IntoBytes;

use crate::bus::Discard;
use crate::device::Refusal;
use crate::layout::{self, Bump, offset};
use crate::msg::{self, MsgError};
use crate::ring::{Consumer, Direction, Producer, RingError, Slot};
use crate::*;
use virtio_devices::rng::test_utils::CountingRng as Counter;

const LAYOUT: Layout = match Layout::new(4, 64, 16384) {
    Ok(l) => l,
    Err(_) => panic!("test layout"),
};
/// Guard bytes on each side of the window.
const GUARD: usize = 64;
const GUARD_BYTE: u8 = 0xa5;

/// Window memory with guard bytes around it.
fn backing() -> Vec<u64> {
    let words = (LAYOUT.window_len() as usize + 2 * GUARD) / 8;
    let mut v = vec![0u64; words];
    let bytes = v.as_mut_bytes();
    let n = bytes.len();
    bytes[..GUARD].fill(GUARD_BYTE);
    bytes[n - GUARD..].fill(GUARD_BYTE);
    v
}

fn window(buf: &mut [u64]) -> Region<'_> {
    let bytes = buf.as_mut_bytes();
    let n = bytes.len();
    Region::new(0, &mut bytes[GUARD..n - GUARD]).unwrap()
}

fn guards_intact(buf: &[u64]) -> bool {
    let bytes = buf.as_bytes();
    let n = bytes.len();
    bytes[..GUARD].iter().all(|b| *b == GUARD_BYTE)
        && bytes[n - GUARD..].iter().all(|b| *b == GUARD_BYTE)
}

/// The device end on `$w`: rng as device 0 (vendor 0x1234), a block device
/// on `$disk` as device 1.
macro_rules! device_end {
    ($w:expr, $disk:expr) => {{
        let data = DataArea::new($w, &LAYOUT);
        let rng = ShmDevice::<_, _, 1>::new(Rng::new(Counter(0)), data).with_vendor_id(0x1234);
        let blk = ShmDevice::<_, _, 1>::new(
            Block::new(RamDisk::new($disk), BlockOptions::default()),
            data,
        );
        DeviceEnd::create($w, LAYOUT, (rng, blk), Polled).unwrap()
    }};
}

/// A raw driver: sends bytes, collects whatever comes back.
struct Raw {
    tx: Producer,
    rx: Consumer,
}

impl Raw {
    fn new() -> Self {
        Self {
            tx: Producer::new(&LAYOUT, Direction::ToDevice),
            rx: Consumer::new(&LAYOUT, Direction::ToDriver),
        }
    }
    fn send(&mut self, w: &Region<'_>, bytes: &[u8]) {
        self.tx.push(w, bytes).unwrap();
    }
    fn recv(&mut self, w: &Region<'_>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut slot = Slot::default();
        while self.rx.pop(w, &mut slot).unwrap().is_some() {
            let size = u16::from_le_bytes([slot.bytes()[6], slot.bytes()[7]]) as usize;
            out.push(slot.bytes()[..size].to_vec());
        }
        out
    }
}

fn message(type_: u8, id: u8, dev: u16, token: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![type_, id];
    m.extend_from_slice(&dev.to_le_bytes());
    m.extend_from_slice(&token.to_le_bytes());
    m.extend_from_slice(&((8 + payload.len()) as u16).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

fn le32s(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

// ---- layout, data area, rings -------------------------------------------

#[test]
fn layout_rejects_bad_sizes() {
    assert_eq!(Layout::new(3, 64, 64), Err(LayoutError::Slots(3)));
    assert_eq!(Layout::new(0, 64, 64), Err(LayoutError::Slots(0)));
    assert_eq!(Layout::new(4, 40, 64), Err(LayoutError::SlotSize(40)));
    assert_eq!(Layout::new(4, 60, 64), Err(LayoutError::SlotSize(60)));
    assert_eq!(Layout::new(4, 288, 64), Err(LayoutError::SlotSize(288)));
    assert_eq!(Layout::new(4, 64, 0), Err(LayoutError::DataLen(0)));
    assert_eq!(Layout::new(4, 64, u32::MAX - 7), Err(LayoutError::TooLarge));
    let l = Layout::new(4, 64, 4096).unwrap();
    assert_eq!(l.to_device_off(), 64);
    assert_eq!(l.to_driver_off(), 64 + 256);
    assert_eq!(l.data_off(), 576);
    assert_eq!(l.window_len(), 576 + 4096);
}

#[test]
fn header_is_written_and_checked() {
    let mut buf = backing();
    let w = window(&mut buf);
    assert_eq!(layout::check(&w, &LAYOUT), Err(AttachError::NoMagic(0)));
    layout::init(&w, &LAYOUT).unwrap();
    layout::check(&w, &LAYOUT).unwrap();
    let mut magic = [0u8; 4];
    w.read(0, &mut magic).unwrap();
    assert_eq!(&magic, b"VMSG");
    let other = Layout::new(2, 128, 16384).unwrap();
    assert_eq!(other.window_len(), LAYOUT.window_len());
    assert_eq!(
        layout::check(&w, &other),
        Err(AttachError::HeaderMismatch {
            offset: offset::SLOT_SIZE
        })
    );
    let small = Layout::new(4, 64, 1 << 20).unwrap();
    assert!(matches!(
        layout::init(&w, &small),
        Err(AttachError::WindowTooSmall { .. })
    ));
    assert!(guards_intact(&buf));
}

#[test]
fn data_area_serves_only_the_data_area() {
    let mut buf = backing();
    let w = window(&mut buf);
    let data = DataArea::new(&w, &LAYOUT);
    let start = LAYOUT.data_off();
    let end = start + LAYOUT.data_len();
    let mut b = [0u8; 8];
    assert!(data.read(start, &mut b).is_ok());
    assert!(data.write(end - 8, &b).is_ok());
    // The header, the message rings, the byte before and after the area.
    for addr in [
        0,
        offset::TO_DEVICE_PROD,
        LAYOUT.to_driver_off(),
        start - 1,
        end - 7,
        end,
    ] {
        assert!(
            matches!(
                data.read(addr, &mut b),
                Err(MemoryError::OutOfBounds { .. })
            ),
            "{addr:#x}"
        );
        assert!(data.write(addr, &b).is_err());
    }
    assert!(data.load_u16_acquire(offset::TO_DEVICE_PROD).is_err());
    assert!(data.store_u16_release(end, 1).is_err());
    assert!(matches!(
        data.read(u64::MAX, &mut b),
        Err(MemoryError::Overflow { .. })
    ));
    assert!(data.check_range(start, LAYOUT.data_len() + 1).is_err());
}

#[test]
fn ring_fills_and_recovers_from_a_corrupt_index() {
    let mut buf = backing();
    let w = window(&mut buf);
    layout::init(&w, &LAYOUT).unwrap();
    let mut p = Producer::new(&LAYOUT, Direction::ToDevice);
    let mut c = Consumer::new(&LAYOUT, Direction::ToDevice);
    let m = message(0, 2, 0, 1, &[]);
    for _ in 0..4 {
        p.push(&w, &m).unwrap();
    }
    assert_eq!(p.push(&w, &m), Err(RingError::Full));
    assert_eq!(p.push(&w, &[0; 4]), Err(RingError::BadLength(4)));
    assert_eq!(p.push(&w, &[0; 65]), Err(RingError::BadLength(65)));
    let mut slot = Slot::default();
    assert!(c.pop(&w, &mut slot).unwrap().unwrap().was_full);
    assert_eq!(&slot.bytes()[..8], &m[..]);
    // A producer index more than a ring ahead: everything is dropped and
    // the consumer catches up.
    w.store_u16_release(offset::TO_DEVICE_PROD, 100).unwrap();
    assert!(matches!(
        c.pop(&w, &mut slot),
        Err(RingError::Corrupt { peer: 100, .. })
    ));
    assert_eq!(c.pop(&w, &mut slot), Ok(None));
    assert_eq!(w.load_u16_acquire(offset::TO_DEVICE_CONS).unwrap(), 100);
}

// ---- discarded messages ---------------------------------------------------

#[test]
fn malformed_messages_are_discarded_silently_and_counted() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    let cases: Vec<(Vec<u8>, MsgError)> = vec![
        // msg_size below 8 and above the slot.
        (
            {
                let mut m = message(0, 2, 0, 1, &[]);
                m[6] = 7;
                m
            },
            MsgError::BadSize(7),
        ),
        (
            {
                let mut m = message(0, 2, 0, 1, &[]);
                m[6] = 65;
                m
            },
            MsgError::BadSize(65),
        ),
        // A request with token 0; an event with a token.
        (message(0, 2, 0, 0, &[]), MsgError::ZeroToken),
        (
            message(0, 0x41, 0, 5, &le32s(&[0, 0])),
            MsgError::EventToken(5),
        ),
        // A response; device-only and unknown ids.
        (message(1, 2, 0, 1, &[]), MsgError::UnexpectedResponse),
        (
            message(0, 0x42, 0, 0, &le32s(&[0])),
            MsgError::UnsupportedTransport(0x42),
        ),
        (
            message(0, 0x0d, 0, 1, &[]),
            MsgError::UnsupportedTransport(0x0d),
        ),
        (
            message(2, 0x40, 0, 0, &[0; 4]),
            MsgError::UnsupportedBus(0x40),
        ),
        // A bus message with a dev_num.
        (message(2, 3, 1, 1, &le32s(&[7])), MsgError::BusDevNum(1)),
        // Truncated payloads.
        (
            message(0, 3, 0, 1, &le32s(&[0])),
            MsgError::Truncated {
                msg_id: 3,
                need: 8,
                have: 4,
            },
        ),
        (
            message(0, 4, 0, 1, &le32s(&[0, 2, 1])),
            MsgError::Truncated {
                msg_id: 4,
                need: 16,
                have: 12,
            },
        ),
        (
            message(0, 6, 0, 1, &le32s(&[0, 0, 8, 0])),
            MsgError::Truncated {
                msg_id: 6,
                need: 20,
                have: 16,
            },
        ),
    ];
    for (i, (m, want)) in cases.iter().enumerate() {
        raw.send(&w, m);
        while dev.process().work_left() {}
        // virtio-msg "Error Handling (Device)": a malformed or unsupported
        // transport message MUST be discarded without producing further
        // protocol traffic.
        assert!(raw.recv(&w).is_empty(), "case {i}");
        let s = dev.stats();
        assert_eq!(s.malformed, i as u32 + 1, "case {i}");
        assert_eq!(s.last_discard, Some(Discard::Malformed(*want)), "case {i}");
    }
    assert_eq!(dev.stats().responses, 0);
}

#[test]
fn refused_and_absent_device_messages_are_discarded() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    // A device number not on the bus.
    raw.send(&w, &message(0, 7, 9, 1, &[]));
    // Config past the config space (rng has none).
    raw.send(&w, &message(0, 5, 0, 2, &le32s(&[0, 4])));
    // Status above 0xff.
    raw.send(&w, &message(0, 8, 0, 3, &le32s(&[0x100])));
    // SET_VQUEUE of a queue that does not exist, and with size 0.
    raw.send(
        &w,
        &message(0, 0x0a, 0, 4, &le32s(&[1, 0, 8, 0, 0, 0, 0, 0, 0, 0])),
    );
    while dev.process().work_left() {}
    raw.send(
        &w,
        &message(0, 0x0a, 0, 5, &le32s(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    );
    // RESET_VQUEUE without RING_RESET negotiated.
    raw.send(&w, &message(0, 0x0b, 0, 6, &le32s(&[0])));
    // EVENT_AVAIL for a queue that does not exist ("Error Handling (Bus)":
    // no error response to an event, MUST NOT).
    raw.send(&w, &message(0, 0x41, 0, 0, &le32s(&[3, 0])));
    // GET_DEVICE_FEATURES whose answer cannot fit a slot ("Respecting Bus
    // Limits (Device)": responses MUST NOT exceed the maximum message size).
    raw.send(&w, &message(0, 3, 0, 8, &le32s(&[0, 100])));
    while dev.process().work_left() {}
    assert!(raw.recv(&w).is_empty());
    let s = dev.stats();
    assert_eq!(s.no_such_device, 1);
    assert_eq!(s.refused, 7);
    assert_eq!(s.discarded(), 8);
    assert_eq!(
        s.last_discard,
        Some(Discard::Refused {
            dev_num: 0,
            msg_id: 3,
            why: Refusal::AnswerTooLarge
        })
    );
}

// ---- the mandatory transport messages -------------------------------------

#[test]
fn reserved_type_bits_are_ignored() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    // "Common Message Format": type bits 2..7 MUST be zero when sent and
    // receivers MUST ignore them.
    raw.send(&w, &message(0xfc, 7, 0, 3, &[]));
    raw.send(&w, &message(0xfe, 3, 0, 4, &le32s(&[9])));
    while dev.process().work_left() {}
    let out = raw.recv(&w);
    assert_eq!(out.len(), 2);
    assert_eq!(
        &out[0][..6],
        &[1, 7, 0, 0, 3, 0],
        "answered as GET_DEVICE_STATUS"
    );
    assert_eq!(
        &out[1],
        &message(3, 3, 0, 4, &le32s(&[9])),
        "answered as PING"
    );
}

#[test]
fn device_info_is_accurate_and_absent_devices_read_zero() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    raw.send(&w, &message(0, 2, 0, 0x77, &[]));
    raw.send(&w, &message(0, 2, 1, 0x78, &[]));
    raw.send(&w, &message(0, 2, 5, 0x79, &[]));
    while dev.process().work_left() {}
    let out = raw.recv(&w);
    assert_eq!(out.len(), 3);
    // Correlation: a response MUST echo token and dev_num; type bit 0 set.
    assert_eq!(&out[0][..6], &[1, 2, 0, 0, 0x77, 0]);
    assert_eq!(&out[1][..6], &[1, 2, 1, 0, 0x78, 0]);
    let p = &out[0][8..];
    // Compliance, device side: GET_DEVICE_INFO MUST be accurate.
    assert_eq!(u32_at(p, 0), 4, "entropy");
    assert_eq!(u32_at(p, 4), 0x1234, "vendor");
    // "The number of feature bits MUST be a multiple of 32."
    assert_eq!(u32_at(p, 8) % 32, 0);
    assert_eq!(u32_at(p, 12), 0, "no config");
    assert_eq!(u32_at(p, 16), 1, "one queue");
    assert_eq!(u32_at(&out[1][8..], 0), 2, "block");
    assert_eq!(u32_at(&out[1][8..], 12), 96, "block config size");
    // GET_DEVICE_INFO is the only message for an inactive device: zeros.
    assert_eq!(out[2].len(), 8 + 24);
    assert!(out[2][8..].iter().all(|b| *b == 0));
}

/// Runs `f` with a driver end whose waits run the device end.
fn with_driver(
    f: impl FnOnce(
        &Region<'_>,
        &RefCell<DeviceEnd<'_, Region<'_>, TestDevices<'_>, Polled>>,
        &mut TestDriver<'_, '_>,
    ),
) {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    {
        let w = window(&mut buf);
        let dev = RefCell::new(device_end!(&w, &mut disk));
        let idle: &dyn Fn() = &|| {
            while dev.borrow_mut().process().work_left() {}
        };
        let mut drv = DriverEnd::attach(&w, LAYOUT, Polled, idle)
            .unwrap()
            .with_max_waits(4);
        f(&w, &dev, &mut drv);
    }
    assert!(guards_intact(&buf));
}

type Data<'w> = DataArea<'w, Region<'w>>;
type TestDevices<'w> = (
    ShmDevice<Rng<Counter>, Data<'w>, 1>,
    ShmDevice<Block<RamDisk<'w>>, Data<'w>, 1>,
);
type TestDriver<'w, 'f> = DriverEnd<'w, Region<'w>, Polled, &'f dyn Fn(), 4>;

#[test]
fn features_are_negotiated_in_blocks() {
    with_driver(|_, dev, drv| {
        let offered = drv.device_features(1).unwrap();
        assert!(offered.contains(Features::VERSION_1 | Features::RING_RESET));
        // "Feature Blocks (Device)": blocks beyond the device's features
        // MUST read as zero.
        let a = drv.call(false, 1, 3, &[&le32s(&[1, 4])]).unwrap();
        let p = a.payload();
        assert_eq!(u32_at(p, 0), 1);
        assert_eq!(u32_at(p, 4), 4);
        assert_eq!(u32_at(p, 8), (offered.bits() >> 32) as u32);
        assert_eq!(&p[12..24], &[0; 12]);
        // A feature the device did not offer: FEATURES_OK comes back clear.
        drv.set_status(1, 3).unwrap();
        drv.set_driver_features(1, Features::VERSION_1 | Features::from_bits_retain(1 << 23))
            .unwrap();
        assert_eq!(drv.set_status(1, 0xb).unwrap() & 8, 0);
        // A feature bit above 63 (block 2): refused the same way.
        drv.set_status(1, 0).unwrap();
        drv.set_status(1, 3).unwrap();
        drv.call(false, 1, 4, &[&le32s(&[2, 1, 1])]).unwrap();
        drv.set_driver_features(1, Features::VERSION_1).unwrap();
        assert_eq!(drv.set_status(1, 0xb).unwrap() & 8, 0);
        // After a reset, an offered set is accepted.
        drv.set_status(1, 0).unwrap();
        drv.set_status(1, 3).unwrap();
        drv.set_driver_features(1, Features::VERSION_1 | Features::RING_RESET)
            .unwrap();
        assert_eq!(drv.set_status(1, 0xb).unwrap(), 0xb);
        assert_eq!(
            dev.borrow().devices().1.core().negotiated_features(),
            Features::VERSION_1 | Features::RING_RESET
        );
    });
}

#[test]
fn config_generation_rule() {
    with_driver(|_, dev, drv| {
        let mut cap = [0u8; 8];
        let generation = drv.get_config(1, 0, &mut cap).unwrap();
        assert_eq!(u64::from_le_bytes(cap), 8, "4096 bytes = 8 sectors");
        // A config read larger than a slot's payload is split by the
        // driver end; the device serves each piece.
        let mut all = [0u8; 96];
        drv.get_config(1, 0, &mut all).unwrap();
        assert_eq!(all[..8], cap);
        // "Configuration Generation Count (Device)": a SET_CONFIG whose
        // generation does not match MUST be rejected.
        assert_eq!(
            drv.set_config(1, generation.wrapping_add(1), 32, &[1])
                .unwrap(),
            None
        );
        // With the current generation it is accepted (the answer carries the
        // bytes read back; writeback is read-only here so it reads 0).
        assert_eq!(
            drv.set_config(1, generation, 32, &[1]).unwrap(),
            Some(generation)
        );
        // The device changes its config: the generation MUST be incremented
        // before the change is visible, and the device MUST signal the
        // change with EVENT_CONFIG ("Configuration Changes During
        // Operation"), each carrying a unique generation.
        drv.bring_up(1, Features::empty(), &[]).unwrap();
        {
            let mut d = dev.borrow_mut();
            d.devices_mut().1.core_mut().config_changed();
            let _ = d.poll();
        }
        drv.poll_events().unwrap();
        let (status, new_gen) = drv.take_config_event(1).unwrap();
        assert_eq!(status, 0xf);
        assert_eq!(new_gen, generation.wrapping_add(1));
        assert_eq!(drv.get_config(1, 0, &mut cap).unwrap(), new_gen);
        // The old generation is now stale.
        assert_eq!(drv.set_config(1, generation, 32, &[1]).unwrap(), None);
        // The count is not reset by a device reset.
        drv.set_status(1, 0).unwrap();
        assert_eq!(drv.get_config(1, 0, &mut cap).unwrap(), new_gen);
        assert_eq!(dev.borrow().stats().events_config, 1);
    });
}

#[test]
fn config_access_past_the_space_is_discarded() {
    with_driver(|_, dev, drv| {
        let mut b = [0u8; 8];
        assert!(matches!(
            drv.get_config(1, 92, &mut b),
            Err(DriverEndError::Timeout { .. })
        ));
        assert!(matches!(
            dev.borrow().stats().last_discard,
            Some(Discard::Refused {
                why: Refusal::ConfigOutOfRange {
                    offset: 92,
                    length: 8
                },
                ..
            })
        ));
    });
}

/// Sets up rng's queue at the start of the data area; returns the driver
/// ring and the buffer area.
fn rng_queue(drv: &mut TestDriver<'_, '_>, features: Features) -> (SplitDriver, Bump, QueueConfig) {
    let mut alloc = Bump::new(&LAYOUT);
    let base = alloc.alloc(SplitDriver::layout_len(8), 16).unwrap();
    let qc = SplitDriver::layout(base, 8);
    let q = SplitDriver::new(&drv.data(), qc, Features::VERSION_1 | features).unwrap();
    (q, alloc, qc)
}

#[test]
fn full_sequence_io_and_event_used() {
    with_driver(|w, dev, drv| {
        assert_eq!(drv.ping(0xdead_beef).unwrap(), 0xdead_beef);
        assert_eq!(drv.devices().unwrap(), 0b11);
        let (mut q, mut alloc, qc) = rng_queue(drv, Features::empty());
        assert_eq!(
            drv.get_vqueue(0, 0).unwrap(),
            VqueueInfo {
                max_size: 64,
                config: QueueConfig::default()
            }
        );
        let f = drv.bring_up(0, Features::empty(), &[qc]).unwrap();
        assert_eq!(f, Features::VERSION_1);
        // GET_VQUEUE reports the addresses SET_VQUEUE stored.
        assert_eq!(drv.get_vqueue(0, 0).unwrap().config, qc);
        assert_eq!(drv.get_vqueue(0, 7).unwrap().max_size, 0);
        assert_eq!(drv.get_shm(0, 0).unwrap(), (0, 0));
        let data = drv.data();
        let buf = alloc.alloc(16, 8).unwrap();
        q.add(&data, &[], &[Segment { addr: buf, len: 16 }])
            .unwrap();
        assert!(q.publish_avail(&data).unwrap());
        drv.notify(0, 0, 0).unwrap();
        drv.wait_used(0, 0).unwrap();
        let used = q.pop_used(&data).unwrap().unwrap();
        assert_eq!(used.len, 16);
        let mut got = [0u8; 16];
        data.read(buf, &mut got).unwrap();
        assert_eq!(got, core::array::from_fn::<u8, 16, _>(|i| i as u8 + 1));
        // SET_VQUEUE on a queue already set up is discarded.
        assert!(drv.set_vqueue(0, 0, qc).is_err());
        let s = dev.borrow().stats();
        assert_eq!(s.events_used, 1);
        assert_eq!(s.discarded(), 1);
        // The header was never written by the device.
        layout::check(w, &LAYOUT).unwrap();
    });
}

#[test]
fn packed_ring_with_notification_data() {
    use virtio_core::driver::PackedDriver;
    with_driver(|_, dev, drv| {
        let wanted = Features::RING_PACKED | Features::EVENT_IDX | Features::NOTIFICATION_DATA;
        let mut alloc = Bump::new(&LAYOUT);
        let base = alloc.alloc(PackedDriver::<8>::layout_len(8), 16).unwrap();
        let qc = PackedDriver::<8>::layout(base, 8);
        let data = drv.data();
        let mut q = PackedDriver::<8>::new(&data, qc, Features::VERSION_1 | wanted).unwrap();
        assert_eq!(
            drv.bring_up(0, wanted, &[qc]).unwrap(),
            Features::VERSION_1 | wanted
        );
        let buf = alloc.alloc(8, 8).unwrap();
        for round in 0..12u8 {
            q.add(&data, &[], &[Segment { addr: buf, len: 8 }]).unwrap();
            let next = q.next_avail();
            if q.publish_avail(&data).unwrap() {
                // EVENT_AVAIL with next offset and wrap (bit 31).
                let value = u32::from(next.slot) | (u32::from(next.wrap) << 31);
                drv.notify(0, 0, value).unwrap();
            }
            let used = loop {
                if let Some(u) = q.pop_used(&data).unwrap() {
                    break u;
                }
                if !q.enable_interrupts(&data).unwrap() {
                    drv.wait_used(0, 0).unwrap();
                }
            };
            assert_eq!(used.len, 8, "round {round}");
            let mut got = [0u8; 8];
            data.read(buf, &mut got).unwrap();
            assert_eq!(got[0], round * 8 + 1);
        }
        assert_eq!(dev.borrow().stats().discarded(), 0);
    });
}

#[test]
fn status_zero_resets_and_discards_pending_work() {
    with_driver(|_, dev, drv| {
        let (mut q, mut alloc, qc) = rng_queue(drv, Features::empty());
        drv.bring_up(0, Features::empty(), &[qc]).unwrap();
        let data = drv.data();
        let buf = alloc.alloc(8, 8).unwrap();
        q.add(&data, &[], &[Segment { addr: buf, len: 8 }]).unwrap();
        q.publish_avail(&data).unwrap();
        // Compliance: status 0 MUST reset internal state and discard any
        // pending operations (here the unsent EVENT_USED is dropped too).
        {
            let mut d = dev.borrow_mut();
            let _ = d.devices_mut().0.core_mut().notify(0);
        }
        assert_eq!(drv.set_status(0, 0).unwrap(), 0);
        drv.poll_events().unwrap();
        assert!(!drv.take_used(0, 0));
        let d = dev.borrow();
        assert!(!d.devices().0.core().queue_ready(0));
        assert_eq!(d.devices().0.core().status(), DeviceStatus::empty());
        drop(d);
        assert_eq!(drv.get_vqueue(0, 0).unwrap().config.size, 0);
    });
}

#[test]
fn reset_vqueue_needs_ring_reset() {
    with_driver(|_, dev, drv| {
        let (_q, _alloc, qc) = rng_queue(drv, Features::RING_RESET);
        drv.bring_up(0, Features::RING_RESET, &[qc]).unwrap();
        drv.reset_vqueue(0, 0).unwrap();
        assert!(!dev.borrow().devices().0.core().queue_ready(0));
        // Set up again after the reset.
        drv.set_vqueue(0, 0, qc).unwrap();
        assert!(dev.borrow().devices().0.core().queue_active(0));
        drv.set_status(0, 0).unwrap();
        drv.bring_up(0, Features::empty(), &[qc]).unwrap();
        assert!(drv.reset_vqueue(0, 0).is_err());
    });
}

#[test]
fn queue_outside_the_data_area_needs_reset() {
    with_driver(|w, _dev, drv| {
        // Rings placed over the header and the message rings: the device's
        // memory refuses them, whatever the driver writes.
        let bad = QueueConfig {
            size: 8,
            desc_addr: 0,
            driver_addr: 128,
            device_addr: 256,
        };
        let e = drv.bring_up(0, Features::empty(), &[bad]).unwrap_err();
        assert!(matches!(e, DriverEndError::DriverOkRefused(s) if s & 0x40 != 0));
        drv.poll_events().unwrap();
        // DEVICE_NEEDS_RESET is announced with EVENT_CONFIG.
        let (status, _) = drv.take_config_event(0).unwrap();
        assert_ne!(status & 0x40, 0);
        layout::check(w, &LAYOUT).unwrap();
    });
}

#[test]
fn bus_messages() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    raw.send(&w, &message(2, 2, 0, 1, &[0, 0, 16, 0]));
    raw.send(&w, &message(2, 2, 0, 2, &[8, 0, 8, 0]));
    // Window of 8 from 0: next_offset 0 (no device beyond).
    raw.send(&w, &message(2, 2, 0, 3, &[0, 0, 8, 0]));
    // offset and count MUST be multiples of 8.
    raw.send(&w, &message(2, 2, 0, 4, &[1, 0, 8, 0]));
    while dev.process().work_left() {}
    let out = raw.recv(&w);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0][0], 3, "bus response");
    assert_eq!(&out[0][8..], &[0, 0, 16, 0, 0, 0, 0b11, 0]);
    assert_eq!(&out[1][8..], &[8, 0, 8, 0, 0, 0, 0]);
    assert_eq!(&out[2][8..], &[0, 0, 8, 0, 0, 0, 0b11]);
    assert_eq!(dev.stats().malformed, 1);
    // A large count is cut to what fits a slot: 64 - 14 = 50 bytes → 400
    // device numbers ("Respecting Bus Limits (Device)": MUST NOT exceed the
    // maximum message size; GET_DEVICES lets the responder return less).
    raw.send(&w, &message(2, 2, 0, 5, &[0, 0, 0xf8, 0xff]));
    // PING: both sides MUST echo the 32-bit data precisely.
    raw.send(&w, &message(2, 3, 0, 6, &le32s(&[0x0102_0304])));
    while dev.process().work_left() {}
    let out = raw.recv(&w);
    assert_eq!(u16::from_le_bytes([out[0][10], out[0][11]]), 400);
    assert_eq!(out[0].len(), 8 + 6 + 50);
    assert_eq!(&out[1], &message(3, 3, 0, 6, &le32s(&[0x0102_0304])));
}

/// Sends one request and returns the one answer.
fn raw_call<S: DeviceSet>(
    raw: &mut Raw,
    w: &Region<'_>,
    dev: &mut DeviceEnd<'_, Region<'_>, S, Polled>,
    m: &[u8],
) -> Vec<u8> {
    raw.send(w, m);
    while dev.process().work_left() {}
    let mut out = raw.recv(w);
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn events_wait_for_room_and_are_not_lost() {
    let mut buf = backing();
    let mut disk = vec![0u8; 4096];
    let w = window(&mut buf);
    let mut dev = device_end!(&w, &mut disk);
    let mut raw = Raw::new();
    for d in 0..2u16 {
        for (t, status) in [(1u16, 1u32), (2, 3)] {
            raw_call(
                &mut raw,
                &w,
                &mut dev,
                &message(0, 8, d, t, &le32s(&[status])),
            );
        }
        raw_call(
            &mut raw,
            &w,
            &mut dev,
            &message(0, 4, d, 3, &le32s(&[1, 1, 1])),
        );
        for (t, status) in [(4u16, 0xbu32), (5, 0xf)] {
            let a = raw_call(
                &mut raw,
                &w,
                &mut dev,
                &message(0, 8, d, t, &le32s(&[status])),
            );
            assert_eq!(u32_at(&a, 8), status);
        }
    }
    // Fill ring B with PING answers the driver does not read yet.
    for t in 1..=4u16 {
        raw.send(&w, &message(2, 3, 0, t, &le32s(&[t.into()])));
    }
    while dev.process().work_left() {}
    // Config changes on both devices while ring B is full: kept pending.
    dev.devices_mut().0.core_mut().config_changed();
    dev.devices_mut().1.core_mut().config_changed();
    while dev.poll().work_left() {}
    // A request cannot be answered now, so it is not taken, and `process`
    // does not ask to be called again (an interrupt handler looping on it
    // would spin while the driver cannot run).
    raw.send(&w, &message(0, 7, 1, 9, &[]));
    assert_eq!(dev.process(), Service::Done);
    assert_eq!(dev.stats().received, 5 * 2 + 4);
    assert_eq!(raw.recv(&w).len(), 4);
    while dev.process().work_left() {}
    let out = raw.recv(&w);
    assert_eq!(out.len(), 3, "the answer and both EVENT_CONFIGs");
    assert_eq!(&out[0][..6], &[1, 7, 1, 0, 9, 0]);
    let mut events: Vec<(u8, u8)> = out[1..].iter().map(|m| (m[1], m[2])).collect();
    events.sort_unstable();
    assert_eq!(events, vec![(0x40, 0), (0x40, 1)]);
    assert_eq!(dev.stats().events_config, 2);
}

// ---- robustness -------------------------------------------------------------

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random bytes over the ring indices, both rings and the data area:
    /// the device end never panics and never touches memory outside the
    /// window.
    #[test]
    fn random_window_bytes(
        indices in proptest::collection::vec(any::<u8>(), 16),
        rings in proptest::collection::vec(any::<u8>(), 512),
        data in proptest::collection::vec(any::<u8>(), 256),
        rounds in 1usize..4,
    ) {
        let mut buf = backing();
        let mut disk = vec![0u8; 4096];
        {
            let w = window(&mut buf);
            let mut dev = device_end!(&w, &mut disk);
            w.write(offset::TO_DEVICE_PROD, &indices).unwrap();
            w.write(LAYOUT.to_device_off(), &rings).unwrap();
            w.write(LAYOUT.data_off(), &data).unwrap();
            for _ in 0..rounds {
                while dev.process().work_left() {}
                while dev.poll().work_left() {}
            }
        }
        prop_assert!(guards_intact(&buf));
    }

    /// Random well-framed messages (any id, device, token, payload) after
    /// random data in the data area: no panic, no access outside the window,
    /// the header and ring A untouched by the device.
    #[test]
    fn random_messages(
        msgs in proptest::collection::vec(
            (0u8..4, prop_oneof![0u8..0x0d, 0x40u8..0x43], 0u16..3, any::<u16>(),
             proptest::collection::vec(any::<u8>(), 0..56)),
            1..12),
        data in proptest::collection::vec(any::<u8>(), 512),
    ) {
        let mut buf = backing();
        let mut disk = vec![0u8; 4096];
        {
            let w = window(&mut buf);
            let mut dev = device_end!(&w, &mut disk);
            w.write(LAYOUT.data_off(), &data).unwrap();
            let mut raw = Raw::new();
            for (sent, (type_, id, d, token, payload)) in msgs.iter().enumerate() {
                let m = message(*type_, *id, *d, *token, payload);
                if raw.tx.push(&w, &m).is_err() {
                    break;
                }
                while dev.process().work_left() {}
                let mut slot = [0u8; 64];
                let at = LAYOUT.to_device_off() + 64 * (sent as u64 % 4);
                w.read(at, &mut slot).unwrap();
                prop_assert_eq!(&slot[..m.len()], &m[..]);
                raw.recv(&w);
                layout::check(&w, &LAYOUT).unwrap();
            }
            prop_assert!(dev.stats().received as usize <= msgs.len());
        }
        prop_assert!(guards_intact(&buf));
    }
}

#[test]
fn builder_and_ids_round_trip() {
    let mut b = msg::Builder::new(1, 2, 3, 4);
    b.put_bytes(&[9; 4]);
    assert_eq!(b.bytes(), &[1, 2, 3, 0, 4, 0, 12, 0, 9, 9, 9, 9]);
    for id in 0..=255u8 {
        assert_eq!(u8::from(msg::TransportId::from(id)), id);
        assert_eq!(u8::from(msg::BusId::from(id)), id);
    }
}

// virtio 1.4 §"Available Buffer Notification Suppression" through the
// shared-memory transport: a driver that adds a buffer during every
// publish (EVENT_IDX, split and packed) for 1000 rounds is fully served
// when the device end is run as the firmware does — once per doorbell, and
// again while `process` returns WorkLeft (the firmware re-pends its
// interrupt) — with the driver sending EVENT_AVAIL only when its ring says
// the device asked for one.
#[test]
fn a_busy_driver_is_served_for_1000_rounds_over_shm() {
    use virtio_core::driver::busy::{BusyDriver, Schedule};
    for packed in [false, true] {
        let mut buf = backing();
        let w = window(&mut buf);
        let data = DataArea::new(&w, &LAYOUT);
        let mut alloc = Bump::new(&LAYOUT);
        let ring = alloc.alloc(0x400, 16).unwrap();
        let bufs = alloc.alloc(BusyDriver::<Data<'_>>::data_len(), 16).unwrap();
        let mut features = Features::VERSION_1 | Features::EVENT_IDX;
        features.set(Features::RING_PACKED, packed);
        let busy = BusyDriver::new(data, ring, 16, bufs, features, false).unwrap();
        let mut rng = ShmDevice::<_, _, 1, 16>::new(Rng::new(Counter(0)), &busy);
        rng.core_mut().set_budget(3);
        let dev = RefCell::new(DeviceEnd::create(&w, LAYOUT, (rng,), Polled).unwrap());
        let idle: &dyn Fn() = &|| {
            while dev.borrow_mut().process().work_left() {}
        };
        let mut drv: TestDriver<'_, '_> = DriverEnd::attach(&w, LAYOUT, Polled, idle)
            .unwrap()
            .with_max_waits(4);
        let wanted = features & !Features::VERSION_1;
        assert_eq!(drv.bring_up(0, wanted, &[busy.config()]).unwrap(), features);
        busy.set_schedule(Schedule::Never, 1);
        busy.step().unwrap();
        // Miri checks the accesses, not the count: fewer rounds there.
        let rounds = if cfg!(miri) { 10 } else { 1000 };
        busy.set_schedule(Schedule::EveryStore, rounds);
        let mut service = Service::Done;
        let mut calls = 0u32;
        loop {
            if busy.take_kick() {
                drv.notify(0, 0, 0).unwrap();
            } else if !service.work_left() {
                break;
            }
            service = dev.borrow_mut().process();
            calls += 1;
            assert!(calls < 20_000);
        }
        busy.collect().unwrap();
        assert_eq!(busy.made(), rounds + 1, "packed {packed}");
        assert_eq!(busy.used(), rounds + 1, "packed {packed}");
        assert!(dev.borrow().devices().0.core().is_live());
    }
}
