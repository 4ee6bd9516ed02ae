//! The block device with Linux's request shapes on small rings.
//!
//! Linux's virtio-blk builds one chain per request: the 16-byte header
//! (readable), the data as one descriptor per page (readable for a write,
//! writable for a read), and the status byte (writable) last; with
//! INDIRECT_DESC and more than one buffer, the whole chain goes into one
//! indirect table, as long as `seg_max` allows — which may be far more
//! descriptors than the ring has. A device that rejects such chains and
//! leaves the status byte alone makes the guest read a stale 0 (OK) and
//! lose the write: the bug seen with `vhost-user-blk-pci,queue-size=16`.
//!
//! Here a driver builds those shapes for 1 MiB written and read back, with
//! queue sizes 16 and 8, split and packed, indirect on and off, and every
//! byte is checked on the disk and in what is read back.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use virtio_core::device::DeviceCore;
use virtio_core::driver::{PackedDriver, SplitDriver};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{QueueConfig, Segment};
use virtio_core::spec::Features;
use virtio_devices::block::{BlkConfig, BlkReqHeader, Block, BlockOptions, F_SEG_MAX, RamDisk};
use zerocopy::{FromBytes, IntoBytes};

const PAGE: u32 = 4096;
const DISK: usize = 1 << 20;
const MEM: usize = 5 << 20;
const RING: u64 = 0x1000;
const TABLES: u64 = 0x10000;
const HDR: u64 = 0x20000;
const STATUS: u64 = 0x21000;
const PAGES: u64 = 0x100000;

#[allow(clippy::large_enum_variant)] // one per test run
enum Drv {
    Split(SplitDriver),
    Packed(PackedDriver<256>),
}

fn byte(offset: usize) -> u8 {
    (offset.wrapping_mul(2654435761) >> 13) as u8
}

// spec: split.message-framing.1, split.indirect-descriptors.2
#[test]
fn linux_request_shapes_on_small_rings_land_every_byte() {
    for packed in [false, true] {
        for indirect in [false, true] {
            for qsize in [16u16, 8] {
                run(packed, indirect, qsize);
            }
        }
    }
}

fn run(packed: bool, indirect: bool, qsize: u16) {
    let what = format!("packed {packed} indirect {indirect} queue {qsize}");
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(0, ram.as_mut_bytes()).unwrap();
    let disk = Vec::leak(vec![0u8; DISK]);
    let block = Block::new(RamDisk::new(disk), BlockOptions::default());
    let mut core: DeviceCore<_, _, 1, 256> = DeviceCore::new(block, &mem);
    let mut features = Features::VERSION_1 | Features::from_bits_retain(F_SEG_MAX);
    features.set(Features::INDIRECT_DESC, indirect);
    features.set(Features::RING_PACKED, packed);
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    // The driver reads seg_max; without indirect descriptors a chain must
    // also fit the ring (Linux limits its segments to it then).
    let mut cfg = [0u8; size_of::<BlkConfig>()];
    core.read_config(0, &mut cfg);
    let seg_max = BlkConfig::read_from_bytes(&cfg).unwrap().seg_max.get();
    let per_req = if indirect {
        seg_max
    } else {
        seg_max.min(u32::from(qsize) - 2)
    };
    assert!(per_req >= 1);
    let (mut drv, layout): (Drv, QueueConfig) = if packed {
        let l = PackedDriver::<256>::layout(RING, qsize);
        (
            Drv::Packed(PackedDriver::new(&mem, l, features).unwrap()),
            l,
        )
    } else {
        let l = SplitDriver::layout(RING, qsize);
        (Drv::Split(SplitDriver::new(&mem, l, features).unwrap()), l)
    };
    core.set_queue(0, layout).unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(1 | 2 | 4 | 8);

    let total_pages = DISK / PAGE as usize;
    for write in [true, false] {
        let mut page = 0usize;
        while page < total_pages {
            // One request per slot of the ring, up to its free slots.
            let mut batch = Vec::new();
            let slots = if indirect { qsize } else { 1 };
            for slot in 0..slots {
                if page >= total_pages {
                    break;
                }
                let n = (per_req as usize).min(total_pages - page);
                // Pages of this request, one descriptor each.
                let bufs: Vec<Segment> = (0..n)
                    .map(|i| Segment {
                        addr: PAGES + (u64::from(slot) * 48 + i as u64) * u64::from(PAGE),
                        len: PAGE,
                    })
                    .collect();
                for (i, b) in bufs.iter().enumerate() {
                    let data: Vec<u8> = (0..PAGE as usize)
                        .map(|j| {
                            if write {
                                byte((page + i) * PAGE as usize + j)
                            } else {
                                0xee
                            }
                        })
                        .collect();
                    mem.write(b.addr, &data).unwrap();
                }
                let hdr = BlkReqHeader {
                    type_: u32::from(write).into(), // OUT = 1, IN = 0
                    reserved: 0.into(),
                    sector: ((page * PAGE as usize / 512) as u64).into(),
                };
                let h = Segment {
                    addr: HDR + u64::from(slot) * 16,
                    len: 16,
                };
                mem.write(h.addr, hdr.as_bytes()).unwrap();
                let s = Segment {
                    addr: STATUS + u64::from(slot),
                    len: 1,
                };
                mem.write(s.addr, &[0xff]).unwrap();
                let (readable, writable): (Vec<Segment>, Vec<Segment>) = if write {
                    ([vec![h], bufs.clone()].concat(), vec![s])
                } else {
                    (vec![h], [bufs.clone(), vec![s]].concat())
                };
                let table = TABLES + u64::from(slot) * 0x1000;
                let id = match (&mut drv, indirect) {
                    (Drv::Split(d), true) => d.add_indirect(&mem, table, &readable, &writable),
                    (Drv::Split(d), false) => d.add(&mem, &readable, &writable),
                    (Drv::Packed(d), true) => d.add_indirect(&mem, table, &readable, &writable),
                    (Drv::Packed(d), false) => d.add(&mem, &readable, &writable),
                }
                .unwrap();
                batch.push((id, page, bufs, s));
                page += n;
            }
            match &mut drv {
                Drv::Split(d) => d.publish_avail(&mem).unwrap(),
                Drv::Packed(d) => d.publish_avail(&mem).unwrap(),
            };
            let mut service = core.notify(0);
            while service.work_left() {
                service = core.poll();
            }
            let mut done = 0;
            while let Some(used) = match &mut drv {
                Drv::Split(d) => d.pop_used(&mem).unwrap(),
                Drv::Packed(d) => d.pop_used(&mem).unwrap(),
            } {
                let (_, first, bufs, s) = batch.iter().find(|b| b.0 == used.id).unwrap();
                let mut st = [0xffu8];
                mem.read(s.addr, &mut st).unwrap();
                assert_eq!(st[0], 0, "{what}: request at page {first} failed");
                if !write {
                    for (i, b) in bufs.iter().enumerate() {
                        let mut got = vec![0u8; PAGE as usize];
                        mem.read(b.addr, &mut got).unwrap();
                        let off = (first + i) * PAGE as usize;
                        assert!(
                            got.iter().enumerate().all(|(j, v)| *v == byte(off + j)),
                            "{what}: page {} read back wrong",
                            first + i
                        );
                    }
                }
                done += 1;
            }
            assert_eq!(done, batch.len(), "{what}: every request returned");
        }
    }
    let disk = core.device().storage().data();
    assert!(
        disk.iter().enumerate().all(|(i, v)| *v == byte(i)),
        "{what}: the disk holds what was written"
    );
    assert!(core.is_live(), "{what}");
}
