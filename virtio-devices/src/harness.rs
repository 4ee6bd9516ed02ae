//! Test harness: a device in a DeviceCore, driven by our own split-ring
//! driver over leaked guest memory.
#![allow(clippy::arithmetic_side_effects, dead_code)]

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use virtio_core::device::{DeviceCore, VirtioDevice};
use virtio_core::driver::{SplitDriver, Used};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::{DeviceStatus, Features};
use zerocopy::IntoBytes;

pub const BASE: u64 = 0x8000_0000;
const MEM: usize = 0x40_0000;
const QSIZE: u16 = 64;
const DATA_START: u64 = BASE + 0x10_0000;

pub type Mem = &'static Region<'static>;

pub struct Harness<D, const Q: usize> {
    pub core: DeviceCore<D, Mem, Q>,
    pub drivers: Vec<Option<SplitDriver>>,
    pub mem: Mem,
    next: u64,
}

pub fn memory() -> Mem {
    let host: &'static mut [u8] = Vec::leak(vec![0u64; MEM / 8]).as_mut_bytes();
    Box::leak(Box::new(Region::new(BASE, host).unwrap()))
}

impl<D: VirtioDevice, const Q: usize> Harness<D, Q> {
    /// Negotiates `features` (plus VERSION_1), sets up `queues` and sets
    /// DRIVER_OK.
    pub fn new(device: D, features: Features, queues: &[u16]) -> Self {
        let mut h = Self::negotiated(device, features);
        for &q in queues {
            h.setup_queue(q);
        }
        h.core.set_status(1 | 2 | 4 | 8);
        assert!(h.core.is_live());
        h
    }

    pub fn negotiated(device: D, features: Features) -> Self {
        let mem = memory();
        let mut core = DeviceCore::new(device, mem);
        core.set_status(1 | 2);
        core.set_driver_features(features | Features::VERSION_1);
        core.set_status(1 | 2 | 8);
        assert!(
            core.status().contains(DeviceStatus::FEATURES_OK),
            "{:?}",
            core.features_error()
        );
        Self {
            core,
            drivers: (0..Q).map(|_| None).collect(),
            mem,
            next: DATA_START,
        }
    }

    pub fn setup_queue(&mut self, q: u16) {
        let layout = SplitDriver::layout(BASE + u64::from(q) * 0x2000, QSIZE);
        let features = self.core.negotiated_features();
        let driver = SplitDriver::new(self.mem, layout, features).unwrap();
        self.core.set_queue_size(q, u32::from(QSIZE)).unwrap();
        self.core
            .set_queue_area(q, RingArea::Descriptors, layout.desc_addr)
            .unwrap();
        self.core
            .set_queue_area(q, RingArea::Driver, layout.driver_addr)
            .unwrap();
        self.core
            .set_queue_area(q, RingArea::Device, layout.device_addr)
            .unwrap();
        self.core.set_queue_ready(q, true).unwrap();
        self.drivers[usize::from(q)] = Some(driver);
    }

    /// Guest memory for a buffer (16-aligned, never reused).
    pub fn alloc(&mut self, len: u32) -> u64 {
        let at = self.next;
        self.next += (u64::from(len) + 15) & !15;
        assert!(self.next < BASE + MEM as u64);
        at
    }

    pub fn put(&mut self, bytes: &[u8]) -> Segment {
        let addr = self.alloc(bytes.len() as u32);
        self.mem.write(addr, bytes).unwrap();
        Segment {
            addr,
            len: bytes.len() as u32,
        }
    }

    /// A writable buffer of `len` bytes, pre-filled with 0xee.
    pub fn space(&mut self, len: u32) -> Segment {
        let addr = self.alloc(len);
        self.mem.write(addr, &vec![0xee; len as usize]).unwrap();
        Segment { addr, len }
    }

    /// Adds a chain to queue `q` (not yet notified); returns its id.
    pub fn add(&mut self, q: u16, readable: &[Segment], writable: &[Segment]) -> u16 {
        let driver = self.drivers[usize::from(q)].as_mut().unwrap();
        let id = driver.add(self.mem, readable, writable).unwrap();
        driver.publish_avail(self.mem).unwrap();
        id
    }

    /// Adds a chain whose buffers come in the given order, each readable or
    /// writable (`true`) as given, even when that breaks the driver's rules
    /// (a readable buffer after a writable one); returns its id.
    pub fn add_mixed(&mut self, q: u16, buffers: &[(Segment, bool)]) -> u16 {
        let driver = self.drivers[usize::from(q)].as_mut().unwrap();
        let id = driver.add_raw(self.mem, buffers).unwrap();
        driver.publish_avail(self.mem).unwrap();
        id
    }

    /// Notifies queue `q` and, as the embedder must, polls again while the
    /// core reports work left.
    pub fn kick(&mut self, q: u16) {
        let mut service = self.core.notify(u32::from(q));
        while service.work_left() {
            service = self.core.poll();
        }
    }

    pub fn used(&mut self, q: u16) -> Option<Used> {
        self.drivers[usize::from(q)]
            .as_mut()
            .unwrap()
            .pop_used(self.mem)
            .unwrap()
    }

    /// Adds, kicks and collects one chain.
    pub fn request(&mut self, q: u16, readable: &[Segment], writable: &[Segment]) -> Used {
        let id = self.add(q, readable, writable);
        self.kick(q);
        let used = self.used(q).expect("request was not completed");
        assert_eq!(used.id, id);
        used
    }

    pub fn read(&self, seg: Segment) -> Vec<u8> {
        let mut v = vec![0; seg.len as usize];
        self.mem.read(seg.addr, &mut v).unwrap();
        v
    }
}
