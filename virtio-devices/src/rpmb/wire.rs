//! RPMB wire formats (virtio 1.4 §"RPMB Device"; the frame is eMMC's,
//! JESD84 §6.6.22, with big-endian fields).

use core::fmt;

use zerocopy::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of one frame (`struct virtio_rpmb_frame`).
pub const FRAME_BYTES: usize = 512;
/// Bytes of data one frame carries: one RPMB block (a half sector).
pub const BLOCK_BYTES: usize = 256;
/// Where the bytes the MAC covers start in a frame: everything after
/// `stuff` and `key_mac` (`data`, `nonce`, `write_counter`, `address`,
/// `block_count`, `result`, `req_resp`), 284 bytes.
pub const MAC_START: usize = 228;
/// Bytes of the authentication key and of a MAC.
pub const KEY_BYTES: usize = 32;
/// Blocks in one `capacity` unit (128 KiB).
pub const BLOCKS_PER_UNIT: u32 = 128 * 1024 / BLOCK_BYTES as u32;
/// The largest `capacity` (16 MiB).
pub const MAX_CAPACITY: u8 = 0x80;
/// The write counter's maximum; a counter there has expired.
pub const COUNTER_MAX: u32 = 0xffff_ffff;

/// `struct virtio_rpmb_frame` (512 bytes, big-endian fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Frame {
    /// Padding, not covered by the MAC.
    pub stuff: [u8; 196],
    /// The key (`PROGRAM_KEY`) or the HMAC-SHA256 of the frames' bytes
    /// from [`MAC_START`] on.
    pub key_mac: [u8; KEY_BYTES],
    /// One block of data.
    pub data: [u8; BLOCK_BYTES],
    /// The driver's random number, echoed in read and counter responses.
    pub nonce: [u8; 16],
    /// The write counter.
    pub write_counter: U32,
    /// The first block (half sector) addressed.
    pub address: U16,
    /// Blocks read or written.
    pub block_count: U16,
    /// `RES_*` in responses.
    pub result: U16,
    /// `REQ_*` or `RESP_*`.
    pub req_resp: U16,
}

const _: () = assert!(size_of::<Frame>() == FRAME_BYTES);
const _: () = assert!(core::mem::offset_of!(Frame, data) == MAC_START);
const _: () = assert!(core::mem::offset_of!(Frame, write_counter) == 500);
const _: () = assert!(core::mem::offset_of!(Frame, req_resp) == 510);

impl Frame {
    /// The bytes the MAC covers.
    pub fn mac_input(&self) -> &[u8] {
        self.as_bytes().get(MAC_START..).unwrap_or_default()
    }
}

/// `struct virtio_rpmb_config` (3 bytes, read-only).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RpmbConfig {
    /// Capacity in 128 KiB units (0–0x80).
    pub capacity: u8,
    /// Most blocks one write request may carry (0: no limit).
    pub max_wr_cnt: u8,
    /// Most blocks one read request may ask for (0: no limit).
    pub max_rd_cnt: u8,
}

const _: () = assert!(size_of::<RpmbConfig>() == 3);

/// `VIRTIO_RPMB_REQ_PROGRAM_KEY`.
pub const REQ_PROGRAM_KEY: u16 = 0x0001;
/// `VIRTIO_RPMB_REQ_GET_WRITE_COUNTER`.
pub const REQ_GET_WRITE_COUNTER: u16 = 0x0002;
/// `VIRTIO_RPMB_REQ_DATA_WRITE`.
pub const REQ_DATA_WRITE: u16 = 0x0003;
/// `VIRTIO_RPMB_REQ_DATA_READ`.
pub const REQ_DATA_READ: u16 = 0x0004;
/// `VIRTIO_RPMB_REQ_RESULT_READ`.
pub const REQ_RESULT_READ: u16 = 0x0005;
/// `VIRTIO_RPMB_RESP_PROGRAM_KEY`.
pub const RESP_PROGRAM_KEY: u16 = 0x0100;
/// `VIRTIO_RPMB_RESP_GET_COUNTER`.
pub const RESP_GET_COUNTER: u16 = 0x0200;
/// `VIRTIO_RPMB_RESP_DATA_WRITE`.
pub const RESP_DATA_WRITE: u16 = 0x0300;
/// `VIRTIO_RPMB_RESP_DATA_READ`.
pub const RESP_DATA_READ: u16 = 0x0400;

