//! DeviceCore against our own driver side, one rule per test.
#![allow(clippy::arithmetic_side_effects)]

use std::vec;
use std::vec::Vec;

use zerocopy::IntoBytes;

use super::*;
#[cfg(feature = "packed")]
use crate::driver::PackedDriver;
use crate::driver::SplitDriver;
use crate::memory::Region;
use crate::queue::{Chain, QueueConfig, RingArea, Segment};
use crate::spec::DeviceStatus;
#[cfg(feature = "indirect")]
use crate::spec::VirtqDesc;

const BASE: u64 = 0x10_0000;
const MEM: usize = 0x20000;
const QSIZE: u16 = 8;
const RING0: u64 = BASE;
const RING1: u64 = BASE + 0x1000;
const DATA: u64 = BASE + 0x8000;
const OWN_FEATURE: Features = Features::from_bits_retain(1 << 0);

/// A test device: answers "ok" into each chain on any queue, or holds the
/// chains until `poll` when `hold` is set.
#[derive(Default)]
struct Echo {
    hold: bool,
    /// Serving queue 0, or polled, it also takes what queue 1 has (as a
    /// console takes control receive buffers while serving control
    /// transmit).
    cross: bool,
    veto: bool,
    held: Vec<(u16, Chain<4>)>,
    served: u32,
    resets: u32,
    queue_resets: Vec<u16>,
    activated: Option<Features>,
    config: [u8; 8],
}

impl VirtioDevice for Echo {
    fn device_id(&self) -> DeviceId {
        DeviceId::Entropy
    }
    fn features(&self) -> Features {
        // An undefined-for-devices ring bit is dropped by the core.
        OWN_FEATURE | Features::ACCESS_PLATFORM
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn max_queue_size(&self, _queue: u16) -> u16 {
        QSIZE
    }
    fn config_len(&self) -> u32 {
        8
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u32, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(c) = self.config.get_mut(offset as usize + i) {
                *c = *b;
            }
        }
    }
    fn check_features(&self, features: Features) -> Result<(), FeaturesError> {
        if self.veto && features.contains(OWN_FEATURE) {
            return Err(FeaturesError::Rejected);
        }
        Ok(())
    }
    fn activate(&mut self, features: Features) {
        self.activated = Some(features);
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.held.clear();
    }
    fn queue_reset(&mut self, queue: u16) {
        self.queue_resets.push(queue);
        self.held.retain(|(q, _)| *q != queue);
    }
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        if self.cross && queue == 0 {
            self.queue_notify(1, queues);
        }
        let mut chain = Chain::<4>::new();
        while queues.pop(queue, &mut chain) {
            self.served += 1;
            if self.hold {
                self.held.push((queue, chain.clone()));
                continue;
            }
            let mut w = chain.writer(queues.memory());
            let _ = w.write_all(b"ok");
            queues.push_used(queue, chain.head(), w.bytes_written());
        }
    }
    fn poll<M: GuestMemory, const S: usize>(&mut self, queues: &mut DeviceQueues<'_, M, S>) {
        if self.cross {
            self.queue_notify(1, queues);
        }
        for (queue, chain) in self.held.drain(..) {
            let mut w = chain.writer(queues.memory());
            let _ = w.write_all(b"late");
            queues.push_used(queue, chain.head(), w.bytes_written());
        }
    }
}

type Core<'a> = DeviceCore<Echo, &'a Region<'a>, 4>;

/// Runs `f` with `device` in a core over fresh guest memory.
fn with_core(device: Echo, f: impl FnOnce(&mut Core<'_>, &Region<'_>)) {
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let mut core = DeviceCore::new(device, &mem);
    f(&mut core, &mem);
}

/// The driver's side of initialisation up to (not including) DRIVER_OK,
/// with queue 0 configured at RING0 and enabled.
fn init(core: &mut Core<'_>, features: Features) -> (SplitDriver, QueueConfig) {
    core.set_status(0);
    core.set_status(1);
    core.set_status(1 | 2);
    assert!(core.set_driver_features(features));
    core.set_status(1 | 2 | 8);
    assert!(core.status().contains(DeviceStatus::FEATURES_OK));
    let layout = SplitDriver::layout(RING0, QSIZE);
    let driver = SplitDriver::new(core.memory(), layout, features).unwrap();
    configure(core, 0, layout);
    (driver, layout)
}

fn configure(core: &mut Core<'_>, queue: u16, layout: QueueConfig) {
    core.set_queue(queue, layout).unwrap();
    core.set_queue_ready(queue, true).unwrap();
}

const DRIVER_OK: u8 = 1 | 2 | 8 | 4;

fn add_writable(driver: &mut SplitDriver, mem: &Region, at: u64) -> u16 {
    let id = driver
        .add(mem, &[], &[Segment { addr: at, len: 16 }])
        .unwrap();
    driver.publish_avail(mem).unwrap();
    id
}

fn v1() -> Features {
    Features::VERSION_1
}

