//! The GPIO device (ID 41, virtio 1.4 §"GPIO Device") over a bank of lines
//! ([`GpioBank`]; [`PinBank`] puts `embedded_hal::digital` pins behind it).
//!
//! Two queues: `requestq` (0), where each request is an 8-byte
//! [`GpioRequest`] and a response the device fills completely (2 bytes, or
//! `1 + gpio_names_size` for `GET_LINE_NAMES`), answered in order; and,
//! with [`F_IRQ`], `eventq` (1), where the driver unmasks a line's
//! interrupt by posting a buffer pair for it.
//!
//! # Interrupts: one state machine per line
//!
//! * **Enabled** by `SET_IRQ_TYPE` with a trigger other than `NONE`
//!   (allowed only with `F_IRQ` negotiated, on a line not configured for
//!   output). **Unmasked** while the device holds the line's event buffer.
//! * The embedder reports what a line did with [`Gpio::input_changed`]
//!   (from its pin interrupt), or lets the device sample: after every
//!   request and on [`DeviceCore::poll`](virtio_core::device::DeviceCore::poll)
//!   the device reads each enabled input line and treats a changed level as
//!   an edge. Then `poll` delivers.
//! * **Edge**: an edge of the trigger's kind while enabled is latched
//!   whether the line is masked or not (virtio 1.4 §"requestq Operation":
//!   the device MUST latch an edge interrupt while enabled but masked) and
//!   delivered, `VALID`, as soon as a buffer is held; delivering masks the
//!   line again.
//! * **Level**: never latched (MUST NOT); when a buffer arrives, or the
//!   line is sampled, and the level is active, the buffer is returned
//!   `VALID`.
//! * `SET_IRQ_TYPE NONE`, a trigger change, `SET_DIRECTION NONE`: the latch
//!   is discarded (MUST); with `NONE` the held buffer comes back `INVALID`
//!   (MUST). A buffer posted for a line whose interrupt is not enabled, a
//!   second buffer for the same line, or one naming no line, comes back
//!   `INVALID` at once.
//! * Held buffers are forgotten on a device or eventq reset (their heads
//!   mean nothing after it).

mod wire;

pub use wire::*;

use core::fmt;

use embedded_hal::digital::{InputPin, StatefulOutputPin};
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Head};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

/// Most segments of one request or event chain.
pub const CHAIN_SEGMENTS: usize = 8;
/// The request queue.
pub const REQUESTQ: u16 = 0;
/// The event queue (with [`F_IRQ`]).
pub const EVENTQ: u16 = 1;

const ERR: &[u8] = &[STATUS_ERR];
const INVALID: &[u8] = &[IRQ_STATUS_INVALID];

/// The lines a [`Gpio`] device serves.
///
/// Line numbers are `0..N` of the device. Directions are the device's to
/// track; the bank applies them. A bank's names must not change while the
/// device runs.
pub trait GpioBank {
    /// The line's name (`""` for none): 7-bit ASCII without NUL, unique in
    /// the bank.
    fn name(&self, line: u16) -> &str {
        let _ = line;
        ""
    }

    /// The direction the line starts in (reported by `GET_DIRECTION` before
    /// the driver sets one).
    fn initial_direction(&self, line: u16) -> Direction {
        let _ = line;
        Direction::None
    }

    /// Configures the line: `Out` drives `value`; `In` senses; `None`
    /// releases it.
    ///
    /// # Errors
    /// [`LineError`] when the line cannot take that direction.
    fn set_direction(
        &mut self,
        line: u16,
        direction: Direction,
        value: bool,
    ) -> Result<(), LineError>;

    /// The level on the line (for an output, the level it drives).
    ///
    /// # Errors
    /// [`LineError`] when the line cannot be read.
    fn get_value(&mut self, line: u16) -> Result<bool, LineError>;

    /// Drives an output line.
    ///
    /// # Errors
    /// [`LineError`] when the line cannot be driven.
    fn set_value(&mut self, line: u16, value: bool) -> Result<(), LineError>;
}

