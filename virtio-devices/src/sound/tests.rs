//! The sound device against a driver double written from the spec's
//! driver section (virtio 1.4 §"Sound Device": Device Initialization, Item
//! Information Request, PCM Stream Parameters, PCM Output/Input Stream,
//! Control Element Value/Metadata), over `DeviceCore` and our split ring.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::vec;
use std::vec::Vec;

use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::{FromBytes, IntoBytes};

use super::*;
use crate::harness::Harness;

/// A backend with a clock the test moves, output recorded per stream and
/// input counting up.
#[derive(Default)]
struct TestPcm {
    now: u64,
    out: Vec<u8>,
    next_in: u8,
    calls: Vec<(&'static str, u32)>,
    fail_write: bool,
    commands: Vec<Vec<u8>>,
}

impl PcmBackend for TestPcm {
    fn now_ns(&mut self) -> u64 {
        self.now
    }
    fn prepare(&mut self, stream: u32, _: &PcmParams) -> Result<(), PcmError> {
        self.calls.push(("prepare", stream));
        Ok(())
    }
    fn start(&mut self, stream: u32) -> Result<(), PcmError> {
        self.calls.push(("start", stream));
        Ok(())
    }
    fn stop(&mut self, stream: u32) {
        self.calls.push(("stop", stream));
    }
    fn release(&mut self, stream: u32) {
        self.calls.push(("release", stream));
    }
    fn write(&mut self, _: u32, frames: &[u8]) -> Result<(), PcmError> {
        if self.fail_write {
            return Err(PcmError::Io);
        }
        self.out.extend_from_slice(frames);
        Ok(())
    }
    fn read(&mut self, _: u32, frames: &mut [u8]) -> Result<(), PcmError> {
        for b in frames {
            *b = self.next_in;
            self.next_in = self.next_in.wrapping_add(1);
        }
        Ok(())
    }
    fn tlv_command(&mut self, _: u32, tlv: &[u8]) -> Result<(), PcmError> {
        self.commands.push(tlv.to_vec());
        Ok(())
    }
}

const OUT: u32 = 0;
const IN: u32 = 1;

static CHMAPS: [ChmapDesc; 2] = [
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Output,
        positions: &[CHMAP_FL, CHMAP_FR],
    },
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Input,
        positions: &[CHMAP_MONO],
    },
];

const JACKS: [JackDesc; 2] = [
    JackDesc {
        hda_fn_nid: 0,
        features: JACK_F_REMAP,
        hda_reg_defconf: 0x0101_4010,
        hda_reg_caps: 0x10,
        connected: true,
    },
    JackDesc {
        hda_fn_nid: 0,
        features: 0,
        hda_reg_defconf: 0,
        hda_reg_caps: 0,
        connected: false,
    },
];

const VOLUME: ControlDesc = ControlDesc {
    hda_fn_nid: 0,
    role: (CTL_ROLE_VOLUME, Direction::Output),
    kind: ControlKind::Integer {
        min: 0,
        max: 100,
        step: 5,
    },
    access: CTL_ACCESS_READ | CTL_ACCESS_WRITE | CTL_ACCESS_TLV_READ | CTL_ACCESS_TLV_COMMAND,
    count: 2,
    index: 0,
    name: "Master Playback Volume",
    initial: &[50, 0, 0, 0, 50, 0, 0, 0],
    // SNDRV_CTL_TLVT_DB_SCALE (1), 8 bytes: min -50.00 dB, step 0.50 dB.
    tlv: &[1, 0, 0, 0, 8, 0, 0, 0, 0x78, 0xec, 0xff, 0xff, 50, 0, 0, 0],
};

const MUTE: ControlDesc = ControlDesc {
    hda_fn_nid: 0,
    role: (CTL_ROLE_MUTE, Direction::Output),
    kind: ControlKind::Boolean,
    access: CTL_ACCESS_READ | CTL_ACCESS_WRITE | CTL_ACCESS_TLV_WRITE | CTL_ACCESS_TLV_READ,
    count: 1,
    index: 0,
    name: "Master Playback Switch",
    initial: &[1],
    tlv: &[],
};

const MODE: ControlDesc = ControlDesc {
    hda_fn_nid: 0,
    role: (CTL_ROLE_UNDEFINED, Direction::Output),
    kind: ControlKind::Enumerated(&["Line", "Mic", "Internal"]),
    access: CTL_ACCESS_READ | CTL_ACCESS_WRITE,
    count: 1,
    index: 0,
    name: "Input Source",
    initial: &[],
    tlv: &[],
};

const BIG: ControlDesc = ControlDesc {
    hda_fn_nid: 1,
    role: (CTL_ROLE_GAIN, Direction::Input),
    kind: ControlKind::Integer64 {
        min: -1,
        max: 1 << 40,
        step: 0,
    },
    access: CTL_ACCESS_READ,
    count: 1,
    index: 3,
    name: "Capture Gain",
    initial: &[7],
    tlv: &[],
};

type Dev = Sound<TestPcm, 2>;
type H = Harness<Dev, 4>;

fn device() -> Dev {
    Sound::new(
        TestPcm::default(),
        &JACKS,
        [
            StreamDesc::stereo(Direction::Output),
            StreamDesc::stereo(Direction::Input),
        ],
        &CHMAPS,
        &[VOLUME, MUTE, MODE, BIG],
    )
    .unwrap()
}

fn rig_with(features: u64) -> H {
    Harness::new(
        device(),
        Features::from_bits_retain(features),
        &[CONTROLQ, EVENTQ, TXQ, RXQ],
    )
}

fn rig() -> H {
    rig_with(F_CTLS)
}

fn dev(h: &mut H) -> &mut Dev {
    h.core.device_mut()
}

/// One control request; returns (status, payload, used length).
fn ctl(h: &mut H, request: &[u8], payload: u32) -> (u32, Vec<u8>, u32) {
    let out = h.put(request);
    let resp = h.space(4 + payload);
    let used = h.request(CONTROLQ, &[out], &[resp]);
    let b = h.read(resp);
    let status = u32::from_le_bytes(b[..4].try_into().unwrap());
    (status, b[4..].to_vec(), used.len)
}

fn status(h: &mut H, request: &[u8]) -> u32 {
    ctl(h, request, 0).0
}

fn query(code: u32, start: u32, count: u32, size: usize) -> Vec<u8> {
    QueryInfo {
        code: code.into(),
        start_id: start.into(),
        count: count.into(),
        size: (size as u32).into(),
    }
    .as_bytes()
    .to_vec()
}

fn item(code: u32, id: u32) -> Vec<u8> {
    ItemHdr {
        code: code.into(),
        id: id.into(),
    }
    .as_bytes()
    .to_vec()
}

