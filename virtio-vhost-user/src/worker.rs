//! Queues served in parallel: one thread per virtqueue, each with a core of
//! its own.
//!
//! A connection's thread serves the vhost-user socket; by default it also
//! serves every ring, one request at a time. A device whose queues are
//! independent of each other (block: any request on any queue, the image
//! shared) implements [`Shardable`], and the connection then serves each
//! started ring on a worker thread of its own, so a guest with several
//! request queues (`num-queues`, one per vCPU) has them served at once.
//!
//! Each worker owns a complete [`DeviceCore`] of one queue over its own
//! instance of the device ([`Shardable::shard`]: the same features,
//! configuration and backend) and its own mapping of guest memory (the
//! same pages, mapped again), so nothing is locked on the request path and
//! every guarantee of the core holds per worker: validated chains only, a
//! budget per call with work left served before waiting again, and the
//! notification re-arm. The connection's core keeps the device's status,
//! features and configuration; its queue `q` stays stopped while worker
//! `q` serves ring `q`.
//!
//! A worker is started when its ring starts (`SET_VRING_KICK` and enable)
//! and stopped, reporting where its ring stopped, whenever the ring would
//! be: `GET_VRING_BASE`, a new session (`SET_FEATURES`), a device reset,
//! and around anything that changes what it holds (a new call or kick
//! eventfd, a memory table change), after which it starts again at that
//! position. A ring that starts with an inflight record resubmits from it
//! in the worker ([`Inflight::for_queue`]). Dropping the connection stops
//! and joins every worker.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use virtio_core::device::{
    DEFAULT_QUEUE_CAPACITY, DeviceCore, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER,
    VirtioDevice,
};
use virtio_core::spec::Features;

use crate::backend::{RingPlace, negotiate, start_ring};

use crate::inflight::Inflight;
use crate::memory::GuestRam;

/// A device whose queues can be served each on its own thread.
pub trait Shardable: VirtioDevice + Send + Sized + 'static {
    /// Another instance of this device for serving one of its queues: the
    /// same features and configuration, over the same backend (a second
    /// handle on it), independent of this one on the request path.
    ///
    /// # Errors
    /// The backend cannot be shared (a `dup` failed).
    fn shard(&self) -> io::Result<Self>;
}

/// The core a worker runs: one queue, the device's ring `q` as its queue 0.
type WorkerCore<D> = DeviceCore<D, GuestRam, 1, DEFAULT_QUEUE_CAPACITY, Inflight>;

/// What a worker needs to serve one ring.
#[derive(Debug)]
pub struct RingSetup {
    /// The device's queue index (for logs and the thread's name).
    pub queue: u16,
    /// The negotiated virtio features.
    pub features: Features,
    /// The ring: size, areas, where it resumes.
    pub ring: RingPlace,
    /// Guest memory, mapped for this worker.
    pub mem: GuestRam,
    /// The ring's inflight record (possibly recording nothing).
    pub journal: Inflight,
    /// The kick eventfd (non-blocking) and the call eventfd.
    pub kick: File,
    /// The call eventfd, if the frontend gave one.
    pub call: Option<File>,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    stop: OwnedFd,
    thread: JoinHandle<u16>,
}

impl Worker {
    /// Stops the worker and waits for it; returns where its ring stopped
    /// (in the form of `DeviceCore::set_queue_base`).
    pub fn stop(self) -> Option<u16> {
        // An eventfd write only fails if the counter would overflow.
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        self.thread.join().ok()
    }
}

/// Starts serving `setup`'s ring on a new thread with a shard of `device`.
/// The ring is built (and what it already holds served) before this
/// returns, so a bad ring is this call's error.
///
/// # Errors
/// The shard, the eventfd or the thread cannot be made, or the ring is
/// refused (its configuration, or the features).
pub fn start<D: Shardable>(device: &D, setup: RingSetup) -> io::Result<Worker> {
    let RingSetup {
        queue,
        features,
        ring,
        mem,
        journal,
        kick,
        call,
    } = setup;
    let mut core: WorkerCore<D> = DeviceCore::with_journal(device.shard()?, mem, journal);
    negotiate(&mut core, features)
        .map_err(|e| io::Error::other(format!("virtqueue {queue}: features refused: {e}")))?;
    start_ring(&mut core, 0, ring)
        .map_err(|e| io::Error::other(format!("virtqueue {queue}: {e}")))?;
    if let Some(cause) = core.needs_reset_cause() {
        return Err(io::Error::other(format!(
            "virtqueue {queue} cannot start: {cause}"
        )));
    }
    let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let stopped = stop.try_clone()?;
    let thread = std::thread::Builder::new()
        .name(format!("virtqueue-{queue}"))
        .spawn(move || serve(core, queue, kick, call, &stopped))?;
    Ok(Worker { stop, thread })
}

/// The worker's loop: wait for a kick (or the stop), serve within the
/// budget, signal; with work left, look again without blocking.
fn serve<D: Shardable>(
    mut core: WorkerCore<D>,
    queue: u16,
    mut kick: File,
    mut call: Option<File>,
    stop: &OwnedFd,
) -> u16 {
    // Starting the ring served what it held; a budget may have been left.
    let mut work_left = core.work_left();
    signal(&mut core, call.as_mut(), queue);
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let (stopping, kicked) = {
            let mut fds = [
                PollFd::new(stop, PollFlags::IN),
                PollFd::new(&kick, PollFlags::IN),
            ];
            let timeout = if work_left { Some(&now) } else { None };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("virtqueue {queue}: poll failed, worker stops: {e}");
                    break;
                }
            }
            let mut ready = fds.iter().map(|fd| !fd.revents().is_empty());
            (ready.next().unwrap_or(false), ready.next().unwrap_or(false))
        };
        if stopping {
            break;
        }
        let service = if kicked {
            let mut count = [0u8; 8];
            // Clears the eventfd; would block only if it was cleared
            // meanwhile, and a non-eventfd just yields data or an error.
            let _ = kick.read(&mut count);
            core.notify(0)
        } else if work_left {
            core.poll()
        } else {
            continue;
        };
        work_left = service.work_left();
        signal(&mut core, call.as_mut(), queue);
    }
    core.queue_base(0).unwrap_or(0)
}

/// A used-buffer interrupt on the call eventfd when the core says one is
/// due; other interrupt bits are the connection's core's business.
fn signal<D: Shardable>(core: &mut WorkerCore<D>, call: Option<&mut File>, queue: u16) {
    let due = core.take_used_queues();
    let status = core.interrupt_status();
    core.ack_interrupt(status & (INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE));
    if status & INTERRUPT_CONFIG_CHANGE != 0
        && let Some(cause) = core.needs_reset_cause()
    {
        log::warn!("virtqueue {queue}: device needs reset: {cause}");
    }
    if due & 1 != 0
        && let Some(call) = call
    {
        // Failure means the frontend closed it; the next message shows it.
        let _ = call.write(&1u64.to_ne_bytes());
    }
}
