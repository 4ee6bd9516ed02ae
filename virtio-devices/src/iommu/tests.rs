//! The IOMMU device's device-side requirements, each driven through a
//! `DeviceCore` by our split-ring driver, and `Translated` over the same
//! guest memory.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use virtio_core::memory::{GuestMemory, MemoryError};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::{FromBytes, IntoBytes};

use super::*;
use crate::harness::{BASE, Harness, Mem};

type T = IommuTables<4, 8, 4>;
type Dev = Iommu<'static, 4, 8, 4>;
type H = Harness<Dev, 2>;

const MSI: ResvMem = ResvMem {
    subtype: RESV_MEM_T_MSI,
    start: 0x0800_0000,
    end: 0x080f_ffff,
};
const RESERVED: ResvMem = ResvMem {
    subtype: RESV_MEM_T_RESERVED,
    start: 0x1_0000_0000,
    end: 0x1_0000_ffff,
};
const EPS: [Endpoint<'static>; 3] = [
    Endpoint {
        id: 8,
        resv_mem: &[],
    },
    Endpoint {
        id: 9,
        resv_mem: &[MSI, RESERVED],
    },
    Endpoint {
        id: 10,
        resv_mem: &[],
    },
];
/// Guest-physical memory the tests map (inside the harness's memory).
const PHYS: u64 = BASE + 0x30_0000;

fn all_features() -> u64 {
    F_MAP_UNMAP | F_INPUT_RANGE | F_DOMAIN_RANGE | F_PROBE | F_BYPASS_CONFIG
}

fn tables(config: IommuConfig) -> &'static T {
    Box::leak(Box::new(T::new(config, &EPS).unwrap()))
}

fn rig_with(config: IommuConfig, features: u64) -> (H, &'static T) {
    let t = tables(config);
    let h = Harness::new(Iommu::new(t), Features::from_bits_retain(features), &[0, 1]);
    (h, t)
}

fn rig() -> (H, &'static T) {
    rig_with(IommuConfig::default(), all_features())
}

fn with_head<B: IntoBytes + zerocopy::Immutable>(type_: u8, body: &B) -> Vec<u8> {
    let mut v = ReqHead {
        type_,
        reserved: [0; 3],
    }
    .as_bytes()
    .to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

fn attach_req(domain: u32, endpoint: u32, flags: u32) -> Vec<u8> {
    with_head(
        T_ATTACH,
        &AttachBody {
            domain: domain.into(),
            endpoint: endpoint.into(),
            flags: flags.into(),
            reserved: [0; 4],
        },
    )
}

fn detach_req(domain: u32, endpoint: u32) -> Vec<u8> {
    with_head(
        T_DETACH,
        &DetachBody {
            domain: domain.into(),
            endpoint: endpoint.into(),
            reserved: [0; 8],
        },
    )
}

fn map_req(domain: u32, start: u64, end: u64, phys: u64, flags: u32) -> Vec<u8> {
    with_head(
        T_MAP,
        &MapBody {
            domain: domain.into(),
            virt_start: start.into(),
            virt_end: end.into(),
            phys_start: phys.into(),
            flags: flags.into(),
        },
    )
}

fn unmap_req(domain: u32, start: u64, end: u64) -> Vec<u8> {
    with_head(
        T_UNMAP,
        &UnmapBody {
            domain: domain.into(),
            virt_start: start.into(),
            virt_end: end.into(),
            reserved: [0; 4],
        },
    )
}

fn probe_req(endpoint: u32) -> Vec<u8> {
    with_head(
        T_PROBE,
        &ProbeBody {
            endpoint: endpoint.into(),
            reserved: [0; 64],
        },
    )
}

/// Sends `bytes` with `room` writable bytes; returns the used length and
/// the writable bytes afterwards.
fn send(h: &mut H, bytes: &[u8], room: u32) -> (u32, Vec<u8>) {
    let r = h.put(bytes);
    let w = h.space(room);
    let used = h.request(REQUESTQ, &[r], &[w]);
    (used.len, h.read(w))
}

/// Sends a request with a 4-byte tail; returns its status (`None`: used
/// length 0, nothing written), checking the tail's `reserved` is zero.
fn status(h: &mut H, bytes: &[u8]) -> Option<Status> {
    let (used, tail) = send(h, bytes, 4);
    if used == 0 {
        assert_eq!(tail, [0xee; 4], "an unanswered request's buffer is written");
        return None;
    }
    assert_eq!(used, 4);
    assert_eq!(&tail[1..], &[0, 0, 0], "tail reserved");
    Status::from_wire(tail[0])
}

fn ok(h: &mut H, bytes: &[u8]) {
    assert_eq!(status(h, bytes), Some(Status::Ok));
}

const RW: u32 = MAP_F_READ | MAP_F_WRITE;

fn mappings(t: &T, domain: u32) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    t.for_each_mapping(Some(domain), |m| v.push((m.virt_start, m.virt_end)));
    v
}

