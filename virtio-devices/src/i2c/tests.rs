#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use embedded_hal::i2c::{ErrorKind, ErrorType, NoAcknowledgeSource, TenBitAddress};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use virtio_core::device::{DeviceCore, FeaturesError};
use virtio_core::queue::Segment;
use virtio_core::spec::{DeviceStatus, Features};
use zerocopy::IntoBytes;

use super::eeprom::Eeprom;
use super::*;
use crate::harness::{self, Harness};

type H<B> = Harness<I2cAdapter<B>, 1>;

fn rig<B: I2c>(adapter: I2cAdapter<B>) -> H<B> {
    Harness::new(
        adapter,
        Features::from_bits_retain(F_ZERO_LENGTH_REQUEST),
        &[0],
    )
}

fn hdr(addr: u16, flags: u32) -> I2cOutHdr {
    I2cOutHdr {
        addr: addr.into(),
        padding: 0.into(),
        flags: flags.into(),
    }
}

fn a7(a: u8) -> u16 {
    Address::SevenBit(a).encode().unwrap()
}

/// A request as the driver lays it out.
struct Sent {
    id: u16,
    header: Segment,
    out: Option<Segment>,
    data: Option<Segment>,
    status: Segment,
}

/// Adds (without kicking) a request: header, write data `out`, `read`
/// bytes of read room, status.
fn add<B: I2c>(h: &mut H<B>, addr: u16, flags: u32, out: &[u8], read: u32) -> Sent {
    let header = h.put(hdr(addr, flags).as_bytes());
    let mut readable = vec![header];
    let out = (!out.is_empty()).then(|| h.put(out));
    readable.extend(out);
    let data = (read > 0).then(|| h.space(read));
    let status = h.space(1);
    let mut writable: Vec<Segment> = data.into_iter().collect();
    writable.push(status);
    let id = h.add(0, &readable, &writable);
    Sent {
        id,
        header,
        out,
        data,
        status,
    }
}

fn status<B: I2c>(h: &H<B>, s: &Sent) -> u8 {
    h.read(s.status)[0]
}

/// Kicks and returns the used ids and lengths in completion order.
fn kick_collect<B: I2c>(h: &mut H<B>) -> Vec<(u16, u32)> {
    h.kick(0);
    let mut out = vec![];
    while let Some(u) = h.used(0) {
        out.push((u.id, u.len));
    }
    out
}

fn write_read<B: I2c>(h: &mut H<B>, addr: u8, out: &[u8], read: u32) -> (Sent, Sent) {
    let w = add(h, a7(addr), FLAGS_FAIL_NEXT, out, 0);
    let r = add(h, a7(addr), FLAGS_M_RD, &[], read);
    (w, r)
}

fn eeprom() -> H<Eeprom> {
    rig(I2cAdapter::new(Eeprom::default()))
}

/// One recorded transaction: address, 10-bit, (is read, bytes) per operation.
type Logged = (u16, bool, Vec<(bool, Vec<u8>)>);

// A bus with 10-bit addresses that records every transaction and fails
// those the test asks it to.
#[derive(Clone, Default)]
struct Recorder {
    log: Rc<RefCell<Vec<Logged>>>,
    fail: Option<ErrorKind>,
    fill: u8,
}

impl Recorder {
    fn record(&mut self, addr: u16, ten: bool, ops: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
        let mut seen = vec![];
        for op in ops.iter_mut() {
            match op {
                Operation::Write(b) => seen.push((false, b.to_vec())),
                Operation::Read(b) => {
                    b.fill(self.fill);
                    seen.push((true, b.to_vec()));
                }
            }
        }
        self.log.borrow_mut().push((addr, ten, seen));
        self.fail.map_or(Ok(()), Err)
    }
}