/// S16 stereo 48 kHz: 192000 bytes a second, 4 periods of `period` bytes.
fn params(stream: u32, period: u32) -> SetParams {
    SetParams {
        hdr: ItemHdr {
            code: R_PCM_SET_PARAMS.into(),
            id: stream.into(),
        },
        buffer_bytes: (period * 4).into(),
        period_bytes: period.into(),
        features: PCM_F_EVT_XRUNS.into(),
        channels: 2,
        format: FMT_S16,
        rate: RATE_48000,
        padding: 0,
    }
}

fn ok(h: &mut H, request: &[u8]) {
    assert_eq!(status(h, request), S_OK, "request {:x?}", &request[..4]);
}

/// SET_PARAMS and PREPARE with `period`-byte periods.
fn prepare(h: &mut H, stream: u32, period: u32) {
    ok(h, params(stream, period).as_bytes());
    ok(h, &item(R_PCM_PREPARE, stream));
}

/// Posts a tx buffer of `frames` (not kicked); returns (id, status segment).
fn tx(h: &mut H, stream: u32, frames: &[u8]) -> (u16, Segment) {
    let hdr = h.put(
        Xfer {
            stream_id: stream.into(),
        }
        .as_bytes(),
    );
    let data = h.put(frames);
    let st = h.space(8);
    (h.add(TXQ, &[hdr, data], &[st]), st)
}

/// Posts an rx buffer of `len` frame bytes (not kicked); returns (id,
/// data, status).
fn rx(h: &mut H, stream: u32, len: u32) -> (u16, Segment, Segment) {
    let hdr = h.put(
        Xfer {
            stream_id: stream.into(),
        }
        .as_bytes(),
    );
    let data = h.space(len);
    let st = h.space(8);
    (h.add(RXQ, &[hdr], &[data, st]), data, st)
}

fn pcm_status(h: &H, seg: Segment) -> PcmStatus {
    PcmStatus::read_from_bytes(&h.read(seg)).unwrap()
}

fn all_used(h: &mut H, q: u16) -> Vec<(u16, u32)> {
    let mut v = vec![];
    while let Some(u) = h.used(q) {
        v.push((u.id, u.len));
    }
    v
}

/// Moves the backend clock to `ns` and polls, as the embedder's timer does.
fn at(h: &mut H, ns: u64) {
    dev(h).backend_mut().now = ns;
    let mut s = h.core.poll();
    while s.work_left() {
        s = h.core.poll();
    }
}

const MS: u64 = 1_000_000;

/// Posts `n` event buffers; returns their segments by id.
fn post_events(h: &mut H, n: usize) -> Vec<(u16, Segment)> {
    let mut v = vec![];
    for _ in 0..n {
        let seg = h.space(8);
        v.push((h.add(EVENTQ, &[], &[seg]), seg));
    }
    h.kick(EVENTQ);
    v
}

fn events(h: &mut H, posted: &[(u16, Segment)]) -> Vec<(u32, u32)> {
    let mut out = vec![];
    while let Some(u) = h.used(EVENTQ) {
        assert_eq!(u.len, 8);
        let seg = posted.iter().find(|p| p.0 == u.id).unwrap().1;
        let e = Event::read_from_bytes(&h.read(seg)).unwrap();
        out.push((e.code.get(), e.data.get()));
    }
    out
}

// ---------------------------------------------------------------- config

#[test]
fn config_counts_items_and_controls_only_with_ctls() {
    let h = rig();
    let mut c = [0u8; 16];
    h.core.device().read_config(0, &mut c);
    let c = SoundConfig::read_from_bytes(&c).unwrap();
    assert_eq!(
        (
            c.jacks.get(),
            c.streams.get(),
            c.chmaps.get(),
            c.controls.get()
        ),
        (2, 2, 2, 4)
    );
    assert_eq!(h.core.device().features().bits(), F_CTLS);
    let plain: Sound<NullPcm, 1> = Sound::new(
        NullPcm::new(),
        &[],
        [StreamDesc::stereo(Direction::Output)],
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(plain.features().bits(), 0);
    assert_eq!(plain.config().controls.get(), 0);
    assert_eq!(plain.num_queues(), 4);
    assert_eq!(plain.device_id(), DeviceId::Sound);
}

// ---------------------------------------------------------------- info

// spec: sound.jack-information.1, sound.jack-information.2
#[test]
fn jack_info_has_defined_features_and_zero_padding() {
    let mut h = rig();
    let size = size_of::<JackInfoWire>();
    let (st, body, len) = ctl(&mut h, &query(R_JACK_INFO, 0, 2, size), 2 * size as u32);
    assert_eq!((st, len), (S_OK, 4 + 2 * size as u32));
    for (i, chunk) in body.chunks(size).enumerate() {
        let j = JackInfoWire::read_from_bytes(chunk).unwrap();
        assert_eq!(j.features.get() & !JACK_F_REMAP, 0);
        assert_eq!(j.padding, [0; 7]);
        assert_eq!(j.connected, u8::from(i == 0));
        assert_eq!(j.hda_reg_defconf.get(), JACKS[i].hda_reg_defconf);
    }
    // A table with an undefined jack feature is refused.
    let bad = JackDesc {
        features: 2,
        ..JACKS[0]
    };
    let r = Sound::<NullPcm, 1>::new(
        NullPcm::new(),
        &[bad],
        [StreamDesc::stereo(Direction::Output)],
        &[],
        &[],
    );
    assert_eq!(r.err(), Some(ConfigError::JackFeatures(0)));
}

// spec: sound.stream-information.1, sound.stream-information.2
#[test]
fn pcm_info_has_defined_bits_and_zero_padding() {
    let mut h = rig();
    let size = size_of::<PcmInfoWire>();
    let (st, body, _) = ctl(&mut h, &query(R_PCM_INFO, 0, 2, size), 2 * size as u32);
    assert_eq!(st, S_OK);
    for (i, chunk) in body.chunks(size).enumerate() {
        let p = PcmInfoWire::read_from_bytes(chunk).unwrap();
        assert_eq!(p.features.get() & !PCM_F_DEFINED, 0);
        assert_eq!(p.formats.get() & !FORMATS_DEFINED, 0);
        assert_eq!(p.rates.get() & !RATES_DEFINED, 0);
        assert_eq!(p.direction, i as u8);
        assert_eq!((p.channels_min, p.channels_max), (1, 2));
        assert_eq!(p.padding, [0; 5]);
    }
    // Undefined bits, shared-memory features or no channels are refused.
    for bad in [
        StreamDesc {
            formats: 1 << 30,
            ..StreamDesc::stereo(Direction::Output)
        },
        StreamDesc {
            rates: 1 << 20,
            ..StreamDesc::stereo(Direction::Output)
        },
        StreamDesc {
            features: PCM_F_SHMEM_HOST,
            ..StreamDesc::stereo(Direction::Output)
        },
        StreamDesc {
            features: 1 << 7,
            ..StreamDesc::stereo(Direction::Output)
        },
        StreamDesc {
            channels_min: 0,
            ..StreamDesc::stereo(Direction::Output)
        },
    ] {
        let r = Sound::<NullPcm, 1>::new(NullPcm::new(), &[], [bad], &[], &[]);
        assert_eq!(r.err(), Some(ConfigError::Stream(0)));
    }
}

// spec: sound.channel-map-information.1, sound.channel-map-information.2
#[test]
fn chmap_info_has_defined_direction_and_at_most_18_channels() {
    let mut h = rig();
    let size = size_of::<ChmapInfoWire>();
    let (st, body, _) = ctl(&mut h, &query(R_CHMAP_INFO, 0, 2, size), 2 * size as u32);
    assert_eq!(st, S_OK);
    let a = ChmapInfoWire::read_from_bytes(&body[..size]).unwrap();
    let b = ChmapInfoWire::read_from_bytes(&body[size..]).unwrap();
    assert_eq!(
        (a.direction, a.channels, &a.positions[..3]),
        (D_OUTPUT, 2, &[3, 4, 0][..])
    );
    assert_eq!((b.direction, b.channels), (D_INPUT, 1));
    static TOO_MANY: [ChmapDesc; 1] = [ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Output,
        positions: &[3; 19],
    }];
    static UNDEFINED: [ChmapDesc; 1] = [ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Output,
        positions: &[42],
    }];
    for bad in [&TOO_MANY, &UNDEFINED] {
        let r = Sound::<NullPcm, 1>::new(
            NullPcm::new(),
            &[],
            [StreamDesc::stereo(Direction::Output)],
            bad,
            &[],
        );
        assert_eq!(r.err(), Some(ConfigError::Chmap(0)));
    }
}

