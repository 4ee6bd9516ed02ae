//! [`Journal`]: a record of the chains a device holds, kept where it
//! outlives the device's process.

/// A record of a device's chains in flight, kept where it outlives the
/// device's process.
///
/// A vhost-user backend that is killed and restarted finds the rings where
/// the driver left them, but not which chains it had taken and not yet
/// returned. A device that completes in the order it pops needs nothing
/// more: the frontend rewinds each ring to its used index and the chains
/// are popped again. A device that holds chains and returns them out of
/// order (GPIO interrupt waits, held event buffers) cannot be rewound that
/// way: chains it already returned would be taken twice and others lost.
/// The frontend therefore keeps a region the backend writes as it goes
/// (vhost-user's `INFLIGHT_SHMFD`); a [`Journal`] is how [`DeviceCore`]
/// tells it what happens, and how the record resubmits chains after a
/// restart, ahead of anything new on the ring.
///
/// The calls, per queue, in the order a chain sees them:
///
/// 1. [`Journal::resubmit`] is asked before each chain the device pops: a
///    head it returns is taken again from the descriptor table
///    ([`crate::queue::Queue::resubmit`]) instead of reading the available
///    ring;
/// 2. [`Journal::taken`] once the queue has taken a chain (valid or
///    malformed), before the device sees it;
/// 3. [`Journal::returned`] after its used element is written and before
///    the used index makes it the driver's;
/// 4. [`Journal::published`] after the used index was stored: every chain
///    returned since the last call is the driver's now.
///
/// A record that follows these calls knows, at any instant, which chains
/// the driver still waits for; a crash between two calls leaves it at most
/// one batch behind the ring, which its owner repairs from the ring's used
/// index when it restarts (the vhost-user record carries the batch for
/// exactly that).
///
/// Every method is called on the device's own thread, inside the call that
/// serves its queues, and must not block for long.
///
/// [`DeviceCore`]: super::DeviceCore
pub trait Journal {
    /// A chain to take again on `queue` before anything new (after a
    /// restart), by its head; `None` when there is none.
    fn resubmit(&mut self, queue: u16) -> Option<u16>;

    /// `queue` handed out the chain at `head` (valid or malformed).
    fn taken(&mut self, queue: u16, head: u16);

    /// The chain at `head` was returned on `queue`; the driver does not see
    /// it until [`Self::published`].
    fn returned(&mut self, queue: u16, head: u16);

    /// `queue`'s used index was stored as `used` (split: `used.idx`;
    /// packed: the used position as `slot | wrap << 15`): every chain
    /// returned since the last call is the driver's.
    fn published(&mut self, queue: u16, used: u16);

    /// This journal as a trait object for the core, or `None` when it
    /// records nothing now (then the core skips it entirely).
    fn active(&mut self) -> Option<&mut dyn Journal>
    where
        Self: Sized,
    {
        Some(self)
    }
}

/// No record: the core's default. Costs nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn resubmit(&mut self, _queue: u16) -> Option<u16> {
        None
    }
    fn taken(&mut self, _queue: u16, _head: u16) {}
    fn returned(&mut self, _queue: u16, _head: u16) {}
    fn published(&mut self, _queue: u16, _used: u16) {}
    #[inline(always)]
    fn active(&mut self) -> Option<&mut dyn Journal> {
        None
    }
}
