//! Arbitrary virtio-mmio register access sequences against `DeviceCore`
//! with the block device, over an arbitrary memory image (which the seeds
//! fill with real rings and requests).
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! the status never shows FEATURES_OK for a feature set that was not a
//! subset of the offer with VERSION_1; DRIVER_OK never stands without
//! FEATURES_OK; reads of the fixed registers always give their values;
//! InterruptStatus only ever holds its two defined bits; the interrupt line
//! is asserted exactly when InterruptStatus is non-zero.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::spec::{DeviceStatus, Features};
use virtio_devices::block::{Block, BlockOptions, RamDisk};
use virtio_fuzz::{Guarded, MmioOp, host, load_image, split_mmio_input};
use virtio_transport_mmio::regs::{self, Width};
use virtio_transport_mmio::{InterruptLine, MmioTransport};
use zerocopy::IntoBytes;

#[derive(Default)]
struct Line(bool);

impl InterruptLine for Line {
    fn set_level(&mut self, asserted: bool) {
        self.0 = asserted;
    }
}

/// Most register accesses per run.
const MAX_OPS: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((image, ops)) = split_mmio_input(data) else {
        return;
    };
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    load_image(&mem, image);
    let mut disk = vec![0u8; 8 * 512];
    let block = Block::new(
        RamDisk::new(&mut disk),
        BlockOptions {
            queue_size: 16,
            ..BlockOptions::default()
        },
    );
    let core: DeviceCore<_, _, 1> = DeviceCore::new(block, &mem);
    let offered = core.device_features();
    let mut mmio = MmioTransport::new(core, Line::default());

    for chunk in ops.chunks_exact(MmioOp::LEN).take(MAX_OPS) {
        let op = MmioOp::parse(chunk).expect("7 bytes");
        let width = match op.width {
            0 => Width::Byte,
            1 => Width::HalfWord,
            _ => Width::Word,
        };
        if op.write {
            let _ = mmio.write(u32::from(op.offset), width, op.value);
        } else {
            mmio.read(u32::from(op.offset), width);
        }
        let core = mmio.core();
        let status = core.status();
        if status.contains(DeviceStatus::FEATURES_OK) {
            let negotiated = core.negotiated_features();
            assert!(
                offered.contains(negotiated),
                "negotiated {negotiated:?} outside the offer"
            );
            assert!(
                negotiated.contains(Features::VERSION_1),
                "FEATURES_OK without VERSION_1"
            );
        }
        if status.contains(DeviceStatus::DRIVER_OK) && !status.contains(DeviceStatus::FAILED) {
            assert!(
                status.contains(DeviceStatus::FEATURES_OK),
                "DRIVER_OK without FEATURES_OK"
            );
        }
        let isr = core.interrupt_status();
        assert_eq!(isr & !3, 0, "undefined InterruptStatus bits {isr:#x}");
        assert_eq!(
            mmio.irq().0,
            isr != 0,
            "interrupt line out of step with InterruptStatus"
        );
        assert_eq!(mmio.read(regs::MAGIC_VALUE, Width::Word), regs::MAGIC);
        assert_eq!(mmio.read(regs::VERSION, Width::Word), regs::VERSION_2);
        assert_eq!(mmio.read(regs::DEVICE_ID, Width::Word), 2);
    }
});
