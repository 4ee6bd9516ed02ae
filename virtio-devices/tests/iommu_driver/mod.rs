//! The IOMMU driver double shared by the IOMMU integration tests, written
//! from virtio 1.4 §"IOMMU Device"'s driver statements: check
//! `F_MAP_UNMAP`, read `page_size_mask` and `input_range`, PROBE each
//! endpoint before attaching it, keep the eventq filled, never map a
//! reserved region, ignore a fault report's reserved fields.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use virtio_core::device::{DeviceCore, VirtioDevice};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::iommu::*;
use zerocopy::{FromBytes, IntoBytes};

pub const BASE: u64 = 0x8000_0000;
pub const MEM: usize = 0x40_0000;
pub const QSIZE: u16 = 16;
pub type Mem = &'static Region<'static>;

pub fn memory() -> Mem {
    let host: &'static mut [u8] = Vec::leak(vec![0u64; MEM / 8]).as_mut_bytes();
    Box::leak(Box::new(Region::new(BASE, host).unwrap()))
}

/// Sets up queue `q` of `core` with a split ring at `base`.
pub fn queue<D: VirtioDevice, M: GuestMemory, const S: usize>(
    core: &mut DeviceCore<D, M, S>,
    mem: Mem,
    q: u16,
    base: u64,
) -> SplitDriver {
    let layout = SplitDriver::layout(base, QSIZE);
    let driver = SplitDriver::new(mem, layout, core.negotiated_features()).unwrap();
    core.set_queue_size(q, u32::from(QSIZE)).unwrap();
    core.set_queue_area(q, RingArea::Descriptors, layout.desc_addr)
        .unwrap();
    core.set_queue_area(q, RingArea::Driver, layout.driver_addr)
        .unwrap();
    core.set_queue_area(q, RingArea::Device, layout.device_addr)
        .unwrap();
    core.set_queue_ready(q, true).unwrap();
    driver
}

pub fn negotiate<D: VirtioDevice, M: GuestMemory, const S: usize>(
    core: &mut DeviceCore<D, M, S>,
    want: Features,
) -> Features {
    core.set_status(1 | 2);
    let features = (core.device_features() & want) | Features::VERSION_1;
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    features
}

/// The IOMMU driver double.
pub struct IommuDriver<const D: usize, const N: usize, const E: usize> {
    pub core: DeviceCore<Iommu<'static, D, N, E>, Mem, 2>,
    mem: Mem,
    pub req: SplitDriver,
    pub evt: SplitDriver,
    pub granule: u64,
    pub input: (u64, u64),
    pub probe_size: u32,
    /// Reserved regions PROBE reported, per endpoint (one endpoint here).
    pub reserved: Vec<(u64, u64)>,
    pub events: Vec<Segment>,
    pub next: u64,
}

impl<const D: usize, const N: usize, const E: usize> IommuDriver<D, N, E> {
    pub fn new(tables: &'static IommuTables<D, N, E>, mem: Mem) -> Self {
        let mut core = DeviceCore::new(Iommu::new(tables), mem);
        // The driver SHOULD accept INPUT_RANGE, DOMAIN_RANGE and PROBE.
        let offered = core.device_features();
        assert!(
            offered.bits() & F_MAP_UNMAP != 0,
            "drivers fail gracefully without MAP_UNMAP"
        );
        let want = F_MAP_UNMAP | F_INPUT_RANGE | F_DOMAIN_RANGE | F_PROBE | F_BYPASS_CONFIG;
        negotiate(&mut core, Features::from_bits_retain(want));
        let mut cfg = [0u8; 40];
        core.read_config(0, &mut cfg);
        let cfg = IommuConfigSpace::read_from_bytes(&cfg).unwrap();
        let mask = cfg.page_size_mask.get();
        assert_ne!(mask, 0);
        let req = queue(&mut core, mem, 0, BASE);
        let evt = queue(&mut core, mem, 1, BASE + 0x2000);
        core.set_status(1 | 2 | 4 | 8);
        assert!(core.is_live());
        let mut d = Self {
            core,
            mem,
            req,
            evt,
            granule: 1 << mask.trailing_zeros(),
            input: (cfg.input_start.get(), cfg.input_end.get()),
            probe_size: cfg.probe_size.get(),
            reserved: Vec::new(),
            events: Vec::new(),
            next: BASE + 0x8000,
        };
        // Populate the event queue.
        for _ in 0..4 {
            let s = d.alloc(24);
            d.evt.add(mem, &[], &[s]).unwrap();
            d.events.push(s);
        }
        d.evt.publish_avail(mem).unwrap();
        let _ = d.core.notify(1);
        d
    }

    pub fn alloc(&mut self, len: u32) -> Segment {
        let s = Segment {
            addr: self.next,
            len,
        };
        self.next += u64::from(len).next_multiple_of(16);
        s
    }

