//! The sound device (ID 25, virtio 1.4 §"Sound Device") over a
//! [`PcmBackend`] ([`NullPcm`] in the crate).
//!
//! Four queues: `controlq` (0) for requests answered in order, `eventq` (1)
//! where the driver posts empty buffers the device holds until it has a
//! notification, `txq` (2) and `rxq` (3) for PCM I/O messages.
//!
//! The device describes itself with static tables: [`JackDesc`]s,
//! [`StreamDesc`]s, [`ChmapDesc`]s and, offered with [`F_CTLS`],
//! [`ControlDesc`]s; [`Sound::new`] checks them against the spec's device
//! MUSTs (defined bits only, counts, unique NUL-terminated names), so every
//! information structure the device sends is conformant by construction.
//!
//! # Streams
//!
//! Each stream runs the spec's command lifecycle; any other transition is
//! answered `S_BAD_MSG`:
//!
//! | request | allowed in |
//! |---|---|
//! | `SET_PARAMS` | no params yet, params set, prepared, released |
//! | `PREPARE` | params set, prepared, released |
//! | `START` | prepared, stopped |
//! | `STOP` | running |
//! | `RELEASE` | prepared, stopped |
//!
//! Parameters are checked against the stream's offer: undefined values,
//! an odd padding byte, both shared-memory bits or a period that does not
//! divide the buffer are `S_BAD_MSG`; a format, rate, channel count or
//! feature the stream does not offer, or a buffer larger than the stream's
//! intermediate buffer ([`StreamDesc::buffer_bytes_max`]), `S_NOT_SUPP`.
//!
//! # I/O messages are held and paced
//!
//! An I/O message for a prepared, running or stopped stream is held (tx
//! buffers before `START` are the driver's pre-buffering). While the
//! stream runs, its position moves at the stream's byte rate by
//! [`PcmBackend::now_ns`]; a tx buffer is written to the backend and
//! returned (`S_OK`, `latency_bytes` = bytes still held) once the position
//! passed its end, an rx buffer is filled from the backend and returned
//! once the position passed its end, so nothing completes early. The
//! embedder calls `DeviceCore::poll` at [`Sound::next_deadline_ns`].
//! `RELEASE` completes every held buffer of the stream (tx: its frames
//! handed to the backend; rx: end of stream, no frames) and its reply is
//! given on the device's next turn, after those completions are published.
//! A running stream with nothing held has under- or overrun: its position
//! restarts from the last buffer and, with `PCM_F_EVT_XRUNS` selected, an
//! `EVT_PCM_XRUN` is sent. Held buffers are forgotten on a device or queue
//! reset (their heads mean nothing after it).
//!
//! # Events
//!
//! [`Sound::set_jack_connected`] and [`Sound::set_control_value`] queue
//! notifications (`EVT_JACK_*`, `EVT_CTL_NOTIFY`); they are written into
//! held event buffers as buffers arrive (up to [`PENDING_EVENTS`] wait,
//! the oldest is dropped and counted beyond). Completed I/O messages are
//! the period notifications of the message transport (the spec's
//! `EVT_PCM_PERIOD_ELAPSED` is for shared-memory streams, which this device
//! does not offer).

mod backend;
mod wire;

pub use backend::*;
pub use wire::*;

use core::fmt;

use heapless::{Deque, Vec};
use virtio_core::device::{DeviceQueues, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Writer};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

/// Most segments of one chain.
pub const CHAIN_SEGMENTS: usize = 8;
/// I/O messages held per stream.
pub const HELD_PER_STREAM: usize = MAX_QUEUE_SIZE as usize;
/// Event buffers held (a whole event queue of the largest size offered,
/// so a driver that fills its queue gets none back empty).
pub const EVENT_BUFFERS: usize = MAX_QUEUE_SIZE as usize;
/// The largest queue size the device offers (every buffer of a full tx,
/// rx or event queue can be held).
pub const MAX_QUEUE_SIZE: u16 = 64;
/// Notifications waiting for an event buffer.
pub const PENDING_EVENTS: usize = 32;
/// Most jacks.
pub const MAX_JACKS: usize = 8;
/// Most channel maps.
pub const MAX_CHMAPS: usize = 8;
/// Most control elements.
pub const MAX_CONTROLS: usize = 16;
/// Bytes of TLV metadata a control keeps.
pub const TLV_BYTES: usize = 256;
/// Largest TLV value a driver may send (virtio 1.4 §"Control Element
/// Metadata", driver MUST).
pub const TLV_VALUE_MAX: u32 = 65536;

/// A data flow direction (`VIRTIO_SND_D_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Direction {
    /// Playback (`D_OUTPUT`, txq).
    Output,
    /// Capture (`D_INPUT`, rxq).
    Input,
}

impl Direction {
    fn wire(self) -> u8 {
        match self {
            Self::Output => D_OUTPUT,
            Self::Input => D_INPUT,
        }
    }
}

/// A jack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JackDesc {
    /// Function group node (links it to streams).
    pub hda_fn_nid: u32,
    /// `JACK_F_REMAP` or 0.
    pub features: u32,
    /// HDA pin default configuration.
    pub hda_reg_defconf: u32,
    /// HDA pin capabilities.
    pub hda_reg_caps: u32,
    /// Connected at start.
    pub connected: bool,
}

/// A PCM stream and what it offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamDesc {
    /// Function group node.
    pub hda_fn_nid: u32,
    /// Playback or capture.
    pub direction: Direction,
    /// Offered `PCM_F_*` bits (`MSG_POLLING` and `EVT_XRUNS`; the
    /// shared-memory bits are not supported).
    pub features: u32,
    /// Offered `1 << FMT_*` bits.
    pub formats: u64,
    /// Offered `1 << RATE_*` bits.
    pub rates: u64,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
    /// The device's intermediate buffer: the largest `buffer_bytes` it
    /// accepts.
    pub buffer_bytes_max: u32,
}

impl StreamDesc {
    /// A stereo S16 48 kHz stream (also 44.1 kHz, S32, 1–2 channels) with a
    /// 1 MiB buffer and XRUN events.
    pub const fn stereo(direction: Direction) -> Self {
        Self {
            hda_fn_nid: 0,
            direction,
            features: PCM_F_EVT_XRUNS,
            formats: (1 << FMT_S16) | (1 << FMT_S32),
            rates: (1 << RATE_44100) | (1 << RATE_48000),
            channels_min: 1,
            channels_max: 2,
            buffer_bytes_max: 1 << 20,
        }
    }
}

