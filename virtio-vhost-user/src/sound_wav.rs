//! The sound device's host side: a WAV file sink for playback and a WAV
//! file source for capture ([`WavPcm`], a small RIFF writer and reader),
//! paced by `CLOCK_MONOTONIC` through a timerfd the connection waits on
//! ([`SoundTimer`], a [`HostEvents`]).
//!
//! `virtio-vhost-user --socket S sound --wav-out OUT.wav --wav-in IN.wav`
//! (or `--null`: playback dropped, capture silent).
//!
//! * Playback (stream 0): every frame the guest plays is appended to the
//!   sink as it is consumed, at the stream's rate; the header is written at
//!   the first `PREPARE` and its sizes patched after every write, so the
//!   file is a valid WAV at any moment (also after the daemon is killed).
//!   A `PREPARE` with another format starts the file over.
//! * Capture (stream 1) offers exactly the source's format (channels,
//!   rate, sample format) and plays its data from the start at each
//!   `PREPARE`; past the end it records silence.
//! * The device's clock is `CLOCK_MONOTONIC`; before each wait the timer is
//!   armed at [`Sound::next_deadline_ns`], so held buffers complete when
//!   the stream has played (or recorded) them: the guest's only clock is
//!   these completions.
//! * Controls: "Master Playback Volume" (0–100, two channels) and "Master
//!   Playback Switch"; their values are kept and reported, not applied to
//!   the samples (the sink holds exactly what the guest played).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, clock_gettime,
    timerfd_create, timerfd_settime,
};
use virtio_devices::sound::{
    CHMAP_FL, CHMAP_FR, CHMAP_MONO, CTL_ACCESS_READ, CTL_ACCESS_WRITE, CTL_ROLE_MUTE,
    CTL_ROLE_VOLUME, ChmapDesc, ControlDesc, ControlKind, Direction, FMT_FLOAT, FMT_S16, FMT_S32,
    JackDesc, PcmBackend, PcmError, PcmParams, RATE_COUNT, Sound, StreamDesc, format_bits, rate_hz,
};

use crate::backend::VhostUserDevice;
use crate::connection::{self, Ended, HostEvents};
use crate::memory::UnsealedMemory;

/// The playback stream.
pub const PLAYBACK: u32 = 0;
/// The capture stream.
pub const CAPTURE: u32 = 1;

/// The device the daemon serves.
pub type SoundDevice = Sound<WavPcm, 2>;

/// A WAV format: what a header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFormat {
    /// Interleaved channels.
    pub channels: u16,
    /// Frames per second.
    pub rate: u32,
    /// Bits per sample (8, 16, 24, 32).
    pub bits: u16,
    /// IEEE float samples (format tag 3).
    pub float: bool,
}

impl WavFormat {
    /// The virtio format and rate numbers; `None` for a format the virtio
    /// sound device cannot carry.
    pub fn virtio(&self) -> Option<(u8, u8)> {
        let format = match (self.bits, self.float) {
            (8, false) => 4, // U8: WAV's 8-bit samples are unsigned
            (16, false) => FMT_S16,
            (24, false) => 11, // S24_3
            (32, false) => FMT_S32,
            (32, true) => FMT_FLOAT,
            _ => return None,
        };
        let rate = (0..RATE_COUNT).find(|&r| rate_hz(r) == Some(self.rate))?;
        Some((format, rate))
    }

    fn from_params(p: &PcmParams) -> Option<Self> {
        let bits = u16::from(format_bits(p.format)?);
        Some(Self {
            channels: u16::from(p.channels),
            rate: p.rate_hz(),
            bits,
            float: p.format == FMT_FLOAT,
        })
    }

    fn block_align(&self) -> u16 {
        self.channels.saturating_mul(self.bits / 8)
    }
}