impl ErrorType for Recorder {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for Recorder {
    fn transaction(&mut self, a: u8, ops: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
        self.record(u16::from(a), false, ops)
    }
}

impl I2c<TenBitAddress> for Recorder {
    fn transaction(&mut self, a: u16, ops: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
        self.record(a, true, ops)
    }
}

// ---------------------------------------------------------------------------
// Features

// spec: i2c.device-operation.1
#[test]
fn offers_zero_length_request_and_rejects_a_driver_without_it() {
    // virtio 1.4 §"I2C Adapter Device / Device Operation": the device MUST
    // offer ZERO_LENGTH_REQUEST and MUST reject a driver that doesn't
    // negotiate it.
    let adapter: I2cAdapter<Mock> = I2cAdapter::new(Mock::new(&[]));
    let mut core = DeviceCore::<_, _, 1>::new(adapter, harness::memory());
    assert_ne!(core.device_features().bits() & F_ZERO_LENGTH_REQUEST, 0);
    core.set_status(1 | 2);
    core.set_driver_features(Features::VERSION_1);
    core.set_status(1 | 2 | 8);
    assert!(!core.status().contains(DeviceStatus::FEATURES_OK));
    assert_eq!(core.features_error(), Some(FeaturesError::Rejected));
    core.device_mut().bus_mut().done();

    // With the bit the driver is accepted.
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    assert!(h.core.status().contains(DeviceStatus::FEATURES_OK));
    h.core.device_mut().bus_mut().done();
}

// ---------------------------------------------------------------------------
// Addresses

#[test]
fn addr_field_decodes_7_and_10_bit_addresses() {
    assert_eq!(Address::decode(0x50 << 1), Some(Address::SevenBit(0x50)));
    assert_eq!(Address::decode(0), Some(Address::SevenBit(0)));
    assert_eq!(Address::decode(0x77 << 1), Some(Address::SevenBit(0x77)));
    // 10-bit 0x2a5: A9 A8 = 0b10, A7..A0 = 0xa5.
    assert_eq!(Address::decode(0xa5f4), Some(Address::TenBit(0x2a5)));
    assert_eq!(Address::decode(0x00f0), Some(Address::TenBit(0)));
    assert_eq!(Address::decode(0xfff6), Some(Address::TenBit(0x3ff)));
    // Bit 0 set, or a high byte with a 7-bit low byte: neither form.
    assert_eq!(Address::decode(0x00a1), None);
    assert_eq!(Address::decode(0x01a0), None);
    for a in 0..=0x3ffu16 {
        let t = Address::TenBit(a);
        assert_eq!(Address::decode(t.encode().unwrap()), Some(t));
    }
    for a in 0..0x78u8 {
        let s = Address::SevenBit(a);
        assert_eq!(Address::decode(s.encode().unwrap()), Some(s));
    }
    assert_eq!(Address::SevenBit(0x80).encode(), None);
    assert_eq!(Address::TenBit(0x400).encode(), None);
}

#[test]
fn ten_bit_requests_go_to_the_ten_bit_bus() {
    let bus = Recorder {
        fill: 0x5a,
        ..Recorder::default()
    };
    let log = bus.log.clone();
    let mut h = rig(I2cAdapter::new_ten_bit(bus));
    let ten = Address::TenBit(0x2a5).encode().unwrap();
    let w = add(&mut h, ten, FLAGS_FAIL_NEXT, &[1, 2], 0);
    let r = add(&mut h, ten, FLAGS_M_RD, &[], 3);
    let s = add(&mut h, a7(0x21), 0, &[9], 0);
    kick_collect(&mut h);
    assert_eq!((status(&h, &w), status(&h, &r), status(&h, &s)), (0, 0, 0));
    assert_eq!(h.read(r.data.unwrap()), [0x5a; 3]);
    let log = log.borrow();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0],
        (
            0x2a5,
            true,
            vec![(false, vec![1, 2]), (true, vec![0x5a; 3])]
        )
    );
    assert_eq!(log[1], (0x21, false, vec![(false, vec![9])]));
}

#[test]
fn ten_bit_address_on_a_seven_bit_adapter_is_an_error() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    let r = add(&mut h, Address::TenBit(0x123).encode().unwrap(), 0, &[1], 0);
    kick_collect(&mut h);
    assert_eq!(status(&h, &r), MSG_ERR);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::TenBitUnsupported)
    );
    h.core.device_mut().bus_mut().done();
}

