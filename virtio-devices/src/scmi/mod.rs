//! The SCMI device (ID 32, virtio 1.4 §"SCMI Device"): the platform side
//! of Arm's System Control and Management Interface (DEN0056) for one
//! agent, the driver, over a [`Platform`] made of one small trait per
//! protocol.
//!
//! # Queues
//!
//! * **cmdq** (0): each chain is one command, `le32 hdr` and its
//!   parameters in the device-readable part; the response (`hdr`, the
//!   status, the return values) goes into the same chain's device-writable
//!   part.
//! * **eventq** (1, only with `VIRTIO_SCMI_F_P2A_CHANNELS`): the driver
//!   posts device-writable buffers; the device **holds** up to `E` of them
//!   (a `heapless::Deque` of chain snapshots) and completes them with
//!   notifications and delayed responses from `queue_notify` and `poll`.
//!   Held buffers are forgotten on a device or eventq reset (their heads
//!   mean nothing after one).
//!
//! # Messages
//!
//! The header is parsed once ([`Header::parse`]: message id bits 7:0, type
//! 9:8, protocol id 17:10, token 27:18) and echoed, token included, in the
//! response. A protocol the platform does not implement (or the agent may
//! not use), or a message the protocol does not have, answers
//! `NOT_SUPPORTED`; parameters of the wrong length, a message type other
//! than command, or a response the writable part cannot hold answer
//! `PROTOCOL_ERROR`; a resource id at or above the platform's count, or
//! one [`Platform::access`] hides from the agent, answers `NOT_FOUND`; a
//! change to a read-only resource answers `DENIED`. A response that is not
//! `SUCCESS` carries the status only (virtio 1.4 §"cmdq Operation").
//!
//! | protocol | id | version | messages |
//! |---|---|---|---|
//! | Base | 0x10 | 2.0 | version, attributes, message attributes, vendor, sub-vendor, implementation version, list protocols, discover agent, notify errors |
//! | Power domain | 0x11 | 2.0 | attributes, state set (sync), state get, state notify |
//! | Clock | 0x14 | 1.0 | attributes, describe rates (list and range), rate set (sync and async with `CLOCK_RATE_SET_COMPLETE`), rate get, config set |
//! | Sensor | 0x15 | 1.0 | description get, trip point notify and config, reading get (sync and async with `SENSOR_READING_COMPLETE`) |
//! | Reset domain | 0x16 | 1.0 | attributes, reset (autonomous, explicit assert / deassert, async with `RESET_COMPLETE`), reset notify |
//!
//! | Performance domain | 0x13 | 2.0 | attributes, describe levels, limits set/get, level set/get, limits and level notify (no FastChannels: virtio SCMI has none) |
//! | Voltage domain | 0x17 | 1.0 | attributes, describe levels (list and range), config set/get, level set/get |
//!
//! # Asynchronous commands
//!
//! An asynchronous command (sensor read, clock rate set, reset) is
//! answered `SUCCESS` at once and queued as a job; the device runs the job
//! from `poll` (a `queue_notify` that leaves jobs asks for a later call
//! with [`DeviceQueues::poll_again`], so the call reports work left and
//! the embedder polls), after the response was published and signalled, so a driver sees the response before the delayed response
//! (Linux logs an "out of order" delayed response otherwise), and sends each delayed
//! response on the eventq, waiting for a buffer as long as it takes
//! (virtio 1.4 §"eventq Operation": a delayed response MUST be sent). At
//! most `A` jobs and undelivered messages are pending together; an
//! asynchronous command beyond that answers `BUSY`, and that number is
//! what `PROTOCOL_ATTRIBUTES` of the sensor and clock protocols advertise.
//! Without `VIRTIO_SCMI_F_P2A_CHANNELS`, asynchronous flags and notify
//! commands answer `NOT_SUPPORTED`, and no attribute says notifications or
//! delayed responses exist.
//!
//! # Notifications
//!
//! The platform reports [`Event`]s through [`Platform::next_event`]
//! (asked on every turn); the device sends those the agent enabled
//! (`SENSOR_TRIP_POINT_NOTIFY`, `RESET_NOTIFY`, `POWER_STATE_NOTIFY`,
//! `PERF_NOTIFY_LIMITS`, `PERF_NOTIFY_LEVEL`, for
//! ids below [`NOTIFY_IDS`]) and drops the rest. A notification finding
//! the pending queue full is dropped (counted in [`ScmiStats`]). With
//! `BASE_NOTIFY_ERRORS` on, a command whose chain has no room for even a
//! status (so it is returned with nothing written) is reported by a
//! `BASE_ERROR_EVENT` whose one report is that command's header word.

mod platform;
#[cfg(any(test, feature = "test-utils"))]
pub mod sim;
mod wire;

pub use platform::*;
pub use wire::*;

use heapless::Deque;
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};

/// Most segments of a cmdq chain.
pub const CMD_SEGMENTS: usize = 8;
/// Most segments of an eventq buffer.
pub const EVENT_SEGMENTS: usize = 4;
/// Most parameter bytes a command may carry (the largest command has 16;
/// Linux sizes messages at 128 bytes).
pub const PARAMS_MAX: usize = 128;
/// Most return-value bytes after the status in one response.
pub const RETURN_MAX: usize = 128;
/// Notifications can be enabled for resource ids below this.
pub const NOTIFY_IDS: usize = 1024;
/// Bytes of the largest P2A message the device sends (header included).
pub const P2A_MAX: usize = 20;

