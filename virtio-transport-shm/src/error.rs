//! Errors of window setup.

use core::fmt;

use virtio_core::memory::MemoryError;

/// Why a [`crate::Layout`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LayoutError {
    /// `slots` is 0, not a power of two, or above 32768.
    Slots(u16),
    /// `slot_size` is not a multiple of 8 in
    /// [`crate::MIN_MSG_SIZE`] ..= [`crate::MAX_MSG_SIZE`].
    SlotSize(u16),
    /// The data area is empty or not a multiple of 8 bytes.
    DataLen(u32),
    /// The window would be larger than `u32::MAX` bytes.
    TooLarge,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Slots(n) => write!(f, "{n} slots per ring: need a power of two up to 32768"),
            Self::SlotSize(n) => write!(f, "slot size {n}: need a multiple of 8 in 48..=280"),
            Self::DataLen(n) => write!(f, "data area of {n} bytes: need a non-zero multiple of 8"),
            Self::TooLarge => f.write_str("window larger than 4 GiB"),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Why an end could not attach to a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AttachError {
    /// The window memory is smaller than the layout.
    WindowTooSmall {
        /// Bytes the layout needs.
        need: u64,
    },
    /// No magic at offset 0 (the creator has not initialised the window).
    NoMagic(u32),
    /// The header describes another layout version or other sizes.
    HeaderMismatch {
        /// Offset of the first differing header field.
        offset: u64,
    },
    /// The window memory refused an access.
    Memory(MemoryError),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WindowTooSmall { need } => {
                write!(f, "window smaller than the {need} bytes the layout needs")
            }
            Self::NoMagic(m) => write!(f, "no window magic (found {m:#010x})"),
            Self::HeaderMismatch { offset } => {
                write!(
                    f,
                    "window header differs from the expected layout at {offset:#x}"
                )
            }
            Self::Memory(e) => write!(f, "window access failed: {e}"),
        }
    }
}

impl core::error::Error for AttachError {}

impl From<MemoryError> for AttachError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}
