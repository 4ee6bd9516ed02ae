//! `virtio-vhost-user`: serves one virtio device on a vhost-user socket.
#![forbid(unsafe_code)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use virtio_devices::block::{Block, BlockOptions};
use virtio_devices::gpio::Gpio;
use virtio_devices::gpio::loopback::Loopback;
use virtio_devices::i2c::I2cAdapter;
use virtio_devices::i2c::eeprom::Eeprom;
use virtio_devices::rng::Rng;
use virtio_devices::spi::flash::FlashState;
use virtio_devices::spi::{Spi, SpiCaps};
use virtio_vhost_user::connection::{self, Ended};
use virtio_vhost_user::entropy::HostEntropy;
use virtio_vhost_user::storage::FileStorage;

const USAGE: &str = "\
Serves one virtio device to a vhost-user frontend (QEMU) on a unix socket.

Usage:
  virtio-vhost-user --socket PATH [--once] [--trace] rng
  virtio-vhost-user --socket PATH [--once] [--trace] block --file IMAGE [--read-only]
  virtio-vhost-user --socket PATH [--once] [--trace] i2c --sim eeprom@ADDR
  virtio-vhost-user --socket PATH [--once] [--trace] i2c --dev /dev/i2c-N
  virtio-vhost-user --socket PATH [--once] [--trace] gpio --sim loopback:N
  virtio-vhost-user --socket PATH [--once] [--trace] spi --sim flash

Options:
  --socket PATH   listen here (a stale socket file is replaced; one in use is an error)
  --once          exit after the first connection ends (status 0 if it ended cleanly)
  --trace         log every vhost-user request and its outcome (i2c: and every bus transaction)
  -h, --help      this text

Devices:
  rng             entropy device (virtio id 4) fed from /dev/urandom
  block           block device (virtio id 2) over a disk image file; --read-only offers RO
  i2c             I2C adapter (virtio id 34), 7-bit addresses, one of:
                    --sim eeprom@0x50  a simulated 24C02 EEPROM (256 bytes, 8-byte pages,
                                       erased to 0xff on each connection) at that address
                    --dev /dev/i2c-N   a host I2C bus through its i2c-dev character device
                                       (the guest's messages reach it as I2C_RDWR transfers)
  gpio            GPIO device (virtio id 41) with interrupts (VIRTIO_GPIO_F_IRQ):
                    --sim loopback:N   N simulated lines (8, 16 or 32) named loop0.., output
                                       line k drives input line k+1, so writes raise interrupts
  spi             SPI controller (virtio id 45), mode 0 at 10 MHz, one chip select:
                    --sim flash        a simulated 64 KiB NOR flash (JEDEC ID ef 40 18; read,
                                       page program, sector erase), kept across connections
                  (no QEMU here has a vhost-user-spi frontend; Linux's driver is in >= 6.18)

QEMU side (guest RAM must be shared):
  -object memory-backend-memfd,id=mem,size=256M,share=on -machine memory-backend=mem
  -chardev socket,id=c0,path=PATH -device vhost-user-rng-pci,chardev=c0
  -chardev socket,id=c1,path=PATH -device vhost-user-blk-pci,chardev=c1,num-queues=1
  -chardev socket,id=c2,path=PATH -device vhost-user-i2c-pci,chardev=c2
  -chardev socket,id=c3,path=PATH -device vhost-user-gpio-pci,chardev=c3
    (QEMU 7.2 drops the IRQ feature bit: use QEMU >= 8 for gpio interrupts)
";

/// What to serve.
enum Device {
    Rng,
    Block {
        file: PathBuf,
        read_only: bool,
    },
    I2c(I2cBus),
    /// A loopback of this many lines.
    Gpio(usize),
    /// The simulated flash.
    SpiFlash,
}

/// The simulated flash's size.
const FLASH_BYTES: usize = 64 * 1024;

/// The bus behind the I2C adapter.
enum I2cBus {
    /// A simulated EEPROM at this 7-bit address.
    Eeprom(u8),
    /// A host bus, `/dev/i2c-N`.
    Host(PathBuf),
}

/// An I2C bus that, with `--trace`, logs each transaction the adapter
/// runs on it: one line per `embedded-hal` transaction (a FAIL_NEXT group
/// of the guest's messages is one).
struct TracedBus<B> {
    bus: B,
    trace: bool,
}

impl<B: embedded_hal::i2c::ErrorType> embedded_hal::i2c::ErrorType for TracedBus<B> {
    type Error = B::Error;
}

impl<B: embedded_hal::i2c::I2c> embedded_hal::i2c::I2c for TracedBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        use embedded_hal::i2c::{Error as _, Operation};
        let result = self.bus.transaction(address, operations);
        if self.trace {
            let ops: Vec<String> = operations
                .iter()
                .map(|op| match op {
                    Operation::Read(b) => format!("r{}", b.len()),
                    Operation::Write(b) => format!("w{}", b.len()),
                })
                .collect();
            let outcome = match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => virtio_devices::i2c::BusError::from(e.kind()).to_string(),
            };
            eprintln!(
                "virtio-vhost-user: i2c transaction {address:#04x}: {}: {outcome}",
                ops.join(" ")
            );
        }
        result
    }
}

