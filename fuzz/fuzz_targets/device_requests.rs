//! Each device's request parser, fed arbitrary requests through a real
//! queue: a chain of arbitrary readable bytes and writable buffers of
//! arbitrary sizes on any of the device's queues.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! the device never writes a device-readable buffer; rng and block return
//! every request (never drop one) with a used length within the writable
//! part; block's last written byte is a defined status (OK, IOERR, UNSUPP);
//! the console may hold receive buffers, but returns at most the one chain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::{DeviceCore, VirtioDevice};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::block::{Block, BlockOptions, RamDisk, RangeCommand};
use virtio_devices::console::Console;
use virtio_devices::rng::Rng;
use virtio_fuzz::{DATA, Guarded, RequestInput, Sink, XorShift64, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;

fuzz_target!(|data: &[u8]| {
    let Some(input) = RequestInput::parse(data) else {
        return;
    };
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    match input.device {
        0 => run(
            Rng::new(XorShift64::new(0x9e37_79b9_7f4a_7c15)),
            &mem,
            &input,
            Check::Rng,
        ),
        1 => {
            let mut disk = vec![0u8; 16 * 512];
            let o = input.options;
            let range = Some(RangeCommand {
                max_sectors: 8,
                max_segments: 2,
                alignment_or_may_unmap: 1,
            });
            let options = BlockOptions {
                read_only: o & 1 != 0,
                discard: if o & 2 != 0 { range } else { None },
                write_zeroes: if o & 4 != 0 { range } else { None },
                queue_size: QSIZE,
                ..BlockOptions::default()
            };
            run(
                Block::new(RamDisk::new(&mut disk), options),
                &mem,
                &input,
                Check::Block,
            );
        }
        _ => run(
            Console::new([Sink::default(), Sink::default()]),
            &mem,
            &input,
            Check::Console,
        ),
    }
});

#[derive(Clone, Copy, PartialEq)]
enum Check {
    Rng,
    Block,
    Console,
}

fn run<D: VirtioDevice>(device: D, mem: &Guarded<'_>, input: &RequestInput<'_>, check: Check) {
    let mut core: DeviceCore<D, &Guarded<'_>, 8> = DeviceCore::new(device, mem);
    let queues = core.num_queues().min(8);
    if queues == 0 {
        return;
    }
    let queue = u16::from(input.queue) % queues;
    // Negotiate everything offered (multiport and the rest), split ring.
    let features = core.device_features() - Features::RING_PACKED - Features::IN_ORDER;
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let base = 0x0u64;
    let cfg = SplitDriver::layout(base, QSIZE);
    let mut drv = SplitDriver::new(mem, cfg, core.negotiated_features()).expect("ring");
    core.set_queue_size(queue, u32::from(QSIZE)).expect("size");
    core.set_queue_area(queue, RingArea::Descriptors, cfg.desc_addr)
        .expect("desc");
    core.set_queue_area(queue, RingArea::Driver, cfg.driver_addr)
        .expect("driver");
    core.set_queue_area(queue, RingArea::Device, cfg.device_addr)
        .expect("device");
    core.set_queue_ready(queue, true).expect("ready");
    core.set_status(1 | 2 | 4 | 8);

    // Lay out the buffers one after another from DATA.
    let mut at = DATA;
    let mut place = |lens: &[u16]| -> Vec<Segment> {
        lens.iter()
            .map(|&len| {
                let s = Segment {
                    addr: at,
                    len: u32::from(len),
                };
                at += u64::from(len);
                s
            })
            .collect()
    };
    let readable = place(&input.readable);
    let writable = place(&input.writable);
    let mut src = input.bytes.iter().copied().cycle();
    let mut snapshot = Vec::new();
    for s in &readable {
        let bytes: Vec<u8> = if input.bytes.is_empty() {
            vec![0; s.len as usize]
        } else {
            (0..s.len).map(|_| src.next().unwrap_or(0)).collect()
        };
        mem.write(s.addr, &bytes).expect("readable buffer");
        snapshot.push(bytes);
    }
    for s in &writable {
        mem.write(s.addr, &vec![0xa5; s.len as usize])
            .expect("writable buffer");
    }
    let writable_len: u32 = writable.iter().map(|s| s.len).sum();
    if drv.add(mem, &readable, &writable).is_err() {
        return;
    }
    drv.publish_avail(mem).expect("publish");
    // One budget per call; the embedder calls again while work is left
    // (at most one chain is queued here, so this ends at once).
    let mut service = core.notify(u32::from(queue));
    while service.work_left() {
        service = core.poll();
    }

    let mut returned = 0;
    while let Some(used) = drv.pop_used(mem).expect("the device returns valid ids") {
        returned += 1;
        assert!(
            used.len <= writable_len,
            "used length {} over the writable {writable_len}",
            used.len
        );
        if check == Check::Block && used.len > 0 {
            let status = byte_at(mem, &writable, used.len - 1);
            assert!(status <= 2, "block status byte {status}");
        }
    }
    for (s, before) in readable.iter().zip(&snapshot) {
        let mut now = vec![0u8; s.len as usize];
        mem.read(s.addr, &mut now).expect("readable buffer");
        assert_eq!(&now, before, "the device wrote a device-readable buffer");
    }
    match check {
        Check::Rng | Check::Block if !core.is_live() => {}
        Check::Rng | Check::Block => assert_eq!(returned, 1, "request dropped"),
        Check::Console => assert!(returned <= 1),
    }
}

/// Byte `n` of the writable stream.
fn byte_at(mem: &Guarded<'_>, writable: &[Segment], mut n: u32) -> u8 {
    for s in writable {
        if n < s.len {
            let mut b = [0u8];
            mem.read(s.addr + u64::from(n), &mut b).expect("status");
            return b[0];
        }
        n -= s.len;
    }
    panic!("used length beyond the writable buffers")
}
