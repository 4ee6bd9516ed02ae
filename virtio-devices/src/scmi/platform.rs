//! The platform an SCMI device serves: one small trait per protocol, each
//! optional ([`Platform`]'s accessors return `None` for a protocol the
//! platform does not implement; it is then neither listed by
//! `BASE_DISCOVER_LIST_PROTOCOLS` nor answered but with `NOT_SUPPORTED`).
//!
//! Resource ids reaching a trait are already checked against its
//! `count()` and the agent's [`Access`]; a trait answers the operation
//! itself, with an SCMI [`Status`] for what it refuses.

use super::wire::Status;

/// What an agent may do with a resource ([`Platform::access`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Access {
    /// Read and change it.
    Full,
    /// Read it; a change answers `DENIED`.
    ReadOnly,
    /// It does not exist for this agent: `NOT_FOUND`.
    Hidden,
}

/// A platform event the device turns into an SCMI notification (when the
/// agent asked for it and `VIRTIO_SCMI_F_P2A_CHANNELS` was negotiated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A sensor crossed one of its configured trip points.
    SensorTrip {
        /// The sensor.
        sensor: u16,
        /// The trip point (0–255).
        point: u8,
        /// The reading went up through the trip point (else down).
        ascending: bool,
    },
    /// A reset domain was reset by someone else than this agent.
    ResetIssued {
        /// The domain.
        domain: u16,
        /// The reset state (0: architectural cold reset).
        state: u32,
    },
    /// A performance domain's limits changed.
    PerfLimitsChanged {
        /// The domain.
        domain: u16,
        /// The highest level allowed.
        max: u32,
        /// The lowest level allowed.
        min: u32,
    },
    /// A performance domain's level changed.
    PerfLevelChanged {
        /// The domain.
        domain: u16,
        /// The new level.
        level: u32,
    },
    /// A power domain changed state.
    PowerChanged {
        /// The domain.
        domain: u16,
        /// The new state.
        state: u32,
    },
}

/// The platform: identification (the Base protocol's answers) and the
/// protocols it implements.
pub trait Platform {
    /// `BASE_DISCOVER_VENDOR` (at most 15 ASCII bytes are sent).
    fn vendor(&self) -> &str;
    /// `BASE_DISCOVER_SUB_VENDOR`.
    fn sub_vendor(&self) -> &str {
        ""
    }
    /// `BASE_DISCOVER_IMPLEMENTATION_VERSION`.
    fn implementation_version(&self) -> u32 {
        0
    }
    /// Agents the platform knows (besides itself, agent 0); at most 255.
    fn agents(&self) -> u8 {
        1
    }
    /// The name of agent `id` (1..=`agents()`), `None` when it has none
    /// this agent may see. Agent 0 is the platform.
    fn agent_name(&self, id: u32) -> Option<&str> {
        let _ = id;
        None
    }
    /// What `agent` may do with `resource` of `protocol` (a sensor, clock,
    /// reset or power domain id). The default gives every agent all.
    fn access(&self, agent: u32, protocol: u8, resource: u32) -> Access {
        let _ = (agent, protocol, resource);
        Access::Full
    }
    /// May `agent` use `protocol` at all? A protocol it may not is not
    /// listed and answers `NOT_SUPPORTED`, as an unimplemented one.
    fn protocol_allowed(&self, agent: u32, protocol: u8) -> bool {
        let _ = (agent, protocol);
        true
    }
    /// The next platform event, if any (the device asks from `poll`).
    fn next_event(&mut self) -> Option<Event> {
        None
    }
    /// The sensor protocol, when implemented.
    fn sensors(&mut self) -> Option<&mut dyn Sensors> {
        None
    }
    /// The clock protocol, when implemented.
    fn clocks(&mut self) -> Option<&mut dyn Clocks> {
        None
    }
    /// The reset domain protocol, when implemented.
    fn resets(&mut self) -> Option<&mut dyn Resets> {
        None
    }
    /// The power domain protocol, when implemented.
    fn power(&mut self) -> Option<&mut dyn PowerDomains> {
        None
    }
    /// The performance domain protocol, when implemented.
    fn perf(&mut self) -> Option<&mut dyn PerfDomains> {
        None
    }
    /// The voltage domain protocol, when implemented.
    fn voltage(&mut self) -> Option<&mut dyn VoltageDomains> {
        None
    }
}