/// A channel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChmapDesc {
    /// Function group node.
    pub hda_fn_nid: u32,
    /// The streams it applies to.
    pub direction: Direction,
    /// `CHMAP_*` positions (at most [`CHMAP_MAX_SIZE`]).
    pub positions: &'static [u8],
}

/// A control element's value type and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlKind {
    /// 0 or 1.
    Boolean,
    /// 32-bit integers in `min..=max`, by `step` (0: any).
    Integer {
        /// Smallest.
        min: i32,
        /// Largest.
        max: i32,
        /// Step (0: variable).
        step: i32,
    },
    /// 64-bit integers in `min..=max`, by `step` (0: any).
    Integer64 {
        /// Smallest.
        min: i64,
        /// Largest.
        max: i64,
        /// Step (0: variable).
        step: i64,
    },
    /// Indexes into `items`.
    Enumerated(&'static [&'static str]),
    /// Bytes.
    Bytes,
    /// An IEC958 (S/PDIF) status value.
    Iec958,
}

impl ControlKind {
    fn wire(self) -> u32 {
        match self {
            Self::Boolean => CTL_TYPE_BOOLEAN,
            Self::Integer { .. } => CTL_TYPE_INTEGER,
            Self::Integer64 { .. } => CTL_TYPE_INTEGER64,
            Self::Enumerated(_) => CTL_TYPE_ENUMERATED,
            Self::Bytes => CTL_TYPE_BYTES,
            Self::Iec958 => CTL_TYPE_IEC958,
        }
    }

    /// The largest `count` the spec allows for the type.
    fn max_count(self) -> u32 {
        match self {
            Self::Boolean | Self::Integer { .. } | Self::Enumerated(_) => 128,
            Self::Integer64 { .. } => 64,
            Self::Bytes => 512,
            Self::Iec958 => 1,
        }
    }
}

/// A control element (offered with [`F_CTLS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlDesc {
    /// Function group node.
    pub hda_fn_nid: u32,
    /// `CTL_ROLE_*` and its direction (ignored for `CTL_ROLE_UNDEFINED`).
    pub role: (u32, Direction),
    /// Value type.
    pub kind: ControlKind,
    /// `CTL_ACCESS_*` bits.
    pub access: u32,
    /// Members of the value (1 to the type's maximum).
    pub count: u32,
    /// Index among elements of the same name.
    pub index: u32,
    /// Non-empty ASCII name of at most 43 bytes.
    pub name: &'static str,
    /// The value at start (`struct virtio_snd_ctl_value` bytes, the rest
    /// zero).
    pub initial: &'static [u8],
    /// TLV metadata at start (`struct virtio_snd_ctl_tlv` bytes).
    pub tlv: &'static [u8],
}

/// Why [`Sound::new`] refused the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// More items than the device keeps (the table: 0 jacks, 1 chmaps,
    /// 2 controls).
    TooMany(u8),
    /// A jack with undefined feature bits.
    JackFeatures(u32),
    /// A stream with undefined or unsupported features, formats or rates,
    /// or no channels.
    Stream(u32),
    /// A channel map with more than 18 or undefined positions.
    Chmap(u32),
    /// A control with an undefined role or access, a count of 0 or above
    /// the type's maximum, a bad name or item, or an initial value or TLV
    /// too large.
    Control(u32),
    /// Two controls with the same (name, index) (the second).
    DuplicateControl(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(t) => write!(f, "too many items in table {t}"),
            Self::JackFeatures(j) => write!(f, "jack {j}: undefined features"),
            Self::Stream(s) => write!(f, "stream {s}: undefined or unsupported values"),
            Self::Chmap(c) => write!(f, "channel map {c}: bad positions"),
            Self::Control(c) => write!(f, "control {c}: breaks the spec's limits"),
            Self::DuplicateControl(c) => write!(f, "control {c}: (name, index) already used"),
        }
    }
}

/// A stream's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PcmState {
    /// No parameters set yet.
    #[default]
    Idle,
    /// `SET_PARAMS` done.
    ParamsSet,
    /// `PREPARE` done.
    Prepared,
    /// `START` done.
    Running,
    /// `STOP` done.
    Stopped,
    /// `RELEASE` done.
    Released,
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SoundStats {
    /// Control requests answered `S_OK`.
    pub ok: u32,
    /// Control requests answered with an error status.
    pub errors: u32,
    /// I/O messages completed `S_OK`.
    pub io_ok: u32,
    /// I/O messages completed `S_IO_ERR`.
    pub io_errors: u32,
    /// Notifications delivered.
    pub events: u32,
    /// Notifications dropped (more than [`PENDING_EVENTS`] waited).
    pub events_lost: u32,
    /// Under- and overruns.
    pub xruns: u32,
}

type HeldChain = Chain<CHAIN_SEGMENTS>;

/// A stream's position: bytes moved while running, by the clock.
#[derive(Clone, Copy, Debug, Default)]
struct Pace {
    /// Position when the clock last (re)started.
    base: u64,
    /// When the clock (re)started; `None` while not running.
    since: Option<u64>,
    /// Bytes of completed buffers.
    done: u64,
    /// An xrun was reported and no buffer arrived since.
    xrun: bool,
}

struct Stream {
    desc: StreamDesc,
    state: PcmState,
    params: Option<PcmParams>,
    held: Deque<HeldChain, HELD_PER_STREAM>,
    pace: Pace,
}

struct Control {
    desc: ControlDesc,
    value: [u8; CTL_VALUE_BYTES],
    tlv: Vec<u8, TLV_BYTES>,
}

/// The sound device over `STREAMS` streams and a [`PcmBackend`].
pub struct Sound<B, const STREAMS: usize> {
    backend: B,
    jacks: Vec<(JackDesc, bool, u32, u32), MAX_JACKS>,
    streams: [Stream; STREAMS],
    chmaps: &'static [ChmapDesc],
    controls: Vec<Control, MAX_CONTROLS>,
    offer_ctls: bool,
    negotiated: Features,
    queue_size: u16,
    events: Deque<HeldChain, EVENT_BUFFERS>,
    pending: Deque<Event, PENDING_EVENTS>,
    /// `RELEASE` requests answered on the next turn (the control chain and
    /// its response status).
    deferred: Deque<(HeldChain, u32), 4>,
    stats: SoundStats,
}

impl<B, const S: usize> fmt::Debug for Sound<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sound")
            .field("streams", &S)
            .field("jacks", &self.jacks.len())
            .field("controls", &self.controls.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn ascii_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() < max && s.bytes().all(|b| b.is_ascii() && b != 0)
}

