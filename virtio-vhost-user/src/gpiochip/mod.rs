//! Host GPIO lines for the GPIO device: a Linux gpiochip through its
//! character device (`/dev/gpiochipN`, GPIO uAPI v2, Linux 5.10 or later),
//! through the [`gpiocdev`] crate.
//!
//! `virtio-vhost-user --socket S gpio --chip /dev/gpiochipN [--lines 0,3,5-7]`
//! gives the guest the chip's lines: guest line `k` is the `k`-th line of
//! the selection (all of the chip's lines, in order, without `--lines`).
//!
//! # What a guest line does on the host
//!
//! [`ChipBank`] is the [`GpioBank`]; each selected line is in one of three
//! states, following the driver's `SET_DIRECTION`:
//!
//! | guest direction | host line |
//! |---|---|
//! | `NONE` (the start, and after a device reset) | not requested: free for other host users |
//! | `IN` | requested as an input with both-edge detection |
//! | `OUT` | requested as an output driving the value the driver set |
//!
//! A change between `IN` and `OUT` reconfigures the line's existing
//! request (one `GPIO_V2_LINE_SET_CONFIG_IOCTL`), so the line is never
//! released in between and no other host user can take it; `NONE` releases
//! it. A line the host cannot give (requested by someone else, a direction
//! the hardware lacks) makes the request fail: the guest gets
//! `VIRTIO_GPIO_STATUS_ERR`, and the reason goes to stderr. `GET_VALUE` on a
//! released line is an error too (reading it would mean requesting it).
//! Levels are physical (no active-low), and bias and drive are left as
//! they are: the virtio GPIO protocol has no way to set them.
//!
//! # Interrupts
//!
//! An input line is always requested with edge detection on both edges:
//! whether an edge becomes an interrupt, and of which kind, is the device's
//! decision (its trigger and masking state machine, see
//! [`virtio_devices::gpio`]). The line request descriptors join the
//! connection's wait ([`ChipEvents`], a [`HostEvents`]); a readable one is
//! drained and each edge reported with [`Gpio::input_changed`], after which
//! the loop polls the device so a held event buffer is returned at once.
//! The device runs [`Gpio::with_platform_events`]: it takes levels only
//! from those reports, never from a sampled read that could be older.
//!
//! The kernel numbers each line's events. A gap in the numbers means its
//! event buffer overflowed and edges were lost: the edge that follows
//! a gap is reported as the opposite level and then its own, since the
//! line was at the opposite level just before it (so a lost edge is
//! still latched instead of an interrupt being missed); without a gap only
//! its own level is reported, so an edge the device's starting read
//! already saw does not count twice.
//!
//! # Names and line count
//!
//! Line names come from the chip's line info. The virtio names must be
//! unique 7-bit ASCII strings, so a name that is not ASCII becomes `""`
//! (no name), and names shared by several selected lines become
//! `NAME@OFFSET` (the host offset); a line without a name keeps none.
//!
//! The device's line count is a compile-time parameter, so the guest sees
//! the selection rounded up to 8, 16, 32, 64, 128 or 256 lines; the lines
//! past the selection have no name and refuse every direction but `NONE`.
//! At most [`MAX_LINES`] lines can be selected.
//!
//! # Testing
//!
//! The mapping (line lists, names, state changes, event translation, the
//! hook in the connection loop, a whole vhost-user conversation) runs in
//! the unit tests against a fake chip behind [`ChipLines`], the seam the
//! real [`Cdev`] implements. [`Cdev`] itself needs a kernel gpiochip, and
//! the development machine has none (no GPIO hardware, no `gpio-sim`):
//! `tests/linux-guest-gpiochip.sh` boots a Linux guest whose gpiochip is
//! the virtio GPIO device over this daemon's loopback, and runs the
//! ignored test `real_chip_lines_and_edges_end_to_end` inside it, which
//! serves that chip through [`Cdev`] and the connection loop (kernel edge
//! events, in-place reconfiguration, `EBUSY`, release). No physical GPIO
//! controller driver has been tried.
//!

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gpiocdev::line::{EdgeDetection, EdgeKind, Value};
use gpiocdev::request::{Config, Request};
use virtio_devices::gpio::{Direction, Gpio, GpioBank, LineError};