#[test]
fn an_addr_in_neither_form_is_an_error() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    let r = add(&mut h, 0x0151, 0, &[1], 0);
    kick_collect(&mut h);
    assert_eq!(status(&h, &r), MSG_ERR);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::Request(RequestError::BadAddress(0x0151)))
    );
    h.core.device_mut().bus_mut().done();
}

// ---------------------------------------------------------------------------
// Requests

// spec: i2c.device-operation.4
#[test]
fn a_write_reaches_the_bus_and_its_buffer_is_unchanged() {
    // virtio 1.4 §"Device Operation": the device MUST not change the value
    // of buf for a write request.
    let data = [0x10, 0xde, 0xad, 0xbe, 0xef];
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, data.to_vec()),
        T::transaction_end(0x50),
    ])));
    let w = add(&mut h, a7(0x50), 0, &data, 0);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(w.id, 1)]);
    assert_eq!(status(&h, &w), MSG_OK);
    assert_eq!(h.read(w.out.unwrap()), data);
    h.core.device_mut().bus_mut().done();
}

// spec: i2c.device-operation.5
#[test]
fn a_read_places_exactly_the_buffers_length() {
    // virtio 1.4 §"Device Operation": the device MUST place one I2C segment
    // of the "length of buf", for the read request, into the buf.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::read(0x50, vec![1, 2, 3, 4, 5, 6, 7]),
        T::transaction_end(0x50),
    ])));
    let r = add(&mut h, a7(0x50), FLAGS_M_RD, &[], 7);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(r.id, 8)]);
    assert_eq!(h.read(r.data.unwrap()), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(status(&h, &r), MSG_OK);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn a_read_split_over_descriptors_fills_them_in_order() {
    // The device MUST NOT assume a particular arrangement of descriptors.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::read(0x50, vec![1, 2, 3, 4, 5]),
        T::transaction_end(0x50),
    ])));
    let bytes = hdr(a7(0x50), FLAGS_M_RD);
    let header = bytes.as_bytes();
    let h1 = h.put(&header[..3]);
    let h2 = h.put(&header[3..]);
    let d1 = h.space(2);
    let d2 = h.space(4); // 3 data bytes and the status
    h.add(0, &[h1, h2], &[d1, d2]);
    kick_collect(&mut h);
    assert_eq!(h.read(d1), [1, 2]);
    assert_eq!(h.read(d2), [3, 4, 5, MSG_OK]);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn zero_length_write_and_read_are_empty_operations() {
    // ZERO_LENGTH_REQUEST: no buf at all (the SMBus Quick command).
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![]),
        T::transaction_end(0x50),
        T::transaction_start(0x51),
        T::read(0x51, vec![]),
        T::transaction_end(0x51),
    ])));
    let w = add(&mut h, a7(0x50), 0, &[], 0);
    let r = add(&mut h, a7(0x51), FLAGS_M_RD, &[], 0);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(w.id, 1), (r.id, 1)]);
    assert_eq!((status(&h, &w), status(&h, &r)), (MSG_OK, MSG_OK));
    h.core.device_mut().bus_mut().done();
}

// spec: i2c.device-operation.3
#[test]
fn the_header_is_never_written_even_with_reserved_flags() {
    // virtio 1.4 §"Device Operation": the device MUST NOT change the value
    // of addr, and reserved bits of flags. Reserved bits ask for something
    // the device does not know: MSG_ERR, nothing on the bus.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![7]),
        T::transaction_end(0x50),
    ])));
    let ok = add(&mut h, a7(0x50), 0, &[7], 0);
    let reserved = add(&mut h, a7(0x50), 0x8000_0004, &[7], 0);
    kick_collect(&mut h);
    assert_eq!(h.read(ok.header), hdr(a7(0x50), 0).as_bytes());
    assert_eq!(
        h.read(reserved.header),
        hdr(a7(0x50), 0x8000_0004).as_bytes()
    );
    assert_eq!(status(&h, &ok), MSG_OK);
    assert_eq!(status(&h, &reserved), MSG_ERR);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::Unsupported(0x8000_0004))
    );
    h.core.device_mut().bus_mut().done();
}