fn check_control(i: u32, c: &ControlDesc) -> Result<(), ConfigError> {
    let bad = ConfigError::Control(i);
    if c.role.0 > CTL_ROLE_GAIN
        || c.access & !CTL_ACCESS_DEFINED != 0
        || c.count == 0
        || c.count > c.kind.max_count()
        || !ascii_name(c.name, CTL_NAME_BYTES)
        || c.initial.len() > CTL_VALUE_BYTES
        || c.tlv.len() > TLV_BYTES
    {
        return Err(bad);
    }
    if let ControlKind::Enumerated(items) = c.kind
        && (items.is_empty() || !items.iter().all(|s| ascii_name(s, CTL_ENUM_ITEM_BYTES)))
    {
        return Err(bad);
    }
    Ok(())
}

/// What a control request answers: a status and payload bytes written.
type Answer = Result<u32, u32>;

impl<B: PcmBackend, const STREAMS: usize> Sound<B, STREAMS> {
    /// A device with these tables; offers [`F_CTLS`] when `controls` is
    /// not empty. Queues of up to 64.
    ///
    /// # Errors
    /// [`ConfigError`] for tables the spec's device MUSTs forbid.
    pub fn new(
        backend: B,
        jacks: &[JackDesc],
        streams: [StreamDesc; STREAMS],
        chmaps: &'static [ChmapDesc],
        controls: &[ControlDesc],
    ) -> Result<Self, ConfigError> {
        let mut jack_state = Vec::new();
        for (i, j) in (0u32..).zip(jacks) {
            if j.features & !JACK_F_REMAP != 0 {
                return Err(ConfigError::JackFeatures(i));
            }
            jack_state
                .push((*j, j.connected, 0, 0))
                .map_err(|_| ConfigError::TooMany(0))?;
        }
        for (i, s) in (0u32..).zip(&streams) {
            let supported = PCM_F_MSG_POLLING | PCM_F_EVT_XRUNS;
            if s.features & !supported != 0
                || s.formats & !FORMATS_DEFINED != 0
                || s.rates & !RATES_DEFINED != 0
                || s.formats == 0
                || s.rates == 0
                || s.channels_min == 0
                || s.channels_min > s.channels_max
            {
                return Err(ConfigError::Stream(i));
            }
        }
        if chmaps.len() > MAX_CHMAPS {
            return Err(ConfigError::TooMany(1));
        }
        for (i, c) in (0u32..).zip(chmaps) {
            if c.positions.len() > CHMAP_MAX_SIZE || c.positions.iter().any(|&p| p > CHMAP_POS_MAX)
            {
                return Err(ConfigError::Chmap(i));
            }
        }
        let mut ctl = Vec::new();
        for (i, c) in (0u32..).zip(controls) {
            check_control(i, c)?;
            if controls
                .iter()
                .take(i as usize)
                .any(|o| o.name == c.name && o.index == c.index)
            {
                return Err(ConfigError::DuplicateControl(i));
            }
            let mut value = [0u8; CTL_VALUE_BYTES];
            for (d, s) in value.iter_mut().zip(c.initial) {
                *d = *s;
            }
            let tlv = Vec::from_slice(c.tlv).map_err(|_| ConfigError::Control(i))?;
            ctl.push(Control {
                desc: *c,
                value,
                tlv,
            })
            .map_err(|_| ConfigError::TooMany(2))?;
        }
        Ok(Self {
            backend,
            jacks: jack_state,
            streams: streams.map(|desc| Stream {
                desc,
                state: PcmState::Idle,
                params: None,
                held: Deque::new(),
                pace: Pace::default(),
            }),
            chmaps,
            offer_ctls: !controls.is_empty(),
            controls: ctl,
            negotiated: Features::empty(),
            queue_size: MAX_QUEUE_SIZE,
            events: Deque::new(),
            pending: Deque::new(),
            deferred: Deque::new(),
            stats: SoundStats::default(),
        })
    }

    /// Sets the largest queue size the driver may choose (1 to
    /// [`MAX_QUEUE_SIZE`]; larger values are clamped, so every buffer of a
    /// full queue can be held).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size.clamp(1, MAX_QUEUE_SIZE);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (to move a test clock).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// What the device did so far.
    pub fn stats(&self) -> SoundStats {
        self.stats
    }

    /// A stream's state (`None` for no such stream).
    pub fn state(&self, stream: u32) -> Option<PcmState> {
        self.streams.get(stream as usize).map(|s| s.state)
    }

    /// A stream's parameters.
    pub fn params(&self, stream: u32) -> Option<PcmParams> {
        self.streams.get(stream as usize).and_then(|s| s.params)
    }

    /// I/O messages the device holds for a stream.
    pub fn held(&self, stream: u32) -> usize {
        self.streams
            .get(stream as usize)
            .map_or(0, |s| s.held.len())
    }

    /// Event buffers the device holds.
    pub fn event_buffers(&self) -> usize {
        self.events.len()
    }

    /// A jack's (association, sequence) from `JACK_REMAP`.
    pub fn jack_remap(&self, jack: u32) -> Option<(u32, u32)> {
        self.jacks.get(jack as usize).map(|j| (j.2, j.3))
    }

    /// A control's value (the 512 bytes of `struct virtio_snd_ctl_value`).
    pub fn control_value(&self, control: u32) -> Option<&[u8; CTL_VALUE_BYTES]> {
        self.controls.get(control as usize).map(|c| &c.value)
    }

