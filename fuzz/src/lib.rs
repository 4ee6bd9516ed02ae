//! What the fuzz targets share: guest memory that fails the run on any
//! access outside the region and bounds the work, the input formats, and
//! small device backends. The seed generator (`src/bin/seeds.rs`) writes
//! inputs in the same formats, so the formats live here once.

use std::cell::{Cell, RefCell};

use virtio_core::memory::{GuestMemory, MemoryError, Region};
use virtio_core::queue::{Chain, Segment};

/// Guest memory every target uses: this many bytes at guest address 0.
pub const MEM_LEN: usize = 0x8000;
/// Accesses allowed per run: any loop the driver could cause would blow it.
pub const STEP_LIMIT: u64 = 1 << 20;

/// Fixed ring placement of the queue targets.
pub const DESC: u64 = 0x0;
pub const DRIVER_AREA: u64 = 0x1000;
pub const DEVICE_AREA: u64 = 0x2000;
/// Where the seeds put buffers and indirect tables.
pub const DATA: u64 = 0x2800;

/// A region that panics (fails the fuzz run) when the code under test
/// reads or writes outside it, or takes more than [`STEP_LIMIT`] accesses,
/// and records every write so a target can check where the device wrote.
/// Range *checks* outside the region are fine: that is how validation asks.
pub struct Guarded<'a> {
    inner: Region<'a>,
    steps: Cell<u64>,
    pub writes: RefCell<Vec<(u64, u64)>>,
}

impl<'a> Guarded<'a> {
    pub fn new(host: &'a mut [u8]) -> Self {
        Self {
            inner: Region::new(0, host).expect("region"),
            steps: Cell::new(0),
            writes: RefCell::new(Vec::new()),
        }
    }

    fn touch(&self, addr: u64, len: u64) {
        let steps = self.steps.get() + 1;
        assert!(
            steps <= STEP_LIMIT,
            "more than {STEP_LIMIT} memory accesses: unbounded work"
        );
        self.steps.set(steps);
        let end = u128::from(addr) + u128::from(len);
        assert!(
            end <= MEM_LEN as u128,
            "access of {len} bytes at {addr:#x} outside the region"
        );
    }

    /// The region itself, for a harness's own driver-side accesses, which
    /// are neither guarded nor recorded.
    pub fn raw(&self) -> &Region<'a> {
        &self.inner
    }

    /// True if every recorded write lies inside one of `areas`.
    pub fn writes_within(&self, areas: &[(u64, u64)]) -> Result<(), (u64, u64)> {
        for &(addr, len) in self.writes.borrow().iter() {
            let inside = areas
                .iter()
                .any(|&(start, n)| addr >= start && addr + len <= start + n);
            if !inside {
                return Err((addr, len));
            }
        }
        Ok(())
    }
}

impl GuestMemory for Guarded<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if !buf.is_empty() {
            self.touch(addr, buf.len() as u64);
        }
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        if !buf.is_empty() {
            self.touch(addr, buf.len() as u64);
            self.writes.borrow_mut().push((addr, buf.len() as u64));
        }
        self.inner.write(addr, buf)
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.touch(addr, 2);
        self.inner.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.touch(addr, 2);
        self.writes.borrow_mut().push((addr, 2));
        self.inner.store_u16_release(addr, value)
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        let steps = self.steps.get() + 1;
        assert!(
            steps <= STEP_LIMIT,
            "more than {STEP_LIMIT} memory accesses: unbounded work"
        );
        self.steps.set(steps);
        self.inner.check_range(addr, len)
    }
}

/// Backing store for a [`Guarded`] region.
pub fn host() -> Vec<u64> {
    vec![0u64; MEM_LEN / 8]
}

/// Copies `image` to the start of guest memory (the rest stays zero).
pub fn load_image(mem: &impl GuestMemory, image: &[u8]) {
    let n = image.len().min(MEM_LEN);
    mem.write(0, &image[..n]).expect("image");
}

/// Input of the queue targets: a header, then the memory image.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | queue size selector (split: `1 << (b % 6)`; packed: `b % 48 + 1`) |
/// | 1..9 | negotiated features, le64 |
/// | 9..11 | starting available position (split index; packed `slot | wrap << 15`) |
/// | 11..13 | starting used position, same form (packed only; a split ring resumes with used = available) |
/// | 13 | bit 0: complete in reverse order; bits 1..: max chains to pop |
/// | 14.. | memory image from guest address 0 |
pub struct QueueInput<'a> {
    pub size_byte: u8,
    pub features: u64,
    pub avail: u16,
    pub used: u16,
    pub reverse: bool,
    pub max_pops: u8,
    pub image: &'a [u8],
}

