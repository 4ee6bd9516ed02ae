//! [`DriverEnd`] (feature `driver`): the driver side of the bus, for the
//! loopback demo, tests, and Rust guests on the other core.
//!
//! It sends one request at a time and waits for its answer (matched by
//! `dev_num`, token and id), recording the events that arrive meanwhile. The
//! rings themselves are driven with `virtio-core`'s
//! [`SplitDriver`](virtio_core::driver::SplitDriver) /
//! [`PackedDriver`](virtio_core::driver::PackedDriver) over the window's
//! [`DataArea`]; this end carries the control plane and the notifications.
//!
//! Here the device is the untrusted party: a short or stray answer is an
//! error or ignored, never a panic, and every wait is bounded.

use core::fmt;

use virtio_core::device::FeaturesError;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::QueueConfig;
use virtio_core::spec::{DeviceStatus, Features};
use zerocopy::{FromBytes, IntoBytes};

use crate::doorbell::Doorbell;
use crate::error::AttachError;
use crate::layout::{self, DataArea, Layout};
use crate::msg::{
    Builder, BusId, ConfigData, ConfigRange, DeviceInfo, EventAvail, EventConfig, FeatureBlocks,
    GetDevices, GetDevicesAnswer, HEADER_LEN, Header, ShmInfo, TYPE_BUS, TYPE_RESPONSE,
    TransportId, Vqueue, Word,
};
use crate::ring::{Consumer, Direction, Producer, RingError, Slot};

/// What the driver end does while it waits for the device: spin, yield
/// the thread, park, `wfi`, or run the device end (single-threaded tests).
pub trait Idle {
    /// Waits a little (or lets the device run).
    fn idle(&mut self);
}

impl<F: FnMut()> Idle for F {
    fn idle(&mut self) {
        self();
    }
}

/// Busy-waits ([`core::hint::spin_loop`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl Idle for Spin {
    fn idle(&mut self) {
        core::hint::spin_loop();
    }
}

/// Why a driver-end operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DriverEndError {
    /// A message ring failed.
    Ring(RingError),
    /// No answer within the wait budget (the device may have discarded the
    /// request, as the draft lets it).
    Timeout {
        /// The request's message id.
        msg_id: u8,
    },
    /// The answer is shorter than its message needs.
    ShortAnswer {
        /// The message id.
        msg_id: u8,
    },
    /// The request would not fit a message slot.
    TooLarge,
    /// The device refused `FEATURES_OK` (the status came back without it).
    FeaturesRefused,
    /// The device does not offer `VERSION_1`.
    NotModern,
    /// `DRIVER_OK` did not stick (the device needs a reset).
    DriverOkRefused(u32),
}

impl fmt::Display for DriverEndError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ring(e) => e.fmt(f),
            Self::Timeout { msg_id } => write!(f, "no answer to message {msg_id:#04x}"),
            Self::ShortAnswer { msg_id } => write!(f, "short answer to message {msg_id:#04x}"),
            Self::TooLarge => f.write_str("request larger than a message slot"),
            Self::FeaturesRefused => f.write_str("device refused FEATURES_OK"),
            Self::NotModern => f.write_str("device does not offer VERSION_1"),
            Self::DriverOkRefused(s) => write!(f, "DRIVER_OK refused, status {s:#x}"),
        }
    }
}

impl core::error::Error for DriverEndError {}

impl From<RingError> for DriverEndError {
    fn from(e: RingError) -> Self {
        Self::Ring(e)
    }
}

impl From<FeaturesError> for DriverEndError {
    fn from(_: FeaturesError) -> Self {
        Self::FeaturesRefused
    }
}

/// A `GET_VQUEUE` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VqueueInfo {
    /// Largest size (0 = no such queue).
    pub max_size: u32,
    /// Where the queue is, if set up (size 0 if not).
    pub config: QueueConfig,
}

/// An answer's payload.
#[derive(Clone, Debug)]
pub struct Answer {
    slot: Slot,
    len: usize,
}

