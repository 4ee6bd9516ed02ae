//! Pieces both images share: the layout, the doorbell interrupt, the RNG.

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use virtio_transport_shm::{Doorbell, Layout};

/// 4 slots of 64 bytes per ring and a 4 KiB data area: 4 672 bytes.
pub const LAYOUT: Layout = match Layout::new(4, 64, 4096) {
    Ok(l) => l,
    Err(_) => panic!("layout"),
};

/// The window, in 8-byte words (the window must be 8-aligned).
pub const WINDOW_WORDS: usize = LAYOUT.window_len() as usize / 8;

/// An external interrupt line of the NVIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq(pub u16);

// SAFETY: `number` returns a valid external interrupt number for the
// mps2-an386 NVIC (QEMU models 32 or more lines; we only use `DOORBELL`),
// which is all `InterruptNumber` asks of an implementation.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// The device end's doorbell: external interrupt 7 (unused by the board's
/// peripherals, which are never enabled here).
pub const DOORBELL: Irq = Irq(7);

/// Driver → device doorbell: pends the device's interrupt; the device end
/// runs in its handler.
#[derive(Clone, Copy, Debug)]
pub struct NvicDoorbell(pub Irq);

impl Doorbell for NvicDoorbell {
    fn ring(&mut self) {
        NVIC::pend(self.0);
    }
}

/// Unmasks the doorbell interrupt.
pub fn enable_doorbell() {
    // SAFETY: unmasking can break a mask-based critical section; this image
    // uses `cortex_m::interrupt::free` (PRIMASK) for its only shared state,
    // so unmasking the line is sound.
    unsafe { NVIC::unmask(DOORBELL) };
}

/// The demo's stand-in for a hardware RNG: xorshift64 seeded from SysTick
/// ([`seed`]); deterministic and NOT cryptographic.
pub use virtio_devices::rng::test_utils::XorShift64 as XorShift;

/// A seed from the SysTick counter (free-running from reset).
pub fn seed(syst: &mut cortex_m::peripheral::SYST) -> u64 {
    use cortex_m::peripheral::syst::SystClkSource;
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00ff_ffff);
    syst.enable_counter();
    // Let it run a little so the value depends on when we got here.
    let mut spin = 0u32;
    for i in 0..1000u32 {
        spin = spin.wrapping_add(i);
        cortex_m::asm::nop();
    }
    let now = u64::from(cortex_m::peripheral::SYST::get_current());
    (now << 32) ^ now ^ u64::from(spin)
}
