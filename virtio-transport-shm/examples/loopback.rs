//! The shared-memory transport end to end: a device end (rng, console and
//! block devices) and a driver end in two threads, sharing one window and
//! nothing else, talking virtio-msg.
//!
//! The driver enumerates the bus (GET_DEVICES, GET_DEVICE_INFO), brings
//! each device up through the full virtio-msg sequence, does real I/O, and
//! then measures request throughput on the block device.
//!
//! Run with `cargo run --release -p virtio-backend-shm --example loopback`.
// An example program, not library code: it may stop on its own setup errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::{BlkReqHeader, Block, BlockOptions, RamDisk};
use virtio_devices::console::Console;
use virtio_devices::rng::Rng;
use virtio_devices::rng::test_utils::XorShift64;
use virtio_transport_shm::layout::{self, Bump};
use virtio_transport_shm::{DataArea, DeviceEnd, Doorbell, DriverEnd, Layout, ShmDevice};
use zerocopy::IntoBytes;

/// 16 slots of 64 bytes per ring and 256 KiB for queues and buffers.
const LAYOUT: Layout = match Layout::new(16, 64, 256 * 1024) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};
const RNG: u16 = 0;
const CONSOLE: u16 = 1;
const BLOCK: u16 = 2;

/// The console's host side: input queued by the host, output collected.
#[derive(Clone, Default)]
struct HostPipe {
    input: Arc<Mutex<VecDeque<u8>>>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl embedded_io::ErrorType for HostPipe {
    type Error = Infallible;
}

impl embedded_io::Read for HostPipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut input = self.input.lock().unwrap();
        let n = buf.len().min(input.len());
        for b in &mut buf[..n] {
            *b = input.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for HostPipe {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.input.lock().unwrap().is_empty())
    }
}

impl embedded_io::Write for HostPipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.output.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A doorbell between threads: a flag and an unpark.
#[derive(Clone)]
struct ThreadBell {
    flag: Arc<AtomicBool>,
    thread: Thread,
}

