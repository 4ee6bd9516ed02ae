#![allow(clippy::arithmetic_side_effects)]

use std::vec;
use std::vec::Vec;

use virtio_core::memory::{MemoryError, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::{DeviceStatus, Features};
use zerocopy::{FromBytes, IntoBytes};

use super::*;
use crate::harness::Harness;

const SECTORS: usize = 64;

type H = Harness<Block<RamDisk<'static>>, 1>;

fn disk() -> RamDisk<'static> {
    RamDisk::new(Vec::leak(vec![0u8; SECTORS * 512]))
}

fn all_options() -> BlockOptions {
    BlockOptions {
        blk_size: Some(4096),
        size_max: Some(8192),
        seg_max: 4,
        discard: Some(RangeCommand {
            max_sectors: 16,
            max_segments: 2,
            alignment_or_may_unmap: 1,
        }),
        write_zeroes: Some(RangeCommand {
            max_sectors: 32,
            max_segments: 2,
            alignment_or_may_unmap: 1,
        }),
        id: *b"virtio-blk-test\0\0\0\0\0",
        ..BlockOptions::default()
    }
}

fn rig_with(options: BlockOptions, features: u64) -> H {
    Harness::new(
        Block::new(disk(), options),
        Features::from_bits_retain(features),
        &[0],
    )
}

fn rig() -> H {
    rig_with(
        all_options(),
        F_FLUSH | F_DISCARD | F_WRITE_ZEROES | F_SEG_MAX | F_SIZE_MAX | F_BLK_SIZE,
    )
}

fn header(h: &mut H, type_: u32, sector: u64) -> Segment {
    let hdr = BlkReqHeader {
        type_: type_.into(),
        reserved: 0.into(),
        sector: sector.into(),
    };
    h.put(hdr.as_bytes())
}

/// Sends a request: header, `out` data (readable), `in_len` bytes of
/// writable data, then a status byte. Returns (status, used len, data).
fn req(h: &mut H, type_: u32, sector: u64, out: &[u8], in_len: u32) -> (u8, u32, Vec<u8>) {
    let mut readable = vec![header(h, type_, sector)];
    if !out.is_empty() {
        readable.push(h.put(out));
    }
    let mut writable = vec![];
    let data = h.space(in_len);
    if in_len > 0 {
        writable.push(data);
    }
    let status = h.space(1);
    writable.push(status);
    let used = h.request(0, &readable, &writable);
    let data = if in_len > 0 { h.read(data) } else { vec![] };
    (h.read(status)[0], used.len, data)
}

fn segment(sector: u64, sectors: u32, flags: u32) -> BlkDiscardWriteZeroes {
    BlkDiscardWriteZeroes {
        sector: sector.into(),
        num_sectors: sectors.into(),
        flags: flags.into(),
    }
}

const IN: u32 = 0;
const OUT: u32 = 1;
const FLUSH: u32 = 4;
const GET_ID: u32 = 8;
const DISCARD: u32 = 11;
const WRITE_ZEROES: u32 = 13;
const OK: u8 = 0;
const IOERR: u8 = 1;
const UNSUPP: u8 = 2;

#[test]
fn sectors_written_read_back() {
    let mut h = rig();
    let data: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(req(&mut h, OUT, 3, &data, 0), (OK, 1, vec![]));
    let (status, used, back) = req(&mut h, IN, 3, &[], 1024);
    assert_eq!((status, used), (OK, 1025));
    assert_eq!(back, data);
    assert_eq!(
        &h.core.device().storage().data()[3 * 512..5 * 512],
        &data[..]
    );
    assert_eq!(h.core.device().stats().ok, 2);
}

// spec: split.message-framing.1
#[test]
fn header_and_data_split_anywhere() {
    let mut h = rig();
    let hdr = BlkReqHeader {
        type_: OUT.into(),
        reserved: 0.into(),
        sector: 1u64.into(),
    };
    let mut bytes = hdr.as_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(0x5a, 512));
    let a = h.put(&bytes[..5]);
    let b = h.put(&bytes[5..300]);
    let c = h.put(&bytes[300..]);
    let status = h.space(1);
    assert_eq!(h.request(0, &[a, b, c], &[status]).len, 1);
    assert_eq!(h.read(status), [OK]);
    // The read's data and status share one writable buffer.
    let hdr = header(&mut h, IN, 1);
    let both = h.space(513);
    assert_eq!(h.request(0, &[hdr], &[both]).len, 513);
    let got = h.read(both);
    assert!(got[..512].iter().all(|&b| b == 0x5a));
    assert_eq!(got[512], OK);
}

