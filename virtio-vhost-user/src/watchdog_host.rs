//! The host side of the watchdog device: a monotonic clock from
//! [`std::time::Instant`] and an expiry action that runs a command.
//!
//! The watchdog protocol is not standardized (see
//! [`virtio_devices::watchdog`]): it is cloud-hypervisor's de-facto one.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use log::{error, warn};
use virtio_core::device::{DeviceQueues, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::spec::{DeviceId, Features};
use virtio_devices::watchdog::{Clock, ExpiryAction, Watchdog};

use crate::connection::HostEvents;

/// [`Clock`] over [`Instant`]: time since the clock was made.
#[derive(Clone, Copy, Debug)]
pub struct StdClock {
    origin: Instant,
}

impl StdClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Runs `/bin/sh -c COMMAND` when the guest stops pinging, with
/// `WATCHDOG_SINCE_MS` (milliseconds since the last ping) in its
/// environment; without a command, only logs. The command runs in the
/// background (a thread reaps it), so the device loop never waits on it.
#[derive(Clone, Debug, Default)]
pub struct CommandAction {
    command: Option<String>,
    runs: u32,
}

impl CommandAction {
    /// An action running `command` (or only logging, for `None`).
    pub fn new(command: Option<String>) -> Self {
        Self { command, runs: 0 }
    }

    /// Times the action ran.
    pub fn runs(&self) -> u32 {
        self.runs
    }
}

impl ExpiryAction for CommandAction {
    fn expired(&mut self, since_ping: Duration) {
        self.runs = self.runs.saturating_add(1);
        warn!(
            "watchdog expired: no ping for {:.1} s",
            since_ping.as_secs_f64()
        );
        let Some(command) = &self.command else {
            return;
        };
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env("WATCHDOG_SINCE_MS", since_ping.as_millis().to_string())
            .stdin(Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                std::thread::spawn(move || match child.wait() {
                    Ok(status) if !status.success() => {
                        warn!("watchdog expiry command exited with {status}");
                    }
                    Ok(_) => {}
                    Err(e) => error!("watchdog expiry command: {e}"),
                });
            }
            Err(e) => error!("cannot run the watchdog expiry command: {e}"),
        }
    }
}

/// The daemon's watchdog: the device, and the read end of a ticker whose
/// thread writes a byte every `period`, so the connection's loop (which
/// otherwise sleeps until the socket or a kick wakes it) checks the
/// deadline at least that often ([`Ticks`] is its [`HostEvents`]).
#[derive(Debug)]
pub struct HostWatchdog {
    dog: Watchdog<StdClock, CommandAction>,
    tick: UnixStream,
}

impl HostWatchdog {
    /// Wraps `dog` and starts its ticker thread (it ends when the device
    /// is dropped).
    ///
    /// # Errors
    /// The socket pair or the thread cannot be made.
    pub fn new(dog: Watchdog<StdClock, CommandAction>, period: Duration) -> io::Result<Self> {
        let (tick, mut ticker) = UnixStream::pair()?;
        tick.set_nonblocking(true)?;
        std::thread::Builder::new()
            .name("watchdog-tick".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(period);
                    // The device end is gone, or full of ticks not yet
                    // read: stop, or skip this one.
                    match ticker.write(&[0]) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            })?;
        Ok(Self { dog, tick })
    }

    /// The device.
    pub fn watchdog(&self) -> &Watchdog<StdClock, CommandAction> {
        &self.dog
    }
}

/// The [`HostEvents`] of a [`HostWatchdog`]: its ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ticks;

impl HostEvents<HostWatchdog> for Ticks {
    fn fds<'a>(&'a self, device: &'a HostWatchdog) -> Vec<(usize, BorrowedFd<'a>)> {
        vec![(0, device.tick.as_fd())]
    }

    fn ready(&mut self, device: &mut HostWatchdog, _tokens: &[usize]) -> io::Result<bool> {
        let mut buf = [0u8; 64];
        loop {
            match device.tick.read(&mut buf) {
                Ok(0) => return Err(io::Error::other("watchdog ticker stopped")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // The loop's poll that follows runs the deadline check; this makes
        // it explicit for a device that is not live (no driver yet).
        device.dog.check();
        // No configuration space, so nothing to tell the frontend.
        Ok(false)
    }
}

impl VirtioDevice for HostWatchdog {
    fn device_id(&self) -> DeviceId {
        self.dog.device_id()
    }
    fn features(&self) -> Features {
        self.dog.features()
    }
    fn num_queues(&self) -> u16 {
        self.dog.num_queues()
    }
    fn max_queue_size(&self, queue: u16) -> u16 {
        self.dog.max_queue_size(queue)
    }
    fn reset(&mut self) {
        self.dog.reset();
    }
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        self.dog.queue_notify(queue, queues);
    }
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.dog.poll(queues);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_command_runs_with_the_time_since_the_ping() {
        let dir = std::env::temp_dir().join(format!("wd-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let mut action =
            CommandAction::new(Some(format!("echo $WATCHDOG_SINCE_MS > {}", out.display())));
        action.expired(Duration::from_millis(21_500));
        assert_eq!(action.runs(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = std::fs::read_to_string(&out)
                && s.trim() == "21500"
            {
                break;
            }
            assert!(Instant::now() < deadline, "the command did not run");
            std::thread::sleep(Duration::from_millis(10));
        }
        let clock = StdClock::new();
        let a = clock.now();
        assert!(clock.now() >= a);
    }

    #[test]
    fn ticks_wake_the_loop_and_the_deadline_fires() {
        let dog = Watchdog::new(StdClock::new(), CommandAction::new(None))
            .with_timeout(Duration::from_millis(30));
        let mut dev = HostWatchdog::new(dog, Duration::from_millis(5)).unwrap();
        // Armed by hand (a ping through a queue is the device's own test).
        assert!(!dev.watchdog().is_armed());
        let mut ticks = Ticks;
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ticks.fds(&dev).len(), 1);
        ticks.ready(&mut dev, &[0]).unwrap();
        assert_eq!(dev.watchdog().stats().expiries, 0, "disarmed: never fires");
    }
}
