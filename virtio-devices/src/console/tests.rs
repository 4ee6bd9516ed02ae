#![allow(clippy::arithmetic_side_effects)]

use core::convert::Infallible;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::{FromBytes, IntoBytes};

use super::control::{ControlEvent, ControlMessage};
use super::*;
use crate::harness::Harness;

/// A backend: input the test feeds, output the device wrote.
#[derive(Default, Debug)]
struct Pipe {
    input: VecDeque<u8>,
    output: Vec<u8>,
}

impl embedded_io::ErrorType for Pipe {
    type Error = Infallible;
}
impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.input.len());
        for b in &mut buf[..n] {
            *b = self.input.pop_front().unwrap();
        }
        Ok(n)
    }
}
impl ReadReady for Pipe {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.input.is_empty())
    }
}
impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

type One = Harness<Console<Pipe, 1>, 2>;

fn single() -> One {
    Harness::new(
        Console::new([Pipe::default()])
            .with_size(80, 25)
            .with_emergency_write(),
        Features::from_bits_retain(F_SIZE | F_EMERG_WRITE),
        &[0, 1],
    )
}

fn feed<const P: usize, const Q: usize>(
    h: &mut Harness<Console<Pipe, P>, Q>,
    port: usize,
    bytes: &[u8],
) {
    h.core
        .device_mut()
        .backend_mut(port)
        .unwrap()
        .input
        .extend(bytes.iter().copied());
    while h.core.poll().work_left() {}
}

#[test]
fn transmit_reaches_the_backend() {
    let mut h = single();
    let a = h.put(b"hello, ");
    let b = h.put(b"world");
    assert_eq!(h.request(1, &[a, b], &[]).len, 0);
    assert_eq!(h.core.device().backend(0).unwrap().output, b"hello, world");
}

#[test]
fn receive_buffers_are_held_until_input_arrives() {
    let mut h = single();
    let buf = h.space(16);
    let id = h.add(0, &[], &[buf]);
    h.kick(0);
    assert!(h.used(0).is_none());
    feed(&mut h, 0, b"abc");
    let used = h.used(0).unwrap();
    assert_eq!((used.id, used.len), (id, 3));
    assert_eq!(&h.read(buf)[..3], b"abc");
    // Input that is already there is delivered at the notification.
    feed(&mut h, 0, b"xyz");
    let buf = h.space(2);
    h.add(0, &[], &[buf]);
    h.kick(0);
    assert_eq!(h.used(0).unwrap().len, 2);
    assert_eq!(h.read(buf), b"xy");
}

#[test]
fn readable_receive_buffers_are_returned_untouched() {
    // virtio 1.4 §"Console Device / Driver Requirements: Device Operation":
    // the driver MUST NOT put a device-readable buffer in a receiveq.
    let mut h = single();
    feed(&mut h, 0, b"q");
    let r = h.put(b"zz");
    let w = h.space(4);
    assert_eq!(h.request(0, &[r], &[w]).len, 0);
    assert_eq!(h.read(w), [0xee; 4]);
    let w = h.space(4);
    assert_eq!(h.request(0, &[], &[w]).len, 1);
}

#[test]
fn size_config() {
    let h = single();
    let mut raw = [0u8; 12];
    h.core.read_config(0, &mut raw);
    let c = ConsoleConfig::read_from_bytes(&raw[..]).unwrap();
    assert_eq!((c.cols.get(), c.rows.get()), (80, 25));
    assert_eq!(c.max_nr_ports.get(), 1);
    assert_ne!(h.core.device_features().bits() & F_SIZE, 0);
    assert_eq!(h.core.device_features().bits() & F_MULTIPORT, 0);
}

#[test]
fn emergency_write_works_on_an_unconfigured_device() {
    // spec: console.device-initialization.1, console.device-initialization.2
    // virtio 1.4 §"Console Device / Device Requirements: Device
    // configuration layout": the device MUST allow a write to emerg_wr
    // even on an unconfigured device, and SHOULD transmit its low byte.
    let mut core: virtio_core::device::DeviceCore<Console<Pipe, 1>, _, 2> =
        virtio_core::device::DeviceCore::new(
            Console::new([Pipe::default()]).with_emergency_write(),
            crate::harness::memory(),
        );
    assert_eq!(core.status().bits(), 0);
    core.write_config(8, &0x0000_0141u32.to_le_bytes());
    assert_eq!(core.device().backend(0).unwrap().output, b"A");
    // Without EMERG_WRITE offered, the write is ignored.
    let mut core: virtio_core::device::DeviceCore<Console<Pipe, 1>, _, 2> =
        virtio_core::device::DeviceCore::new(
            Console::new([Pipe::default()]),
            crate::harness::memory(),
        );
    core.write_config(8, b"A");
    assert!(core.device().backend(0).unwrap().output.is_empty());
}

type Two = Harness<Console<Pipe, 2>, 6>;

fn multi() -> Two {
    let h: Two = Harness::new(
        Console::new([Pipe::default(), Pipe::default()]).with_name(1, "org.test.port"),
        Features::from_bits_retain(F_MULTIPORT),
        &[0, 1, 2, 3, 4, 5],
    );
    h
}