// spec: sound.control-element-information.1, sound.control-element-information.2, sound.control-element-information.3
#[test]
fn ctl_info_is_defined_counted_and_named() {
    let mut h = rig();
    let size = size_of::<CtlInfoWire>();
    assert_eq!(size, 96);
    let (st, body, len) = ctl(&mut h, &query(R_CTL_INFO, 0, 4, size), 4 * size as u32);
    assert_eq!((st, len), (S_OK, 4 + 4 * size as u32));
    let infos: Vec<CtlInfoWire> = body
        .chunks(size)
        .map(|c| CtlInfoWire::read_from_bytes(c).unwrap())
        .collect();
    for (c, d) in infos.iter().zip([VOLUME, MUTE, MODE, BIG]) {
        let role = c.role.get();
        assert!(role == 0 || (role >> 1) <= CTL_ROLE_GAIN);
        assert!(c.type_.get() <= CTL_TYPE_IEC958);
        assert_eq!(c.access.get() & !CTL_ACCESS_DEFINED, 0);
        assert!(c.count.get() >= 1 && c.count.get() <= 128);
        let nul = c.name.iter().position(|&b| b == 0).unwrap();
        assert!(nul > 0 && c.name[..nul].is_ascii());
        assert_eq!(&c.name[..nul], d.name.as_bytes());
        assert_eq!(c.padding, [0; 4]);
    }
    // Volume: role VOLUME on output, INTEGER 0..=100 step 5.
    assert_eq!(infos[0].role.get(), CTL_ROLE_VOLUME << 1);
    assert_eq!(
        &infos[0].value[..12],
        &[0, 0, 0, 0, 100, 0, 0, 0, 5, 0, 0, 0]
    );
    // Gain on input: direction bit set; INTEGER64 values as le64.
    assert_eq!(infos[3].role.get(), (CTL_ROLE_GAIN << 1) | 1);
    assert_eq!(
        i64::from_le_bytes(infos[3].value[8..16].try_into().unwrap()),
        1 << 40
    );
    assert_eq!(infos[2].value[..4], [3, 0, 0, 0]);

    // Tables that break the limits are refused.
    let bad = [
        ControlDesc { count: 0, ..MUTE },
        ControlDesc { count: 129, ..MUTE },
        ControlDesc {
            kind: ControlKind::Iec958,
            count: 2,
            ..MUTE
        },
        ControlDesc { name: "", ..MUTE },
        ControlDesc {
            name: "a name that is far too long for the fixed field",
            ..MUTE
        },
        ControlDesc {
            access: 1 << 7,
            ..MUTE
        },
        ControlDesc {
            role: (4, Direction::Output),
            ..MUTE
        },
        ControlDesc {
            kind: ControlKind::Enumerated(&["ok", ""]),
            ..MUTE
        },
    ];
    for b in bad {
        let r = Sound::<NullPcm, 1>::new(
            NullPcm::new(),
            &[],
            [StreamDesc::stereo(Direction::Output)],
            &[],
            &[b],
        );
        assert_eq!(r.err(), Some(ConfigError::Control(0)), "{b:?}");
    }
}

// spec: sound.control-element-information.4
#[test]
fn control_name_and_index_pairs_are_unique() {
    let r = Sound::<NullPcm, 1>::new(
        NullPcm::new(),
        &[],
        [StreamDesc::stereo(Direction::Output)],
        &[],
        &[MUTE, VOLUME, MUTE],
    );
    assert_eq!(r.err(), Some(ConfigError::DuplicateControl(2)));
    // The same name with another index is a different element.
    let r = Sound::<NullPcm, 1>::new(
        NullPcm::new(),
        &[],
        [StreamDesc::stereo(Direction::Output)],
        &[],
        &[MUTE, ControlDesc { index: 1, ..MUTE }],
    );
    assert!(r.is_ok());
}

#[test]
fn query_info_checks_range_size_and_room() {
    let mut h = rig();
    let size = size_of::<PcmInfoWire>();
    // start + count beyond the total, or overflowing.
    assert_eq!(ctl(&mut h, &query(R_PCM_INFO, 1, 2, size), 64).0, S_BAD_MSG);
    assert_eq!(
        ctl(&mut h, &query(R_PCM_INFO, u32::MAX, 2, size), 64).0,
        S_BAD_MSG
    );
    // A structure smaller than ours.
    assert_eq!(ctl(&mut h, &query(R_PCM_INFO, 0, 1, 16), 64).0, S_BAD_MSG);
    // A response buffer smaller than count * size.
    assert_eq!(ctl(&mut h, &query(R_PCM_INFO, 0, 2, size), 40).0, S_BAD_MSG);
    // A larger driver structure: ours, then zeros, at the driver's stride.
    let (st, body, len) = ctl(&mut h, &query(R_PCM_INFO, 1, 1, 40), 40);
    assert_eq!((st, len), (S_OK, 44));
    assert_eq!(body[24], D_INPUT);
    assert_eq!(&body[32..], &[0; 8]);
    // Nothing requested: just the header.
    assert_eq!(
        ctl(&mut h, &query(R_JACK_INFO, 2, 0, 24), 0),
        (S_OK, vec![], 4)
    );
    // A short request, an unknown code.
    assert_eq!(status(&mut h, &[0x00, 0x01]), S_BAD_MSG);
    assert_eq!(status(&mut h, &item(0x999, 0)), S_NOT_SUPP);
    assert_eq!(
        status(&mut h, &query(R_PCM_INFO, 0, 1, size)[..12]),
        S_BAD_MSG
    );
}