// spec: reserved.reserved-feature-bits.1
#[test]
fn offers_version_1_ring_features_and_own_bits_only() {
    with_core(Echo::default(), |core, _mem| {
        let offered = core.device_features();
        // virtio 1.4 §"Reserved Feature Bits": the device MUST offer VERSION_1.
        assert!(offered.contains(Features::VERSION_1 | RING_FEATURES | OWN_FEATURE));
        assert!(!offered.contains(Features::ACCESS_PLATFORM));
        assert!(!offered.contains(Features::IN_ORDER));
    });
}

// spec: features.feature-bits.2
#[test]
fn features_ok_refused_for_an_unoffered_feature() {
    // virtio 1.4 §"Feature Bits": if the device does not accept the
    // features it MUST fail to set FEATURES_OK (the bit does not read back).
    with_core(Echo::default(), |core, _mem| {
        core.set_status(1 | 2);
        core.set_driver_features(v1() | Features::from_bits_retain(1 << 5));
        core.set_status(1 | 2 | 8);
        assert!(!core.status().contains(DeviceStatus::FEATURES_OK));
        assert_eq!(
            core.features_error(),
            Some(FeaturesError::NotOffered(1 << 5))
        );
        assert_eq!(core.negotiated_features(), Features::empty());
        // DRIVER_OK without FEATURES_OK does not take either.
        core.set_status(DRIVER_OK);
        assert!(!core.status().contains(DeviceStatus::DRIVER_OK));
        // A corrected set is accepted.
        core.set_driver_features(v1() | OWN_FEATURE);
        core.set_status(1 | 2 | 8);
        assert!(core.status().contains(DeviceStatus::FEATURES_OK));
        assert_eq!(core.negotiated_features(), v1() | OWN_FEATURE);
    });
}

// spec: features.feature-bits.2
#[test]
fn features_ok_refused_without_version_1_or_on_device_veto() {
    with_core(
        Echo {
            veto: true,
            ..Echo::default()
        },
        |core, _mem| {
            core.set_status(1 | 2);
            // Offered in every build, but not VERSION_1.
            core.set_driver_features(Features::RING_RESET);
            core.set_status(1 | 2 | 8);
            assert_eq!(core.features_error(), Some(FeaturesError::Version1Missing));
            assert!(!core.status().contains(DeviceStatus::FEATURES_OK));
            core.set_driver_features(v1() | OWN_FEATURE);
            core.set_status(1 | 2 | 8);
            assert_eq!(core.features_error(), Some(FeaturesError::Rejected));
            assert!(!core.status().contains(DeviceStatus::FEATURES_OK));
            // Features cannot change after FEATURES_OK.
            core.set_driver_features(v1());
            core.set_status(1 | 2 | 8);
            assert!(core.status().contains(DeviceStatus::FEATURES_OK));
            assert!(!core.set_driver_features(v1() | OWN_FEATURE));
            assert_eq!(core.driver_features(), v1());
        },
    );
}

#[test]
fn status_bits_are_only_added_and_needs_reset_is_the_devices() {
    with_core(Echo::default(), |core, _mem| {
        core.set_status(1 | 2);
        core.set_status(1);
        assert_eq!(
            core.status(),
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER
        );
        core.set_status(64 | 16 | 1);
        assert!(!core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
        assert!(!core.status().contains(DeviceStatus::SUSPEND));
    });
}

// spec: status.device-status-field.1
#[test]
fn no_buffer_is_consumed_before_driver_ok() {
    // virtio 1.4 §"Device Initialization": the device MUST NOT consume
    // buffers or send used buffer notifications before DRIVER_OK.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 0);
        assert_eq!(driver.pop_used(mem).unwrap(), None);
        assert_eq!(core.interrupt_status(), 0);
        assert!(!core.queue_active(0));
        // DRIVER_OK builds the ring and serves what was already there.
        core.set_status(DRIVER_OK);
        assert_eq!(core.device().activated, Some(v1()));
        assert_eq!(core.device().served, 1);
        let used = driver.pop_used(mem).unwrap().unwrap();
        assert_eq!(used.len, 2);
        assert_eq!(core.interrupt_status(), INTERRUPT_USED_BUFFER);
        core.ack_interrupt(INTERRUPT_USED_BUFFER);
        assert_eq!(core.interrupt_status(), 0);
    });
}

#[test]
fn failed_status_stops_consumption() {
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        core.set_status(DRIVER_OK | 128);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 0);
    });
}

