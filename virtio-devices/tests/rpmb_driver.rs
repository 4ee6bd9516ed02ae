//! The RPMB device driven by a driver-side double written from the
//! spec's driver section (virtio 1.4 §"RPMB Device / Device Operation":
//! frames are not packed, one buffer per frame; the request frames, then
//! the response frames) and eMMC's access sequences, over our virtio-mmio
//! transport and over the shared-memory transport (virtio-msg).
//!
//! The driver computes and checks every MAC with `hmac-sha256`, an
//! HMAC-SHA256 implementation independent of the device's RustCrypto one,
//! so a MAC both accept is HMAC-SHA256 and not a shared mistake. No Linux
//! or QEMU RPMB client exists here to test against.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::cell::RefCell;

use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::rpmb::ram::{RamKeyStore, RamStorage};
use virtio_devices::rpmb::*;
use virtio_transport_mmio::regs::*;
use virtio_transport_mmio::{InterruptLine, MmioTransport, Width};
use virtio_transport_shm::layout::Bump;
use virtio_transport_shm::{DataArea, DeviceEnd, DriverEnd, Layout, Polled, ShmDevice};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const QSIZE: u16 = 16;
/// Frames of room the driver keeps for requests and for responses.
const POOL: usize = 8;
const FRAME: u32 = FRAME_BYTES as u32;

type Dev = Rpmb<RamKeyStore, RamStorage<'static>, 4>;

fn device() -> Dev {
    let data: &'static mut [u8] = Vec::leak(vec![0u8; 128 * 1024]);
    Rpmb::new(RamKeyStore::new(), RamStorage::new(data)).with_queue_size(QSIZE)
}

/// What the RPMB driver needs from a transport: the config bytes, and one
/// chain (readable frames, then writable frames) submitted and completed.
trait Link {
    fn config(&mut self) -> RpmbConfig;
    /// Submits `frames` (one buffer each) and `out` response buffers of one
    /// frame each; returns the used length and the response frames.
    fn submit(&mut self, frames: &[Frame], out: usize) -> (u32, Vec<Frame>);
}

/// The driver's side of the protocol.
struct RpmbDriver<L> {
    link: L,
    key: Key,
    nonce: u8,
}

#[derive(Debug, PartialEq, Eq)]
enum DriverError {
    /// The device answered with this result.
    Device(RpmbResult),
    /// The response's MAC is not the key's: not from the device we trust.
    BadMac,
    /// The response does not echo our nonce: a replay.
    BadNonce,
    /// The response is not the one we asked for.
    BadResponse(u16),
}

fn zero_frame(req: u16) -> Frame {
    let mut f = Frame::new_zeroed();
    f.req_resp = req.into();
    f.block_count = 1.into();
    f
}

/// HMAC-SHA256 over bytes 228..512 of each frame, the driver's own.
fn mac(key: &Key, frames: &[Frame]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(key);
    for f in frames {
        h.update(&f.as_bytes()[MAC_START..]);
    }
    h.finalize()
}

impl<L: Link> RpmbDriver<L> {
    fn new(link: L, key: Key) -> Self {
        Self {
            link,
            key,
            nonce: 0,
        }
    }

    fn next_nonce(&mut self) -> [u8; 16] {
        self.nonce = self.nonce.wrapping_add(1);
        core::array::from_fn(|i| self.nonce ^ (i as u8 * 17))
    }

    /// Checks the MAC of `frames` (in the last) with our key.
    fn authentic(&self, frames: &[Frame]) -> bool {
        let mut plain = frames.to_vec();
        let got = plain.last().unwrap().key_mac;
        plain.last_mut().unwrap().key_mac = [0; 32];
        mac(&self.key, &plain) == got
    }

    fn check(&self, frame: &Frame, resp: u16) -> Result<(), DriverError> {
        if frame.req_resp.get() != resp {
            return Err(DriverError::BadResponse(frame.req_resp.get()));
        }
        match RpmbResult::from_code(frame.result.get()) {
            Some(RpmbResult::Ok) => Ok(()),
            Some(e) => Err(DriverError::Device(e)),
            None => Err(DriverError::BadResponse(frame.result.get())),
        }
    }

    /// Key programming: the key frame, then a result read.
    fn program_key(&mut self) -> Result<(), DriverError> {
        let mut f = zero_frame(REQ_PROGRAM_KEY);
        f.key_mac = self.key;
        let (used, r) = self.link.submit(&[f, zero_frame(REQ_RESULT_READ)], 1);
        assert_eq!(used, FRAME);
        self.check(&r[0], RESP_PROGRAM_KEY)
    }