    /// The configuration space.
    pub fn config(&self) -> SoundConfig {
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX).into();
        SoundConfig {
            jacks: n(self.jacks.len()),
            streams: n(STREAMS),
            chmaps: n(self.chmaps.len()),
            controls: n(if self.offer_ctls {
                self.controls.len()
            } else {
                0
            }),
        }
    }

    fn ctls(&self) -> bool {
        self.negotiated.bits() & F_CTLS != 0
    }

    fn notify(&mut self, event: Event) {
        if self.pending.is_full() {
            let _ = self.pending.pop_front();
            self.stats.events_lost = self.stats.events_lost.saturating_add(1);
        }
        let _ = self.pending.push_back(event);
    }

    /// A jack was plugged or unplugged: its state changes and, when it did,
    /// an `EVT_JACK_CONNECTED`/`DISCONNECTED` is queued (delivered on the
    /// next `DeviceCore::poll`).
    pub fn set_jack_connected(&mut self, jack: u32, connected: bool) {
        let Some(j) = self.jacks.get_mut(jack as usize) else {
            return;
        };
        if j.1 == connected {
            return;
        }
        j.1 = connected;
        let code = if connected {
            EVT_JACK_CONNECTED
        } else {
            EVT_JACK_DISCONNECTED
        };
        self.notify(Event {
            code: code.into(),
            data: jack.into(),
        });
    }

    /// The device changed a control's value (`value` is the start of a
    /// `struct virtio_snd_ctl_value`, the rest zero): an `EVT_CTL_NOTIFY`
    /// with `CTL_EVT_MASK_VALUE` is queued. Returns false for no such
    /// control or a value longer than 512 bytes.
    pub fn set_control_value(&mut self, control: u32, value: &[u8]) -> bool {
        let Some(c) = self.controls.get_mut(control as usize) else {
            return false;
        };
        if value.len() > CTL_VALUE_BYTES {
            return false;
        }
        c.value = [0; CTL_VALUE_BYTES];
        for (d, s) in c.value.iter_mut().zip(value) {
            *d = *s;
        }
        self.notify_control(control, CTL_EVT_MASK_VALUE);
        true
    }

    fn notify_control(&mut self, control: u32, mask: u16) {
        let data = CtlEventData {
            control_id: u16::try_from(control).unwrap_or(u16::MAX).into(),
            mask: (mask & CTL_EVT_MASK_DEFINED).into(),
        };
        self.notify(Event {
            code: EVT_CTL_NOTIFY.into(),
            data: u32::from_le_bytes(data.as_bytes().try_into().unwrap_or([0; 4])).into(),
        });
    }

    /// When the next held I/O message of a running stream is due (on the
    /// backend's clock): the embedder calls `DeviceCore::poll` then.
    /// `None` when no stream is running with buffers held.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.streams
            .iter()
            .filter_map(|s| {
                let since = s.pace.since?;
                let params = s.params?;
                let front = s.held.front()?;
                let end = s
                    .pace
                    .done
                    .saturating_add(u64::from(data_len(s.desc.direction, front)));
                let to_go = end.saturating_sub(s.pace.base);
                Some(since.saturating_add(params.ns_for(to_go)))
            })
            .min()
    }

    // ---- event queue ----

    fn deliver<M: GuestMemory, const Q: usize>(&mut self, queues: &mut DeviceQueues<'_, M, Q>) {
        let mem = queues.memory();
        while !self.events.is_empty() && !self.pending.is_empty() {
            let (Some(chain), Some(event)) = (self.events.pop_front(), self.pending.pop_front())
            else {
                break;
            };
            let mut w = chain.writer(mem);
            let written = match w.write_obj(&event) {
                Ok(()) => 8,
                Err(_) => 0,
            };
            queues.push_used(EVENTQ, chain.head(), written);
            self.stats.events = self.stats.events.saturating_add(1);
        }
    }

    fn take_event<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        chain: &HeldChain,
    ) {
        // The driver MUST post write-only buffers of at least 8 bytes; any
        // other buffer cannot carry an event and goes back unwritten.
        if chain.readable_len() != 0 || chain.writable_len() < 8 || self.events.is_full() {
            queues.push_used(EVENTQ, chain.head(), 0);
            return;
        }
        let _ = self.events.push_back(chain.clone());
    }

    // ---- control queue ----

    fn serve_control<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        chain: &HeldChain,
    ) {
        let mem = queues.memory();
        if chain.writable_len() < 4 {
            // No room for a status: nothing to answer in.
            queues.push_used(CONTROLQ, chain.head(), 0);
            return;
        }
        let mut reader = chain.reader(mem);
        let code = reader.read_obj::<Hdr>().map(|h| h.code.get());
        let mut writer = chain.writer(mem);
        let _ = writer.write_obj(&Hdr { code: S_OK.into() });
        let answer = match code {
            Err(_) => Err(S_BAD_MSG),
            Ok(code) => self.run(queues, code, chain, &mut writer),
        };
        let (status, payload) = match answer {
            Ok(n) => (S_OK, n),
            Err(RELEASE_DEFERRED) => return,
            Err(s) => (s, 0),
        };
        self.answer(queues, chain, status, payload);
    }

    fn answer<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        chain: &HeldChain,
        status: u32,
        payload: u32,
    ) {
        let mut w = chain.writer(queues.memory());
        let _ = w.write_obj(&Hdr {
            code: status.into(),
        });
        if status == S_OK {
            self.stats.ok = self.stats.ok.saturating_add(1);
        } else {
            self.stats.errors = self.stats.errors.saturating_add(1);
        }
        queues.push_used(CONTROLQ, chain.head(), 4u32.saturating_add(payload));
    }

    fn run<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        code: u32,
        chain: &HeldChain,
        writer: &mut Writer<'_, M>,
    ) -> Answer {
        let mem = queues.memory();
        let mut reader = chain.reader(mem);
        match code {
            R_JACK_INFO | R_PCM_INFO | R_CHMAP_INFO | R_CTL_INFO => {
                let q = reader.read_obj::<QueryInfo>().map_err(|_| S_BAD_MSG)?;
                if code == R_CTL_INFO && !self.ctls() {
                    return Err(S_NOT_SUPP);
                }
                self.query(&q, writer)
            }
            R_JACK_REMAP => {
                let r = reader.read_obj::<JackRemap>().map_err(|_| S_BAD_MSG)?;
                let j = self
                    .jacks
                    .get_mut(r.hdr.id.get() as usize)
                    .ok_or(S_BAD_MSG)?;
                if j.0.features & JACK_F_REMAP == 0 {
                    return Err(S_NOT_SUPP);
                }
                j.2 = r.association.get();
                j.3 = r.sequence.get();
                Ok(0)
            }
            R_PCM_SET_PARAMS => {
                let p = reader.read_obj::<SetParams>().map_err(|_| S_BAD_MSG)?;
                self.set_params(&p)
            }
            R_PCM_PREPARE | R_PCM_RELEASE | R_PCM_START | R_PCM_STOP => {
                let h = reader.read_obj::<ItemHdr>().map_err(|_| S_BAD_MSG)?;
                self.pcm_command(queues, code, h.id.get(), chain)
            }
            R_CTL_ENUM_ITEMS..=R_CTL_TLV_COMMAND => {
                if !self.ctls() {
                    return Err(S_NOT_SUPP);
                }
                let h = reader.read_obj::<ItemHdr>().map_err(|_| S_BAD_MSG)?;
                self.control(code, h.id.get(), &mut reader, writer)
            }
            _ => Err(S_NOT_SUPP),
        }
    }

    /// `R_*_INFO`: `count` structures of the driver's `size` each.
    fn query<M: GuestMemory>(&self, q: &QueryInfo, w: &mut Writer<'_, M>) -> Answer {
        let code = q.code.get();
        let (total, ours) = match code {
            R_JACK_INFO => (self.jacks.len(), size_of::<JackInfoWire>()),
            R_PCM_INFO => (STREAMS, size_of::<PcmInfoWire>()),
            R_CHMAP_INFO => (self.chmaps.len(), size_of::<ChmapInfoWire>()),
            _ => (self.controls.len(), size_of::<CtlInfoWire>()),
        };
        let start = q.start_id.get() as usize;
        let count = q.count.get() as usize;
        let size = q.size.get() as usize;
        let end = start.checked_add(count).ok_or(S_BAD_MSG)?;
        if end > total || size < ours {
            return Err(S_BAD_MSG);
        }
        let need = count.checked_mul(size).ok_or(S_BAD_MSG)?;
        if (w.remaining() as usize) < need {
            return Err(S_BAD_MSG);
        }
        let mut item = [0u8; 96];
        for id in start..end {
            item.fill(0);
            let n = self.info(code, id, &mut item);
            w.write_all(item.get(..n).unwrap_or_default())
                .map_err(|_| S_BAD_MSG)?;
            // A larger driver structure: the rest of it is zero.
            let mut left = size.saturating_sub(n);
            while left > 0 {
                let k = left.min(item.len());
                w.write_all([0u8; 96].get(..k).unwrap_or_default())
                    .map_err(|_| S_BAD_MSG)?;
                left = left.saturating_sub(k);
            }
        }
        u32::try_from(need).map_err(|_| S_BAD_MSG)
    }

    /// One information structure into `out`; returns its size.
    fn info(&self, code: u32, id: usize, out: &mut [u8; 96]) -> usize {
        let mut put = |bytes: &[u8]| {
            for (d, s) in out.iter_mut().zip(bytes) {
                *d = *s;
            }
            bytes.len()
        };
        match code {
            R_JACK_INFO => {
                let Some((j, connected, _, _)) = self.jacks.get(id) else {
                    return 0;
                };
                put(JackInfoWire {
                    hda_fn_nid: j.hda_fn_nid.into(),
                    features: j.features.into(),
                    hda_reg_defconf: j.hda_reg_defconf.into(),
                    hda_reg_caps: j.hda_reg_caps.into(),
                    connected: u8::from(*connected),
                    padding: [0; 7],
                }
                .as_bytes())
            }
            R_PCM_INFO => {
                let Some(s) = self.streams.get(id) else {
                    return 0;
                };
                let d = &s.desc;
                put(PcmInfoWire {
                    hda_fn_nid: d.hda_fn_nid.into(),
                    features: d.features.into(),
                    formats: d.formats.into(),
                    rates: d.rates.into(),
                    direction: d.direction.wire(),
                    channels_min: d.channels_min,
                    channels_max: d.channels_max,
                    padding: [0; 5],
                }
                .as_bytes())
            }
            R_CHMAP_INFO => {
                let Some(c) = self.chmaps.get(id) else {
                    return 0;
                };
                let mut positions = [0u8; CHMAP_MAX_SIZE];
                for (d, s) in positions.iter_mut().zip(c.positions) {
                    *d = *s;
                }
                put(ChmapInfoWire {
                    hda_fn_nid: c.hda_fn_nid.into(),
                    direction: c.direction.wire(),
                    channels: u8::try_from(c.positions.len()).unwrap_or(0),
                    positions,
                }
                .as_bytes())
            }
            _ => {
                let Some(c) = self.controls.get(id) else {
                    return 0;
                };
                let d = &c.desc;
                let mut name = [0u8; CTL_NAME_BYTES];
                for (dst, s) in name.iter_mut().zip(d.name.bytes()) {
                    *dst = s;
                }
                let mut value = [0u8; 24];
                let mut at = 0;
                let mut push = |b: &[u8]| {
                    for x in b {
                        if let Some(v) = value.get_mut(at) {
                            *v = *x;
                        }
                        at = at.saturating_add(1);
                    }
                };
                match d.kind {
                    ControlKind::Boolean => {
                        push(&0i32.to_le_bytes());
                        push(&1i32.to_le_bytes());
                        push(&1i32.to_le_bytes());
                    }
                    ControlKind::Integer { min, max, step } => {
                        push(&min.to_le_bytes());
                        push(&max.to_le_bytes());
                        push(&step.to_le_bytes());
                    }
                    ControlKind::Integer64 { min, max, step } => {
                        push(&min.to_le_bytes());
                        push(&max.to_le_bytes());
                        push(&step.to_le_bytes());
                    }
                    ControlKind::Enumerated(items) => {
                        push(&u32::try_from(items.len()).unwrap_or(0).to_le_bytes());
                    }
                    ControlKind::Bytes | ControlKind::Iec958 => {}
                }
                let role = if d.role.0 == CTL_ROLE_UNDEFINED {
                    0
                } else {
                    (d.role.0 << 1) | u32::from(d.role.1.wire())
                };
                put(CtlInfoWire {
                    hda_fn_nid: d.hda_fn_nid.into(),
                    role: role.into(),
                    type_: d.kind.wire().into(),
                    access: d.access.into(),
                    count: d.count.into(),
                    index: d.index.into(),
                    name,
                    padding: [0; 4],
                    value,
                }
                .as_bytes())
            }
        }
    }

    fn set_params(&mut self, p: &SetParams) -> Answer {
        let id = p.hdr.id.get();
        let stream = self.streams.get(id as usize).ok_or(S_BAD_MSG)?;
        if !matches!(
            stream.state,
            PcmState::Idle | PcmState::ParamsSet | PcmState::Prepared | PcmState::Released
        ) {
            return Err(S_BAD_MSG);
        }
        let features = p.features.get();
        let buffer = p.buffer_bytes.get();
        let period = p.period_bytes.get();
        let both_shmem = PCM_F_SHMEM_HOST | PCM_F_SHMEM_GUEST;
        if p.padding != 0
            || features & !PCM_F_DEFINED != 0
            || features & both_shmem == both_shmem
            || p.format >= FMT_COUNT
            || p.rate >= RATE_COUNT
            || period == 0
            || !buffer.is_multiple_of(period)
        {
            return Err(S_BAD_MSG);
        }
        let d = &stream.desc;
        if features & !d.features != 0
            || d.formats & (1 << p.format) == 0
            || d.rates & (1 << p.rate) == 0
            || p.channels < d.channels_min
            || p.channels > d.channels_max
            || buffer > d.buffer_bytes_max
        {
            return Err(S_NOT_SUPP);
        }
        let params = PcmParams {
            buffer_bytes: buffer,
            period_bytes: period,
            features,
            channels: p.channels,
            format: p.format,
            rate: p.rate,
        };
        self.backend.set_params(id, &params).map_err(status_of)?;
        if let Some(s) = self.streams.get_mut(id as usize) {
            s.params = Some(params);
            // New parameters undo a preparation.
            s.state = PcmState::ParamsSet;
        }
        Ok(0)
    }

    fn pcm_command<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        code: u32,
        id: u32,
        chain: &HeldChain,
    ) -> Answer {
        let now = self.backend.now_ns();
        let stream = self.streams.get_mut(id as usize).ok_or(S_BAD_MSG)?;
        let state = stream.state;
        match code {
            R_PCM_PREPARE => {
                if !matches!(
                    state,
                    PcmState::ParamsSet | PcmState::Prepared | PcmState::Released
                ) {
                    return Err(S_BAD_MSG);
                }
                let params = stream.params.ok_or(S_BAD_MSG)?;
                self.backend.prepare(id, &params).map_err(status_of)?;
                if let Some(s) = self.streams.get_mut(id as usize) {
                    s.state = PcmState::Prepared;
                    s.pace = Pace::default();
                }
                Ok(0)
            }
            R_PCM_START => {
                if !matches!(state, PcmState::Prepared | PcmState::Stopped) {
                    return Err(S_BAD_MSG);
                }
                self.backend.start(id).map_err(status_of)?;
                if let Some(s) = self.streams.get_mut(id as usize) {
                    s.state = PcmState::Running;
                    // From PREPARE the position is 0; from STOP it goes on
                    // where the stream stopped.
                    s.pace.since = Some(now);
                }
                Ok(0)
            }
            R_PCM_STOP => {
                if state != PcmState::Running {
                    return Err(S_BAD_MSG);
                }
                // Buffers that came due before the stop are completed first.
                self.advance(queues);
                self.backend.stop(id);
                if let Some(s) = self.streams.get_mut(id as usize) {
                    s.state = PcmState::Stopped;
                    // The position stays where the stream stopped (never
                    // past what it holds).
                    if let (Some(since), Some(p)) = (s.pace.since.take(), s.params) {
                        let queued: u64 = s
                            .held
                            .iter()
                            .map(|c| u64::from(data_len(s.desc.direction, c)))
                            .sum();
                        let position = s
                            .pace
                            .base
                            .saturating_add(p.bytes_in(now.saturating_sub(since)));
                        s.pace.base = position.min(s.pace.done.saturating_add(queued));
                    }
                }
                Ok(0)
            }
            _ => {
                if !matches!(state, PcmState::Prepared | PcmState::Stopped) {
                    return Err(S_BAD_MSG);
                }
                // virtio 1.4 §"PCM Stream Release": complete every pending
                // I/O message first; the reply follows on the next turn,
                // after those completions are published.
                let had = self.held(id) > 0;
                self.flush(queues, id);
                self.backend.release(id);
                if let Some(s) = self.streams.get_mut(id as usize) {
                    s.state = PcmState::Released;
                    s.pace = Pace::default();
                }
                if had && self.deferred.push_back((chain.clone(), S_OK)).is_ok() {
                    queues.poll_again(CONTROLQ);
                    return Err(RELEASE_DEFERRED);
                }
                Ok(0)
            }
        }
    }

    fn control<M: GuestMemory>(
        &mut self,
        code: u32,
        id: u32,
        reader: &mut virtio_core::queue::Reader<'_, M>,
        w: &mut Writer<'_, M>,
    ) -> Answer {
        let c = self.controls.get_mut(id as usize).ok_or(S_BAD_MSG)?;
        let access = c.desc.access;
        match code {
            R_CTL_ENUM_ITEMS => {
                let ControlKind::Enumerated(items) = c.desc.kind else {
                    return Err(S_BAD_MSG);
                };
                let need = items.len().saturating_mul(CTL_ENUM_ITEM_BYTES);
                if (w.remaining() as usize) < need {
                    return Err(S_BAD_MSG);
                }
                for item in items {
                    let mut b = [0u8; CTL_ENUM_ITEM_BYTES];
                    for (d, s) in b.iter_mut().zip(item.bytes()) {
                        *d = s;
                    }
                    w.write_all(&b).map_err(|_| S_BAD_MSG)?;
                }
                u32::try_from(need).map_err(|_| S_BAD_MSG)
            }
            R_CTL_READ => {
                if access & CTL_ACCESS_READ == 0 {
                    return Err(S_NOT_SUPP);
                }
                if (w.remaining() as usize) < CTL_VALUE_BYTES {
                    return Err(S_BAD_MSG);
                }
                w.write_all(&c.value).map_err(|_| S_BAD_MSG)?;
                Ok(CTL_VALUE_BYTES as u32)
            }
            R_CTL_WRITE => {
                if access & CTL_ACCESS_WRITE == 0 {
                    return Err(S_NOT_SUPP);
                }
                let mut value = [0u8; CTL_VALUE_BYTES];
                reader.read_exact(&mut value).map_err(|_| S_BAD_MSG)?;
                if !valid_value(&c.desc, &value) {
                    return Err(S_BAD_MSG);
                }
                self.backend
                    .control_written(id, &value)
                    .map_err(status_of)?;
                if let Some(c) = self.controls.get_mut(id as usize) {
                    c.value = value;
                }
                Ok(0)
            }
            R_CTL_TLV_READ => {
                if access & CTL_ACCESS_TLV_READ == 0 {
                    return Err(S_NOT_SUPP);
                }
                // virtio 1.4 §"Control Element Metadata": with too little
                // room, write as much as fits and succeed.
                let n = (w.remaining() as usize).min(c.tlv.len());
                w.write_all(c.tlv.get(..n).unwrap_or_default())
                    .map_err(|_| S_BAD_MSG)?;
                u32::try_from(n).map_err(|_| S_BAD_MSG)
            }
            _ => {
                let need = if code == R_CTL_TLV_WRITE {
                    CTL_ACCESS_TLV_WRITE
                } else {
                    CTL_ACCESS_TLV_COMMAND
                };
                if access & need == 0 {
                    return Err(S_NOT_SUPP);
                }
                let hdr = reader.read_obj::<TlvHdr>().map_err(|_| S_BAD_MSG)?;
                let len = hdr.length.get();
                if len > TLV_VALUE_MAX || len % 4 != 0 || len > reader.remaining() {
                    return Err(S_BAD_MSG);
                }
                let total = (len as usize).saturating_add(8);
                if total > TLV_BYTES {
                    return Err(S_NOT_SUPP);
                }
                let mut buf = [0u8; TLV_BYTES];
                let (head, body) = buf.split_at_mut(8);
                head.copy_from_slice(hdr.as_bytes());
                reader
                    .read_exact(body.get_mut(..len as usize).unwrap_or_default())
                    .map_err(|_| S_BAD_MSG)?;
                let tlv = buf.get(..total).unwrap_or_default();
                if code == R_CTL_TLV_WRITE {
                    if let Some(c) = self.controls.get_mut(id as usize) {
                        c.tlv = Vec::from_slice(tlv).map_err(|_| S_NOT_SUPP)?;
                    }
                    Ok(0)
                } else {
                    self.backend.tlv_command(id, tlv).map_err(status_of)?;
                    Ok(0)
                }
            }
        }
    }

    // ---- I/O ----

    fn take_io<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        queue: u16,
        chain: &HeldChain,
    ) {
        let mem = queues.memory();
        if chain.writable_len() < 8 {
            // No room for a status.
            queues.push_used(queue, chain.head(), 0);
            return;
        }
        let direction = if queue == TXQ {
            Direction::Output
        } else {
            Direction::Input
        };
        let xfer = chain.reader(mem).read_obj::<Xfer>();
        let ok_shape = match direction {
            // tx: header and frames readable, only the status writable.
            Direction::Output => chain.writable_len() == 8,
            // rx: only the header readable.
            Direction::Input => chain.readable_len() == 4,
        };
        let now = self.backend.now_ns();
        let stream = xfer
            .ok()
            .and_then(|x| self.streams.get_mut(x.stream_id.get() as usize));
        let holds = match stream {
            Some(s)
                if ok_shape
                    && s.desc.direction == direction
                    && matches!(
                        s.state,
                        PcmState::Prepared | PcmState::Running | PcmState::Stopped
                    ) =>
            {
                if s.held.is_empty() && s.pace.since.is_some() {
                    // A running stream that had run dry restarts its
                    // position from this buffer.
                    s.pace.base = s.pace.done;
                    s.pace.since = Some(now);
                }
                s.pace.xrun = false;
                s.held.push_back(chain.clone()).is_ok()
            }
            _ => false,
        };
        if !holds {
            complete(queues, &mut self.stats, queue, chain, S_IO_ERR, 0, 0);
        }
    }

    /// Completes every held buffer of a running stream whose end the
    /// stream's position passed; notes under- and overruns.
    fn advance<M: GuestMemory, const Q: usize>(&mut self, queues: &mut DeviceQueues<'_, M, Q>) {
        let now = self.backend.now_ns();
        for id in 0..STREAMS {
            let Some(s) = self.streams.get_mut(id) else {
                continue;
            };
            let (Some(since), Some(params)) = (s.pace.since, s.params) else {
                continue;
            };
            let position = s
                .pace
                .base
                .saturating_add(params.bytes_in(now.saturating_sub(since)));
            while let Some(s) = self.streams.get_mut(id) {
                let Some(front) = s.held.front() else {
                    if position > s.pace.done {
                        // Nothing held while the stream ran on: an xrun.
                        // The position restarts from the last buffer.
                        s.pace.base = s.pace.done;
                        s.pace.since = Some(now);
                        if !s.pace.xrun {
                            s.pace.xrun = true;
                            self.stats.xruns = self.stats.xruns.saturating_add(1);
                            if params.features & PCM_F_EVT_XRUNS != 0 {
                                self.notify(Event {
                                    code: EVT_PCM_XRUN.into(),
                                    data: (id as u32).into(),
                                });
                            }
                        }
                    }
                    break;
                };
                let len = u64::from(data_len(s.desc.direction, front));
                let end = s.pace.done.saturating_add(len);
                if position < end {
                    break;
                }
                let Some(chain) = s.held.pop_front() else {
                    break;
                };
                s.pace.done = end;
                self.transfer(queues, id as u32, &chain);
            }
        }
    }

    /// Moves one buffer's frames to or from the backend and completes it.
    fn transfer<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        id: u32,
        chain: &HeldChain,
    ) {
        let mem = queues.memory();
        let Some(s) = self.streams.get(id as usize) else {
            return;
        };
        let direction = s.desc.direction;
        let latency: u64 = s
            .held
            .iter()
            .map(|c| u64::from(data_len(direction, c)))
            .sum();
        let latency = u32::try_from(latency).unwrap_or(u32::MAX);
        let mut chunk = [0u8; 512];
        let mut status = S_OK;
        let (queue, frames) = match direction {
            Direction::Output => {
                let mut r = chain.reader(mem);
                let _ = r.skip(4);
                while r.remaining() > 0 {
                    let n = (r.remaining() as usize).min(chunk.len());
                    let buf = chunk.get_mut(..n).unwrap_or_default();
                    if r.read_exact(buf).is_err() || self.backend.write(id, buf).is_err() {
                        status = S_IO_ERR;
                        break;
                    }
                }
                (TXQ, 0)
            }
            Direction::Input => {
                let mut w = chain.writer(mem);
                let total = data_len(direction, chain);
                let mut left = total as usize;
                while left > 0 {
                    let n = left.min(chunk.len());
                    let buf = chunk.get_mut(..n).unwrap_or_default();
                    if self.backend.read(id, buf).is_err() || w.write_all(buf).is_err() {
                        status = S_IO_ERR;
                        break;
                    }
                    left = left.saturating_sub(n);
                }
                (RXQ, if status == S_OK { total } else { 0 })
            }
        };
        complete(
            queues,
            &mut self.stats,
            queue,
            chain,
            status,
            latency,
            frames,
        );
    }

    /// `RELEASE`: every held buffer of the stream completes now (tx frames
    /// go to the backend; rx buffers end the stream without frames).
    fn flush<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
        id: u32,
    ) {
        loop {
            let Some(s) = self.streams.get_mut(id as usize) else {
                return;
            };
            let Some(chain) = s.held.pop_front() else {
                return;
            };
            match s.desc.direction {
                Direction::Output => self.transfer(queues, id, &chain),
                Direction::Input => {
                    complete(queues, &mut self.stats, RXQ, &chain, S_OK, 0, 0);
                }
            }
        }
    }

    fn answer_deferred<M: GuestMemory, const Q: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, Q>,
    ) {
        while let Some((chain, status)) = self.deferred.pop_front() {
            self.answer(queues, &chain, status, 0);
        }
    }
}

