//! SCMI wire formats: the 32-bit message header, status codes, protocol
//! and message ids (Arm DEN0056, "System Control and Management
//! Interface"), and the virtio transport's feature bits (virtio 1.4
//! §"SCMI Device"). Every field on the wire is little-endian.

use core::fmt;

/// `VIRTIO_SCMI_F_P2A_CHANNELS`: notifications and delayed responses
/// over the eventq.
pub const F_P2A_CHANNELS: u64 = 1 << 0;
/// `VIRTIO_SCMI_F_SHARED_MEMORY`: statistics shared memory regions (not
/// offered: this device implements none).
pub const F_SHARED_MEMORY: u64 = 1 << 1;

/// Queue index of the cmdq.
pub const CMDQ: u16 = 0;
/// Queue index of the eventq.
pub const EVENTQ: u16 = 1;

/// Bytes of the message header.
pub const HEADER_BYTES: usize = 4;
/// Bytes of a short name (`name[16]`, NUL-terminated ASCII).
pub const NAME_BYTES: usize = 16;

/// Message type of a command (and of its response).
pub const TYPE_COMMAND: u8 = 0;
/// Message type of a delayed response.
pub const TYPE_DELAYED_RESPONSE: u8 = 2;
/// Message type of a notification.
pub const TYPE_NOTIFICATION: u8 = 3;

/// The SCMI message header: message id bits 7:0, message type bits 9:8,
/// protocol id bits 17:10, token bits 27:18; bits 31:28 are reserved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Message id within the protocol.
    pub message: u8,
    /// Message type (`TYPE_*`).
    pub kind: u8,
    /// Protocol id (`PROTOCOL_*`).
    pub protocol: u8,
    /// The agent's sequence token (10 bits), echoed in the response.
    pub token: u16,
}

impl Header {
    /// Splits a header word (reserved bits ignored).
    pub fn parse(word: u32) -> Self {
        Self {
            message: (word & 0xff) as u8,
            kind: ((word >> 8) & 0x3) as u8,
            protocol: ((word >> 10) & 0xff) as u8,
            token: ((word >> 18) & 0x3ff) as u16,
        }
    }

    /// The header word (reserved bits zero).
    pub fn word(self) -> u32 {
        u32::from(self.message)
            | (u32::from(self.kind & 0x3) << 8)
            | (u32::from(self.protocol) << 10)
            | (u32::from(self.token & 0x3ff) << 18)
    }

    /// A command header (what a driver sends).
    pub fn command(protocol: u8, message: u8, token: u16) -> Self {
        Self {
            message,
            kind: TYPE_COMMAND,
            protocol,
            token: token & 0x3ff,
        }
    }
}

/// An SCMI status code (the first return value of every response).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// 0.
    Success,
    /// -1: the protocol or message is not implemented.
    NotSupported,
    /// -2: a parameter is invalid.
    InvalidParameters,
    /// -3: the agent may not do this.
    Denied,
    /// -4: the resource does not exist (or the agent cannot see it).
    NotFound,
    /// -5: a value is out of range.
    OutOfRange,
    /// -6: the platform cannot take this now (async slots full).
    Busy,
    /// -7: a transport error.
    CommsError,
    /// -8: an error with no code of its own.
    GenericError,
    /// -9: the hardware failed.
    HardwareError,
    /// -10: the message is malformed (wrong length, wrong type).
    ProtocolError,
    /// -11: the resource is in use.
    InUse,
}

impl Status {
    /// The wire value.
    pub fn code(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::NotSupported => -1,
            Self::InvalidParameters => -2,
            Self::Denied => -3,
            Self::NotFound => -4,
            Self::OutOfRange => -5,
            Self::Busy => -6,
            Self::CommsError => -7,
            Self::GenericError => -8,
            Self::HardwareError => -9,
            Self::ProtocolError => -10,
            Self::InUse => -11,
        }
    }

    /// The status for a wire value, `None` for one SCMI does not define.
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Success,
            -1 => Self::NotSupported,
            -2 => Self::InvalidParameters,
            -3 => Self::Denied,
            -4 => Self::NotFound,
            -5 => Self::OutOfRange,
            -6 => Self::Busy,
            -7 => Self::CommsError,
            -8 => Self::GenericError,
            -9 => Self::HardwareError,
            -10 => Self::ProtocolError,
            -11 => Self::InUse,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({})", self.code())
    }
}

/// Base protocol.
pub const PROTOCOL_BASE: u8 = 0x10;
/// Power domain management protocol.
pub const PROTOCOL_POWER: u8 = 0x11;
/// System power management protocol (not implemented here).
pub const PROTOCOL_SYSTEM: u8 = 0x12;
/// Performance domain management protocol.
pub const PROTOCOL_PERF: u8 = 0x13;
/// Clock management protocol.
pub const PROTOCOL_CLOCK: u8 = 0x14;
/// Sensor management protocol.
pub const PROTOCOL_SENSOR: u8 = 0x15;
/// Reset domain management protocol.
pub const PROTOCOL_RESET: u8 = 0x16;
/// Voltage domain management protocol.
pub const PROTOCOL_VOLTAGE: u8 = 0x17;