#[test]
fn a_control_request_without_room_for_a_status_comes_back_empty() {
    let mut h = rig();
    let out = h.put(&query(R_PCM_INFO, 0, 1, 32));
    let resp = h.space(3);
    let used = h.request(CONTROLQ, &[out], &[resp]);
    assert_eq!(used.len, 0);
    assert_eq!(h.read(resp), vec![0xee; 3]);
}

// ---------------------------------------------------------------- jacks

#[test]
fn jack_remap_needs_the_remap_feature() {
    let mut h = rig();
    let remap = |jack: u32| JackRemap {
        hdr: ItemHdr {
            code: R_JACK_REMAP.into(),
            id: jack.into(),
        },
        association: 3.into(),
        sequence: 9.into(),
    };
    ok(&mut h, remap(0).as_bytes());
    assert_eq!(h.core.device().jack_remap(0), Some((3, 9)));
    assert_eq!(status(&mut h, remap(1).as_bytes()), S_NOT_SUPP);
    assert_eq!(status(&mut h, remap(2).as_bytes()), S_BAD_MSG);
}

#[test]
fn jack_changes_are_notified_through_held_event_buffers() {
    let mut h = rig();
    // No buffer yet: the event waits.
    dev(&mut h).set_jack_connected(1, true);
    dev(&mut h).set_jack_connected(1, true); // no change, no event
    at(&mut h, 0);
    let posted = post_events(&mut h, 3);
    assert_eq!(events(&mut h, &posted), vec![(EVT_JACK_CONNECTED, 1)]);
    assert_eq!(h.core.device().event_buffers(), 2);
    dev(&mut h).set_jack_connected(0, false);
    at(&mut h, 0);
    assert_eq!(events(&mut h, &posted), vec![(EVT_JACK_DISCONNECTED, 0)]);
    // JACK_INFO reports the new states.
    let (_, body, _) = ctl(&mut h, &query(R_JACK_INFO, 0, 2, 24), 48);
    assert_eq!((body[16], body[40]), (0, 1));
    assert_eq!(h.core.device().stats().events, 2);
}

#[test]
fn event_buffers_the_driver_must_not_post_come_back_unwritten() {
    let mut h = rig();
    let small = h.space(4);
    let id = h.add(EVENTQ, &[], &[small]);
    let readable = h.put(&[0; 8]);
    let id2 = h.add(EVENTQ, &[readable], &[]);
    h.kick(EVENTQ);
    assert_eq!(all_used(&mut h, EVENTQ), vec![(id, 0), (id2, 0)]);
    assert_eq!(h.core.device().event_buffers(), 0);
}

// ---------------------------------------------------------------- params and states

// spec: sound.stream-parameters.1
#[test]
fn buffer_bytes_beyond_the_intermediate_buffer_are_not_supported() {
    let mut h = rig();
    let mut p = params(OUT, 8192);
    p.buffer_bytes = ((1 << 20) + 8192).into();
    assert_eq!(status(&mut h, p.as_bytes()), S_NOT_SUPP);
    assert_eq!(h.core.device().state(OUT), Some(PcmState::Idle));
    p.buffer_bytes = (1u32 << 20).into();
    ok(&mut h, p.as_bytes());
    assert_eq!(h.core.device().params(OUT).unwrap().buffer_bytes, 1 << 20);
}

#[test]
fn set_params_is_checked_against_the_offer() {
    let mut h = rig();
    let base = params(OUT, 8192);
    let bad_msg: [fn(&mut SetParams); 7] = [
        |p| p.padding = 1,
        |p| p.format = FMT_COUNT,
        |p| p.rate = RATE_COUNT,
        |p| p.features = (1 << 5).into(),
        |p| p.features = (PCM_F_SHMEM_HOST | PCM_F_SHMEM_GUEST).into(),
        |p| p.period_bytes = 0.into(),
        |p| p.period_bytes = 3000.into(),
    ];
    for f in bad_msg {
        let mut p = base;
        f(&mut p);
        assert_eq!(status(&mut h, p.as_bytes()), S_BAD_MSG, "{p:?}");
    }
    let not_supp: [fn(&mut SetParams); 6] = [
        |p| p.format = FMT_FLOAT,
        |p| p.rate = 0,
        |p| p.channels = 0,
        |p| p.channels = 3,
        |p| p.features = PCM_F_SHMEM_GUEST.into(),
        |p| p.features = PCM_F_EVT_SHMEM_PERIODS.into(),
    ];
    for f in not_supp {
        let mut p = base;
        f(&mut p);
        assert_eq!(status(&mut h, p.as_bytes()), S_NOT_SUPP, "{p:?}");
    }
    let mut p = base;
    p.hdr.id = 2.into();
    assert_eq!(status(&mut h, p.as_bytes()), S_BAD_MSG);
    assert_eq!(status(&mut h, &base.as_bytes()[..20]), S_BAD_MSG);
    assert_eq!(h.core.device().state(OUT), Some(PcmState::Idle));
    ok(&mut h, base.as_bytes());
    let got = h.core.device().params(OUT).unwrap();
    assert_eq!(
        (got.frame_bytes(), got.rate_hz(), got.byte_rate()),
        (4, 48000, 192_000)
    );
}

