//! [`DeviceCore`]: the status state machine every transport drives.

use super::error::{FeaturesError, NeedsResetCause, QueueSetupError};
use super::journal::{Journal, NoJournal};
use super::queues::{DeviceQueues, QueueSlot, Signals};
use super::{
    DEFAULT_BUDGET, DEVICE_FEATURE_MASK, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER,
    OPT_IN_RING_FEATURES, RING_FEATURES, Service, VirtioDevice,
};
use crate::memory::GuestMemory;
use crate::queue::{NotificationData, Queue, QueueConfig, RingArea};
use crate::spec::{DeviceId, DeviceStatus, Features, MAX_QUEUE_SIZE};

/// What the device is given a turn for.
#[derive(Clone, Copy)]
enum Turn {
    /// The driver notified this queue (and queues with work left are
    /// served too).
    Notify(u16),
    /// The embedder polled: the device's own poll, then every queue with
    /// work left.
    Poll,
    /// Only the queues with work left.
    Pending,
}

/// Status bits a driver may set (virtio 1.4 §"Device Status Field");
/// `DEVICE_NEEDS_RESET` is the device's and `SUSPEND` is never offered.
const DRIVER_STATUS_BITS: DeviceStatus = DeviceStatus::ACKNOWLEDGE
    .union(DeviceStatus::DRIVER)
    .union(DeviceStatus::FEATURES_OK)
    .union(DeviceStatus::DRIVER_OK)
    .union(DeviceStatus::FAILED);

/// A device with its status, features, up to `Q` queues of up to `S`
/// descriptors each, interrupt status and config generation: the one state
/// machine every transport drives.
///
/// The transport calls the setters as the driver writes registers (or sends
/// messages) and reads the getters back; `DeviceCore` decides everything
/// that the spec leaves to "the device". See the [module docs](super) for
/// the guarantees, and for the liveness contract of [`Self::notify`] and
/// [`Self::poll`].
///
/// `S` bounds the queue sizes the driver may choose (each queue keeps an
/// in-flight table of three bytes per descriptor); [`Self::queue_max_size`]
/// never reports more.
///
/// `J` is a record of the chains in flight kept for a restart
/// ([`Journal`]; vhost-user's inflight tracking); the default,
/// [`NoJournal`], keeps none and costs nothing.
#[derive(Debug)]
pub struct DeviceCore<D, M, const Q: usize, const S: usize = DEFAULT_QUEUE_CAPACITY, J = NoJournal>
{
    device: D,
    journal: J,
    mem: M,
    budget: u32,
    status: DeviceStatus,
    offered: Features,
    driver_features: Features,
    negotiated: Features,
    num_queues: u16,
    slots: [QueueSlot<S>; Q],
    interrupt_status: u32,
    config_generation: u32,
    needs_reset: Option<NeedsResetCause>,
    features_error: Option<FeaturesError>,
}

/// The default in-flight capacity `S` of [`DeviceCore`]: queues of up to 1024
/// descriptors (QEMU's largest virtqueue), 3 KiB of state per queue.
/// Firmware serving small queues sets `S` to the queue size it offers.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

impl<D: VirtioDevice, M: GuestMemory, const Q: usize, const S: usize> DeviceCore<D, M, Q, S> {
    /// A device in reset state, serving queues from `mem`. Only the first
    /// `Q` of the device's queues exist, each at most `S` descriptors.
    pub fn new(device: D, mem: M) -> Self {
        DeviceCore::assemble(device, mem, NoJournal)
    }
}

