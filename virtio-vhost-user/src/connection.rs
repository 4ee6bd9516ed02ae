//! One frontend connection: the socket and the kick eventfds in one loop.
//!
//! A connection is served by one thread that waits (`poll`) on the
//! vhost-user socket and on every started ring's kick eventfd. A readable
//! socket means one protocol message, handled by the `vhost` crate's
//! [`BackendReqHandler`] and our [`VhostUserDevice`]; a kick means "serve
//! that queue". A device with host-side events of its own (a host
//! gpiochip's line edges) adds its descriptors to the same wait through
//! [`HostEvents`] ([`serve_with_events`]). Nothing else touches the device,
//! so no request ever races a protocol message or a host event. (A device
//! served with parallel queues, [`crate::worker`], has each ring on a
//! worker thread of its own instead, with its own instance of the device;
//! this loop then waits on the socket and the host events only, and stops
//! a worker before any message that changes what it holds.)
//!
//! How a connection ends is kept apart:
//! * the frontend closed the socket (QEMU quit or was killed): [`Ended::Closed`];
//! * a well-formed request the device refuses (a queue size above the
//!   maximum, a region that cannot be mapped, features not offered): a
//!   negative `REPLY_ACK` if the frontend asked for one, and the
//!   connection goes on;
//! * the frontend sent something the protocol does not allow (bad header,
//!   size, file descriptors, a request for something not negotiated, or a
//!   refused request that expects a payload reply): it gets a negative
//!   acknowledgement if it asked for one, and the connection is closed,
//!   [`Ended::Protocol`]. Only this connection is affected.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::net::{RecvFlags, recv};
use vhost::vhost_user::message::FrontendReq;
use vhost::vhost_user::{BackendReqHandler, Error as VhostError};
use virtio_core::device::VirtioDevice;

use crate::backend::VhostUserDevice;

/// Size of a vhost-user message header: request, flags, payload size.
const HEADER_LEN: usize = 12;
/// Header flags: protocol version 1.
const VERSION_1: u32 = 0x1;
/// Header flags: this is a reply.
const REPLY: u32 = 0x4;
/// Header flags: the frontend wants an acknowledgement (`REPLY_ACK`).
const NEED_REPLY: u32 = 0x8;

/// Requests answered with a payload rather than an acknowledgement
/// (`GET_FEATURES`, `GET_VRING_BASE`, `GET_PROTOCOL_FEATURES`,
/// `GET_QUEUE_NUM`, `GET_MAX_MEM_SLOTS`, `GET_INFLIGHT_FD`): a refusal there
/// leaves the frontend waiting, so the connection closes instead.
const REPLY_PAYLOAD: [u32; 6] = [1, 11, 15, 17, 36, 31];

/// How a connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ended {
    /// The frontend closed the socket.
    Closed,
    /// The frontend broke the protocol; the connection was closed.
    Protocol(VhostError),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("frontend disconnected"),
            Self::Protocol(e) => write!(f, "protocol error, connection closed: {e}"),
        }
    }
}

type Shared<D> = Arc<Mutex<VhostUserDevice<D>>>;

fn lock<D: VirtioDevice>(shared: &Shared<D>) -> io::Result<MutexGuard<'_, VhostUserDevice<D>>> {
    shared
        .lock()
        .map_err(|_| io::Error::other("device state poisoned by an earlier failure"))
}

/// A device's own host-side event source, served by the connection's loop
/// next to the socket and the kicks (for the GPIO device: the host
/// gpiochip's line event descriptors).
///
/// Each round the loop, holding the device, asks [`Self::fds`] for the
/// descriptors to wait on (borrowed from the device, so the set always
/// matches what the device holds), waits on them with the socket and the
/// kicks, and for those that became readable (or report an error or
/// hang-up) calls [`Self::ready`] with their tokens, then the core's poll
/// so the device can answer (return a held buffer, signal the driver).
/// Nothing changes the device between the two calls.
pub trait HostEvents<D> {
    /// The descriptors to wait on, each with a token of the source's
    /// choosing.
    fn fds<'a>(&'a self, device: &'a D) -> Vec<(usize, BorrowedFd<'a>)>;

    /// The descriptors with these tokens are ready: read them and act on
    /// the device. Must not block, and must consume what made them ready
    /// (or fail): the next round waits on them again. `true` when the
    /// device's configuration changed (the frontend is then told).
    ///
    /// # Errors
    /// A host failure; it ends the connection (a descriptor that stays
    /// ready but cannot be read would otherwise spin the loop).
    fn ready(&mut self, device: &mut D, tokens: &[usize]) -> io::Result<bool>;
}

/// No host events: the loop waits on the socket and the kicks only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl<D> HostEvents<D> for NoEvents {
    fn fds<'a>(&'a self, _device: &'a D) -> Vec<(usize, BorrowedFd<'a>)> {
        Vec::new()
    }

    fn ready(&mut self, _device: &mut D, _tokens: &[usize]) -> io::Result<bool> {
        Ok(false)
    }
}

