//! Wire formats from the virtio 1.4 specification: ring structures, device
//! IDs, feature bits and status bits. Layout only, no logic.
//!
//! Every structure is `#[repr(C)]` with explicit little-endian field types
//! (`introduction.tex`, "Structure Specifications": no padding), and its size
//! is checked at compile time.
//!
//! * Split ring (§"Split Virtqueues"): [`VirtqDesc`], [`VirtqAvailHeader`],
//!   [`VirtqUsedHeader`], [`VirtqUsedElem`].
//! * Packed ring (§"Packed Virtqueues"): [`PvirtqDesc`], [`PvirtqUsedTail`],
//!   [`PvirtqEventSuppress`].

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use zerocopy::little_endian::{U16 as Le16, U32 as Le32, U64 as Le64};

macro_rules! wire {
    ($(#[$m:meta])* $name:ident, $size:expr, { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        const _: () = assert!(core::mem::size_of::<$name>() == $size);
    };
}

wire!(
    /// Split-ring descriptor, `struct virtq_desc` (§"The Virtqueue Descriptor Table").
    VirtqDesc, 16, {
        /// Guest-physical address of the buffer.
        addr: Le64,
        /// Length of the buffer in bytes.
        len: Le32,
        /// [`DescFlags`]: NEXT, WRITE, INDIRECT.
        flags: Le16,
        /// Next descriptor in the chain when NEXT is set.
        next: Le16,
    }
);

wire!(
    /// Header of the split available ring, `struct virtq_avail` (§"The
    /// Virtqueue Available Ring"). It is followed by `le16 ring[size]` and,
    /// with `EVENT_IDX`, `le16 used_event`.
    VirtqAvailHeader, 4, {
        /// [`VIRTQ_AVAIL_F_NO_INTERRUPT`].
        flags: Le16,
        /// Where the driver puts the next entry (free-running).
        idx: Le16,
    }
);

wire!(
    /// Header of the split used ring, `struct virtq_used` (§"The Virtqueue
    /// Used Ring"). It is followed by `virtq_used_elem ring[size]` and, with
    /// `EVENT_IDX`, `le16 avail_event`.
    VirtqUsedHeader, 4, {
        /// [`VIRTQ_USED_F_NO_NOTIFY`].
        flags: Le16,
        /// Where the device puts the next entry (free-running).
        idx: Le16,
    }
);

wire!(
    /// One used-ring entry, `struct virtq_used_elem`.
    VirtqUsedElem, 8, {
        /// Head index of the used chain (le32 for padding reasons).
        id: Le32,
        /// Bytes written into the chain's device-writable part.
        len: Le32,
    }
);

wire!(
    /// Packed-ring descriptor, `struct pvirtq_desc` (§"Packed Virtqueues").
    PvirtqDesc, 16, {
        /// Buffer address.
        addr: Le64,
        /// Buffer length; in a used descriptor, the bytes written.
        len: Le32,
        /// Buffer id (meaningful in the last descriptor of a chain).
        id: Le16,
        /// [`DescFlags`], including AVAIL and USED.
        flags: Le16,
    }
);

wire!(
    /// The last 8 bytes of a [`PvirtqDesc`] (`len`, `id`, `flags`): what a
    /// device writes back into a slot to mark a buffer used, as one store.
    PvirtqUsedTail, 8, {
        /// Bytes written into the buffer.
        len: Le32,
        /// Buffer id.
        id: Le16,
        /// [`DescFlags`]: AVAIL and USED equal to the device's wrap counter.
        flags: Le16,
    }
);

wire!(
    /// Packed-ring event suppression structure, `struct
    /// pvirtq_event_suppress` (§"Event Suppression Structure Format").
    /// `off_wrap` is `desc_event_off:15, desc_event_wrap:1`; `flags` is
    /// `desc_event_flags:2` ([`RING_EVENT_FLAGS_ENABLE`] and friends) and 14
    /// reserved bits.
    PvirtqEventSuppress, 4, {
        /// Descriptor ring offset and wrap counter for `DESC` mode.
        off_wrap: Le16,
        /// ENABLE, DISABLE or DESC.
        flags: Le16,
    }
);

bitflags! {
    /// Descriptor flags of both ring formats.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DescFlags: u16 {
        /// The chain continues (split: via `next`; packed: the next slot).
        const NEXT = 1;
        /// Device-writable buffer (otherwise device-readable).
        const WRITE = 2;
        /// The buffer is a table of descriptors.
        const INDIRECT = 4;
        /// Packed only: the driver's availability bit.
        const AVAIL = 1 << 7;
        /// Packed only: the device's used bit.
        const USED = 1 << 15;
        const _ = !0;
    }
}

