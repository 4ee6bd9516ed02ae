//! The SCMI device's header parsing, every protocol's parameter checks,
//! asynchronous commands and notifications, fed up to 48 operations
//! (commands with any protocol, message, type, parameter length and
//! response room, malformed chains, eventq buffers of any size, platform
//! events, notifies and polls) under a small budget, with or without
//! VIRTIO_SCMI_F_P2A_CHANNELS, over the simulated platform.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! device-readable buffers are never written; every used length is within
//! its chain's writable part; while the device is live, a cmdq response
//! (used length ≥ 8) echoes the command's header (reserved bits clear) or,
//! for a malformed chain or a header shorter than a word, a zero one,
//! carries a defined SCMI status and, unless SUCCESS, nothing after it;
//! an eventq message is a delayed response (type 2) or a notification
//! (type 3), only with P2A, and delayed responses never outnumber the
//! asynchronous commands answered SUCCESS; the device never holds more
//! messages than its slots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::scmi::sim::SimPlatform;
use virtio_devices::scmi::{Header, Scmi, Status};
use virtio_fuzz::{DATA, Guarded, MEM_LEN, ScmiInput, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;

struct Sent {
    header: Option<u32>,
    readable: Vec<(Segment, Vec<u8>)>,
    writable: Option<Segment>,
    malformed: bool,
    asynchronous: bool,
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("word"))
}