use crate::backend::VhostUserDevice;
use crate::connection::{self, Ended, HostEvents};
use crate::memory::UnsealedMemory;

#[cfg(test)]
mod tests;

/// Most lines one device serves (the largest line count instantiated).
pub const MAX_LINES: usize = 256;

/// The consumer name host tools (`gpioinfo`) show for our requests.
pub const CONSUMER: &str = "virtio-vhost-user";

/// How a line is requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Input with both-edge detection.
    Input,
    /// Output driving this level.
    Output(bool),
}

/// One edge event of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Low to high (else high to low).
    pub rising: bool,
    /// The kernel's per-line sequence number (1 for the first event).
    pub line_seqno: u32,
}

/// What [`ChipBank`] needs of a gpiochip: line info and per-line
/// requests. [`Cdev`] is the real one; the tests use a fake.
pub trait ChipLines {
    /// One line's request; its descriptor is readable when edge events
    /// are waiting.
    type Request: AsFd;

    /// The number of lines on the chip.
    fn num_lines(&self) -> u32;

    /// The line's name from the chip's line info (`""` for none).
    fn line_name(&self, offset: u32) -> &str;

    /// Requests the line.
    ///
    /// # Errors
    /// The host refused (busy, a direction the line lacks, …).
    fn request(&self, offset: u32, mode: Mode) -> io::Result<Self::Request>;

    /// Changes a request's configuration in place.
    ///
    /// # Errors
    /// The host refused.
    fn reconfigure(&self, request: &Self::Request, offset: u32, mode: Mode) -> io::Result<()>;

    /// The level on the line.
    ///
    /// # Errors
    /// The host could not read it.
    fn value(&self, request: &Self::Request, offset: u32) -> io::Result<bool>;

    /// Drives an output line.
    ///
    /// # Errors
    /// The host could not drive it.
    fn set_value(&self, request: &Self::Request, offset: u32, value: bool) -> io::Result<()>;

    /// The next waiting edge event of an input request, without blocking.
    ///
    /// # Errors
    /// The read failed (the chip went away).
    fn next_edge(&self, request: &Self::Request) -> io::Result<Option<Edge>>;
}

/// A host gpiochip through its character device.
#[derive(Debug)]
pub struct Cdev {
    path: PathBuf,
    /// The kernel's name (`gpiochip0`) and label (the driver's).
    name: String,
    label: String,
    names: Vec<String>,
}

/// `gpiocdev`'s error as an `io::Error`, keeping the errno where there is
/// one (it decides [`LineError`]).
fn io_error(e: gpiocdev::Error) -> io::Error {
    let errno = match &e {
        gpiocdev::Error::Os(n) | gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(n)) => n.0,
        _ => 0,
    };
    if errno > 0 {
        io::Error::from_raw_os_error(errno)
    } else {
        io::Error::other(e.to_string())
    }
}

impl Cdev {
    /// Opens the chip and reads its line names.
    ///
    /// # Errors
    /// `path` is not a gpiochip character device, or its info cannot be
    /// read.
    pub fn open(path: &Path) -> io::Result<Self> {
        let chip = gpiocdev::Chip::from_path(path).map_err(io_error)?;
        let info = chip.info().map_err(io_error)?;
        let names = (0..info.num_lines)
            .map(|offset| chip.line_info(offset).map(|i| i.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_error)?;
        Ok(Self {
            path: path.to_path_buf(),
            name: info.name,
            label: info.label,
            names,
        })
    }

    /// The chip's kernel name and label, e.g. `gpiochip0 [pinctrl-bcm2835]`.
    pub fn describe(&self) -> String {
        format!("{} [{}]", self.name, self.label)
    }
}

fn line_config(config: &mut Config, offset: u32, mode: Mode) {
    config.with_line(offset);
    match mode {
        Mode::Input => config.with_edge_detection(EdgeDetection::BothEdges),
        Mode::Output(v) => config.as_output(Value::from(v)),
    };
}

impl ChipLines for Cdev {
    type Request = Request;

    fn num_lines(&self) -> u32 {
        u32::try_from(self.names.len()).unwrap_or(u32::MAX)
    }

