//! `virtio-vhost-user`: serves one virtio device on a vhost-user socket.
#![forbid(unsafe_code)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use log::{error, info, warn};
use virtio_core::device::VirtioDevice;
use virtio_devices::block::{Block, BlockOptions, MAX_DISCARD_SEGMENTS, RangeCommand};
use virtio_devices::gpio::Gpio;
use virtio_devices::gpio::loopback::Loopback;
use virtio_devices::i2c::I2cAdapter;
use virtio_devices::i2c::eeprom::Eeprom;
use virtio_devices::rng::Rng;
use virtio_devices::rpmb::Rpmb;
use virtio_devices::scmi::Scmi;
use virtio_devices::spi::{Spi, SpiCaps, SpiDevices};
use virtio_devices::watchdog::Watchdog;
use virtio_vhost_user::backend::{MAX_QUEUES, VhostUserDevice};
use virtio_vhost_user::connection::{self, Ended};
use virtio_vhost_user::entropy::HostEntropy;
use virtio_vhost_user::gpiochip::{LineSelection, probe_gpiochip, serve_gpiochip};
use virtio_vhost_user::host::{HostI2c, open_spidev};
use virtio_vhost_user::memory::UnsealedMemory;
use virtio_vhost_user::rpmb_file;
use virtio_vhost_user::scmi_sim::HostScmi;
use virtio_vhost_user::sim::{FLASH_BYTES, FlashSpi, SharedFlash, TracedBus};
use virtio_vhost_user::sound_wav::{SoundFiles, WavPcm, serve_sound};
use virtio_vhost_user::storage::{FileStorage, ResizeTrigger};
use virtio_vhost_user::watchdog_host::{CommandAction, HostWatchdog, StdClock, Ticks};

const AFTER_HELP: &str = "\
QEMU side (guest RAM must be shared with the daemon):
  -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem
  -chardev socket,id=c0,path=PATH -device vhost-user-<device>-pci,chardev=c0
Each device's help (virtio-vhost-user help DEVICE) shows its -device line.

Logging: RUST_LOG=debug (or --trace) logs every vhost-user request and bus
transaction; RUST_LOG=warn keeps only problems. Default: info.";

/// Serves one virtio device to a vhost-user frontend (QEMU) on a unix
/// socket, one connection after another.
#[derive(Parser)]
#[command(name = "virtio-vhost-user", version, after_help = AFTER_HELP)]
struct Cli {
    /// Listen here (a stale socket file is replaced; one in use is an error).
    #[arg(long, visible_alias = "socket-path", value_name = "PATH")]
    socket: PathBuf,
    /// Listen on N sockets, PATH0 .. PATH(N-1), each serving its own device
    /// instance on its own thread (a frontend that misbehaves closes only its
    /// own connection).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    socket_count: u16,
    /// Exit after the first connection ends (status 0 if it ended cleanly).
    #[arg(long)]
    once: bool,
    /// Log at debug level (as RUST_LOG=debug; RUST_LOG, when set, wins).
    #[arg(long)]
    trace: bool,
    /// Map guest memory from files not sealed against shrinking
    /// (memory-backend-file, memfd with seal=off). Refused by default:
    /// truncating such a file while it is mapped kills the daemon (SIGBUS).
    #[arg(long)]
    allow_unsealed_memory: bool,
    #[command(subcommand)]
    device: DeviceCmd,
}

