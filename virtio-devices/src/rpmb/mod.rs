//! The RPMB device (ID 28, virtio 1.4 §"RPMB Device"): replay-protected
//! storage authenticated with HMAC-SHA256 (RustCrypto `hmac` + `sha2`),
//! over a [`KeyStore`] and an [`RpmbStorage`].
//!
//! One queue, `requestq`. Each chain carries one operation as 512-byte
//! [`Frame`]s: the request frames in the device-readable part (a
//! `PROGRAM_KEY` or `DATA_WRITE` may be followed by a `RESULT_READ` frame
//! asking for its result), the response frames in the device-writable part.
//! The frame layout and its semantics are eMMC's (JESD84 §6.6.22), which
//! the virtio chapter refers to:
//!
//! | request | readable frames | response (writable) |
//! |---|---|---|
//! | `PROGRAM_KEY` | 1 (the key in `key_mac`) [+ `RESULT_READ`] | 1 frame with the result, only with `RESULT_READ` |
//! | `GET_WRITE_COUNTER` | 1 (a nonce) | 1 frame: counter, nonce, MAC |
//! | `DATA_WRITE` | `block_count` (data, counter, address; the MAC in the last) [+ `RESULT_READ`] | 1 frame: new counter, address, MAC, only with `RESULT_READ` |
//! | `DATA_READ` | 1 (nonce, address, `block_count`) | `block_count` frames of data, the MAC in the last |
//! | `RESULT_READ` alone | 1 | the response of the last `PROGRAM_KEY` / `DATA_WRITE` |
//!
//! The MAC is HMAC-SHA256 with the programmed key over bytes 228..512
//! ([`MAC_START`]) of every frame of the request or response, concatenated
//! in order. The device compares MACs in constant time (`hmac`'s
//! `verify_slice`).
//!
//! # What the device keeps
//!
//! * The key is one-time programmable: a second `PROGRAM_KEY` answers
//!   `RES_WRITE_FAILURE` (eMMC's answer) and changes nothing. It cannot be
//!   read back: no response carries it.
//! * The write counter starts at 0, goes up by one with each successful
//!   authenticated write and stops at `0xffff_ffff`, after which every
//!   write answers `RES_WRITE_COUNTER_EXPIRED`.
//! * Key, counter and data live in the stores, not in the device: a device
//!   reset forgets only the result register (what a lone `RESULT_READ`
//!   answers), and a device built again over the same stores (a reboot)
//!   serves the same state.
//! * An authenticated write is copied out of guest memory once, checked
//!   (MAC and counter over the copy, so a driver that rewrites its buffers
//!   meanwhile changes nothing), then handed to
//!   [`RpmbStorage::write`] with the new counter as one atomic step.
//!
//! # Checks, in the spec's order
//!
//! `DATA_WRITE`: no key → `NO_AUTH_KEY`; `block_count` 0, above
//! `max_wr_cnt` or not the number of data frames → `GENERAL_FAILURE`;
//! counter at its maximum → `WRITE_COUNTER_EXPIRED`; blocks outside the
//! capacity → `ADDR_FAILURE`; MAC mismatch → `AUTH_FAILURE`; counter in the
//! request not the device's → `COUNT_FAILURE`; storage failure →
//! `WRITE_FAILURE`. `DATA_READ`: no key, `block_count` 0 or above
//! `max_rd_cnt`, address, then `READ_FAILURE` from storage.
//!
//! # Malformed chains
//!
//! A readable part that is not whole frames, a request with frames its
//! type does not take, or an unknown request type is answered with a
//! `GENERAL_FAILURE` frame (when there is room for one) and executes
//! nothing. A response that has device-writable room but less than one
//! frame cannot carry a result the driver would read, so the device
//! enters `DEVICE_NEEDS_RESET`; a chain the queue rejects gets
//! `GENERAL_FAILURE` in the `result` field of the frame its last
//! descriptor ends ([`MalformedChain::StatusAtEnd`]).

