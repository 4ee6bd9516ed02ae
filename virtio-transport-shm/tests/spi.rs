//! The SPI controller device behind the shared-memory transport
//! (virtio-msg), driven by a driver-side double written from the spec's
//! driver requirements (virtio 1.4 §"SPI Controller Device") and Linux's
//! `include/uapi/linux/virtio_spi.h` layout: enumeration, the config read
//! with GET_CONFIG, bring-up, transfers queued as head, tx_buf, rx_buf,
//! result in that order, and a refused transfer that never reaches the bus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::cell::RefCell;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorKind, ErrorType, SpiBus};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::spi::{PARAM_ERR, Spi, SpiCaps, SpiConfig, SpiTransferHead, TRANS_OK};
use virtio_transport_shm::layout::Bump;
use virtio_transport_shm::{DataArea, DeviceEnd, DriverEnd, Layout, Polled, ShmDevice};
use zerocopy::{FromBytes, IntoBytes};

const LAYOUT: Layout = match Layout::new(4, 64, 16384) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};
const CLOCK: u32 = 8_000_000;

/// What the bus saw: bytes written while each chip select was asserted.
#[derive(Default)]
struct Wire {
    selected: [bool; 2],
    frames: Vec<(usize, Vec<u8>)>,
}

struct Bus(Rc<RefCell<Wire>>);

impl ErrorType for Bus {
    type Error = ErrorKind;
}

impl Bus {
    fn out(&mut self, bytes: &[u8]) {
        let mut w = self.0.borrow_mut();
        let cs = w
            .selected
            .iter()
            .position(|s| *s)
            .expect("no chip select asserted");
        assert_eq!(
            w.selected.iter().filter(|s| **s).count(),
            1,
            "two chip selects"
        );
        match w.frames.last_mut() {
            Some((c, f)) if *c == cs => f.extend_from_slice(bytes),
            _ => w.frames.push((cs, bytes.to_vec())),
        }
    }
}

impl SpiBus<u8> for Bus {
    fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        words.fill(0xa5);
        self.out(&vec![0; words.len()]);
        Ok(())
    }
    fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        self.out(words);
        Ok(())
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        for (r, w) in read.iter_mut().zip(write) {
            *r = w.rotate_left(4);
        }
        self.out(write);
        Ok(())
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        self.out(words);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct Cs(usize, Rc<RefCell<Wire>>);

impl PinErrorType for Cs {
    type Error = core::convert::Infallible;
}

impl OutputPin for Cs {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut w = self.1.borrow_mut();
        w.selected[self.0] = true;
        // A new selection starts a new frame.
        w.frames.push((self.0, vec![]));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.1.borrow_mut().selected[self.0] = false;
        Ok(())
    }
}

fn head(cs: u8) -> SpiTransferHead {
    SpiTransferHead {
        chip_select_id: cs,
        bits_per_word: 8,
        freq: CLOCK.into(),
        ..SpiTransferHead::default()
    }
}

