//! The console device (ID 3, virtio 1.4 §"Console Device").
//!
//! Each port is an [`embedded_io`] stream: what the driver transmits is
//! written to the port's backend, and what the backend has to read is
//! delivered into the port's receive buffers. Receive buffers are held by
//! the device until input arrives (the embedder calls
//! `DeviceCore::poll` when a backend may have input); they are returned
//! only with data in them.
//!
//! Queues: port 0 uses 0 (receiveq) and 1 (transmitq). With `MULTIPORT`
//! (offered when `PORTS > 1`), 2 and 3 are the control receiveq and
//! transmitq, and port `n ≥ 1` uses `2n + 2` and `2n + 3`. The multiport
//! handshake is in [`control`]: the driver says `DEVICE_READY`, the device
//! adds each port (`DEVICE_ADD`), the driver answers `PORT_READY`, the
//! device nominates port 0 as the console (`CONSOLE_PORT`), names ports
//! (`PORT_NAME`) and opens them (`PORT_OPEN`).
//!
//! `SIZE` is offered when a size is given, `EMERG_WRITE` when enabled: a
//! write to `emerg_wr` sends its low byte to port 0, in any device status.

pub mod control;

use embedded_io::{Read, ReadReady, Write};
use virtio_core::device::{DeviceQueues, VirtioDevice, read_config_bytes};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use control::Pending;

/// Feature bit: `cols` and `rows` are valid.
pub const F_SIZE: u64 = 1 << 0;
/// Feature bit: several ports and the control queues.
pub const F_MULTIPORT: u64 = 1 << 1;
/// Feature bit: `emerg_wr` is valid.
pub const F_EMERG_WRITE: u64 = 1 << 2;

/// Most segments of one chain.
pub const CHAIN_SEGMENTS: usize = 8;
/// Most chains served per queue per turn (bounds one turn's work).
const BATCH: usize = 64;
const CHUNK: usize = 64;

/// `struct virtio_console_config` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConsoleConfig {
    /// Columns (`SIZE`).
    pub cols: U16,
    /// Rows (`SIZE`).
    pub rows: U16,
    /// Most ports (`MULTIPORT`).
    pub max_nr_ports: U32,
    /// Emergency write register (`EMERG_WRITE`); reads 0.
    pub emerg_wr: U32,
}

const _: () = assert!(size_of::<ConsoleConfig>() == 12);
const EMERG_WR_OFFSET: u32 = 8;

/// The role of a virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Rx(usize),
    Tx(usize),
    ControlRx,
    ControlTx,
}

/// The queue numbers of a port: (receiveq, transmitq).
pub const fn port_queues(port: u16) -> (u16, u16) {
    if port == 0 {
        (0, 1)
    } else {
        let rx = port.saturating_mul(2).saturating_add(2);
        (rx, rx.saturating_add(1))
    }
}

/// Control receiveq (device to driver).
pub const CONTROL_RX: u16 = 2;
/// Control transmitq (driver to device).
pub const CONTROL_TX: u16 = 3;

/// One port: its backend and the state of the multiport handshake.
#[derive(Debug)]
struct Port<P> {
    backend: P,
    name: Option<&'static str>,
    /// `DEVICE_ADD` was sent.
    added: bool,
    /// The driver answered `PORT_READY` with 1.
    ready: bool,
    /// The driver opened the port (`PORT_OPEN` 1).
    open: bool,
    pending: Pending,
    /// A receive buffer waiting for input.
    held: Option<Chain<CHAIN_SEGMENTS>>,
}

/// The console device with `PORTS` ports over `embedded-io` backends.
#[derive(Debug)]
pub struct Console<P, const PORTS: usize> {
    ports: [Port<P>; PORTS],
    size: Option<(u16, u16)>,
    emergency: bool,
    multiport: bool,
    queue_size: u16,
    backend_errors: u32,
}

