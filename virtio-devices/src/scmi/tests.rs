//! The SCMI device driven through a `DeviceCore` by our split-ring driver.
//! The driver side builds every message from the specifications itself
//! (header bits, parameter words, expected layouts), without the device's
//! wire helpers.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::vec;
use std::vec::Vec;

use virtio_core::queue::Segment;
use virtio_core::spec::Features;

use super::sim::SimPlatform;
use super::*;
use crate::harness::Harness;

type Dev = Scmi<SimPlatform, 4, 4>;

const BASE_P: u32 = 0x10;
const POWER_P: u32 = 0x11;
const PERF_P: u32 = 0x13;
const CLOCK_P: u32 = 0x14;
const SENSOR_P: u32 = 0x15;
const RESET_P: u32 = 0x16;
const VOLTAGE_P: u32 = 0x17;

const SUCCESS: i32 = 0;
const NOT_SUPPORTED: i32 = -1;
const INVALID_PARAMETERS: i32 = -2;
const DENIED: i32 = -3;
const NOT_FOUND: i32 = -4;
const OUT_OF_RANGE: i32 = -5;
const BUSY: i32 = -6;
const HARDWARE_ERROR: i32 = -9;
const PROTOCOL_ERROR: i32 = -10;

/// DEN0056 §"Message header format": message id 7:0, type 9:8, protocol
/// 17:10, token 27:18.
fn hdr(protocol: u32, message: u32, kind: u32, token: u32) -> u32 {
    message | (kind << 8) | (protocol << 10) | (token << 18)
}

fn le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
}

fn name(b: &[u8]) -> &str {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    core::str::from_utf8(&b[..end]).unwrap()
}

#[derive(Debug)]
struct Resp {
    used: u32,
    hdr: u32,
    status: i32,
    /// The return values after the status.
    values: Vec<u8>,
}

struct Rig {
    h: Harness<Dev, 2>,
    events: HashMap<u16, Segment>,
    token: u32,
}

fn p2a() -> Features {
    Features::from_bits_retain(1 << 0)
}

fn rig_with(platform: SimPlatform, features: Features) -> Rig {
    let queues: &[u16] = if features.bits() & 1 != 0 {
        &[0, 1]
    } else {
        &[0]
    };
    Rig {
        h: Harness::new(Scmi::new(platform), features, queues),
        events: HashMap::new(),
        token: 0,
    }
}

fn rig() -> Rig {
    rig_with(SimPlatform::new(), p2a())
}

impl Rig {
    /// Sends a command with `params` and `room` writable bytes.
    fn raw(&mut self, bytes: &[u8], room: u32) -> (u32, Vec<u8>) {
        let out = self.h.put(bytes);
        let resp = self.h.space(room);
        let used = self.h.request(0, &[out], &[resp]);
        (used.len, self.h.read(resp))
    }

    fn cmd_room(&mut self, protocol: u32, message: u32, params: &[u32], room: u32) -> Resp {
        self.token = (self.token + 1) & 0x3ff;
        let h = hdr(protocol, message, 0, self.token);
        let mut bytes = h.to_le_bytes().to_vec();
        bytes.extend(le(params));
        let (used, b) = self.raw(&bytes, room);
        assert!(used >= 8, "response of {used} bytes");
        let r = Resp {
            used,
            hdr: word(&b, 0),
            status: word(&b, 1) as i32,
            values: b[8..used as usize].to_vec(),
        };
        assert_eq!(r.hdr, h, "the header (token included) is echoed");
        r
    }

    fn cmd(&mut self, protocol: u32, message: u32, params: &[u32]) -> Resp {
        self.cmd_room(protocol, message, params, 4 + 128)
    }

    /// A command that must succeed; its return values.
    fn ok(&mut self, protocol: u32, message: u32, params: &[u32]) -> Vec<u8> {
        let r = self.cmd(protocol, message, params);
        assert_eq!(r.status, SUCCESS, "{protocol:#x}/{message:#x} {params:?}");
        r.values
    }

    fn status(&mut self, protocol: u32, message: u32, params: &[u32]) -> i32 {
        let r = self.cmd(protocol, message, params);
        if r.status != SUCCESS {
            assert_eq!(r.used, 8, "a failed response carries the status only");
        }
        r.status
    }

    /// Posts an eventq buffer of `len` bytes.
    fn post(&mut self, len: u32) {
        let seg = self.h.space(len);
        let id = self.h.add(1, &[], &[seg]);
        self.events.insert(id, seg);
        self.h.kick(1);
    }

    /// Eventq buffers returned: their bytes (as long as the used length).
    fn take_events(&mut self) -> Vec<Vec<u8>> {
        let mut out = vec![];
        while let Some(u) = self.h.used(1) {
            let seg = self.events.remove(&u.id).unwrap();
            out.push(self.h.read(seg)[..u.len as usize].to_vec());
        }
        out
    }

    fn poll(&mut self) {
        while self.h.core.poll().work_left() {}
    }

    fn dev(&mut self) -> &mut Dev {
        self.h.core.device_mut()
    }
}

#[test]
fn header_fields_round_trip() {
    let h = Header::parse(hdr(0x15, 0x06, 2, 0x3ff) | 0xf000_0000);
    assert_eq!(
        h,
        Header {
            message: 6,
            kind: 2,
            protocol: 0x15,
            token: 0x3ff
        }
    );
    assert_eq!(h.word(), hdr(0x15, 6, 2, 0x3ff), "reserved bits dropped");
}

#[test]
fn offers_p2a_channels_and_sends_delayed_responses() {
    // spec: scmi.feature-bits.1
    let mut r = rig();
    assert_ne!(r.h.core.device_features().bits() & 1, 0);
    r.post(32);
    // An asynchronous sensor read: a delayed response on the eventq.
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(SENSOR_P, 6, 2, r.token));
    assert_eq!(word(&ev[0], 1), 0);
    assert_eq!(word(&ev[0], 2), 0, "sensor id");
    assert_eq!(word(&ev[0], 3), 45_000);
    assert_eq!(r.dev().stats().delayed, 1);
}