impl<D: VirtioDevice, M: GuestMemory, const Q: usize, const S: usize, J: Journal>
    DeviceCore<D, M, Q, S, J>
{
    /// [`Self::new`] with a record of the chains in flight ([`Journal`];
    /// cargo feature `journal`).
    #[cfg(feature = "journal")]
    pub fn with_journal(device: D, mem: M, journal: J) -> Self {
        Self::assemble(device, mem, journal)
    }

    fn assemble(device: D, mem: M, journal: J) -> Self {
        let own = device.features() & (DEVICE_FEATURE_MASK | OPT_IN_RING_FEATURES);
        let offered = Features::VERSION_1 | RING_FEATURES | own;
        let num_queues = device
            .num_queues()
            .min(u16::try_from(Q).unwrap_or(u16::MAX));
        let capacity = u16::try_from(S).unwrap_or(u16::MAX).min(MAX_QUEUE_SIZE);
        let mut slots: [QueueSlot<S>; Q] = core::array::from_fn(|_| QueueSlot::default());
        for (index, slot) in (0..num_queues).zip(slots.iter_mut()) {
            slot.max = device.max_queue_size(index).min(capacity);
            slot.reset();
        }
        Self {
            device,
            journal,
            mem,
            budget: DEFAULT_BUDGET,
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

    /// The record of chains in flight.
    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// The record of chains in flight, e.g. to give it the region a
    /// restarted frontend kept (change it only while no queue runs).
    pub fn journal_mut(&mut self) -> &mut J {
        &mut self.journal
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

    /// Sets how many chains one call of [`Self::notify`] or [`Self::poll`]
    /// (or any call that serves queues) may take at most, valid and
    /// malformed together; at least 1. Default: [`DEFAULT_BUDGET`].
    pub fn set_budget(&mut self, chains: u32) {
        self.budget = chains.max(1);
    }

    /// The per-call budget in chains.
    pub fn budget(&self) -> u32 {
        self.budget
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

    fn slot(&self, queue: u16) -> Option<&QueueSlot<S>> {
        self.slots
            .get(usize::from(queue))
            .filter(|s| queue < self.num_queues && s.max > 0)
    }

    fn slot_mut(&mut self, queue: u16) -> Result<&mut QueueSlot<S>, QueueSetupError> {
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

    fn setup_slot(&mut self, queue: u16) -> Result<&mut QueueSlot<S>, QueueSetupError> {
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

    /// The driver's whole queue setup at once: `QueueSize` and the three
    /// area addresses (virtio-msg's `SET_VQUEUE`, vhost-user's
    /// `SET_VRING_NUM` + `SET_VRING_ADDR`). The queue is not enabled.
    ///
    /// # Errors
    /// As [`Self::set_queue_size`] and [`Self::set_queue_area`]; the first
    /// refusal stops the setup.
    pub fn set_queue(&mut self, queue: u16, config: QueueConfig) -> Result<(), QueueSetupError> {
        self.set_queue_size(queue, u32::from(config.size))?;
        self.set_queue_area(queue, RingArea::Descriptors, config.desc_addr)?;
        self.set_queue_area(queue, RingArea::Driver, config.driver_addr)?;
        self.set_queue_area(queue, RingArea::Device, config.device_addr)
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
            if slot.abandoned > 0 {
                // virtio 1.4 §"MMIO Device Register Layout": the device MUST
                // NOT access virtqueue contents while QueueReady is zero, so
                // chains it held when the queue was disabled can never be
                // returned on that ring. Resuming past them would lose them
                // silently; the driver must reset the queue or the device.
                let count = slot.abandoned;
                self.enter_needs_reset(NeedsResetCause::AbandonedChains { queue, count });
            } else if self.is_live() {
                self.build(queue);
                let _ = self.run(Turn::Notify(queue));
            }
        } else {
            if let Some(engine) = slot.engine.take() {
                slot.base = Some(ring_base(&engine));
                slot.abandoned = engine.in_flight();
            }
            slot.dirty = false;
            slot.pending = false;
            self.device.queue_reset(queue);
        }
        Ok(())
    }

    /// Sets where `queue`'s ring resumes when it is next built, for
    /// transports that stop and restart rings without a device reset
    /// (vhost-user's `SET_VRING_BASE`, a resumed migration). `base` is the
    /// next available index for a split ring and `slot | wrap << 15`
    /// ([`RingPosition::to_u16`](crate::queue::RingPosition::to_u16)) for a packed one.
    ///
    /// A split ring resumes its used index from the ring's `used.idx` in
    /// guest memory (what the driver has seen), a packed ring its used
    /// position from `base`. A device reset or queue reset forgets the
    /// base; disabling the queue keeps its current position as the base.
    ///
    /// Chains the device held when the queue was disabled are the caller's
    /// from then on (vhost-user: the frontend's in-flight record): a based
    /// queue starts with none in flight. A queue disabled with chains in
    /// flight and enabled again without a new base enters
    /// `DEVICE_NEEDS_RESET` instead ([`NeedsResetCause::AbandonedChains`]).
    ///
    /// # Errors
    /// [`QueueSetupError`]: no such queue, or the queue is enabled.
    pub fn set_queue_base(&mut self, queue: u16, base: u16) -> Result<(), QueueSetupError> {
        let slot = self.setup_slot(queue)?;
        slot.base = Some(base);
        slot.abandoned = 0;
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
        let rule = self.device.malformed_chain(queue);
        let Some(slot) = self.slots.get_mut(usize::from(queue)) else {
            return;
        };
        slot.rule = rule;
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
        // Buffers the driver made available before DRIVER_OK are served now
        // (as far as the budget goes; the rest is work left).
        for slot in &mut self.slots {
            slot.pending = slot.engine.is_some();
        }
        let _ = self.run(Turn::Pending);
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
    ///
    /// Serves the queue, and any queue with work left, within the budget
    /// ([`Self::set_budget`]). On [`Service::WorkLeft`] the caller must call
    /// [`Self::poll`] again: the driver need not notify for what is left.
    pub fn notify(&mut self, value: u32) -> Service {
        let queue = if self.negotiated.contains(Features::NOTIFICATION_DATA) {
            NotificationData::from_u32(value).vq_index
        } else {
            match u16::try_from(value) {
                Ok(queue) => queue,
                Err(_) => return self.service(),
            }
        };
        if !self.queue_active(queue) {
            return self.service();
        }
        self.run(Turn::Notify(queue))
    }

    /// Gives the device a turn outside a driver notification
    /// ([`VirtioDevice::poll`], e.g. after input reached its backend), and
    /// serves every queue with work left, within the budget. On
    /// [`Service::WorkLeft`] call it again.
    pub fn poll(&mut self) -> Service {
        self.run(Turn::Poll)
    }

    /// Whether some queue has work left from an earlier call that no driver
    /// notification will announce: call [`Self::poll`]. Transports whose
    /// other register writes serve queues (`DRIVER_OK`, `QueueReady`) ask
    /// this after them.
    pub fn work_left(&self) -> bool {
        self.slots.iter().any(|s| s.pending)
    }

    fn service(&self) -> Service {
        if self.work_left() {
            Service::WorkLeft
        } else {
            Service::Done
        }
    }

    /// Serves the device within one budget: a turn, publication, and the
    /// re-arm of every queue the device looked at, round after round while
    /// the re-check finds buffers the device is taking.
    ///
    /// This is where liveness is decided (virtio 1.4 §"Available Buffer
    /// Notification Suppression"): after each round, every queue the device
    /// popped from gets its notifications re-enabled (split: `avail_event`
    /// or `used.flags`; packed: the Device Event Suppression structure) and
    /// the ring is checked once more, which closes the race with a driver
    /// that added a buffer before it could see the re-enable. A queue that
    /// still has buffers after the budget is spent is left `pending` and the
    /// call returns [`Service::WorkLeft`]: the driver, having seen
    /// notifications enabled past those buffers, will not notify for them.
    fn run(&mut self, mut turn: Turn) -> Service {
        let mut budget = self.budget;
        loop {
            if !self.is_live() {
                for slot in &mut self.slots {
                    slot.pending = false;
                }
                return Service::Done;
            }
            let before = budget;
            budget = self.round(turn, budget);
            let mut again = false;
            let mut failure = None;
            for (queue, slot) in (0u16..).zip(self.slots.iter_mut()) {
                let popped = core::mem::take(&mut slot.popped);
                if !core::mem::take(&mut slot.touched) {
                    continue;
                }
                let Some(engine) = slot.engine.as_mut() else {
                    slot.pending = false;
                    continue;
                };
                match engine.enable_notification(&self.mem) {
                    // More buffers, and the device is taking them (or ran
                    // out of budget before it could look).
                    Ok(true) => slot.pending = popped > 0 || slot.pending,
                    Ok(false) => slot.pending = false,
                    Err(error) => {
                        failure.get_or_insert(NeedsResetCause::Queue { queue, error });
                    }
                }
                // The device holds work for a later call (poll_again),
                // even with the ring empty.
                slot.pending |= core::mem::take(&mut slot.again);
                again |= slot.pending;
            }
            if let Some(cause) = failure {
                self.enter_needs_reset(cause);
                continue;
            }
            if !again {
                return Service::Done;
            }
            // Out of budget, or a round that took nothing yet wants another
            // (a device's `poll_again`): the next call goes on, so a device
            // that keeps asking cannot hold this one.
            if budget == 0 || budget == before {
                return Service::WorkLeft;
            }
            turn = Turn::Pending;
        }
    }

    /// One turn of the device, then publication of what it completed.
    /// Returns the budget left.
    fn round(&mut self, turn: Turn, budget: u32) -> u32 {
        let n = usize::from(self.num_queues);
        let mut signals = Signals::default();
        let slots = self.slots.get_mut(..n).unwrap_or_default();
        // The queues with work left are served in this round.
        let mut pending: u64 = 0;
        let mut pending_high = false;
        for (bit, slot) in (0u32..).zip(slots.iter_mut()) {
            if core::mem::take(&mut slot.pending) {
                match 1u64.checked_shl(bit) {
                    Some(b) => pending |= b,
                    None => pending_high = true,
                }
            }
        }
        let mut queues = DeviceQueues {
            mem: &self.mem,
            slots,
            signals: &mut signals,
            budget,
            #[cfg(feature = "journal")]
            journal: self.journal.active(),
        };
        let device = &mut self.device;
        match turn {
            Turn::Notify(queue) => device.queue_notify(queue, &mut queues),
            Turn::Poll => device.poll(&mut queues),
            Turn::Pending => {}
        }
        for queue in 0..self.num_queues {
            let bit = 1u64.checked_shl(u32::from(queue));
            let due = match bit {
                Some(b) => pending & b != 0,
                None => pending_high,
            };
            if due && !matches!(turn, Turn::Notify(q) if q == queue) {
                device.queue_notify(queue, &mut queues);
            }
        }
        let left = queues.budget;
        self.publish(signals);
        left
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
                        if cfg!(feature = "journal")
                            && let Some(journal) = self.journal.active()
                        {
                            journal.published(queue, engine.next_used());
                        }
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
fn ring_base<const S: usize>(engine: &Queue<S>) -> u16 {
    match engine {
        Queue::Split(q) => q.next_avail(),
        #[cfg(feature = "packed")]
        Queue::Packed(q) => q.next_avail().to_u16(),
    }
}

/// Restarts a freshly built ring at `base` ([`DeviceCore::set_queue_base`]).
fn resume_at<M: GuestMemory, const S: usize>(
    engine: &mut Queue<S>,
    mem: &M,
    config: QueueConfig,
    base: u16,
) {
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
        #[cfg(feature = "packed")]
        Queue::Packed(q) => {
            let at = crate::queue::RingPosition::from_u16(base);
            q.set_positions(at, at);
        }
    }
}