#[test]
fn the_pcm_lifecycle_allows_only_the_spec_transitions() {
    use PcmState::*;
    let p = params(OUT, 8192);
    // From each state, each command: allowed or BAD_MSG.
    let reach = |h: &mut H, s: PcmState| {
        let steps: &[&[u8]] = match s {
            Idle => &[],
            ParamsSet => &[p.as_bytes()],
            Prepared => &[p.as_bytes(), &item(R_PCM_PREPARE, OUT)],
            Running => &[
                p.as_bytes(),
                &item(R_PCM_PREPARE, OUT),
                &item(R_PCM_START, OUT),
            ],
            Stopped => &[
                p.as_bytes(),
                &item(R_PCM_PREPARE, OUT),
                &item(R_PCM_START, OUT),
                &item(R_PCM_STOP, OUT),
            ],
            Released => &[
                p.as_bytes(),
                &item(R_PCM_PREPARE, OUT),
                &item(R_PCM_RELEASE, OUT),
            ],
        };
        for st in steps {
            ok(h, st);
        }
        assert_eq!(h.core.device().state(OUT), Some(s));
    };
    let commands: [(&str, Vec<u8>, PcmState); 5] = [
        ("set_params", p.as_bytes().to_vec(), ParamsSet),
        ("prepare", item(R_PCM_PREPARE, OUT), Prepared),
        ("start", item(R_PCM_START, OUT), Running),
        ("stop", item(R_PCM_STOP, OUT), Stopped),
        ("release", item(R_PCM_RELEASE, OUT), Released),
    ];
    let allowed = |from: PcmState, cmd: &str| match cmd {
        "set_params" => matches!(from, Idle | ParamsSet | Prepared | Released),
        "prepare" => matches!(from, ParamsSet | Prepared | Released),
        "start" => matches!(from, Prepared | Stopped),
        "stop" => from == Running,
        _ => matches!(from, Prepared | Stopped),
    };
    for from in [Idle, ParamsSet, Prepared, Running, Stopped, Released] {
        for (name, req, to) in &commands {
            let mut h = rig();
            reach(&mut h, from);
            let st = status(&mut h, req);
            let state = h.core.device().state(OUT).unwrap();
            if allowed(from, name) {
                assert_eq!((st, state), (S_OK, *to), "{from:?} {name}");
            } else {
                assert_eq!((st, state), (S_BAD_MSG, from), "{from:?} {name}");
            }
        }
    }
    // Commands for a stream that does not exist.
    let mut h = rig();
    assert_eq!(status(&mut h, &item(R_PCM_PREPARE, 5)), S_BAD_MSG);
    assert_eq!(status(&mut h, &item(R_PCM_START, 5)[..6]), S_BAD_MSG);
}

#[test]
fn prepare_after_release_reuses_the_parameters() {
    // Linux's sync_stop: STOP, RELEASE, then PREPARE without SET_PARAMS.
    let mut h = rig();
    prepare(&mut h, OUT, 8192);
    ok(&mut h, &item(R_PCM_START, OUT));
    ok(&mut h, &item(R_PCM_STOP, OUT));
    ok(&mut h, &item(R_PCM_RELEASE, OUT));
    ok(&mut h, &item(R_PCM_PREPARE, OUT));
    ok(&mut h, &item(R_PCM_START, OUT));
    let calls = &h.core.device().backend().calls;
    assert_eq!(
        calls.as_slice(),
        &[
            ("prepare", 0),
            ("start", 0),
            ("stop", 0),
            ("release", 0),
            ("prepare", 0),
            ("start", 0)
        ]
    );
}

// ---------------------------------------------------------------- output

// spec: sound.output-stream.1
#[test]
fn tx_buffers_are_held_until_the_stream_has_played_them() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920); // 10 ms periods at 192000 B/s
    // Pre-buffering before START: held, nothing completes.
    let a = tx(&mut h, OUT, &[1; 1920]);
    let b = tx(&mut h, OUT, &[2; 1920]);
    h.kick(TXQ);
    at(&mut h, 500 * MS);
    assert!(all_used(&mut h, TXQ).is_empty());
    assert_eq!(h.core.device().held(OUT), 2);
    assert!(h.core.device().backend().out.is_empty());
    assert_eq!(h.core.device().next_deadline_ns(), None);

    dev(&mut h).backend_mut().now = 1000 * MS;
    ok(&mut h, &item(R_PCM_START, OUT));
    assert_eq!(h.core.device().next_deadline_ns(), Some(1010 * MS));
    at(&mut h, 1009 * MS);
    assert!(all_used(&mut h, TXQ).is_empty(), "not yet consumed");
    at(&mut h, 1010 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(a.0, 8)]);
    let s = pcm_status(&h, a.1);
    assert_eq!((s.status.get(), s.latency_bytes.get()), (S_OK, 1920));
    assert_eq!(h.core.device().backend().out, vec![1; 1920]);
    assert_eq!(h.core.device().next_deadline_ns(), Some(1020 * MS));
    at(&mut h, 1020 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(b.0, 8)]);
    assert_eq!(pcm_status(&h, b.1).latency_bytes.get(), 0);
    let out = &h.core.device().backend().out;
    assert_eq!(out.len(), 3840);
    assert_eq!(&out[1920..], &[2; 1920][..]);
}

#[test]
fn a_stopped_stream_keeps_its_buffers_and_resumes_where_it_was() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920);
    let a = tx(&mut h, OUT, &[1; 1920]);
    h.kick(TXQ);
    ok(&mut h, &item(R_PCM_START, OUT));
    at(&mut h, 5 * MS);
    ok(&mut h, &item(R_PCM_STOP, OUT));
    at(&mut h, 100 * MS);
    assert!(all_used(&mut h, TXQ).is_empty());
    assert_eq!(h.core.device().held(OUT), 1);
    ok(&mut h, &item(R_PCM_START, OUT));
    // 5 ms were played before the stop; 5 more complete it.
    at(&mut h, 104 * MS);
    assert!(all_used(&mut h, TXQ).is_empty());
    at(&mut h, 105 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(a.0, 8)]);
}

#[test]
fn an_underrun_is_reported_and_the_stream_restarts_from_the_next_buffer() {
    let mut h = rig();
    let posted = post_events(&mut h, 4);
    prepare(&mut h, OUT, 1920);
    tx(&mut h, OUT, &[1; 1920]);
    h.kick(TXQ);
    ok(&mut h, &item(R_PCM_START, OUT));
    at(&mut h, 10 * MS);
    assert_eq!(all_used(&mut h, TXQ).len(), 1);
    at(&mut h, 50 * MS);
    assert_eq!(events(&mut h, &posted), vec![(EVT_PCM_XRUN, OUT)]);
    at(&mut h, 60 * MS);
    assert!(events(&mut h, &posted).is_empty(), "one event per xrun");
    // A late buffer is paced from its arrival, not completed at once.
    let c = tx(&mut h, OUT, &[3; 1920]);
    h.kick(TXQ);
    assert!(all_used(&mut h, TXQ).is_empty());
    at(&mut h, 69 * MS);
    assert!(all_used(&mut h, TXQ).is_empty());
    at(&mut h, 70 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(c.0, 8)]);
    assert_eq!(h.core.device().stats().xruns, 1);
}