#[test]
fn shared_memory_is_not_offered_and_no_statistics_region_is_named() {
    // spec: scmi.feature-bits.2
    let mut r = rig();
    assert_eq!(r.h.core.device_features().bits() & 2, 0);
    // Sensor and power PROTOCOL_ATTRIBUTES: statistics address and length 0.
    let s = r.ok(SENSOR_P, 1, &[]);
    assert_eq!((word(&s, 1), word(&s, 2), word(&s, 3)), (0, 0, 0));
    let p = r.ok(POWER_P, 1, &[]);
    assert_eq!((word(&p, 1), word(&p, 2), word(&p, 3)), (0, 0, 0));
}

#[test]
fn unknown_protocols_and_messages_answer_not_supported_with_the_token() {
    let mut r = rig();
    for (p, m) in [
        (0x00, 0),
        (0x12, 0),
        (PERF_P, 0xb),
        (VOLTAGE_P, 9),
        (0x80, 1),
        (0xff, 0),
        (BASE_P, 9),
        (BASE_P, 0xff),
        (SENSOR_P, 7),
        (CLOCK_P, 8),
        (RESET_P, 6),
        (POWER_P, 7),
    ] {
        assert_eq!(r.status(p, m, &[]), NOT_SUPPORTED, "{p:#x}/{m:#x}");
    }
}

#[test]
fn wrong_parameter_lengths_and_types_answer_protocol_error() {
    let mut r = rig();
    // PROTOCOL_VERSION takes nothing; RATE_GET one word; RATE_SET four.
    assert_eq!(r.status(BASE_P, 0, &[0]), PROTOCOL_ERROR);
    assert_eq!(r.status(CLOCK_P, 6, &[]), PROTOCOL_ERROR);
    assert_eq!(r.status(CLOCK_P, 6, &[0, 0]), PROTOCOL_ERROR);
    assert_eq!(r.status(CLOCK_P, 5, &[0, 0, 0]), PROTOCOL_ERROR);
    // A parameter that is not whole words.
    let mut b = hdr(CLOCK_P, 6, 0, 7).to_le_bytes().to_vec();
    b.extend([0, 0, 0]);
    let (used, out) = r.raw(&b, 16);
    assert_eq!(used, 8);
    assert_eq!(word(&out, 0), hdr(CLOCK_P, 6, 0, 7));
    assert_eq!(word(&out, 1) as i32, PROTOCOL_ERROR);
    // A header shorter than a word: a zero header, PROTOCOL_ERROR.
    let (used, out) = r.raw(&[1, 2], 16);
    assert_eq!(
        (used, word(&out, 0), word(&out, 1) as i32),
        (8, 0, PROTOCOL_ERROR)
    );
    // More parameters than any message takes.
    let mut b = hdr(BASE_P, 0, 0, 3).to_le_bytes().to_vec();
    b.extend(vec![0u8; 200]);
    let (used, out) = r.raw(&b, 16);
    assert_eq!((used, word(&out, 1) as i32), (8, PROTOCOL_ERROR));
    // A delayed-response or notification type on the cmdq.
    for kind in [1, 2, 3] {
        let h = hdr(BASE_P, 0, kind, 5);
        let (used, out) = r.raw(&h.to_le_bytes(), 16);
        assert_eq!(
            (used, word(&out, 0), word(&out, 1) as i32),
            (8, h, PROTOCOL_ERROR)
        );
    }
}

#[test]
fn a_response_the_chain_cannot_hold_answers_protocol_error() {
    let mut r = rig();
    // BASE_DISCOVER_VENDOR needs 16 bytes after the status.
    let resp = r.cmd_room(BASE_P, 3, &[], 8 + 8);
    assert_eq!((resp.used, resp.status), (8, PROTOCOL_ERROR));
    // No room for a status at all: returned with nothing written.
    let h = hdr(BASE_P, 0, 0, 9).to_le_bytes();
    let (used, out) = r.raw(&h, 6);
    assert_eq!(used, 0);
    assert_eq!(out, vec![0xee; 6]);
    assert_eq!(r.dev().stats().no_room, 1);
}

#[test]
fn failed_responses_carry_only_the_status() {
    // spec: scmi.cmdq-operation.3
    let mut r = rig();
    // Each with room for far more than a status.
    for (p, m, params, want) in [
        (0x42, 0, vec![], NOT_SUPPORTED),
        (CLOCK_P, 6, vec![9], NOT_FOUND),
        (CLOCK_P, 6, vec![], PROTOCOL_ERROR),
        (CLOCK_P, 4, vec![0, 9], OUT_OF_RANGE),
        (SENSOR_P, 3, vec![7], INVALID_PARAMETERS),
        (BASE_P, 2, vec![0x77], NOT_FOUND),
    ] {
        let resp = r.cmd(p, m, &params);
        assert_eq!(resp.status, want);
        assert_eq!(resp.used, 8, "hdr and status only");
        assert!(resp.values.is_empty());
    }
    r.dev().platform_mut().fail_voltage = true;
    let resp = r.cmd(SENSOR_P, 6, &[1, 0]);
    assert_eq!((resp.status, resp.used), (HARDWARE_ERROR, 8));
    // A success carries its return values.
    let resp = r.cmd(CLOCK_P, 6, &[0]);
    assert_eq!((resp.status, resp.used), (SUCCESS, 16));
}

