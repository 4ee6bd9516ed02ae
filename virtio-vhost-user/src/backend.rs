//! The vhost-user request handler: protocol messages onto [`DeviceCore`].
//!
//! See the [crate docs](crate) for how the protocol maps onto the status
//! machine. Each handler method checks its message against the state of the
//! connection and either applies it or returns an error, which the `vhost`
//! crate turns into a negative `REPLY_ACK` when the frontend asked for one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use vhost::VhostUserMemoryRegionBase;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Backend, Error as VhostError, GpuBackend, Result as VhostResult, VhostUserBackendReqHandlerMut,
};
use virtio_core::device::{
    DEFAULT_QUEUE_CAPACITY, DeviceCore, FeaturesError, INTERRUPT_CONFIG_CHANGE,
    INTERRUPT_USED_BUFFER, Journal, QueueSetupError, Service, VirtioDevice,
};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::RingArea;
use virtio_core::spec::{DeviceStatus, Features};

use crate::inflight::Inflight;
use crate::memory::{GuestRam, MAX_REGIONS, MapError, MemoryTable, RegionSpec, UnsealedMemory};
use crate::worker::{self, RingSetup, Shardable, Worker};

/// Most virtqueues a served device may have.
pub const MAX_QUEUES: usize = 16;

/// Largest `GET_CONFIG` / `SET_CONFIG` payload accepted (the virtio
/// configuration space is at most 256 bytes on PCI).
pub const MAX_CONFIG_LEN: u32 = 256;

/// `VHOST_USER_F_PROTOCOL_FEATURES`: a vhost-user bit, not a virtio one.
const PROTOCOL_FEATURES: u64 = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// Ring features the core offers that vhost-user cannot carry: kicks are
/// eventfds (no notification data) and there is no per-ring reset message
/// in the protocol version QEMU speaks here.
const NOT_OVER_VHOST_USER: Features = Features::NOTIFICATION_DATA.union(Features::RING_RESET);

/// The core this daemon runs: one device over the frontend's memory, with
/// the frontend's inflight region as its record of chains in flight.
pub type Core<D> = DeviceCore<D, GuestRam, MAX_QUEUES, DEFAULT_QUEUE_CAPACITY, Inflight>;

/// One virtqueue as the frontend has described it so far.
#[derive(Debug, Default)]
struct Vring {
    /// `SET_VRING_NUM`.
    size: u16,
    /// `SET_VRING_ADDR`, in the frontend's address space.
    addrs: Option<RingAddrs>,
    /// `SET_VRING_BASE`, or where the ring stopped.
    base: u16,
    kick: Option<File>,
    call: Option<File>,
    /// Started by `SET_VRING_KICK`, stopped by `GET_VRING_BASE`.
    started: bool,
    /// `SET_VRING_ENABLE` (always true without protocol features).
    enabled: bool,
}

#[derive(Clone, Copy, Debug)]
struct RingAddrs {
    desc: u64,
    avail: u64,
    used: u64,
}

/// A served device and everything one frontend connection told us.
#[derive(Debug)]
pub struct VhostUserDevice<D: VirtioDevice> {
    core: Core<D>,
    vrings: Vec<Vring>,
    protocol_features: VhostUserProtocolFeatures,
    /// `VHOST_USER_F_PROTOCOL_FEATURES` was acked in `SET_FEATURES`.
    rings_start_disabled: bool,
    /// Bumped whenever a kick descriptor changes, so the poll loop knows
    /// to rebuild its set.
    kick_generation: u64,
    owner: bool,
    /// Whether regions may come from unsealed files.
    unsealed: UnsealedMemory,
    /// The frontend's socket for our requests (`BACKEND_REQ`), over which a
    /// configuration change is announced.
    backend_channel: Option<UnixStream>,
    /// Serves a ring on a thread of its own ([`Self::with_parallel_queues`]).
    start_worker: Option<StartWorker<D>>,
    /// The ring each worker serves, by queue.
    workers: Vec<Option<Worker>>,
}

