//! The GPIO device's request parser and per-line interrupt state machine,
//! fed an arbitrary sequence of operations: requests (any type, line,
//! value and response room), event buffers (any line, odd shapes), pin
//! changes reported by the platform, and polls, over the loopback bank.
//!
//! Invariants: no panic; no access outside guest memory and bounded work;
//! every request comes back, in order, with a defined status and the used
//! length the Linux driver demands (2, or 1 + gpio_names_size for names)
//! when its response buffer is big enough; an event buffer comes back at
//! most once (the driver end checks ids), with used length 1 and status
//! VALID or INVALID; a VALID event is only ever sent for a line whose
//! interrupt is enabled; after SET_IRQ_TYPE NONE or SET_DIRECTION NONE the
//! line holds no buffer; a device reset leaves no line unmasked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_core::device::DeviceCore;
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::{RingArea, Segment};
use virtio_devices::gpio::loopback::Loopback;
use virtio_devices::gpio::{
    EVENTQ, Gpio, GpioIrqRequest, GpioRequest, IRQ_STATUS_INVALID, IRQ_STATUS_VALID, IRQ_TYPE_NONE,
    MSG_GET_LINE_NAMES, MSG_SET_DIRECTION, MSG_SET_IRQ_TYPE, REQUESTQ, STATUS_ERR, STATUS_OK,
    Trigger,
};
use virtio_fuzz::{DATA, Guarded, host};
use zerocopy::IntoBytes;

const QSIZE: u16 = 16;
const LINES: usize = 6;

