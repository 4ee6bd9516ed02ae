//! IOMMU device wire formats (virtio 1.4 §"IOMMU Device"): the
//! configuration, the request bodies that follow `virtio_iommu_req_head`,
//! the PROBE properties and the fault report.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VIRTIO_IOMMU_F_INPUT_RANGE` (0): `input_range` is valid.
pub const F_INPUT_RANGE: u64 = 1 << 0;
/// `VIRTIO_IOMMU_F_DOMAIN_RANGE` (1): `domain_range` is valid.
pub const F_DOMAIN_RANGE: u64 = 1 << 1;
/// `VIRTIO_IOMMU_F_MAP_UNMAP` (2): MAP and UNMAP are available.
pub const F_MAP_UNMAP: u64 = 1 << 2;
/// `VIRTIO_IOMMU_F_BYPASS` (3, legacy): unattached endpoints bypass.
pub const F_BYPASS: u64 = 1 << 3;
/// `VIRTIO_IOMMU_F_PROBE` (4): PROBE is available.
pub const F_PROBE: u64 = 1 << 4;
/// `VIRTIO_IOMMU_F_MMIO` (5): the `MAP_F_MMIO` flag is available.
pub const F_MMIO: u64 = 1 << 5;
/// `VIRTIO_IOMMU_F_BYPASS_CONFIG` (6): the `bypass` config field and the
/// `ATTACH_F_BYPASS` flag.
pub const F_BYPASS_CONFIG: u64 = 1 << 6;

/// `VIRTIO_IOMMU_T_ATTACH`.
pub const T_ATTACH: u8 = 1;
/// `VIRTIO_IOMMU_T_DETACH`.
pub const T_DETACH: u8 = 2;
/// `VIRTIO_IOMMU_T_MAP`.
pub const T_MAP: u8 = 3;
/// `VIRTIO_IOMMU_T_UNMAP`.
pub const T_UNMAP: u8 = 4;
/// `VIRTIO_IOMMU_T_PROBE`.
pub const T_PROBE: u8 = 5;

/// A request's status (`virtio_iommu_req_tail.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Status {
    /// `VIRTIO_IOMMU_S_OK`.
    Ok = 0,
    /// `VIRTIO_IOMMU_S_IOERR`: a virtio communication error (a malformed chain).
    IoErr = 1,
    /// `VIRTIO_IOMMU_S_UNSUPP`: a request the negotiated features do not allow.
    Unsupp = 2,
    /// `VIRTIO_IOMMU_S_DEVERR`: an internal device error.
    DevErr = 3,
    /// `VIRTIO_IOMMU_S_INVAL`: invalid parameters.
    Inval = 4,
    /// `VIRTIO_IOMMU_S_RANGE`: out-of-range parameters.
    Range = 5,
    /// `VIRTIO_IOMMU_S_NOENT`: no such endpoint or domain.
    NoEnt = 6,
    /// `VIRTIO_IOMMU_S_FAULT`: bad address.
    Fault = 7,
    /// `VIRTIO_IOMMU_S_NOMEM`: a table of the device is full.
    NoMem = 8,
}

impl Status {
    /// The status of a wire byte (`None` for an undefined one).
    pub fn from_wire(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::IoErr,
            2 => Self::Unsupp,
            3 => Self::DevErr,
            4 => Self::Inval,
            5 => Self::Range,
            6 => Self::NoEnt,
            7 => Self::Fault,
            8 => Self::NoMem,
            _ => return None,
        })
    }
}

/// `VIRTIO_IOMMU_ATTACH_F_BYPASS`: the domain is a bypass domain.
pub const ATTACH_F_BYPASS: u32 = 1 << 0;

/// `VIRTIO_IOMMU_MAP_F_READ`.
pub const MAP_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_MAP_F_WRITE`.
pub const MAP_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_MAP_F_MMIO`.
pub const MAP_F_MMIO: u32 = 1 << 2;

/// `VIRTIO_IOMMU_PROBE_T_RESV_MEM`.
pub const PROBE_T_RESV_MEM: u16 = 1;
/// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`.
pub const RESV_MEM_T_RESERVED: u8 = 0;
/// `VIRTIO_IOMMU_RESV_MEM_T_MSI`.
pub const RESV_MEM_T_MSI: u8 = 1;

/// `VIRTIO_IOMMU_FAULT_R_UNKNOWN`.
pub const FAULT_R_UNKNOWN: u8 = 0;
/// `VIRTIO_IOMMU_FAULT_R_DOMAIN`: the endpoint is not attached.
pub const FAULT_R_DOMAIN: u8 = 1;
/// `VIRTIO_IOMMU_FAULT_R_MAPPING`: no mapping, or not with that permission.
pub const FAULT_R_MAPPING: u8 = 2;
/// `VIRTIO_IOMMU_FAULT_F_READ`.
pub const FAULT_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_FAULT_F_WRITE`.
pub const FAULT_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_FAULT_F_ADDRESS`: `address` is valid.
pub const FAULT_F_ADDRESS: u32 = 1 << 8;