fn view(t: &'static T, h: &H, ep: u32) -> Translated<'static, Mem, 4, 8, 4> {
    Translated::new(t, ep, h.mem).unwrap()
}

fn write_config(h: &mut H, offset: u32, data: &[u8]) {
    h.core.write_config(offset, data);
}

fn config(h: &H) -> IommuConfigSpace {
    let mut buf = [0u8; 40];
    h.core.read_config(0, &mut buf);
    IommuConfigSpace::read_from_bytes(&buf).unwrap()
}

// ---- features and configuration ----

#[test]
fn features_offered() {
    // spec: iommu.feature-bits.1, iommu.feature-bits.2, iommu.feature-bits.3
    let t = tables(IommuConfig::default());
    let f = Iommu::new(t).features().bits();
    assert_ne!(f & F_MAP_UNMAP, 0);
    assert_ne!(f & F_BYPASS_CONFIG, 0);
    assert_eq!(f & F_BYPASS, 0, "new devices do not offer the legacy bit");
    // Whatever the configuration, never both.
    for bypass in [
        Bypass::None,
        Bypass::Legacy,
        Bypass::Config { initial: true },
    ] {
        let f = IommuConfig {
            bypass,
            ..IommuConfig::default()
        }
        .features();
        assert_ne!(f & F_MAP_UNMAP, 0);
        assert!(f & F_BYPASS == 0 || f & F_BYPASS_CONFIG == 0);
    }
}

#[test]
fn page_size_mask_never_zero() {
    // spec: iommu.device-configuration-layout.1, iommu.device-configuration-layout.2
    let bad = IommuConfig {
        page_size_mask: 0,
        ..IommuConfig::default()
    };
    assert_eq!(T::new(bad, &EPS).unwrap_err(), ConfigError::NoPageSize);
    let (h, t) = rig();
    let c = config(&h);
    assert_eq!(c.page_size_mask.get(), !0xfff);
    assert!(c.page_size_mask.get().count_ones() > 1);
    assert_eq!(t.config().granule(), 0x1000);
    assert_eq!(c.input_start.get(), 0);
    assert_eq!(c.input_end.get(), u64::MAX);
    assert_eq!(c.domain_end.get(), u32::MAX);
    assert_eq!(c.probe_size.get(), 512);
}

#[test]
fn bypass_written_as_zero_or_one() {
    // spec: iommu.device-configuration-layout.5
    let (mut h, t) = rig();
    assert_eq!(config(&h).bypass, 0);
    for (v, want) in [(5u8, 1u8), (0, 0), (0xff, 1), (1, 1), (0x80, 1)] {
        write_config(&mut h, CONFIG_BYPASS_OFFSET, &[v]);
        assert_eq!(config(&h).bypass, want, "wrote {v:#x}");
        assert_eq!(t.bypass(), want == 1);
    }
    // A write covering the whole config changes only bypass.
    let mut all = [0xaau8; 40];
    all[36] = 0;
    write_config(&mut h, 0, &all);
    let c = config(&h);
    assert_eq!(c.bypass, 0);
    assert_eq!(c.page_size_mask.get(), !0xfff);
    // Writes that miss bypass change nothing.
    write_config(&mut h, 37, &[1, 1, 1]);
    write_config(&mut h, 0, &[1; 36]);
    assert_eq!(config(&h).bypass, 0);
    // Without F_BYPASS_CONFIG offered the field is not writable.
    let (mut h, _) = rig_with(
        IommuConfig {
            bypass: Bypass::None,
            ..IommuConfig::default()
        },
        F_MAP_UNMAP,
    );
    write_config(&mut h, CONFIG_BYPASS_OFFSET, &[1]);
    assert_eq!(config(&h).bypass, 0);
}

#[test]
fn bypass_initial_value_survives_device_reset() {
    // spec: iommu.device-configuration-layout.3, iommu.device-configuration-layout.4
    let (mut h, t) = rig_with(
        IommuConfig {
            bypass: Bypass::Config { initial: true },
            ..IommuConfig::default()
        },
        all_features(),
    );
    assert_eq!(config(&h).bypass, 1);
    // Unattached endpoints bypass, even before any driver accepts it.
    assert_eq!(t.translate(8, 0x1234, Access::Write), Ok(0x1234));
    write_config(&mut h, CONFIG_BYPASS_OFFSET, &[0]);
    h.core.reset();
    assert_eq!(
        config(&h).bypass,
        0,
        "device reset keeps the driver's value"
    );
    t.system_reset();
    assert_eq!(
        config(&h).bypass,
        1,
        "system reset restores the initial value"
    );
}

// ---- general request handling ----

#[test]
fn success_is_ok_with_zero_reserved() {
    // spec: iommu.device-operations.1, iommu.device-operations.3
    let (mut h, t) = rig();
    // The head's reserved bytes are ignored.
    let mut req = attach_req(1, 8, 0);
    req[1..4].copy_from_slice(&[0xff, 0x12, 0x34]);
    ok(&mut h, &req);
    assert_eq!(t.domain_of(8), Some(1));
    // A larger writable part: zeroes, then the tail in its last 4 bytes.
    let (used, w) = send(&mut h, &map_req(1, 0, 0xfff, PHYS, RW), 16);
    assert_eq!(used, 16);
    assert_eq!(w, [0; 16]);
    assert_eq!(h.core.device().stats().ok, 2);
}

#[test]
fn unknown_type_is_left_unwritten() {
    // spec: iommu.device-operations.2
    let (mut h, _) = rig();
    for type_ in [0u8, 6, 0x7f, 0xff] {
        let mut req = attach_req(1, 8, 0);
        req[0] = type_;
        assert_eq!(status(&mut h, &req), None, "type {type_}");
    }
    assert_eq!(h.core.device().stats().unanswered, 4);
}

#[test]
fn short_requests() {
    let (mut h, _) = rig();
    // No room for a tail: returned unwritten.
    let (used, w) = send(&mut h, &attach_req(1, 8, 0), 3);
    assert_eq!((used, w), (0, vec![0xee; 3]));
    // A body too short for its type: INVAL.
    let req = attach_req(1, 8, 0);
    assert_eq!(status(&mut h, &req[..10]), Some(Status::Inval));
    assert_eq!(status(&mut h, &req[..2]), Some(Status::Inval));
    // Cut inside the head, an unknown type is still unknown.
    assert_eq!(status(&mut h, &[0xc3]), None);
    assert_eq!(status(&mut h, &[T_MAP]), Some(Status::Inval));
    let req = map_req(1, 0, 0xfff, PHYS, RW);
    assert_eq!(status(&mut h, &req[..30]), Some(Status::Inval));
}

#[test]
fn malformed_chain_reads_as_ioerr() {
    let (mut h, t) = rig();
    // A readable buffer after a writable one: the core answers IOERR in
    // the last 4 bytes, and nothing is attached.
    let r = h.put(&attach_req(1, 8, 0)[..8]);
    let w1 = h.space(4);
    let r2 = h.put(&attach_req(1, 8, 0)[8..]);
    let w2 = h.space(4);
    h.add_mixed(REQUESTQ, &[(r, false), (w1, true), (r2, false), (w2, true)]);
    h.kick(REQUESTQ);
    h.used(REQUESTQ).unwrap();
    assert_eq!(h.read(w2), [Status::IoErr as u8, 0, 0, 0]);
    assert_eq!(t.domain_of(8), None);
}

#[test]
fn map_unmap_need_the_feature() {
    let (mut h, _) = rig_with(IommuConfig::default(), F_PROBE | F_BYPASS_CONFIG);
    ok(&mut h, &attach_req(1, 8, 0));
    assert_eq!(
        status(&mut h, &map_req(1, 0, 0xfff, PHYS, RW)),
        Some(Status::Unsupp)
    );
    assert_eq!(
        status(&mut h, &unmap_req(1, 0, 0xfff)),
        Some(Status::Unsupp)
    );
}

#[test]
fn unattached_endpoint_without_bypass_reaches_nothing() {
    // spec: iommu.device-operations.4
    let (h, t) = rig();
    let v = view(t, &h, 8);
    let mut buf = [0u8; 4];
    assert_eq!(
        v.read(PHYS, &mut buf),
        Err(MemoryError::OutOfBounds { addr: PHYS, len: 4 })
    );
    assert!(v.write(PHYS, &buf).is_err());
    assert!(v.load_u16_acquire(PHYS).is_err());
    assert_eq!(t.pending_faults(), 3);
    let f = t.translate(8, PHYS, Access::Read).unwrap_err();
    assert_eq!(f.reason, FAULT_R_DOMAIN);
}

// ---- ATTACH ----

#[test]
fn attach_reserved_must_be_zero() {
    // spec: iommu.attach-request.1
    let (mut h, t) = rig();
    let mut req = attach_req(1, 8, 0);
    req[16] = 1;
    assert_eq!(status(&mut h, &req), Some(Status::Inval));
    assert_eq!(t.domain_of(8), None);
    assert_eq!(t.domain_count(), 0);
}

#[test]
fn attach_unknown_flags_rejected() {
    // spec: iommu.attach-request.2
    let (mut h, t) = rig();
    for flags in [2u32, 0x8000_0000, 3] {
        assert_eq!(
            status(&mut h, &attach_req(1, 8, flags)),
            Some(Status::Inval)
        );
    }
    assert_eq!(t.domain_count(), 0);
    // ATTACH_F_BYPASS is a flag only with F_BYPASS_CONFIG negotiated.
    let (mut h, t) = rig_with(IommuConfig::default(), F_MAP_UNMAP);
    assert_eq!(
        status(&mut h, &attach_req(1, 8, ATTACH_F_BYPASS)),
        Some(Status::Inval)
    );
    assert_eq!(t.domain_of(8), None);
}

#[test]
fn attach_unknown_endpoint_noent() {
    // spec: iommu.attach-request.3
    let (mut h, t) = rig();
    assert_eq!(status(&mut h, &attach_req(1, 77, 0)), Some(Status::NoEnt));
    assert_eq!(t.domain_count(), 0);
    assert!(Translated::new(t, 77, h.mem).is_none());
}

#[test]
fn several_endpoints_share_a_domain() {
    // spec: iommu.attach-request.4, iommu.attach-request.12
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &attach_req(1, 10, 0));
    assert_eq!(t.domain_count(), 1);
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS, RW));
    // Both see the mapping.
    assert_eq!(t.translate(8, 0x1010, Access::Read), Ok(PHYS + 0x10));
    assert_eq!(t.translate(10, 0x1010, Access::Write), Ok(PHYS + 0x10));
    // Attaching again to the same domain is a success that changes nothing.
    ok(&mut h, &attach_req(1, 8, 0));
    assert_eq!(mappings(t, 1), [(0x1000, 0x1fff)]);
}

