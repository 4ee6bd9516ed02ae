//! The SPI controller behind our virtio-mmio transport, driven by a
//! driver-side double written from the spec's driver requirements (virtio
//! 1.4 §"SPI Controller Device") and Linux's `include/uapi/linux/
//! virtio_spi.h` layout: MMIO bring-up by register accesses, the config
//! read through the config window, and transfers queued as head, tx_buf,
//! rx_buf, result in that order. No Linux guest can run this yet: no QEMU
//! here has a vhost-user SPI frontend, and Linux's virtio SPI driver
//! arrived in 6.18.
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
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::spi::{PARAM_ERR, Spi, SpiCaps, SpiConfig, SpiTransferHead, TRANS_OK};
use virtio_transport_mmio::regs::*;
use virtio_transport_mmio::{InterruptLine, MmioTransport, Width};
use zerocopy::{FromBytes, IntoBytes};

const BASE: u64 = 0x4000_0000;
const MEM: usize = 1 << 20;
const QSIZE: u16 = 16;
const CLOCK: u32 = 10_000_000;

/// A flash-like target on chip select 0: JEDEC ID (0x9f) answers
/// ef 40 18; anything else echoes the complement. Records chip select.
#[derive(Default)]
struct Target {
    selected: bool,
    command: Option<u8>,
    sent: usize,
    cs_edges: u32,
}

struct Bus(Rc<RefCell<Target>>);

impl ErrorType for Bus {
    type Error = ErrorKind;
}

impl Bus {
    fn clock(&mut self, out: u8) -> u8 {
        let mut t = self.0.borrow_mut();
        assert!(t.selected, "clocked with no chip select asserted");
        let reply = match t.command {
            None => {
                t.command = Some(out);
                return 0xff;
            }
            Some(0x9f) => [0xef, 0x40, 0x18].get(t.sent).copied().unwrap_or(0),
            Some(_) => !out,
        };
        t.sent += 1;
        reply
    }
}

impl SpiBus<u8> for Bus {
    fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        for w in words {
            *w = self.clock(0);
        }
        Ok(())
    }
    fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        for w in words {
            self.clock(*w);
        }
        Ok(())
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        for (r, w) in read.iter_mut().zip(write) {
            *r = self.clock(*w);
        }
        Ok(())
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        for w in words {
            *w = self.clock(*w);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

struct Cs(Rc<RefCell<Target>>);

impl PinErrorType for Cs {
    type Error = core::convert::Infallible;
}

impl OutputPin for Cs {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut t = self.0.borrow_mut();
        if !t.selected {
            t.cs_edges += 1;
        }
        t.selected = true;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        let mut t = self.0.borrow_mut();
        t.selected = false;
        t.command = None;
        t.sent = 0;
        Ok(())
    }
}

#[derive(Default)]
struct Irq(u32);

impl InterruptLine for Irq {
    fn set_level(&mut self, asserted: bool) {
        if asserted {
            self.0 += 1;
        }
    }
}

type Dev = Spi<Bus, Cs, 1>;
type Mmio = MmioTransport<Dev, &'static Region<'static>, Irq, 1>;

/// The driver-side double.
struct Driver {
    mmio: Mmio,
    mem: &'static Region<'static>,
    queue: SplitDriver,
    next: u64,
}

impl Driver {
    fn r(&mut self, offset: u32) -> u32 {
        self.mmio.read(offset, Width::Word)
    }

    fn w(&mut self, offset: u32, value: u32) {
        let mut s = self.mmio.write(offset, Width::Word, value);
        while s.work_left() {
            s = self.mmio.poll();
        }
    }

    /// virtio-mmio bring-up (virtio 1.4 §"Device Initialization"), with the
    /// SPI device's one queue.
    fn probe(mmio: Mmio, mem: &'static Region<'static>) -> Self {
        let layout = SplitDriver::layout(BASE, QSIZE);
        let queue = SplitDriver::new(mem, layout, Features::VERSION_1).unwrap();
        let mut d = Self {
            mmio,
            mem,
            queue,
            next: BASE + 0x1_0000,
        };
        assert_eq!(d.r(MAGIC_VALUE), 0x7472_6976);
        assert_eq!(d.r(VERSION), 2);
        assert_eq!(d.r(DEVICE_ID), 45);
        d.w(STATUS, 0);
        d.w(STATUS, 1);
        d.w(STATUS, 1 | 2);
        // The device has no feature bits of its own; accept VERSION_1 only.
        d.w(DEVICE_FEATURES_SEL, 0);
        assert_eq!(d.r(DEVICE_FEATURES) & 0x00ff_ffff, 0);
        d.w(DRIVER_FEATURES_SEL, 0);
        d.w(DRIVER_FEATURES, 0);
        d.w(DRIVER_FEATURES_SEL, 1);
        d.w(DRIVER_FEATURES, 1);
        d.w(STATUS, 1 | 2 | 8);
        assert_ne!(d.r(STATUS) & 8, 0, "FEATURES_OK refused");
        d.w(QUEUE_SEL, 0);
        assert!(d.r(QUEUE_SIZE_MAX) >= u32::from(QSIZE));
        d.w(QUEUE_SIZE, u32::from(QSIZE));
        for (low, addr) in [
            (QUEUE_DESC_LOW, layout.desc_addr),
            (QUEUE_DRIVER_LOW, layout.driver_addr),
            (QUEUE_DEVICE_LOW, layout.device_addr),
        ] {
            d.w(low, addr as u32);
            d.w(low + 4, (addr >> 32) as u32);
        }
        d.w(QUEUE_READY, 1);
        d.w(STATUS, 1 | 2 | 4 | 8);
        d
    }

