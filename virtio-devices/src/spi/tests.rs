#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use embedded_hal::digital::ErrorType as PinErrorType;
use embedded_hal::spi::{ErrorKind, ErrorType};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

use super::*;
use crate::harness::Harness;

/// What the bus and the chip-select pins saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Cs(usize, bool),
    Write(Vec<u8>),
    Read(usize),
    Transfer(Vec<u8>),
    Flush,
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// A bus whose MISO answers each byte with its complement, failing on
/// request.
struct Bus {
    log: Log,
    fail: bool,
}

impl ErrorType for Bus {
    type Error = ErrorKind;
}

impl SpiBus<u8> for Bus {
    fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push(Ev::Read(words.len()));
        for (i, w) in words.iter_mut().enumerate() {
            *w = i as u8;
        }
        if self.fail {
            Err(ErrorKind::Other)
        } else {
            Ok(())
        }
    }
    fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push(Ev::Write(words.to_vec()));
        if self.fail {
            Err(ErrorKind::Other)
        } else {
            Ok(())
        }
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push(Ev::Transfer(write.to_vec()));
        for (r, w) in read.iter_mut().zip(write) {
            *r = !w;
        }
        if self.fail {
            Err(ErrorKind::Other)
        } else {
            Ok(())
        }
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        for w in words.iter_mut() {
            *w = !*w;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.log.borrow_mut().push(Ev::Flush);
        Ok(())
    }
}

struct Pin {
    n: usize,
    log: Log,
}

impl PinErrorType for Pin {
    type Error = core::convert::Infallible;
}

impl OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.log.borrow_mut().push(Ev::Cs(self.n, false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.log.borrow_mut().push(Ev::Cs(self.n, true));
        Ok(())
    }
}

type H = Harness<Spi<Bus, Pin, 2>, 1>;

const CLOCK: u32 = 1_000_000;

fn rig_with(fail: bool) -> (H, Log) {
    let log: Log = Rc::default();
    let pins = [0, 1].map(|n| Pin {
        n,
        log: log.clone(),
    });
    let spi = Spi::new(
        Bus {
            log: log.clone(),
            fail,
        },
        pins,
        SpiCaps::new(0, CLOCK),
    );
    let h = Harness::new(spi, Features::empty(), &[0]);
    log.borrow_mut().clear();
    (h, log)
}

fn rig() -> (H, Log) {
    rig_with(false)
}

/// The driver side, from the spec's driver requirements and Linux's
/// `virtio_spi.h`: a head as a Linux driver fills it (mode 0, 8 bits, the
/// bus clock, no delays).
fn head(cs: u8) -> SpiTransferHead {
    SpiTransferHead {
        chip_select_id: cs,
        bits_per_word: 8,
        freq: CLOCK.into(),
        ..SpiTransferHead::default()
    }
}

/// A queued transfer.
struct Sent {
    id: u16,
    tx: Option<Segment>,
    rx: Option<Segment>,
    result: Segment,
}

/// Queues one transfer in the order the driver MUST use: head, tx_buf,
/// rx_buf, result (virtio 1.4 §"SPI Controller Device / Device Operation",
/// driver requirements).
fn add(h: &mut H, head: SpiTransferHead, tx: &[u8], rx: u32) -> Sent {
    let hd = h.put(head.as_bytes());
    let tx = (!tx.is_empty()).then(|| h.put(tx));
    let rx = (rx > 0).then(|| h.space(rx));
    let result = h.space(1);
    let readable: Vec<Segment> = [Some(hd), tx].into_iter().flatten().collect();
    let writable: Vec<Segment> = [rx, Some(result)].into_iter().flatten().collect();
    let id = h.add(0, &readable, &writable);
    Sent { id, tx, rx, result }
}

fn result(h: &H, s: &Sent) -> u8 {
    h.read(s.result)[0]
}