    /// Reading the counter with a fresh nonce; the response must carry it
    /// and our key's MAC.
    fn counter(&mut self) -> Result<u32, DriverError> {
        let nonce = self.next_nonce();
        let mut f = zero_frame(REQ_GET_WRITE_COUNTER);
        f.nonce = nonce;
        let (used, r) = self.link.submit(&[f], 1);
        assert_eq!(used, FRAME);
        self.check(&r[0], RESP_GET_COUNTER)?;
        if r[0].nonce != nonce {
            return Err(DriverError::BadNonce);
        }
        if !self.authentic(&r) {
            return Err(DriverError::BadMac);
        }
        Ok(r[0].write_counter.get())
    }

    /// An authenticated write: the counter read first, the data frames
    /// with the MAC in the last, then a result read; returns the new
    /// counter from the (authenticated) response.
    fn write(&mut self, address: u16, blocks: &[[u8; 256]]) -> Result<u32, DriverError> {
        let counter = self.counter()?;
        self.write_with(address, blocks, counter, |_| {})
    }

    fn write_with(
        &mut self,
        address: u16,
        blocks: &[[u8; 256]],
        counter: u32,
        tamper: impl FnOnce(&mut Vec<Frame>),
    ) -> Result<u32, DriverError> {
        let mut frames: Vec<Frame> = blocks
            .iter()
            .map(|b| {
                let mut f = zero_frame(REQ_DATA_WRITE);
                f.data = *b;
                f.write_counter = counter.into();
                f.address = address.into();
                f.block_count = (blocks.len() as u16).into();
                f
            })
            .collect();
        let m = mac(&self.key, &frames);
        frames.last_mut().unwrap().key_mac = m;
        tamper(&mut frames);
        frames.push(zero_frame(REQ_RESULT_READ));
        let (used, r) = self.link.submit(&frames, 1);
        assert_eq!(used, FRAME);
        self.check(&r[0], RESP_DATA_WRITE)?;
        if !self.authentic(&r) {
            return Err(DriverError::BadMac);
        }
        assert_eq!(r[0].address.get(), address);
        Ok(r[0].write_counter.get())
    }

    /// An authenticated read of `n` blocks: one request frame, `n`
    /// response frames, the MAC over them all in the last.
    fn read(&mut self, address: u16, n: u16) -> Result<Vec<[u8; 256]>, DriverError> {
        let nonce = self.next_nonce();
        let mut f = zero_frame(REQ_DATA_READ);
        f.nonce = nonce;
        f.address = address.into();
        f.block_count = n.into();
        let (used, r) = self.link.submit(&[f], usize::from(n));
        assert_eq!(used, FRAME * u32::from(n));
        for frame in &r {
            self.check(frame, RESP_DATA_READ)?;
            if frame.nonce != nonce {
                return Err(DriverError::BadNonce);
            }
        }
        if !self.authentic(&r) {
            return Err(DriverError::BadMac);
        }
        Ok(r.iter().map(|f| f.data).collect())
    }
}

fn block(b: u8) -> [u8; 256] {
    core::array::from_fn(|i| b.wrapping_mul(31) ^ i as u8)
}

/// The same session over any transport.
fn session<L: Link>(link: L) -> RpmbDriver<L> {
    let mut d = RpmbDriver::new(link, [0xc3; 32]);
    let config = d.link.config();
    assert_eq!(
        config,
        RpmbConfig {
            capacity: 1,
            max_wr_cnt: 4,
            max_rd_cnt: DEFAULT_MAX_READ
        }
    );
    assert_eq!(d.counter(), Err(DriverError::Device(RpmbResult::NoAuthKey)));
    d.program_key().unwrap();
    assert_eq!(
        d.program_key(),
        Err(DriverError::Device(RpmbResult::WriteFailure)),
        "one-time programmable"
    );
    assert_eq!(d.counter(), Ok(0));
    assert_eq!(d.write(100, &[block(1), block(2), block(3)]), Ok(1));
    assert_eq!(d.write(511, &[block(4)]), Ok(2));
    assert_eq!(d.read(100, 3).unwrap(), [block(1), block(2), block(3)]);
    assert_eq!(d.read(511, 1).unwrap(), [block(4)]);
    // A replayed write (an old counter) and a forged one are refused.
    assert_eq!(
        d.write_with(100, &[block(9)], 1, |_| {}),
        Err(DriverError::Device(RpmbResult::CountFailure))
    );
    assert_eq!(
        d.write_with(100, &[block(9)], 2, |f| f[0].data[0] ^= 0xff),
        Err(DriverError::Device(RpmbResult::AuthFailure))
    );
    assert_eq!(
        d.write(511, &[block(5), block(6)]),
        Err(DriverError::Device(RpmbResult::AddrFailure))
    );
    assert_eq!(d.read(100, 1).unwrap(), [block(1)]);
    assert_eq!(d.counter(), Ok(2));
    // A driver with another key sees the device's responses as forged.
    let mut other = RpmbDriver::new(d.link, [0x11; 32]);
    assert_eq!(other.counter(), Err(DriverError::BadMac));
    assert_eq!(other.read(100, 1), Err(DriverError::BadMac));
    RpmbDriver::new(other.link, d.key)
}