/// Marks a `RELEASE` whose reply waits for the next turn.
const RELEASE_DEFERRED: u32 = 0;

fn status_of(e: PcmError) -> u32 {
    match e {
        PcmError::NotSupported => S_NOT_SUPP,
        PcmError::Io => S_IO_ERR,
    }
}

/// The frame bytes of an I/O message: tx after its header, rx before its
/// status.
fn data_len(direction: Direction, chain: &HeldChain) -> u32 {
    match direction {
        Direction::Output => chain.readable_len().saturating_sub(4),
        Direction::Input => chain.writable_len().saturating_sub(8),
    }
}

/// Writes an I/O message's status at the end of its writable part and
/// returns it with `frames` bytes of frames before the status.
fn complete<M: GuestMemory, const Q: usize>(
    queues: &mut DeviceQueues<'_, M, Q>,
    stats: &mut SoundStats,
    queue: u16,
    chain: &HeldChain,
    status: u32,
    latency: u32,
    frames: u32,
) {
    let at = chain.writable_len().saturating_sub(8);
    let tail = PcmStatus {
        status: status.into(),
        latency_bytes: latency.into(),
    };
    write_at(queues.memory(), chain, at, tail.as_bytes());
    queues.push_used(queue, chain.head(), frames.saturating_add(8));
    if status == S_OK {
        stats.io_ok = stats.io_ok.saturating_add(1);
    } else {
        stats.io_errors = stats.io_errors.saturating_add(1);
    }
}