/// Available ring `flags`: the driver does not want used buffer notifications.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring `flags`: the device does not want available buffer notifications.
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;
/// Packed event suppression: notifications enabled.
pub const RING_EVENT_FLAGS_ENABLE: u16 = 0;
/// Packed event suppression: notifications disabled.
pub const RING_EVENT_FLAGS_DISABLE: u16 = 1;
/// Packed event suppression: notify at a specific descriptor (EVENT_IDX only).
pub const RING_EVENT_FLAGS_DESC: u16 = 2;

/// Largest queue size of either ring format.
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Alignment of the split descriptor table.
pub const SPLIT_DESC_ALIGN: u64 = 16;
/// Alignment of the split available ring.
pub const SPLIT_AVAIL_ALIGN: u64 = 2;
/// Alignment of the split used ring.
pub const SPLIT_USED_ALIGN: u64 = 4;
/// Alignment of the packed descriptor ring.
pub const PACKED_DESC_ALIGN: u64 = 16;
/// Alignment of the packed event suppression structures.
pub const PACKED_EVENT_ALIGN: u64 = 4;

/// Bytes of a split descriptor table of `q` entries.
pub const fn split_desc_table_size(q: u16) -> u64 {
    (q as u64).wrapping_mul(16)
}

/// Bytes of a split available ring, including `used_event`.
pub const fn split_avail_size(q: u16) -> u64 {
    (q as u64).wrapping_mul(2).wrapping_add(6)
}

/// Bytes of a split used ring, including `avail_event`.
pub const fn split_used_size(q: u16) -> u64 {
    (q as u64).wrapping_mul(8).wrapping_add(6)
}

/// Bytes of a packed descriptor ring of `q` entries.
pub const fn packed_desc_ring_size(q: u16) -> u64 {
    (q as u64).wrapping_mul(16)
}

bitflags! {
    /// The device status field (§"Device Status Field").
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct DeviceStatus: u8 {
        /// The guest found the device.
        const ACKNOWLEDGE = 1;
        /// The guest knows how to drive it.
        const DRIVER = 2;
        /// The driver is set up and ready.
        const DRIVER_OK = 4;
        /// Feature negotiation is complete.
        const FEATURES_OK = 8;
        /// The device is suspended (1.4, with `VIRTIO_F_SUSPEND`).
        const SUSPEND = 16;
        /// The device hit an error it cannot recover from.
        const DEVICE_NEEDS_RESET = 64;
        /// The guest gave up on the device.
        const FAILED = 128;
        const _ = !0;
    }
}