#[test]
fn bypass_flag_must_match_the_domain() {
    // spec: iommu.attach-request.6
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, ATTACH_F_BYPASS));
    assert_eq!(status(&mut h, &attach_req(1, 10, 0)), Some(Status::Inval));
    ok(&mut h, &attach_req(2, 10, 0));
    assert_eq!(
        status(&mut h, &attach_req(2, 8, ATTACH_F_BYPASS)),
        Some(Status::Inval)
    );
    assert_eq!(t.domain_of(8), Some(1), "a refused ATTACH moves nothing");
    // An endpoint in a bypass domain reaches memory by identity.
    assert_eq!(t.translate(8, PHYS, Access::Write), Ok(PHYS));
}

#[test]
fn attach_elsewhere_detaches_first() {
    // spec: iommu.attach-request.7, iommu.attach-request.8
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS, RW));
    ok(&mut h, &attach_req(2, 8, 0));
    assert_eq!(t.domain_of(8), Some(2));
    // Domain 1 had no other endpoint: it ceased to exist with its mapping.
    assert_eq!(t.domain_count(), 1);
    assert_eq!(t.mapping_count(), 0);
    assert_eq!(status(&mut h, &unmap_req(1, 0, 0xfff)), Some(Status::NoEnt));
    let f = t.translate(8, 0x1000, Access::Read).unwrap_err();
    assert_eq!(f.reason, FAULT_R_MAPPING);
    // With another endpoint left, the old domain stays.
    ok(&mut h, &attach_req(3, 10, 0));
    ok(&mut h, &attach_req(3, 8, 0));
    ok(&mut h, &map_req(3, 0x1000, 0x1fff, PHYS, RW));
    ok(&mut h, &attach_req(4, 8, 0));
    assert_eq!(mappings(t, 3), [(0x1000, 0x1fff)]);
    assert_eq!(t.domain_of(10), Some(3));
}

