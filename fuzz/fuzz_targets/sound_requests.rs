//! The sound device fed an operation stream: control requests (every
//! request code, or a raw one, with a payload cut anywhere and any
//! response room), tx and rx I/O messages for any stream with any data
//! and status room, event buffers of any size, clock steps with polls,
//! jack and control changes, kicks of any queue, under a small budget,
//! over a backend that counts what it consumed.
//!
//! Operation bytes: `[op, a, b, c, payload[0..28] for op 0]`.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! device-readable buffers are never written; used lengths stay within
//! the writable part; every control status and I/O status written is a
//! defined `S_*`; while the device is live no I/O message is dropped
//! (each sent one is returned or still held), a tx message comes back
//! `S_OK` only once its frames reached the backend (the backend's byte
//! count equals the frames of tx messages completed `S_OK`), and an rx
//! message comes back with at most its frame room.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::sound::*;
use virtio_fuzz::{DATA, Guarded, MEM_LEN, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 8;

#[derive(Default)]
struct Counting {
    now: u64,
    written: u64,
    read: u64,
}

impl PcmBackend for Counting {
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn prepare(&mut self, _: u32, _: &PcmParams) -> Result<(), PcmError> {
        Ok(())
    }
    fn release(&mut self, _: u32) {}
    fn write(&mut self, _: u32, frames: &[u8]) -> Result<(), PcmError> {
        self.written += frames.len() as u64;
        Ok(())
    }
    fn read(&mut self, _: u32, frames: &mut [u8]) -> Result<(), PcmError> {
        frames.fill(0x5a);
        self.read += frames.len() as u64;
        Ok(())
    }
}

static CHMAPS: [ChmapDesc; 1] = [ChmapDesc {
    hda_fn_nid: 0,
    direction: Direction::Output,
    positions: &[CHMAP_FL, CHMAP_FR],
}];

const CONTROLS: [ControlDesc; 3] = [
    ControlDesc {
        hda_fn_nid: 0,
        role: (CTL_ROLE_VOLUME, Direction::Output),
        kind: ControlKind::Integer {
            min: -10,
            max: 100,
            step: 2,
        },
        access: CTL_ACCESS_READ | CTL_ACCESS_WRITE | CTL_ACCESS_TLV_READ | CTL_ACCESS_TLV_WRITE,
        count: 2,
        index: 0,
        name: "Volume",
        initial: &[],
        tlv: &[1, 0, 0, 0, 4, 0, 0, 0, 9, 9, 9, 9],
    },
    ControlDesc {
        hda_fn_nid: 0,
        role: (CTL_ROLE_UNDEFINED, Direction::Input),
        kind: ControlKind::Enumerated(&["A", "B"]),
        access: CTL_ACCESS_READ | CTL_ACCESS_WRITE | CTL_ACCESS_TLV_COMMAND,
        count: 3,
        index: 0,
        name: "Mode",
        initial: &[],
        tlv: &[],
    },
    ControlDesc {
        hda_fn_nid: 0,
        role: (CTL_ROLE_GAIN, Direction::Input),
        kind: ControlKind::Integer64 {
            min: 0,
            max: 1 << 33,
            step: 0,
        },
        access: CTL_ACCESS_READ | CTL_ACCESS_WRITE,
        count: 2,
        index: 1,
        name: "Gain",
        initial: &[],
        tlv: &[],
    },
];

const CODES: [u32; 16] = [
    R_JACK_INFO,
    R_JACK_REMAP,
    R_PCM_INFO,
    R_PCM_SET_PARAMS,
    R_PCM_PREPARE,
    R_PCM_RELEASE,
    R_PCM_START,
    R_PCM_STOP,
    R_CHMAP_INFO,
    R_CTL_INFO,
    R_CTL_ENUM_ITEMS,
    R_CTL_READ,
    R_CTL_WRITE,
    R_CTL_TLV_READ,
    R_CTL_TLV_WRITE,
    R_CTL_TLV_COMMAND,
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Control,
    Tx(u32),
    Rx(u32),
    Event,
}

struct Sent {
    queue: u16,
    id: u16,
    kind: Kind,
    readable: Vec<(Segment, Vec<u8>)>,
    writable: Vec<Segment>,
    done: Option<u32>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, mut ops)) = data.split_first() else {
        return;
    };
    let jacks = [JackDesc {
        hda_fn_nid: 0,
        features: JACK_F_REMAP,
        hda_reg_defconf: 0,
        hda_reg_caps: 0,
        connected: false,
    }];
    let dev: Sound<Counting, 2> = Sound::new(
        Counting::default(),
        &jacks,
        [
            StreamDesc::stereo(Direction::Output),
            StreamDesc::stereo(Direction::Input),
        ],
        &CHMAPS,
        &CONTROLS,
    )
    .expect("tables")
    .with_queue_size(QSIZE);

    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut core: DeviceCore<_, &Guarded<'_>, 4> = DeviceCore::new(dev, &mem);
    core.set_budget(1 + u32::from(opts & 3));
    let mut features = core.device_features() - Features::RING_PACKED;
    if opts & 4 != 0 {
        features -= Features::from_bits_retain(F_CTLS);
    }
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let mut drivers = Vec::new();
    for q in 0..4u16 {
        let cfg = SplitDriver::layout(u64::from(q) * 0x800, QSIZE);
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
    let run = |core: &mut DeviceCore<_, &Guarded<'_>, 4>, q: Option<u16>| {
        let mut service = match q {
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
    while ops.len() >= 4 {
        let (op, rest) = ops.split_at(4);
        ops = rest;
        let (a, b, c) = (op[1], op[2], op[3]);
        let mut put = |bytes: &[u8]| -> Option<Segment> {
            let len = bytes.len() as u64;
            if at + len + 16 > MEM_LEN as u64 {
                return None;
            }
            let s = Segment {
                addr: at,
                len: bytes.len() as u32,
            };
            mem.raw().write(at, bytes).expect("buffer");
            at += (len + 15) & !15;
            Some(s)
        };
        let (queue, kind, readable, writable): (u16, Kind, Vec<Vec<u8>>, Vec<u32>) = match op[0] % 8
        {
            0 => {
                let take = ops.len().min(28);
                let (payload, rest) = ops.split_at(take);
                ops = rest;
                let code = if a & 0x80 != 0 {
                    u32::from(a) << 4
                } else {
                    CODES[usize::from(a) % CODES.len()]
                };
                let mut req = code.to_le_bytes().to_vec();
                req.extend_from_slice(payload);
                req.truncate(usize::from(b) % 33);
                let room = u32::from(c) * 4 + if c & 1 != 0 { 512 } else { 0 };
                (CONTROLQ, Kind::Control, vec![req], vec![room])
            }
            1 => {
                let stream = u32::from(a % 3);
                let mut hdr = stream.to_le_bytes().to_vec();
                let frames = vec![b; usize::from(b) * 4];
                if c & 0x80 != 0 {
                    hdr.extend_from_slice(&frames);
                    (TXQ, Kind::Tx(stream), vec![hdr], vec![u32::from(c % 12)])
                } else {
                    (
                        TXQ,
                        Kind::Tx(stream),
                        vec![hdr, frames],
                        vec![u32::from(c % 12)],
                    )
                }
            }
            2 => {
                let stream = u32::from(a % 3);
                let hdr = stream.to_le_bytes().to_vec();
                let frames = u32::from(b) * 4;
                if c & 0x80 != 0 {
                    (
                        RXQ,
                        Kind::Rx(stream),
                        vec![hdr],
                        vec![frames + u32::from(c % 12)],
                    )
                } else {
                    (
                        RXQ,
                        Kind::Rx(stream),
                        vec![hdr],
                        vec![frames, u32::from(c % 12)],
                    )
                }
            }
            3 => {
                let readable = if b & 1 != 0 { vec![vec![0; 8]] } else { vec![] };
                (EVENTQ, Kind::Event, readable, vec![u32::from(a % 16)])
            }
            4 => {
                core.device_mut().backend_mut().now +=
                    u64::from(a) * 1_000_000 + u64::from(b) * 1000;
                run(&mut core, None);
                continue;
            }
            5 => {
                core.device_mut()
                    .set_jack_connected(u32::from(a % 2), b & 1 != 0);
                run(&mut core, None);
                continue;
            }
            6 => {
                run(&mut core, Some(u16::from(a % 5)));
                continue;
            }
            _ => {
                core.device_mut()
                    .set_control_value(u32::from(a % 4), &[b, c]);
                continue;
            }
        };
        let mut r = Vec::new();
        let mut w = Vec::new();
        let mut fits = true;
        for bytes in readable.iter().filter(|b| !b.is_empty()) {
            match put(bytes) {
                Some(s) => r.push((s, bytes.clone())),
                None => fits = false,
            }
        }
        for &len in writable.iter().filter(|&&l| l > 0) {
            match put(&vec![0xee; len as usize]) {
                Some(s) => w.push(s),
                None => fits = false,
            }
        }
        if !fits || (r.is_empty() && w.is_empty()) {
            break;
        }
        let d = &mut drivers[usize::from(queue)];
        let segs: Vec<Segment> = r.iter().map(|(s, _)| *s).collect();
        let Ok(id) = d.add(&mem, &segs, &w) else {
            continue;
        };
        d.publish_avail(&mem).expect("avail");
        sent.push(Sent {
            queue,
            id,
            kind,
            readable: r,
            writable: w,
            done: None,
        });
        if op[0] & 0x80 == 0 {
            run(&mut core, Some(queue));
        }
    }
    // Buffers added without a kick are announced now.
    for q in 0..4 {
        run(&mut core, Some(q));
    }

    let mut tx_ok_frames = 0u64;
    for (q, d) in drivers.iter_mut().enumerate() {
        while let Some(used) = d.pop_used(&mem).expect("the device returns valid ids") {
            let s = sent
                .iter_mut()
                .find(|s| usize::from(s.queue) == q && s.id == used.id && s.done.is_none())
                .expect("a buffer that was sent");
            let room: u32 = s.writable.iter().map(|w| w.len).sum();
            assert!(used.len <= room, "used length over the writable part");
            s.done = Some(used.len);
            let mut tail = vec![0u8; room as usize];
            let mut off = 0;
            for w in &s.writable {
                mem.raw()
                    .read(w.addr, &mut tail[off..off + w.len as usize])
                    .expect("writable");
                off += w.len as usize;
            }
            let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4"));
            match s.kind {
                Kind::Control if used.len >= 4 => {
                    let st = word(&tail[..4]);
                    assert!((S_OK..=S_IO_ERR).contains(&st), "control status {st:#x}");
                }
                Kind::Tx(_) | Kind::Rx(_) if used.len >= 8 => {
                    let st = word(&tail[room as usize - 8..room as usize - 4]);
                    assert!(st == S_OK || st == S_IO_ERR, "I/O status {st:#x}");
                    if let Kind::Tx(_) = s.kind
                        && st == S_OK
                    {
                        let frames: u32 = s.readable.iter().map(|(r, _)| r.len).sum::<u32>() - 4;
                        tx_ok_frames += u64::from(frames);
                    }
                    if let Kind::Rx(_) = s.kind {
                        assert!(used.len - 8 <= room - 8, "rx frames within room");
                    }
                }
                Kind::Event => assert!(used.len == 0 || used.len == 8),
                _ => {}
            }
        }
    }
    for s in &sent {
        for (seg, before) in &s.readable {
            let mut now = vec![0u8; seg.len as usize];
            mem.raw().read(seg.addr, &mut now).expect("readable");
            assert_eq!(&now, before, "the device wrote a device-readable buffer");
        }
    }
    if core.is_live() {
        let dev = core.device();
        assert_eq!(
            dev.backend().written,
            tx_ok_frames,
            "tx completed OK exactly when its frames reached the backend"
        );
        let open_io = sent
            .iter()
            .filter(|s| matches!(s.kind, Kind::Tx(_) | Kind::Rx(_)) && s.done.is_none())
            .count();
        assert_eq!(open_io, dev.held(0) + dev.held(1), "no I/O message dropped");
    }
});