/// Why a bank refused an operation on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LineError {
    /// The line cannot take this direction.
    Unsupported,
    /// The pin's HAL failed.
    Pin,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str("the line does not support this"),
            Self::Pin => f.write_str("the pin failed"),
        }
    }
}

/// Why a request was answered `STATUS_ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError {
    /// The readable part is shorter than the 8-byte request.
    ShortRequest,
    /// The response buffer is smaller than the message's response.
    ShortResponse,
    /// `gpio` names no line.
    BadLine(u16),
    /// An undefined message type.
    UnknownType(u16),
    /// An undefined direction, value or trigger.
    BadValue(u32),
    /// `SET_IRQ_TYPE` without `F_IRQ` negotiated.
    IrqNotNegotiated,
    /// `SET_IRQ_TYPE` with a trigger on a line configured for output.
    IrqOnOutput,
    /// `GET_LINE_NAMES` on a device without names.
    NoNames,
    /// The bank refused.
    Line(LineError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortRequest => f.write_str("request shorter than 8 bytes"),
            Self::ShortResponse => f.write_str("response buffer too small"),
            Self::BadLine(l) => write!(f, "no line {l}"),
            Self::UnknownType(t) => write!(f, "unknown message type {t:#x}"),
            Self::BadValue(v) => write!(f, "undefined value {v:#x}"),
            Self::IrqNotNegotiated => f.write_str("SET_IRQ_TYPE without VIRTIO_GPIO_F_IRQ"),
            Self::IrqOnOutput => f.write_str("interrupt on an output line"),
            Self::NoNames => f.write_str("the device has no line names"),
            Self::Line(e) => write!(f, "line: {e}"),
        }
    }
}

/// Why [`Gpio::new`] refused a bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A name that is not 7-bit ASCII or holds a NUL (the line).
    BadName(u16),
    /// Two lines with the same name (the second).
    DuplicateName(u16),
    /// More lines than the wire's `u16` line numbers.
    TooManyLines,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(l) => write!(f, "line {l}: name is not 7-bit ASCII without NUL"),
            Self::DuplicateName(l) => write!(f, "line {l}: name already used"),
            Self::TooManyLines => f.write_str("more than 65535 lines"),
        }
    }
}

/// A held event buffer: its head and where its status byte goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    head: Head,
    status: u64,
}

/// Per-line state.
#[derive(Clone, Copy, Debug, Default)]
struct Line {
    direction: Direction,
    /// The value `SET_VALUE` asked for (driven when the line is output).
    value: bool,
    trigger: Trigger,
    /// An edge arrived while enabled and was not delivered yet.
    latched: bool,
    /// The level last seen (edge detection by sampling).
    level: bool,
    held: Option<Held>,
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GpioStats {
    /// Requests answered `STATUS_OK`.
    pub ok: u32,
    /// Requests answered `STATUS_ERR`.
    pub errors: u32,
    /// Event buffers returned `VALID`.
    pub events: u32,
    /// Event buffers returned `INVALID`.
    pub invalid: u32,
}

/// The GPIO device over `N` lines of a bank.
#[derive(Debug)]
pub struct Gpio<B, const N: usize> {
    bank: B,
    lines: [Line; N],
    names_size: u32,
    irq: bool,
    /// Read enabled input lines from the bank to find edges.
    sampling: bool,
    negotiated: Features,
    queue_size: u16,
    stats: GpioStats,
    last_error: Option<RequestError>,
}

impl<B: GpioBank, const N: usize> Gpio<B, N> {
    /// A device over lines `0..N` of `bank`, offering `F_IRQ`, queues of up
    /// to 64.
    ///
    /// # Errors
    /// [`ConfigError`] for names that break the spec (virtio 1.4
    /// §"requestq Operation": zero-terminated, unique).
    pub fn new(bank: B) -> Result<Self, ConfigError> {
        let count = u16::try_from(N).map_err(|_| ConfigError::TooManyLines)?;
        let mut names_size = 0u32;
        let mut any = false;
        for line in 0..count {
            let name = bank.name(line);
            if !name.is_ascii() || name.bytes().any(|b| b == 0) {
                return Err(ConfigError::BadName(line));
            }
            if !name.is_empty() {
                any = true;
                if (0..line).any(|other| bank.name(other) == name) {
                    return Err(ConfigError::DuplicateName(line));
                }
            }
            let len = u32::try_from(name.len()).map_err(|_| ConfigError::BadName(line))?;
            names_size = names_size.saturating_add(len).saturating_add(1);
        }
        let mut lines = [Line::default(); N];
        for (i, l) in (0..count).zip(lines.iter_mut()) {
            l.direction = bank.initial_direction(i);
        }
        Ok(Self {
            bank,
            lines,
            names_size: if any { names_size } else { 0 },
            irq: true,
            sampling: true,
            negotiated: Features::empty(),
            queue_size: 64,
            stats: GpioStats::default(),
            last_error: None,
        })
    }

