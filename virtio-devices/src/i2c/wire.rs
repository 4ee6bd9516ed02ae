//! I2C adapter wire formats (virtio 1.4 §"I2C Adapter Device").

use core::fmt;

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Feature bit 0, `VIRTIO_I2C_F_ZERO_LENGTH_REQUEST`: zero-length requests
/// and the `M_RD` flag. The device MUST offer it and reject a driver that
/// does not accept it.
pub const F_ZERO_LENGTH_REQUEST: u64 = 1 << 0;

/// `flags` bit 0, `VIRTIO_I2C_FLAGS_FAIL_NEXT`: the next request belongs to
/// the same transaction (the driver clears it on a group's last request).
pub const FLAGS_FAIL_NEXT: u32 = 1 << 0;
/// `flags` bit 1, `VIRTIO_I2C_FLAGS_M_RD`: a read request (the buffer is
/// device-writable).
pub const FLAGS_M_RD: u32 = 1 << 1;
/// The `flags` bits this version of the spec defines; the rest are reserved
/// as zero.
pub const FLAGS_KNOWN: u32 = FLAGS_FAIL_NEXT | FLAGS_M_RD;

/// `VIRTIO_I2C_MSG_OK`.
pub const MSG_OK: u8 = 0;
/// `VIRTIO_I2C_MSG_ERR`.
pub const MSG_ERR: u8 = 1;

/// Size of [`I2cOutHdr`] on the wire.
pub const OUT_HDR_BYTES: u32 = size_of::<I2cOutHdr>() as u32;

/// `struct virtio_i2c_out_hdr` (8 bytes, little-endian): the
/// device-readable head of every request.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct I2cOutHdr {
    /// The target's address in the encoding of [`Address::decode`].
    pub addr: U16,
    /// Padding to a full dword.
    pub padding: U16,
    /// `FLAGS_*` bits.
    pub flags: U32,
}

/// A target address, decoded from the `addr` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Address {
    /// A 7-bit address (0–0x7f).
    SevenBit(u8),
    /// A 10-bit address (0–0x3ff).
    TenBit(u16),
}

impl Address {
    /// Decodes the spec's `addr` field:
    ///
    /// ```text
    /// bits            15 .. 8   7 6 5 4 3   2   1   0
    /// 7-bit address   0 .. 0    A6 .. A0            0
    /// 10-bit address  A7 .. A0  1 1 1 1 0   A9  A8  0
    /// ```
    ///
    /// A low byte of `11110xx0` is a 10-bit address (the I2C specification
    /// reserves the 7-bit addresses 0x78–0x7b for exactly this 10-bit
    /// prefix, so they are never 7-bit targets). `None` for a value in
    /// neither form (bit 0 set, or a high byte with a 7-bit low byte).
    pub fn decode(addr: u16) -> Option<Self> {
        let [low, high] = addr.to_le_bytes();
        if low & 1 != 0 {
            return None;
        }
        if low & 0xf8 == 0xf0 {
            let top = u16::from((low >> 1) & 0b11);
            return Some(Self::TenBit((top << 8) | u16::from(high)));
        }
        (high == 0).then_some(Self::SevenBit(low >> 1))
    }

    /// The `addr` field for this address (the inverse of
    /// [`Address::decode`]); `None` for a 7-bit address above 0x7f or a
    /// 10-bit one above 0x3ff.
    pub fn encode(self) -> Option<u16> {
        match self {
            Self::SevenBit(a) if a <= 0x7f => Some(u16::from(a) << 1),
            Self::TenBit(a) if a <= 0x3ff => {
                let [low, top] = a.to_le_bytes();
                Some(u16::from_le_bytes([0xf0 | (top << 1), low]))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SevenBit(a) => write!(f, "{a:#04x}"),
            Self::TenBit(a) => write!(f, "{a:#05x} (10-bit)"),
        }
    }
}