impl<P: Read + Write + ReadReady, const PORTS: usize> Console<P, PORTS> {
    /// A console with one backend per port (port 0 first). `MULTIPORT` is
    /// offered when there is more than one port.
    pub fn new(backends: [P; PORTS]) -> Self {
        Self {
            ports: backends.map(|backend| Port {
                backend,
                name: None,
                added: false,
                ready: false,
                open: false,
                pending: Pending::empty(),
                held: None,
            }),
            size: None,
            emergency: false,
            multiport: false,
            queue_size: 64,
            backend_errors: 0,
        }
    }

    /// Offers `SIZE` with this console size.
    #[must_use]
    pub fn with_size(mut self, cols: u16, rows: u16) -> Self {
        self.size = Some((cols, rows));
        self
    }

    /// Offers `EMERG_WRITE` (bytes go to port 0's backend).
    #[must_use]
    pub fn with_emergency_write(mut self) -> Self {
        self.emergency = true;
        self
    }

    /// Names a port (sent with `PORT_NAME` under `MULTIPORT`).
    #[must_use]
    pub fn with_name(mut self, port: usize, name: &'static str) -> Self {
        if let Some(p) = self.ports.get_mut(port) {
            p.name = Some(name);
        }
        self
    }

    /// A port's backend.
    pub fn backend(&self, port: usize) -> Option<&P> {
        self.ports.get(port).map(|p| &p.backend)
    }

    /// A port's backend, e.g. to feed it input (then call
    /// `DeviceCore::poll`).
    pub fn backend_mut(&mut self, port: usize) -> Option<&mut P> {
        self.ports.get_mut(port).map(|p| &mut p.backend)
    }

    /// Whether the driver has opened `port` (always false without
    /// `MULTIPORT`).
    pub fn is_open(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|p| p.open)
    }

    /// Whether the driver said the port is ready.
    pub fn is_ready(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|p| p.ready)
    }

    /// Receive buffers held waiting for input.
    pub fn held_buffers(&self) -> usize {
        self.ports.iter().filter(|p| p.held.is_some()).count()
    }

    /// Times a backend failed.
    pub fn backend_errors(&self) -> u32 {
        self.backend_errors
    }

    fn offers_multiport(&self) -> bool {
        PORTS > 1
    }

    fn role(&self, queue: u16) -> Option<Role> {
        let role = match queue {
            0 => Role::Rx(0),
            1 => Role::Tx(0),
            CONTROL_RX if self.multiport => Role::ControlRx,
            CONTROL_TX if self.multiport => Role::ControlTx,
            q if self.multiport => {
                let port = usize::from(q.checked_sub(2)? / 2);
                if q % 2 == 0 {
                    Role::Rx(port)
                } else {
                    Role::Tx(port)
                }
            }
            _ => return None,
        };
        match role {
            Role::Rx(p) | Role::Tx(p) if p >= PORTS => None,
            role => Some(role),
        }
    }

    fn config(&self) -> ConsoleConfig {
        let (cols, rows) = self.size.unwrap_or((0, 0));
        ConsoleConfig {
            cols: cols.into(),
            rows: rows.into(),
            max_nr_ports: u32::try_from(PORTS).unwrap_or(u32::MAX).into(),
            emerg_wr: 0.into(),
        }
    }

    /// Writes what the driver transmitted on `port` to its backend.
    fn transmit<M: GuestMemory, const S: usize>(
        &mut self,
        port: usize,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut errors = 0u32;
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        for _ in 0..BATCH {
            if !queues.pop(queue, &mut chain) {
                break;
            }
            if let Some(p) = self.ports.get_mut(port) {
                let mut reader = chain.reader(mem);
                let mut buf = [0u8; CHUNK];
                while reader.remaining() > 0 {
                    let n = (reader.remaining() as usize).min(CHUNK);
                    let Some(part) = buf.get_mut(..n) else { break };
                    if reader.read_exact(part).is_err() || p.backend.write_all(part).is_err() {
                        errors = errors.saturating_add(1);
                        break;
                    }
                }
                let _ = p.backend.flush();
            }
            queues.push_used(queue, chain.head(), 0);
        }
        self.backend_errors = self.backend_errors.saturating_add(errors);
    }

    /// Moves input from `port`'s backend into its receive buffers.
    fn receive<M: GuestMemory, const S: usize>(
        &mut self,
        port: usize,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let (rx, _) = port_queues(u16::try_from(port).unwrap_or(u16::MAX));
        let mem = queues.memory();
        let multiport = self.multiport;
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        if multiport && !p.ready {
            return;
        }
        for _ in 0..BATCH {
            if p.held.is_none() {
                let mut chain = Chain::new();
                if queues.pop(rx, &mut chain) {
                    p.held = Some(chain);
                }
            }
            let Some(chain) = p.held.as_ref() else {
                return;
            };
            if chain.readable_len() > 0 || chain.writable_len() == 0 {
                // virtio 1.4 §"Console Device / Driver Requirements": the
                // driver MUST NOT put a device-readable buffer in a
                // receiveq. Return it untouched.
                queues.push_used(rx, chain.head(), 0);
                p.held = None;
                continue;
            }
            let mut writer = chain.writer(mem);
            let mut buf = [0u8; CHUNK];
            while writer.remaining() > 0 && matches!(p.backend.read_ready(), Ok(true)) {
                let n = (writer.remaining() as usize).min(CHUNK);
                let Some(part) = buf.get_mut(..n) else { break };
                match p.backend.read(part) {
                    Ok(0) | Err(_) => break,
                    Ok(got) => {
                        let Some(data) = part.get(..got) else { break };
                        if writer.write_all(data).is_err() {
                            break;
                        }
                    }
                }
            }
            let written = writer.bytes_written();
            if written == 0 {
                // No input yet: keep holding the buffer.
                return;
            }
            queues.push_used(rx, chain.head(), written);
            p.held = None;
        }
    }

    /// Everything that does not wait for a particular queue: input to
    /// every port, pending control messages.
    fn pump<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        for port in 0..PORTS {
            self.receive(port, queues);
        }
        if self.multiport {
            self.send_control(queues);
        }
    }
}

