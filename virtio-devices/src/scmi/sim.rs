//! A simulated SCMI platform (feature `test-utils`): two sensors, three
//! clocks, two reset domains, two power domains, one performance domain
//! and two voltage domains, with state the tests,
//! the fuzzer and the daemon can read back, and trip points that raise
//! events when a reading set from outside crosses them.

use heapless::Deque;

use super::platform::*;
use super::wire::{Status, power, sensor};

/// Sensor 0: SoC temperature in m°C. Sensor 1: core voltage in mV.
pub const SENSORS: usize = 2;
/// Clock 0 (`cpu`, discrete), 1 (`uart`, a range), 2 (`spi`, discrete).
pub const CLOCKS: usize = 3;
/// Reset domains 0 (`gpu`) and 1 (`usb`).
pub const RESETS: usize = 2;
/// Power domains 0 (`gpu-pd`) and 1 (`dsp-pd`).
pub const POWER_DOMAINS: usize = 2;
/// Voltage domains 0 (`vdd-io`, discrete) and 1 (`vdd-ddr`, a range).
pub const VOLTAGE_DOMAINS: usize = 2;

/// Performance domain 0 (`cpu-perf`): its levels.
pub const PERF_LEVELS: &[PerfLevel] = &[
    PerfLevel {
        level: 100,
        power: 100,
        latency_us: 50,
    },
    PerfLevel {
        level: 200,
        power: 250,
        latency_us: 50,
    },
    PerfLevel {
        level: 400,
        power: 600,
        latency_us: 100,
    },
];
const IO_LEVELS: &[i32] = &[1_800_000, 3_300_000];
const DDR_MIN: i32 = 1_000_000;
const DDR_MAX: i32 = 1_400_000;
const DDR_STEP: i32 = 50_000;

const CPU_RATES: &[u64] = &[200_000_000, 400_000_000, 800_000_000, 1_200_000_000];
const SPI_RATES: &[u64] = &[1_000_000, 10_000_000, 50_000_000];
const UART_MIN: u64 = 1_000_000;
const UART_MAX: u64 = 100_000_000;
const UART_STEP: u64 = 1_000_000;

/// Trip points per sensor.
pub const TRIP_POINTS: u8 = 2;

#[derive(Clone, Copy, Debug, Default)]
struct Trip {
    mode: Option<TripMode>,
    value: i64,
}

/// The simulated platform.
#[derive(Debug)]
pub struct SimPlatform {
    /// Sensor readings (m°C, mV).
    pub readings: [i64; SENSORS],
    trips: [[Trip; TRIP_POINTS as usize]; SENSORS],
    /// Clock rates in Hz.
    pub rates: [u64; CLOCKS],
    /// Clocks running.
    pub enabled: [bool; CLOCKS],
    /// Reset domains held in reset.
    pub asserted: [bool; RESETS],
    /// Resets done per domain (autonomous ones and asserts).
    pub resets_done: [u32; RESETS],
    /// Power domain states.
    pub power_states: [u32; POWER_DOMAINS],
    /// Performance domain 0's limits `(max, min)`.
    pub perf_limits: (u32, u32),
    /// Performance domain 0's level.
    pub perf_level: u32,
    /// Voltage domain configurations.
    pub voltage_configs: [u32; VOLTAGE_DOMAINS],
    /// Voltage domain levels (µV).
    pub voltage_levels: [i32; VOLTAGE_DOMAINS],
    /// Sensor 1 fails its reads with `HARDWARE_ERROR` when set.
    pub fail_voltage: bool,
    events: Deque<Event, 16>,
    with_power: bool,
    with_resets: bool,
}

impl Default for SimPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl SimPlatform {
    /// Every protocol, at the initial state (45 °C, 900 mV, cpu at
    /// 400 MHz, uart at 48 MHz, spi at 10 MHz, all clocks running but spi,
    /// no domain in reset, power domains on).
    pub fn new() -> Self {
        Self {
            readings: [45_000, 900],
            trips: [[Trip::default(); TRIP_POINTS as usize]; SENSORS],
            rates: [400_000_000, 48_000_000, 10_000_000],
            enabled: [true, true, false],
            asserted: [false; RESETS],
            resets_done: [0; RESETS],
            power_states: [power::STATE_ON; POWER_DOMAINS],
            perf_limits: (400, 100),
            perf_level: 200,
            voltage_configs: [super::wire::voltage::CONFIG_ON; VOLTAGE_DOMAINS],
            voltage_levels: [3_300_000, 1_200_000],
            fail_voltage: false,
            events: Deque::new(),
            with_power: true,
            with_resets: true,
        }
    }

