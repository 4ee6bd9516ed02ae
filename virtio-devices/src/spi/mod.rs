//! The SPI controller device (ID 45, virtio 1.4 §"SPI Controller Device")
//! over an [`embedded_hal::spi::SpiBus`] and one chip-select
//! [`embedded_hal::digital::OutputPin`] per target ([`Spi`]), or over one
//! [`embedded_hal::spi::SpiDevice`] per chip select for backends that
//! frame the chip select themselves, such as Linux's `/dev/spidevB.C`
//! ([`SpiDevices`], which runs each message as one transaction).
//!
//! One queue, `requestq`. Each request is one SPI transfer: a 32-byte
//! [`SpiTransferHead`], the `tx_buf` (device-readable), the `rx_buf`
//! (device-writable) and the one-byte result the device writes last. Both
//! buffers: full duplex (they must be the same length); one: half duplex.
//!
//! # What the device honours
//!
//! The bus is configured once by the embedder (mode, clock, 8-bit words);
//! [`SpiCaps`] says what it runs at, and the configuration space tells the
//! driver. Every request is checked against it **before** chip select or
//! bus is touched (virtio 1.4 §"Device Operation": the device MUST verify
//! the head and answer `PARAM_ERR` for invalid parameters or features it
//! does not support), so a refused request leaves nothing half-done:
//!
//! * chip select within `cs_max_number`; `bits_per_word` 8; `tx_nbits` and
//!   `rx_nbits` SINGLE (0 or 1); no undefined `mode` bits; CPHA and CPOL as
//!   the bus runs; no `LOOP`; `CS_HIGH` and `LSB_FIRST` are honoured (the
//!   pin is driven inverted, the bytes are bit-reversed);
//! * `freq` 0, or within [`SpiCaps::min_freq_hz`]..=[`SpiCaps::max_freq_hz`];
//! * no delays (`word_delay_ns`, `cs_setup_ns`, `cs_delay_hold_ns`,
//!   `cs_change_delay_inactive_ns` all 0: the config's maxima are 0);
//! * full duplex: `tx_buf` and `rx_buf` the same length.
//!
//! A bus or pin failure answers `TRANS_ERR` (the driver must not use
//! `rx_buf` then).
//!
//! # Chip select
//!
//! A transfer runs with its chip select asserted. `cs_change` 1 deasserts
//! it after the transfer (the next transfer asserts it again); with 0 it
//! stays asserted into the next transfer queued for the same chip select,
//! and is deasserted when a transfer names another one, when a transfer
//! fails, or when the ring holds no more requests.
//!
//! The protocol carries no message boundary (the spec's `cs_change` 0 says
//! "keep asserted" with no end), so the ring running dry is the end of a
//! message: a driver that queues a message's transfers before notifying
//! gets one chip-select frame for them. A driver that sends one transfer
//! at a time and waits for each empties the ring in between, and gets a
//! frame per transfer; a device that must see one frame across such a
//! driver's transfers needs a policy this device does not guess.
//!
//! A Linux guest test waits for a QEMU with a `vhost-user-spi` frontend
//! and a Linux ≥ 6.18 guest (the first with a virtio SPI driver); the
//! tests here drive the device with a driver-side double written from the
//! spec's driver requirements and Linux's `virtio_spi.h` layout.

mod wire;

pub use wire::*;

use core::fmt;

use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiBus;
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Reader, Writer};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

/// Most segments of one request chain.
pub const CHAIN_SEGMENTS: usize = 16;

/// Bytes moved per bus call.
const CHUNK: usize = 64;

const PARAM_ERR_BYTE: &[u8] = &[PARAM_ERR];

/// What the bus behind the device runs at (fixed by the embedder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SpiCaps {
    /// The bus's clock phase (CPHA 1).
    pub cpha: bool,
    /// The bus's clock polarity (CPOL 1).
    pub cpol: bool,
    /// The bus clock, and the `max_freq_hz` offered.
    pub max_freq_hz: u32,
    /// The lowest `freq` a transfer may ask for and still run at the bus
    /// clock (default: the clock itself, so a transfer asking for a slower
    /// clock is refused rather than run too fast).
    pub min_freq_hz: u32,
}