pub const QUEUE_HEADER: usize = 14;

impl<'a> QueueInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let h = data.get(..QUEUE_HEADER)?;
        Some(Self {
            size_byte: h[0],
            features: u64::from_le_bytes(h[1..9].try_into().ok()?),
            avail: u16::from_le_bytes([h[9], h[10]]),
            used: u16::from_le_bytes([h[11], h[12]]),
            reverse: h[13] & 1 != 0,
            max_pops: h[13] >> 1,
            image: &data[QUEUE_HEADER..],
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.size_byte];
        v.extend_from_slice(&self.features.to_le_bytes());
        v.extend_from_slice(&self.avail.to_le_bytes());
        v.extend_from_slice(&self.used.to_le_bytes());
        v.push(u8::from(self.reverse) | (self.max_pops << 1));
        v.extend_from_slice(self.image);
        v
    }
}

/// One MMIO access of the `mmio_block` target: 7 bytes, `kind` (bit 0:
/// write; bits 1-2: width 0 byte, 1 halfword, 2+ word), `le16 offset`,
/// `le32 value`.
#[derive(Clone, Copy, Debug)]
pub struct MmioOp {
    pub write: bool,
    pub width: u8,
    pub offset: u16,
    pub value: u32,
}

impl MmioOp {
    pub const LEN: usize = 7;

    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; 7] = b.try_into().ok()?;
        Some(Self {
            write: b[0] & 1 != 0,
            width: (b[0] >> 1) & 3,
            offset: u16::from_le_bytes([b[1], b[2]]),
            value: u32::from_le_bytes([b[3], b[4], b[5], b[6]]),
        })
    }

    pub fn encode(&self) -> [u8; 7] {
        let v = self.value.to_le_bytes();
        let o = self.offset.to_le_bytes();
        [
            u8::from(self.write) | (self.width << 1),
            o[0],
            o[1],
            v[0],
            v[1],
            v[2],
            v[3],
        ]
    }

    pub fn write32(offset: u16, value: u32) -> Self {
        Self {
            write: true,
            width: 2,
            offset,
            value,
        }
    }
}

/// Input of the `mmio_block` target: `le16 image_len`, the memory image,
/// then [`MmioOp`]s.
pub fn split_mmio_input(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::from(u16::from_le_bytes([*data.first()?, *data.get(1)?]));
    let rest = data.get(2..)?;
    let n = n.min(rest.len());
    Some(rest.split_at(n))
}

/// Input of the `device_requests` target.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | device: 0 rng, 1 block, 2 console (`% 3`) |
/// | 1 | queue selector (`% num_queues`) |
/// | 2 | option bits (block: read-only, discard, write-zeroes; console: multiport) |
/// | 3 | readable segment count (`% 5`) |
/// | 4 | writable segment count (`% 5`) |
/// | 5.. | one `le16` length per segment (`% 1025`), then the readable bytes |
pub struct RequestInput<'a> {
    pub device: u8,
    pub queue: u8,
    pub options: u8,
    pub readable: Vec<u16>,
    pub writable: Vec<u16>,
    pub bytes: &'a [u8],
}

impl<'a> RequestInput<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let h = data.get(..5)?;
        let (nr, nw) = (usize::from(h[3] % 5), usize::from(h[4] % 5));
        let mut at = 5;
        let mut lens = Vec::new();
        for _ in 0..nr + nw {
            let l = data.get(at..at + 2)?;
            lens.push(u16::from_le_bytes([l[0], l[1]]) % 1025);
            at += 2;
        }
        let writable = lens.split_off(nr);
        Some(Self {
            device: h[0] % 3,
            queue: h[1],
            options: h[2],
            readable: lens,
            writable,
            bytes: &data[at..],
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![
            self.device,
            self.queue,
            self.options,
            self.readable.len() as u8,
            self.writable.len() as u8,
        ];
        for l in self.readable.iter().chain(&self.writable) {
            v.extend_from_slice(&l.to_le_bytes());
        }
        v.extend_from_slice(self.bytes);
        v
    }
}

/// The deterministic generator the rng device draws from (not cryptographic).
pub use virtio_devices::rng::test_utils::XorShift64;

/// A console port backend that swallows output and has no input.
#[derive(Default)]
pub struct Sink(pub usize);