#[derive(Clone, Subcommand)]
enum DeviceCmd {
    /// Entropy device (virtio id 4) fed from /dev/urandom.
    #[command(
        after_help = "QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-rng-pci,chardev=c0"
    )]
    Rng,
    /// Block device (virtio id 2) over a disk image file.
    #[command(
        after_help = "QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-blk-pci,chardev=c0\n(QEMU asks for one request queue per vCPU unless num-queues is given; each queue is\nserved on a thread of its own)\nResize: truncate -s NEW IMAGE, then kill -HUP the daemon: the guest sees the new capacity.\nRestart: with -chardev socket,...,reconnect=1 a new daemon on the same socket takes over QEMU's\ninflight region (INFLIGHT_SHMFD) and resubmits what the old one held."
    )]
    Block {
        /// Most request queues offered (VIRTIO_BLK_F_MQ above 1); QEMU's
        /// num-queues, by default its vCPU count, must not exceed it.
        #[arg(long, default_value_t = MAX_QUEUES as u16, value_parser = clap::value_parser!(u16).range(1..=MAX_QUEUES as i64))]
        queues: u16,
        /// The disk image (a regular file; its size in 512-byte sectors is the capacity).
        #[arg(long, value_name = "IMAGE")]
        file: PathBuf,
        /// Offer VIRTIO_BLK_F_RO and refuse writes.
        #[arg(long)]
        read_only: bool,
        /// Open the image with O_DIRECT: guest I/O bypasses the host's page
        /// cache (not on tmpfs, which refuses it).
        #[arg(long)]
        direct: bool,
    },
    /// I2C adapter (virtio id 34): a simulated EEPROM or a host I2C bus.
    #[command(
        after_help = "QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-i2c-pci,chardev=c0\nA host bus: virtio-vhost-user --socket PATH i2c --dev /dev/i2c-1 (the guest's messages reach it as I2C_RDWR transfers)."
    )]
    I2c(I2cArgs),
    /// GPIO device (virtio id 41) with interrupts (VIRTIO_GPIO_F_IRQ).
    #[command(
        after_help = "QEMU: -chardev socket,id=c0,path=PATH -device vhost-user-gpio-pci,chardev=c0\n(QEMU 7.2 drops the IRQ feature bit: use QEMU >= 8 for interrupts)\nHost lines: virtio-vhost-user --socket PATH gpio --chip /dev/gpiochip0 --lines 0,3,5-7"
    )]
    Gpio(GpioArgs),
    /// SPI controller (virtio id 45), 8-bit words, one chip select.
    #[command(
        after_help = "No QEMU release has a vhost-user-spi frontend yet; Linux's virtio SPI driver is in >= 6.18.\nA host target: virtio-vhost-user --socket PATH spi --dev /dev/spidev0.0 --mode 0 --hz 1000000"
    )]
    Spi(SpiArgs),
    /// RPMB device (virtio id 28): replay-protected storage in a crash-safe
    /// image file (created on first use; key, write counter and data persist).
    #[command(
        after_help = "No QEMU release has a vhost-user RPMB frontend and Linux has no virtio RPMB driver;\nthe device is tested by a driver written from the spec (virtio-devices/tests/rpmb_driver.rs).\nWrites are journalled: a crash or SIGKILL loses nothing acknowledged (see rpmb_file)."
    )]
    Rpmb {
        /// The image file (made with --capacity if it does not exist).
        #[arg(long, value_name = "IMAGE")]
        file: PathBuf,
        /// Capacity of a new image in 128 KiB units (1-128).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=128))]
        capacity: u8,
    },
    /// SCMI device (virtio id 32): an Arm SCMI platform of simulated sensors
    /// (a temperature that moves, a voltage), clocks, reset, power,
    /// performance and voltage domains, for the guest's SCMI stack.
    #[command(
        after_help = "QEMU (qemu-system-aarch64 >= 10.0, -M virt): -chardev socket,id=c0,path=PATH -device vhost-user-scmi-pci,chardev=c0\nThe guest kernel needs ARM_SCMI_TRANSPORT_VIRTIO and a device tree node\n  firmware { scmi { compatible = \"arm,scmi-virtio\"; #address-cells = <1>; #size-cells = <0>; ... } };\nwith one child per protocol it should use (protocol@14 clocks, @15 sensors, @16 resets, ...).\nProtocols: base, power 0x11, perf 0x13, clock 0x14, sensor 0x15, reset 0x16, voltage 0x17;\nnotifications and delayed responses over the eventq (VIRTIO_SCMI_F_P2A_CHANNELS)."
    )]
    Scmi {
        /// Serve the simulated platform (the one this daemon has; a real
        /// one is a `virtio_devices::scmi` platform linked into your own
        /// daemon or firmware).
        #[arg(long, required = true)]
        sim: bool,
    },
    /// Sound device (virtio id 25): playback into a WAV file, capture from
    /// one, paced at the stream's rate; jacks, channel maps and controls.
    #[command(
        after_help = "QEMU 10: -chardev socket,id=c0,path=PATH -device vhost-user-snd-pci,chardev=c0,controls=on\n(QEMU >= 10.0 has vhost-user-snd-pci; it needs the backend's MQ (4 queues) and CONFIG, which\nthe daemon offers. Without controls=on QEMU exposes a 12-byte config but still passes\nVIRTIO_SND_F_CTLS: Linux then fails its probe (-ENOMEM); use --no-controls there.) Guest: Linux SND_VIRTIO; aplay/arecord/amixer work as on any card.\nPlayback frames are appended to --wav-out as the stream consumes them (a valid WAV at any\ntime); capture plays --wav-in's data (its exact format is the stream's only format).\n--null: playback dropped, capture silent."
    )]
    Sound(SoundArgs),
    /// Watchdog (virtio id 35; a de-facto protocol, cloud-hypervisor's, not
    /// in the virtio spec): acts when the guest stops pinging.
    #[command(
        after_help = "The first ping arms it, a guest reset disarms it; the expiry command runs once per missed\ndeadline via /bin/sh -c, with WATCHDOG_SINCE_MS set (e.g. --on-expiry 'kill -TERM $QEMU_PID').\nNo QEMU release has a vhost-user watchdog frontend."
    )]
    Watchdog {
        /// Seconds without a ping before the action runs.
        #[arg(long, value_name = "S", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// A shell command to run on expiry (default: log only).
        #[arg(long, value_name = "CMD")]
        on_expiry: Option<String>,
    },
}

