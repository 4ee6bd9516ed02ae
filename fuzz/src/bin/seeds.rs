//! Writes the seed corpora: `cargo run --bin seeds -- <corpus dir>` (the
//! default is `corpus/`), one subdirectory per fuzz target. Seeds are real
//! driver traffic made with our driver side, so the fuzzer starts from
//! well-formed rings and requests and mutates from there.

use std::fs;
use std::path::{Path, PathBuf};

use virtio_core::driver::{PackedDriver, SplitDriver};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{QueueConfig, Segment};
use virtio_core::spec::Features;
use virtio_fuzz::{
    DATA, DESC, DEVICE_AREA, DRIVER_AREA, Guarded, I2cInput, I2cRequest, IommuInput, MmioOp,
    QueueInput, RequestInput, RpmbInput, RpmbRequest, ScmiInput, ScmiOp, ShmInput, WatchdogInput,
    host, message, shm_layout,
};
use virtio_transport_mmio::regs;
use zerocopy::IntoBytes;

fn seg(addr: u64, len: u32) -> Segment {
    Segment { addr, len }
}

/// Chains of several shapes: readable, writable, mixed, indirect.
fn add_chains(add: &mut dyn FnMut(Option<u64>, &[Segment], &[Segment])) {
    add(None, &[seg(DATA, 16)], &[]);
    add(
        None,
        &[seg(DATA + 0x40, 16)],
        &[seg(DATA + 0x80, 64), seg(DATA + 0xc0, 1)],
    );
    add(None, &[], &[seg(DATA + 0x100, 128)]);
    add(
        Some(DATA + 0x400),
        &[seg(DATA + 0x200, 16), seg(DATA + 0x240, 32)],
        &[seg(DATA + 0x280, 1)],
    );
}

fn image(mem: &Guarded<'_>) -> Vec<u8> {
    let mut v = vec![0u8; 0x3000];
    mem.read(0, &mut v).expect("image");
    v
}

fn split_seed(features: Features, size_log: u8) -> Vec<u8> {
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let size = 1u16 << size_log;
    let cfg = QueueConfig {
        size,
        desc_addr: DESC,
        driver_addr: DRIVER_AREA,
        device_addr: DEVICE_AREA,
    };
    let mut drv = SplitDriver::new(&mem, cfg, features).expect("split ring");
    add_chains(&mut |table, r, w| {
        let _ = match table {
            Some(t) if features.contains(Features::INDIRECT_DESC) => {
                drv.add_indirect(&mem, t, r, w)
            }
            _ => drv.add(&mem, r, w),
        };
    });
    drv.publish_avail(&mem).expect("publish");
    let img = image(&mem);
    QueueInput {
        size_byte: size_log,
        features: features.bits(),
        avail: 0,
        used: 0,
        reverse: true,
        max_pops: 8,
        image: &img,
    }
    .encode()
}

fn packed_seed(features: Features, size: u16) -> Vec<u8> {
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let cfg = QueueConfig {
        size,
        desc_addr: DESC,
        driver_addr: DRIVER_AREA,
        device_addr: DEVICE_AREA,
    };
    let features = features | Features::RING_PACKED;
    let mut drv = PackedDriver::<64>::new(&mem, cfg, features).expect("packed ring");
    add_chains(&mut |table, r, w| {
        let _ = match table {
            Some(t) if features.contains(Features::INDIRECT_DESC) => {
                drv.add_indirect(&mem, t, r, w)
            }
            _ => drv.add(&mem, r, w),
        };
    });
    drv.publish_avail(&mem).expect("publish");
    let img = image(&mem);
    QueueInput {
        size_byte: (size - 1) as u8,
        features: features.bits(),
        avail: 0x8000,
        used: 0x8000,
        reverse: true,
        max_pops: 8,
        image: &img,
    }
    .encode()
}

