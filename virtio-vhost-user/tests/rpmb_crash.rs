//! The RPMB file backend under SIGKILL: a child process runs the RPMB
//! device (`DeviceCore` + `Rpmb` over `rpmb_file`) and a driver that does
//! authenticated writes as fast as it can, printing each write before it
//! submits it (`BEGIN`) and once the device acknowledged it (`ACK`). The
//! parent kills it with SIGKILL at a random instant, 200 times, and after
//! each kill opens the image (recovering it, as the daemon does at start)
//! and checks:
//!
//! * the counter is the last acknowledged one, or one more when the write
//!   in flight had reached its commit point;
//! * every block holds what the acknowledged writes (and that in-flight
//!   write exactly when the counter says it committed) put there: nothing
//!   acknowledged is lost and no write is half there.
//!
//! The child is this test binary run again with `RPMB_CRASH_IMAGE` set
//! (the `crash_child` test does nothing without it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::rpmb::{
    BLOCK_BYTES, FRAME_BYTES, Frame, KeyStore, MAC_START, REQ_DATA_WRITE, REQ_GET_WRITE_COUNTER,
    REQ_RESULT_READ, RESP_DATA_WRITE, Rpmb, RpmbStorage,
};
use virtio_vhost_user::rpmb_file;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const KEY: [u8; 32] = [0x6b; 32];
/// Blocks the writes land in.
const SPAN: u32 = 48;
const KILLS: u32 = 200;

/// The content of block `block` as written by the write whose counter
/// (before it) was `counter`.
fn content(counter: u32, block: u32) -> [u8; BLOCK_BYTES] {
    let mut x = (u64::from(counter) << 32 | u64::from(block)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    core::array::from_fn(|_| {
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x >> 56) as u8
    })
}

fn mac(frames: &[Frame]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(KEY);
    for f in frames {
        h.update(&f.as_bytes()[MAC_START..]);
    }
    h.finalize()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The child: serve and drive writes until killed.
fn child(image: &Path) {
    const BASE: u64 = 0x1000_0000;
    let (keys, storage) = rpmb_file::open(image).expect("open image");
    let dev: Rpmb<_, _, 4> = Rpmb::new(keys, storage).with_queue_size(16);
    let host: &'static mut [u8] = Vec::leak(vec![0u8; 1 << 20]);
    let mem: &'static Region<'static> = Box::leak(Box::new(Region::new(BASE, host).unwrap()));
    let mut core: DeviceCore<_, _, 1> = DeviceCore::new(dev, mem);
    core.set_status(1 | 2);
    core.set_driver_features(Features::VERSION_1);
    core.set_status(1 | 2 | 8);
    let cfg = SplitDriver::layout(BASE, 16);
    let mut drv = SplitDriver::new(mem, cfg, Features::VERSION_1).unwrap();
    core.set_queue_size(0, 16).unwrap();
    core.set_queue_area(0, RingArea::Descriptors, cfg.desc_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Driver, cfg.driver_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Device, cfg.device_addr)
        .unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(1 | 2 | 4 | 8);
    let req_at = BASE + 0x1_0000;
    let resp_at = BASE + 0x2_0000;
    let mut submit = |frames: &[Frame]| -> Frame {
        let readable: Vec<Segment> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let addr = req_at + (i * FRAME_BYTES) as u64;
                mem.write(addr, f.as_bytes()).unwrap();
                Segment {
                    addr,
                    len: FRAME_BYTES as u32,
                }
            })
            .collect();
        let out = Segment {
            addr: resp_at,
            len: FRAME_BYTES as u32,
        };
        drv.add(mem, &readable, &[out]).unwrap();
        drv.publish_avail(mem).unwrap();
        let mut s = core.notify(0);
        while s.work_left() {
            s = core.poll();
        }
        drv.pop_used(mem).unwrap().expect("completed");
        let mut b = [0u8; FRAME_BYTES];
        mem.read(resp_at, &mut b).unwrap();
        Frame::read_from_bytes(&b).unwrap()
    };
    let mut out = std::io::stdout().lock();
    let mut get = Frame::new_zeroed();
    get.req_resp = REQ_GET_WRITE_COUNTER.into();
    get.block_count = 1.into();
    let mut counter = submit(&[get]).write_counter.get();
    writeln!(out, "READY {counter}").unwrap();
    out.flush().unwrap();
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    loop {
        let n = (rng.next() % 4 + 1) as u32;
        let block = (rng.next() % u64::from(SPAN - n + 1)) as u32;
        let mut frames: Vec<Frame> = (0..n)
            .map(|i| {
                let mut f = Frame::new_zeroed();
                f.req_resp = REQ_DATA_WRITE.into();
                f.block_count = (n as u16).into();
                f.address = (block as u16).into();
                f.write_counter = counter.into();
                f.data = content(counter, block + i);
                f
            })
            .collect();
        let m = mac(&frames);
        frames.last_mut().unwrap().key_mac = m;
        let mut rr = Frame::new_zeroed();
        rr.req_resp = REQ_RESULT_READ.into();
        rr.block_count = 1.into();
        frames.push(rr);
        writeln!(out, "BEGIN {counter} {block} {n}").unwrap();
        out.flush().unwrap();
        let r = submit(&frames);
        assert_eq!(r.req_resp.get(), RESP_DATA_WRITE);
        assert_eq!(r.result.get(), 0, "write refused");
        counter = r.write_counter.get();
        writeln!(out, "ACK {counter}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_child() {
    if let Some(image) = std::env::var_os("RPMB_CRASH_IMAGE") {
        child(Path::new(&image));
    }
}

/// What the parent knows.
struct Model {
    /// Per block, the counter of the write that last wrote it.
    blocks: Vec<Option<u32>>,
    /// The last acknowledged counter.
    acked: u32,
}

impl Model {
    fn apply(&mut self, counter: u32, block: u32, n: u32) {
        for b in block..block + n {
            self.blocks[b as usize] = Some(counter);
        }
    }
}

fn temp_image() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rpmb-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("rpmb.img")
}

