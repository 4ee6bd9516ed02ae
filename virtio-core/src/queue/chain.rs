//! The validated snapshot of a descriptor chain, and cursors over it.

use core::fmt;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::error::ChainErrorKind;
use crate::memory::{GuestMemory, MemoryError};

/// What the device needs to return a buffer to the driver.
///
/// For a split ring `id` is the head descriptor index; for a packed ring it is
/// the buffer id. `descs` is the number of ring descriptors the chain took
/// (a packed ring skips that many slots when it is used). A `Head` can only
/// be made by a queue's `pop`; the queue accepts each one back exactly once
/// (its in-flight table refuses a second completion and a head it never
/// handed out, [`super::QueueError::NotInFlight`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Head {
    pub(crate) id: u16,
    pub(crate) descs: u16,
    /// Device-writable bytes of the chain: the most a completion may report
    /// as written (a larger used length is clamped to it).
    pub(crate) writable: u32,
    /// The chain validated (IN_ORDER batching may merge a completion that
    /// covers all of `writable`).
    pub(crate) valid: bool,
}

impl Head {
    /// The id written into the used ring.
    #[inline]
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Ring descriptors the chain occupies.
    #[inline]
    pub fn descs(&self) -> u16 {
        self.descs
    }

    /// The most bytes a completion of this chain can report as written.
    #[inline]
    pub fn writable_len(&self) -> u32 {
        self.writable
    }

    /// The reported used length for `written` bytes: never more than the
    /// chain's writable bytes (virtio 1.4 §"The Virtqueue Used Ring": `len`
    /// is the number of bytes written into the buffer).
    #[inline]
    pub(crate) fn used_len(&self, written: u32) -> u32 {
        written.min(self.writable)
    }

    /// IN_ORDER: does this completion use the whole buffer, so a run of
    /// such completions can share one used element?
    #[inline]
    pub(crate) fn completes_whole(&self, written: u32) -> bool {
        self.valid && written >= self.writable
    }
}

/// One buffer of a chain: a guest range the chain walk checked is backed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Segment {
    /// Guest address.
    pub addr: u64,
    /// Length in bytes (never 0: empty descriptors are validated, not kept).
    pub len: u32,
}

/// Where a device can still answer a malformed chain: device-writable
/// descriptors the walk located, each checked to be inside memory
/// ([`super::ChainError::salvage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Salvage {
    /// The chain's first device-writable descriptor (where a response
    /// header with a status at its start goes).
    pub first_writable: Option<Segment>,
    /// The chain's last descriptor, when it is device-writable (where a
    /// status byte at the end of the writable part goes). `None` when the
    /// walk could not reach the chain's end (a loop, a bad `next`, an
    /// unreadable indirect table).
    pub tail: Option<Segment>,
}

/// A validated descriptor chain: its head and up to `N` segments, readable
/// ones first.
///
/// A `Chain` is storage the caller owns and the queue fills: `pop` writes
/// into a `&mut Chain<N>` in place (nothing of size `N` is moved), so a
/// request costs what its segments cost whatever `N` is. Make one with
/// [`Chain::new`] and reuse it for every pop. It is plain data (no borrow of
/// the queue or memory), so a device can also keep a copy, e.g. in a
/// `heapless::Deque`, and complete it later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain<const N: usize> {
    head: Head,
    segments: heapless::Vec<Segment, N>,
    /// How many of `segments` are device-readable (they come first).
    readable: usize,
    readable_len: u32,
    writable_len: u32,
    /// A writable descriptor was seen (possibly empty, so not in `segments`).
    saw_writable: bool,
    /// Salvage bookkeeping that costs nothing while the chain validates:
    /// the first writable descriptor was empty, and how many segments there
    /// were after the latest empty descriptor (`usize::MAX`: none yet).
    /// From these and `segments`, [`Self::noted`] rebuilds the fields below
    /// when a walk first goes wrong.
    first_writable_empty: bool,
    empty_at: usize,
    /// The fields below are live (a walk went wrong); otherwise they are
    /// stale and `noted` derives them.
    noted: bool,
    /// The first device-writable descriptor met, when it is non-empty and
    /// in memory.
    first_writable: Option<Segment>,
    /// A device-writable descriptor was met (validated or not).
    noted_writable: bool,
    /// The last descriptor met, when it is device-writable, non-empty and
    /// in memory (where a status byte at the end of a request lives).
    tail: Option<Segment>,
}

