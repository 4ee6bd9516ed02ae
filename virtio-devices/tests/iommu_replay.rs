//! Replays the request stream Linux 6.12's own `virtio-iommu` driver sent
//! to QEMU's `virtio-iommu-pci` (recorded by
//! `fixtures/record-iommu-trace.sh`: a q35 guest writing and reading back
//! 1 MiB on a `virtio-blk-pci,iommu_platform=on` disk behind the IOMMU,
//! QEMU's `-trace 'virtio_iommu_*'`) against our device, through the driver
//! double's queues, and checks our side request by request:
//!
//! - the config is QEMU's (page mask, input and domain range, probe size,
//!   bypass), so the driver would have seen the same device;
//! - PROBE of the endpoint answers OK with exactly the reserved region QEMU
//!   reported (the MSI doorbell);
//! - every ATTACH, MAP and UNMAP the driver sent answers OK;
//! - after each UNMAP the mappings left are what QEMU had left (QEMU traces
//!   each mapping it removed, `unmap_done`);
//! - each DMA translation QEMU resolved for the disk (IOVA, access, result)
//!   translates to the same address through our tables, with the same
//!   access permitted;
//! - at the end the whole mapping table equals the model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::collections::BTreeMap;

use virtio_devices::iommu::*;

mod iommu_driver;
use iommu_driver::*;

const TRACE: &str = include_str!("fixtures/iommu-linux-6.12-qemu.trace");

/// The value after `key=` in a trace line, as QEMU printed it (QEMU's keys
/// may hold spaces, "input range start", and some values start with one).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"));
    let rest = line[at + key.len() + 1..].trim_start();
    rest.split([' ', ',']).next().unwrap()
}

fn num(v: &str) -> u64 {
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None if v == "-1" => u64::from(u32::MAX),
        None => v.parse().unwrap(),
    }
}

/// The endpoint's reserved region and the device config, from the trace.
fn platform() -> (IommuConfig, u32, ResvMem) {
    let cfg = TRACE
        .lines()
        .find(|l| l.starts_with("virtio_iommu_get_config "))
        .expect("get_config");
    let config = IommuConfig {
        page_size_mask: num(field(cfg, "page_size_mask")),
        input_range: Some((
            num(field(cfg, "input range start")),
            num(field(cfg, "input range end")),
        )),
        domain_range: Some((
            num(field(cfg, "domain range start")) as u32,
            num(field(cfg, "domain range end")) as u32,
        )),
        probe_size: Some(num(field(cfg, "probe_size")) as u32),
        mmio: false,
        bypass: Bypass::Config {
            initial: num(field(cfg, "bypass")) == 1,
        },
    };
    let resv = TRACE
        .lines()
        .find(|l| l.starts_with("virtio_iommu_fill_resv_property "))
        .expect("a reserved region");
    let endpoint = num(field(resv, "dev")) as u32;
    let region = ResvMem {
        subtype: num(field(resv, "type")) as u8,
        start: num(field(resv, "start")),
        end: num(field(resv, "end")),
    };
    (config, endpoint, region)
}

/// The model: QEMU's mappings of the one domain, by first IOVA.
type Model = BTreeMap<u64, (u64, u64, u32)>;

fn ours(tables: &IommuTables<4, 64, 4>, domain: u32) -> Model {
    let mut m = Model::new();
    tables.for_each_mapping(Some(domain), |x| {
        m.insert(x.virt_start, (x.virt_end, x.phys_start, x.flags));
    });
    m
}

