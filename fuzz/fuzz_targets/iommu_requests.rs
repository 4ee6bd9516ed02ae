//! The IOMMU device's request parser and tables, fed up to 64 operations
//! (ATTACH, DETACH, MAP, UNMAP, PROBE with any field values, aligned or
//! not, inverted or huge ranges, non-zero reserved fields, truncated
//! bodies, any response room; raw request types; event buffers of any
//! size; `Translated` reads, writes and atomics; `bypass` writes; device
//! resets) under each configuration the options byte picks.
//!
//! Invariants: no panic; no access outside guest memory; the request
//! buffer is never written; a request is returned unwritten (used 0)
//! exactly when it has no room for the tail, an unknown type, or is a
//! PROBE the device does not offer, and otherwise with its whole writable
//! part and a defined status whose reserved bytes are zero; a refused
//! request changes no table; a MAP that succeeds translates, an UNMAP that
//! succeeds leaves nothing mapped in its range; the tables stay sorted,
//! disjoint, aligned and inside the input range, and a domain exists
//! exactly while an endpoint is attached to it; a `Translated` access
//! succeeds only where the tables translate it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{RingArea, Segment};
use virtio_core::spec::Features;
use virtio_devices::iommu::*;
use virtio_fuzz::{Guarded, IommuInput, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 8;
const REQ_AT: u64 = 0x2000;
const RESP_AT: u64 = 0x3000;
const EVT_AT: u64 = 0x5000;
const EVT_SLOT: u64 = 0x100;
const IDS: [u32; 4] = [8, 9, 10, 11];
const MSI: ResvMem = ResvMem {
    subtype: RESV_MEM_T_MSI,
    start: 0x0800_0000,
    end: 0x080f_ffff,
};
const LOW: ResvMem = ResvMem {
    subtype: RESV_MEM_T_RESERVED,
    start: 0x3_0000,
    end: 0x3_ffff,
};
static ENDPOINTS: [Endpoint<'static>; 4] = [
    Endpoint {
        id: 8,
        resv_mem: &[],
    },
    Endpoint {
        id: 9,
        resv_mem: &[MSI],
    },
    Endpoint {
        id: 10,
        resv_mem: &[LOW, MSI],
    },
    Endpoint {
        id: 11,
        resv_mem: &[],
    },
];

type Tables = IommuTables<4, 8, 4>;

fn snapshot(t: &Tables) -> (Vec<Mapping>, Vec<Option<u32>>) {
    let mut m = Vec::new();
    t.for_each_mapping(None, |x| m.push(*x));
    (m, IDS.iter().map(|&e| t.domain_of(e)).collect())
}

fn check_tables(t: &Tables) {
    let (maps, attached) = snapshot(t);
    let c = t.config();
    let mask = c.granule() - 1;
    let (lo, hi) = c.input_range.unwrap_or((0, u64::MAX));
    for w in maps.windows(2) {
        assert!(
            (w[0].domain, w[0].virt_start) < (w[1].domain, w[1].virt_start),
            "sorted"
        );
        if w[0].domain == w[1].domain {
            assert!(w[0].virt_end < w[1].virt_start, "disjoint: {w:?}");
        }
    }
    for m in &maps {
        assert!(m.virt_start <= m.virt_end);
        assert_eq!(m.virt_start & mask, 0);
        assert_eq!(m.virt_end.wrapping_add(1) & mask, 0);
        assert_eq!(m.phys_start & mask, 0);
        assert!(m.virt_start >= lo && m.virt_end <= hi);
        assert!(
            attached.contains(&Some(m.domain)),
            "mapping of a gone domain"
        );
    }
    let mut domains: Vec<u32> = attached.iter().flatten().copied().collect();
    domains.sort_unstable();
    domains.dedup();
    assert_eq!(
        t.domain_count(),
        domains.len(),
        "domains exist while attached"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = IommuInput::parse(data) else {
        return;
    };
    let o = input.options;
    let page_size_mask = match o & 3 {
        0 | 3 => !0xfffu64,
        1 => 1,
        _ => !0xffffu64,
    };
    let config = IommuConfig {
        page_size_mask,
        domain_range: (o & 4 != 0).then_some((4, 7)).or(Some((0, u32::MAX))),
        input_range: Some(if o & 8 != 0 {
            (0x1_0000, 0xffff_ffff)
        } else {
            (0, u64::MAX)
        }),
        probe_size: (o & 0x20 == 0).then_some(128),
        mmio: o & 0x40 != 0,
        bypass: if o & 0x10 != 0 {
            Bypass::Legacy
        } else {
            Bypass::Config { initial: false }
        },
    };
    let tables = Tables::new(config, &ENDPOINTS).expect("tables");
    let granule = config.granule();
    let offered = config.features();

    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut phys_host = vec![0u8; 0x1_0000];
    let phys = Region::new(0, &mut phys_host).expect("phys");
    let views: Vec<_> = IDS
        .iter()
        .map(|&e| Translated::new(&tables, e, &phys).expect("known endpoint"))
        .collect();

    let mut core: DeviceCore<_, &Guarded<'_>, 2> =
        DeviceCore::new(Iommu::new(&tables).with_queue_size(QSIZE), &mem);
    let mut features = core.device_features() - Features::RING_PACKED;
    if o & 0x80 != 0 {
        features -= Features::from_bits_retain(F_MAP_UNMAP);
    }
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let negotiated = core.negotiated_features().bits();
    let mut drivers = Vec::new();
    for (q, base) in [(0u16, 0u64), (1, 0x800)] {
        let cfg = SplitDriver::layout(base, QSIZE);
        drivers.push(SplitDriver::new(&mem, cfg, core.negotiated_features()).expect("ring"));
        core.set_queue_size(q, u32::from(QSIZE)).expect("size");
        core.set_queue_area(q, RingArea::Descriptors, cfg.desc_addr)
            .expect("desc");
        core.set_queue_area(q, RingArea::Driver, cfg.driver_addr)
            .expect("driver");
        core.set_queue_area(q, RingArea::Device, cfg.device_addr)
            .expect("device");
        core.set_queue_ready(q, true).expect("ready");
    }
    core.set_status(1 | 2 | 4 | 8);
    let mut events_posted = 0usize;

    for op in &input.ops {
        let domain = if op[2] & 0x80 != 0 {
            u32::from_le_bytes([op[2], op[13], op[14], op[15]])
        } else {
            u32::from(op[2] & 7)
        };
        let endpoint = match op[3] % 5 {
            4 => 99,
            i => IDS[usize::from(i)],
        };
        let mut start = u64::from(u16::from_le_bytes([op[4], op[5]])) * granule;
        let mut end = start + (u64::from(op[6]) + 1) * granule - 1;
        if op[1] & 1 != 0 {
            start += u64::from(op[7]);
        }
        if op[1] & 2 != 0 {
            core::mem::swap(&mut start, &mut end);
        }
        if op[1] & 4 != 0 {
            start |= 0xffff_ffff_0000_0000;
            end |= 0xffff_ffff_0000_0000;
        }
        let mut phys_start = u64::from(u16::from_le_bytes([op[8], op[9]])) * granule;
        if op[1] & 8 != 0 {
            phys_start += 1;
        }
        let flags = if op[10] & 0x80 != 0 {
            u32::from(op[10]) << (op[10] & 24)
        } else {
            u32::from(op[10] & 7)
        };
        let reserved = if op[12] & 1 != 0 { op[12] | 1 } else { 0 };
        let room: u32 = match op[11] % 8 {
            0 => u32::from(op[11] / 8 % 4),
            1..=5 => 4,
            6 => 20,
            _ => 4 + u32::from(op[11]) + 64,
        };
        let kind = op[0] % 10;
        let (type_, body): (u8, Vec<u8>) = match kind {
            0 => (
                T_ATTACH,
                AttachBody {
                    domain: domain.into(),
                    endpoint: endpoint.into(),
                    flags: (flags & 0x9).into(),
                    reserved: [reserved; 4],
                }
                .as_bytes()
                .to_vec(),
            ),
            1 => (
                T_DETACH,
                DetachBody {
                    domain: domain.into(),
                    endpoint: endpoint.into(),
                    reserved: [reserved; 8],
                }
                .as_bytes()
                .to_vec(),
            ),
            2 => (
                T_MAP,
                MapBody {
                    domain: domain.into(),
                    virt_start: start.into(),
                    virt_end: end.into(),
                    phys_start: phys_start.into(),
                    flags: flags.into(),
                }
                .as_bytes()
                .to_vec(),
            ),
            3 => (
                T_UNMAP,
                UnmapBody {
                    domain: domain.into(),
                    virt_start: start.into(),
                    virt_end: end.into(),
                    reserved: [reserved; 4],
                }
                .as_bytes()
                .to_vec(),
            ),
            4 => (
                T_PROBE,
                ProbeBody {
                    endpoint: endpoint.into(),
                    reserved: [reserved; 64],
                }
                .as_bytes()
                .to_vec(),
            ),
            5 => (op[1], op[2..].to_vec()),
            6 => {
                if events_posted < usize::from(QSIZE) {
                    let len = u32::from(op[1] % 48) + 1;
                    let slot = EVT_AT + EVT_SLOT * (events_posted as u64);
                    let s = Segment { addr: slot, len };
                    drivers[1].add(mem.raw(), &[], &[s]).expect("event buffer");
                    drivers[1].publish_avail(mem.raw()).expect("publish");
                    events_posted += 1;
                    let _ = core.notify(1);
                }
                while let Some(u) = drivers[1].pop_used(mem.raw()).expect("used") {
                    assert!(u.len == 0 || u.len == 24, "a fault report is whole");
                }
                check_tables(&tables);
                continue;
            }
            7 => {
                let index = usize::from(op[3] % 4);
                let v = &views[index];
                let ep = IDS[index];
                let iova = start;
                let write = op[1] & 0x10 != 0;
                let access = if write { Access::Write } else { Access::Read };
                let expect = tables.translate(ep, iova, access);
                let ok = if op[1] & 0x20 != 0 {
                    if write {
                        v.store_u16_release(iova, u16::from(op[13])).is_ok()
                    } else {
                        v.load_u16_acquire(iova).is_ok()
                    }
                } else {
                    let n = usize::from(op[13] % 64) + 1;
                    let mut b = vec![op[14]; n];
                    if write {
                        v.write(iova, &b).is_ok()
                    } else {
                        v.read(iova, &mut b).is_ok()
                    }
                };
                if ok {
                    assert!(expect.is_ok(), "Translated reached what the tables refuse");
                }
                let _ = core.poll();
                check_tables(&tables);
                continue;
            }
            8 => {
                core.write_config(CONFIG_BYPASS_OFFSET, &[op[1]]);
                let mut b = [0u8; 1];
                core.read_config(CONFIG_BYPASS_OFFSET, &mut b);
                assert!(b[0] <= 1, "bypass presented as {}", b[0]);
                continue;
            }
            _ => {
                // A device reset and a new bring-up would need new rings;
                // the tables' part of it is what can go wrong.
                if op[1] & 1 != 0 {
                    tables.system_reset();
                    check_tables(&tables);
                    assert_eq!(tables.domain_count(), 0);
                }
                continue;
            }
        };
        let mut req = vec![type_, op[15], op[14], op[13]];
        req.extend_from_slice(&body);
        let cut = usize::from(op[12] >> 2) % (req.len() + 8);
        if op[12] & 2 != 0 {
            req.truncate(req.len().saturating_sub(cut).max(1));
        }
        mem.raw().write(REQ_AT, &req).expect("request");
        mem.raw()
            .write(RESP_AT, &vec![0xee; room as usize])
            .expect("response");
        let before = snapshot(&tables);
        let readable = [Segment {
            addr: REQ_AT,
            len: req.len() as u32,
        }];
        let writable = [Segment {
            addr: RESP_AT,
            len: room,
        }];
        let w: &[Segment] = if room == 0 { &[] } else { &writable };
        drivers[0].add(mem.raw(), &readable, w).expect("add");
        drivers[0].publish_avail(mem.raw()).expect("publish");
        let _ = core.notify(0);
        let used = drivers[0]
            .pop_used(mem.raw())
            .expect("used")
            .expect("every request is completed");
        let mut after_req = vec![0u8; req.len()];
        mem.raw().read(REQ_AT, &mut after_req).expect("read");
        assert_eq!(after_req, req, "the request buffer was written");
        let known = (T_ATTACH..=T_PROBE).contains(&type_);
        let unanswered = room < 4 || !known || (type_ == T_PROBE && offered & F_PROBE == 0);
        if unanswered {
            assert_eq!(used.len, 0);
            let mut out = vec![0u8; room as usize];
            mem.raw().read(RESP_AT, &mut out).expect("read");
            assert!(
                out.iter().all(|&b| b == 0xee),
                "an unanswered request was written"
            );
            assert_eq!(snapshot(&tables), before);
            check_tables(&tables);
            continue;
        }
        assert_eq!(used.len, room);
        let mut tail = [0u8; 4];
        mem.raw()
            .read(RESP_AT + u64::from(room) - 4, &mut tail)
            .expect("tail");
        let status = Status::from_wire(tail[0]).expect("a defined status");
        assert_eq!(&tail[1..], &[0, 0, 0]);
        let after = snapshot(&tables);
        if status != Status::Ok {
            assert_eq!(
                after, before,
                "a refused {type_} changed the tables ({status:?})"
            );
        } else {
            match type_ {
                T_ATTACH => {
                    assert_eq!(tables.domain_of(endpoint), Some(domain));
                }
                T_DETACH => assert_eq!(tables.domain_of(endpoint), None),
                T_MAP => {
                    assert_ne!(negotiated & F_MAP_UNMAP, 0);
                    for &e in &IDS {
                        if tables.domain_of(e) == Some(domain) {
                            if flags & MAP_F_READ != 0 {
                                assert_eq!(
                                    tables.translate(e, end, Access::Read),
                                    Ok(phys_start + (end - start))
                                );
                            }
                            if flags & MAP_F_WRITE == 0 {
                                assert!(tables.translate(e, start, Access::Write).is_err());
                            }
                        }
                    }
                }
                T_UNMAP => {
                    tables.for_each_mapping(Some(domain), |m| {
                        assert!(m.virt_end < start || m.virt_start > end, "left mapped");
                    });
                }
                _ => {}
            }
        }
        check_tables(&tables);
    }
});
