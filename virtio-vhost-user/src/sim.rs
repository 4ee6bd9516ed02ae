//! Simulated peripherals the daemon serves with `--sim`: the I2C EEPROM
//! (the device model's, with transaction logging) and the SPI NOR flash,
//! whose contents outlive connections.

use virtio_devices::spi::flash::FlashState;

/// The simulated flash's size.
pub const FLASH_BYTES: usize = 64 * 1024;

/// An I2C bus that logs (at debug level) each transaction the adapter
/// runs on it: one line per `embedded-hal` transaction (a FAIL_NEXT group
/// of the guest's messages is one).
pub struct TracedBus<B>(pub B);

impl<B: embedded_hal::i2c::ErrorType> embedded_hal::i2c::ErrorType for TracedBus<B> {
    type Error = B::Error;
}

impl<B: embedded_hal::i2c::I2c> embedded_hal::i2c::I2c for TracedBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let result = self.0.transaction(address, operations);
        trace_transaction(u16::from(address), operations, &result);
        result
    }
}

impl<B> embedded_hal::i2c::I2c<embedded_hal::i2c::TenBitAddress> for TracedBus<B>
where
    B: embedded_hal::i2c::I2c<embedded_hal::i2c::TenBitAddress>,
{
    fn transaction(
        &mut self,
        address: u16,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Self::Error> {
        let result = self.0.transaction(address, operations);
        trace_transaction(address, operations, &result);
        result
    }
}

/// One debug line per transaction: address, operations, outcome.
fn trace_transaction<E: embedded_hal::i2c::Error>(
    address: u16,
    operations: &[embedded_hal::i2c::Operation<'_>],
    result: &Result<(), E>,
) {
    use embedded_hal::i2c::Operation;
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let ops: Vec<String> = operations
        .iter()
        .map(|op| match op {
            Operation::Read(b) => format!("r{}", b.len()),
            Operation::Write(b) => format!("w{}", b.len()),
        })
        .collect();
    let outcome = match result {
        Ok(()) => "ok".to_string(),
        Err(e) => virtio_devices::i2c::BusError::from(e.kind()).to_string(),
    };
    log::debug!(
        "i2c transaction {address:#04x}: {}: {outcome}",
        ops.join(" ")
    );
}

/// The simulated flash, shared by the SPI device's bus and chip select
/// and kept across connections.
pub type SharedFlash = std::sync::Arc<std::sync::Mutex<FlashState<FLASH_BYTES>>>;

/// The flash as a bus and as its chip-select pin (the connection's thread
/// owns the device, so the state sits behind a mutex).
pub struct FlashSpi(pub SharedFlash);

impl FlashSpi {
    fn with<T>(&self, f: impl FnOnce(&mut FlashState<FLASH_BYTES>) -> T) -> T {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
}

impl embedded_hal::spi::ErrorType for FlashSpi {
    type Error = embedded_hal::spi::ErrorKind;
}

impl embedded_hal::spi::SpiBus<u8> for FlashSpi {
    fn read(&mut self, words: &mut [u8]) -> Result<(), Self::Error> {
        self.with(|s| words.iter_mut().for_each(|w| *w = s.clock(0)));
        Ok(())
    }
    fn write(&mut self, words: &[u8]) -> Result<(), Self::Error> {
        self.with(|s| {
            for w in words {
                s.clock(*w);
            }
        });
        Ok(())
    }
    fn transfer(&mut self, read: &mut [u8], write: &[u8]) -> Result<(), Self::Error> {
        self.with(|s| {
            for i in 0..read.len().max(write.len()) {
                let r = s.clock(write.get(i).copied().unwrap_or(0));
                if let Some(slot) = read.get_mut(i) {
                    *slot = r;
                }
            }
        });
        Ok(())
    }
    fn transfer_in_place(&mut self, words: &mut [u8]) -> Result<(), Self::Error> {
        self.with(|s| words.iter_mut().for_each(|w| *w = s.clock(*w)));
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_hal::digital::ErrorType for FlashSpi {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for FlashSpi {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.with(|s| s.select(true));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.with(|s| s.select(false));
        Ok(())
    }
}
