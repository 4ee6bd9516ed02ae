//! GPIO device wire formats (virtio 1.4 §"GPIO Device").

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Feature bit 0, `VIRTIO_GPIO_F_IRQ`: interrupts on lines (the eventq).
pub const F_IRQ: u64 = 1 << 0;

/// `VIRTIO_GPIO_MSG_GET_LINE_NAMES`.
pub const MSG_GET_LINE_NAMES: u16 = 0x0001;
/// `VIRTIO_GPIO_MSG_GET_DIRECTION`.
pub const MSG_GET_DIRECTION: u16 = 0x0002;
/// `VIRTIO_GPIO_MSG_SET_DIRECTION`.
pub const MSG_SET_DIRECTION: u16 = 0x0003;
/// `VIRTIO_GPIO_MSG_GET_VALUE`.
pub const MSG_GET_VALUE: u16 = 0x0004;
/// `VIRTIO_GPIO_MSG_SET_VALUE`.
pub const MSG_SET_VALUE: u16 = 0x0005;
/// `VIRTIO_GPIO_MSG_SET_IRQ_TYPE`.
pub const MSG_SET_IRQ_TYPE: u16 = 0x0006;

/// `VIRTIO_GPIO_STATUS_OK`.
pub const STATUS_OK: u8 = 0;
/// `VIRTIO_GPIO_STATUS_ERR`.
pub const STATUS_ERR: u8 = 1;

/// `VIRTIO_GPIO_IRQ_TYPE_NONE`.
pub const IRQ_TYPE_NONE: u32 = 0x00;
/// `VIRTIO_GPIO_IRQ_TYPE_EDGE_RISING`.
pub const IRQ_TYPE_EDGE_RISING: u32 = 0x01;
/// `VIRTIO_GPIO_IRQ_TYPE_EDGE_FALLING`.
pub const IRQ_TYPE_EDGE_FALLING: u32 = 0x02;
/// `VIRTIO_GPIO_IRQ_TYPE_EDGE_BOTH`.
pub const IRQ_TYPE_EDGE_BOTH: u32 = 0x03;
/// `VIRTIO_GPIO_IRQ_TYPE_LEVEL_HIGH`.
pub const IRQ_TYPE_LEVEL_HIGH: u32 = 0x04;
/// `VIRTIO_GPIO_IRQ_TYPE_LEVEL_LOW`.
pub const IRQ_TYPE_LEVEL_LOW: u32 = 0x08;

/// `VIRTIO_GPIO_IRQ_STATUS_INVALID`: a held event buffer returned without
/// an event (the interrupt was disabled, or never enabled).
pub const IRQ_STATUS_INVALID: u8 = 0;
/// `VIRTIO_GPIO_IRQ_STATUS_VALID`: the line's interrupt fired.
pub const IRQ_STATUS_VALID: u8 = 1;

/// `struct virtio_gpio_config` (8 bytes, little-endian).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GpioConfig {
    /// Number of lines.
    pub ngpio: U16,
    /// Reserved, 0.
    pub padding: [u8; 2],
    /// Size of the `GET_LINE_NAMES` block (0: no names).
    pub gpio_names_size: U32,
}

/// `struct virtio_gpio_request` (8 bytes): the requestq's readable part.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GpioRequest {
    /// `MSG_*`.
    pub type_: U16,
    /// Line number.
    pub gpio: U16,
    /// Message-specific value.
    pub value: U32,
}

/// `struct virtio_gpio_response` (2 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GpioResponse {
    /// `STATUS_*`.
    pub status: u8,
    /// Message-specific value.
    pub value: u8,
}

/// `struct virtio_gpio_irq_request` (2 bytes): the eventq's readable part.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GpioIrqRequest {
    /// Line number.
    pub gpio: U16,
}

/// A line's direction (`VIRTIO_GPIO_DIRECTION_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Direction {
    /// `NONE`: the line is not in use.
    #[default]
    None = 0,
    /// `OUT`.
    Out = 1,
    /// `IN`.
    In = 2,
}

impl Direction {
    /// From the wire value; `None` for an undefined one.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Out),
            2 => Some(Self::In),
            _ => None,
        }
    }
}

/// A line's interrupt trigger (`VIRTIO_GPIO_IRQ_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Trigger {
    /// Disabled.
    #[default]
    None,
    /// Rising edges.
    EdgeRising,
    /// Falling edges.
    EdgeFalling,
    /// Both edges.
    EdgeBoth,
    /// While high.
    LevelHigh,
    /// While low.
    LevelLow,
}

impl Trigger {
    /// From the wire value; `None` for an undefined one.
    pub fn from_wire(v: u32) -> Option<Self> {
        Some(match v {
            IRQ_TYPE_NONE => Self::None,
            IRQ_TYPE_EDGE_RISING => Self::EdgeRising,
            IRQ_TYPE_EDGE_FALLING => Self::EdgeFalling,
            IRQ_TYPE_EDGE_BOTH => Self::EdgeBoth,
            IRQ_TYPE_LEVEL_HIGH => Self::LevelHigh,
            IRQ_TYPE_LEVEL_LOW => Self::LevelLow,
            _ => return None,
        })
    }

    /// An edge trigger (latched while masked).
    pub fn is_edge(self) -> bool {
        matches!(self, Self::EdgeRising | Self::EdgeFalling | Self::EdgeBoth)
    }

    /// A level trigger (never latched).
    pub fn is_level(self) -> bool {
        matches!(self, Self::LevelHigh | Self::LevelLow)
    }

    /// Whether a change from `from` to `to` is an edge this trigger takes.
    pub fn takes_edge(self, from: bool, to: bool) -> bool {
        match self {
            Self::EdgeRising => !from && to,
            Self::EdgeFalling => from && !to,
            Self::EdgeBoth => from != to,
            _ => false,
        }
    }

    /// Whether `level` is an active level for this trigger.
    pub fn level_active(self, level: bool) -> bool {
        match self {
            Self::LevelHigh => level,
            Self::LevelLow => !level,
            _ => false,
        }
    }
}