// ---------------------------------------------------------------- MMIO

const BASE: u64 = 0x4000_0000;
const MEM: usize = 1 << 20;

#[derive(Default)]
struct Irq;

impl InterruptLine for Irq {
    fn set_level(&mut self, _asserted: bool) {}
}

struct MmioLink {
    mmio: MmioTransport<Dev, &'static Region<'static>, Irq, 1>,
    mem: &'static Region<'static>,
    queue: SplitDriver,
    requests: u64,
    responses: u64,
}

impl MmioLink {
    fn r(&mut self, offset: u32) -> u32 {
        self.mmio.read(offset, Width::Word)
    }

    fn w(&mut self, offset: u32, value: u32) {
        let mut s = self.mmio.write(offset, Width::Word, value);
        while s.work_left() {
            s = self.mmio.poll();
        }
    }

    fn new(dev: Dev) -> Self {
        let host: &'static mut [u8] = Vec::leak(vec![0u8; MEM]);
        let mem: &'static Region<'static> = Box::leak(Box::new(Region::new(BASE, host).unwrap()));
        let mmio = MmioTransport::new(DeviceCore::new(dev, mem), Irq);
        let layout = SplitDriver::layout(BASE, QSIZE);
        let queue = SplitDriver::new(mem, layout, Features::VERSION_1).unwrap();
        let mut l = Self {
            mmio,
            mem,
            queue,
            requests: BASE + 0x1_0000,
            responses: BASE + 0x2_0000,
        };
        l.probe();
        l
    }

    /// virtio-mmio bring-up (virtio 1.4 §"Device Initialization").
    fn probe(&mut self) {
        let layout = SplitDriver::layout(BASE, QSIZE);
        self.queue = SplitDriver::new(self.mem, layout, Features::VERSION_1).unwrap();
        assert_eq!(self.r(MAGIC_VALUE), 0x7472_6976);
        assert_eq!(self.r(DEVICE_ID), 28);
        self.w(STATUS, 0);
        self.w(STATUS, 1);
        self.w(STATUS, 1 | 2);
        // RPMB has no feature bits; accept VERSION_1 only.
        self.w(DEVICE_FEATURES_SEL, 0);
        assert_eq!(self.r(DEVICE_FEATURES) & 0x00ff_ffff, 0);
        self.w(DRIVER_FEATURES_SEL, 0);
        self.w(DRIVER_FEATURES, 0);
        self.w(DRIVER_FEATURES_SEL, 1);
        self.w(DRIVER_FEATURES, 1);
        self.w(STATUS, 1 | 2 | 8);
        assert_ne!(self.r(STATUS) & 8, 0, "FEATURES_OK refused");
        self.w(QUEUE_SEL, 0);
        self.w(QUEUE_SIZE, u32::from(QSIZE));
        for (low, addr) in [
            (QUEUE_DESC_LOW, layout.desc_addr),
            (QUEUE_DRIVER_LOW, layout.driver_addr),
            (QUEUE_DEVICE_LOW, layout.device_addr),
        ] {
            self.w(low, addr as u32);
            self.w(low + 4, (addr >> 32) as u32);
        }
        self.w(QUEUE_READY, 1);
        self.w(STATUS, 1 | 2 | 4 | 8);
    }
}

impl Link for MmioLink {
    fn config(&mut self) -> RpmbConfig {
        let bytes: Vec<u8> = (0..3)
            .map(|i| self.mmio.read(CONFIG + i, Width::Byte) as u8)
            .collect();
        RpmbConfig::read_from_bytes(&bytes).unwrap()
    }

    fn submit(&mut self, frames: &[Frame], out: usize) -> (u32, Vec<Frame>) {
        assert!(frames.len() <= POOL && out <= POOL);
        let readable: Vec<Segment> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let addr = self.requests + (i * FRAME_BYTES) as u64;
                self.mem.write(addr, f.as_bytes()).unwrap();
                Segment { addr, len: FRAME }
            })
            .collect();
        let writable: Vec<Segment> = (0..out)
            .map(|i| {
                let addr = self.responses + (i * FRAME_BYTES) as u64;
                self.mem.write(addr, &[0xee; FRAME_BYTES]).unwrap();
                Segment { addr, len: FRAME }
            })
            .collect();
        let id = self.queue.add(self.mem, &readable, &writable).unwrap();
        self.queue.publish_avail(self.mem).unwrap();
        self.w(QUEUE_NOTIFY, 0);
        let status = self.r(INTERRUPT_STATUS);
        assert_ne!(status & 1, 0, "a used buffer interrupt");
        self.w(INTERRUPT_ACK, status);
        let used = self.queue.pop_used(self.mem).unwrap().expect("completed");
        assert_eq!(used.id, id);
        let resp = writable
            .iter()
            .map(|s| {
                let mut b = [0u8; FRAME_BYTES];
                self.mem.read(s.addr, &mut b).unwrap();
                Frame::read_from_bytes(&b).unwrap()
            })
            .collect();
        (used.len, resp)
    }
}