/// How a sensor describes itself (`SENSOR_DESCRIPTION_GET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SensorInfo<'a> {
    /// Name (15 ASCII bytes are sent).
    pub name: &'a str,
    /// Sensor type (SCMI's unit table: 2 = °C, 5 = V, …).
    pub kind: u8,
    /// Unit multiplier: the value is `reading × 10^scale` units (-16..=15).
    pub scale: i8,
    /// Trip points it supports (0–255).
    pub trip_points: u8,
    /// Update interval `multiplier × 10^exponent` seconds (multiplier
    /// 0–31, exponent -16..=15); `(0, 0)`: not stated.
    pub update_interval: (u8, i8),
}

/// Which crossings of a trip point raise an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TripMode {
    /// The trip point is disabled.
    Disabled,
    /// Crossing it upwards.
    Ascending,
    /// Crossing it downwards.
    Descending,
    /// Either way.
    Both,
}

/// Sensor management (protocol 0x15).
pub trait Sensors {
    /// Sensors (ids `0..count`).
    fn count(&self) -> u16;
    /// Sensor `id`'s description.
    fn info(&self, id: u16) -> SensorInfo<'_>;
    /// A reading of sensor `id`.
    ///
    /// # Errors
    /// The status the agent gets (`HARDWARE_ERROR`, `BUSY`, …).
    fn read(&mut self, id: u16) -> Result<i64, Status>;
    /// Configures trip point `point` (below `info(id).trip_points`).
    ///
    /// # Errors
    /// The status the agent gets.
    fn set_trip_point(
        &mut self,
        id: u16,
        point: u8,
        mode: TripMode,
        value: i64,
    ) -> Result<(), Status> {
        let _ = (id, point, mode, value);
        Err(Status::NotSupported)
    }
}

/// The rates a clock runs at (`CLOCK_DESCRIBE_RATES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rates<'a> {
    /// These rates, in Hz, ascending.
    Discrete(&'a [u64]),
    /// `min..=max` in steps of `step` Hz.
    Range {
        /// Lowest rate.
        min: u64,
        /// Highest rate.
        max: u64,
        /// Step.
        step: u64,
    },
}

/// How a rate between two supported ones is rounded (`CLOCK_RATE_SET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Round {
    /// Down.
    Down,
    /// Up.
    Up,
    /// To the closest.
    Auto,
}

/// Clock management (protocol 0x14).
pub trait Clocks {
    /// Clocks (ids `0..count`).
    fn count(&self) -> u16;
    /// Clock `id`'s name.
    fn name(&self, id: u16) -> &str;
    /// Clock `id`'s rates.
    fn rates(&self, id: u16) -> Rates<'_>;
    /// Clock `id` runs.
    fn enabled(&self, id: u16) -> bool;
    /// Clock `id`'s rate in Hz.
    ///
    /// # Errors
    /// The status the agent gets.
    fn rate(&mut self, id: u16) -> Result<u64, Status>;
    /// Sets clock `id` to `rate` Hz, rounded as `round` says; returns the
    /// rate it now runs at.
    ///
    /// # Errors
    /// `OUT_OF_RANGE` for a rate outside its rates, or another status.
    fn set_rate(&mut self, id: u16, rate: u64, round: Round) -> Result<u64, Status>;
    /// Starts or stops clock `id`.
    ///
    /// # Errors
    /// The status the agent gets.
    fn set_enabled(&mut self, id: u16, on: bool) -> Result<(), Status>;
}

/// What `RESET` asks of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResetOp {
    /// Assert and deassert, with this reset state.
    Autonomous(u32),
    /// Hold the domain in reset, with this reset state.
    Assert(u32),
    /// Release it.
    Deassert,
}

/// Reset domain management (protocol 0x16).
pub trait Resets {
    /// Domains (ids `0..count`).
    fn count(&self) -> u16;
    /// Domain `id`'s name.
    fn name(&self, id: u16) -> &str;
    /// Domain `id`'s reset latency in microseconds
    /// ([`super::wire::reset::LATENCY_UNKNOWN`]: not known).
    fn latency(&self, id: u16) -> u32 {
        let _ = id;
        super::wire::reset::LATENCY_UNKNOWN
    }
    /// Does it.
    ///
    /// # Errors
    /// `INVALID_PARAMETERS` for a reset state the domain does not
    /// support, or another status.
    fn reset(&mut self, id: u16, op: ResetOp) -> Result<(), Status>;
}

