//! The SPI controller's head checks and transfers, fed up to eight
//! arbitrary transfers (any head bytes, tx/rx lengths, split heads,
//! missing result bytes, malformed chains) queued at once under a small
//! budget. Input whose length is a whole number of transfers drives `Spi`
//! over a bus that echoes the complement and chip-select pins that record
//! their level; any other length drives `SpiDevices` (messages held and
//! run as one `SpiDevice` transaction, with a small message buffer).
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! tx buffers (and heads) are never written; while live every transfer
//! comes back (in order for `Spi`) with a result byte of TRANS_OK,
//! PARAM_ERR or TRANS_ERR; PARAM_ERR transfers never reach the bus; once
//! the ring is drained no chip select is left asserted and no transfer
//! held.
#![no_main]

use std::cell::Cell;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorKind, ErrorType, Operation, SpiBus, SpiDevice};
use libfuzzer_sys::fuzz_target;
use virtio_core::device::{DeviceCore, VirtioDevice};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::spi::{PARAM_ERR, Spi, SpiCaps, SpiDevices, SpiStats, TRANS_ERR, TRANS_OK};
use virtio_fuzz::{DATA, Guarded, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;

struct Bus {
    calls: Rc<Cell<u32>>,
    fail_at: u32,
}

impl ErrorType for Bus {
    type Error = ErrorKind;
}

impl Bus {
    fn step(&mut self) -> Result<(), ErrorKind> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if n == self.fail_at {
            Err(ErrorKind::Other)
        } else {
            Ok(())
        }
    }
}

impl SpiBus<u8> for Bus {
    fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        words.fill(0x3c);
        self.step()
    }
    fn write(&mut self, _words: &[u8]) -> Result<(), ErrorKind> {
        self.step()
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        for (r, w) in read.iter_mut().zip(write) {
            *r = !w;
        }
        self.step()
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        words.iter_mut().for_each(|w| *w = !*w);
        self.step()
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl SpiDevice<u8> for Bus {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), ErrorKind> {
        for op in operations.iter_mut() {
            match op {
                Operation::Read(words) => words.fill(0x3c),
                Operation::TransferInPlace(words) => words.iter_mut().for_each(|w| *w = !*w),
                _ => {}
            }
        }
        self.step()
    }
}

struct Pin(Rc<Cell<bool>>);

impl PinErrorType for Pin {
    type Error = core::convert::Infallible;
}

impl OutputPin for Pin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0.set(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.set(true);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let calls = Rc::new(Cell::new(0));
    let levels: [Rc<Cell<bool>>; 2] = [Rc::new(Cell::new(true)), Rc::new(Cell::new(true))];
    let bus = |calls: &Rc<Cell<u32>>| Bus {
        calls: calls.clone(),
        fail_at: u32::from(options >> 4),
    };
    let caps = SpiCaps::new(options & 3, 1_000_000);
    if rest.len() % 35 == 0 {
        let pins = [Pin(levels[0].clone()), Pin(levels[1].clone())];
        let spi = Spi::new(bus(&calls), pins, caps).with_queue_size(QSIZE);
        run(spi, &mem, options, rest, &calls, true, |spi| {
            (spi.stats(), spi.asserted().is_none())
        });
    } else {
        let spi: SpiDevices<Bus, 2, 4, 256> =
            SpiDevices::new([bus(&calls), bus(&calls)], caps).with_queue_size(QSIZE);
        run(spi, &mem, options, rest, &calls, false, |spi| {
            (spi.stats(), spi.held() == 0)
        });
    }
});