#[test]
fn base_protocol_discovery() {
    let mut r = rig();
    assert_eq!(word(&r.ok(BASE_P, 0, &[]), 0), 0x2_0000);
    let attrs = word(&r.ok(BASE_P, 1, &[]), 0);
    assert_eq!(
        attrs & 0xff,
        6,
        "power, perf, clock, sensor, reset, voltage"
    );
    assert_eq!((attrs >> 8) & 0xff, 1, "one agent");
    assert_eq!(name(&r.ok(BASE_P, 3, &[])), "virtio-rs");
    assert_eq!(name(&r.ok(BASE_P, 4, &[])), "simulated");
    assert_eq!(word(&r.ok(BASE_P, 5, &[]), 0), 0x0001_0000);
    // The list: a count, then ids packed four to a word.
    let l = r.ok(BASE_P, 6, &[0]);
    assert_eq!(word(&l, 0), 6);
    assert_eq!(&l[4..12], &[0x11, 0x13, 0x14, 0x15, 0x16, 0x17, 0, 0]);
    assert_eq!(l.len(), 12, "padded to whole words");
    let l = r.ok(BASE_P, 6, &[5]);
    assert_eq!((word(&l, 0), l.len()), (1, 8));
    assert_eq!(&l[4..8], &[0x17, 0, 0, 0]);
    let l = r.ok(BASE_P, 6, &[6]);
    assert_eq!((word(&l, 0), l.len()), (0, 4));
    assert_eq!(r.status(BASE_P, 6, &[7]), INVALID_PARAMETERS);
    // Agents: the caller, the platform, nobody else.
    let a = r.ok(BASE_P, 7, &[0xffff_ffff]);
    assert_eq!((word(&a, 0), name(&a[4..])), (1, "guest"));
    let a = r.ok(BASE_P, 7, &[0]);
    assert_eq!((word(&a, 0), name(&a[4..])), (0, "platform"));
    assert_eq!(r.status(BASE_P, 7, &[2]), NOT_FOUND);
    // Message attributes: implemented messages 0, others NOT_FOUND.
    for m in 0..=8 {
        assert_eq!(word(&r.ok(BASE_P, 2, &[m]), 0), 0);
    }
    assert_eq!(r.status(BASE_P, 2, &[9]), NOT_FOUND);
    assert_eq!(r.status(BASE_P, 8, &[1]), SUCCESS);
    assert_eq!(r.status(BASE_P, 8, &[2]), INVALID_PARAMETERS);
}

#[test]
fn a_protocol_the_platform_lacks_is_not_listed_and_not_supported() {
    let mut r = rig_with(SimPlatform::new().without_power().without_resets(), p2a());
    let l = r.ok(BASE_P, 6, &[0]);
    assert_eq!(word(&l, 0), 4);
    assert_eq!(&l[4..8], &[0x13, 0x14, 0x15, 0x17]);
    assert_eq!(word(&r.ok(BASE_P, 1, &[]), 0) & 0xff, 4);
    for m in 0..=5 {
        assert_eq!(r.status(RESET_P, m, &[0]), NOT_SUPPORTED);
        assert_eq!(r.status(POWER_P, m, &[0]), NOT_SUPPORTED);
    }
}

#[test]
fn sensor_descriptions_and_readings() {
    let mut r = rig();
    assert_eq!(word(&r.ok(SENSOR_P, 0, &[]), 0), 0x1_0000);
    let a = word(&r.ok(SENSOR_P, 1, &[]), 0);
    assert_eq!(a & 0xffff, 2, "two sensors");
    assert_eq!((a >> 16) & 0xff, 4, "async slots");
    let d = r.ok(SENSOR_P, 3, &[0]);
    let flags = word(&d, 0);
    assert_eq!((flags & 0xfff, flags >> 16), (2, 0));
    assert_eq!(d.len(), 4 + 2 * 28);
    for (i, (nm, kind)) in [("soc-temp", 2), ("vdd-core", 5)].iter().enumerate() {
        let desc = &d[4 + i * 28..4 + (i + 1) * 28];
        assert_eq!(word(desc, 0), i as u32);
        let low = word(desc, 1);
        assert_ne!(low & (1 << 31), 0, "async reads");
        assert_eq!(low & 0xff, 2, "trip points");
        let high = word(desc, 2);
        assert_eq!(high & 0xff, *kind);
        assert_eq!(
            (high >> 11) & 0x1f,
            0x1d,
            "scale -3 as 5-bit two's complement"
        );
        assert_eq!(name(&desc[12..]), *nm);
    }
    // From index 1; past the end.
    let d = r.ok(SENSOR_P, 3, &[1]);
    assert_eq!(word(&d, 0) & 0xfff, 1);
    assert_eq!(word(&d, 1), 1);
    assert_eq!(word(&r.ok(SENSOR_P, 3, &[2]), 0), 0);
    assert_eq!(r.status(SENSOR_P, 3, &[3]), INVALID_PARAMETERS);
    // A small buffer: one descriptor and one remaining.
    let d = r.cmd_room(SENSOR_P, 3, &[0], 8 + 4 + 28 + 10);
    assert_eq!(d.status, SUCCESS);
    assert_eq!(
        (word(&d.values, 0) & 0xfff, word(&d.values, 0) >> 16),
        (1, 1)
    );
    // Synchronous reading: a 64-bit value.
    let v = r.ok(SENSOR_P, 6, &[1, 0]);
    assert_eq!((word(&v, 0), word(&v, 1), v.len()), (900, 0, 8));
    r.dev().platform_mut().readings[0] = -5_000;
    let v = r.ok(SENSOR_P, 6, &[0, 0]);
    assert_eq!(
        u64::from(word(&v, 0)) | (u64::from(word(&v, 1)) << 32),
        -5_000i64 as u64
    );
    assert_eq!(r.status(SENSOR_P, 6, &[2, 0]), NOT_FOUND);
    assert_eq!(r.status(SENSOR_P, 6, &[0, 2]), INVALID_PARAMETERS);
    r.dev().platform_mut().fail_voltage = true;
    assert_eq!(r.status(SENSOR_P, 6, &[1, 0]), HARDWARE_ERROR);
}

