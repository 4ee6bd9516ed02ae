//! [`SpiDevices`]: the SPI controller over one
//! [`embedded_hal::spi::SpiDevice`] per chip select, for backends that
//! drive the chip select themselves: a HAL's `SpiDevice` on a shared bus,
//! or a Linux host's `/dev/spidevB.C` through `linux-embedded-hal`'s
//! `SpidevDevice`, where the kernel frames each message.
//!
//! # Messages as transactions
//!
//! A `SpiDevice` asserts its chip select for one
//! [`transaction`](SpiDevice::transaction) and deasserts it after, so the
//! device collects a chip-select frame (a *message*) and runs it as one
//! transaction of [`Operation`]s. A message is the run of transfers queued
//! for one chip select up to and including the first with `cs_change` 1;
//! it also ends where a transfer names another chip select, and where the
//! ring holds no more requests (the same boundary [`super::Spi`] uses, and
//! what a driver that queues a message before notifying produces).
//!
//! Nothing of a message is half-done: its write data is copied out of the
//! driver's buffers when it runs, and its results written after. A message
//! with a transfer the device refuses (`PARAM_ERR`: the checks of
//! [`super::parse`], plus `CS_HIGH`, which the backend's chip select does
//! not take per transfer), or one longer than `XFERS` transfers or `BYTES`
//! bytes, never reaches the bus: the transfers held so far, that one and
//! the rest of the message are all answered with the error. A bus failure
//! answers every transfer of the message `TRANS_ERR`.
//!
//! `XFERS` and `BYTES` bound the state (Linux's spidev takes 4096 bytes
//! per message by default, its `bufsiz`).

use embedded_hal::spi::{Operation, SpiDevice};
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

use super::{
    CHAIN_SEGMENTS, HEAD_BYTES, PARAM_ERR_BYTE, SpiCaps, SpiConfig, SpiStats, Transfer,
    TransferError, check, config, finish, read_head,
};

/// A transfer held while its message is collected.
#[derive(Clone, Debug)]
struct Held {
    chain: Chain<CHAIN_SEGMENTS>,
    transfer: Transfer,
    /// Where its bytes start in the message buffer.
    offset: usize,
}

impl Held {
    fn len(&self) -> usize {
        self.transfer.tx.max(self.transfer.rx) as usize
    }
}

/// The SPI controller device over `CS` [`SpiDevice`]s, one per chip
/// select; a message holds at most `XFERS` transfers and `BYTES` bytes.
#[derive(Debug)]
pub struct SpiDevices<D, const CS: usize, const XFERS: usize = 8, const BYTES: usize = 4096> {
    devices: [D; CS],
    caps: SpiCaps,
    queue_size: u16,
    /// The open message's transfers, all to one chip select.
    message: heapless::Vec<Held, XFERS>,
    /// Bytes the open message takes in `buffer`.
    message_bytes: usize,
    /// The open message was refused (its chip select and why): the rest
    /// of it is answered with the same error.
    failing: Option<(u8, TransferError)>,
    stats: SpiStats,
    last_error: Option<TransferError>,
    buffer: [u8; BYTES],
}