/// A request type (`req_resp` of a request frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RequestType {
    /// `REQ_PROGRAM_KEY`.
    ProgramKey,
    /// `REQ_GET_WRITE_COUNTER`.
    GetWriteCounter,
    /// `REQ_DATA_WRITE`.
    DataWrite,
    /// `REQ_DATA_READ`.
    DataRead,
    /// `REQ_RESULT_READ`.
    ResultRead,
    /// Any other value.
    Unknown(u16),
}

impl From<u16> for RequestType {
    fn from(v: u16) -> Self {
        match v {
            REQ_PROGRAM_KEY => Self::ProgramKey,
            REQ_GET_WRITE_COUNTER => Self::GetWriteCounter,
            REQ_DATA_WRITE => Self::DataWrite,
            REQ_DATA_READ => Self::DataRead,
            REQ_RESULT_READ => Self::ResultRead,
            other => Self::Unknown(other),
        }
    }
}

impl RequestType {
    /// The response type that answers it (0 for `RESULT_READ`, which
    /// answers with the response of the operation it reads, and unknown
    /// types).
    pub fn response(self) -> u16 {
        match self {
            Self::ProgramKey => RESP_PROGRAM_KEY,
            Self::GetWriteCounter => RESP_GET_COUNTER,
            Self::DataWrite => RESP_DATA_WRITE,
            Self::DataRead => RESP_DATA_READ,
            Self::ResultRead | Self::Unknown(_) => 0,
        }
    }
}

/// An operation result (`result` of a response frame, `VIRTIO_RPMB_RES_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RpmbResult {
    /// `RES_OK` (0).
    Ok,
    /// `RES_GENERAL_FAILURE` (1): a malformed request or an error with no
    /// code of its own.
    GeneralFailure,
    /// `RES_AUTH_FAILURE` (2): the MAC does not match.
    AuthFailure,
    /// `RES_COUNT_FAILURE` (3): the request's write counter is not the
    /// device's.
    CountFailure,
    /// `RES_ADDR_FAILURE` (4): the blocks are outside the device.
    AddrFailure,
    /// `RES_WRITE_FAILURE` (5): storage (or key programming) failed.
    WriteFailure,
    /// `RES_READ_FAILURE` (6): storage failed to read.
    ReadFailure,
    /// `RES_NO_AUTH_KEY` (7): no key has been programmed.
    NoAuthKey,
    /// `RES_WRITE_COUNTER_EXPIRED` (0x80): the counter reached its maximum;
    /// no more writes.
    WriteCounterExpired,
}

impl RpmbResult {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            Self::Ok => 0x0000,
            Self::GeneralFailure => 0x0001,
            Self::AuthFailure => 0x0002,
            Self::CountFailure => 0x0003,
            Self::AddrFailure => 0x0004,
            Self::WriteFailure => 0x0005,
            Self::ReadFailure => 0x0006,
            Self::NoAuthKey => 0x0007,
            Self::WriteCounterExpired => 0x0080,
        }
    }

    /// The result for a wire value, `None` for one the spec does not define.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0x0000 => Self::Ok,
            0x0001 => Self::GeneralFailure,
            0x0002 => Self::AuthFailure,
            0x0003 => Self::CountFailure,
            0x0004 => Self::AddrFailure,
            0x0005 => Self::WriteFailure,
            0x0006 => Self::ReadFailure,
            0x0007 => Self::NoAuthKey,
            0x0080 => Self::WriteCounterExpired,
            _ => return None,
        })
    }
}

impl fmt::Display for RpmbResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::GeneralFailure => "general failure",
            Self::AuthFailure => "authentication failure (MAC mismatch)",
            Self::CountFailure => "write counter mismatch",
            Self::AddrFailure => "address out of range",
            Self::WriteFailure => "write failure",
            Self::ReadFailure => "read failure",
            Self::NoAuthKey => "no authentication key programmed",
            Self::WriteCounterExpired => "write counter expired",
        })
    }
}