/// Writes `bytes` at offset `at` of a chain's writable part (across
/// segments).
fn write_at<M: GuestMemory>(mem: &M, chain: &HeldChain, at: u32, bytes: &[u8]) {
    let mut offset = u64::from(at);
    let mut rest = bytes;
    for seg in chain.writable_segments() {
        if rest.is_empty() {
            break;
        }
        let len = u64::from(seg.len);
        if offset >= len {
            offset = offset.saturating_sub(len);
            continue;
        }
        let room = usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let (now, later) = rest.split_at(room.min(rest.len()));
        let _ = mem.write(seg.addr.saturating_add(offset), now);
        rest = later;
        offset = 0;
    }
}

/// A `CTL_WRITE` value the element's type and range allow.
fn valid_value(d: &ControlDesc, value: &[u8; CTL_VALUE_BYTES]) -> bool {
    let count = d.count as usize;
    let i32s = |i: usize| -> i32 {
        let b = value.chunks_exact(4).nth(i).unwrap_or(&[0; 4]);
        i32::from_le_bytes(b.try_into().unwrap_or([0; 4]))
    };
    match d.kind {
        ControlKind::Boolean => (0..count).all(|i| matches!(i32s(i), 0 | 1)),
        ControlKind::Integer { min, max, step } => (0..count).all(|i| {
            let v = i32s(i);
            v >= min
                && v <= max
                && (step <= 0
                    || (i64::from(v).wrapping_sub(i64::from(min))).checked_rem(i64::from(step))
                        == Some(0))
        }),
        ControlKind::Integer64 { min, max, step } => (0..count).all(|i| {
            let b = value.chunks_exact(8).nth(i).unwrap_or(&[0; 8]);
            let v = i64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            v >= min
                && v <= max
                && (step <= 0
                    || (i128::from(v).wrapping_sub(i128::from(min))).checked_rem(i128::from(step))
                        == Some(0))
        }),
        ControlKind::Enumerated(items) => {
            (0..count).all(|i| usize::try_from(i32s(i) as u32).is_ok_and(|v| v < items.len()))
        }
        ControlKind::Bytes | ControlKind::Iec958 => true,
    }
}

