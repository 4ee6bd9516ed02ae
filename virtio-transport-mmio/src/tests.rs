//! The register protocol, driven the way a driver drives it, and every
//! invalid access.
#![allow(clippy::arithmetic_side_effects)]

use std::vec;

use virtio_core::device::{
    DeviceCore, DeviceQueues, INTERRUPT_CONFIG_CHANGE, INTERRUPT_USED_BUFFER, QueueSetupError,
    VirtioDevice, read_config_bytes,
};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, QueueConfig, Segment};
use virtio_core::spec::{DeviceId, Features};
use zerocopy::IntoBytes;

use crate::regs::*;
use crate::{InterruptLine, MmioError, MmioTransport, ShmRegion, Width};

const BASE: u64 = 0x4000_0000;
const MEM: usize = 0x10000;
const DATA: u64 = BASE + 0x8000;

/// A device that answers "hi" into every chain and has 12 config bytes.
#[derive(Default)]
struct Hi {
    served: u32,
    config: [u8; 12],
}

impl VirtioDevice for Hi {
    fn device_id(&self) -> DeviceId {
        DeviceId::Console
    }
    fn features(&self) -> Features {
        Features::from_bits_retain(1 << 1)
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn max_queue_size(&self, _: u16) -> u16 {
        16
    }
    fn config_len(&self) -> u32 {
        12
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        // Only bytes 8..12 are writable.
        for (i, b) in data.iter().enumerate() {
            let at = offset as usize + i;
            if (8..12).contains(&at) {
                self.config[at] = *b;
            }
        }
    }
    fn reset(&mut self) {}
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mut chain = Chain::<4>::new();
        while queues.pop(queue, &mut chain) {
            self.served += 1;
            let mut w = chain.writer(queues.memory());
            let _ = w.write_all(b"hi");
            queues.push_used(queue, chain.head(), w.bytes_written());
        }
    }
}

#[derive(Default)]
struct Line {
    level: bool,
    edges: u32,
}

impl InterruptLine for Line {
    fn set_level(&mut self, asserted: bool) {
        self.level = asserted;
        self.edges += 1;
    }
}

type Mmio<'a> = MmioTransport<Hi, &'a Region<'a>, Line, 2>;