// spec: blk.device-initialization.3
#[test]
fn capacity_and_config_fields() {
    let h = rig();
    let mut raw = [0u8; 96];
    h.core.read_config(0, &mut raw);
    let c = BlkConfig::read_from_bytes(&raw[..]).unwrap();
    assert_eq!(c.capacity.get(), SECTORS as u64);
    assert_eq!(c.seg_max.get(), 4);
    assert_eq!(c.size_max.get(), 8192);
    assert_eq!(c.blk_size.get(), 4096);
    assert_eq!(c.max_discard_sectors.get(), 16);
    assert_eq!(c.max_discard_seg.get(), 2);
    assert_eq!(c.max_write_zeroes_sectors.get(), 32);
    assert_eq!(c.write_zeroes_may_unmap, 1);
    // virtio 1.4 §"Block Device / Device Initialization": the device MUST
    // initialize padding bytes unused0 and unused1 to 0 (and unused2,
    // §"Device configuration layout").
    assert_eq!(raw[33], 0);
    assert_eq!(&raw[57..60], &[0, 0, 0]);
    assert_eq!(&raw[93..96], &[0, 0, 0]);
    // Read as the driver would, in 32-bit halves.
    let mut lo = [0u8; 4];
    h.core.read_config(0, &mut lo);
    assert_eq!(u32::from_le_bytes(lo), SECTORS as u32);
}

// spec: blk.device-initialization.1, blk.device-initialization.2
#[test]
fn config_wce_is_not_offered_and_writeback_is_0() {
    // virtio 1.4 §"Block Device / Device Initialization": the device MUST
    // offer FLUSH if it offers CONFIG_WCE, and MUST initialize writeback to
    // 0 if CONFIG_WCE is negotiated without FLUSH. This device never offers
    // CONFIG_WCE (its writes are stable when completed) and keeps writeback
    // 0 in every configuration.
    for flush in [false, true] {
        let device = Block::new(
            disk(),
            BlockOptions {
                flush,
                ..BlockOptions::default()
            },
        );
        assert_eq!(device.features().bits() & (1 << 11), 0);
        assert_eq!(device.config().writeback, 0);
    }
}

// spec: blk.device-operation.16, blk.device-initialization.4, blk.device-initialization.5
#[test]
fn zoned_is_not_offered_and_zone_requests_are_unsupported() {
    // virtio 1.4 §"Block Device / Device Operation": if ZONED is not
    // negotiated the device MUST reject zone requests with UNSUPP. (It is
    // not a zoned device, so it never offers ZONED and has no HM model to
    // fail FEATURES_OK for.)
    let mut h = rig();
    assert_eq!(h.core.device_features().bits() & (1 << 17), 0);
    assert_eq!(h.core.device().config().model, 0);
    for zone in [15, 16, 18, 20, 22, 24, 26] {
        let (status, _, _) = req(&mut h, zone, 0, &[], 0);
        assert_eq!(status, UNSUPP, "type {zone}");
    }
}

// spec: blk.device-operation.3
#[test]
fn read_only_fails_writes_with_ioerr_and_writes_nothing() {
    // virtio 1.4 §"Block Device / Device Operation": a device MUST set the
    // status to IOERR for a write request if RO is offered, and MUST NOT
    // write any data.
    let mut h = rig_with(
        BlockOptions {
            read_only: true,
            ..all_options()
        },
        F_RO | F_DISCARD | F_WRITE_ZEROES,
    );
    assert_ne!(h.core.device_features().bits() & F_RO, 0);
    h.core.device_mut().storage_mut().data();
    assert_eq!(req(&mut h, OUT, 0, &[0xff; 512], 0).0, IOERR);
    let seg = segment(0, 1, 0);
    assert_eq!(req(&mut h, WRITE_ZEROES, 0, seg.as_bytes(), 0).0, IOERR);
    assert_eq!(req(&mut h, DISCARD, 0, seg.as_bytes(), 0).0, IOERR);
    assert!(h.core.device().storage().data().iter().all(|&b| b == 0));
    // Reads still work.
    assert_eq!(req(&mut h, IN, 0, &[], 512).0, OK);
}

