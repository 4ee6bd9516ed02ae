//! [`DeviceCore`]: the status state machine every transport drives.

use super::error::{FeaturesError, NeedsResetCause, QueueSetupError};
use super::queues::{DeviceQueues, QueueSlot, Signals};
use super::{
    DEVICE_FEATURE_MASK, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, OPT_IN_RING_FEATURES,
    RING_FEATURES, VirtioDevice,
};
use crate::memory::GuestMemory;
use crate::queue::{NotificationData, Queue, QueueConfig, RingArea, RingPosition};
use crate::spec::{DeviceId, DeviceStatus, Features, MAX_QUEUE_SIZE};

/// Rounds of "serve, re-enable notifications, re-check" per notification
/// before the core waits for the next one (bounds the work one driver kick
/// can cause).
const MAX_ROUNDS: u32 = 16;

/// Status bits a driver may set (virtio 1.4 §"Device Status Field");
/// `DEVICE_NEEDS_RESET` is the device's and `SUSPEND` is never offered.
const DRIVER_STATUS_BITS: DeviceStatus = DeviceStatus::ACKNOWLEDGE
    .union(DeviceStatus::DRIVER)
    .union(DeviceStatus::FEATURES_OK)
    .union(DeviceStatus::DRIVER_OK)
    .union(DeviceStatus::FAILED);

/// A device with its status, features, up to `Q` queues, interrupt status
/// and config generation: the one state machine every transport drives.
///
/// The transport calls the setters as the driver writes registers (or sends
/// messages) and reads the getters back; `DeviceCore` decides everything
/// that the spec leaves to "the device". See the [module docs](super) for
/// the guarantees.
#[derive(Debug)]
pub struct DeviceCore<D, M, const Q: usize> {
    device: D,
    mem: M,
    status: DeviceStatus,
    offered: Features,
    driver_features: Features,
    negotiated: Features,
    num_queues: u16,
    slots: [QueueSlot; Q],
    interrupt_status: u32,
    config_generation: u32,
    needs_reset: Option<NeedsResetCause>,
    features_error: Option<FeaturesError>,
}

impl<D: VirtioDevice, M: GuestMemory, const Q: usize> DeviceCore<D, M, Q> {
    /// A device in reset state, serving queues from `mem`. Only the first
    /// `Q` of the device's queues exist.
    pub fn new(device: D, mem: M) -> Self {
        let own = device.features() & (DEVICE_FEATURE_MASK | OPT_IN_RING_FEATURES);
        let offered = Features::VERSION_1 | RING_FEATURES | own;
        let num_queues = device
            .num_queues()
            .min(u16::try_from(Q).unwrap_or(u16::MAX));
        let mut slots: [QueueSlot; Q] = core::array::from_fn(|_| QueueSlot::default());
        for (index, slot) in (0..num_queues).zip(slots.iter_mut()) {
            slot.max = device.max_queue_size(index).min(MAX_QUEUE_SIZE);
            slot.reset();
        }
        Self {
            device,
            mem,
            status: DeviceStatus::empty(),
            offered,
            driver_features: Features::empty(),
            negotiated: Features::empty(),
            num_queues,
            slots,
            interrupt_status: 0,
            config_generation: 0,
            needs_reset: None,
            features_error: None,
        }
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device model, e.g. to change its backend. Call
    /// [`Self::config_changed`] after changing its configuration space.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The guest memory the queues live in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The device ID.
    pub fn device_id(&self) -> DeviceId {
        self.device.device_id()
    }

    // ---- status ------------------------------------------------------

    /// The device status as the driver reads it.
    pub fn status(&self) -> DeviceStatus {
        self.status
    }

    /// True once `DRIVER_OK` is set and neither `FAILED` nor
    /// `DEVICE_NEEDS_RESET`: only then are buffers consumed.
    pub fn is_live(&self) -> bool {
        self.status.contains(DeviceStatus::DRIVER_OK)
            && !self.status.contains(DeviceStatus::FAILED)
            && self.needs_reset.is_none()
    }

    /// The driver writes the status field.
    ///
    /// * 0 resets the device ([`Self::reset`]).
    /// * Otherwise bits are only added; a write that omits a set bit does
    ///   not clear it, and `DEVICE_NEEDS_RESET`, `SUSPEND` and undefined
    ///   bits are ignored.
    /// * Newly setting `FEATURES_OK` negotiates; if the features are
    ///   refused the bit is not set ([`Self::features_error`] says why).
    /// * Newly setting `DRIVER_OK` without `FEATURES_OK` is refused the
    ///   same way; with it, the enabled queues are built and served.
    pub fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let requested = DeviceStatus::from_bits_retain(value) & DRIVER_STATUS_BITS;
        let added = requested.difference(self.status);
        let mut status = self.status | requested;
        if added.contains(DeviceStatus::FEATURES_OK) {
            match self.negotiate() {
                Ok(()) => self.features_error = None,
                Err(e) => {
                    self.features_error = Some(e);
                    status.remove(DeviceStatus::FEATURES_OK);
                }
            }
        }
        if added.contains(DeviceStatus::DRIVER_OK) && !status.contains(DeviceStatus::FEATURES_OK) {
            status.remove(DeviceStatus::DRIVER_OK);
        }
        self.status = status;
        if status.contains(DeviceStatus::DRIVER_OK) && added.contains(DeviceStatus::DRIVER_OK) {
            self.activate();
        }
    }

