//! [`SpiDevices`] against `embedded-hal-mock`'s expectation-based
//! `SpiDevice` (whose `transaction_start`/`transaction_end` are the chip
//! select's frame), driven by the same driver-side double as the bus
//! variant's tests: transfers queued as the spec's driver requirements say
//! (head, tx_buf, rx_buf, result).
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::vec;
use std::vec::Vec;

use embedded_hal::spi::{ErrorKind, ErrorType, Operation, SpiDevice};
use embedded_hal_mock::eh1::spi::{Mock, Transaction as T};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

use super::*;
use crate::harness::Harness;

const CLOCK: u32 = 1_000_000;

type H<D, const CS: usize, const BYTES: usize> = Harness<SpiDevices<D, CS, 4, BYTES>, 1>;

fn rig<D: SpiDevice<u8>, const CS: usize, const BYTES: usize>(devices: [D; CS]) -> H<D, CS, BYTES> {
    Harness::new(
        SpiDevices::new(devices, SpiCaps::new(0, CLOCK)),
        Features::empty(),
        &[0],
    )
}

fn head(cs: u8, cs_change: bool) -> SpiTransferHead {
    SpiTransferHead {
        chip_select_id: cs,
        bits_per_word: 8,
        cs_change: u8::from(cs_change),
        freq: CLOCK.into(),
        ..SpiTransferHead::default()
    }
}

struct Sent {
    id: u16,
    rx: Option<Segment>,
    result: Segment,
}

/// Queues one transfer (head, tx_buf, rx_buf, result) without notifying.
fn add<D: SpiDevice<u8>, const CS: usize, const BYTES: usize>(
    h: &mut H<D, CS, BYTES>,
    head: SpiTransferHead,
    tx: &[u8],
    rx: u32,
) -> Sent {
    let hd = h.put(head.as_bytes());
    let tx = (!tx.is_empty()).then(|| h.put(tx));
    let rx = (rx > 0).then(|| h.space(rx));
    let result = h.space(1);
    let readable: Vec<Segment> = [Some(hd), tx].into_iter().flatten().collect();
    let writable: Vec<Segment> = [rx, Some(result)].into_iter().flatten().collect();
    let id = h.add(0, &readable, &writable);
    Sent { id, rx, result }
}

/// Every completion, in order: (id, result byte).
fn results<D: SpiDevice<u8>, const CS: usize, const BYTES: usize>(
    h: &mut H<D, CS, BYTES>,
    sent: &[&Sent],
) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    while let Some(used) = h.used(0) {
        let s = sent.iter().find(|s| s.id == used.id).expect("a queued id");
        out.push((used.id, h.read(s.result)[0]));
    }
    out
}

// spec: spi.device-operation.1
#[test]
fn config_offers_no_cs_high() {
    let (mut a, mut b) = (Mock::new(&[]), Mock::new(&[]));
    let h: H<Mock<u8>, 2, 64> = rig([a.clone(), b.clone()]);
    let c = h.core.device().config();
    assert_eq!(c.cs_max_number, 2);
    assert_eq!(
        c.mode_func_supported.get(),
        0b01 | 0b01 << 2 | MODE_FUNC_LSB_FIRST
    );
    let mut bytes = [0xeeu8; 32];
    h.core.read_config(0, &mut bytes);
    assert_eq!(bytes, c.as_bytes());
    drop(h);
    a.done();
    b.done();
}

// spec: spi.device-operation.2
#[test]
fn a_queued_message_runs_as_one_transaction() {
    // A flash read: command out, then 4 bytes in, one chip-select frame.
    let mock = Mock::new(&[
        T::transaction_start(),
        T::write_vec(vec![0x03, 0x00, 0x10, 0x00]),
        T::read_vec(vec![1, 2, 3, 4]),
        T::transaction_end(),
    ]);
    let mut h: H<_, 1, 64> = rig([mock.clone()]);
    let cmd = [0x03, 0x00, 0x10, 0x00];
    let a = add(&mut h, head(0, false), &cmd, 0);
    let b = add(&mut h, head(0, true), &[], 4);
    h.kick(0);
    assert_eq!(
        results(&mut h, &[&a, &b]),
        [(a.id, TRANS_OK), (b.id, TRANS_OK)]
    );
    assert_eq!(h.read(b.rx.unwrap()), [1, 2, 3, 4]);
    assert_eq!(h.core.device().held(), 0);
    let mut mock = mock;
    mock.done();
}

#[test]
fn cs_change_and_another_chip_select_end_a_message() {
    let m0 = Mock::new(&[
        T::transaction_start(),
        T::write_vec(vec![1]),
        T::transaction_end(),
        T::transaction_start(),
        T::transfer_in_place(vec![2, 3], vec![0xa, 0xb]),
        T::transaction_end(),
    ]);
    let m1 = Mock::new(&[
        T::transaction_start(),
        T::write_vec(vec![9]),
        T::transaction_end(),
    ]);
    let mut h: H<_, 2, 64> = rig([m0.clone(), m1.clone()]);
    let a = add(&mut h, head(0, true), &[1], 0);
    // cs_change 0, but the next names chip select 1: the frame ends.
    let b = add(&mut h, head(0, false), &[2, 3], 2);
    // The ring runs dry after it: the message ends there.
    let c = add(&mut h, head(1, false), &[9], 0);
    h.kick(0);
    let got = results(&mut h, &[&a, &b, &c]);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, r)| *r == TRANS_OK), "{got:?}");
    assert_eq!(h.read(b.rx.unwrap()), [0xa, 0xb]);
    let (mut m0, mut m1) = (m0, m1);
    m0.done();
    m1.done();
}