/// Queues the transfers `rest` describes on `device`, serves them and
/// checks the invariants; `idle` gives the device's counters and whether
/// it holds nothing (no chip select asserted, no transfer held).
fn run<D: VirtioDevice>(
    device: D,
    mem: &Guarded<'_>,
    options: u8,
    rest: &[u8],
    calls: &Rc<Cell<u32>>,
    in_order: bool,
    idle: impl Fn(&D) -> (SpiStats, bool),
) {
    let mut core: DeviceCore<_, &Guarded<'_>, 1> = DeviceCore::new(device, mem);
    core.set_budget(1 + u32::from((options >> 2) & 3));
    let features = core.device_features() - Features::RING_PACKED - Features::IN_ORDER;
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let cfg = SplitDriver::layout(0, QSIZE);
    let mut drv = SplitDriver::new(mem, cfg, core.negotiated_features()).expect("ring");
    core.set_queue_size(0, u32::from(QSIZE)).expect("size");
    core.set_queue_area(0, RingArea::Descriptors, cfg.desc_addr)
        .expect("desc");
    core.set_queue_area(0, RingArea::Driver, cfg.driver_addr)
        .expect("driver");
    core.set_queue_area(0, RingArea::Device, cfg.device_addr)
        .expect("device");
    core.set_queue_ready(0, true).expect("ready");
    core.set_status(1 | 2 | 4 | 8);

    let mut at = DATA;
    let mut put = |bytes: &[u8]| -> (Segment, Vec<u8>) {
        let s = Segment {
            addr: at,
            len: bytes.len() as u32,
        };
        mem.raw().write(at, bytes).expect("buffer");
        at += (bytes.len() as u64 + 15) & !15;
        (s, bytes.to_vec())
    };
    // Each transfer: 32 head bytes, tx len, rx len, shape.
    let mut sent = Vec::new();
    for r in rest.chunks_exact(35).take(8) {
        let mut head = r[..32].to_vec();
        // Keep a fair share of heads valid: shape bit 3 writes a good one.
        let shape = r[34];
        if shape & 8 != 0 {
            head.fill(0);
            head[0] = r[0] & 1;
            head[1] = 8;
            head[2] = r[2] & 1;
            head[8] = (options & 3) | (r[8] & 0b1100);
            head[12..16].copy_from_slice(&1_000_000u32.to_le_bytes());
        }
        let tx = usize::from(r[32] % 150);
        let rx = u32::from(r[33] % 150);
        let mut readable = Vec::new();
        if shape & 1 != 0 {
            readable.push(put(&head[..7]));
            readable.push(put(&head[7..]));
        } else {
            readable.push(put(&head));
        }
        if tx > 0 {
            readable.push(put(&vec![r[3]; tx]));
        }
        let mut writable = Vec::new();
        let room = rx + u32::from(shape & 2 == 0);
        if room > 0 {
            writable.push(put(&vec![0xa5; room as usize]).0);
        }
        let malformed = shape & 4 != 0 && !writable.is_empty();
        let id = if malformed {
            let extra = put(&[0x77]);
            let mut raw: Vec<(Segment, bool)> = readable.iter().map(|(s, _)| (*s, false)).collect();
            raw.extend(writable.iter().map(|s| (*s, true)));
            raw.push((extra.0, false));
            readable.push(extra);
            drv.add_raw(mem, &raw)
        } else {
            let segs: Vec<Segment> = readable.iter().map(|(s, _)| *s).collect();
            drv.add(mem, &segs, &writable)
        };
        let Ok(id) = id else { break };
        sent.push((id, readable, writable, malformed));
    }
    if drv.publish_avail(mem).is_err() {
        return;
    }
    let mut service = core.notify(0);
    let mut rounds = 0;
    while service.work_left() {
        rounds += 1;
        assert!(rounds < 100, "the device never finishes");
        service = core.poll();
    }
    let mut order = Vec::new();
    while let Some(used) = drv.pop_used(mem).expect("valid ids") {
        let (_, _, writable, malformed) = sent
            .iter()
            .find(|s| s.0 == used.id)
            .expect("a sent transfer");
        let total: u32 = writable.iter().map(|w| w.len).sum();
        assert!(used.len <= total);
        if core.is_live() && total > 0 && !malformed {
            let last = writable.last().expect("result");
            let mut b = [0u8];
            mem.raw()
                .read(last.addr + u64::from(last.len) - 1, &mut b)
                .expect("result");
            assert!(
                b[0] == TRANS_OK || b[0] == PARAM_ERR || b[0] == TRANS_ERR,
                "result {}",
                b[0]
            );
        }
        order.push(used.id);
    }
    for (_, readable, _, _) in &sent {
        for (seg, before) in readable {
            let mut now = vec![0u8; seg.len as usize];
            mem.raw().read(seg.addr, &mut now).expect("readable");
            assert_eq!(&now, before, "the device wrote a device-readable buffer");
        }
    }
    if core.is_live() {
        let mut ids: Vec<u16> = sent.iter().map(|s| s.0).collect();
        if !in_order {
            ids.sort_unstable();
            order.sort_unstable();
        }
        assert_eq!(order, ids, "every transfer returned (in order for Spi)");
        let (stats, drained) = idle(core.device());
        if stats.ok == 0 && stats.trans_errors == 0 {
            assert_eq!(calls.get(), 0, "a refused transfer reached the bus");
        }
        // Drained: every chip select back inactive (active low, or the
        // CS_HIGH transfer's pin back low), no transfer held.
        assert!(drained, "chip select left asserted or a transfer held");
    }
}
