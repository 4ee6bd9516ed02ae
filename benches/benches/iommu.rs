//! A block request through the IOMMU's `Translated` view against the same
//! request without it: the cost of translation on a hit.
//!
//! Two RAM-disk block devices, each in its own `DeviceCore`, one over a
//! `Region` and one over `Translated<&Region>` for an endpoint attached to
//! a domain whose mappings cover the rings and buffers (two mappings: the
//! rings and headers, and the data, at an IOVA unlike its physical
//! address; so a request's accesses alternate between two windows, the
//! last-hit cache's harder case). Each round times one batch of
//! `BATCH` 4 KiB reads on each, in alternating order, measured
//! interleaved as in `queues.rs` (load drift on a shared machine hits both
//! alike); the ratio is between medians of the same rounds.
//!
//! `cargo bench -p virtio-bench --bench iommu [-- --rounds R]` (default
//! 2000). Prints a Markdown table.
//!
//! The project's benches use this interleaved harness rather than
//! criterion (no criterion dependency in the workspace): the medians and
//! the ratio are what a re-run reproduces.

use std::hint::black_box;
use std::time::{Duration, Instant};

use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::block::{BlkReqHeader, Block, BlockOptions, RamDisk};
use virtio_devices::iommu::*;
use zerocopy::IntoBytes;

const QSIZE: u16 = 64;
const BATCH: u16 = 16;
const MEM: usize = 0x40_0000;
const RINGS: u64 = 0;
const HDRS: u64 = 0x1_0000;
const DATA: u64 = 0x10_0000;
const DATA_IOVA: u64 = 0x7_0000_0000;
const LEN: u32 = 4096;
const EP: u32 = 1;

static ENDPOINTS: [Endpoint<'static>; 1] = [Endpoint {
    id: EP,
    resv_mem: &[],
}];

fn region() -> &'static Region<'static> {
    let buf: &'static mut [u64] = Box::leak(vec![0u64; MEM / 8].into_boxed_slice());
    Box::leak(Box::new(Region::new(0, buf.as_mut_bytes()).unwrap()))
}

struct Rig<M: GuestMemory> {
    core: DeviceCore<Block<RamDisk<'static>>, M, 1>,
    drv: SplitDriver,
    mem: &'static Region<'static>,
    data_base: u64,
}

impl<M: GuestMemory> Rig<M> {
    fn new(view: M, mem: &'static Region<'static>, data_base: u64) -> Self {
        let disk = RamDisk::new(Vec::leak(vec![0x5au8; 1 << 20]));
        let mut core = DeviceCore::new(Block::new(disk, BlockOptions::default()), view);
        core.set_status(1 | 2);
        core.set_driver_features(Features::VERSION_1);
        core.set_status(1 | 2 | 8);
        let layout = SplitDriver::layout(RINGS, QSIZE);
        let drv = SplitDriver::new(mem, layout, core.negotiated_features()).unwrap();
        core.set_queue_size(0, u32::from(QSIZE)).unwrap();
        core.set_queue_area(0, RingArea::Descriptors, layout.desc_addr)
            .unwrap();
        core.set_queue_area(0, RingArea::Driver, layout.driver_addr)
            .unwrap();
        core.set_queue_area(0, RingArea::Device, layout.device_addr)
            .unwrap();
        core.set_queue_ready(0, true).unwrap();
        core.set_status(1 | 2 | 4 | 8);
        assert!(core.is_live());
        Self {
            core,
            drv,
            mem,
            data_base,
        }
    }

    /// Adds a batch of reads (untimed), then times the device serving it.
    fn round(&mut self) -> Duration {
        for i in 0..BATCH {
            let at = HDRS + u64::from(i) * 32;
            let hdr = BlkReqHeader {
                type_: 0.into(),
                reserved: 0.into(),
                sector: (u64::from(i) * 8).into(),
            };
            self.mem.write(at, hdr.as_bytes()).unwrap();
            let h = Segment { addr: at, len: 16 };
            let d = Segment {
                addr: self.data_base + u64::from(i) * u64::from(LEN),
                len: LEN,
            };
            let s = Segment {
                addr: at + 16,
                len: 1,
            };
            self.drv.add(self.mem, &[h], &[d, s]).unwrap();
        }
        self.drv.publish_avail(self.mem).unwrap();
        let start = Instant::now();
        let _ = black_box(self.core.notify(0));
        let t = start.elapsed();
        let mut n = 0;
        while let Some(u) = self.drv.pop_used(self.mem).unwrap() {
            assert_eq!(u.len, LEN + 1);
            n += 1;
        }
        assert_eq!(n, BATCH);
        let mut status = [0u8];
        self.mem.read(HDRS + 16, &mut status).unwrap();
        assert_eq!(status[0], 0, "the request went through");
        t
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let rounds = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000usize);