    /// Does not offer `F_IRQ` (no eventq use).
    #[must_use]
    pub fn without_irq(mut self) -> Self {
        self.irq = false;
        self
    }

    /// Takes line levels only from [`Gpio::input_changed`]: the device no
    /// longer reads enabled input lines from the bank to find edges (for a
    /// platform that reports every change from its pin interrupts, where a
    /// sampled level could be older than a reported one).
    #[must_use]
    pub fn with_platform_events(mut self) -> Self {
        self.sampling = false;
        self
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The bank.
    pub fn bank(&self) -> &B {
        &self.bank
    }

    /// The bank, mutably.
    pub fn bank_mut(&mut self) -> &mut B {
        &mut self.bank
    }

    /// What the device did so far.
    pub fn stats(&self) -> GpioStats {
        self.stats
    }

    /// Why the last request answered `STATUS_ERR` failed.
    pub fn last_error(&self) -> Option<RequestError> {
        self.last_error
    }

    /// The configuration space.
    pub fn config(&self) -> GpioConfig {
        GpioConfig {
            ngpio: u16::try_from(N).unwrap_or(u16::MAX).into(),
            padding: [0; 2],
            gpio_names_size: self.names_size.into(),
        }
    }

    /// True while the device holds `line`'s event buffer (its interrupt is
    /// unmasked).
    pub fn is_unmasked(&self, line: u16) -> bool {
        self.lines
            .get(usize::from(line))
            .is_some_and(|l| l.held.is_some())
    }

    /// `line`'s interrupt trigger (`None` for no such line).
    pub fn trigger(&self, line: u16) -> Option<Trigger> {
        self.lines.get(usize::from(line)).map(|l| l.trigger)
    }

    /// The platform saw `line` at `level` (call it from the pin's
    /// interrupt, then `DeviceCore::poll`): a change is an edge, latched if
    /// the trigger takes it.
    pub fn input_changed(&mut self, line: u16, level: bool) {
        if let Some(l) = self.lines.get_mut(usize::from(line)) {
            sense(l, level);
        }
    }

    /// Reads every enabled input line's level from the bank and treats a
    /// change as an edge.
    fn sample(&mut self) {
        if !self.sampling {
            return;
        }
        for (i, l) in (0u16..).zip(self.lines.iter_mut()) {
            if l.trigger != Trigger::None
                && l.direction == Direction::In
                && let Ok(level) = self.bank.get_value(i)
            {
                sense(l, level);
            }
        }
    }

    /// Returns, `VALID`, every held buffer whose line has an event.
    fn deliver<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.sample();
        let mem = queues.memory();
        for l in &mut self.lines {
            let Some(held) = l.held else { continue };
            let fire = match l.trigger {
                t if t.is_edge() => l.latched,
                t if t.is_level() => t.level_active(l.level),
                _ => false,
            };
            if fire {
                l.latched = false;
                l.held = None;
                let _ = mem.write(held.status, &[IRQ_STATUS_VALID]);
                queues.push_used(EVENTQ, held.head, 1);
                self.stats.events = self.stats.events.saturating_add(1);
            }
        }
    }