// spec: reset.device-reset.1, reset.device-reset.2, mmio.register-layout.5
#[test]
fn reset_clears_queues_interrupt_status_and_the_device() {
    // virtio 1.4 §"Device Reset": the device MUST reinitialize device status
    // to 0; §"MMIO Device Register Layout": upon reset the device MUST clear
    // all bits in InterruptStatus and the ready bits of all queues.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        core.set_status(DRIVER_OK);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        core.config_changed();
        assert_eq!(
            core.interrupt_status(),
            INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE
        );
        let generation = core.config_generation();
        let resets = core.device().resets;
        core.set_status(0);
        assert_eq!(core.status(), DeviceStatus::empty());
        assert_eq!(core.interrupt_status(), 0);
        assert!(!core.queue_ready(0));
        assert!(!core.queue_active(0));
        assert_eq!(
            core.queue_config(0),
            Some(QueueConfig {
                size: QSIZE,
                ..QueueConfig::default()
            })
        );
        assert_eq!(core.negotiated_features(), Features::empty());
        assert_eq!(core.device().resets, resets + 1);
        assert_eq!(core.config_generation(), generation);
        // After reset the device does not touch the queues (§"Device Reset").
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 1);
    });
}

#[test]
fn malformed_chain_is_returned_with_used_length_0_and_the_next_succeeds() {
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        core.set_status(DRIVER_OK);
        // A chain whose buffer lies outside guest memory.
        let bad = driver
            .add(
                mem,
                &[],
                &[Segment {
                    addr: 0x10,
                    len: 16,
                }],
            )
            .unwrap();
        let good = driver
            .add(
                mem,
                &[],
                &[Segment {
                    addr: DATA,
                    len: 16,
                }],
            )
            .unwrap();
        driver.publish_avail(mem).unwrap();
        let _ = core.notify(0);
        let first = driver.pop_used(mem).unwrap().unwrap();
        assert_eq!((first.id, first.len), (bad, 0));
        let second = driver.pop_used(mem).unwrap().unwrap();
        assert_eq!((second.id, second.len), (good, 2));
        assert_eq!(core.malformed_chains(0), 1);
        assert_eq!(core.device().served, 1);
        assert!(core.is_live());
    });
}

/// Echo on one queue with a chosen rule for malformed chains.
struct Ruled(Echo, MalformedChain);

impl VirtioDevice for Ruled {
    fn malformed_chain(&self, _queue: u16) -> MalformedChain {
        self.1
    }
    fn device_id(&self) -> DeviceId {
        self.0.device_id()
    }
    fn features(&self) -> Features {
        self.0.features()
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn max_queue_size(&self, q: u16) -> u16 {
        self.0.max_queue_size(q)
    }
    fn reset(&mut self) {}
    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        self.0.queue_notify(queue, queues);
    }
}

#[test]
fn a_device_can_choose_needs_reset_for_malformed_chains() {
    let mut ram = vec![0u64; MEM / 8];
    let mem = &Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let (mut core, mut driver) = ruled(mem, MalformedChain::NeedsReset);
    driver
        .add(
            mem,
            &[],
            &[Segment {
                addr: 0x10,
                len: 16,
            }],
        )
        .unwrap();
    driver.publish_avail(mem).unwrap();
    let _ = core.notify(0);
    // Still returned to the driver, never dropped.
    assert_eq!(driver.pop_used(mem).unwrap().unwrap().len, 0);
    assert!(core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
    assert!(matches!(
        core.needs_reset_cause(),
        Some(NeedsResetCause::MalformedChain { queue: 0, .. })
    ));
}

// spec: status.device-status-field.2, status.device-status-field.3
#[test]
fn corrupt_ring_sets_needs_reset_with_a_config_interrupt() {
    // virtio 1.4 §"Device Status Field": the device SHOULD set
    // DEVICE_NEEDS_RESET on an error it cannot recover from, and if
    // DRIVER_OK is set it MUST send a configuration change notification.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, layout) = init(core, v1());
        core.set_status(DRIVER_OK);
        // The available ring names descriptor 200 in a queue of 8.
        mem.write(layout.driver_addr + 4, &200u16.to_le_bytes())
            .unwrap();
        mem.store_u16_release(layout.driver_addr + 2, 1).unwrap();
        let _ = core.notify(0);
        assert!(core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
        assert_eq!(core.interrupt_status(), INTERRUPT_CONFIG_CHANGE);
        assert!(!core.is_live());
        // Nothing more is consumed until reset; reset recovers.
        let _ = core.notify(0);
        assert_eq!(core.device().served, 0);
        let (mut driver2, _) = init(core, v1());
        core.set_status(DRIVER_OK);
        assert!(!core.status().contains(DeviceStatus::DEVICE_NEEDS_RESET));
        add_writable(&mut driver2, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 1);
        let _ = &mut driver;
    });
}

// spec: status.device-status-field.2, status.device-status-field.3
#[test]
fn a_bad_queue_configuration_at_driver_ok_needs_reset() {
    with_core(Echo::default(), |core, _mem| {
        init(core, v1());
        core.set_queue_area(1, RingArea::Descriptors, 0x8).unwrap();
        core.set_queue_ready(1, true).unwrap();
        core.set_status(DRIVER_OK);
        assert!(matches!(
            core.needs_reset_cause(),
            Some(NeedsResetCause::QueueConfig { queue: 1, .. })
        ));
        assert_eq!(core.interrupt_status(), INTERRUPT_CONFIG_CHANGE);
    });
}

