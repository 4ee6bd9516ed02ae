//! The device side's one state machine: status, features, queues, interrupts.
//!
//! Every transport (virtio-mmio, the shared-memory transport, vhost-user)
//! translates its wire into calls on [`DeviceCore`]; every device implements
//! [`VirtioDevice`] and never sees a transport. A request's path reads top to
//! bottom:
//!
//! ```text
//! transport ── notify ──► DeviceCore::notify ──► VirtioDevice::queue_notify
//!                                                  │ DeviceQueues::pop  (validated chains only)
//!                                                  │ parse, backend, respond
//!                                                  │ DeviceQueues::push_used
//!            ◄── interrupt status ── DeviceCore publishes each touched queue
//! ```
//!
//! # What the core guarantees
//!
//! * **Status** (virtio 1.4 §"Device Status Field"): status starts at 0 and a
//!   write of 0 resets everything (queues, features, interrupt status, the
//!   device). The driver can only add bits; `DEVICE_NEEDS_RESET` is the
//!   device's own bit and a driver write of it is ignored.
//! * **Features** (§"Feature Bits"): the core offers `VERSION_1`, the ring
//!   features of [`RING_FEATURES`] and the device's own bits. Setting
//!   `FEATURES_OK` is refused, visibly (the bit does not read back), when the
//!   driver accepted a bit that was not offered, did not accept
//!   `VERSION_1`, or the device vetoes the set
//!   ([`VirtioDevice::check_features`]).
//! * **Queues**: the transport stores each queue's configuration through
//!   [`DeviceCore::set_queue_size`] and friends; the ring engine
//!   ([`Queue`]) is built from it at `DRIVER_OK` (or when a queue is enabled
//!   later). No buffer is consumed before `DRIVER_OK`, after `FAILED`, or
//!   while `DEVICE_NEEDS_RESET` is set.
//! * **A malformed request never reads as a success**: a device only ever
//!   sees validated chains. A chain the queue rejects is answered by the
//!   core as the device's [`VirtioDevice::malformed_chain`] says: with an
//!   error status written where the driver reads it (the queue locates the
//!   chain's writable descriptors even when the chain is malformed,
//!   [`crate::queue::ChainError::salvage`]), or returned with used length 0
//!   for a device without a status field; when there is no place for the
//!   status, the device enters `DEVICE_NEEDS_RESET` rather than complete it
//!   silently. A corrupt ring puts the device into `DEVICE_NEEDS_RESET` with
//!   a configuration change interrupt.
//! * **Every completion is checked**: the queue accepts a head only while it
//!   is in flight, once; a device that returns another puts itself into
//!   `DEVICE_NEEDS_RESET`.
//! * **Interrupt status** bits ([`INTERRUPT_USED_BUFFER`],
//!   [`INTERRUPT_CONFIG_CHANGE`]) are held until acknowledged.
//! * **Config generation** changes whenever the configuration space may have
//!   changed.
//!
//! # Liveness and bounds: the contract of every call that serves queues
//!
//! [`DeviceCore::notify`] and [`DeviceCore::poll`] (and the transport entry
//! points built on them: MMIO `QueueNotify`, the shared-memory device end's
//! `process`, the vhost-user daemon's kick handler) do a bounded amount of
//! work whatever the driver does, and say whether they stopped with work
//! left:
//!
//! * **Bounded.** One call takes at most [`DeviceCore::budget`] chains
//!   (valid and malformed together; [`DEFAULT_BUDGET`] unless
//!   [`DeviceCore::set_budget`] says otherwise), and each chain's walk reads
//!   at most `max(queue size, N)` descriptors. A driver on another core that
//!   refills the ring as fast as the device empties it cannot keep one call
//!   running.
//! * **Live.** After each round the core re-enables notifications on every
//!   queue the device popped from in that round — not only the one notified
//!   — and checks the ring again (virtio 1.4 §"Available Buffer Notification
//!   Suppression": with `EVENT_IDX` the device writes `avail_event`, and the
//!   driver notifies only when its index passes it; §"Driver Notifications").
//!   The re-check closes the race with a driver that added a buffer before
//!   it saw the re-enable: the core goes round again while it finds buffers
//!   the device is taking.
//! * **Told.** When the budget runs out with buffers still there, the call
//!   returns [`Service::WorkLeft`] (`#[must_use]`). The driver has seen
//!   notifications enabled past those buffers and will not notify for them,
//!   so the embedder must call [`DeviceCore::poll`] again: a VMM re-enters
//!   after its other work, firmware re-pends its doorbell interrupt, the
//!   daemon re-polls from its event loop. [`DeviceCore::work_left`] tells
//!   the same after calls that return nothing (`DRIVER_OK`, `QueueReady`).

mod core;
mod error;
mod journal;
mod queues;
#[cfg(test)]
#[cfg(feature = "driver")]
mod tests;

