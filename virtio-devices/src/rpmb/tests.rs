//! The RPMB device's device-side requirements, each driven through a
//! `DeviceCore` by our split-ring driver, with MACs computed by a second
//! HMAC-SHA256 implementation (`hmac-sha256`), not the device's.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::boxed::Box;
use std::vec;
use std::vec::Vec;

use virtio_core::queue::Segment;
use virtio_core::spec::{DeviceStatus, Features};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::ram::{RamKeyStore, RamStorage};
use super::*;
use crate::harness::Harness;

type Dev = Rpmb<RamKeyStore, RamStorage<'static>, 4>;
type H = Harness<Dev, 1>;

const KEY: Key = [0x5a; 32];

/// 256 KiB of storage: capacity 2.
fn storage(counter: u32) -> RamStorage<'static> {
    let data: &'static mut [u8] = Box::leak(vec![0u8; 2 * 128 * 1024].into_boxed_slice());
    RamStorage::with_counter(data, counter)
}

fn rig_with(keys: RamKeyStore, storage: RamStorage<'static>) -> H {
    Harness::new(Rpmb::new(keys, storage), Features::empty(), &[0])
}

fn rig() -> H {
    rig_with(RamKeyStore::new(), storage(0))
}

fn keyed() -> H {
    rig_with(RamKeyStore::programmed(KEY), storage(0))
}

fn frame(req: u16) -> Frame {
    let mut f = Frame::new_zeroed();
    f.req_resp = req.into();
    f.block_count = 1.into();
    f
}

/// The driver's MAC over `frames` (bytes 228..512 of each, in order).
fn mac(key: &Key, frames: &[Frame]) -> [u8; 32] {
    let mut h = hmac_sha256::HMAC::new(key);
    for f in frames {
        h.update(&f.as_bytes()[MAC_START..]);
    }
    h.finalize()
}

/// Sends `frames` (one buffer each) with `out` response frames of room
/// (one buffer each); returns the used length and the response frames.
fn send(h: &mut H, frames: &[Frame], out: u32) -> (u32, Vec<Frame>) {
    let readable: Vec<Segment> = frames.iter().map(|f| h.put(f.as_bytes())).collect();
    let writable: Vec<Segment> = (0..out).map(|_| h.space(FRAME_BYTES as u32)).collect();
    let used = h.request(0, &readable, &writable);
    let resp = writable
        .iter()
        .map(|s| Frame::read_from_bytes(&h.read(*s)).unwrap())
        .collect();
    (used.len, resp)
}

fn result(f: &Frame) -> Option<RpmbResult> {
    RpmbResult::from_code(f.result.get())
}

fn program(h: &mut H, key: &Key) -> Frame {
    let mut f = frame(REQ_PROGRAM_KEY);
    f.key_mac = *key;
    let (used, r) = send(h, &[f, frame(REQ_RESULT_READ)], 1);
    assert_eq!(used, 512);
    r[0]
}

fn counter(h: &mut H, nonce: u8) -> Frame {
    let mut f = frame(REQ_GET_WRITE_COUNTER);
    f.nonce = [nonce; 16];
    send(h, &[f], 1).1[0]
}

/// Authenticated write frames of `blocks` (the MAC in the last), as the
/// driver builds them.
fn write_frames(key: &Key, address: u16, counter: u32, blocks: &[[u8; 256]]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = blocks
        .iter()
        .map(|b| {
            let mut f = frame(REQ_DATA_WRITE);
            f.data = *b;
            f.address = address.into();
            f.block_count = (blocks.len() as u16).into();
            f.write_counter = counter.into();
            f
        })
        .collect();
    let m = mac(key, &frames);
    frames.last_mut().unwrap().key_mac = m;
    frames
}

/// A write with a result read; returns the response frame.
fn write(h: &mut H, key: &Key, address: u16, counter: u32, blocks: &[[u8; 256]]) -> Frame {
    let mut frames = write_frames(key, address, counter, blocks);
    frames.push(frame(REQ_RESULT_READ));
    let (used, r) = send(h, &frames, 1);
    assert_eq!(used, 512);
    r[0]
}

fn read(h: &mut H, address: u16, blocks: u16, nonce: u8) -> Vec<Frame> {
    let mut f = frame(REQ_DATA_READ);
    f.address = address.into();
    f.block_count = blocks.into();
    f.nonce = [nonce; 16];
    send(h, &[f], u32::from(blocks)).1
}