impl<P: Read + Write + ReadReady, const PORTS: usize> VirtioDevice for Console<P, PORTS> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Console
    }

    fn features(&self) -> Features {
        let mut bits = 0;
        if self.size.is_some() {
            bits |= F_SIZE;
        }
        if self.offers_multiport() {
            bits |= F_MULTIPORT;
        }
        if self.emergency {
            bits |= F_EMERG_WRITE;
        }
        Features::from_bits_retain(bits)
    }

    fn num_queues(&self) -> u16 {
        if self.offers_multiport() {
            u16::try_from(PORTS)
                .unwrap_or(u16::MAX)
                .saturating_add(1)
                .saturating_mul(2)
        } else {
            2
        }
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn config_len(&self) -> u32 {
        size_of::<ConsoleConfig>() as u32
    }

    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(self.config().as_bytes(), offset, data);
    }

    /// `emerg_wr`: the low byte goes to port 0, whatever the device status
    /// (virtio 1.4 §"Console Device / Device Requirements: Device
    /// configuration layout": the device MUST allow the write even on an
    /// unconfigured device).
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        if !self.emergency || offset != EMERG_WR_OFFSET {
            return;
        }
        if let (Some(byte), Some(port)) = (data.first(), self.ports.first_mut()) {
            if port.backend.write_all(&[*byte]).is_err() {
                self.backend_errors = self.backend_errors.saturating_add(1);
            }
            let _ = port.backend.flush();
        }
    }

    fn activate(&mut self, features: Features) {
        self.multiport = features.bits() & F_MULTIPORT != 0;
    }

    fn reset(&mut self) {
        self.multiport = false;
        for p in &mut self.ports {
            p.added = false;
            p.ready = false;
            p.open = false;
            p.pending = Pending::empty();
            p.held = None;
        }
    }

    fn queue_reset(&mut self, queue: u16) {
        if let Some(Role::Rx(port)) = self.role(queue)
            && let Some(p) = self.ports.get_mut(port)
        {
            p.held = None;
        }
    }

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        match self.role(queue) {
            Some(Role::Tx(port)) => self.transmit(port, queue, queues),
            Some(Role::ControlTx) => self.receive_control(queues),
            Some(Role::Rx(_) | Role::ControlRx) | None => {}
        }
        self.pump(queues);
    }

    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        self.pump(queues);
    }
}

#[cfg(test)]
mod tests;
