//! Doorbells: how one end tells the other that a ring has news.
//!
//! One doorbell per direction. The device end rings the driver's after it
//! published responses or events; the driver end rings the device's after
//! it published requests or `EVENT_AVAIL`. Either rings the producer's when
//! it freed slots of a full ring. A doorbell carries no data: the receiver
//! looks at the rings, so a spurious or merged ring is harmless.

use core::sync::atomic::{AtomicBool, Ordering};

/// Signals the other end (an IPI, a mailbox write, an eventfd, pending an
/// interrupt, or nothing when the other end polls).
///
/// Contract: `ring` is called after the ring index is published (release
/// store), so the other end sees the message once it sees the doorbell.
/// It must not block and may be called from an interrupt handler. Rings
/// may merge; the receiver drains the ring completely each time.
pub trait Doorbell {
    /// Signals the other end.
    fn ring(&mut self);
}

impl<T: Doorbell + ?Sized> Doorbell for &mut T {
    fn ring(&mut self) {
        (**self).ring();
    }
}

/// No signal: the other end polls the ring ([`crate::DeviceEnd::process`]
/// or the driver end's waits) on its own schedule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Polled;

impl Doorbell for Polled {
    fn ring(&mut self) {}
}

/// A polled flag: `ring` sets it (release), the receiver tests and clears
/// it with [`FlagDoorbell::take`] (acquire). The flag may live anywhere both
/// ends can reach as an atomic (a `static`, an `Arc`).
#[derive(Clone, Copy, Debug)]
pub struct FlagDoorbell<'a>(pub &'a AtomicBool);

impl FlagDoorbell<'_> {
    /// True if the doorbell rang since the last `take`; clears it.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

impl Doorbell for FlagDoorbell<'_> {
    fn ring(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