/// Serves `device` to the frontend on `stream` until it goes away.
///
/// # Errors
/// Host-side failures (`poll`, `dup`); the frontend's own misbehaviour is
/// an [`Ended`] value, not an error.
///
/// Every message's request and outcome is logged at debug level.
pub fn serve<D: VirtioDevice + Send>(stream: UnixStream, device: D) -> io::Result<Ended> {
    serve_device(stream, VhostUserDevice::new(device))
}

/// [`serve`] with a [`VhostUserDevice`] set up by the caller (e.g.
/// [`VhostUserDevice::with_unsealed_memory`]).
///
/// # Errors
/// As [`serve`].
pub fn serve_device<D: VirtioDevice + Send>(
    stream: UnixStream,
    device: VhostUserDevice<D>,
) -> io::Result<Ended> {
    serve_with_events(stream, device, NoEvents)
}

/// [`serve_device`], also waiting on `events`' descriptors.
///
/// # Errors
/// Host-side failures (`poll`, `dup`, or [`HostEvents::ready`]); the
/// frontend's own misbehaviour is an [`Ended`] value, not an error.
pub fn serve_with_events<D: VirtioDevice + Send, E: HostEvents<D>>(
    stream: UnixStream,
    device: VhostUserDevice<D>,
    mut events: E,
) -> io::Result<Ended> {
    let peer = stream.try_clone()?;
    let shared: Shared<D> = Arc::new(Mutex::new(device));
    let mut handler = BackendReqHandler::from_stream(stream, Arc::clone(&shared));
    let mut kicks: Vec<(u16, File)> = Vec::new();
    let mut generation = None;
    // The device stopped with work left (its budget ran out): the guest
    // will not kick for it, so the loop serves it again after looking at
    // the socket and the other kicks, without blocking in between.
    let mut work_left = false;
    loop {
        let (message, kicked) = {
            // Held while waiting: this thread is the only one that locks it
            // (the handler does so in `handle_message`, below).
            let mut dev = lock(&shared)?;
            if generation != Some(dev.kick_generation()) {
                kicks = dev.kick_fds()?;
                generation = Some(dev.kick_generation());
            }
            let host = events.fds(dev.device());
            let (message, kicked, ready) = wait(&peer, &kicks, &host, !work_left)?;
            drop(host);
            if !ready.is_empty() {
                if events.ready(dev.device_mut(), &ready)? {
                    dev.config_changed();
                }
                work_left |= dev.poll().work_left();
            }
            (message, kicked)
        };
        for queue in kicked {
            work_left |= lock(&shared)?.kick(queue).work_left();
        }
        if message {
            if let Some(ended) = handle_message(&mut handler, &shared, &peer)? {
                return Ok(ended);
            }
            // A message that started a ring served what it held (and a
            // restart's resubmissions) within one budget: what is left is
            // served here, as no kick will come for it.
            work_left |= lock(&shared)?.core().work_left();
        }
        if work_left {
            work_left = lock(&shared)?.poll().work_left();
        }
    }
}

/// What one wait saw: a message, the kicked queues, the ready host tokens.
type Woken = (bool, Vec<u16>, Vec<usize>);