#[derive(Clone, Args)]
#[group(required = true, multiple = true)]
struct SoundArgs {
    /// Write what the guest plays to this WAV file (created or truncated).
    #[arg(long, value_name = "FILE", conflicts_with = "null")]
    wav_out: Option<PathBuf>,
    /// Record from this WAV file (1-2 channels, 8/16/24/32-bit or float).
    #[arg(long, value_name = "FILE", conflicts_with = "null")]
    wav_in: Option<PathBuf>,
    /// No files: playback is dropped, capture is silence.
    #[arg(long)]
    null: bool,
    /// Offer no control elements (no VIRTIO_SND_F_CTLS), for a QEMU
    /// vhost-user-snd-pci without controls=on.
    #[arg(long)]
    no_controls: bool,
}

#[derive(Clone, Args)]
#[group(required = true, multiple = false)]
struct I2cArgs {
    /// A simulated 24C02 EEPROM (256 bytes, 8-byte pages, erased to 0xff on
    /// each connection) at a 7-bit address, e.g. eeprom@0x50.
    #[arg(long, value_name = "eeprom@ADDR", value_parser = parse_eeprom)]
    sim: Option<u8>,
    /// A host I2C adapter through its i2c-dev node, 7- and 10-bit addresses.
    #[arg(long, value_name = "/dev/i2c-N")]
    dev: Option<PathBuf>,
}

#[derive(Clone, Args)]
struct GpioArgs {
    /// N simulated lines (8, 16 or 32) named loop0..; output line k drives
    /// input line k+1, so writes raise interrupts.
    #[arg(long, value_name = "loopback:N", value_parser = parse_loopback, required_unless_present = "chip", conflicts_with = "chip")]
    sim: Option<usize>,
    /// A host gpiochip's lines (GPIO character device, uAPI v2, Linux >=
    /// 5.10): each guest line is requested on the host only while the guest
    /// uses it (input: with edge events for interrupts; output: driving the
    /// guest's value) and released on direction NONE, guest reset and
    /// disconnect.
    #[arg(long, value_name = "/dev/gpiochipN")]
    chip: Option<PathBuf>,
    /// Which chip lines, in guest order: offsets and ranges, e.g. 0,3,5-7
    /// (default: all); guest line k is the k-th listed. At most 256; the
    /// guest sees the count rounded up to 8/16/32/64/128/256 (the extra
    /// lines are unnamed and unusable).
    #[arg(long, value_name = "LIST", requires = "chip")]
    lines: Option<LineSelection>,
}