impl<const N: usize> Default for Chain<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Chain<N> {
    /// Empty storage for a chain of up to `N` segments, to pass to `pop`.
    pub const fn new() -> Self {
        Self {
            head: Head {
                id: 0,
                descs: 0,
                writable: 0,
                valid: false,
            },
            segments: heapless::Vec::new(),
            readable: 0,
            readable_len: 0,
            writable_len: 0,
            saw_writable: false,
            first_writable_empty: false,
            empty_at: usize::MAX,
            noted: false,
            first_writable: None,
            noted_writable: false,
            tail: None,
        }
    }

    /// Starts a walk: forgets the previous chain (O(1): segments are
    /// plain data, and the salvage fields are only made live on an error).
    #[inline]
    pub(crate) fn start(&mut self, id: u16) {
        self.head = Head {
            id,
            descs: 0,
            writable: 0,
            valid: false,
        };
        self.segments.clear();
        self.readable = 0;
        self.readable_len = 0;
        self.writable_len = 0;
        self.saw_writable = false;
        self.first_writable_empty = false;
        self.empty_at = usize::MAX;
        self.noted = false;
    }

    /// Makes the salvage fields live: what [`Self::note`] would have
    /// recorded for every descriptor [`Self::push`] accepted so far. Those
    /// are all in memory; the non-empty ones are `segments`.
    #[cold]
    fn make_noted(&mut self) {
        self.noted = true;
        self.noted_writable = self.saw_writable;
        self.first_writable = if self.saw_writable && !self.first_writable_empty {
            self.segments.get(self.readable).copied()
        } else {
            None
        };
        let len = self.segments.len();
        self.tail = if len > self.readable && self.empty_at != len {
            self.segments.last().copied()
        } else {
            None
        };
    }

    #[inline]
    fn noted(&mut self) {
        if !self.noted {
            self.make_noted();
        }
    }

    /// The head of a chain that failed validation: not valid, and only its
    /// first writable descriptor counts as writable (the one area known to
    /// start the writable part).
    pub(crate) fn partial_head(&mut self) -> Head {
        self.noted();
        Head {
            valid: false,
            writable: self.first_writable.map_or(0, |s| s.len),
            ..self.head
        }
    }

    /// Counts one more ring descriptor taken by this chain.
    #[inline]
    pub(crate) fn count_desc(&mut self) {
        // At most the queue size (<= 32768): both walks stop there.
        self.head.descs = self.head.descs.wrapping_add(1);
    }

    /// Sets the id once the walk found it (packed: the last descriptor's).
    #[inline]
    #[cfg(feature = "packed")]
    pub(crate) fn set_id(&mut self, id: u16) {
        self.head.id = id;
    }

    /// Marks the walk complete.
    #[inline]
    pub(crate) fn finish(&mut self) {
        self.head.writable = self.writable_len;
        self.head.valid = true;
    }

    /// The device-writable areas located in a chain that failed
    /// validation: its first writable descriptor, and its last descriptor
    /// if that one is writable. Only descriptors wholly inside memory
    /// count. `tail` is `None` when the walk could not reach the chain's
    /// end.
    pub(crate) fn salvage(&mut self, reached_end: bool) -> Salvage {
        self.noted();
        Salvage {
            first_writable: self.first_writable,
            tail: if reached_end { self.tail } else { None },
        }
    }