fn block(b: u8) -> [u8; 256] {
    core::array::from_fn(|i| b ^ i as u8)
}

fn verify(key: &Key, frames: &[Frame]) -> bool {
    let mut plain = frames.to_vec();
    let got = plain.last().unwrap().key_mac;
    plain.last_mut().unwrap().key_mac = [0; 32];
    for f in &plain {
        assert_eq!(f.key_mac, [0; 32], "a MAC only in the last frame");
    }
    mac(key, &plain) == got
}

#[test]
fn config_is_whole_128k_units_at_most_16m() {
    // spec: rpmb.device-initialization.1
    let h = rig();
    let mut c = [0u8; 3];
    h.core.read_config(0, &mut c);
    assert_eq!(c, [2, 4, DEFAULT_MAX_READ]);
    // A partial unit is not served; more than 16 MiB is served as 16 MiB.
    let odd: &'static mut [u8] = Box::leak(vec![0u8; 128 * 1024 + 256].into_boxed_slice());
    assert_eq!(
        Dev::new(RamKeyStore::new(), RamStorage::new(odd))
            .config()
            .capacity,
        1
    );
    let big: &'static mut [u8] = Box::leak(vec![0u8; 17 << 20].into_boxed_slice());
    let dev = Dev::new(RamKeyStore::new(), RamStorage::new(big)).with_max_read(0);
    assert_eq!(dev.config().capacity, MAX_CAPACITY);
    assert_eq!(dev.config().max_rd_cnt, 0);
    // Read-only.
    let mut h = rig();
    h.core.write_config(0, &[9, 9, 9]);
    h.core.read_config(0, &mut c);
    assert_eq!(c, [2, 4, DEFAULT_MAX_READ]);
}

#[test]
fn key_is_one_time_programmable() {
    // spec: rpmb.device-operation.2, rpmb.device-operation-program-key.1, rpmb.device-operation-program-key.5
    let mut h = rig();
    let r = program(&mut h, &KEY);
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(r.req_resp.get(), RESP_PROGRAM_KEY);
    assert!(
        verify(&KEY, &[r]),
        "the response carries the calculated MAC"
    );
    // A second key is refused and the first stays in force.
    let r = program(&mut h, &[1; 32]);
    assert_eq!(result(&r), Some(RpmbResult::WriteFailure));
    assert_eq!(r.req_resp.get(), RESP_PROGRAM_KEY);
    let c = counter(&mut h, 3);
    assert!(verify(&KEY, &[c]));
    // No response ever carries the key.
    for f in [r, c] {
        assert_ne!(f.key_mac, KEY);
        assert!(!f.as_bytes().windows(32).any(|w| w == KEY));
    }
}

#[test]
fn program_key_without_result_read_answers_nothing() {
    // spec: rpmb.device-operation-program-key.1
    let mut h = rig();
    let mut f = frame(REQ_PROGRAM_KEY);
    f.key_mac = KEY;
    let (used, r) = send(&mut h, &[f], 1);
    assert_eq!(used, 0);
    assert_eq!(r[0].as_bytes(), &[0xee; 512][..], "no frame written");
    // Its result is read with a RESULT_READ of its own.
    let (used, r) = send(&mut h, &[frame(REQ_RESULT_READ)], 1);
    assert_eq!(used, 512);
    assert_eq!(result(&r[0]), Some(RpmbResult::Ok));
    assert_eq!(r[0].req_resp.get(), RESP_PROGRAM_KEY);
}