#[test]
fn trip_points_raise_notifications_the_agent_asked_for() {
    let mut r = rig();
    // Trip point 1 of sensor 0 at 50 °C, both directions.
    assert_eq!(
        r.status(SENSOR_P, 5, &[0, (1 << 4) | 3, 50_000, 0]),
        SUCCESS
    );
    assert_eq!(
        r.status(SENSOR_P, 5, &[0, (2 << 4) | 3, 50_000, 0]),
        INVALID_PARAMETERS
    );
    assert_eq!(r.status(SENSOR_P, 5, &[5, 3, 0, 0]), NOT_FOUND);
    // Not enabled yet: the event is dropped.
    r.post(32);
    r.dev().platform_mut().set_reading(0, 51_000);
    r.poll();
    assert!(r.take_events().is_empty());
    assert_eq!(r.status(SENSOR_P, 4, &[0, 1]), SUCCESS);
    r.dev().platform_mut().set_reading(0, 49_000);
    r.poll();
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(SENSOR_P, 0, 3, 0));
    assert_eq!(word(&ev[0], 1), 1, "agent");
    assert_eq!(word(&ev[0], 2), 0, "sensor");
    assert_eq!(word(&ev[0], 3), 1, "trip point 1, descending");
    assert_eq!(ev[0].len(), 16);
    // Disabled again.
    assert_eq!(r.status(SENSOR_P, 4, &[0, 0]), SUCCESS);
    r.post(32);
    r.dev().platform_mut().set_reading(0, 52_000);
    r.poll();
    assert!(r.take_events().is_empty());
}

#[test]
fn clock_attributes_rates_and_configuration() {
    let mut r = rig();
    assert_eq!(word(&r.ok(CLOCK_P, 0, &[]), 0), 0x1_0000);
    let a = word(&r.ok(CLOCK_P, 1, &[]), 0);
    assert_eq!((a & 0xffff, (a >> 16) & 0xff), (3, 4));
    let c = r.ok(CLOCK_P, 3, &[0]);
    assert_eq!((word(&c, 0), name(&c[4..])), (1, "cpu"));
    let c = r.ok(CLOCK_P, 3, &[2]);
    assert_eq!((word(&c, 0), name(&c[4..])), (0, "spi"));
    assert_eq!(r.status(CLOCK_P, 3, &[3]), NOT_FOUND);
    // Discrete rates: count bits 11:0, remaining 31:16, format bit 12 clear.
    let d = r.ok(CLOCK_P, 4, &[0, 0]);
    assert_eq!(word(&d, 0), 4);
    let rates: Vec<u64> = (0..4)
        .map(|i| u64::from(word(&d, 1 + 2 * i)) | (u64::from(word(&d, 2 + 2 * i)) << 32))
        .collect();
    assert_eq!(
        rates,
        [200_000_000, 400_000_000, 800_000_000, 1_200_000_000]
    );
    let d = r.ok(CLOCK_P, 4, &[0, 3]);
    assert_eq!((word(&d, 0), word(&d, 1)), (1, 1_200_000_000));
    // Room for two: two returned, two remaining.
    let d = r.cmd_room(CLOCK_P, 4, &[0, 0], 8 + 4 + 16);
    assert_eq!(word(&d.values, 0), 2 | (2 << 16));
    assert_eq!(r.status(CLOCK_P, 4, &[0, 5]), OUT_OF_RANGE);
    // A range: a triplet with bit 12 set.
    let d = r.ok(CLOCK_P, 4, &[1, 0]);
    assert_eq!(word(&d, 0), 3 | (1 << 12));
    assert_eq!(
        (word(&d, 1), word(&d, 3), word(&d, 5)),
        (1_000_000, 100_000_000, 1_000_000)
    );
    // Rates.
    let g = r.ok(CLOCK_P, 6, &[0]);
    assert_eq!((word(&g, 0), word(&g, 1)), (400_000_000, 0));
    assert_eq!(r.status(CLOCK_P, 5, &[0, 0, 800_000_000, 0]), SUCCESS);
    assert_eq!(word(&r.ok(CLOCK_P, 6, &[0]), 0), 800_000_000);
    // Round up / down / auto between two discrete rates.
    assert_eq!(r.status(CLOCK_P, 5, &[4, 0, 500_000_000, 0]), SUCCESS);
    assert_eq!(r.dev().platform().rates[0], 800_000_000);
    assert_eq!(r.status(CLOCK_P, 5, &[0, 0, 500_000_000, 0]), SUCCESS);
    assert_eq!(r.dev().platform().rates[0], 400_000_000);
    assert_eq!(r.status(CLOCK_P, 5, &[8, 0, 1_100_000_000, 0]), SUCCESS);
    assert_eq!(r.dev().platform().rates[0], 1_200_000_000);
    assert_eq!(r.status(CLOCK_P, 5, &[0, 1, 200_000_000, 0]), OUT_OF_RANGE);
    assert_eq!(
        r.status(CLOCK_P, 5, &[0x10, 0, 200_000_000, 0]),
        INVALID_PARAMETERS
    );
    assert_eq!(r.status(CLOCK_P, 5, &[0, 3, 200_000_000, 0]), NOT_FOUND);
    // Enable and disable.
    assert_eq!(r.status(CLOCK_P, 7, &[2, 1]), SUCCESS);
    assert!(r.dev().platform().enabled[2]);
    assert_eq!(word(&r.ok(CLOCK_P, 3, &[2]), 0), 1);
    assert_eq!(r.status(CLOCK_P, 7, &[2, 0]), SUCCESS);
    assert!(!r.dev().platform().enabled[2]);
    assert_eq!(r.status(CLOCK_P, 7, &[2, 2]), INVALID_PARAMETERS);
    assert_eq!(r.status(CLOCK_P, 7, &[9, 1]), NOT_FOUND);
}

#[test]
fn async_clock_rate_set_sends_rate_set_complete() {
    let mut r = rig();
    r.post(32);
    assert_eq!(r.status(CLOCK_P, 5, &[1, 1, 24_500_000, 0]), SUCCESS);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(CLOCK_P, 5, 2, r.token));
    assert_eq!((word(&ev[0], 1), word(&ev[0], 2)), (0, 1));
    assert_eq!(
        (word(&ev[0], 3), word(&ev[0], 4)),
        (24_000_000, 0),
        "rounded down"
    );
    // With "ignore delayed response": none comes.
    r.post(32);
    assert_eq!(r.status(CLOCK_P, 5, &[1 | 2, 1, 30_000_000, 0]), SUCCESS);
    assert!(r.take_events().is_empty());
    assert_eq!(r.dev().platform().rates[1], 30_000_000);
}

