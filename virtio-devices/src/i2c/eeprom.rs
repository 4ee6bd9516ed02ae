//! A simulated 24C02-style EEPROM on a simulated I2C bus, for tests, demos,
//! fuzzing and the vhost-user daemon (feature `test-utils`).
//!
//! 256 bytes at one 7-bit address (0x50 by default), 8-byte pages:
//!
//! * a write transaction's first byte sets the word address; the bytes
//!   after it are written from there, the address wrapping inside its page
//!   (a page write of more than 8 bytes overwrites the page's start, as the
//!   part does);
//! * a read returns bytes from the current word address, which
//!   auto-increments and wraps at 256 (across page boundaries);
//! * a zero-length write is acknowledged (the SMBus Quick command probes
//!   use), and so is a write of just the word address (a random read's
//!   first half).
//!
//! Any other address is not acknowledged
//! ([`ErrorKind::NoAcknowledge`]`(`[`NoAcknowledgeSource::Address`]`)`).

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

/// Bytes in the part.
pub const EEPROM_BYTES: usize = 256;
/// Bytes in one write page.
pub const PAGE_BYTES: u8 = 8;
/// The 24C02's default address (A2..A0 tied low).
pub const DEFAULT_ADDRESS: u8 = 0x50;

/// A 24C02-style EEPROM: the only target on its bus.
#[derive(Clone, Debug)]
pub struct Eeprom {
    address: u8,
    memory: [u8; EEPROM_BYTES],
    pointer: u8,
    transactions: u32,
}

impl Default for Eeprom {
    fn default() -> Self {
        Self::new(DEFAULT_ADDRESS)
    }
}

impl Eeprom {
    /// An erased part (every byte 0xff) at `address`.
    pub fn new(address: u8) -> Self {
        Self {
            address,
            memory: [0xff; EEPROM_BYTES],
            pointer: 0,
            transactions: 0,
        }
    }

    /// The part's address.
    pub fn address(&self) -> u8 {
        self.address
    }

    /// The part's contents.
    pub fn memory(&self) -> &[u8; EEPROM_BYTES] {
        &self.memory
    }

    /// The part's contents, mutably (to preload it).
    pub fn memory_mut(&mut self) -> &mut [u8; EEPROM_BYTES] {
        &mut self.memory
    }

    /// Transactions addressed to the part so far.
    pub fn transactions(&self) -> u32 {
        self.transactions
    }

    fn write_byte(&mut self, byte: u8) {
        if let Some(cell) = self.memory.get_mut(usize::from(self.pointer)) {
            *cell = byte;
        }
        // Wrap inside the page.
        let page = self.pointer & !(PAGE_BYTES.wrapping_sub(1));
        let within = self.pointer.wrapping_add(1) & PAGE_BYTES.wrapping_sub(1);
        self.pointer = page | within;
    }
}

impl ErrorType for Eeprom {
    type Error = ErrorKind;
}

impl I2c<SevenBitAddress> for Eeprom {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != self.address {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        self.transactions = self.transactions.saturating_add(1);
        // The first byte written in a transaction is the word address;
        // adjacent writes are one write on the bus.
        let mut addressed = false;
        let mut previous_write = false;
        for op in operations.iter_mut() {
            match op {
                Operation::Write(bytes) => {
                    if !previous_write {
                        addressed = false;
                    }
                    for &byte in bytes.iter() {
                        if addressed {
                            self.write_byte(byte);
                        } else {
                            self.pointer = byte;
                            addressed = true;
                        }
                    }
                    previous_write = true;
                }
                Operation::Read(buf) => {
                    for cell in buf.iter_mut() {
                        *cell = self
                            .memory
                            .get(usize::from(self.pointer))
                            .copied()
                            .unwrap_or(0xff);
                        self.pointer = self.pointer.wrapping_add(1);
                    }
                    previous_write = false;
                }
            }
        }
        Ok(())
    }
}