/// virtio 1.4 §"IOMMU Device" (iommu.device-operations: the device MUST
/// answer each request, and §ATTACH/§MAP/§UNMAP/§PROBE), against the
/// recorded stream of Linux's driver.
#[test]
fn linux_virtio_iommu_stream_replays_with_the_same_answers_and_mappings() {
    let (config, endpoint, region) = platform();
    assert_eq!(config.page_size_mask, 0xffff_ffff_ffff_f000);
    let endpoints: &'static [Endpoint<'static>] = Box::leak(Box::new([Endpoint {
        id: endpoint,
        resv_mem: Box::leak(Box::new([region])),
    }]));
    let tables: &'static IommuTables<4, 64, 4> =
        Box::leak(Box::new(IommuTables::new(config, endpoints).unwrap()));
    let mem = memory();
    let mut drv = IommuDriver::new(tables, mem);

    // The config the driver reads is QEMU's.
    assert_eq!(drv.granule, 0x1000);
    assert_eq!(drv.input, config.input_range.unwrap());
    assert_eq!(drv.probe_size, 0x200);

    let mut model = Model::new();
    let mut domain_of: BTreeMap<u32, u32> = BTreeMap::new();
    let mut probed = false;
    let mut pending_unmap: Option<(u32, u64, u64)> = None;
    let mut counts = [0usize; 4];
    let check_unmap = |pending: &mut Option<(u32, u64, u64)>, model: &Model| {
        if let Some((domain, s, e)) = pending.take() {
            assert_eq!(&ours(tables, domain), model, "after UNMAP {s:#x}..={e:#x}");
        }
    };
    for line in TRACE.lines() {
        let event = line.split(' ').next().unwrap();
        if event != "virtio_iommu_unmap_done" {
            check_unmap(&mut pending_unmap, &model);
        }
        match event {
            "virtio_iommu_attach" => {
                let (d, ep) = (
                    num(field(line, "domain")) as u32,
                    num(field(line, "endpoint")) as u32,
                );
                assert_eq!(ep, endpoint);
                if !probed {
                    // Linux PROBEs each endpoint before attaching it.
                    assert_eq!(drv.probe(ep), Status::Ok);
                    assert_eq!(drv.reserved, [(region.start, region.end)]);
                    probed = true;
                }
                assert_eq!(drv.attach(d, ep), Status::Ok, "{line}");
                assert_eq!(tables.domain_of(ep), Some(d));
                domain_of.insert(ep, d);
                counts[0] += 1;
            }
            "virtio_iommu_map" => {
                let d = num(field(line, "domain")) as u32;
                let (s, e) = (num(field(line, "virt_start")), num(field(line, "virt_end")));
                let (p, f) = (
                    num(field(line, "phys_start")),
                    num(field(line, "flags")) as u32,
                );
                assert_eq!(drv.map(d, s, p, e - s + 1, f), Status::Ok, "{line}");
                model.insert(s, (e, p, f));
                counts[1] += 1;
            }
            "virtio_iommu_unmap" => {
                let d = num(field(line, "domain")) as u32;
                let (s, e) = (num(field(line, "virt_start")), num(field(line, "virt_end")));
                assert_eq!(drv.unmap(d, s, e - s + 1), Status::Ok, "{line}");
                pending_unmap = Some((d, s, e));
                counts[2] += 1;
            }
            "virtio_iommu_unmap_done" => {
                let s = num(field(line, "virt_start"));
                let e = num(field(line, "virt_end"));
                let (ends, _, _) = model.remove(&s).expect("QEMU removed a mapping it had");
                assert_eq!(ends, e);
            }
            "translate" => {
                let ep = num(field(line, "rid")) as u32;
                let iova = num(field(line, "addr"));
                let flag = num(field(line, "flag"));
                let want = num(line.rsplit(' ').next().unwrap());
                if !domain_of.contains_key(&ep) {
                    // Before ATTACH the endpoint bypasses (config bypass=1).
                    assert_eq!(want, iova);
                    assert!(tables.bypass());
                    continue;
                }
                for (bit, access) in [(1, Access::Read), (2, Access::Write)] {
                    if flag & bit != 0 {
                        assert_eq!(tables.translate(ep, iova, access), Ok(want), "{line}");
                    }
                }
                counts[3] += 1;
            }
            _ => {}
        }
    }
    check_unmap(&mut pending_unmap, &model);
    let domain = domain_of[&endpoint];
    assert_eq!(ours(tables, domain), model);
    assert_eq!(tables.mapping_count(), model.len());
    // The recording is the one the module doc describes, not a stub.
    assert_eq!(counts[0], 1);
    assert!(
        counts[1] >= 800 && counts[2] >= 800 && counts[3] >= 2000,
        "{counts:?}"
    );
    // Nothing faulted: every DMA QEMU let through, we let through.
    assert!(drv.faults().is_empty());
}