// spec: blk.device-operation.4, blk.device-operation.5
#[test]
fn discard_and_write_zeroes_flags() {
    // virtio 1.4 §"Block Device / Device Operation": UNSUPP for any unknown
    // flag, and for DISCARD with unmap set.
    let mut h = rig();
    assert_eq!(req(&mut h, OUT, 0, &[7; 512], 0).0, OK);
    for (type_, flags) in [(DISCARD, 2), (DISCARD, SEGMENT_F_UNMAP), (WRITE_ZEROES, 4)] {
        let seg = segment(0, 1, flags);
        assert_eq!(req(&mut h, type_, 0, seg.as_bytes(), 0).0, UNSUPP);
    }
    // Nothing was changed by the refused requests.
    assert_eq!(h.core.device().storage().data()[0], 7);
    let seg = segment(0, 1, 0);
    assert_eq!(req(&mut h, DISCARD, 0, seg.as_bytes(), 0).0, OK);
}

// spec: blk.device-operation.8
#[test]
fn reads_return_zeroes_after_write_zeroes() {
    // virtio 1.4 §"Block Device / Device Operation": after a write zeroes
    // command completes, reads of the range MUST return zeroes, whether
    // unmap was set or not.
    let mut h = rig();
    assert_eq!(req(&mut h, OUT, 0, &[0xab; 4 * 512], 0).0, OK);
    let segs = [segment(0, 1, 0), segment(2, 2, SEGMENT_F_UNMAP)];
    assert_eq!(req(&mut h, WRITE_ZEROES, 0, segs.as_bytes(), 0).0, OK);
    let (status, _, back) = req(&mut h, IN, 0, &[], 4 * 512);
    assert_eq!(status, OK);
    assert!(back[..512].iter().all(|&b| b == 0));
    assert!(back[512..1024].iter().all(|&b| b == 0xab));
    assert!(back[1024..].iter().all(|&b| b == 0));
}

#[test]
fn range_command_limits() {
    let mut h = rig();
    // Too many segments, too many sectors, out of the disk, a torn segment.
    let three = [segment(0, 1, 0), segment(1, 1, 0), segment(2, 1, 0)];
    assert_eq!(req(&mut h, DISCARD, 0, three.as_bytes(), 0).0, IOERR);
    assert_eq!(
        req(&mut h, DISCARD, 0, segment(0, 17, 0).as_bytes(), 0).0,
        IOERR
    );
    let past = segment(SECTORS as u64 - 1, 2, 0);
    assert_eq!(req(&mut h, WRITE_ZEROES, 0, past.as_bytes(), 0).0, IOERR);
    assert_eq!(req(&mut h, DISCARD, 0, &[0; 10], 0).0, IOERR);
    let wrap = segment(u64::MAX, 2, 0);
    assert_eq!(req(&mut h, WRITE_ZEROES, 0, wrap.as_bytes(), 0).0, IOERR);
    // Not negotiated: UNSUPP.
    let mut h = rig_with(all_options(), 0);
    assert_eq!(
        req(&mut h, DISCARD, 0, segment(0, 1, 0).as_bytes(), 0).0,
        UNSUPP
    );
    assert_eq!(
        req(&mut h, WRITE_ZEROES, 0, segment(0, 1, 0).as_bytes(), 0).0,
        UNSUPP
    );
}

