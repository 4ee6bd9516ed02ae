//! Test support for running the published `virtio-drivers` crate against
//! our devices: its [`Hal`] over host memory and its [`Transport`] as an
//! adapter that performs, on our [`MmioTransport`], the register accesses
//! its own `MmioTransport` performs on a real virtio-mmio window.
//!
//! Guest physical addresses are host addresses (identity mapping). All DMA
//! memory comes from one page-aligned arena that the device side serves as
//! a single [`Region`]; buffers the driver shares from elsewhere (its stack
//! or heap) are bounced through the arena, as an IOMMU-less platform with
//! restricted DMA would do.
//!
//! The driver and the device run on the same thread: a `QueueNotify` write
//! serves the queue before it returns, so the driver's busy-wait for a used
//! buffer ends at once.
#![allow(
    dead_code,
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::missing_safety_doc
)]

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};

use virtio_core::device::{DeviceCore, VirtioDevice};
use virtio_core::memory::Region;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use virtio_transport_mmio::regs::*;
use virtio_transport_mmio::{InterruptLine, MmioTransport, Width};
use zerocopy::{FromBytes, Immutable, IntoBytes};

const ARENA_SIZE: usize = 64 << 20;

struct Arena {
    base: usize,
    next: Mutex<usize>,
    region: Region<'static>,
}

fn arena() -> &'static Arena {
    static ARENA: OnceLock<Arena> = OnceLock::new();
    ARENA.get_or_init(|| {
        let layout = std::alloc::Layout::from_size_align(ARENA_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: a non-zero-sized layout; the memory is never freed.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!base.is_null());
        // SAFETY: `base .. base + ARENA_SIZE` is valid for the whole
        // program and is only accessed through this region (the device) and
        // raw pointers (the driver, via the Hal).
        let region = unsafe { Region::from_raw_parts(base as u64, base, ARENA_SIZE) }.unwrap();
        Arena {
            base: base as usize,
            next: Mutex::new(0),
            region,
        }
    })
}

/// The device's view of guest memory: the whole arena, identity-mapped.
pub fn guest_memory() -> &'static Region<'static> {
    &arena().region
}

/// Takes `len` bytes (zeroed, never reused) aligned to `align`.
fn alloc(len: usize, align: usize) -> usize {
    let a = arena();
    let mut next = a.next.lock().unwrap();
    let start = (a.base + *next).next_multiple_of(align);
    let end = start + len.max(1);
    assert!(end <= a.base + ARENA_SIZE, "test arena exhausted");
    *next = end - a.base;
    start
}

fn in_arena(addr: usize, len: usize) -> bool {
    let a = arena();
    addr >= a.base && addr + len <= a.base + ARENA_SIZE
}

/// `virtio-drivers`' HAL over the arena.
pub struct ArenaHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned arena memory that is
// never handed out twice; `share` returns arena addresses the device may
// access; `unshare` copies bounced buffers back.
unsafe impl Hal for ArenaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let addr = alloc(pages * PAGE_SIZE, PAGE_SIZE);
        (addr as PhysAddr, NonNull::new(addr as *mut u8).unwrap())
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).unwrap()
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let ptr = buffer.cast::<u8>().as_ptr();
        let len = buffer.len();
        if in_arena(ptr as usize, len) {
            return ptr as PhysAddr;
        }
        let bounce = alloc(len, 16) as *mut u8;
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: `ptr` is valid for `len` bytes (the caller's
            // contract); `bounce` is fresh arena memory of `len` bytes.
            unsafe { std::ptr::copy_nonoverlapping(ptr, bounce, len) };
        }
        bounce as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let ptr = buffer.cast::<u8>().as_ptr();
        if paddr as usize == ptr as usize {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is the bounce buffer `share` made for this
            // buffer, `len` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(paddr as usize as *const u8, ptr, buffer.len())
            };
        }
    }
}

/// An interrupt line that counts its edges.
#[derive(Debug, Default)]
pub struct IrqLog {
    /// Current level.
    pub level: bool,
    /// Times it was raised.
    pub raised: u32,
}

impl InterruptLine for IrqLog {
    fn set_level(&mut self, asserted: bool) {
        self.level = asserted;
        if asserted {
            self.raised += 1;
        }
    }
}

/// Our MMIO device as the tests hold it.
pub type Mmio<D> = MmioTransport<D, &'static Region<'static>, IrqLog, 8>;
/// Shared between the driver's transport and the test.
pub type Shared<D> = Rc<RefCell<Mmio<D>>>;

/// Puts `device` behind our MMIO transport over the arena.
pub fn attach<D: VirtioDevice>(device: D) -> Shared<D> {
    let core = DeviceCore::new(device, guest_memory());
    Rc::new(RefCell::new(MmioTransport::new(core, IrqLog::default())))
}

/// `virtio-drivers`' `Transport` as register accesses on our transport.
pub struct MmioAdapter<D: VirtioDevice> {
    mmio: Shared<D>,
    device_type: DeviceType,
}