/// The 44-byte canonical header for `data_len` bytes of `format`.
pub fn wav_header(format: &WavFormat, data_len: u32) -> [u8; 44] {
    let align = format.block_align();
    let tag: u16 = if format.float { 3 } else { 1 };
    let parts: [&[u8]; 12] = [
        b"RIFF",
        &data_len.saturating_add(36).to_le_bytes(),
        b"WAVEfmt ",
        &16u32.to_le_bytes(),
        &tag.to_le_bytes(),
        &format.channels.to_le_bytes(),
        &format.rate.to_le_bytes(),
        &format.rate.saturating_mul(u32::from(align)).to_le_bytes(),
        &align.to_le_bytes(),
        &format.bits.to_le_bytes(),
        b"data",
        &data_len.to_le_bytes(),
    ];
    let mut h = [0u8; 44];
    for (d, s) in h.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
        *d = *s;
    }
    h
}

fn le16(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    for (d, s) in x.iter_mut().zip(b.iter().skip(at)) {
        *d = *s;
    }
    u16::from_le_bytes(x)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    for (d, s) in x.iter_mut().zip(b.iter().skip(at)) {
        *d = *s;
    }
    u32::from_le_bytes(x)
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Parses a RIFF/WAVE file: its format and its data chunk's bytes.
///
/// # Errors
/// Not a WAV file, no `fmt ` or `data` chunk, an unsupported format tag.
pub fn parse_wav(bytes: &[u8]) -> io::Result<(WavFormat, Vec<u8>)> {
    if bytes.get(..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut at = 12usize;
    let mut format = None;
    while let Some(id) = bytes.get(at..at.saturating_add(4)) {
        let len = le32(bytes, at.saturating_add(4)) as usize;
        let body_start = at.saturating_add(8);
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = bytes.get(body_start..body_end).unwrap_or_default();
        match id {
            b"fmt " => {
                let tag = le16(body, 0);
                let bits = le16(body, 14);
                let float = match tag {
                    1 => false,
                    3 => true,
                    // WAVE_FORMAT_EXTENSIBLE: the subformat GUID's first
                    // two bytes are the tag.
                    0xfffe => le16(body, 24) == 3,
                    _ => return Err(bad("unsupported WAV format tag")),
                };
                format = Some(WavFormat {
                    channels: le16(body, 2),
                    rate: le32(body, 4),
                    bits,
                    float,
                });
            }
            b"data" => {
                let f = format.ok_or_else(|| bad("data chunk before fmt chunk"))?;
                return Ok((f, body.to_vec()));
            }
            _ => {}
        }
        // Chunks are padded to even lengths.
        at = body_start.saturating_add(len).saturating_add(len & 1);
    }
    Err(bad("no data chunk"))
}

/// A WAV sink: the header, then frames appended as they are played.
#[derive(Debug)]
struct Sink {
    file: File,
    format: Option<WavFormat>,
    len: u32,
}

impl Sink {
    fn start(&mut self, format: WavFormat) -> io::Result<()> {
        if self.format == Some(format) {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.file.write_all_at(&wav_header(&format, 0), 0)?;
        self.format = Some(format);
        self.len = 0;
        Ok(())
    }

    fn append(&mut self, frames: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frames.len()).map_err(|_| bad("buffer too large"))?;
        self.file
            .write_all_at(frames, 44u64.saturating_add(u64::from(self.len)))?;
        self.len = self.len.saturating_add(len);
        self.file
            .write_all_at(&self.len.saturating_add(36).to_le_bytes(), 4)?;
        self.file.write_all_at(&self.len.to_le_bytes(), 40)
    }
}

/// Playback into a WAV file, capture from one, on the host's monotonic
/// clock. Without files, playback is dropped and capture is silence.
#[derive(Debug)]
pub struct WavPcm {
    sink: Option<Sink>,
    source: Option<(WavFormat, Vec<u8>)>,
    read_at: usize,
    /// Frames written to the sink so far (bytes).
    pub played: u64,
    /// Frames recorded (bytes).
    pub recorded: u64,
}

impl WavPcm {
    /// A backend writing playback to `wav_out` (created or truncated) and
    /// recording from `wav_in`.
    ///
    /// # Errors
    /// A file that cannot be created or read, or a source that is not a
    /// WAV in a format the device can carry.
    pub fn open(wav_out: Option<&Path>, wav_in: Option<&Path>) -> io::Result<Self> {
        let sink = match wav_out {
            Some(p) => Some(Sink {
                file: File::create(p)?,
                format: None,
                len: 0,
            }),
            None => None,
        };
        let source = match wav_in {
            Some(p) => {
                let mut bytes = Vec::new();
                File::open(p)?.read_to_end(&mut bytes)?;
                let (format, data) = parse_wav(&bytes)?;
                if format.virtio().is_none() || !(1..=2).contains(&format.channels) {
                    return Err(bad(
                        "the WAV source's format (channels 1-2, 8/16/24/32-bit or float, a virtio rate) is not supported",
                    ));
                }
                Some((format, data))
            }
            None => None,
        };
        Ok(Self {
            sink,
            source,
            read_at: 0,
            played: 0,
            recorded: 0,
        })
    }

    /// The capture stream's description: the source's exact format, or
    /// the default stereo stream without a source.
    pub fn capture_desc(&self) -> StreamDesc {
        let mut desc = StreamDesc::stereo(Direction::Input);
        if let Some((f, _)) = &self.source
            && let Some((format, rate)) = f.virtio()
        {
            let channels = u8::try_from(f.channels).unwrap_or(2);
            desc.formats = 1 << format;
            desc.rates = 1 << rate;
            desc.channels_min = channels;
            desc.channels_max = channels;
        }
        desc
    }

    fn capture_channels(&self) -> u8 {
        self.capture_desc().channels_max
    }
}

/// The host's `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl PcmBackend for WavPcm {
    fn now_ns(&mut self) -> u64 {
        monotonic_ns()
    }

    fn prepare(&mut self, stream: u32, params: &PcmParams) -> Result<(), PcmError> {
        if stream == CAPTURE {
            self.read_at = 0;
            return Ok(());
        }
        let format = WavFormat::from_params(params).ok_or(PcmError::NotSupported)?;
        if let Some(sink) = self.sink.as_mut() {
            sink.start(format).map_err(|e| {
                log::error!("WAV sink: {e}");
                PcmError::Io
            })?;
        }
        Ok(())
    }

    fn release(&mut self, _stream: u32) {}

    fn write(&mut self, _stream: u32, frames: &[u8]) -> Result<(), PcmError> {
        if let Some(sink) = self.sink.as_mut() {
            sink.append(frames).map_err(|e| {
                log::error!("WAV sink: {e}");
                PcmError::Io
            })?;
        }
        self.played = self.played.saturating_add(frames.len() as u64);
        Ok(())
    }

    fn read(&mut self, _stream: u32, frames: &mut [u8]) -> Result<(), PcmError> {
        frames.fill(0);
        if let Some((_, data)) = &self.source {
            let from = data.get(self.read_at..).unwrap_or_default();
            for (d, s) in frames.iter_mut().zip(from) {
                *d = *s;
            }
        }
        self.read_at = self.read_at.saturating_add(frames.len());
        self.recorded = self.recorded.saturating_add(frames.len() as u64);
        Ok(())
    }
}

static CHMAPS_MONO_IN: [ChmapDesc; 2] = [
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Output,
        positions: &[CHMAP_FL, CHMAP_FR],
    },
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Input,
        positions: &[CHMAP_MONO],
    },
];