impl Answer {
    /// The payload bytes (after the header).
    pub fn payload(&self) -> &[u8] {
        self.slot
            .bytes()
            .get(HEADER_LEN..self.len)
            .unwrap_or_default()
    }

    fn read<T: FromBytes>(&self, msg_id: u8) -> Result<(T, &[u8]), DriverEndError> {
        T::read_from_prefix(self.payload()).map_err(|_| DriverEndError::ShortAnswer { msg_id })
    }
}

/// The driver end of a window, for up to `DEVS` devices (events for higher
/// device numbers are counted as stray).
#[derive(Debug)]
pub struct DriverEnd<'w, W, B, I, const DEVS: usize = 8> {
    window: &'w W,
    layout: Layout,
    tx: Producer,
    rx: Consumer,
    doorbell: B,
    idle: I,
    token: u16,
    max_waits: u32,
    /// Queues with an `EVENT_USED` not yet taken, per device.
    used: [u64; DEVS],
    /// The last `EVENT_CONFIG` not yet taken, per device.
    config: [Option<(u32, u32)>; DEVS],
    stray: u32,
}

impl<'w, W: GuestMemory, B: Doorbell, I: Idle, const DEVS: usize> DriverEnd<'w, W, B, I, DEVS> {
    /// Initialises the window ([`layout::init`]) and attaches to it.
    ///
    /// # Errors
    /// [`AttachError`] if the window is too small.
    pub fn create(
        window: &'w W,
        layout: Layout,
        doorbell: B,
        idle: I,
    ) -> Result<Self, AttachError> {
        layout::init(window, &layout)?;
        Ok(Self::new_unchecked(window, layout, doorbell, idle))
    }

    /// Attaches to a window the device side created, checking its header.
    ///
    /// # Errors
    /// [`AttachError`] if the window does not hold `layout`.
    pub fn attach(
        window: &'w W,
        layout: Layout,
        doorbell: B,
        idle: I,
    ) -> Result<Self, AttachError> {
        layout::check(window, &layout)?;
        Ok(Self::new_unchecked(window, layout, doorbell, idle))
    }

    fn new_unchecked(window: &'w W, layout: Layout, doorbell: B, idle: I) -> Self {
        Self {
            window,
            tx: Producer::new(&layout, Direction::ToDevice),
            rx: Consumer::new(&layout, Direction::ToDriver),
            layout,
            doorbell,
            idle,
            token: 0,
            max_waits: 1_000_000,
            used: [0; DEVS],
            config: [None; DEVS],
            stray: 0,
        }
    }

    /// Sets how many [`Idle::idle`] calls a wait may take before
    /// [`DriverEndError::Timeout`] (default 1 000 000).
    #[must_use]
    pub fn with_max_waits(mut self, n: u32) -> Self {
        self.max_waits = n;
        self
    }

    /// The data area, as memory for the driver-side rings and buffers.
    pub fn data(&self) -> DataArea<'w, W> {
        DataArea::new(self.window, &self.layout)
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Messages that matched no request and were no known event.
    pub fn stray_messages(&self) -> u32 {
        self.stray
    }

    fn next_token(&mut self) -> u16 {
        self.token = self.token.wrapping_add(1);
        if self.token == 0 {
            self.token = 1;
        }
        self.token
    }

