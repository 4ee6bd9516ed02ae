//! One device on the bus ([`ShmDevice`]: virtio-msg transport messages onto
//! [`DeviceCore`] calls) and the set of devices a bus serves
//! ([`DeviceSet`]).

use core::fmt;

use virtio_core::device::{DeviceCore, INTERRUPT_CONFIG_CHANGE, QueueSetupError, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{NotificationData, RingArea};
use virtio_core::spec::{DeviceStatus, Features};

use crate::msg::{
    Builder, ConfigData, DeviceInfo, FeatureBlocks, HEADER_LEN, Request, ShmInfo, Vqueue, Word,
};

/// Bytes before the feature words of a `GET_DEVICE_FEATURES` answer.
const FEATURES_HEAD: usize = HEADER_LEN + size_of::<FeatureBlocks>();
/// Bytes before the data of a `GET_CONFIG` / `SET_CONFIG` answer.
const CONFIG_HEAD: usize = HEADER_LEN + size_of::<ConfigData>();

/// Feature bits this transport can carry (bits 0–63, as the core has).
const FEATURE_BITS: u32 = 64;

/// Why a device refused a well-formed message (it is discarded, as the
/// draft asks for an unsupported message, and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Refusal {
    /// The answer would not fit the bus's maximum message size.
    AnswerTooLarge,
    /// A config access past the configuration space.
    ConfigOutOfRange {
        /// Offset asked.
        offset: u32,
        /// Length asked.
        length: u32,
    },
    /// `SET_DEVICE_STATUS` with bits above the 8 status bits.
    StatusOutOfRange(u32),
    /// No such virtqueue.
    NoSuchQueue(u32),
    /// `SET_VQUEUE` with size 0.
    ZeroQueueSize,
    /// The device core refused the queue operation (queue enabled, size
    /// above the maximum or not a power of two, `RING_RESET` not
    /// negotiated).
    Queue(QueueSetupError),
    /// A transport message this end does not take (a bus message routed to
    /// a device).
    NotForDevice,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnswerTooLarge => f.write_str("answer larger than the maximum message size"),
            Self::ConfigOutOfRange { offset, length } => {
                write!(f, "config access {offset}+{length} past the config space")
            }
            Self::StatusOutOfRange(s) => write!(f, "status {s:#x} has bits above 0xff"),
            Self::NoSuchQueue(q) => write!(f, "no virtqueue {q}"),
            Self::ZeroQueueSize => f.write_str("virtqueue size 0"),
            Self::Queue(e) => write!(f, "queue setup refused: {e}"),
            Self::NotForDevice => f.write_str("not a device message"),
        }
    }
}

impl core::error::Error for Refusal {}

impl From<QueueSetupError> for Refusal {
    fn from(e: QueueSetupError) -> Self {
        Self::Queue(e)
    }
}

/// A device → driver event waiting for room in ring B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// `EVENT_USED` for this queue.
    Used(u16),
    /// `EVENT_CONFIG` with the status and generation (no data).
    Config {
        /// Device status.
        status: u32,
        /// Configuration generation count.
        generation: u32,
    },
}

/// What the bus needs from one device. [`ShmDevice`] implements it; a
/// [`DeviceSet`] holds several.
pub trait BusDevice {
    /// Serves one transport message. On `Ok(true)` `out` holds the answer's
    /// payload (after the header); `Ok(false)` means no answer (an event).
    ///
    /// # Errors
    /// [`Refusal`]: the message is discarded.
    fn handle(
        &mut self,
        request: &Request<'_>,
        out: &mut Builder,
        max_msg: usize,
    ) -> Result<bool, Refusal>;

    /// Gives the device a turn outside a driver message (backend input),
    /// and continues work an earlier call left.
    fn poll(&mut self);

    /// Whether the device stopped with queue work left that no driver
    /// message will announce ([`DeviceCore::work_left`]).
    fn work_left(&self) -> bool;

    /// Takes the next pending event.
    fn next_event(&mut self) -> Option<Event>;
}

/// One virtio device on the shared-memory bus: a [`DeviceCore`] with the
/// transport state virtio-msg needs (vendor id, feature bits above 63,
/// pending events).
///
/// `S` is the most descriptors per queue ([`DeviceCore`]'s in-flight
/// capacity): firmware sets it to the queue size it serves.
#[derive(Debug)]
pub struct ShmDevice<D, M, const Q: usize, const S: usize = 1024> {
    core: DeviceCore<D, M, Q, S>,
    vendor_id: u32,
    /// The driver set a feature bit above 63: `FEATURES_OK` is refused.
    high_features: bool,
    /// Queues owed an `EVENT_USED` (bit per queue).
    pending_used: u64,
    pending_config: bool,
}