/// `struct virtio_iommu_req_head` (the readable part starts with it).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ReqHead {
    /// `T_*`.
    pub type_: u8,
    /// Ignored by the device.
    pub reserved: [u8; 3],
}

/// `struct virtio_iommu_req_tail` (the last 4 writable bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ReqTail {
    /// A [`Status`].
    pub status: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// The body of `struct virtio_iommu_req_attach` (after the head).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct AttachBody {
    /// The domain (created when it does not exist).
    pub domain: U32,
    /// The endpoint.
    pub endpoint: U32,
    /// `ATTACH_F_*`.
    pub flags: U32,
    /// Must be zero.
    pub reserved: [u8; 4],
}

/// The body of `struct virtio_iommu_req_detach`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DetachBody {
    /// The domain.
    pub domain: U32,
    /// The endpoint.
    pub endpoint: U32,
    /// Ignored.
    pub reserved: [u8; 8],
}

/// The body of `struct virtio_iommu_req_map`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MapBody {
    /// The domain.
    pub domain: U32,
    /// First IOVA.
    pub virt_start: U64,
    /// Last IOVA (inclusive).
    pub virt_end: U64,
    /// Where `virt_start` goes.
    pub phys_start: U64,
    /// `MAP_F_*`.
    pub flags: U32,
}

/// The body of `struct virtio_iommu_req_unmap`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct UnmapBody {
    /// The domain.
    pub domain: U32,
    /// First IOVA.
    pub virt_start: U64,
    /// Last IOVA (inclusive).
    pub virt_end: U64,
    /// Ignored.
    pub reserved: [u8; 4],
}

/// The readable body of `struct virtio_iommu_req_probe`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ProbeBody {
    /// The endpoint.
    pub endpoint: U32,
    /// Ignored.
    pub reserved: [u8; 64],
}

/// `struct virtio_iommu_probe_property` (the header of each property).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ProbeProperty {
    /// Bits 0–11 the type, 12–15 reserved (zero).
    pub type_: U16,
    /// Bytes of the value after this header.
    pub length: U16,
}

/// `struct virtio_iommu_probe_resv_mem`, header included.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ProbeResvMem {
    /// `type_ = PROBE_T_RESV_MEM`, `length = 20`.
    pub head: ProbeProperty,
    /// `RESV_MEM_T_*`.
    pub subtype: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// First reserved IOVA.
    pub start: U64,
    /// Last reserved IOVA (inclusive).
    pub end: U64,
}

/// `struct virtio_iommu_fault` (24 bytes, one per event buffer).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct FaultReport {
    /// `FAULT_R_*`.
    pub reason: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// `FAULT_F_*`.
    pub flags: U32,
    /// The endpoint that faulted.
    pub endpoint: U32,
    /// Zero.
    pub reserved1: U32,
    /// The IOVA, with `FAULT_F_ADDRESS`.
    pub address: U64,
}

/// `struct virtio_iommu_config` (40 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IommuConfigSpace {
    /// Page sizes that can be mapped; the lowest set bit is the granule.
    pub page_size_mask: U64,
    /// `input_range.start`.
    pub input_start: U64,
    /// `input_range.end`.
    pub input_end: U64,
    /// `domain_range.start`.
    pub domain_start: U32,
    /// `domain_range.end`.
    pub domain_end: U32,
    /// Bytes of `properties` a PROBE request carries.
    pub probe_size: U32,
    /// 0 or 1 (with `F_BYPASS_CONFIG`; the one field the driver may write).
    pub bypass: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// Offset of `bypass` in the configuration.
pub const CONFIG_BYPASS_OFFSET: u32 = 36;

const _: () = assert!(size_of::<ReqHead>() == 4);
const _: () = assert!(size_of::<ReqTail>() == 4);
const _: () = assert!(size_of::<AttachBody>() == 16);
const _: () = assert!(size_of::<DetachBody>() == 16);
const _: () = assert!(size_of::<MapBody>() == 32);
const _: () = assert!(size_of::<UnmapBody>() == 24);
const _: () = assert!(size_of::<ProbeBody>() == 68);
const _: () = assert!(size_of::<ProbeResvMem>() == 24);
const _: () = assert!(size_of::<FaultReport>() == 24);
const _: () = assert!(size_of::<IommuConfigSpace>() == 40);
const _: () = assert!(core::mem::offset_of!(IommuConfigSpace, bypass) == 36);