#[test]
fn xruns_are_not_notified_unless_selected() {
    let mut h = rig();
    let posted = post_events(&mut h, 2);
    let mut p = params(OUT, 1920);
    p.features = 0.into();
    ok(&mut h, p.as_bytes());
    ok(&mut h, &item(R_PCM_PREPARE, OUT));
    ok(&mut h, &item(R_PCM_START, OUT));
    at(&mut h, 50 * MS);
    assert!(events(&mut h, &posted).is_empty());
    assert_eq!(h.core.device().stats().xruns, 1);
}

#[test]
fn io_for_a_stream_that_cannot_take_it_fails_at_once() {
    let mut h = rig();
    // No such stream, a stream not prepared, a tx buffer for the input.
    let a = tx(&mut h, 7, &[0; 16]);
    let b = tx(&mut h, OUT, &[0; 16]);
    prepare(&mut h, IN, 1920);
    let c = tx(&mut h, IN, &[0; 16]);
    h.kick(TXQ);
    let used = all_used(&mut h, TXQ);
    assert_eq!(used, vec![(a.0, 8), (b.0, 8), (c.0, 8)]);
    for seg in [a.1, b.1, c.1] {
        assert_eq!(pcm_status(&h, seg).status.get(), S_IO_ERR);
    }
    // A tx buffer with frames after the status (writable data): refused.
    prepare(&mut h, OUT, 1920);
    let hdr = h.put(
        Xfer {
            stream_id: OUT.into(),
        }
        .as_bytes(),
    );
    let st = h.space(16);
    let id = h.add(TXQ, &[hdr], &[st]);
    // A chain with no room for a status comes back empty.
    let hdr2 = h.put(
        Xfer {
            stream_id: OUT.into(),
        }
        .as_bytes(),
    );
    let st2 = h.space(4);
    let id2 = h.add(TXQ, &[hdr2], &[st2]);
    h.kick(TXQ);
    assert_eq!(all_used(&mut h, TXQ), vec![(id, 8), (id2, 0)]);
    assert_eq!(h.core.device().stats().io_errors, 4);
}

#[test]
fn a_failing_backend_write_fails_the_buffer() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920);
    let a = tx(&mut h, OUT, &[0; 1920]);
    h.kick(TXQ);
    ok(&mut h, &item(R_PCM_START, OUT));
    dev(&mut h).backend_mut().fail_write = true;
    at(&mut h, 10 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(a.0, 8)]);
    assert_eq!(pcm_status(&h, a.1).status.get(), S_IO_ERR);
}

#[test]
fn frames_spread_over_several_segments_reach_the_backend_in_order() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920);
    let hdr = h.put(
        Xfer {
            stream_id: OUT.into(),
        }
        .as_bytes(),
    );
    let frames: Vec<u8> = (0..1920u32).map(|i| i as u8).collect();
    let d1 = h.put(&frames[..700]);
    let d2 = h.put(&frames[700..]);
    let st = h.space(8);
    let id = h.add(TXQ, &[hdr, d1, d2], &[st]);
    h.kick(TXQ);
    ok(&mut h, &item(R_PCM_START, OUT));
    at(&mut h, 10 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(id, 8)]);
    assert_eq!(h.core.device().backend().out, frames);
}

// ---------------------------------------------------------------- release

// spec: sound.stream-release.1, sound.stream-release.2
#[test]
fn release_completes_every_held_buffer_before_its_reply() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920);
    let bufs: Vec<_> = (0..3u8).map(|i| tx(&mut h, OUT, &[i; 1920])).collect();
    h.kick(TXQ);
    ok(&mut h, &item(R_PCM_START, OUT));
    at(&mut h, 10 * MS);
    assert_eq!(all_used(&mut h, TXQ), vec![(bufs[0].0, 8)]);
    ok(&mut h, &item(R_PCM_STOP, OUT));
    // RELEASE, one device round at a time (a budget of one chain): the
    // first round completes the held buffers and publishes them; the reply
    // comes in the next round, after that publication.
    h.core.set_budget(1);
    let out = h.put(&item(R_PCM_RELEASE, OUT));
    let resp = h.space(4);
    let id = h.add(CONTROLQ, &[out], &[resp]);
    let service = h.core.notify(u32::from(CONTROLQ));
    assert!(service.work_left(), "the reply is owed");
    assert_eq!(all_used(&mut h, TXQ), vec![(bufs[1].0, 8), (bufs[2].0, 8)]);
    assert!(
        h.used(CONTROLQ).is_none(),
        "no reply while buffers were pending"
    );
    assert_eq!(h.core.device().held(OUT), 0);
    let _ = h.core.poll();
    let u = h.used(CONTROLQ).unwrap();
    assert_eq!((u.id, u.len), (id, 4));
    assert_eq!(h.read(resp), S_OK.to_le_bytes());
    for b in &bufs[1..] {
        assert_eq!(pcm_status(&h, b.1).status.get(), S_OK);
    }
    // Their frames were consumed by the backend (played out), in order.
    let out = &h.core.device().backend().out;
    assert_eq!(out.len(), 3 * 1920);
    assert_eq!(out[2 * 1920], 2);
    assert_eq!(h.core.device().state(OUT), Some(PcmState::Released));
}

#[test]
fn release_of_a_capture_stream_returns_its_buffers_empty() {
    let mut h = rig();
    prepare(&mut h, IN, 1920);
    let a = rx(&mut h, IN, 1920);
    h.kick(RXQ);
    let out = h.put(&item(R_PCM_RELEASE, IN));
    let resp = h.space(4);
    h.request(CONTROLQ, &[out], &[resp]);
    assert_eq!(all_used(&mut h, RXQ), vec![(a.0, 8)]);
    assert_eq!(pcm_status(&h, a.2).status.get(), S_OK);
    // The data buffer was not written.
    assert_eq!(h.read(a.1), vec![0xee; 1920]);
}

#[test]
fn release_with_nothing_held_answers_at_once() {
    let mut h = rig();
    prepare(&mut h, OUT, 1920);
    let out = h.put(&item(R_PCM_RELEASE, OUT));
    let resp = h.space(4);
    let id = h.add(CONTROLQ, &[out], &[resp]);
    let service = h.core.notify(u32::from(CONTROLQ));
    assert!(!service.work_left());
    assert_eq!(h.used(CONTROLQ).unwrap().id, id);
}

// ---------------------------------------------------------------- input

