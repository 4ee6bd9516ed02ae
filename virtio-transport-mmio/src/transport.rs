//! [`MmioTransport`]: register accesses in, [`DeviceCore`] calls out.

use virtio_core::device::{DeviceCore, QueueSetupError, Service, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::RingArea;
use virtio_core::spec::Features;

use crate::regs::*;
use crate::{InterruptLine, MmioError, ShmRegion, Width};

/// Most shared memory regions one transport describes.
pub const MAX_SHM_REGIONS: usize = 8;

/// A virtio-mmio version 2 device: the register block over a
/// [`DeviceCore`] with up to `Q` queues, driving one interrupt line.
///
/// A hypervisor's trap handler calls [`Self::read`] / [`Self::write`] with
/// the offset into the device's window and the access width. The interrupt
/// line is asserted while any `InterruptStatus` bit is set and is updated
/// after every write and every [`Self::poll`].
///
/// # Bounded work, and what the VMM does about it
///
/// A write that serves queues (`QueueNotify`, `Status` with `DRIVER_OK`,
/// `QueueReady`) takes at most the core's budget of chains
/// ([`DeviceCore::set_budget`]) and returns [`Service::WorkLeft`] when it
/// stopped with buffers still available. The driver will not notify again
/// for those, so the VMM must call [`Self::poll`] (from its event loop,
/// after returning to the vCPU or serving other devices) until it returns
/// [`Service::Done`]. A trap handler therefore never runs longer than one
/// budget, however fast a driver on another vCPU refills the ring.
#[derive(Debug)]
pub struct MmioTransport<D, M, I, const Q: usize, const S: usize = 1024> {
    core: DeviceCore<D, M, Q, S>,
    irq: I,
    line: bool,
    vendor_id: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    shm_sel: u32,
    shm: heapless::Vec<ShmRegion, MAX_SHM_REGIONS>,
    last_error: Option<MmioError>,
    errors: u32,
}

impl<D: VirtioDevice, M: GuestMemory, I: InterruptLine, const Q: usize, const S: usize>
    MmioTransport<D, M, I, Q, S>
{
    /// The register block of `core`, raising `irq`. The vendor ID is 0 until
    /// [`Self::with_vendor_id`].
    pub fn new(core: DeviceCore<D, M, Q, S>, irq: I) -> Self {
        Self {
            core,
            irq,
            line: false,
            vendor_id: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            shm_sel: 0,
            shm: heapless::Vec::new(),
            last_error: None,
            errors: 0,
        }
    }

    /// Sets `VendorID`.
    #[must_use]
    pub fn with_vendor_id(mut self, vendor_id: u32) -> Self {
        self.vendor_id = vendor_id;
        self
    }

    /// Describes a shared memory region in the `SHM*` registers.
    ///
    /// # Errors
    /// Gives the region back when [`MAX_SHM_REGIONS`] are already described.
    pub fn add_shm_region(&mut self, region: ShmRegion) -> Result<(), ShmRegion> {
        self.shm.push(region)
    }

    /// The device core.
    pub fn core(&self) -> &DeviceCore<D, M, Q, S> {
        &self.core
    }

    /// The device core, e.g. to reach the device model; call
    /// [`Self::update_interrupt`] after changing what it signals.
    pub fn core_mut(&mut self) -> &mut DeviceCore<D, M, Q, S> {
        &mut self.core
    }

    /// The interrupt line.
    pub fn irq(&self) -> &I {
        &self.irq
    }

    /// The last invalid access, if any.
    pub fn last_error(&self) -> Option<MmioError> {
        self.last_error
    }

    /// Invalid accesses so far.
    pub fn error_count(&self) -> u32 {
        self.errors
    }

    /// Gives the device a turn outside a driver notification (e.g. console
    /// input arrived) and continues work left by an earlier call, then
    /// updates the interrupt line. Call it again while it returns
    /// [`Service::WorkLeft`].
    pub fn poll(&mut self) -> Service {
        let service = self.core.poll();
        self.update_interrupt();
        service
    }

    /// Drives the interrupt line from `InterruptStatus`: asserted while any
    /// bit is set (virtio 1.4 §"MMIO Device Register Layout").
    pub fn update_interrupt(&mut self) {
        let level = self.core.interrupt_status() != 0;
        if level != self.line {
            self.line = level;
            self.irq.set_level(level);
        }
    }

    /// A register read as the trap handler sees it: an invalid access
    /// reads 0 and is recorded ([`Self::last_error`]).
    pub fn read(&mut self, offset: u32, width: Width) -> u32 {
        match self.try_read(offset, width) {
            Ok(v) => v,
            Err(e) => {
                self.record(e);
                0
            }
        }
    }

    /// A register write as the trap handler sees it: an invalid access
    /// changes nothing and is recorded ([`Self::last_error`]). On
    /// [`Service::WorkLeft`] the VMM calls [`Self::poll`] until it returns
    /// [`Service::Done`] (see the type's docs).
    pub fn write(&mut self, offset: u32, width: Width, value: u32) -> Service {
        if let Err(e) = self.try_write(offset, width, value) {
            self.record(e);
        }
        self.service()
    }

    /// Whether some queue has work left that [`Self::poll`] must serve.
    pub fn service(&self) -> Service {
        if self.core.work_left() {
            Service::WorkLeft
        } else {
            Service::Done
        }
    }

    fn record(&mut self, e: MmioError) {
        self.last_error = Some(e);
        self.errors = self.errors.saturating_add(1);
    }

    fn queue_sel16(&self) -> Option<u16> {
        u16::try_from(self.queue_sel).ok()
    }

    fn shm_region(&self) -> Option<&ShmRegion> {
        self.shm.iter().find(|r| u32::from(r.id) == self.shm_sel)
    }

    /// Checks a control register access: 32 bits wide and aligned.
    fn check_control(offset: u32, width: Width) -> Result<(), MmioError> {
        if width != Width::Word {
            return Err(MmioError::BadWidth { offset, width });
        }
        if !offset.is_multiple_of(4) {
            return Err(MmioError::Unaligned { offset, width });
        }
        Ok(())
    }

    /// The configuration offset of an access at `offset` (≥ 0x100), checked
    /// for alignment and range.
    fn config_offset(&self, offset: u32, width: Width) -> Result<u32, MmioError> {
        if !offset.is_multiple_of(width.bytes()) {
            return Err(MmioError::Unaligned { offset, width });
        }
        let rel = offset.wrapping_sub(CONFIG);
        match rel.checked_add(width.bytes()) {
            Some(end) if end <= self.core.config_len() => Ok(rel),
            _ => Err(MmioError::ConfigOutOfRange { offset, width }),
        }
    }

    /// A register read, or why it is invalid.
    ///
    /// # Errors
    /// [`MmioError`] for a wrong width or alignment, an unknown offset, a
    /// write-only register, or a configuration access out of range.
    pub fn try_read(&mut self, offset: u32, width: Width) -> Result<u32, MmioError> {
        if offset >= CONFIG {
            let rel = self.config_offset(offset, width)?;
            let mut bytes = [0u8; 4];
            let n = width.bytes() as usize;
            if let Some(buf) = bytes.get_mut(..n) {
                self.core.read_config(rel, buf);
            }
            return Ok(u32::from_le_bytes(bytes));
        }
        Self::check_control(offset, width)?;
        let features = self.core.device_features().bits();
        let queue = self.queue_sel16();
        Ok(match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => VERSION_2,
            DEVICE_ID => u32::from(self.core.device_id()),
            VENDOR_ID => self.vendor_id,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            QUEUE_SIZE_MAX => queue.map_or(0, |q| u32::from(self.core.queue_max_size(q))),
            QUEUE_READY => queue.is_some_and(|q| self.core.queue_ready(q)).into(),
            INTERRUPT_STATUS => self.core.interrupt_status(),
            STATUS => u32::from(self.core.status().bits()),
            SHM_LEN_LOW => self.shm_region().map_or(u32::MAX, |r| r.len as u32),
            SHM_LEN_HIGH => self.shm_region().map_or(u32::MAX, |r| (r.len >> 32) as u32),
            SHM_BASE_LOW => self.shm_region().map_or(u32::MAX, |r| r.base as u32),
            SHM_BASE_HIGH => self
                .shm_region()
                .map_or(u32::MAX, |r| (r.base >> 32) as u32),
            // The reset completes within the write, so it always reads 0
            // (§"MMIO Device Register Layout": 0 once the reset is done,
            // on device reset and after the queue is enabled).
            QUEUE_RESET => 0,
            CONFIG_GENERATION => self.core.config_generation(),
            DEVICE_FEATURES_SEL | DRIVER_FEATURES | DRIVER_FEATURES_SEL | QUEUE_SEL
            | QUEUE_SIZE | QUEUE_NOTIFY | INTERRUPT_ACK | QUEUE_DESC_LOW | QUEUE_DESC_HIGH
            | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH
            | SHM_SEL => return Err(MmioError::WriteOnly(offset)),
            _ => return Err(MmioError::UnknownOffset(offset)),
        })
    }

    /// A register write, or why it is invalid (then nothing changed).
    ///
    /// # Errors
    /// [`MmioError`] for a wrong width or alignment, an unknown offset, a
    /// read-only register, a value the register does not take, a
    /// configuration access out of range, or a queue write the core
    /// refused. Whether work is left is [`Self::service`].
    pub fn try_write(&mut self, offset: u32, width: Width, value: u32) -> Result<(), MmioError> {
        let result = self.write_inner(offset, width, value);
        self.update_interrupt();
        result
    }

    fn write_inner(&mut self, offset: u32, width: Width, value: u32) -> Result<(), MmioError> {
        if offset >= CONFIG {
            let rel = self.config_offset(offset, width)?;
            let bytes = value.to_le_bytes();
            let n = width.bytes() as usize;
            if let Some(data) = bytes.get(..n) {
                self.core.write_config(rel, data);
            }
            return Ok(());
        }
        Self::check_control(offset, width)?;
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES => self.write_driver_features(value)?,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_SIZE => {
                let q = self.queue_for_write()?;
                Self::queue_result(self.queue_sel, self.core.set_queue_size(q, value))?;
            }
            QUEUE_READY => {
                let ready = match value {
                    0 => false,
                    1 => true,
                    _ => return Err(MmioError::InvalidValue { offset, value }),
                };
                let q = self.queue_for_write()?;
                Self::queue_result(self.queue_sel, self.core.set_queue_ready(q, ready))?;
            }
            // Work left is reported by `write` (`Self::service`).
            QUEUE_NOTIFY => {
                let _ = self.core.notify(value);
            }
            INTERRUPT_ACK => self.core.ack_interrupt(value),
            STATUS => {
                let status =
                    u8::try_from(value).map_err(|_| MmioError::InvalidValue { offset, value })?;
                self.core.set_status(status);
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH => {
                self.write_area(RingArea::Descriptors, offset == QUEUE_DESC_HIGH, value)?;
            }
            QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH => {
                self.write_area(RingArea::Driver, offset == QUEUE_DRIVER_HIGH, value)?;
            }
            QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                self.write_area(RingArea::Device, offset == QUEUE_DEVICE_HIGH, value)?;
            }
            SHM_SEL => self.shm_sel = value,
            QUEUE_RESET => match value {
                0 => {}
                1 => {
                    let q = self.queue_for_write()?;
                    Self::queue_result(self.queue_sel, self.core.reset_queue(q))?;
                }
                _ => return Err(MmioError::InvalidValue { offset, value }),
            },
            MAGIC_VALUE | VERSION | DEVICE_ID | VENDOR_ID | DEVICE_FEATURES | QUEUE_SIZE_MAX
            | INTERRUPT_STATUS | SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH
            | CONFIG_GENERATION => return Err(MmioError::ReadOnly(offset)),
            _ => return Err(MmioError::UnknownOffset(offset)),
        }
        Ok(())
    }

    fn queue_for_write(&self) -> Result<u16, MmioError> {
        self.queue_sel16().ok_or(MmioError::Queue {
            sel: self.queue_sel,
            error: QueueSetupError::NoSuchQueue(u16::MAX),
        })
    }

    fn queue_result(sel: u32, r: Result<(), QueueSetupError>) -> Result<(), MmioError> {
        r.map_err(|error| MmioError::Queue { sel, error })
    }

    fn write_driver_features(&mut self, value: u32) -> Result<(), MmioError> {
        let current = self.core.driver_features().bits();
        let new = match self.driver_features_sel {
            0 => (current & !0xffff_ffff) | u64::from(value),
            1 => (current & 0xffff_ffff) | (u64::from(value) << 32),
            sel => {
                // No feature bit above 63 is offered; accepting none of them
                // is the only valid write.
                if value == 0 {
                    return Ok(());
                }
                return Err(MmioError::FeatureWordOutOfRange { sel, value });
            }
        };
        // Ignored by the core once FEATURES_OK is set (not an access error).
        self.core
            .set_driver_features(Features::from_bits_retain(new));
        Ok(())
    }

    fn write_area(&mut self, area: RingArea, high: bool, value: u32) -> Result<(), MmioError> {
        let q = self.queue_for_write()?;
        let config = self.core.queue_config(q).unwrap_or_default();
        let current = match area {
            RingArea::Descriptors => config.desc_addr,
            RingArea::Driver => config.driver_addr,
            RingArea::Device => config.device_addr,
        };
        let addr = if high {
            (current & 0xffff_ffff) | (u64::from(value) << 32)
        } else {
            (current & !0xffff_ffff) | u64::from(value)
        };
        Self::queue_result(self.queue_sel, self.core.set_queue_area(q, area, addr))
    }
}