impl<D: SpiDevice<u8>, const CS: usize, const XFERS: usize, const BYTES: usize>
    SpiDevices<D, CS, XFERS, BYTES>
{
    /// A controller whose chip select `n` is `devices[n]`, each configured
    /// by the embedder to run as `caps` says; queues of up to 64. At most
    /// 255 chip selects are used.
    pub fn new(devices: [D; CS], caps: SpiCaps) -> Self {
        Self {
            devices,
            caps,
            queue_size: 64,
            message: heapless::Vec::new(),
            message_bytes: 0,
            failing: None,
            stats: SpiStats::default(),
            last_error: None,
            buffer: [0; BYTES],
        }
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The devices, by chip select.
    pub fn devices_mut(&mut self) -> &mut [D; CS] {
        &mut self.devices
    }

    /// What the device did so far.
    pub fn stats(&self) -> SpiStats {
        self.stats
    }

    /// Why the last failed transfer failed.
    pub fn last_error(&self) -> Option<TransferError> {
        self.last_error
    }

    /// Transfers held in the open message.
    pub fn held(&self) -> usize {
        self.message.len()
    }

    /// The configuration space (no `CS_HIGH`: the backend owns the chip
    /// select's polarity).
    pub fn config(&self) -> SpiConfig {
        config(&self.caps, CS, false)
    }

    /// Answers one transfer: `data` (offset and length in the buffer) as
    /// its `rx_buf` on success, then the result byte.
    fn answer<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        chain: &Chain<CHAIN_SEGMENTS>,
        data: Option<(usize, usize)>,
        mut outcome: Result<(), TransferError>,
    ) {
        let mut writer = chain.writer(queues.memory());
        if outcome.is_ok()
            && let Some((at, len)) = data
        {
            let bytes = at.checked_add(len).and_then(|end| self.buffer.get(at..end));
            if bytes.is_none_or(|bytes| writer.write_all(bytes).is_err()) {
                outcome = Err(TransferError::Bus);
            }
        }
        let result = self.stats.record(&mut self.last_error, outcome);
        let used = finish(&mut writer, result);
        queues.push_used(queue, chain.head(), used);
    }

    /// Answers every held transfer with `error`.
    fn fail_message<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        error: TransferError,
    ) {
        let message = core::mem::take(&mut self.message);
        self.message_bytes = 0;
        for held in &message {
            self.answer(queues, queue, &held.chain, None, Err(error));
        }
    }

    /// Runs the open message as one transaction and answers it.
    fn run_message<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
    ) {
        let message = core::mem::take(&mut self.message);
        self.message_bytes = 0;
        let Some(first) = message.first() else {
            return;
        };
        let outcome = self.transact(&message, first.transfer.chip_select, queues.memory());
        for held in &message {
            let data = (held.transfer.rx > 0).then_some((held.offset, held.transfer.rx as usize));
            self.answer(queues, queue, &held.chain, data, outcome);
        }
    }

    /// Copies the message's write data in, runs it on chip select `cs`,
    /// and leaves its read data in the buffer (bit order as the driver
    /// wants it).
    fn transact<M: GuestMemory>(
        &mut self,
        message: &[Held],
        cs: u8,
        mem: &M,
    ) -> Result<(), TransferError> {
        for held in message {
            let t = &held.transfer;
            if t.tx == 0 {
                continue;
            }
            let end = held.offset.checked_add(t.tx as usize);
            let dst = end
                .and_then(|end| self.buffer.get_mut(held.offset..end))
                .ok_or(TransferError::MessageTooLong)?;
            let mut reader = held.chain.reader(mem);
            reader
                .skip(HEAD_BYTES as usize)
                .and_then(|()| reader.read_exact(dst))
                .map_err(|_| TransferError::Bus)?;
            if t.lsb_first {
                dst.iter_mut().for_each(|b| *b = b.reverse_bits());
            }
        }
        let device = self
            .devices
            .get_mut(usize::from(cs))
            .ok_or(TransferError::ChipSelect(cs))?;
        {
            let mut rest = self
                .buffer
                .get_mut(..message_len(message))
                .ok_or(TransferError::MessageTooLong)?;
            let mut ops: heapless::Vec<Operation<'_, u8>, XFERS> = heapless::Vec::new();
            for held in message {
                let (buf, tail) = rest
                    .split_at_mut_checked(held.len())
                    .ok_or(TransferError::MessageTooLong)?;
                rest = tail;
                let op = match (held.transfer.tx > 0, held.transfer.rx > 0) {
                    (true, true) => Operation::TransferInPlace(buf),
                    (true, false) => Operation::Write(buf),
                    (false, true) => Operation::Read(buf),
                    (false, false) => continue,
                };
                ops.push(op).map_err(|_| TransferError::MessageTooLong)?;
            }
            device
                .transaction(&mut ops)
                .map_err(|_| TransferError::Bus)?;
        }
        for held in message.iter().filter(|h| h.transfer.lsb_first) {
            let end = held.offset.saturating_add(held.len());
            if let Some(bytes) = self.buffer.get_mut(held.offset..end) {
                bytes.iter_mut().for_each(|b| *b = b.reverse_bits());
            }
        }
        Ok(())
    }

    /// Takes one transfer into the open message, or answers it. Returns
    /// true when the message is complete and should run.
    fn take<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        chain: &Chain<CHAIN_SEGMENTS>,
    ) -> bool {
        let mem = queues.memory();
        let head = read_head(chain, mem);
        // Its chip select, and whether it ends its message; a head that
        // cannot be read ends it.
        let frame = head
            .as_ref()
            .ok()
            .map(|h| (h.chip_select_id, h.cs_change != 0));
        let cs = frame.map(|(cs, _)| cs);
        let ends = frame.is_none_or(|(_, ends)| ends);
        // A transfer to another chip select ends the open message first.
        if let Some(open) = self.message.first().map(|h| h.transfer.chip_select)
            && cs != Some(open)
        {
            self.run_message(queues, queue);
        }
        if let Some((failing_cs, error)) = self.failing {
            if cs == Some(failing_cs) {
                self.answer(queues, queue, chain, None, Err(error));
                if ends {
                    self.failing = None;
                }
                return false;
            }
            self.failing = None;
        }
        let checked = head
            .and_then(|h| check(&h, chain, &self.caps, CS.min(usize::from(u8::MAX))))
            .and_then(|t| {
                if t.cs_high {
                    return Err(TransferError::CsHighUnsupported);
                }
                let offset = self.message_bytes;
                let end = offset
                    .checked_add(t.tx.max(t.rx) as usize)
                    .filter(|&end| end <= BYTES)
                    .ok_or(TransferError::MessageTooLong)?;
                let held = Held {
                    chain: chain.clone(),
                    transfer: t,
                    offset,
                };
                self.message
                    .push(held)
                    .map_err(|_| TransferError::MessageTooLong)?;
                self.message_bytes = end;
                Ok(())
            });
        match checked {
            Ok(()) => ends,
            Err(error) => {
                self.fail_message(queues, queue, error);
                self.answer(queues, queue, chain, None, Err(error));
                if !ends && let Some(cs) = cs {
                    self.failing = Some((cs, error));
                }
                false
            }
        }
    }
}