    fn config(&mut self) -> SpiConfig {
        let mut bytes = [0u8; 32];
        for (i, chunk) in bytes.chunks_mut(4).enumerate() {
            let v = self.r(CONFIG + 4 * i as u32);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        SpiConfig::read_from_bytes(&bytes).unwrap()
    }

    fn put(&mut self, bytes: &[u8]) -> Segment {
        let addr = self.next;
        self.next += (bytes.len() as u64 + 15) & !15;
        self.mem.write(addr, bytes).unwrap();
        Segment {
            addr,
            len: bytes.len() as u32,
        }
    }

    /// One `struct virtio_spi_transfer_req`: head, tx_buf, rx_buf, result,
    /// in that order (the driver MUST); full duplex with equal buffers.
    fn queue(&mut self, head: SpiTransferHead, tx: &[u8], rx: usize) -> (Segment, Segment) {
        let h = self.put(head.as_bytes());
        let mut readable = vec![h];
        if !tx.is_empty() {
            readable.push(self.put(tx));
        }
        let rx = self.put(&vec![0x55; rx]);
        let result = self.put(&[0xee]);
        let mut writable = vec![];
        if rx.len > 0 {
            writable.push(rx);
        }
        writable.push(result);
        self.queue.add(self.mem, &readable, &writable).unwrap();
        (rx, result)
    }

    fn kick(&mut self) -> Vec<u32> {
        self.queue.publish_avail(self.mem).unwrap();
        self.w(QUEUE_NOTIFY, 0);
        let status = self.r(INTERRUPT_STATUS);
        self.w(INTERRUPT_ACK, status);
        let mut lens = vec![];
        while let Some(u) = self.queue.pop_used(self.mem).unwrap() {
            lens.push(u.len);
        }
        lens
    }

    fn read(&self, s: Segment) -> Vec<u8> {
        let mut v = vec![0; s.len as usize];
        self.mem.read(s.addr, &mut v).unwrap();
        v
    }
}

fn head() -> SpiTransferHead {
    SpiTransferHead {
        chip_select_id: 0,
        bits_per_word: 8,
        freq: CLOCK.into(),
        ..SpiTransferHead::default()
    }
}

fn rig() -> (Driver, Rc<RefCell<Target>>) {
    let host: &'static mut [u8] = Vec::leak(vec![0u8; MEM]);
    let mem: &'static Region<'static> = Box::leak(Box::new(Region::new(BASE, host).unwrap()));
    let target = Rc::new(RefCell::new(Target::default()));
    let spi = Spi::new(
        Bus(target.clone()),
        [Cs(target.clone())],
        SpiCaps::new(0, CLOCK),
    )
    .with_queue_size(QSIZE);
    let mmio = MmioTransport::new(DeviceCore::new(spi, mem), Irq::default());
    (Driver::probe(mmio, mem), target)
}

#[test]
fn over_mmio_a_jedec_id_read_as_a_linux_driver_sends_it() {
    let (mut d, target) = rig();
    let c = d.config();
    assert_eq!(c.cs_max_number, 1);
    assert_eq!(c.max_freq_hz.get(), CLOCK);
    assert_eq!(c.bits_per_word_mask.get(), 1 << 7);
    // spi_write_then_read(0x9f, 3): two transfers of one message, chip
    // select held between them (cs_change 0), released at the end.
    let (_, r1) = d.queue(head(), &[0x9f], 0);
    let (rx, r2) = d.queue(head(), &[], 3);
    let lens = d.kick();
    assert_eq!(lens, [1, 4]);
    assert_eq!((d.read(r1), d.read(r2)), (vec![TRANS_OK], vec![TRANS_OK]));
    assert_eq!(d.read(rx), [0xef, 0x40, 0x18]);
    let t = target.borrow();
    assert_eq!(t.cs_edges, 1, "chip select toggled inside the message");
    assert!(!t.selected, "chip select left asserted");
}

#[test]
fn over_mmio_a_full_duplex_transfer_and_a_refused_one() {
    let (mut d, target) = rig();
    let (rx, r) = d.queue(head(), &[0x03, 1, 2, 3], 4);
    let (bad_rx, bad) = d.queue(
        SpiTransferHead {
            freq: (CLOCK * 2).into(),
            ..head()
        },
        &[0x03, 1],
        2,
    );
    let lens = d.kick();
    assert_eq!(lens, [5, 3]);
    assert_eq!(d.read(r), [TRANS_OK]);
    assert_eq!(d.read(rx), [0xff, !1, !2, !3]);
    // A clock the bus does not run: PARAM_ERR, and the target never saw it.
    assert_eq!(d.read(bad), [PARAM_ERR]);
    assert_eq!(d.read(bad_rx), [0, 0]);
    assert_eq!(target.borrow().cs_edges, 1);
}