    /// Records a descriptor for [`Self::salvage`] without validating it
    /// into the chain (the walk goes on to the end of a malformed chain).
    pub(crate) fn note<M: GuestMemory>(&mut self, mem: &M, addr: u64, len: u32, writable: bool) {
        self.noted();
        let usable = writable && len > 0 && mem.check_range(addr, u64::from(len)).is_ok();
        let seg = usable.then_some(Segment { addr, len });
        if writable && !self.noted_writable {
            self.noted_writable = true;
            self.first_writable = seg;
        }
        self.tail = seg;
    }

    /// Validates one buffer descriptor and appends it. Checks, in order:
    /// direction (§"Message Framing": readable before writable), total length, memory
    /// bounds, capacity `N`. Empty descriptors are checked but not kept.
    ///
    /// An accepted descriptor costs no salvage bookkeeping (it is derived
    /// from `segments` if the walk later goes wrong); a refused one is
    /// noted as [`Self::note`] does.
    #[inline(always)]
    pub(crate) fn push<M: GuestMemory>(
        &mut self,
        mem: &M,
        addr: u64,
        len: u32,
        writable: bool,
    ) -> Result<(), ChainErrorKind> {
        if !writable && self.saw_writable {
            return Err(self.refuse(
                mem,
                addr,
                len,
                writable,
                ChainErrorKind::ReadableAfterWritable,
            ));
        }
        // The total so far fits in a u32 (each push checked it).
        if self
            .readable_len
            .wrapping_add(self.writable_len)
            .checked_add(len)
            .is_none()
        {
            return Err(self.refuse(
                mem,
                addr,
                len,
                writable,
                ChainErrorKind::TotalLengthOverflow,
            ));
        }
        if mem.check_range(addr, u64::from(len)).is_err() {
            let kind = ChainErrorKind::SegmentOutOfMemory { addr, len };
            return Err(self.refuse(mem, addr, len, writable, kind));
        }
        if len == 0 {
            self.push_empty(writable);
            return Ok(());
        }
        if self.segments.push(Segment { addr, len }).is_err() {
            let kind = ChainErrorKind::TooManySegments { capacity: N };
            return Err(self.refuse(mem, addr, len, writable, kind));
        }
        self.saw_writable |= writable;
        // The total fits in a u32 (checked above), so neither sum can wrap.
        if writable {
            self.writable_len = self.writable_len.wrapping_add(len);
        } else {
            self.readable = self.readable.wrapping_add(1);
            self.readable_len = self.readable_len.wrapping_add(len);
        }
        Ok(())
    }

    /// An empty descriptor passed validation: it is not kept, but salvage
    /// must know it was there. (Walks call `push` only until something
    /// goes wrong and `note` after, so the salvage fields are not live
    /// here.)
    #[cold]
    fn push_empty(&mut self, writable: bool) {
        if writable && !self.saw_writable {
            self.first_writable_empty = true;
        }
        self.saw_writable |= writable;
        self.empty_at = self.segments.len();
    }

    /// A descriptor failed validation with `kind`: note it for salvage.
    #[cold]
    fn refuse<M: GuestMemory>(
        &mut self,
        mem: &M,
        addr: u64,
        len: u32,
        writable: bool,
        kind: ChainErrorKind,
    ) -> ChainErrorKind {
        self.note(mem, addr, len, writable);
        kind
    }

    /// What to pass to `push_used` to return this chain.
    pub fn head(&self) -> Head {
        self.head
    }

    /// The id the used ring will carry (split: head index; packed: buffer id).
    pub fn id(&self) -> u16 {
        self.head.id
    }

    /// All non-empty segments, readable ones first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The device-readable segments.
    pub fn readable_segments(&self) -> &[Segment] {
        self.segments.get(..self.readable).unwrap_or_default()
    }

    /// The device-writable segments.
    pub fn writable_segments(&self) -> &[Segment] {
        self.segments.get(self.readable..).unwrap_or_default()
    }

    /// Total device-readable bytes.
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total device-writable bytes.
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    /// A cursor over the readable bytes, in chain order.
    #[inline]
    pub fn reader<'a, M: GuestMemory>(&'a self, mem: &'a M) -> Reader<'a, M> {
        Reader {
            mem,
            cursor: Cursor::new(self.readable_segments(), self.readable_len),
        }
    }