#[test]
fn queue_setup_is_validated() {
    with_core(Echo::default(), |core, _mem| {
        core.set_status(1 | 2);
        // Before FEATURES_OK the ring format is unknown: only the maximum.
        assert_eq!(
            core.set_queue_size(0, 9),
            Err(QueueSetupError::SizeAboveMax { size: 9, max: 8 })
        );
        core.set_queue_size(0, 6).unwrap();
        core.set_driver_features(v1());
        core.set_status(1 | 2 | 8);
        // A split ring is negotiated: sizes must be powers of two.
        assert_eq!(
            core.set_queue_size(0, 6),
            Err(QueueSetupError::SizeNotPowerOfTwo(6))
        );
        assert_eq!(
            core.set_queue_size(2, 4),
            Err(QueueSetupError::NoSuchQueue(2))
        );
        assert_eq!(core.queue_max_size(2), 0);
        core.set_queue_size(0, 4).unwrap();
        core.set_queue_ready(0, true).unwrap();
        assert_eq!(
            core.set_queue_size(0, 8),
            Err(QueueSetupError::QueueEnabled(0))
        );
        assert_eq!(
            core.set_queue_area(0, RingArea::Device, 0),
            Err(QueueSetupError::QueueEnabled(0))
        );
        assert_eq!(core.queue_config(0).unwrap().size, 4);
        assert_eq!(
            core.reset_queue(0),
            Err(QueueSetupError::RingResetNotNegotiated)
        );
    });
}

// spec: vq-reset.reset.1, vq-reset.reset.2, vq-reset.re-enable.1
#[test]
fn per_queue_reset_forgets_ring_state_and_re_enable_uses_the_new_config() {
    // virtio 1.4 §"Virtqueue Reset": after a queue reset the device MUST NOT
    // execute requests from it, MUST reset its state to the default, and on
    // re-enable MUST observe the new queue configuration.
    let features = v1() | Features::RING_RESET;
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, features);
        core.set_status(DRIVER_OK);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 1);
        core.reset_queue(0).unwrap();
        assert!(!core.queue_ready(0));
        assert!(!core.queue_active(0));
        assert_eq!(core.queue_config(0).unwrap().desc_addr, 0);
        assert_eq!(core.device().queue_resets, vec![0]);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 1);
        // Re-enable at a new place: the device starts at index 0 there.
        let layout = SplitDriver::layout(RING1, QSIZE);
        let mut driver = SplitDriver::new(mem, layout, features).unwrap();
        add_writable(&mut driver, mem, DATA);
        configure(core, 0, layout);
        assert_eq!(core.device().served, 2);
        assert_eq!(driver.pop_used(mem).unwrap().unwrap().len, 2);
    });
}

#[test]
fn held_chains_complete_later_through_poll() {
    with_core(
        Echo {
            hold: true,
            ..Echo::default()
        },
        |core, mem| {
            let (mut driver, _) = init(core, v1());
            core.set_status(DRIVER_OK);
            add_writable(&mut driver, mem, DATA);
            let _ = core.notify(0);
            assert_eq!(driver.pop_used(mem).unwrap(), None);
            assert_eq!(core.interrupt_status(), 0);
            let _ = core.poll();
            assert_eq!(driver.pop_used(mem).unwrap().unwrap().len, 4);
            assert_eq!(core.interrupt_status(), INTERRUPT_USED_BUFFER);
        },
    );
}

// virtio 1.4 §"Used Buffer Notification Suppression": the notification is
// per virtqueue. The core says which queues are due one, for transports that
// notify per queue, and forgets them once taken.
// spec: split.available-buffer-notification-suppression.5
#[test]
fn used_notifications_are_reported_per_queue() {
    with_core(Echo::default(), |core, mem| {
        let (_, _) = init(core, v1());
        let layout1 = SplitDriver::layout(RING1, QSIZE);
        let mut driver1 = SplitDriver::new(mem, layout1, v1()).unwrap();
        configure(core, 1, layout1);
        core.set_status(DRIVER_OK);
        assert_eq!(core.take_used_queues(), 0);
        add_writable(&mut driver1, mem, DATA);
        let _ = core.notify(1);
        assert_eq!(core.interrupt_status(), INTERRUPT_USED_BUFFER);
        assert_eq!(core.take_used_queues(), 0b10);
        assert_eq!(core.take_used_queues(), 0, "taken once");
        let _ = core.notify(1);
        assert_eq!(
            core.take_used_queues(),
            0,
            "nothing new on a spurious notify"
        );
    });
}