/// `PROTOCOL_ERROR` with status only: what a malformed cmdq chain gets at
/// the start of its writable part (a zero header, then -10).
const MALFORMED: &[u8] = &[0, 0, 0, 0, 0xf6, 0xff, 0xff, 0xff];

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScmiStats {
    /// Commands answered (any status).
    pub commands: u32,
    /// Commands answered with a status other than `SUCCESS`.
    pub failed: u32,
    /// Commands whose chain had no room for a response.
    pub no_room: u32,
    /// Delayed responses delivered.
    pub delayed: u32,
    /// Notifications delivered.
    pub notifications: u32,
    /// Notifications dropped (not enabled, queue full, buffer too small).
    pub dropped: u32,
}

/// One P2A message waiting for an eventq buffer.
#[derive(Clone, Copy, Debug)]
struct P2a {
    bytes: [u8; P2A_MAX],
    len: u8,
    /// A delayed response (never dropped).
    delayed: bool,
}

/// An asynchronous command waiting to run.
#[derive(Clone, Copy, Debug)]
enum Job {
    SensorRead {
        hdr: Header,
        id: u16,
    },
    ClockRate {
        hdr: Header,
        id: u16,
        rate: u64,
        round: Round,
        respond: bool,
    },
    Reset {
        hdr: Header,
        id: u16,
        op: ResetOp,
    },
}

/// A set of resource ids (notifications enabled).
#[derive(Clone, Copy, Debug)]
struct Bits([u32; NOTIFY_IDS / 32]);

impl Bits {
    const fn new() -> Self {
        Self([0; NOTIFY_IDS / 32])
    }
    fn set(&mut self, id: u16, on: bool) -> bool {
        let Some(w) = self.0.get_mut(usize::from(id / 32)) else {
            return false;
        };
        let bit = 1u32 << (id % 32);
        if on {
            *w |= bit;
        } else {
            *w &= !bit;
        }
        true
    }
    fn get(&self, id: u16) -> bool {
        self.0
            .get(usize::from(id / 32))
            .is_some_and(|w| w & (1u32 << (id % 32)) != 0)
    }
}

/// Return values being built, bounded by what the chain can hold.
struct Out {
    buf: [u8; RETURN_MAX],
    len: usize,
    cap: usize,
}

impl Out {
    fn new(cap: usize) -> Self {
        Self {
            buf: [0; RETURN_MAX],
            len: 0,
            cap: cap.min(RETURN_MAX),
        }
    }
    fn room(&self) -> usize {
        self.cap.saturating_sub(self.len)
    }
    fn put(&mut self, b: &[u8]) -> Result<(), Status> {
        let end = self
            .len
            .checked_add(b.len())
            .filter(|e| *e <= self.cap)
            .ok_or(Status::ProtocolError)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Status::ProtocolError)?
            .copy_from_slice(b);
        self.len = end;
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<(), Status> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), Status> {
        self.u32(v as u32)?;
        self.u32((v >> 32) as u32)
    }
    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// The parameters, checked to be exactly `n` words.
fn words<const W: usize>(p: &[u8]) -> Result<[u32; W], Status> {
    if p.len() != W.saturating_mul(4) {
        return Err(Status::ProtocolError);
    }
    let mut out = [0u32; W];
    for (o, c) in out.iter_mut().zip(p.chunks_exact(4)) {
        let mut b = [0u8; 4];
        b.copy_from_slice(c);
        *o = u32::from_le_bytes(b);
    }
    Ok(out)
}

fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

/// The SCMI device over platform `P`, holding up to `E` eventq buffers
/// and up to `A` pending asynchronous commands and P2A messages.
#[derive(Debug)]
pub struct Scmi<P, const E: usize = 16, const A: usize = 8> {
    platform: P,
    agent: u32,
    agent_name: &'static str,
    queue_size: u16,
    p2a: bool,
    held: Deque<Chain<EVENT_SEGMENTS>, E>,
    outbound: Deque<P2a, A>,
    jobs: Deque<Job, A>,
    notify_errors: bool,
    notify_sensors: Bits,
    notify_resets: Bits,
    notify_power: Bits,
    notify_perf_limits: Bits,
    notify_perf_level: Bits,
    stats: ScmiStats,
}

impl<P: Platform, const E: usize, const A: usize> Scmi<P, E, A> {
    const SIZES: () = assert!(E >= 1 && A >= 1 && A <= 255, "E >= 1, 1 <= A <= 255");

    /// A device serving `platform` to agent 1, named "guest".
    pub fn new(platform: P) -> Self {
        let () = Self::SIZES;
        Self {
            platform,
            agent: 1,
            agent_name: "guest",
            queue_size: 64,
            p2a: false,
            held: Deque::new(),
            outbound: Deque::new(),
            jobs: Deque::new(),
            notify_errors: false,
            notify_sensors: Bits::new(),
            notify_resets: Bits::new(),
            notify_power: Bits::new(),
            notify_perf_limits: Bits::new(),
            notify_perf_level: Bits::new(),
            stats: ScmiStats::default(),
        }
    }

