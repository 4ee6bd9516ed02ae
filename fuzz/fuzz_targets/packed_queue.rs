//! Packed queue, device side, over an arbitrary memory image and ring
//! positions.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! every popped chain, and every malformed chain (which always carries its
//! buffer id and slot count), can be completed; chains take at most the
//! ring; the device writes only the descriptor ring and its own event
//! suppression structure; the used position moves by exactly the slots the
//! completed chains took.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::queue::{Chain, PackedQueue, QueueConfig, RingPosition};
use virtio_core::spec::Features;
use virtio_fuzz::{
    DESC, DEVICE_AREA, DRIVER_AREA, Guarded, QueueInput, check_chain, host, load_image,
};
use zerocopy::IntoBytes;

fuzz_target!(|data: &[u8]| {
    let Some(input) = QueueInput::parse(data) else {
        return;
    };
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    load_image(&mem, input.image);
    mem.writes.borrow_mut().clear();
    let size = u16::from(input.size_byte % 48) + 1;
    let cfg = QueueConfig {
        size,
        desc_addr: DESC,
        driver_addr: DRIVER_AREA,
        device_addr: DEVICE_AREA,
    };
    let features = Features::from_bits_retain(input.features) | Features::RING_PACKED;
    let mut q = PackedQueue::<64>::new(&mem, cfg, features).expect("the fixed layout is valid");
    let (avail, used) = (
        RingPosition::from_u16(input.avail),
        RingPosition::from_u16(input.used),
    );
    q.set_positions(avail, used);
    let used_start = q.next_used();

    let mut heads = Vec::new();
    let mut chain = Chain::<8>::new();
    let mut slots = 0u32;
    for _ in 0..=u32::from(input.max_pops).min(u32::from(size)) {
        match q.pop(&mem, &mut chain) {
            Ok(false) => break,
            Ok(true) => {
                check_chain(&mem, &chain);
                slots += u32::from(chain.head().descs());
                heads.push((chain.head(), chain.writable_len()));
            }
            Err(e) => match e.head() {
                Some(head) => {
                    assert!(head.descs() >= 1, "a malformed chain took no slot");
                    slots += u32::from(head.descs());
                    heads.push((head, 0));
                }
                None => {
                    assert!(
                        e.needs_reset(),
                        "an error without a head must need a reset: {e}"
                    );
                    break;
                }
            },
        }
    }
    // One lap of the ring at most: a slot is never available in two laps.
    assert!(
        slots <= u32::from(size),
        "popped {slots} slots of a ring of {size}"
    );
    if input.reverse && !features.contains(Features::IN_ORDER) {
        heads.reverse();
    }
    for &(head, len) in &heads {
        q.push_used(&mem, head, len)
            .expect("a popped chain can be completed");
    }
    let _ = q.publish_used(&mem);
    let _ = q.enable_notification(&mem);
    let _ = q.disable_notification(&mem);

    let moved = (u32::from(q.next_used().slot) + 2 * u32::from(size) - u32::from(used_start.slot))
        % u32::from(size);
    assert_eq!(
        moved,
        slots % u32::from(size),
        "used position moved by the slots completed"
    );
    let ring = (DESC, 16 * u64::from(size));
    if let Err((addr, len)) = mem.writes_within(&[ring, (DEVICE_AREA, 4)]) {
        panic!("device wrote {len} bytes at {addr:#x}, outside the ring and its event structure");
    }
});
