//! The workload shared by the queue benchmarks: ring layout, chain shapes,
//! the driver-side refill and the device-side work per request.
//!
//! Every engine does the same work per request: pop the chain (walking
//! every descriptor), read a 16-byte header from the first readable
//! segment, write one status byte to the last writable segment (when the
//! shape has one), and return the buffer; the used index is published and
//! the notification decided once per batch. The rings are laid out by our
//! own driver side at the same guest addresses for every engine, so they
//! all read the same bytes.
//!
//! This crate is a benchmark harness, not library code: setup failures
//! panic with a message.

use virtio_core::driver::{DriverError, PackedDriver, SplitDriver, Used};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{Chain, Queue, QueueConfig, QueueError, Segment};
use virtio_core::spec::Features;

/// Queue size of the criterion benches.
pub const QUEUE_SIZE: u16 = 256;
/// The largest queue size this layout holds: one 64-byte indirect table per
/// request slot between [`TABLES`] and [`DATA`] (the ring itself, split or
/// packed, fits below [`TABLES`] up to this size).
pub const MAX_LAYOUT_QUEUE_SIZE: u16 = 1024;
/// The ring sits at guest address 0.
pub const RING: u64 = 0;
/// Indirect tables, one per request slot (4 entries of 16 bytes).
pub const TABLES: u64 = 0x1_0000;
/// Request buffers, one `SLOT`-byte area per request slot.
pub const DATA: u64 = 0x2_0000;
const SLOT: u64 = 2048;

/// Bytes of guest memory a ring of `size` needs with this layout.
pub fn memory_len(size: u16) -> usize {
    (DATA + SLOT * u64::from(size)) as usize
}

/// The chain shapes measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One device-readable 16-byte descriptor (a transmit-style request):
    /// the header is read, there is no status to write.
    One,
    /// The README's example: one device-writable 512-byte descriptor, the
    /// status byte at its end (an rng or receive-style request).
    Writable,
    /// A 16-byte readable request header, a 512-byte writable data buffer
    /// and a 1-byte writable status (a block read): 3 descriptors.
    HeaderStatus,
    /// A 16-byte readable header, two 512-byte readable data buffers and a
    /// 1-byte writable status (a block write).
    Four,
    /// The same four buffers behind one INDIRECT descriptor.
    Indirect,
    /// A chain of `k` direct descriptors (one of [`Shape::CHAIN_LENGTHS`]),
    /// for the scaling against chain length: `k - 1` readable 64-byte
    /// buffers (the first holds the header) and a 1-byte writable status;
    /// `k = 1` is the header alone.
    Chain(u8),
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::One,
        Shape::Writable,
        Shape::HeaderStatus,
        Shape::Four,
        Shape::Indirect,
    ];

    /// The chain lengths of [`Shape::Chain`] the probe measures.
    pub const CHAIN_LENGTHS: [u8; 6] = [1, 2, 4, 8, 16, 32];

    /// The shape called `name` (one of [`Shape::ALL`] or `chain-K` for a
    /// `K` of [`Shape::CHAIN_LENGTHS`]).
    pub fn parse(name: &str) -> Option<Shape> {
        Shape::ALL
            .into_iter()
            .chain(Shape::CHAIN_LENGTHS.map(Shape::Chain))
            .find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Chain(1) => "chain-1",
            Shape::Chain(2) => "chain-2",
            Shape::Chain(4) => "chain-4",
            Shape::Chain(8) => "chain-8",
            Shape::Chain(16) => "chain-16",
            Shape::Chain(32) => "chain-32",
            Shape::Chain(_) => "chain-other",
            Shape::One => "1-desc",
            Shape::Writable => "1-writable",
            Shape::HeaderStatus => "hdr-status",
            Shape::Four => "4-desc",
            Shape::Indirect => "indirect",
        }
    }

    /// Ring descriptors one request takes.
    pub fn ring_descs(self) -> u16 {
        match self {
            Shape::Four => 4,
            Shape::HeaderStatus => 3,
            Shape::Chain(k) => u16::from(k),
            Shape::One | Shape::Writable | Shape::Indirect => 1,
        }
    }

    /// The readable and writable segments of request slot `i`.
    pub fn segments(self, i: u16) -> (Vec<Segment>, Vec<Segment>) {
        let base = DATA + SLOT * u64::from(i);
        let seg = |off: u64, len: u32| Segment {
            addr: base + off,
            len,
        };
        let header = seg(0, 16);
        match self {
            Shape::One => (vec![header], vec![]),
            Shape::Writable => (vec![], vec![seg(0, 512)]),
            Shape::HeaderStatus => (vec![header], vec![seg(64, 512), seg(1600, 1)]),
            Shape::Four | Shape::Indirect => (
                vec![header, seg(64, 512), seg(1024, 512)],
                vec![seg(1600, 1)],
            ),
            Shape::Chain(1) => (vec![header], vec![]),
            Shape::Chain(k) => (
                (0..u64::from(k) - 1).map(|j| seg(64 * j, 64)).collect(),
                vec![seg(SLOT - 1, 1)],
            ),
        }
    }
}