    /// The agent id and name the driver is (`BASE_DISCOVER_AGENT` with
    /// `0xffffffff`, and what [`Platform::access`] is asked about).
    #[must_use]
    pub fn with_agent(mut self, id: u32, name: &'static str) -> Self {
        self.agent = id;
        self.agent_name = name;
        self
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The platform, mutably.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// What the device did so far.
    pub fn stats(&self) -> ScmiStats {
        self.stats
    }

    /// Eventq buffers held now.
    pub fn held_buffers(&self) -> usize {
        self.held.len()
    }

    /// Delayed responses and notifications waiting for an eventq buffer,
    /// and asynchronous commands not run yet.
    pub fn pending(&self) -> usize {
        self.outbound.len().saturating_add(self.jobs.len())
    }

    /// Is `protocol` implemented and open to the agent?
    fn present(&mut self, protocol: u8) -> bool {
        let implemented = match protocol {
            PROTOCOL_BASE => true,
            PROTOCOL_SENSOR => self.platform.sensors().is_some(),
            PROTOCOL_CLOCK => self.platform.clocks().is_some(),
            PROTOCOL_RESET => self.platform.resets().is_some(),
            PROTOCOL_POWER => self.platform.power().is_some(),
            PROTOCOL_PERF => self.platform.perf().is_some(),
            PROTOCOL_VOLTAGE => self.platform.voltage().is_some(),
            _ => false,
        };
        implemented && self.platform.protocol_allowed(self.agent, protocol)
    }

    /// The protocols listed (base excluded), ascending.
    fn listed(&mut self) -> heapless::Vec<u8, 8> {
        let mut v = heapless::Vec::new();
        for p in [
            PROTOCOL_POWER,
            PROTOCOL_PERF,
            PROTOCOL_CLOCK,
            PROTOCOL_SENSOR,
            PROTOCOL_RESET,
            PROTOCOL_VOLTAGE,
        ] {
            if self.present(p) {
                let _ = v.push(p);
            }
        }
        v
    }

    /// Does `protocol` have `message` (for this negotiation)?
    fn implements(&self, protocol: u8, message: u32) -> bool {
        let p2a = self.p2a;
        match protocol {
            PROTOCOL_BASE => message <= 7 || (message == 8 && p2a),
            PROTOCOL_SENSOR => message <= 6 && (message != 4 || p2a),
            PROTOCOL_CLOCK => message <= 7,
            PROTOCOL_RESET => message <= 4 || (message == 5 && p2a),
            PROTOCOL_POWER => message <= 5 || (message == 6 && p2a),
            PROTOCOL_PERF => message <= 8 || ((message == 9 || message == 10) && p2a),
            PROTOCOL_VOLTAGE => message <= 8,
            _ => false,
        }
    }

    /// Checks `id` against `count` and the agent's access.
    fn resource(&self, protocol: u8, id: u32, count: u16, change: bool) -> Result<u16, Status> {
        let id16 = u16::try_from(id)
            .ok()
            .filter(|i| *i < count)
            .ok_or(Status::NotFound)?;
        match self.platform.access(self.agent, protocol, id) {
            Access::Hidden => Err(Status::NotFound),
            Access::ReadOnly if change => Err(Status::Denied),
            _ => Ok(id16),
        }
    }

    /// Room for one more job (its delayed response has a reserved slot).
    fn can_queue(&self) -> bool {
        self.pending() < A
    }

    fn async_slots(&self) -> u32 {
        if self.p2a { A as u32 } else { 0 }
    }

    /// Serves one cmdq chain; returns the bytes written.
    fn serve_command<M: GuestMemory, const N: usize>(&mut self, chain: &Chain<N>, mem: &M) -> u32 {
        let readable = chain.readable_len() as usize;
        let mut reader = chain.reader(mem);
        let mut word = [0u8; 4];
        let mut params = [0u8; PARAMS_MAX];
        let plen = readable.saturating_sub(HEADER_BYTES);
        let (hdr, result) = if readable < HEADER_BYTES || reader.read_exact(&mut word).is_err() {
            (Header::default(), Err(Status::ProtocolError))
        } else {
            let hdr = Header::parse(u32::from_le_bytes(word));
            let read = params
                .get_mut(..plen)
                .is_some_and(|buf| reader.read_exact(buf).is_ok());
            if read {
                (hdr, Ok(plen))
            } else {
                (hdr, Err(Status::ProtocolError))
            }
        };
        let writable = chain.writable_len() as usize;
        if writable < 8 {
            self.stats.no_room = self.stats.no_room.saturating_add(1);
            if self.notify_errors && self.p2a {
                let agent = self.agent;
                let mut m = Msg::new(Header {
                    message: base::ERROR_EVENT,
                    kind: TYPE_NOTIFICATION,
                    protocol: PROTOCOL_BASE,
                    token: 0,
                });
                m.u32(agent);
                m.u32(1);
                m.u32(hdr.word());
                m.u32(0);
                self.notify(m);
            }
            return 0;
        }
        let mut out = Out::new(writable.saturating_sub(8));
        let status = match result {
            Err(e) => Err(e),
            Ok(_) if hdr.kind != TYPE_COMMAND => Err(Status::ProtocolError),
            Ok(n) => self.dispatch(hdr, params.get(..n).unwrap_or_default(), &mut out),
        };
        self.stats.commands = self.stats.commands.saturating_add(1);
        let mut writer = chain.writer(mem);
        let mut ok = writer.write_all(&hdr.word().to_le_bytes()).is_ok();
        match status {
            Ok(()) => {
                ok &= writer.write_all(&0u32.to_le_bytes()).is_ok();
                ok &= writer.write_all(out.bytes()).is_ok();
            }
            Err(s) => {
                self.stats.failed = self.stats.failed.saturating_add(1);
                ok &= writer.write_all(&s.code().to_le_bytes()).is_ok();
            }
        }
        if ok { writer.bytes_written() } else { 0 }
    }

    fn dispatch(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        if !self.present(hdr.protocol) {
            return Err(Status::NotSupported);
        }
        if !self.implements(hdr.protocol, u32::from(hdr.message)) {
            return Err(Status::NotSupported);
        }
        match hdr.message {
            common::PROTOCOL_VERSION => {
                words::<0>(p)?;
                return out.u32(match hdr.protocol {
                    PROTOCOL_SENSOR => sensor::VERSION,
                    PROTOCOL_CLOCK => clock::VERSION,
                    PROTOCOL_RESET => reset::VERSION,
                    PROTOCOL_POWER => power::VERSION,
                    PROTOCOL_PERF => perf::VERSION,
                    PROTOCOL_VOLTAGE => voltage::VERSION,
                    _ => base::VERSION,
                });
            }
            common::PROTOCOL_MESSAGE_ATTRIBUTES => {
                let [m] = words::<1>(p)?;
                return if self.implements(hdr.protocol, m) {
                    out.u32(0)
                } else {
                    Err(Status::NotFound)
                };
            }
            _ => {}
        }
        match hdr.protocol {
            PROTOCOL_BASE => self.base(hdr, p, out),
            PROTOCOL_SENSOR => self.sensor(hdr, p, out),
            PROTOCOL_CLOCK => self.clock(hdr, p, out),
            PROTOCOL_RESET => self.reset_domain(hdr, p, out),
            PROTOCOL_POWER => self.power_domain(hdr, p, out),
            PROTOCOL_PERF => self.perf_domain(hdr, p, out),
            PROTOCOL_VOLTAGE => self.voltage_domain(hdr, p, out),
            _ => Err(Status::NotSupported),
        }
    }

    fn base(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                let n = self.listed().len() as u32;
                out.u32(n | (u32::from(self.platform.agents()) << 8))
            }
            base::DISCOVER_VENDOR => {
                words::<0>(p)?;
                out.put(&short_name(self.platform.vendor()))
            }
            base::DISCOVER_SUB_VENDOR => {
                words::<0>(p)?;
                out.put(&short_name(self.platform.sub_vendor()))
            }
            base::DISCOVER_IMPLEMENTATION_VERSION => {
                words::<0>(p)?;
                out.u32(self.platform.implementation_version())
            }
            base::DISCOVER_LIST_PROTOCOLS => {
                let [skip] = words::<1>(p)?;
                let list = self.listed();
                let rest = list.get(skip as usize..).ok_or(Status::InvalidParameters)?;
                // Whole words only; as many as fit.
                let fit = out
                    .room()
                    .saturating_sub(4)
                    .saturating_div(4)
                    .saturating_mul(4);
                let n = rest.len().min(fit);
                out.u32(n as u32)?;
                for chunk in rest.get(..n).unwrap_or_default().chunks(4) {
                    let mut w = [0u8; 4];
                    for (d, s) in w.iter_mut().zip(chunk) {
                        *d = *s;
                    }
                    out.put(&w)?;
                }
                Ok(())
            }
            base::DISCOVER_AGENT => {
                let [id] = words::<1>(p)?;
                let (id, name) = match id {
                    base::AGENT_SELF => (self.agent, short_name(self.agent_name)),
                    0 => (0, short_name("platform")),
                    i if i == self.agent => (i, short_name(self.agent_name)),
                    i if i <= u32::from(self.platform.agents()) => {
                        let name = self.platform.agent_name(i).ok_or(Status::NotFound)?;
                        (i, short_name(name))
                    }
                    _ => return Err(Status::NotFound),
                };
                out.u32(id)?;
                out.put(&name)
            }
            base::NOTIFY_ERRORS => {
                let [ctl] = words::<1>(p)?;
                if ctl & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                self.notify_errors = ctl & 1 != 0;
                Ok(())
            }
            _ => Err(Status::NotSupported),
        }
    }

    /// Visible sensor ids, in order.
    fn visible_sensors(&mut self) -> impl Iterator<Item = u16> + '_ {
        let count = self.platform.sensors().map_or(0, |s| s.count());
        let agent = self.agent;
        let platform = &self.platform;
        (0..count).filter(move |i| {
            platform.access(agent, PROTOCOL_SENSOR, u32::from(*i)) != Access::Hidden
        })
    }

    fn sensor(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.sensors().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                let visible = self.visible_sensors().count() as u32;
                out.u32(visible.min(0xffff) | (self.async_slots() << 16))?;
                // No statistics shared memory.
                out.u32(0)?;
                out.u32(0)?;
                out.u32(0)
            }
            sensor::DESCRIPTION_GET => {
                let [index] = words::<1>(p)?;
                let total = self.visible_sensors().count();
                let index = index as usize;
                if index > total {
                    return Err(Status::InvalidParameters);
                }
                let fit = out
                    .room()
                    .saturating_sub(4)
                    .saturating_div(sensor::DESCRIPTOR_BYTES);
                let n = total.saturating_sub(index).min(fit).min(0xfff);
                let remaining = total.saturating_sub(index).saturating_sub(n);
                out.u32(n as u32 | ((remaining.min(0xffff) as u32) << 16))?;
                let mut ids = [0u16; RETURN_MAX / sensor::DESCRIPTOR_BYTES];
                for (slot, id) in ids
                    .iter_mut()
                    .zip(self.visible_sensors().skip(index).take(n))
                {
                    *slot = id;
                }
                let async_bit = if self.p2a { 1u32 << 31 } else { 0 };
                let sensors = self.platform.sensors().ok_or(Status::NotSupported)?;
                for id in ids.iter().take(n) {
                    let info = sensors.info(*id);
                    out.u32(u32::from(*id))?;
                    out.u32(async_bit | u32::from(info.trip_points))?;
                    let scale = (info.scale as u32) & 0x1f;
                    let (mult, exp) = info.update_interval;
                    let high = u32::from(info.kind)
                        | (scale << 11)
                        | (((exp as u32) & 0x1f) << 22)
                        | ((u32::from(mult) & 0x1f) << 27);
                    out.u32(high)?;
                    out.put(&short_name(info.name))?;
                }
                Ok(())
            }
            sensor::TRIP_POINT_NOTIFY => {
                let [id, ctl] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_SENSOR, id, count, false)?;
                if ctl & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                if !self.notify_sensors.set(id, ctl & 1 != 0) {
                    return Err(Status::NotSupported);
                }
                Ok(())
            }
            sensor::TRIP_POINT_CONFIG => {
                let [id, ctl, lo, hi] = words::<4>(p)?;
                let id = self.resource(PROTOCOL_SENSOR, id, count, true)?;
                let point = ((ctl >> 4) & 0xff) as u8;
                if ctl & !0xff3 != 0 {
                    return Err(Status::InvalidParameters);
                }
                let mode = match ctl & 3 {
                    0 => TripMode::Disabled,
                    1 => TripMode::Ascending,
                    2 => TripMode::Descending,
                    _ => TripMode::Both,
                };
                let sensors = self.platform.sensors().ok_or(Status::NotSupported)?;
                if point >= sensors.info(id).trip_points {
                    return Err(Status::InvalidParameters);
                }
                sensors.set_trip_point(id, point, mode, join(lo, hi) as i64)
            }
            sensor::READING_GET => {
                let [id, flags] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_SENSOR, id, count, false)?;
                if flags & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                if flags & 1 != 0 {
                    self.queue_job(Job::SensorRead { hdr, id })
                } else {
                    let v = self
                        .platform
                        .sensors()
                        .ok_or(Status::NotSupported)?
                        .read(id)?;
                    out.u64(v as u64)
                }
            }
            _ => Err(Status::NotSupported),
        }
    }

    fn queue_job(&mut self, job: Job) -> Result<(), Status> {
        if !self.p2a {
            return Err(Status::NotSupported);
        }
        if !self.can_queue() {
            return Err(Status::Busy);
        }
        self.jobs.push_back(job).map_err(|_| Status::Busy)
    }

    fn clock(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.clocks().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                out.u32(u32::from(count) | (self.async_slots() << 16))
            }
            clock::ATTRIBUTES => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_CLOCK, id, count, false)?;
                let clocks = self.platform.clocks().ok_or(Status::NotSupported)?;
                out.u32(u32::from(clocks.enabled(id)))?;
                out.put(&short_name(clocks.name(id)))
            }
            clock::DESCRIBE_RATES => {
                let [id, index] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_CLOCK, id, count, false)?;
                let clocks = self.platform.clocks().ok_or(Status::NotSupported)?;
                match clocks.rates(id) {
                    Rates::Discrete(list) => {
                        let rest = list.get(index as usize..).ok_or(Status::OutOfRange)?;
                        let fit = out.room().saturating_sub(4).saturating_div(8);
                        let n = rest.len().min(fit).min(0xfff);
                        let remaining = rest.len().saturating_sub(n).min(0xffff);
                        out.u32(n as u32 | ((remaining as u32) << 16))?;
                        for r in rest.iter().take(n) {
                            out.u64(*r)?;
                        }
                        Ok(())
                    }
                    Rates::Range { min, max, step } => {
                        out.u32(3 | (1 << 12))?;
                        out.u64(min)?;
                        out.u64(max)?;
                        out.u64(step)
                    }
                }
            }
            clock::RATE_SET => {
                let [flags, id, lo, hi] = words::<4>(p)?;
                let id = self.resource(PROTOCOL_CLOCK, id, count, true)?;
                if flags & !0xf != 0 {
                    return Err(Status::InvalidParameters);
                }
                let round = if flags & clock::SET_ROUND_AUTO != 0 {
                    Round::Auto
                } else if flags & clock::SET_ROUND_UP != 0 {
                    Round::Up
                } else {
                    Round::Down
                };
                let rate = join(lo, hi);
                if flags & clock::SET_ASYNC != 0 {
                    self.queue_job(Job::ClockRate {
                        hdr,
                        id,
                        rate,
                        round,
                        respond: flags & clock::SET_IGNORE_DELAYED == 0,
                    })
                } else {
                    let clocks = self.platform.clocks().ok_or(Status::NotSupported)?;
                    clocks.set_rate(id, rate, round).map(|_| ())
                }
            }
            clock::RATE_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_CLOCK, id, count, false)?;
                let clocks = self.platform.clocks().ok_or(Status::NotSupported)?;
                out.u64(clocks.rate(id)?)
            }
            clock::CONFIG_SET => {
                let [id, attrs] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_CLOCK, id, count, true)?;
                if attrs & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                let clocks = self.platform.clocks().ok_or(Status::NotSupported)?;
                clocks.set_enabled(id, attrs & 1 != 0)
            }
            _ => Err(Status::NotSupported),
        }
    }

    fn reset_domain(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.resets().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                out.u32(u32::from(count))
            }
            reset::DOMAIN_ATTRIBUTES => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_RESET, id, count, false)?;
                let bits = if self.p2a {
                    (1u32 << 31) | (1 << 30)
                } else {
                    0
                };
                let resets = self.platform.resets().ok_or(Status::NotSupported)?;
                out.u32(bits)?;
                out.u32(resets.latency(id))?;
                out.put(&short_name(resets.name(id)))
            }
            reset::RESET => {
                let [id, flags, state] = words::<3>(p)?;
                let id = self.resource(PROTOCOL_RESET, id, count, true)?;
                if flags & !0x7 != 0 {
                    return Err(Status::InvalidParameters);
                }
                // Architectural reset states other than cold reset (0)
                // are reserved; bit 31 marks implementation-defined ones.
                if state & (1 << 31) == 0 && state != 0 {
                    return Err(Status::InvalidParameters);
                }
                let op = if flags & reset::AUTONOMOUS != 0 {
                    ResetOp::Autonomous(state)
                } else if flags & reset::EXPLICIT_ASSERT != 0 {
                    ResetOp::Assert(state)
                } else {
                    ResetOp::Deassert
                };
                if flags & reset::ASYNC != 0 {
                    self.queue_job(Job::Reset { hdr, id, op })
                } else {
                    let resets = self.platform.resets().ok_or(Status::NotSupported)?;
                    resets.reset(id, op)
                }
            }
            reset::NOTIFY => {
                let [id, ctl] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_RESET, id, count, false)?;
                if ctl & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                if !self.notify_resets.set(id, ctl & 1 != 0) {
                    return Err(Status::NotSupported);
                }
                Ok(())
            }
            _ => Err(Status::NotSupported),
        }
    }

    fn power_domain(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.power().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                out.u32(u32::from(count))?;
                // No statistics shared memory.
                out.u32(0)?;
                out.u32(0)?;
                out.u32(0)
            }
            power::DOMAIN_ATTRIBUTES => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_POWER, id, count, false)?;
                // Synchronous state changes only; notifications with P2A.
                let bits = (1u32 << 29) | if self.p2a { 1 << 31 } else { 0 };
                let domains = self.platform.power().ok_or(Status::NotSupported)?;
                out.u32(bits)?;
                out.put(&short_name(domains.name(id)))
            }
            power::STATE_SET => {
                let [flags, id, state] = words::<3>(p)?;
                let id = self.resource(PROTOCOL_POWER, id, count, true)?;
                if flags & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                if flags & 1 != 0 {
                    // Asynchronous changes are not advertised (attribute bit 30).
                    return Err(Status::NotSupported);
                }
                let domains = self.platform.power().ok_or(Status::NotSupported)?;
                domains.set_state(id, state)
            }
            power::STATE_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_POWER, id, count, false)?;
                let domains = self.platform.power().ok_or(Status::NotSupported)?;
                out.u32(domains.state(id)?)
            }
            power::STATE_NOTIFY => {
                let [id, ctl] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_POWER, id, count, false)?;
                if ctl & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                if !self.notify_power.set(id, ctl & 1 != 0) {
                    return Err(Status::NotSupported);
                }
                Ok(())
            }
            _ => Err(Status::NotSupported),
        }
    }

    fn perf_domain(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.perf().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                let mw = self.platform.perf().is_some_and(|d| d.power_in_mw());
                out.u32(u32::from(count) | (u32::from(mw) << 16))?;
                // No statistics shared memory.
                out.u32(0)?;
                out.u32(0)?;
                out.u32(0)
            }
            perf::DOMAIN_ATTRIBUTES => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, false)?;
                let full = self
                    .platform
                    .access(self.agent, PROTOCOL_PERF, u32::from(id))
                    == Access::Full;
                let mut bits = if full { (1u32 << 31) | (1 << 30) } else { 0 };
                if self.p2a {
                    bits |= (1 << 29) | (1 << 28);
                }
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                let (khz, level) = d.sustained(id);
                out.u32(bits)?;
                out.u32(d.rate_limit_us(id) & 0xf_ffff)?;
                out.u32(khz)?;
                out.u32(level)?;
                out.put(&short_name(d.name(id)))
            }
            perf::DESCRIBE_LEVELS => {
                let [id, index] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, false)?;
                let fit = out
                    .room()
                    .saturating_sub(4)
                    .saturating_div(perf::LEVEL_BYTES);
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                let rest = d
                    .levels(id)
                    .get(index as usize..)
                    .ok_or(Status::OutOfRange)?;
                let n = rest.len().min(fit).min(0xfff);
                let remaining = rest.len().saturating_sub(n).min(0xffff);
                out.u32(n as u32 | ((remaining as u32) << 16))?;
                for l in rest.iter().take(n) {
                    out.u32(l.level)?;
                    out.u32(l.power)?;
                    out.u32(u32::from(l.latency_us))?;
                }
                Ok(())
            }
            perf::LIMITS_SET => {
                let [id, max, min] = words::<3>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, true)?;
                if max < min {
                    return Err(Status::InvalidParameters);
                }
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                d.set_limits(id, max, min)
            }
            perf::LIMITS_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, false)?;
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                let (max, min) = d.limits(id)?;
                out.u32(max)?;
                out.u32(min)
            }
            perf::LEVEL_SET => {
                let [id, level] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, true)?;
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                d.set_level(id, level)
            }
            perf::LEVEL_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, false)?;
                let d = self.platform.perf().ok_or(Status::NotSupported)?;
                out.u32(d.level(id)?)
            }
            perf::NOTIFY_LIMITS | perf::NOTIFY_LEVEL => {
                let [id, ctl] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_PERF, id, count, false)?;
                if ctl & !1 != 0 {
                    return Err(Status::InvalidParameters);
                }
                let bits = if hdr.message == perf::NOTIFY_LIMITS {
                    &mut self.notify_perf_limits
                } else {
                    &mut self.notify_perf_level
                };
                if !bits.set(id, ctl & 1 != 0) {
                    return Err(Status::NotSupported);
                }
                Ok(())
            }
            _ => Err(Status::NotSupported),
        }
    }

    fn voltage_domain(&mut self, hdr: Header, p: &[u8], out: &mut Out) -> Result<(), Status> {
        let count = self.platform.voltage().ok_or(Status::NotSupported)?.count();
        match hdr.message {
            common::PROTOCOL_ATTRIBUTES => {
                words::<0>(p)?;
                out.u32(u32::from(count))
            }
            voltage::DOMAIN_ATTRIBUTES => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, false)?;
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                out.u32(0)?;
                out.put(&short_name(d.name(id)))
            }
            voltage::DESCRIBE_LEVELS => {
                let [id, index] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, false)?;
                let fit = out.room().saturating_sub(4).saturating_div(4);
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                match d.levels(id) {
                    Levels::Discrete(list) => {
                        let rest = list.get(index as usize..).ok_or(Status::OutOfRange)?;
                        let n = rest.len().min(fit).min(0xfff);
                        let remaining = rest.len().saturating_sub(n).min(0xffff);
                        out.u32(n as u32 | ((remaining as u32) << 16))?;
                        for l in rest.iter().take(n) {
                            out.u32(*l as u32)?;
                        }
                        Ok(())
                    }
                    Levels::Range { min, max, step } => {
                        out.u32(3 | (1 << 12))?;
                        out.u32(min as u32)?;
                        out.u32(max as u32)?;
                        out.u32(step as u32)
                    }
                }
            }
            voltage::CONFIG_SET => {
                let [id, config] = words::<2>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, true)?;
                // Bits 3:0: 0 off, 7 on, 8-15 implementation defined;
                // the rest is reserved.
                if !matches!(config, voltage::CONFIG_OFF | voltage::CONFIG_ON | 8..=15) {
                    return Err(Status::InvalidParameters);
                }
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                d.set_config(id, config)
            }
            voltage::CONFIG_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, false)?;
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                out.u32(d.config(id)?)
            }
            voltage::LEVEL_SET => {
                let [id, flags, level] = words::<3>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, true)?;
                // Version 1.0 has no flags (asynchronous sets are 2.0's).
                if flags != 0 {
                    return Err(Status::InvalidParameters);
                }
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                d.set_level(id, level as i32)
            }
            voltage::LEVEL_GET => {
                let [id] = words::<1>(p)?;
                let id = self.resource(PROTOCOL_VOLTAGE, id, count, false)?;
                let d = self.platform.voltage().ok_or(Status::NotSupported)?;
                out.u32(d.level(id)? as u32)
            }
            _ => Err(Status::NotSupported),
        }
    }

    /// Runs the queued jobs, each into its delayed response.
    fn run_jobs(&mut self) {
        while let Some(job) = self.jobs.pop_front() {
            let msg = match job {
                Job::SensorRead { hdr, id } => {
                    let r = self
                        .platform
                        .sensors()
                        .map_or(Err(Status::NotSupported), |s| s.read(id));
                    let mut m = Msg::delayed(hdr);
                    match r {
                        Ok(v) => {
                            m.u32(0);
                            m.u32(u32::from(id));
                            m.u64(v as u64);
                        }
                        Err(s) => m.status(s),
                    }
                    Some(m)
                }
                Job::ClockRate {
                    hdr,
                    id,
                    rate,
                    round,
                    respond,
                } => {
                    let r = self
                        .platform
                        .clocks()
                        .map_or(Err(Status::NotSupported), |c| c.set_rate(id, rate, round));
                    respond.then(|| {
                        let mut m = Msg::delayed(hdr);
                        match r {
                            Ok(now) => {
                                m.u32(0);
                                m.u32(u32::from(id));
                                m.u64(now);
                            }
                            Err(s) => m.status(s),
                        }
                        m
                    })
                }
                Job::Reset { hdr, id, op } => {
                    let r = self
                        .platform
                        .resets()
                        .map_or(Err(Status::NotSupported), |d| d.reset(id, op));
                    let mut m = Msg::delayed(hdr);
                    match r {
                        Ok(()) => {
                            m.u32(0);
                            m.u32(u32::from(id));
                        }
                        Err(s) => m.status(s),
                    }
                    Some(m)
                }
            };
            if let Some(m) = msg {
                // The job's slot is the message's: there is room.
                let _ = self.outbound.push_back(m.finish(true));
            }
        }
    }

    /// Queues a notification, dropping it when the pending queue is full
    /// or P2A is off.
    fn notify(&mut self, m: Msg) {
        if !self.p2a || !self.can_queue() || self.outbound.push_back(m.finish(false)).is_err() {
            self.stats.dropped = self.stats.dropped.saturating_add(1);
        }
    }

    /// Turns the platform's events into the notifications asked for.
    fn collect_events(&mut self) {
        while let Some(ev) = self.platform.next_event() {
            let agent = self.agent;
            let (enabled, msg) = match ev {
                Event::SensorTrip {
                    sensor: id,
                    point,
                    ascending,
                } => {
                    let mut m = Msg::notification(PROTOCOL_SENSOR, sensor::TRIP_POINT_EVENT);
                    m.u32(agent);
                    m.u32(u32::from(id));
                    m.u32(u32::from(point) | (u32::from(ascending) << 16));
                    (self.notify_sensors.get(id), m)
                }
                Event::ResetIssued { domain, state } => {
                    let mut m = Msg::notification(PROTOCOL_RESET, reset::ISSUED);
                    m.u32(agent);
                    m.u32(u32::from(domain));
                    m.u32(state);
                    (self.notify_resets.get(domain), m)
                }
                Event::PerfLimitsChanged { domain, max, min } => {
                    let mut m = Msg::notification(PROTOCOL_PERF, perf::LIMITS_CHANGED);
                    m.u32(agent);
                    m.u32(u32::from(domain));
                    m.u32(max);
                    m.u32(min);
                    (self.notify_perf_limits.get(domain), m)
                }
                Event::PerfLevelChanged { domain, level } => {
                    let mut m = Msg::notification(PROTOCOL_PERF, perf::LEVEL_CHANGED);
                    m.u32(agent);
                    m.u32(u32::from(domain));
                    m.u32(level);
                    (self.notify_perf_level.get(domain), m)
                }
                Event::PowerChanged { domain, state } => {
                    let mut m = Msg::notification(PROTOCOL_POWER, power::STATE_CHANGED);
                    m.u32(agent);
                    m.u32(u32::from(domain));
                    m.u32(state);
                    (self.notify_power.get(domain), m)
                }
            };
            if enabled {
                self.notify(msg);
            } else {
                self.stats.dropped = self.stats.dropped.saturating_add(1);
            }
        }
    }

    /// Takes eventq buffers while there is room to hold them.
    fn take_buffers<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        if !self.p2a {
            return;
        }
        let mut chain = Chain::<EVENT_SEGMENTS>::new();
        while !self.held.is_full() && queues.pop(EVENTQ, &mut chain) {
            if chain.writable_len() == 0 {
                queues.push_used(EVENTQ, chain.head(), 0);
            } else if let Err(c) = self.held.push_back(chain.clone()) {
                queues.push_used(EVENTQ, c.head(), 0);
            }
        }
    }

    /// Completes held buffers with pending messages, oldest first.
    fn deliver<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        let mem = queues.memory();
        while !self.outbound.is_empty() {
            let Some(buf) = self.held.pop_front() else {
                break;
            };
            let Some(msg) = self.outbound.front().copied() else {
                break;
            };
            let len = u32::from(msg.len);
            if buf.writable_len() < len {
                if msg.delayed {
                    // It must go out: return this buffer empty and wait
                    // for one large enough.
                    queues.push_used(EVENTQ, buf.head(), 0);
                } else {
                    // virtio 1.4 §"eventq Operation": MAY omit it.
                    let _ = self.outbound.pop_front();
                    self.stats.dropped = self.stats.dropped.saturating_add(1);
                    let _ = self.held.push_front(buf);
                }
                continue;
            }
            let _ = self.outbound.pop_front();
            let mut w = buf.writer(mem);
            let bytes = msg.bytes.get(..usize::from(msg.len)).unwrap_or_default();
            let written = if w.write_all(bytes).is_ok() { len } else { 0 };
            queues.push_used(EVENTQ, buf.head(), written);
            if msg.delayed {
                self.stats.delayed = self.stats.delayed.saturating_add(1);
            } else {
                self.stats.notifications = self.stats.notifications.saturating_add(1);
            }
        }
    }

    /// Everything after the queues were served: jobs, events, delivery.
    ///
    /// Jobs run only from `poll` (`run_jobs`): a job queued by a command
    /// in `queue_notify` asks for a later call
    /// ([`DeviceQueues::poll_again`]; the core returns `WorkLeft` once a
    /// round takes nothing), so the command's response is published and
    /// signalled before its delayed response.
    fn turn<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        run_jobs: bool,
    ) {
        if run_jobs {
            self.run_jobs();
        } else if !self.jobs.is_empty() {
            queues.poll_again(CMDQ);
        }
        self.collect_events();
        self.take_buffers(queues);
        self.deliver(queues);
        // Delivery freed slots: take the buffers the driver has waiting.
        self.take_buffers(queues);
    }
}