impl SpiCaps {
    /// A bus in SPI mode `mode` (0–3: CPOL << 1 | CPHA) at `freq_hz`.
    pub fn new(mode: u8, freq_hz: u32) -> Self {
        Self {
            cpha: mode & 1 != 0,
            cpol: mode & 2 != 0,
            max_freq_hz: freq_hz,
            min_freq_hz: freq_hz,
        }
    }
}

/// Why a transfer was answered `PARAM_ERR` or `TRANS_ERR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransferError {
    /// The readable part is shorter than the 32-byte head.
    ShortHead,
    /// No such chip select.
    ChipSelect(u8),
    /// A word size the bus does not run.
    BitsPerWord(u8),
    /// `cs_change` neither 0 nor 1.
    CsChange(u8),
    /// A DUAL/QUAD/OCTAL or undefined `tx_nbits`/`rx_nbits`.
    Nbits(u8),
    /// Undefined `mode` bits, `LOOP`, or a CPHA/CPOL the bus does not run.
    Mode(u32),
    /// A clock outside what the bus runs.
    Frequency(u32),
    /// A delay the device does not implement.
    Delay,
    /// Full duplex with `tx_buf` and `rx_buf` of different lengths.
    LengthMismatch {
        /// `tx_buf` bytes.
        tx: u32,
        /// `rx_buf` bytes.
        rx: u32,
    },
    /// A chain with no writable byte for the result (the device then
    /// needs a reset; held transfers of a [`SpiDevices`] message get this).
    NoResult,
    /// A chip-select frame (a message) longer than one transaction of a
    /// [`SpiDevices`] controller holds: the message is refused whole.
    MessageTooLong,
    /// `CS_HIGH` asked of a controller whose chip selects the backend
    /// drives ([`SpiDevices`]).
    CsHighUnsupported,
    /// The bus failed.
    Bus,
    /// The chip-select pin failed.
    Pin,
}

impl TransferError {
    /// The result byte this error answers.
    pub fn result(self) -> u8 {
        match self {
            Self::Bus | Self::Pin => TRANS_ERR,
            _ => PARAM_ERR,
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHead => f.write_str("request shorter than the 32-byte transfer head"),
            Self::ChipSelect(c) => write!(f, "no chip select {c}"),
            Self::BitsPerWord(b) => write!(f, "{b} bits per word not supported"),
            Self::CsChange(c) => write!(f, "cs_change {c} is not 0 or 1"),
            Self::Nbits(n) => write!(f, "{n}-bit transfers not supported"),
            Self::Mode(m) => write!(f, "mode {m:#x} not supported"),
            Self::Frequency(hz) => write!(f, "{hz} Hz not supported"),
            Self::Delay => f.write_str("delays not supported"),
            Self::LengthMismatch { tx, rx } => {
                write!(f, "full duplex with tx {tx} and rx {rx} bytes")
            }
            Self::NoResult => f.write_str("no writable byte for the result"),
            Self::MessageTooLong => f.write_str("message longer than one transaction holds"),
            Self::CsHighUnsupported => f.write_str("chip select active high not supported"),
            Self::Bus => f.write_str("bus failure"),
            Self::Pin => f.write_str("chip-select pin failure"),
        }
    }
}

/// A transfer the head describes, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transfer {
    /// The chip select.
    pub chip_select: u8,
    /// Deassert chip select after this transfer.
    pub cs_change: bool,
    /// Chip select active high.
    pub cs_high: bool,
    /// Bits least significant first.
    pub lsb_first: bool,
    /// `tx_buf` bytes (0: a half-duplex read).
    pub tx: u32,
    /// `rx_buf` bytes (0: a half-duplex write).
    pub rx: u32,
}

/// Parses and checks a request against the device's capabilities: the
/// head from the readable part (however it is split), the buffers from
/// the chain's shape. `Err` is answered with its [`TransferError::result`].
pub fn parse<M: GuestMemory, const N: usize>(
    chain: &Chain<N>,
    mem: &M,
    caps: &SpiCaps,
    chip_selects: usize,
) -> Result<Transfer, TransferError> {
    check(&read_head(chain, mem)?, chain, caps, chip_selects)
}

