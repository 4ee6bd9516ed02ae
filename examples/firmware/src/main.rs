//! virtio over the shared-memory transport inside one Cortex-M4 image.
//!
//! The device end (an entropy device, a RAM block device, an I2C adapter
//! whose bus is the 24C02 EEPROM model, an `embedded_hal::i2c::I2c`, and an
//! SCMI platform of simulated clocks and sensors: the safety island's case)
//! and the driver end share a window in SRAM. The driver end runs in thread mode; its
//! doorbell pends an NVIC interrupt and the device end runs in that
//! interrupt's handler. Everything is checked; results go out over
//! semihosting and any mismatch exits non-zero.
//!
//! `cargo run --release` (from `examples/firmware/`) runs it under
//! `qemu-system-arm -M mps2-an386`.
#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod common;

use core::cell::RefCell;

use common::{DOORBELL, LAYOUT, NvicDoorbell, WINDOW_WORDS, XorShift};
use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::{BlkReqHeader, Block, BlockOptions, RamDisk};
use virtio_devices::i2c::eeprom::Eeprom;
use virtio_devices::i2c::{
    Address, F_ZERO_LENGTH_REQUEST, FLAGS_FAIL_NEXT, FLAGS_M_RD, I2cAdapter, I2cOutHdr, MSG_ERR,
    MSG_OK,
};
use virtio_devices::rng::Rng;
use virtio_devices::scmi::Scmi;
use virtio_devices::scmi::sim::SimPlatform;
use virtio_transport_shm::layout::Bump;
use virtio_transport_shm::{DataArea, DeviceEnd, DriverEnd, Polled, ShmDevice, Spin};
use zerocopy::IntoBytes;

type Data = DataArea<'static, Region<'static>>;
/// Queues of up to 8 descriptors: the in-flight tables are sized to match.
type Devices = (
    ShmDevice<Rng<XorShift>, Data, 1, 8>,
    ShmDevice<Block<RamDisk<'static>>, Data, 1, 8>,
    ShmDevice<I2cAdapter<Eeprom, 4, 32>, Data, 1, 8>,
    ShmDevice<Scmi<SimPlatform, 4, 2>, Data, 2, 8>,
);
type Device = DeviceEnd<'static, Region<'static>, Devices, Polled>;

/// The device end, reached from the doorbell interrupt.
static DEVICE: Mutex<RefCell<Option<Device>>> = Mutex::new(RefCell::new(None));

const DISK_SECTORS: usize = 16;

/// Stops QEMU with a failure exit code.
fn fail(what: &str) -> ! {
    hprintln!("FAIL: {}", what);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

macro_rules! check {
    ($cond:expr, $($what:tt)*) => {
        if !$cond {
            hprintln!($($what)*);
            fail(stringify!($cond));
        }
    };
}

macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(_) => fail(stringify!($e)),
        }
    };
}

