//! Block device wire formats (virtio 1.4 §"Block Device").

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Sector size of the request protocol, whatever `blk_size` says.
pub const SECTOR_SIZE: u32 = 512;
/// Length of the `GET_ID` answer.
pub const ID_BYTES: usize = 20;

/// Feature bit: `size_max` is valid.
pub const F_SIZE_MAX: u64 = 1 << 1;
/// Feature bit: `seg_max` is valid.
pub const F_SEG_MAX: u64 = 1 << 2;
/// Feature bit: the device is read-only.
pub const F_RO: u64 = 1 << 5;
/// Feature bit: `blk_size` is valid.
pub const F_BLK_SIZE: u64 = 1 << 6;
/// Feature bit: the `FLUSH` command.
pub const F_FLUSH: u64 = 1 << 9;
/// Feature bit: more than one request queue (`num_queues` is valid).
pub const F_MQ: u64 = 1 << 12;
/// Feature bit: the `DISCARD` command.
pub const F_DISCARD: u64 = 1 << 13;
/// Feature bit: the `WRITE_ZEROES` command.
pub const F_WRITE_ZEROES: u64 = 1 << 14;

/// `struct virtio_blk_config` (96 bytes, little-endian).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: U64,
    /// Largest segment (`SIZE_MAX`).
    pub size_max: U32,
    /// Most data segments per request (`SEG_MAX`).
    pub seg_max: U32,
    /// Geometry: cylinders.
    pub cylinders: U16,
    /// Geometry: heads.
    pub heads: u8,
    /// Geometry: sectors.
    pub sectors: u8,
    /// Block size for performance (`BLK_SIZE`).
    pub blk_size: U32,
    /// Topology: log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Topology: offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Topology: suggested minimum I/O size in blocks.
    pub min_io_size: U16,
    /// Topology: optimal I/O size in blocks.
    pub opt_io_size: U32,
    /// Writeback cache mode (`CONFIG_WCE`).
    pub writeback: u8,
    /// Padding, 0.
    pub unused0: u8,
    /// Request queues (`MQ`).
    pub num_queues: U16,
    /// Most sectors per discard segment.
    pub max_discard_sectors: U32,
    /// Most segments per discard request.
    pub max_discard_seg: U32,
    /// Discard alignment in sectors.
    pub discard_sector_alignment: U32,
    /// Most sectors per write-zeroes segment.
    pub max_write_zeroes_sectors: U32,
    /// Most segments per write-zeroes request.
    pub max_write_zeroes_seg: U32,
    /// Write zeroes may deallocate.
    pub write_zeroes_may_unmap: u8,
    /// Padding, 0.
    pub unused1: [u8; 3],
    /// Most sectors per secure-erase segment.
    pub max_secure_erase_sectors: U32,
    /// Most segments per secure-erase request.
    pub max_secure_erase_seg: U32,
    /// Secure-erase alignment in sectors.
    pub secure_erase_sector_alignment: U32,
    /// Zoned: sectors per zone.
    pub zone_sectors: U32,
    /// Zoned: most open zones.
    pub max_open_zones: U32,
    /// Zoned: most active zones.
    pub max_active_zones: U32,
    /// Zoned: most sectors per append.
    pub max_append_sectors: U32,
    /// Zoned: write granularity in bytes.
    pub write_granularity: U32,
    /// Zoned: model.
    pub model: u8,
    /// Padding, 0.
    pub unused2: [u8; 3],
}

const _: () = assert!(size_of::<BlkConfig>() == 96);

/// The request header every request starts with (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlkReqHeader {
    /// Request type ([`RequestType`]).
    pub type_: U32,
    /// Reserved.
    pub reserved: U32,
    /// First sector (512-byte units).
    pub sector: U64,
}

const _: () = assert!(size_of::<BlkReqHeader>() == 16);

/// One segment of a `DISCARD` / `WRITE_ZEROES` request (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlkDiscardWriteZeroes {
    /// First sector.
    pub sector: U64,
    /// Number of sectors.
    pub num_sectors: U32,
    /// Flags: bit 0 `unmap`.
    pub flags: U32,
}

const _: () = assert!(size_of::<BlkDiscardWriteZeroes>() == 16);

/// The `unmap` flag of a discard / write-zeroes segment.
pub const SEGMENT_F_UNMAP: u32 = 1;

macro_rules! request_types {
    ($($(#[$m:meta])* $name:ident = $value:literal,)*) => {
        /// Request types (virtio 1.4 §"Device Operation"); numbers with no
        /// type are kept in [`RequestType::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[non_exhaustive]
        pub enum RequestType {
            $($(#[$m])* $name,)*
            /// A number with no request type.
            Unknown(u32),
        }

        impl From<u32> for RequestType {
            fn from(v: u32) -> Self {
                match v {
                    $($value => Self::$name,)*
                    other => Self::Unknown(other),
                }
            }
        }
    };
}

request_types! {
    /// Read.
    In = 0,
    /// Write.
    Out = 1,
    /// Flush the write cache.
    Flush = 4,
    /// Device ID string.
    GetId = 8,
    /// Lifetime metrics.
    GetLifetime = 10,
    /// Discard sectors.
    Discard = 11,
    /// Write zeroes.
    WriteZeroes = 13,
    /// Secure erase.
    SecureErase = 14,
    /// Zoned: append.
    ZoneAppend = 15,
    /// Zoned: report.
    ZoneReport = 16,
    /// Zoned: open.
    ZoneOpen = 18,
    /// Zoned: close.
    ZoneClose = 20,
    /// Zoned: finish.
    ZoneFinish = 22,
    /// Zoned: reset.
    ZoneReset = 24,
    /// Zoned: reset all.
    ZoneResetAll = 26,
}

/// The status byte the device writes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Device or driver error.
    IoErr = 1,
    /// Request unsupported.
    Unsupp = 2,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK",
            Self::IoErr => "IOERR",
            Self::Unsupp => "UNSUPP",
        })
    }
}