#[test]
#[cfg(feature = "event-idx")]
fn event_idx_keeps_the_driver_notifying() {
    let features = v1() | Features::EVENT_IDX;
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, features);
        core.set_status(DRIVER_OK);
        driver.enable_interrupts(mem).unwrap();
        for round in 0..20u64 {
            let id = driver
                .add(
                    mem,
                    &[],
                    &[Segment {
                        addr: DATA,
                        len: 16,
                    }],
                )
                .unwrap();
            assert!(driver.publish_avail(mem).unwrap(), "round {round}");
            let _ = core.notify(0);
            assert_eq!(driver.pop_used(mem).unwrap().unwrap().id, id);
            driver.enable_interrupts(mem).unwrap();
            assert_eq!(core.interrupt_status(), INTERRUPT_USED_BUFFER);
            core.ack_interrupt(INTERRUPT_USED_BUFFER);
        }
    });
}

#[test]
fn notification_data_carries_the_queue_in_its_low_bits() {
    let features = v1() | Features::NOTIFICATION_DATA;
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, features);
        core.set_status(DRIVER_OK);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0x8001_0000);
        assert_eq!(core.device().served, 1);
    });
    // Without NOTIFICATION_DATA a value above 0xffff names no queue.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        core.set_status(DRIVER_OK);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0x1_0000);
        assert_eq!(core.device().served, 0);
    });
}

// spec: config.device-configuration-space.1
#[test]
fn config_space_and_generation() {
    // virtio 1.4 §"Device Configuration Space": the device MUST allow
    // reading the configuration space before FEATURES_OK.
    with_core(Echo::default(), |core, _mem| {
        core.write_config(2, &[7, 8]);
        let mut buf = [0xffu8; 4];
        core.read_config(1, &mut buf);
        assert_eq!(buf, [0, 7, 8, 0]);
        core.read_config(6, &mut buf);
        assert_eq!(buf, [0, 0, 0, 0]);
        let g = core.config_generation();
        core.config_changed();
        assert_ne!(core.config_generation(), g);
        // No config interrupt before DRIVER_OK.
        assert_eq!(core.interrupt_status(), 0);
    });
}

#[test]
fn a_device_that_gives_up_enters_needs_reset() {
    struct Quitter;
    impl VirtioDevice for Quitter {
        fn device_id(&self) -> DeviceId {
            DeviceId::Entropy
        }
        fn features(&self) -> Features {
            Features::empty()
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn max_queue_size(&self, _: u16) -> u16 {
            8
        }
        fn reset(&mut self) {}
        fn queue_notify<M: GuestMemory, const S: usize>(
            &mut self,
            _: u16,
            queues: &mut DeviceQueues<'_, M, S>,
        ) {
            queues.set_needs_reset();
        }
    }
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let mut core: DeviceCore<Quitter, _, 1> = DeviceCore::new(Quitter, &mem);
    core.set_status(1 | 2);
    core.set_driver_features(v1());
    core.set_status(1 | 2 | 8);
    let layout = SplitDriver::layout(RING0, 8);
    SplitDriver::new(core.memory(), layout, v1()).unwrap();
    core.set_queue_area(0, RingArea::Descriptors, layout.desc_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Driver, layout.driver_addr)
        .unwrap();
    core.set_queue_area(0, RingArea::Device, layout.device_addr)
        .unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(DRIVER_OK);
    assert_eq!(core.needs_reset_cause(), Some(NeedsResetCause::Device));
    assert_eq!(core.interrupt_status(), INTERRUPT_CONFIG_CHANGE);
}

#[test]
#[cfg(feature = "indirect")]
fn indirect_chains_are_served() {
    let features = v1() | Features::INDIRECT_DESC;
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, features);
        core.set_status(DRIVER_OK);
        driver
            .add_indirect(
                mem,
                DATA + 0x100,
                &[],
                &[
                    Segment { addr: DATA, len: 1 },
                    Segment {
                        addr: DATA + 8,
                        len: 1,
                    },
                ],
            )
            .unwrap();
        driver.publish_avail(mem).unwrap();
        let _ = core.notify(0);
        assert_eq!(driver.pop_used(mem).unwrap().unwrap().len, 2);
        let mut b = [0u8; 1];
        mem.read(DATA + 8, &mut b).unwrap();
        assert_eq!(&b, b"k");
        let _: VirtqDesc = VirtqDesc::default();
    });
}

#[test]
#[cfg(all(feature = "packed", feature = "event-idx"))]
fn a_packed_ring_of_any_size_is_built_from_the_negotiated_features() {
    // virtio 1.4 §"Packed Virtqueues": the queue size need not be a power
    // of two; the format is chosen by VIRTIO_F_RING_PACKED at FEATURES_OK.
    let features = v1() | Features::RING_PACKED | Features::EVENT_IDX;
    with_core(Echo::default(), |core, mem| {
        core.set_status(1 | 2);
        core.set_driver_features(features);
        core.set_status(1 | 2 | 8);
        let layout = PackedDriver::<8>::layout(RING0, 6);
        let mut driver = PackedDriver::<8>::new(mem, layout, features).unwrap();
        configure(core, 0, layout);
        core.set_status(DRIVER_OK);
        assert!(core.is_live());
        driver.enable_interrupts(mem).unwrap();
        for _ in 0..10 {
            let id = driver
                .add(
                    mem,
                    &[],
                    &[Segment {
                        addr: DATA,
                        len: 16,
                    }],
                )
                .unwrap();
            assert!(driver.publish_avail(mem).unwrap());
            let _ = core.notify(0);
            let used = driver.pop_used(mem).unwrap().unwrap();
            assert_eq!((used.id, used.len), (id, 2));
            driver.enable_interrupts(mem).unwrap();
        }
        assert_eq!(core.device().served, 10);
    });
}