/// The simulated flash, shared by the SPI device's bus and chip select
/// and kept across connections.
type SharedFlash = std::sync::Arc<std::sync::Mutex<FlashState<FLASH_BYTES>>>;

/// The flash as a bus and as its chip-select pin (the connection's thread
/// owns the device, so the state sits behind a mutex).
struct FlashSpi(SharedFlash);

impl FlashSpi {
    fn with<T>(&self, f: impl FnOnce(&mut FlashState<FLASH_BYTES>) -> T) -> T {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
}

impl embedded_hal::spi::ErrorType for FlashSpi {
    type Error = embedded_hal::spi::ErrorKind;
}

impl embedded_hal::spi::SpiBus<u8> for FlashSpi {
    fn read(&mut self, words: &mut [u8]) -> Result<(), Self::Error> {
        self.with(|s| words.iter_mut().for_each(|w| *w = s.clock(0)));
        Ok(())
    }
    fn write(&mut self, words: &[u8]) -> Result<(), Self::Error> {
        self.with(|s| {
            for w in words {
                s.clock(*w);
            }
        });
        Ok(())
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), Self::Error> {
        self.with(|s| {
            for i in 0..read.len().max(write.len()) {
                let r = s.clock(write.get(i).copied().unwrap_or(0));
                if let Some(slot) = read.get_mut(i) {
                    *slot = r;
                }
            }
        });
        Ok(())
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), Self::Error> {
        self.with(|s| words.iter_mut().for_each(|w| *w = s.clock(*w)));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_hal::digital::ErrorType for FlashSpi {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for FlashSpi {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.with(|s| s.select(true));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.with(|s| s.select(false));
        Ok(())
    }
}

/// Parses `eeprom@ADDR` (ADDR in hex with 0x, or decimal; 7-bit).
fn parse_sim(spec: &str) -> Result<I2cBus, String> {
    let bad = || format!("--sim {spec}: expected eeprom@ADDR with a 7-bit ADDR, e.g. eeprom@0x50");
    let addr = spec.strip_prefix("eeprom@").ok_or_else(bad)?;
    let value = match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => addr.parse(),
    }
    .map_err(|_| bad())?;
    if value > 0x7f {
        return Err(bad());
    }
    Ok(I2cBus::Eeprom(value))
}

struct Args {
    socket: PathBuf,
    once: bool,
    trace: bool,
    device: Device,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut socket = None;
    let mut once = false;
    let mut trace = false;
    let mut kind = None;
    let mut file = None;
    let mut read_only = false;
    let mut sim = None;
    let mut dev = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--socket" => socket = Some(args.next().ok_or("--socket needs a path")?),
            "--once" => once = true,
            "--trace" => trace = true,
            "--file" => file = Some(args.next().ok_or("--file needs a path")?),
            "--read-only" => read_only = true,
            "--sim" => sim = Some(args.next().ok_or("--sim needs eeprom@ADDR")?),
            "--dev" => dev = Some(args.next().ok_or("--dev needs a path")?),
            "rng" | "block" | "i2c" | "gpio" | "spi" if kind.is_none() => kind = Some(arg),
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let socket = PathBuf::from(socket.ok_or("--socket PATH is required")?);
    let sim_device = matches!(kind.as_deref(), Some("i2c" | "gpio" | "spi"));
    if !sim_device && sim.is_some() {
        return Err("--sim is an i2c, gpio and spi option".into());
    }
    if kind.as_deref() != Some("i2c") && dev.is_some() {
        return Err("--dev is an i2c option".into());
    }
    if sim_device && (file.is_some() || read_only) {
        return Err("--file and --read-only are block device options".into());
    }
    let device = match kind.as_deref() {
        Some("rng") => {
            if file.is_some() || read_only {
                return Err("--file and --read-only are block device options".into());
            }
            Device::Rng
        }
        Some("block") => Device::Block {
            file: PathBuf::from(file.ok_or("block needs --file IMAGE")?),
            read_only,
        },
        Some("i2c") => Device::I2c(match (sim, dev) {
            (Some(sim), None) => parse_sim(&sim)?,
            (None, Some(dev)) => I2cBus::Host(PathBuf::from(dev)),
            _ => return Err("i2c needs one of --sim eeprom@ADDR or --dev /dev/i2c-N".into()),
        }),
        Some("gpio") => {
            let sim = sim.ok_or("gpio needs --sim loopback:N")?;
            match sim.strip_prefix("loopback:").map(str::parse::<usize>) {
                Some(Ok(n @ (8 | 16 | 32))) => Device::Gpio(n),
                _ => {
                    return Err(format!(
                        "--sim {sim}: expected loopback:8, loopback:16 or loopback:32"
                    ));
                }
            }
        }
        Some("spi") => match sim.as_deref() {
            Some("flash") => Device::SpiFlash,
            _ => return Err("spi needs --sim flash".into()),
        },
        _ => return Err("name a device: rng, block, i2c, gpio or spi".into()),
    };
    Ok(Some(Args {
        socket,
        once,
        trace,
        device,
    }))
}

/// Serves a GPIO loopback of `N` lines on one connection.
fn serve_gpio<const N: usize>(
    stream: UnixStream,
    trace: bool,
) -> std::io::Result<connection::Ended> {
    let gpio: Gpio<Loopback<N>, N> = Gpio::new(Loopback::new())
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_queue_size(64);
    connection::serve(stream, gpio, trace)
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

/// Serves connections one after another; returns after the first with
/// `once`.
fn run(args: Args) -> Result<(), String> {
    let disk = match &args.device {
        Device::Block { file, read_only } => Some(
            FileStorage::open(file, *read_only)
                .map_err(|e| format!("cannot open disk image {}: {e}", file.display()))?,
        ),
        Device::Rng | Device::I2c(_) | Device::Gpio(_) | Device::SpiFlash => None,
    };
    if let Device::I2c(I2cBus::Host(path)) = &args.device {
        // Fail at start, not at the first connection.
        linux_embedded_hal::I2cdev::new(path)
            .map_err(|e| format!("cannot open I2C bus {}: {e}", path.display()))?;
    }
    let listener = listen(&args.socket)?;
    let what = match &args.device {
        Device::Rng => "rng".to_string(),
        Device::Block { file, read_only } => format!(
            "block {} ({} sectors{})",
            file.display(),
            disk.as_ref()
                .map_or(0, virtio_devices::block::BlockStorage::capacity),
            if *read_only { ", read-only" } else { "" }
        ),
        Device::I2c(I2cBus::Eeprom(addr)) => format!("i2c (simulated 24C02 EEPROM at {addr:#04x})"),
        Device::I2c(I2cBus::Host(path)) => format!("i2c (host bus {})", path.display()),
        Device::Gpio(n) => format!("gpio ({n} loopback lines)"),
        Device::SpiFlash => format!(
            "spi (simulated {} KiB NOR flash on chip select 0)",
            FLASH_BYTES / 1024
        ),
    };
    // The flash outlives connections (its contents persist).
    let flash: SharedFlash = std::sync::Arc::default();
    eprintln!(
        "virtio-vhost-user: serving {what} on {}",
        args.socket.display()
    );
    let mut number = 0u64;
    loop {
        let (stream, _) = listener
            .accept()
            .map_err(|e| format!("accept failed: {e}"))?;
        number = number.wrapping_add(1);
        eprintln!("virtio-vhost-user: connection {number}: frontend connected");
        let ended = match (&args.device, &disk) {
            (Device::I2c(I2cBus::Eeprom(addr)), _) => {
                let bus = TracedBus {
                    bus: Eeprom::new(*addr),
                    trace: args.trace,
                };
                let adapter: I2cAdapter<_> = I2cAdapter::new(bus).with_queue_size(64);
                connection::serve(stream, adapter, args.trace)
            }
            (Device::I2c(I2cBus::Host(path)), _) => {
                let bus = linux_embedded_hal::I2cdev::new(path)
                    .map_err(|e| format!("cannot open I2C bus {}: {e}", path.display()))?;
                let bus = TracedBus {
                    bus,
                    trace: args.trace,
                };
                let adapter: I2cAdapter<_> = I2cAdapter::new(bus).with_queue_size(64);
                connection::serve(stream, adapter, args.trace)
            }
            (Device::SpiFlash, _) => {
                let spi: Spi<_, _, 1> = Spi::new(
                    FlashSpi(flash.clone()),
                    [FlashSpi(flash.clone())],
                    SpiCaps::new(0, 10_000_000),
                )
                .with_queue_size(64);
                connection::serve(stream, spi, args.trace)
            }
            (Device::Gpio(n), _) => match n {
                8 => serve_gpio::<8>(stream, args.trace),
                16 => serve_gpio::<16>(stream, args.trace),
                _ => serve_gpio::<32>(stream, args.trace),
            },
            (_, None) => {
                let rng = HostEntropy::open().map_err(|e| format!("/dev/urandom: {e}"))?;
                connection::serve(stream, Rng::new(rng).with_queue_size(1024), args.trace)
            }
            (_, Some(disk)) => {
                let storage = disk
                    .try_clone()
                    .map_err(|e| format!("cannot reopen disk image: {e}"))?;
                let options = BlockOptions {
                    read_only: storage.read_only(),
                    queue_size: 1024,
                    ..BlockOptions::default()
                };
                connection::serve(stream, Block::new(storage, options), args.trace)
            }
        };
        let clean = match &ended {
            Ok(Ended::Closed) => true,
            Ok(_) => false,
            Err(_) => false,
        };
        match ended {
            Ok(how) => eprintln!("virtio-vhost-user: connection {number}: {how}"),
            Err(e) => eprintln!("virtio-vhost-user: connection {number}: host error: {e}"),
        }
        if args.once {
            return if clean {
                Ok(())
            } else {
                Err(format!("connection {number} did not end cleanly (--once)"))
            };
        }
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("virtio-vhost-user: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("virtio-vhost-user: {e}");
            ExitCode::FAILURE
        }
    }
}