#[test]
fn program_key_block_count_must_be_one() {
    // spec: rpmb.device-operation-program-key.2
    let mut h = rig();
    let mut f = frame(REQ_PROGRAM_KEY);
    f.key_mac = KEY;
    f.block_count = 2.into();
    let (_, r) = send(&mut h, &[f, frame(REQ_RESULT_READ)], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    assert_eq!(r[0].req_resp.get(), RESP_PROGRAM_KEY);
    assert_eq!(
        result(&counter(&mut h, 0)),
        Some(RpmbResult::NoAuthKey),
        "nothing programmed"
    );
}

#[test]
fn program_key_store_failure_is_write_failure() {
    // spec: rpmb.device-operation-program-key.3
    let mut keys = RamKeyStore::new();
    keys.fail_program = true;
    let mut h = rig_with(keys, storage(0));
    let r = program(&mut h, &KEY);
    assert_eq!(result(&r), Some(RpmbResult::WriteFailure));
    // The store can be programmed afterwards.
    assert_eq!(result(&program(&mut h, &KEY)), Some(RpmbResult::Ok));
}

#[test]
fn program_key_other_errors_are_general_failure() {
    // spec: rpmb.device-operation-program-key.4
    let mut keys = RamKeyStore::new();
    keys.fail_read = true;
    let mut h = rig_with(keys, storage(0));
    assert_eq!(
        result(&program(&mut h, &KEY)),
        Some(RpmbResult::GeneralFailure)
    );
    // A bad RESULT_READ frame fails the request before it runs.
    h.core.device_mut().keys_mut().fail_read = false;
    let mut f = frame(REQ_PROGRAM_KEY);
    f.key_mac = KEY;
    let mut rr = frame(REQ_RESULT_READ);
    rr.block_count = 0.into();
    let (_, r) = send(&mut h, &[f, rr], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    assert_eq!(result(&counter(&mut h, 0)), Some(RpmbResult::NoAuthKey));
}

#[test]
fn get_write_counter_needs_a_key() {
    // spec: rpmb.device-operation-get-write-counter.1, rpmb.device-operation-get-write-counter.3
    let mut h = rig();
    let r = counter(&mut h, 7);
    assert_eq!(result(&r), Some(RpmbResult::NoAuthKey));
    assert_eq!(r.req_resp.get(), RESP_GET_COUNTER);
    assert_eq!(r.nonce, [7; 16]);
}

#[test]
fn get_write_counter_block_count_must_be_one() {
    // spec: rpmb.device-operation-get-write-counter.2
    let mut h = keyed();
    let mut f = frame(REQ_GET_WRITE_COUNTER);
    f.block_count = 0.into();
    let (_, r) = send(&mut h, &[f], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    assert_eq!(r[0].req_resp.get(), RESP_GET_COUNTER);
}

#[test]
fn get_write_counter_echoes_the_nonce_with_a_mac() {
    // spec: rpmb.device-operation-get-write-counter.3, rpmb.device-operation.5
    let mut h = keyed();
    let r = counter(&mut h, 0x42);
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(r.write_counter.get(), 0, "starts at zero");
    assert_eq!(r.nonce, [0x42; 16]);
    assert!(verify(&KEY, &[r]));
    assert!(!verify(&[0; 32], &[r]));
}

#[test]
fn data_write_then_read_back() {
    // spec: rpmb.device-operation-data-write.1, rpmb.device-operation-data-write.10, rpmb.device-operation-data-write.13, rpmb.device-operation.5, rpmb.device-operation.7, rpmb.device-operation-data-read.6
    let mut h = keyed();
    let r = write(&mut h, &KEY, 10, 0, &[block(1), block(2), block(3)]);
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(r.req_resp.get(), RESP_DATA_WRITE);
    assert_eq!(r.write_counter.get(), 1, "incremented by one");
    assert_eq!(r.address.get(), 10);
    assert!(verify(&KEY, &[r]));
    assert_eq!(h.core.device().storage().counter(), 1);

    let frames = read(&mut h, 10, 3, 9);
    assert_eq!(frames.len(), 3);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(result(f), Some(RpmbResult::Ok));
        assert_eq!(f.req_resp.get(), RESP_DATA_READ);
        assert_eq!(f.data, block(i as u8 + 1));
        assert_eq!(f.nonce, [9; 16]);
        assert_eq!(f.address.get(), 10);
        assert_eq!(f.block_count.get(), 3);
    }
    assert!(verify(&KEY, &frames), "one MAC over all frames");
    // Blocks around the write are untouched.
    assert_eq!(read(&mut h, 9, 1, 0)[0].data, [0; 256]);
    assert_eq!(read(&mut h, 13, 1, 0)[0].data, [0; 256]);
    // The next write needs the next counter.
    let r = write(&mut h, &KEY, 0, 1, &[block(9)]);
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(r.write_counter.get(), 2);
}

#[test]
fn data_write_without_result_read_is_recorded() {
    // spec: rpmb.device-operation-data-write.1, rpmb.device-operation-data-write.10
    let mut h = keyed();
    let frames = write_frames(&KEY, 0, 0, &[block(5)]);
    let (used, _) = send(&mut h, &frames, 0);
    assert_eq!(used, 0);
    let (_, r) = send(&mut h, &[frame(REQ_RESULT_READ)], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::Ok));
    assert_eq!(r[0].req_resp.get(), RESP_DATA_WRITE);
    assert_eq!(r[0].write_counter.get(), 1);
    assert!(verify(&KEY, &r));
    assert_eq!(read(&mut h, 0, 1, 0)[0].data, block(5));
}

#[test]
fn data_write_needs_a_key() {
    // spec: rpmb.device-operation-data-write.2
    let mut h = rig();
    let r = write(&mut h, &KEY, 0, 0, &[block(1)]);
    assert_eq!(result(&r), Some(RpmbResult::NoAuthKey));
    assert_eq!(r.req_resp.get(), RESP_DATA_WRITE);
    assert_eq!(h.core.device().storage().data()[..256], [0; 256]);
}

#[test]
fn data_write_block_count_zero_over_max_or_not_the_frames() {
    // spec: rpmb.device-operation-data-write.3
    let mut h = keyed();
    let five = [block(1); 5];
    assert_eq!(
        result(&write(&mut h, &KEY, 0, 0, &five)),
        Some(RpmbResult::GeneralFailure),
        "max_wr_cnt is 4"
    );
    let mut frames = write_frames(&KEY, 0, 0, &[block(1)]);
    frames[0].block_count = 0.into();
    frames[0].key_mac = mac(
        &KEY,
        &[{
            let mut f = frames[0];
            f.key_mac = [0; 32];
            f
        }],
    );
    frames.push(frame(REQ_RESULT_READ));
    assert_eq!(
        result(&send(&mut h, &frames, 1).1[0]),
        Some(RpmbResult::GeneralFailure)
    );
    // block_count 2 with one data frame.
    let mut frames = write_frames(&KEY, 0, 0, &[block(1), block(2)]);
    frames.remove(0);
    frames.push(frame(REQ_RESULT_READ));
    assert_eq!(
        result(&send(&mut h, &frames, 1).1[0]),
        Some(RpmbResult::GeneralFailure)
    );
    assert_eq!(h.core.device().storage().counter(), 0);
    assert_eq!(h.core.device().stats().writes, 0);
}

#[test]
fn write_counter_stops_at_its_maximum() {
    // spec: rpmb.device-operation-data-write.4, rpmb.device-operation-data-write.5, rpmb.device-operation.5
    let mut h = rig_with(RamKeyStore::programmed(KEY), storage(COUNTER_MAX - 1));
    let r = write(&mut h, &KEY, 0, COUNTER_MAX - 1, &[block(1)]);
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(r.write_counter.get(), COUNTER_MAX);
    // Expired: a write with the right counter and MAC is refused.
    let r = write(&mut h, &KEY, 0, COUNTER_MAX, &[block(2)]);
    assert_eq!(result(&r), Some(RpmbResult::WriteCounterExpired));
    assert_eq!(r.write_counter.get(), COUNTER_MAX);
    assert_eq!(h.core.device().storage().counter(), COUNTER_MAX);
    assert_eq!(read(&mut h, 0, 1, 0)[0].data, block(1));
    // Reads still work.
    assert_eq!(result(&counter(&mut h, 0)), Some(RpmbResult::Ok));
}

#[test]
fn data_write_address_out_of_range() {
    // spec: rpmb.device-operation-data-write.6
    let mut h = keyed();
    let blocks = 2 * BLOCKS_PER_UNIT as u16;
    let r = write(&mut h, &KEY, blocks - 1, 0, &[block(1), block(2)]);
    assert_eq!(result(&r), Some(RpmbResult::AddrFailure));
    let r = write(&mut h, &KEY, blocks - 2, 0, &[block(1), block(2)]);
    assert_eq!(result(&r), Some(RpmbResult::Ok), "the last two blocks");
}

#[test]
fn data_write_mac_mismatch_is_auth_failure() {
    // spec: rpmb.device-operation-data-write.7, rpmb.device-operation-data-write.8
    let mut h = keyed();
    // Another key.
    let r = write(&mut h, &[7; 32], 0, 0, &[block(1)]);
    assert_eq!(result(&r), Some(RpmbResult::AuthFailure));
    // The right key, one data byte changed after the MAC was computed.
    let mut frames = write_frames(&KEY, 0, 0, &[block(1), block(2)]);
    frames[0].data[100] ^= 1;
    frames.push(frame(REQ_RESULT_READ));
    assert_eq!(
        result(&send(&mut h, &frames, 1).1[0]),
        Some(RpmbResult::AuthFailure)
    );
    // The MAC in the first frame instead of the last.
    let mut frames = write_frames(&KEY, 0, 0, &[block(1), block(2)]);
    frames[0].key_mac = frames[1].key_mac;
    frames[1].key_mac = [0; 32];
    frames.push(frame(REQ_RESULT_READ));
    assert_eq!(
        result(&send(&mut h, &frames, 1).1[0]),
        Some(RpmbResult::AuthFailure)
    );
    assert_eq!(h.core.device().storage().counter(), 0);
    assert_eq!(h.core.device().storage().data()[..512], [0; 512]);
}

#[test]
fn data_write_stale_counter_is_count_failure() {
    // spec: rpmb.device-operation-data-write.9
    let mut h = keyed();
    assert_eq!(
        result(&write(&mut h, &KEY, 0, 0, &[block(1)])),
        Some(RpmbResult::Ok)
    );
    // A replay of the same (authentic) write.
    let r = write(&mut h, &KEY, 0, 0, &[block(2)]);
    assert_eq!(result(&r), Some(RpmbResult::CountFailure));
    assert_eq!(r.write_counter.get(), 1);
    let r = write(&mut h, &KEY, 0, 5, &[block(2)]);
    assert_eq!(result(&r), Some(RpmbResult::CountFailure));
    assert_eq!(read(&mut h, 0, 1, 0)[0].data, block(1));
}

#[test]
fn data_write_storage_failure_changes_nothing() {
    // spec: rpmb.device-operation-data-write.11
    let mut h = keyed();
    h.core.device_mut().storage_mut().fail_write = true;
    let r = write(&mut h, &KEY, 0, 0, &[block(1)]);
    assert_eq!(result(&r), Some(RpmbResult::WriteFailure));
    assert_eq!(r.write_counter.get(), 0);
    h.core.device_mut().storage_mut().fail_write = false;
    assert_eq!(h.core.device().storage().counter(), 0);
    assert_eq!(
        result(&write(&mut h, &KEY, 0, 0, &[block(1)])),
        Some(RpmbResult::Ok),
        "the same write succeeds later"
    );
}

#[test]
fn data_write_counter_unreadable_is_general_failure() {
    // spec: rpmb.device-operation-data-write.12
    let mut h = keyed();
    h.core.device_mut().storage_mut().fail_counter = true;
    let r = write(&mut h, &KEY, 0, 0, &[block(1)]);
    assert_eq!(result(&r), Some(RpmbResult::GeneralFailure));
    assert_eq!(h.core.device().storage().counter(), 0);
}

#[test]
fn data_read_needs_a_key() {
    // spec: rpmb.device-operation-data-read.1
    let mut h = rig();
    let r = read(&mut h, 0, 1, 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::NoAuthKey));
    assert_eq!(r[0].req_resp.get(), RESP_DATA_READ);
}

