//! The RAM block device behind our IOMMU, over the virtio-mmio transport:
//! the block device's memory is a [`Translated`] view for its endpoint, and the IOMMU driver
//! double of `iommu_driver` (written from virtio 1.4 §"IOMMU Device"'s driver statements)
//! drives the IOMMU device over its own queues.
//!
//! A map lets I/O through (at IOVAs unlike the physical addresses), an
//! unmap makes the next request fail with the block device's `IOERR`,
//! and the fault reaches the driver's eventq.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::{BlkReqHeader, Block, BlockOptions, RamDisk, Status as BlkStatus};
use virtio_devices::iommu::*;
use virtio_transport_mmio::regs::*;
use virtio_transport_mmio::{InterruptLine, MmioTransport, Width};
use zerocopy::IntoBytes;

mod iommu_driver;
use iommu_driver::*;

/// The block device's endpoint ID.
const BLK_EP: u32 = 0x10;
/// An MSI doorbell the platform reserves for it.
const DOORBELL: ResvMem = ResvMem {
    subtype: RESV_MEM_T_MSI,
    start: 0xfee0_0000,
    end: 0xfeef_ffff,
};
static ENDPOINTS: [Endpoint<'static>; 1] = [Endpoint {
    id: BLK_EP,
    resv_mem: &[DOORBELL],
}];
/// The block device's rings and request headers: mapped by identity.
const BLK_RINGS: u64 = BASE + 0x10_0000;
const BLK_HDRS: u64 = BASE + 0x11_0000;
/// Its data buffers: physical pages mapped at [`DATA_IOVA`].
const DATA_PHYS: u64 = BASE + 0x20_0000;
const DATA_IOVA: u64 = 0x4_0000_0000;
const PAGE: u64 = 0x1000;

type Tables = IommuTables<4, 16, 1>;

/// A level-triggered line that counts rising edges.
#[derive(Default)]
struct Irq(u32);

impl InterruptLine for Irq {
    fn set_level(&mut self, asserted: bool) {
        if asserted {
            self.0 += 1;
        }
    }
}

type View = &'static Translated<'static, Mem, 4, 16, 1>;
type BlkMmio = MmioTransport<Block<RamDisk<'static>>, View, Irq, 1>;

/// The block driver, over the virtio-mmio registers: rings and headers at
/// identity-mapped addresses, data at IOVAs.
struct BlkDriver {
    mmio: BlkMmio,
    mem: Mem,
    q: SplitDriver,
    next_hdr: u64,
}

impl BlkDriver {
    fn new(view: View, mem: Mem) -> Self {
        let disk = RamDisk::new(Vec::leak(vec![0u8; 64 * 512]));
        let core = DeviceCore::new(Block::new(disk, BlockOptions::default()), view);
        let mut d = Self {
            mmio: MmioTransport::new(core, Irq::default()),
            mem,
            q: SplitDriver::new(
                mem,
                SplitDriver::layout(BLK_RINGS, QSIZE),
                Features::VERSION_1,
            )
            .unwrap(),
            next_hdr: BLK_HDRS,
        };
        assert_eq!(d.r(MAGIC_VALUE), 0x7472_6976);
        assert_eq!(d.r(DEVICE_ID), 2);
        d.w(STATUS, 0);
        d.w(STATUS, 1 | 2);
        d.w(DRIVER_FEATURES_SEL, 0);
        d.w(DRIVER_FEATURES, 0);
        d.w(DRIVER_FEATURES_SEL, 1);
        d.w(DRIVER_FEATURES, 1);
        d.w(STATUS, 1 | 2 | 8);
        assert_ne!(d.r(STATUS) & 8, 0, "FEATURES_OK refused");
        let layout = SplitDriver::layout(BLK_RINGS, QSIZE);
        d.w(QUEUE_SEL, 0);
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
        assert!(d.mmio.core().is_live());
        d
    }

    fn r(&mut self, offset: u32) -> u32 {
        self.mmio.read(offset, Width::Word)
    }

    fn w(&mut self, offset: u32, value: u32) {
        let mut s = self.mmio.write(offset, Width::Word, value);
        while s.work_left() {
            s = self.mmio.poll();
        }
    }

    /// Publishes and notifies; acknowledges the interrupt.
    fn kick(&mut self) {
        self.q.publish_avail(self.mem).unwrap();
        self.w(QUEUE_NOTIFY, 0);
        let status = self.r(INTERRUPT_STATUS);
        self.w(INTERRUPT_ACK, status);
    }

    /// One request of `type_` at `sector` with a data buffer at `iova`;
    /// returns the block status byte.
    fn io(&mut self, type_: u32, sector: u64, iova: u64, len: u32) -> u8 {
        self.io_used(type_, sector, iova, len).1
    }

    /// As [`BlkDriver::io`], with the used length.
    fn io_used(&mut self, type_: u32, sector: u64, iova: u64, len: u32) -> (u32, u8) {
        let hdr = BlkReqHeader {
            type_: type_.into(),
            reserved: 0.into(),
            sector: sector.into(),
        };
        let h = Segment {
            addr: self.next_hdr,
            len: 16,
        };
        let status = Segment {
            addr: self.next_hdr + 16,
            len: 1,
        };
        self.next_hdr += 32;
        self.mem.write(h.addr, hdr.as_bytes()).unwrap();
        self.mem.write(status.addr, &[0xee]).unwrap();
        let data = Segment { addr: iova, len };
        let (readable, writable): (Vec<_>, Vec<_>) = if type_ == 1 {
            (vec![h, data], vec![status])
        } else {
            (vec![h], vec![data, status])
        };
        self.q.add(self.mem, &readable, &writable).unwrap();
        self.kick();
        let used = self
            .q
            .pop_used(self.mem)
            .unwrap()
            .expect("block request answered");
        let mut b = [0u8];
        self.mem.read(status.addr, &mut b).unwrap();
        (used.len, b[0])
    }
}

