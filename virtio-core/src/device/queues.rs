//! Per-queue state, and the view of the queues a device gets while it runs.

use super::MalformedChain;
use super::error::NeedsResetCause;
use super::journal::Journal;
use crate::memory::GuestMemory;
use crate::queue::{Chain, ChainError, Head, Queue, QueueConfig, QueueError};

/// The record to tell, if the core keeps one (borrowing only the field):
/// always `None` without the `journal` feature, so the calls and the
/// resubmission path compile away.
#[cfg(feature = "journal")]
macro_rules! recorder {
    ($queues:expr) => {
        $queues.journal.as_deref_mut()
    };
}
#[cfg(not(feature = "journal"))]
macro_rules! recorder {
    ($queues:expr) => {
        None::<&mut dyn Journal>
    };
}

/// One queue as the core keeps it: the driver's configuration registers and,
/// once the device is live and the queue enabled, its ring engine.
#[derive(Clone, Debug)]
pub(crate) struct QueueSlot<const S: usize> {
    /// What the driver wrote (size, areas).
    pub(crate) config: QueueConfig,
    /// The device's maximum size (0 = the queue does not exist).
    pub(crate) max: u16,
    /// `QueueReady` as the driver last wrote it.
    pub(crate) ready: bool,
    /// The ring engine, built at `DRIVER_OK` or when enabled after it.
    pub(crate) engine: Option<Queue<S>>,
    /// What a malformed chain on this queue leads to (the device's
    /// [`super::VirtioDevice::malformed_chain`], asked at activation).
    pub(crate) rule: MalformedChain,
    /// Buffers were pushed since the last publication.
    pub(crate) dirty: bool,
    /// A used buffer notification is due for this queue and no transport
    /// has taken it yet ([`super::DeviceCore::take_used_queues`]).
    pub(crate) notify: bool,
    /// The device looked at this queue (called `pop`) in the current
    /// round: its notifications are re-armed after the round.
    pub(crate) touched: bool,
    /// Chains taken from this queue in the current round.
    pub(crate) popped: u32,
    /// The queue may have work left that no driver notification will
    /// announce: the embedder is told to call [`super::DeviceCore::poll`],
    /// which serves it.
    pub(crate) pending: bool,
    /// Malformed chains returned by the core since the last reset.
    pub(crate) malformed: u32,
    /// Where the ring resumes when next built (vhost-user's vring base:
    /// split `next_avail`, packed `slot | wrap << 15`); `None` starts it
    /// fresh. See [`super::DeviceCore::set_queue_base`].
    pub(crate) base: Option<u16>,
    /// Chains were in flight when the driver disabled the queue; they can
    /// never be returned (the device must not touch a disabled queue).
    pub(crate) abandoned: u16,
    /// The device asked to be called again for this queue
    /// ([`DeviceQueues::poll_again`]), whatever the ring holds.
    pub(crate) again: bool,
}

impl<const S: usize> Default for QueueSlot<S> {
    fn default() -> Self {
        Self {
            config: QueueConfig::default(),
            max: 0,
            ready: false,
            engine: None,
            rule: MalformedChain::ReturnEmpty,
            dirty: false,
            notify: false,
            touched: false,
            popped: 0,
            pending: false,
            malformed: 0,
            base: None,
            abandoned: 0,
            again: false,
        }
    }
}

impl<const S: usize> QueueSlot<S> {
    /// The queue's state after a device or queue reset: no engine, not
    /// ready, size back to the maximum, areas 0.
    pub(crate) fn reset(&mut self) {
        let max = self.max;
        *self = Self {
            config: QueueConfig {
                size: max,
                ..QueueConfig::default()
            },
            max,
            ..Self::default()
        };
    }
}

/// What happened while a device ran that the core must act on afterwards.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Signals {
    pub(crate) needs_reset: Option<NeedsResetCause>,
    pub(crate) config_changed: bool,
}