impl Doorbell for ThreadBell {
    fn ring(&mut self) {
        self.flag.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// Waits until `flag` is set (or a short timeout), then clears it.
fn wait(flag: &AtomicBool) {
    if !flag.swap(false, Ordering::AcqRel) {
        thread::park_timeout(Duration::from_millis(1));
        flag.store(false, Ordering::Release);
    }
}

fn main() {
    let mut backing = vec![0u64; LAYOUT.window_len() as usize / 8];
    let window = Region::new(0, backing.as_mut_bytes()).unwrap();
    layout::init(&window, &LAYOUT).unwrap();
    println!(
        "window: {} bytes ({} slots x {} B per ring, data area {} KiB at {:#x})",
        LAYOUT.window_len(),
        LAYOUT.slots(),
        LAYOUT.slot_size(),
        LAYOUT.data_len() / 1024,
        LAYOUT.data_off()
    );

    let to_device = Arc::new(AtomicBool::new(false));
    let to_driver = Arc::new(AtomicBool::new(false));
    let stop = AtomicBool::new(false);
    let pipe = HostPipe::default();
    let mut disk = vec![0u8; 1024 * 512];

    thread::scope(|s| {
        let window = &window;
        let driver_bell = ThreadBell {
            flag: to_driver.clone(),
            thread: thread::current(),
        };
        let (pipe_dev, disk, stop, to_device_flag) = (pipe.clone(), &mut disk, &stop, &to_device);
        let device = s.spawn(move || {
            let data = DataArea::new(window, &LAYOUT);
            let devices = (
                ShmDevice::<_, _, 1>::new(Rng::new(XorShift64::new(0x2545_f491_4f6c_dd1d)), data),
                ShmDevice::<_, _, 2>::new(Console::new([pipe_dev]).with_size(80, 25), data),
                ShmDevice::<_, _, 1>::new(
                    Block::new(
                        RamDisk::new(disk),
                        BlockOptions {
                            id: *b"shm-loopback-disk\0\0\0",
                            ..BlockOptions::default()
                        },
                    ),
                    data,
                ),
            );
            let mut dev = DeviceEnd::attach(window, LAYOUT, devices, driver_bell).unwrap();
            while !stop.load(Ordering::Acquire) {
                wait(to_device_flag);
                while dev.process().work_left() {}
                while dev.poll().work_left() {}
            }
            dev
        });

        let device_bell = ThreadBell {
            flag: to_device.clone(),
            thread: device.thread().clone(),
        };
        let to_driver = to_driver.clone();
        let idle = move || wait(&to_driver);
        let mut drv: DriverEnd<_, _, _, 4> =
            DriverEnd::attach(window, LAYOUT, device_bell.clone(), idle).unwrap();
        drive(&mut drv, &pipe, device_bell);
        stop.store(true, Ordering::Release);
        device.thread().unpark();
        let dev = device.join().unwrap();
        let st = dev.stats();
        println!("device end:");
        println!(
            "  messages received {}, answered {}, EVENT_USED sent {}, EVENT_CONFIG sent {}, discarded {}",
            st.received,
            st.responses,
            st.events_used,
            st.events_config,
            st.discarded()
        );
        let (rng, console, blk) = dev.devices();
        println!(
            "  [rng]     status {:#04x}, rejected requests {}",
            rng.core().status().bits(),
            rng.device().rejected()
        );
        println!(
            "  [console] status {:#04x}, host received {:?}",
            console.core().status().bits(),
            String::from_utf8_lossy(&pipe.output.lock().unwrap())
        );
        println!(
            "  [block]   status {:#04x}, {:?}",
            blk.core().status().bits(),
            blk.device().stats()
        );
        assert_eq!(st.discarded(), 0, "no message was discarded");
    });
}

type Drv<'w, I> = DriverEnd<'w, Region<'w>, ThreadBell, I, 4>;

fn drive<I: virtio_transport_shm::Idle>(
    drv: &mut Drv<'_, I>,
    pipe: &HostPipe,
    mut device_bell: ThreadBell,
) {
    assert_eq!(drv.ping(0x5157_0001).unwrap(), 0x5157_0001);
    let present = drv.devices().unwrap();
    println!("driver end: PING ok; GET_DEVICES -> {present:#b}");
    for dev in (0..64).filter(|d| present & (1 << d) != 0) {
        let info = drv.device_info(dev).unwrap();
        println!(
            "  device {dev}: device id {}, {} feature bits, config {} bytes, {} virtqueues",
            info.device_id.get(),
            info.num_feature_bits.get(),
            info.config_size.get(),
            info.max_vqueues.get()
        );
    }
    let data = drv.data();
    let mut alloc = Bump::new(&LAYOUT);
    let ring = |alloc: &mut Bump, size: u16| {
        let base = alloc.alloc(SplitDriver::layout_len(size), 64).unwrap();
        SplitDriver::layout(base, size)
    };

    // ---- rng ----
    let rq = ring(&mut alloc, 8);
    let mut rng_q = SplitDriver::new(&data, rq, Features::VERSION_1).unwrap();
    let f = drv.bring_up(RNG, Features::empty(), &[rq]).unwrap();
    println!("rng: negotiated {f:?}");
    let buf = alloc.alloc(32, 8).unwrap();
    rng_q
        .add(&data, &[], &[Segment { addr: buf, len: 32 }])
        .unwrap();
    if rng_q.publish_avail(&data).unwrap() {
        drv.notify(RNG, 0, 0).unwrap();
    }
    drv.wait_used(RNG, 0).unwrap();
    let used = rng_q.pop_used(&data).unwrap().unwrap();
    let mut random = [0u8; 32];
    data.read(buf, &mut random).unwrap();
    println!(
        "  {} random bytes: {:02x?}",
        used.len,
        &random[..used.len as usize]
    );
    assert_eq!(used.len, 32);

    // ---- console ----
    let (crx, ctx) = (ring(&mut alloc, 8), ring(&mut alloc, 8));
    let features = Features::VERSION_1 | Features::from_bits_retain(1); // SIZE
    let mut con_rx = SplitDriver::new(&data, crx, features).unwrap();
    let mut con_tx = SplitDriver::new(&data, ctx, features).unwrap();
    let f = drv.bring_up(CONSOLE, features, &[crx, ctx]).unwrap();
    let mut size = [0u8; 4];
    drv.get_config(CONSOLE, 0, &mut size).unwrap();
    println!(
        "console: negotiated {f:?}, size {}x{}",
        u16::from_le_bytes([size[0], size[1]]),
        u16::from_le_bytes([size[2], size[3]])
    );
    let inbuf = alloc.alloc(64, 8).unwrap();
    con_rx
        .add(
            &data,
            &[],
            &[Segment {
                addr: inbuf,
                len: 64,
            }],
        )
        .unwrap();
    if con_rx.publish_avail(&data).unwrap() {
        drv.notify(CONSOLE, 0, 0).unwrap();
    }
    let text = b"hello from the driver end over virtio-msg";
    let outbuf = alloc.alloc(text.len() as u64, 8).unwrap();
    data.write(outbuf, text).unwrap();
    con_tx
        .add(
            &data,
            &[Segment {
                addr: outbuf,
                len: text.len() as u32,
            }],
            &[],
        )
        .unwrap();
    if con_tx.publish_avail(&data).unwrap() {
        drv.notify(CONSOLE, 1, 0).unwrap();
    }
    drv.wait_used(CONSOLE, 1).unwrap();
    con_tx.pop_used(&data).unwrap().unwrap();
    println!("  sent {:?}", String::from_utf8_lossy(text));
    pipe.input
        .lock()
        .unwrap()
        .extend(b"and hello back from the host");
    device_bell.ring();
    let got = loop {
        if let Some(u) = con_rx.pop_used(&data).unwrap() {
            break u;
        }
        drv.wait_used(CONSOLE, 0).unwrap();
    };
    let mut input = vec![0u8; got.len as usize];
    data.read(inbuf, &mut input).unwrap();
    println!("  received {:?}", String::from_utf8_lossy(&input));

    // ---- block ----
    let bq = ring(&mut alloc, 128);
    let features = Features::VERSION_1 | Features::EVENT_IDX | Features::from_bits_retain(1 << 9);
    let mut blk_q = SplitDriver::new(&data, bq, features).unwrap();
    let f = drv.bring_up(BLOCK, features, &[bq]).unwrap();
    let mut cap = [0u8; 8];
    drv.get_config(BLOCK, 0, &mut cap).unwrap();
    println!(
        "block: negotiated {f:?}, capacity {} sectors",
        u64::from_le_bytes(cap)
    );
    let mut blk = BlockIo::new(&mut alloc, 32);
    let sector: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    let status = blk.request(drv, &mut blk_q, 0, 1, 5, Some(&sector));
    println!("  OUT sector 5 -> status {status}");
    let status = blk.request(drv, &mut blk_q, 0, 0, 5, None);
    let mut back = vec![0u8; 512];
    data.read(blk.data[0], &mut back).unwrap();
    println!(
        "  IN  sector 5 -> status {status}, data matches: {}",
        back == sector
    );
    assert_eq!(back, sector);
    let status = blk.request(drv, &mut blk_q, 0, 8, 0, None);
    let mut id = vec![0u8; 20];
    data.read(blk.data[0], &mut id).unwrap();
    println!(
        "  GET_ID -> status {status}, {:?}",
        String::from_utf8_lossy(&id).trim_end_matches('\0')
    );

    // ---- throughput ----
    let total = 100_000u32;
    let start = Instant::now();
    let done = blk.throughput(drv, &mut blk_q, total);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput: {done} block reads of 512 bytes, 32 in flight: {:.0} requests/s ({:.1} MB/s)",
        f64::from(done) / secs,
        f64::from(done) * 512.0 / secs / 1e6
    );
    assert_eq!(drv.stray_messages(), 0);
}

/// Block requests from the driver end: a header, a 512-byte data buffer
/// and a status byte per slot.
struct BlockIo {
    hdr: Vec<u64>,
    data: Vec<u64>,
    status: Vec<u64>,
}

impl BlockIo {
    fn new(alloc: &mut Bump, n: usize) -> Self {
        let mut take = |len: u64| {
            (0..n)
                .map(|_| alloc.alloc(len, 16).unwrap())
                .collect::<Vec<_>>()
        };
        Self {
            hdr: take(16),
            data: take(512),
            status: take(1),
        }
    }

