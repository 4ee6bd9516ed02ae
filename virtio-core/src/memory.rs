//! Guest memory: the only window the device has onto what the driver shares.
//!
//! The driver owns this memory and may write it at any time, from another
//! core or thread, while the device reads it. So nothing here hands out a
//! `&[u8]` into guest memory: every access copies through raw pointers with
//! volatile operations, and ring indices and packed-ring flags go through
//! 16-bit atomics with acquire/release ordering.
//!
//! # Access rules (the defined results)
//!
//! * An access of `len` bytes at `addr` touches `addr ..= addr + len - 1`. If
//!   that range is not wholly inside the memory the implementation serves,
//!   the access fails with [`MemoryError::OutOfBounds`] and touches nothing.
//! * If `addr + len - 1` does not fit in a `u64` the access fails with
//!   [`MemoryError::Overflow`]. An access that ends exactly at `u64::MAX` is
//!   legal when a region covers it.
//! * A zero-length access succeeds at any address and touches nothing.
//! * [`MultiRegion`] serves a range that straddles several regions when they
//!   are contiguous in guest address space; a gap anywhere in the range is
//!   [`MemoryError::OutOfBounds`], checked before any byte is copied.
//! * The 16-bit atomic accesses need a 2-aligned address
//!   ([`MemoryError::Misaligned`]) and both bytes in one region.
//!
//! This module is the only place in the crate family with `unsafe`; each
//! block carries a `// SAFETY:` comment and the tests run under Miri.
#![allow(unsafe_code)]

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicUsize, Ordering, fence};

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Why a guest memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MemoryError {
    /// Some byte of `addr .. addr + len` is not backed by guest memory.
    OutOfBounds {
        /// First guest address of the access.
        addr: u64,
        /// Length of the access in bytes.
        len: u64,
    },
    /// `addr + len - 1` does not fit in a `u64`.
    Overflow {
        /// First guest address of the access.
        addr: u64,
        /// Length of the access in bytes.
        len: u64,
    },
    /// An atomic access at an address that is not aligned to its size.
    Misaligned {
        /// The guest address.
        addr: u64,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds { addr, len } => write!(
                f,
                "guest range {addr:#x} + {len:#x} is not inside guest memory"
            ),
            Self::Overflow { addr, len } => write!(
                f,
                "guest range {addr:#x} + {len:#x} overflows the address space"
            ),
            Self::Misaligned { addr } => {
                write!(f, "atomic guest access at unaligned address {addr:#x}")
            }
        }
    }
}

impl core::error::Error for MemoryError {}

/// Why a region could not be created or added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegionError {
    /// A region must hold at least one byte.
    Empty,
    /// `base + len - 1` does not fit in a `u64`.
    Overflow,
    /// The new region overlaps one already present.
    Overlap,
    /// A [`MultiRegion`] already holds its maximum number of regions.
    Full,
    /// The host address and the guest base differ modulo 8, so guest-aligned
    /// ring indices would be misaligned on the host and could not be
    /// accessed atomically.
    Misaligned,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "memory region is empty",
            Self::Overflow => "memory region runs past the end of the address space",
            Self::Overlap => "memory region overlaps an existing region",
            Self::Full => "no room for another memory region",
            Self::Misaligned => "host address and guest base differ modulo 8",
        })
    }
}

impl core::error::Error for RegionError {}

/// The last address of `addr .. addr + len` for a non-empty access.
#[inline]
fn last_addr(addr: u64, len: u64) -> Result<u64, MemoryError> {
    len.checked_sub(1)
        .and_then(|l| addr.checked_add(l))
        .ok_or(MemoryError::Overflow { addr, len })
}

/// Memory shared by the driver, as the device sees it.
///
/// Implementations check every access against what the driver may share and
/// never touch anything else. The module docs list the defined result of
/// every edge case (zero length, overflow, straddling regions).
pub trait GuestMemory {
    /// Copies `buf.len()` bytes from guest address `addr` into `buf`.
    ///
    /// # Errors
    /// [`MemoryError`] if the range is not wholly backed; `buf` is then left
    /// unspecified (possibly partly written by a racing driver's data) but no
    /// guest memory outside the range was read.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Copies `buf` into guest memory at `addr`.
    ///
    /// # Errors
    /// [`MemoryError`] if the range is not wholly backed; nothing is written.
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError>;

    /// Loads a little-endian `u16` with acquire ordering (ring indices,
    /// packed descriptor flags).
    ///
    /// # Errors
    /// [`MemoryError`] if `addr` is unbacked or not 2-aligned.
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError>;