    fn line_name(&self, offset: u32) -> &str {
        usize::try_from(offset)
            .ok()
            .and_then(|i| self.names.get(i))
            .map_or("", String::as_str)
    }

    fn request(&self, offset: u32, mode: Mode) -> io::Result<Request> {
        let mut config = Config::default();
        config.on_chip(&self.path);
        line_config(&mut config, offset, mode);
        Request::from_config(config)
            .with_consumer(CONSUMER)
            .request()
            .map_err(io_error)
    }

    fn reconfigure(&self, request: &Request, offset: u32, mode: Mode) -> io::Result<()> {
        let mut config = Config::default();
        line_config(&mut config, offset, mode);
        request.reconfigure(&config).map_err(io_error)
    }

    fn value(&self, request: &Request, offset: u32) -> io::Result<bool> {
        request.value(offset).map(bool::from).map_err(io_error)
    }

    fn set_value(&self, request: &Request, offset: u32, value: bool) -> io::Result<()> {
        request
            .set_value(offset, Value::from(value))
            .map_err(io_error)
    }

    fn next_edge(&self, request: &Request) -> io::Result<Option<Edge>> {
        if !request.has_edge_event().map_err(io_error)? {
            return Ok(None);
        }
        let event = request.read_edge_event().map_err(io_error)?;
        Ok(Some(Edge {
            rising: event.kind == EdgeKind::Rising,
            line_seqno: event.line_seqno,
        }))
    }
}

/// A `--lines` list: offsets and inclusive ranges, comma-separated
/// (`0,3,5-7`), in the order the guest numbers them; no offset twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineSelection(Vec<u32>);

/// Why a `--lines` list was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinesError(String);

impl fmt::Display for LinesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinesError {}

impl LineSelection {
    /// The chip offsets, guest line `k` at index `k`.
    pub fn offsets(&self) -> &[u32] {
        &self.0
    }
}

impl FromStr for LineSelection {
    type Err = LinesError;

    fn from_str(s: &str) -> Result<Self, LinesError> {
        let bad = |item: &str, why: &str| LinesError(format!("--lines {s}: '{item}': {why}"));
        let number = |item: &str, part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| bad(item, "expected a line offset or a range A-B"))
        };
        let mut offsets: Vec<u32> = Vec::new();
        for item in s.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (number(item, a)?, number(item, b)?),
                None => {
                    let n = number(item, item)?;
                    (n, n)
                }
            };
            if last < first {
                return Err(bad(item, "a range must not run backwards"));
            }
            let count = usize::try_from(last.saturating_sub(first)).unwrap_or(usize::MAX);
            if offsets.len().saturating_add(count) >= MAX_LINES {
                return Err(LinesError(format!(
                    "--lines {s}: more than {MAX_LINES} lines"
                )));
            }
            for offset in first..=last {
                if offsets.contains(&offset) {
                    return Err(bad(item, &format!("line {offset} is listed twice")));
                }
                offsets.push(offset);
            }
        }
        Ok(Self(offsets))
    }
}

impl fmt::Display for LineSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, offset) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{offset}")?;
        }
        Ok(())
    }
}

/// The guest's names for the chip lines at `offsets` (their chip names in
/// `raw`): unique 7-bit ASCII without NUL, or `""`.
pub fn guest_names(offsets: &[u32], raw: &[&str]) -> Vec<String> {
    let usable = |name: &str| !name.is_empty() && name.is_ascii() && !name.contains('\0');
    let mut names: Vec<String> = offsets
        .iter()
        .zip(raw)
        .map(|(offset, name)| {
            if !usable(name) {
                String::new()
            } else if raw.iter().filter(|other| *other == name).count() > 1 {
                format!("{name}@{offset}")
            } else {
                (*name).to_string()
            }
        })
        .collect();
    // A made-up name that happens to be another line's real one: the
    // later line goes without.
    for i in 0..names.len() {
        let (before, rest) = names.split_at_mut(i);
        if let Some(name) = rest.first_mut()
            && !name.is_empty()
            && before.contains(name)
        {
            name.clear();
        }
    }
    names
}

/// Where a line stands on the host.
#[derive(Debug)]
enum State<R> {
    Released,
    Input(R),
    Output(R),
}

