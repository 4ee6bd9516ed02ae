//! The I2C adapter device (ID 34, virtio 1.4 §"I2C Adapter Device") over
//! [`embedded_hal::i2c::I2c`].
//!
//! One queue, `requestq`. Each request is one message of an I2C
//! transaction: an 8-byte out header ([`I2cOutHdr`]: address and flags),
//! then the message's buffer (device-readable for a write, device-writable
//! for a read, absent for a zero-length request), then one status byte the
//! device writes last ([`MSG_OK`] or [`MSG_ERR`]).
//!
//! # Transactions
//!
//! A driver groups the messages of one transaction by setting
//! [`FLAGS_FAIL_NEXT`] on all but the last. The device collects a group and
//! runs it as **one** [`I2c::transaction`] (repeated STARTs between the
//! messages, one STOP at the end), so a group either runs or does not:
//!
//! * a malformed request, reserved flags or a group too big for the device
//!   (`MSGS` messages, `BYTES` bytes of buffers) fails the whole group
//!   before any of it reaches the bus, every request answered `MSG_ERR`
//!   (virtio 1.4 §"Device Operation": the first failed request MUST get
//!   `MSG_ERR`, the rest of its group MAY);
//! * a bus error (a NACK, lost arbitration, …) fails the transaction and
//!   so every request of the group;
//! * the messages of a group that name different targets run as one
//!   transaction per run of the same address, in order (`embedded-hal`'s
//!   transaction has one address); the first that fails fails the rest.
//!
//! A group ends at the request without `FAIL_NEXT`, or when the ring holds
//! no more requests (a driver that could not queue a whole transfer, as
//! Linux does when the ring is full, kicks and waits for what it queued).
//! When the call's budget runs out in the middle of a group the device
//! holds the requests it has and goes on at the next poll.
//!
//! Two adjacent messages of the same direction in a group are sent by
//! `embedded-hal` without a repeated START between them (its transaction
//! contract); a Linux driver's i2c messages each start with one. Targets
//! that care are rare (the two writes would be one long write).
//!
//! # Addresses
//!
//! 7-bit addresses and, with [`I2cAdapter::new_ten_bit`] on a bus that
//! implements `I2c<TenBitAddress>` too, 10-bit ones ([`Address::decode`]).
//!
//! # Errors
//!
//! The status byte has one error value; what went wrong is counted in
//! [`I2cStats`] and the last one kept ([`I2cAdapter::last_error`]).

#[cfg(any(test, feature = "test-utils"))]
pub mod eeprom;
mod error;
mod wire;

pub use error::{BusError, Nack, RequestError, TransferError};
pub use wire::*;

use embedded_hal::i2c::{Error as _, I2c, Operation, SevenBitAddress, TenBitAddress};
use virtio_core::device::{
    DeviceQueues, FeaturesError, MalformedChain, OPT_IN_RING_FEATURES, VirtioDevice,
};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Writer};
use virtio_core::spec::{DeviceId, Features};

/// Most segments of one request chain (header, buffer and status, each
/// possibly split by the driver).
pub const CHAIN_SEGMENTS: usize = 8;

/// The status a malformed chain is answered with.
const ERR: &[u8] = &[MSG_ERR];

/// One message of a transaction, as [`parse`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Request {
    /// A read of `len` bytes (`M_RD`; `len` 0 is a zero-length read).
    Read {
        /// The target.
        addr: Address,
        /// Bytes to read: the writable part less the status byte.
        len: u32,
    },
    /// A write of `len` bytes (`len` 0 is a zero-length write, the SMBus
    /// "Quick" command).
    Write {
        /// The target.
        addr: Address,
        /// Bytes to write: the readable part less the header.
        len: u32,
    },
    /// Reserved `flags` bits are set (the whole field): a request this
    /// version of the spec does not define, answered `MSG_ERR`.
    Unknown {
        /// The `flags` field.
        flags: u32,
    },
}