/// Starts a [`Worker`] for a ring with a shard of the device.
type StartWorker<D> = fn(&D, RingSetup) -> io::Result<Worker>;

/// A ring as the frontend described it, in guest physical addresses, and
/// where it resumes (`DeviceCore::set_queue_base`'s form).
#[derive(Clone, Copy, Debug)]
pub struct RingPlace {
    /// Ring size.
    pub size: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Driver area (available ring).
    pub avail: u64,
    /// Device area (used ring).
    pub used: u64,
    /// Where the ring resumes.
    pub base: u16,
}

/// Drives `core` from reset to `DRIVER_OK` with the frontend's `features`:
/// vhost-user has no status register, so the daemon plays the driver's
/// part of the status machine (the connection's core, and each worker's).
///
/// # Errors
/// The core refused the features at `FEATURES_OK`.
pub(crate) fn negotiate<
    D: VirtioDevice,
    M: GuestMemory,
    const Q: usize,
    const S: usize,
    J: Journal,
>(
    core: &mut DeviceCore<D, M, Q, S, J>,
    features: Features,
) -> Result<(), FeaturesError> {
    let (ack, driver) = (
        DeviceStatus::ACKNOWLEDGE.bits(),
        DeviceStatus::DRIVER.bits(),
    );
    let features_ok = ack | driver | DeviceStatus::FEATURES_OK.bits();
    core.set_status(ack);
    core.set_status(ack | driver);
    core.set_driver_features(features);
    core.set_status(features_ok);
    if let Some(e) = core.features_error() {
        return Err(e);
    }
    core.set_status(features_ok | DeviceStatus::DRIVER_OK.bits());
    Ok(())
}

/// Configures `queue` of a live `core` at `ring` and enables it (which
/// serves what the ring already holds).
///
/// # Errors
/// The core refused a register (size, an area, the base).
pub(crate) fn start_ring<
    D: VirtioDevice,
    M: GuestMemory,
    const Q: usize,
    const S: usize,
    J: Journal,
>(
    core: &mut DeviceCore<D, M, Q, S, J>,
    queue: u16,
    ring: RingPlace,
) -> Result<(), QueueSetupError> {
    core.set_queue_size(queue, u32::from(ring.size))?;
    core.set_queue_area(queue, RingArea::Descriptors, ring.desc)?;
    core.set_queue_area(queue, RingArea::Driver, ring.avail)?;
    core.set_queue_area(queue, RingArea::Device, ring.used)?;
    core.set_queue_base(queue, ring.base)?;
    core.set_queue_ready(queue, true)
}

/// A request the handler refuses: the `vhost` crate answers it with a
/// negative `REPLY_ACK` (when asked for one) and the connection goes on.
fn other(msg: impl Into<String>) -> VhostError {
    VhostError::ReqHandlerError(io::Error::other(msg.into()))
}

fn map_err(e: MapError) -> VhostError {
    other(e.to_string())
}

impl<D: VirtioDevice> VhostUserDevice<D> {
    /// A fresh connection's view of `device`.
    pub fn new(device: D) -> Self {
        let core = DeviceCore::with_journal(device, GuestRam::new(), Inflight::new());
        let vrings = (0..core.num_queues()).map(|_| Vring::default()).collect();
        Self {
            core,
            vrings,
            protocol_features: VhostUserProtocolFeatures::empty(),
            rings_start_disabled: false,
            kick_generation: 0,
            owner: false,
            unsealed: UnsealedMemory::Refuse,
            backend_channel: None,
            start_worker: None,
            workers: Vec::new(),
        }
    }

    /// Serves each ring on a thread of its own ([`crate::worker`]), for a
    /// device whose queues are independent (block).
    #[must_use]
    pub fn with_parallel_queues(mut self) -> Self
    where
        D: Shardable,
    {
        self.start_worker = Some(worker::start::<D>);
        self.workers = (0..self.core.num_queues()).map(|_| None).collect();
        self
    }