    /// Without the power domain protocol.
    #[must_use]
    pub fn without_power(mut self) -> Self {
        self.with_power = false;
        self
    }

    /// Without the reset domain protocol.
    #[must_use]
    pub fn without_resets(mut self) -> Self {
        self.with_resets = false;
        self
    }

    /// A new reading for `sensor` (from outside: the environment); raises a
    /// trip event for each configured trip point it crosses.
    pub fn set_reading(&mut self, id: usize, value: i64) {
        let Some(old) = self.readings.get(id).copied() else {
            return;
        };
        if let Some(r) = self.readings.get_mut(id) {
            *r = value;
        }
        let Some(trips) = self.trips.get(id) else {
            return;
        };
        for (point, t) in (0u8..).zip(trips.iter()) {
            let up = old < t.value && value >= t.value;
            let down = old >= t.value && value < t.value;
            let fire = match t.mode {
                Some(TripMode::Ascending) => up,
                Some(TripMode::Descending) => down,
                Some(TripMode::Both) => up || down,
                _ => false,
            };
            if fire {
                let _ = self.events.push_back(Event::SensorTrip {
                    sensor: id as u16,
                    point,
                    ascending: up,
                });
            }
        }
    }

    /// Another agent reset `domain`: raises a `RESET_ISSUED` event.
    pub fn external_reset(&mut self, domain: u16) {
        let _ = self
            .events
            .push_back(Event::ResetIssued { domain, state: 0 });
    }
}

impl Platform for SimPlatform {
    fn vendor(&self) -> &str {
        "virtio-rs"
    }
    fn sub_vendor(&self) -> &str {
        "simulated"
    }
    fn implementation_version(&self) -> u32 {
        0x0001_0000
    }
    fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    fn sensors(&mut self) -> Option<&mut dyn Sensors> {
        Some(self)
    }
    fn clocks(&mut self) -> Option<&mut dyn Clocks> {
        Some(self)
    }
    fn resets(&mut self) -> Option<&mut dyn Resets> {
        if self.with_resets { Some(self) } else { None }
    }
    fn power(&mut self) -> Option<&mut dyn PowerDomains> {
        if self.with_power { Some(self) } else { None }
    }
    fn perf(&mut self) -> Option<&mut dyn PerfDomains> {
        Some(self)
    }
    fn voltage(&mut self) -> Option<&mut dyn VoltageDomains> {
        Some(self)
    }
}

impl Sensors for SimPlatform {
    fn count(&self) -> u16 {
        SENSORS as u16
    }
    fn info(&self, id: u16) -> SensorInfo<'_> {
        if id == 0 {
            SensorInfo {
                name: "soc-temp",
                kind: sensor::TYPE_DEGREES_C,
                scale: -3,
                trip_points: TRIP_POINTS,
                update_interval: (1, 0),
            }
        } else {
            SensorInfo {
                name: "vdd-core",
                kind: sensor::TYPE_VOLTS,
                scale: -3,
                trip_points: TRIP_POINTS,
                update_interval: (0, 0),
            }
        }
    }
    fn read(&mut self, id: u16) -> Result<i64, Status> {
        if id == 1 && self.fail_voltage {
            return Err(Status::HardwareError);
        }
        self.readings
            .get(usize::from(id))
            .copied()
            .ok_or(Status::NotFound)
    }
    fn set_trip_point(
        &mut self,
        id: u16,
        point: u8,
        mode: TripMode,
        value: i64,
    ) -> Result<(), Status> {
        let t = self
            .trips
            .get_mut(usize::from(id))
            .and_then(|t| t.get_mut(usize::from(point)))
            .ok_or(Status::InvalidParameters)?;
        *t = Trip {
            mode: (mode != TripMode::Disabled).then_some(mode),
            value,
        };
        Ok(())
    }
}

