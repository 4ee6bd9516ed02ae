//! [`Translated`]: one endpoint's view of guest memory through the IOMMU.

use core::cell::Cell;

use virtio_core::memory::{GuestMemory, MemoryError};

use super::tables::{Access, IommuTables, Window};
use super::wire::{FAULT_F_READ, FAULT_F_WRITE};

/// The last window a lookup found, valid while the tables' generation is
/// the one it was found at.
#[derive(Clone, Copy, Debug)]
struct Hit {
    generation: u64,
    window: Window,
}

/// A [`GuestMemory`] for one endpoint: every address is an IOVA,
/// translated through the endpoint's domain onto `M`.
///
/// Give it to any device of this crate in place of its memory (the device
/// is then the endpoint behind the IOMMU, rings included, as with
/// `VIRTIO_F_ACCESS_PLATFORM`). An access that is not mapped, or mapped
/// without the permission it needs (reads `MAP_F_READ`, writes
/// `MAP_F_WRITE`), fails with [`MemoryError::OutOfBounds`], as an access
/// outside memory does, touches nothing, and queues a fault report for the
/// IOMMU device's eventq (delivered on its next `poll` or eventq notify).
/// An unattached endpoint reaches memory only in bypass mode (virtio 1.4
/// §"Device operations"), one attached to a bypass domain always;
/// addresses inside its RESV_MEM regions never.
///
/// The two windows found last are cached (a request's accesses alternate
/// between the rings and its buffers): a hit costs a generation compare
/// and a range check before the access to `M`. Measured with
/// `cargo bench -p virtio-bench --bench iommu` on two shared cores under a
/// load of about 5, a 4 KiB block read with rings and data in two
/// mappings, served device-side: over a `Region` 396–418 ns, through
/// `Translated` 475–530 ns, a ratio of 1.20–1.27 over three runs (with a
/// one-entry cache it was 1.29–1.32: 257–270 against 339–350 ns in a
/// quieter moment). That is some 80–110 ns for the roughly ten guest
/// accesses of one request.
/// [`GuestMemory::check_range`] checks the mapping (either permission,
/// as the caller has not said which access follows) and queues a fault
/// without a direction flag when it fails: a device checks a buffer just
/// before its DMA, so a failed check is the DMA that faults.
#[derive(Debug)]
pub struct Translated<'t, M, const D: usize, const N: usize, const E: usize> {
    tables: &'t IommuTables<D, N, E>,
    index: usize,
    endpoint: u32,
    mem: M,
    /// The two windows found last (a request's accesses alternate between
    /// the rings and its buffers), the newer first.
    last: [Cell<Option<Hit>>; 2],
}