    /// Returns `line`'s held buffer `INVALID`.
    fn return_invalid<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        line: usize,
    ) {
        let Some(l) = self.lines.get_mut(line) else {
            return;
        };
        if let Some(held) = l.held.take() {
            let _ = queues.memory().write(held.status, &[IRQ_STATUS_INVALID]);
            queues.push_used(EVENTQ, held.head, 1);
            self.stats.invalid = self.stats.invalid.saturating_add(1);
        }
    }

    /// Runs one request; `Ok(value)` is the response's value byte.
    fn run<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        request: &GpioRequest,
    ) -> Result<u8, RequestError> {
        let line = request.gpio.get();
        let value = request.value.get();
        let index = usize::from(line);
        let type_ = request.type_.get();
        if !matches!(
            type_,
            MSG_GET_DIRECTION
                | MSG_SET_DIRECTION
                | MSG_GET_VALUE
                | MSG_SET_VALUE
                | MSG_SET_IRQ_TYPE
        ) {
            return Err(RequestError::UnknownType(type_));
        }
        if index >= N {
            return Err(RequestError::BadLine(line));
        }
        let irq_negotiated = self.negotiated.bits() & F_IRQ != 0;
        let state = self
            .lines
            .get(index)
            .copied()
            .ok_or(RequestError::BadLine(line))?;
        match type_ {
            MSG_GET_DIRECTION => Ok(state.direction as u8),
            MSG_SET_DIRECTION => {
                let direction = Direction::from_wire(value).ok_or(RequestError::BadValue(value))?;
                if direction == Direction::Out && state.trigger != Trigger::None {
                    return Err(RequestError::IrqOnOutput);
                }
                self.bank
                    .set_direction(line, direction, state.value)
                    .map_err(RequestError::Line)?;
                if direction == Direction::None {
                    // virtio 1.4 §"requestq Operation": discard all state of
                    // the line (its value, trigger, latch, held buffer).
                    self.return_invalid(queues, index);
                    if let Some(l) = self.lines.get_mut(index) {
                        *l = Line::default();
                    }
                } else if let Some(l) = self.lines.get_mut(index) {
                    l.direction = direction;
                    if direction == Direction::In {
                        l.level = self.bank.get_value(line).unwrap_or(l.level);
                    }
                }
                Ok(0)
            }
            MSG_GET_VALUE => self
                .bank
                .get_value(line)
                .map(u8::from)
                .map_err(RequestError::Line),
            MSG_SET_VALUE => {
                let level = match value {
                    0 => false,
                    1 => true,
                    _ => return Err(RequestError::BadValue(value)),
                };
                if state.direction == Direction::Out {
                    self.bank
                        .set_value(line, level)
                        .map_err(RequestError::Line)?;
                }
                if let Some(l) = self.lines.get_mut(index) {
                    l.value = level;
                }
                Ok(0)
            }
            _ => {
                if !irq_negotiated {
                    return Err(RequestError::IrqNotNegotiated);
                }
                let trigger = Trigger::from_wire(value).ok_or(RequestError::BadValue(value))?;
                if trigger != Trigger::None && state.direction == Direction::Out {
                    return Err(RequestError::IrqOnOutput);
                }
                if trigger == Trigger::None {
                    // MUST return a held buffer INVALID.
                    self.return_invalid(queues, index);
                }
                let level = if trigger != Trigger::None && state.direction == Direction::In {
                    self.bank.get_value(line).ok()
                } else {
                    None
                };
                if let Some(l) = self.lines.get_mut(index) {
                    if l.trigger != trigger {
                        // MUST discard the latch when disabled; a new
                        // trigger starts from no event too.
                        l.latched = false;
                    }
                    l.trigger = trigger;
                    if let Some(level) = level {
                        l.level = level;
                    }
                }
                Ok(0)
            }
        }
    }

    /// Serves one requestq chain; returns the used length, or `None` when
    /// it has no room for a status at all.
    fn serve_request<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        chain: &Chain<CHAIN_SEGMENTS>,
    ) -> Option<u32> {
        let mem = queues.memory();
        let room = chain.writable_len();
        if room == 0 {
            return None;
        }
        let request = chain.reader(mem).read_obj::<GpioRequest>();
        let mut writer = chain.writer(mem);
        if let Ok(r) = request
            && r.type_.get() == MSG_GET_LINE_NAMES
        {
            return Some(self.names(&mut writer, room));
        }
        let result = match request {
            Err(_) => Err(RequestError::ShortRequest),
            Ok(_) if room < 2 => Err(RequestError::ShortResponse),
            Ok(r) => self.run(queues, &r),
        };
        let response = match result {
            Ok(value) => {
                self.stats.ok = self.stats.ok.saturating_add(1);
                GpioResponse {
                    status: STATUS_OK,
                    value,
                }
            }
            Err(e) => {
                self.stats.errors = self.stats.errors.saturating_add(1);
                self.last_error = Some(e);
                GpioResponse {
                    status: STATUS_ERR,
                    value: 0,
                }
            }
        };
        let bytes = response.as_bytes();
        let n = bytes.len().min(room as usize);
        let _ = writer.write_all(bytes.get(..n).unwrap_or_default());
        Some(writer.bytes_written())
    }

    /// `GET_LINE_NAMES`: the status, then every line's name and its NUL.
    fn names<M: GuestMemory>(
        &mut self,
        writer: &mut virtio_core::queue::Writer<'_, M>,
        room: u32,
    ) -> u32 {
        let need = self.names_size.saturating_add(1);
        let error = if self.names_size == 0 {
            Some(RequestError::NoNames)
        } else if room < need {
            Some(RequestError::ShortResponse)
        } else {
            None
        };
        if let Some(e) = error {
            self.stats.errors = self.stats.errors.saturating_add(1);
            self.last_error = Some(e);
            let _ = writer.write_all(&[STATUS_ERR]);
            // The driver reads a response of 1 + gpio_names_size: fill it.
            let zero = [0u8; 32];
            while writer.bytes_written() < need.min(room) {
                let left = need.min(room).saturating_sub(writer.bytes_written()) as usize;
                if writer
                    .write_all(zero.get(..left.min(zero.len())).unwrap_or_default())
                    .is_err()
                {
                    break;
                }
            }
            return writer.bytes_written();
        }
        self.stats.ok = self.stats.ok.saturating_add(1);
        let _ = writer.write_all(&[STATUS_OK]);
        for line in (0u16..).take(N) {
            let _ = writer.write_all(self.bank.name(line).as_bytes());
            let _ = writer.write_all(&[0]);
        }
        writer.bytes_written()
    }

    /// Takes one eventq chain: holds it for its line, or returns it
    /// `INVALID`.
    fn take_event<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        chain: &Chain<CHAIN_SEGMENTS>,
    ) {
        let mem = queues.memory();
        let Some(status) = chain.writable_segments().first().map(|s| s.addr) else {
            // No byte to answer in.
            queues.push_used(EVENTQ, chain.head(), 0);
            queues.set_needs_reset();
            return;
        };
        let line = chain.reader(mem).read_obj::<GpioIrqRequest>().ok();
        let slot = line.and_then(|r| self.lines.get_mut(usize::from(r.gpio.get())));
        match slot {
            Some(l) if l.held.is_none() && l.trigger != Trigger::None => {
                l.held = Some(Held {
                    head: chain.head(),
                    status,
                });
            }
            _ => {
                let _ = mem.write(status, &[IRQ_STATUS_INVALID]);
                queues.push_used(EVENTQ, chain.head(), 1);
                self.stats.invalid = self.stats.invalid.saturating_add(1);
            }
        }
    }
}

