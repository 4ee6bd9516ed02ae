//! The minimal image the footprint report measures: one entropy device
//! (split queue) behind the shared-memory transport's device end, served
//! from the doorbell interrupt. No driver end, no printing.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

#[path = "../common.rs"]
mod common;

use core::cell::RefCell;

use common::{DOORBELL, LAYOUT, NvicDoorbell, WINDOW_WORDS, XorShift};
use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use virtio_core::memory::Region;
use virtio_devices::rng::Rng;
use virtio_transport_shm::{DataArea, DeviceEnd, ShmDevice};
use zerocopy::IntoBytes;

type Data = DataArea<'static, Region<'static>>;
/// One queue of up to 8 descriptors (the in-flight table's size).
type Device =
    DeviceEnd<'static, Region<'static>, (ShmDevice<Rng<XorShift>, Data, 1, 8>,), NvicDoorbell>;

/// The device end lives in a `singleton!` (uninitialised `.bss` until
/// `main` fills it); the handler reaches it through this pointer-sized
/// slot. A `static Option<Device>` would sit in `.data`, its initial image
/// costing as much flash as the device end has RAM.
static DEVICE: Mutex<RefCell<Option<&'static mut Device>>> = Mutex::new(RefCell::new(None));

/// The driver's doorbell (an interrupt on the driver's core in a real
/// system; here another NVIC line).
const DRIVER_DOORBELL: common::Irq = common::Irq(8);

#[entry]
fn main() -> ! {
    if let Some(mut cp) = cortex_m::Peripherals::take()
        && let Some(words) = cortex_m::singleton!(: [u64; WINDOW_WORDS] = [0; WINDOW_WORDS])
        && let Ok(region) = Region::new(0, words.as_mut_bytes())
        && let Some(window) = cortex_m::singleton!(: Region<'static> = region)
    {
        let window: &'static Region<'static> = window;
        let data = DataArea::new(window, &LAYOUT);
        let rng = Rng::new(XorShift::new(common::seed(&mut cp.SYST)));
        let devices = (ShmDevice::new(rng, data),);
        if let Ok(device) =
            DeviceEnd::create(window, LAYOUT, devices, NvicDoorbell(DRIVER_DOORBELL))
            && let Some(device) = cortex_m::singleton!(: Device = device)
        {
            cortex_m::interrupt::free(|cs| {
                if let Ok(mut slot) = DEVICE.borrow(cs).try_borrow_mut() {
                    *slot = Some(device);
                }
            });
            common::enable_doorbell();
        }
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == DOORBELL.0 as i16 {
        cortex_m::interrupt::free(|cs| {
            // try_borrow_mut: no already-borrowed panic path in the image.
            if let Ok(mut device) = DEVICE.borrow(cs).try_borrow_mut()
                && let Some(device) = device.as_mut()
                && device.process().work_left()
            {
                NVIC::pend(DOORBELL);
            }
        });
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
