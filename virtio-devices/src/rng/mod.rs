//! The entropy device (ID 4, virtio 1.4 §"Entropy Device").
//!
//! One queue, `requestq`. The driver posts device-writable buffers; the
//! device fills each with bytes from a [`rand_core::TryRng`] and returns it
//! with the number of bytes written. A chain with any device-readable part
//! breaks the driver's rule ("the driver MUST NOT place driver-readable
//! buffers into the queue") and is returned untouched with used length 0.

use rand_core::TryRng;
use virtio_core::device::{DeviceQueues, OPT_IN_RING_FEATURES, VirtioDevice};
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Chain;
use virtio_core::spec::{DeviceId, Features};

/// Most segments of one request chain.
pub const CHAIN_SEGMENTS: usize = 16;

/// Bytes drawn from the generator per call.
const CHUNK: usize = 64;

/// The entropy device over a random number generator.
#[derive(Debug)]
pub struct Rng<R> {
    rng: R,
    queue_size: u16,
    backend_errors: u32,
    rejected: u32,
}

impl<R: TryRng> Rng<R> {
    /// An entropy device drawing from `rng`, with a queue of up to 64.
    pub fn new(rng: R) -> Self {
        Self {
            rng,
            queue_size: 64,
            backend_errors: 0,
            rejected: 0,
        }
    }

    /// Sets the largest queue size the driver may choose (1–32768).
    #[must_use]
    pub fn with_queue_size(mut self, size: u16) -> Self {
        self.queue_size = size;
        self
    }

    /// The generator.
    pub fn backend(&mut self) -> &mut R {
        &mut self.rng
    }

    /// Times the generator failed (the buffer was returned with what was
    /// filled so far).
    pub fn backend_errors(&self) -> u32 {
        self.backend_errors
    }

    /// Chains returned untouched because they had device-readable buffers.
    pub fn rejected(&self) -> u32 {
        self.rejected
    }

    /// Fills one request; returns the used length.
    fn fill<M: GuestMemory, const N: usize>(&mut self, chain: &Chain<N>, mem: &M) -> u32 {
        if chain.readable_len() > 0 || !chain.readable_segments().is_empty() {
            self.rejected = self.rejected.saturating_add(1);
            return 0;
        }
        let mut writer = chain.writer(mem);
        let mut buf = [0u8; CHUNK];
        loop {
            let n = (writer.remaining() as usize).min(CHUNK);
            let Some(part) = buf.get_mut(..n) else { break };
            if part.is_empty() {
                break;
            }
            if self.rng.try_fill_bytes(part).is_err() {
                self.backend_errors = self.backend_errors.saturating_add(1);
                break;
            }
            if writer.write_all(part).is_err() {
                break;
            }
        }
        writer.bytes_written()
    }
}

impl<R: TryRng> VirtioDevice for Rng<R> {
    fn device_id(&self) -> DeviceId {
        DeviceId::Entropy
    }

    /// No device features; buffers are completed in the order they come,
    /// so `IN_ORDER` is honoured.
    fn features(&self) -> Features {
        OPT_IN_RING_FEATURES & Features::IN_ORDER
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn max_queue_size(&self, _queue: u16) -> u16 {
        self.queue_size
    }

    fn reset(&mut self) {}

    fn queue_notify<M: GuestMemory, const S: usize>(
        &mut self,
        queue: u16,
        queues: &mut DeviceQueues<'_, M, S>,
    ) {
        let mem = queues.memory();
        let mut chain = Chain::<CHAIN_SEGMENTS>::new();
        while queues.pop(queue, &mut chain) {
            let written = self.fill(&chain, mem);
            queues.push_used(queue, chain.head(), written);
        }
    }
}

#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
#[cfg(test)]
mod tests;
