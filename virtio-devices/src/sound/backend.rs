//! The PCM backend a [`super::Sound`] device plays to and records from.

use core::fmt;

use super::wire::{format_bits, rate_hz};

/// Stream parameters the driver selected (`PCM_SET_PARAMS`), checked
/// against what the stream offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PcmParams {
    /// The driver's buffer size in bytes.
    pub buffer_bytes: u32,
    /// The driver's period size in bytes (divides `buffer_bytes`).
    pub period_bytes: u32,
    /// Selected `PCM_F_*` bits.
    pub features: u32,
    /// Interleaved channels.
    pub channels: u8,
    /// `FMT_*`.
    pub format: u8,
    /// `RATE_*`.
    pub rate: u8,
}

impl PcmParams {
    /// Bytes of one frame (all channels of one sample instant); 0 for an
    /// undefined format.
    pub fn frame_bytes(&self) -> u32 {
        let bits = u32::from(format_bits(self.format).unwrap_or(0));
        bits.saturating_mul(u32::from(self.channels)).div_ceil(8)
    }

    /// Frames per second; 0 for an undefined rate.
    pub fn rate_hz(&self) -> u32 {
        rate_hz(self.rate).unwrap_or(0)
    }

    /// Bytes per second of the stream.
    pub fn byte_rate(&self) -> u64 {
        u64::from(self.frame_bytes()).saturating_mul(u64::from(self.rate_hz()))
    }

    /// Whole frames' bytes the stream moves in `ns` nanoseconds.
    pub fn bytes_in(&self, ns: u64) -> u64 {
        let frame = u128::from(self.frame_bytes());
        if frame == 0 {
            return 0;
        }
        // u64 times u32 fits in u128; so does the frame count times a frame.
        let frames = u128::from(ns).saturating_mul(u128::from(self.rate_hz())) / 1_000_000_000;
        u64::try_from(frames.saturating_mul(frame)).unwrap_or(u64::MAX)
    }

    /// Nanoseconds the stream takes to move `bytes` (rounded up to the
    /// frame that completes them).
    pub fn ns_for(&self, bytes: u64) -> u64 {
        let frame = u128::from(self.frame_bytes());
        let rate = u128::from(self.rate_hz());
        if frame == 0 || rate == 0 {
            return u64::MAX;
        }
        let frames = u128::from(bytes).div_ceil(frame);
        u64::try_from(frames.saturating_mul(1_000_000_000).div_ceil(rate)).unwrap_or(u64::MAX)
    }
}

/// Why a backend refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PcmError {
    /// The backend does not support this (answered `S_NOT_SUPP`).
    NotSupported,
    /// The backend failed (answered `S_IO_ERR`).
    Io,
}

impl fmt::Display for PcmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSupported => f.write_str("not supported by the backend"),
            Self::Io => f.write_str("backend I/O error"),
        }
    }
}

/// Where a sound device's PCM frames go and come from, and its clock.
///
/// The device paces every stream by [`PcmBackend::now_ns`]: from `START`
/// a stream moves [`PcmParams::byte_rate`] bytes a second; an output
/// buffer is handed to [`PcmBackend::write`] and returned to the driver
/// once the stream's position passed its end, an input buffer is filled
/// by [`PcmBackend::read`] and returned once the position passed its end.
/// The embedder calls `DeviceCore::poll` by
/// [`super::Sound::next_deadline_ns`] (a timer) so buffers complete on
/// time. Streams are numbered as the device's stream table.
pub trait PcmBackend {
    /// A monotonic clock in nanoseconds.
    fn now_ns(&mut self) -> u64;

    /// The driver selected `params` for `stream` (already checked against
    /// the stream's offer).
    ///
    /// # Errors
    /// [`PcmError::NotSupported`] refuses them.
    fn set_params(&mut self, stream: u32, params: &PcmParams) -> Result<(), PcmError> {
        let _ = (stream, params);
        Ok(())
    }

    /// `PCM_PREPARE`: open the stream with `params`.
    ///
    /// # Errors
    /// A [`PcmError`] is the request's status.
    fn prepare(&mut self, stream: u32, params: &PcmParams) -> Result<(), PcmError>;

    /// `PCM_START`.
    ///
    /// # Errors
    /// A [`PcmError`] is the request's status.
    fn start(&mut self, stream: u32) -> Result<(), PcmError> {
        let _ = stream;
        Ok(())
    }

    /// `PCM_STOP`.
    fn stop(&mut self, stream: u32) {
        let _ = stream;
    }

    /// `PCM_RELEASE` (or a device reset): close the stream.
    fn release(&mut self, stream: u32);

    /// Frames for an output stream, in order.
    ///
    /// # Errors
    /// [`PcmError::Io`] fails the buffer (`S_IO_ERR`).
    fn write(&mut self, stream: u32, frames: &[u8]) -> Result<(), PcmError>;

    /// Fills `frames` for an input stream.
    ///
    /// # Errors
    /// [`PcmError::Io`] fails the buffer (`S_IO_ERR`).
    fn read(&mut self, stream: u32, frames: &mut [u8]) -> Result<(), PcmError>;

    /// The driver wrote a control element's value (`CTL_WRITE`; the 512
    /// bytes of `struct virtio_snd_ctl_value`).
    ///
    /// # Errors
    /// A [`PcmError`] refuses the write (the value is kept as it was).
    fn control_written(&mut self, control: u32, value: &[u8]) -> Result<(), PcmError> {
        let _ = (control, value);
        Ok(())
    }

    /// `CTL_TLV_COMMAND` on a control with `TLV_COMMAND` access.
    ///
    /// # Errors
    /// A [`PcmError`] is the request's status; the default does not
    /// support commands.
    fn tlv_command(&mut self, control: u32, tlv: &[u8]) -> Result<(), PcmError> {
        let _ = (control, tlv);
        Err(PcmError::NotSupported)
    }
}

/// A null sink and source: output frames are counted and dropped, input
/// frames are silence (zero bytes). Its clock is set by the embedder
/// ([`NullPcm::set_now_ns`]), or, on a host, from a real clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NullPcm {
    now: u64,
    /// Output bytes dropped.
    pub written: u64,
    /// Input bytes produced.
    pub read: u64,
    /// Streams prepared and not released (a bit per stream below 64).
    pub open: u64,
}

impl NullPcm {
    /// A null backend at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the clock.
    pub fn set_now_ns(&mut self, now: u64) {
        self.now = now;
    }

    /// Moves the clock on.
    pub fn advance_ns(&mut self, ns: u64) {
        self.now = self.now.saturating_add(ns);
    }
}

impl PcmBackend for NullPcm {
    fn now_ns(&mut self) -> u64 {
        self.now
    }

    fn prepare(&mut self, stream: u32, _params: &PcmParams) -> Result<(), PcmError> {
        self.open |= 1u64.checked_shl(stream).unwrap_or(0);
        Ok(())
    }

    fn release(&mut self, stream: u32) {
        self.open &= !1u64.checked_shl(stream).unwrap_or(0);
    }

    fn write(&mut self, _stream: u32, frames: &[u8]) -> Result<(), PcmError> {
        self.written = self.written.saturating_add(frames.len() as u64);
        Ok(())
    }

    fn read(&mut self, _stream: u32, frames: &mut [u8]) -> Result<(), PcmError> {
        frames.fill(0);
        self.read = self.read.saturating_add(frames.len() as u64);
        Ok(())
    }
}