#[test]
fn the_delayed_response_comes_in_a_later_call_than_the_response() {
    let mut r = rig();
    r.post(32);
    let b = le(&[hdr(SENSOR_P, 6, 0, 9), 0, 1]);
    let out = r.h.put(&b);
    let resp = r.h.space(16);
    r.h.add(0, &[out], &[resp]);
    let service = r.h.core.notify(0);
    assert!(service.work_left(), "the job is left for the next call");
    assert_eq!(r.h.used(0).unwrap().len, 8);
    assert!(r.take_events().is_empty());
    let _ = r.h.core.poll();
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(SENSOR_P, 6, 2, 9));
}

#[test]
fn failed_delayed_responses_carry_only_the_status() {
    // spec: scmi.eventq-operation.6
    let mut r = rig();
    r.dev().platform_mut().fail_voltage = true;
    r.post(32);
    assert_eq!(r.status(SENSOR_P, 6, &[1, 1]), SUCCESS);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].len(), 8);
    assert_eq!(word(&ev[0], 0), hdr(SENSOR_P, 6, 2, r.token));
    assert_eq!(word(&ev[0], 1) as i32, HARDWARE_ERROR);
    // A clock rate out of range, asynchronously.
    r.post(32);
    assert_eq!(r.status(CLOCK_P, 5, &[1, 1, 500_000_000, 0]), SUCCESS);
    let ev = r.take_events();
    assert_eq!(ev[0].len(), 8);
    assert_eq!(word(&ev[0], 1) as i32, OUT_OF_RANGE);
}

#[test]
fn delayed_responses_wait_for_eventq_buffers() {
    // spec: scmi.cmdq-operation.4, scmi.eventq-operation.5
    let mut r = rig();
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    let first = r.token;
    assert_eq!(r.status(RESET_P, 4, &[1, 4 | 1, 0]), SUCCESS);
    let second = r.token;
    r.poll();
    assert!(r.take_events().is_empty());
    assert_eq!(r.dev().pending(), 2);
    r.post(32);
    r.post(32);
    let ev = r.take_events();
    assert_eq!(ev.len(), 2);
    assert_eq!(word(&ev[0], 0), hdr(SENSOR_P, 6, 2, first));
    assert_eq!(word(&ev[1], 0), hdr(RESET_P, 4, 2, second));
    assert_eq!((word(&ev[1], 1), word(&ev[1], 2), ev[1].len()), (0, 1, 12));
    assert_eq!(r.dev().platform().resets_done[1], 1);
    // A buffer too small for a delayed response comes back empty and the
    // response waits for the next one.
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    r.post(8);
    let ev = r.take_events();
    assert_eq!(ev, vec![Vec::<u8>::new()]);
    r.post(32);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 3), 45_000);
}

#[test]
fn async_commands_beyond_the_advertised_slots_answer_busy() {
    let mut r = rig();
    for _ in 0..4 {
        assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    }
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), BUSY);
    assert_eq!(r.status(CLOCK_P, 5, &[1, 0, 200_000_000, 0]), BUSY);
    // Synchronous commands still work.
    assert_eq!(r.status(SENSOR_P, 6, &[0, 0]), SUCCESS);
    for _ in 0..4 {
        r.post(32);
    }
    assert_eq!(r.take_events().len(), 4);
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
}

#[test]
fn reset_domains() {
    let mut r = rig();
    assert_eq!(word(&r.ok(RESET_P, 0, &[]), 0), 0x1_0000);
    assert_eq!(word(&r.ok(RESET_P, 1, &[]), 0), 2);
    let a = r.ok(RESET_P, 3, &[0]);
    assert_eq!(word(&a, 0), (1 << 31) | (1 << 30), "async and notify");
    assert_eq!(word(&a, 1), 10, "latency");
    assert_eq!(name(&a[8..]), "gpu");
    assert_eq!(r.status(RESET_P, 3, &[2]), NOT_FOUND);
    // Explicit assert, then deassert.
    assert_eq!(r.status(RESET_P, 4, &[0, 2, 0]), SUCCESS);
    assert!(r.dev().platform().asserted[0]);
    assert_eq!(r.status(RESET_P, 4, &[0, 0, 0]), SUCCESS);
    assert!(!r.dev().platform().asserted[0]);
    // Autonomous.
    assert_eq!(r.status(RESET_P, 4, &[0, 1, 0]), SUCCESS);
    assert_eq!(r.dev().platform().resets_done[0], 2);
    // Reserved architectural state, an implementation state the domain
    // lacks, bad flags, a bad domain.
    assert_eq!(r.status(RESET_P, 4, &[0, 1, 5]), INVALID_PARAMETERS);
    assert_eq!(
        r.status(RESET_P, 4, &[0, 1, 0x8000_0001]),
        INVALID_PARAMETERS
    );
    assert_eq!(r.status(RESET_P, 4, &[0, 8, 0]), INVALID_PARAMETERS);
    assert_eq!(r.status(RESET_P, 4, &[7, 1, 0]), NOT_FOUND);
    // RESET_ISSUED, once asked for.
    r.post(32);
    r.dev().platform_mut().external_reset(1);
    r.poll();
    assert!(r.take_events().is_empty());
    assert_eq!(r.status(RESET_P, 5, &[1, 1]), SUCCESS);
    r.post(32);
    r.dev().platform_mut().external_reset(1);
    r.poll();
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(RESET_P, 0, 3, 0));
    assert_eq!(
        (word(&ev[0], 1), word(&ev[0], 2), word(&ev[0], 3)),
        (1, 1, 0)
    );
}