    /// Stores a little-endian `u16` with release ordering.
    ///
    /// # Errors
    /// [`MemoryError`] if `addr` is unbacked or not 2-aligned.
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError>;

    /// A full (sequentially consistent) fence: orders the device's earlier
    /// stores before its later loads, as the notification re-checks need.
    fn fence(&self) {
        fence(Ordering::SeqCst);
    }

    /// Checks that `addr .. addr + len` is wholly backed, without touching it.
    ///
    /// # Errors
    /// The error the same access would fail with.
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError>;

    /// Reads a plain-old-data object (a wire structure from [`crate::spec`]).
    ///
    /// # Errors
    /// As for [`GuestMemory::read`].
    #[inline]
    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: u64) -> Result<T, MemoryError>
    where
        Self: Sized,
    {
        let mut value = T::new_zeroed();
        self.read(addr, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes a plain-old-data object.
    ///
    /// # Errors
    /// As for [`GuestMemory::write`].
    #[inline]
    fn write_obj<T: IntoBytes + Immutable>(&self, addr: u64, value: &T) -> Result<(), MemoryError>
    where
        Self: Sized,
    {
        self.write(addr, value.as_bytes())
    }
}

impl<M: GuestMemory + ?Sized> GuestMemory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        (**self).write(addr, buf)
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        (**self).load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        (**self).store_u16_release(addr, value)
    }
    fn fence(&self) {
        (**self).fence();
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        (**self).check_range(addr, len)
    }
}

/// One contiguous block of memory the driver shares, at a guest base address.
///
/// It is the memory of a RAM-backed guest, or the pre-shared window of the
/// minimal-memory profile. The region borrows its host memory for `'a`; all
/// access goes through `&self`, so the device and a driver in the same
/// program (tests, the loopback demo) can share one region.
pub struct Region<'a> {
    host: NonNull<u8>,
    len: u64,
    base: u64,
    /// Last guest address covered (`base + len - 1`, known not to overflow).
    last: u64,
    _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: a `Region` is a pointer and a length with the borrow of `'a`; every
// access through it is volatile or atomic, the same discipline whichever
// thread performs it. Racing accesses with the driver are the shared-memory
// contract of virtio (the driver writes what it offers, the device what it
// returns), not a property of which thread holds the handle.
unsafe impl Send for Region<'_> {}
// SAFETY: as for `Send`; `&Region` exposes only volatile/atomic accesses.
unsafe impl Sync for Region<'_> {}

impl fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

impl<'a> Region<'a> {
    /// Serves `host` at guest addresses `base .. base + host.len()`.
    ///
    /// # Errors
    /// [`RegionError::Empty`] for an empty slice, [`RegionError::Overflow`] if
    /// the region would run past `u64::MAX`, [`RegionError::Misaligned`] if
    /// `host` and `base` differ modulo 8 (a `Vec<u8>` has no alignment
    /// guarantee: back the region with `u64`s or page-aligned memory).
    pub fn new(base: u64, host: &'a mut [u8]) -> Result<Self, RegionError> {
        let len = host.len();
        // SAFETY: `host` is a live, exclusively borrowed slice of `len` bytes
        // for `'a`, which the returned region carries.
        unsafe { Self::from_raw_parts(base, host.as_mut_ptr(), len) }
    }

    /// Serves `len` bytes of host memory at `host` (e.g. an `mmap`ed file
    /// descriptor from vhost-user, or a fixed SRAM window on a
    /// microcontroller) at guest addresses `base .. base + len`.
    ///
    /// # Errors
    /// As for [`Region::new`].
    ///
    /// # Safety
    /// For all of `'a`, `host .. host + len` must be valid for reads and
    /// writes, and must not be accessed through Rust references (only
    /// through this region, raw pointers, or another agent such as the
    /// driver's core).
    pub unsafe fn from_raw_parts(
        base: u64,
        host: *mut u8,
        len: usize,
    ) -> Result<Self, RegionError> {
        let host = NonNull::new(host).ok_or(RegionError::Empty)?;
        let len = u64::try_from(len).map_err(|_| RegionError::Overflow)?;
        if len == 0 {
            return Err(RegionError::Empty);
        }
        let last = last_addr(base, len).map_err(|_| RegionError::Overflow)?;
        if !((host.as_ptr().addr() as u64) ^ base).is_multiple_of(8) {
            return Err(RegionError::Misaligned);
        }
        Ok(Self {
            host,
            len,
            base,
            last,
            _borrow: PhantomData,
        })
    }