impl<R> State<R> {
    fn new(mode: Mode, request: R) -> Self {
        match mode {
            Mode::Input => Self::Input(request),
            Mode::Output(_) => Self::Output(request),
        }
    }
}

#[derive(Debug)]
struct BankLine<R> {
    offset: u32,
    name: String,
    state: State<R>,
    /// The `line_seqno` of the last edge read since the line became an
    /// input (`None`: none yet).
    last_seqno: Option<u32>,
}

/// The selected lines of a host gpiochip as a [`GpioBank`].
///
/// Dropping the bank releases every line it holds.
#[derive(Debug)]
pub struct ChipBank<C: ChipLines> {
    chip: C,
    lines: Vec<BankLine<C::Request>>,
}

/// The bank's error for a host failure: refusals of a configuration are
/// [`LineError::Unsupported`], anything else [`LineError::Pin`].
fn line_error(e: &io::Error) -> LineError {
    use rustix::io::Errno;
    // The kernel's ENOTSUPP, which some drivers leak to user space.
    const ENOTSUPP: i32 = 524;
    let refused = [
        Errno::BUSY,
        Errno::INVAL,
        Errno::PERM,
        Errno::ACCESS,
        Errno::OPNOTSUPP,
    ];
    match e.raw_os_error() {
        Some(ENOTSUPP) => LineError::Unsupported,
        Some(n) if refused.iter().any(|r| r.raw_os_error() == n) => LineError::Unsupported,
        _ => LineError::Pin,
    }
}

impl<C: ChipLines> ChipBank<C> {
    /// The lines of `chip` at `selection` (all of them, in order, for
    /// `None`), all released.
    ///
    /// # Errors
    /// `InvalidInput`: a selected offset the chip does not have, more than
    /// [`MAX_LINES`] lines, or a chip with no lines.
    pub fn new(chip: C, selection: Option<&LineSelection>) -> io::Result<Self> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let count = chip.num_lines();
        let offsets: Vec<u32> = match selection {
            Some(s) => s.offsets().to_vec(),
            None => (0..count).collect(),
        };
        if let Some(bad) = offsets.iter().find(|&&o| o >= count) {
            return Err(invalid(format!(
                "the chip has no line {bad} (it has {count}: 0-{})",
                count.saturating_sub(1)
            )));
        }
        if offsets.is_empty() {
            return Err(invalid("the chip has no lines".into()));
        }
        if offsets.len() > MAX_LINES {
            return Err(invalid(format!(
                "the chip has {} lines, more than the {MAX_LINES} one device can serve: \
                 choose some with --lines",
                offsets.len()
            )));
        }
        let raw: Vec<&str> = offsets.iter().map(|&o| chip.line_name(o)).collect();
        let names = guest_names(&offsets, &raw);
        let lines = offsets
            .into_iter()
            .zip(names)
            .map(|(offset, name)| BankLine {
                offset,
                name,
                state: State::Released,
                last_seqno: None,
            })
            .collect();
        Ok(Self { chip, lines })
    }

    /// The chip.
    pub fn chip(&self) -> &C {
        &self.chip
    }

    /// The number of selected lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True with no lines (never, for a bank [`Self::new`] made).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The chip offset of guest line `line`.
    pub fn offset(&self, line: u16) -> Option<u32> {
        self.lines.get(usize::from(line)).map(|l| l.offset)
    }

    /// One line per selected line, for the daemon's start-up message:
    /// `guest line -> chip offset "name"`.
    pub fn describe_lines(&self) -> Vec<String> {
        (0u16..)
            .zip(&self.lines)
            .map(|(i, l)| format!("{i} -> {} \"{}\"", l.offset, l.name))
            .collect()
    }

    /// The request descriptors of the input lines, each with its guest
    /// line as the token.
    pub fn event_fds(&self) -> Vec<(usize, BorrowedFd<'_>)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match &l.state {
                State::Input(r) => Some((i, r.as_fd())),
                _ => None,
            })
            .collect()
    }

    /// Reads every waiting edge of guest line `line` and appends the
    /// levels to report, in order (see the [module docs](self) for a gap in
    /// the kernel's numbering). Nothing for a line that is not an input.
    ///
    /// # Errors
    /// A read failed.
    pub fn drain_edges(&mut self, line: u16, levels: &mut Vec<(u16, bool)>) -> io::Result<()> {
        let Some(l) = self.lines.get_mut(usize::from(line)) else {
            return Ok(());
        };
        let State::Input(request) = &l.state else {
            return Ok(());
        };
        // Bounded: the kernel buffers a fixed number of events per line.
        for _ in 0..1024 {
            let Some(edge) = self.chip.next_edge(request)? else {
                break;
            };
            let lost = l
                .last_seqno
                .is_some_and(|last| edge.line_seqno.wrapping_sub(last) > 1);
            if lost {
                levels.push((line, !edge.rising));
            }
            levels.push((line, edge.rising));
            l.last_seqno = Some(edge.line_seqno);
        }
        Ok(())
    }

    fn host<T>(&self, line: u16, what: &str, r: io::Result<T>) -> Result<T, LineError> {
        r.map_err(|e| {
            let offset = self.offset(line).unwrap_or(u32::MAX);
            log::warn!("gpio line {line} (chip line {offset}): {what}: {e}");
            line_error(&e)
        })
    }
}