fn pick(list: &[u64], rate: u64, round: Round) -> Option<u64> {
    let below = list.iter().copied().filter(|r| *r <= rate).max();
    let above = list.iter().copied().filter(|r| *r >= rate).min();
    match round {
        Round::Down => below,
        Round::Up => above,
        Round::Auto => match (below, above) {
            (Some(b), Some(a)) => Some(if rate.abs_diff(b) <= a.abs_diff(rate) {
                b
            } else {
                a
            }),
            (b, a) => b.or(a),
        },
    }
}

impl Clocks for SimPlatform {
    fn count(&self) -> u16 {
        CLOCKS as u16
    }
    fn name(&self, id: u16) -> &str {
        ["cpu", "uart", "spi"]
            .get(usize::from(id))
            .copied()
            .unwrap_or("")
    }
    fn rates(&self, id: u16) -> Rates<'_> {
        match id {
            0 => Rates::Discrete(CPU_RATES),
            1 => Rates::Range {
                min: UART_MIN,
                max: UART_MAX,
                step: UART_STEP,
            },
            _ => Rates::Discrete(SPI_RATES),
        }
    }
    fn enabled(&self, id: u16) -> bool {
        self.enabled.get(usize::from(id)).copied().unwrap_or(false)
    }
    fn rate(&mut self, id: u16) -> Result<u64, Status> {
        self.rates
            .get(usize::from(id))
            .copied()
            .ok_or(Status::NotFound)
    }
    fn set_rate(&mut self, id: u16, rate: u64, round: Round) -> Result<u64, Status> {
        let new = match id {
            0 => pick(CPU_RATES, rate, round),
            1 if (UART_MIN..=UART_MAX).contains(&rate) => {
                let down = rate
                    .saturating_sub(UART_MIN)
                    .checked_div(UART_STEP)
                    .unwrap_or(0)
                    .saturating_mul(UART_STEP)
                    .saturating_add(UART_MIN);
                let up = if down == rate {
                    down
                } else {
                    down.saturating_add(UART_STEP).min(UART_MAX)
                };
                Some(match round {
                    Round::Down => down,
                    Round::Up => up,
                    Round::Auto => {
                        if rate.abs_diff(down) <= up.abs_diff(rate) {
                            down
                        } else {
                            up
                        }
                    }
                })
            }
            1 => None,
            _ => pick(SPI_RATES, rate, round),
        }
        .ok_or(Status::OutOfRange)?;
        let slot = self
            .rates
            .get_mut(usize::from(id))
            .ok_or(Status::NotFound)?;
        *slot = new;
        Ok(new)
    }
    fn set_enabled(&mut self, id: u16, on: bool) -> Result<(), Status> {
        let slot = self
            .enabled
            .get_mut(usize::from(id))
            .ok_or(Status::NotFound)?;
        *slot = on;
        Ok(())
    }
}

impl Resets for SimPlatform {
    fn count(&self) -> u16 {
        RESETS as u16
    }
    fn name(&self, id: u16) -> &str {
        ["gpu", "usb"].get(usize::from(id)).copied().unwrap_or("")
    }
    fn latency(&self, _id: u16) -> u32 {
        10
    }
    fn reset(&mut self, id: u16, op: ResetOp) -> Result<(), Status> {
        let i = usize::from(id);
        let held = self.asserted.get_mut(i).ok_or(Status::NotFound)?;
        let state = match op {
            ResetOp::Autonomous(s) | ResetOp::Assert(s) => s,
            ResetOp::Deassert => 0,
        };
        // Only the architectural cold reset.
        if state != 0 {
            return Err(Status::InvalidParameters);
        }
        match op {
            ResetOp::Autonomous(_) => *held = false,
            ResetOp::Assert(_) => *held = true,
            ResetOp::Deassert => {
                *held = false;
                return Ok(());
            }
        }
        if let Some(n) = self.resets_done.get_mut(i) {
            *n = n.saturating_add(1);
        }
        Ok(())
    }
}

