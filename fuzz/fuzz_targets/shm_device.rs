//! Arbitrary virtio-msg messages and message-ring contents into the
//! shared-memory transport's device end (an rng and a block device on one
//! bus), written slot by slot as a driver would, with the ring indices
//! optionally corrupted first.
//!
//! Invariants: no panic; no access outside the memory and bounded work; the
//! device end writes only what is its own (its consumer and producer
//! indices, the device-to-driver ring, and the data area where the driver
//! puts virtqueues), never the header or the driver-to-device ring;
//! discarded messages are counted, never answered twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::memory::GuestMemory;
use virtio_devices::block::{Block, BlockOptions, RamDisk};
use virtio_devices::rng::Rng;
use virtio_fuzz::{Guarded, ShmInput, XorShift64, host, shm_layout};
use virtio_transport_shm::layout::offset;
use virtio_transport_shm::ring::{Consumer, Direction, Slot};
use virtio_transport_shm::{DataArea, DeviceEnd, Polled, ShmDevice};
use zerocopy::IntoBytes;

const MAX_MESSAGES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let input = ShmInput::parse(data);
    let layout = shm_layout();
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let mut disk = vec![0u8; 8 * 512];
    let area = DataArea::new(&mem, &layout);
    let rng = ShmDevice::<_, _, 1>::new(Rng::new(XorShift64::new(7)), area);
    let blk = ShmDevice::<_, _, 1>::new(
        Block::new(
            RamDisk::new(&mut disk),
            BlockOptions {
                queue_size: 16,
                ..BlockOptions::default()
            },
        ),
        area,
    );
    let mut dev = DeviceEnd::create(&mem, layout, (rng, blk), Polled).expect("window");
    mem.writes.borrow_mut().clear();
    let driver = mem.raw();
    if input.flags & 1 != 0 {
        driver
            .write(offset::TO_DEVICE_PROD, &input.indices)
            .expect("indices");
    }
    let n = input.data_area.len().min(layout.data_len() as usize);
    driver
        .write(layout.data_off(), &input.data_area[..n])
        .expect("data area");
    let mut answers = Consumer::new(&layout, Direction::ToDriver);
    let mut slot = Slot::default();
    let mut prod = driver
        .load_u16_acquire(offset::TO_DEVICE_PROD)
        .expect("index");
    let slots = u64::from(layout.slots());
    let slot_size = u64::from(layout.slot_size());
    for (i, m) in input.messages.iter().take(MAX_MESSAGES).enumerate() {
        let at = layout.to_device_off() + slot_size * (u64::from(prod) % slots);
        let n = m.len().min(slot_size as usize);
        driver.write(at, &m[..n]).expect("slot");
        prod = prod.wrapping_add(1);
        driver
            .store_u16_release(offset::TO_DEVICE_PROD, prod)
            .expect("index");
        // One call is bounded whatever the messages say; work it leaves
        // is continued by the next call, as firmware re-pending its
        // doorbell interrupt would.
        let _ = dev.process();
        if i % 4 == 3 {
            let _ = dev.poll();
        }
        // The driver reads what came back, so the device can go on answering.
        while let Ok(Some(_)) = answers.pop(driver, &mut slot) {}
    }
    let _ = dev.poll();
    let stats = dev.stats();
    assert!(
        stats.responses <= stats.received,
        "more answers than requests: {stats:?}"
    );

    // What the device end may write: its consumer and producer indices,
    // the device-to-driver ring, and the data area (virtqueues, buffers).
    let own = [
        (offset::TO_DEVICE_CONS, 4),
        (offset::TO_DRIVER_PROD, 4),
        (layout.to_driver_off(), slots * slot_size),
        (layout.data_off(), layout.data_len()),
    ];
    if let Err((addr, len)) = mem.writes_within(&own) {
        panic!("device end wrote {len} bytes at {addr:#x}, outside its areas");
    }
});