impl embedded_io::ErrorType for Sink {
    type Error = core::convert::Infallible;
}
impl embedded_io::Read for Sink {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}
impl embedded_io::ReadReady for Sink {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(false)
    }
}
impl embedded_io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A validated chain's invariants: its segments lie in memory, are not
/// empty, and add up to its readable and writable lengths.
pub fn check_chain<M: GuestMemory, const N: usize>(mem: &M, chain: &Chain<N>) {
    let total = |segs: &[Segment]| segs.iter().map(|s| u64::from(s.len)).sum::<u64>();
    assert_eq!(
        total(chain.readable_segments()),
        u64::from(chain.readable_len())
    );
    assert_eq!(
        total(chain.writable_segments()),
        u64::from(chain.writable_len())
    );
    for s in chain.segments() {
        assert!(
            s.len > 0 && mem.check_range(s.addr, u64::from(s.len)).is_ok(),
            "segment outside memory"
        );
    }
}

/// The window layout of the `shm_device` target: 8 slots of 64 bytes each
/// way and a 16 KiB data area, inside the guarded memory.
pub fn shm_layout() -> virtio_transport_shm::Layout {
    virtio_transport_shm::Layout::new(8, 64, 0x4000).expect("shm layout")
}

/// Input of the `shm_device` target: byte 0 (bit 0: overwrite the ring
/// indices with bytes 1..9 first), bytes 1..9, `le16 n` and `n` bytes
/// copied to the start of the data area (where a driver puts virtqueues),
/// then messages as `u8 len` plus `len` bytes, each written into the next
/// driver-to-device slot as a driver would, whatever its framing says.
pub struct ShmInput<'a> {
    pub flags: u8,
    pub indices: [u8; 8],
    pub data_area: &'a [u8],
    pub messages: Vec<&'a [u8]>,
}

impl<'a> ShmInput<'a> {
    pub fn parse(data: &'a [u8]) -> Self {
        let flags = data.first().copied().unwrap_or(0);
        let mut indices = [0u8; 8];
        if let Some(b) = data.get(1..9) {
            indices.copy_from_slice(b);
        }
        let n = data
            .get(9..11)
            .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
        let rest = data.get(11..).unwrap_or(&[]);
        let (data_area, mut rest) = rest.split_at(n.min(rest.len()));
        let mut messages = Vec::new();
        while let Some((&len, tail)) = rest.split_first() {
            let n = usize::from(len).min(tail.len());
            messages.push(&tail[..n]);
            rest = &tail[n..];
        }
        Self {
            flags,
            indices,
            data_area,
            messages,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.flags];
        v.extend_from_slice(&self.indices);
        v.extend_from_slice(&(self.data_area.len() as u16).to_le_bytes());
        v.extend_from_slice(self.data_area);
        for m in &self.messages {
            v.push(m.len() as u8);
            v.extend_from_slice(m);
        }
        v
    }
}

/// A virtio-msg message: header (type, id, dev_num, token, size) + payload.
pub fn message(type_: u8, id: u8, dev: u16, token: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![type_, id];
    m.extend_from_slice(&dev.to_le_bytes());
    m.extend_from_slice(&token.to_le_bytes());
    m.extend_from_slice(&((8 + payload.len()) as u16).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// One request of the `i2c_requests` target (11 bytes each after a
/// 1-byte option header).
///
/// | bytes | meaning |
/// |---|---|
/// | 0..2 | `addr` (le16) |
/// | 2..6 | `flags` (le32) |
/// | 6 | write data length (`% 24`) |
/// | 7 | read room (`% 24`) |
/// | 8 | shape: bit 0 header split in two descriptors, bit 1 no status byte, bit 2 an extra readable descriptor after the writable ones (malformed) |
/// | 9..11 | seed of the write data |
#[derive(Clone, Debug)]
pub struct I2cRequest {
    pub addr: u16,
    pub flags: u32,
    pub write: u8,
    pub read: u8,
    pub shape: u8,
    pub seed: u16,
}

/// Input of the `i2c_requests` target: byte 0 options (bits 0-1: the
/// call budget, 1 + value; bit 2: the EEPROM preloaded with a pattern),
/// then up to 8 [`I2cRequest`]s.
pub struct I2cInput {
    pub options: u8,
    pub requests: Vec<I2cRequest>,
}

impl I2cInput {
    pub const RECORD: usize = 11;

    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&options, rest) = data.split_first()?;
        let requests = rest
            .chunks_exact(Self::RECORD)
            .take(8)
            .map(|r| I2cRequest {
                addr: u16::from_le_bytes([r[0], r[1]]),
                flags: u32::from_le_bytes([r[2], r[3], r[4], r[5]]),
                write: r[6] % 24,
                read: r[7] % 24,
                shape: r[8],
                seed: u16::from_le_bytes([r[9], r[10]]),
            })
            .collect();
        Some(Self { options, requests })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.options];
        for r in &self.requests {
            v.extend_from_slice(&r.addr.to_le_bytes());
            v.extend_from_slice(&r.flags.to_le_bytes());
            v.extend_from_slice(&[r.write, r.read, r.shape]);
            v.extend_from_slice(&r.seed.to_le_bytes());
        }
        v
    }
}

