//! A simulated SPI NOR flash (feature `test-utils`): a bus and a
//! chip-select pin sharing one [`FlashState`], for tests, demos and the
//! daemon.
//!
//! `N` bytes (a power of two), 256-byte program pages, 4 KiB erase
//! sectors, the common command set:
//!
//! | command | what |
//! |---|---|
//! | `9f` | JEDEC ID: `ef 40 18` |
//! | `05` | status register (bit 0 busy: always 0; bit 1 write enable latch) |
//! | `06` / `04` | write enable / disable |
//! | `03 a2 a1 a0` | read from a 24-bit address, wrapping at the end |
//! | `02 a2 a1 a0 data…` | page program (needs write enable; bits only go 1 → 0; wraps inside the page) |
//! | `20 a2 a1 a0` | erase the 4 KiB sector (needs write enable) |
//!
//! A command starts when chip select is asserted (driven low) and ends when
//! it is released; program and erase take effect then, and clear the write
//! enable latch.

use core::cell::RefCell;

use embedded_hal::digital::{self, OutputPin};
use embedded_hal::spi::{self, ErrorKind, SpiBus};

/// The JEDEC ID the part answers.
pub const JEDEC_ID: [u8; 3] = [0xef, 0x40, 0x18];
/// Program page size.
pub const PAGE: usize = 256;
/// Erase sector size.
pub const SECTOR: usize = 4096;
const PAGE_MASK: usize = PAGE.wrapping_sub(1);
const SECTOR_MASK: usize = SECTOR.wrapping_sub(1);

/// The part's state, shared by its bus and its chip select.
#[derive(Debug)]
pub struct FlashState<const N: usize> {
    memory: [u8; N],
    selected: bool,
    /// Bytes clocked since chip select was asserted.
    count: usize,
    command: u8,
    address: u32,
    write_enable: bool,
    /// A program or erase to apply when chip select is released.
    pending: Option<(u8, u32)>,
    /// Page-program data (up to a page).
    page: [Option<u8>; PAGE],
}

impl<const N: usize> Default for FlashState<N> {
    fn default() -> Self {
        Self {
            memory: [0xff; N],
            selected: false,
            count: 0,
            command: 0,
            address: 0,
            write_enable: false,
            pending: None,
            page: [None; PAGE],
        }
    }
}

impl<const N: usize> FlashState<N> {
    /// An erased part.
    pub fn new() -> Self {
        Self::default()
    }

    /// The contents.
    pub fn memory(&self) -> &[u8; N] {
        &self.memory
    }

    /// The contents, mutably (to preload).
    pub fn memory_mut(&mut self) -> &mut [u8; N] {
        &mut self.memory
    }

    fn at(&self, offset: u32) -> usize {
        (offset as usize) & N.wrapping_sub(1)
    }

    /// One byte on the bus: `out` from the controller; returns the reply
    /// (for a bus wrapper of one's own, e.g. behind a mutex).
    pub fn clock(&mut self, out: u8) -> u8 {
        if !self.selected {
            return 0xff;
        }
        let n = self.count;
        self.count = self.count.saturating_add(1);
        if n == 0 {
            self.command = out;
            self.address = 0;
            match out {
                0x06 => self.write_enable = true,
                0x04 => self.write_enable = false,
                _ => {}
            }
            return 0xff;
        }
        match self.command {
            0x9f => JEDEC_ID.get(n.wrapping_sub(1)).copied().unwrap_or(0),
            0x05 => u8::from(self.write_enable) << 1,
            0x03 | 0x02 | 0x20 if n <= 3 => {
                self.address = self.address.wrapping_shl(8) | u32::from(out);
                if n == 3 && self.command == 0x20 && self.write_enable {
                    self.pending = Some((0x20, self.address));
                }
                if n == 3 && self.command == 0x02 && self.write_enable {
                    self.pending = Some((0x02, self.address));
                    self.page = [None; PAGE];
                }
                0xff
            }
            0x03 => {
                let at = self.at(self.address.wrapping_add(n.wrapping_sub(4) as u32));
                self.memory.get(at).copied().unwrap_or(0xff)
            }
            0x02 => {
                if self.pending.is_some() {
                    let slot = (self.address as usize).wrapping_add(n.wrapping_sub(4)) & PAGE_MASK;
                    if let Some(p) = self.page.get_mut(slot) {
                        *p = Some(out);
                    }
                }
                0xff
            }
            _ => 0xff,
        }
    }

    /// Chip select driven active (`true`) or released; a release applies a
    /// pending program or erase.
    pub fn select(&mut self, active: bool) {
        if active && !self.selected {
            self.count = 0;
            self.pending = None;
        }
        if !active && self.selected {
            match self.pending.take() {
                Some((0x02, address)) => {
                    let base = address as usize & !PAGE_MASK;
                    for (i, p) in self.page.iter().enumerate() {
                        if let Some(b) = p {
                            let at = self.at(base.wrapping_add(i) as u32);
                            if let Some(cell) = self.memory.get_mut(at) {
                                *cell &= *b;
                            }
                        }
                    }
                    self.write_enable = false;
                }
                Some((_, address)) => {
                    let base = self.at(address) & !SECTOR_MASK;
                    let end = base.saturating_add(SECTOR).min(N);
                    if let Some(sector) = self.memory.get_mut(base..end) {
                        sector.fill(0xff);
                    }
                    self.write_enable = false;
                }
                None => {}
            }
        }
        self.selected = active;
    }
}

/// The part's bus side.
#[derive(Debug)]
pub struct FlashBus<'a, const N: usize>(pub &'a RefCell<FlashState<N>>);

/// The part's chip select (active low).
#[derive(Debug)]
pub struct FlashCs<'a, const N: usize>(pub &'a RefCell<FlashState<N>>);

impl<const N: usize> spi::ErrorType for FlashBus<'_, N> {
    type Error = ErrorKind;
}

impl<const N: usize> SpiBus<u8> for FlashBus<'_, N> {
    fn read(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        let mut s = self.0.borrow_mut();
        for w in words {
            *w = s.clock(0);
        }
        Ok(())
    }
    fn write(&mut self, words: &[u8]) -> Result<(), ErrorKind> {
        let mut s = self.0.borrow_mut();
        for w in words {
            s.clock(*w);
        }
        Ok(())
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), ErrorKind> {
        let mut s = self.0.borrow_mut();
        let len = read.len().max(write.len());
        for i in 0..len {
            let r = s.clock(write.get(i).copied().unwrap_or(0));
            if let Some(slot) = read.get_mut(i) {
                *slot = r;
            }
        }
        Ok(())
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), ErrorKind> {
        let mut s = self.0.borrow_mut();
        for w in words {
            *w = s.clock(*w);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl<const N: usize> digital::ErrorType for FlashCs<'_, N> {
    type Error = core::convert::Infallible;
}

impl<const N: usize> OutputPin for FlashCs<'_, N> {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().select(true);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().select(false);
        Ok(())
    }
}