    /// Sends a request; a used length of 0 reads as IOERR (the spec's
    /// SHOULD), and the tail's reserved bytes are ignored (MUST).
    pub fn send(&mut self, request: &[u8], props: u32) -> (Status, Vec<u8>) {
        let r = self.alloc(request.len() as u32);
        self.mem.write(r.addr, request).unwrap();
        let w = self.alloc(props + 4);
        self.req.add(self.mem, &[r], &[w]).unwrap();
        self.req.publish_avail(self.mem).unwrap();
        let _ = self.core.notify(0);
        let used = self.req.pop_used(self.mem).unwrap().expect("answered");
        let mut out = vec![0u8; w.len as usize];
        self.mem.read(w.addr, &mut out).unwrap();
        if used.len == 0 {
            return (Status::IoErr, out);
        }
        let status = Status::from_wire(out[props as usize]).unwrap();
        out.truncate(props as usize);
        (status, out)
    }

    pub fn request<B: IntoBytes + zerocopy::Immutable>(&mut self, type_: u8, body: &B) -> Status {
        let mut v = vec![type_, 0, 0, 0];
        v.extend_from_slice(body.as_bytes());
        self.send(&v, 0).0
    }

    /// PROBE (before ATTACH, as the driver SHOULD): parses the property
    /// list until an empty property or its end.
    pub fn probe(&mut self, endpoint: u32) -> Status {
        let mut v = vec![T_PROBE, 0, 0, 0];
        v.extend_from_slice(
            ProbeBody {
                endpoint: endpoint.into(),
                reserved: [0; 64],
            }
            .as_bytes(),
        );
        let (status, props) = self.send(&v, self.probe_size);
        let mut at = 0usize;
        while at + 4 <= props.len() {
            let head = ProbeProperty::read_from_bytes(&props[at..at + 4]).unwrap();
            let (type_, len) = (head.type_.get(), usize::from(head.length.get()));
            if type_ == 0 {
                break;
            }
            // A property with reserved bits set is ignored.
            if type_ & 0xf000 == 0 && type_ & 0xfff == PROBE_T_RESV_MEM && len >= 20 {
                let r = ProbeResvMem::read_from_bytes(&props[at..at + 24]).unwrap();
                self.reserved.push((r.start.get(), r.end.get()));
            }
            at += 4 + len;
        }
        status
    }

    pub fn attach(&mut self, domain: u32, endpoint: u32) -> Status {
        self.request(
            T_ATTACH,
            &AttachBody {
                domain: domain.into(),
                endpoint: endpoint.into(),
                ..AttachBody::default()
            },
        )
    }

    /// MAP, as the driver must: aligned, inside input_range, not over a
    /// reserved region.
    pub fn map(&mut self, domain: u32, iova: u64, phys: u64, len: u64, flags: u32) -> Status {
        let end = iova + len - 1;
        assert_eq!(iova % self.granule, 0);
        assert_eq!(len % self.granule, 0);
        assert!(iova >= self.input.0 && end <= self.input.1);
        assert!(
            self.reserved.iter().all(|&(s, e)| end < s || iova > e),
            "the driver does not map reserved regions"
        );
        self.request(
            T_MAP,
            &MapBody {
                domain: domain.into(),
                virt_start: iova.into(),
                virt_end: end.into(),
                phys_start: phys.into(),
                flags: flags.into(),
            },
        )
    }

    pub fn unmap(&mut self, domain: u32, iova: u64, len: u64) -> Status {
        self.request(
            T_UNMAP,
            &UnmapBody {
                domain: domain.into(),
                virt_start: iova.into(),
                virt_end: (iova + len - 1).into(),
                reserved: [0; 4],
            },
        )
    }

    /// Fault reports the device returned; each buffer goes back.
    pub fn faults(&mut self) -> Vec<FaultReport> {
        let _ = self.core.poll();
        let mut out = Vec::new();
        while let Some(used) = self.evt.pop_used(self.mem).unwrap() {
            let seg = self.events[usize::from(used.id)];
            if used.len as usize == size_of::<FaultReport>() {
                let mut b = [0u8; 24];
                self.mem.read(seg.addr, &mut b).unwrap();
                let f = FaultReport::read_from_bytes(&b).unwrap();
                // A report with non-zero reserved bytes is ignored.
                if f.reserved == [0; 3] {
                    out.push(f);
                }
            }
            let id = self.evt.add(self.mem, &[], &[seg]).unwrap();
            if usize::from(id) >= self.events.len() {
                self.events.resize(usize::from(id) + 1, seg);
            }
            self.events[usize::from(id)] = seg;
        }
        self.evt.publish_avail(self.mem).unwrap();
        let _ = self.core.notify(1);
        out
    }
}