#[cfg(any(test, feature = "test-utils"))]
pub mod ram;
mod storage;
mod wire;

pub use storage::{Key, KeyStore, RpmbStorage};
pub use wire::*;

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use virtio_core::device::{DeviceQueues, MalformedChain, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Writer};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::{FromZeros, IntoBytes};

type HmacSha256 = Hmac<Sha256>;

/// Most segments of one request chain: the frames of the largest write
/// and its result read, or of the largest read's response, one buffer
/// each (as the spec lays them out), with room for drivers that split.
pub const CHAIN_SEGMENTS: usize = 24;

/// `max_rd_cnt` unless [`Rpmb::with_max_read`] says otherwise.
pub const DEFAULT_MAX_READ: u8 = 8;

/// `result` = `GENERAL_FAILURE`, `req_resp` = 0: the last four bytes of a
/// frame, written where a malformed chain's last descriptor ends.
const MALFORMED: &[u8] = &[0x00, 0x01, 0x00, 0x00];

/// Why a chain is not an RPMB request ([`parse`]). Each is answered with
/// `RES_GENERAL_FAILURE` and executes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RequestError {
    /// The device-readable part is not a whole, non-zero number of frames.
    FrameLength {
        /// Device-readable bytes.
        readable: u32,
    },
    /// The request has more frames than its type takes.
    ExtraFrames {
        /// The request's type.
        kind: RequestType,
        /// Readable frames in the chain.
        frames: u32,
    },
    /// A `RESULT_READ` frame after the operation with `block_count` ≠ 1.
    ResultReadCount(u16),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameLength { readable } => write!(
                f,
                "{readable} readable bytes are not a whole number of 512-byte frames"
            ),
            Self::ExtraFrames { kind, frames } => {
                write!(f, "{kind:?} request with {frames} frames")
            }
            Self::ResultReadCount(n) => write!(f, "RESULT_READ frame with block_count {n}"),
        }
    }
}

impl core::error::Error for RequestError {}

/// One request, as [`parse`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The operation (`req_resp` of the first frame).
    pub kind: RequestType,
    /// The first frame, copied out of guest memory.
    pub first: Frame,
    /// Readable frames in the chain, the `RESULT_READ` frame included.
    pub frames: u32,
    /// The operation is followed by a `RESULT_READ` frame.
    pub result_read: bool,
}

impl Request {
    /// Frames of the operation itself (without the `RESULT_READ` frame).
    pub fn data_frames(&self) -> u32 {
        self.frames.saturating_sub(u32::from(self.result_read))
    }
}

/// Reads one request from a validated chain: the first frame, and the
/// last when there are several (a trailing `RESULT_READ`), each copied
/// once. The readable part must be whole frames, as many as the type
/// takes.
///
/// # Errors
/// [`RequestError`]; the first frame (when there is one) comes with it so
/// the answer can name the operation.
pub fn parse<M: GuestMemory, const N: usize>(
    chain: &Chain<N>,
    mem: &M,
) -> Result<Request, (RequestError, Option<RequestType>)> {
    let readable = chain.readable_len();
    let frames = readable.checked_div(FRAME_BYTES as u32).unwrap_or(0);
    let mut reader = chain.reader(mem);
    let first = match reader.read_obj::<Frame>() {
        Ok(f) if readable.checked_rem(FRAME_BYTES as u32) == Some(0) => f,
        Ok(f) => {
            return Err((
                RequestError::FrameLength { readable },
                Some(RequestType::from(f.req_resp.get())),
            ));
        }
        Err(_) => return Err((RequestError::FrameLength { readable }, None)),
    };
    let kind = RequestType::from(first.req_resp.get());
    let mut result_read = false;
    if frames >= 2 && matches!(kind, RequestType::ProgramKey | RequestType::DataWrite) {
        let last = (frames.saturating_sub(1) as usize).saturating_mul(FRAME_BYTES);
        let mut tail = chain.reader(mem);
        let frame = tail
            .skip(last)
            .and_then(|()| tail.read_obj::<Frame>())
            .map_err(|_| (RequestError::FrameLength { readable }, Some(kind)))?;
        if frame.req_resp.get() == REQ_RESULT_READ {
            let count = frame.block_count.get();
            if count != 1 {
                // virtio 1.4 (rpmb.device-operation-result-read.1)
                return Err((RequestError::ResultReadCount(count), Some(kind)));
            }
            result_read = true;
        }
    }
    let request = Request {
        kind,
        first,
        frames,
        result_read,
    };
    let most = match kind {
        RequestType::ProgramKey => 1,
        RequestType::DataWrite => u32::MAX,
        _ => 1,
    };
    if request.data_frames() > most {
        return Err((RequestError::ExtraFrames { kind, frames }, Some(kind)));
    }
    Ok(request)
}