    /// The first guest address served.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The number of bytes served.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a region holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Host offset of a `len`-byte access at `addr`, if wholly inside.
    #[inline]
    fn offset(&self, addr: u64, len: u64) -> Result<usize, MemoryError> {
        let last = last_addr(addr, len)?;
        if addr < self.base || last > self.last {
            return Err(MemoryError::OutOfBounds { addr, len });
        }
        // The offset is below `self.len`, which came from a `usize`.
        usize::try_from(addr.wrapping_sub(self.base))
            .map_err(|_| MemoryError::OutOfBounds { addr, len })
    }

    /// Host pointer for `[offset, offset + n)`, already bounds-checked.
    #[inline]
    fn ptr(&self, offset: usize) -> *mut u8 {
        // `wrapping_add` keeps this free of `unsafe`; callers only pass
        // offsets that `offset` validated, so the pointer is in bounds.
        self.host.as_ptr().wrapping_add(offset)
    }

    /// Copies out of a checked range with volatile loads of one width: the
    /// widest (8, 4, 2 or 1 bytes) to which both the host address and the
    /// length are aligned. A descriptor is two 8-byte loads, a used element
    /// two 4-byte ones, a sector 64 8-byte ones; with a constant length the
    /// compiler folds the choice and unrolls the loop.
    #[inline(always)]
    fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        let src = self.ptr(offset);
        let align = src.addr() | buf.len();
        macro_rules! copy {
            ($t:ty) => {
                for (i, dst) in buf.chunks_exact_mut(size_of::<$t>()).enumerate() {
                    let p = src
                        .wrapping_add(i.wrapping_mul(size_of::<$t>()))
                        .cast::<$t>();
                    // SAFETY: `offset .. offset + buf.len()` was checked to
                    // lie in the region, which the constructor's contract
                    // makes valid for reads; `p` is inside it and aligned to
                    // the width (start and length are multiples of it).
                    // Volatile: the driver may write the memory concurrently.
                    let word = unsafe { p.read_volatile() };
                    dst.copy_from_slice(&word.to_ne_bytes());
                }
            };
        }
        if align.is_multiple_of(8) {
            copy!(u64);
        } else if align.is_multiple_of(4) {
            copy!(u32);
        } else if align.is_multiple_of(2) {
            copy!(u16);
        } else {
            copy!(u8);
        }
    }

    /// Copies into a checked range, with stores of one width chosen as in
    /// `copy_out`.
    #[inline(always)]
    fn copy_in(&self, offset: usize, buf: &[u8]) {
        let dst = self.ptr(offset);
        let align = dst.addr() | buf.len();
        macro_rules! copy {
            ($t:ty) => {
                // Whole words (the length is a multiple of the width), as
                // arrays: no length check, so no length-mismatch panic path
                // in a firmware image.
                let (words, _) = buf.as_chunks::<{ size_of::<$t>() }>();
                for (i, word) in words.iter().enumerate() {
                    let p = dst
                        .wrapping_add(i.wrapping_mul(size_of::<$t>()))
                        .cast::<$t>();
                    // SAFETY: in bounds and aligned as in `copy_out`; the
                    // constructor's contract makes the region valid for
                    // writes.
                    unsafe { p.write_volatile(<$t>::from_ne_bytes(*word)) };
                }
            };
        }
        if align.is_multiple_of(8) {
            copy!(u64);
        } else if align.is_multiple_of(4) {
            copy!(u32);
        } else if align.is_multiple_of(2) {
            copy!(u16);
        } else {
            copy!(u8);
        }
    }

    #[inline]
    fn atomic_u16(&self, addr: u64) -> Result<&AtomicU16, MemoryError> {
        if !addr.is_multiple_of(2) {
            return Err(MemoryError::Misaligned { addr });
        }
        let offset = self.offset(addr, 2)?;
        let ptr = self.ptr(offset);
        if !ptr
            .addr()
            .is_multiple_of(core::mem::align_of::<AtomicU16>())
        {
            // The guest address is aligned but the host mapping is not.
            return Err(MemoryError::Misaligned { addr });
        }
        // SAFETY: the two bytes are inside the region (checked above), the
        // pointer is aligned for `AtomicU16` (checked above), and for `'a`
        // the memory is only accessed through raw pointers or atomics (the
        // constructor's contract), so an atomic view of it is sound.
        Ok(unsafe { AtomicU16::from_ptr(ptr.cast::<u16>()) })
    }
}