/// Waits until the socket, some kick eventfd or some host descriptor is
/// readable (or, with `block` false, only looks).
fn wait(
    peer: &UnixStream,
    kicks: &[(u16, File)],
    host: &[(usize, BorrowedFd<'_>)],
    block: bool,
) -> io::Result<Woken> {
    let mut fds: Vec<PollFd<'_>> =
        Vec::with_capacity(kicks.len().saturating_add(host.len()).saturating_add(1));
    fds.push(PollFd::new(peer, PollFlags::IN));
    fds.extend(kicks.iter().map(|(_, f)| PollFd::new(f, PollFlags::IN)));
    fds.extend(host.iter().map(|(_, fd)| PollFd::new(fd, PollFlags::IN)));
    let now = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let timeout = if block { None } else { Some(&now) };
    loop {
        match poll(&mut fds, timeout) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut revents = fds.iter().map(PollFd::revents);
    let message = revents.next().is_some_and(|r| !r.is_empty());
    let kicked = kicks
        .iter()
        .zip(revents.by_ref())
        .filter(|(_, r)| r.contains(PollFlags::IN))
        .map(|((q, _), _)| *q)
        .collect();
    // A host descriptor in error or hung up is ready too: its reader
    // sees the failure instead of the loop spinning on it.
    let ready = host
        .iter()
        .zip(revents)
        .filter(|(_, r)| !r.is_empty())
        .map(|((token, _), _)| *token)
        .collect();
    Ok((message, kicked, ready))
}

/// Handles one message; `Some` when the connection is over.
fn handle_message<D: VirtioDevice + Send>(
    handler: &mut BackendReqHandler<Mutex<VhostUserDevice<D>>>,
    shared: &Shared<D>,
    peer: &UnixStream,
) -> io::Result<Option<Ended>> {
    // Look at the header first, to answer a message the library refuses.
    let mut header = [0u8; HEADER_LEN];
    let (_, peeked) = match recv(peer, &mut header, RecvFlags::PEEK) {
        Ok(r) => r,
        Err(rustix::io::Errno::CONNRESET) => return Ok(Some(Ended::Closed)),
        Err(e) => return Err(e.into()),
    };
    if peeked == 0 {
        return Ok(Some(Ended::Closed));
    }
    let [a, b, c, d, ..] = header;
    let request = u32::from_le_bytes([a, b, c, d]);
    if request == SET_BACKEND_REQ_FD && peeked == HEADER_LEN {
        return take_backend_channel(shared, peer, &header);
    }
    let result = handler.handle_request();
    if log::log_enabled!(log::Level::Debug) {
        let name = FrontendReq::try_from(request)
            .map_or_else(|_| format!("request {request}"), |r| format!("{r:?}"));
        match &result {
            Ok(()) => log::debug!("{name}: ok"),
            Err(e) => log::debug!("{name}: {e}"),
        }
    }
    match result {
        Ok(()) => Ok(None),
        Err(
            VhostError::Disconnected | VhostError::PartialMessage | VhostError::SocketBroken(_),
        ) => Ok(Some(Ended::Closed)),
        // Our handler refused a well-formed request: the frontend was told
        // (REPLY_ACK) unless it waits for a payload instead.
        Err(VhostError::ReqHandlerError(e)) if !REPLY_PAYLOAD.contains(&request) => {
            log::warn!("request {request} refused: {e}");
            Ok(None)
        }
        // A message cut short by the frontend going away is a disconnect,
        // not a malformed message.
        Err(_) if hung_up(peer) => Ok(Some(Ended::Closed)),
        Err(error) => {
            if peeked == HEADER_LEN {
                nack_if_wanted(peer, &header);
            }
            let _ = peer.shutdown(std::net::Shutdown::Both);
            Ok(Some(Ended::Protocol(error)))
        }
    }
}

/// `SET_BACKEND_REQ_FD`, handled here rather than by the `vhost` crate,
/// whose backend channel cannot send `CONFIG_CHANGE_MSG`: the frontend's
/// socket for requests from us (one descriptor, no payload).
const SET_BACKEND_REQ_FD: u32 = 21;

/// Receives `SET_BACKEND_REQ_FD` and its descriptor, gives the channel to
/// the device and acknowledges it if asked; a malformed one (a payload, no
/// or several descriptors, not a stream socket, the feature not
/// negotiated) ends the connection.
fn take_backend_channel<D: VirtioDevice + Send>(
    shared: &Shared<D>,
    peer: &UnixStream,
    header: &[u8; HEADER_LEN],
) -> io::Result<Option<Ended>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, recvmsg};
    let mut bytes = [0u8; HEADER_LEN];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        peer,
        &mut [io::IoSliceMut::new(&mut bytes)],
        &mut ancillary,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<std::os::fd::OwnedFd> = Vec::new();
    for message in ancillary.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let socket = match (
        received.bytes,
        header_word(header, 8),
        fds.pop(),
        fds.is_empty(),
    ) {
        (HEADER_LEN, 0, Some(fd), true)
            if rustix::fs::fstat(&fd).is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
            }) =>
        {
            UnixStream::from(fd)
        }
        _ => {
            nack_if_wanted(peer, header);
            let _ = peer.shutdown(std::net::Shutdown::Both);
            return Ok(Some(Ended::Protocol(VhostError::InvalidMessage)));
        }
    };
    let accepted = lock(shared)?.set_backend_channel(socket);
    if let Err(e) = &accepted {
        log::warn!("SET_BACKEND_REQ_FD refused: {e}");
    } else {
        log::debug!("SET_BACKEND_REQ_FD: ok");
    }
    ack_if_wanted(peer, header, accepted.is_err())?;
    Ok(None)
}

/// True when the frontend has closed its end and nothing is left to read.
fn hung_up(peer: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        recv(peer, &mut byte, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((_, 0)) | Err(rustix::io::Errno::CONNRESET)
    )
}

/// Sends a negative `REPLY_ACK` for `header` if its sender asked for one.
fn nack_if_wanted(peer: &UnixStream, header: &[u8; HEADER_LEN]) {
    // Best effort: the connection closes right after.
    let _ = ack_if_wanted(peer, header, true);
}

/// Sends the `REPLY_ACK` for `header` (status 1 when `failed`, else 0) if
/// its sender asked for one.
fn ack_if_wanted(mut peer: &UnixStream, header: &[u8; HEADER_LEN], failed: bool) -> io::Result<()> {
    if header_word(header, 4) & NEED_REPLY == 0 {
        return Ok(());
    }
    let mut reply = [0u8; HEADER_LEN + 8];
    let fields = [header_word(header, 0), VERSION_1 | REPLY, 8];
    for (chunk, value) in reply.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    if let Some(status) = reply.get_mut(HEADER_LEN..) {
        status.copy_from_slice(&u64::from(failed).to_le_bytes());
    }
    peer.write_all(&reply)
}

/// The little-endian word at byte `at` of a message header (request,
/// flags, payload size).
fn header_word(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    header
        .get(at..at.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}