/// The transfer head, read once from the readable part.
fn read_head<M: GuestMemory, const N: usize>(
    chain: &Chain<N>,
    mem: &M,
) -> Result<SpiTransferHead, TransferError> {
    chain
        .reader(mem)
        .read_obj()
        .map_err(|_| TransferError::ShortHead)
}

/// Checks a head read from `chain` against what the controller runs.
fn check<const N: usize>(
    head: &SpiTransferHead,
    chain: &Chain<N>,
    caps: &SpiCaps,
    chip_selects: usize,
) -> Result<Transfer, TransferError> {
    if usize::from(head.chip_select_id) >= chip_selects {
        return Err(TransferError::ChipSelect(head.chip_select_id));
    }
    if head.bits_per_word != 8 {
        return Err(TransferError::BitsPerWord(head.bits_per_word));
    }
    if head.cs_change > 1 {
        return Err(TransferError::CsChange(head.cs_change));
    }
    for nbits in [head.tx_nbits, head.rx_nbits] {
        if nbits > 1 {
            return Err(TransferError::Nbits(nbits));
        }
    }
    let mode = head.mode.get();
    let cpha = mode & MODE_CPHA != 0;
    let cpol = mode & MODE_CPOL != 0;
    if mode & !(MODE_CPHA | MODE_CPOL | MODE_CS_HIGH | MODE_LSB_FIRST) != 0
        || cpha != caps.cpha
        || cpol != caps.cpol
    {
        return Err(TransferError::Mode(mode));
    }
    let freq = head.freq.get();
    if freq != 0 && !(caps.min_freq_hz..=caps.max_freq_hz).contains(&freq) {
        return Err(TransferError::Frequency(freq));
    }
    if head.word_delay_ns.get() != 0
        || head.cs_setup_ns.get() != 0
        || head.cs_delay_hold_ns.get() != 0
        || head.cs_change_delay_inactive_ns.get() != 0
    {
        return Err(TransferError::Delay);
    }
    let tx = chain.readable_len().saturating_sub(HEAD_BYTES);
    let rx = chain.writable_len().saturating_sub(1);
    if tx != 0 && rx != 0 && tx != rx {
        return Err(TransferError::LengthMismatch { tx, rx });
    }
    Ok(Transfer {
        chip_select: head.chip_select_id,
        cs_change: head.cs_change == 1,
        cs_high: mode & MODE_CS_HIGH != 0,
        lsb_first: mode & MODE_LSB_FIRST != 0,
        tx,
        rx,
    })
}

/// The configuration space of a controller running as `caps` with `cs`
/// chip selects; `cs_high` when it can drive a chip select active high.
fn config(caps: &SpiCaps, cs: usize, cs_high: bool) -> SpiConfig {
    let phase = if caps.cpha { 0b10 } else { 0b01 };
    let polarity = if caps.cpol { 0b10 } else { 0b01 };
    let cs_high = if cs_high { MODE_FUNC_CS_HIGH } else { 0 };
    SpiConfig {
        cs_max_number: u8::try_from(cs).unwrap_or(u8::MAX),
        cs_change_supported: 1,
        tx_nbits_supported: 0,
        rx_nbits_supported: 0,
        bits_per_word_mask: (1u32 << 7).into(),
        mode_func_supported: (phase | polarity << 2 | cs_high | MODE_FUNC_LSB_FIRST).into(),
        max_freq_hz: caps.max_freq_hz.into(),
        max_word_delay_ns: 0.into(),
        max_cs_setup_ns: 0.into(),
        max_cs_hold_ns: 0.into(),
        max_cs_inactive_ns: 0.into(),
    }
}

/// Zero-fills the writable bytes left before the result byte (an
/// `rx_buf` not filled), then writes the result last; the used length.
fn finish<M: GuestMemory>(writer: &mut Writer<'_, M>, result: u8) -> u32 {
    let zero = [0u8; CHUNK];
    while writer.remaining() > 1 {
        let n = (writer.remaining().saturating_sub(1) as usize).min(CHUNK);
        if writer.write_all(zero.get(..n).unwrap_or_default()).is_err() {
            break;
        }
    }
    let _ = writer.write_all(&[result]);
    writer.bytes_written()
}