/// A line saw `level`: an edge its trigger takes is latched.
fn sense(l: &mut Line, level: bool) {
    if l.trigger.takes_edge(l.level, level) {
        l.latched = true;
    }
    l.level = level;
}

impl<B: GpioBank, const N: usize> VirtioDevice for Gpio<B, N> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Gpio
    }

    fn features(&self) -> Features {
        Features::from_bits_retain(if self.irq { F_IRQ } else { 0 })
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn config_len(&self) -> u32 {
        size_of::<GpioConfig>() as u32
    }

    /// virtio 1.4 §"requestq Operation": every field set, at any time.
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    fn activate(&mut self, features: Features) {
        self.negotiated = features;
    }

    /// Every line back to its initial direction, in the bank too (a line
    /// the driver configured is released or reconfigured, so a host line
    /// is not left driven by a driver that is gone).
    fn reset(&mut self) {
        self.negotiated = Features::empty();
        for (i, l) in (0u16..).zip(self.lines.iter_mut()) {
            let initial = self.bank.initial_direction(i);
            if l.direction != initial {
                // Best effort: a bank that refuses leaves the line as it is.
                let _ = self.bank.set_direction(i, initial, l.value);
            }
            *l = Line {
                direction: initial,
                ..Line::default()
            };
        }
    }

    fn queue_reset(&mut self, queue: u16) {
        if queue == EVENTQ {
            for l in &mut self.lines {
                l.held = None;
            }
        }
    }

    /// A malformed request gets `STATUS_ERR` as its first byte; a malformed
    /// event buffer comes back `INVALID`.
    fn malformed_chain(&self, queue: u16) -> MalformedChain {
        if queue == EVENTQ {
            MalformedChain::StatusAtStart(INVALID)
        } else {
            MalformedChain::StatusAtStart(ERR)
        }
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        match queue {
            REQUESTQ => {
                while queues.pop(REQUESTQ, &mut chain) {
                    match self.serve_request(queues, &chain) {
                        Some(used) => queues.push_used(REQUESTQ, chain.head(), used),
                        None => {
                            queues.push_used(REQUESTQ, chain.head(), 0);
                            queues.set_needs_reset();
                            return;
                        }
                    }
                }
            }
            EVENTQ => {
                while queues.pop(EVENTQ, &mut chain) {
                    self.take_event(queues, &chain);
                }
            }
            _ => {}
        }
        // A request may have changed a level (an output looped back to an
        // input), and a new buffer may find an event waiting.
        self.deliver(queues);
    }

    /// Delivers the events the platform reported ([`Gpio::input_changed`])
    /// or sampling finds.
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.deliver(queues);
    }
}