#[derive(Clone, Args)]
struct SpiArgs {
    /// A simulated 64 KiB NOR flash (JEDEC ID ef 40 18; read, page program,
    /// sector erase) kept across connections.
    #[arg(
        long,
        value_enum,
        required_unless_present = "dev",
        conflicts_with = "dev"
    )]
    sim: Option<SpiSim>,
    /// A host SPI target through its spidev node (the kernel frames each
    /// message with its chip select).
    #[arg(long, value_name = "/dev/spidevB.C")]
    dev: Option<PathBuf>,
    /// SPI mode (0-3: CPOL << 1 | CPHA) the bus runs and the device offers.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    mode: u8,
    /// Bus clock in Hz, offered as max_freq_hz.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    hz: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum SpiSim {
    /// The NOR flash model.
    Flash,
}

/// Parses `eeprom@ADDR` (hex with 0x, or decimal; 7-bit).
fn parse_eeprom(spec: &str) -> Result<u8, String> {
    let bad = || format!("expected eeprom@ADDR with a 7-bit ADDR, e.g. eeprom@0x50, not {spec}");
    let addr = spec.strip_prefix("eeprom@").ok_or_else(bad)?;
    let value = match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => addr.parse(),
    }
    .map_err(|_| bad())?;
    if value > 0x7f {
        return Err(bad());
    }
    Ok(value)
}

/// Parses `loopback:N` with N 8, 16 or 32.
fn parse_loopback(spec: &str) -> Result<usize, String> {
    match spec.strip_prefix("loopback:").map(str::parse::<usize>) {
        Some(Ok(n @ (8 | 16 | 32))) => Ok(n),
        _ => Err(format!(
            "expected loopback:8, loopback:16 or loopback:32, not {spec}"
        )),
    }
}

/// What one connection is served with, prepared once (files and buses are
/// opened before the socket is bound, so a wrong path fails at start).
enum Server {
    Rng,
    Block(FileStorage, u16),
    I2cSim(u8),
    I2cHost(PathBuf),
    GpioSim(usize),
    GpioChip {
        path: PathBuf,
        lines: Option<LineSelection>,
        /// What the probe found, for the start-up line.
        described: String,
    },
    /// The flash outlives connections (its contents persist).
    SpiFlash {
        flash: SharedFlash,
        caps: SpiCaps,
    },
    SpiHost {
        path: PathBuf,
        mode: u8,
        hz: u32,
    },
    /// The image is opened (and recovered) again for each connection.
    Rpmb(PathBuf),
    Scmi,
    Sound(SoundFiles),
    Watchdog {
        timeout: std::time::Duration,
        on_expiry: Option<String>,
    },
}