// spec: blk.device-operation.11
#[test]
fn flush_and_stable_writes() {
    // virtio 1.4 §"Block Device / Device Operation": FLUSH offered but not
    // negotiated means every completed write is stable, so it MUST be
    // committed before completion: the RAM disk holds the data as soon as
    // the write completes.
    struct Counting<'a>(RamDisk<'a>, u32);
    impl BlockStorage for Counting<'_> {
        type Error = RamDiskError;
        fn capacity(&self) -> u64 {
            self.0.capacity()
        }
        fn read(&mut self, s: u64, b: &mut [u8]) -> Result<(), RamDiskError> {
            self.0.read(s, b)
        }
        fn write(&mut self, s: u64, b: &[u8]) -> Result<(), RamDiskError> {
            self.0.write(s, b)
        }
        fn flush(&mut self) -> Result<(), RamDiskError> {
            self.1 += 1;
            Ok(())
        }
    }
    let mut h: Harness<Block<Counting<'static>>, 1> = Harness::new(
        Block::new(Counting(disk(), 0), BlockOptions::default()),
        Features::from_bits_retain(F_FLUSH),
        &[0],
    );
    let hdr = BlkReqHeader {
        type_: FLUSH.into(),
        reserved: 0.into(),
        sector: 0u64.into(),
    };
    let r = h.put(hdr.as_bytes());
    let s = h.space(1);
    assert_eq!(h.request(0, &[r], &[s]).len, 1);
    assert_eq!(h.read(s), [OK]);
    assert_eq!(h.core.device().storage().1, 1);
    // Without FLUSH negotiated the request is UNSUPP and writes are stable
    // at completion.
    let mut h = rig_with(all_options(), 0);
    assert_eq!(req(&mut h, FLUSH, 0, &[], 0).0, UNSUPP);
    assert_eq!(req(&mut h, OUT, 5, &[3; 512], 0).0, OK);
    assert_eq!(h.core.device().storage().data()[5 * 512], 3);
}

#[test]
fn get_id() {
    let mut h = rig();
    let (status, used, id) = req(&mut h, GET_ID, 0, &[], 20);
    assert_eq!((status, used), (OK, 21));
    assert_eq!(&id, b"virtio-blk-test\0\0\0\0\0");
}

#[test]
fn bad_reads_and_writes_get_ioerr() {
    let mut h = rig();
    // Not a multiple of 512, past the end, overflowing sector.
    assert_eq!(req(&mut h, IN, 0, &[], 100).0, IOERR);
    assert_eq!(req(&mut h, OUT, 0, &[1; 100], 0).0, IOERR);
    assert_eq!(req(&mut h, IN, SECTORS as u64, &[], 512).0, IOERR);
    assert_eq!(req(&mut h, OUT, SECTORS as u64 - 1, &[1; 1024], 0).0, IOERR);
    assert_eq!(req(&mut h, IN, u64::MAX, &[], 512).0, IOERR);
    // Unknown and unsupported types.
    for t in [2, 10, 14, 99, u32::MAX] {
        assert_eq!(req(&mut h, t, 0, &[], 0).0, UNSUPP, "type {t}");
    }
    assert!(h.core.device().storage().data().iter().all(|&b| b == 0));
}

#[test]
fn status_byte_is_last_and_failed_reads_are_zero_filled() {
    let mut h = rig();
    let (status, used, data) = req(&mut h, IN, SECTORS as u64, &[], 512);
    assert_eq!(status, IOERR);
    // The whole writable part is reported and was written: zeroes, then
    // the status in the very last byte.
    assert_eq!(used, 513);
    assert!(data.iter().all(|&b| b == 0));
}

#[test]
fn seg_max_and_size_max_are_enforced() {
    let mut h = rig();
    // seg_max is 4: five data segments fail, four succeed.
    let hdr = header(&mut h, OUT, 0);
    let five: Vec<Segment> = (0..5).map(|_| h.put(&[1; 512])).collect();
    let s = h.space(1);
    h.request(0, &[&[hdr][..], &five].concat(), &[s]);
    assert_eq!(h.read(s), [IOERR]);
    let hdr = header(&mut h, OUT, 0);
    let s = h.space(1);
    h.request(0, &[&[hdr][..], &five[..4]].concat(), &[s]);
    assert_eq!(h.read(s), [OK]);
    // size_max is 8192: one 16 KiB segment fails.
    let hdr = header(&mut h, IN, 0);
    let big = h.space(16384);
    let s = h.space(1);
    h.request(0, &[hdr], &[big, s]);
    assert_eq!(h.read(s), [IOERR]);
}