#[test]
fn data_read_block_count_zero_or_over_max() {
    // spec: rpmb.device-operation-data-read.2
    let mut h = keyed();
    let r = read(&mut h, 0, DEFAULT_MAX_READ as u16 + 1, 1);
    assert!(
        r.iter()
            .all(|f| result(f) == Some(RpmbResult::GeneralFailure))
    );
    let mut f = frame(REQ_DATA_READ);
    f.block_count = 0.into();
    let (used, r) = send(&mut h, &[f], 1);
    assert_eq!(used, 512);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    assert_eq!(r[0].req_resp.get(), RESP_DATA_READ);
}

#[test]
fn data_read_address_out_of_range() {
    // spec: rpmb.device-operation-data-read.3
    let mut h = keyed();
    let r = read(&mut h, 2 * BLOCKS_PER_UNIT as u16 - 1, 2, 1);
    assert!(r.iter().all(|f| result(f) == Some(RpmbResult::AddrFailure)));
    assert!(verify(&KEY, &r));
    assert_eq!(
        result(&read(&mut h, 2 * BLOCKS_PER_UNIT as u16 - 1, 1, 1)[0]),
        Some(RpmbResult::Ok)
    );
}

#[test]
fn data_read_storage_failure_is_read_failure() {
    // spec: rpmb.device-operation-data-read.4
    let mut h = keyed();
    h.core.device_mut().storage_mut().fail_read = true;
    let r = read(&mut h, 0, 3, 1);
    assert_eq!(r.len(), 3);
    for f in &r {
        assert_eq!(result(f), Some(RpmbResult::ReadFailure));
        assert_eq!(f.data, [0; 256]);
    }
    assert!(verify(&KEY, &r));
}