impl<D: VirtioDevice, M: GuestMemory, const Q: usize, const S: usize> ShmDevice<D, M, Q, S> {
    const QUEUES_FIT: () = assert!(Q <= 64, "at most 64 queues per ShmDevice");

    /// `device` serving its queues from `mem` (the window's
    /// [`crate::DataArea`]), vendor id 0.
    pub fn new(device: D, mem: M) -> Self {
        let () = Self::QUEUES_FIT;
        Self {
            core: DeviceCore::new(device, mem),
            vendor_id: 0,
            high_features: false,
            pending_used: 0,
            pending_config: false,
        }
    }

    /// Sets the vendor id `GET_DEVICE_INFO` reports.
    #[must_use]
    pub fn with_vendor_id(mut self, vendor_id: u32) -> Self {
        self.vendor_id = vendor_id;
        self
    }

    /// The device core.
    pub fn core(&self) -> &DeviceCore<D, M, Q, S> {
        &self.core
    }

    /// The device core, e.g. to reach the device model. Events it raises
    /// are picked up at the next message or [`BusDevice::poll`].
    pub fn core_mut(&mut self) -> &mut DeviceCore<D, M, Q, S> {
        &mut self.core
    }

    /// The device model.
    pub fn device(&self) -> &D {
        self.core.device()
    }

