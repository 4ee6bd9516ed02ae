//! The platform the daemon's `scmi` device serves: the simulated SCMI
//! platform of `virtio-devices` (sensors, clocks, reset, power,
//! performance and voltage domains) with a live temperature and the
//! changes the guest makes logged.
//!
//! Sensor 0 (`soc-temp`, m°C) follows a triangle wave between 40 °C and
//! 50 °C with a period of [`TEMP_PERIOD`], sampled when read, so the guest
//! sees it move and trip points it configures fire. Clock rate and
//! enable changes and resets are logged at info level.

use std::time::{Duration, Instant};

use log::info;
use virtio_devices::scmi::sim::SimPlatform;
use virtio_devices::scmi::{
    Clocks, Event, PerfDomains, Platform, PowerDomains, Rates, ResetOp, Resets, Round, SensorInfo,
    Sensors, Status, TripMode, VoltageDomains,
};

/// Period of the temperature's triangle wave.
pub const TEMP_PERIOD: Duration = Duration::from_secs(60);

/// The daemon's SCMI platform.
#[derive(Debug)]
pub struct HostScmi {
    inner: SimPlatform,
    start: Instant,
}

impl Default for HostScmi {
    fn default() -> Self {
        Self::new()
    }
}

impl HostScmi {
    /// At the simulated platform's initial state; the wave starts now.
    pub fn new() -> Self {
        Self {
            inner: SimPlatform::new(),
            start: Instant::now(),
        }
    }

    /// The simulated platform (state, for tests).
    pub fn sim(&self) -> &SimPlatform {
        &self.inner
    }

    /// The temperature at `elapsed` since the start, in m°C.
    pub fn temperature_at(elapsed: Duration) -> i64 {
        let period = TEMP_PERIOD.as_millis().max(2);
        let phase = elapsed.as_millis().checked_rem(period).unwrap_or(0);
        let phase = i64::try_from(phase).unwrap_or(0);
        let half = i64::try_from(period / 2).unwrap_or(1).max(1);
        // 0 -> 40 °C, half -> 50 °C, period -> 40 °C.
        let up = if phase <= half {
            phase
        } else {
            half.saturating_mul(2).saturating_sub(phase)
        };
        up.saturating_mul(10_000)
            .checked_div(half)
            .unwrap_or(0)
            .saturating_add(40_000)
    }
}

impl Platform for HostScmi {
    fn vendor(&self) -> &str {
        self.inner.vendor()
    }
    fn sub_vendor(&self) -> &str {
        "vhost-user"
    }
    fn implementation_version(&self) -> u32 {
        self.inner.implementation_version()
    }
    fn next_event(&mut self) -> Option<Event> {
        self.inner.next_event()
    }
    fn sensors(&mut self) -> Option<&mut dyn Sensors> {
        Some(self)
    }
    fn clocks(&mut self) -> Option<&mut dyn Clocks> {
        Some(self)
    }
    fn resets(&mut self) -> Option<&mut dyn Resets> {
        Some(self)
    }
    fn power(&mut self) -> Option<&mut dyn PowerDomains> {
        self.inner.power()
    }
    fn perf(&mut self) -> Option<&mut dyn PerfDomains> {
        self.inner.perf()
    }
    fn voltage(&mut self) -> Option<&mut dyn VoltageDomains> {
        self.inner.voltage()
    }
}

impl Sensors for HostScmi {
    fn count(&self) -> u16 {
        Sensors::count(&self.inner)
    }
    fn info(&self, id: u16) -> SensorInfo<'_> {
        self.inner.info(id)
    }
    fn read(&mut self, id: u16) -> Result<i64, Status> {
        if id == 0 {
            let t = Self::temperature_at(self.start.elapsed());
            // Through the simulation, so configured trip points fire.
            self.inner.set_reading(0, t);
        }
        self.inner.read(id)
    }
    fn set_trip_point(
        &mut self,
        id: u16,
        point: u8,
        mode: TripMode,
        value: i64,
    ) -> Result<(), Status> {
        info!("scmi: sensor {id} trip point {point}: {mode:?} at {value}");
        self.inner.set_trip_point(id, point, mode, value)
    }
}

impl Clocks for HostScmi {
    fn count(&self) -> u16 {
        Clocks::count(&self.inner)
    }
    fn name(&self, id: u16) -> &str {
        Clocks::name(&self.inner, id)
    }
    fn rates(&self, id: u16) -> Rates<'_> {
        self.inner.rates(id)
    }
    fn enabled(&self, id: u16) -> bool {
        self.inner.enabled(id)
    }
    fn rate(&mut self, id: u16) -> Result<u64, Status> {
        self.inner.rate(id)
    }
    fn set_rate(&mut self, id: u16, rate: u64, round: Round) -> Result<u64, Status> {
        let r = self.inner.set_rate(id, rate, round);
        info!("scmi: clock {id} rate {rate} Hz ({round:?}): {r:?}");
        r
    }
    fn set_enabled(&mut self, id: u16, on: bool) -> Result<(), Status> {
        info!(
            "scmi: clock {id} {}",
            if on { "enabled" } else { "disabled" }
        );
        self.inner.set_enabled(id, on)
    }
}

impl Resets for HostScmi {
    fn count(&self) -> u16 {
        Resets::count(&self.inner)
    }
    fn name(&self, id: u16) -> &str {
        Resets::name(&self.inner, id)
    }
    fn latency(&self, id: u16) -> u32 {
        self.inner.latency(id)
    }
    fn reset(&mut self, id: u16, op: ResetOp) -> Result<(), Status> {
        let r = self.inner.reset(id, op);
        info!("scmi: reset domain {id} {op:?}: {r:?}");
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temperature_is_a_triangle_between_40_and_50_degrees() {
        assert_eq!(HostScmi::temperature_at(Duration::ZERO), 40_000);
        assert_eq!(HostScmi::temperature_at(Duration::from_secs(30)), 50_000);
        assert_eq!(HostScmi::temperature_at(Duration::from_secs(15)), 45_000);
        assert_eq!(HostScmi::temperature_at(Duration::from_secs(45)), 45_000);
        assert_eq!(HostScmi::temperature_at(Duration::from_secs(60)), 40_000);
    }

    #[test]
    fn reads_follow_the_wave_and_changes_reach_the_simulation() {
        let mut p = HostScmi::new();
        let t = Sensors::read(&mut p, 0).expect("reading");
        assert!((40_000..=50_000).contains(&t), "{t}");
        assert_eq!(Sensors::read(&mut p, 1), Ok(900));
        assert_eq!(p.set_rate(0, 800_000_000, Round::Down), Ok(800_000_000));
        assert_eq!(p.sim().rates[0], 800_000_000);
        assert_eq!(p.reset(1, ResetOp::Assert(0)), Ok(()));
        assert!(p.sim().asserted[1]);
        assert_eq!(p.set_enabled(2, true), Ok(()));
        assert!(p.sim().enabled[2]);
    }
}