#[entry]
fn main() -> ! {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        fail("peripherals");
    };
    let seed = common::seed(&mut cp.SYST);
    let Some(words) = cortex_m::singleton!(: [u64; WINDOW_WORDS] = [0; WINDOW_WORDS]) else {
        fail("window");
    };
    let window_at = words.as_ptr();
    let Some(window) =
        cortex_m::singleton!(: Region<'static> = ok!(Region::new(0, words.as_mut_bytes())))
    else {
        fail("region");
    };
    let window: &'static Region<'static> = window;
    let Some(disk) = cortex_m::singleton!(: [u8; DISK_SECTORS * 512] = [0; DISK_SECTORS * 512])
    else {
        fail("disk");
    };
    hprintln!(
        "shm firmware: window {} bytes at {:p} ({} slots x {} B, data area {} B)",
        LAYOUT.window_len(),
        window_at,
        LAYOUT.slots(),
        LAYOUT.slot_size(),
        LAYOUT.data_len()
    );

    // ---- device end: owns the window, runs in the doorbell interrupt ----
    let data = DataArea::new(window, &LAYOUT);
    let devices = (
        ShmDevice::new(Rng::new(XorShift::new(seed)), data),
        ShmDevice::new(
            Block::new(
                RamDisk::new(disk),
                BlockOptions {
                    id: *b"cortex-m4-ramdisk\0\0\0",
                    ..BlockOptions::default()
                },
            ),
            data,
        ),
        ShmDevice::new(I2cAdapter::new(Eeprom::default()), data),
        ShmDevice::new(Scmi::new(SimPlatform::new()).with_queue_size(8), data),
    );
    let device = ok!(DeviceEnd::create(window, LAYOUT, devices, Polled));
    cortex_m::interrupt::free(|cs| DEVICE.borrow(cs).replace(Some(device)));
    common::enable_doorbell();

    // ---- driver end: thread mode ----
    let mut drv: DriverEnd<_, _, _, 4> = ok!(DriverEnd::attach(
        window,
        LAYOUT,
        NvicDoorbell(DOORBELL),
        Spin
    ))
    .with_max_waits(10_000);
    check!(ok!(drv.ping(0xc0ffee)) == 0xc0ffee, "PING mismatch");
    let present = ok!(drv.devices());
    check!(present == 0b1111, "GET_DEVICES {:#b}", present);
    for dev in 0..4 {
        let info = ok!(drv.device_info(dev));
        hprintln!(
            "device {}: id {}, {} queue(s), config {} bytes",
            dev,
            info.device_id.get(),
            info.max_vqueues.get(),
            info.config_size.get()
        );
    }
    let mem = drv.data();
    let mut alloc = Bump::new(&LAYOUT);

    // rng: two requests; the bytes must not be constant or repeat.
    let Some(base) = alloc.alloc(SplitDriver::layout_len(4), 16) else {
        fail("alloc");
    };
    let rq = SplitDriver::layout(base, 4);
    let mut q = ok!(SplitDriver::new(&mem, rq, Features::VERSION_1));
    let f = ok!(drv.bring_up(0, Features::empty(), &[rq]));
    hprintln!("rng: negotiated features {:#x}", f.bits());
    let Some(buf) = alloc.alloc(32, 8) else {
        fail("alloc")
    };
    let mut first = [0u8; 16];
    let mut second = [0u8; 16];
    for out in [&mut first, &mut second] {
        ok!(q.add(&mem, &[], &[Segment { addr: buf, len: 16 }]));
        if ok!(q.publish_avail(&mem)) {
            ok!(drv.notify(0, 0, 0));
        }
        let used = loop {
            if let Some(u) = ok!(q.pop_used(&mem)) {
                break u;
            }
            ok!(drv.wait_used(0, 0));
        };
        check!(used.len == 16, "rng used length {}", used.len);
        ok!(mem.read(buf, out));
    }
    hprintln!("rng: {:02x?}", first);
    check!(first != second, "rng repeated itself");
    check!(first.iter().any(|b| *b != first[0]), "rng constant");

    // block: write every sector with its own pattern, read all back.
    let Some(base) = alloc.alloc(SplitDriver::layout_len(8), 16) else {
        fail("alloc");
    };
    let bq = SplitDriver::layout(base, 8);
    let mut q = ok!(SplitDriver::new(&mem, bq, Features::VERSION_1));
    let f = ok!(drv.bring_up(1, Features::empty(), &[bq]));
    let mut cap = [0u8; 8];
    ok!(drv.get_config(1, 0, &mut cap));
    let capacity = u64::from_le_bytes(cap);
    hprintln!(
        "block: negotiated features {:#x}, capacity {} sectors",
        f.bits(),
        capacity
    );
    check!(capacity == DISK_SECTORS as u64, "capacity {}", capacity);
    let (Some(hdr), Some(sector), Some(status)) =
        (alloc.alloc(16, 16), alloc.alloc(512, 16), alloc.alloc(1, 1))
    else {
        fail("alloc");
    };
    let mut requests = 0u32;
    for pass in 0..2u32 {
        for s in 0..DISK_SECTORS as u64 {
            let write = pass == 0;
            let pattern = (s as u8).wrapping_mul(37).wrapping_add(11);
            let h = BlkReqHeader {
                type_: u32::from(write).into(),
                reserved: 0.into(),
                sector: s.into(),
            };
            ok!(mem.write(hdr, h.as_bytes()));
            ok!(mem.write(sector, &[if write { pattern } else { 0 }; 512]));
            let (hs, ds, ss) = (
                Segment { addr: hdr, len: 16 },
                Segment {
                    addr: sector,
                    len: 512,
                },
                Segment {
                    addr: status,
                    len: 1,
                },
            );
            if write {
                ok!(q.add(&mem, &[hs, ds], &[ss]));
            } else {
                ok!(q.add(&mem, &[hs], &[ds, ss]));
            }
            if ok!(q.publish_avail(&mem)) {
                ok!(drv.notify(1, 0, 0));
            }
            loop {
                if ok!(q.pop_used(&mem)).is_some() {
                    break;
                }
                ok!(drv.wait_used(1, 0));
            }
            let mut st = [0xffu8];
            ok!(mem.read(status, &mut st));
            check!(st[0] == 0, "sector {} status {}", s, st[0]);
            if !write {
                let mut back = [0u8; 512];
                ok!(mem.read(sector, &mut back));
                check!(
                    back.iter().all(|b| *b == pattern),
                    "sector {} read back wrong",
                    s
                );
            }
            requests += 1;
        }
    }
    hprintln!(
        "block: {} requests (write + read back of {} sectors) ok",
        requests,
        DISK_SECTORS
    );

    // i2c: the EEPROM behind the adapter. A page write, a write+read group
    // (FAIL_NEXT) across the page boundary as one transaction, and a
    // read from an absent address that the bus NACKs.
    let Some(base) = alloc.alloc(SplitDriver::layout_len(8), 16) else {
        fail("alloc");
    };
    let iq = SplitDriver::layout(base, 8);
    let mut q = ok!(SplitDriver::new(&mem, iq, Features::VERSION_1));
    let f = ok!(drv.bring_up(2, Features::from_bits_retain(F_ZERO_LENGTH_REQUEST), &[iq]));
    check!(
        f.bits() & F_ZERO_LENGTH_REQUEST != 0,
        "i2c features {:#x}",
        f.bits()
    );
    let (Some(hdrs), Some(out), Some(inp), Some(st)) = (
        alloc.alloc(16, 8),
        alloc.alloc(16, 8),
        alloc.alloc(16, 8),
        alloc.alloc(2, 1),
    ) else {
        fail("alloc");
    };
    let seg = |addr: u64, len: u32| Segment { addr, len };
    // Runs the requests queued so far and waits for `n` of them.
    macro_rules! run {
        ($n:expr) => {{
            if ok!(q.publish_avail(&mem)) {
                ok!(drv.notify(2, 0, 0));
            }
            let mut done = 0;
            while done < $n {
                if ok!(q.pop_used(&mem)).is_some() {
                    done += 1;
                } else {
                    ok!(drv.wait_used(2, 0));
                }
            }
        }};
    }
    let hdr = |addr: u8, flags: u32| I2cOutHdr {
        addr: Address::SevenBit(addr).encode().unwrap_or(0).into(),
        padding: 0.into(),
        flags: flags.into(),
    };
    // Page write of 0x08..0x0f, then 0x10..0x13.
    ok!(mem.write(hdrs, hdr(0x50, 0).as_bytes()));
    ok!(mem.write(out, &[0x08, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    ok!(q.add(&mem, &[seg(hdrs, 8), seg(out, 9)], &[seg(st, 1)]));
    run!(1);
    ok!(mem.write(out, &[0x10, 9, 10, 11, 12]));
    ok!(q.add(&mem, &[seg(hdrs, 8), seg(out, 5)], &[seg(st, 1)]));
    run!(1);
    let mut s = [0xffu8; 2];
    ok!(mem.read(st, &mut s[..1]));
    check!(s[0] == MSG_OK, "i2c write status {}", s[0]);
    // Random read of 8 bytes from 0x0c: word address, then the read.
    ok!(mem.write(hdrs, hdr(0x50, FLAGS_FAIL_NEXT).as_bytes()));
    ok!(mem.write(hdrs + 8, hdr(0x50, FLAGS_M_RD).as_bytes()));
    ok!(mem.write(out, &[0x0c]));
    ok!(q.add(&mem, &[seg(hdrs, 8), seg(out, 1)], &[seg(st, 1)]));
    ok!(q.add(&mem, &[seg(hdrs + 8, 8)], &[seg(inp, 8), seg(st + 1, 1)]));
    run!(2);
    let mut back = [0u8; 8];
    ok!(mem.read(inp, &mut back));
    ok!(mem.read(st, &mut s));
    check!(s == [MSG_OK, MSG_OK], "i2c read status {:?}", s);
    check!(back == [5, 6, 7, 8, 9, 10, 11, 12], "i2c read {:?}", back);
    hprintln!(
        "i2c: eeprom 0x0c..0x13 read across the page boundary: {:?}",
        back
    );
    // An absent target.
    ok!(mem.write(hdrs + 8, hdr(0x51, FLAGS_M_RD).as_bytes()));
    ok!(q.add(&mem, &[seg(hdrs + 8, 8)], &[seg(inp, 1), seg(st + 1, 1)]));
    run!(1);
    ok!(mem.read(st + 1, &mut s[..1]));
    check!(s[0] == MSG_ERR, "i2c NACK status {}", s[0]);
    hprintln!("i2c: read from absent 0x51 answered MSG_ERR (NACK)");

    // scmi: the island's platform answers the agent's commands on the
    // cmdq (base discovery, a clock rate, a sensor reading); an unknown
    // protocol gets NOT_SUPPORTED with the token echoed.
    let (Some(cbase), Some(ebase)) = (
        alloc.alloc(SplitDriver::layout_len(4), 16),
        alloc.alloc(SplitDriver::layout_len(4), 16),
    ) else {
        fail("alloc");
    };
    let (cq, eq) = (SplitDriver::layout(cbase, 4), SplitDriver::layout(ebase, 4));
    let mut q = ok!(SplitDriver::new(&mem, cq, Features::VERSION_1));
    let f = ok!(drv.bring_up(3, Features::empty(), &[cq, eq]));
    hprintln!("scmi: negotiated features {:#x}", f.bits());
    let (Some(cmd), Some(resp)) = (alloc.alloc(16, 8), alloc.alloc(32, 8)) else {
        fail("alloc");
    };
    // Header: message id 7:0, type 9:8 (0, a command), protocol 17:10,
    // token 27:18.
    let header = |protocol: u32, message: u32, token: u32| {
        message | (protocol << 10) | ((token & 0x3ff) << 18)
    };
    // Sends one command (header then parameter words); returns the used
    // length and the response words (header, status, return values).
    let mut command = |words: &[u32]| -> (u32, [u32; 8]) {
        let mut bytes = [0u8; 16];
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let len = (words.len() * 4) as u32;
        ok!(mem.write(cmd, &bytes[..words.len() * 4]));
        ok!(mem.write(resp, &[0u8; 32]));
        ok!(q.add(&mem, &[seg(cmd, len)], &[seg(resp, 32)]));
        if ok!(q.publish_avail(&mem)) {
            ok!(drv.notify(3, 0, 0));
        }
        let used = loop {
            if let Some(u) = ok!(q.pop_used(&mem)) {
                break u;
            }
            ok!(drv.wait_used(3, 0));
        };
        let mut raw = [0u8; 32];
        ok!(mem.read(resp, &mut raw));
        let mut out = [0u32; 8];
        for (w, chunk) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        (used.len, out)
    };
    // BASE_PROTOCOL_VERSION.
    let (len, r) = command(&[header(0x10, 0x0, 1)]);
    check!(
        len == 12 && r[0] == header(0x10, 0x0, 1) && r[1] == 0,
        "scmi base version {} {:x?}",
        len,
        r
    );
    hprintln!("scmi: base protocol version {:#x}", r[2]);
    // BASE_DISCOVER_VENDOR: a 16-byte name.
    let (len, r) = command(&[header(0x10, 0x3, 2)]);
    check!(len == 24 && r[1] == 0, "scmi vendor {} {:x?}", len, r);
    let mut vendor = [0u8; 16];
    for (chunk, w) in vendor.chunks_exact_mut(4).zip(&r[2..6]) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    let name_len = vendor.iter().position(|b| *b == 0).unwrap_or(16);
    let name = core::str::from_utf8(&vendor[..name_len]).unwrap_or("?");
    check!(name_len > 0, "scmi vendor empty");
    hprintln!("scmi: vendor {}", name);
    // CLOCK_RATE_GET of clock 0: 400 MHz in the simulated platform.
    let (len, r) = command(&[header(0x14, 0x6, 3), 0]);
    let rate = u64::from(r[2]) | (u64::from(r[3]) << 32);
    check!(
        len == 16 && r[1] == 0 && rate == 400_000_000,
        "scmi clock {} {:x?}",
        len,
        r
    );
    hprintln!("scmi: clock 0 at {} Hz", rate);
    // SENSOR_READING_GET of sensor 0, synchronous: 45 000 m°C.
    let (len, r) = command(&[header(0x15, 0x6, 4), 0, 0]);
    let reading = (u64::from(r[2]) | (u64::from(r[3]) << 32)) as i64;
    check!(
        len == 16 && r[1] == 0 && reading == 45_000,
        "scmi sensor {} {:x?}",
        len,
        r
    );
    hprintln!("scmi: sensor 0 reads {} m°C", reading);
    // A protocol the platform does not have: NOT_SUPPORTED (-1), status only.
    let (len, r) = command(&[header(0x42, 0x0, 5)]);
    check!(
        len == 8 && r[0] == header(0x42, 0x0, 5) && r[1] as i32 == -1,
        "scmi unknown protocol {} {:x?}",
        len,
        r
    );
    hprintln!("scmi: protocol 0x42 answered NOT_SUPPORTED, token echoed");

    let stats =
        cortex_m::interrupt::free(|cs| DEVICE.borrow(cs).borrow().as_ref().map(|d| d.stats()));
    let Some(stats) = stats else {
        fail("device end gone")
    };
    hprintln!(
        "device end: {} messages, {} answers, {} EVENT_USED, {} discarded",
        stats.received,
        stats.responses,
        stats.events_used,
        stats.discarded()
    );
    check!(
        stats.discarded() == 0 && stats.ring_errors == 0,
        "device end discarded messages"
    );
    check!(drv.stray_messages() == 0, "stray messages");
    hprintln!("PASS");
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Every external interrupt lands here; the doorbell runs the device end.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn != DOORBELL.0 as i16 {
        fail("unexpected interrupt");
    }
    cortex_m::interrupt::free(|cs| {
        // One budget per interrupt: with work left the handler pends its
        // own interrupt again, so other interrupts run in between and no
        // buffer waits for a doorbell the driver will not ring.
        if let Some(device) = DEVICE.borrow(cs).borrow_mut().as_mut()
            && device.process().work_left()
        {
            NVIC::pend(DOORBELL);
        }
    });
}

#[exception]
unsafe fn HardFault(_frame: &ExceptionFrame) -> ! {
    fail("hard fault");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("{}", info);
    fail("panic");
}