fuzz_target!(|data: &[u8]| {
    let mut buf = host();
    let mem = Guarded::new(buf.as_mut_bytes());
    let gpio: Gpio<Loopback<LINES>, LINES> = Gpio::new(Loopback::new())
        .expect("loopback names")
        .with_queue_size(QSIZE);
    let names = gpio.config().gpio_names_size.get();
    let mut core: DeviceCore<_, &Guarded<'_>, 2> = DeviceCore::new(gpio, &mem);
    let features = core.device_features()
        - virtio_core::spec::Features::RING_PACKED
        - virtio_core::spec::Features::IN_ORDER;
    core.set_status(1 | 2);
    core.set_driver_features(features);
    core.set_status(1 | 2 | 8);
    let mut drivers = Vec::new();
    for q in [REQUESTQ, EVENTQ] {
        let cfg = SplitDriver::layout(u64::from(q) * 0x1400, QSIZE);
        drivers.push(SplitDriver::new(&mem, cfg, core.negotiated_features()).expect("ring"));
        core.set_queue_size(q, u32::from(QSIZE)).expect("size");
        core.set_queue_area(q, RingArea::Descriptors, cfg.desc_addr)
            .expect("desc");
        core.set_queue_area(q, RingArea::Driver, cfg.driver_addr)
            .expect("driver");
        core.set_queue_area(q, RingArea::Device, cfg.device_addr)
            .expect("device");
        core.set_queue_ready(q, true).expect("ready");
    }
    core.set_status(1 | 2 | 4 | 8);

    let mut at = DATA + 0x800;
    let mut alloc = |len: u32| {
        let a = at;
        at += (u64::from(len) + 15) & !15;
        if at > 0x7000 {
            at = DATA + 0x800;
        }
        a
    };
    // Posted event buffers: id -> (line, status address).
    let mut posted: Vec<(u16, u16, u64)> = Vec::new();
    for op in data.chunks_exact(8) {
        if !core.is_live() {
            break;
        }
        match op[0] % 5 {
            0 | 1 => {
                let r = GpioRequest {
                    type_: u16::from(op[1] % 8).into(),
                    gpio: u16::from(op[2] % 8).into(),
                    value: u32::from(op[3] % 10).into(),
                };
                let out = Segment {
                    addr: alloc(8),
                    len: 8,
                };
                mem.raw().write(out.addr, r.as_bytes()).expect("request");
                let room = u32::from(op[4] % 64) + 1;
                let resp = Segment {
                    addr: alloc(room),
                    len: room,
                };
                mem.raw()
                    .write(resp.addr, &vec![0xa5; room as usize])
                    .expect("response");
                let Ok(id) = drivers[0].add(&mem, &[out], &[resp]) else {
                    continue;
                };
                drivers[0].publish_avail(&mem).expect("publish");
                let mut s = core.notify(u32::from(REQUESTQ));
                while s.work_left() {
                    s = core.poll();
                }
                let used = drivers[0]
                    .pop_used(&mem)
                    .expect("valid ids")
                    .expect("the request came back");
                assert_eq!(used.id, id);
                let mut status = [0u8];
                mem.raw().read(resp.addr, &mut status).expect("status");
                assert!(status[0] == STATUS_OK || status[0] == STATUS_ERR);
                let want = if r.type_.get() == MSG_GET_LINE_NAMES && status[0] == STATUS_OK {
                    names + 1
                } else {
                    2
                };
                if room >= want {
                    assert!(
                        used.len == want
                            || (status[0] == STATUS_ERR && used.len == room.min(names + 1)),
                        "used length {} for type {} (room {room})",
                        used.len,
                        r.type_.get()
                    );
                }
                let line = r.gpio.get();
                let none = (r.type_.get() == MSG_SET_IRQ_TYPE && r.value.get() == IRQ_TYPE_NONE)
                    || (r.type_.get() == MSG_SET_DIRECTION && r.value.get() == 0);
                if status[0] == STATUS_OK && none {
                    assert!(
                        !core.device().is_unmasked(line),
                        "a disabled line holds a buffer"
                    );
                }
            }
            2 => {
                let line = u16::from(op[1] % 8);
                let rlen = u32::from(op[2] % 4);
                let wlen = u32::from(op[3] % 3);
                let out = Segment {
                    addr: alloc(rlen.max(1)),
                    len: rlen,
                };
                mem.raw()
                    .write(out.addr, GpioIrqRequest { gpio: line.into() }.as_bytes())
                    .expect("irq request");
                let st = Segment {
                    addr: alloc(wlen.max(1)),
                    len: wlen,
                };
                let r: Vec<Segment> = [out].into_iter().filter(|s| s.len > 0).collect();
                let w: Vec<Segment> = [st].into_iter().filter(|s| s.len > 0).collect();
                let Ok(id) = drivers[1].add(&mem, &r, &w) else {
                    continue;
                };
                if wlen > 0 {
                    posted.push((id, line, st.addr));
                }
                drivers[1].publish_avail(&mem).expect("publish");
                let mut s = core.notify(u32::from(EVENTQ));
                while s.work_left() {
                    s = core.poll();
                }
            }
            3 => {
                core.device_mut()
                    .input_changed(u16::from(op[1] % 8), op[2] & 1 != 0);
                core.device_mut()
                    .bank_mut()
                    .drive(u16::from(op[1] % 8), op[3] & 1 != 0);
                let mut s = core.poll();
                while s.work_left() {
                    s = core.poll();
                }
            }
            _ => {
                if op[1] == 0xff {
                    core.set_status(0);
                    for l in 0..LINES as u16 {
                        assert!(!core.device().is_unmasked(l), "held across a reset");
                    }
                    return;
                }
                let mut s = core.poll();
                while s.work_left() {
                    s = core.poll();
                }
            }
        }
        // Collect returned event buffers.
        while let Some(used) = drivers[1].pop_used(&mem).expect("valid event ids") {
            let Some(i) = posted.iter().position(|p| p.0 == used.id) else {
                continue;
            };
            let (_, line, addr) = posted.swap_remove(i);
            let mut status = [0u8];
            mem.raw().read(addr, &mut status).expect("event status");
            if core.is_live() {
                assert_eq!(used.len, 1);
                assert!(status[0] == IRQ_STATUS_VALID || status[0] == IRQ_STATUS_INVALID);
            }
            if status[0] == IRQ_STATUS_VALID && used.len == 1 {
                assert_ne!(
                    core.device().trigger(line),
                    Some(Trigger::None),
                    "VALID event on a disabled line"
                );
            }
        }
    }
});