// spec: sound.input-stream.1
#[test]
fn rx_buffers_are_returned_only_when_full() {
    let mut h = rig();
    prepare(&mut h, IN, 1920);
    let a = rx(&mut h, IN, 1920);
    let b = rx(&mut h, IN, 1920);
    h.kick(RXQ);
    at(&mut h, 100 * MS);
    assert!(all_used(&mut h, RXQ).is_empty(), "not running");
    ok(&mut h, &item(R_PCM_START, IN));
    at(&mut h, 109 * MS);
    assert!(all_used(&mut h, RXQ).is_empty(), "not full");
    at(&mut h, 110 * MS);
    assert_eq!(all_used(&mut h, RXQ), vec![(a.0, 1928)]);
    let data = h.read(a.1);
    assert_eq!(data[..4], [0, 1, 2, 3]);
    assert_eq!(data[1919], (1919 % 256) as u8);
    let s = pcm_status(&h, a.2);
    assert_eq!((s.status.get(), s.latency_bytes.get()), (S_OK, 1920));
    at(&mut h, 120 * MS);
    assert_eq!(all_used(&mut h, RXQ), vec![(b.0, 1928)]);
    assert_eq!(h.read(b.1)[0], (1920 % 256) as u8);
}

#[test]
fn an_rx_status_split_across_segments_is_written_whole() {
    let mut h = rig();
    prepare(&mut h, IN, 1920);
    let hdr = h.put(
        Xfer {
            stream_id: IN.into(),
        }
        .as_bytes(),
    );
    let d = h.space(1924); // frames and half the status
    let st = h.space(4);
    let id = h.add(RXQ, &[hdr], &[d, st]);
    h.kick(RXQ);
    ok(&mut h, &item(R_PCM_START, IN));
    at(&mut h, 10 * MS);
    assert_eq!(all_used(&mut h, RXQ), vec![(id, 1928)]);
    let tail = h.read(d);
    assert_eq!(&tail[1920..], S_OK.to_le_bytes());
    assert_eq!(h.read(st), 0u32.to_le_bytes());
}

// ---------------------------------------------------------------- controls

#[test]
fn controls_need_ctls_negotiated() {
    let mut h = rig_with(0);
    assert_eq!(ctl(&mut h, &query(R_CTL_INFO, 0, 1, 96), 96).0, S_NOT_SUPP);
    assert_eq!(ctl(&mut h, &item(R_CTL_READ, 0), 512).0, S_NOT_SUPP);
}

#[test]
fn ctl_read_and_write_are_range_checked() {
    let mut h = rig();
    let (st, v, len) = ctl(&mut h, &item(R_CTL_READ, 0), 512);
    assert_eq!((st, len), (S_OK, 516));
    assert_eq!(&v[..8], &[50, 0, 0, 0, 50, 0, 0, 0]);
    let write = |id: u32, vals: &[u8]| {
        let mut r = item(R_CTL_WRITE, id);
        let mut v = vec![0u8; 512];
        v[..vals.len()].copy_from_slice(vals);
        r.extend_from_slice(&v);
        r
    };
    ok(&mut h, &write(0, &[75, 0, 0, 0, 10, 0, 0, 0]));
    assert_eq!(
        &h.core.device().control_value(0).unwrap()[..8],
        &[75, 0, 0, 0, 10, 0, 0, 0]
    );
    // Off the step, above max, a boolean of 2, an item past the list.
    assert_eq!(status(&mut h, &write(0, &[76, 0, 0, 0])), S_BAD_MSG);
    assert_eq!(status(&mut h, &write(0, &[105, 0, 0, 0])), S_BAD_MSG);
    assert_eq!(status(&mut h, &write(1, &[2, 0, 0, 0])), S_BAD_MSG);
    assert_eq!(status(&mut h, &write(2, &[3, 0, 0, 0])), S_BAD_MSG);
    ok(&mut h, &write(2, &[2, 0, 0, 0]));
    // A read-only element, a short value, no such element.
    assert_eq!(status(&mut h, &write(3, &[1])), S_NOT_SUPP);
    assert_eq!(status(&mut h, &write(0, &[75])[..100]), S_BAD_MSG);
    assert_eq!(status(&mut h, &write(9, &[])), S_BAD_MSG);
    // A read response too small for the value.
    assert_eq!(ctl(&mut h, &item(R_CTL_READ, 0), 100).0, S_BAD_MSG);
    assert_eq!(
        &h.core.device().control_value(0).unwrap()[..4],
        &[75, 0, 0, 0]
    );
}

#[test]
fn enum_items_are_nul_terminated_names() {
    let mut h = rig();
    let (st, body, len) = ctl(&mut h, &item(R_CTL_ENUM_ITEMS, 2), 3 * 64);
    assert_eq!((st, len), (S_OK, 4 + 192));
    assert_eq!(&body[..5], b"Line\0");
    assert_eq!(&body[64..68], b"Mic\0");
    assert_eq!(&body[128..137], b"Internal\0");
    assert_eq!(ctl(&mut h, &item(R_CTL_ENUM_ITEMS, 0), 192).0, S_BAD_MSG);
    assert_eq!(ctl(&mut h, &item(R_CTL_ENUM_ITEMS, 2), 100).0, S_BAD_MSG);
}

// spec: sound.control-element-metadata.1
#[test]
fn tlv_read_writes_what_fits_and_succeeds() {
    let mut h = rig();
    let (st, body, len) = ctl(&mut h, &item(R_CTL_TLV_READ, 0), 64);
    assert_eq!((st, len), (S_OK, 4 + 16));
    assert_eq!(&body[..16], VOLUME.tlv);
    let (st, body, len) = ctl(&mut h, &item(R_CTL_TLV_READ, 0), 10);
    assert_eq!((st, len), (S_OK, 14));
    assert_eq!(&body[..], &VOLUME.tlv[..10]);
    // No TLV_READ access.
    assert_eq!(ctl(&mut h, &item(R_CTL_TLV_READ, 2), 64).0, S_NOT_SUPP);
}

