//! The multiport control protocol (virtio 1.4 §"Multiport Device
//! Operation").

use embedded_io::{Read, ReadReady, Write};
use virtio_core::device::DeviceQueues;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{CHAIN_SEGMENTS, CONTROL_RX, CONTROL_TX, Console};

/// `struct virtio_console_control` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ControlMessage {
    /// Port number.
    pub id: U32,
    /// [`ControlEvent`].
    pub event: U16,
    /// Extra information.
    pub value: U16,
}

const _: () = assert!(size_of::<ControlMessage>() == 8);

/// Control events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u16)]
pub enum ControlEvent {
    /// Driver: ready for control messages (value 1) or failed (0).
    DeviceReady = 0,
    /// Device: a new port.
    DeviceAdd = 1,
    /// Device: a port is gone.
    DeviceRemove = 2,
    /// Driver: the port is ready (1) or failed (0).
    PortReady = 3,
    /// Device: the port is a console.
    ConsolePort = 4,
    /// Device: console size change.
    Resize = 5,
    /// Both: the port is open (1) or closed (0).
    PortOpen = 6,
    /// Device: the port's name follows.
    PortName = 7,
}

impl ControlEvent {
    /// The event for a number, if it names one.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::DeviceReady,
            1 => Self::DeviceAdd,
            2 => Self::DeviceRemove,
            3 => Self::PortReady,
            4 => Self::ConsolePort,
            5 => Self::Resize,
            6 => Self::PortOpen,
            7 => Self::PortName,
            _ => return None,
        })
    }
}

impl ControlEvent {
    /// The message carrying this event for port `id`.
    pub(super) fn message(self, id: usize, value: u16) -> ControlMessage {
        ControlMessage {
            id: u32::try_from(id).unwrap_or(u32::MAX).into(),
            event: (self as u16).into(),
            value: value.into(),
        }
    }
}

/// Control messages a port still owes the driver, in sending order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Pending(u8);

impl Pending {
    pub(super) const ADD: Self = Self(1);
    pub(super) const CONSOLE: Self = Self(2);
    pub(super) const NAME: Self = Self(4);
    pub(super) const OPEN: Self = Self(8);
    const ORDER: [Self; 4] = [Self::ADD, Self::CONSOLE, Self::NAME, Self::OPEN];

    pub(super) const fn empty() -> Self {
        Self(0)
    }
    fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
    fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }
}

impl<P: Read + Write + ReadReady, const PORTS: usize> Console<P, PORTS> {
    /// Handles the driver's control messages.
    pub(super) fn receive_control<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        for _ in 0..super::BATCH {
            if !queues.pop(CONTROL_TX, &mut chain) {
                break;
            }
            // A message too short to parse is returned and ignored.
            if let Ok(msg) = chain.reader(mem).read_obj::<ControlMessage>() {
                self.handle(msg);
            }
            queues.push_used(CONTROL_TX, chain.head(), 0);
        }
    }

    fn handle(&mut self, msg: ControlMessage) {
        let value = msg.value.get();
        let port = usize::try_from(msg.id.get()).unwrap_or(usize::MAX);
        match ControlEvent::from_u16(msg.event.get()) {
            Some(ControlEvent::DeviceReady) if value == 1 => {
                // virtio 1.4 §"Multiport Device Operation": the device MUST
                // NOT add a port that exists or is ≥ max_nr_ports; every
                // port here is < PORTS = max_nr_ports.
                for p in &mut self.ports {
                    if !p.added {
                        p.pending.insert(Pending::ADD);
                    }
                }
            }
            Some(ControlEvent::PortReady) => {
                let Some(p) = self.ports.get_mut(port).filter(|p| p.added) else {
                    return;
                };
                p.ready = value == 1;
                if p.ready {
                    if port == 0 {
                        p.pending.insert(Pending::CONSOLE);
                    }
                    if p.name.is_some() {
                        p.pending.insert(Pending::NAME);
                    }
                    p.pending.insert(Pending::OPEN);
                }
            }
            Some(ControlEvent::PortOpen) => {
                if let Some(p) = self.ports.get_mut(port).filter(|p| p.added) {
                    p.open = value == 1;
                }
            }
            // Device-to-driver events, failures and unknown events are
            // ignored.
            _ => {}
        }
    }

    /// Sends pending control messages while the driver has buffers for
    /// them.
    pub(super) fn send_control<M: GuestMemory, const S: usize>(
        &mut self,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        for (id, port) in self.ports.iter_mut().enumerate() {
            for kind in Pending::ORDER {
                if !port.pending.contains(kind) {
                    continue;
                }
                if !queues.pop(CONTROL_RX, &mut chain) {
                    return;
                }
                let (event, value) = match kind {
                    Pending::ADD => (ControlEvent::DeviceAdd, 0),
                    Pending::CONSOLE => (ControlEvent::ConsolePort, 1),
                    Pending::NAME => (ControlEvent::PortName, 0),
                    _ => (ControlEvent::PortOpen, 1),
                };
                let mut writer = chain.writer(mem);
                let mut sent = writer.write_obj(&event.message(id, value)).is_ok();
                if kind == Pending::NAME {
                    let name = port.name.unwrap_or_default();
                    sent &= writer.write_all(name.as_bytes()).is_ok();
                }
                // A buffer too small for the message is returned empty and
                // the message waits for the next buffer.
                let written = if sent { writer.bytes_written() } else { 0 };
                queues.push_used(CONTROL_RX, chain.head(), written);
                if sent {
                    port.pending.remove(kind);
                    if kind == Pending::ADD {
                        port.added = true;
                    }
                }
            }
        }
    }
}