/// Messages every protocol has.
pub mod common {
    /// `PROTOCOL_VERSION`.
    pub const PROTOCOL_VERSION: u8 = 0x0;
    /// `PROTOCOL_ATTRIBUTES`.
    pub const PROTOCOL_ATTRIBUTES: u8 = 0x1;
    /// `PROTOCOL_MESSAGE_ATTRIBUTES`.
    pub const PROTOCOL_MESSAGE_ATTRIBUTES: u8 = 0x2;
}

/// Base protocol messages (0x10).
pub mod base {
    /// Protocol version served (2.0).
    pub const VERSION: u32 = 0x2_0000;
    /// `BASE_DISCOVER_VENDOR`.
    pub const DISCOVER_VENDOR: u8 = 0x3;
    /// `BASE_DISCOVER_SUB_VENDOR`.
    pub const DISCOVER_SUB_VENDOR: u8 = 0x4;
    /// `BASE_DISCOVER_IMPLEMENTATION_VERSION`.
    pub const DISCOVER_IMPLEMENTATION_VERSION: u8 = 0x5;
    /// `BASE_DISCOVER_LIST_PROTOCOLS`.
    pub const DISCOVER_LIST_PROTOCOLS: u8 = 0x6;
    /// `BASE_DISCOVER_AGENT`.
    pub const DISCOVER_AGENT: u8 = 0x7;
    /// `BASE_NOTIFY_ERRORS`.
    pub const NOTIFY_ERRORS: u8 = 0x8;
    /// Notification `BASE_ERROR_EVENT`.
    pub const ERROR_EVENT: u8 = 0x0;
    /// `BASE_DISCOVER_AGENT` id meaning "the calling agent".
    pub const AGENT_SELF: u32 = 0xffff_ffff;
}

/// Power domain protocol messages (0x11).
pub mod power {
    /// Protocol version served (2.0).
    pub const VERSION: u32 = 0x2_0000;
    /// `POWER_DOMAIN_ATTRIBUTES`.
    pub const DOMAIN_ATTRIBUTES: u8 = 0x3;
    /// `POWER_STATE_SET`.
    pub const STATE_SET: u8 = 0x4;
    /// `POWER_STATE_GET`.
    pub const STATE_GET: u8 = 0x5;
    /// `POWER_STATE_NOTIFY`.
    pub const STATE_NOTIFY: u8 = 0x6;
    /// Notification `POWER_STATE_CHANGED`.
    pub const STATE_CHANGED: u8 = 0x0;
    /// The power state "on" (operational, context preserved).
    pub const STATE_ON: u32 = 0;
    /// The power state "off" (bit 30: context lost).
    pub const STATE_OFF: u32 = 1 << 30;
}

/// Performance domain protocol messages (0x13).
pub mod perf {
    /// Protocol version served (2.0).
    pub const VERSION: u32 = 0x2_0000;
    /// `PERF_DOMAIN_ATTRIBUTES`.
    pub const DOMAIN_ATTRIBUTES: u8 = 0x3;
    /// `PERF_DESCRIBE_LEVELS`.
    pub const DESCRIBE_LEVELS: u8 = 0x4;
    /// `PERF_LIMITS_SET`.
    pub const LIMITS_SET: u8 = 0x5;
    /// `PERF_LIMITS_GET`.
    pub const LIMITS_GET: u8 = 0x6;
    /// `PERF_LEVEL_SET`.
    pub const LEVEL_SET: u8 = 0x7;
    /// `PERF_LEVEL_GET`.
    pub const LEVEL_GET: u8 = 0x8;
    /// `PERF_NOTIFY_LIMITS`.
    pub const NOTIFY_LIMITS: u8 = 0x9;
    /// `PERF_NOTIFY_LEVEL`.
    pub const NOTIFY_LEVEL: u8 = 0xa;
    /// Notification `PERF_LIMITS_CHANGED`.
    pub const LIMITS_CHANGED: u8 = 0x0;
    /// Notification `PERF_LEVEL_CHANGED`.
    pub const LEVEL_CHANGED: u8 = 0x1;
    /// Bytes of one level in `PERF_DESCRIBE_LEVELS`.
    pub const LEVEL_BYTES: usize = 12;
}