impl<B: PcmBackend, const STREAMS: usize> VirtioDevice for Sound<B, STREAMS> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Sound
    }

    fn features(&self) -> Features {
        Features::from_bits_retain(if self.offer_ctls { F_CTLS } else { 0 })
    }

    fn num_queues(&self) -> u16 {
        4
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn config_len(&self) -> u32 {
        size_of::<SoundConfig>() as u32
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    fn activate(&mut self, features: Features) {
        self.negotiated = features;
    }

    /// Streams back to no parameters (open ones released in the backend),
    /// held chains forgotten, controls and jacks kept as they are (they
    /// are the device's, not the driver's).
    fn reset(&mut self) {
        self.negotiated = Features::empty();
        for (id, s) in (0u32..).zip(self.streams.iter_mut()) {
            if matches!(
                s.state,
                PcmState::Prepared | PcmState::Running | PcmState::Stopped
            ) {
                self.backend.release(id);
            }
            s.state = PcmState::Idle;
            s.params = None;
            s.held.clear();
            s.pace = Pace::default();
        }
        self.events.clear();
        self.pending.clear();
        self.deferred.clear();
    }

    fn queue_reset(&mut self, queue: u16) {
        match queue {
            CONTROLQ => self.deferred.clear(),
            EVENTQ => self.events.clear(),
            TXQ | RXQ => {
                let direction = if queue == TXQ {
                    Direction::Output
                } else {
                    Direction::Input
                };
                for s in &mut self.streams {
                    if s.desc.direction == direction {
                        s.held.clear();
                    }
                }
            }
            _ => {}
        }
    }

    fn queue_notify<M: GuestMemory, const Q: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, Q>,
    ) {
        let mut chain = HeldChain::new();
        match queue {
            CONTROLQ => {
                self.answer_deferred(queues);
                while queues.pop(CONTROLQ, &mut chain) {
                    self.serve_control(queues, &chain);
                }
            }
            EVENTQ => {
                while queues.pop(EVENTQ, &mut chain) {
                    self.take_event(queues, &chain);
                }
            }
            TXQ | RXQ => {
                while queues.pop(queue, &mut chain) {
                    self.take_io(queues, queue, &chain);
                }
            }
            _ => {}
        }
        self.advance(queues);
        self.deliver(queues);
    }

    /// Completes the buffers that came due and delivers notifications.
    fn poll<M: GuestMemory, const Q: usize>(&mut self, queues: &mut DeviceQueues<'_, M, Q>) {
        self.answer_deferred(queues);
        self.advance(queues);
        self.deliver(queues);
    }
}

#[cfg(test)]
mod tests;