#[test]
fn tlv_write_and_command_are_checked() {
    let mut h = rig();
    let tlv = |code: u32, id: u32, len: u32, body: &[u8]| {
        let mut r = item(code, id);
        r.extend_from_slice(&5u32.to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(body);
        r
    };
    ok(&mut h, &tlv(R_CTL_TLV_WRITE, 1, 4, &[9, 9, 9, 9]));
    let (_, body, len) = ctl(&mut h, &item(R_CTL_TLV_READ, 1), 64);
    assert_eq!(len, 16);
    assert_eq!(&body[..12], &[5, 0, 0, 0, 4, 0, 0, 0, 9, 9, 9, 9]);
    // Length not 4-aligned, longer than sent, above 64 KiB, above our store.
    assert_eq!(
        status(&mut h, &tlv(R_CTL_TLV_WRITE, 1, 3, &[0; 4])),
        S_BAD_MSG
    );
    assert_eq!(
        status(&mut h, &tlv(R_CTL_TLV_WRITE, 1, 8, &[0; 4])),
        S_BAD_MSG
    );
    assert_eq!(
        status(&mut h, &tlv(R_CTL_TLV_WRITE, 1, 65540, &[0; 4])),
        S_BAD_MSG
    );
    assert_eq!(
        status(&mut h, &tlv(R_CTL_TLV_WRITE, 1, 512, &[0; 512])),
        S_NOT_SUPP
    );
    // No TLV_WRITE access on the volume; TLV_COMMAND reaches the backend.
    assert_eq!(status(&mut h, &tlv(R_CTL_TLV_WRITE, 0, 0, &[])), S_NOT_SUPP);
    ok(&mut h, &tlv(R_CTL_TLV_COMMAND, 0, 4, &[1, 2, 3, 4]));
    assert_eq!(
        h.core.device().backend().commands,
        vec![vec![5, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]]
    );
    assert_eq!(
        status(&mut h, &tlv(R_CTL_TLV_COMMAND, 1, 0, &[])),
        S_NOT_SUPP
    );
}

// spec: sound.control-element-notifications.1
#[test]
fn control_changes_are_notified_with_a_defined_mask() {
    let mut h = rig();
    let posted = post_events(&mut h, 2);
    assert!(dev(&mut h).set_control_value(1, &[0]));
    assert!(!dev(&mut h).set_control_value(9, &[0]));
    at(&mut h, 0);
    let ev = events(&mut h, &posted);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, EVT_CTL_NOTIFY);
    let (id, mask) = (ev[0].1 & 0xffff, ev[0].1 >> 16);
    assert_eq!((id, mask), (1, u32::from(CTL_EVT_MASK_VALUE)));
    assert_eq!(mask & !u32::from(CTL_EVT_MASK_DEFINED), 0);
    assert_eq!(ctl(&mut h, &item(R_CTL_READ, 1), 512).1[0], 0);
}

#[test]
fn notifications_beyond_the_pending_limit_drop_the_oldest() {
    let mut h = rig();
    for i in 0..(PENDING_EVENTS as u32 + 3) {
        dev(&mut h).set_jack_connected(1, i % 2 == 0);
    }
    assert_eq!(h.core.device().stats().events_lost, 3);
    let posted = post_events(&mut h, PENDING_EVENTS + 1);
    let ev = events(&mut h, &posted);
    assert_eq!(ev.len(), PENDING_EVENTS);
    // The buffer left over is held for the next notification.
    assert_eq!(h.core.device().event_buffers(), 1);
    // The newest one is the last jack change (connected at i = 34).
    assert_eq!(ev.last(), Some(&(EVT_JACK_CONNECTED, 1)));
}

// ---------------------------------------------------------------- reset

#[test]
fn reset_forgets_held_buffers_and_releases_open_streams() {
    let mut h = rig();
    post_events(&mut h, 2);
    prepare(&mut h, OUT, 1920);
    prepare(&mut h, IN, 1920);
    tx(&mut h, OUT, &[0; 1920]);
    rx(&mut h, IN, 1920);
    h.kick(TXQ);
    h.kick(RXQ);
    assert_eq!(h.core.device().held(OUT), 1);
    h.core.set_status(0);
    let d = h.core.device();
    assert_eq!((d.held(OUT), d.held(IN), d.event_buffers()), (0, 0, 0));
    assert_eq!(d.state(OUT), Some(PcmState::Idle));
    assert_eq!(d.params(IN), None);
    let releases = d
        .backend()
        .calls
        .iter()
        .filter(|c| c.0 == "release")
        .count();
    assert_eq!(releases, 2);
    assert_eq!(d.next_deadline_ns(), None);
}

#[test]
fn a_queue_reset_forgets_only_that_queue_s_buffers() {
    let mut h = rig();
    post_events(&mut h, 2);
    prepare(&mut h, OUT, 1920);
    prepare(&mut h, IN, 1920);
    tx(&mut h, OUT, &[0; 1920]);
    rx(&mut h, IN, 1920);
    h.kick(TXQ);
    h.kick(RXQ);
    dev(&mut h).queue_reset(TXQ);
    assert_eq!(
        (h.core.device().held(OUT), h.core.device().held(IN)),
        (0, 1)
    );
    dev(&mut h).queue_reset(EVENTQ);
    assert_eq!(h.core.device().event_buffers(), 0);
    dev(&mut h).queue_reset(RXQ);
    assert_eq!(h.core.device().held(IN), 0);
}

#[test]
fn the_null_backend_drops_output_and_records_silence() {
    let mut h: Harness<Sound<NullPcm, 2>, 4> = Harness::new(
        Sound::new(
            NullPcm::new(),
            &[],
            [
                StreamDesc::stereo(Direction::Output),
                StreamDesc::stereo(Direction::Input),
            ],
            &[],
            &[],
        )
        .unwrap(),
        Features::empty(),
        &[CONTROLQ, EVENTQ, TXQ, RXQ],
    );
    for s in [OUT, IN] {
        let out = h.put(params(s, 1920).as_bytes());
        let resp = h.space(4);
        h.request(CONTROLQ, &[out], &[resp]);
        let out = h.put(&item(R_PCM_PREPARE, s));
        h.request(CONTROLQ, &[out], &[resp]);
        assert_eq!(h.read(resp), S_OK.to_le_bytes());
    }
    assert_eq!(h.core.device().backend().open, 0b11);
    let hdr = h.put(
        Xfer {
            stream_id: IN.into(),
        }
        .as_bytes(),
    );
    let data = h.space(1920);
    let st = h.space(8);
    let id = h.add(RXQ, &[hdr], &[data, st]);
    h.kick(RXQ);
    for s in [OUT, IN] {
        let out = h.put(&item(R_PCM_START, s));
        let resp = h.space(4);
        h.request(CONTROLQ, &[out], &[resp]);
    }
    h.core.device_mut().backend_mut().advance_ns(10 * MS);
    let _ = h.core.poll();
    let u = h.used(RXQ).unwrap();
    assert_eq!((u.id, u.len), (id, 1928));
    assert_eq!(h.read(data), vec![0; 1920]);
    assert_eq!(h.core.device().backend().read, 1920);
}

#[test]
fn pacing_arithmetic_rounds_to_frames() {
    let p = PcmParams {
        buffer_bytes: 32768,
        period_bytes: 8192,
        features: 0,
        channels: 2,
        format: FMT_S16,
        rate: RATE_44100,
    };
    assert_eq!(p.bytes_in(1_000_000_000), 176_400);
    assert_eq!(p.bytes_in(10_000), 0); // less than one frame
    assert_eq!(p.bytes_in(u64::MAX) % 4, 0);
    assert_eq!(p.ns_for(4), 22_676); // one frame, rounded up
    assert!(p.bytes_in(p.ns_for(8192)) >= 8192);
    let none = PcmParams { format: 99, ..p };
    assert_eq!(
        (none.frame_bytes(), none.bytes_in(5), none.ns_for(5)),
        (0, 0, u64::MAX)
    );
}