impl GuestMemory for Region<'_> {
    // Always inlined: left to the hint, the host build put it out of line
    // once `copy_in` lost its `copy_from_slice` (the loopback demo then
    // read its headers through a call); the minimal firmware image pays
    // 184 B for it.
    #[inline(always)]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let offset = self.offset(addr, buf.len() as u64)?;
        self.copy_out(offset, buf);
        Ok(())
    }

    #[inline]
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let offset = self.offset(addr, buf.len() as u64)?;
        self.copy_in(offset, buf);
        Ok(())
    }

    // The object accessors always inline: with the constant size of a ring
    // structure the width choice and the copy loop fold away, leaving a
    // range check and one or two loads or stores. (`read` and `write`,
    // with lengths known only at run time, stay calls where the compiler
    // prefers, which keeps a firmware image small.)
    #[inline(always)]
    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: u64) -> Result<T, MemoryError> {
        let mut value = T::new_zeroed();
        let buf = value.as_mut_bytes();
        if !buf.is_empty() {
            let offset = self.offset(addr, buf.len() as u64)?;
            self.copy_out(offset, buf);
        }
        Ok(value)
    }

    #[inline(always)]
    fn write_obj<T: IntoBytes + Immutable>(&self, addr: u64, value: &T) -> Result<(), MemoryError> {
        let buf = value.as_bytes();
        if !buf.is_empty() {
            let offset = self.offset(addr, buf.len() as u64)?;
            self.copy_in(offset, buf);
        }
        Ok(())
    }

    #[inline]
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        Ok(u16::from_le(self.atomic_u16(addr)?.load(Ordering::Acquire)))
    }

    #[inline]
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.atomic_u16(addr)?
            .store(value.to_le(), Ordering::Release);
        Ok(())
    }

    #[inline]
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        self.offset(addr, len).map(|_| ())
    }
}

/// Up to `N` non-overlapping regions, e.g. the memory table QEMU sends a
/// vhost-user daemon.
///
/// Lookup checks the region the previous access fell in first (a guest's
/// rings and buffers mostly live in one region, so this is the common
/// path: one range check, as for a single [`Region`]); on a miss it scans
/// the regions (`N` is small: QEMU's default limit is 8, vhost-user's
/// protocol maximum 509) and remembers the hit. An access straddling
/// contiguous regions takes the piecewise path.
#[derive(Debug)]
pub struct MultiRegion<'a, const N: usize> {
    /// Kept sorted by base address, so a straddling access walks forward.
    regions: heapless::Vec<Region<'a>, N>,
    /// Index of the region the last single-region access hit. Only a hint:
    /// it is range-checked like any lookup, so a stale value (after `add`
    /// or `remove`) costs a scan, never a wrong access. Relaxed atomic so
    /// the memory stays `Sync`.
    hint: AtomicUsize,
}