fn run(h: &mut H, head: SpiTransferHead, tx: &[u8], rx: u32) -> (Sent, u32) {
    let s = add(h, head, tx, rx);
    h.kick(0);
    let used = h.used(0).expect("completed");
    assert_eq!(used.id, s.id);
    (s, used.len)
}

// spec: spi.device-operation.1
#[test]
fn config_is_whole_before_the_driver_reads_it() {
    let (h, _) = rig();
    let mut c = [0xeeu8; 32];
    h.core.read_config(0, &mut c);
    let want = SpiConfig {
        cs_max_number: 2,
        cs_change_supported: 1,
        tx_nbits_supported: 0,
        rx_nbits_supported: 0,
        bits_per_word_mask: (1u32 << 7).into(),
        // CPHA 0 only, CPOL 0 only, CS_HIGH, LSB_FIRST.
        mode_func_supported: (0b01 | 0b01 << 2 | 1 << 4 | 1 << 5u32).into(),
        max_freq_hz: CLOCK.into(),
        ..SpiConfig::default()
    };
    assert_eq!(c, want.as_bytes());
    assert_eq!(h.core.device().config(), want);
}

// spec: spi.device-operation.2
#[test]
fn half_duplex_write_leaves_tx_buf_unchanged() {
    let (mut h, log) = rig();
    let data = [1, 2, 3, 0x80];
    let (s, used) = run(&mut h, head(1), &data, 0);
    assert_eq!((result(&h, &s), used), (TRANS_OK, 1));
    assert_eq!(h.read(s.tx.unwrap()), data);
    assert_eq!(
        *log.borrow(),
        [
            Ev::Cs(1, false),
            Ev::Write(data.to_vec()),
            Ev::Flush,
            Ev::Cs(1, true)
        ]
    );
}

#[test]
fn half_duplex_read_fills_rx_buf() {
    let (mut h, log) = rig();
    let (s, used) = run(&mut h, head(0), &[], 5);
    assert_eq!((result(&h, &s), used), (TRANS_OK, 6));
    assert_eq!(h.read(s.rx.unwrap()), [0, 1, 2, 3, 4]);
    assert_eq!(log.borrow()[1], Ev::Read(5));
}

#[test]
fn full_duplex_and_long_transfers_in_chunks() {
    let (mut h, log) = rig();
    let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    let (s, used) = run(&mut h, head(0), &data, 200);
    assert_eq!((result(&h, &s), used), (TRANS_OK, 201));
    let back: Vec<u8> = data.iter().map(|b| !b).collect();
    assert_eq!(h.read(s.rx.unwrap()), back);
    assert_eq!(h.read(s.tx.unwrap()), data);
    let transfers = log
        .borrow()
        .iter()
        .filter(|e| matches!(e, Ev::Transfer(_)))
        .count();
    assert_eq!(transfers, 4); // 64 + 64 + 64 + 8, chip select held throughout
    assert_eq!(log.borrow().first(), Some(&Ev::Cs(0, false)));
    assert_eq!(log.borrow().last(), Some(&Ev::Cs(0, true)));
}

// spec: spi.device-operation.4, spi.device-operation.5
#[test]
fn full_duplex_with_unequal_buffers_is_param_err_and_touches_nothing() {
    let (mut h, log) = rig();
    let (s, _) = run(&mut h, head(0), &[1, 2, 3], 2);
    assert_eq!(result(&h, &s), PARAM_ERR);
    assert_eq!(
        h.core.device().last_error(),
        Some(TransferError::LengthMismatch { tx: 3, rx: 2 })
    );
    assert!(log.borrow().is_empty(), "the bus or a chip select moved");
    // rx_buf holds no data.
    assert_eq!(h.read(s.rx.unwrap()), [0, 0]);
}

