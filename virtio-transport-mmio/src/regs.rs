//! The version-2 register map (virtio 1.4 §"MMIO Device Register Layout").

/// `MagicValue` (R): "virt".
pub const MAGIC_VALUE: u32 = 0x000;
/// `Version` (R).
pub const VERSION: u32 = 0x004;
/// `DeviceID` (R).
pub const DEVICE_ID: u32 = 0x008;
/// `VendorID` (R).
pub const VENDOR_ID: u32 = 0x00c;
/// `DeviceFeatures` (R).
pub const DEVICE_FEATURES: u32 = 0x010;
/// `DeviceFeaturesSel` (W).
pub const DEVICE_FEATURES_SEL: u32 = 0x014;
/// `DriverFeatures` (W).
pub const DRIVER_FEATURES: u32 = 0x020;
/// `DriverFeaturesSel` (W).
pub const DRIVER_FEATURES_SEL: u32 = 0x024;
/// `QueueSel` (W).
pub const QUEUE_SEL: u32 = 0x030;
/// `QueueSizeMax` (R).
pub const QUEUE_SIZE_MAX: u32 = 0x034;
/// `QueueSize` (W).
pub const QUEUE_SIZE: u32 = 0x038;
/// `QueueReady` (RW).
pub const QUEUE_READY: u32 = 0x044;
/// `QueueNotify` (W).
pub const QUEUE_NOTIFY: u32 = 0x050;
/// `InterruptStatus` (R).
pub const INTERRUPT_STATUS: u32 = 0x060;
/// `InterruptACK` (W).
pub const INTERRUPT_ACK: u32 = 0x064;
/// `Status` (RW).
pub const STATUS: u32 = 0x070;
/// `QueueDescLow` (W).
pub const QUEUE_DESC_LOW: u32 = 0x080;
/// `QueueDescHigh` (W).
pub const QUEUE_DESC_HIGH: u32 = 0x084;
/// `QueueDriverLow` (W).
pub const QUEUE_DRIVER_LOW: u32 = 0x090;
/// `QueueDriverHigh` (W).
pub const QUEUE_DRIVER_HIGH: u32 = 0x094;
/// `QueueDeviceLow` (W).
pub const QUEUE_DEVICE_LOW: u32 = 0x0a0;
/// `QueueDeviceHigh` (W).
pub const QUEUE_DEVICE_HIGH: u32 = 0x0a4;
/// `SHMSel` (W).
pub const SHM_SEL: u32 = 0x0ac;
/// `SHMLenLow` (R).
pub const SHM_LEN_LOW: u32 = 0x0b0;
/// `SHMLenHigh` (R).
pub const SHM_LEN_HIGH: u32 = 0x0b4;
/// `SHMBaseLow` (R).
pub const SHM_BASE_LOW: u32 = 0x0b8;
/// `SHMBaseHigh` (R).
pub const SHM_BASE_HIGH: u32 = 0x0bc;
/// `QueueReset` (RW, with `VIRTIO_F_RING_RESET`).
pub const QUEUE_RESET: u32 = 0x0c0;
/// `ConfigGeneration` (R).
pub const CONFIG_GENERATION: u32 = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: u32 = 0x100;

/// The value of `MagicValue`: "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The value of `Version` for a non-legacy device.
pub const VERSION_2: u32 = 2;

/// The width of one register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 16 bits.
    HalfWord,
    /// 32 bits.
    Word,
}

impl Width {
    /// The width of an access of `bytes` bytes (1, 2 or 4).
    pub const fn from_bytes(bytes: usize) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::HalfWord),
            4 => Some(Self::Word),
            _ => None,
        }
    }

    /// The number of bytes accessed.
    pub const fn bytes(self) -> u32 {
        match self {
            Self::Byte => 1,
            Self::HalfWord => 2,
            Self::Word => 4,
        }
    }
}