static CHMAPS_STEREO_IN: [ChmapDesc; 2] = [
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Output,
        positions: &[CHMAP_FL, CHMAP_FR],
    },
    ChmapDesc {
        hda_fn_nid: 0,
        direction: Direction::Input,
        positions: &[CHMAP_FL, CHMAP_FR],
    },
];

const JACKS: [JackDesc; 1] = [JackDesc {
    hda_fn_nid: 0,
    features: 0,
    // HDA pin default configuration: a green 1/8" line out jack at the
    // rear (port connectivity jack, location rear, device line out).
    hda_reg_defconf: 0x0101_4010,
    hda_reg_caps: 0x10,
    connected: true,
}];

const CONTROLS: [ControlDesc; 2] = [
    ControlDesc {
        hda_fn_nid: 0,
        role: (CTL_ROLE_VOLUME, Direction::Output),
        kind: ControlKind::Integer {
            min: 0,
            max: 100,
            step: 1,
        },
        access: CTL_ACCESS_READ | CTL_ACCESS_WRITE,
        count: 2,
        index: 0,
        name: "Master Playback Volume",
        initial: &[100, 0, 0, 0, 100, 0, 0, 0],
        tlv: &[],
    },
    ControlDesc {
        hda_fn_nid: 0,
        role: (CTL_ROLE_MUTE, Direction::Output),
        kind: ControlKind::Boolean,
        access: CTL_ACCESS_READ | CTL_ACCESS_WRITE,
        count: 1,
        index: 0,
        name: "Master Playback Switch",
        initial: &[1],
        tlv: &[],
    },
];