#[test]
fn attach_with_reserved_region_mapped_unsupp() {
    // spec: iommu.attach-request.10, iommu.attach-request.11
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    // Endpoint 8 has no reserved regions: the MSI window can be mapped.
    ok(&mut h, &map_req(1, MSI.start, MSI.end, PHYS, RW));
    // Endpoint 9 reserves it: incompatible with domain 1.
    assert_eq!(status(&mut h, &attach_req(1, 9, 0)), Some(Status::Unsupp));
    assert_eq!(t.domain_of(9), None);
    // A domain without such a mapping takes it.
    ok(&mut h, &attach_req(2, 9, 0));
}

#[test]
fn domain_table_full_is_nomem() {
    let (mut h, t) = rig_with(IommuConfig::default(), all_features());
    // Three endpoints in three of four domain slots.
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &attach_req(2, 9, 0));
    ok(&mut h, &attach_req(3, 10, 0));
    // Moving the only endpoint of a domain frees its slot first.
    ok(&mut h, &attach_req(4, 10, 0));
    assert_eq!(t.domain_count(), 3);
    // Three endpoints cannot fill four slots: a one-domain, two-mapping
    // table can be filled.
    let t2: &'static IommuTables<1, 2, 4> = Box::leak(Box::new(
        IommuTables::new(IommuConfig::default(), &EPS).unwrap(),
    ));
    let mut h2 = Harness::<Iommu<'static, 1, 2, 4>, 2>::new(
        Iommu::new(t2),
        Features::from_bits_retain(all_features()),
        &[0, 1],
    );
    let st = |h: &mut Harness<Iommu<'static, 1, 2, 4>, 2>, req: &[u8]| {
        let r = h.put(req);
        let w = h.space(4);
        h.request(REQUESTQ, &[r], &[w]);
        Status::from_wire(h.read(w)[0])
    };
    assert_eq!(st(&mut h2, &attach_req(1, 8, 0)), Some(Status::Ok));
    assert_eq!(st(&mut h2, &attach_req(2, 9, 0)), Some(Status::NoMem));
    assert_eq!(t2.domain_of(9), None);
    // Endpoint 8 alone in domain 1 can move: its slot is reused.
    assert_eq!(st(&mut h2, &attach_req(2, 8, 0)), Some(Status::Ok));
    assert_eq!(t2.domain_of(8), Some(2));
    // The mapping table: two fit, the third is NOMEM and changes nothing.
    assert_eq!(
        st(&mut h2, &map_req(2, 0, 0xfff, PHYS, RW)),
        Some(Status::Ok)
    );
    assert_eq!(
        st(&mut h2, &map_req(2, 0x2000, 0x2fff, PHYS, RW)),
        Some(Status::Ok)
    );
    assert_eq!(
        st(&mut h2, &map_req(2, 0x1000, 0x1fff, PHYS, RW)),
        Some(Status::NoMem)
    );
    assert_eq!(t2.mapping_count(), 2);
    assert!(t2.translate(8, 0x1000, Access::Read).is_err());
}

#[test]
fn domain_range_enforced() {
    let config = IommuConfig {
        domain_range: Some((4, 7)),
        ..IommuConfig::default()
    };
    let (mut h, t) = rig_with(config, all_features());
    assert_eq!(config_of(&h).domain_start.get(), 4);
    for d in [0u32, 3, 8, u32::MAX] {
        assert_eq!(status(&mut h, &attach_req(d, 8, 0)), Some(Status::Range));
        assert_eq!(status(&mut h, &detach_req(d, 8)), Some(Status::Range));
        assert_eq!(
            status(&mut h, &map_req(d, 0, 0xfff, PHYS, RW)),
            Some(Status::Range)
        );
        assert_eq!(status(&mut h, &unmap_req(d, 0, 0xfff)), Some(Status::Range));
    }
    assert_eq!(t.domain_count(), 0);
    ok(&mut h, &attach_req(4, 8, 0));
    ok(&mut h, &attach_req(7, 10, 0));
}

fn config_of(h: &H) -> IommuConfigSpace {
    config(h)
}

// ---- DETACH ----

#[test]
fn detach_ignores_reserved() {
    // spec: iommu.detach-request.1
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    let mut req = detach_req(1, 8);
    req[12..20].copy_from_slice(&[0xff; 8]);
    ok(&mut h, &req);
    assert_eq!(t.domain_of(8), None);
}

#[test]
fn detach_unknown_endpoint_noent() {
    // spec: iommu.detach-request.2
    let (mut h, _) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    assert_eq!(status(&mut h, &detach_req(1, 99)), Some(Status::NoEnt));
}

#[test]
fn detach_from_wrong_domain() {
    // spec: iommu.detach-request.3
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &attach_req(2, 10, 0));
    // A domain that does not exist: NOENT.
    assert_eq!(status(&mut h, &detach_req(5, 8)), Some(Status::NoEnt));
    // One the endpoint is not in: INVAL, nothing changes.
    assert_eq!(status(&mut h, &detach_req(2, 8)), Some(Status::Inval));
    assert_eq!(t.domain_of(8), Some(1));
    assert_eq!(t.domain_of(10), Some(2));
}

#[test]
fn detached_endpoint_loses_the_mappings() {
    // spec: iommu.detach-request.4
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS, RW));
    let v = view(t, &h, 8);
    h.mem.write(PHYS, b"mapped").unwrap();
    let mut buf = [0u8; 6];
    v.read(0x1000, &mut buf).unwrap();
    assert_eq!(&buf, b"mapped");
    ok(&mut h, &detach_req(1, 8));
    // The cached window is not used after the change.
    assert!(v.read(0x1000, &mut buf).is_err());
    // The domain went away with its last endpoint.
    assert_eq!(t.domain_count(), 0);
    assert_eq!(t.mapping_count(), 0);
    // In bypass mode the endpoint reaches guest-physical addresses again.
    write_config(&mut h, CONFIG_BYPASS_OFFSET, &[1]);
    v.read(PHYS, &mut buf).unwrap();
    assert_eq!(&buf, b"mapped");
}

// ---- MAP ----