/// Power domain management (protocol 0x11).
pub trait PowerDomains {
    /// Domains (ids `0..count`).
    fn count(&self) -> u16;
    /// Domain `id`'s name.
    fn name(&self, id: u16) -> &str;
    /// Domain `id`'s power state.
    ///
    /// # Errors
    /// The status the agent gets.
    fn state(&mut self, id: u16) -> Result<u32, Status>;
    /// Sets domain `id`'s power state.
    ///
    /// # Errors
    /// `INVALID_PARAMETERS` for a state the domain does not have.
    fn set_state(&mut self, id: u16, state: u32) -> Result<(), Status>;
}

/// One performance level (`PERF_DESCRIBE_LEVELS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerfLevel {
    /// The level's value.
    pub level: u32,
    /// Its power cost (mW, or abstract units, as
    /// [`PerfDomains::power_in_mw`] says).
    pub power: u32,
    /// Worst-case transition latency into it, in microseconds.
    pub latency_us: u16,
}

/// Performance domain management (protocol 0x13).
pub trait PerfDomains {
    /// Domains (ids `0..count`).
    fn count(&self) -> u16;
    /// Power costs are in milliwatts (else abstract units).
    fn power_in_mw(&self) -> bool {
        true
    }
    /// Domain `id`'s name.
    fn name(&self, id: u16) -> &str;
    /// Domain `id`'s levels, ascending.
    fn levels(&self, id: u16) -> &[PerfLevel];
    /// Domain `id`'s sustained frequency (kHz) and the level it is, or
    /// `(0, 0)` when not stated.
    fn sustained(&self, id: u16) -> (u32, u32) {
        let _ = id;
        (0, 0)
    }
    /// Least microseconds between two level changes (0: no limit).
    fn rate_limit_us(&self, id: u16) -> u32 {
        let _ = id;
        0
    }
    /// The domain's limits `(max, min)`.
    ///
    /// # Errors
    /// The status the agent gets.
    fn limits(&mut self, id: u16) -> Result<(u32, u32), Status>;
    /// Sets the domain's limits (`max >= min`, checked by the device).
    ///
    /// # Errors
    /// `OUT_OF_RANGE` for limits outside its levels, or another status.
    fn set_limits(&mut self, id: u16, max: u32, min: u32) -> Result<(), Status>;
    /// The domain's level.
    ///
    /// # Errors
    /// The status the agent gets.
    fn level(&mut self, id: u16) -> Result<u32, Status>;
    /// Sets the domain's level.
    ///
    /// # Errors
    /// `OUT_OF_RANGE` for a level outside the limits, `INVALID_PARAMETERS`
    /// for one the domain does not have.
    fn set_level(&mut self, id: u16, level: u32) -> Result<(), Status>;
}

/// The levels a voltage domain supports, in microvolts
/// (`VOLTAGE_DESCRIBE_LEVELS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels<'a> {
    /// These levels, ascending.
    Discrete(&'a [i32]),
    /// `min..=max` in steps of `step`.
    Range {
        /// Lowest level.
        min: i32,
        /// Highest level.
        max: i32,
        /// Step.
        step: i32,
    },
}

/// Voltage domain management (protocol 0x17).
pub trait VoltageDomains {
    /// Domains (ids `0..count`).
    fn count(&self) -> u16;
    /// Domain `id`'s name.
    fn name(&self, id: u16) -> &str;
    /// Domain `id`'s levels.
    fn levels(&self, id: u16) -> Levels<'_>;
    /// The domain's configuration (0: off, 7: on, 8–15: implementation
    /// defined).
    ///
    /// # Errors
    /// The status the agent gets.
    fn config(&mut self, id: u16) -> Result<u32, Status>;
    /// Sets the configuration (one of the values above, checked by the
    /// device).
    ///
    /// # Errors
    /// The status the agent gets.
    fn set_config(&mut self, id: u16, config: u32) -> Result<(), Status>;
    /// The domain's level in microvolts.
    ///
    /// # Errors
    /// The status the agent gets.
    fn level(&mut self, id: u16) -> Result<i32, Status>;
    /// Sets the level.
    ///
    /// # Errors
    /// `OUT_OF_RANGE` or `INVALID_PARAMETERS` for a level it does not
    /// support.
    fn set_level(&mut self, id: u16, level: i32) -> Result<(), Status>;
}
