//! Packed-ring positions and placement rules: always compiled, so the
//! driver side, [`super::NotificationData`] and the device core's ring base
//! work without the `packed` feature (which adds only the device-side
//! engine, [`super::PackedQueue`]).

use super::error::{ConfigError, RingArea};
use super::{NotificationData, QueueConfig, check_areas};
use crate::memory::GuestMemory;
use crate::spec::{MAX_QUEUE_SIZE, PACKED_DESC_ALIGN, PACKED_EVENT_ALIGN, packed_desc_ring_size};

/// Bit 15 of `off_wrap` and of a packed position: the wrap counter.
const WRAP_BIT: u16 = 1 << 15;

impl QueueConfig {
    /// Checks this configuration for a packed ring: the size is in
    /// `1..=32768` (any value, not only powers of two), the descriptor ring
    /// is 16-aligned, the two event suppression structures 4-aligned, and
    /// each area is wholly in `mem` (virtio 1.4 §"Structure Size and
    /// Alignment").
    ///
    /// # Errors
    /// The first rule broken, as a [`ConfigError`].
    pub fn check_packed<M: GuestMemory>(&self, mem: &M) -> Result<(), ConfigError> {
        let size = self.size;
        if size == 0 {
            return Err(ConfigError::ZeroSize);
        }
        if size > MAX_QUEUE_SIZE {
            return Err(ConfigError::SizeTooLarge(size));
        }
        let areas = [
            (
                RingArea::Descriptors,
                self.desc_addr,
                PACKED_DESC_ALIGN,
                packed_desc_ring_size(size),
            ),
            (RingArea::Driver, self.driver_addr, PACKED_EVENT_ALIGN, 4),
            (RingArea::Device, self.device_addr, PACKED_EVENT_ALIGN, 4),
        ];
        check_areas(mem, &areas)
    }
}

/// A position in a packed ring: a slot and the wrap counter that goes with
/// it. Encoded as `slot | wrap << 15`, the form of `off_wrap`, of
/// `NOTIFICATION_DATA` and of vhost-user's packed ring base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RingPosition {
    /// Slot in the descriptor ring, `0..size`.
    pub slot: u16,
    /// The wrap counter (starts `true`).
    pub wrap: bool,
}

impl RingPosition {
    /// Where both sides start: slot 0, wrap counter 1.
    pub const START: Self = Self {
        slot: 0,
        wrap: true,
    };

    /// Decodes `slot | wrap << 15`.
    pub const fn from_u16(value: u16) -> Self {
        Self {
            slot: value & !WRAP_BIT,
            wrap: value & WRAP_BIT != 0,
        }
    }

    /// Encodes as `slot | wrap << 15`.
    pub const fn to_u16(self) -> u16 {
        (self.slot & !WRAP_BIT) | if self.wrap { WRAP_BIT } else { 0 }
    }

    /// This position moved on by `n` slots in a ring of `size` (`slot <
    /// size`), flipping the wrap counter once per lap completed.
    #[cfg_attr(not(feature = "packed"), allow(dead_code))]
    pub(crate) fn advance(self, n: u16, size: u16) -> Self {
        // slot < size <= 32768, so the sum fits in a u32 easily.
        let next = u32::from(self.slot).wrapping_add(u32::from(n));
        let size = u32::from(size);
        if next < size {
            return Self {
                slot: next as u16,
                ..self
            };
        }
        let laps = next.checked_div(size).unwrap_or(0);
        Self {
            // The remainder is below size, so it fits in a u16.
            slot: next.checked_rem(size).unwrap_or(0) as u16,
            wrap: self.wrap ^ (laps % 2 == 1),
        }
    }
}

impl NotificationData {
    /// For a packed ring: the position of the next descriptor the driver
    /// has not yet made available (`next_off` and `next_wrap`).
    pub const fn packed_position(self) -> RingPosition {
        RingPosition {
            slot: self.next_off & !WRAP_BIT,
            wrap: self.next_wrap,
        }
    }
}