// spec: spi.device-operation.3
#[test]
fn a_refused_transfer_fails_its_whole_message_before_the_bus() {
    // Nothing may reach the bus for the first message; the next one runs.
    let mock = Mock::new(&[
        T::transaction_start(),
        T::write_vec(vec![7]),
        T::transaction_end(),
    ]);
    let mut h: H<_, 1, 64> = rig([mock.clone()]);
    let a = add(&mut h, head(0, false), &[1, 2], 0);
    let mut bad = head(0, false);
    bad.bits_per_word = 16;
    let b = add(&mut h, bad, &[3, 4], 0);
    // The rest of the refused message, up to its cs_change 1.
    let c = add(&mut h, head(0, true), &[5], 0);
    let d = add(&mut h, head(0, true), &[7], 0);
    h.kick(0);
    let got = results(&mut h, &[&a, &b, &c, &d]);
    assert_eq!(
        got,
        [
            (a.id, PARAM_ERR),
            (b.id, PARAM_ERR),
            (c.id, PARAM_ERR),
            (d.id, TRANS_OK)
        ]
    );
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::BitsPerWord(16))
    );
    let mut mock = mock;
    mock.done();
}

#[test]
fn cs_high_and_a_message_longer_than_the_buffer_are_param_err() {
    let mock = Mock::new(&[]);
    let mut h: H<_, 1, 8> = rig([mock.clone()]);
    let mut high = head(0, true);
    high.mode = MODE_CS_HIGH.into();
    let a = add(&mut h, high, &[1], 0);
    // 6 + 6 bytes: more than one 8-byte transaction holds.
    let b = add(&mut h, head(0, false), &[0; 6], 0);
    let c = add(&mut h, head(0, true), &[0; 6], 0);
    h.kick(0);
    assert_eq!(
        results(&mut h, &[&a, &b, &c]),
        [(a.id, PARAM_ERR), (b.id, PARAM_ERR), (c.id, PARAM_ERR)]
    );
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::MessageTooLong)
    );
    let mut mock = mock;
    mock.done();
}

#[test]
fn lsb_first_bytes_are_bit_reversed_both_ways() {
    let mock = Mock::new(&[
        T::transaction_start(),
        T::transfer_in_place(vec![0x80, 0x01], vec![0x01, 0xc0]),
        T::transaction_end(),
    ]);
    let mut h: H<_, 1, 64> = rig([mock.clone()]);
    let mut lsb = head(0, true);
    lsb.mode = MODE_LSB_FIRST.into();
    let a = add(&mut h, lsb, &[0x01, 0x80], 2);
    h.kick(0);
    assert_eq!(results(&mut h, &[&a]), [(a.id, TRANS_OK)]);
    assert_eq!(h.read(a.rx.unwrap()), [0x80, 0x03]);
    let mut mock = mock;
    mock.done();
}

/// A device whose transactions fail, counting them.
#[derive(Default)]
struct Failing {
    transactions: usize,
}

impl ErrorType for Failing {
    type Error = ErrorKind;
}

impl SpiDevice<u8> for Failing {
    fn transaction(&mut self, _: &mut [Operation<'_, u8>]) -> Result<(), ErrorKind> {
        self.transactions += 1;
        Err(ErrorKind::Other)
    }
}

#[test]
fn a_bus_failure_answers_the_whole_message_trans_err_without_rx_data() {
    let mut h: H<_, 1, 64> = rig([Failing::default()]);
    let a = add(&mut h, head(0, false), &[1], 0);
    let b = add(&mut h, head(0, true), &[], 3);
    h.kick(0);
    assert_eq!(
        results(&mut h, &[&a, &b]),
        [(a.id, TRANS_ERR), (b.id, TRANS_ERR)]
    );
    assert_eq!(h.read(b.rx.unwrap()), [0, 0, 0]);
    assert_eq!(h.core.device_mut().devices_mut()[0].transactions, 1);
}

#[test]
fn a_message_cut_by_the_budget_still_runs_once_and_whole() {
    // Budget 1: every call takes one transfer; the message is held across
    // calls (the core reports work left) and runs when the ring is dry.
    let mock = Mock::new(&[
        T::transaction_start(),
        T::write_vec(vec![1]),
        T::write_vec(vec![2]),
        T::write_vec(vec![3]),
        T::transaction_end(),
    ]);
    let mut h: H<_, 1, 64> = rig([mock.clone()]);
    h.core.set_budget(1);
    let sent: Vec<Sent> = (1..=3u8)
        .map(|i| add(&mut h, head(0, false), &[i], 0))
        .collect();
    let mut service = h.core.notify(0);
    let mut calls = 1;
    while service.work_left() {
        assert!(h.core.device().held() > 0 || calls > 3);
        service = h.core.poll();
        calls += 1;
    }
    assert!(calls >= 3, "{calls}");
    let refs: Vec<&Sent> = sent.iter().collect();
    let got = results(&mut h, &refs);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|(_, r)| *r == TRANS_OK), "{got:?}");
    let mut mock = mock;
    mock.done();
}