#[test]
fn power_domains() {
    let mut r = rig();
    assert_eq!(word(&r.ok(POWER_P, 0, &[]), 0), 0x2_0000);
    assert_eq!(word(&r.ok(POWER_P, 1, &[]), 0), 2);
    let a = r.ok(POWER_P, 3, &[1]);
    assert_eq!(word(&a, 0), (1 << 31) | (1 << 29), "notify, sync");
    assert_eq!(name(&a[4..]), "dsp-pd");
    assert_eq!(word(&r.ok(POWER_P, 5, &[1]), 0), 0);
    assert_eq!(r.status(POWER_P, 6, &[1, 1]), SUCCESS);
    r.post(32);
    assert_eq!(r.status(POWER_P, 4, &[0, 1, 1 << 30]), SUCCESS);
    assert_eq!(word(&r.ok(POWER_P, 5, &[1]), 0), 1 << 30);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(POWER_P, 0, 3, 0));
    assert_eq!((word(&ev[0], 2), word(&ev[0], 3)), (1, 1 << 30));
    assert_eq!(r.status(POWER_P, 4, &[0, 1, 7]), INVALID_PARAMETERS);
    assert_eq!(
        r.status(POWER_P, 4, &[1, 1, 0]),
        NOT_SUPPORTED,
        "async not offered"
    );
    assert_eq!(r.status(POWER_P, 5, &[2]), NOT_FOUND);
}

#[test]
fn performance_domains() {
    let mut r = rig();
    assert_eq!(word(&r.ok(PERF_P, 0, &[]), 0), 0x2_0000);
    let a = r.ok(PERF_P, 1, &[]);
    assert_eq!(word(&a, 0), 1 | (1 << 16), "one domain, power in mW");
    assert_eq!((word(&a, 1), word(&a, 2), word(&a, 3)), (0, 0, 0));
    let d = r.ok(PERF_P, 3, &[0]);
    assert_eq!(
        word(&d, 0),
        0xf << 28,
        "set limits, set level, both notifications"
    );
    assert_eq!(
        (word(&d, 2), word(&d, 3)),
        (800_000, 200),
        "sustained kHz, level"
    );
    assert_eq!(name(&d[16..]), "cpu-perf");
    assert_eq!(r.status(PERF_P, 3, &[1]), NOT_FOUND);
    // Levels: 12 bytes each (level, power, latency in bits 15:0).
    let l = r.ok(PERF_P, 4, &[0, 0]);
    assert_eq!(word(&l, 0), 3);
    assert_eq!((word(&l, 1), word(&l, 2), word(&l, 3)), (100, 100, 50));
    assert_eq!((word(&l, 7), word(&l, 8), word(&l, 9)), (400, 600, 100));
    let l = r.ok(PERF_P, 4, &[0, 2]);
    assert_eq!((word(&l, 0), word(&l, 1)), (1, 400));
    assert_eq!(r.status(PERF_P, 4, &[0, 4]), OUT_OF_RANGE);
    // Level and limits, with notifications.
    assert_eq!(r.status(PERF_P, 9, &[0, 1]), SUCCESS);
    assert_eq!(r.status(PERF_P, 10, &[0, 1]), SUCCESS);
    for _ in 0..3 {
        r.post(32);
    }
    assert_eq!(word(&r.ok(PERF_P, 8, &[0]), 0), 200);
    assert_eq!(r.status(PERF_P, 7, &[0, 400]), SUCCESS);
    assert_eq!(word(&r.ok(PERF_P, 8, &[0]), 0), 400);
    assert_eq!(r.status(PERF_P, 7, &[0, 300]), INVALID_PARAMETERS);
    assert_eq!(r.status(PERF_P, 5, &[0, 200, 100]), SUCCESS);
    let lim = r.ok(PERF_P, 6, &[0]);
    assert_eq!((word(&lim, 0), word(&lim, 1)), (200, 100));
    assert_eq!(
        word(&r.ok(PERF_P, 8, &[0]), 0),
        200,
        "clamped to the new max"
    );
    assert_eq!(r.status(PERF_P, 7, &[0, 400]), OUT_OF_RANGE);
    assert_eq!(r.status(PERF_P, 5, &[0, 100, 200]), INVALID_PARAMETERS);
    let ev = r.take_events();
    assert_eq!(ev.len(), 3);
    assert_eq!(word(&ev[0], 0), hdr(PERF_P, 1, 3, 0));
    assert_eq!((word(&ev[0], 2), word(&ev[0], 3)), (0, 400));
    assert_eq!(word(&ev[1], 0), hdr(PERF_P, 0, 3, 0));
    assert_eq!((word(&ev[1], 3), word(&ev[1], 4)), (200, 100));
    assert_eq!(word(&ev[2], 0), hdr(PERF_P, 1, 3, 0));
    assert_eq!(word(&ev[2], 3), 200);
    // No FastChannels (virtio 1.4 §"SCMI Device": not supported).
    assert_eq!(r.status(PERF_P, 2, &[0xb]), NOT_FOUND);
}

#[test]
fn voltage_domains() {
    let mut r = rig();
    assert_eq!(word(&r.ok(VOLTAGE_P, 0, &[]), 0), 0x1_0000);
    assert_eq!(word(&r.ok(VOLTAGE_P, 1, &[]), 0), 2);
    let a = r.ok(VOLTAGE_P, 3, &[1]);
    assert_eq!((word(&a, 0), name(&a[4..])), (0, "vdd-ddr"));
    assert_eq!(r.status(VOLTAGE_P, 3, &[2]), NOT_FOUND);
    let l = r.ok(VOLTAGE_P, 4, &[0, 0]);
    assert_eq!(
        (word(&l, 0), word(&l, 1), word(&l, 2)),
        (2, 1_800_000, 3_300_000)
    );
    let l = r.ok(VOLTAGE_P, 4, &[1, 0]);
    assert_eq!(word(&l, 0), 3 | (1 << 12));
    assert_eq!(
        (word(&l, 1), word(&l, 2), word(&l, 3)),
        (1_000_000, 1_400_000, 50_000)
    );
    assert_eq!(word(&r.ok(VOLTAGE_P, 6, &[0]), 0), 7);
    assert_eq!(r.status(VOLTAGE_P, 5, &[0, 0]), SUCCESS);
    assert_eq!(word(&r.ok(VOLTAGE_P, 6, &[0]), 0), 0);
    assert_eq!(r.status(VOLTAGE_P, 5, &[0, 3]), INVALID_PARAMETERS);
    assert_eq!(r.status(VOLTAGE_P, 5, &[0, 0x17]), INVALID_PARAMETERS);
    assert_eq!(r.status(VOLTAGE_P, 7, &[1, 0, 1_250_000]), SUCCESS);
    assert_eq!(word(&r.ok(VOLTAGE_P, 8, &[1]), 0), 1_250_000);
    assert_eq!(r.status(VOLTAGE_P, 7, &[1, 0, 1_260_000]), OUT_OF_RANGE);
    assert_eq!(
        r.status(VOLTAGE_P, 7, &[1, 1, 1_250_000]),
        INVALID_PARAMETERS
    );
    assert_eq!(r.status(VOLTAGE_P, 7, &[0, 0, 1_800_000]), SUCCESS);
    assert_eq!(r.dev().platform().voltage_levels[0], 1_800_000);
}

