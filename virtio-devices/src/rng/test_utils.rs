//! Generators for tests, demos and fuzzing (feature `test-utils`), shared
//! so each test and example does not write its own. Neither is random in
//! any cryptographic sense: never back a guest's entropy device with them.

use core::convert::Infallible;

use rand_core::TryRng;

/// Fills buffers with 1, 2, 3, … (wrapping), so a test can check exactly
/// which bytes reached the driver. Its `next_u32`/`next_u64` are 0.
#[derive(Clone, Debug, Default)]
pub struct CountingRng(pub u8);

impl TryRng for CountingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
        Ok(())
    }
}

/// Marsaglia's xorshift64 (13, 7, 17): a deterministic stand-in for a
/// hardware generator in demos, firmware bring-up and fuzzing.
#[derive(Clone, Debug)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator from `seed` (0, which would stay 0, is replaced by a
    /// fixed non-zero constant).
    pub const fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl TryRng for XorShift64 {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.step() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.step())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let word = self.step().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(word) {
                *d = s;
            }
        }
        Ok(())
    }
}