    /// A cursor over the writable bytes, in chain order.
    #[inline]
    pub fn writer<'a, M: GuestMemory>(&'a self, mem: &'a M) -> Writer<'a, M> {
        Writer {
            mem,
            cursor: Cursor::new(self.writable_segments(), self.writable_len),
        }
    }
}

/// Why a [`Reader`] or [`Writer`] access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AccessError {
    /// The chain has fewer bytes left than the access needs; nothing was
    /// transferred and the cursor did not move. For a request this means the
    /// driver's buffer is too short for what the device expects.
    ShortChain {
        /// Bytes the access needed.
        wanted: usize,
        /// Bytes left in this direction of the chain.
        remaining: u32,
    },
    /// Guest memory changed under the chain (e.g. a region was removed)
    /// after validation.
    Memory(MemoryError),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortChain { wanted, remaining } => {
                write!(f, "chain has {remaining} bytes left, {wanted} needed")
            }
            Self::Memory(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for AccessError {}

impl From<MemoryError> for AccessError {
    fn from(e: MemoryError) -> Self {
        Self::Memory(e)
    }
}

/// Position in one direction of a chain.
#[derive(Clone, Debug)]
struct Cursor<'a> {
    segments: &'a [Segment],
    /// Bytes consumed of `segments[0]`.
    offset: u32,
    remaining: u32,
    done: u32,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn new(segments: &'a [Segment], total: u32) -> Self {
        Self {
            segments,
            offset: 0,
            remaining: total,
            done: 0,
        }
    }

    /// The guest address of the next `n` bytes, if they lie in the current
    /// segment (then they are also within `remaining`).
    #[inline(always)]
    fn contiguous(&self, n: usize) -> Option<u64> {
        let seg = self.segments.first()?;
        let n32 = u32::try_from(n).ok()?;
        (n32 <= seg.len.wrapping_sub(self.offset))
            .then(|| seg.addr.wrapping_add(u64::from(self.offset)))
    }

    /// Moves over `n` bytes that [`Self::contiguous`] located.
    #[inline(always)]
    fn consume_contiguous(&mut self, n: usize) {
        let n32 = n as u32;
        if let Some((seg, rest)) = self.segments.split_first() {
            if n32 == seg.len.wrapping_sub(self.offset) {
                self.segments = rest;
                self.offset = 0;
            } else {
                self.offset = self.offset.wrapping_add(n32);
            }
        }
        self.done = self.done.wrapping_add(n32);
        self.remaining = self.remaining.wrapping_sub(n32);
    }

    /// Moves over `n` bytes, calling `f(guest_addr, offset_in_access, len)`
    /// for each contiguous piece. Fails without moving if fewer than `n`
    /// bytes are left.
    #[inline(always)]
    fn advance(
        &mut self,
        n: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), MemoryError>,
    ) -> Result<(), AccessError> {
        let short = AccessError::ShortChain {
            wanted: n,
            remaining: self.remaining,
        };
        let n32 = u32::try_from(n).map_err(|_| short)?;
        if n32 > self.remaining {
            return Err(short);
        }
        // Fast path: the access lies within the current segment (a request
        // header in its own descriptor, a status byte), one piece.
        if let Some((seg, rest)) = self.segments.split_first() {
            let avail = seg.len.wrapping_sub(self.offset);
            if n32 <= avail {
                f(seg.addr.wrapping_add(u64::from(self.offset)), 0, n)?;
                if n32 == avail {
                    self.segments = rest;
                    self.offset = 0;
                } else {
                    self.offset = self.offset.wrapping_add(n32);
                }
                self.done = self.done.wrapping_add(n32);
                self.remaining = self.remaining.wrapping_sub(n32);
                return Ok(());
            }
        }
        self.advance_pieces(n32, short, f)
    }

    /// The rest of `advance`: an access spanning segments, piece by piece.
    #[inline(never)]
    fn advance_pieces(
        &mut self,
        n32: u32,
        short: AccessError,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), MemoryError>,
    ) -> Result<(), AccessError> {
        let mut at: usize = 0;
        let mut left = n32;
        while left > 0 {
            let Some((seg, rest)) = self.segments.split_first() else {
                return Err(short);
            };
            // `offset < seg.len` holds: a fully consumed segment is dropped.
            let avail = seg.len.wrapping_sub(self.offset);
            let take = avail.min(left);
            // The segment was checked to be in memory, so addr + offset fits.
            f(
                seg.addr.wrapping_add(u64::from(self.offset)),
                at,
                take as usize,
            )?;
            at = at.wrapping_add(take as usize);
            left = left.wrapping_sub(take);
            self.done = self.done.wrapping_add(take);
            self.remaining = self.remaining.wrapping_sub(take);
            if take == avail {
                self.segments = rest;
                self.offset = 0;
            } else {
                self.offset = self.offset.wrapping_add(take);
            }
        }
        Ok(())
    }
}