#[test]
fn over_mmio_program_write_read_and_refusals() {
    let mut d = session(MmioLink::new(device()));
    // A guest reset (status 0) and a new bring-up: key, counter and data
    // are still there.
    d.link.probe();
    assert_eq!(d.counter(), Ok(2));
    assert_eq!(d.read(511, 1).unwrap(), [block(4)]);
    assert_eq!(d.write(0, &[block(7)]), Ok(3));
}

// ----------------------------------------------------------------- shm

const LAYOUT: Layout = match Layout::new(4, 64, 32 * 1024) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

struct ShmLink<'a, W: GuestMemory> {
    drv: DriverEnd<'a, W, Polled, &'a dyn Fn(), 1>,
    queue: SplitDriver,
    mem: DataArea<'a, W>,
    requests: u64,
    responses: u64,
}

impl<W: GuestMemory> Link for ShmLink<'_, W> {
    fn config(&mut self) -> RpmbConfig {
        let mut raw = [0u8; 3];
        self.drv.get_config(0, 0, &mut raw).unwrap();
        RpmbConfig::read_from_bytes(&raw).unwrap()
    }

    fn submit(&mut self, frames: &[Frame], out: usize) -> (u32, Vec<Frame>) {
        let readable: Vec<Segment> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let addr = self.requests + (i * FRAME_BYTES) as u64;
                self.mem.write(addr, f.as_bytes()).unwrap();
                Segment { addr, len: FRAME }
            })
            .collect();
        let writable: Vec<Segment> = (0..out)
            .map(|i| {
                let addr = self.responses + (i * FRAME_BYTES) as u64;
                self.mem.write(addr, &[0xee; FRAME_BYTES]).unwrap();
                Segment { addr, len: FRAME }
            })
            .collect();
        let id = self.queue.add(&self.mem, &readable, &writable).unwrap();
        if self.queue.publish_avail(&self.mem).unwrap() {
            self.drv.notify(0, 0, 0).unwrap();
        }
        let used = loop {
            if let Some(u) = self.queue.pop_used(&self.mem).unwrap() {
                break u;
            }
            self.drv.wait_used(0, 0).unwrap();
        };
        assert_eq!(used.id, id);
        let resp = writable
            .iter()
            .map(|s| {
                let mut b = [0u8; FRAME_BYTES];
                self.mem.read(s.addr, &mut b).unwrap();
                Frame::read_from_bytes(&b).unwrap()
            })
            .collect();
        (used.len, resp)
    }
}

#[test]
fn over_the_shm_transport_program_write_read_and_refusals() {
    let mut buf = vec![0u64; LAYOUT.window_len() as usize / 8];
    let w = Region::new(0, buf.as_mut_bytes()).unwrap();
    let data = DataArea::new(&w, &LAYOUT);
    let dev = RefCell::new(
        DeviceEnd::create(
            &w,
            LAYOUT,
            (ShmDevice::<_, _, 1>::new(device(), data),),
            Polled,
        )
        .unwrap(),
    );
    let idle: &dyn Fn() = &|| while dev.borrow_mut().process().work_left() {};
    let mut drv: DriverEnd<'_, Region<'_>, Polled, &dyn Fn(), 1> =
        DriverEnd::attach(&w, LAYOUT, Polled, idle)
            .unwrap()
            .with_max_waits(4);
    assert_eq!(drv.devices().unwrap(), 0b1);
    let info = drv.device_info(0).unwrap();
    assert_eq!(info.device_id.get(), 28);
    assert_eq!(info.config_size.get(), 3);
    let mut alloc = Bump::new(&LAYOUT);
    let base = alloc.alloc(SplitDriver::layout_len(QSIZE), 16).unwrap();
    let qc = SplitDriver::layout(base, QSIZE);
    let mem = drv.data();
    let queue = SplitDriver::new(&mem, qc, Features::VERSION_1).unwrap();
    drv.bring_up(0, Features::empty(), &[qc]).unwrap();
    let requests = alloc.alloc((POOL * FRAME_BYTES) as u64, 16).unwrap();
    let responses = alloc.alloc((POOL * FRAME_BYTES) as u64, 16).unwrap();
    let link = ShmLink {
        drv,
        queue,
        mem,
        requests,
        responses,
    };
    let mut d = session(link);
    assert_eq!(d.write(7, &[block(8), block(9)]), Ok(3));
    assert_eq!(d.read(7, 2).unwrap(), [block(8), block(9)]);
}