    fn send(&mut self, msg: &mut Builder, msg_id: u8) -> Result<(), DriverEndError> {
        if msg.len() > usize::from(self.layout.slot_size()) {
            return Err(DriverEndError::TooLarge);
        }
        for _ in 0..self.max_waits {
            match self.tx.push(self.window, msg.bytes()) {
                Ok(()) => {
                    self.doorbell.ring();
                    return Ok(());
                }
                Err(RingError::Full) => {
                    self.drain(None)?;
                    self.idle.idle();
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DriverEndError::Timeout { msg_id })
    }

    /// Takes what ring B holds: events are recorded; an answer matching
    /// `want` (`type`, id, dev_num, token) is returned.
    fn drain(
        &mut self,
        want: Option<(u8, u8, u16, u16)>,
    ) -> Result<Option<Answer>, DriverEndError> {
        let mut slot = Slot::default();
        loop {
            let Some(popped) = self.rx.pop(self.window, &mut slot)? else {
                return Ok(None);
            };
            if popped.was_full {
                self.doorbell.ring();
            }
            let Ok((h, _)) = Header::read_from_prefix(slot.bytes()) else {
                self.stray = self.stray.saturating_add(1);
                continue;
            };
            let len = usize::from(h.msg_size.get());
            if len < HEADER_LEN || len > slot.bytes().len() {
                self.stray = self.stray.saturating_add(1);
                continue;
            }
            let key = (h.type_ & 3, h.msg_id, h.dev_num.get(), h.token.get());
            if want == Some(key) {
                return Ok(Some(Answer { slot, len }));
            }
            let answer = Answer {
                slot: slot.clone(),
                len,
            };
            self.event(&h, &answer);
        }
    }

    fn event(&mut self, h: &Header, a: &Answer) {
        let dev = usize::from(h.dev_num.get());
        let known = h.type_ & 3 == 0 && h.token.get() == 0;
        match TransportId::from(h.msg_id) {
            TransportId::EventUsed if known => {
                if let (Ok((w, _)), Some(bits)) = (a.read::<Word>(h.msg_id), self.used.get_mut(dev))
                    && let Some(bit) = 1u64.checked_shl(w.value.get())
                {
                    *bits |= bit;
                    return;
                }
            }
            TransportId::EventConfig if known => {
                if let (Ok((e, _)), Some(c)) =
                    (a.read::<EventConfig>(h.msg_id), self.config.get_mut(dev))
                {
                    *c = Some((e.status.get(), e.generation.get()));
                    return;
                }
            }
            _ => {}
        }
        self.stray = self.stray.saturating_add(1);
    }

    /// Sends a request and waits for its answer.
    ///
    /// # Errors
    /// [`DriverEndError`]: a ring error, a timeout, a request too large.
    pub fn call(
        &mut self,
        bus: bool,
        dev_num: u16,
        msg_id: u8,
        payload: &[&[u8]],
    ) -> Result<Answer, DriverEndError> {
        let token = self.next_token();
        let type_ = if bus { TYPE_BUS } else { 0 };
        let mut msg = Builder::new(type_, msg_id, dev_num, token);
        for part in payload {
            if msg.len().saturating_add(part.len()) > usize::from(self.layout.slot_size()) {
                return Err(DriverEndError::TooLarge);
            }
            msg.put_bytes(part);
        }
        self.send(&mut msg, msg_id)?;
        let want = (type_ | TYPE_RESPONSE, msg_id, dev_num, token);
        for _ in 0..self.max_waits {
            if let Some(a) = self.drain(Some(want))? {
                return Ok(a);
            }
            self.idle.idle();
        }
        Err(DriverEndError::Timeout { msg_id })
    }

    fn transport(
        &mut self,
        dev: u16,
        id: TransportId,
        payload: &[&[u8]],
    ) -> Result<Answer, DriverEndError> {
        self.call(false, dev, u8::from(id), payload)
    }

    /// Takes the events waiting in ring B (without waiting).
    ///
    /// # Errors
    /// A ring error.
    pub fn poll_events(&mut self) -> Result<(), DriverEndError> {
        self.drain(None).map(|_| ())
    }

    /// True (and cleared) if an `EVENT_USED` for `queue` of `dev` arrived.
    pub fn take_used(&mut self, dev: u16, queue: u16) -> bool {
        let Some(bits) = self.used.get_mut(usize::from(dev)) else {
            return false;
        };
        let bit = 1u64.checked_shl(u32::from(queue)).unwrap_or(0);
        let was = *bits & bit != 0;
        *bits &= !bit;
        was
    }

    /// Waits for an `EVENT_USED` for `queue` of `dev`.
    ///
    /// # Errors
    /// [`DriverEndError::Timeout`] or a ring error.
    pub fn wait_used(&mut self, dev: u16, queue: u16) -> Result<(), DriverEndError> {
        for _ in 0..self.max_waits {
            self.poll_events()?;
            if self.take_used(dev, queue) {
                return Ok(());
            }
            self.idle.idle();
        }
        Err(DriverEndError::Timeout {
            msg_id: u8::from(TransportId::EventUsed),
        })
    }

    /// The last `EVENT_CONFIG` of `dev` (status, generation), cleared.
    pub fn take_config_event(&mut self, dev: u16) -> Option<(u32, u32)> {
        self.config.get_mut(usize::from(dev)).and_then(Option::take)
    }

    // ---- bus messages ----------------------------------------------------

    /// `PING`: returns the echoed data.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn ping(&mut self, data: u32) -> Result<u32, DriverEndError> {
        let id = u8::from(BusId::Ping);
        let a = self.call(true, 0, id, &[Word { value: data.into() }.as_bytes()])?;
        Ok(a.read::<Word>(id)?.0.value.get())
    }

    /// `GET_DEVICES` over device numbers 0–63, following `next_offset`:
    /// bit `n` set when device `n` is present.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn devices(&mut self) -> Result<u64, DriverEndError> {
        let id = u8::from(BusId::GetDevices);
        let mut present = 0u64;
        let mut offset = 0u16;
        while offset < 64 {
            let req = GetDevices {
                offset: offset.into(),
                count: 64u16.saturating_sub(offset).into(),
            };
            let a = self.call(true, 0, id, &[req.as_bytes()])?;
            let (head, bitmap) = a.read::<GetDevicesAnswer>(id)?;
            let count = head.count.get().min(64u16.saturating_sub(offset));
            for bit in 0..count {
                let byte = bitmap.get(usize::from(bit / 8)).copied().unwrap_or(0);
                if byte & (1 << (bit % 8)) != 0 {
                    present |= 1u64
                        .checked_shl(u32::from(offset.saturating_add(bit)))
                        .unwrap_or(0);
                }
            }
            let next = head.next_offset.get();
            if next == 0 || next <= offset || count == 0 {
                break;
            }
            offset = next;
        }
        Ok(present)
    }