#[test]
fn every_command_of_a_burst_is_answered() {
    // spec: scmi.cmdq-operation.2
    let mut r = rig();
    r.h.core.set_budget(3);
    let mut segs = vec![];
    for i in 0..30u32 {
        let b = le(&[hdr(CLOCK_P, 6, 0, i), i % 3]);
        let out = r.h.put(&b);
        let resp = r.h.space(16);
        let id = r.h.add(0, &[out], &[resp]);
        segs.push((id, resp, i));
    }
    r.h.kick(0);
    let mut seen = 0;
    while let Some(u) = r.h.used(0) {
        let (_, resp, i) = segs.iter().find(|s| s.0 == u.id).copied().unwrap();
        let b = r.h.read(resp);
        assert_eq!(u.len, 16);
        assert_eq!(word(&b, 0), hdr(CLOCK_P, 6, 0, i));
        assert_eq!(word(&b, 1), 0);
        seen += 1;
    }
    assert_eq!(seen, 30);
}

#[test]
fn without_p2a_notifications_and_async_commands_are_refused() {
    // spec: scmi.cmdq-operation.5
    let mut r = rig_with(SimPlatform::new(), Features::empty());
    assert_eq!(r.status(BASE_P, 8, &[1]), NOT_SUPPORTED);
    assert_eq!(r.status(SENSOR_P, 4, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(RESET_P, 5, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(POWER_P, 6, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(PERF_P, 9, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(PERF_P, 10, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), NOT_SUPPORTED);
    assert_eq!(r.status(CLOCK_P, 5, &[1, 0, 200_000_000, 0]), NOT_SUPPORTED);
    assert_eq!(r.status(RESET_P, 4, &[0, 4 | 1, 0]), NOT_SUPPORTED);
    // The synchronous forms work.
    assert_eq!(r.status(SENSOR_P, 6, &[0, 0]), SUCCESS);
    assert_eq!(r.status(RESET_P, 4, &[0, 1, 0]), SUCCESS);
}

#[test]
fn without_p2a_no_attribute_claims_notifications_or_delayed_responses() {
    // spec: scmi.cmdq-operation.6
    let mut r = rig_with(SimPlatform::new(), Features::empty());
    // PROTOCOL_MESSAGE_ATTRIBUTES: the notify commands are not there.
    assert_eq!(r.status(BASE_P, 2, &[8]), NOT_FOUND);
    assert_eq!(r.status(SENSOR_P, 2, &[4]), NOT_FOUND);
    assert_eq!(r.status(RESET_P, 2, &[5]), NOT_FOUND);
    assert_eq!(r.status(POWER_P, 2, &[6]), NOT_FOUND);
    assert_eq!(r.status(PERF_P, 2, &[9]), NOT_FOUND);
    assert_eq!(r.status(PERF_P, 2, &[10]), NOT_FOUND);
    assert_eq!(word(&r.ok(PERF_P, 3, &[0]), 0), 3 << 30, "no notify bits");
    // Protocol and resource attributes: no async slots, no async or notify bits.
    assert_eq!(word(&r.ok(SENSOR_P, 1, &[]), 0) >> 16, 0);
    assert_eq!(word(&r.ok(CLOCK_P, 1, &[]), 0) >> 16, 0);
    let d = r.ok(SENSOR_P, 3, &[0]);
    assert_eq!(word(&d, 2) & (1 << 31), 0);
    assert_eq!(word(&r.ok(RESET_P, 3, &[0]), 0), 0);
    assert_eq!(word(&r.ok(POWER_P, 3, &[0]), 0), 1 << 29);
    // With P2A the same queries say they exist.
    let mut r = rig();
    assert_eq!(r.status(SENSOR_P, 2, &[4]), SUCCESS);
    assert_eq!(word(&r.ok(RESET_P, 3, &[0]), 0) >> 30, 3);
}

#[test]
fn notifications_wait_for_buffers_and_too_small_buffers_omit_them() {
    // spec: scmi.eventq-operation.1, scmi.eventq-operation.4
    let mut r = rig();
    assert_eq!(r.status(RESET_P, 5, &[0, 1]), SUCCESS);
    r.dev().platform_mut().external_reset(0);
    r.poll();
    // No buffer: held back, sent when one arrives.
    assert_eq!(r.dev().pending(), 1);
    r.post(32);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(RESET_P, 0, 3, 0));
    // A buffer too small for it: the notification is omitted, the buffer
    // stays held for the next message.
    r.post(8);
    r.dev().platform_mut().external_reset(0);
    r.poll();
    assert!(r.take_events().is_empty());
    assert_eq!(r.dev().stats().dropped, 1);
    assert_eq!(r.dev().held_buffers(), 1);
}

#[test]
fn notifications_beyond_the_pending_slots_are_dropped() {
    let mut r = rig();
    assert_eq!(r.status(RESET_P, 5, &[0, 1]), SUCCESS);
    for _ in 0..6 {
        r.dev().platform_mut().external_reset(0);
    }
    r.poll();
    assert_eq!(r.dev().pending(), 4);
    assert_eq!(r.dev().stats().dropped, 2);
}

#[test]
fn the_device_holds_at_most_e_event_buffers() {
    let mut r = rig();
    for _ in 0..6 {
        r.post(32);
    }
    assert_eq!(r.dev().held_buffers(), 4);
    assert!(r.take_events().is_empty());
    // Each delivered message frees a slot, and the next buffer is taken.
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    assert_eq!(r.take_events().len(), 1);
    assert_eq!(r.dev().held_buffers(), 4);
}

#[test]
fn reset_forgets_held_buffers_pending_messages_and_notify_state() {
    let mut r = rig();
    r.post(32);
    assert_eq!(r.status(RESET_P, 5, &[0, 1]), SUCCESS);
    assert_eq!(r.status(SENSOR_P, 6, &[0, 1]), SUCCESS);
    r.dev().reset();
    assert_eq!((r.dev().held_buffers(), r.dev().pending()), (0, 0));
    // And eventq reset forgets held buffers only.
    let mut r = rig();
    r.post(32);
    r.dev().queue_reset(1);
    assert_eq!(r.dev().held_buffers(), 0);
}

#[test]
fn a_malformed_command_chain_gets_protocol_error() {
    let mut r = rig();
    // A readable buffer after the writable one breaks the chain rules.
    let out = r.h.put(&hdr(BASE_P, 0, 0, 1).to_le_bytes());
    let resp = r.h.space(16);
    let extra = r.h.put(&[0; 4]);
    r.h.add_mixed(0, &[(out, false), (resp, true), (extra, false)]);
    r.h.kick(0);
    let u = r.h.used(0).unwrap();
    assert_eq!(u.len, 8);
    let b = r.h.read(resp);
    assert_eq!((word(&b, 0), word(&b, 1) as i32), (0, PROTOCOL_ERROR));
}

/// A platform hiding clock 1 and making reset domain 0 read-only for agent
/// 1, and closing the power protocol to it.
struct Guarded(SimPlatform);

impl Platform for Guarded {
    fn vendor(&self) -> &str {
        self.0.vendor()
    }
    fn agents(&self) -> u8 {
        2
    }
    fn agent_name(&self, id: u32) -> Option<&str> {
        (id == 2).then_some("secure")
    }
    fn access(&self, agent: u32, protocol: u8, resource: u32) -> Access {
        match (agent, protocol, resource) {
            (1, PROTOCOL_CLOCK, 1) | (1, PROTOCOL_SENSOR, 0) => Access::Hidden,
            (1, PROTOCOL_RESET, 0) => Access::ReadOnly,
            _ => Access::Full,
        }
    }
    fn protocol_allowed(&self, agent: u32, protocol: u8) -> bool {
        !(agent == 1 && protocol == PROTOCOL_POWER)
    }
    fn sensors(&mut self) -> Option<&mut dyn Sensors> {
        Some(&mut self.0)
    }
    fn clocks(&mut self) -> Option<&mut dyn Clocks> {
        Some(&mut self.0)
    }
    fn resets(&mut self) -> Option<&mut dyn Resets> {
        Some(&mut self.0)
    }
    fn power(&mut self) -> Option<&mut dyn PowerDomains> {
        Some(&mut self.0)
    }
    fn perf(&mut self) -> Option<&mut dyn PerfDomains> {
        Some(&mut self.0)
    }
    fn voltage(&mut self) -> Option<&mut dyn VoltageDomains> {
        Some(&mut self.0)
    }
}

#[test]
fn per_agent_permissions_hide_deny_and_close_protocols() {
    let mut h: Harness<Scmi<Guarded, 4, 4>, 2> =
        Harness::new(Scmi::new(Guarded(SimPlatform::new())), p2a(), &[0, 1]);
    let mut send = |p: u32, m: u32, params: &[u32]| -> (i32, Vec<u8>) {
        let mut b = hdr(p, m, 0, 1).to_le_bytes().to_vec();
        b.extend(le(params));
        let out = h.put(&b);
        let resp = h.space(132);
        let u = h.request(0, &[out], &[resp]);
        let v = h.read(resp);
        (word(&v, 1) as i32, v[8..u.len as usize].to_vec())
    };
    assert_eq!(send(CLOCK_P, 3, &[1]).0, NOT_FOUND);
    assert_eq!(send(CLOCK_P, 6, &[1]).0, NOT_FOUND);
    assert_eq!(send(CLOCK_P, 6, &[0]).0, SUCCESS);
    assert_eq!(send(RESET_P, 3, &[0]).0, SUCCESS);
    assert_eq!(send(RESET_P, 4, &[0, 1, 0]).0, DENIED);
    assert_eq!(send(RESET_P, 4, &[1, 1, 0]).0, SUCCESS);
    assert_eq!(send(POWER_P, 0, &[]).0, NOT_SUPPORTED);
    let (s, l) = send(BASE_P, 6, &[0]);
    assert_eq!(s, SUCCESS);
    assert_eq!(word(&l, 0), 5);
    assert_eq!(&l[4..12], &[0x13, 0x14, 0x15, 0x16, 0x17, 0, 0, 0]);
    // The hidden sensor is not described; the visible one keeps its id.
    let (_, a) = send(SENSOR_P, 1, &[]);
    assert_eq!(word(&a, 0) & 0xffff, 1);
    let (_, d) = send(SENSOR_P, 3, &[0]);
    assert_eq!((word(&d, 0), word(&d, 1)), (1, 1));
    assert_eq!(send(SENSOR_P, 6, &[0, 0]).0, NOT_FOUND);
    // The other agent has a name.
    let (s, a) = send(BASE_P, 7, &[2]);
    assert_eq!((s, word(&a, 0), name(&a[4..])), (SUCCESS, 2, "secure"));
    assert_eq!(send(BASE_P, 7, &[3]).0, NOT_FOUND);
}

#[test]
fn base_error_events_report_commands_that_had_no_room() {
    let mut r = rig();
    assert_eq!(r.status(BASE_P, 8, &[1]), SUCCESS);
    r.post(32);
    let h = hdr(CLOCK_P, 6, 0, 77);
    let (used, _) = r.raw(&le(&[h, 0]), 4);
    assert_eq!(used, 0);
    let ev = r.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!(word(&ev[0], 0), hdr(BASE_P, 0, 3, 0));
    assert_eq!((word(&ev[0], 1), word(&ev[0], 2) & 0x3ff), (1, 1));
    assert_eq!(word(&ev[0], 3), h);
}