/// Serves one writable buffer through `core` and checks it came back.
fn round_trip_split(core: &mut Core<'_>, driver: &mut SplitDriver, mem: &Region<'_>) {
    let id = add_writable(driver, mem, DATA);
    let _ = core.notify(0);
    let used = driver.pop_used(mem).unwrap().unwrap();
    assert_eq!((used.id, used.len), (id, 2));
}

#[test]
fn a_stopped_split_ring_resumes_where_it_stopped() {
    // vhost-user GET_VRING_BASE / SET_VRING_BASE: a ring stopped and
    // restarted without a device reset carries on from the same index.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, layout) = init(core, v1());
        core.set_status(DRIVER_OK);
        assert_eq!(core.queue_base(0), Some(0));
        for _ in 0..3 {
            round_trip_split(core, &mut driver, mem);
        }
        assert_eq!(core.queue_base(0), Some(3));
        core.set_queue_ready(0, false).unwrap();
        // Stopped: the position is kept, and the ring can be re-based.
        assert_eq!(core.queue_base(0), Some(3));
        core.set_queue_base(0, 3).unwrap();
        configure(core, 0, layout);
        assert!(core.queue_active(0));
        round_trip_split(core, &mut driver, mem);
        assert_eq!(core.queue_base(0), Some(4));
        // Not while enabled, not for a queue that does not exist.
        assert_eq!(
            core.set_queue_base(0, 0),
            Err(QueueSetupError::QueueEnabled(0))
        );
        assert_eq!(
            core.set_queue_base(9, 0),
            Err(QueueSetupError::NoSuchQueue(9))
        );
        assert_eq!(core.queue_base(9), None);
        // A device reset forgets the base.
        core.set_status(0);
        assert_eq!(core.queue_base(0), None);
    });
}

#[test]
#[cfg(feature = "packed")]
fn a_stopped_packed_ring_resumes_at_slot_and_wrap_counter() {
    let features = v1() | Features::RING_PACKED;
    with_core(Echo::default(), |core, mem| {
        core.set_status(1 | 2);
        core.set_driver_features(features);
        core.set_status(1 | 2 | 8);
        let layout = PackedDriver::<8>::layout(RING0, 4);
        let mut driver = PackedDriver::<8>::new(mem, layout, features).unwrap();
        configure(core, 0, layout);
        core.set_status(DRIVER_OK);
        let seg = [Segment {
            addr: DATA,
            len: 16,
        }];
        let serve = |core: &mut Core<'_>, driver: &mut PackedDriver<8>| {
            let id = driver.add(mem, &[], &seg).unwrap();
            driver.publish_avail(mem).unwrap();
            let _ = core.notify(0);
            let used = driver.pop_used(mem).unwrap().unwrap();
            assert_eq!((used.id, used.len), (id, 2));
        };
        // Five buffers in a ring of four: slot 1, wrap counter flipped to 0.
        for _ in 0..5 {
            serve(core, &mut driver);
        }
        assert_eq!(core.queue_base(0), Some(1));
        core.set_queue_ready(0, false).unwrap();
        core.set_queue_base(0, 1).unwrap();
        configure(core, 0, layout);
        for _ in 0..4 {
            serve(core, &mut driver);
        }
        // Slot 1 again, wrap counter back to 1.
        assert_eq!(core.queue_base(0), Some(0x8001));
    });
}

/// `avail_event` of a split ring at `layout` (after the used ring).
#[cfg(feature = "event-idx")]
fn avail_event(mem: &Region<'_>, layout: QueueConfig) -> u16 {
    mem.load_u16_acquire(layout.device_addr + 4 + 8 * u64::from(layout.size))
        .unwrap()
}