#[test]
fn spi_over_the_shm_transport() {
    let mut buf = vec![0u64; LAYOUT.window_len() as usize / 8];
    let w = Region::new(0, buf.as_mut_bytes()).unwrap();
    let wire = Rc::new(RefCell::new(Wire::default()));
    let spi: Spi<Bus, Cs, 2> = Spi::new(
        Bus(wire.clone()),
        [Cs(0, wire.clone()), Cs(1, wire.clone())],
        SpiCaps::new(0, CLOCK),
    );
    wire.borrow_mut().frames.clear();
    let data = DataArea::new(&w, &LAYOUT);
    let dev = RefCell::new(
        DeviceEnd::create(&w, LAYOUT, (ShmDevice::<_, _, 1>::new(spi, data),), Polled).unwrap(),
    );
    let idle: &dyn Fn() = &|| while dev.borrow_mut().process().work_left() {};
    let mut drv: DriverEnd<'_, Region<'_>, Polled, &dyn Fn(), 1> =
        DriverEnd::attach(&w, LAYOUT, Polled, idle)
            .unwrap()
            .with_max_waits(4);

    assert_eq!(drv.devices().unwrap(), 0b1);
    let info = drv.device_info(0).unwrap();
    assert_eq!(info.device_id.get(), 45);
    assert_eq!(info.config_size.get(), 32);
    let mut raw = [0u8; 32];
    drv.get_config(0, 0, &mut raw).unwrap();
    let config = SpiConfig::read_from_bytes(&raw).unwrap();
    assert_eq!(config.cs_max_number, 2);
    assert_eq!(config.cs_change_supported, 1);
    assert_eq!(config.max_freq_hz.get(), CLOCK);

    let mut alloc = Bump::new(&LAYOUT);
    let base = alloc.alloc(SplitDriver::layout_len(16), 16).unwrap();
    let qc = SplitDriver::layout(base, 16);
    let mem = drv.data();
    let mut q = SplitDriver::new(&mem, qc, Features::VERSION_1).unwrap();
    drv.bring_up(0, Features::empty(), &[qc]).unwrap();

    // The driver's side of `struct virtio_spi_transfer_req`, in order.
    let mut put = |bytes: &[u8]| {
        let addr = alloc.alloc(bytes.len().max(1) as u64, 8).unwrap();
        mem.write(addr, bytes).unwrap();
        Segment {
            addr,
            len: bytes.len() as u32,
        }
    };
    // 1: write 0x06 to chip select 1 (cs_change 1: its own frame).
    // 2+3: on chip select 0, a command then a full-duplex exchange in one
    //      frame (cs_change 0 on the first).
    // 4: a refused transfer (mode 3 on a mode-0 bus).
    let t1 = [
        put(SpiTransferHead {
            cs_change: 1,
            ..head(1)
        }
        .as_bytes()),
        put(&[0x06]),
    ];
    let r1 = put(&[0xee]);
    let t2 = [put(head(0).as_bytes()), put(&[0x0b, 0x00])];
    let r2 = put(&[0xee]);
    let t3 = [put(head(0).as_bytes()), put(&[0x12, 0x34, 0x56])];
    let rx3 = put(&[0; 3]);
    let r3 = put(&[0xee]);
    let t4 = [
        put(SpiTransferHead {
            mode: 3.into(),
            ..head(0)
        }
        .as_bytes()),
        put(&[0xff]),
    ];
    let r4 = put(&[0xee]);
    q.add(&mem, &t1, &[r1]).unwrap();
    q.add(&mem, &t2, &[r2]).unwrap();
    q.add(&mem, &t3, &[rx3, r3]).unwrap();
    q.add(&mem, &t4, &[r4]).unwrap();
    if q.publish_avail(&mem).unwrap() {
        drv.notify(0, 0, 0).unwrap();
    }
    let mut done = 0;
    while done < 4 {
        if q.pop_used(&mem).unwrap().is_some() {
            done += 1;
        } else {
            drv.wait_used(0, 0).unwrap();
        }
    }
    let byte = |s: Segment| {
        let mut b = [0u8];
        mem.read(s.addr, &mut b).unwrap();
        b[0]
    };
    assert_eq!(
        [byte(r1), byte(r2), byte(r3), byte(r4)],
        [TRANS_OK, TRANS_OK, TRANS_OK, PARAM_ERR]
    );
    let mut rx = [0u8; 3];
    mem.read(rx3.addr, &mut rx).unwrap();
    assert_eq!(rx, [0x21, 0x43, 0x65]);
    // The tx buffers are as the driver wrote them.
    let mut tx = [0u8; 3];
    mem.read(t3[1].addr, &mut tx).unwrap();
    assert_eq!(tx, [0x12, 0x34, 0x56]);
    let wire = wire.borrow();
    assert_eq!(
        wire.frames,
        [(1, vec![0x06]), (0, vec![0x0b, 0x00, 0x12, 0x34, 0x56])],
        "one frame per chip-select assertion; the refused transfer never reached the bus"
    );
    assert_eq!(wire.selected, [false, false]);
}