    // ---- transport messages ------------------------------------------------

    /// `GET_DEVICE_INFO`.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn device_info(&mut self, dev: u16) -> Result<DeviceInfo, DriverEndError> {
        let a = self.transport(dev, TransportId::GetDeviceInfo, &[])?;
        Ok(a.read::<DeviceInfo>(u8::from(TransportId::GetDeviceInfo))?
            .0)
    }

    /// `GET_DEVICE_FEATURES` of blocks 0 and 1 (bits 0–63).
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn device_features(&mut self, dev: u16) -> Result<Features, DriverEndError> {
        let id = TransportId::GetDeviceFeatures;
        let req = FeatureBlocks {
            block_index: 0.into(),
            num_blocks: 2.into(),
        };
        let a = self.transport(dev, id, &[req.as_bytes()])?;
        let (_, words) = a.read::<FeatureBlocks>(u8::from(id))?;
        let (w, _) =
            <[Word; 2]>::read_from_prefix(words).map_err(|_| DriverEndError::ShortAnswer {
                msg_id: u8::from(id),
            })?;
        let [lo, hi] = w;
        Ok(Features::from_bits_retain(
            u64::from(lo.value.get()) | (u64::from(hi.value.get()) << 32),
        ))
    }

    /// `SET_DRIVER_FEATURES` of blocks 0 and 1.
    ///
    /// # Errors
    /// As for [`Self::call`].
    pub fn set_driver_features(
        &mut self,
        dev: u16,
        features: Features,
    ) -> Result<(), DriverEndError> {
        let bits = features.bits();
        let req = FeatureBlocks {
            block_index: 0.into(),
            num_blocks: 2.into(),
        };
        let words = [
            Word {
                value: (bits as u32).into(),
            },
            Word {
                value: ((bits >> 32) as u32).into(),
            },
        ];
        self.transport(
            dev,
            TransportId::SetDriverFeatures,
            &[req.as_bytes(), words.as_bytes()],
        )?;
        Ok(())
    }

    /// `GET_DEVICE_STATUS`.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn status(&mut self, dev: u16) -> Result<u32, DriverEndError> {
        let id = TransportId::GetDeviceStatus;
        let a = self.transport(dev, id, &[])?;
        Ok(a.read::<Word>(u8::from(id))?.0.value.get())
    }

    /// `SET_DEVICE_STATUS`: returns the status the device reports back.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn set_status(&mut self, dev: u16, status: u32) -> Result<u32, DriverEndError> {
        let id = TransportId::SetDeviceStatus;
        let a = self.transport(
            dev,
            id,
            &[Word {
                value: status.into(),
            }
            .as_bytes()],
        )?;
        Ok(a.read::<Word>(u8::from(id))?.0.value.get())
    }

    /// `GET_CONFIG` of `buf.len()` bytes at `offset`, in as many messages as
    /// the slot size needs. Returns the generation of the last chunk.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn get_config(
        &mut self,
        dev: u16,
        offset: u32,
        buf: &mut [u8],
    ) -> Result<u32, DriverEndError> {
        let id = TransportId::GetConfig;
        let chunk = usize::from(self.layout.slot_size()).saturating_sub(HEADER_LEN + 12);
        let mut generation = 0;
        let mut at = offset;
        for part in buf.chunks_mut(chunk.max(1)) {
            let len = u32::try_from(part.len()).map_err(|_| DriverEndError::TooLarge)?;
            let req = ConfigRange {
                offset: at.into(),
                length: len.into(),
            };
            let a = self.transport(dev, id, &[req.as_bytes()])?;
            let (head, data) = a.read::<ConfigData>(u8::from(id))?;
            let data = data.get(..part.len()).ok_or(DriverEndError::ShortAnswer {
                msg_id: u8::from(id),
            })?;
            part.copy_from_slice(data);
            generation = head.generation.get();
            at = at.saturating_add(len);
        }
        Ok(generation)
    }

    /// `SET_CONFIG` (one message): `Some(new generation)` if accepted,
    /// `None` if the device rejected a stale generation.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn set_config(
        &mut self,
        dev: u16,
        generation: u32,
        offset: u32,
        data: &[u8],
    ) -> Result<Option<u32>, DriverEndError> {
        let id = TransportId::SetConfig;
        let len = u32::try_from(data.len()).map_err(|_| DriverEndError::TooLarge)?;
        let head = ConfigData {
            generation: generation.into(),
            offset: offset.into(),
            length: len.into(),
        };
        let a = self.transport(dev, id, &[head.as_bytes(), data])?;
        let (answer, _) = a.read::<ConfigData>(u8::from(id))?;
        Ok((answer.length.get() != 0 || data.is_empty()).then(|| answer.generation.get()))
    }

    /// `GET_VQUEUE`.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn get_vqueue(&mut self, dev: u16, queue: u32) -> Result<VqueueInfo, DriverEndError> {
        let id = TransportId::GetVqueue;
        let a = self.transport(
            dev,
            id,
            &[Word {
                value: queue.into(),
            }
            .as_bytes()],
        )?;
        let (v, _) = a.read::<Vqueue>(u8::from(id))?;
        Ok(VqueueInfo {
            max_size: v.max_size.get(),
            config: QueueConfig {
                size: u16::try_from(v.size.get()).unwrap_or(0),
                desc_addr: v.desc_addr.get(),
                driver_addr: v.driver_addr.get(),
                device_addr: v.device_addr.get(),
            },
        })
    }

    /// `SET_VQUEUE`: places and enables `queue`.
    ///
    /// # Errors
    /// As for [`Self::call`] (a refused setup times out: the device
    /// discards it).
    pub fn set_vqueue(
        &mut self,
        dev: u16,
        queue: u32,
        config: QueueConfig,
    ) -> Result<(), DriverEndError> {
        let v = Vqueue {
            index: queue.into(),
            max_size: 0.into(),
            size: u32::from(config.size).into(),
            reserved: 0.into(),
            desc_addr: config.desc_addr.into(),
            driver_addr: config.driver_addr.into(),
            device_addr: config.device_addr.into(),
        };
        self.transport(dev, TransportId::SetVqueue, &[v.as_bytes()])?;
        Ok(())
    }

    /// `RESET_VQUEUE` (needs `RING_RESET`).
    ///
    /// # Errors
    /// As for [`Self::call`].
    pub fn reset_vqueue(&mut self, dev: u16, queue: u32) -> Result<(), DriverEndError> {
        self.transport(
            dev,
            TransportId::ResetVqueue,
            &[Word {
                value: queue.into(),
            }
            .as_bytes()],
        )?;
        Ok(())
    }

    /// `GET_SHM`: `(length, address)`, length 0 for no such region.
    ///
    /// # Errors
    /// As for [`Self::call`], or a short answer.
    pub fn get_shm(&mut self, dev: u16, index: u32) -> Result<(u32, u32), DriverEndError> {
        let id = TransportId::GetShm;
        let a = self.transport(
            dev,
            id,
            &[Word {
                value: index.into(),
            }
            .as_bytes()],
        )?;
        let (s, _) = a.read::<ShmInfo>(u8::from(id))?;
        Ok((s.length.get(), s.address.get()))
    }

    /// `EVENT_AVAIL` for `queue` (no answer). `next` is the notification
    /// data (0 without `NOTIFICATION_DATA`).
    ///
    /// # Errors
    /// A ring error or a timeout waiting for room.
    pub fn notify(&mut self, dev: u16, queue: u16, next: u32) -> Result<(), DriverEndError> {
        let id = u8::from(TransportId::EventAvail);
        let mut msg = Builder::new(0, id, dev, 0);
        msg.put(&EventAvail {
            vq_index: u32::from(queue).into(),
            next: next.into(),
        });
        self.send(&mut msg, id)
    }

    /// The whole initialisation sequence (virtio 1.4 §"Device
    /// Initialization" over virtio-msg): reset, `ACKNOWLEDGE`, `DRIVER`,
    /// features (`wanted` ∩ offered, with `VERSION_1`), `FEATURES_OK`
    /// checked, each queue set up with `SET_VQUEUE`, `DRIVER_OK`. Returns
    /// the negotiated features.
    ///
    /// # Errors
    /// [`DriverEndError::NotModern`], [`DriverEndError::FeaturesRefused`],
    /// [`DriverEndError::DriverOkRefused`], or a message error.
    pub fn bring_up(
        &mut self,
        dev: u16,
        wanted: Features,
        queues: &[QueueConfig],
    ) -> Result<Features, DriverEndError> {
        let ack = DeviceStatus::ACKNOWLEDGE;
        let driver = ack | DeviceStatus::DRIVER;
        self.set_status(dev, 0)?;
        self.set_status(dev, u32::from(ack.bits()))?;
        self.set_status(dev, u32::from(driver.bits()))?;
        let offered = self.device_features(dev)?;
        if !offered.contains(Features::VERSION_1) {
            return Err(DriverEndError::NotModern);
        }
        let features = (offered & wanted) | Features::VERSION_1;
        self.set_driver_features(dev, features)?;
        let fok = driver | DeviceStatus::FEATURES_OK;
        let status = self.set_status(dev, u32::from(fok.bits()))?;
        if status & u32::from(DeviceStatus::FEATURES_OK.bits()) == 0 {
            return Err(DriverEndError::FeaturesRefused);
        }
        for (q, config) in (0u32..).zip(queues) {
            self.set_vqueue(dev, q, *config)?;
        }
        let ok = fok | DeviceStatus::DRIVER_OK;
        let status = self.set_status(dev, u32::from(ok.bits()))?;
        if status & u32::from(DeviceStatus::DRIVER_OK.bits()) == 0
            || status & u32::from(DeviceStatus::DEVICE_NEEDS_RESET.bits()) != 0
        {
            return Err(DriverEndError::DriverOkRefused(status));
        }
        Ok(features)
    }
}