/// Runs `f` with a fresh device behind the transport, over fresh memory.
fn with_mmio(f: impl FnOnce(&mut Mmio<'_>)) {
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let mut config = [0u8; 12];
    config[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
    let device = Hi { served: 0, config };
    let mut t =
        MmioTransport::new(DeviceCore::new(device, &mem), Line::default()).with_vendor_id(0x1af4);
    f(&mut t);
}

fn r(t: &mut Mmio<'_>, offset: u32) -> u32 {
    t.read(offset, Width::Word)
}

fn w(t: &mut Mmio<'_>, offset: u32, value: u32) {
    let _ = t.write(offset, Width::Word, value);
}

/// The driver's initialisation (virtio 1.4 §"Device Initialization") up to
/// FEATURES_OK, accepting `features`.
fn negotiate(t: &mut Mmio<'_>, features: u64) {
    w(t, STATUS, 0);
    w(t, STATUS, 1);
    w(t, STATUS, 1 | 2);
    w(t, DRIVER_FEATURES_SEL, 0);
    w(t, DRIVER_FEATURES, features as u32);
    w(t, DRIVER_FEATURES_SEL, 1);
    w(t, DRIVER_FEATURES, (features >> 32) as u32);
    w(t, STATUS, 1 | 2 | 8);
}

fn setup_queue(t: &mut Mmio<'_>, queue: u32, layout: QueueConfig) {
    w(t, QUEUE_SEL, queue);
    assert_eq!(r(t, QUEUE_READY), 0);
    assert_eq!(r(t, QUEUE_SIZE_MAX), 16);
    w(t, QUEUE_SIZE, u32::from(layout.size));
    for (low, addr) in [
        (QUEUE_DESC_LOW, layout.desc_addr),
        (QUEUE_DRIVER_LOW, layout.driver_addr),
        (QUEUE_DEVICE_LOW, layout.device_addr),
    ] {
        w(t, low, addr as u32);
        w(t, low + 4, (addr >> 32) as u32);
    }
    w(t, QUEUE_READY, 1);
    assert_eq!(r(t, QUEUE_READY), 1);
}

const V1: u64 = 1 << 32;

fn live(t: &mut Mmio<'_>, features: u64) -> (SplitDriver, QueueConfig) {
    negotiate(t, features);
    assert_eq!(r(t, STATUS), 1 | 2 | 8);
    let layout = SplitDriver::layout(BASE, 8);
    let driver = SplitDriver::new(
        t.core().memory(),
        layout,
        Features::from_bits_retain(features),
    )
    .unwrap();
    setup_queue(t, 0, layout);
    w(t, STATUS, 1 | 2 | 8 | 4);
    assert_eq!(r(t, STATUS), 1 | 2 | 8 | 4);
    (driver, layout)
}

fn add(t: &Mmio<'_>, driver: &mut SplitDriver) {
    let mem = t.core().memory();
    driver
        .add(mem, &[], &[Segment { addr: DATA, len: 8 }])
        .unwrap();
    driver.publish_avail(mem).unwrap();
}

#[test]
fn identity_registers() {
    // spec: mmio.register-layout.1, mmio.register-layout.2
    // virtio 1.4 §"MMIO Device Register Layout": the device MUST return
    // 0x74726976 in MagicValue and 0x2 in Version.
    with_mmio(|t| {
        assert_eq!(r(t, MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(t, VERSION), 2);
        assert_eq!(r(t, DEVICE_ID), 3);
        assert_eq!(r(t, VENDOR_ID), 0x1af4);
        assert_eq!(t.error_count(), 0);
    });
}

#[test]
fn feature_words() {
    // spec: reserved.reserved-feature-bits.1
    with_mmio(|t| {
        w(t, DEVICE_FEATURES_SEL, 0);
        let low = r(t, DEVICE_FEATURES);
        w(t, DEVICE_FEATURES_SEL, 1);
        let high = r(t, DEVICE_FEATURES);
        let offered = u64::from(low) | (u64::from(high) << 32);
        assert_eq!(offered, t.core().device_features().bits());
        assert_ne!(offered & V1, 0);
        assert_ne!(offered & 2, 0);
        w(t, DEVICE_FEATURES_SEL, 7);
        assert_eq!(r(t, DEVICE_FEATURES), 0);
        // Only 0 may be accepted in words above 1.
        w(t, DRIVER_FEATURES_SEL, 2);
        assert_eq!(t.try_write(DRIVER_FEATURES, Width::Word, 0), Ok(()));
        assert_eq!(
            t.try_write(DRIVER_FEATURES, Width::Word, 1),
            Err(MmioError::FeatureWordOutOfRange { sel: 2, value: 1 })
        );
    });
}

#[test]
fn features_ok_refused_for_an_unoffered_feature_does_not_read_back() {
    // spec: features.feature-bits.2
    // virtio 1.4 §"Feature Bits": the device MUST fail to set FEATURES_OK
    // for features it does not accept; §"Device Initialization": the driver
    // re-reads the status to see whether the bit stuck.
    with_mmio(|t| {
        negotiate(t, V1 | (1 << 5));
        assert_eq!(r(t, STATUS), 1 | 2);
        negotiate(t, V1 | 2);
        assert_eq!(r(t, STATUS), 1 | 2 | 8);
    });
}

#[test]
fn a_request_end_to_end_with_the_interrupt_line() {
    // spec: mmio.register-layout.3, mmio.register-layout.4
    with_mmio(|t| {
        let (mut driver, _) = live(t, V1);
        add(t, &mut driver);
        assert!(!t.irq().level);
        w(t, QUEUE_NOTIFY, 0);
        assert_eq!(t.core().device().served, 1);
        let used = driver.pop_used(t.core().memory()).unwrap().unwrap();
        assert_eq!(used.len, 2);
        // §"MMIO Device Register Layout": the bit is held until acknowledged,
        // and the line asserted while any bit is set.
        assert_eq!(r(t, INTERRUPT_STATUS), INTERRUPT_USED_BUFFER);
        assert!(t.irq().level);
        w(t, INTERRUPT_ACK, INTERRUPT_USED_BUFFER);
        assert_eq!(r(t, INTERRUPT_STATUS), 0);
        assert!(!t.irq().level);
        assert_eq!(t.irq().edges, 2);
        assert_eq!(t.error_count(), 0);
    });
}

#[test]
fn no_buffer_consumed_before_driver_ok_over_mmio() {
    // spec: status.device-status-field.1
    // virtio 1.4 §"Device Initialization": no buffers before DRIVER_OK.
    with_mmio(|t| {
        negotiate(t, V1);
        let layout = SplitDriver::layout(BASE, 8);
        let mut driver = SplitDriver::new(t.core().memory(), layout, Features::VERSION_1).unwrap();
        setup_queue(t, 0, layout);
        add(t, &mut driver);
        w(t, QUEUE_NOTIFY, 0);
        assert_eq!(t.core().device().served, 0);
        assert_eq!(r(t, INTERRUPT_STATUS), 0);
        w(t, STATUS, 1 | 2 | 8 | 4);
        assert_eq!(t.core().device().served, 1);
    });
}

#[test]
fn reset_clears_interrupt_status_and_queue_ready() {
    // spec: mmio.register-layout.5, reset.device-reset.1
    // virtio 1.4 §"MMIO Device Register Layout": upon reset the device MUST
    // clear all bits in InterruptStatus and the ready bits of all queues.
    with_mmio(|t| {
        let (mut driver, _) = live(t, V1);
        add(t, &mut driver);
        w(t, QUEUE_NOTIFY, 0);
        assert_ne!(r(t, INTERRUPT_STATUS), 0);
        w(t, STATUS, 0);
        assert_eq!(r(t, STATUS), 0);
        assert_eq!(r(t, INTERRUPT_STATUS), 0);
        assert!(!t.irq().level);
        w(t, QUEUE_SEL, 0);
        assert_eq!(r(t, QUEUE_READY), 0);
    });
}

#[test]
fn control_registers_need_aligned_32_bit_accesses() {
    with_mmio(|t| {
        for width in [Width::Byte, Width::HalfWord] {
            assert_eq!(
                t.try_read(MAGIC_VALUE, width),
                Err(MmioError::BadWidth {
                    offset: MAGIC_VALUE,
                    width
                })
            );
            assert_eq!(t.read(STATUS, width), 0);
            let _ = t.write(STATUS, width, 1);
            assert_eq!(r(t, STATUS), 0);
        }
        assert_eq!(
            t.try_read(MAGIC_VALUE + 2, Width::Word),
            Err(MmioError::Unaligned {
                offset: 2,
                width: Width::Word
            })
        );
        let _ = t.write(STATUS + 1, Width::Word, 1);
        assert_eq!(r(t, STATUS), 0);
        assert_eq!(t.error_count(), 5);
        assert!(matches!(t.last_error(), Some(MmioError::Unaligned { .. })));
    });
}

#[test]
fn unknown_offsets_read_0_and_ignore_writes() {
    with_mmio(|t| {
        // 0x028/0x03c/0x040 are the legacy GuestPageSize/QueueAlign/QueuePFN.
        for offset in [0x018, 0x028, 0x03c, 0x040, 0x048, 0x0f0, 0x0c4] {
            assert_eq!(
                t.try_read(offset, Width::Word),
                Err(MmioError::UnknownOffset(offset))
            );
            assert_eq!(
                t.try_write(offset, Width::Word, 1),
                Err(MmioError::UnknownOffset(offset))
            );
        }
    });
}

#[test]
fn read_only_registers_ignore_writes() {
    with_mmio(|t| {
        for offset in [
            MAGIC_VALUE,
            VERSION,
            DEVICE_ID,
            VENDOR_ID,
            DEVICE_FEATURES,
            QUEUE_SIZE_MAX,
            INTERRUPT_STATUS,
            SHM_LEN_LOW,
            SHM_LEN_HIGH,
            SHM_BASE_LOW,
            SHM_BASE_HIGH,
            CONFIG_GENERATION,
        ] {
            assert_eq!(
                t.try_write(offset, Width::Word, 0x55),
                Err(MmioError::ReadOnly(offset))
            );
        }
        assert_eq!(r(t, MAGIC_VALUE), MAGIC);
        assert_eq!(r(t, DEVICE_ID), 3);
    });
}

#[test]
fn write_only_registers_read_0() {
    with_mmio(|t| {
        w(t, QUEUE_SEL, 1);
        for offset in [
            DEVICE_FEATURES_SEL,
            DRIVER_FEATURES,
            DRIVER_FEATURES_SEL,
            QUEUE_SEL,
            QUEUE_SIZE,
            QUEUE_NOTIFY,
            INTERRUPT_ACK,
            QUEUE_DESC_LOW,
            QUEUE_DESC_HIGH,
            QUEUE_DRIVER_LOW,
            QUEUE_DRIVER_HIGH,
            QUEUE_DEVICE_LOW,
            QUEUE_DEVICE_HIGH,
            SHM_SEL,
        ] {
            assert_eq!(
                t.try_read(offset, Width::Word),
                Err(MmioError::WriteOnly(offset))
            );
            assert_eq!(t.read(offset, Width::Word), 0);
        }
    });
}

#[test]
fn queue_setup_while_ready_is_ignored() {
    // virtio 1.4 §"MMIO Device Register Layout": while QueueReady is not 0
    // the driver MUST NOT access the queue's setup registers; the device
    // keeps the configuration it has.
    with_mmio(|t| {
        let (_driver, layout) = live(t, V1);
        w(t, QUEUE_SEL, 0);
        for offset in [
            QUEUE_SIZE,
            QUEUE_DESC_LOW,
            QUEUE_DESC_HIGH,
            QUEUE_DRIVER_LOW,
            QUEUE_DRIVER_HIGH,
            QUEUE_DEVICE_LOW,
            QUEUE_DEVICE_HIGH,
        ] {
            assert_eq!(
                t.try_write(offset, Width::Word, 4),
                Err(MmioError::Queue {
                    sel: 0,
                    error: QueueSetupError::QueueEnabled(0)
                })
            );
        }
        assert_eq!(t.core().queue_config(0), Some(layout));
    });
}

#[test]
fn queue_sel_out_of_range() {
    with_mmio(|t| {
        negotiate(t, V1);
        for sel in [2, 0xffff, 0x1_0000] {
            w(t, QUEUE_SEL, sel);
            // §"MMIO Device Register Layout": QueueSizeMax reads 0 for a queue
            // that is not available.
            assert_eq!(r(t, QUEUE_SIZE_MAX), 0);
            assert_eq!(r(t, QUEUE_READY), 0);
            assert!(matches!(
                t.try_write(QUEUE_SIZE, Width::Word, 8),
                Err(MmioError::Queue { .. })
            ));
            assert!(matches!(
                t.try_write(QUEUE_READY, Width::Word, 1),
                Err(MmioError::Queue { .. })
            ));
            assert!(matches!(
                t.try_write(QUEUE_DESC_LOW, Width::Word, 0),
                Err(MmioError::Queue { .. })
            ));
        }
        // A notification for a queue that does not exist is ignored.
        w(t, QUEUE_NOTIFY, 5);
    });
}

#[test]
fn queue_size_above_max_or_not_a_power_of_two() {
    with_mmio(|t| {
        negotiate(t, V1);
        w(t, QUEUE_SEL, 0);
        assert_eq!(
            t.try_write(QUEUE_SIZE, Width::Word, 32),
            Err(MmioError::Queue {
                sel: 0,
                error: QueueSetupError::SizeAboveMax { size: 32, max: 16 }
            })
        );
        assert_eq!(
            t.try_write(QUEUE_SIZE, Width::Word, 12),
            Err(MmioError::Queue {
                sel: 0,
                error: QueueSetupError::SizeNotPowerOfTwo(12)
            })
        );
        assert_eq!(t.core().queue_config(0).unwrap().size, 16);
        w(t, QUEUE_SIZE, 8);
        assert_eq!(t.core().queue_config(0).unwrap().size, 8);
        // With a packed ring any size up to the maximum is valid.
        negotiate(t, V1 | (1 << 34));
        assert_eq!(r(t, STATUS), 1 | 2 | 8);
        w(t, QUEUE_SEL, 0);
        assert_eq!(t.try_write(QUEUE_SIZE, Width::Word, 12), Ok(()));
        assert_eq!(t.core().queue_config(0).unwrap().size, 12);
    });
}

#[test]
fn invalid_values() {
    with_mmio(|t| {
        negotiate(t, V1);
        w(t, QUEUE_SEL, 0);
        assert_eq!(
            t.try_write(QUEUE_READY, Width::Word, 2),
            Err(MmioError::InvalidValue {
                offset: QUEUE_READY,
                value: 2
            })
        );
        assert_eq!(
            t.try_write(STATUS, Width::Word, 0x100),
            Err(MmioError::InvalidValue {
                offset: STATUS,
                value: 0x100
            })
        );
        assert_eq!(r(t, STATUS), 1 | 2 | 8);
    });
}

#[test]
fn queue_reset_register() {
    // spec: mmio.register-layout.8, mmio.register-layout.9, mmio.register-layout.10, mmio.register-layout.12, vq-reset.re-enable.1
    // Without RING_RESET the write is refused.
    with_mmio(|t| {
        let _ = live(t, V1);
        w(t, QUEUE_SEL, 0);
        assert_eq!(
            t.try_write(QUEUE_RESET, Width::Word, 1),
            Err(MmioError::Queue {
                sel: 0,
                error: QueueSetupError::RingResetNotNegotiated
            })
        );
        assert_eq!(r(t, QUEUE_READY), 1);
    });
    // virtio 1.4 §"MMIO Device Register Layout": the device MUST present 0
    // in both QueueReset and QueueReady when the queue reset has completed,
    // and 0 in QueueReset after the queue is enabled.
    with_mmio(|t| {
        let (_, layout) = live(t, V1 | (1 << 40));
        w(t, QUEUE_SEL, 0);
        assert_eq!(r(t, QUEUE_RESET), 0);
        w(t, QUEUE_RESET, 1);
        assert_eq!(r(t, QUEUE_RESET), 0);
        assert_eq!(r(t, QUEUE_READY), 0);
        // Re-enable (§"Virtqueue Re-enable").
        let layout2 = SplitDriver::layout(BASE + 0x2000, 8);
        let mut driver = SplitDriver::new(
            t.core().memory(),
            layout2,
            Features::VERSION_1 | Features::RING_RESET,
        )
        .unwrap();
        setup_queue(t, 0, layout2);
        assert_eq!(r(t, QUEUE_RESET), 0);
        add(t, &mut driver);
        w(t, QUEUE_NOTIFY, 0);
        assert_eq!(driver.pop_used(t.core().memory()).unwrap().unwrap().len, 2);
        let _ = layout;
    });
}

#[test]
fn shared_memory_registers() {
    with_mmio(|t| {
        t.add_shm_region(ShmRegion {
            id: 3,
            base: 0x1_2345_6000,
            len: 0x2_0000_1000,
        })
        .unwrap();
        w(t, SHM_SEL, 3);
        assert_eq!(r(t, SHM_BASE_LOW), 0x2345_6000);
        assert_eq!(r(t, SHM_BASE_HIGH), 1);
        assert_eq!(r(t, SHM_LEN_LOW), 0x1000);
        assert_eq!(r(t, SHM_LEN_HIGH), 2);
        // §"MMIO Device Register Layout": a missing region reads length -1 and
        // base 0xffffffffffffffff.
        w(t, SHM_SEL, 0);
        for offset in [SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH] {
            assert_eq!(r(t, offset), u32::MAX);
        }
    });
}

#[test]
fn config_space_byte_halfword_word() {
    // spec: config.device-configuration-space.1
    with_mmio(|t| {
        assert_eq!(t.read(CONFIG, Width::Byte), 0x88);
        assert_eq!(t.read(CONFIG + 1, Width::Byte), 0x77);
        assert_eq!(t.read(CONFIG + 2, Width::HalfWord), 0x5566);
        // A 64-bit field read as two 32-bit halves.
        assert_eq!(t.read(CONFIG, Width::Word), 0x5566_7788);
        assert_eq!(t.read(CONFIG + 4, Width::Word), 0x1122_3344);
        let _ = t.write(CONFIG + 8, Width::Word, 0xdead_beef);
        assert_eq!(t.read(CONFIG + 8, Width::Word), 0xdead_beef);
        let _ = t.write(CONFIG + 10, Width::Byte, 0x42);
        assert_eq!(t.read(CONFIG + 8, Width::Word), 0xde42_beef);
        // Read-only config bytes ignore the write (the device decides).
        let _ = t.write(CONFIG, Width::Byte, 0);
        assert_eq!(t.read(CONFIG, Width::Byte), 0x88);
        assert_eq!(t.error_count(), 0);
    });
}

#[test]
fn config_space_invalid_accesses() {
    with_mmio(|t| {
        assert_eq!(
            t.try_read(CONFIG + 1, Width::HalfWord),
            Err(MmioError::Unaligned {
                offset: CONFIG + 1,
                width: Width::HalfWord
            })
        );
        assert_eq!(
            t.try_read(CONFIG + 2, Width::Word),
            Err(MmioError::Unaligned {
                offset: CONFIG + 2,
                width: Width::Word
            })
        );
        assert_eq!(
            t.try_read(CONFIG + 12, Width::Byte),
            Err(MmioError::ConfigOutOfRange {
                offset: CONFIG + 12,
                width: Width::Byte
            })
        );
        assert_eq!(
            t.try_write(u32::MAX - 3, Width::Word, 0),
            Err(MmioError::ConfigOutOfRange {
                offset: u32::MAX - 3,
                width: Width::Word
            })
        );
        assert_eq!(t.read(CONFIG + 12, Width::Word), 0);
    });
}

#[test]
fn config_generation_changes_with_the_config() {
    // spec: mmio.register-layout.6, mmio.register-layout.3
    // virtio 1.4 §"MMIO Device Register Layout": the device MUST change
    // ConfigGeneration if there is any risk of an inconsistent view.
    with_mmio(|t| {
        let _ = live(t, V1);
        let before = r(t, CONFIG_GENERATION);
        t.core_mut().device_mut().config[0] = 1;
        t.core_mut().config_changed();
        t.update_interrupt();
        assert_ne!(r(t, CONFIG_GENERATION), before);
        assert_eq!(r(t, INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
        assert!(t.irq().level);
    });
}

#[test]
fn needs_reset_is_visible_with_a_config_interrupt() {
    // spec: status.device-status-field.2, status.device-status-field.3
    with_mmio(|t| {
        let (_driver, layout) = live(t, V1);
        // Corrupt the available ring: an index 100 ahead of the device.
        t.core()
            .memory()
            .store_u16_release(layout.driver_addr + 2, 100)
            .unwrap();
        w(t, QUEUE_NOTIFY, 0);
        assert_ne!(r(t, STATUS) & 64, 0);
        assert_eq!(r(t, INTERRUPT_STATUS), INTERRUPT_CONFIG_CHANGE);
        assert!(t.irq().level);
    });
}

// virtio 1.4 §"Available Buffer Notification Suppression" over virtio-mmio:
// a driver that adds a buffer during every publish (EVENT_IDX, split and
// packed) for 1000 rounds is fully served when the VMM does what the
// transport's docs ask: deliver each QueueNotify the driver writes, and
// call `poll` while a write or poll returns WorkLeft. Each call stays
// within the core's budget.
#[test]
fn a_busy_driver_is_served_for_1000_rounds_over_mmio() {
    use virtio_core::device::Service;
    use virtio_core::driver::busy::{BusyDriver, Schedule};
    const EVENT_IDX: u64 = 1 << 29;
    const PACKED: u64 = 1 << 34;
    for packed in [false, true] {
        let mut ram = vec![0u64; MEM / 8];
        let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
        let bits = V1 | EVENT_IDX | if packed { PACKED } else { 0 };
        let features = Features::from_bits_retain(bits);
        let drv = BusyDriver::new(&mem, BASE + 0x1000, 16, DATA, features, false).unwrap();
        let mut core: DeviceCore<Hi, _, 2, 16> = DeviceCore::new(Hi::default(), &drv);
        core.set_budget(4);
        let mut t = MmioTransport::new(core, Line::default());
        let wr = |t: &mut MmioTransport<Hi, _, Line, 2, 16>, offset, value| {
            assert_eq!(t.write(offset, Width::Word, value), Service::Done);
        };
        wr(&mut t, STATUS, 1 | 2);
        wr(&mut t, DRIVER_FEATURES_SEL, 0);
        wr(&mut t, DRIVER_FEATURES, bits as u32);
        wr(&mut t, DRIVER_FEATURES_SEL, 1);
        wr(&mut t, DRIVER_FEATURES, (bits >> 32) as u32);
        wr(&mut t, STATUS, 1 | 2 | 8);
        let layout = drv.config();
        wr(&mut t, QUEUE_SEL, 0);
        wr(&mut t, QUEUE_SIZE, u32::from(layout.size));
        for (low, addr) in [
            (QUEUE_DESC_LOW, layout.desc_addr),
            (QUEUE_DRIVER_LOW, layout.driver_addr),
            (QUEUE_DEVICE_LOW, layout.device_addr),
        ] {
            wr(&mut t, low, addr as u32);
            wr(&mut t, low + 4, (addr >> 32) as u32);
        }
        wr(&mut t, QUEUE_READY, 1);
        wr(&mut t, STATUS, 1 | 2 | 4 | 8);
        drv.set_schedule(Schedule::Never, 1);
        drv.step().unwrap();
        // Miri checks the accesses, not the count: fewer rounds there.
        let rounds = if cfg!(miri) { 10 } else { 1000 };
        drv.set_schedule(Schedule::EveryStore, rounds);
        let mut service = Service::Done;
        let mut calls = 0u32;
        loop {
            let before = t.core().device().served;
            service = if drv.take_kick() {
                t.write(QUEUE_NOTIFY, Width::Word, 0)
            } else if service.work_left() {
                t.poll()
            } else {
                break;
            };
            assert!(t.core().device().served - before <= 4, "over the budget");
            calls += 1;
            assert!(calls < 10_000);
        }
        drv.collect().unwrap();
        assert_eq!(drv.made(), rounds + 1, "packed {packed}");
        assert_eq!(drv.used(), rounds + 1, "packed {packed}");
        assert!(t.core().is_live());
    }
}