const T_IN: u32 = 0;
const T_OUT: u32 = 1;

#[test]
fn block_io_through_the_iommu() {
    let mem = memory();
    let tables: &'static Tables = Box::leak(Box::new(
        Tables::new(IommuConfig::default(), &ENDPOINTS).unwrap(),
    ));
    let mut iommu = IommuDriver::new(tables, mem);
    assert_eq!(iommu.probe(BLK_EP), Status::Ok);
    assert_eq!(iommu.reserved, [(DOORBELL.start, DOORBELL.end)]);
    assert_eq!(iommu.attach(1, BLK_EP), Status::Ok);
    // Rings and headers by identity, two data pages at an IOVA far from
    // their physical addresses.
    let rw = MAP_F_READ | MAP_F_WRITE;
    assert_eq!(iommu.map(1, BLK_RINGS, BLK_RINGS, 0x2_0000, rw), Status::Ok);
    assert_eq!(iommu.map(1, DATA_IOVA, DATA_PHYS, PAGE, rw), Status::Ok);
    assert_eq!(
        iommu.map(1, DATA_IOVA + PAGE, DATA_PHYS + PAGE, PAGE, rw),
        Status::Ok
    );
    // Unmapping half of the ring mapping would split it: refused.
    assert_eq!(iommu.unmap(1, BLK_RINGS, PAGE), Status::Range);

    let view: View = Box::leak(Box::new(Translated::new(tables, BLK_EP, mem).unwrap()));
    let mut blk = BlkDriver::new(view, mem);

    // A write from the first data page, a read back into the second.
    let pattern: Vec<u8> = (0..512u32).map(|i| (i * 7 + 3) as u8).collect();
    mem.write(DATA_PHYS, &pattern).unwrap();
    assert_eq!(blk.io(T_OUT, 5, DATA_IOVA, 512), BlkStatus::Ok as u8);
    assert_eq!(
        &blk.mmio.core().device().storage().data()[5 * 512..6 * 512],
        &pattern[..]
    );
    assert_eq!(blk.io(T_IN, 5, DATA_IOVA + PAGE, 512), BlkStatus::Ok as u8);
    let mut back = vec![0u8; 512];
    mem.read(DATA_PHYS + PAGE, &mut back).unwrap();
    assert_eq!(back, pattern);
    assert!(iommu.faults().is_empty());

    // Unmap the second page: the next read into it fails, nothing is
    // written there, and the fault reaches the eventq.
    assert_eq!(iommu.unmap(1, DATA_IOVA + PAGE, PAGE), Status::Ok);
    mem.write(DATA_PHYS + PAGE, &[0u8; 512]).unwrap();
    assert_eq!(
        blk.io(T_IN, 5, DATA_IOVA + PAGE, 512),
        BlkStatus::IoErr as u8
    );
    mem.read(DATA_PHYS + PAGE, &mut back).unwrap();
    assert!(back.iter().all(|&b| b == 0));
    let faults = iommu.faults();
    assert_eq!(faults.len(), 1);
    let f = faults[0];
    assert_eq!(f.reason, FAULT_R_MAPPING);
    assert_eq!(f.endpoint.get(), BLK_EP);
    // The block device checks the buffer before it writes it: the fault
    // names the address, not the direction (the check does not know it).
    assert_eq!(f.flags.get(), FAULT_F_ADDRESS);
    assert_eq!(f.address.get(), DATA_IOVA + PAGE);

    // The first page, remapped read-only: the device may read it (a disk
    // write) but not write it (a disk read).
    assert_eq!(iommu.unmap(1, DATA_IOVA, PAGE), Status::Ok);
    assert_eq!(
        iommu.map(1, DATA_IOVA, DATA_PHYS, PAGE, MAP_F_READ),
        Status::Ok
    );
    assert_eq!(blk.io(T_OUT, 6, DATA_IOVA, 512), BlkStatus::Ok as u8);
    mem.write(DATA_PHYS, &[0x55; 512]).unwrap();
    // The block device's write of the data fails (and so does its
    // zero-fill before the status byte): nothing of the data is written,
    // used length 0, and IOERR in the status byte, which is still mapped.
    // A stale status would read as success to a driver that looks only at
    // the status byte (Linux does).
    assert_eq!(
        blk.io_used(T_IN, 6, DATA_IOVA, 512),
        (0, BlkStatus::IoErr as u8)
    );
    mem.read(DATA_PHYS, &mut back).unwrap();
    assert!(
        back.iter().all(|&b| b == 0x55),
        "a read-only page is not written"
    );
    let faults = iommu.faults();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].address.get(), DATA_IOVA);
    assert_eq!(faults[0].flags.get(), FAULT_F_WRITE | FAULT_F_ADDRESS);

    // Detached and not in bypass: the block device cannot even reach its
    // rings; the request is not completed and the faults are reported.
    assert_eq!(
        iommu.request(
            T_DETACH,
            &DetachBody {
                domain: 1.into(),
                endpoint: BLK_EP.into(),
                reserved: [0; 8],
            }
        ),
        Status::Ok
    );
    let hdr = Segment {
        addr: BLK_HDRS + 0x800,
        len: 16,
    };
    let st = Segment {
        addr: BLK_HDRS + 0x810,
        len: 1,
    };
    blk.q.add(mem, &[hdr], &[st]).unwrap();
    blk.kick();
    assert!(blk.q.pop_used(mem).unwrap().is_none());
    let faults = iommu.faults();
    assert!(!faults.is_empty());
    assert!(faults.iter().all(|f| f.reason == FAULT_R_DOMAIN));
}