/// Does this command ask for a delayed response (sensor read, clock rate
/// set without "ignore", reset, each with its async flag)?
fn asks_delayed(protocol: u8, message: u8, params: &[u32]) -> bool {
    match (protocol, message, params) {
        (0x15, 6, [_, flags]) => flags & 1 != 0,
        (0x14, 5, [flags, _, _, _]) => flags & 1 != 0 && flags & 2 == 0,
        (0x16, 4, [_, flags, _]) => flags & 4 != 0,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = ScmiInput::parse(data) else {
        return;
    };
    let o = input.options;
    let p2a = o & 4 != 0;
    let mut platform = SimPlatform::new();
    platform.fail_voltage = o & 8 != 0;
    if o & 0x10 != 0 {
        platform = platform.without_power();
    }
    let dev: Scmi<_, 4, 4> = Scmi::new(platform).with_queue_size(QSIZE);

    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut core: DeviceCore<_, &Guarded<'_>, 2> = DeviceCore::new(dev, &mem);
    core.set_budget(1 + u32::from(o & 3));
    let mut features = core.device_features() - Features::RING_PACKED;
    if !p2a {
        features = features - Features::from_bits_retain(1);
    }
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let queues: &[u16] = if p2a { &[0, 1] } else { &[0] };
    let mut drivers = Vec::new();
    for &q in queues {
        let cfg = SplitDriver::layout(u64::from(q) * 0x1400, QSIZE);
        drivers.push(SplitDriver::new(&mem, cfg, core.negotiated_features()).expect("ring"));
        core.set_queue_size(q, u32::from(QSIZE)).expect("size");
        core.set_queue_area(q, RingArea::Descriptors, cfg.desc_addr)
            .expect("desc");
        core.set_queue_area(q, RingArea::Driver, cfg.driver_addr)
            .expect("driver");
        core.set_queue_area(q, RingArea::Device, cfg.device_addr)
            .expect("device");
        core.set_queue_ready(q, true).expect("ready");
    }
    core.set_status(1 | 2 | 4 | 8);

    let mut at = DATA;
    let mut sent: Vec<Sent> = Vec::new();
    let mut events: Vec<(u16, Segment)> = Vec::new();
    // Descriptor ids are reused once returned: each used element is
    // matched to the command in flight under its id, by index into `sent`.
    let mut inflight: std::collections::HashMap<u16, usize> = Default::default();
    let mut done: Vec<(usize, u32)> = Vec::new();
    let mut delivered: Vec<Vec<u8>> = Vec::new();
    let mut token = 0u16;

    let run = |core: &mut DeviceCore<_, &Guarded<'_>, 2>, kick: Option<u16>| {
        let mut service = match kick {
            Some(q) => core.notify(u32::from(q)),
            None => core.poll(),
        };
        let mut rounds = 0;
        while service.work_left() {
            rounds += 1;
            assert!(rounds < 200, "the device never finishes");
            service = core.poll();
        }
    };

    for op in &input.ops {
        match op.kind {
            0 => {
                let protocol = op.protocol_id();
                let kind = if op.shape & 8 != 0 {
                    1 + u32::from(op.message % 3)
                } else {
                    0
                };
                token = (token + 1) & 0x3ff;
                let hdr = u32::from(op.message)
                    | (kind << 8)
                    | (u32::from(protocol) << 10)
                    | (u32::from(token) << 18);
                let params = op.params();
                let mut bytes = hdr.to_le_bytes().to_vec();
                for p in &params {
                    bytes.extend_from_slice(&p.to_le_bytes());
                }
                let cut = usize::from((op.shape >> 4) & 3);
                bytes.truncate(bytes.len() - cut.min(bytes.len()));
                let room = u32::from(op.room);
                if at + bytes.len() as u64 + u64::from(room) + 64 > MEM_LEN as u64 {
                    break;
                }
                let mut put = |b: &[u8]| -> Segment {
                    let s = Segment {
                        addr: at,
                        len: b.len() as u32,
                    };
                    mem.raw().write(at, b).expect("buffer");
                    at += (b.len() as u64 + 15) & !15;
                    s
                };
                let mut readable = Vec::new();
                if !bytes.is_empty() {
                    readable.push((put(&bytes), bytes.clone()));
                }
                let writable = (room > 0).then(|| put(&vec![0xa5; room as usize]));
                let malformed = op.shape & 0x40 != 0 && writable.is_some();
                let d = &mut drivers[0];
                let id = if malformed {
                    let extra = put(&[0x77]);
                    let mut raw: Vec<(Segment, bool)> =
                        readable.iter().map(|(s, _)| (*s, false)).collect();
                    raw.push((writable.expect("writable"), true));
                    raw.push((extra, false));
                    readable.push((extra, vec![0x77]));
                    d.add_raw(&mem, &raw)
                } else {
                    let segs: Vec<Segment> = readable.iter().map(|(s, _)| *s).collect();
                    let w: Vec<Segment> = writable.into_iter().collect();
                    d.add(&mem, &segs, &w)
                };
                let Ok(id) = id else { continue };
                if d.publish_avail(&mem).is_err() {
                    return;
                }
                let whole = bytes.len() >= 4 && cut == 0 && kind == 0;
                assert!(
                    inflight.insert(id, sent.len()).is_none(),
                    "an id handed out twice"
                );
                sent.push(Sent {
                    header: (bytes.len() >= 4).then_some(hdr),
                    readable,
                    writable,
                    malformed,
                    asynchronous: whole && asks_delayed(protocol, op.message, &params),
                });
            }
            1 if p2a => {
                let len = u32::from(op.room % 48);
                if at + u64::from(len) + 32 > MEM_LEN as u64 {
                    break;
                }
                let seg = Segment { addr: at, len };
                mem.raw()
                    .write(at, &vec![0x5a; len as usize])
                    .expect("event");
                at += (u64::from(len) + 15) & !15;
                let d = &mut drivers[1];
                let w: Vec<Segment> = (len > 0).then_some(seg).into_iter().collect();
                let Ok(id) = d.add(&mem, &[], &w) else {
                    continue;
                };
                if d.publish_avail(&mem).is_err() {
                    return;
                }
                events.push((id, seg));
                run(&mut core, Some(1));
            }
            2 => core
                .device_mut()
                .platform_mut()
                .set_reading(usize::from(op.protocol % 2), i64::from(op.message) * 1000),
            3 => core
                .device_mut()
                .platform_mut()
                .external_reset(u16::from(op.protocol % 2)),
            4 => run(&mut core, Some(0)),
            _ => run(&mut core, None),
        }
        assert!(core.device().pending() <= 4, "more pending than slots");
        assert!(core.device().held_buffers() <= 4, "more held than slots");
        while let Some(u) = drivers[0].pop_used(&mem).expect("valid cmdq ids") {
            let i = inflight.remove(&u.id).expect("a command in flight");
            done.push((i, u.len));
        }
        if p2a {
            while let Some(u) = drivers[1].pop_used(&mem).expect("valid eventq ids") {
                let (_, seg) = events
                    .iter()
                    .find(|(id, _)| *id == u.id)
                    .copied()
                    .expect("a posted buffer");
                assert!(u.len <= seg.len, "event used length over the buffer");
                let mut b = vec![0u8; u.len as usize];
                mem.raw().read(seg.addr, &mut b).expect("event");
                delivered.push(b);
                events.retain(|(id, _)| *id != u.id);
            }
        }
    }
    run(&mut core, Some(0));
    while let Some(u) = drivers[0].pop_used(&mem).expect("valid cmdq ids") {
        let i = inflight.remove(&u.id).expect("a command in flight");
        done.push((i, u.len));
    }

    let live = core.is_live();
    let mut async_ok = 0;
    for (i, len) in &done {
        let s = &sent[*i];
        let room = s.writable.map_or(0, |w| w.len);
        assert!(*len <= room, "used length over the writable part");
        if !live || *len == 0 {
            continue;
        }
        assert!(*len >= 8, "a response of {len} bytes");
        let mut b = vec![0u8; *len as usize];
        mem.raw()
            .read(s.writable.expect("room").addr, &mut b)
            .expect("response");
        let status = word(&b, 1) as i32;
        let status = Status::from_code(status).unwrap_or_else(|| panic!("status {status}"));
        if status != Status::Success {
            assert_eq!(*len, 8, "a failed response carries its status only");
        }
        match (s.malformed, s.header) {
            (false, Some(h)) => {
                assert_eq!(word(&b, 0), Header::parse(h).word(), "the header is echoed");
            }
            _ => assert_eq!(word(&b, 0), 0, "no header to echo"),
        }
        if s.asynchronous && !s.malformed && status == Status::Success {
            async_ok += 1;
        }
    }
    let mut delayed = 0;
    for m in &delivered {
        if m.is_empty() {
            continue;
        }
        assert!(p2a, "an eventq message without P2A");
        assert!(m.len() >= 8, "an event of {} bytes", m.len());
        let h = Header::parse(word(m, 0));
        assert!(h.kind == 2 || h.kind == 3, "event type {}", h.kind);
        if h.kind == 2 {
            delayed += 1;
            let status = word(m, 1) as i32;
            let status = Status::from_code(status).unwrap_or_else(|| panic!("status {status}"));
            if status != Status::Success {
                assert_eq!(
                    m.len(),
                    8,
                    "a failed delayed response carries its status only"
                );
            }
        }
    }
    assert!(
        delayed <= async_ok,
        "{delayed} delayed responses for {async_ok} async commands"
    );
    for s in &sent {
        for (seg, before) in &s.readable {
            let mut now = vec![0u8; seg.len as usize];
            mem.raw().read(seg.addr, &mut now).expect("readable");
            assert_eq!(&now, before, "the device wrote a device-readable buffer");
        }
    }
});