pub use self::core::{DEFAULT_QUEUE_CAPACITY, DeviceCore};
pub use error::{FeaturesError, NeedsResetCause, QueueSetupError};
pub use journal::{Journal, NoJournal};
pub use queues::DeviceQueues;

use crate::memory::GuestMemory;
use crate::spec::{DeviceId, Features};

#[cfg(doc)]
use crate::queue::Queue;

/// The device-independent ring features [`DeviceCore`] offers to every
/// driver, besides `VERSION_1`: exactly what the queue engines of this
/// build honour. `RING_RESET` and `NOTIFICATION_DATA` always;
/// `INDIRECT_DESC`, `EVENT_IDX` and `RING_PACKED` only with the cargo
/// features `indirect`, `event-idx` and `packed` (all on by default), so a
/// build without one never offers what it cannot serve.
///
/// `IN_ORDER` is not here: it makes the *device* complete buffers in order,
/// so a device opts in by offering it from [`VirtioDevice::features`]
/// ([`OPT_IN_RING_FEATURES`]).
pub const RING_FEATURES: Features = Features::RING_RESET
    .union(Features::NOTIFICATION_DATA)
    .union(compiled(
        cfg!(feature = "indirect"),
        Features::INDIRECT_DESC,
    ))
    .union(compiled(cfg!(feature = "event-idx"), Features::EVENT_IDX))
    .union(compiled(cfg!(feature = "packed"), Features::RING_PACKED));

/// `bits` when the capability is compiled in, else nothing.
const fn compiled(on: bool, bits: Features) -> Features {
    if on { bits } else { Features::empty() }
}

/// Ring features a device may add to its offer when it honours what they
/// ask of the device (`IN_ORDER`: buffers completed in the order popped).
pub const OPT_IN_RING_FEATURES: Features = Features::IN_ORDER;

/// Feature bits a device may offer as its own: the device-specific ranges
/// 0–23 and 50–63 (virtio 1.4 §"Feature Bits").
pub const DEVICE_FEATURE_MASK: Features =
    Features::from_bits_retain(0x00ff_ffff | 0xfffc_0000_0000_0000);

/// `InterruptStatus` bit 0: a used buffer notification.
pub const INTERRUPT_USED_BUFFER: u32 = 1 << 0;
/// `InterruptStatus` bit 1: a configuration change notification.
pub const INTERRUPT_CONFIG_CHANGE: u32 = 1 << 1;

/// Chains one call that serves queues may take, unless
/// [`DeviceCore::set_budget`] says otherwise: enough to fill a batch of a
/// typical ring, small enough for an interrupt handler.
pub const DEFAULT_BUDGET: u32 = 64;

/// What a call that serves queues left behind (the liveness contract in the
/// [module docs](self)).
#[must_use = "on WorkLeft the embedder must call DeviceCore::poll again: the driver will not notify"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Service {
    /// Nothing is left that a driver notification would not announce.
    Done,
    /// The budget ran out with buffers still available: call
    /// [`DeviceCore::poll`] again.
    WorkLeft,
}

impl Service {
    /// True for [`Service::WorkLeft`].
    pub fn work_left(self) -> bool {
        self == Self::WorkLeft
    }
}