impl<const N: usize> Default for MultiRegion<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize> MultiRegion<'a, N> {
    /// An empty set: every non-empty access fails until regions are added.
    pub const fn new() -> Self {
        Self {
            regions: heapless::Vec::new(),
            hint: AtomicUsize::new(0),
        }
    }

    /// Adds a region.
    ///
    /// # Errors
    /// [`RegionError::Overlap`] if it overlaps a region already present,
    /// [`RegionError::Full`] if `N` regions are present.
    pub fn add(&mut self, region: Region<'a>) -> Result<(), RegionError> {
        if self
            .regions
            .iter()
            .any(|r| region.base <= r.last && r.base <= region.last)
        {
            return Err(RegionError::Overlap);
        }
        let pos = self
            .regions
            .iter()
            .position(|r| r.base > region.base)
            .unwrap_or(self.regions.len());
        self.regions
            .insert(pos, region)
            .map_err(|_| RegionError::Full)
    }

    /// Removes and returns the region starting at guest address `base`.
    pub fn remove(&mut self, base: u64) -> Option<Region<'a>> {
        let pos = self.regions.iter().position(|r| r.base == base)?;
        Some(self.regions.remove(pos))
    }

    /// The regions, sorted by base address.
    pub fn regions(&self) -> &[Region<'a>] {
        &self.regions
    }

    /// Calls `f(region, offset_in_region, offset_in_access, len)` for each
    /// piece of `addr .. addr + len`, after checking the whole range is
    /// backed (so a failing access touches nothing).
    fn for_each_piece(
        &self,
        addr: u64,
        len: u64,
        mut f: impl FnMut(&Region<'a>, usize, usize, usize),
    ) -> Result<(), MemoryError> {
        if len == 0 {
            return Ok(());
        }
        let last = last_addr(addr, len)?;
        let oob = MemoryError::OutOfBounds { addr, len };
        // First pass: check coverage. Second pass: copy.
        for copy in [false, true] {
            let mut cursor = addr;
            let mut done: u64 = 0;
            let start = self
                .regions
                .iter()
                .position(|r| r.base <= cursor && cursor <= r.last)
                .ok_or(oob)?;
            for region in self.regions.iter().skip(start) {
                // Each region after the first must start where the previous
                // piece ended.
                if region.base > cursor {
                    return Err(oob);
                }
                let piece_last = last.min(region.last);
                // `cursor <= piece_last` holds: cursor is in this region and
                // not past `last`.
                let piece = piece_last.wrapping_sub(cursor).wrapping_add(1);
                if copy {
                    let off = usize::try_from(cursor.wrapping_sub(region.base)).map_err(|_| oob)?;
                    let at = usize::try_from(done).map_err(|_| oob)?;
                    let n = usize::try_from(piece).map_err(|_| oob)?;
                    f(region, off, at, n);
                }
                done = done.wrapping_add(piece);
                if piece_last == last {
                    break;
                }
                // piece_last < last <= u64::MAX, so this cannot wrap.
                cursor = piece_last.wrapping_add(1);
            }
            if done != len {
                return Err(oob);
            }
        }
        Ok(())
    }

    /// The region wholly holding the non-empty range `addr .. addr + len`
    /// and the host offset in it: the last region hit first.
    #[inline(always)]
    fn holding(&self, addr: u64, len: u64) -> Option<(&Region<'a>, usize)> {
        if let Some(r) = self.regions.get(self.hint.load(Ordering::Relaxed))
            && let Ok(offset) = r.offset(addr, len)
        {
            return Some((r, offset));
        }
        self.holding_scan(addr, len)
    }

    /// `holding` after a miss of the hint: every region, remembering a hit.
    #[inline(never)]
    fn holding_scan(&self, addr: u64, len: u64) -> Option<(&Region<'a>, usize)> {
        self.regions.iter().enumerate().find_map(|(i, r)| {
            let offset = r.offset(addr, len).ok()?;
            self.hint.store(i, Ordering::Relaxed);
            Some((r, offset))
        })
    }

    fn region_of(&self, addr: u64, len: u64) -> Result<&Region<'a>, MemoryError> {
        match self.holding(addr, len) {
            Some((r, _)) => Ok(r),
            None => {
                last_addr(addr, len)?;
                Err(MemoryError::OutOfBounds { addr, len })
            }
        }
    }
}

impl<const N: usize> MultiRegion<'_, N> {
    /// `read_obj` off the fast path (a straddling or failing access): the
    /// object lives in memory only here.
    #[inline(never)]
    fn read_obj_pieces<T: FromBytes + IntoBytes>(&self, addr: u64) -> Result<T, MemoryError> {
        let mut value = T::new_zeroed();
        self.read(addr, value.as_mut_bytes())?;
        Ok(value)
    }
}

impl<const N: usize> GuestMemory for MultiRegion<'_, N> {
    /// The fast path builds the object in registers: its buffer never
    /// reaches the piecewise path, which would make the compiler keep it
    /// in memory.
    #[inline(always)]
    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: u64) -> Result<T, MemoryError> {
        if size_of::<T>() != 0
            && let Some((region, offset)) = self.holding(addr, size_of::<T>() as u64)
        {
            let mut value = T::new_zeroed();
            region.copy_out(offset, value.as_mut_bytes());
            return Ok(value);
        }
        self.read_obj_pieces(addr)
    }

    #[inline(always)]
    fn write_obj<T: IntoBytes + Immutable>(&self, addr: u64, value: &T) -> Result<(), MemoryError> {
        let buf = value.as_bytes();
        if !buf.is_empty()
            && let Some((region, offset)) = self.holding(addr, buf.len() as u64)
        {
            region.copy_in(offset, buf);
            return Ok(());
        }
        self.write(addr, buf)
    }

    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some((region, offset)) = self.holding(addr, buf.len() as u64) {
            region.copy_out(offset, buf);
            return Ok(());
        }
        // Straddling contiguous regions, or not backed: the piecewise path
        // (which also picks the error).
        self.for_each_piece(addr, buf.len() as u64, |region, off, at, n| {
            if let Some(dst) = buf.get_mut(at..at.wrapping_add(n)) {
                region.copy_out(off, dst);
            }
        })
    }

    #[inline]
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some((region, offset)) = self.holding(addr, buf.len() as u64) {
            region.copy_in(offset, buf);
            return Ok(());
        }
        self.for_each_piece(addr, buf.len() as u64, |region, off, at, n| {
            if let Some(src) = buf.get(at..at.wrapping_add(n)) {
                region.copy_in(off, src);
            }
        })
    }

    #[inline]
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        if !addr.is_multiple_of(2) {
            return Err(MemoryError::Misaligned { addr });
        }
        self.region_of(addr, 2)?.load_u16_acquire(addr)
    }

    #[inline]
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        if !addr.is_multiple_of(2) {
            return Err(MemoryError::Misaligned { addr });
        }
        self.region_of(addr, 2)?.store_u16_release(addr, value)
    }

    #[inline]
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        if len == 0 || self.holding(addr, len).is_some() {
            return Ok(());
        }
        self.for_each_piece(addr, len, |_, _, _, _| {})
    }
}