/// What the device did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RpmbStats {
    /// Requests answered (or recorded) `RES_OK`.
    pub ok: u32,
    /// Requests answered (or recorded) with an error result.
    pub failed: u32,
    /// Authenticated writes committed to storage.
    pub writes: u32,
    /// Malformed requests ([`RequestError`]).
    pub malformed: u32,
    /// Requests that wanted a response but left no device-writable room.
    pub no_room: u32,
}

/// The outcome of the last `PROGRAM_KEY` or `DATA_WRITE`: what a
/// `RESULT_READ` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    resp: u16,
    result: RpmbResult,
    counter: u32,
    address: u16,
}

/// The RPMB device over a key store `K` and data storage `S`.
///
/// `WR` is `max_wr_cnt`, the most blocks one authenticated write carries
/// (1–255): the device copies a write's data into a buffer of `WR` blocks
/// before checking it, so it never reads guest memory twice.
#[derive(Debug)]
pub struct Rpmb<K, S, const WR: usize = 8> {
    keys: K,
    storage: S,
    config: RpmbConfig,
    queue_size: u16,
    last: Option<Outcome>,
    stats: RpmbStats,
    data: [[u8; BLOCK_BYTES]; WR],
}

impl<K: KeyStore, S: RpmbStorage, const WR: usize> Rpmb<K, S, WR> {
    const WR_FITS: () = assert!(WR >= 1 && WR <= 255, "max_wr_cnt is 1..=255");

    /// A device over `keys` and `storage`. Its capacity is the storage's
    /// whole 128 KiB units, at most 16 MiB (virtio 1.4 §"RPMB Device /
    /// Device Initialization"); `max_rd_cnt` is [`DEFAULT_MAX_READ`].
    pub fn new(keys: K, storage: S) -> Self {
        let () = Self::WR_FITS;
        let units = storage.blocks() / BLOCKS_PER_UNIT;
        let capacity = u8::try_from(units.min(u32::from(MAX_CAPACITY))).unwrap_or(MAX_CAPACITY);
        Self {
            keys,
            storage,
            config: RpmbConfig {
                capacity,
                max_wr_cnt: u8::try_from(WR).unwrap_or(u8::MAX),
                max_rd_cnt: DEFAULT_MAX_READ,
            },
            queue_size: 64,
            last: None,
            stats: RpmbStats::default(),
            data: [[0; BLOCK_BYTES]; WR],
        }
    }

