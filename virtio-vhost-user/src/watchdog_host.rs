//! The host side of the watchdog device: a monotonic clock from
//! [`std::time::Instant`] and an expiry action that runs a command.
//!
//! The watchdog protocol is not standardized (see
//! [`virtio_devices::watchdog`]): it is cloud-hypervisor's de-facto one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use log::{error, warn};
use virtio_devices::watchdog::{Clock, ExpiryAction};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_command_runs_with_the_time_since_the_ping() {
        let dir = std::env::temp_dir().join(format!("wd-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let mut action = CommandAction::new(Some(format!(
            "echo $WATCHDOG_SINCE_MS > {}",
            out.display()
        )));
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
}