impl Request {
    /// The message's buffer length (0 for [`Request::Unknown`]).
    pub fn len(&self) -> u32 {
        match self {
            Self::Read { len, .. } | Self::Write { len, .. } => *len,
            Self::Unknown { .. } => 0,
        }
    }

    /// True for a zero-length request (and [`Request::Unknown`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed request: its message, and whether the next request belongs to
/// the same transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message {
    /// `FLAGS_FAIL_NEXT`: the group goes on after this request (false when
    /// the header could not be read).
    pub fail_next: bool,
    /// The message, or why the chain is not one.
    pub request: Result<Request, RequestError>,
}

/// Reads one request from a validated chain: the header from the readable
/// part (however the driver split it), the buffer's direction from `M_RD`
/// and its length from the chain's shape. The chain must carry exactly the
/// buffer `M_RD` names: no write data on a read, no read room on a write.
pub fn parse<M: GuestMemory, const N: usize>(chain: &Chain<N>, mem: &M) -> Message {
    let readable = chain.readable_len();
    let writable = chain.writable_len();
    let mut reader = chain.reader(mem);
    let Ok(header) = reader.read_obj::<I2cOutHdr>() else {
        return Message {
            fail_next: false,
            request: Err(RequestError::ShortHeader { readable }),
        };
    };
    let flags = header.flags.get();
    let fail_next = flags & FLAGS_FAIL_NEXT != 0;
    let request = (|| {
        if writable == 0 {
            return Err(RequestError::NoStatus);
        }
        if flags & !FLAGS_KNOWN != 0 {
            return Ok(Request::Unknown { flags });
        }
        let raw = header.addr.get();
        let addr = Address::decode(raw).ok_or(RequestError::BadAddress(raw))?;
        let data = readable.saturating_sub(OUT_HDR_BYTES);
        let room = writable.saturating_sub(1);
        if flags & FLAGS_M_RD != 0 {
            if data != 0 {
                return Err(RequestError::ReadWithWriteBuffer { bytes: data });
            }
            Ok(Request::Read { addr, len: room })
        } else {
            if room != 0 {
                return Err(RequestError::WriteWithReadBuffer { bytes: room });
            }
            Ok(Request::Write { addr, len: data })
        }
    })();
    Message { fail_next, request }
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct I2cStats {
    /// Requests answered `MSG_OK`.
    pub ok: u32,
    /// Requests answered `MSG_ERR`.
    pub errors: u32,
    /// Transactions handed to the bus.
    pub transactions: u32,
    /// Of those, failed with a NACK.
    pub nacks: u32,
    /// Of those, failed otherwise.
    pub bus_errors: u32,
    /// Requests that were malformed, unknown or too big.
    pub rejected: u32,
    /// Chains with no byte for a status: the request cannot be answered,
    /// so the device entered `DEVICE_NEEDS_RESET`.
    pub no_status: u32,
}

/// A 10-bit transaction on the bus, when it has them.
type TenBitFn<B> = fn(&mut B, u16, &mut [Operation<'_>]) -> Result<(), BusError>;

fn ten_bit_transaction<B: I2c<TenBitAddress>>(
    bus: &mut B,
    addr: u16,
    ops: &mut [Operation<'_>],
) -> Result<(), BusError> {
    bus.transaction(addr, ops).map_err(|e| e.kind().into())
}

/// A request held while its group is collected.
#[derive(Clone, Debug)]
struct Held {
    chain: Chain<CHAIN_SEGMENTS>,
    /// A `Read` or `Write`.
    request: Request,
    /// Where its buffer starts in the transaction buffer.
    offset: usize,
}

/// The I2C adapter device over a bus.
///
/// `MSGS` bounds the messages of one transaction and `BYTES` their buffers
/// together (Linux's i2c-dev allows 42 messages of up to 8 KiB each; SMBus
/// and EEPROM traffic needs a few messages of a few dozen bytes).
#[derive(Debug)]
pub struct I2cAdapter<B, const MSGS: usize = 8, const BYTES: usize = 512> {
    bus: B,
    ten_bit: Option<TenBitFn<B>>,
    queue_size: u16,
    group: heapless::Vec<Held, MSGS>,
    /// Bytes the held group's buffers take.
    group_bytes: usize,
    /// An earlier request of the current group failed: answer the rest
    /// `MSG_ERR` up to the group's last request.
    failing: bool,
    stats: I2cStats,
    last_error: Option<TransferError>,
    buffer: [u8; BYTES],
}

impl<B: I2c<SevenBitAddress>, const MSGS: usize, const BYTES: usize> I2cAdapter<B, MSGS, BYTES> {
    /// An adapter with 7-bit addresses over `bus`, with a queue of up to 64
    /// (a 10-bit request is answered `MSG_ERR`).
    pub fn new(bus: B) -> Self {
        Self {
            bus,
            ten_bit: None,
            queue_size: 64,
            group: heapless::Vec::new(),
            group_bytes: 0,
            failing: false,
            stats: I2cStats::default(),
            last_error: None,
            buffer: [0; BYTES],
        }
    }

    /// An adapter with 7- and 10-bit addresses over `bus`.
    pub fn new_ten_bit(bus: B) -> Self
    where
        B: I2c<TenBitAddress>,
    {
        let mut adapter = Self::new(bus);
        adapter.ten_bit = Some(ten_bit_transaction::<B>);
        adapter
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The bus.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// The bus, mutably.
    pub fn bus_mut(&mut self) -> &mut B {
        &mut self.bus
    }

    /// What the device did so far.
    pub fn stats(&self) -> I2cStats {
        self.stats
    }

    /// Why the last request answered `MSG_ERR` failed.
    pub fn last_error(&self) -> Option<TransferError> {
        self.last_error
    }

    /// Requests held in an unfinished group.
    pub fn held(&self) -> usize {
        self.group.len()
    }

    /// Answers one chain: `status` as its last writable byte, the
    /// writable bytes before it zero-filled unless `data` fills them.
    fn answer<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        chain: &Chain<CHAIN_SEGMENTS>,
        data: Option<(usize, usize)>,
        result: Result<(), TransferError>,
    ) {
        let mem = queues.memory();
        let mut writer = chain.writer(mem);
        let status = match result {
            Ok(()) => {
                self.stats.ok = self.stats.ok.saturating_add(1);
                MSG_OK
            }
            Err(e) => {
                self.stats.errors = self.stats.errors.saturating_add(1);
                self.last_error = Some(e);
                MSG_ERR
            }
        };
        if status == MSG_OK
            && let Some((at, len)) = data
            && let Some(bytes) = at.checked_add(len).and_then(|end| self.buffer.get(at..end))
        {
            let _ = writer.write_all(bytes);
        }
        finish(&mut writer, status);
        queues.push_used(queue, chain.head(), writer.bytes_written());
    }

    /// Answers every held request `MSG_ERR` with `error`.
    fn fail_group<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        error: TransferError,
    ) {
        let group = core::mem::take(&mut self.group);
        self.group_bytes = 0;
        for held in &group {
            self.answer(queues, queue, &held.chain, None, Err(error));
        }
    }

    /// Runs the held group: its write data copied into the buffer, one
    /// transaction per run of the same address, then every request
    /// answered (read data copied out of the buffer).
    fn run_group<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
    ) {
        let mem = queues.memory();
        let group = core::mem::take(&mut self.group);
        self.group_bytes = 0;
        // Write data into the buffer (the driver's buffers stay untouched).
        let mut copy = Ok(());
        for held in &group {
            if let Request::Write { len, .. } = held.request {
                let mut reader = held.chain.reader(mem);
                let end = held.offset.checked_add(len as usize);
                let dst = end.and_then(|end| self.buffer.get_mut(held.offset..end));
                let copied = match dst {
                    Some(dst) => reader
                        .skip(OUT_HDR_BYTES as usize)
                        .and_then(|()| reader.read_exact(dst))
                        .is_ok(),
                    None => false,
                };
                if !copied {
                    copy = Err(TransferError::TooManyBytes);
                }
            }
        }
        // Per request: the run's result.
        let mut results: heapless::Vec<Result<(), TransferError>, MSGS> = heapless::Vec::new();
        let mut failed: Option<TransferError> = copy.err();
        let mut start = 0usize;
        while let Some(first) = group.get(start) {
            let addr = request_addr(&first.request);
            let run = group
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|h| request_addr(&h.request) == addr)
                .count()
                .max(1);
            let outcome = match failed {
                Some(e) => Err(e),
                None => {
                    let r = self.transact(group.get(start..start.saturating_add(run)), addr);
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                    r
                }
            };
            for _ in 0..run {
                let _ = results.push(outcome);
            }
            start = start.saturating_add(run);
        }
        for (held, result) in group.iter().zip(results) {
            let data = match held.request {
                Request::Read { len, .. } => Some((held.offset, len as usize)),
                _ => None,
            };
            self.answer(queues, queue, &held.chain, data, result);
        }
    }

    /// One transaction: the held requests of `run`, all to `addr`.
    fn transact(
        &mut self,
        run: Option<&[Held]>,
        addr: Option<Address>,
    ) -> Result<(), TransferError> {
        let run = run.unwrap_or_default();
        let (Some(addr), Some(first)) = (addr, run.first()) else {
            return Err(TransferError::TooManyMessages);
        };
        let start = first.offset;
        let end = run
            .iter()
            .map(|h| h.offset.saturating_add(h.request.len() as usize))
            .max()
            .unwrap_or(start);
        let mut rest = self
            .buffer
            .get_mut(start..end)
            .ok_or(TransferError::TooManyBytes)?;
        let mut ops: heapless::Vec<Operation<'_>, MSGS> = heapless::Vec::new();
        for held in run {
            let (buf, tail) = rest
                .split_at_mut_checked(held.request.len() as usize)
                .ok_or(TransferError::TooManyBytes)?;
            rest = tail;
            let op = match held.request {
                Request::Read { .. } => Operation::Read(buf),
                _ => Operation::Write(buf),
            };
            ops.push(op).map_err(|_| TransferError::TooManyMessages)?;
        }
        self.stats.transactions = self.stats.transactions.saturating_add(1);
        let result = match addr {
            Address::SevenBit(a) => self
                .bus
                .transaction(a, &mut ops)
                .map_err(|e| BusError::from(e.kind())),
            Address::TenBit(a) => match self.ten_bit {
                Some(run) => run(&mut self.bus, a, &mut ops),
                None => return Err(TransferError::TenBitUnsupported),
            },
        };
        result.map_err(|e| {
            let counter = match e {
                BusError::NoAcknowledge(_) => &mut self.stats.nacks,
                _ => &mut self.stats.bus_errors,
            };
            *counter = counter.saturating_add(1);
            TransferError::Bus(e)
        })
    }

    /// Takes one parsed request into the current group (or fails it).
    /// Returns true when the group is complete and should run.
    fn take<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
        queue: u16,
        chain: &Chain<CHAIN_SEGMENTS>,
        message: Message,
    ) -> bool {
        if self.failing {
            // An earlier request of this group failed: fail this one too
            // rather than run it (FAIL_NEXT).
            self.failing = message.fail_next;
            let error = self.last_error.unwrap_or(TransferError::TooManyMessages);
            self.answer(queues, queue, chain, None, Err(error));
            return false;
        }
        let checked = match message.request {
            Err(e) => Err(TransferError::Request(e)),
            Ok(Request::Unknown { flags }) => Err(TransferError::Unsupported(flags)),
            Ok(
                Request::Write {
                    addr: Address::TenBit(_),
                    ..
                }
                | Request::Read {
                    addr: Address::TenBit(_),
                    ..
                },
            ) if self.ten_bit.is_none() => Err(TransferError::TenBitUnsupported),
            Ok(request) => {
                let offset = self.group_bytes;
                match offset
                    .checked_add(request.len() as usize)
                    .filter(|&end| end <= BYTES)
                {
                    None => Err(TransferError::TooManyBytes),
                    Some(end) => {
                        let held = Held {
                            chain: chain.clone(),
                            request,
                            offset,
                        };
                        match self.group.push(held) {
                            Ok(()) => {
                                self.group_bytes = end;
                                Ok(())
                            }
                            Err(_) => Err(TransferError::TooManyMessages),
                        }
                    }
                }
            }
        };
        match checked {
            Ok(()) => !message.fail_next,
            Err(error) => {
                // The group fails before any of it reaches the bus: the
                // requests held so far, this one, and the rest of the group.
                self.stats.rejected = self.stats.rejected.saturating_add(1);
                self.fail_group(queues, queue, error);
                self.answer(queues, queue, chain, None, Err(error));
                self.failing = message.fail_next;
                false
            }
        }
    }
}

