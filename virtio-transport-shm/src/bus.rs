//! [`DeviceEnd`]: the device side of the bus. Messages in from ring A,
//! answers and events out on ring B.
//!
//! One message's path, top to bottom: [`Consumer::pop`] copies the slot →
//! [`Message::parse`] (header, token, size, payload length) → bus message
//! answered here, or transport message routed by `dev_num` to
//! [`DeviceSet::handle`] → [`ShmDevice`](crate::ShmDevice) calls
//! [`DeviceCore`](virtio_core::device::DeviceCore) → the answer is pushed
//! on ring B → pending events are flushed → the driver's doorbell rings once.

use core::fmt;

use virtio_core::device::Service;
use virtio_core::memory::GuestMemory;

use crate::device::{DeviceSet, Event, Refusal};
use crate::doorbell::Doorbell;
use crate::error::AttachError;
use crate::layout::{self, Layout};
use crate::msg::{
    Builder, BusId, DeviceInfo, EventConfig, GetDevices, GetDevicesAnswer, HEADER_LEN, Message,
    MsgError, Request, TYPE_BUS, TYPE_RESPONSE, TransportId, Word,
};
use crate::ring::{Consumer, Direction, Producer, RingError, Slot};

/// Bytes before the bitmap of a `GET_DEVICES` answer.
const GET_DEVICES_HEAD: usize = HEADER_LEN + size_of::<GetDevicesAnswer>();

/// Why a message was discarded (no answer was sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Discard {
    /// The message is malformed or of an unsupported kind.
    Malformed(MsgError),
    /// A transport message other than `GET_DEVICE_INFO` for a device
    /// number not on the bus.
    NoSuchDevice {
        /// The device number.
        dev_num: u16,
        /// The message id.
        msg_id: u8,
    },
    /// The device refused a well-formed message.
    Refused {
        /// The device number.
        dev_num: u16,
        /// The message id.
        msg_id: u8,
        /// Why.
        why: Refusal,
    },
    /// A malformed bus message payload (`GET_DEVICES` offset or count not a
    /// multiple of 8).
    BadBusRequest(u8),
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::NoSuchDevice { dev_num, msg_id } => {
                write!(f, "message {msg_id:#04x} for absent device {dev_num}")
            }
            Self::Refused {
                dev_num,
                msg_id,
                why,
            } => {
                write!(f, "device {dev_num} refused message {msg_id:#04x}: {why}")
            }
            Self::BadBusRequest(id) => write!(f, "bad bus message {id:#04x}"),
        }
    }
}

impl core::error::Error for Discard {}

/// What the device end did: the counters a user looks at to see discarded
/// messages (the draft drops them silently on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Messages taken from ring A.
    pub received: u32,
    /// Answers sent.
    pub responses: u32,
    /// `EVENT_USED` sent.
    pub events_used: u32,
    /// `EVENT_CONFIG` sent.
    pub events_config: u32,
    /// Malformed or unsupported messages discarded ([`Discard::Malformed`],
    /// [`Discard::BadBusRequest`]).
    pub malformed: u32,
    /// Messages for absent devices discarded.
    pub no_such_device: u32,
    /// Well-formed messages a device refused.
    pub refused: u32,
    /// Times a ring index from the driver was impossible (ring A dropped).
    pub ring_errors: u32,
    /// The last discard.
    pub last_discard: Option<Discard>,
}

impl Stats {
    /// Every message discarded, whatever the reason.
    pub fn discarded(&self) -> u32 {
        self.malformed
            .saturating_add(self.no_such_device)
            .saturating_add(self.refused)
    }
}

/// The device end of a window: a set of devices behind one pair of message
/// rings and the driver's doorbell.
///
/// Call [`Self::process`] when the device's doorbell rings (in its
/// interrupt handler, or in a polling loop), and [`Self::poll`] when a
/// backend has input. Nothing the driver writes into the window can make
/// it panic or touch memory outside the window; queues only ever see the
/// data area.
#[derive(Debug)]
pub struct DeviceEnd<'w, W, S, B> {
    window: &'w W,
    layout: Layout,
    rx: Consumer,
    tx: Producer,
    devices: S,
    doorbell: B,
    stats: Stats,
    /// Device whose events are flushed first next time (round robin).
    next_event_dev: u16,
}

impl<'w, W: GuestMemory, S: DeviceSet, B: Doorbell> DeviceEnd<'w, W, S, B> {
    /// Attaches to a window the driver side created ([`layout::init`]),
    /// checking its header against `layout`.
    ///
    /// # Errors
    /// [`AttachError`] if the window does not hold `layout`.
    pub fn attach(
        window: &'w W,
        layout: Layout,
        devices: S,
        doorbell: B,
    ) -> Result<Self, AttachError> {
        layout::check(window, &layout)?;
        Ok(Self::new_unchecked(window, layout, devices, doorbell))
    }