/// Guest memory made of shared file mappings it owns (feature `mmap`): the
/// memory table of a vhost-user daemon, one mapping per region the
/// frontend sent. Each mapping is served as a [`Region`] inside a
/// [`MultiRegion`] of up to `N` regions; a region lives exactly as long as
/// its mapping, and this type never hands a region out.
#[cfg(feature = "mmap")]
pub struct MappedMemory<const N: usize> {
    // Field order matters: the regions (raw pointers into the mappings) are
    // dropped before the mappings are unmapped.
    regions: MultiRegion<'static, N>,
    maps: heapless::Vec<(u64, memmap2::MmapRaw), N>,
}

#[cfg(feature = "mmap")]
impl<const N: usize> Default for MappedMemory<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "mmap")]
impl<const N: usize> fmt::Debug for MappedMemory<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions.regions()).finish()
    }
}

#[cfg(feature = "mmap")]
impl<const N: usize> MappedMemory<N> {
    /// No regions: every access fails.
    pub const fn new() -> Self {
        Self {
            regions: MultiRegion::new(),
            maps: heapless::Vec::new(),
        }
    }

    /// Serves `map` (all of it) at guest addresses `base ..`, keeping the
    /// mapping until the region is removed or this memory is dropped.
    ///
    /// # Errors
    /// [`RegionError`] as for [`Region::new`] and [`MultiRegion::add`]; the
    /// mapping is dropped (unmapped) then.
    pub fn add(&mut self, base: u64, map: memmap2::MmapRaw) -> Result<(), RegionError> {
        // SAFETY: `map` is a live mapping of `map.len()` readable and
        // writable bytes at `map.as_mut_ptr()`. It is kept in `self.maps`
        // for as long as the region is in `self.regions`: `remove` takes the
        // region out before dropping the mapping, the field order drops the
        // regions first, and no region is ever handed out. `MmapRaw` hands
        // out no references, so the memory is reached only through the
        // region's volatile and atomic accesses (and by the driver).
        let region = unsafe { Region::from_raw_parts(base, map.as_mut_ptr(), map.len()) }?;
        self.regions.add(region)?;
        if let Err((base, map)) = self.maps.push((base, map)) {
            // Cannot happen (both hold `N`), but the region must not outlive
            // its mapping: take it out before the mapping drops.
            let _ = self.regions.remove(base);
            drop(map);
            return Err(RegionError::Full);
        }
        Ok(())
    }

    /// Removes the region at `base` and unmaps it; false if there is none.
    pub fn remove(&mut self, base: u64) -> bool {
        let Some(pos) = self.maps.iter().position(|(b, _)| *b == base) else {
            return false;
        };
        let _ = self.regions.remove(base);
        self.maps.swap_remove(pos);
        true
    }