#[test]
fn buffer_direction_must_match_m_rd() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    // M_RD with write data, and a write with read room.
    let a = add(&mut h, a7(0x50), FLAGS_M_RD, &[1, 2], 0);
    let b = add(&mut h, a7(0x50), 0, &[], 4);
    kick_collect(&mut h);
    assert_eq!((status(&h, &a), status(&h, &b)), (MSG_ERR, MSG_ERR));
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::Request(RequestError::WriteWithReadBuffer {
            bytes: 4
        }))
    );
    h.core.device_mut().bus_mut().done();
}

#[test]
fn a_short_header_is_an_error() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    let header = h.put(&[0xa0, 0, 0, 0]);
    let status = h.space(1);
    let id = h.add(0, &[header], &[status]);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(id, 1)]);
    assert_eq!(h.read(status), [MSG_ERR]);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn a_malformed_chain_gets_err_at_its_last_byte() {
    // A readable descriptor after a writable one: the queue rejects the
    // chain and the core writes the device's MSG_ERR where the driver reads
    // the status.
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    let header = h.put(hdr(a7(0x50), 0).as_bytes());
    let status = h.space(1);
    let extra = h.put(&[1]);
    let tail = h.space(1);
    h.add_mixed(
        0,
        &[
            (header, false),
            (status, true),
            (extra, false),
            (tail, true),
        ],
    );
    kick_collect(&mut h);
    assert_eq!(h.read(tail), [MSG_ERR]);
    assert_eq!(h.core.malformed_chains(0), 1);
    assert!(h.core.is_live());
    h.core.device_mut().bus_mut().done();
}

#[test]
fn a_chain_without_a_status_byte_needs_reset() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    let header = h.put(hdr(a7(0x50), 0).as_bytes());
    h.add(0, &[header], &[]);
    kick_collect(&mut h);
    assert!(h.core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert_eq!(h.core.device().stats().no_status, 1);
    h.core.device_mut().bus_mut().done();
}

// ---------------------------------------------------------------------------
// Transactions and order

#[test]
fn a_fail_next_group_is_one_transaction() {
    // Write the register number, read it back: repeated START, one STOP.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![0x10]),
        T::read(0x50, vec![0xaa, 0xbb]),
        T::transaction_end(0x50),
    ])));
    let (w, r) = write_read(&mut h, 0x50, &[0x10], 2);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(w.id, 1), (r.id, 3)]);
    assert_eq!(h.read(r.data.unwrap()), [0xaa, 0xbb]);
    assert_eq!((status(&h, &w), status(&h, &r)), (MSG_OK, MSG_OK));
    assert_eq!(h.core.device().stats().transactions, 1);
    h.core.device_mut().bus_mut().done();
}

// spec: i2c.device-operation.6
#[test]
fn requests_are_processed_and_completed_in_order() {
    // virtio 1.4 §"Device Operation": the device MUST guarantee the
    // requests in the virtqueue being processed in order. The mock fails
    // on any other order.
    let mut expect = vec![];
    for a in 0x20..0x28u8 {
        expect.push(T::transaction_start(a));
        expect.push(T::write(a, vec![a]));
        expect.push(T::transaction_end(a));
        expect.push(T::transaction_start(a));
        expect.push(T::read(a, vec![a, !a]));
        expect.push(T::transaction_end(a));
    }
    let mut h = rig(I2cAdapter::new(Mock::new(&expect)));
    let mut sent = vec![];
    for a in 0x20..0x28u8 {
        sent.push(add(&mut h, a7(a), 0, &[a], 0));
        sent.push(add(&mut h, a7(a), FLAGS_M_RD, &[], 2));
    }
    let used = kick_collect(&mut h);
    let ids: Vec<u16> = sent.iter().map(|s| s.id).collect();
    assert_eq!(used.iter().map(|u| u.0).collect::<Vec<_>>(), ids);
    for (i, a) in (0x20..0x28u8).enumerate() {
        assert_eq!(h.read(sent[2 * i + 1].data.unwrap()), [a, !a]);
    }
    h.core.device_mut().bus_mut().done();
}