/// Input of `rpmb_requests`: an options byte, then up to six requests of
/// [`RpmbRequest::RECORD`] bytes.
///
/// Options: bits 0..2 budget - 1; bit 2 key programmed beforehand; bit 3
/// counter starts at `0xffff_fffe`; bit 4 storage reads fail; bit 5
/// storage writes fail; bit 6 the counter cannot be read; bit 7 the key
/// store cannot be read.
pub struct RpmbInput {
    pub options: u8,
    pub requests: Vec<RpmbRequest>,
}

/// One RPMB request as the harness builds it.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | bits 0..3: type (1..5 the spec's, else `raw` below); bit 3: a RESULT_READ frame after it; bit 4: first frame split in two buffers; bit 5: a readable buffer after the writable ones (malformed chain); bits 6..8: readable part cut short by that many × 100 bytes |
/// | 1 | block_count (% 6) |
/// | 2..4 | address, le16 |
/// | 4 | write_counter = the starting counter + this % 4 |
/// | 5 | MAC: 0 correct (the harness's key), 1 one bit off, else zero; for PROGRAM_KEY 0 is the harness's key |
/// | 6 | response frames of room (% 7) |
/// | 7 | extra writable bytes after them (% 512; 0 none) |
/// | 8 | data seed |
/// | 9 | raw request type for bits 0..3 of byte 0 outside 1..5 |
/// | 10 | block_count of the RESULT_READ frame |
#[derive(Clone, Copy, Debug)]
pub struct RpmbRequest {
    pub shape: u8,
    pub block_count: u8,
    pub address: u16,
    pub counter: u8,
    pub mac: u8,
    pub out: u8,
    pub extra: u16,
    pub seed: u8,
    pub raw: u8,
    pub rr_count: u8,
}

impl RpmbRequest {
    pub const RECORD: usize = 11;
}

impl RpmbInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&options, rest) = data.split_first()?;
        let requests = rest
            .chunks_exact(RpmbRequest::RECORD)
            .take(6)
            .map(|r| RpmbRequest {
                shape: r[0],
                block_count: r[1] % 6,
                address: u16::from_le_bytes([r[2], r[3]]),
                counter: r[4] % 4,
                mac: r[5],
                out: r[6] % 7,
                extra: u16::from(r[7]) * 2 % 512,
                seed: r[8],
                raw: r[9],
                rr_count: r[10],
            })
            .collect();
        Some(Self { options, requests })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.options];
        for r in &self.requests {
            v.push(r.shape);
            v.push(r.block_count);
            v.extend_from_slice(&r.address.to_le_bytes());
            v.extend_from_slice(&[
                r.counter,
                r.mac,
                r.out,
                (r.extra / 2) as u8,
                r.seed,
                r.raw,
                r.rr_count,
            ]);
        }
        v
    }
}

/// Input of `watchdog_requests`: an options byte (bits 0..2 budget - 1,
/// bits 2..8 timeout in seconds + 1), then operations of two bytes: kind
/// (% 5) and argument.
///
/// | kind | operation |
/// |---|---|
/// | 0 | queue a ping: one writable buffer of `arg % 8 + 1` bytes |
/// | 1 | queue a chain that is not a ping (a readable buffer first, then `arg % 3` writable bytes) |
/// | 2 | the clock advances `arg` seconds |
/// | 3 | notify the queue (and poll while work is left) |
/// | 4 | poll (a timer tick); arg 0xff: a device reset and bring-up instead |
pub struct WatchdogInput {
    pub options: u8,
    pub ops: Vec<(u8, u8)>,
}

impl WatchdogInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&options, rest) = data.split_first()?;
        let ops = rest
            .chunks_exact(2)
            .take(64)
            .map(|o| (o[0] % 5, o[1]))
            .collect();
        Some(Self { options, ops })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.options];
        for (k, a) in &self.ops {
            v.extend_from_slice(&[*k, *a]);
        }
        v
    }
}