    /// The number of regions.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// True with no regions.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

#[cfg(feature = "mmap")]
impl<const N: usize> GuestMemory for MappedMemory<N> {
    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.regions.read(addr, buf)
    }
    #[inline]
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.regions.write(addr, buf)
    }
    #[inline]
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.regions.load_u16_acquire(addr)
    }
    #[inline]
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.regions.store_u16_release(addr, value)
    }
    #[inline]
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.regions.check_range(addr, len)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// Test memory aligned like a guest page would be.
    #[repr(C, align(8))]
    struct Buf<const N: usize>([u8; N]);

    #[test]
    fn region_read_write_round_trip_at_every_alignment() {
        let mut buf = Buf([0u8; 64]);
        let r = Region::new(0x1000, &mut buf.0).unwrap();
        for start in 0..9u64 {
            for len in 0..30usize {
                let data: [u8; 30] =
                    core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ start as u8);
                r.write(0x1000 + start, &data[..len]).unwrap();
                let mut out = [0u8; 30];
                r.read(0x1000 + start, &mut out[..len]).unwrap();
                assert_eq!(out[..len], data[..len]);
            }
        }
    }

    #[test]
    fn region_rejects_ranges_outside_and_touches_nothing() {
        let mut buf = Buf([0xaau8; 16]);
        let r = Region::new(0x100, &mut buf.0).unwrap();
        let oob = |addr, len| Err(MemoryError::OutOfBounds { addr, len });
        assert_eq!(r.write(0xff, &[1, 2]), oob(0xff, 2));
        assert_eq!(r.write(0x10f, &[1, 2]), oob(0x10f, 2));
        assert_eq!(r.write(0x110, &[1]), oob(0x110, 1));
        assert_eq!(r.check_range(0x100, 17), oob(0x100, 17));
        assert_eq!(r.check_range(0x100, 16), Ok(()));
        let mut out = [0u8; 1];
        assert_eq!(r.read(0, &mut out), oob(0, 1));
        assert_eq!(buf.0, [0xaa; 16]);
    }

    #[test]
    fn zero_length_access_succeeds_anywhere() {
        let mut buf = Buf([0u8; 4]);
        let r = Region::new(0x100, &mut buf.0).unwrap();
        assert_eq!(r.write(u64::MAX, &[]), Ok(()));
        assert_eq!(r.read(0, &mut []), Ok(()));
        assert_eq!(r.check_range(u64::MAX, 0), Ok(()));
    }

    #[test]
    fn overflowing_ranges_are_overflow_errors() {
        let mut buf = Buf([0u8; 4]);
        let r = Region::new(0x100, &mut buf.0).unwrap();
        assert_eq!(
            r.write(u64::MAX, &[1, 2]),
            Err(MemoryError::Overflow {
                addr: u64::MAX,
                len: 2
            })
        );
        assert_eq!(
            r.check_range(u64::MAX - 1, u64::MAX),
            Err(MemoryError::Overflow {
                addr: u64::MAX - 1,
                len: u64::MAX
            })
        );
        assert!(r.check_range(0x100, u64::MAX).is_err());
    }

    #[test]
    fn region_may_end_at_the_top_of_the_address_space() {
        let mut buf = Buf([0u8; 8]);
        let r = Region::new(u64::MAX - 7, &mut buf.0).unwrap();
        r.write(u64::MAX, &[9]).unwrap();
        r.store_u16_release(u64::MAX - 1, 0x0807).unwrap();
        let mut out = [0u8; 4];
        r.read(u64::MAX - 3, &mut out).unwrap();
        assert_eq!(out, [0, 0, 7, 8]);
        assert_eq!(
            Region::new(u64::MAX - 2, &mut Buf([0u8; 4]).0).unwrap_err(),
            RegionError::Overflow
        );
        assert_eq!(Region::new(0, &mut []).unwrap_err(), RegionError::Empty);
        assert_eq!(
            Region::new(0x1001, &mut Buf([0u8; 4]).0).unwrap_err(),
            RegionError::Misaligned
        );
    }

    #[test]
    fn atomics_are_little_endian_aligned_and_bounded() {
        let mut buf = Buf([0u8; 8]);
        let r = Region::new(0x10, &mut buf.0).unwrap();
        r.store_u16_release(0x12, 0x1234).unwrap();
        let mut out = [0u8; 2];
        r.read(0x12, &mut out).unwrap();
        assert_eq!(out, [0x34, 0x12]);
        assert_eq!(r.load_u16_acquire(0x12), Ok(0x1234));
        assert_eq!(
            r.load_u16_acquire(0x13),
            Err(MemoryError::Misaligned { addr: 0x13 })
        );
        assert_eq!(
            r.store_u16_release(0x18, 1),
            Err(MemoryError::OutOfBounds { addr: 0x18, len: 2 })
        );
    }

    #[test]
    fn read_obj_and_write_obj_use_wire_bytes() {
        let mut buf = Buf([0u8; 8]);
        let r = Region::new(0, &mut buf.0).unwrap();
        r.write_obj(1, &0x0102_0304u32).unwrap();
        assert_eq!(r.read_obj::<[u8; 4]>(1), Ok(0x0102_0304u32.to_ne_bytes()));
    }

    #[test]
    fn multi_region_serves_each_region_and_straddles_contiguous_ones() {
        let (mut a, mut b, mut c) = (Buf([0u8; 8]), Buf([0u8; 8]), Buf([0u8; 8]));
        let mut m = MultiRegion::<4>::new();
        m.add(Region::new(0x108, &mut b.0).unwrap()).unwrap();
        m.add(Region::new(0x100, &mut a.0).unwrap()).unwrap();
        m.add(Region::new(0x200, &mut c.0).unwrap()).unwrap();
        let data: [u8; 12] = core::array::from_fn(|i| i as u8 + 1);
        // 0x104..0x110 straddles the two contiguous regions.
        m.write(0x104, &data).unwrap();
        let mut out = [0u8; 12];
        m.read(0x104, &mut out).unwrap();
        assert_eq!(out, data);
        // A range running into the gap after 0x110 fails and writes nothing.
        let oob = Err(MemoryError::OutOfBounds {
            addr: 0x10c,
            len: 8,
        });
        assert_eq!(m.write(0x10c, &[0xee; 8]), oob);
        m.read(0x10c, &mut out[..4]).unwrap();
        assert_eq!(out[..4], data[8..12]);
        // The other region is reachable, the gap is not.
        m.write(0x207, &[5]).unwrap();
        assert!(m.check_range(0x1ff, 2).is_err());
        assert!(m.check_range(0x150, 1).is_err());
        // Atomics must not straddle.
        assert_eq!(m.store_u16_release(0x106, 7), Ok(()));
        assert_eq!(m.load_u16_acquire(0x106), Ok(7));
        drop(m);
        assert_eq!(a.0[4..], [1, 2, 7, 0]);
        assert_eq!(b.0, [5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(c.0[7], 5);
    }

    #[test]
    fn multi_region_rejects_overlap_and_overfill_and_removes() {
        let (mut a, mut b) = (Buf([0u8; 8]), Buf([0u8; 16]));
        let (mut b2, mut c) = (Buf([0u8; 8]), Buf([0u8; 8]));
        let mut m = MultiRegion::<2>::new();
        m.add(Region::new(0x100, &mut a.0).unwrap()).unwrap();
        assert_eq!(
            m.add(Region::new(0x0f8, &mut b.0).unwrap()),
            Err(RegionError::Overlap)
        );
        m.add(Region::new(0x0f8, &mut b2.0).unwrap()).unwrap();
        assert_eq!(
            m.add(Region::new(0x300, &mut c.0).unwrap()),
            Err(RegionError::Full)
        );
        assert_eq!(m.regions()[0].base(), 0x0f8);
        assert!(m.remove(0x100).is_some());
        assert!(m.remove(0x100).is_none());
        assert!(m.check_range(0x100, 1).is_err());
        assert_eq!(m.check_range(0x0f8, 8), Ok(()));
    }

    #[test]
    fn multi_region_at_top_of_address_space() {
        let mut buf = Buf([0u8; 8]);
        let (a, b) = buf.0.split_at_mut(4);
        let mut m = MultiRegion::<2>::new();
        m.add(Region::new(u64::MAX - 7, a).unwrap()).unwrap();
        m.add(Region::new(u64::MAX - 3, b).unwrap()).unwrap();
        m.write(u64::MAX - 5, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(
            m.write(u64::MAX - 1, &[0; 3]),
            Err(MemoryError::Overflow {
                addr: u64::MAX - 1,
                len: 3
            })
        );
        drop(m);
        assert_eq!(buf.0, [0, 0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn empty_multi_region_backs_nothing() {
        let m = MultiRegion::<1>::default();
        assert!(m.read(0, &mut [0u8; 1]).is_err());
        assert_eq!(m.write(5, &[]), Ok(()));
    }

    // The mapping-owning memory serves its mappings and refuses what is
    // not mapped; removing a region unmaps it (not under Miri: no mmap).
    #[cfg(all(feature = "mmap", not(miri)))]
    #[test]
    fn mapped_memory_serves_owned_mappings() {
        let map = |len| memmap2::MmapRaw::from(memmap2::MmapMut::map_anon(len).unwrap());
        let mut mem = MappedMemory::<2>::new();
        mem.add(0x1000, map(0x1000)).unwrap();
        mem.add(0x2000, map(0x1000)).unwrap();
        assert_eq!(mem.add(0x2800, map(0x1000)), Err(RegionError::Overlap));
        assert_eq!(mem.len(), 2);
        // Contiguous regions serve a straddling access.
        mem.write(0x1ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut buf = [0u8; 8];
        mem.read(0x1ffc, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8]);
        mem.store_u16_release(0x2002, 0xbeef).unwrap();
        assert_eq!(mem.load_u16_acquire(0x2002), Ok(0xbeef));
        assert!(mem.remove(0x2000));
        assert!(!mem.remove(0x2000));
        assert!(mem.read(0x2002, &mut buf[..2]).is_err());
        assert!(mem.read(0x1000, &mut buf).is_ok());
    }
}