/// The device's view of its queues while it serves them
/// ([`super::VirtioDevice::queue_notify`], [`super::VirtioDevice::poll`]).
///
/// It hands out only validated chains and takes completions; ring errors
/// never reach the device. A malformed chain is answered by
/// [`DeviceQueues::pop`] itself, as the device's
/// [`super::VirtioDevice::malformed_chain`] says (an error status where the
/// driver reads it, or `DEVICE_NEEDS_RESET`), and `pop` moves on to the
/// next chain; a corrupt ring puts the device into `DEVICE_NEEDS_RESET`,
/// after which `pop` returns `false` and completions are dropped.
///
/// Every chain `pop` takes, valid or malformed, spends one unit of the
/// call's budget ([`super::DeviceCore::set_budget`]). When the budget is
/// spent `pop` returns `false` although the driver may have more: the core
/// then reports [`super::Service::WorkLeft`] to the embedder, which calls
/// [`super::DeviceCore::poll`] again.
pub struct DeviceQueues<'a, M, const S: usize> {
    pub(crate) mem: &'a M,
    pub(crate) slots: &'a mut [QueueSlot<S>],
    pub(crate) signals: &'a mut Signals,
    pub(crate) budget: u32,
    /// The core's record of chains in flight, when it keeps one.
    #[cfg(feature = "journal")]
    pub(crate) journal: Option<&'a mut dyn Journal>,
}

impl<M, const S: usize> core::fmt::Debug for DeviceQueues<'_, M, S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceQueues")
            .field("queues", &self.slots.len())
            .field("budget", &self.budget)
            .field("journal", &cfg!(feature = "journal"))
            .finish()
    }
}

impl<'a, M: GuestMemory, const S: usize> DeviceQueues<'a, M, S> {
    /// The guest memory chains point into, for [`Chain::reader`] and
    /// [`Chain::writer`].
    pub fn memory(&self) -> &'a M {
        self.mem
    }

    /// True when `queue` is enabled and live, so `pop` may return chains.
    pub fn is_live(&self, queue: u16) -> bool {
        self.signals.needs_reset.is_none()
            && self
                .slots
                .get(usize::from(queue))
                .is_some_and(|s| s.engine.is_some())
    }

    /// Chains `pop` may still take in this call.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// Takes the next validated chain on `queue` (with at most `N`
    /// segments) into `chain`, which is overwritten in place. `false` when
    /// there is none, the queue is not live, or the call's budget is spent
    /// (the core then tells the embedder work is left).
    ///
    /// Malformed chains met on the way are answered here, as the device's
    /// [`super::VirtioDevice::malformed_chain`] rule says, and counted
    /// ([`super::DeviceCore::malformed_chains`]).
    pub fn pop<const N: usize>(&mut self, queue: u16, chain: &mut Chain<N>) -> bool {
        if self.signals.needs_reset.is_some() {
            return false;
        }
        let Some(slot) = self.slots.get_mut(usize::from(queue)) else {
            return false;
        };
        let Some(engine) = slot.engine.as_mut() else {
            return false;
        };
        slot.touched = true;
        // Each chain, valid or not, spends one unit of the budget, so the
        // budget bounds the loop.
        while self.budget > 0 {
            // A restarted backend's chains in flight go first, before
            // anything newer on the ring.
            #[cfg(feature = "journal")]
            let taken = match recorder!(self).and_then(|j| j.resubmit(queue)) {
                Some(head) => match engine.resubmit(self.mem, head, chain) {
                    Ok(false) => engine.pop(self.mem, chain),
                    other => other,
                },
                None => engine.pop(self.mem, chain),
            };
            #[cfg(not(feature = "journal"))]
            let taken = engine.pop(self.mem, chain);
            let error = match taken {
                Ok(true) => {
                    self.budget = self.budget.wrapping_sub(1);
                    slot.popped = slot.popped.saturating_add(1);
                    if let Some(journal) = recorder!(self) {
                        journal.taken(queue, chain.head().id);
                    }
                    return true;
                }
                Ok(false) => return false,
                Err(QueueError::Chain(error)) => error,
                Err(error) => {
                    self.signals.needs_reset = Some(NeedsResetCause::Queue { queue, error });
                    return false;
                }
            };
            self.budget = self.budget.wrapping_sub(1);
            slot.popped = slot.popped.saturating_add(1);
            slot.malformed = slot.malformed.saturating_add(1);
            slot.dirty = true;
            let head = error.head().id;
            if let Some(journal) = recorder!(self) {
                journal.taken(queue, head);
            }
            let answered = answer_malformed(self.mem, engine, slot.rule, queue, error);
            if let Some(journal) = recorder!(self) {
                journal.returned(queue, head);
            }
            if let Err(cause) = answered {
                self.signals.needs_reset = Some(cause);
                return false;
            }
        }
        // The budget is spent: the queue may hold more than was served.
        slot.pending = true;
        false
    }

    /// Returns a chain (by its head) to the driver with `written` bytes
    /// written to its device-writable part (clamped to the chain's writable
    /// length). The driver sees it, and gets an interrupt if it asked for
    /// one, when the device's turn ends.
    ///
    /// A head the queue refuses (one it never handed out or already took
    /// back, or one from before a reset: devices drop held chains in
    /// [`super::VirtioDevice::reset`]) puts the device into
    /// `DEVICE_NEEDS_RESET`.
    pub fn push_used(&mut self, queue: u16, head: Head, written: u32) {
        if self.signals.needs_reset.is_some() {
            return;
        }
        let Some(slot) = self.slots.get_mut(usize::from(queue)) else {
            return;
        };
        let Some(engine) = slot.engine.as_mut() else {
            return;
        };
        match engine.push_used(self.mem, head, written) {
            Ok(()) => {
                slot.dirty = true;
                if let Some(journal) = recorder!(self) {
                    journal.returned(queue, head.id);
                }
            }
            Err(error) => {
                self.signals.needs_reset = Some(NeedsResetCause::Queue { queue, error });
            }
        }
    }

    /// The device holds work from `queue` it must finish in a later call
    /// although the ring may be empty (requests of an I2C transaction cut
    /// by the budget, a chip select to release once the ring is drained):
    /// the call reports [`super::Service::WorkLeft`], so the embedder calls
    /// [`super::DeviceCore::poll`] again and the queue is served. Ask only
    /// when [`DeviceQueues::budget`] is spent, or every call reports work.
    pub fn poll_again(&mut self, queue: u16) {
        if let Some(slot) = self.slots.get_mut(usize::from(queue)) {
            slot.again = true;
            slot.pending = true;
            slot.touched = true;
        }
    }

    /// The device changed its configuration space: the core bumps the
    /// config generation and sends a configuration change notification.
    pub fn config_changed(&mut self) {
        self.signals.config_changed = true;
    }

    /// The device hit an error it cannot recover from: enter
    /// `DEVICE_NEEDS_RESET` (virtio 1.4 §"Device Status Field").
    pub fn set_needs_reset(&mut self) {
        if self.signals.needs_reset.is_none() {
            self.signals.needs_reset = Some(NeedsResetCause::Device);
        }
    }
}

