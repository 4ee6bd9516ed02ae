//! Host buses passed to a guest: a Linux I2C adapter through `i2c-dev`
//! (7- and 10-bit addresses) and a Linux SPI target through `spidev`, as
//! `embedded-hal` 1.0 implementations the device models take unchanged.
//!
//! These are thin: `linux-embedded-hal` does the ioctls. What is added is
//! what it leaves out: 10-bit addresses (its `I2c<TenBitAddress>` sends the
//! address without `I2C_M_TEN`, which the kernel refuses) and opening a
//! spidev in the mode and clock the device advertises.

use std::io;
use std::path::{Path, PathBuf};

use embedded_hal::i2c::{I2c, Operation, SevenBitAddress, TenBitAddress};
use linux_embedded_hal::i2cdev::core::{I2CMessage, I2CTransfer};
use linux_embedded_hal::i2cdev::linux::{I2CMessageFlags, LinuxI2CBus, LinuxI2CMessage};
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{I2CError, I2cdev, SpidevDevice};

/// A host I2C adapter, `/dev/i2c-N`.
///
/// 7-bit transactions go through `linux-embedded-hal`'s `I2cdev`; 10-bit
/// ones are `I2C_RDWR` transfers with `I2C_M_TEN` on every message. Both
/// follow `embedded-hal`'s transaction contract: adjacent operations of
/// one direction continue without a repeated start (`I2C_M_NOSTART`), so
/// the adapter must support it for such transactions.
pub struct HostI2c {
    seven: I2cdev,
    ten: LinuxI2CBus,
    path: PathBuf,
}

impl HostI2c {
    /// Opens the adapter.
    ///
    /// # Errors
    /// The device node cannot be opened (absent, or no permission).
    pub fn open(path: &Path) -> io::Result<Self> {
        let seven = I2cdev::new(path).map_err(io::Error::other)?;
        let ten = LinuxI2CBus::new(path).map_err(io::Error::other)?;
        Ok(Self {
            seven,
            ten,
            path: path.to_owned(),
        })
    }

    /// The adapter's device node.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl embedded_hal::i2c::ErrorType for HostI2c {
    type Error = I2CError;
}

impl I2c<SevenBitAddress> for HostI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.seven.transaction(address, operations)
    }
}

impl I2c<TenBitAddress> for HostI2c {
    fn transaction(
        &mut self,
        address: u16,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut previous_read = None;
        let mut messages: Vec<LinuxI2CMessage<'_>> = operations
            .iter_mut()
            .map(|op| {
                let (message, read) = match op {
                    Operation::Read(buf) => (LinuxI2CMessage::read(buf), true),
                    Operation::Write(buf) => (LinuxI2CMessage::write(buf), false),
                };
                let mut flags = I2CMessageFlags::TEN_BIT_ADDRESS;
                if read {
                    flags |= I2CMessageFlags::READ;
                }
                if previous_read == Some(read) {
                    flags |= I2CMessageFlags::NO_START;
                }
                previous_read = Some(read);
                message.with_address(address).with_flags(flags)
            })
            .collect();
        self.ten
            .transfer(&mut messages)
            .map(drop)
            .map_err(I2CError::from)
    }
}

/// Opens a host SPI target, `/dev/spidevB.C`, configured for 8-bit words
/// in SPI `mode` (0–3) at `hz`: the one chip select of a
/// [`virtio_devices::spi::SpiDevices`] controller (the kernel frames each
/// message with it).
///
/// # Errors
/// The node cannot be opened or refuses the configuration.
pub fn open_spidev(path: &Path, mode: u8, hz: u32) -> io::Result<SpidevDevice> {
    let mut device = SpidevDevice::open(path).map_err(io::Error::other)?;
    let mut flags = SpiModeFlags::empty();
    if mode & 1 != 0 {
        flags |= SpiModeFlags::SPI_CPHA;
    }
    if mode & 2 != 0 {
        flags |= SpiModeFlags::SPI_CPOL;
    }
    let options = SpidevOptions::new()
        .bits_per_word(8)
        .max_speed_hz(hz)
        .mode(flags)
        .build();
    device.configure(&options)?;
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_nodes_are_errors_not_panics() {
        let missing = Path::new("/nonexistent/i2c-99");
        assert!(HostI2c::open(missing).is_err());
        assert!(open_spidev(Path::new("/nonexistent/spidev9.9"), 0, 1_000_000).is_err());
    }
}