#[test]
fn map_alignment_is_range() {
    // spec: iommu.map-request.1
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    for (s, e, p) in [
        (0x10u64, 0xfff, PHYS),   // virt_start
        (0, 0xffe, PHYS),         // virt_end + 1
        (0, 0x1000, PHYS),        // virt_end + 1
        (0, 0xfff, PHYS + 0x800), // phys_start
    ] {
        assert_eq!(
            status(&mut h, &map_req(1, s, e, p, RW)),
            Some(Status::Range)
        );
    }
    assert_eq!(t.mapping_count(), 0);
    // The end of the address space is aligned.
    ok(&mut h, &map_req(1, 0xffff_ffff_ffff_f000, u64::MAX, 0, RW));
    // A physical range that wraps is out of range.
    assert_eq!(
        status(&mut h, &map_req(1, 0, 0x1fff, 0xffff_ffff_ffff_f000, RW)),
        Some(Status::Range)
    );
    // Granule 1: anything goes.
    let (mut h, _) = rig_with(
        IommuConfig {
            page_size_mask: 1,
            ..IommuConfig::default()
        },
        all_features(),
    );
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 3, 3, PHYS + 1, MAP_F_READ));
}

#[test]
fn map_inverted_or_outside_input_range() {
    let config = IommuConfig {
        input_range: Some((0x1_0000, 0xff_ffff)),
        ..IommuConfig::default()
    };
    let (mut h, t) = rig_with(config, all_features());
    ok(&mut h, &attach_req(1, 8, 0));
    assert_eq!(
        status(&mut h, &map_req(1, 0x2_0000, 0x1_ffff, PHYS, RW)),
        Some(Status::Inval)
    );
    assert_eq!(
        status(&mut h, &map_req(1, 0, 0x1_ffff, PHYS, RW)),
        Some(Status::Range)
    );
    assert_eq!(
        status(&mut h, &map_req(1, 0xff_f000, 0x100_0fff, PHYS, RW)),
        Some(Status::Range)
    );
    assert_eq!(
        status(&mut h, &unmap_req(1, 0, 0x1_ffff)),
        Some(Status::Range)
    );
    assert_eq!(
        status(&mut h, &unmap_req(1, 0x2_0000, 0x1_ffff)),
        Some(Status::Inval)
    );
    ok(&mut h, &map_req(1, 0x1_0000, 0xff_ffff, PHYS, RW));
    assert_eq!(t.mapping_count(), 1);
}

#[test]
fn map_overlap_refused_table_unchanged() {
    // spec: iommu.map-request.2
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0x4000, 0x7fff, PHYS, RW));
    for (s, e) in [
        (0x4000u64, 0x7fff),
        (0x3000, 0x4fff),
        (0x7000, 0x8fff),
        (0x5000, 0x5fff),
        (0x0, 0xffff),
    ] {
        assert_eq!(
            status(&mut h, &map_req(1, s, e, PHYS, RW)),
            Some(Status::Inval),
            "{s:#x}..={e:#x}"
        );
        assert_eq!(mappings(t, 1), [(0x4000, 0x7fff)]);
    }
    // Adjacent ones are fine; another domain has its own space.
    ok(&mut h, &map_req(1, 0x3000, 0x3fff, PHYS, RW));
    ok(&mut h, &map_req(1, 0x8000, 0x8fff, PHYS, RW));
    ok(&mut h, &attach_req(2, 10, 0));
    ok(&mut h, &map_req(2, 0x4000, 0x7fff, PHYS, RW));
    assert_eq!(
        mappings(t, 1),
        [(0x3000, 0x3fff), (0x4000, 0x7fff), (0x8000, 0x8fff)]
    );
}

#[test]
fn map_unknown_flags_rejected() {
    // spec: iommu.map-request.3
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    for flags in [8u32, 1 << 31, MAP_F_MMIO] {
        assert_eq!(
            status(&mut h, &map_req(1, 0, 0xfff, PHYS, flags | RW)),
            Some(Status::Inval)
        );
    }
    assert_eq!(t.mapping_count(), 0);
    // MMIO is a flag the device knows with F_MMIO negotiated.
    let config = IommuConfig {
        mmio: true,
        ..IommuConfig::default()
    };
    let (mut h, t) = rig_with(config, all_features() | F_MMIO);
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0, 0xfff, PHYS, RW | MAP_F_MMIO));
    assert_eq!(t.translate(8, 0x10, Access::Write), Ok(PHYS + 0x10));
}

#[test]
fn map_unknown_domain_noent() {
    // spec: iommu.map-request.4
    let (mut h, t) = rig();
    assert_eq!(
        status(&mut h, &map_req(1, 0, 0xfff, PHYS, RW)),
        Some(Status::NoEnt)
    );
    assert_eq!(t.mapping_count(), 0);
}

#[test]
fn map_on_bypass_domain_inval() {
    // spec: iommu.map-request.5, iommu.unmap-request.3
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, ATTACH_F_BYPASS));
    assert_eq!(
        status(&mut h, &map_req(1, 0, 0xfff, PHYS, RW)),
        Some(Status::Inval)
    );
    assert_eq!(status(&mut h, &unmap_req(1, 0, 0xfff)), Some(Status::Inval));
    assert_eq!(t.mapping_count(), 0);
}

#[test]
fn permissions_enforced() {
    // spec: iommu.map-request.6, iommu.map-request.7
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS, MAP_F_READ));
    ok(
        &mut h,
        &map_req(1, 0x2000, 0x2fff, PHYS + 0x1000, MAP_F_WRITE),
    );
    ok(&mut h, &map_req(1, 0x3000, 0x3fff, PHYS + 0x2000, 0));
    let v = view(t, &h, 8);
    h.mem.write(PHYS, &[7; 4]).unwrap();
    let mut buf = [0u8; 4];
    v.read(0x1000, &mut buf).unwrap();
    assert_eq!(buf, [7; 4]);
    // No write through a read-only mapping, and nothing is written.
    assert!(v.write(0x1000, &[1; 4]).is_err());
    assert!(v.store_u16_release(0x1000, 1).is_err());
    h.mem.read(PHYS, &mut buf).unwrap();
    assert_eq!(buf, [7; 4]);
    // Write-only: writes go through, reads do not (the MAY is not taken).
    v.write(0x2000, &[3; 4]).unwrap();
    assert_eq!(
        h.read(Segment {
            addr: PHYS + 0x1000,
            len: 4
        }),
        [3; 4]
    );
    assert!(v.read(0x2000, &mut buf).is_err());
    // No permission at all.
    assert!(v.read(0x3000, &mut buf).is_err());
    assert!(v.write(0x3000, &buf).is_err());
    // The write and the u16 store at 0x1000 are one fault twice over.
    assert_eq!(t.pending_faults(), 4);
}