/// A P2A message being built.
struct Msg {
    bytes: [u8; P2A_MAX],
    len: usize,
}

impl Msg {
    fn new(hdr: Header) -> Self {
        let mut m = Self {
            bytes: [0; P2A_MAX],
            len: 0,
        };
        m.u32(hdr.word());
        m
    }
    fn delayed(cmd: Header) -> Self {
        Self::new(Header {
            kind: TYPE_DELAYED_RESPONSE,
            ..cmd
        })
    }
    fn notification(protocol: u8, message: u8) -> Self {
        Self::new(Header {
            message,
            kind: TYPE_NOTIFICATION,
            protocol,
            token: 0,
        })
    }
    /// The status alone (virtio 1.4: a failed delayed response carries
    /// only its status).
    fn status(&mut self, s: Status) {
        self.u32(s.code() as u32);
    }
    fn u32(&mut self, v: u32) {
        let end = self.len.saturating_add(4);
        if let Some(d) = self.bytes.get_mut(self.len..end) {
            d.copy_from_slice(&v.to_le_bytes());
            self.len = end;
        }
    }
    fn u64(&mut self, v: u64) {
        self.u32(v as u32);
        self.u32((v >> 32) as u32);
    }
    fn finish(self, delayed: bool) -> P2a {
        P2a {
            bytes: self.bytes,
            len: self.len as u8,
            delayed,
        }
    }
}

