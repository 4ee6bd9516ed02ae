//! A watchdog device (ID 35) that acts when the guest stops pinging it.
//!
//! # Not a standard
//!
//! **No virtio specification defines a watchdog device**: ID 35 is only
//! reserved (virtio 1.4 §"Device Types"). This module speaks the
//! *de-facto* protocol of the one public implementation,
//! cloud-hypervisor's `virtio-devices/src/watchdog.rs` (its PRs #1750 and
//! #1880; it calls 35 "temporary until official number allocated"), as
//! described in `virtio-reference.md` appendix A. A standard device, if
//! one is ever specified, may differ; this one keeps the de-facto wire
//! behaviour so that guests written for cloud-hypervisor work unchanged.
//!
//! # The protocol
//!
//! * One queue (`requestq`), no feature bits but `VERSION_1`, no
//!   configuration space.
//! * A **ping** is a chain whose first descriptor is device-writable with
//!   a non-zero length. The device writes the byte `1` at its start and
//!   returns it at once with used length = that descriptor's length (what
//!   cloud-hypervisor reports).
//! * A chain with device-readable bytes first, or no writable byte, is not
//!   a ping: it goes back with used length 0 and does not count.
//! * The **first ping arms** the watchdog; from then on, when more than
//!   the timeout ([`DEFAULT_TIMEOUT`], 20 s as cloud-hypervisor's 15 s
//!   check interval plus 5 s, or [`Watchdog::with_timeout`]) passes with
//!   no ping, the [`ExpiryAction`] runs **once**. A later ping re-arms it.
//! * A **device reset disarms** it (a guest that resets starts unarmed
//!   until its driver pings again), and [`Watchdog::resume`] restarts the
//!   timer from now after the VM was paused, so downtime does not fire it.
//!
//! # Time
//!
//! Time comes from an injected monotonic [`Clock`] (an RTOS tick, a
//! hardware timer, `std::time::Instant` in a daemon, a fake in tests).
//! The device checks the deadline whenever it runs: on each notification
//! and on [`DeviceCore::poll`](virtio_core::device::DeviceCore::poll) (or
//! [`Watchdog::check`] directly); the embedder polls at least as often as
//! the precision it wants, e.g. at [`Watchdog::deadline`].
//!
//! # Bounded work
//!
//! Every ping is one chain of the call's budget, so a guest that pings as
//! fast as it can (a ping storm) gets at most the budget served per call
//! and the embedder's other queues and devices their turn in between
//! (the core reports [`Service::WorkLeft`](virtio_core::device::Service)).

use core::time::Duration;

use virtio_core::device::{DeviceQueues, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};

/// Time without a ping after which the action runs, unless
/// [`Watchdog::with_timeout`] says otherwise (cloud-hypervisor: a 15 s
/// check interval plus 5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Most segments of a ping chain the device takes (a ping needs one).
pub const CHAIN_SEGMENTS: usize = 4;

/// What the device writes at the start of a ping buffer.
pub const PING_ACK: u8 = 1;

/// A monotonic clock: time since any fixed origin, never going back.
pub trait Clock {
    /// Now.
    fn now(&self) -> Duration;
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// What happens when the guest stops pinging: reset the guest, raise an
/// interrupt, log, signal a supervisor.
pub trait ExpiryAction {
    /// The watchdog expired: `since_ping` passed since the last ping
    /// (more than the timeout). Called once per expiry.
    fn expired(&mut self, since_ping: Duration);
}

impl<T: ExpiryAction + ?Sized> ExpiryAction for &mut T {
    fn expired(&mut self, since_ping: Duration) {
        (**self).expired(since_ping);
    }
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WatchdogStats {
    /// Pings answered.
    pub pings: u32,
    /// Chains that were not pings (returned with used length 0).
    pub invalid: u32,
    /// Times the action ran.
    pub expiries: u32,
}

/// The watchdog device over a clock `C` and an expiry action `A`.
#[derive(Debug)]
pub struct Watchdog<C, A> {
    clock: C,
    action: A,
    timeout: Duration,
    queue_size: u16,
    /// The last ping, once armed.
    last_ping: Option<Duration>,
    /// The action ran for the current deadline.
    fired: bool,
    stats: WatchdogStats,
}

impl<C: Clock, A: ExpiryAction> Watchdog<C, A> {
    /// A disarmed watchdog with [`DEFAULT_TIMEOUT`] and a queue of 8 (as
    /// cloud-hypervisor's).
    pub fn new(clock: C, action: A) -> Self {
        Self {
            clock,
            action,
            timeout: DEFAULT_TIMEOUT,
            queue_size: 8,
            last_ping: None,
            fired: false,
            stats: WatchdogStats::default(),
        }
    }