impl<'t, M: GuestMemory, const D: usize, const N: usize, const E: usize>
    Translated<'t, M, D, N, E>
{
    /// `endpoint`'s view of `mem`; `None` when the platform did not put
    /// `endpoint` behind these tables.
    pub fn new(tables: &'t IommuTables<D, N, E>, endpoint: u32, mem: M) -> Option<Self> {
        let index = tables.endpoint_index(endpoint)?;
        Some(Self {
            tables,
            index,
            endpoint,
            mem,
            last: [Cell::new(None), Cell::new(None)],
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> u32 {
        self.endpoint
    }

    /// The memory behind the translation.
    pub fn inner(&self) -> &M {
        &self.mem
    }

    /// The window holding `iova` for `access`; a miss asks the tables.
    #[inline]
    fn window(&self, iova: u64, access: Access, record: bool) -> Result<Window, ()> {
        let generation = self.tables.generation();
        let [newer, older] = &self.last;
        let hit = |c: &Cell<Option<Hit>>| {
            c.get().filter(|h| {
                h.generation == generation
                    && h.window.start <= iova
                    && iova <= h.window.end
                    && h.window.allows(access)
            })
        };
        if let Some(h) = hit(newer) {
            return Ok(h.window);
        }
        if let Some(h) = hit(older) {
            older.set(newer.get());
            newer.set(Some(h));
            return Ok(h.window);
        }
        match self.tables.window(self.index, iova, access) {
            Ok(window) => {
                older.set(newer.get());
                newer.set(Some(Hit { generation, window }));
                Ok(window)
            }
            Err(fault) => {
                if record {
                    self.tables.record_fault(fault);
                }
                Err(())
            }
        }
    }

    /// Calls `f(phys, offset, n)` for each linearly translated piece of
    /// `addr .. addr + len`, after checking every piece (so a failing access
    /// touches nothing).
    #[inline]
    fn pieces(
        &self,
        addr: u64,
        len: u64,
        access: Access,
        record: bool,
        mut f: impl FnMut(u64, u64, u64) -> Result<(), MemoryError>,
    ) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        let last = len
            .checked_sub(1)
            .and_then(|l| addr.checked_add(l))
            .ok_or(MemoryError::Overflow { addr, len })?;
        let out = MemoryError::OutOfBounds { addr, len };
        // The common case: one window holds it all.
        let w = self.window(addr, access, record).map_err(|()| out)?;
        if last <= w.end {
            return f(addr.wrapping_sub(w.start).wrapping_add(w.phys), 0, len);
        }
        // Check every window first, then access.
        let mut at = w.end.wrapping_add(1);
        loop {
            let w = self.window(at, access, record).map_err(|()| out)?;
            if last <= w.end {
                break;
            }
            at = w.end.wrapping_add(1);
        }
        let mut at = addr;
        loop {
            let w = self.window(at, access, false).map_err(|()| out)?;
            let end = w.end.min(last);
            let n = end.wrapping_sub(at).wrapping_add(1);
            let offset = at.wrapping_sub(addr);
            f(at.wrapping_sub(w.start).wrapping_add(w.phys), offset, n)?;
            if end == last {
                return Ok(());
            }
            at = end.wrapping_add(1);
        }
    }
}

impl<M: GuestMemory, const D: usize, const N: usize, const E: usize> GuestMemory
    for Translated<'_, M, D, N, E>
{
    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let mem = &self.mem;
        self.pieces(addr, len, Access::Read, true, |phys, at, n| {
            let part = slice_range(at, n)
                .and_then(|r| buf.get_mut(r))
                .ok_or(MemoryError::OutOfBounds { addr, len })?;
            mem.read(phys, part)
        })
    }

    #[inline]
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let mem = &self.mem;
        self.pieces(addr, len, Access::Write, true, |phys, at, n| {
            let part = slice_range(at, n)
                .and_then(|r| buf.get(r))
                .ok_or(MemoryError::OutOfBounds { addr, len })?;
            mem.write(phys, part)
        })
    }

    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        let w = self
            .window(addr, Access::Read, true)
            .map_err(|()| MemoryError::OutOfBounds { addr, len: 2 })?;
        if addr.checked_add(1).is_none_or(|l| l > w.end) {
            return Err(MemoryError::OutOfBounds { addr, len: 2 });
        }
        self.mem
            .load_u16_acquire(addr.wrapping_sub(w.start).wrapping_add(w.phys))
    }

    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        let w = self
            .window(addr, Access::Write, true)
            .map_err(|()| MemoryError::OutOfBounds { addr, len: 2 })?;
        if addr.checked_add(1).is_none_or(|l| l > w.end) {
            return Err(MemoryError::OutOfBounds { addr, len: 2 });
        }
        self.mem
            .store_u16_release(addr.wrapping_sub(w.start).wrapping_add(w.phys), value)
    }

    fn fence(&self) {
        self.mem.fence();
    }

    /// Checks the range is mapped with either permission (a device asks
    /// before it accesses, not knowing which way yet); when it is not, the
    /// fault is queued for the first address that is not, without a
    /// direction flag.
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        let mem = &self.mem;
        let check = |phys: u64, _: u64, n: u64| mem.check_range(phys, n);
        let result = self
            .pieces(addr, len, Access::Read, false, check)
            .or_else(|_| self.pieces(addr, len, Access::Write, false, check));
        if matches!(result, Err(MemoryError::OutOfBounds { .. })) {
            self.record_first_fault(addr, len);
        }
        result
    }
}

impl<M: GuestMemory, const D: usize, const N: usize, const E: usize> Translated<'_, M, D, N, E> {
    /// Queues the fault of the first address of `addr .. addr + len` that
    /// neither permission reaches.
    fn record_first_fault(&self, addr: u64, len: u64) {
        let Some(last) = len.checked_sub(1).and_then(|l| addr.checked_add(l)) else {
            return;
        };
        let mut at = addr;
        loop {
            let w = self
                .tables
                .window(self.index, at, Access::Read)
                .or_else(|_| self.tables.window(self.index, at, Access::Write));
            match w {
                Ok(w) if w.end >= last => return,
                Ok(w) => at = w.end.wrapping_add(1),
                Err(mut fault) => {
                    fault.flags &= !(FAULT_F_READ | FAULT_F_WRITE);
                    self.tables.record_fault(fault);
                    return;
                }
            }
        }
    }
}

/// `at .. at + n` as a slice range.
fn slice_range(at: u64, n: u64) -> Option<core::ops::Range<usize>> {
    let at = usize::try_from(at).ok()?;
    let end = at.checked_add(usize::try_from(n).ok()?)?;
    Some(at..end)
}