// virtio 1.4 §"Block Device / Device Operation": the status byte is the
// last byte the driver reads; a malformed request must not leave it stale
// (a stale 0 reads as VIRTIO_BLK_S_OK and the guest's data is lost).
// spec: split.used-ring.3
#[test]
fn malformed_chains_get_ioerr_in_their_status_byte_and_the_next_succeeds() {
    let mut h = rig();
    // 1. Header too short: IOERR in the status byte, from the device.
    let short = h.put(&[0; 8]);
    let s = h.space(1);
    assert_eq!(h.request(0, &[short], &[s]).len, 1);
    assert_eq!(h.read(s), [IOERR]);
    // 2. A chain the queue rejects (a data buffer outside guest memory)
    // whose last descriptor is a writable status byte: the core writes
    // IOERR there and returns it with used length 0.
    let hdr = header(&mut h, IN, 0);
    let outside = Segment {
        addr: 0x1000,
        len: 512,
    };
    let s = h.space(1);
    assert_eq!(h.request(0, &[hdr], &[outside, s]).len, 0);
    assert_eq!(h.read(s), [IOERR]);
    assert_eq!(h.core.malformed_chains(0), 1);
    // 3. Readable after writable, status last: IOERR too.
    let hdr = header(&mut h, OUT, 0);
    let w = h.space(512);
    let r = h.put(&[5; 512]);
    let s = h.space(1);
    let id = h.add_mixed(0, &[(hdr, false), (w, true), (r, false), (s, true)]);
    h.kick(0);
    let used = h.used(0).unwrap();
    assert_eq!((used.id, used.len), (id, 0));
    assert_eq!(h.read(s), [IOERR]);
    assert!(h.core.device().storage().data().iter().all(|&b| b == 0));
    // The next request still succeeds.
    assert_eq!(req(&mut h, OUT, 0, &[9; 512], 0).0, OK);
    assert_eq!(req(&mut h, IN, 0, &[], 512).2, vec![9; 512]);
    assert!(h.core.is_live());
}