impl<D: VirtioDevice> MmioAdapter<D> {
    /// Probes the window the way `virtio-drivers`' `MmioTransport::new`
    /// does (magic, device ID, version).
    pub fn new(mmio: Shared<D>) -> Self {
        let (magic, id, version) = {
            let mut m = mmio.borrow_mut();
            (
                m.read(MAGIC_VALUE, Width::Word),
                m.read(DEVICE_ID, Width::Word),
                m.read(VERSION, Width::Word),
            )
        };
        assert_eq!(magic, MAGIC);
        assert_eq!(version, 2);
        let device_type = DeviceType::try_from(id).unwrap();
        Self { mmio, device_type }
    }

    fn r(&self, offset: u32) -> u32 {
        self.mmio.borrow_mut().read(offset, Width::Word)
    }

    /// A register write, then what a VMM does with work left: poll until
    /// the transport reports none.
    fn w(&self, offset: u32, value: u32) {
        let mut m = self.mmio.borrow_mut();
        let mut service = m.write(offset, Width::Word, value);
        while service.work_left() {
            service = m.poll();
        }
    }
}

impl<D: VirtioDevice> Transport for MmioAdapter<D> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.w(DEVICE_FEATURES_SEL, 0);
        let low = self.r(DEVICE_FEATURES);
        self.w(DEVICE_FEATURES_SEL, 1);
        let high = self.r(DEVICE_FEATURES);
        u64::from(low) | (u64::from(high) << 32)
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.w(DRIVER_FEATURES_SEL, 0);
        self.w(DRIVER_FEATURES, driver_features as u32);
        self.w(DRIVER_FEATURES_SEL, 1);
        self.w(DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w(QUEUE_SEL, queue.into());
        self.r(QUEUE_SIZE_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.w(QUEUE_NOTIFY, queue.into());
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.r(STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.w(STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // A version 2 device has no GuestPageSize register.
    }

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.w(QUEUE_SEL, queue.into());
        self.w(QUEUE_SIZE, size);
        self.w(QUEUE_DESC_LOW, descriptors as u32);
        self.w(QUEUE_DESC_HIGH, (descriptors >> 32) as u32);
        self.w(QUEUE_DRIVER_LOW, driver_area as u32);
        self.w(QUEUE_DRIVER_HIGH, (driver_area >> 32) as u32);
        self.w(QUEUE_DEVICE_LOW, device_area as u32);
        self.w(QUEUE_DEVICE_HIGH, (device_area >> 32) as u32);
        self.w(QUEUE_READY, 1);
    }

    fn queue_unset(&mut self, queue: u16) {
        self.w(QUEUE_SEL, queue.into());
        self.w(QUEUE_READY, 0);
        let mut spins = 0;
        while self.r(QUEUE_READY) != 0 {
            spins += 1;
            assert!(spins < 1000, "QueueReady does not read back 0");
        }
        for offset in [
            QUEUE_SIZE,
            QUEUE_DESC_LOW,
            QUEUE_DESC_HIGH,
            QUEUE_DRIVER_LOW,
            QUEUE_DRIVER_HIGH,
            QUEUE_DEVICE_LOW,
            QUEUE_DEVICE_HIGH,
        ] {
            self.w(offset, 0);
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.w(QUEUE_SEL, queue.into());
        self.r(QUEUE_READY) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.r(INTERRUPT_STATUS);
        if status != 0 {
            self.w(INTERRUPT_ACK, status);
        }
        InterruptStatus::from_bits_truncate(status)
    }

    fn read_config_generation(&self) -> u32 {
        self.r(CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        assert!(align_of::<T>() <= 4 && offset.is_multiple_of(align_of::<T>()));
        let mut value = T::new_zeroed();
        let width = access_width(size_of::<T>());
        let mut m = self.mmio.borrow_mut();
        for (i, chunk) in value
            .as_mut_bytes()
            .chunks_mut(width.bytes() as usize)
            .enumerate()
        {
            let at = CONFIG + (offset + i * width.bytes() as usize) as u32;
            let v = m.read(at, width);
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        assert!(align_of::<T>() <= 4 && offset.is_multiple_of(align_of::<T>()));
        let width = access_width(size_of::<T>());
        let mut m = self.mmio.borrow_mut();
        for (i, chunk) in value.as_bytes().chunks(width.bytes() as usize).enumerate() {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            let at = CONFIG + (offset + i * width.bytes() as usize) as u32;
            // A config write serves no queue.
            let _ = m.write(at, width, u32::from_le_bytes(word));
        }
        Ok(())
    }
}

/// The width a volatile access of a `size`-byte value performs (larger
/// values are read as 32-bit words).
fn access_width(size: usize) -> Width {
    Width::from_bytes(size).unwrap_or(Width::Word)
}

impl<D: VirtioDevice> Drop for MmioAdapter<D> {
    fn drop(&mut self) {
        // As virtio-drivers' MmioTransport: reset the device when dropped.
        self.w(STATUS, 0);
    }
}

/// A console backend: input the test feeds, output the device wrote.
#[derive(Default, Debug)]
pub struct Pipe {
    /// Bytes waiting to be read by the device.
    pub input: std::collections::VecDeque<u8>,
    /// Bytes the device wrote.
    pub output: Vec<u8>,
}

impl embedded_io::ErrorType for Pipe {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.input.len());
        for b in &mut buf[..n] {
            *b = self.input.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for Pipe {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.input.is_empty())
    }
}

impl embedded_io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