impl<P: Platform, const E: usize, const A: usize> VirtioDevice for Scmi<P, E, A> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Scmi
    }

    /// `VIRTIO_SCMI_F_P2A_CHANNELS`: the device always implements delayed
    /// responses (asynchronous commands are the device's, whatever the
    /// platform) and the base protocol's error notification.
    /// `VIRTIO_SCMI_F_SHARED_MEMORY` is not offered: no statistics region.
    fn features(&self) -> Features {
        Features::from_bits_retain(F_P2A_CHANNELS)
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn activate(&mut self, features: Features) {
        self.p2a = features.bits() & F_P2A_CHANNELS != 0;
    }

    fn reset(&mut self) {
        self.p2a = false;
        self.held.clear();
        self.outbound.clear();
        self.jobs.clear();
        self.notify_errors = false;
        self.notify_sensors = Bits::new();
        self.notify_resets = Bits::new();
        self.notify_power = Bits::new();
        self.notify_perf_limits = Bits::new();
        self.notify_perf_level = Bits::new();
    }

    fn queue_reset(&mut self, queue: u16) {
        if queue == EVENTQ {
            self.held.clear();
        }
    }

    /// A malformed command gets `PROTOCOL_ERROR` where its response
    /// starts; a malformed event buffer comes back empty.
    fn malformed_chain(&self, queue: u16) -> MalformedChain {
        if queue == CMDQ {
            MalformedChain::StatusAtStart(MALFORMED)
        } else {
            MalformedChain::ReturnEmpty
        }
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        if queue == CMDQ {
            let mem = queues.memory();
            let mut chain = Chain::<CMD_SEGMENTS>::new();
            while queues.pop(CMDQ, &mut chain) {
                let written = self.serve_command(&chain, mem);
                queues.push_used(CMDQ, chain.head(), written);
            }
        }
        self.turn(queues, false);
    }

    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.turn(queues, true);
    }
}

#[cfg(test)]
mod tests;