/// Input of `scmi_requests`: an options byte, then up to 48 operations of
/// [`ScmiOp::RECORD`] bytes.
///
/// Options: bits 0..2 budget - 1; bit 2 VIRTIO_SCMI_F_P2A_CHANNELS
/// negotiated (and the eventq set up); bit 3 sensor 1 fails its reads;
/// bit 4 the platform has no power domain protocol.
pub struct ScmiInput {
    pub options: u8,
    pub ops: Vec<ScmiOp>,
}

/// One operation of `scmi_requests`.
///
/// | byte | meaning |
/// |---|---|
/// | 0 | kind % 6: 0 queue a command, 1 post an eventq buffer of `room % 48` bytes, 2 a sensor reading changes (sensor `protocol % 2`, value `message × 1000`), 3 another agent resets domain `protocol % 2`, 4 notify the cmdq, 5 poll |
/// | 1 | protocol: below 0xe0 one of 0x10, 0x11, 0x13, 0x14, 0x15, 0x16, 0x17 (`% 7`), else the byte itself |
/// | 2 | message id |
/// | 3 | bits 0..3 parameter words (% 5); bit 3 message type 1..3 instead of 0; bits 4..6 bytes cut off the end; bit 6 a readable buffer after the writable one (malformed chain) |
/// | 4..7 | parameter word 0 (little-endian); word i is word 0 with byte i xored with `i`, and flags words get bit 0 from byte 4 |
/// | 7 | writable room for the response (`% 160`) |
#[derive(Clone, Copy, Debug)]
pub struct ScmiOp {
    pub kind: u8,
    pub protocol: u8,
    pub message: u8,
    pub shape: u8,
    pub param: [u8; 3],
    pub room: u8,
}

impl ScmiOp {
    pub const RECORD: usize = 8;
    const PROTOCOLS: [u8; 7] = [0x10, 0x11, 0x13, 0x14, 0x15, 0x16, 0x17];

    /// The protocol id the operation sends.
    pub fn protocol_id(&self) -> u8 {
        if self.protocol < 0xe0 {
            Self::PROTOCOLS[usize::from(self.protocol) % 7]
        } else {
            self.protocol
        }
    }

    /// The parameter words.
    pub fn params(&self) -> Vec<u32> {
        let base = u32::from_le_bytes([self.param[0], self.param[1], self.param[2], 0]);
        (0..usize::from(self.shape & 7) % 5)
            .map(|i| base ^ ((i as u32) << (8 * (i % 3))))
            .collect()
    }
}

impl ScmiInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&options, rest) = data.split_first()?;
        let ops = rest
            .chunks_exact(ScmiOp::RECORD)
            .take(48)
            .map(|r| ScmiOp {
                kind: r[0] % 6,
                protocol: r[1],
                message: r[2],
                shape: r[3],
                param: [r[4], r[5], r[6]],
                room: r[7] % 160,
            })
            .collect();
        Some(Self { options, ops })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.options];
        for o in &self.ops {
            v.extend_from_slice(&[o.kind, o.protocol, o.message, o.shape]);
            v.extend_from_slice(&o.param);
            v.push(o.room);
        }
        v
    }
}

/// Input of `iommu_requests`: an options byte (bits 0–1 the granule: 4 KiB,
/// 1 byte, 64 KiB; 2 a `domain_range` of 4..=7; 3 an `input_range` of
/// 0x10000..=0xffffffff; 4 the legacy bypass feature instead of
/// `BYPASS_CONFIG`; 5 no PROBE; 6 `F_MMIO` offered; 7 the driver leaves
/// `MAP_UNMAP` out), then up to 64 operations of 16 bytes: `op[0] % 10`
/// ATTACH, DETACH, MAP, UNMAP, PROBE, a raw request type `op[1]`, an
/// event buffer of `op[1]` bytes, a `Translated` access, a `bypass` write
/// of `op[1]`, a device reset; the other bytes are the operation's fields
/// (see the target).
#[derive(Debug)]
pub struct IommuInput {
    pub options: u8,
    pub ops: Vec<[u8; 16]>,
}

impl IommuInput {
    pub fn parse(data: &[u8]) -> Option<Self> {
        let (&options, rest) = data.split_first()?;
        let ops = rest
            .chunks_exact(16)
            .take(64)
            .map(|c| c.try_into().expect("16 bytes"))
            .collect();
        Some(Self { options, ops })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.options];
        for op in &self.ops {
            v.extend_from_slice(op);
        }
        v
    }
}