/// The daemon's device over `backend`: a playback and a capture stream,
/// one jack, their channel maps and, with `controls`, a volume and a switch.
///
/// # Errors
/// Never for the tables built here; kept as a `Result` so a change to them
/// is reported rather than panicking.
pub fn sound_device(backend: WavPcm, controls: bool) -> io::Result<SoundDevice> {
    let capture = backend.capture_desc();
    let chmaps: &'static [ChmapDesc] = if backend.capture_channels() == 1 {
        &CHMAPS_MONO_IN
    } else {
        &CHMAPS_STEREO_IN
    };
    Sound::new(
        backend,
        &JACKS,
        [StreamDesc::stereo(Direction::Output), capture],
        chmaps,
        if controls { &CONTROLS } else { &[] },
    )
    .map_err(|e| io::Error::other(format!("sound tables: {e}")))
}

/// The pacing timer: a `CLOCK_MONOTONIC` timerfd armed, before each wait,
/// at the device's next deadline.
#[derive(Debug)]
pub struct SoundTimer {
    fd: OwnedFd,
}

impl SoundTimer {
    /// A disarmed timer.
    ///
    /// # Errors
    /// `timerfd_create` failed.
    pub fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd })
    }

    /// Arms the timer at `deadline` (absolute, `CLOCK_MONOTONIC` ns), or
    /// disarms it with `None`.
    fn arm(&self, deadline: Option<u64>) -> io::Result<()> {
        let at = deadline.map_or(0, |d| d.max(1));
        let value = Timespec {
            tv_sec: i64::try_from(at / 1_000_000_000).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from(at % 1_000_000_000).unwrap_or(0),
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec)?;
        Ok(())
    }
}