/// Reads the device-readable part of a chain as one byte stream.
#[derive(Debug)]
pub struct Reader<'a, M> {
    mem: &'a M,
    cursor: Cursor<'a>,
}

impl<M: GuestMemory> Reader<'_, M> {
    /// Fills `buf` from the chain.
    ///
    /// # Errors
    /// [`AccessError::ShortChain`] if fewer than `buf.len()` bytes are left
    /// (nothing is consumed); [`AccessError::Memory`] if memory changed.
    #[inline(always)]
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), AccessError> {
        let mem = self.mem;
        // A header in its own descriptor: one read of the caller's length
        // (a constant for `read_obj`, so the copy folds to a load or two).
        if let Some(addr) = self.cursor.contiguous(buf.len()) {
            mem.read(addr, buf)?;
            self.cursor.consume_contiguous(buf.len());
            return Ok(());
        }
        self.cursor.advance(buf.len(), |addr, at, n| {
            match buf.get_mut(at..at.wrapping_add(n)) {
                Some(dst) => mem.read(addr, dst),
                None => Ok(()),
            }
        })
    }

    /// Reads a wire structure (e.g. a request header), wherever the driver
    /// split it across descriptors.
    ///
    /// # Errors
    /// As for [`Reader::read_exact`].
    #[inline(always)]
    pub fn read_obj<T: FromBytes + IntoBytes>(&mut self) -> Result<T, AccessError> {
        // In one segment: the memory's own `read_obj` (which can keep the
        // object in registers).
        if let Some(addr) = self.cursor.contiguous(size_of::<T>()) {
            let value = self.mem.read_obj::<T>(addr)?;
            self.cursor.consume_contiguous(size_of::<T>());
            return Ok(value);
        }
        let mut value = T::new_zeroed();
        self.read_exact(value.as_mut_bytes())?;
        Ok(value)
    }

    /// Skips `n` bytes.
    ///
    /// # Errors
    /// [`AccessError::ShortChain`] if fewer are left.
    pub fn skip(&mut self, n: usize) -> Result<(), AccessError> {
        self.cursor.advance(n, |_, _, _| Ok(()))
    }

    /// Readable bytes not yet read.
    pub fn remaining(&self) -> u32 {
        self.cursor.remaining
    }

    /// Bytes read (or skipped) so far.
    pub fn bytes_read(&self) -> u32 {
        self.cursor.done
    }
}

/// Writes the device-writable part of a chain as one byte stream.
#[derive(Debug)]
pub struct Writer<'a, M> {
    mem: &'a M,
    cursor: Cursor<'a>,
}