#[test]
fn map_over_reserved_region_refused() {
    // spec: iommu.property-resv-mem.4
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 9, 0));
    assert_eq!(
        status(&mut h, &map_req(1, MSI.start, MSI.end, PHYS, RW)),
        Some(Status::Inval)
    );
    assert_eq!(
        status(&mut h, &map_req(1, 0x0700_0000, 0x0800_0fff, PHYS, RW)),
        Some(Status::Inval)
    );
    assert_eq!(
        status(
            &mut h,
            &map_req(1, RESERVED.end - 0xfff, RESERVED.end, PHYS, RW)
        ),
        Some(Status::Inval)
    );
    assert_eq!(t.mapping_count(), 0);
    ok(&mut h, &map_req(1, 0x0810_0000, 0x0810_0fff, PHYS, RW));
}

// ---- UNMAP ----

/// The spec's seven UNMAP examples, each from a blank address space.
#[test]
fn unmap_examples() {
    // spec: iommu.unmap-request.4, iommu.unmap-request.5
    const P: u64 = 0x1000;
    // (map ranges in pages, unmap range in pages, status, mappings left)
    type Pages = &'static [(u64, u64)];
    let cases: [(Pages, (u64, u64), Status, Pages); 7] = [
        (&[], (0, 4), Status::Ok, &[]),
        (&[(0, 9)], (0, 9), Status::Ok, &[]),
        (&[(0, 4), (5, 9)], (0, 9), Status::Ok, &[]),
        (&[(0, 9)], (0, 4), Status::Range, &[(0, 9)]),
        (&[(0, 4), (5, 9)], (0, 4), Status::Ok, &[(5, 9)]),
        (&[(0, 4)], (0, 9), Status::Ok, &[]),
        (&[(0, 4), (10, 14)], (0, 14), Status::Ok, &[]),
    ];
    let pages = |(s, e): (u64, u64)| (s * P, (e + 1) * P - 1);
    for (i, (maps, un, want, left)) in cases.iter().enumerate() {
        let (mut h, t) = rig();
        ok(&mut h, &attach_req(1, 8, 0));
        for &m in *maps {
            let (s, e) = pages(m);
            ok(&mut h, &map_req(1, s, e, PHYS, RW));
        }
        let (s, e) = pages(*un);
        assert_eq!(
            status(&mut h, &unmap_req(1, s, e)),
            Some(*want),
            "example {}",
            i + 1
        );
        let left: Vec<_> = left.iter().map(|&m| pages(m)).collect();
        assert_eq!(mappings(t, 1), left, "example {}", i + 1);
    }
    // A split at the end of the range, with another mapping fully inside:
    // nothing is removed.
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0, 0xfff, PHYS, RW));
    ok(&mut h, &map_req(1, 0x1000, 0x2fff, PHYS, RW));
    assert_eq!(
        status(&mut h, &unmap_req(1, 0, 0x1fff)),
        Some(Status::Range)
    );
    assert_eq!(mappings(t, 1), [(0, 0xfff), (0x1000, 0x2fff)]);
    // Other domains are not touched.
    ok(&mut h, &attach_req(2, 10, 0));
    ok(&mut h, &map_req(2, 0, 0xfff, PHYS, RW));
    ok(&mut h, &unmap_req(1, 0, u64::MAX));
    assert_eq!(mappings(t, 2), [(0, 0xfff)]);
    assert_eq!(t.mapping_count(), 1);
}

#[test]
fn unmap_ignores_reserved() {
    // spec: iommu.unmap-request.1
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0, 0xfff, PHYS, RW));
    let mut req = unmap_req(1, 0, 0xfff);
    req[24..28].copy_from_slice(&[1, 2, 3, 4]);
    ok(&mut h, &req);
    assert_eq!(t.mapping_count(), 0);
}

#[test]
fn unmap_unknown_domain_noent() {
    // spec: iommu.unmap-request.2
    let (mut h, _) = rig();
    assert_eq!(status(&mut h, &unmap_req(3, 0, 0xfff)), Some(Status::NoEnt));
}

// ---- PROBE ----

fn probe(h: &mut H, ep: u32, room: u32) -> (u32, Vec<u8>) {
    send(h, &probe_req(ep), room)
}