impl HostEvents<SoundDevice> for SoundTimer {
    fn fds<'a>(&'a self, device: &'a SoundDevice) -> Vec<(usize, BorrowedFd<'a>)> {
        if let Err(e) = self.arm(device.next_deadline_ns()) {
            log::error!("sound timer: {e}");
        }
        vec![(0, self.fd.as_fd())]
    }

    /// The deadline passed: the connection then polls the device, which
    /// completes what came due.
    fn ready(&mut self, _device: &mut SoundDevice, _tokens: &[usize]) -> io::Result<bool> {
        let mut expirations = [0u8; 8];
        match rustix::io::read(&self.fd, &mut expirations) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// What `sound` serves: the files, opened again for each connection.
#[derive(Clone, Debug, Default)]
pub struct SoundFiles {
    /// The playback sink.
    pub wav_out: Option<PathBuf>,
    /// The capture source.
    pub wav_in: Option<PathBuf>,
    /// Offer the control elements (`VIRTIO_SND_F_CTLS`).
    pub controls: bool,
}

/// Serves the sound device on one connection.
///
/// # Errors
/// A file or the timer cannot be opened; host failures of the connection.
pub fn serve_sound(
    stream: UnixStream,
    files: &SoundFiles,
    unsealed: UnsealedMemory,
) -> io::Result<Ended> {
    let backend = WavPcm::open(files.wav_out.as_deref(), files.wav_in.as_deref())?;
    let device = sound_device(backend, files.controls)?;
    connection::serve_with_events(
        stream,
        VhostUserDevice::new(device).with_unsealed_memory(unsealed),
        SoundTimer::new()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_through_the_parser() {
        let f = WavFormat {
            channels: 2,
            rate: 48000,
            bits: 16,
            float: false,
        };
        let mut file = wav_header(&f, 8).to_vec();
        file.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let (g, data) = parse_wav(&file).unwrap();
        assert_eq!(g, f);
        assert_eq!(data, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(f.virtio(), Some((FMT_S16, 7)));
        assert_eq!(&file[28..32], &192_000u32.to_le_bytes());
        assert!(parse_wav(b"RIFX....WAVE").is_err());
        // No data chunk at all is an error; a data chunk cut short (a
        // writer killed mid-file) gives the bytes that are there.
        assert!(parse_wav(&file[..36]).is_err());
        assert_eq!(parse_wav(&file[..46]).unwrap().1, [1, 2]);
    }

    #[test]
    fn the_sink_is_a_valid_wav_after_every_write_and_the_source_plays_its_data() {
        let dir = std::env::temp_dir().join(format!("vvu-sound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.wav");
        let input = dir.join("in.wav");
        let f = WavFormat {
            channels: 1,
            rate: 44100,
            bits: 16,
            float: false,
        };
        let mut src = wav_header(&f, 6).to_vec();
        src.extend_from_slice(&[9, 8, 7, 6, 5, 4]);
        std::fs::write(&input, &src).unwrap();
        let mut pcm = WavPcm::open(Some(&out), Some(&input)).unwrap();
        let desc = pcm.capture_desc();
        assert_eq!((desc.channels_min, desc.channels_max), (1, 1));
        assert_eq!((desc.formats, desc.rates), (1 << FMT_S16, 1 << 6));
        let params = PcmParams {
            buffer_bytes: 4096,
            period_bytes: 1024,
            features: 0,
            channels: 2,
            format: FMT_S16,
            rate: 7,
        };
        pcm.prepare(PLAYBACK, &params).unwrap();
        pcm.write(PLAYBACK, &[1, 2, 3, 4]).unwrap();
        pcm.write(PLAYBACK, &[5, 6, 7, 8]).unwrap();
        let (g, data) = parse_wav(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!((g.channels, g.rate, g.bits), (2, 48000, 16));
        assert_eq!(data, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The same format again appends; another starts over.
        pcm.prepare(PLAYBACK, &params).unwrap();
        pcm.write(PLAYBACK, &[9; 4]).unwrap();
        assert_eq!(
            parse_wav(&std::fs::read(&out).unwrap()).unwrap().1.len(),
            12
        );
        pcm.prepare(
            PLAYBACK,
            &PcmParams {
                channels: 1,
                ..params
            },
        )
        .unwrap();
        assert!(
            parse_wav(&std::fs::read(&out).unwrap())
                .unwrap()
                .1
                .is_empty()
        );
        // Capture: the source's bytes, then silence; PREPARE rewinds.
        pcm.prepare(CAPTURE, &params).unwrap();
        let mut buf = [0xffu8; 8];
        pcm.read(CAPTURE, &mut buf).unwrap();
        assert_eq!(buf, [9, 8, 7, 6, 5, 4, 0, 0]);
        pcm.prepare(CAPTURE, &params).unwrap();
        let mut buf = [0u8; 2];
        pcm.read(CAPTURE, &mut buf).unwrap();
        assert_eq!(buf, [9, 8]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_timer_fires_at_the_deadline() {
        let t = SoundTimer::new().unwrap();
        t.arm(Some(monotonic_ns() + 5_000_000)).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &t.fd,
            rustix::event::PollFlags::IN,
        )];
        let start = std::time::Instant::now();
        rustix::event::poll(&mut fds, None).unwrap();
        assert!(start.elapsed() >= std::time::Duration::from_millis(4));
        let mut dev = sound_device(WavPcm::open(None, None).unwrap(), true).unwrap();
        assert_eq!(
            sound_device(WavPcm::open(None, None).unwrap(), false)
                .unwrap()
                .config()
                .controls
                .get(),
            0
        );
        let mut timer = t;
        assert!(!timer.ready(&mut dev, &[0]).unwrap());
        // Disarmed: nothing held, so no deadline.
        assert_eq!(dev.next_deadline_ns(), None);
        timer.arm(None).unwrap();
    }
}