    fn add<I: virtio_transport_shm::Idle>(
        &self,
        drv: &Drv<'_, I>,
        q: &mut SplitDriver,
        slot: usize,
        type_: u32,
        sector: u64,
        out: Option<&[u8]>,
    ) -> u16 {
        let data = drv.data();
        let h = BlkReqHeader {
            type_: type_.into(),
            reserved: 0.into(),
            sector: sector.into(),
        };
        data.write(self.hdr[slot], h.as_bytes()).unwrap();
        let hdr = Segment {
            addr: self.hdr[slot],
            len: 16,
        };
        let buf = Segment {
            addr: self.data[slot],
            len: 512,
        };
        let status = Segment {
            addr: self.status[slot],
            len: 1,
        };
        match out {
            Some(bytes) => {
                data.write(self.data[slot], bytes).unwrap();
                q.add(&data, &[hdr, buf], &[status]).unwrap()
            }
            None => q.add(&data, &[hdr], &[buf, status]).unwrap(),
        }
    }

    /// One request in slot `slot`, waited for; returns the status byte.
    fn request<I: virtio_transport_shm::Idle>(
        &mut self,
        drv: &mut Drv<'_, I>,
        q: &mut SplitDriver,
        slot: usize,
        type_: u32,
        sector: u64,
        out: Option<&[u8]>,
    ) -> u8 {
        let data = drv.data();
        self.add(drv, q, slot, type_, sector, out);
        if q.publish_avail(&data).unwrap() {
            drv.notify(BLOCK, 0, 0).unwrap();
        }
        loop {
            if q.pop_used(&data).unwrap().is_some() {
                break;
            }
            if !q.enable_interrupts(&data).unwrap() {
                drv.wait_used(BLOCK, 0).unwrap();
            }
        }
        let mut status = [0u8];
        data.read(self.status[slot], &mut status).unwrap();
        status[0]
    }