impl PowerDomains for SimPlatform {
    fn count(&self) -> u16 {
        POWER_DOMAINS as u16
    }
    fn name(&self, id: u16) -> &str {
        ["gpu-pd", "dsp-pd"]
            .get(usize::from(id))
            .copied()
            .unwrap_or("")
    }
    fn state(&mut self, id: u16) -> Result<u32, Status> {
        self.power_states
            .get(usize::from(id))
            .copied()
            .ok_or(Status::NotFound)
    }
    fn set_state(&mut self, id: u16, state: u32) -> Result<(), Status> {
        if state != power::STATE_ON && state != power::STATE_OFF {
            return Err(Status::InvalidParameters);
        }
        let slot = self
            .power_states
            .get_mut(usize::from(id))
            .ok_or(Status::NotFound)?;
        if *slot != state {
            *slot = state;
            let _ = self
                .events
                .push_back(Event::PowerChanged { domain: id, state });
        }
        Ok(())
    }
}

impl PerfDomains for SimPlatform {
    fn count(&self) -> u16 {
        1
    }
    fn name(&self, _id: u16) -> &str {
        "cpu-perf"
    }
    fn levels(&self, _id: u16) -> &[PerfLevel] {
        PERF_LEVELS
    }
    fn sustained(&self, _id: u16) -> (u32, u32) {
        (800_000, 200)
    }
    fn limits(&mut self, _id: u16) -> Result<(u32, u32), Status> {
        Ok(self.perf_limits)
    }
    fn set_limits(&mut self, id: u16, max: u32, min: u32) -> Result<(), Status> {
        let known = |l: u32| PERF_LEVELS.iter().any(|p| p.level == l);
        if !known(max) || !known(min) {
            return Err(Status::OutOfRange);
        }
        self.perf_limits = (max, min);
        let _ = self.events.push_back(Event::PerfLimitsChanged {
            domain: id,
            max,
            min,
        });
        // The level follows the limits.
        let clamped = self.perf_level.clamp(min, max);
        if clamped != self.perf_level {
            self.perf_level = clamped;
            let _ = self.events.push_back(Event::PerfLevelChanged {
                domain: id,
                level: clamped,
            });
        }
        Ok(())
    }
    fn level(&mut self, _id: u16) -> Result<u32, Status> {
        Ok(self.perf_level)
    }
    fn set_level(&mut self, id: u16, level: u32) -> Result<(), Status> {
        if !PERF_LEVELS.iter().any(|p| p.level == level) {
            return Err(Status::InvalidParameters);
        }
        let (max, min) = self.perf_limits;
        if level > max || level < min {
            return Err(Status::OutOfRange);
        }
        if level != self.perf_level {
            self.perf_level = level;
            let _ = self
                .events
                .push_back(Event::PerfLevelChanged { domain: id, level });
        }
        Ok(())
    }
}

impl VoltageDomains for SimPlatform {
    fn count(&self) -> u16 {
        VOLTAGE_DOMAINS as u16
    }
    fn name(&self, id: u16) -> &str {
        ["vdd-io", "vdd-ddr"]
            .get(usize::from(id))
            .copied()
            .unwrap_or("")
    }
    fn levels(&self, id: u16) -> Levels<'_> {
        if id == 0 {
            Levels::Discrete(IO_LEVELS)
        } else {
            Levels::Range {
                min: DDR_MIN,
                max: DDR_MAX,
                step: DDR_STEP,
            }
        }
    }
    fn config(&mut self, id: u16) -> Result<u32, Status> {
        self.voltage_configs
            .get(usize::from(id))
            .copied()
            .ok_or(Status::NotFound)
    }
    fn set_config(&mut self, id: u16, config: u32) -> Result<(), Status> {
        let slot = self
            .voltage_configs
            .get_mut(usize::from(id))
            .ok_or(Status::NotFound)?;
        *slot = config;
        Ok(())
    }
    fn level(&mut self, id: u16) -> Result<i32, Status> {
        self.voltage_levels
            .get(usize::from(id))
            .copied()
            .ok_or(Status::NotFound)
    }
    fn set_level(&mut self, id: u16, level: i32) -> Result<(), Status> {
        let ok = if id == 0 {
            IO_LEVELS.contains(&level)
        } else {
            (DDR_MIN..=DDR_MAX).contains(&level)
                && level.saturating_sub(DDR_MIN).checked_rem(DDR_STEP) == Some(0)
        };
        if !ok {
            return Err(Status::OutOfRange);
        }
        let slot = self
            .voltage_levels
            .get_mut(usize::from(id))
            .ok_or(Status::NotFound)?;
        *slot = level;
        Ok(())
    }
}
