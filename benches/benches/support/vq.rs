//! The same device-side work on rust-vmm's `virtio-queue` over `vm-memory`,
//! and an adapter so our driver side can lay out its rings there.
//! Included by the criterion bench and the instruction-count probe.

use std::sync::atomic::Ordering;

use virtio_bench::{QUEUE_SIZE, memory_len};
use virtio_core::memory::MemoryError;
use virtio_core::queue::QueueConfig;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, GuestMemoryMmap, Permissions};

pub type VmMemory = GuestMemoryMmap<()>;

pub fn vm_memory() -> VmMemory {
    vm_memory_for(QUEUE_SIZE)
}

/// Guest memory for a ring of `size` in the benches' layout.
pub fn vm_memory_for(size: u16) -> VmMemory {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), memory_len(size))]).unwrap()
}

/// Our `GuestMemory` over a `vm-memory` guest, for the driver side only.
pub struct VmMem<'a>(pub &'a VmMemory);

impl virtio_core::memory::GuestMemory for VmMem<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfBounds {
                addr,
                len: buf.len() as u64,
            })
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.0
            .write_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::OutOfBounds {
                addr,
                len: buf.len() as u64,
            })
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.0
            .load(GuestAddress(addr), Ordering::Acquire)
            .map_err(|_| MemoryError::OutOfBounds { addr, len: 2 })
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.0
            .store(value, GuestAddress(addr), Ordering::Release)
            .map_err(|_| MemoryError::OutOfBounds { addr, len: 2 })
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        if len == 0
            || self
                .0
                .check_range(GuestAddress(addr), len as usize, Permissions::ReadWrite)
        {
            Ok(())
        } else {
            Err(MemoryError::OutOfBounds { addr, len })
        }
    }
}

/// A `virtio-queue` queue on the ring our driver laid out at `cfg`.
pub fn vq_queue(cfg: QueueConfig, event_idx: bool, mem: &VmMemory) -> Queue {
    let mut q = Queue::new(cfg.size).unwrap();
    q.set_size(cfg.size);
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (l, h) = split(cfg.desc_addr);
    q.set_desc_table_address(l, h);
    let (l, h) = split(cfg.driver_addr);
    q.set_avail_ring_address(l, h);
    let (l, h) = split(cfg.device_addr);
    q.set_used_ring_address(l, h);
    q.set_event_idx(event_idx);
    q.set_ready(true);
    assert!(q.is_valid(mem), "virtio-queue refused the layout");
    q
}

/// Pops everything available, does the per-request work, publishes once.
#[inline(never)]
pub fn vq_device_batch(q: &mut Queue, mem: &VmMemory) -> (u32, bool) {
    let mut n = 0;
    while let Some(chain) = q.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let mut header = None;
        let mut status = None;
        for desc in chain {
            if desc.is_write_only() {
                status = Some(desc);
            } else if header.is_none() {
                header = Some(desc.addr());
            }
        }
        if let Some(header) = header {
            let mut buf = [0u8; 16];
            mem.read_slice(&mut buf, header).unwrap();
            std::hint::black_box(buf);
        }
        let written = match status {
            Some(d) => {
                mem.write_slice(&[0], d.addr().unchecked_add(u64::from(d.len()) - 1))
                    .unwrap();
                d.len()
            }
            None => 0,
        };
        q.add_used(mem, head, written).unwrap();
        n += 1;
    }
    (n, q.needs_notification(mem).unwrap())
}