    let plain_mem = region();
    let mut plain = Rig::new(plain_mem, plain_mem, DATA);

    let iommu_mem = region();
    let tables: &'static IommuTables<2, 4, 1> = Box::leak(Box::new(
        IommuTables::new(IommuConfig::default(), &ENDPOINTS).unwrap(),
    ));
    // The IOMMU's own requests, through its tables directly as its device
    // would (no driver needed for a fixed setup): one domain, two mappings.
    let mut iommu = DeviceCore::new(Iommu::new(tables), iommu_mem);
    setup_iommu(&mut iommu, iommu_mem);
    let view: &'static Translated<'static, &'static Region<'static>, 2, 4, 1> =
        Box::leak(Box::new(Translated::new(tables, EP, iommu_mem).unwrap()));
    let mut translated = Rig::new(view, iommu_mem, DATA_IOVA);

    // Warm up.
    for _ in 0..50 {
        plain.round();
        translated.round();
    }
    let mut a = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    for r in 0..rounds {
        if r % 2 == 0 {
            a.push(plain.round());
            b.push(translated.round());
        } else {
            b.push(translated.round());
            a.push(plain.round());
        }
    }
    let (ma, mb) = (median(&mut a), median(&mut b));
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(BATCH);
    println!("| block 4 KiB read, {BATCH} per batch, {rounds} rounds | ns/request (median) |");
    println!("|---|---|");
    println!("| over `Region` | {:.0} |", per(ma));
    println!(
        "| over `Translated<&Region>` (two mappings) | {:.0} |",
        per(mb)
    );
    println!("| ratio | {:.3} |", per(mb) / per(ma));
}

/// Brings the IOMMU device up and sends ATTACH and two MAPs through its
/// request queue.
fn setup_iommu(
    core: &mut DeviceCore<Iommu<'static, 2, 4, 1>, &'static Region<'static>, 2>,
    mem: &'static Region<'static>,
) {
    let base = 0x3_0000;
    core.set_status(1 | 2);
    core.set_driver_features(Features::VERSION_1 | Features::from_bits_retain(F_MAP_UNMAP));
    core.set_status(1 | 2 | 8);
    let layout = SplitDriver::layout(base, 16);
    let mut drv = SplitDriver::new(mem, layout, core.negotiated_features()).unwrap();
    core.set_queue_size(0, 16).unwrap();
    core.set_queue_area(0, RingArea::Descriptors, layout.desc_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Driver, layout.driver_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Device, layout.device_addr)
        .unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(1 | 2 | 4 | 8);
    let rw = MAP_F_READ | MAP_F_WRITE;
    let mut reqs: Vec<Vec<u8>> = Vec::new();
    let mut attach = vec![T_ATTACH, 0, 0, 0];
    attach.extend_from_slice(
        AttachBody {
            domain: 1.into(),
            endpoint: EP.into(),
            ..AttachBody::default()
        }
        .as_bytes(),
    );
    reqs.push(attach);
    for (iova, phys, len) in [(0u64, 0u64, DATA), (DATA_IOVA, DATA, 0x10_0000)] {
        let mut map = vec![T_MAP, 0, 0, 0];
        map.extend_from_slice(
            MapBody {
                domain: 1.into(),
                virt_start: iova.into(),
                virt_end: (iova + len - 1).into(),
                phys_start: phys.into(),
                flags: rw.into(),
            }
            .as_bytes(),
        );
        reqs.push(map);
    }
    for (i, r) in reqs.iter().enumerate() {
        let at = base + 0x1000 + i as u64 * 0x100;
        mem.write(at, r).unwrap();
        let w = Segment {
            addr: at + 0x80,
            len: 4,
        };
        drv.add(
            mem,
            &[Segment {
                addr: at,
                len: r.len() as u32,
            }],
            &[w],
        )
        .unwrap();
        drv.publish_avail(mem).unwrap();
        let _ = core.notify(0);
        drv.pop_used(mem).unwrap().unwrap();
        let mut s = [0u8];
        mem.read(w.addr, &mut s).unwrap();
        assert_eq!(s[0], 0, "IOMMU setup request {i}");
    }
}