    /// Creates the window ([`layout::init`]) and attaches to it, for a
    /// device end that owns the memory.
    ///
    /// # Errors
    /// [`AttachError`] if the window is too small.
    pub fn create(
        window: &'w W,
        layout: Layout,
        devices: S,
        doorbell: B,
    ) -> Result<Self, AttachError> {
        layout::init(window, &layout)?;
        Ok(Self::new_unchecked(window, layout, devices, doorbell))
    }

    fn new_unchecked(window: &'w W, layout: Layout, devices: S, doorbell: B) -> Self {
        Self {
            window,
            rx: Consumer::new(&layout, Direction::ToDevice),
            tx: Producer::new(&layout, Direction::ToDriver),
            layout,
            devices,
            doorbell,
            stats: Stats::default(),
            next_event_dev: 0,
        }
    }

    /// The devices.
    pub fn devices(&self) -> &S {
        &self.devices
    }

    /// The devices, e.g. to feed a backend; call [`Self::poll`] after.
    pub fn devices_mut(&mut self) -> &mut S {
        &mut self.devices
    }

    /// What happened so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The doorbell to the driver.
    pub fn doorbell(&self) -> &B {
        &self.doorbell
    }

    /// Serves what the driver sent: first the queue work an earlier call
    /// left, then up to two rings' worth of messages (so a driver that
    /// never stops sending cannot keep the device here), each answered in
    /// order; then flushes pending events and rings the driver's doorbell if
    /// anything was sent. Stops early when ring B is full (the driver rings
    /// again when it frees slots of a full ring). Each `EVENT_AVAIL` serves
    /// its queue within the device core's budget
    /// ([`virtio_core::device::DeviceCore::set_budget`]), so one call does
    /// bounded work whatever the driver does.
    ///
    /// Returns [`Service::WorkLeft`] when it stopped with messages possibly
    /// left or a device with queue work left (the driver will not ring for
    /// it): call again, e.g. by re-pending the doorbell interrupt. Never
    /// while only blocked on a full ring B, so `while end.process().work_left() {}`
    /// cannot spin on a stalled driver.
    pub fn process(&mut self) -> Service {
        if self.devices.work_left() {
            self.devices.poll();
        }
        let mut sent = false;
        let mut more = false;
        let budget = u32::from(self.layout.slots()).saturating_mul(2);
        let mut slot = Slot::default();
        for i in 0..=budget {
            if i == budget {
                more = true;
                break;
            }
            // Keep a slot for the answer: a request is only taken when it
            // can be answered at once.
            match self.tx.free(self.window) {
                // Blocked on the driver: it rings when it frees a slot of
                // the full ring, so there is nothing to call again for.
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    self.stats.ring_errors = self.stats.ring_errors.saturating_add(1);
                    break;
                }
            }
            match self.rx.pop(self.window, &mut slot) {
                Ok(None) => break,
                Ok(Some(popped)) => {
                    self.stats.received = self.stats.received.saturating_add(1);
                    sent |= self.message(slot.bytes());
                    if popped.was_full {
                        // The driver may be waiting for room in ring A.
                        sent = true;
                    }
                }
                Err(RingError::Corrupt { .. }) => {
                    self.stats.ring_errors = self.stats.ring_errors.saturating_add(1);
                }
                Err(_) => {
                    self.stats.ring_errors = self.stats.ring_errors.saturating_add(1);
                    break;
                }
            }
        }
        sent |= self.flush_events();
        if sent {
            self.doorbell.ring();
        }
        if more || self.devices.work_left() {
            Service::WorkLeft
        } else {
            Service::Done
        }
    }

    /// Gives every device a turn (backend input, timers) and continues
    /// queue work left by an earlier call, then sends the events that
    /// produced. Call again while it returns [`Service::WorkLeft`].
    pub fn poll(&mut self) -> Service {
        self.devices.poll();
        if self.flush_events() {
            self.doorbell.ring();
        }
        if self.devices.work_left() {
            Service::WorkLeft
        } else {
            Service::Done
        }
    }

    fn discard(&mut self, why: Discard) {
        let s = &mut self.stats;
        let counter = match why {
            Discard::Malformed(_) | Discard::BadBusRequest(_) => &mut s.malformed,
            Discard::NoSuchDevice { .. } => &mut s.no_such_device,
            Discard::Refused { .. } => &mut s.refused,
        };
        *counter = counter.saturating_add(1);
        s.last_discard = Some(why);
    }

    /// Handles one message; true if an answer was sent.
    ///
    /// Out of line: inlined into `process` (and so into a firmware's
    /// doorbell interrupt handler) the message handling cost the minimal
    /// image 384 B more flash; one call per message costs nothing
    /// measurable on the host.
    #[inline(never)]
    fn message(&mut self, bytes: &[u8]) -> bool {
        let max = usize::from(self.layout.slot_size());
        let msg = match Message::parse(bytes, max) {
            Ok(m) => m,
            Err(e) => {
                // virtio-msg "Error Handling (Device)": a malformed or
                // unsupported message MUST be discarded without further
                // protocol traffic.
                self.discard(Discard::Malformed(e));
                return false;
            }
        };
        let type_ = TYPE_RESPONSE | if msg.bus { TYPE_BUS } else { 0 };
        let mut out = Builder::new(type_, msg.msg_id, msg.dev_num, msg.token);
        let answered = if msg.bus {
            match self.bus_message(&msg.request, &mut out, max) {
                Ok(()) => true,
                Err(d) => {
                    self.discard(d);
                    false
                }
            }
        } else {
            match self
                .devices
                .handle(msg.dev_num, &msg.request, &mut out, max)
            {
                Some(Ok(answer)) => answer,
                Some(Err(why)) => {
                    self.discard(Discard::Refused {
                        dev_num: msg.dev_num,
                        msg_id: msg.msg_id,
                        why,
                    });
                    false
                }
                None if msg.request == Request::GetDeviceInfo => {
                    // GET_DEVICE_INFO is the only message answered for an
                    // inactive device, with every field 0.
                    out.put(&DeviceInfo::default());
                    true
                }
                None => {
                    self.discard(Discard::NoSuchDevice {
                        dev_num: msg.dev_num,
                        msg_id: msg.msg_id,
                    });
                    false
                }
            }
        };
        if !answered {
            return false;
        }
        // The slot was checked free before the request was taken.
        if self.tx.push(self.window, out.bytes()).is_ok() {
            self.stats.responses = self.stats.responses.saturating_add(1);
        } else {
            self.stats.ring_errors = self.stats.ring_errors.saturating_add(1);
        }
        true
    }

    fn bus_message(
        &mut self,
        req: &Request<'_>,
        out: &mut Builder,
        max: usize,
    ) -> Result<(), Discard> {
        match *req {
            Request::Ping(data) => {
                // PING: the 32-bit data MUST be echoed precisely.
                out.put(&Word { value: data.into() });
                Ok(())
            }
            Request::GetDevices(g) => self.get_devices(g, out, max),
            _ => Err(Discard::BadBusRequest(u8::from(BusId::Unknown(0)))),
        }
    }

    fn get_devices(&self, g: GetDevices, out: &mut Builder, max: usize) -> Result<(), Discard> {
        let (offset, count) = (g.offset.get(), g.count.get());
        // GET_DEVICES: offset and count MUST be multiples of 8.
        if !offset.is_multiple_of(8) || !count.is_multiple_of(8) {
            return Err(Discard::BadBusRequest(u8::from(BusId::GetDevices)));
        }
        // A smaller window when the bitmap would not fit a message.
        let room = max.saturating_sub(GET_DEVICES_HEAD);
        let room_bits = u16::try_from(room.saturating_mul(8)).unwrap_or(u16::MAX) & !7;
        let count = count
            .min(room_bits)
            .min(u16::MAX.saturating_sub(offset) & !7);
        let end = offset.saturating_add(count);
        let n = self.devices.count();
        let next_offset = if end < n { end } else { 0 };
        out.put(&GetDevicesAnswer {
            offset: offset.into(),
            count: count.into(),
            next_offset: next_offset.into(),
        });
        let bitmap = out.reserve(usize::from(count / 8));
        for dev in offset..end.min(n) {
            let bit = dev.saturating_sub(offset);
            if let Some(byte) = bitmap.get_mut(usize::from(bit / 8)) {
                *byte |= 1 << (bit % 8);
            }
        }
        Ok(())
    }

    /// Sends pending events while ring B has room; true if any was sent.
    fn flush_events(&mut self) -> bool {
        let n = self.devices.count();
        let mut sent = false;
        for i in 0..n {
            let dev = self
                .next_event_dev
                .wrapping_add(i)
                .checked_rem(n)
                .unwrap_or(0);
            loop {
                match self.tx.free(self.window) {
                    Ok(free) if free > 0 => {}
                    _ => {
                        self.next_event_dev = dev;
                        return sent;
                    }
                }
                let Some(event) = self.devices.next_event(dev) else {
                    break;
                };
                let mut out;
                match event {
                    Event::Used(q) => {
                        out = Builder::new(0, u8::from(TransportId::EventUsed), dev, 0);
                        out.put(&Word {
                            value: u32::from(q).into(),
                        });
                        self.stats.events_used = self.stats.events_used.saturating_add(1);
                    }
                    Event::Config { status, generation } => {
                        out = Builder::new(0, u8::from(TransportId::EventConfig), dev, 0);
                        out.put(&EventConfig {
                            status: status.into(),
                            generation: generation.into(),
                            offset: 0.into(),
                            length: 0.into(),
                        });
                        self.stats.events_config = self.stats.events_config.saturating_add(1);
                    }
                }
                if self.tx.push(self.window, out.bytes()).is_err() {
                    self.stats.ring_errors = self.stats.ring_errors.saturating_add(1);
                }
                sent = true;
            }
        }
        self.next_event_dev = self
            .next_event_dev
            .wrapping_add(1)
            .checked_rem(n)
            .unwrap_or(0);
        sent
    }
}