    /// Turns the core's interrupt status into pending events.
    fn collect(&mut self) {
        let isr = self.core.interrupt_status();
        // EVENT_USED names a queue: only the ones the core says are due.
        self.pending_used |= self.core.take_used_queues();
        if isr & INTERRUPT_CONFIG_CHANGE != 0 {
            self.pending_config = true;
        }
        self.core.ack_interrupt(isr);
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device_id: u32::from(self.core.device_id()).into(),
            vendor_id: self.vendor_id.into(),
            num_feature_bits: FEATURE_BITS.into(),
            config_size: self.core.config_len().into(),
            max_vqueues: u32::from(self.core.num_queues()).into(),
            admin_vq_start: 0.into(),
            admin_vq_count: 0.into(),
        }
    }

    fn queue(&self, index: u32) -> Result<u16, Refusal> {
        u16::try_from(index)
            .ok()
            .filter(|q| self.core.queue_max_size(*q) > 0)
            .ok_or(Refusal::NoSuchQueue(index))
    }

    fn config_range(&self, offset: u32, length: u32) -> Result<(), Refusal> {
        match offset.checked_add(length) {
            Some(end) if end <= self.core.config_len() => Ok(()),
            _ => Err(Refusal::ConfigOutOfRange { offset, length }),
        }
    }

    fn get_features(&self, b: FeatureBlocks, out: &mut Builder, max: usize) -> Result<(), Refusal> {
        let n = b.num_blocks.get();
        let bytes = usize::try_from(n).ok().and_then(|n| n.checked_mul(4));
        let fits = bytes
            .and_then(|d| d.checked_add(FEATURES_HEAD))
            .is_some_and(|total| total <= max);
        if !fits {
            return Err(Refusal::AnswerTooLarge);
        }
        out.put(&b);
        let offered = self.core.device_features().bits();
        for i in 0..n {
            // virtio-msg "Feature Blocks (Device)": blocks beyond the
            // device's features MUST read as zero.
            let word = match b.block_index.get().checked_add(i) {
                Some(0) => offered as u32,
                Some(1) => (offered >> 32) as u32,
                _ => 0,
            };
            out.put(&Word { value: word.into() });
        }
        Ok(())
    }

    fn set_features(&mut self, b: FeatureBlocks, data: &[u8]) {
        if self.core.status().contains(DeviceStatus::FEATURES_OK) {
            // Features are fixed once FEATURES_OK is set; the core ignores
            // the write and so do we.
            return;
        }
        let mut features = self.core.driver_features().bits();
        for (i, word) in (0u32..).zip(data.chunks_exact(4)) {
            // `chunks_exact(4)`: always 4 bytes (a conversion, not
            // `copy_from_slice`, so no length-mismatch panic path).
            let Ok(w) = <[u8; 4]>::try_from(word) else {
                continue;
            };
            let value = u32::from_le_bytes(w);
            match b.block_index.get().checked_add(i) {
                Some(0) => features = (features & !0xffff_ffff) | u64::from(value),
                Some(1) => features = (features & 0xffff_ffff) | (u64::from(value) << 32),
                _ => self.high_features |= value != 0,
            }
        }
        self.core
            .set_driver_features(Features::from_bits_retain(features));
    }

    fn set_status(&mut self, value: u32) -> Result<u32, Refusal> {
        let mut status = u8::try_from(value).map_err(|_| Refusal::StatusOutOfRange(value))?;
        if status == 0 {
            // Status 0 resets the device and discards pending work,
            // including events not yet sent.
            self.high_features = false;
            self.pending_used = 0;
            self.pending_config = false;
        } else if self.high_features && !self.core.status().contains(DeviceStatus::FEATURES_OK) {
            // A feature bit above 63 was accepted: it was never offered,
            // so FEATURES_OK is refused (returned clear).
            status &= !DeviceStatus::FEATURES_OK.bits();
        }
        self.core.set_status(status);
        if status == 0 {
            self.core.ack_interrupt(u32::MAX);
        }
        Ok(u32::from(self.core.status().bits()))
    }

    fn set_vqueue(&mut self, v: &Vqueue) -> Result<(), Refusal> {
        let q = self.queue(v.index.get())?;
        if self.core.queue_ready(q) {
            return Err(Refusal::Queue(QueueSetupError::QueueEnabled(q)));
        }
        if v.size.get() == 0 {
            return Err(Refusal::ZeroQueueSize);
        }
        self.core.set_queue_size(q, v.size.get())?;
        self.core
            .set_queue_area(q, RingArea::Descriptors, v.desc_addr.get())?;
        self.core
            .set_queue_area(q, RingArea::Driver, v.driver_addr.get())?;
        self.core
            .set_queue_area(q, RingArea::Device, v.device_addr.get())?;
        self.core.set_queue_ready(q, true)?;
        Ok(())
    }

    fn serve(
        &mut self,
        request: &Request<'_>,
        out: &mut Builder,
        max: usize,
    ) -> Result<bool, Refusal> {
        match *request {
            Request::GetDeviceInfo => out.put(&self.info()),
            Request::GetDeviceFeatures(b) => self.get_features(b, out, max)?,
            Request::SetDriverFeatures(b, data) => {
                self.set_features(b, data);
            }
            Request::GetConfig(r) => {
                let (offset, length) = (r.offset.get(), r.length.get());
                self.config_range(offset, length)?;
                let len = usize::try_from(length).map_err(|_| Refusal::AnswerTooLarge)?;
                if len > max.saturating_sub(CONFIG_HEAD) {
                    return Err(Refusal::AnswerTooLarge);
                }
                out.put(&ConfigData {
                    generation: self.core.config_generation().into(),
                    offset: r.offset,
                    length: r.length,
                });
                self.core.read_config(offset, out.reserve(len));
            }
            Request::SetConfig(head, data) => {
                let (offset, length) = (head.offset.get(), head.length.get());
                self.config_range(offset, length)?;
                if data.len() > max.saturating_sub(CONFIG_HEAD) {
                    return Err(Refusal::AnswerTooLarge);
                }
                let generation = self.core.config_generation();
                // virtio-msg "Configuration Generation Count (Device)": a
                // SET_CONFIG whose generation does not match MUST be
                // rejected (answer length 0, nothing written).
                if head.generation.get() != generation {
                    out.put(&ConfigData {
                        generation: generation.into(),
                        offset: head.offset,
                        length: 0.into(),
                    });
                } else {
                    self.core.write_config(offset, data);
                    out.put(&ConfigData {
                        generation: self.core.config_generation().into(),
                        offset: head.offset,
                        length: head.length,
                    });
                    self.core.read_config(offset, out.reserve(data.len()));
                }
            }
            Request::GetDeviceStatus => out.put(&Word {
                value: u32::from(self.core.status().bits()).into(),
            }),
            Request::SetDeviceStatus(value) => {
                let status = self.set_status(value)?;
                out.put(&Word {
                    value: status.into(),
                });
            }
            Request::GetVqueue(index) => {
                let q = u16::try_from(index).ok();
                let max_size = q.map_or(0, |q| self.core.queue_max_size(q));
                let config = q
                    .filter(|q| self.core.queue_ready(*q))
                    .and_then(|q| self.core.queue_config(q))
                    .unwrap_or_default();
                out.put(&Vqueue {
                    index: index.into(),
                    max_size: u32::from(max_size).into(),
                    size: u32::from(config.size).into(),
                    reserved: 0.into(),
                    desc_addr: config.desc_addr.into(),
                    driver_addr: config.driver_addr.into(),
                    device_addr: config.device_addr.into(),
                });
            }
            Request::SetVqueue(v) => self.set_vqueue(&v)?,
            Request::ResetVqueue(index) => {
                let q = self.queue(index)?;
                self.core.reset_queue(q)?;
                if let Some(bit) = 1u64.checked_shl(u32::from(q)) {
                    self.pending_used &= !bit;
                }
            }
            Request::GetShm(index) => out.put(&ShmInfo {
                index: index.into(),
                length: 0.into(),
                address: 0.into(),
            }),
            Request::EventAvail(e) => {
                let q = self.queue(e.vq_index.get())?;
                let value = if self
                    .core
                    .negotiated_features()
                    .contains(Features::NOTIFICATION_DATA)
                {
                    let next = e.next.get();
                    NotificationData {
                        vq_index: q,
                        next_off: (next & 0x7fff) as u16,
                        next_wrap: next >> 31 != 0,
                    }
                    .to_u32()
                } else {
                    u32::from(q)
                };
                // Work left is asked for by the bus after the message
                // (`BusDevice::work_left`).
                let _ = self.core.notify(value);
                return Ok(false);
            }
            Request::GetDevices(_) | Request::Ping(_) => return Err(Refusal::NotForDevice),
        }
        Ok(true)
    }
}