#[test]
fn probe_lists_reserved_regions() {
    // spec: iommu.probe-request.1, iommu.probe-request.4, iommu.probe-request.5, iommu.probe-request.6, iommu.probe-request.9, iommu.property-resv-mem.1
    let (mut h, _) = rig();
    let mut req = probe_req(9);
    req[8..72].copy_from_slice(&[0xaa; 64]);
    let r = h.put(&req);
    let w = h.space(512 + 4);
    let used = h.request(REQUESTQ, &[r], &[w]);
    assert_eq!(used.len, 516);
    let out = h.read(w);
    // First property at 0, the second exactly length + 4 later.
    let first = ProbeResvMem::read_from_bytes(&out[..24]).unwrap();
    assert_eq!(first.head.type_.get(), PROBE_T_RESV_MEM);
    assert_eq!(first.head.type_.get() & 0xf000, 0, "property reserved bits");
    assert_eq!(first.head.length.get(), 20);
    assert_eq!(first.reserved, [0; 3]);
    assert_eq!(
        (first.subtype, first.start.get(), first.end.get()),
        (RESV_MEM_T_MSI, MSI.start, MSI.end)
    );
    let next = 4 + usize::from(first.head.length.get());
    let second = ProbeResvMem::read_from_bytes(&out[next..next + 24]).unwrap();
    assert_eq!(second.head.length.get(), 20);
    assert_eq!(
        (second.subtype, second.start.get(), second.end.get()),
        (RESV_MEM_T_RESERVED, RESERVED.start, RESERVED.end)
    );
    // The rest of probe_size is zeroes, then the OK tail.
    assert!(out[48..512].iter().all(|&b| b == 0));
    assert_eq!(&out[512..], &[0, 0, 0, 0]);
    // An endpoint without regions: all zeroes.
    let (used, out) = probe(&mut h, 8, 516);
    assert_eq!(used, 516);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn probe_unknown_endpoint_noent() {
    // spec: iommu.probe-request.2
    let (mut h, _) = rig();
    let (used, out) = probe(&mut h, 1234, 516);
    assert_eq!(used, 516);
    assert_eq!(out[512], Status::NoEnt as u8);
    assert!(out[..512].iter().all(|&b| b == 0));
}

#[test]
fn probe_not_offered_left_unwritten() {
    // spec: iommu.probe-request.3
    let cfg = IommuConfig {
        probe_size: None,
        ..IommuConfig::default()
    };
    let (mut h, _) = rig_with(cfg, F_MAP_UNMAP);
    assert_eq!(config(&h).probe_size.get(), 0);
    let (used, out) = probe(&mut h, 9, 516);
    assert_eq!(used, 0);
    assert!(out.iter().all(|&b| b == 0xee));
    // Offered but not negotiated: UNSUPP.
    let (mut h, _) = rig_with(IommuConfig::default(), F_MAP_UNMAP);
    let (used, out) = probe(&mut h, 9, 516);
    assert_eq!(used, 516);
    assert_eq!(out[512], Status::Unsupp as u8);
}

#[test]
fn probe_too_small_writes_no_property() {
    // spec: iommu.probe-request.7, iommu.probe-request.8
    let (mut h, _) = rig();
    let (used, out) = probe(&mut h, 9, 100);
    assert_eq!(used, 100);
    assert!(out[..96].iter().all(|&b| b == 0), "no property");
    assert_eq!(out[96], Status::Inval as u8);
}

#[test]
fn reserved_regions_checked_at_setup() {
    // spec: iommu.property-resv-mem.2, iommu.property-resv-mem.3
    let c = IommuConfig::default();
    let two_msi = [Endpoint {
        id: 1,
        resv_mem: &[
            MSI,
            ResvMem {
                start: 0x2000_0000,
                end: 0x2000_0fff,
                ..MSI
            },
        ],
    }];
    assert_eq!(T::new(c, &two_msi).unwrap_err(), ConfigError::TwoMsi(1));
    let overlap = [Endpoint {
        id: 2,
        resv_mem: &[
            MSI,
            ResvMem {
                subtype: RESV_MEM_T_RESERVED,
                start: MSI.end,
                end: MSI.end + 0x1000,
            },
        ],
    }];
    assert_eq!(
        T::new(c, &overlap).unwrap_err(),
        ConfigError::ResvOverlap(2)
    );
    let dup = [EPS[0], EPS[0]];
    assert_eq!(
        T::new(c, &dup).unwrap_err(),
        ConfigError::DuplicateEndpoint(8)
    );
    let small = IommuConfig {
        probe_size: Some(40),
        ..c
    };
    assert_eq!(
        T::new(small, &EPS).unwrap_err(),
        ConfigError::ProbeTooSmall(9)
    );
    let many = [
        EPS[0],
        EPS[1],
        EPS[2],
        Endpoint {
            id: 1,
            resv_mem: &[],
        },
        Endpoint {
            id: 2,
            resv_mem: &[],
        },
    ];
    assert_eq!(T::new(c, &many).unwrap_err(), ConfigError::TooManyEndpoints);
}

#[test]
fn reserved_regions_never_reached() {
    // spec: iommu.property-resv-mem.5
    let (mut h, t) = rig();
    write_config(&mut h, CONFIG_BYPASS_OFFSET, &[1]);
    let v = view(t, &h, 9);
    // Bypass lets the endpoint reach everything but its reserved regions.
    assert_eq!(
        t.translate(9, MSI.start - 1, Access::Read),
        Ok(MSI.start - 1)
    );
    assert!(v.check_range(MSI.start, 4).is_err());
    assert!(v.write(MSI.start, &[0; 4]).is_err());
    assert!(v.write(MSI.start - 2, &[0; 4]).is_err(), "straddling");
    assert!(t.translate(9, RESERVED.end, Access::Write).is_err());
    assert_eq!(
        t.translate(9, RESERVED.end + 1, Access::Write),
        Ok(RESERVED.end + 1)
    );
    // In a bypass domain too.
    ok(&mut h, &attach_req(1, 9, ATTACH_F_BYPASS));
    assert!(t.translate(9, MSI.end, Access::Read).is_err());
}

// ---- faults ----

/// Posts `n` event buffers of `len` bytes.
fn post_events(h: &mut H, n: usize, len: u32) -> Vec<Segment> {
    let segs: Vec<_> = (0..n).map(|_| h.space(len)).collect();
    for s in &segs {
        h.add(EVENTQ, &[], &[*s]);
    }
    h.kick(EVENTQ);
    segs
}

#[test]
fn fault_report_fields() {
    // spec: iommu.fault-reporting.1, iommu.fault-reporting.2, iommu.fault-reporting.3, iommu.fault-reporting.4
    let (mut h, t) = rig();
    let bufs = post_events(&mut h, 2, 24);
    assert_eq!(h.core.device().held_event_buffers(), 2);
    assert!(h.used(EVENTQ).is_none(), "held until a fault");
    ok(&mut h, &attach_req(1, 10, 0));
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS, MAP_F_READ));
    let v = view(t, &h, 10);
    assert!(v.write(0x1008, &[1]).is_err());
    let v8 = view(t, &h, 8);
    assert!(v8.read(0x5000, &mut [0; 2]).is_err());
    assert_eq!(t.pending_faults(), 2);
    let _ = h.core.poll();
    let u = h.used(EVENTQ).unwrap();
    assert_eq!(u.len, 24);
    let f = FaultReport::read_from_bytes(&h.read(bufs[0])).unwrap();
    assert_eq!(f.reason, FAULT_R_MAPPING);
    assert_eq!(f.flags.get(), FAULT_F_WRITE | FAULT_F_ADDRESS);
    assert_eq!(f.endpoint.get(), 10);
    assert_eq!(f.address.get(), 0x1008);
    assert_eq!((f.reserved, f.reserved1.get()), ([0; 3], 0));
    let u = h.used(EVENTQ).unwrap();
    assert_eq!(u.len, 24);
    let f = FaultReport::read_from_bytes(&h.read(bufs[1])).unwrap();
    assert_eq!(f.reason, FAULT_R_DOMAIN);
    assert_eq!(f.flags.get(), FAULT_F_READ | FAULT_F_ADDRESS);
    assert_eq!(f.endpoint.get(), 8);
    assert_eq!(t.pending_faults(), 0);
    assert_eq!(h.core.device().stats().faults, 2);
}