impl SpiStats {
    /// Counts a transfer's outcome; its result byte.
    fn record(
        &mut self,
        last_error: &mut Option<TransferError>,
        outcome: Result<(), TransferError>,
    ) -> u8 {
        match outcome {
            Ok(()) => {
                self.ok = self.ok.saturating_add(1);
                TRANS_OK
            }
            Err(e) => {
                let counter = if e.result() == PARAM_ERR {
                    &mut self.param_errors
                } else {
                    &mut self.trans_errors
                };
                *counter = counter.saturating_add(1);
                *last_error = Some(e);
                e.result()
            }
        }
    }
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SpiStats {
    /// Transfers answered `TRANS_OK`.
    pub ok: u32,
    /// Transfers answered `PARAM_ERR`.
    pub param_errors: u32,
    /// Transfers answered `TRANS_ERR`.
    pub trans_errors: u32,
}

/// The SPI controller device over a bus and `CS` chip-select pins.
#[derive(Debug)]
pub struct Spi<B, P, const CS: usize> {
    bus: B,
    cs: [P; CS],
    caps: SpiCaps,
    /// The chip select left asserted by a `cs_change` 0 transfer, and its
    /// active level.
    active: Option<(u8, bool)>,
    queue_size: u16,
    stats: SpiStats,
    last_error: Option<TransferError>,
}

impl<B: SpiBus<u8>, P: OutputPin, const CS: usize> Spi<B, P, CS> {
    /// A controller over `bus` with chip selects `cs` (active low, as they
    /// are given: the device drives them high here), running as `caps`
    /// says; queues of up to 64. At most 255 chip selects are used.
    pub fn new(bus: B, mut cs: [P; CS], caps: SpiCaps) -> Self {
        for pin in &mut cs {
            let _ = pin.set_high();
        }
        Self {
            bus,
            cs,
            caps,
            active: None,
            queue_size: 64,
            stats: SpiStats::default(),
            last_error: None,
        }
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The bus.
    pub fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// The chip-select pins.
    pub fn chip_selects_mut(&mut self) -> &mut [P; CS] {
        &mut self.cs
    }

    /// What the device did so far.
    pub fn stats(&self) -> SpiStats {
        self.stats
    }

    /// Why the last failed transfer failed.
    pub fn last_error(&self) -> Option<TransferError> {
        self.last_error
    }

    /// The chip select currently left asserted, if any.
    pub fn asserted(&self) -> Option<u8> {
        self.active.map(|(cs, _)| cs)
    }

    /// The configuration space.
    pub fn config(&self) -> SpiConfig {
        config(&self.caps, CS, true)
    }

    fn chip_selects(&self) -> usize {
        CS.min(usize::from(u8::MAX))
    }

    /// Drives chip select `cs` active or inactive.
    fn select(&mut self, cs: u8, cs_high: bool, active: bool) -> Result<(), TransferError> {
        let pin = self
            .cs
            .get_mut(usize::from(cs))
            .ok_or(TransferError::ChipSelect(cs))?;
        if active == cs_high {
            pin.set_high()
        } else {
            pin.set_low()
        }
        .map_err(|_| TransferError::Pin)
    }

    /// Deasserts a chip select left asserted.
    fn release(&mut self) -> Result<(), TransferError> {
        match self.active.take() {
            Some((cs, high)) => self.select(cs, high, false),
            None => Ok(()),
        }
    }

    /// Runs a checked transfer.
    fn run<M: GuestMemory>(
        &mut self,
        t: &Transfer,
        reader: &mut Reader<'_, M>,
        writer: &mut Writer<'_, M>,
    ) -> Result<(), TransferError> {
        if self.active.is_some_and(|a| a != (t.chip_select, t.cs_high)) {
            self.release()?;
        }
        if self.active.is_none() {
            self.select(t.chip_select, t.cs_high, true)?;
            self.active = Some((t.chip_select, t.cs_high));
        }
        let moved = self.shift(t, reader, writer);
        let flushed = moved.and_then(|()| self.bus.flush().map_err(|_| TransferError::Bus));
        if flushed.is_err() || t.cs_change {
            let released = self.release();
            flushed?;
            released?;
        }
        Ok(())
    }

    /// Moves the transfer's bytes in chunks.
    fn shift<M: GuestMemory>(
        &mut self,
        t: &Transfer,
        reader: &mut Reader<'_, M>,
        writer: &mut Writer<'_, M>,
    ) -> Result<(), TransferError> {
        let mut left = t.tx.max(t.rx) as usize;
        let mut tx = [0u8; CHUNK];
        let mut rx = [0u8; CHUNK];
        while left > 0 {
            let n = left.min(CHUNK);
            let (Some(tx), Some(rx)) = (tx.get_mut(..n), rx.get_mut(..n)) else {
                return Err(TransferError::Bus);
            };
            if t.tx > 0 {
                reader.read_exact(tx).map_err(|_| TransferError::Bus)?;
                if t.lsb_first {
                    tx.iter_mut().for_each(|b| *b = b.reverse_bits());
                }
            }
            let result = match (t.tx > 0, t.rx > 0) {
                (true, true) => self.bus.transfer(rx, tx),
                (true, false) => self.bus.write(tx),
                _ => self.bus.read(rx),
            };
            result.map_err(|_| TransferError::Bus)?;
            if t.rx > 0 {
                if t.lsb_first {
                    rx.iter_mut().for_each(|b| *b = b.reverse_bits());
                }
                writer.write_all(rx).map_err(|_| TransferError::Bus)?;
            }
            left = left.saturating_sub(n);
        }
        Ok(())
    }

    /// Serves one chain; returns the used length, or `None` when it has no
    /// byte for the result.
    fn serve<M: GuestMemory>(&mut self, chain: &Chain<CHAIN_SEGMENTS>, mem: &M) -> Option<u32> {
        if chain.writable_len() == 0 {
            return None;
        }
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        let outcome = parse(chain, mem, &self.caps, self.chip_selects()).and_then(|t| {
            reader
                .skip(HEAD_BYTES as usize)
                .map_err(|_| TransferError::ShortHead)?;
            self.run(&t, &mut reader, &mut writer)
        });
        let result = self.stats.record(&mut self.last_error, outcome);
        Some(finish(&mut writer, result))
    }
}

impl<B: SpiBus<u8>, P: OutputPin, const CS: usize> VirtioDevice for Spi<B, P, CS> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Spi
    }