impl<M: GuestMemory> Writer<'_, M> {
    /// Writes all of `buf` into the chain.
    ///
    /// # Errors
    /// [`AccessError::ShortChain`] if fewer than `buf.len()` bytes are left
    /// (nothing is written); [`AccessError::Memory`] if memory changed.
    #[inline]
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), AccessError> {
        let mem = self.mem;
        if let Some(addr) = self.cursor.contiguous(buf.len()) {
            mem.write(addr, buf)?;
            self.cursor.consume_contiguous(buf.len());
            return Ok(());
        }
        self.cursor.advance(buf.len(), |addr, at, n| {
            match buf.get(at..at.wrapping_add(n)) {
                Some(src) => mem.write(addr, src),
                None => Ok(()),
            }
        })
    }

    /// Writes a wire structure (e.g. a response header or status).
    ///
    /// # Errors
    /// As for [`Writer::write_all`].
    #[inline]
    pub fn write_obj<T: IntoBytes + Immutable>(&mut self, value: &T) -> Result<(), AccessError> {
        if let Some(addr) = self.cursor.contiguous(size_of::<T>()) {
            self.mem.write_obj(addr, value)?;
            self.cursor.consume_contiguous(size_of::<T>());
            return Ok(());
        }
        self.write_all(value.as_bytes())
    }

    /// Writable bytes not yet written.
    pub fn remaining(&self) -> u32 {
        self.cursor.remaining
    }

    /// Bytes written so far, from the first writable byte: the used length
    /// to report (virtio 1.4 §"The Virtqueue Used Ring": the device MUST write at least `len`
    /// bytes before updating the used index).
    pub fn bytes_written(&self) -> u32 {
        self.cursor.done
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::memory::Region;

    /// The salvage bookkeeping as it was before it became lazy: every
    /// descriptor met is noted as it comes.
    #[derive(Default)]
    struct Model {
        first_writable: Option<Segment>,
        noted_writable: bool,
        tail: Option<Segment>,
    }

    impl Model {
        fn note(&mut self, mem: &Region, addr: u64, len: u32, writable: bool) {
            let usable = writable && len > 0 && mem.check_range(addr, u64::from(len)).is_ok();
            let seg = usable.then_some(Segment { addr, len });
            if writable && !self.noted_writable {
                self.noted_writable = true;
                self.first_writable = seg;
            }
            self.tail = seg;
        }
    }

    // Random descriptor lists walked as the engines walk them (push until
    // the first error, note after): the salvage and the partial head match
    // the eager model, and valid chains match too.
    #[test]
    fn lazy_salvage_matches_noting_every_descriptor() {
        #[repr(C, align(8))]
        struct Buf([u8; 256]);
        let mut buf = Buf([0; 256]);
        let mem = Region::new(0x1000, &mut buf.0).unwrap();
        let mut x: u32 = 99;
        let mut rand = |n: u32| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 8) % n
        };
        let mut chain = Chain::<3>::new();
        for _ in 0..if cfg!(miri) { 500 } else { 20_000 } {
            chain.start(7);
            let mut model = Model::default();
            let mut bad = None;
            let descs = 1 + rand(6);
            for _ in 0..descs {
                let addr = match rand(4) {
                    0 => 0x10f0,
                    _ => 0x1000 + u64::from(rand(64)) * 4,
                };
                let len = match rand(4) {
                    0 => 0,
                    1 => u32::MAX - rand(2),
                    _ => 1 + rand(32),
                };
                let writable = rand(3) != 0;
                model.note(&mem, addr, len, writable);
                if bad.is_none() {
                    bad = chain.push(&mem, addr, len, writable).err();
                } else {
                    chain.note(&mem, addr, len, writable);
                }
            }
            let reached_end = rand(2) == 0;
            if bad.is_some() {
                let salvage = chain.salvage(reached_end);
                assert_eq!(salvage.first_writable, model.first_writable);
                let tail = if reached_end { model.tail } else { None };
                assert_eq!(salvage.tail, tail);
                let head = chain.partial_head();
                assert_eq!(head.writable, model.first_writable.map_or(0, |s| s.len));
            } else {
                // A chain the walk then refuses for a reason of its own
                // (a loop, a bad `next`) salvages the same way.
                let salvage = chain.salvage(reached_end);
                assert_eq!(salvage.first_writable, model.first_writable);
                let tail = if reached_end { model.tail } else { None };
                assert_eq!(salvage.tail, tail);
            }
        }
    }
}