    /// Sets `max_rd_cnt` (0: no limit but the capacity).
    #[must_use]
    pub fn with_max_read(mut self, blocks: u8) -> Self {
        self.config.max_rd_cnt = blocks;
        self
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The configuration space.
    pub fn config(&self) -> RpmbConfig {
        self.config
    }

    /// What the device did so far.
    pub fn stats(&self) -> RpmbStats {
        self.stats
    }

    /// The key store.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The key store, mutably.
    pub fn keys_mut(&mut self) -> &mut K {
        &mut self.keys
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutably.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The stores back (a reboot builds a new device over them).
    pub fn into_parts(self) -> (K, S) {
        (self.keys, self.storage)
    }

    /// Blocks the device serves.
    fn capacity_blocks(&self) -> u32 {
        u32::from(self.config.capacity).saturating_mul(BLOCKS_PER_UNIT)
    }

    fn count(&mut self, result: RpmbResult) {
        if result == RpmbResult::Ok {
            self.stats.ok = self.stats.ok.saturating_add(1);
        } else {
            self.stats.failed = self.stats.failed.saturating_add(1);
        }
    }

    /// Serves one chain; returns the bytes written to its writable part,
    /// or `None` when the device must enter `DEVICE_NEEDS_RESET`.
    fn serve<M: GuestMemory, const N: usize>(&mut self, chain: &Chain<N>, mem: &M) -> Option<u32> {
        let writable = chain.writable_len();
        let mut writer = chain.writer(mem);
        let request = match parse(chain, mem) {
            Ok(r) => r,
            Err((_, kind)) => {
                self.stats.malformed = self.stats.malformed.saturating_add(1);
                let kind = kind.unwrap_or(RequestType::Unknown(0));
                if matches!(kind, RequestType::ProgramKey | RequestType::DataWrite) {
                    self.last = Some(Outcome {
                        resp: kind.response(),
                        result: RpmbResult::GeneralFailure,
                        counter: 0,
                        address: 0,
                    });
                }
                self.count(RpmbResult::GeneralFailure);
                let frame = response(kind.response(), RpmbResult::GeneralFailure);
                return self.answer(&mut writer, writable, &[frame]);
            }
        };
        match request.kind {
            RequestType::ProgramKey => {
                let outcome = self.program_key(&request);
                self.finish_write(&mut writer, writable, &request, outcome)
            }
            RequestType::DataWrite => {
                let outcome = self.data_write(chain, mem, &request);
                self.finish_write(&mut writer, writable, &request, outcome)
            }
            RequestType::GetWriteCounter => {
                let mut frame = response(RESP_GET_COUNTER, RpmbResult::Ok);
                frame.nonce = request.first.nonce;
                let result = match self.keys.key() {
                    Err(_) => RpmbResult::GeneralFailure,
                    // virtio 1.4 (rpmb.device-operation-get-write-counter.1)
                    Ok(None) => RpmbResult::NoAuthKey,
                    // virtio 1.4 (rpmb.device-operation-get-write-counter.2)
                    Ok(Some(_)) if request.first.block_count.get() != 1 => {
                        RpmbResult::GeneralFailure
                    }
                    Ok(Some(_)) => match self.storage.write_counter() {
                        Ok(c) => {
                            frame.write_counter = c.into();
                            RpmbResult::Ok
                        }
                        Err(_) => RpmbResult::GeneralFailure,
                    },
                };
                frame.result = result.code().into();
                self.count(result);
                self.answer(&mut writer, writable, &[frame])
            }
            RequestType::DataRead => self.data_read(chain, mem, &request),
            RequestType::ResultRead => {
                let frame = match self.last {
                    // virtio 1.4 (rpmb.device-operation-result-read.1)
                    Some(_) if request.first.block_count.get() != 1 => {
                        response(0, RpmbResult::GeneralFailure)
                    }
                    None => response(0, RpmbResult::GeneralFailure),
                    Some(o) => {
                        let mut f = response(o.resp, o.result);
                        f.write_counter = o.counter.into();
                        f.address = o.address.into();
                        f
                    }
                };
                self.answer(&mut writer, writable, &[frame])
            }
            RequestType::Unknown(_) => {
                self.stats.malformed = self.stats.malformed.saturating_add(1);
                self.count(RpmbResult::GeneralFailure);
                self.answer(
                    &mut writer,
                    writable,
                    &[response(0, RpmbResult::GeneralFailure)],
                )
            }
        }
    }

    /// Records a `PROGRAM_KEY` / `DATA_WRITE` outcome and answers it when
    /// the chain asked with a `RESULT_READ` frame.
    fn finish_write<M: GuestMemory>(
        &mut self,
        writer: &mut Writer<'_, M>,
        writable: u32,
        request: &Request,
        outcome: Outcome,
    ) -> Option<u32> {
        self.last = Some(outcome);
        self.count(outcome.result);
        if !request.result_read {
            return Some(0);
        }
        let mut frame = response(outcome.resp, outcome.result);
        frame.write_counter = outcome.counter.into();
        frame.address = outcome.address.into();
        self.answer(writer, writable, &[frame])
    }

    /// `PROGRAM_KEY`: once, with `block_count` 1.
    fn program_key(&mut self, request: &Request) -> Outcome {
        let result = if request.first.block_count.get() != 1 {
            // virtio 1.4 (rpmb.device-operation-program-key.2)
            RpmbResult::GeneralFailure
        } else {
            match self.keys.key() {
                Err(_) => RpmbResult::GeneralFailure,
                // One-time programmable (eMMC: a second programming is a
                // write failure).
                Ok(Some(_)) => RpmbResult::WriteFailure,
                Ok(None) => match self.keys.program(&request.first.key_mac) {
                    Ok(()) => RpmbResult::Ok,
                    Err(_) => RpmbResult::WriteFailure,
                },
            }
        };
        Outcome {
            resp: RESP_PROGRAM_KEY,
            result,
            counter: 0,
            address: 0,
        }
    }

    /// `DATA_WRITE`: copies the data frames once, checks them in the
    /// spec's order, and commits data and counter together.
    fn data_write<M: GuestMemory, const N: usize>(
        &mut self,
        chain: &Chain<N>,
        mem: &M,
        request: &Request,
    ) -> Outcome {
        let first = &request.first;
        let address = first.address.get();
        let blocks = first.block_count.get();
        let counter = self.storage.write_counter();
        let mut outcome = Outcome {
            resp: RESP_DATA_WRITE,
            result: RpmbResult::Ok,
            counter: counter.as_ref().map_or(0, |c| *c),
            address,
        };
        let key = match self.keys.key() {
            Err(_) => return outcome.with(RpmbResult::GeneralFailure),
            // virtio 1.4 (rpmb.device-operation-data-write.2)
            Ok(None) => return outcome.with(RpmbResult::NoAuthKey),
            Ok(Some(k)) => k,
        };
        // virtio 1.4 (rpmb.device-operation-data-write.3)
        if blocks == 0 || usize::from(blocks) > WR || u32::from(blocks) != request.data_frames() {
            return outcome.with(RpmbResult::GeneralFailure);
        }
        let Ok(counter) = counter else {
            return outcome.with(RpmbResult::GeneralFailure);
        };
        // virtio 1.4 (rpmb.device-operation-data-write.4, rpmb.device-operation-data-write.5)
        if counter == COUNTER_MAX {
            return outcome.with(RpmbResult::WriteCounterExpired);
        }
        // virtio 1.4 (rpmb.device-operation-data-write.6)
        let end = u32::from(address).saturating_add(u32::from(blocks));
        if end > self.capacity_blocks() {
            return outcome.with(RpmbResult::AddrFailure);
        }
        // Copy every frame once; the MAC covers them all, in order.
        let Some(mut mac) = HmacSha256::new_from_slice(&key).ok() else {
            return outcome.with(RpmbResult::GeneralFailure);
        };
        let mut reader = chain.reader(mem);
        let mut last_mac = [0u8; KEY_BYTES];
        for (i, slot) in self.data.iter_mut().take(usize::from(blocks)).enumerate() {
            let frame = if i == 0 {
                if reader.skip(FRAME_BYTES).is_err() {
                    return outcome.with(RpmbResult::GeneralFailure);
                }
                *first
            } else {
                match reader.read_obj::<Frame>() {
                    Ok(f) => f,
                    Err(_) => return outcome.with(RpmbResult::GeneralFailure),
                }
            };
            mac.update(frame.mac_input());
            *slot = frame.data;
            last_mac = frame.key_mac;
        }
        // virtio 1.4 (rpmb.device-operation-data-write.7, rpmb.device-operation-data-write.8)
        if mac.verify_slice(&last_mac).is_err() {
            return outcome.with(RpmbResult::AuthFailure);
        }
        // virtio 1.4 (rpmb.device-operation-data-write.9)
        if first.write_counter.get() != counter {
            return outcome.with(RpmbResult::CountFailure);
        }
        let next = counter.saturating_add(1);
        let data = self.data.get(..usize::from(blocks)).unwrap_or_default();
        match self
            .storage
            .write(u32::from(address), data.as_bytes(), next)
        {
            Ok(()) => {
                self.stats.writes = self.stats.writes.saturating_add(1);
                outcome.counter = next;
                outcome
            }
            // virtio 1.4 (rpmb.device-operation-data-write.11)
            Err(_) => {
                // The storage is in the old state or the new one; the
                // counter says which.
                outcome.counter = self.storage.write_counter().unwrap_or(counter);
                outcome.with(RpmbResult::WriteFailure)
            }
        }
    }

    /// `DATA_READ`: `block_count` frames, streamed from storage, the MAC
    /// over all of them in the last.
    fn data_read<M: GuestMemory, const N: usize>(
        &mut self,
        chain: &Chain<N>,
        mem: &M,
        request: &Request,
    ) -> Option<u32> {
        let writable = chain.writable_len();
        let mut writer = chain.writer(mem);
        let first = &request.first;
        let address = first.address.get();
        let blocks = first.block_count.get();
        let mut template = response(RESP_DATA_READ, RpmbResult::Ok);
        template.nonce = first.nonce;
        template.address = first.address;
        template.block_count = first.block_count;
        let room = writable.checked_div(FRAME_BYTES as u32).unwrap_or(0);
        let max = self.config.max_rd_cnt;
        let key = self.keys.key();
        let result = match key {
            Err(_) => RpmbResult::GeneralFailure,
            // virtio 1.4 (rpmb.device-operation-data-read.1)
            Ok(None) => RpmbResult::NoAuthKey,
            // virtio 1.4 (rpmb.device-operation-data-read.2)
            Ok(Some(_)) if blocks == 0 || (max != 0 && blocks > u16::from(max)) => {
                RpmbResult::GeneralFailure
            }
            // virtio 1.4 (rpmb.device-operation-data-read.3)
            Ok(Some(_))
                if u32::from(address).saturating_add(u32::from(blocks))
                    > self.capacity_blocks() =>
            {
                RpmbResult::AddrFailure
            }
            // No room for the frames asked for.
            Ok(Some(_)) if room < u32::from(blocks) => RpmbResult::GeneralFailure,
            Ok(Some(_)) => RpmbResult::Ok,
        };
        let key = key.ok().flatten();
        if result == RpmbResult::Ok {
            let storage = &mut self.storage;
            let streamed = emit(&mut writer, key.as_ref(), u32::from(blocks), |i, frame| {
                *frame = template;
                storage
                    .read(u32::from(address).saturating_add(i), &mut frame.data)
                    .map_err(|_| RpmbResult::ReadFailure)
            });
            match streamed {
                Ok(n) => {
                    self.count(RpmbResult::Ok);
                    return n;
                }
                Err(e) => {
                    // virtio 1.4 (rpmb.device-operation-data-read.4)
                    // Rewrite every frame with the failure.
                    template.result = e.code().into();
                    self.count(e);
                    let mut again = chain.writer(mem);
                    let n = u32::from(blocks);
                    return emit(&mut again, key.as_ref(), n, |_, f| {
                        *f = template;
                        Ok(())
                    })
                    .unwrap_or(None);
                }
            }
        }
        self.count(result);
        template.result = result.code().into();
        if room == 0 {
            return self.no_room(writable);
        }
        let n = room.min(u32::from(blocks).max(1));
        emit(&mut writer, key.as_ref(), n, |_, f| {
            *f = template;
            Ok(())
        })
        .unwrap_or(None)
    }

    /// Writes response frames (the MAC, when a key is programmed, over all
    /// of them in the last).
    fn answer<M: GuestMemory>(
        &mut self,
        writer: &mut Writer<'_, M>,
        writable: u32,
        frames: &[Frame],
    ) -> Option<u32> {
        if writable < FRAME_BYTES as u32 {
            return self.no_room(writable);
        }
        let key = self.keys.key().ok().flatten();
        let n = u32::try_from(frames.len()).unwrap_or(0);
        emit(writer, key.as_ref(), n, |i, f| {
            if let Some(src) = frames.get(i as usize) {
                *f = *src;
            }
            Ok(())
        })
        .unwrap_or(None)
    }

    /// A response is due and there is no whole frame for it: with no room
    /// at all the driver reads nothing (used length 0); with a partial
    /// frame its buffer could read as a success, so the device stops.
    fn no_room(&mut self, writable: u32) -> Option<u32> {
        self.stats.no_room = self.stats.no_room.saturating_add(1);
        (writable == 0).then_some(0)
    }
}

impl Outcome {
    fn with(mut self, result: RpmbResult) -> Self {
        self.result = result;
        self
    }
}

/// A response frame of type `resp` with `result`, everything else zero.
fn response(resp: u16, result: RpmbResult) -> Frame {
    let mut f = Frame::new_zeroed();
    f.req_resp = resp.into();
    f.result = result.code().into();
    f
}

/// Writes `n` frames built by `fill`, with the HMAC over all of them (with
/// `key`) in the last one's `key_mac`. `Err` from `fill` stops it (frames
/// already written stay); `Ok(None)` when guest memory refused a write.
fn emit<M: GuestMemory>(
    writer: &mut Writer<'_, M>,
    key: Option<&Key>,
    n: u32,
    mut fill: impl FnMut(u32, &mut Frame) -> Result<(), RpmbResult>,
) -> Result<Option<u32>, RpmbResult> {
    let mut mac = key.and_then(|k| HmacSha256::new_from_slice(k).ok());
    let mut frame = Frame::new_zeroed();
    for i in 0..n {
        fill(i, &mut frame)?;
        frame.key_mac = [0; KEY_BYTES];
        if let Some(mac) = mac.as_mut() {
            mac.update(frame.mac_input());
        }
        if i.saturating_add(1) == n
            && let Some(mac) = mac.take()
        {
            frame.key_mac.copy_from_slice(&mac.finalize().into_bytes());
        }
        if writer.write_obj(&frame).is_err() {
            return Ok(None);
        }
    }
    Ok(Some(writer.bytes_written()))
}

impl<K: KeyStore, S: RpmbStorage, const WR: usize> VirtioDevice for Rpmb<K, S, WR> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Rpmb
    }

    /// None (virtio 1.4 §"RPMB Device / Feature bits").
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
        size_of::<RpmbConfig>() as u32
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config.as_bytes(), offset, data);
    }

    /// Read-only: writes are ignored.
    fn write_config(&mut self, _offset: u32, _data: &[u8]) {}

    /// Forgets the result register; the key, the counter and the data are
    /// the stores' and stay.
    fn reset(&mut self) {
        self.last = None;
    }

    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        MalformedChain::StatusAtEnd(MALFORMED)
    }

    fn queue_notify<M: GuestMemory, const S2: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S2>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        while queues.pop(queue, &mut chain) {
            match self.serve(&chain, mem) {
                Some(written) => queues.push_used(queue, chain.head(), written),
                None => {
                    queues.push_used(queue, chain.head(), 0);
                    queues.set_needs_reset();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