    /// No device features.
    fn features(&self) -> Features {
        Features::empty()
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn config_len(&self) -> u32 {
        size_of::<SpiConfig>() as u32
    }

    /// virtio 1.4 §"Device Operation": every field set before the driver
    /// reads it (the config is whole from construction).
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    fn reset(&mut self) {
        let _ = self.release();
    }

    fn queue_reset(&mut self, _queue: u16) {
        let _ = self.release();
    }

    /// A malformed chain gets `PARAM_ERR` in its result byte (it is not a
    /// transfer the driver may send, and the driver must not use `rx_buf`).
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        MalformedChain::StatusAtEnd(PARAM_ERR_BYTE)
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        loop {
            if !queues.pop(queue, &mut chain) {
                // The ring holds no more (not merely the budget spent): a
                // chip select left asserted is released.
                if queues.budget() > 0 {
                    let _ = self.release();
                } else if self.active.is_some() && queues.is_live(queue) {
                    // The budget ran out with a chip select asserted: be
                    // called again to release it if the ring is drained.
                    queues.poll_again(queue);
                }
                return;
            }
            match self.serve(&chain, mem) {
                Some(used) => queues.push_used(queue, chain.head(), used),
                None => {
                    let _ = self.release();
                    queues.push_used(queue, chain.head(), 0);
                    queues.set_needs_reset();
                    return;
                }
            }
        }
    }
}

mod device;
pub use device::SpiDevices;

#[cfg(test)]
mod device_tests;
#[cfg(any(test, feature = "test-utils"))]
pub mod flash;
#[cfg(test)]
mod tests;