/// The target of a held request.
fn request_addr(request: &Request) -> Option<Address> {
    match request {
        Request::Read { addr, .. } | Request::Write { addr, .. } => Some(*addr),
        Request::Unknown { .. } => None,
    }
}

/// Zero-fills the writable bytes left before the status byte, then writes
/// the status byte last, at the end of the writable part.
fn finish<M: GuestMemory>(writer: &mut Writer<'_, M>, status: u8) {
    let zero = [0u8; 64];
    while writer.remaining() > 1 {
        let n = (writer.remaining().saturating_sub(1) as usize).min(zero.len());
        let Some(part) = zero.get(..n) else { break };
        if writer.write_all(part).is_err() {
            return;
        }
    }
    let _ = writer.write_all(&[status]);
}

impl<B: I2c<SevenBitAddress>, const MSGS: usize, const BYTES: usize> VirtioDevice
    for I2cAdapter<B, MSGS, BYTES>
{
    fn device_id(&self) -> DeviceId {
        DeviceId::I2cAdapter
    }

    /// `ZERO_LENGTH_REQUEST` (mandatory), and `IN_ORDER`: requests are
    /// completed in the order they come, groups included.
    fn features(&self) -> Features {
        Features::from_bits_retain(F_ZERO_LENGTH_REQUEST)
            | (OPT_IN_RING_FEATURES & Features::IN_ORDER)
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    /// virtio 1.4 §"I2C Adapter Device / Device Operation": the device MUST
    /// reject a driver that does not negotiate `ZERO_LENGTH_REQUEST`.
    fn check_features(&self, features: Features) -> Result<(), FeaturesError> {
        if features.bits() & F_ZERO_LENGTH_REQUEST == 0 {
            return Err(FeaturesError::Rejected);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.group.clear();
        self.group_bytes = 0;
        self.failing = false;
    }

    fn queue_reset(&mut self, _queue: u16) {
        self.reset();
    }

    /// A malformed chain gets `MSG_ERR` in its status byte, the last byte
    /// of its last descriptor, so it never reads as a success.
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        MalformedChain::StatusAtEnd(ERR)
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
                // The ring holds no more (not merely the budget spent): an
                // open group is all the driver queued, so it runs.
                if !self.group.is_empty() && queues.is_live(queue) {
                    if queues.budget() > 0 {
                        self.run_group(queues, queue);
                    } else {
                        // The budget ran out in the middle of a group: be
                        // called again even if the ring turns out empty.
                        queues.poll_again(queue);
                    }
                }
                return;
            }
            let message = parse(&chain, mem);
            if message.request == Err(RequestError::NoStatus) {
                // No status byte to answer in: the held group fails, this
                // one is returned empty and the device stops, since the
                // driver would read it as success.
                self.stats.no_status = self.stats.no_status.saturating_add(1);
                self.fail_group(
                    queues,
                    queue,
                    TransferError::Request(RequestError::NoStatus),
                );
                queues.push_used(queue, chain.head(), 0);
                queues.set_needs_reset();
                return;
            }
            if self.take(queues, queue, &chain, message) {
                self.run_group(queues, queue);
            }
        }
    }
}

#[cfg(test)]
mod tests;