    /// Whether `queue` is served by a worker thread now.
    pub fn served_in_parallel(&self, queue: u16) -> bool {
        self.workers
            .get(usize::from(queue))
            .is_some_and(Option::is_some)
    }

    /// Stops `queue`'s worker, if one runs, keeping its ring's position;
    /// true if there was one.
    fn stop_worker(&mut self, queue: u16) -> bool {
        let Some(worker) = self
            .workers
            .get_mut(usize::from(queue))
            .and_then(Option::take)
        else {
            return false;
        };
        let base = worker.stop();
        if let (Some(base), Some(vring)) = (base, self.vrings.get_mut(usize::from(queue))) {
            vring.base = base;
        }
        self.kick_generation = self.kick_generation.wrapping_add(1);
        true
    }

    /// Runs `f` (a memory table change) with every worker stopped: each
    /// maps guest memory for itself, so each restarts, at its ring's
    /// position, over the new table.
    fn with_workers_paused<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> VhostResult<T>,
    ) -> VhostResult<T> {
        let running: Vec<u16> = (0..self.core.num_queues())
            .filter(|q| self.stop_worker(*q))
            .collect();
        let result = f(self);
        for queue in running {
            self.sync(queue)?;
        }
        result
    }

    /// Takes the frontend's backend request channel (`SET_BACKEND_REQ_FD`).
    ///
    /// # Errors
    /// `BACKEND_REQ` was not negotiated.
    pub fn set_backend_channel(&mut self, channel: UnixStream) -> Result<(), &'static str> {
        if !self
            .protocol_features
            .contains(VhostUserProtocolFeatures::BACKEND_REQ)
        {
            return Err("BACKEND_REQ was not negotiated");
        }
        self.backend_channel = Some(channel);
        Ok(())
    }

    /// The device's configuration changed (a block image resized): bump
    /// the configuration generation and tell the frontend, which re-reads
    /// the configuration space (`GET_CONFIG`) and interrupts the guest.
    pub fn config_changed(&mut self) {
        self.core.config_changed();
        self.signal();
    }

    /// Whether memory regions may come from files not sealed against
    /// shrinking (default: refused; see [`crate::memory`]).
    #[must_use]
    pub fn with_unsealed_memory(mut self, unsealed: UnsealedMemory) -> Self {
        self.unsealed = unsealed;
        self
    }

    /// The device core (for inspection and tests).
    pub fn core(&self) -> &Core<D> {
        &self.core
    }

    /// The served device.
    pub fn device(&self) -> &D {
        self.core.device()
    }

    /// The served device, mutably (for host events: a GPIO line the host
    /// reports; call [`Self::poll`] afterwards so the device can answer).
    pub fn device_mut(&mut self) -> &mut D {
        self.core.device_mut()
    }

    /// The kick descriptors of the started rings, with their queue index,
    /// duplicated so the poll loop can wait on them without holding the
    /// handler.
    ///
    /// # Errors
    /// `dup` failed.
    pub fn kick_fds(&self) -> io::Result<Vec<(u16, File)>> {
        let mut fds = Vec::new();
        for (queue, vring) in (0u16..).zip(&self.vrings) {
            if self.served_in_parallel(queue) {
                continue;
            }
            if let Some(kick) = &vring.kick {
                fds.push((queue, kick.try_clone()?));
            }
        }
        Ok(fds)
    }

    /// Changes whenever [`Self::kick_fds`] would change.
    pub fn kick_generation(&self) -> u64 {
        self.kick_generation
    }

    /// The frontend kicked `queue`: drain the eventfd, serve the queue
    /// within the core's budget, and signal its call eventfd if the driver
    /// is due an interrupt. On [`Service::WorkLeft`] the caller must call
    /// [`Self::poll`] again (the guest will not kick for what is left).
    pub fn kick(&mut self, queue: u16) -> Service {
        if self.served_in_parallel(queue) {
            // Its worker waits on this kick itself.
            return Service::Done;
        }
        let Some(vring) = self.vrings.get_mut(usize::from(queue)) else {
            return Service::Done;
        };
        if let Some(kick) = vring.kick.as_mut() {
            let mut count = [0u8; 8];
            // An eventfd read returns the counter and clears it, or would
            // block if someone else cleared it first; a non-eventfd (a peer
            // mistake) just yields data, EOF or an error, all harmless.
            let _ = kick.read(&mut count);
        }
        if !vring.started {
            return Service::Done;
        }
        let service = self.core.notify(u32::from(queue));
        self.signal();
        service
    }

    /// Continues work an earlier call left (and gives the device its poll
    /// turn), then signals what is due.
    pub fn poll(&mut self) -> Service {
        let service = self.core.poll();
        self.signal();
        service
    }

    /// Passes the core's pending interrupts to the frontend: a used-buffer
    /// interrupt on the call eventfd of each queue the core says is due one.
    fn signal(&mut self) {
        let status = self.core.interrupt_status();
        let due = self.core.take_used_queues();
        if status & INTERRUPT_USED_BUFFER != 0 {
            self.core.ack_interrupt(INTERRUPT_USED_BUFFER);
        }
        for (index, vring) in (0u32..64).zip(self.vrings.iter_mut()) {
            if due & (1u64 << index) == 0 || !vring.started {
                continue;
            }
            if let Some(call) = vring.call.as_mut() {
                // An eventfd write adds to its counter; failure means the
                // frontend closed it, which the next message will show.
                let _ = call.write(&1u64.to_ne_bytes());
            }
        }
        if status & INTERRUPT_CONFIG_CHANGE != 0 {
            self.core.ack_interrupt(INTERRUPT_CONFIG_CHANGE);
            if let Some(cause) = self.core.needs_reset_cause() {
                log::warn!("device needs reset: {cause}");
            } else {
                self.announce_config_change();
            }
        }
    }

    /// Sends `CONFIG_CHANGE_MSG` (backend request 2, no payload, no reply
    /// asked) if the frontend gave a channel and negotiated `CONFIG`; a
    /// channel that fails is dropped.
    fn announce_config_change(&mut self) {
        if !self
            .protocol_features
            .contains(VhostUserProtocolFeatures::CONFIG)
        {
            return;
        }
        let Some(channel) = self.backend_channel.as_mut() else {
            log::info!("configuration changed, but the frontend gave no backend channel");
            return;
        };
        let mut message = [0u8; 12];
        for (chunk, value) in message.chunks_exact_mut(4).zip([2u32, 0x1, 0]) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        match channel.write_all(&message) {
            Ok(()) => log::info!("configuration changed: told the frontend"),
            Err(e) => {
                log::warn!("backend channel failed, dropped: {e}");
                self.backend_channel = None;
            }
        }
    }

    fn vring(&mut self, index: u32) -> VhostResult<&mut Vring> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.vrings.get_mut(i))
            .ok_or_else(|| other(format!("no virtqueue {index}")))
    }

    fn queue_index(index: u32) -> VhostResult<u16> {
        u16::try_from(index).map_err(|_| other(format!("no virtqueue {index}")))
    }

    /// Stops `queue` in the core or its worker, wherever it runs, keeping
    /// its position.
    fn stop(&mut self, queue: u16) {
        self.stop_worker(queue);
        if !self.core.queue_ready(queue) {
            return;
        }
        let base = self.core.queue_base(queue);
        let _ = self.core.set_queue_ready(queue, false);
        // What the ring held stays in flight in the record, for its restart.
        self.core.journal_mut().stop(queue);
        if let (Some(base), Some(vring)) = (base, self.vrings.get_mut(usize::from(queue))) {
            vring.base = base;
        }
    }

    /// Starts `queue` in the core once it is started, enabled, fully
    /// described and the features are negotiated; stops it otherwise.
    fn sync(&mut self, queue: u16) -> VhostResult<()> {
        let Some(vring) = self.vrings.get(usize::from(queue)) else {
            return Ok(());
        };
        let want = vring.started && vring.enabled && self.core.is_live();
        if !want {
            self.stop(queue);
            return Ok(());
        }
        if self.core.queue_ready(queue) || self.served_in_parallel(queue) {
            return Ok(());
        }
        let addrs = vring
            .addrs
            .ok_or_else(|| other(format!("virtqueue {queue} started without addresses")))?;
        let (size, base) = (vring.size, vring.base);
        let mem = self.core.memory();
        let guest = |user: u64| {
            mem.user_to_guest(user).ok_or_else(|| {
                other(format!(
                    "virtqueue {queue}: address {user:#x} is not in guest memory"
                ))
            })
        };
        let (desc, avail, used) = (guest(addrs.desc)?, guest(addrs.avail)?, guest(addrs.used)?);
        // A split ring with an inflight record resumes past the chains the
        // record holds, which go first (see `crate::inflight`). A worker's
        // record is the same region mapped again, its queue 0 being this
        // queue.
        let used_idx = used
            .checked_add(2)
            .and_then(|at| self.core.memory().load_u16_acquire(at).ok())
            .ok_or_else(|| other(format!("virtqueue {queue}: used ring not in guest memory")))?;
        let packed = self.packed();
        let mut base = base;
        let mut resume = |record: &mut Inflight, index: u16| {
            if packed {
                record.stop(index);
            } else if let Some(at) = record.start_split(index, size, used_idx) {
                base = at;
            }
        };
        if let Some(start) = self.start_worker {
            let mut journal = self
                .core
                .journal()
                .for_queue(queue)
                .map_err(|e| other(format!("virtqueue {queue}: {e}")))?;
            resume(&mut journal, 0);
            let dup = |fd: Option<&File>, what: &str| {
                fd.map(File::try_clone)
                    .transpose()
                    .map_err(|e| other(format!("virtqueue {queue}: {what} eventfd: {e}")))
            };
            let kick = dup(vring.kick.as_ref(), "kick")?
                .ok_or_else(|| other(format!("virtqueue {queue} started without a kick")))?;
            let call = dup(vring.call.as_ref(), "call")?;
            let setup = RingSetup {
                queue,
                features: self.core.negotiated_features(),
                ring: RingPlace {
                    size,
                    desc,
                    avail,
                    used,
                    base,
                },
                mem: self.core.memory().duplicate().map_err(map_err)?,
                journal,
                kick,
                call,
            };
            let worker = start(self.core.device(), setup).map_err(|e| other(e.to_string()))?;
            if let Some(slot) = self.workers.get_mut(usize::from(queue)) {
                *slot = Some(worker);
            }
            self.kick_generation = self.kick_generation.wrapping_add(1);
            return Ok(());
        }
        resume(self.core.journal_mut(), queue);
        let ring = RingPlace {
            size,
            desc,
            avail,
            used,
            base,
        };
        start_ring(&mut self.core, queue, ring)
            .map_err(|e| other(format!("virtqueue {queue}: {e}")))?;
        if let Some(cause) = self.core.needs_reset_cause() {
            return Err(other(format!("virtqueue {queue} cannot start: {cause}")));
        }
        // Starting served what the driver had already queued.
        self.signal();
        Ok(())
    }

    fn sync_all(&mut self) -> VhostResult<()> {
        for queue in 0..self.core.num_queues() {
            self.sync(queue)?;
        }
        Ok(())
    }

    /// Back to the state of a fresh connection, keeping guest memory
    /// (`RESET_OWNER`, `RESET_DEVICE`).
    fn reset(&mut self) {
        for queue in 0..self.core.num_queues() {
            self.stop_worker(queue);
        }
        self.core.reset();
        // Chains from before a reset are nobody's: the record goes too (the
        // frontend hands a new one over before it starts the rings again).
        *self.core.journal_mut() = Inflight::new();
        for vring in &mut self.vrings {
            *vring = Vring::default();
        }
        self.kick_generation = self.kick_generation.wrapping_add(1);
    }

    fn packed(&self) -> bool {
        self.core
            .negotiated_features()
            .contains(Features::RING_PACKED)
    }

    fn offered_features(&self) -> u64 {
        self.core
            .device_features()
            .difference(NOT_OVER_VHOST_USER)
            .bits()
            | PROTOCOL_FEATURES
    }
}

