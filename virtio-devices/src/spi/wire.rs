//! SPI controller wire formats (virtio 1.4 §"SPI Controller Device", and
//! Linux's `include/uapi/linux/virtio_spi.h`).

use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VIRTIO_SPI_TRANS_OK`.
pub const TRANS_OK: u8 = 0;
/// `VIRTIO_SPI_PARAM_ERR`: the head asks for something invalid or
/// unsupported (or full duplex with unequal buffers).
pub const PARAM_ERR: u8 = 1;
/// `VIRTIO_SPI_TRANS_ERR`: valid parameters, the transfer failed.
pub const TRANS_ERR: u8 = 2;

/// `mode` bit 0: CPHA.
pub const MODE_CPHA: u32 = 1 << 0;
/// `mode` bit 1: CPOL.
pub const MODE_CPOL: u32 = 1 << 1;
/// `mode` bit 2: chip select active high.
pub const MODE_CS_HIGH: u32 = 1 << 2;
/// `mode` bit 3: least significant bit first.
pub const MODE_LSB_FIRST: u32 = 1 << 3;
/// `mode` bit 4: loopback.
pub const MODE_LOOP: u32 = 1 << 4;

/// `mode_func_supported` bit 4: chip select active high.
pub const MODE_FUNC_CS_HIGH: u32 = 1 << 4;
/// `mode_func_supported` bit 5: LSB first.
pub const MODE_FUNC_LSB_FIRST: u32 = 1 << 5;
/// `mode_func_supported` bit 6: loopback.
pub const MODE_FUNC_LOOP: u32 = 1 << 6;

/// Size of [`SpiTransferHead`] on the wire.
pub const HEAD_BYTES: u32 = size_of::<SpiTransferHead>() as u32;

/// `struct virtio_spi_config` (32 bytes, little-endian).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SpiConfig {
    /// Number of chip selects.
    pub cs_max_number: u8,
    /// 1: chip select may toggle between the transfers of a message.
    pub cs_change_supported: u8,
    /// DUAL/QUAD/OCTAL writes (bits 0–2).
    pub tx_nbits_supported: u8,
    /// DUAL/QUAD/OCTAL reads (bits 0–2).
    pub rx_nbits_supported: u8,
    /// Bit n: `bits_per_word` n + 1 supported (0: any).
    pub bits_per_word_mask: U32,
    /// CPHA (bits 0–1), CPOL (2–3), CS_HIGH (4), LSB_FIRST (5), LOOP (6).
    pub mode_func_supported: U32,
    /// Highest clock (0: no limit).
    pub max_freq_hz: U32,
    /// Longest word delay (0: none).
    pub max_word_delay_ns: U32,
    /// Longest delay after chip select asserts (0: none).
    pub max_cs_setup_ns: U32,
    /// Longest delay before chip select deasserts (0: none).
    pub max_cs_hold_ns: U32,
    /// Longest delay with chip select deasserted (0: none).
    pub max_cs_inactive_ns: U32,
}

/// `struct virtio_spi_transfer_head` (32 bytes): the readable head of every
/// request.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SpiTransferHead {
    /// The chip select.
    pub chip_select_id: u8,
    /// Bits per word.
    pub bits_per_word: u8,
    /// 1: deassert chip select before the next transfer.
    pub cs_change: u8,
    /// 0/1 SINGLE, 2 DUAL, 4 QUAD, 8 OCTAL.
    pub tx_nbits: u8,
    /// As `tx_nbits`, for reading.
    pub rx_nbits: u8,
    /// Reserved.
    pub reserved: [u8; 3],
    /// `MODE_*` bits.
    pub mode: U32,
    /// Clock in Hz.
    pub freq: U32,
    /// Delay between words.
    pub word_delay_ns: U32,
    /// Delay after chip select asserts.
    pub cs_setup_ns: U32,
    /// Delay before chip select deasserts.
    pub cs_delay_hold_ns: U32,
    /// Delay with chip select deasserted before the next transfer.
    pub cs_change_delay_inactive_ns: U32,
}