// spec: spi.device-operation.3
#[test]
fn invalid_or_unsupported_parameters_are_param_err_before_the_bus() {
    let cases: Vec<(SpiTransferHead, TransferError)> = vec![
        (head(2), TransferError::ChipSelect(2)),
        (
            SpiTransferHead {
                bits_per_word: 16,
                ..head(0)
            },
            TransferError::BitsPerWord(16),
        ),
        (
            SpiTransferHead {
                bits_per_word: 0,
                ..head(0)
            },
            TransferError::BitsPerWord(0),
        ),
        (
            SpiTransferHead {
                cs_change: 2,
                ..head(0)
            },
            TransferError::CsChange(2),
        ),
        (
            SpiTransferHead {
                tx_nbits: 2,
                ..head(0)
            },
            TransferError::Nbits(2),
        ),
        (
            SpiTransferHead {
                rx_nbits: 3,
                ..head(0)
            },
            TransferError::Nbits(3),
        ),
        (
            SpiTransferHead {
                mode: MODE_CPHA.into(),
                ..head(0)
            },
            TransferError::Mode(MODE_CPHA),
        ),
        (
            SpiTransferHead {
                mode: MODE_CPOL.into(),
                ..head(0)
            },
            TransferError::Mode(MODE_CPOL),
        ),
        (
            SpiTransferHead {
                mode: MODE_LOOP.into(),
                ..head(0)
            },
            TransferError::Mode(MODE_LOOP),
        ),
        (
            SpiTransferHead {
                mode: (1u32 << 9).into(),
                ..head(0)
            },
            TransferError::Mode(1 << 9),
        ),
        (
            SpiTransferHead {
                freq: (CLOCK + 1).into(),
                ..head(0)
            },
            TransferError::Frequency(CLOCK + 1),
        ),
        (
            SpiTransferHead {
                freq: 1000.into(),
                ..head(0)
            },
            TransferError::Frequency(1000),
        ),
        (
            SpiTransferHead {
                word_delay_ns: 10.into(),
                ..head(0)
            },
            TransferError::Delay,
        ),
        (
            SpiTransferHead {
                cs_setup_ns: 10.into(),
                ..head(0)
            },
            TransferError::Delay,
        ),
        (
            SpiTransferHead {
                cs_delay_hold_ns: 10.into(),
                ..head(0)
            },
            TransferError::Delay,
        ),
        (
            SpiTransferHead {
                cs_change_delay_inactive_ns: 10.into(),
                ..head(0)
            },
            TransferError::Delay,
        ),
    ];
    for (hd, why) in cases {
        let (mut h, log) = rig();
        let (s, used) = run(&mut h, hd, &[0xaa, 0xbb], 2);
        assert_eq!((result(&h, &s), used), (PARAM_ERR, 3), "{why}");
        assert_eq!(h.core.device().last_error(), Some(why));
        assert!(
            log.borrow().is_empty(),
            "{why}: the bus or a chip select moved"
        );
        assert_eq!(h.read(s.tx.unwrap()), [0xaa, 0xbb]);
        assert!(!std::format!("{why}").is_empty());
    }
    // A head shorter than 32 bytes.
    let (mut h, log) = rig();
    let short = h.put(&[0; 16]);
    let res = h.space(1);
    h.request(0, &[short], &[res]);
    assert_eq!(h.read(res), [PARAM_ERR]);
    assert!(log.borrow().is_empty());
    // freq 0 means the bus clock.
    let (mut h, _) = rig();
    let (s, _) = run(
        &mut h,
        SpiTransferHead {
            freq: 0.into(),
            ..head(0)
        },
        &[1],
        0,
    );
    assert_eq!(result(&h, &s), TRANS_OK);
}

#[test]
fn a_bus_failure_is_trans_err_and_releases_chip_select() {
    let (mut h, log) = rig_with(true);
    let (s, _) = run(&mut h, head(0), &[], 3);
    assert_eq!(result(&h, &s), TRANS_ERR);
    assert_eq!(h.core.device().last_error(), Some(TransferError::Bus));
    assert_eq!(log.borrow().last(), Some(&Ev::Cs(0, true)));
    assert_eq!(h.read(s.rx.unwrap()), [0, 0, 0]);
    assert_eq!(h.core.device().stats().trans_errors, 1);
}