// spec: i2c.device-operation.7
#[test]
fn a_failed_transaction_fails_its_first_request_and_the_rest_of_the_group() {
    // virtio 1.4 §"Device Operation": the device MUST set the status of the
    // first failed request to MSG_ERR and MAY set the rest of the group's.
    // A NACK on the address fails the whole transaction: every request of
    // the group reads MSG_ERR, and the next group runs.
    let bus = Recorder {
        fail: Some(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)),
        ..Recorder::default()
    };
    let log = bus.log.clone();
    let mut h = rig(I2cAdapter::new(bus));
    let w = add(&mut h, a7(0x33), FLAGS_FAIL_NEXT, &[1], 0);
    let r = add(&mut h, a7(0x33), FLAGS_M_RD, &[], 4);
    let after = add(&mut h, a7(0x34), 0, &[2], 0);
    kick_collect(&mut h);
    assert_eq!((status(&h, &w), status(&h, &r)), (MSG_ERR, MSG_ERR));
    // The read buffer is not data: zeros, not what the bus left.
    assert_eq!(h.read(r.data.unwrap()), [0; 4]);
    // The next group is not part of the failed one: it ran (and failed on
    // its own NACK).
    assert_eq!(log.borrow().len(), 2);
    assert_eq!(status(&h, &after), MSG_ERR);
    let stats = h.core.device().stats();
    assert_eq!((stats.transactions, stats.nacks, stats.errors), (2, 2, 3));
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::Bus(BusError::NoAcknowledge(Nack::Address)))
    );
}

// spec: i2c.device-operation.7
#[test]
fn a_malformed_request_fails_its_whole_group_before_the_bus_sees_any() {
    // The second of three requests is malformed: none runs, all three are
    // MSG_ERR (the first failed one and, as allowed, the rest), and the
    // request after the group runs normally.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x40),
        T::write(0x40, vec![5]),
        T::transaction_end(0x40),
    ])));
    let a = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[1], 0);
    let b = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT | FLAGS_M_RD, &[1], 0);
    let c = add(&mut h, a7(0x50), FLAGS_M_RD, &[], 2);
    let d = add(&mut h, a7(0x40), 0, &[5], 0);
    let used = kick_collect(&mut h);
    assert_eq!(
        used.iter().map(|u| u.0).collect::<Vec<_>>(),
        [a.id, b.id, c.id, d.id]
    );
    assert_eq!(
        [
            status(&h, &a),
            status(&h, &b),
            status(&h, &c),
            status(&h, &d)
        ],
        [MSG_ERR, MSG_ERR, MSG_ERR, MSG_OK]
    );
    h.core.device_mut().bus_mut().done();
}

#[test]
fn bus_errors_map_to_err_and_are_counted() {
    for (kind, expect) in [
        (
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data),
            BusError::NoAcknowledge(Nack::Data),
        ),
        (
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            BusError::NoAcknowledge(Nack::Unknown),
        ),
        (ErrorKind::Bus, BusError::Bus),
        (ErrorKind::ArbitrationLoss, BusError::ArbitrationLoss),
        (ErrorKind::Overrun, BusError::Overrun),
        (ErrorKind::Other, BusError::Other),
    ] {
        let mut h = rig(I2cAdapter::new(Recorder {
            fail: Some(kind),
            ..Recorder::default()
        }));
        let r = add(&mut h, a7(0x50), FLAGS_M_RD, &[], 1);
        kick_collect(&mut h);
        assert_eq!(status(&h, &r), MSG_ERR);
        assert_eq!(
            h.core.device().last_error(),
            Some(TransferError::Bus(expect))
        );
        assert!(!std::format!("{}", TransferError::Bus(expect)).is_empty());
    }
}

#[test]
fn a_group_naming_two_targets_runs_one_transaction_per_target() {
    let bus = Recorder {
        fill: 0x11,
        ..Recorder::default()
    };
    let log = bus.log.clone();
    let mut h = rig(I2cAdapter::new(bus));
    let a = add(&mut h, a7(0x10), FLAGS_FAIL_NEXT, &[1], 0);
    let b = add(&mut h, a7(0x10), FLAGS_FAIL_NEXT | FLAGS_M_RD, &[], 1);
    let c = add(&mut h, a7(0x11), 0, &[2], 0);
    kick_collect(&mut h);
    assert_eq!([status(&h, &a), status(&h, &b), status(&h, &c)], [0, 0, 0]);
    let log = log.borrow();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].0, 0x10);
    assert_eq!(log[0].2.len(), 2);
    assert_eq!(log[1], (0x11, false, vec![(false, vec![2])]));
}