#[test]
fn faults_wait_for_a_buffer_and_overflow_is_counted() {
    let (mut h, t) = rig();
    let v = view(t, &h, 8);
    for i in 0..(FAULT_QUEUE as u64 + 3) {
        assert!(v.read(i * 8, &mut [0; 1]).is_err());
    }
    assert_eq!(t.pending_faults(), FAULT_QUEUE);
    assert_eq!(t.dropped_faults(), 3);
    // A buffer posted later takes the oldest at once.
    let bufs = post_events(&mut h, 1, 24);
    assert_eq!(h.used(EVENTQ).unwrap().len, 24);
    let f = FaultReport::read_from_bytes(&h.read(bufs[0])).unwrap();
    assert_eq!(f.address.get(), 0);
    assert_eq!(t.pending_faults(), FAULT_QUEUE - 1);
}

#[test]
fn small_event_buffer_is_not_split() {
    // spec: iommu.fault-reporting.5
    let (mut h, t) = rig();
    // 24 bytes in two descriptors: not used for a report.
    let a = h.space(12);
    let b = h.space(12);
    h.add(EVENTQ, &[], &[a, b]);
    h.kick(EVENTQ);
    let u = h.used(EVENTQ).unwrap();
    assert_eq!(u.len, 0);
    assert_eq!(h.read(a), [0xee; 12]);
    assert_eq!(h.core.device().stats().bad_event_buffers, 1);
    // The fault waits for a whole buffer.
    assert!(view(t, &h, 8).read(0, &mut [0]).is_err());
    let _ = h.core.poll();
    assert!(h.used(EVENTQ).is_none());
    post_events(&mut h, 1, 32);
    assert_eq!(h.used(EVENTQ).unwrap().len, 24);
}

// ---- reset, legacy bypass, Translated details ----

#[test]
fn reset_detaches_everything() {
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    ok(&mut h, &map_req(1, 0, 0xfff, PHYS, RW));
    post_events(&mut h, 1, 24);
    h.core.reset();
    assert_eq!(t.domain_of(8), None);
    assert_eq!((t.domain_count(), t.mapping_count()), (0, 0));
    assert_eq!(h.core.device().held_event_buffers(), 0);
}

#[test]
fn legacy_bypass_when_negotiated() {
    let config = IommuConfig {
        bypass: Bypass::Legacy,
        ..IommuConfig::default()
    };
    let (_h, t) = rig_with(config, F_MAP_UNMAP | F_BYPASS);
    assert_eq!(t.translate(8, 0x42, Access::Write), Ok(0x42));
    let (_h, t) = rig_with(config, F_MAP_UNMAP);
    assert!(t.translate(8, 0x42, Access::Write).is_err());
}

#[test]
fn translated_splits_across_mappings() {
    let (mut h, t) = rig();
    ok(&mut h, &attach_req(1, 8, 0));
    // Two adjacent IOVA pages onto swapped physical pages.
    ok(&mut h, &map_req(1, 0x1000, 0x1fff, PHYS + 0x1000, RW));
    ok(&mut h, &map_req(1, 0x2000, 0x2fff, PHYS, RW));
    let v = view(t, &h, 8);
    v.write(0x1ffe, &[1, 2, 3, 4]).unwrap();
    assert_eq!(
        h.read(Segment {
            addr: PHYS + 0x1ffe,
            len: 2
        }),
        [1, 2]
    );
    assert_eq!(h.read(Segment { addr: PHYS, len: 2 }), [3, 4]);
    let mut buf = [0u8; 4];
    v.read(0x1ffe, &mut buf).unwrap();
    assert_eq!(buf, [1, 2, 3, 4]);
    // A write running into an unmapped page writes nothing.
    assert!(v.write(0x2ffe, &[9; 4]).is_err());
    assert_eq!(
        h.read(Segment {
            addr: PHYS + 0xffe,
            len: 2
        }),
        [0, 0]
    );
    // Atomics in one mapping work; a u16 straddling two does not.
    v.store_u16_release(0x1010, 0xbeef).unwrap();
    assert_eq!(v.load_u16_acquire(0x1010), Ok(0xbeef));
    assert!(v.load_u16_acquire(0x1fff).is_err());
    // Zero-length accesses succeed anywhere; overflow is Overflow.
    v.read(0x9000, &mut []).unwrap();
    assert_eq!(
        v.check_range(u64::MAX, 2),
        Err(MemoryError::Overflow {
            addr: u64::MAX,
            len: 2
        })
    );
    assert!(v.check_range(0x1000, 0x2000).is_ok());
    assert!(v.check_range(0x1000, 0x2001).is_err());
}