#[test]
fn sigkill_during_writes_loses_nothing_acknowledged() {
    let started = Instant::now();
    let image = temp_image();
    rpmb_file::create(&image, 1).unwrap();
    {
        let (mut keys, _) = rpmb_file::open(&image).unwrap();
        keys.program(&KEY).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let seed = started.elapsed().as_nanos() as u64 | 1;
    let mut rng = Rng(seed ^ 0x5555_aaaa_0f0f_f0f0);
    let mut model = Model {
        blocks: vec![None; SPAN as usize],
        acked: 0,
    };
    let (mut committed_in_flight, mut lost_in_flight, mut idle_kills, mut writes) = (0, 0, 0, 0);
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("RPMB_CRASH_IMAGE", &image)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to be serving, then let it write a while.
        let ready = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the child never got ready");
            // libtest may have printed "test crash_child ... " before it.
            if let Some((_, c)) = line.split_once("READY ") {
                break c.trim().parse::<u32>().unwrap();
            }
        };
        assert_eq!(ready, model.acked, "kill {kill}: the counter at start");
        let pause = rng.next() % 12_000;
        std::thread::sleep(Duration::from_micros(pause));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let mut pending: Option<(u32, u32, u32)> = None;
        for line in rx.try_iter() {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("BEGIN") => {
                    let v: Vec<u32> = parts.map(|p| p.parse().unwrap()).collect();
                    assert_eq!(v[0], model.acked, "a write with the current counter");
                    pending = Some((v[0], v[1], v[2]));
                }
                Some("ACK") => {
                    let c: u32 = parts.next().unwrap().parse().unwrap();
                    let (pc, b, n) = pending.take().expect("an ACK follows a BEGIN");
                    assert_eq!(c, pc + 1);
                    model.apply(pc, b, n);
                    model.acked = c;
                    writes += 1;
                }
                _ => {}
            }
        }
        // Recover as the daemon does at start, then check.
        let (_, mut storage) = rpmb_file::open(&image).unwrap();
        let counter = storage.write_counter().unwrap();
        match pending {
            Some((pc, b, n)) if counter == pc + 1 => {
                // The in-flight write reached its commit point: it is
                // there, whole.
                model.apply(pc, b, n);
                model.acked = counter;
                committed_in_flight += 1;
            }
            Some(_) => {
                assert_eq!(counter, model.acked, "kill {kill}: counter");
                lost_in_flight += 1;
            }
            None => {
                assert_eq!(counter, model.acked, "kill {kill}: counter");
                idle_kills += 1;
            }
        }
        for b in 0..SPAN {
            let mut got = [0u8; BLOCK_BYTES];
            storage.read(b, &mut got).unwrap();
            let want = model.blocks[b as usize].map_or([0; BLOCK_BYTES], |c| content(c, b));
            assert!(
                got == want,
                "kill {kill} (seed {seed:#x}): block {b} is not what the acknowledged writes left"
            );
        }
    }
    let _ = std::fs::remove_dir_all(image.parent().unwrap());
    println!(
        "{KILLS} kills in {:.1} s: {writes} acknowledged writes; in flight at the kill: \
         {committed_in_flight} committed, {lost_in_flight} rolled back; {idle_kills} between writes",
        started.elapsed().as_secs_f64()
    );
    assert!(
        committed_in_flight + lost_in_flight > KILLS / 2,
        "most kills should land during a write"
    );
}