/// A bank of `N` bidirectional `embedded_hal` pins (a HAL's flex/IO pin
/// type, or `linux-embedded-hal`'s `CdevPin`), with names. Direction is the
/// device's bookkeeping: `Out` drives the pin, `In` reads it.
#[derive(Debug)]
pub struct PinBank<P, const N: usize> {
    pins: [P; N],
    names: [&'static str; N],
}

impl<P, const N: usize> PinBank<P, N> {
    /// Pins and their names (`""` for none).
    pub fn new(pins: [P; N], names: [&'static str; N]) -> Self {
        Self { pins, names }
    }

    /// The pins.
    pub fn pins_mut(&mut self) -> &mut [P; N] {
        &mut self.pins
    }
}

impl<P: InputPin + StatefulOutputPin, const N: usize> GpioBank for PinBank<P, N> {
    fn name(&self, line: u16) -> &str {
        self.names.get(usize::from(line)).copied().unwrap_or("")
    }

    fn set_direction(
        &mut self,
        line: u16,
        direction: Direction,
        value: bool,
    ) -> Result<(), LineError> {
        let pin = self
            .pins
            .get_mut(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        if direction == Direction::Out {
            pin.set_state(value.into()).map_err(|_| LineError::Pin)?;
        }
        Ok(())
    }

    fn get_value(&mut self, line: u16) -> Result<bool, LineError> {
        let pin = self
            .pins
            .get_mut(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        InputPin::is_high(pin).map_err(|_| LineError::Pin)
    }

    fn set_value(&mut self, line: u16, value: bool) -> Result<(), LineError> {
        let pin = self
            .pins
            .get_mut(usize::from(line))
            .ok_or(LineError::Unsupported)?;
        pin.set_state(value.into()).map_err(|_| LineError::Pin)
    }
}

#[cfg(any(test, feature = "test-utils"))]
pub mod loopback;
#[cfg(test)]
mod tests;