impl<D: VirtioDevice, M: GuestMemory, const Q: usize, const S: usize> BusDevice
    for ShmDevice<D, M, Q, S>
{
    fn handle(
        &mut self,
        request: &Request<'_>,
        out: &mut Builder,
        max_msg: usize,
    ) -> Result<bool, Refusal> {
        let result = self.serve(request, out, max_msg);
        self.collect();
        result
    }

    fn poll(&mut self) {
        let _ = self.core.poll();
        self.collect();
    }

    fn work_left(&self) -> bool {
        self.core.work_left()
    }

    fn next_event(&mut self) -> Option<Event> {
        if self.pending_config {
            self.pending_config = false;
            return Some(Event::Config {
                status: u32::from(self.core.status().bits()),
                generation: self.core.config_generation(),
            });
        }
        if self.pending_used == 0 {
            return None;
        }
        let q = self.pending_used.trailing_zeros();
        self.pending_used &= !(1u64 << q);
        u16::try_from(q).ok().map(Event::Used)
    }
}

/// The devices of one bus, numbered 0, 1, … (`dev_num`). Implemented for
/// tuples of up to 8 [`BusDevice`]s of any types and for arrays of one
/// type; dispatch is a `match`, no trait objects.
pub trait DeviceSet {
    /// Number of devices.
    fn count(&self) -> u16;

    /// [`BusDevice::handle`] on device `dev`; `None` if there is none.
    fn handle(
        &mut self,
        dev: u16,
        request: &Request<'_>,
        out: &mut Builder,
        max_msg: usize,
    ) -> Option<Result<bool, Refusal>>;

    /// [`BusDevice::poll`] on every device.
    fn poll(&mut self);

    /// [`BusDevice::work_left`] of any device.
    fn work_left(&self) -> bool;

    /// [`BusDevice::next_event`] on device `dev`.
    fn next_event(&mut self, dev: u16) -> Option<Event>;
}

impl<T: BusDevice, const N: usize> DeviceSet for [T; N] {
    fn count(&self) -> u16 {
        u16::try_from(N).unwrap_or(u16::MAX)
    }

    fn handle(
        &mut self,
        dev: u16,
        request: &Request<'_>,
        out: &mut Builder,
        max_msg: usize,
    ) -> Option<Result<bool, Refusal>> {
        self.get_mut(usize::from(dev))
            .map(|d| d.handle(request, out, max_msg))
    }

    fn poll(&mut self) {
        self.iter_mut().for_each(BusDevice::poll);
    }

    fn work_left(&self) -> bool {
        self.iter().any(BusDevice::work_left)
    }

    fn next_event(&mut self, dev: u16) -> Option<Event> {
        self.get_mut(usize::from(dev))
            .and_then(BusDevice::next_event)
    }
}

macro_rules! tuple_set {
    ($count:expr; $($idx:tt $t:ident),+) => {
        impl<$($t: BusDevice),+> DeviceSet for ($($t,)+) {
            fn count(&self) -> u16 {
                $count
            }

            fn handle(
                &mut self,
                dev: u16,
                request: &Request<'_>,
                out: &mut Builder,
                max_msg: usize,
            ) -> Option<Result<bool, Refusal>> {
                match dev {
                    $($idx => Some(self.$idx.handle(request, out, max_msg)),)+
                    _ => None,
                }
            }

            fn poll(&mut self) {
                $(self.$idx.poll();)+
            }

            fn work_left(&self) -> bool {
                false $(|| self.$idx.work_left())+
            }

            fn next_event(&mut self, dev: u16) -> Option<Event> {
                match dev {
                    $($idx => self.$idx.next_event(),)+
                    _ => None,
                }
            }
        }
    };
}

tuple_set!(1; 0 A);
tuple_set!(2; 0 A, 1 B);
tuple_set!(3; 0 A, 1 B, 2 C);
tuple_set!(4; 0 A, 1 B, 2 C, 3 E);
tuple_set!(5; 0 A, 1 B, 2 C, 3 E, 4 F);
tuple_set!(6; 0 A, 1 B, 2 C, 3 E, 4 F, 5 G);
tuple_set!(7; 0 A, 1 B, 2 C, 3 E, 4 F, 5 G, 6 H);
tuple_set!(8; 0 A, 1 B, 2 C, 3 E, 4 F, 5 G, 6 H, 7 I);