impl<C: ChipLines> GpioBank for ChipBank<C> {
    fn name(&self, line: u16) -> &str {
        self.lines
            .get(usize::from(line))
            .map_or("", |l| l.name.as_str())
    }

    fn set_direction(
        &mut self,
        line: u16,
        direction: Direction,
        value: bool,
    ) -> Result<(), LineError> {
        let Some(l) = self.lines.get_mut(usize::from(line)) else {
            // A line past the selection (the count is rounded up).
            return match direction {
                Direction::None => Ok(()),
                _ => Err(LineError::Unsupported),
            };
        };
        let offset = l.offset;
        let state = std::mem::replace(&mut l.state, State::Released);
        let was_input = matches!(state, State::Input(_));
        let mode = match direction {
            Direction::In => Mode::Input,
            Direction::Out => Mode::Output(value),
            // Dropping the request releases the line.
            Direction::None => return Ok(()),
        };
        let chip = &self.chip;
        // On failure a line keeps what it had: a refused reconfiguration
        // leaves the request as it was.
        let (result, next) = match (state, mode) {
            (State::Released, m) => match chip.request(offset, m) {
                Ok(r) => (Ok(()), State::new(m, r)),
                Err(e) => (Err(e), State::Released),
            },
            (State::Input(r), Mode::Input) => (Ok(()), State::Input(r)),
            (State::Output(r), Mode::Output(v)) => {
                (chip.set_value(&r, offset, v), State::Output(r))
            }
            // Input to output or back.
            (State::Input(r) | State::Output(r), m) => match chip.reconfigure(&r, offset, m) {
                Ok(()) => (Ok(()), State::new(m, r)),
                Err(e) if was_input => (Err(e), State::Input(r)),
                Err(e) => (Err(e), State::Output(r)),
            },
        };
        if !was_input && matches!(next, State::Input(_)) {
            // A new input: its event numbers start afresh.
            l.last_seqno = None;
        }
        l.state = next;
        self.host(line, "cannot configure", result)
    }