bitflags! {
    /// Feature bits; the named ones are the device-independent bits 24–43
    /// (§"Reserved Feature Bits"). Device-specific bits are kept as they are.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Features: u64 {
        /// Legacy only: notify when the available ring runs empty.
        const NOTIFY_ON_EMPTY = 1 << 24;
        /// Legacy: any descriptor layout; transitional devices offer it.
        const ANY_LAYOUT = 1 << 27;
        /// Indirect descriptors.
        const INDIRECT_DESC = 1 << 28;
        /// `used_event` / `avail_event` notification suppression.
        const EVENT_IDX = 1 << 29;
        /// A non-legacy device; the device MUST offer it.
        const VERSION_1 = 1 << 32;
        /// Device access to memory is translated or limited by the platform.
        const ACCESS_PLATFORM = 1 << 33;
        /// The packed ring layout.
        const RING_PACKED = 1 << 34;
        /// Buffers are used in the order they were made available.
        const IN_ORDER = 1 << 35;
        /// Memory accesses need the platform's (hardware) ordering.
        const ORDER_PLATFORM = 1 << 36;
        /// PCI SR-IOV; not to be offered on other transports.
        const SR_IOV = 1 << 37;
        /// Driver notifications carry the available position.
        const NOTIFICATION_DATA = 1 << 38;
        /// Notifications carry a device-supplied value (PCI only).
        const NOTIF_CONFIG_DATA = 1 << 39;
        /// Per-queue reset.
        const RING_RESET = 1 << 40;
        /// Administration virtqueue (PCI only).
        const ADMIN_VQ = 1 << 41;
        /// Device suspend (1.4).
        const SUSPEND = 1 << 43;
        const _ = !0;
    }
}

/// Device-specific feature bits 0–23.
pub const DEVICE_SPECIFIC_FEATURES_LOW: u64 = (1 << 24) - 1;