impl<D: VirtioDevice> VhostUserBackendReqHandlerMut for VhostUserDevice<D> {
    fn set_owner(&mut self) -> VhostResult<()> {
        if self.owner {
            return Err(other("already owned"));
        }
        self.owner = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> VhostResult<()> {
        self.owner = false;
        self.reset();
        Ok(())
    }

    fn reset_device(&mut self) -> VhostResult<()> {
        self.reset();
        Ok(())
    }

    fn get_features(&mut self) -> VhostResult<u64> {
        Ok(self.offered_features())
    }

    /// The frontend's feature set is the driver's: negotiate it through the
    /// status machine (ACKNOWLEDGE, DRIVER, features, FEATURES_OK, DRIVER_OK).
    fn set_features(&mut self, features: u64) -> VhostResult<()> {
        let unoffered = features & !self.offered_features();
        if unoffered != 0 {
            return Err(other(format!("features {unoffered:#x} were not offered")));
        }
        self.rings_start_disabled = features & PROTOCOL_FEATURES != 0;
        let virtio = Features::from_bits_retain(features & !PROTOCOL_FEATURES);
        let running = (0..self.core.num_queues()).any(|q| self.core.queue_active(q));
        if running && self.core.negotiated_features() == virtio {
            // A repeat while rings run (e.g. dirty logging toggled).
            return Ok(());
        }
        // A new session (QEMU sends SET_FEATURES first whenever it starts
        // the device, also after a guest reset): the device starts over;
        // rings are rebuilt from what the frontend described.
        for queue in 0..self.core.num_queues() {
            self.stop(queue);
        }
        self.core.reset();
        negotiate(&mut self.core, virtio)
            .map_err(|e| other(format!("features {features:#x} refused: {e}")))?;
        self.sync_all()
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy_listening: Option<bool>,
    ) -> VhostResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        if ctx.len() != files.len() || ctx.len() > MAX_REGIONS {
            return Err(other("memory table and file descriptors do not match"));
        }
        let regions = ctx
            .iter()
            .map(|r| RegionSpec {
                guest_addr: r.guest_phys_addr,
                size: r.memory_size,
                user_addr: r.user_addr,
                mmap_offset: r.mmap_offset,
            })
            .zip(files)
            .collect();
        let table = MemoryTable::from_regions(regions, self.unsealed).map_err(map_err)?;
        self.with_workers_paused(|dev| dev.core.memory().replace(table).map_err(map_err))?;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VhostResult<()> {
        let queue = Self::queue_index(index)?;
        let max = self.core.queue_max_size(queue);
        let vring = self.vring(index)?;
        let size = u16::try_from(num)
            .ok()
            .filter(|n| *n != 0 && *n <= max)
            .ok_or_else(|| other(format!("virtqueue {index}: size {num} not in 1..={max}")))?;
        vring.size = size;
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VhostResult<()> {
        self.vring(index)?.addrs = Some(RingAddrs {
            desc: descriptor,
            avail: available,
            used,
        });
        Ok(())
    }

    /// Split: the next available index. Packed: the next available
    /// position (`slot | wrap << 15`) in the low half and the used position
    /// in the high half (QEMU's form); the device resumes its used position
    /// at the available one, which is the same once nothing is in flight,
    /// as is the case whenever this daemon stops a ring.
    fn set_vring_base(&mut self, index: u32, base: u32) -> VhostResult<()> {
        let packed = self.packed();
        let avail = u16::try_from(base & 0xffff).unwrap_or(0);
        if !packed && base > 0xffff {
            return Err(other(format!(
                "virtqueue {index}: split ring base {base:#x} above 16 bits"
            )));
        }
        self.vring(index)?.base = avail;
        Ok(())
    }

    /// Stops the ring and reports where it stopped: the next available
    /// index (split) or `slot | wrap << 15` (packed).
    fn get_vring_base(&mut self, index: u32) -> VhostResult<VhostUserVringState> {
        let queue = Self::queue_index(index)?;
        self.vring(index)?;
        self.stop(queue);
        let vring = self.vring(index)?;
        vring.started = false;
        // The frontend sends the kick and call descriptors again on restart.
        vring.kick = None;
        vring.call = None;
        let base = u32::from(vring.base);
        self.kick_generation = self.kick_generation.wrapping_add(1);
        // Packed: the used position equals the available one (nothing is
        // in flight once the ring stopped), in the high half.
        let state = if self.packed() {
            base | base.wrapping_shl(16)
        } else {
            base
        };
        Ok(VhostUserVringState::new(index, state))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VhostResult<()> {
        let start_enabled = !self.rings_start_disabled;
        // A worker waits on the old descriptor: it restarts with the new.
        self.vring(u32::from(index))?;
        self.stop_worker(u16::from(index));
        let vring = self.vring(u32::from(index))?;
        // Without a descriptor the backend would have to poll the ring.
        let fd = fd.ok_or_else(|| {
            other(format!(
                "virtqueue {index}: polling without a kick eventfd is not supported"
            ))
        })?;
        // Non-blocking: the frontend may drain the eventfd itself between
        // our poll and our read (QEMU does when it takes a ring back).
        rustix::io::ioctl_fionbio(&fd, true)
            .map_err(|e| other(format!("virtqueue {index}: kick eventfd: {e}")))?;
        vring.kick = Some(fd);
        vring.started = true;
        if start_enabled {
            vring.enabled = true;
        }
        self.kick_generation = self.kick_generation.wrapping_add(1);
        self.sync(u16::from(index))
    }

    /// QEMU changes a running ring's call eventfd (interrupt masking); a
    /// worker signalling the old one would lose interrupts, so it restarts.
    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VhostResult<()> {
        self.vring(u32::from(index))?;
        let restart = self.stop_worker(u16::from(index));
        self.vring(u32::from(index))?.call = fd;
        if restart {
            self.sync(u16::from(index))?;
        }
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VhostResult<()> {
        self.vring(u32::from(index))?;
        Ok(())
    }

    /// `CONFIG` only for devices with a configuration space.
    fn get_protocol_features(&mut self) -> VhostResult<VhostUserProtocolFeatures> {
        let mut features = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::INFLIGHT_SHMFD;
        if self.core.config_len() > 0 {
            features |= VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::BACKEND_REQ;
        }
        Ok(features)
    }

    fn set_protocol_features(&mut self, features: u64) -> VhostResult<()> {
        let offered = self.get_protocol_features()?;
        self.protocol_features = VhostUserProtocolFeatures::from_bits(features)
            .filter(|f| offered.contains(*f))
            .ok_or_else(|| other(format!("protocol features {features:#x} were not offered")))?;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VhostResult<u64> {
        Ok(u64::from(self.core.num_queues()))
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VhostResult<()> {
        self.vring(index)?.enabled = enable;
        self.sync(Self::queue_index(index)?)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VhostResult<Vec<u8>> {
        let end = offset.checked_add(size).filter(|e| *e <= MAX_CONFIG_LEN);
        let len = end
            .and_then(|_| usize::try_from(size).ok())
            .ok_or_else(|| other(format!("config read {offset}+{size} out of range")))?;
        let mut buf = vec![0u8; len];
        self.core.read_config(offset, &mut buf);
        Ok(buf)
    }

    fn set_config(
        &mut self,
        offset: u32,
        buf: &[u8],
        _flags: VhostUserConfigFlags,
    ) -> VhostResult<()> {
        let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        if offset
            .checked_add(size)
            .is_none_or(|e| e > self.core.config_len())
        {
            return Err(other(format!("config write {offset}+{size} out of range")));
        }
        self.core.write_config(offset, buf);
        Ok(())
    }

    fn set_backend_req_fd(&mut self, _backend: Backend) {}

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VhostResult<()> {
        Err(other("not a GPU device"))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VhostResult<File> {
        Err(other("shared objects not supported"))
    }

    /// A fresh record of chains in flight for the frontend to keep
    /// ([`crate::inflight`]).
    fn get_inflight_fd(
        &mut self,
        inflight: &VhostUserInflight,
    ) -> VhostResult<(VhostUserInflight, File)> {
        let (num_queues, queue_size) = (inflight.num_queues, inflight.queue_size);
        let (file, mmap_size) = self
            .core
            .journal_mut()
            .create(num_queues, queue_size)
            .map_err(|e| other(e.to_string()))?;
        let reply = VhostUserInflight {
            mmap_size,
            mmap_offset: 0,
            num_queues,
            queue_size,
        };
        Ok((reply, file))
    }

    /// The record the frontend kept (ours, or a predecessor's after a
    /// restart): rings started from now on recover from it.
    fn set_inflight_fd(&mut self, inflight: &VhostUserInflight, file: File) -> VhostResult<()> {
        let unsealed = self.unsealed;
        self.core
            .journal_mut()
            .adopt(
                &file,
                inflight.mmap_offset,
                inflight.mmap_size,
                inflight.num_queues,
                inflight.queue_size,
                unsealed,
            )
            .map_err(|e| other(e.to_string()))?;
        log::info!(
            "inflight region adopted: {} queue(s) of {}",
            inflight.num_queues,
            inflight.queue_size
        );
        Ok(())
    }

    fn get_max_mem_slots(&mut self) -> VhostResult<u64> {
        Ok(MAX_REGIONS as u64)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        _postcopy_listening: Option<bool>,
    ) -> VhostResult<Option<VhostUserMemoryRegionBase>> {
        let spec = RegionSpec {
            guest_addr: region.guest_phys_addr,
            size: region.memory_size,
            user_addr: region.user_addr,
            mmap_offset: region.mmap_offset,
        };
        let unsealed = self.unsealed;
        self.with_workers_paused(|dev| {
            dev.core
                .memory()
                .update(|table| table.add(spec, &fd, unsealed))
                .map_err(map_err)
        })?;
        Ok(None)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VhostResult<()> {
        let guest_addr = region.guest_phys_addr;
        self.with_workers_paused(|dev| {
            dev.core
                .memory()
                .update(|table| table.remove(guest_addr))
                .map_err(map_err)
        })
    }

    fn set_device_state_fd(
        &mut self,
        _direction: VhostTransferStateDirection,
        _phase: VhostTransferStatePhase,
        _fd: File,
    ) -> VhostResult<Option<File>> {
        Err(other("migration not supported"))
    }

    fn check_device_state(&mut self) -> VhostResult<()> {
        Err(other("migration not supported"))
    }

    fn get_shmem_config(&mut self) -> VhostResult<VhostUserShMemConfig> {
        Err(other("shared memory regions not supported"))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VhostResult<()> {
        Err(other("dirty logging not supported"))
    }
}

impl<D: VirtioDevice> Drop for VhostUserDevice<D> {
    /// The connection is over: every worker stops and is joined.
    fn drop(&mut self) {
        for queue in 0..self.core.num_queues() {
            self.stop_worker(queue);
        }
    }
}