impl Server {
    fn prepare(device: DeviceCmd) -> Result<Self, String> {
        Ok(match device {
            DeviceCmd::Rng => Self::Rng,
            DeviceCmd::Block {
                file,
                read_only,
                queues,
                direct,
            } => Self::Block(
                if direct {
                    FileStorage::open_direct(&file, read_only)
                } else {
                    FileStorage::open(&file, read_only)
                }
                .map_err(|e| format!("cannot open disk image {}: {e}", file.display()))?,
                queues,
            ),
            DeviceCmd::I2c(I2cArgs {
                sim: Some(addr), ..
            }) => Self::I2cSim(addr),
            DeviceCmd::I2c(I2cArgs { dev, .. }) => {
                let path = dev.ok_or("i2c needs --sim or --dev")?;
                HostI2c::open(&path)
                    .map_err(|e| format!("cannot open I2C bus {}: {e}", path.display()))?;
                Self::I2cHost(path)
            }
            DeviceCmd::Gpio(GpioArgs {
                chip: Some(path),
                lines,
                ..
            }) => {
                let described = probe_gpiochip(&path, lines.as_ref()).map_err(|e| e.to_string())?;
                Self::GpioChip {
                    path,
                    lines,
                    described,
                }
            }
            DeviceCmd::Gpio(GpioArgs { sim, .. }) => {
                Self::GpioSim(sim.ok_or("gpio needs --sim or --chip")?)
            }
            DeviceCmd::Spi(SpiArgs { dev, mode, hz, .. }) => match dev {
                Some(path) => {
                    open_spidev(&path, mode, hz)
                        .map_err(|e| format!("cannot open SPI target {}: {e}", path.display()))?;
                    Self::SpiHost { path, mode, hz }
                }
                None => Self::SpiFlash {
                    flash: SharedFlash::default(),
                    caps: SpiCaps::new(mode, hz),
                },
            },
            DeviceCmd::Rpmb { file, capacity } => {
                if !file.exists() {
                    rpmb_file::create(&file, capacity)
                        .map_err(|e| format!("cannot create RPMB image {}: {e}", file.display()))?;
                    info!(
                        "created RPMB image {} ({capacity} x 128 KiB)",
                        file.display()
                    );
                }
                // Fail at start, not at the first connection.
                rpmb_file::open(&file)
                    .map_err(|e| format!("cannot open RPMB image {}: {e}", file.display()))?;
                Self::Rpmb(file)
            }
            DeviceCmd::Scmi { .. } => Self::Scmi,
            DeviceCmd::Sound(SoundArgs {
                wav_out,
                wav_in,
                no_controls,
                ..
            }) => {
                // Fail at start, not at the first connection.
                WavPcm::open(wav_out.as_deref(), wav_in.as_deref())
                    .map_err(|e| format!("sound: {e}"))?;
                Self::Sound(SoundFiles {
                    wav_out,
                    wav_in,
                    controls: !no_controls,
                })
            }
            DeviceCmd::Watchdog { timeout, on_expiry } => Self::Watchdog {
                timeout: std::time::Duration::from_secs(timeout),
                on_expiry,
            },
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Rng => "rng".into(),
            Self::Block(disk, queues) => format!(
                "block ({} sectors{}{}, up to {queues} queues)",
                virtio_devices::block::BlockStorage::capacity(disk),
                if disk.read_only() { ", read-only" } else { "" },
                if disk.direct() { ", O_DIRECT" } else { "" }
            ),
            Self::I2cSim(addr) => format!("i2c (simulated 24C02 EEPROM at {addr:#04x})"),
            Self::I2cHost(path) => format!("i2c (host bus {})", path.display()),
            Self::GpioSim(n) => format!("gpio ({n} loopback lines)"),
            Self::GpioChip { described, .. } => described.clone(),
            Self::Rpmb(file) => format!("rpmb (image {})", file.display()),
            Self::Scmi => "scmi (simulated platform: 2 sensors, 3 clocks, 2 reset, 2 power, \
                           1 performance and 2 voltage domains)"
                .into(),
            Self::Sound(files) => format!(
                "sound (playback to {}, capture from {})",
                files
                    .wav_out
                    .as_ref()
                    .map_or("nowhere".into(), |p| p.display().to_string()),
                files
                    .wav_in
                    .as_ref()
                    .map_or("silence".into(), |p| p.display().to_string())
            ),
            Self::Watchdog { timeout, on_expiry } => format!(
                "watchdog (timeout {} s, on expiry: {})",
                timeout.as_secs(),
                on_expiry.as_deref().unwrap_or("log only")
            ),
            Self::SpiFlash { caps, .. } => format!(
                "spi (simulated {} KiB NOR flash on chip select 0, {} Hz)",
                FLASH_BYTES / 1024,
                caps.max_freq_hz
            ),
            Self::SpiHost { path, mode, hz } => {
                format!("spi (host target {}, mode {mode}, {hz} Hz)", path.display())
            }
        }
    }

    /// Serves one connection with a fresh device.
    fn serve(
        &self,
        stream: UnixStream,
        unsealed: UnsealedMemory,
    ) -> Result<std::io::Result<Ended>, String> {
        Ok(match self {
            Self::Rng => {
                let rng = HostEntropy::open().map_err(|e| format!("/dev/urandom: {e}"))?;
                serve(stream, Rng::new(rng).with_queue_size(1024), unsealed)
            }
            Self::Block(disk, queues) => {
                let storage = disk
                    .try_clone()
                    .map_err(|e| format!("cannot reopen disk image: {e}"))?;
                // DISCARD and WRITE_ZEROES through fallocate (blkdiscard
                // in the guest frees the image's blocks); not on a
                // read-only image.
                let range = (!storage.read_only()).then_some(RangeCommand {
                    max_sectors: 1 << 23,
                    max_segments: MAX_DISCARD_SEGMENTS,
                    alignment_or_may_unmap: 8,
                });
                let options = BlockOptions {
                    read_only: storage.read_only(),
                    queue_size: 1024,
                    discard: range,
                    write_zeroes: range,
                    queues: *queues,
                    ..BlockOptions::default()
                };
                serve_resizable(stream, Block::new(storage, options), unsealed)?
            }
            Self::I2cSim(addr) => {
                let adapter: I2cAdapter<_> =
                    I2cAdapter::new(TracedBus(Eeprom::new(*addr))).with_queue_size(64);
                serve(stream, adapter, unsealed)
            }
            Self::I2cHost(path) => {
                let bus = HostI2c::open(path)
                    .map_err(|e| format!("cannot open I2C bus {}: {e}", path.display()))?;
                let adapter: I2cAdapter<_> =
                    I2cAdapter::new_ten_bit(TracedBus(bus)).with_queue_size(64);
                serve(stream, adapter, unsealed)
            }
            Self::GpioChip { path, lines, .. } => {
                serve_gpiochip(stream, path, lines.as_ref(), unsealed)
            }
            Self::GpioSim(8) => serve_loopback::<8>(stream, unsealed),
            Self::GpioSim(16) => serve_loopback::<16>(stream, unsealed),
            Self::GpioSim(_) => serve_loopback::<32>(stream, unsealed),
            Self::SpiFlash { flash, caps } => {
                let spi: Spi<_, _, 1> =
                    Spi::new(FlashSpi(flash.clone()), [FlashSpi(flash.clone())], *caps)
                        .with_queue_size(64);
                serve(stream, spi, unsealed)
            }
            Self::Rpmb(file) => {
                let (keys, storage) = rpmb_file::open(file)
                    .map_err(|e| format!("cannot open RPMB image {}: {e}", file.display()))?;
                let rpmb: Rpmb<_, _, 8> = Rpmb::new(keys, storage).with_queue_size(64);
                serve(stream, rpmb, unsealed)
            }
            Self::Scmi => {
                // A fresh platform per connection: a guest reboot (a new
                // connection) finds it at its initial state.
                // QEMU's vhost-user-scmi gives both queues 256 entries.
                let scmi: Scmi<_, 16, 8> = Scmi::new(HostScmi::new()).with_queue_size(256);
                serve(stream, scmi, unsealed)
            }
            Self::Sound(files) => serve_sound(stream, files, unsealed),
            Self::Watchdog { timeout, on_expiry } => {
                let dog = Watchdog::new(StdClock::new(), CommandAction::new(on_expiry.clone()))
                    .with_timeout(*timeout);
                // Check the deadline a few times per timeout, at least once a second.
                let period = timeout
                    .checked_div(4)
                    .unwrap_or_default()
                    .min(std::time::Duration::from_secs(1));
                let dev = HostWatchdog::new(dog, period)
                    .map_err(|e| format!("cannot start the watchdog ticker: {e}"))?;
                connection::serve_with_events(
                    stream,
                    VhostUserDevice::new(dev).with_unsealed_memory(unsealed),
                    Ticks,
                )
            }
            Self::SpiHost { path, mode, hz } => {
                let target = open_spidev(path, *mode, *hz)
                    .map_err(|e| format!("cannot open SPI target {}: {e}", path.display()))?;
                let spi: SpiDevices<_, 1> =
                    SpiDevices::new([target], SpiCaps::new(*mode, *hz)).with_queue_size(64);
                serve(stream, spi, unsealed)
            }
        })
    }
}

/// Serves `device` on one connection.
fn serve<D: VirtioDevice + Send>(
    stream: UnixStream,
    device: D,
    unsealed: UnsealedMemory,
) -> std::io::Result<Ended> {
    connection::serve_device(
        stream,
        VhostUserDevice::new(device).with_unsealed_memory(unsealed),
    )
}

/// Serves a block device on one connection; SIGHUP makes it re-read the
/// image's size and announce a change to the frontend.
fn serve_resizable(
    stream: UnixStream,
    block: Block<FileStorage>,
    unsealed: UnsealedMemory,
) -> Result<std::io::Result<Ended>, String> {
    // SIGHUP writes a byte into `on_signal`; the loop watches `watched`.
    let (watched, on_signal) =
        UnixStream::pair().map_err(|e| format!("cannot make the resize trigger: {e}"))?;
    let events = ResizeTrigger::new(watched).map_err(|e| e.to_string())?;
    let id = signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, on_signal)
        .map_err(|e| format!("cannot watch SIGHUP: {e}"))?;
    let device = VhostUserDevice::new(block)
        .with_unsealed_memory(unsealed)
        .with_parallel_queues();
    let ended = connection::serve_with_events(stream, device, events);
    signal_hook::low_level::unregister(id);
    Ok(ended)
}