    fn get_value(&mut self, line: u16) -> Result<bool, LineError> {
        let l = self
            .lines
            .get(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        let r = match &l.state {
            State::Input(r) | State::Output(r) => self.chip.value(r, l.offset),
            State::Released => return Err(LineError::Unsupported),
        };
        self.host(line, "cannot read", r)
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<(), LineError> {
        let l = self
            .lines
            .get(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        let r = match &l.state {
            State::Output(r) => self.chip.set_value(r, l.offset, value),
            _ => return Err(LineError::Unsupported),
        };
        self.host(line, "cannot drive", r)
    }
}

/// The host half of the GPIO device's interrupts: the input lines' request
/// descriptors in the connection's wait, their edges reported to the
/// device with [`Gpio::input_changed`].
/// Every edge is logged at trace level.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChipEvents;

impl<C: ChipLines, const N: usize> HostEvents<Gpio<ChipBank<C>, N>> for ChipEvents {
    fn fds<'a>(&'a self, device: &'a Gpio<ChipBank<C>, N>) -> Vec<(usize, BorrowedFd<'a>)> {
        device.bank().event_fds()
    }

    fn ready(&mut self, device: &mut Gpio<ChipBank<C>, N>, tokens: &[usize]) -> io::Result<bool> {
        let mut levels = Vec::new();
        for &token in tokens {
            if let Ok(line) = u16::try_from(token) {
                device.bank_mut().drain_edges(line, &mut levels)?;
            }
        }
        for (line, level) in levels {
            if log::log_enabled!(log::Level::Trace) {
                let offset = device.bank().offset(line).unwrap_or(u32::MAX);
                log::trace!(
                    "gpio line {line} (chip line {offset}): {}",
                    if level { "high" } else { "low" }
                );
            }
            device.input_changed(line, level);
        }
        Ok(false)
    }
}

/// The bank's description for the daemon's start-up message, checking
/// `chip` and `lines` the way [`serve_gpiochip`] will (call it once
/// before listening, to fail at start rather than at the first
/// connection). No line is requested.
///
/// # Errors
/// The chip cannot be opened or read, or the selection does not fit it.
pub fn probe_gpiochip(chip: &Path, lines: Option<&LineSelection>) -> io::Result<String> {
    let cdev = Cdev::open(chip).map_err(|e| context(chip, e))?;
    let described = cdev.describe();
    let bank = ChipBank::new(cdev, lines).map_err(|e| context(chip, e))?;
    Ok(format!(
        "gpio (host chip {} {described}, {} lines, offered as {}: {})",
        chip.display(),
        bank.len(),
        device_lines(bank.len()).unwrap_or(0),
        bank.describe_lines().join(", ")
    ))
}

fn context(chip: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("gpiochip {}: {e}", chip.display()))
}

/// Serves the GPIO device over the host gpiochip `chip` (its lines
/// `lines`, or all) on one connection. The lines are requested as the
/// guest configures them and all released when the connection ends.
///
/// # Errors
/// The chip cannot be opened or the selection does not fit it; host
/// failures of the connection ([`connection::serve_with_events`]).
pub fn serve_gpiochip(
    stream: UnixStream,
    chip: &Path,
    lines: Option<&LineSelection>,
    unsealed: UnsealedMemory,
) -> io::Result<Ended> {
    let cdev = Cdev::open(chip).map_err(|e| context(chip, e))?;
    let bank = ChipBank::new(cdev, lines).map_err(|e| context(chip, e))?;
    serve_bank(stream, bank, unsealed)
}

/// The device line count for `lines` selected lines: the next of 8, 16, …
/// [`MAX_LINES`].
pub fn device_lines(lines: usize) -> Option<usize> {
    [8, 16, 32, 64, 128, 256]
        .into_iter()
        .find(|&n| n >= lines && n <= MAX_LINES)
}

/// Serves the GPIO device over `bank` on one connection (any
/// [`ChipLines`]; [`serve_gpiochip`] is this over a [`Cdev`]).
///
/// # Errors
/// More than [`MAX_LINES`] lines; host failures of the connection.
pub fn serve_bank<C>(
    stream: UnixStream,
    bank: ChipBank<C>,
    unsealed: UnsealedMemory,
) -> io::Result<Ended>
where
    C: ChipLines + Send,
    C::Request: Send,
{
    match device_lines(bank.len()) {
        Some(8) => serve_n::<C, 8>(stream, bank, unsealed),
        Some(16) => serve_n::<C, 16>(stream, bank, unsealed),
        Some(32) => serve_n::<C, 32>(stream, bank, unsealed),
        Some(64) => serve_n::<C, 64>(stream, bank, unsealed),
        Some(128) => serve_n::<C, 128>(stream, bank, unsealed),
        Some(256) => serve_n::<C, 256>(stream, bank, unsealed),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} lines: at most {MAX_LINES}", bank.len()),
        )),
    }
}

fn serve_n<C, const N: usize>(
    stream: UnixStream,
    bank: ChipBank<C>,
    unsealed: UnsealedMemory,
) -> io::Result<Ended>
where
    C: ChipLines + Send,
    C::Request: Send,
{
    let gpio: Gpio<ChipBank<C>, N> = Gpio::new(bank)
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_platform_events()
        .with_queue_size(64);
    let device = VhostUserDevice::new(gpio).with_unsealed_memory(unsealed);
    connection::serve_with_events(stream, device, ChipEvents)
}