// A request with no writable byte has nowhere for its status: it is
// returned (used length 0) and the device enters DEVICE_NEEDS_RESET
// (virtio 1.4 §"Device Status Field": the device SHOULD set it when it
// cannot go on), so it never reads as a success.
// spec: status.device-status-field.2
#[test]
fn a_request_without_a_status_byte_needs_reset() {
    let mut h = rig();
    let hdr = header(&mut h, IN, 0);
    assert_eq!(h.request(0, &[hdr], &[]).len, 0);
    assert_eq!(h.core.device().stats().no_status, 1);
    assert!(h.core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    // The same for a malformed chain whose last descriptor is out of
    // memory: no status byte can be located.
    let mut h = rig();
    let hdr = header(&mut h, IN, 0);
    let outside = Segment {
        addr: 0x1000,
        len: 1,
    };
    assert_eq!(h.request(0, &[hdr], &[outside]).len, 0);
    assert!(h.core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
}

// virtio 1.4 §"Block Device / Device Operation": the device MUST set the
// status to UNSUPP if any unknown flag is set in a discard or write zeroes
// segment — in any segment, before other checks answer IOERR.
// spec: blk.device-operation.4
#[test]
fn an_unknown_flag_in_a_later_segment_is_unsupp() {
    let mut h = rig();
    let segs = [segment(0, 1, 0), segment(SECTORS as u64, 1, 4)];
    // The first segment is fine, the second is out of range *and* has an
    // unknown flag: UNSUPP, and nothing applied.
    assert_eq!(req(&mut h, WRITE_ZEROES, 0, segs.as_bytes(), 0).0, UNSUPP);
    let segs = [segment(0, 99, 0), segment(0, 1, 2)];
    assert_eq!(req(&mut h, DISCARD, 0, segs.as_bytes(), 0).0, UNSUPP);
}

// virtio 1.4 §"Message Framing": the device MUST NOT make assumptions about
// the arrangement of descriptors. seg_max counts data segments only: a
// header split in four and a separate status byte do not count against it.
// spec: split.message-framing.1
#[test]
fn seg_max_counts_data_segments_however_the_header_is_split() {
    let mut h = rig();
    let hdr = BlkReqHeader {
        type_: OUT.into(),
        reserved: 0.into(),
        sector: 2u64.into(),
    };
    let bytes = hdr.as_bytes();
    let parts: Vec<Segment> = bytes.chunks(4).map(|c| h.put(c)).collect();
    let data: Vec<Segment> = (0..4).map(|i| h.put(&[i as u8 + 1; 512])).collect();
    let s = h.space(1);
    h.request(0, &[&parts[..], &data[..]].concat(), &[s]);
    assert_eq!(h.read(s), [OK]);
    assert_eq!(h.core.device().storage().data()[2 * 512 + 3 * 512], 4);
}

// The device offers a seg_max its chain capacity always holds, whatever
// the split of header and status: 16 one-byte header segments, seg_max
// data segments and a status byte fit in CHAIN_SEGMENTS.
// spec: split.message-framing.1, split.message-framing.2
#[test]
fn default_seg_max_fits_the_chain_capacity() {
    let b = Block::new(disk(), BlockOptions::default());
    assert_eq!(b.config().seg_max.get(), MAX_SEG_MAX);
    assert_eq!(MAX_SEG_MAX as usize + 16 + 1, CHAIN_SEGMENTS);
    let mut h = rig_with(BlockOptions::default(), F_SEG_MAX);
    let hdr = BlkReqHeader {
        type_: OUT.into(),
        reserved: 0.into(),
        sector: 0u64.into(),
    };
    let parts: Vec<Segment> = hdr.as_bytes().chunks(1).map(|c| h.put(c)).collect();
    let data: Vec<Segment> = (0..MAX_SEG_MAX).map(|_| h.put(&[7; 512])).collect();
    let s = h.space(1);
    h.request(0, &[&parts[..], &data[..]].concat(), &[s]);
    assert_eq!(h.read(s), [OK]);
    assert!(
        h.core.device().storage().data()[..MAX_SEG_MAX as usize * 512]
            .iter()
            .all(|&b| b == 7)
    );
}

// spec: reserved.reserved-feature-bits.5
#[test]
fn in_order_completions() {
    let mut h = rig_with(all_options(), Features::IN_ORDER.bits());
    let ids: Vec<u16> = (0..3)
        .map(|i| {
            let hdr = header(&mut h, OUT, i);
            let d = h.put(&[i as u8; 512]);
            let s = h.space(1);
            h.add(0, &[hdr, d], &[s])
        })
        .collect();
    h.kick(0);
    for id in ids {
        assert_eq!(h.used(0).unwrap().id, id);
    }
}

#[test]
fn ram_disk_bounds() {
    let mut d = RamDisk::new(Vec::leak(vec![0u8; 1000]));
    assert_eq!(d.capacity(), 1);
    assert!(d.read(1, &mut [0; 512]).is_err());
    assert!(d.write(u64::MAX, &[0; 512]).is_err());
    assert!(d.write_zeroes(0, u32::MAX).is_err());
    assert!(d.read(0, &mut [0; 512]).is_ok());
}

#[test]
fn several_request_queues_are_offered_and_served_alike() {
    let options = BlockOptions {
        queues: 4,
        ..BlockOptions::default()
    };
    let mut h: Harness<Block<RamDisk<'static>>, 4> = Harness::new(
        Block::new(disk(), options),
        Features::from_bits_retain(F_MQ | F_FLUSH),
        &[0, 3],
    );
    assert_ne!(h.core.device().features().bits() & F_MQ, 0);
    assert_eq!(h.core.device().config().num_queues.get(), 4);
    assert_eq!(h.core.num_queues(), 4);
    // A write on queue 3, read back on queue 0.
    let write = |h: &mut Harness<Block<RamDisk<'static>>, 4>, q: u16, type_: u32| {
        let hdr = BlkReqHeader {
            type_: type_.into(),
            reserved: 0.into(),
            sector: 2u64.into(),
        };
        let hdr = h.put(hdr.as_bytes());
        let data = h.put(&[0x3c; 512]);
        let status = h.space(1);
        let used = if type_ == OUT {
            h.request(q, &[hdr, data], &[status])
        } else {
            h.request(q, &[hdr], &[data, status])
        };
        (h.read(status)[0], used.len, h.read(data))
    };
    assert_eq!(write(&mut h, 3, OUT).0, OK);
    let (status, used, back) = write(&mut h, 0, IN);
    assert_eq!((status, used), (OK, 513));
    assert_eq!(back, vec![0x3c; 512]);
    // One queue: no MQ.
    let one = Block::new(disk(), BlockOptions::default());
    assert_eq!(one.features().bits() & F_MQ, 0);
    assert_eq!(one.num_queues(), 1);
}