/// Serves a GPIO loopback of `N` lines on one connection.
fn serve_loopback<const N: usize>(
    stream: UnixStream,
    unsealed: UnsealedMemory,
) -> std::io::Result<Ended> {
    let gpio: Gpio<Loopback<N>, N> = Gpio::new(Loopback::new())
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_queue_size(64);
    serve(stream, gpio, unsealed)
}

/// Binds `path`, replacing a stale socket file but not one in use.
fn listen(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "socket {} is in use by another process",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))
}

/// The socket paths: PATH alone, or PATH0 .. PATH(N-1).
fn socket_paths(path: &Path, count: u16) -> Vec<PathBuf> {
    if count <= 1 {
        return vec![path.to_owned()];
    }
    (0..count)
        .map(|i| {
            let mut name = path.as_os_str().to_owned();
            name.push(i.to_string());
            PathBuf::from(name)
        })
        .collect()
}

/// Serves every socket on its own thread; returns when all have ended
/// (with `--once`, after each one's first connection), or exits the process
/// on SIGTERM / SIGINT after removing the sockets and flushing the images.
fn run(cli: Cli) -> Result<(), String> {
    if cli.socket_count > 1
        && matches!(
            cli.device,
            DeviceCmd::Block {
                read_only: false,
                ..
            } | DeviceCmd::Rpmb { .. }
                | DeviceCmd::Sound(SoundArgs {
                    wav_out: Some(_),
                    ..
                })
        )
    {
        return Err(
            "a writable image can back one socket only (guests writing one image corrupt it; \
             an RPMB image's counter would fork; a WAV sink would interleave): use --socket-count 1, or --read-only"
                .into(),
        );
    }
    let unsealed = if cli.allow_unsealed_memory {
        UnsealedMemory::Accept
    } else {
        UnsealedMemory::Refuse
    };
    let paths = socket_paths(&cli.socket, cli.socket_count);
    let mut sockets = Vec::new();
    let mut images = Vec::new();
    for path in &paths {
        let server = Server::prepare(cli.device.clone())?;
        if let Server::Block(disk, _) = &server {
            images.push(
                disk.try_clone()
                    .map_err(|e| format!("cannot reopen disk image: {e}"))?,
            );
        }
        let listener = listen(path)?;
        info!("serving {} on {}", server.describe(), path.display());
        sockets.push((path.clone(), server, listener));
    }
    shutdown_on_signals(paths, images)?;
    let threads: Vec<_> = sockets
        .into_iter()
        .map(|(path, server, listener)| {
            let once = cli.once;
            std::thread::spawn(move || accept_loop(&path, &server, &listener, once, unsealed))
        })
        .collect();
    let mut result = Ok(());
    for thread in threads {
        let ended = thread
            .join()
            .unwrap_or_else(|_| Err("a socket's thread panicked".into()));
        if let Err(e) = ended {
            error!("{e}");
            result = Err("a socket did not end cleanly".into());
        }
    }
    result
}