    /// Device reset (virtio 1.4 §"Device Reset"): status 0, features
    /// forgotten, every queue disabled and back to its defaults, interrupt
    /// status clear, the device model reset. The config generation keeps
    /// counting.
    pub fn reset(&mut self) {
        self.device.reset();
        for slot in &mut self.slots {
            slot.reset();
        }
        self.status = DeviceStatus::empty();
        self.driver_features = Features::empty();
        self.negotiated = Features::empty();
        self.interrupt_status = 0;
        self.needs_reset = None;
        self.features_error = None;
    }

    /// Why the device is in `DEVICE_NEEDS_RESET`, if it is.
    pub fn needs_reset_cause(&self) -> Option<NeedsResetCause> {
        self.needs_reset
    }

    /// Puts the device into `DEVICE_NEEDS_RESET` (virtio 1.4 §"Device Status
    /// Field": with `DRIVER_OK` set, the device MUST send a configuration
    /// change notification). Buffers are no longer consumed until reset.
    pub fn enter_needs_reset(&mut self, cause: NeedsResetCause) {
        if self.needs_reset.is_some() {
            return;
        }
        self.needs_reset = Some(cause);
        self.status.insert(DeviceStatus::DEVICE_NEEDS_RESET);
        if self.status.contains(DeviceStatus::DRIVER_OK) {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    // ---- features ----------------------------------------------------

    /// The features the device offers (`DeviceFeatures`).
    pub fn device_features(&self) -> Features {
        self.offered
    }

    /// The features the driver has written so far (`DriverFeatures`).
    pub fn driver_features(&self) -> Features {
        self.driver_features
    }

    /// The driver writes its features. Ignored once `FEATURES_OK` is set
    /// (virtio 1.4 §"Device Initialization": features are fixed then);
    /// returns whether the write took effect.
    pub fn set_driver_features(&mut self, features: Features) -> bool {
        if self.status.contains(DeviceStatus::FEATURES_OK) {
            return false;
        }
        self.driver_features = features;
        true
    }

    /// The negotiated features: empty until `FEATURES_OK` was accepted.
    pub fn negotiated_features(&self) -> Features {
        self.negotiated
    }

    /// Why the last attempt to set `FEATURES_OK` was refused.
    pub fn features_error(&self) -> Option<FeaturesError> {
        self.features_error
    }

    fn negotiate(&mut self) -> Result<(), FeaturesError> {
        let features = self.driver_features;
        let unoffered = features.difference(self.offered);
        if !unoffered.is_empty() {
            return Err(FeaturesError::NotOffered(unoffered.bits()));
        }
        if !features.contains(Features::VERSION_1) {
            return Err(FeaturesError::Version1Missing);
        }
        self.device.check_features(features)?;
        self.negotiated = features;
        Ok(())
    }

    // ---- queue configuration ------------------------------------------

    /// Number of queues (`Q` at most).
    pub fn num_queues(&self) -> u16 {
        self.num_queues
    }

    fn slot(&self, queue: u16) -> Option<&QueueSlot> {
        self.slots
            .get(usize::from(queue))
            .filter(|s| queue < self.num_queues && s.max > 0)
    }

    fn slot_mut(&mut self, queue: u16) -> Result<&mut QueueSlot, QueueSetupError> {
        let n = self.num_queues;
        self.slots
            .get_mut(usize::from(queue))
            .filter(|s| queue < n && s.max > 0)
            .ok_or(QueueSetupError::NoSuchQueue(queue))
    }

    /// The largest size the driver may give `queue`; 0 when there is no
    /// such queue (`QueueSizeMax`).
    pub fn queue_max_size(&self, queue: u16) -> u16 {
        self.slot(queue).map_or(0, |s| s.max)
    }

    /// The configuration the driver wrote for `queue`.
    pub fn queue_config(&self, queue: u16) -> Option<QueueConfig> {
        self.slot(queue).map(|s| s.config)
    }

    /// `QueueReady` as the driver last wrote it (false for no such queue).
    pub fn queue_ready(&self, queue: u16) -> bool {
        self.slot(queue).is_some_and(|s| s.ready)
    }

    /// True while `queue` has a ring engine (enabled and device live).
    pub fn queue_active(&self, queue: u16) -> bool {
        self.slot(queue).is_some_and(|s| s.engine.is_some())
    }

    /// Malformed chains on `queue` the core returned since the last reset.
    pub fn malformed_chains(&self, queue: u16) -> u32 {
        self.slot(queue).map_or(0, |s| s.malformed)
    }

    fn setup_slot(&mut self, queue: u16) -> Result<&mut QueueSlot, QueueSetupError> {
        let slot = self.slot_mut(queue)?;
        if slot.ready {
            return Err(QueueSetupError::QueueEnabled(queue));
        }
        Ok(slot)
    }

    /// The driver writes `QueueSize`. A split ring's size must be a power of
    /// two: that is checked here once the ring format is negotiated, and
    /// when the queue is built in any case.
    ///
    /// # Errors
    /// [`QueueSetupError`]: no such queue, queue enabled, above the maximum,
    /// or not a power of two for a split ring. Nothing changes then.
    pub fn set_queue_size(&mut self, queue: u16, size: u32) -> Result<(), QueueSetupError> {
        let split_known = self.status.contains(DeviceStatus::FEATURES_OK)
            && !self.negotiated.contains(Features::RING_PACKED);
        let slot = self.setup_slot(queue)?;
        let size16 = u16::try_from(size).ok().filter(|s| *s <= slot.max).ok_or(
            QueueSetupError::SizeAboveMax {
                size,
                max: slot.max,
            },
        )?;
        if split_known && size16 != 0 && !size16.is_power_of_two() {
            return Err(QueueSetupError::SizeNotPowerOfTwo(size16));
        }
        slot.config.size = size16;
        Ok(())
    }

    /// The driver writes the guest address of one of `queue`'s areas.
    ///
    /// # Errors
    /// [`QueueSetupError`]: no such queue, or the queue is enabled.
    pub fn set_queue_area(
        &mut self,
        queue: u16,
        area: RingArea,
        addr: u64,
    ) -> Result<(), QueueSetupError> {
        let slot = self.setup_slot(queue)?;
        match area {
            RingArea::Descriptors => slot.config.desc_addr = addr,
            RingArea::Driver => slot.config.driver_addr = addr,
            RingArea::Device => slot.config.device_addr = addr,
        }
        Ok(())
    }

    /// The driver writes `QueueReady`. Enabling a queue while the device is
    /// live builds its ring at once (a bad configuration then means
    /// `DEVICE_NEEDS_RESET`) and serves what is already there; disabling
    /// drops the ring and the device's held chains for it.
    ///
    /// # Errors
    /// [`QueueSetupError::NoSuchQueue`].
    pub fn set_queue_ready(&mut self, queue: u16, ready: bool) -> Result<(), QueueSetupError> {
        let slot = self.slot_mut(queue)?;
        if slot.ready == ready {
            return Ok(());
        }
        slot.ready = ready;
        if ready {
            if self.is_live() {
                self.build(queue);
                self.serve(queue);
            }
        } else {
            if let Some(engine) = slot.engine.take() {
                slot.base = Some(ring_base(&engine));
            }
            slot.dirty = false;
            self.device.queue_reset(queue);
        }
        Ok(())
    }

    /// Sets where `queue`'s ring resumes when it is next built, for
    /// transports that stop and restart rings without a device reset
    /// (vhost-user's `SET_VRING_BASE`, a resumed migration). `base` is the
    /// next available index for a split ring and `slot | wrap << 15`
    /// ([`RingPosition::to_u16`]) for a packed one.
    ///
    /// A split ring resumes its used index from the ring's `used.idx` in
    /// guest memory (what the driver has seen), a packed ring its used
    /// position from `base`. A device reset or queue reset forgets the
    /// base; disabling the queue keeps its current position as the base.
    ///
    /// # Errors
    /// [`QueueSetupError`]: no such queue, or the queue is enabled.
    pub fn set_queue_base(&mut self, queue: u16, base: u16) -> Result<(), QueueSetupError> {
        self.setup_slot(queue)?.base = Some(base);
        Ok(())
    }

    /// Where `queue`'s ring is (while it runs) or would resume (while it is
    /// stopped), in the form of [`Self::set_queue_base`]: vhost-user's
    /// `GET_VRING_BASE`. `None` for no such queue, and for a queue that
    /// was neither based nor run since the last reset (it starts fresh:
    /// index 0 for a split ring, slot 0 with wrap counter 1 for a packed
    /// one).
    pub fn queue_base(&self, queue: u16) -> Option<u16> {
        let slot = self.slot(queue)?;
        match &slot.engine {
            Some(engine) => Some(ring_base(engine)),
            None => slot.base,
        }
    }

    /// Per-queue reset (`RING_RESET`, virtio 1.4 §"Virtqueue Reset"): the
    /// queue stops, forgets its ring state and returns to its defaults;
    /// the driver may then configure and enable it again. The reset is
    /// complete when this returns.
    ///
    /// # Errors
    /// [`QueueSetupError::RingResetNotNegotiated`] or
    /// [`QueueSetupError::NoSuchQueue`]; nothing changes then.
    pub fn reset_queue(&mut self, queue: u16) -> Result<(), QueueSetupError> {
        if !self.negotiated.contains(Features::RING_RESET) {
            return Err(QueueSetupError::RingResetNotNegotiated);
        }
        self.slot_mut(queue)?.reset();
        self.device.queue_reset(queue);
        Ok(())
    }

    fn build(&mut self, queue: u16) {
        let features = self.negotiated;
        let Some(slot) = self.slots.get_mut(usize::from(queue)) else {
            return;
        };
        match Queue::new(&self.mem, slot.config, features) {
            Ok(mut engine) => {
                if let Some(base) = slot.base {
                    resume_at(&mut engine, &self.mem, slot.config, base);
                }
                slot.engine = Some(engine);
            }
            Err(error) => self.enter_needs_reset(NeedsResetCause::QueueConfig { queue, error }),
        }
    }

    fn activate(&mut self) {
        self.device.activate(self.negotiated);
        for queue in 0..self.num_queues {
            if self.queue_ready(queue) {
                self.build(queue);
            }
        }
        // Buffers the driver made available before DRIVER_OK are served now.
        for queue in 0..self.num_queues {
            self.serve(queue);
        }
    }

    // ---- configuration space -------------------------------------------

    /// Size of the device-specific configuration space.
    pub fn config_len(&self) -> u32 {
        self.device.config_len()
    }

    /// Reads configuration bytes (any status).
    pub fn read_config(&self, offset: u32, data: &mut [u8]) {
        self.device.read_config(offset, data);
    }

    /// Writes configuration bytes (any status: e.g. a console's `emerg_wr`
    /// works before the driver is set up).
    pub fn write_config(&mut self, offset: u32, data: &[u8]) {
        self.device.write_config(offset, data);
    }

    /// `ConfigGeneration`.
    pub fn config_generation(&self) -> u32 {
        self.config_generation
    }

    /// The device's configuration changed (e.g. through
    /// [`Self::device_mut`]): bump the generation and, once `DRIVER_OK` is
    /// set, send a configuration change notification.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status.contains(DeviceStatus::DRIVER_OK) {
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    // ---- interrupts ----------------------------------------------------

    /// `InterruptStatus`: bits held until acknowledged.
    pub fn interrupt_status(&self) -> u32 {
        self.interrupt_status
    }

    /// `InterruptACK`: clears the given bits.
    pub fn ack_interrupt(&mut self, bits: u32) {
        self.interrupt_status &= !bits;
    }

    // ---- serving -------------------------------------------------------

    /// The queues (bit `q` for queue `q`, queues 0–63) with a used buffer
    /// notification due since the last call, which clears them. Transports
    /// that notify per queue use it (virtio-msg `EVENT_USED`, vhost-user's
    /// call eventfds); [`INTERRUPT_USED_BUFFER`] still says "some queue"
    /// for those with one interrupt line.
    pub fn take_used_queues(&mut self) -> u64 {
        let mut mask = 0u64;
        for (bit, slot) in (0u32..64).zip(self.slots.iter_mut()) {
            if core::mem::take(&mut slot.notify) {
                mask |= 1u64 << bit;
            }
        }
        mask
    }

    /// The driver notified the device (`QueueNotify`). With
    /// `NOTIFICATION_DATA` the value carries the queue in its low 16 bits;
    /// without it, it is the queue index. Unknown queues, and every
    /// notification before `DRIVER_OK`, are ignored.
    pub fn notify(&mut self, value: u32) {
        let queue = if self.negotiated.contains(Features::NOTIFICATION_DATA) {
            NotificationData::from_u32(value).vq_index
        } else {
            match u16::try_from(value) {
                Ok(queue) => queue,
                Err(_) => return,
            }
        };
        self.serve(queue);
    }

    /// Gives the device a turn outside a driver notification
    /// ([`VirtioDevice::poll`]), e.g. after input reached its backend.
    pub fn poll(&mut self) {
        self.round(|device, queues| device.poll(queues));
    }

    fn serve(&mut self, queue: u16) {
        if !self.queue_active(queue) {
            return;
        }
        for _ in 0..MAX_ROUNDS {
            self.round(|device, queues| device.queue_notify(queue, queues));
            let Some(slot) = self.slots.get_mut(usize::from(queue)) else {
                return;
            };
            let Some(engine) = slot.engine.as_mut() else {
                return;
            };
            // Ask for the next notification, and go round again if the
            // driver added buffers meanwhile and the device is taking them.
            match engine.enable_notification(&self.mem) {
                Ok(true) if slot.popped > 0 => {}
                Ok(_) => return,
                Err(error) => {
                    self.enter_needs_reset(NeedsResetCause::Queue { queue, error });
                    return;
                }
            }
        }
    }

    /// One turn of the device, then publication of what it completed.
    fn round(&mut self, f: impl FnOnce(&mut D, &mut DeviceQueues<'_, M>)) {
        if !self.is_live() {
            return;
        }
        let n = usize::from(self.num_queues);
        let mut signals = Signals::default();
        let slots = self.slots.get_mut(..n).unwrap_or_default();
        for slot in slots.iter_mut() {
            slot.popped = 0;
        }
        let mut queues = DeviceQueues {
            mem: &self.mem,
            slots,
            signals: &mut signals,
            rule: D::MALFORMED_CHAIN,
        };
        f(&mut self.device, &mut queues);
        self.publish(signals);
    }

    fn publish(&mut self, signals: Signals) {
        let mut notify = false;
        let mut failure = signals.needs_reset;
        for (queue, slot) in (0u16..).zip(self.slots.iter_mut()) {
            if !core::mem::take(&mut slot.dirty) {
                continue;
            }
            if let Some(engine) = slot.engine.as_mut() {
                match engine.publish_used(&self.mem) {
                    Ok(n) => {
                        notify |= n;
                        slot.notify |= n;
                    }
                    Err(error) => {
                        failure.get_or_insert(NeedsResetCause::Queue { queue, error });
                    }
                }
            }
        }
        if notify {
            self.interrupt_status |= INTERRUPT_USED_BUFFER;
        }
        if signals.config_changed {
            self.config_changed();
        }
        if let Some(cause) = failure {
            self.enter_needs_reset(cause);
        }
    }
}

/// A ring's position in the form of [`DeviceCore::set_queue_base`].
fn ring_base(engine: &Queue) -> u16 {
    match engine {
        Queue::Split(q) => q.next_avail(),
        Queue::Packed(q) => q.next_avail().to_u16(),
    }
}

/// Restarts a freshly built ring at `base` ([`DeviceCore::set_queue_base`]).
fn resume_at<M: GuestMemory>(engine: &mut Queue, mem: &M, config: QueueConfig, base: u16) {
    match engine {
        Queue::Split(q) => {
            // `used.idx` sits 2 bytes into the used ring; the ring was just
            // checked to be inside memory, and a failed read keeps `base`.
            let used = config
                .device_addr
                .checked_add(2)
                .and_then(|addr| mem.load_u16_acquire(addr).ok())
                .unwrap_or(base);
            q.set_indices(base, used);
        }
        Queue::Packed(q) => {
            let at = RingPosition::from_u16(base);
            q.set_positions(at, at);
        }
    }
}