/// Voltage domain protocol messages (0x17).
pub mod voltage {
    /// Protocol version served (1.0).
    pub const VERSION: u32 = 0x1_0000;
    /// `VOLTAGE_DOMAIN_ATTRIBUTES`.
    pub const DOMAIN_ATTRIBUTES: u8 = 0x3;
    /// `VOLTAGE_DESCRIBE_LEVELS`.
    pub const DESCRIBE_LEVELS: u8 = 0x4;
    /// `VOLTAGE_CONFIG_SET`.
    pub const CONFIG_SET: u8 = 0x5;
    /// `VOLTAGE_CONFIG_GET`.
    pub const CONFIG_GET: u8 = 0x6;
    /// `VOLTAGE_LEVEL_SET`.
    pub const LEVEL_SET: u8 = 0x7;
    /// `VOLTAGE_LEVEL_GET`.
    pub const LEVEL_GET: u8 = 0x8;
    /// Configuration: off.
    pub const CONFIG_OFF: u32 = 0x0;
    /// Configuration: on.
    pub const CONFIG_ON: u32 = 0x7;
}

/// Clock protocol messages (0x14).
pub mod clock {
    /// Protocol version served (1.0).
    pub const VERSION: u32 = 0x1_0000;
    /// `CLOCK_ATTRIBUTES`.
    pub const ATTRIBUTES: u8 = 0x3;
    /// `CLOCK_DESCRIBE_RATES`.
    pub const DESCRIBE_RATES: u8 = 0x4;
    /// `CLOCK_RATE_SET` (and its delayed response `CLOCK_RATE_SET_COMPLETE`).
    pub const RATE_SET: u8 = 0x5;
    /// `CLOCK_RATE_GET`.
    pub const RATE_GET: u8 = 0x6;
    /// `CLOCK_CONFIG_SET`.
    pub const CONFIG_SET: u8 = 0x7;
    /// `CLOCK_RATE_SET` flag: asynchronous.
    pub const SET_ASYNC: u32 = 1 << 0;
    /// `CLOCK_RATE_SET` flag: no delayed response wanted.
    pub const SET_IGNORE_DELAYED: u32 = 1 << 1;
    /// `CLOCK_RATE_SET` flag: round up (else down).
    pub const SET_ROUND_UP: u32 = 1 << 2;
    /// `CLOCK_RATE_SET` flag: round to the closest.
    pub const SET_ROUND_AUTO: u32 = 1 << 3;
}

/// Sensor protocol messages (0x15).
pub mod sensor {
    /// Protocol version served (1.0, the SCMI 2.0 layout).
    pub const VERSION: u32 = 0x1_0000;
    /// `SENSOR_DESCRIPTION_GET`.
    pub const DESCRIPTION_GET: u8 = 0x3;
    /// `SENSOR_TRIP_POINT_NOTIFY`.
    pub const TRIP_POINT_NOTIFY: u8 = 0x4;
    /// `SENSOR_TRIP_POINT_CONFIG`.
    pub const TRIP_POINT_CONFIG: u8 = 0x5;
    /// `SENSOR_READING_GET` (and its delayed response `SENSOR_READING_COMPLETE`).
    pub const READING_GET: u8 = 0x6;
    /// Notification `SENSOR_TRIP_POINT_EVENT`.
    pub const TRIP_POINT_EVENT: u8 = 0x0;
    /// Bytes of one SCMI 2.0 sensor descriptor.
    pub const DESCRIPTOR_BYTES: usize = 28;
    /// Sensor type: degrees Celsius.
    pub const TYPE_DEGREES_C: u8 = 2;
    /// Sensor type: volts.
    pub const TYPE_VOLTS: u8 = 5;
}

/// Reset domain protocol messages (0x16).
pub mod reset {
    /// Protocol version served (1.0).
    pub const VERSION: u32 = 0x1_0000;
    /// `RESET_DOMAIN_ATTRIBUTES`.
    pub const DOMAIN_ATTRIBUTES: u8 = 0x3;
    /// `RESET` (and its delayed response `RESET_COMPLETE`).
    pub const RESET: u8 = 0x4;
    /// `RESET_NOTIFY`.
    pub const NOTIFY: u8 = 0x5;
    /// Notification `RESET_ISSUED`.
    pub const ISSUED: u8 = 0x0;
    /// `RESET` flag: autonomous reset (assert then deassert).
    pub const AUTONOMOUS: u32 = 1 << 0;
    /// `RESET` flag: explicit assert (without it, an explicit deassert).
    pub const EXPLICIT_ASSERT: u32 = 1 << 1;
    /// `RESET` flag: asynchronous.
    pub const ASYNC: u32 = 1 << 2;
    /// Latency word meaning "not known".
    pub const LATENCY_UNKNOWN: u32 = 0xffff_ffff;
}

/// A 16-byte NUL-terminated ASCII name, as responses carry it: `s`
/// truncated to 15 bytes, non-ASCII bytes replaced by `?`.
pub fn short_name(s: &str) -> [u8; NAME_BYTES] {
    let mut out = [0u8; NAME_BYTES];
    for (o, b) in out
        .iter_mut()
        .take(NAME_BYTES.saturating_sub(1))
        .zip(s.bytes())
    {
        *o = if b.is_ascii() && b != 0 { b } else { b'?' };
    }
    out
}