/// One socket's connections, one after another; returns after the first
/// with `once`.
fn accept_loop(
    path: &Path,
    server: &Server,
    listener: &UnixListener,
    once: bool,
    unsealed: UnsealedMemory,
) -> Result<(), String> {
    let name = path.display();
    let mut number = 0u64;
    loop {
        let (stream, _) = listener
            .accept()
            .map_err(|e| format!("{name}: accept failed: {e}"))?;
        number = number.wrapping_add(1);
        info!("{name}: connection {number}: frontend connected");
        let ended = server.serve(stream, unsealed)?;
        let clean = matches!(ended, Ok(Ended::Closed));
        match ended {
            Ok(how @ Ended::Closed) => info!("{name}: connection {number}: {how}"),
            Ok(how) => warn!("{name}: connection {number}: {how}"),
            Err(e) => error!("{name}: connection {number}: host error: {e}"),
        }
        if once {
            return if clean {
                Ok(())
            } else {
                Err(format!(
                    "{name}: connection {number} did not end cleanly (--once)"
                ))
            };
        }
    }
}

/// On SIGTERM or SIGINT: the socket files are removed (no frontend finds a
/// dead socket), the images flushed (`fdatasync`: every write a guest saw
/// completed is on disk), and the process exits with status 0. Connections
/// in progress end with it; their frontends see the socket close.
fn shutdown_on_signals(sockets: Vec<PathBuf>, mut images: Vec<FileStorage>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // SIGHUP resizes (each block connection watches it); with no connection
    // it must not kill the daemon.
    signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    )
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let name = if signal == SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            info!("{name}: shutting down");
            for path in &sockets {
                if let Err(e) = std::fs::remove_file(path) {
                    warn!("cannot remove {}: {e}", path.display());
                }
            }
            for image in &mut images {
                if let Err(e) = virtio_devices::block::BlockStorage::flush(image) {
                    error!("flushing the image failed: {e}");
                    std::process::exit(1);
                }
            }
            std::process::exit(0);
        }
    });
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.trace { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn device_options_parse() {
        let cli = Cli::try_parse_from(["vvu", "--socket", "s", "i2c", "--sim", "eeprom@0x50"])
            .expect("parses");
        assert!(matches!(
            cli.device,
            DeviceCmd::I2c(I2cArgs {
                sim: Some(0x50),
                ..
            })
        ));
        for bad in [
            &["vvu", "--socket", "s", "i2c"][..],
            &["vvu", "--socket", "s", "i2c", "--sim", "eeprom@0x80"],
            &[
                "vvu",
                "--socket",
                "s",
                "i2c",
                "--sim",
                "eeprom@0x50",
                "--dev",
                "/dev/i2c-1",
            ],
            &["vvu", "--socket", "s", "gpio", "--sim", "loopback:7"],
            &["vvu", "--socket", "s", "spi"],
            &[
                "vvu", "--socket", "s", "spi", "--sim", "flash", "--mode", "4",
            ],
            &["vvu", "rng"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["vvu", "--socket", "s", "scmi", "--sim"]).expect("parses");
        assert!(matches!(cli.device, DeviceCmd::Scmi { sim: true }));
        assert!(Cli::try_parse_from(["vvu", "--socket", "s", "scmi"]).is_err());
        let cli = Cli::try_parse_from(["vvu", "--socket", "s", "spi", "--dev", "/dev/spidev0.1"])
            .expect("parses");
        assert!(matches!(
            cli.device,
            DeviceCmd::Spi(SpiArgs {
                dev: Some(_),
                mode: 0,
                hz: 10_000_000,
                ..
            })
        ));
    }
}
