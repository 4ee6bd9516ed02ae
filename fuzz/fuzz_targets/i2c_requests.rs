//! The I2C adapter's request parser and transaction grouping, fed up to
//! eight arbitrary requests (any address and flags, FAIL_NEXT groups, any
//! buffer shape, split headers, missing status bytes, malformed chains)
//! queued at once, served under a small budget so groups are held across
//! calls, over the EEPROM model.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! the device never writes a device-readable buffer (headers and write
//! data stay as the driver wrote them); while the device is live every
//! request comes back, in order, with a used length within its writable
//! part, and a request with a status byte reads MSG_OK or MSG_ERR there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::i2c::eeprom::Eeprom;
use virtio_devices::i2c::{I2cAdapter, MSG_ERR, MSG_OK};
use virtio_fuzz::{DATA, Guarded, I2cInput, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;

struct Sent {
    id: u16,
    readable: Vec<(Segment, Vec<u8>)>,
    writable: Vec<Segment>,
    malformed: bool,
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = I2cInput::parse(data) else {
        return;
    };
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut eeprom = Eeprom::default();
    if input.options & 4 != 0 {
        for (i, b) in eeprom.memory_mut().iter_mut().enumerate() {
            *b = i as u8;
        }
    }
    let adapter: I2cAdapter<Eeprom, 4, 64> = I2cAdapter::new(eeprom).with_queue_size(QSIZE);
    let mut core: DeviceCore<_, &Guarded<'_>, 1> = DeviceCore::new(adapter, &mem);
    core.set_budget(1 + u32::from(input.options & 3));
    let features = core.device_features() - Features::RING_PACKED - Features::IN_ORDER;
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let cfg = SplitDriver::layout(0, QSIZE);
    let mut drv = SplitDriver::new(&mem, cfg, core.negotiated_features()).expect("ring");
    core.set_queue_size(0, u32::from(QSIZE)).expect("size");
    core.set_queue_area(0, RingArea::Descriptors, cfg.desc_addr)
        .expect("desc");
    core.set_queue_area(0, RingArea::Driver, cfg.driver_addr)
        .expect("driver");
    core.set_queue_area(0, RingArea::Device, cfg.device_addr)
        .expect("device");
    core.set_queue_ready(0, true).expect("ready");
    core.set_status(1 | 2 | 4 | 8);

    let mut at = DATA;
    let mut put = |bytes: &[u8]| -> (Segment, Vec<u8>) {
        let s = Segment {
            addr: at,
            len: bytes.len() as u32,
        };
        mem.raw().write(at, bytes).expect("buffer");
        at += (bytes.len() as u64 + 15) & !15;
        (s, bytes.to_vec())
    };
    let mut sent = Vec::new();
    for r in &input.requests {
        let mut header = Vec::new();
        header.extend_from_slice(&r.addr.to_le_bytes());
        header.extend_from_slice(&[0, 0]);
        header.extend_from_slice(&r.flags.to_le_bytes());
        let mut readable = Vec::new();
        if r.shape & 1 != 0 {
            readable.push(put(&header[..3]));
            readable.push(put(&header[3..]));
        } else {
            readable.push(put(&header));
        }
        if r.write > 0 {
            let data: Vec<u8> = (0..r.write)
                .map(|i| (r.seed as u8).wrapping_add(i.wrapping_mul((r.seed >> 8) as u8 | 1)))
                .collect();
            readable.push(put(&data));
        }
        let mut writable = Vec::new();
        let room = u32::from(r.read) + u32::from(r.shape & 2 == 0);
        if room > 0 {
            writable.push(put(&vec![0xa5; room as usize]).0);
        }
        let malformed = r.shape & 4 != 0 && !writable.is_empty();
        let id = if malformed {
            let extra = put(&[0x77]);
            let mut raw: Vec<(Segment, bool)> = readable.iter().map(|(s, _)| (*s, false)).collect();
            raw.extend(writable.iter().map(|s| (*s, true)));
            raw.push((extra.0, false));
            readable.push(extra);
            drv.add_raw(&mem, &raw)
        } else {
            let segs: Vec<Segment> = readable.iter().map(|(s, _)| *s).collect();
            drv.add(&mem, &segs, &writable)
        };
        let Ok(id) = id else { break };
        sent.push(Sent {
            id,
            readable,
            writable,
            malformed,
        });
    }
    if drv.publish_avail(&mem).is_err() {
        return;
    }
    let mut service = core.notify(0);
    let mut rounds = 0;
    while service.work_left() {
        rounds += 1;
        assert!(rounds < 100, "the device never finishes");
        service = core.poll();
    }

    let mut order = Vec::new();
    while let Some(used) = drv.pop_used(&mem).expect("the device returns valid ids") {
        let s = sent
            .iter()
            .find(|s| s.id == used.id)
            .expect("a request that was sent");
        let writable_len: u32 = s.writable.iter().map(|w| w.len).sum();
        assert!(
            used.len <= writable_len,
            "used length over the writable part"
        );
        if core.is_live() && writable_len > 0 && !s.malformed {
            let last = s.writable.last().expect("status");
            let mut status = [0u8];
            mem.raw()
                .read(last.addr + u64::from(last.len) - 1, &mut status)
                .expect("status");
            assert!(
                status[0] == MSG_OK || status[0] == MSG_ERR,
                "status byte {}",
                status[0]
            );
        }
        order.push(used.id);
    }
    for s in &sent {
        for (seg, before) in &s.readable {
            let mut now = vec![0u8; seg.len as usize];
            mem.raw().read(seg.addr, &mut now).expect("readable");
            assert_eq!(&now, before, "the device wrote a device-readable buffer");
        }
    }
    if core.is_live() {
        let ids: Vec<u16> = sent.iter().map(|s| s.id).collect();
        assert_eq!(order, ids, "every request returned, in order");
    }
});