/// What the core does with a chain the queue engine rejected
/// ([`crate::queue::QueueError::Chain`]); a device says it per queue in
/// [`VirtioDevice::malformed_chain`].
///
/// A malformed request must never read as a success: a device with a status
/// field names the error status and where it goes, and the core writes it
/// into the writable descriptor the queue located
/// ([`crate::queue::ChainError::salvage`]). Where there is no such
/// descriptor (no writable part, or the walk could not reach the chain's
/// end), the chain is returned with used length 0 and the device enters
/// `DEVICE_NEEDS_RESET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MalformedChain {
    /// Return it to the driver with used length 0 and keep going, for a
    /// device whose protocol has no status (entropy, console): the driver
    /// gets its buffer back and sees nothing written.
    ReturnEmpty,
    /// Return it with used length 0 and enter `DEVICE_NEEDS_RESET`, for
    /// devices whose protocol cannot survive a lost request.
    NeedsReset,
    /// Write these bytes so they end at the last byte of the chain's last
    /// descriptor, which must be device-writable (block's status byte,
    /// I2C's, SPI's result). The used length stays 0 (virtio 1.4 §"The
    /// Virtqueue Used Ring": the device MAY write more than `len`).
    StatusAtEnd(&'static [u8]),
    /// Write these bytes at the start of the chain's first device-writable
    /// descriptor and report them as the used length (a response whose
    /// status comes first, as GPIO's).
    StatusAtStart(&'static [u8]),
}

/// A virtio device model: what it offers and how it serves its queues.
///
/// The device never sees a transport or a raw ring. [`DeviceCore`] calls it
/// with the negotiated features and hands it only validated chains through
/// [`DeviceQueues`]. Methods have no error results: a device answers a bad
/// request on the wire (status byte, used length 0) and reports an
/// unrecoverable problem with [`DeviceQueues::set_needs_reset`].
pub trait VirtioDevice {
    /// What a malformed chain on `queue` leads to (asked when the queue is
    /// built). The default suits a device without a status field.
    fn malformed_chain(&self, queue: u16) -> MalformedChain {
        let _ = queue;
        MalformedChain::ReturnEmpty
    }

    /// The device ID (virtio 1.4 §"Device Types").
    fn device_id(&self) -> DeviceId;

    /// The device's own feature bits (ranges in [`DEVICE_FEATURE_MASK`]),
    /// plus any of [`OPT_IN_RING_FEATURES`] it honours. Other bits are
    /// ignored; the core adds `VERSION_1` and [`RING_FEATURES`].
    fn features(&self) -> Features;

    /// Number of virtqueues the device has (the most any negotiated feature
    /// set can use).
    fn num_queues(&self) -> u16;

    /// Largest size the driver may give `queue` (at most 32768). The core
    /// only asks for `queue < num_queues()`.
    fn max_queue_size(&self, queue: u16) -> u16;

    /// Size of the device-specific configuration space in bytes.
    fn config_len(&self) -> u32 {
        0
    }

    /// Reads configuration bytes at `offset` into `data`. Bytes beyond the
    /// configuration read as 0 ([`read_config_bytes`] does this for a
    /// `zerocopy` config struct). Must be allowed in any status, including
    /// before `FEATURES_OK` (virtio 1.4 §"Device Configuration Space").
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        let _ = offset;
        data.fill(0);
    }

    /// The driver wrote configuration bytes at `offset`. Writes to
    /// read-only fields are ignored. Called in any status.
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        let _ = (offset, data);
    }

    /// The device's veto at `FEATURES_OK`: `Err` refuses the feature set
    /// (it is already known to be a subset of what was offered, with
    /// `VERSION_1`).
    ///
    /// # Errors
    /// [`FeaturesError::Rejected`] to refuse.
    fn check_features(&self, features: Features) -> Result<(), FeaturesError> {
        let _ = features;
        Ok(())
    }

    /// The driver set `DRIVER_OK` with these negotiated features; the
    /// queues the driver enabled are built.
    fn activate(&mut self, features: Features) {
        let _ = features;
    }

    /// The device was reset: forget every held chain and all per-driver
    /// state (a held chain's head is meaningless after a reset).
    fn reset(&mut self);

    /// One queue was reset (`RING_RESET`) or disabled: forget the chains
    /// held from it.
    fn queue_reset(&mut self, queue: u16) {
        let _ = queue;
    }

    /// The driver notified `queue` (or the core is catching up: after
    /// `DRIVER_OK`, or on a queue left with work by an earlier call): serve
    /// what it has. Spurious calls must be harmless. Pop until
    /// [`DeviceQueues::pop`] returns `false` (it does when the call's budget
    /// is spent) or the device cannot take more now.
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    );

    /// Something outside the driver may have work for the device (input
    /// arrived at a console backend, a timer fired): the embedder calls
    /// [`DeviceCore::poll`], which lands here.
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        let _ = queues;
    }
}

/// Serves a configuration read from a device's configuration bytes:
/// copies what overlaps `config[offset..]` and zero-fills the rest.
pub fn read_config_bytes(config: &[u8], offset: u32, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    let Some(src) = config.get(start..) else {
        return;
    };
    // A zip, not `copy_from_slice`: no length-mismatch panic path in a
    // firmware image.
    for (dst, src) in data.iter_mut().zip(src) {
        *dst = *src;
    }
}

#[cfg(test)]
mod build_tests {
    use super::RING_FEATURES;
    use crate::memory::Region;
    use crate::queue::{ConfigError, Queue, QueueConfig};
    use crate::spec::Features;

    /// The core offers exactly the ring capabilities compiled in.
    #[test]
    fn offered_ring_features_follow_the_cargo_features() {
        for (on, bit) in [
            (cfg!(feature = "packed"), Features::RING_PACKED),
            (cfg!(feature = "indirect"), Features::INDIRECT_DESC),
            (cfg!(feature = "event-idx"), Features::EVENT_IDX),
            (true, Features::RING_RESET),
            (true, Features::NOTIFICATION_DATA),
        ] {
            assert_eq!(RING_FEATURES.contains(bit), on, "{bit:?}");
        }
    }

    /// Without the packed engine a packed configuration is refused, not
    /// served as split.
    #[test]
    fn a_packed_ring_needs_the_packed_engine() {
        let mut ram = [0u64; 512];
        let mem = Region::new(0, zerocopy::IntoBytes::as_mut_bytes(&mut ram[..])).unwrap();
        let config = QueueConfig {
            size: 4,
            desc_addr: 0,
            driver_addr: 0x100,
            device_addr: 0x200,
        };
        let built = Queue::<4>::new(&mem, config, Features::RING_PACKED);
        if cfg!(feature = "packed") {
            assert!(built.unwrap().is_packed());
        } else {
            assert!(matches!(built, Err(ConfigError::PackedNotCompiled)));
        }
    }
}
