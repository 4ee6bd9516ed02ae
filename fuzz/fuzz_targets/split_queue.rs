//! Split queue, device side, over an arbitrary memory image and ring state.
//!
//! Invariants: no panic; no read or write outside guest memory (the
//! `Guarded` region fails the run) and bounded work; every popped chain, and
//! every malformed chain that carries its head, can be completed; an error
//! without a head says the ring needs a reset; each chain's segments lie in
//! memory and add up to its lengths; the device writes only the used ring;
//! the published used index moves by the number of buffers returned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, QueueConfig, SplitQueue};
use virtio_core::spec::{Features, split_used_size};
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
    let size = 1u16 << (input.size_byte % 6);
    let cfg = QueueConfig {
        size,
        desc_addr: DESC,
        driver_addr: DRIVER_AREA,
        device_addr: DEVICE_AREA,
    };
    let features = Features::from_bits_retain(input.features);
    let mut q = SplitQueue::<64>::new(&mem, cfg, features).expect("the fixed layout is valid");
    // The device resumes with every earlier buffer returned (as after
    // vhost-user's SET_VRING_BASE): used and available indices agree.
    q.set_indices(input.avail, input.avail);

    let mut heads = Vec::new();
    let mut chain = Chain::<8>::new();
    for _ in 0..=u32::from(input.max_pops).min(u32::from(size)) {
        match q.pop(&mem, &mut chain) {
            Ok(false) => break,
            Ok(true) => {
                check_chain(&mem, &chain);
                heads.push((chain.head(), chain.writable_len()));
            }
            Err(e) => match e.head() {
                Some(head) => heads.push((head, 0)),
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
    assert!(
        heads.len() <= usize::from(size),
        "more chains than the ring holds"
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

    let used_ring = (DEVICE_AREA, split_used_size(size));
    if let Err((addr, len)) = mem.writes_within(&[used_ring]) {
        panic!("device wrote {len} bytes at {addr:#x}, outside the used ring");
    }
    if !heads.is_empty() {
        let used_idx = mem.load_u16_acquire(DEVICE_AREA + 2).expect("used idx");
        assert_eq!(
            used_idx,
            input.avail.wrapping_add(heads.len() as u16),
            "used index"
        );
    }
});