#[test]
fn data_read_without_room_for_its_frames_is_general_failure() {
    // spec: rpmb.device-operation-data-read.5
    let mut h = keyed();
    let mut f = frame(REQ_DATA_READ);
    f.block_count = 3.into();
    let (used, r) = send(&mut h, &[f], 2);
    assert_eq!(used, 1024);
    assert!(
        r.iter()
            .all(|f| result(f) == Some(RpmbResult::GeneralFailure))
    );
    // And a key store that cannot be read.
    h.core.device_mut().keys_mut().fail_read = true;
    assert_eq!(
        result(&read(&mut h, 0, 1, 0)[0]),
        Some(RpmbResult::GeneralFailure)
    );
}

#[test]
fn result_read_block_count_must_be_one() {
    // spec: rpmb.device-operation-result-read.1
    let mut h = keyed();
    assert_eq!(
        result(&write(&mut h, &KEY, 0, 0, &[block(1)])),
        Some(RpmbResult::Ok)
    );
    let mut rr = frame(REQ_RESULT_READ);
    rr.block_count = 2.into();
    let (_, r) = send(&mut h, &[rr], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    // Nothing to read yet after a reset.
    h.core.device_mut().reset();
    let (_, r) = send(&mut h, &[frame(REQ_RESULT_READ)], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    // A write whose RESULT_READ frame is bad does not run.
    let mut frames = write_frames(&KEY, 0, 1, &[block(2)]);
    frames.push(rr);
    assert_eq!(
        result(&send(&mut h, &frames, 1).1[0]),
        Some(RpmbResult::GeneralFailure)
    );
    assert_eq!(h.core.device().storage().counter(), 1);
}

/// Resets the device the way a driver does (status 0) and brings it up
/// again over the same harness memory.
fn driver_reset(h: &mut H) {
    h.core.set_status(0);
    h.core.set_status(1 | 2);
    h.core.set_driver_features(Features::VERSION_1);
    h.core.set_status(1 | 2 | 8);
    h.setup_queue(0);
    h.core.set_status(1 | 2 | 4 | 8);
    assert!(h.core.status().contains(DeviceStatus::DRIVER_OK));
}

#[test]
fn key_counter_and_data_survive_reset_and_reboot() {
    // spec: rpmb.device-operation.3, rpmb.device-operation.4, rpmb.device-operation.6, rpmb.device-operation.7
    let mut h = rig();
    assert_eq!(result(&program(&mut h, &KEY)), Some(RpmbResult::Ok));
    for c in 0..3 {
        assert_eq!(
            result(&write(&mut h, &KEY, c as u16, c, &[block(c as u8)])),
            Some(RpmbResult::Ok)
        );
    }
    driver_reset(&mut h);
    let r = counter(&mut h, 1);
    assert_eq!(result(&r), Some(RpmbResult::Ok), "the key is still there");
    assert_eq!(r.write_counter.get(), 3, "and the counter");
    assert!(verify(&KEY, &[r]));
    assert_eq!(read(&mut h, 2, 1, 0)[0].data, block(2));
    // No request lowers the counter: GET, reads and failed writes leave it.
    let _ = read(&mut h, 0, 2, 0);
    let _ = write(&mut h, &[1; 32], 0, 3, &[block(9)]);
    assert_eq!(counter(&mut h, 0).write_counter.get(), 3);
    // A reboot: a new device over the same stores.
    let dev = h.core.device_mut();
    let keys = core::mem::take(dev.keys_mut());
    let storage = core::mem::replace(dev.storage_mut(), RamStorage::new(&mut []));
    drop(h);
    let mut h = rig_with(keys, storage);
    assert_eq!(counter(&mut h, 1).write_counter.get(), 3);
    assert_eq!(
        result(&program(&mut h, &[3; 32])),
        Some(RpmbResult::WriteFailure)
    );
    assert_eq!(read(&mut h, 1, 1, 0)[0].data, block(1));
    assert_eq!(
        result(&write(&mut h, &KEY, 7, 3, &[block(7)])),
        Some(RpmbResult::Ok)
    );
}

#[test]
fn every_result_code_is_reachable() {
    // Each code once, from the tests above, in one place.
    let mut seen = Vec::new();
    let mut h = rig();
    seen.push(result(&counter(&mut h, 0)).unwrap()); // NoAuthKey
    seen.push(result(&program(&mut h, &KEY)).unwrap()); // Ok
    seen.push(result(&program(&mut h, &KEY)).unwrap()); // WriteFailure
    seen.push(result(&write(&mut h, &[0; 32], 0, 0, &[block(0)])).unwrap()); // Auth
    seen.push(result(&write(&mut h, &KEY, 0, 9, &[block(0)])).unwrap()); // Count
    seen.push(result(&write(&mut h, &KEY, 0xffff, 0, &[block(0)])).unwrap()); // Addr
    seen.push(result(&send(&mut h, &[frame(0x0042)], 1).1[0]).unwrap()); // General
    h.core.device_mut().storage_mut().fail_read = true;
    seen.push(result(&read(&mut h, 0, 1, 0)[0]).unwrap()); // Read
    let mut h = rig_with(RamKeyStore::programmed(KEY), storage(COUNTER_MAX));
    seen.push(result(&write(&mut h, &KEY, 0, COUNTER_MAX, &[block(0)])).unwrap());
    for code in [
        RpmbResult::Ok,
        RpmbResult::GeneralFailure,
        RpmbResult::AuthFailure,
        RpmbResult::CountFailure,
        RpmbResult::AddrFailure,
        RpmbResult::WriteFailure,
        RpmbResult::ReadFailure,
        RpmbResult::NoAuthKey,
        RpmbResult::WriteCounterExpired,
    ] {
        assert!(seen.contains(&code), "{code:?} never seen");
        assert_eq!(RpmbResult::from_code(code.code()), Some(code));
    }
}

#[test]
fn malformed_requests_execute_nothing() {
    let mut h = keyed();
    // Not whole frames.
    let frames = write_frames(&KEY, 0, 0, &[block(1)]);
    let short = h.put(&frames[0].as_bytes()[..500]);
    let out = h.space(512);
    let used = h.request(0, &[short], &[out]);
    assert_eq!(used.len, 512);
    let r = Frame::read_from_bytes(&h.read(out)).unwrap();
    assert_eq!(result(&r), Some(RpmbResult::GeneralFailure));
    // Extra frames after a counter request.
    let (_, r) = send(
        &mut h,
        &[frame(REQ_GET_WRITE_COUNTER), frame(REQ_GET_WRITE_COUNTER)],
        1,
    );
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    // An unknown request type.
    let (_, r) = send(&mut h, &[frame(0x0042)], 1);
    assert_eq!(result(&r[0]), Some(RpmbResult::GeneralFailure));
    // A frame split over buffers is fine.
    let bytes = frames[0].as_bytes();
    let a = h.put(&bytes[..100]);
    let b = h.put(&bytes[100..]);
    let rr = h.put(frame(REQ_RESULT_READ).as_bytes());
    let out = h.space(512);
    h.request(0, &[a, b, rr], &[out]);
    let r = Frame::read_from_bytes(&h.read(out)).unwrap();
    assert_eq!(result(&r), Some(RpmbResult::Ok));
    assert_eq!(h.core.device().stats().malformed, 3);
    assert!(h.core.is_live());
}

#[test]
fn a_response_without_a_whole_frame_of_room_stops_the_device() {
    let mut h = keyed();
    // No room at all: nothing to read, the device goes on.
    let (used, _) = send(&mut h, &[frame(REQ_GET_WRITE_COUNTER)], 0);
    assert_eq!(used, 0);
    assert!(h.core.is_live());
    // Room, but less than a frame: its bytes could read as success.
    let req = h.put(frame(REQ_GET_WRITE_COUNTER).as_bytes());
    let out = h.space(100);
    h.request(0, &[req], &[out]);
    assert!(h.core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert_eq!(h.core.device().stats().no_room, 2);
}

#[test]
fn a_chain_the_queue_rejects_reads_general_failure() {
    let mut h = keyed();
    // A readable buffer after a writable one.
    let out = h.space(512);
    let req = h.put(frame(REQ_GET_WRITE_COUNTER).as_bytes());
    let last = h.space(512);
    h.add_mixed(0, &[(out, true), (req, false), (last, true)]);
    h.kick(0);
    let used = h.used(0).unwrap();
    assert_eq!(used.len, 0);
    let r = Frame::read_from_bytes(&h.read(last)).unwrap();
    assert_eq!(result(&r), Some(RpmbResult::GeneralFailure));
    assert!(h.core.is_live());
}