// virtio 1.4 §"Available Buffer Notification Suppression": with EVENT_IDX
// the driver notifies only when its index passes avail_event. Every queue
// the device took buffers from in a call is re-armed — not only the one
// notified, and after poll() too — or a driver adding to the other queue
// would never notify again.
// spec: split.available-buffer-notification-suppression.4
#[test]
#[cfg(feature = "event-idx")]
fn every_queue_the_device_popped_from_is_re_armed() {
    let features = v1() | Features::EVENT_IDX;
    with_core(
        Echo {
            cross: true,
            ..Echo::default()
        },
        |core, mem| {
            let (mut driver0, _) = init(core, features);
            let layout1 = SplitDriver::layout(RING1, QSIZE);
            let mut driver1 = SplitDriver::new(mem, layout1, features).unwrap();
            configure(core, 1, layout1);
            core.set_status(DRIVER_OK);
            for i in 0..3 {
                driver1
                    .add(
                        mem,
                        &[],
                        &[Segment {
                            addr: DATA + 0x100 * i,
                            len: 16,
                        }],
                    )
                    .unwrap();
            }
            // Published; the notification it asks for is not delivered.
            let _ = driver1.publish_avail(mem).unwrap();
            add_writable(&mut driver0, mem, DATA);
            assert_eq!(core.notify(0), Service::Done);
            assert_eq!(core.device().served, 4);
            assert_eq!(avail_event(mem, layout1), 3, "queue 1 re-armed");
            // So the driver's next buffer on queue 1 asks for a notification.
            driver1
                .add(
                    mem,
                    &[],
                    &[Segment {
                        addr: DATA + 0x400,
                        len: 16,
                    }],
                )
                .unwrap();
            assert!(driver1.publish_avail(mem).unwrap());
            // Taken in poll(), re-armed there too.
            assert_eq!(core.poll(), Service::Done);
            assert_eq!(core.device().served, 5);
            assert_eq!(avail_event(mem, layout1), 4, "queue 1 re-armed after poll");
        },
    );
}

// virtio 1.4 §"MMIO Device Register Layout": the device MUST NOT access a
// queue whose QueueReady is zero, so chains it held when the driver
// disabled the queue cannot be returned there. Enabling it again without a
// reset (or a new base, vhost-user's SET_VRING_BASE) would resume past
// them and lose them silently: the device enters DEVICE_NEEDS_RESET.
// spec: status.device-status-field.2
#[test]
fn re_enabling_a_queue_that_abandoned_chains_needs_reset() {
    for rebase in [false, true] {
        with_core(
            Echo {
                hold: true,
                ..Echo::default()
            },
            |core, mem| {
                let (mut driver, _) = init(core, v1());
                core.set_status(DRIVER_OK);
                add_writable(&mut driver, mem, DATA);
                let _ = core.notify(0);
                assert_eq!(core.device().held.len(), 1);
                core.set_queue_ready(0, false).unwrap();
                assert!(core.device().held.is_empty(), "the device forgot it");
                if rebase {
                    core.set_queue_base(0, 1).unwrap();
                }
                core.set_queue_ready(0, true).unwrap();
                assert_eq!(core.is_live(), rebase);
                if !rebase {
                    assert_eq!(
                        core.needs_reset_cause(),
                        Some(NeedsResetCause::AbandonedChains { queue: 0, count: 1 })
                    );
                }
            },
        );
    }
    // With nothing in flight, disable and enable simply resume.
    with_core(Echo::default(), |core, mem| {
        let (mut driver, _) = init(core, v1());
        core.set_status(DRIVER_OK);
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        core.set_queue_ready(0, false).unwrap();
        core.set_queue_ready(0, true).unwrap();
        assert!(core.is_live());
        add_writable(&mut driver, mem, DATA);
        let _ = core.notify(0);
        assert_eq!(core.device().served, 2);
    });
}

/// A live core over `mem` with a [`Ruled`] device, queue 0 set up at RING0.
fn ruled<'a>(
    mem: &'a Region<'a>,
    rule: MalformedChain,
) -> (DeviceCore<Ruled, &'a Region<'a>, 1>, SplitDriver) {
    let mut core = DeviceCore::new(Ruled(Echo::default(), rule), mem);
    core.set_status(1 | 2);
    core.set_driver_features(v1());
    core.set_status(1 | 2 | 8);
    let layout = SplitDriver::layout(RING0, QSIZE);
    let driver = SplitDriver::new(mem, layout, v1()).unwrap();
    core.set_queue(0, layout).unwrap();
    core.set_queue_ready(0, true).unwrap();
    core.set_status(DRIVER_OK);
    (core, driver)
}

// A device whose responses start with their status (GPIO, sound control)
// gets its error status at the start of a malformed chain's first writable
// descriptor, reported as the used length, so the driver reads an error.
#[test]
fn a_status_at_start_is_written_into_a_malformed_chain() {
    let mut ram = vec![0u64; MEM / 8];
    let mem = &Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let (mut core, mut driver) = ruled(mem, MalformedChain::StatusAtStart(&[0xee, 0x01]));
    // Readable after writable: malformed.
    let w = Segment { addr: DATA, len: 2 };
    let r = Segment {
        addr: DATA + 0x100,
        len: 4,
    };
    let id = driver.add_raw(mem, &[(w, true), (r, false)]).unwrap();
    driver.publish_avail(mem).unwrap();
    let _ = core.notify(0);
    let used = driver.pop_used(mem).unwrap().unwrap();
    assert_eq!((used.id, used.len), (id, 2));
    let mut got = [0u8; 2];
    mem.read(DATA, &mut got).unwrap();
    assert_eq!(got, [0xee, 0x01]);
    assert!(core.is_live());
    assert_eq!(core.device().0.served, 0, "the device never saw it");
}