/// Answers a malformed chain as `rule` says and returns it to the driver.
/// `Err` is the reason to enter `DEVICE_NEEDS_RESET` (after the chain was
/// returned, where it could be).
fn answer_malformed<M: GuestMemory, const S: usize>(
    mem: &M,
    engine: &mut Queue<S>,
    rule: MalformedChain,
    queue: u16,
    error: ChainError,
) -> Result<(), NeedsResetCause> {
    let salvage = error.salvage();
    // Where the status goes and the used length that reports it: at the
    // end of the writable part, the length stays 0 (the device MAY write
    // more than `len`, virtio 1.4 §"The Virtqueue Used Ring"); at its
    // start, the status bytes are the first `len` bytes written.
    let place = match rule {
        MalformedChain::ReturnEmpty | MalformedChain::NeedsReset => None,
        MalformedChain::StatusAtEnd(status) => Some(
            salvage
                .tail
                .filter(|t| t.len as usize >= status.len())
                .map(|t| {
                    let back = u64::from(t.len).wrapping_sub(status.len() as u64);
                    (t.addr.wrapping_add(back), status, 0)
                }),
        ),
        MalformedChain::StatusAtStart(status) => Some(
            salvage
                .first_writable
                .filter(|f| f.len as usize >= status.len())
                .map(|f| (f.addr, status, u32::try_from(status.len()).unwrap_or(0))),
        ),
    };
    let malformed = NeedsResetCause::MalformedChain {
        queue,
        error: QueueError::Chain(error),
    };
    let mut outcome = Ok(());
    let mut used = 0;
    match place {
        None if rule == MalformedChain::NeedsReset => outcome = Err(malformed),
        None => {}
        // No place for the status: the request cannot be answered, so it
        // must not read as done.
        Some(None) => outcome = Err(malformed),
        Some(Some((addr, status, len))) => {
            // The area was checked to be inside memory when it was walked.
            match mem.write(addr, status) {
                Ok(()) => used = len,
                Err(_) => outcome = Err(malformed),
            }
        }
    }
    engine
        .push_used(mem, error.head(), used)
        .map_err(|error| NeedsResetCause::Queue { queue, error })?;
    outcome
}