/// Region memory whose writes into `dead` fail, as when guest memory stops
/// being reachable after a chain was validated (a region the frontend
/// removed, an IOMMU mapping the driver took away).
struct DeadRange<'a> {
    mem: &'a Region<'a>,
    dead: core::ops::Range<u64>,
}

impl GuestMemory for DeadRange<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        let end = addr + buf.len() as u64;
        if addr < self.dead.end && self.dead.start < end {
            return Err(MemoryError::OutOfBounds {
                addr,
                len: buf.len() as u64,
            });
        }
        self.mem.write(addr, buf)
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.mem.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.mem.store_u16_release(addr, value)
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.mem.check_range(addr, len)
    }
}

/// Pops a read of `sectors` sectors from sector 0 (header, data, status
/// byte) and serves it with writes into `dead` failing. Returns what
/// `serve` answered, the status byte and the device's counters.
fn read_with_dead_memory(
    dead: impl Fn(u64, u64) -> core::ops::Range<u64>,
) -> (Option<u32>, u8, BlockStats) {
    use virtio_core::driver::SplitDriver;
    use virtio_core::queue::SplitQueue;
    let mut host = vec![0u64; 0x2000];
    let mem = Region::new(0, host.as_mut_bytes()).unwrap();
    let layout = SplitDriver::layout(0, 8);
    let mut drv = SplitDriver::new(&mem, layout, Features::empty()).unwrap();
    let mut q = SplitQueue::<8>::new(&mem, layout, Features::empty()).unwrap();
    let (hdr, data, status) = (0x4000u64, 0x5000u64, 0x7000u64);
    let h = BlkReqHeader {
        type_: IN.into(),
        reserved: 0.into(),
        sector: 0.into(),
    };
    mem.write_obj(hdr, &h).unwrap();
    mem.write_obj(status, &0xeeu8).unwrap();
    drv.add(
        &mem,
        &[Segment { addr: hdr, len: 16 }],
        &[
            Segment {
                addr: data,
                len: 1024,
            },
            Segment {
                addr: status,
                len: 1,
            },
        ],
    )
    .unwrap();
    drv.publish_avail(&mem).unwrap();
    let mut chain = Chain::<CHAIN_SEGMENTS>::new();
    assert!(q.pop(&mem, &mut chain).unwrap());
    let mut disk_bytes = vec![0x5au8; SECTORS * 512];
    let mut block = Block::new(RamDisk::new(&mut disk_bytes), BlockOptions::default());
    let dead = DeadRange {
        mem: &mem,
        dead: dead(data, status),
    };
    let used = block.serve(&chain, &dead);
    let st: u8 = mem.read_obj(status).unwrap();
    (used, st, block.stats())
}

// virtio 1.4 §"Block Device / Device Operation": the status byte is the
// last thing the device writes and the driver reads it as the request's
// outcome. Guest memory that stops being reachable half way through a
// read's data must not leave the stale status (it read as OK): the answer
// is IOERR, and the used length covers only what was written (the status
// byte lies beyond it, which the device may write).
// spec: split.used-ring.3
#[test]
fn read_whose_data_write_faults_answers_ioerr() {
    // The data's second half is gone: the copy faults there.
    let (used, status, stats) = read_with_dead_memory(|data, _| data + 512..data + 1024);
    assert_eq!(status, IOERR);
    assert_eq!(used, Some(512), "only the first half was written");
    assert_eq!((stats.ok, stats.io_errors, stats.no_status), (0, 1, 0));
}

// The status byte itself unreachable: nothing can answer the request, so
// `serve` says so and the queue handler enters DEVICE_NEEDS_RESET (the
// path `a_request_without_a_status_byte_needs_reset` drives end to end).
#[test]
fn read_whose_status_byte_faults_is_not_answered() {
    let (used, status, stats) = read_with_dead_memory(|_, status| status..status + 1);
    assert_eq!(used, None);
    assert_eq!(status, 0xee, "the stale byte was not touched");
    assert_eq!((stats.ok, stats.io_errors, stats.no_status), (0, 0, 1));
}
