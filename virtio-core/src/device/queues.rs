//! Per-queue state, and the view of the queues a device gets while it runs.

use super::MalformedChain;
use super::error::NeedsResetCause;
use crate::memory::GuestMemory;
use crate::queue::{Chain, Head, Queue, QueueConfig};

/// One queue as the core keeps it: the driver's configuration registers and,
/// once the device is live and the queue enabled, its ring engine.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueueSlot {
    /// What the driver wrote (size, areas).
    pub(crate) config: QueueConfig,
    /// The device's maximum size (0 = the queue does not exist).
    pub(crate) max: u16,
    /// `QueueReady` as the driver last wrote it.
    pub(crate) ready: bool,
    /// The ring engine, built at `DRIVER_OK` or when enabled after it.
    pub(crate) engine: Option<Queue>,
    /// Buffers were pushed since the last publication.
    pub(crate) dirty: bool,
    /// A used buffer notification is due for this queue and no transport
    /// has taken it yet ([`super::DeviceCore::take_used_queues`]).
    pub(crate) notify: bool,
    /// Chains handed to the device during the current round.
    pub(crate) popped: u32,
    /// Malformed chains returned by the core since the last reset.
    pub(crate) malformed: u32,
    /// Where the ring resumes when next built (vhost-user's vring base:
    /// split `next_avail`, packed `slot | wrap << 15`); `None` starts it
    /// fresh. See [`super::DeviceCore::set_queue_base`].
    pub(crate) base: Option<u16>,
}

impl QueueSlot {
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
/// never reach the device. A malformed chain is returned to the driver by
/// [`DeviceQueues::pop`] itself (used length 0) and `pop` moves on to the
/// next chain; a corrupt ring puts the device into `DEVICE_NEEDS_RESET`,
/// after which `pop` returns `None` and completions are dropped.
#[derive(Debug)]
pub struct DeviceQueues<'a, M> {
    pub(crate) mem: &'a M,
    pub(crate) slots: &'a mut [QueueSlot],
    pub(crate) signals: &'a mut Signals,
    pub(crate) rule: MalformedChain,
}

impl<'a, M: GuestMemory> DeviceQueues<'a, M> {
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

    /// The next validated chain on `queue` (with at most `N` segments), or
    /// `None` when there is none or the queue is not live.
    ///
    /// Malformed chains met on the way are completed here (used length 0)
    /// and counted ([`super::DeviceCore::malformed_chains`]).
    pub fn pop<const N: usize>(&mut self, queue: u16) -> Option<Chain<N>> {
        if self.signals.needs_reset.is_some() {
            return None;
        }
        let slot = self.slots.get_mut(usize::from(queue))?;
        let engine = slot.engine.as_mut()?;
        // Each malformed chain takes one available entry, so a pass over
        // the ring bounds the loop.
        for _ in 0..=u32::from(engine.size()) {
            let error = match engine.pop::<M, N>(self.mem) {
                Ok(Some(chain)) => {
                    slot.popped = slot.popped.saturating_add(1);
                    return Some(chain);
                }
                Ok(None) => return None,
                Err(error) => error,
            };
            let Some(head) = error.head() else {
                self.signals.needs_reset = Some(NeedsResetCause::Queue { queue, error });
                return None;
            };
            slot.malformed = slot.malformed.saturating_add(1);
            if let Err(error) = engine.push_used(self.mem, head, 0) {
                self.signals.needs_reset = Some(NeedsResetCause::Queue { queue, error });
                return None;
            }
            slot.dirty = true;
            if self.rule == MalformedChain::NeedsReset {
                self.signals.needs_reset = Some(NeedsResetCause::MalformedChain { queue, error });
                return None;
            }
        }
        None
    }

    /// Returns a chain (by its head) to the driver with `written` bytes
    /// written to its device-writable part. The driver sees it, and gets an
    /// interrupt if it asked for one, when the device's turn ends.
    ///
    /// A head from before a reset must not be passed here (devices drop
    /// held chains in [`super::VirtioDevice::reset`]); a head the ring
    /// refuses puts the device into `DEVICE_NEEDS_RESET`.
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
            Ok(()) => slot.dirty = true,
            Err(error) => {
                self.signals.needs_reset = Some(NeedsResetCause::Queue { queue, error });
            }
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