/// A block driver's whole bring-up over MMIO, then one request per shape.
fn mmio_seed(requests: &[(u32, u64)]) -> Vec<u8> {
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let cfg = SplitDriver::layout(0, 16);
    let features = Features::VERSION_1;
    let mut drv = SplitDriver::new(&mem, cfg, features).expect("ring");
    for (i, &(kind, sector)) in requests.iter().enumerate() {
        let at = DATA + 0x400 * i as u64;
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write(at, &header).expect("header");
        let data = seg(at + 0x10, 512);
        let status = seg(at + 0x300, 1);
        let _ = if kind == 1 {
            drv.add(&mem, &[seg(at, 16), data], &[status])
        } else {
            drv.add(&mem, &[seg(at, 16)], &[data, status])
        };
    }
    drv.publish_avail(&mem).expect("publish");
    let img = image(&mem);
    let w = |off: u32, v: u64| MmioOp::write32(off as u16, v as u32);
    let mut ops = vec![
        w(regs::STATUS, 0),
        w(regs::STATUS, 1),
        w(regs::STATUS, 3),
        w(regs::DEVICE_FEATURES_SEL, 1),
        MmioOp {
            write: false,
            width: 2,
            offset: regs::DEVICE_FEATURES as u16,
            value: 0,
        },
        w(regs::DRIVER_FEATURES_SEL, 1),
        w(regs::DRIVER_FEATURES, 1),
        w(regs::DRIVER_FEATURES_SEL, 0),
        w(regs::DRIVER_FEATURES, 0),
        w(regs::STATUS, 11),
        w(regs::QUEUE_SEL, 0),
        w(regs::QUEUE_SIZE, 16),
        w(regs::QUEUE_DESC_LOW, cfg.desc_addr),
        w(regs::QUEUE_DRIVER_LOW, cfg.driver_addr),
        w(regs::QUEUE_DEVICE_LOW, cfg.device_addr),
        w(regs::QUEUE_READY, 1),
        w(regs::STATUS, 15),
        w(regs::QUEUE_NOTIFY, 0),
        MmioOp {
            write: false,
            width: 2,
            offset: regs::INTERRUPT_STATUS as u16,
            value: 0,
        },
        w(regs::INTERRUPT_ACK, 1),
        MmioOp {
            write: false,
            width: 0,
            offset: regs::CONFIG as u16,
            value: 0,
        },
        w(regs::QUEUE_RESET, 1),
        w(regs::STATUS, 0),
    ]
    .into_iter()
    .flat_map(|op| op.encode())
    .collect::<Vec<u8>>();
    let mut v = (img.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(&img);
    v.append(&mut ops);
    v
}

fn request_seed(
    device: u8,
    queue: u8,
    options: u8,
    readable: &[u16],
    writable: &[u16],
    bytes: &[u8],
) -> Vec<u8> {
    RequestInput {
        device,
        queue,
        options,
        readable: readable.to_vec(),
        writable: writable.to_vec(),
        bytes,
    }
    .encode()
}

fn block_header(kind: u32, sector: u64) -> Vec<u8> {
    let mut h = kind.to_le_bytes().to_vec();
    h.extend_from_slice(&[0; 4]);
    h.extend_from_slice(&sector.to_le_bytes());
    h
}

fn le32s(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A driver bringing up device `dev` over virtio-msg, one queue of 16 in
/// the data area holding one request (`readable`/`writable` lengths), then
/// kicking it, reading config and the queue back, and resetting.
fn shm_seed(dev: u16, readable: &[u32], writable: &[u32]) -> Vec<u8> {
    let layout = shm_layout();
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let ring = layout.data_off();
    let cfg = SplitDriver::layout(ring, 16);
    let mut drv = SplitDriver::new(mem.raw(), cfg, Features::VERSION_1).expect("ring");
    let mut at = ring + 0x400;
    let mut place = |lens: &[u32]| -> Vec<Segment> {
        lens.iter()
            .map(|&len| {
                let s = seg(at, len);
                at += u64::from(len);
                s
            })
            .collect()
    };
    let (r, w) = (place(readable), place(writable));
    if let Some(first) = r.first() {
        // A block IN header for sector 1.
        let mut h = 0u32.to_le_bytes().to_vec();
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&1u64.to_le_bytes());
        mem.raw()
            .write(first.addr, &h[..first.len.min(16) as usize])
            .expect("header");
    }
    drv.add(mem.raw(), &r, &w).expect("request");
    drv.publish_avail(mem.raw()).expect("publish");
    let mut area = vec![0u8; 0x800];
    mem.raw().read(ring, &mut area).expect("data area");
    let mut vq = le32s(&[0, 0, 16, 0]);
    for a in [cfg.desc_addr, cfg.driver_addr, cfg.device_addr] {
        vq.extend_from_slice(&a.to_le_bytes());
    }
    let t = |n: u16| n;
    let messages = vec![
        message(2, 0x03, 0, t(1), &le32s(&[0x1234_5678])),
        message(2, 0x02, 0, t(2), &[0, 0, 8, 0]),
        message(0, 0x02, dev, t(3), &[]),
        message(0, 0x08, dev, t(4), &le32s(&[1])),
        message(0, 0x08, dev, t(5), &le32s(&[3])),
        message(0, 0x03, dev, t(6), &le32s(&[0, 2])),
        message(0, 0x04, dev, t(7), &le32s(&[0, 2, 0, 1])),
        message(0, 0x08, dev, t(8), &le32s(&[11])),
        message(0, 0x0a, dev, t(9), &vq),
        message(0, 0x08, dev, t(10), &le32s(&[15])),
        message(0, 0x41, dev, 0, &le32s(&[0, 0])),
        message(0, 0x05, dev, t(11), &le32s(&[0, 8])),
        message(0, 0x09, dev, t(12), &le32s(&[0])),
        message(0, 0x07, dev, t(13), &[]),
        message(0, 0x0c, dev, t(14), &le32s(&[0])),
        message(0, 0x08, dev, t(15), &le32s(&[0])),
    ];
    let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    ShmInput {
        flags: 0,
        indices: [0; 8],
        data_area: &area,
        messages,
    }
    .encode()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("corpus"), PathBuf::from);
    let write = |target: &str, name: &str, data: Vec<u8>| {
        let d = dir.join(target);
        fs::create_dir_all(&d).expect("corpus dir");
        fs::write(Path::new(&d).join(name), data).expect("seed");
    };
    for (i, f) in [
        Features::empty(),
        Features::INDIRECT_DESC,
        Features::EVENT_IDX | Features::INDIRECT_DESC,
        Features::IN_ORDER,
    ]
    .into_iter()
    .enumerate()
    {
        write("split_queue", &format!("split-{i}"), split_seed(f, 3));
        write("split_queue", &format!("split-small-{i}"), split_seed(f, 2));
        write("packed_queue", &format!("packed-{i}"), packed_seed(f, 8));
        write(
            "packed_queue",
            &format!("packed-odd-{i}"),
            packed_seed(f, 5),
        );
    }
    write(
        "mmio_block",
        "write-read-flush",
        mmio_seed(&[(1, 0), (0, 0), (4, 0)]),
    );
    write(
        "mmio_block",
        "get-id-and-past-end",
        mmio_seed(&[(8, 0), (0, 100)]),
    );
    write(
        "device_requests",
        "rng",
        request_seed(0, 0, 0, &[], &[64], &[]),
    );
    let mut out = block_header(1, 2);
    out.extend_from_slice(&[0x5a; 512]);
    write(
        "device_requests",
        "block-out",
        request_seed(1, 0, 0, &[16, 512], &[1], &out),
    );
    write(
        "device_requests",
        "block-in",
        request_seed(1, 0, 0, &[16], &[512, 1], &block_header(0, 3)),
    );
    let mut discard = block_header(11, 0);
    discard.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
    write(
        "device_requests",
        "block-discard",
        request_seed(1, 0, 2, &[16, 16], &[1], &discard),
    );
    write(
        "device_requests",
        "console-tx",
        request_seed(2, 1, 0, &[13], &[], b"hello, world\n"),
    );
    // Multiport control queue (transmitq of control, index 3): DEVICE_READY.
    let ready = [0u8, 0, 0, 0, 0, 0, 1, 0];
    write(
        "device_requests",
        "console-control",
        request_seed(2, 3, 0, &[8], &[], &ready),
    );
    write("shm_device", "rng-bring-up", shm_seed(0, &[], &[64]));
    write("shm_device", "block-read", shm_seed(1, &[16], &[512, 1]));
    // I2C: the EEPROM's traffic (page write, random read, a NACK, a quick
    // probe) and a group with a malformed member.
    let req = |addr: u16, flags: u32, write: u8, read: u8, shape: u8| I2cRequest {
        addr,
        flags,
        write,
        read,
        shape,
        seed: 0x0301,
    };
    write(
        "i2c_requests",
        "eeprom",
        I2cInput {
            options: 7,
            requests: vec![
                req(0xa0, 0, 9, 0, 0),
                req(0xa0, 1, 1, 0, 1),
                req(0xa0, 2, 0, 12, 0),
                req(0xa2, 1, 1, 0, 0),
                req(0xa2, 2, 0, 1, 0),
                req(0xa0, 0, 0, 0, 0),
            ],
        }
        .encode(),
    );
    write(
        "i2c_requests",
        "malformed-group",
        I2cInput {
            options: 0,
            requests: vec![
                req(0xa0, 1, 1, 0, 0),
                req(0xa0, 3, 1, 0, 4),
                req(0xa0, 2, 0, 2, 0),
                req(0xa5f4, 0, 2, 0, 2),
            ],
        }
        .encode(),
    );
    // GPIO: line 1 an input fed by line 0, an edge interrupt, a buffer,
    // edges through the loopback and the platform, then NONE.
    let op = |kind: u8, a: u8, b: u8, c: u8, d: u8| [kind, a, b, c, d, 0, 0, 0];
    let gpio: Vec<u8> = [
        op(0, 1, 0, 0, 2), // GET_LINE_NAMES
        op(0, 3, 1, 2, 2), // SET_DIRECTION 1 IN
        op(0, 5, 0, 0, 2), // SET_VALUE 0 low
        op(0, 3, 0, 1, 2), // SET_DIRECTION 0 OUT
        op(0, 6, 1, 3, 2), // SET_IRQ_TYPE 1 EDGE_BOTH
        op(2, 1, 2, 1, 0), // event buffer for line 1
        op(0, 5, 0, 1, 2), // SET_VALUE 0 high: an edge on 1
        op(2, 1, 2, 1, 0), // buffer again
        op(3, 1, 0, 0, 0), // the platform: line 1 low
        op(4, 0, 0, 0, 0), // poll
        op(0, 6, 1, 4, 2), // SET_IRQ_TYPE 1 LEVEL_HIGH
        op(2, 1, 2, 1, 0),
        op(0, 6, 1, 0, 2), // SET_IRQ_TYPE 1 NONE
        op(0, 3, 1, 0, 2), // SET_DIRECTION 1 NONE
    ]
    .concat();
    write("gpio_events", "loopback-edges", gpio);
    // SPI: a valid write, a read, a full-duplex transfer, a mismatch.
    let mut spi = vec![0x04u8];
    for (tx, rx) in [(4u8, 0u8), (0, 3), (8, 8), (3, 2)] {
        let mut r = vec![0u8; 35];
        r[32] = tx;
        r[33] = rx;
        r[34] = 8;
        spi.extend_from_slice(&r);
    }
    write("spi_requests", "valid-transfers", spi);
    // RPMB: program the key, read the counter, an authenticated write of
    // two blocks with its result read, a read back, a replay; and the same
    // against a key programmed beforehand with a counter about to expire.
    let rpmb = |shape: u8, block_count: u8, address: u16, counter: u8, out: u8| RpmbRequest {
        shape,
        block_count,
        address,
        counter,
        mac: 0,
        out,
        extra: 0,
        seed: 0x21,
        raw: 0,
        rr_count: 1,
    };
    // Sound: op bytes `[op, a, b, c]` (op 0 takes 28 payload bytes): the
    // probe's info queries, then a played and a recorded stream, paced by
    // clock steps, released with buffers held, and control reads/writes.
    let snd_ctl = |code_index: u8, room: u8, payload: &[u8]| {
        let mut v = vec![0u8, code_index, 32, room];
        let mut p = payload.to_vec();
        p.resize(28, 0);
        v.extend_from_slice(&p);
        v
    };
    let query = |count: u8, size: u8| [0, 0, 0, 0, count, 0, 0, 0, size, 0, 0, 0];
    let set_params = |stream: u8| {
        // stream, buffer 4 x 1024, period 1024, EVT_XRUNS, 2 ch, S16, 48 kHz
        [
            stream, 0, 0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 16, 0, 0, 0, 2, 5, 7, 0,
        ]
    };
    let mut sound = vec![0u8];
    for part in [
        snd_ctl(0, 13, &query(1, 24)),
        snd_ctl(2, 17, &query(2, 32)),
        snd_ctl(8, 13, &query(1, 24)),
        snd_ctl(9, 73, &query(3, 96)),
        snd_ctl(3, 1, &set_params(0)),
        snd_ctl(4, 1, &[0]),
        vec![1, 0, 255, 8],
        vec![1, 0, 255, 8],
        vec![3, 0, 0, 8],
        snd_ctl(6, 1, &[0]),
        vec![4, 5, 0, 0],
        vec![4, 5, 0, 0],
        snd_ctl(3, 1, &set_params(1)),
        snd_ctl(4, 1, &[1]),
        vec![2, 1, 64, 8],
        snd_ctl(6, 1, &[1]),
        vec![4, 2, 0, 0],
        vec![1, 0, 255, 8],
        snd_ctl(7, 1, &[0]),
        snd_ctl(5, 1, &[0]),
        snd_ctl(11, 129, &[0]),
        snd_ctl(13, 4, &[0]),
        vec![5, 0, 1, 0],
        vec![7, 1, 1, 0],
        vec![6, 1, 0, 0],
    ] {
        sound.extend_from_slice(&part);
    }
    write("sound_requests", "play-record-controls", sound);
    write(
        "rpmb_requests",
        "program-write-read",
        RpmbInput {
            options: 3,
            requests: vec![
                rpmb(1 | 8, 1, 0, 0, 1),
                rpmb(2, 1, 0, 0, 1),
                rpmb(3 | 8, 2, 10, 0, 1),
                rpmb(4, 2, 10, 0, 2),
                rpmb(3 | 8, 1, 10, 0, 1),
                rpmb(5, 1, 0, 0, 1),
            ],
        }
        .encode(),
    );
    write(
        "rpmb_requests",
        "expiring-counter",
        RpmbInput {
            options: 4 | 8 | 1,
            requests: vec![
                rpmb(3 | 8, 1, 5, 0, 1),
                rpmb(3 | 8, 1, 6, 1, 1),
                rpmb(4, 1, 5, 0, 1),
                rpmb(3, 4, 0, 1, 0),
                rpmb(5, 1, 0, 0, 1),
            ],
        }
        .encode(),
    );
    // Watchdog: pings in time, a missed deadline, a reset, a storm.
    let mut ops = vec![(0u8, 3u8), (3, 0), (2, 10), (0, 0), (3, 0), (2, 30), (4, 0)];
    ops.extend([(4, 0xff), (2, 50), (4, 0)]);
    ops.extend((0..12).map(|i| (0u8, i)));
    ops.extend([(1, 2), (3, 0), (2, 25), (4, 0)]);
    write(
        "watchdog_requests",
        "pings-expiry-reset-storm",
        WatchdogInput { options: 0x50, ops }.encode(),
    );
    // SCMI: discovery over every protocol, synchronous and asynchronous
    // commands with eventq buffers, trip points and notifications.
    // Protocol bytes index 0x10, 0x11, 0x13, 0x14, 0x15, 0x16, 0x17.
    let cmd = |protocol: u8, message: u8, words: u8, param: [u8; 3]| ScmiOp {
        kind: 0,
        protocol,
        message,
        shape: words,
        param,
        room: 140,
    };
    let other = |kind: u8, protocol: u8, message: u8, room: u8| ScmiOp {
        kind,
        protocol,
        message,
        shape: 0,
        param: [0; 3],
        room,
    };
    let mut ops = vec![other(1, 0, 0, 32), other(1, 0, 0, 32), other(1, 0, 0, 32)];
    for p in 0..7 {
        ops.push(cmd(p, 0, 0, [0; 3]));
        ops.push(cmd(p, 1, 0, [0; 3]));
        ops.push(cmd(p, 2, 1, [3, 0, 0]));
        ops.push(cmd(p, 3, 1, [0; 3]));
    }
    ops.push(cmd(0, 6, 1, [0; 3]));
    ops.push(cmd(0, 7, 1, [0xff, 0xff, 0xff]));
    ops.push(cmd(0, 8, 1, [1, 0, 0]));
    ops.push(other(4, 0, 0, 0));
    write(
        "scmi_requests",
        "discovery",
        ScmiInput {
            options: 4 | 3,
            ops,
        }
        .encode(),
    );
    let mut ops = vec![other(1, 0, 0, 32), other(1, 0, 0, 40), other(1, 0, 0, 20)];
    // Sensor: read async, trip point 0 at 50 (both ways), notify, crossings.
    ops.push(cmd(4, 6, 2, [0, 0, 0]));
    ops.push(cmd(4, 5, 4, [3, 0, 0]));
    ops.push(cmd(4, 4, 2, [0, 0, 0]));
    ops.push(other(2, 0, 60, 0));
    ops.push(other(2, 0, 10, 0));
    // Clock: describe rates, rate set async, config; reset async; events.
    ops.push(cmd(3, 4, 2, [0, 0, 0]));
    ops.push(cmd(3, 5, 4, [1, 0, 0]));
    ops.push(cmd(3, 7, 2, [2, 0, 0]));
    ops.push(cmd(5, 4, 3, [1, 0, 0]));
    ops.push(cmd(5, 5, 2, [1, 0, 0]));
    ops.push(other(3, 1, 0, 0));
    ops.push(other(1, 0, 0, 32));
    ops.push(other(5, 0, 0, 0));
    write(
        "scmi_requests",
        "async-and-notifications",
        ScmiInput {
            options: 4 | 8 | 1,
            ops,
        }
        .encode(),
    );
    let ops = vec![
        cmd(4, 6, 2, [0, 0, 0]),
        cmd(0xe5, 0, 0, [0; 3]),
        ScmiOp {
            shape: 0x40 | 1,
            ..cmd(3, 6, 1, [0; 3])
        },
        ScmiOp {
            shape: 0x18 | 2,
            ..cmd(3, 6, 2, [0; 3])
        },
        other(4, 0, 0, 0),
    ];
    write(
        "scmi_requests",
        "no-p2a-malformed",
        ScmiInput { options: 0, ops }.encode(),
    );
    // IOMMU: a driver's bring-up (event buffers, PROBE, ATTACH, MAP),
    // DMA through Translated, a split UNMAP, a fault, UNMAP and DETACH.
    // Fields: [kind, aux, domain, endpoint, start(2), pages, offset,
    // phys(2), flags, room, reserved/cut, misc(3)].
    let op = |kind: u8, aux: u8, start: u16, pages: u8, flags: u8, room: u8| {
        let [s0, s1] = start.to_le_bytes();
        [
            kind, aux, 1, 0, s0, s1, pages, 0, 0x10, 0, flags, room, 0, 8, 0x5a, 0,
        ]
    };
    let bring_up = vec![
        op(6, 24, 0, 0, 0, 1),
        op(6, 24, 0, 0, 0, 1),
        op(4, 0, 0, 0, 0, 71),
        op(0, 0, 0, 0, 0, 1),
        op(2, 0, 0, 1, 3, 1),
        op(2, 0, 2, 0, 1, 1),
        op(7, 0x10, 0, 0, 0, 0),
        op(7, 0x00, 2, 0, 0, 0),
        op(7, 0x10, 2, 0, 0, 0),
        op(3, 0, 0, 0, 0, 1),
        op(3, 0, 0, 1, 0, 6),
        op(7, 0x00, 0, 0, 0, 0),
        op(1, 0, 0, 0, 0, 1),
    ];
    for (name, options) in [
        ("bring-up-4k", 0u8),
        ("bring-up-ranges", 0x0c),
        ("legacy-bypass", 0x11),
    ] {
        write(
            "iommu_requests",
            name,
            IommuInput {
                options,
                ops: bring_up.clone(),
            }
            .encode(),
        );
    }
    println!("seeds written to {}", dir.display());
}