/// Our driver side of either ring format.
pub enum Driver {
    Split(SplitDriver),
    Packed(Box<PackedDriver<{ virtio_core::spec::MAX_QUEUE_SIZE as usize }>>),
}

impl Driver {
    /// Lays out and initialises a ring of `size` at [`RING`].
    pub fn new<M: GuestMemory>(mem: &M, size: u16, features: Features) -> (Self, QueueConfig) {
        if features.contains(Features::RING_PACKED) {
            let cfg = PackedDriver::<0>::layout(RING, size);
            let drv = PackedDriver::new(mem, cfg, features).expect("packed ring layout");
            (Driver::Packed(Box::new(drv)), cfg)
        } else {
            let cfg = SplitDriver::layout(RING, size);
            let drv = SplitDriver::new(mem, cfg, features).expect("split ring layout");
            (Driver::Split(drv), cfg)
        }
    }

    pub fn num_free(&self) -> u16 {
        match self {
            Driver::Split(d) => d.num_free(),
            Driver::Packed(d) => d.num_free(),
        }
    }

    /// Adds request slot `i` in `shape`.
    pub fn add<M: GuestMemory>(
        &mut self,
        mem: &M,
        shape: Shape,
        i: u16,
    ) -> Result<u16, DriverError> {
        let (rd, wr) = shape.segments(i);
        if shape != Shape::Indirect {
            return self.add_segments(mem, &rd, &wr);
        }
        let table = TABLES + 64 * u64::from(i);
        match self {
            Driver::Split(d) => d.add_indirect(mem, table, &rd, &wr),
            Driver::Packed(d) => d.add_indirect(mem, table, &rd, &wr),
        }
    }

    /// Adds a chain of direct descriptors.
    pub fn add_segments<M: GuestMemory>(
        &mut self,
        mem: &M,
        readable: &[Segment],
        writable: &[Segment],
    ) -> Result<u16, DriverError> {
        match self {
            Driver::Split(d) => d.add(mem, readable, writable),
            Driver::Packed(d) => d.add(mem, readable, writable),
        }
    }

    /// Makes the added chains visible; true if the device wants a kick.
    pub fn publish_avail<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        match self {
            Driver::Split(d) => d.publish_avail(mem),
            Driver::Packed(d) => d.publish_avail(mem),
        }
    }

    pub fn pop_used<M: GuestMemory>(&mut self, mem: &M) -> Result<Option<Used>, DriverError> {
        match self {
            Driver::Split(d) => d.pop_used(mem),
            Driver::Packed(d) => d.pop_used(mem),
        }
    }

    pub fn enable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<bool, DriverError> {
        match self {
            Driver::Split(d) => d.enable_interrupts(mem),
            Driver::Packed(d) => d.enable_interrupts(mem),
        }
    }

    pub fn disable_interrupts<M: GuestMemory>(&mut self, mem: &M) -> Result<(), DriverError> {
        match self {
            Driver::Split(d) => d.disable_interrupts(mem),
            Driver::Packed(d) => d.disable_interrupts(mem),
        }
    }

    /// Collects every used buffer, then fills the whole ring with `shape`
    /// requests and publishes them: one full batch for the device.
    pub fn refill<M: GuestMemory>(&mut self, mem: &M, shape: Shape) -> u16 {
        while self.pop_used(mem).unwrap().is_some() {}
        let mut n = 0;
        while self.num_free() >= shape.ring_descs() {
            self.add(mem, shape, n).unwrap();
            n += 1;
        }
        self.publish_avail(mem).unwrap();
        n
    }
}

/// The device's work for one request on our engines: the 16-byte header
/// from the readable part when there is one, a status byte at the end of
/// the last writable segment when there is one.
#[inline]
pub fn serve<M: GuestMemory, const N: usize>(mem: &M, chain: &Chain<N>) -> u32 {
    if chain.readable_len() != 0 {
        let header: [u8; 16] = chain.reader(mem).read_obj().unwrap();
        core::hint::black_box(header);
    }
    match chain.writable_segments().last() {
        Some(status) => {
            mem.write_obj(status.addr + u64::from(status.len) - 1, &0u8)
                .unwrap();
            chain.writable_len()
        }
        None => 0,
    }
}

/// Our device-side queue as the benches use it: in-flight tables for any
/// queue size.
pub type BenchQueue = Queue<32768>;

/// Pops everything available on `q` into a reused `Chain<N>`, serves it,
/// and publishes once. Returns the requests served and whether the driver
/// wants an interrupt.
#[inline(never)]
pub fn device_batch<M: GuestMemory, const S: usize, const N: usize>(
    q: &mut Queue<S>,
    mem: &M,
    chain: &mut Chain<N>,
) -> Result<(u32, bool), QueueError> {
    let mut n = 0;
    while q.pop(mem, chain)? {
        let written = serve(mem, chain);
        q.push_used(mem, chain.head(), written)?;
        n += 1;
    }
    Ok((n, q.publish_used(mem)?))
}

/// Guest memory for the benches and tools: a `u64`-backed buffer served as
/// one region at guest address 0.
pub fn host_memory(size: u16) -> Vec<u64> {
    vec![0u64; memory_len(size).div_ceil(8)]
}