fn control(h: &mut Two, id: u32, event: ControlEvent, value: u16) {
    let msg = ControlMessage {
        id: id.into(),
        event: (event as u16).into(),
        value: value.into(),
    };
    let seg = h.put(msg.as_bytes());
    assert_eq!(h.request(CONTROL_TX, &[seg], &[]).len, 0);
}

/// Collects the control messages the device sent (offering buffers first).
fn drain(h: &mut Two, bufs: &mut Vec<Segment>) -> Vec<(u32, u16, u16, Vec<u8>)> {
    let mut out = vec![];
    while let Some(used) = h.used(CONTROL_RX) {
        let seg = bufs.remove(0);
        let bytes = h.read(seg);
        let msg = ControlMessage::read_from_bytes(&bytes[..8]).unwrap();
        out.push((
            msg.id.get(),
            msg.event.get(),
            msg.value.get(),
            bytes[8..used.len as usize].to_vec(),
        ));
        // Give the buffer back, as a driver does.
        let again = h.space(64);
        h.add(CONTROL_RX, &[], &[again]);
        bufs.push(again);
    }
    out
}

#[test]
fn multiport_handshake() {
    // spec: console.multiport-device-operation.1
    // virtio 1.4 §"Multiport Device Operation".
    let mut h = multi();
    let mut raw = [0u8; 12];
    h.core.read_config(0, &mut raw);
    assert_eq!(
        ConsoleConfig::read_from_bytes(&raw[..])
            .unwrap()
            .max_nr_ports
            .get(),
        2
    );
    let mut bufs: Vec<Segment> = (0..4).map(|_| h.space(64)).collect();
    for b in bufs.clone() {
        h.add(CONTROL_RX, &[], &[b]);
    }
    h.kick(CONTROL_RX);
    assert!(drain(&mut h, &mut bufs).is_empty());
    control(&mut h, 0, ControlEvent::DeviceReady, 1);
    let add = ControlEvent::DeviceAdd as u16;
    assert_eq!(
        drain(&mut h, &mut bufs),
        vec![(0, add, 0, vec![]), (1, add, 0, vec![])]
    );
    control(&mut h, 0, ControlEvent::PortReady, 1);
    assert_eq!(
        drain(&mut h, &mut bufs),
        vec![
            (0, ControlEvent::ConsolePort as u16, 1, vec![]),
            (0, ControlEvent::PortOpen as u16, 1, vec![]),
        ]
    );
    control(&mut h, 1, ControlEvent::PortReady, 1);
    assert_eq!(
        drain(&mut h, &mut bufs),
        vec![
            (
                1,
                ControlEvent::PortName as u16,
                0,
                b"org.test.port".to_vec()
            ),
            (1, ControlEvent::PortOpen as u16, 1, vec![]),
        ]
    );
    control(&mut h, 1, ControlEvent::PortOpen, 1);
    assert!(h.core.device().is_open(1));
    assert!(h.core.device().is_ready(1));
    // virtio 1.4 §"Multiport Device Operation": the device MUST NOT add a
    // port which exists (a repeated DEVICE_READY adds nothing), nor one
    // ≥ max_nr_ports (a PORT_READY for port 7 is ignored).
    control(&mut h, 0, ControlEvent::DeviceReady, 1);
    control(&mut h, 7, ControlEvent::PortReady, 1);
    assert!(drain(&mut h, &mut bufs).is_empty());
    // Port 1's data goes both ways on queues 4 and 5.
    let (rx, tx) = port_queues(1);
    assert_eq!((rx, tx), (4, 5));
    let out = h.put(b"to port 1");
    h.request(tx, &[out], &[]);
    assert_eq!(h.core.device().backend(1).unwrap().output, b"to port 1");
    assert!(h.core.device().backend(0).unwrap().output.is_empty());
    let buf = h.space(8);
    h.add(rx, &[], &[buf]);
    h.kick(rx);
    feed(&mut h, 1, b"from 1");
    assert_eq!(h.used(rx).unwrap().len, 6);
    assert_eq!(&h.read(buf)[..6], b"from 1");
}

#[test]
fn ports_do_not_receive_before_port_ready() {
    let mut h = multi();
    let buf = h.space(8);
    h.add(0, &[], &[buf]);
    h.kick(0);
    feed(&mut h, 0, b"early");
    assert!(h.used(0).is_none());
}

#[test]
fn short_control_messages_are_returned_and_ignored() {
    let mut h = multi();
    let seg = h.put(&[0, 0, 0]);
    assert_eq!(h.request(CONTROL_TX, &[seg], &[]).len, 0);
    assert!(!h.core.device().is_ready(0));
}

#[test]
fn reset_drops_held_receive_buffers() {
    // spec: reset.device-reset.2
    // virtio 1.4 §"Device Reset": after reset the device MUST NOT interact
    // with the queues: a buffer held from before is forgotten.
    let mut h = single();
    let buf = h.space(16);
    h.add(0, &[], &[buf]);
    h.kick(0);
    assert_eq!(h.core.device().held_buffers(), 1);
    h.core.set_status(0);
    assert_eq!(h.core.device().held_buffers(), 0);
    feed(&mut h, 0, b"late");
    assert!(h.used(0).is_none());
}
