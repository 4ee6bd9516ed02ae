//! The RPMB device's parser and operations, fed up to six requests queued
//! at once (any request type, block count, address, counter, correct or
//! broken MACs computed by the harness with its own HMAC, result reads,
//! split frames, short readable parts, odd response room, malformed
//! chains, injected storage and key-store failures) under a small budget,
//! over the RAM stores.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! request frames are never written; while the device is live every
//! request comes back in order with a used length within its writable
//! part and a whole number of frames, each with a defined result code and
//! a response type; the counter only moves by the writes the device
//! counted, one each; storage blocks change only inside writes the harness
//! built with the right key and MAC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::rpmb::ram::{RamKeyStore, RamStorage};
use virtio_devices::rpmb::{
    BLOCK_BYTES, FRAME_BYTES, Frame, MAC_START, REQ_PROGRAM_KEY, REQ_RESULT_READ, Rpmb, RpmbResult,
};
use virtio_fuzz::{DATA, Guarded, MEM_LEN, RpmbInput, host};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const QSIZE: u16 = 16;
const KEY: [u8; 32] = [0x3c; 32];
const STORAGE: usize = 128 * 1024;

struct Sent {
    id: u16,
    readable: Vec<(Segment, Vec<u8>)>,
    writable: u32,
    response: Option<Segment>,
    malformed: bool,
}

fn mac(frames: &[Frame]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(KEY);
    for f in frames {
        h.update(&f.as_bytes()[MAC_START..]);
    }
    h.finalize()
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = RpmbInput::parse(data) else {
        return;
    };
    let o = input.options;
    let start = if o & 8 != 0 { 0xffff_fffe } else { 0 };
    let mut keys = if o & 4 != 0 {
        RamKeyStore::programmed(KEY)
    } else {
        RamKeyStore::new()
    };
    keys.fail_read = o & 0x80 != 0;
    let mut backing = vec![0u8; STORAGE];
    let mut storage = RamStorage::with_counter(&mut backing, start);
    storage.fail_read = o & 0x10 != 0;
    storage.fail_write = o & 0x20 != 0;
    storage.fail_counter = o & 0x40 != 0;
    let dev: Rpmb<_, _, 4> = Rpmb::new(keys, storage).with_queue_size(QSIZE);

    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut core: DeviceCore<_, &Guarded<'_>, 1> = DeviceCore::new(dev, &mem);
    core.set_budget(1 + u32::from(o & 3));
    let features = core.device_features() - Features::RING_PACKED;
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
    let mut sent = Vec::new();
    // Blocks a correctly authenticated write may change.
    let mut allowed = vec![false; STORAGE / BLOCK_BYTES];
    for r in &input.requests {
        let kind = match r.shape & 7 {
            k @ 1..=5 => u16::from(k),
            _ => u16::from(r.raw) << (r.raw & 1) * 8,
        };
        let count = u16::from(r.block_count);
        let frames_n = if kind == 3 {
            usize::from(count.max(1))
        } else {
            1
        };
        let mut frames: Vec<Frame> = (0..frames_n)
            .map(|i| {
                let mut f = Frame::new_zeroed();
                f.req_resp = kind.into();
                f.block_count = count.into();
                f.address = r.address.into();
                f.write_counter = start.wrapping_add(u32::from(r.counter)).into();
                f.data = core::array::from_fn(|j| r.seed ^ (i as u8) ^ j as u8);
                f.nonce = [r.seed; 16];
                f
            })
            .collect();
        if kind == REQ_PROGRAM_KEY {
            frames[0].key_mac = if r.mac == 0 { KEY } else { [r.mac; 32] };
        } else {
            let mut m = mac(&frames);
            match r.mac {
                0 => {
                    if kind == 3 {
                        let first = usize::from(r.address);
                        for b in first..first + frames_n {
                            if let Some(a) = allowed.get_mut(b) {
                                *a = true;
                            }
                        }
                    }
                }
                1 => m[usize::from(r.seed) % 32] ^= 1 << (r.seed % 8),
                _ => m = [0; 32],
            }
            frames.last_mut().expect("a frame").key_mac = m;
        }
        if r.shape & 8 != 0 {
            let mut rr = Frame::new_zeroed();
            rr.req_resp = REQ_RESULT_READ.into();
            rr.block_count = u16::from(r.rr_count).into();
            frames.push(rr);
        }
        let mut bytes: Vec<u8> = frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect();
        let cut = usize::from(r.shape >> 6) * 100;
        bytes.truncate(bytes.len().saturating_sub(cut));
        let out = u32::from(r.out) * FRAME_BYTES as u32 + u32::from(r.extra);
        let need = bytes.len() as u64 + u64::from(out) + 64;
        if at + need > MEM_LEN as u64 {
            break;
        }
        let mut put = |b: &[u8]| -> (Segment, Vec<u8>) {
            let s = Segment {
                addr: at,
                len: b.len() as u32,
            };
            mem.raw().write(at, b).expect("buffer");
            at += (b.len() as u64 + 15) & !15;
            (s, b.to_vec())
        };
        let mut readable = Vec::new();
        if !bytes.is_empty() {
            if r.shape & 0x10 != 0 && bytes.len() > 200 {
                let (a, b) = bytes.split_at(200);
                readable.push(put(a));
                readable.push(put(b));
            } else {
                for chunk in bytes.chunks(FRAME_BYTES) {
                    readable.push(put(chunk));
                }
            }
        }
        let mut writable = Vec::new();
        if out > 0 {
            writable.push(put(&vec![0xa5; out as usize]).0);
        }
        let malformed = r.shape & 0x20 != 0 && !writable.is_empty();
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
            writable: out,
            response: writable.first().copied(),
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
        assert!(used.len <= s.writable, "used length over the writable part");
        if core.is_live() && !s.malformed {
            assert_eq!(used.len as usize % FRAME_BYTES, 0, "whole frames");
        }
        order.push((used.id, used.len));
    }
    // Response frames: defined results and response types.
    for (id, len) in &order {
        let s = sent.iter().find(|s| s.id == *id).expect("sent");
        let Some(seg) = s.response else { continue };
        if s.malformed || *len == 0 {
            continue;
        }
        let mut bytes = vec![0u8; *len as usize];
        mem.raw().read(seg.addr, &mut bytes).expect("response");
        for chunk in bytes.chunks_exact(FRAME_BYTES) {
            let f = Frame::read_from_bytes(chunk).expect("frame");
            assert!(
                RpmbResult::from_code(f.result.get()).is_some(),
                "result code {:#x}",
                f.result.get()
            );
            assert!(
                matches!(f.req_resp.get(), 0 | 0x100 | 0x200 | 0x300 | 0x400),
                "response type {:#x}",
                f.req_resp.get()
            );
            assert_ne!(f.key_mac, KEY, "a response carries the key");
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
        let ids: Vec<u16> = sent.iter().map(|s| s.id).collect();
        let got: Vec<u16> = order.iter().map(|(id, _)| *id).collect();
        assert_eq!(got, ids, "every request returned, in order");
    }
    let dev = core.device();
    let stats = dev.stats();
    assert_eq!(
        dev.storage().counter(),
        start + stats.writes,
        "the counter moves by one per write"
    );
    for (i, chunk) in dev.storage().data().chunks(BLOCK_BYTES).enumerate() {
        if chunk.iter().any(|b| *b != 0) {
            assert!(allowed[i], "block {i} changed without an authentic write");
        }
    }
});