#[test]
fn a_group_too_big_for_the_device_fails_whole() {
    // MSGS = 2: a group of three cannot be one transaction.
    let mut h: Harness<I2cAdapter<Mock, 2, 8>, 1> = Harness::new(
        I2cAdapter::new(Mock::new(&[])),
        Features::from_bits_retain(F_ZERO_LENGTH_REQUEST),
        &[0],
    );
    let sent: Vec<u16> = (0..3)
        .map(|i| {
            let header = h.put(hdr(a7(0x50), if i < 2 { FLAGS_FAIL_NEXT } else { 0 }).as_bytes());
            let status = h.space(1);
            h.add(0, &[header], &[status])
        })
        .collect();
    h.kick(0);
    let mut used = vec![];
    while let Some(u) = h.used(0) {
        used.push(u.id);
    }
    assert_eq!(used, sent);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::TooManyMessages)
    );
    assert_eq!(h.core.device().stats().errors, 3);
    // Too many bytes: 9 > BYTES = 8.
    let header = h.put(hdr(a7(0x50), 0).as_bytes());
    let data = h.put(&[0; 9]);
    let status = h.space(1);
    h.add(0, &[header, data], &[status]);
    h.kick(0);
    assert_eq!(h.read(status), [MSG_ERR]);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::TooManyBytes)
    );
    h.core.device_mut().bus_mut().done();
}

#[test]
fn an_open_group_runs_when_the_ring_holds_no_more() {
    // Linux queues what fits in a full ring, FAIL_NEXT still set on the
    // last one, kicks and waits: the device runs what it has.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![0]),
        T::read(0x50, vec![9]),
        T::transaction_end(0x50),
    ])));
    let w = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[0], 0);
    let r = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT | FLAGS_M_RD, &[], 1);
    let used = kick_collect(&mut h);
    assert_eq!(used, [(w.id, 1), (r.id, 2)]);
    assert_eq!(h.core.device().held(), 0);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn a_group_cut_by_the_budget_is_held_and_finished_by_poll() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![1]),
        T::write(0x50, vec![2]),
        T::read(0x50, vec![3]),
        T::transaction_end(0x50),
    ])));
    h.core.set_budget(2);
    let a = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[1], 0);
    let b = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[2], 0);
    let c = add(&mut h, a7(0x50), FLAGS_M_RD, &[], 1);
    let service = h.core.notify(0);
    assert!(service.work_left());
    assert_eq!(h.core.device().held(), 2);
    assert!(
        h.used(0).is_none(),
        "nothing completes before the group ends"
    );
    while h.core.poll().work_left() {}
    let mut used = vec![];
    while let Some(u) = h.used(0) {
        used.push(u.id);
    }
    assert_eq!(used, [a.id, b.id, c.id]);
    assert_eq!(h.read(c.data.unwrap()), [3]);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn an_open_group_that_spends_the_budget_exactly_still_runs() {
    // The ring holds exactly the budget's worth, the last with FAIL_NEXT
    // (a driver that filled its ring): the budget runs out as the ring
    // empties, and the group must still run (poll_again), not wait for a
    // notification the driver will never send.
    let mut h = rig(I2cAdapter::new(Mock::new(&[
        T::transaction_start(0x50),
        T::write(0x50, vec![1]),
        T::read(0x50, vec![7]),
        T::transaction_end(0x50),
    ])));
    h.core.set_budget(2);
    let a = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[1], 0);
    let b = add(&mut h, a7(0x50), FLAGS_FAIL_NEXT | FLAGS_M_RD, &[], 1);
    let service = h.core.notify(0);
    assert!(service.work_left(), "the held group must be reported");
    while h.core.poll().work_left() {}
    let mut used = vec![];
    while let Some(u) = h.used(0) {
        used.push(u.id);
    }
    assert_eq!(used, [a.id, b.id]);
    assert_eq!(h.read(b.data.unwrap()), [7]);
    assert_eq!(h.core.device().held(), 0);
    h.core.device_mut().bus_mut().done();
}