#[test]
fn cs_change_0_keeps_chip_select_into_the_next_transfer() {
    let (mut h, log) = rig();
    // Command then data with chip select held (cs_change 0), then a
    // transfer with cs_change 1 toggles it, then another chip select.
    let a = add(&mut h, head(0), &[0x9f], 0);
    let b = add(&mut h, head(0), &[], 3);
    let c = add(
        &mut h,
        SpiTransferHead {
            cs_change: 1,
            ..head(0)
        },
        &[1],
        0,
    );
    let d = add(&mut h, head(0), &[2], 0);
    let e = add(&mut h, head(1), &[3], 0);
    h.kick(0);
    for s in [&a, &b, &c, &d, &e] {
        assert_eq!(result(&h, s), TRANS_OK);
    }
    assert_eq!(
        *log.borrow(),
        [
            Ev::Cs(0, false),
            Ev::Write(vec![0x9f]),
            Ev::Flush,
            Ev::Read(3),
            Ev::Flush,
            Ev::Write(vec![1]),
            Ev::Flush,
            Ev::Cs(0, true),
            Ev::Cs(0, false),
            Ev::Write(vec![2]),
            Ev::Flush,
            Ev::Cs(0, true),
            Ev::Cs(1, false),
            Ev::Write(vec![3]),
            Ev::Flush,
            Ev::Cs(1, true),
        ]
    );
    assert_eq!(h.core.device().asserted(), None);
}

#[test]
fn cs_high_and_lsb_first_are_honoured() {
    let (mut h, log) = rig();
    let (s, _) = run(
        &mut h,
        SpiTransferHead {
            mode: (MODE_CS_HIGH | MODE_LSB_FIRST).into(),
            ..head(0)
        },
        &[0b0000_0001, 0b1100_0000],
        2,
    );
    assert_eq!(result(&h, &s), TRANS_OK);
    assert_eq!(
        *log.borrow(),
        [
            Ev::Cs(0, true),
            Ev::Transfer(vec![0b1000_0000, 0b0000_0011]),
            Ev::Flush,
            Ev::Cs(0, false)
        ]
    );
    // The complement comes back bit-reversed too.
    assert_eq!(h.read(s.rx.unwrap()), [0b1111_1110, 0b0011_1111]);
}

#[test]
fn a_malformed_chain_is_param_err_at_its_last_byte() {
    let (mut h, log) = rig();
    let hd = h.put(head(0).as_bytes());
    let rx = h.space(2);
    let tx = h.put(&[1]);
    let res = h.space(1);
    h.add_mixed(0, &[(hd, false), (rx, true), (tx, false), (res, true)]);
    h.kick(0);
    assert_eq!(h.read(res), [PARAM_ERR]);
    assert!(log.borrow().is_empty());
    assert!(h.core.is_live());
}

#[test]
fn a_chain_without_a_result_byte_needs_reset() {
    let (mut h, _) = rig();
    let hd = h.put(head(0).as_bytes());
    h.add(0, &[hd], &[]);
    h.kick(0);
    assert!(!h.core.is_live());
}

#[test]
fn chip_select_is_released_when_the_budget_ends_with_the_ring() {
    let (mut h, log) = rig();
    h.core.set_budget(2);
    add(&mut h, head(0), &[1], 0);
    add(&mut h, head(0), &[2], 0);
    let service = h.core.notify(0);
    assert_eq!(h.core.device().asserted(), Some(0));
    assert!(
        service.work_left(),
        "the asserted chip select must be reported"
    );
    while h.core.poll().work_left() {}
    assert_eq!(h.core.device().asserted(), None);
    assert_eq!(log.borrow().last(), Some(&Ev::Cs(0, true)));
}