/// A journal that records every call and resubmits from a list.
#[cfg(feature = "journal")]
#[derive(Default)]
struct Recorder {
    events: Vec<(&'static str, u16, u16)>,
    resubmit: Vec<u16>,
}

#[cfg(feature = "journal")]
impl Journal for Recorder {
    fn resubmit(&mut self, queue: u16) -> Option<u16> {
        (queue == 0 && !self.resubmit.is_empty()).then(|| self.resubmit.remove(0))
    }
    fn taken(&mut self, queue: u16, head: u16) {
        self.events.push(("taken", queue, head));
    }
    fn returned(&mut self, queue: u16, head: u16) {
        self.events.push(("returned", queue, head));
    }
    fn published(&mut self, queue: u16, used: u16) {
        self.events.push(("published", queue, used));
    }
}

#[cfg(feature = "journal")]
type Journaled<'a> = DeviceCore<Echo, &'a Region<'a>, 4, DEFAULT_QUEUE_CAPACITY, Recorder>;

/// Negotiates `VERSION_1`, sets queue 0 at RING0 (resuming at `base` if
/// given) and `DRIVER_OK`.
#[cfg(feature = "journal")]
fn start_journaled(core: &mut Journaled<'_>, base: Option<u16>) {
    for status in [1, 1 | 2] {
        core.set_status(status);
    }
    assert!(core.set_driver_features(v1()));
    core.set_status(1 | 2 | 8);
    core.set_queue(0, SplitDriver::layout(RING0, QSIZE))
        .unwrap();
    if let Some(base) = base {
        core.set_queue_base(0, base).unwrap();
    }
    core.set_queue_ready(0, true).unwrap();
    core.set_status(DRIVER_OK);
}

#[test]
#[cfg(feature = "journal")]
fn the_journal_sees_each_chain_taken_returned_and_published() {
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let mut core: Journaled<'_> =
        DeviceCore::with_journal(Echo::default(), &mem, Recorder::default());
    start_journaled(&mut core, None);
    let layout = SplitDriver::layout(RING0, QSIZE);
    let mut driver = SplitDriver::new(&mem, layout, v1()).unwrap();
    let a = add_writable(&mut driver, &mem, DATA);
    // A malformed chain (its buffer outside guest memory) is taken and
    // returned by the core itself: the record sees it too.
    let bad = driver
        .add(
            &mem,
            &[],
            &[Segment {
                addr: 0x10,
                len: 16,
            }],
        )
        .unwrap();
    driver.publish_avail(&mem).unwrap();
    let _ = core.notify(0);
    assert_eq!(
        core.journal().events,
        vec![
            ("taken", 0, a),
            ("returned", 0, a),
            ("taken", 0, bad),
            ("returned", 0, bad),
            ("published", 0, 2),
        ]
    );
}

#[test]
#[cfg(feature = "journal")]
fn a_restarted_core_resubmits_the_journaled_chains_before_new_ones() {
    let mut ram = vec![0u64; MEM / 8];
    let mem = Region::new(BASE, ram.as_mut_bytes()).unwrap();
    let layout = SplitDriver::layout(RING0, QSIZE);
    let mut driver = SplitDriver::new(&mem, layout, v1()).unwrap();
    // The first backend takes two chains and holds them; then it dies
    // (dropped without returning them).
    let held = {
        let device = Echo {
            hold: true,
            ..Echo::default()
        };
        let mut core: Journaled<'_> = DeviceCore::with_journal(device, &mem, Recorder::default());
        start_journaled(&mut core, None);
        let a = add_writable(&mut driver, &mem, DATA);
        let b = add_writable(&mut driver, &mem, DATA + 0x100);
        let _ = core.notify(0);
        assert_eq!(core.device().held.len(), 2);
        assert_eq!(
            core.journal().events,
            vec![("taken", 0, a), ("taken", 0, b)]
        );
        vec![a, b]
    };
    // The driver queues one more meanwhile.
    let c = add_writable(&mut driver, &mem, DATA + 0x200);
    // The restarted backend resumes past what was in flight (used 0 +
    // 2 in flight) and takes the two held chains again first.
    let journal = Recorder {
        resubmit: held.clone(),
        ..Recorder::default()
    };
    let mut core: Journaled<'_> = DeviceCore::with_journal(Echo::default(), &mem, journal);
    start_journaled(&mut core, Some(2));
    let _ = core.notify(0);
    let mut used = Vec::new();
    while let Some(u) = driver.pop_used(&mem).unwrap() {
        used.push(u.id);
    }
    assert_eq!(used, vec![held[0], held[1], c]);
    assert_eq!(core.device().served, 3);
    assert!(core.needs_reset_cause().is_none());
}