#[test]
fn reset_forgets_a_held_group() {
    let mut h = rig(I2cAdapter::new(Mock::new(&[])));
    h.core.set_budget(1);
    add(&mut h, a7(0x50), FLAGS_FAIL_NEXT, &[1], 0);
    add(&mut h, a7(0x50), 0, &[2], 0);
    let _ = h.core.notify(0);
    assert_eq!(h.core.device().held(), 1);
    h.core.set_status(0);
    assert_eq!(h.core.device().held(), 0);
    h.core.device_mut().bus_mut().done();
}

// ---------------------------------------------------------------------------
// The EEPROM model behind the device

// spec: i2c.device-operation.2
#[test]
fn eeprom_page_write_read_across_pages_and_absent_target_nack() {
    // Consistent with the hardware (virtio 1.4 §"Device Operation": SHOULD):
    // a page write wraps inside its page, a read auto-increments across
    // pages, an absent address NACKs.
    let mut h = eeprom();
    // Page write of 8 bytes at 0x08 (page 1), then 10 bytes at 0x13: the
    // last five wrap to 0x10..0x14.
    let w = add(&mut h, a7(0x50), 0, &[0x08, 1, 2, 3, 4, 5, 6, 7, 8], 0);
    let mut wrap = vec![0x13];
    wrap.extend(10..20u8);
    let w2 = add(&mut h, a7(0x50), 0, &wrap, 0);
    kick_collect(&mut h);
    assert_eq!((status(&h, &w), status(&h, &w2)), (MSG_OK, MSG_OK));
    let mem = h.core.device().bus().memory();
    assert_eq!(&mem[0x08..0x10], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&mem[0x10..0x18], &[15, 16, 17, 18, 19, 12, 13, 14]);
    // Random read of 12 bytes from 0x0c: across the 0x10 page boundary.
    let (_, r) = write_read(&mut h, 0x50, &[0x0c], 12);
    kick_collect(&mut h);
    assert_eq!(
        h.read(r.data.unwrap()),
        [5, 6, 7, 8, 15, 16, 17, 18, 19, 12, 13, 14]
    );
    // Current-address read goes on from there.
    let r = add(&mut h, a7(0x50), FLAGS_M_RD, &[], 2);
    kick_collect(&mut h);
    assert_eq!(h.read(r.data.unwrap()), [0xff, 0xff]);
    // An absent target: NACK on the address.
    let (w, r) = write_read(&mut h, 0x51, &[0], 1);
    kick_collect(&mut h);
    assert_eq!((status(&h, &w), status(&h, &r)), (MSG_ERR, MSG_ERR));
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::Bus(BusError::NoAcknowledge(Nack::Address)))
    );
    // The SMBus Quick probe (zero-length write) finds the part.
    let q = add(&mut h, a7(0x50), 0, &[], 0);
    let q2 = add(&mut h, a7(0x52), 0, &[], 0);
    kick_collect(&mut h);
    assert_eq!((status(&h, &q), status(&h, &q2)), (MSG_OK, MSG_ERR));
}

#[test]
fn eeprom_read_wraps_at_256() {
    let mut e = Eeprom::default();
    for (i, b) in e.memory_mut().iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut buf = [0u8; 4];
    e.write_read(0x50, &[0xfe], &mut buf).unwrap();
    assert_eq!(buf, [0xfe, 0xff, 0, 1]);
    assert_eq!(e.transactions(), 1);
}

#[test]
fn errors_display() {
    for e in [
        TransferError::Request(RequestError::ShortHeader { readable: 3 }),
        TransferError::Request(RequestError::NoStatus),
        TransferError::Request(RequestError::BadAddress(1)),
        TransferError::Request(RequestError::ReadWithWriteBuffer { bytes: 1 }),
        TransferError::Request(RequestError::WriteWithReadBuffer { bytes: 1 }),
        TransferError::Unsupported(4),
        TransferError::TenBitUnsupported,
        TransferError::TooManyMessages,
        TransferError::TooManyBytes,
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
    assert_eq!(std::format!("{}", Address::SevenBit(0x50)), "0x50");
}