macro_rules! device_ids {
    ($($(#[$m:meta])* $name:ident = $value:literal,)*) => {
        /// Virtio device IDs (§"Device Types"). Unassigned numbers are kept
        /// in [`DeviceId::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[non_exhaustive]
        pub enum DeviceId {
            $($(#[$m])* $name,)*
            /// A number with no assigned device.
            Unknown(u32),
        }

        impl From<u32> for DeviceId {
            fn from(v: u32) -> Self {
                match v {
                    $($value => Self::$name,)*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<DeviceId> for u32 {
            fn from(id: DeviceId) -> u32 {
                match id {
                    $(DeviceId::$name => $value,)*
                    DeviceId::Unknown(v) => v,
                }
            }
        }
    };
}

device_ids! {
    /// 0: reserved (invalid).
    Reserved = 0,
    /// 1: network card.
    Network = 1,
    /// 2: block device.
    Block = 2,
    /// 3: console.
    Console = 3,
    /// 4: entropy source.
    Entropy = 4,
    /// 5: memory ballooning (traditional).
    TraditionalBalloon = 5,
    /// 6: ioMemory.
    IoMemory = 6,
    /// 7: rpmsg.
    Rpmsg = 7,
    /// 8: SCSI host.
    ScsiHost = 8,
    /// 9: 9P transport.
    NineP = 9,
    /// 10: mac80211 wlan.
    Mac80211Wlan = 10,
    /// 11: rproc serial.
    RprocSerial = 11,
    /// 12: virtio CAIF.
    Caif = 12,
    /// 13: memory balloon.
    MemoryBalloon = 13,
    /// 16: GPU.
    Gpu = 16,
    /// 17: RTC (timer/clock).
    Rtc = 17,
    /// 18: input.
    Input = 18,
    /// 19: socket (vsock).
    Vsock = 19,
    /// 20: crypto.
    Crypto = 20,
    /// 21: signal distribution module.
    SignalDistribution = 21,
    /// 22: pstore.
    Pstore = 22,
    /// 23: IOMMU.
    Iommu = 23,
    /// 24: memory (virtio-mem).
    Memory = 24,
    /// 25: sound.
    Sound = 25,
    /// 26: file system.
    FileSystem = 26,
    /// 27: PMEM.
    Pmem = 27,
    /// 28: RPMB.
    Rpmb = 28,
    /// 29: mac80211 hwsim.
    Mac80211Hwsim = 29,
    /// 30: video encoder (reserved only).
    VideoEncoder = 30,
    /// 31: video decoder (reserved only).
    VideoDecoder = 31,
    /// 32: SCMI.
    Scmi = 32,
    /// 33: Nitro secure module.
    NitroSecureModule = 33,
    /// 34: I2C adapter.
    I2cAdapter = 34,
    /// 35: watchdog (reserved only; de-facto protocol).
    Watchdog = 35,
    /// 36: CAN.
    Can = 36,
    /// 38: parameter server.
    ParameterServer = 38,
    /// 39: audio policy.
    AudioPolicy = 39,
    /// 40: Bluetooth.
    Bluetooth = 40,
    /// 41: GPIO.
    Gpio = 41,
    /// 42: RDMA.
    Rdma = 42,
    /// 43: camera.
    Camera = 43,
    /// 44: ISM.
    Ism = 44,
    /// 45: SPI controller.
    Spi = 45,
    /// 46: TEE.
    Tee = 46,
    /// 47: CPU balloon.
    CpuBalloon = 47,
    /// 48: media (V4L2-based).
    Media = 48,
    /// 49: USB controller.
    UsbController = 49,
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    // virtio 1.4 §"The Virtqueue Descriptor Table": le64 addr, le32 len,
    // le16 flags, le16 next.
    #[test]
    fn split_layouts_match_the_spec() {
        assert_eq!(offset_of!(VirtqDesc, len), 8);
        assert_eq!(offset_of!(VirtqDesc, flags), 12);
        assert_eq!(offset_of!(VirtqDesc, next), 14);
        assert_eq!(offset_of!(VirtqUsedElem, len), 4);
        assert_eq!((split_avail_size(256), split_used_size(256)), (518, 2054));
        let d = VirtqDesc {
            addr: 0x0102_0304_0506_0708.into(),
            len: 0x1122_3344.into(),
            flags: 0x0003.into(),
            next: 0x0102.into(),
        };
        let bytes = d.as_bytes();
        assert_eq!(bytes[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[8..], [0x44, 0x33, 0x22, 0x11, 3, 0, 2, 1]);
        assert_eq!(VirtqDesc::read_from_bytes(bytes).unwrap(), d);
    }

    // virtio 1.4 §"Packed Virtqueues": le64 addr, le32 len, le16 id, le16
    // flags; AVAIL is bit 7, USED bit 15.
    #[test]
    fn packed_layouts_match_the_spec() {
        assert_eq!(offset_of!(PvirtqDesc, id), 12);
        assert_eq!(offset_of!(PvirtqDesc, flags), 14);
        assert_eq!(offset_of!(PvirtqEventSuppress, flags), 2);
        assert_eq!(DescFlags::AVAIL.bits(), 0x80);
        assert_eq!(DescFlags::USED.bits(), 0x8000);
        let d = PvirtqDesc {
            id: 0x0a0b.into(),
            flags: 0x8080.into(),
            ..Default::default()
        };
        assert_eq!(d.as_bytes()[12..], [0x0b, 0x0a, 0x80, 0x80]);
    }

    // virtio 1.4 §"Device Types": IDs round-trip; 14, 15 and 37 are
    // unassigned.
    #[test]
    fn device_ids_round_trip() {
        for v in 0..=60u32 {
            assert_eq!(u32::from(DeviceId::from(v)), v);
        }
        assert_eq!(DeviceId::from(4), DeviceId::Entropy);
        assert_eq!(DeviceId::from(45), DeviceId::Spi);
        for v in [14, 15, 37, 50] {
            assert_eq!(DeviceId::from(v), DeviceId::Unknown(v));
        }
    }

    // virtio 1.4 §"Device Status Field" and §"Reserved Feature Bits".
    #[test]
    fn status_and_feature_bits_have_spec_values() {
        assert_eq!(DeviceStatus::FEATURES_OK.bits(), 8);
        assert_eq!(DeviceStatus::DEVICE_NEEDS_RESET.bits(), 64);
        assert_eq!(Features::VERSION_1.bits(), 1 << 32);
        assert_eq!(Features::RING_RESET.bits(), 1 << 40);
        // Device-specific bits survive.
        assert_eq!(Features::from_bits_retain(5).bits(), 5);
    }
}