    /// `total` reads with `self.hdr.len()` in flight; returns completions.
    fn throughput<I: virtio_transport_shm::Idle>(
        &mut self,
        drv: &mut Drv<'_, I>,
        q: &mut SplitDriver,
        total: u32,
    ) -> u32 {
        let data = drv.data();
        let inflight = self.hdr.len();
        let mut slot_of = vec![0usize; usize::from(q.size())];
        let (mut submitted, mut done) = (0u32, 0u32);
        for slot in 0..inflight {
            let head = self.add(drv, q, slot, 0, u64::from(submitted % 1024), None);
            slot_of[usize::from(head)] = slot;
            submitted += 1;
        }
        if q.publish_avail(&data).unwrap() {
            drv.notify(BLOCK, 0, 0).unwrap();
        }
        while done < total {
            let mut progressed = false;
            while let Some(used) = q.pop_used(&data).unwrap() {
                progressed = true;
                done += 1;
                let slot = slot_of[usize::from(used.id)];
                if submitted < total {
                    let head = self.add(drv, q, slot, 0, u64::from(submitted % 1024), None);
                    slot_of[usize::from(head)] = slot;
                    submitted += 1;
                }
            }
            if q.publish_avail(&data).unwrap() {
                drv.notify(BLOCK, 0, 0).unwrap();
            }
            if !progressed && !q.enable_interrupts(&data).unwrap() {
                drv.wait_used(BLOCK, 0).unwrap();
            }
        }
        done
    }
}