    /// Sets the timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once a ping armed it (until a reset).
    pub fn is_armed(&self) -> bool {
        self.last_ping.is_some()
    }

    /// When the action will run if no ping comes: `None` while disarmed
    /// or after it ran for the current deadline.
    pub fn deadline(&self) -> Option<Duration> {
        match self.last_ping {
            Some(at) if !self.fired => Some(at.saturating_add(self.timeout)),
            _ => None,
        }
    }

    /// What the device did so far.
    pub fn stats(&self) -> WatchdogStats {
        self.stats
    }

    /// The expiry action.
    pub fn action(&self) -> &A {
        &self.action
    }

    /// The expiry action, mutably.
    pub fn action_mut(&mut self) -> &mut A {
        &mut self.action
    }

    /// The VM was paused and runs again: an armed timer restarts from now
    /// so the time it was stopped does not count.
    pub fn resume(&mut self) {
        if self.last_ping.is_some() {
            self.last_ping = Some(self.clock.now());
            self.fired = false;
        }
    }

    /// Checks the deadline now and runs the action if it passed (once per
    /// deadline). Returns true if it ran in this call.
    pub fn check(&mut self) -> bool {
        let Some(at) = self.last_ping else {
            return false;
        };
        if self.fired {
            return false;
        }
        let since = self.clock.now().saturating_sub(at);
        if since <= self.timeout {
            return false;
        }
        self.fired = true;
        self.stats.expiries = self.stats.expiries.saturating_add(1);
        self.action.expired(since);
        true
    }

    /// One chain: a ping when its first descriptor is writable; returns the
    /// used length.
    fn ping<M: GuestMemory, const N: usize>(&mut self, chain: &Chain<N>, mem: &M) -> u32 {
        let first = chain.segments().first().copied();
        let writable_first = chain.readable_len() == 0;
        match first {
            Some(seg) if writable_first => {
                let mut writer = chain.writer(mem);
                if writer.write_all(&[PING_ACK]).is_err() {
                    self.stats.invalid = self.stats.invalid.saturating_add(1);
                    return 0;
                }
                self.stats.pings = self.stats.pings.saturating_add(1);
                self.last_ping = Some(self.clock.now());
                self.fired = false;
                seg.len
            }
            _ => {
                self.stats.invalid = self.stats.invalid.saturating_add(1);
                0
            }
        }
    }
}

impl<C: Clock, A: ExpiryAction> VirtioDevice for Watchdog<C, A> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Watchdog
    }

    /// None (the de-facto protocol has only `VERSION_1`).
    fn features(&self) -> Features {
        Features::empty()
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    /// Disarms: a guest that reset has no driver pinging yet.
    fn reset(&mut self) {
        self.last_ping = None;
        self.fired = false;
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        // A deadline that passed before these pings arrived still counts.
        self.check();
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        while queues.pop(queue, &mut chain) {
            let len = self.ping(&chain, mem);
            queues.push_used(queue, chain.head(), len);
        }
    }

    fn poll<M: GuestMemory, const S: usize>(&mut self, _queues: &mut DeviceQueues<'_, M, S>) {
        self.check();
    }
}

#[cfg(test)]
mod tests;