/// Bytes `message` takes in the buffer.
fn message_len(message: &[Held]) -> usize {
    message
        .last()
        .map_or(0, |h| h.offset.saturating_add(h.len()))
}

impl<D: SpiDevice<u8>, const CS: usize, const XFERS: usize, const BYTES: usize> VirtioDevice
    for SpiDevices<D, CS, XFERS, BYTES>
{
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

    /// Held transfers are dropped with the rings they came from.
    fn reset(&mut self) {
        self.message.clear();
        self.message_bytes = 0;
        self.failing = None;
    }

    fn queue_reset(&mut self, _queue: u16) {
        self.reset();
    }

    /// A malformed chain gets `PARAM_ERR` in its result byte.
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        MalformedChain::StatusAtEnd(PARAM_ERR_BYTE)
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        loop {
            if !queues.pop(queue, &mut chain) {
                // The ring holds no more (not merely the budget spent): the
                // open message is all the driver queued, so it runs.
                if (!self.message.is_empty() || self.failing.is_some()) && queues.is_live(queue) {
                    if queues.budget() > 0 {
                        self.run_message(queues, queue);
                        self.failing = None;
                    } else {
                        // The budget ran out inside a message: be called
                        // again even if the ring turns out empty.
                        queues.poll_again(queue);
                    }
                }
                return;
            }
            if chain.writable_len() == 0 {
                // No result byte to answer in: the message fails, this one
                // is returned empty and the device stops, since the driver
                // would read it as success.
                self.fail_message(queues, queue, TransferError::NoResult);
                self.failing = None;
                queues.push_used(queue, chain.head(), 0);
                queues.set_needs_reset();
                return;
            }
            if self.take(queues, queue, &chain) {
                self.run_message(queues, queue);
            }
        }
    }
}