#[test]
fn the_flash_model_behind_the_device_jedec_program_read_erase() {
    use super::flash::{FlashBus, FlashCs, FlashState, JEDEC_ID};
    let state: &'static RefCell<FlashState<8192>> =
        std::boxed::Box::leak(std::boxed::Box::default());
    let spi: Spi<FlashBus<'static, 8192>, FlashCs<'static, 8192>, 1> =
        Spi::new(FlashBus(state), [FlashCs(state)], SpiCaps::new(0, CLOCK));
    let mut h: Harness<_, 1> = Harness::new(spi, Features::empty(), &[0]);
    let mut h = FlashRig {
        h: &mut h,
        rx: vec![],
    };
    // Each message is queued whole before the kick; chip select is held
    // across its transfers (cs_change 0) and released when the ring is
    // drained. JEDEC ID as spi_write_then_read sends it:
    h.t(0, &[0x9f], 0);
    h.t(0, &[], 3);
    assert_eq!(h.go(), [JEDEC_ID.to_vec()]);
    // Write enable, then the status register shows the latch.
    h.t(0, &[0x06], 0);
    h.go();
    h.t(0, &[0x05], 0);
    h.t(0, &[], 1);
    assert_eq!(h.go(), [vec![0b10]]);
    // Program 4 bytes at 0x1fe: they wrap inside the page.
    h.t(0, &[0x02, 0x00, 0x01, 0xfe, 1, 2, 3, 4], 0);
    h.go();
    assert_eq!(&state.borrow().memory()[0x1fe..0x200], &[1, 2]);
    assert_eq!(&state.borrow().memory()[0x100..0x102], &[3, 4]);
    // Read across the page boundary.
    h.t(0, &[0x03, 0x00, 0x01, 0xfc], 0);
    h.t(0, &[], 6);
    assert_eq!(h.go(), [vec![0xff, 0xff, 1, 2, 0xff, 0xff]]);
    // Program without write enable does nothing; erase with it clears.
    h.t(0, &[0x02, 0x00, 0x00, 0x00, 0], 0);
    h.go();
    assert_eq!(state.borrow().memory()[0], 0xff);
    h.t(1, &[0x06], 0);
    h.t(0, &[0x20, 0x00, 0x01, 0x00], 0);
    h.go();
    assert!(state.borrow().memory()[..4096].iter().all(|b| *b == 0xff));
}

struct FlashRig<'a, D: virtio_core::device::VirtioDevice> {
    h: &'a mut Harness<D, 1>,
    rx: Vec<(Segment, Segment)>,
}

impl<D: virtio_core::device::VirtioDevice> FlashRig<'_, D> {
    /// Queues one transfer (half duplex: `tx` or `rx` bytes).
    fn t(&mut self, cs_change: u8, tx: &[u8], rx: u32) {
        let hd = self.h.put(
            SpiTransferHead {
                cs_change,
                ..head(0)
            }
            .as_bytes(),
        );
        let mut readable = vec![hd];
        if !tx.is_empty() {
            readable.push(self.h.put(tx));
        }
        let rxs = self.h.space(rx.max(1));
        let res = self.h.space(1);
        let writable = if rx > 0 { vec![rxs, res] } else { vec![res] };
        self.h.add(0, &readable, &writable);
        self.rx.push((
            if rx > 0 {
                rxs
            } else {
                Segment { addr: 0, len: 0 }
            },
            res,
        ));
    }

    /// Kicks the queued message; returns what each read transfer read.
    fn go(&mut self) -> Vec<Vec<u8>> {
        self.h.kick(0);
        while self.h.used(0).is_some() {}
        let mut out = vec![];
        for (rx, res) in core::mem::take(&mut self.rx) {
            assert_eq!(self.h.read(res), [TRANS_OK]);
            if rx.len > 0 {
                out.push(self.h.read(rx));
            }
        }
        out
    }
}
