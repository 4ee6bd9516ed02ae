#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use std::vec;
use std::vec::Vec;

use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

use super::loopback::Loopback;
use super::*;
use crate::harness::Harness;

type H = Harness<Gpio<Loopback<8>, 8>, 2>;

fn rig() -> H {
    Harness::new(
        Gpio::new(Loopback::new()).unwrap(),
        Features::from_bits_retain(F_IRQ),
        &[REQUESTQ, EVENTQ],
    )
}

/// One request; returns (status, value, used length).
fn req(h: &mut H, type_: u16, gpio: u16, value: u32) -> (u8, u8, u32) {
    let r = GpioRequest {
        type_: type_.into(),
        gpio: gpio.into(),
        value: value.into(),
    };
    let out = h.put(r.as_bytes());
    let resp = h.space(2);
    let used = h.request(REQUESTQ, &[out], &[resp]);
    let b = h.read(resp);
    (b[0], b[1], used.len)
}

fn ok(h: &mut H, type_: u16, gpio: u16, value: u32) -> u8 {
    let (status, v, len) = req(h, type_, gpio, value);
    assert_eq!(
        (status, len),
        (STATUS_OK, 2),
        "request {type_} line {gpio} value {value}"
    );
    v
}

/// Posts an event buffer for `line`; returns (id, status segment).
fn post(h: &mut H, line: u16) -> (u16, Segment) {
    let out = h.put(GpioIrqRequest { gpio: line.into() }.as_bytes());
    let status = h.space(1);
    let id = h.add(EVENTQ, &[out], &[status]);
    h.kick(EVENTQ);
    (id, status)
}

/// Event buffers returned: (id, status byte, used length).
fn events(h: &mut H, posted: &[(u16, Segment)]) -> Vec<(u16, u8, u32)> {
    let mut out = vec![];
    while let Some(u) = h.used(EVENTQ) {
        let seg = posted
            .iter()
            .find(|p| p.0 == u.id)
            .expect("a posted buffer")
            .1;
        out.push((u.id, h.read(seg)[0], u.len));
    }
    out
}

/// Line 1 an input fed by line 0, an output driving `level`.
fn loop_0_to_1(h: &mut H, level: bool) {
    ok(h, MSG_SET_DIRECTION, 1, 2);
    ok(h, MSG_SET_VALUE, 0, u32::from(level));
    ok(h, MSG_SET_DIRECTION, 0, 1);
}

// A bank without names.
struct Plain(Loopback<4>);
impl GpioBank for Plain {
    fn set_direction(&mut self, l: u16, d: Direction, v: bool) -> Result<(), LineError> {
        self.0.set_direction(l, d, v)
    }
    fn get_value(&mut self, l: u16) -> Result<bool, LineError> {
        self.0.get_value(l)
    }
    fn set_value(&mut self, l: u16, v: bool) -> Result<(), LineError> {
        self.0.set_value(l, v)
    }
}

// A bank with the names the test gives.
struct Named(Loopback<3>, [&'static str; 3]);
impl GpioBank for Named {
    fn name(&self, l: u16) -> &str {
        self.1[usize::from(l)]
    }
    fn set_direction(&mut self, l: u16, d: Direction, v: bool) -> Result<(), LineError> {
        self.0.set_direction(l, d, v)
    }
    fn get_value(&mut self, l: u16) -> Result<bool, LineError> {
        self.0.get_value(l)
    }
    fn set_value(&mut self, l: u16, v: bool) -> Result<(), LineError> {
        self.0.set_value(l, v)
    }
}

// ---------------------------------------------------------------------------
// Configuration and names

// spec: gpio.requestq-operation.2, gpio.requestq-operation.4
#[test]
fn config_has_every_field_and_the_names_size() {
    let h = rig();
    let mut c = [0xeeu8; 8];
    h.core.read_config(0, &mut c);
    // ngpio 8, padding 0, names "loop0".."loop7": 8 × 6 bytes.
    assert_eq!(c, [8, 0, 0, 0, 48, 0, 0, 0]);
    assert_eq!(h.core.device().config().gpio_names_size.get(), 48);
}

// spec: gpio.requestq-operation.3
#[test]
fn a_bank_without_names_reports_size_0_and_get_line_names_fails() {
    let mut h: Harness<Gpio<Plain, 4>, 2> = Harness::new(
        Gpio::new(Plain(Loopback::new())).unwrap(),
        Features::from_bits_retain(F_IRQ),
        &[REQUESTQ, EVENTQ],
    );
    let mut c = [0xeeu8; 8];
    h.core.read_config(0, &mut c);
    assert_eq!(c, [4, 0, 0, 0, 0, 0, 0, 0]);
    let r = GpioRequest {
        type_: MSG_GET_LINE_NAMES.into(),
        ..GpioRequest::default()
    };
    let out = h.put(r.as_bytes());
    let resp = h.space(2);
    h.request(REQUESTQ, &[out], &[resp]);
    assert_eq!(h.read(resp)[0], STATUS_ERR);
}

// spec: gpio.requestq-operation.4, gpio.requestq-operation.5
#[test]
fn get_line_names_returns_zero_terminated_unique_names() {
    let mut h: Harness<Gpio<Named, 3>, 2> = Harness::new(
        Gpio::new(Named(Loopback::new(), ["MMC-CD", "", "Red LED Vdd"])).unwrap(),
        Features::from_bits_retain(F_IRQ),
        &[REQUESTQ, EVENTQ],
    );
    let size = h.core.device().config().gpio_names_size.get();
    assert_eq!(size, 7 + 1 + 12);
    let r = GpioRequest {
        type_: MSG_GET_LINE_NAMES.into(),
        ..GpioRequest::default()
    };
    let out = h.put(r.as_bytes());
    let resp = h.space(1 + size);
    let used = h.request(REQUESTQ, &[out], &[resp]);
    assert_eq!(used.len, 1 + size);
    let mut want = vec![STATUS_OK];
    want.extend_from_slice(b"MMC-CD\0\0Red LED Vdd\0");
    assert_eq!(h.read(resp), want);
    // Duplicate and non-ASCII names are refused at construction.
    assert_eq!(
        Gpio::<_, 3>::new(Named(Loopback::new(), ["a", "b", "a"])).err(),
        Some(ConfigError::DuplicateName(2))
    );
    assert_eq!(
        Gpio::<_, 3>::new(Named(Loopback::new(), ["a", "b\0", "c"])).err(),
        Some(ConfigError::BadName(1))
    );
    assert_eq!(
        Gpio::<_, 3>::new(Named(Loopback::new(), ["a", "é", "c"])).err(),
        Some(ConfigError::BadName(1))
    );
}

// ---------------------------------------------------------------------------
// requestq

// spec: gpio.requestq-operation.1
#[test]
fn every_response_field_is_set_ok_or_err() {
    let mut h = rig();
    // The harness pre-fills responses with 0xee: both bytes are written.
    assert_eq!(req(&mut h, MSG_GET_DIRECTION, 3, 0), (STATUS_OK, 0, 2));
    assert_eq!(req(&mut h, MSG_SET_VALUE, 3, 0), (STATUS_OK, 0, 2));
    assert_eq!(req(&mut h, MSG_GET_VALUE, 3, 0), (STATUS_OK, 0, 2));
    for (t, line, v) in [
        (0x99, 0, 0),
        (MSG_GET_VALUE, 8, 0),
        (MSG_SET_DIRECTION, 0, 7),
        (MSG_SET_VALUE, 0, 2),
        (MSG_SET_IRQ_TYPE, 0, 0x10),
    ] {
        assert_eq!(
            req(&mut h, t, line, v),
            (STATUS_ERR, 0, 2),
            "{t} {line} {v}"
        );
    }
    assert_eq!(
        h.core.device().last_error(),
        Some(RequestError::BadValue(0x10))
    );
}

#[test]
fn directions_and_values_through_the_loopback() {
    let mut h = rig();
    assert_eq!(ok(&mut h, MSG_GET_DIRECTION, 2, 0), Direction::None as u8);
    // The value set before OUT is what the line drives.
    ok(&mut h, MSG_SET_VALUE, 2, 1);
    ok(&mut h, MSG_SET_DIRECTION, 2, 1);
    ok(&mut h, MSG_SET_DIRECTION, 3, 2);
    assert_eq!(ok(&mut h, MSG_GET_DIRECTION, 2, 0), Direction::Out as u8);
    assert_eq!(ok(&mut h, MSG_GET_DIRECTION, 3, 0), Direction::In as u8);
    assert_eq!(ok(&mut h, MSG_GET_VALUE, 3, 0), 1);
    ok(&mut h, MSG_SET_VALUE, 2, 0);
    assert_eq!(ok(&mut h, MSG_GET_VALUE, 3, 0), 0);
    assert_eq!(ok(&mut h, MSG_GET_VALUE, 2, 0), 0);
}

// spec: gpio.requestq-operation.6
#[test]
fn messages_for_one_line_are_processed_and_answered_in_order() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    let mut sent = vec![];
    for (t, line, v) in [
        (MSG_SET_VALUE, 0, 1),
        (MSG_GET_VALUE, 1, 0),
        (MSG_SET_VALUE, 0, 0),
        (MSG_GET_VALUE, 1, 0),
        (MSG_SET_VALUE, 0, 1),
        (MSG_GET_VALUE, 1, 0),
    ] {
        let r = GpioRequest {
            type_: u16::into(t),
            gpio: u16::into(line),
            value: u32::into(v),
        };
        let out = h.put(r.as_bytes());
        let resp = h.space(2);
        sent.push((h.add(REQUESTQ, &[out], &[resp]), resp));
    }
    h.kick(REQUESTQ);
    let mut order = vec![];
    while let Some(u) = h.used(REQUESTQ) {
        order.push(u.id);
    }
    assert_eq!(order, sent.iter().map(|s| s.0).collect::<Vec<_>>());
    let values: Vec<u8> = sent.iter().map(|s| h.read(s.1)[1]).collect();
    assert_eq!(values, [0, 1, 0, 0, 0, 1]);
}

#[test]
fn irq_requests_need_f_irq_and_an_input_line() {
    let mut h: Harness<Gpio<Loopback<8>, 8>, 2> = Harness::new(
        Gpio::new(Loopback::new()).unwrap(),
        Features::empty(),
        &[REQUESTQ],
    );
    let r = GpioRequest {
        type_: MSG_SET_IRQ_TYPE.into(),
        gpio: 1.into(),
        value: IRQ_TYPE_EDGE_BOTH.into(),
    };
    let out = h.put(r.as_bytes());
    let resp = h.space(2);
    h.request(REQUESTQ, &[out], &[resp]);
    assert_eq!(h.read(resp), [STATUS_ERR, 0]);
    assert_eq!(
        h.core.device().last_error(),
        Some(RequestError::IrqNotNegotiated)
    );

    let mut h = rig();
    ok(&mut h, MSG_SET_DIRECTION, 0, 1);
    assert_eq!(
        req(&mut h, MSG_SET_IRQ_TYPE, 0, IRQ_TYPE_EDGE_RISING),
        (STATUS_ERR, 0, 2)
    );
    assert_eq!(
        h.core.device().last_error(),
        Some(RequestError::IrqOnOutput)
    );
}

#[test]
fn a_short_request_or_response_is_an_error() {
    let mut h = rig();
    let out = h.put(&[4, 0, 0]);
    let resp = h.space(2);
    h.request(REQUESTQ, &[out], &[resp]);
    assert_eq!(h.read(resp), [STATUS_ERR, 0]);
    let out = h.put(GpioRequest::default().as_bytes());
    let resp = h.space(1);
    let used = h.request(REQUESTQ, &[out], &[resp]);
    assert_eq!((h.read(resp), used.len), (vec![STATUS_ERR], 1));
}

// spec: gpio.requestq-operation.8
#[test]
fn direction_none_discards_all_line_state() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    let p = post(&mut h, 1);
    // A remembered value on line 5, then NONE on both.
    ok(&mut h, MSG_SET_VALUE, 5, 1);
    ok(&mut h, MSG_SET_DIRECTION, 1, 0);
    ok(&mut h, MSG_SET_DIRECTION, 5, 0);
    // The held buffer came back INVALID; the trigger is gone, so a new
    // buffer comes back INVALID at once and edges raise nothing.
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_INVALID, 1)]);
    assert_eq!(ok(&mut h, MSG_GET_DIRECTION, 1, 0), Direction::None as u8);
    ok(&mut h, MSG_SET_DIRECTION, 1, 2);
    let q = post(&mut h, 1);
    assert_eq!(events(&mut h, &[q]), [(q.0, IRQ_STATUS_INVALID, 1)]);
    // Line 5's value was forgotten: OUT now drives low.
    ok(&mut h, MSG_SET_DIRECTION, 5, 1);
    assert_eq!(ok(&mut h, MSG_GET_VALUE, 5, 0), 0);
}

// ---------------------------------------------------------------------------
// Interrupts

// spec: gpio.requestq-operation.9
#[test]
fn an_edge_while_masked_is_latched_and_delivered_when_a_buffer_arrives() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    // Rising edge on line 1 while masked (no buffer), then back low.
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    assert!(h.used(EVENTQ).is_none());
    let p = post(&mut h, 1);
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_VALID, 1)]);
    // Delivered once: the next buffer waits for the next edge.
    let q = post(&mut h, 1);
    assert!(events(&mut h, &[q]).is_empty());
    assert!(h.core.device().is_unmasked(1));
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    assert_eq!(events(&mut h, &[q]), [(q.0, IRQ_STATUS_VALID, 1)]);
    assert!(!h.core.device().is_unmasked(1));
}

#[test]
fn edges_of_the_other_kind_do_not_fire() {
    let mut h = rig();
    loop_0_to_1(&mut h, true);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    let p = post(&mut h, 1);
    ok(&mut h, MSG_SET_VALUE, 0, 0); // falling: ignored
    assert!(events(&mut h, &[p]).is_empty());
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_VALID, 1)]);
    // Both edges: a falling edge fires too.
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_NONE);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_BOTH);
    let q = post(&mut h, 1);
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    assert_eq!(events(&mut h, &[q]), [(q.0, IRQ_STATUS_VALID, 1)]);
}

// spec: gpio.requestq-operation.10
#[test]
fn a_level_is_not_latched_but_reported_while_still_active() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_LEVEL_HIGH);
    // High then low again while masked: nothing is latched.
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    let p = post(&mut h, 1);
    assert!(events(&mut h, &[p]).is_empty(), "a level was latched");
    // Active now: delivered.
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_VALID, 1)]);
    // Still active when the next buffer arrives: delivered at once.
    let q = post(&mut h, 1);
    assert_eq!(events(&mut h, &[q]), [(q.0, IRQ_STATUS_VALID, 1)]);
    // Level low fires on a low line.
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_NONE);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_LEVEL_LOW);
    let r = post(&mut h, 1);
    assert!(events(&mut h, &[r]).is_empty());
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    assert_eq!(events(&mut h, &[r]), [(r.0, IRQ_STATUS_VALID, 1)]);
}

// spec: gpio.requestq-operation.11
#[test]
fn disabling_discards_a_latched_edge() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    ok(&mut h, MSG_SET_VALUE, 0, 1); // latched
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_NONE);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    let p = post(&mut h, 1);
    assert!(events(&mut h, &[p]).is_empty(), "the latch survived NONE");
    // A trigger change discards it too.
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_NONE);
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_FALLING);
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    ok(&mut h, MSG_SET_VALUE, 0, 0); // latched falling
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    let q = post(&mut h, 1);
    assert!(
        events(&mut h, &[p, q])
            .iter()
            .all(|e| e.1 != IRQ_STATUS_VALID)
    );
}

// spec: gpio.eventq-operation.1
#[test]
fn no_event_unless_both_enabled_and_unmasked() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    // Unmasked but not enabled: the buffer comes back INVALID, never VALID.
    let p = post(&mut h, 1);
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_INVALID, 1)]);
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    assert!(h.used(EVENTQ).is_none());
    // Enabled but masked: edges send nothing.
    ok(&mut h, MSG_SET_VALUE, 0, 0);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_BOTH);
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    assert!(h.used(EVENTQ).is_none());
    // A buffer for a line that does not exist, and a second buffer for a
    // line already unmasked, come back INVALID.
    let bad = post(&mut h, 99);
    assert_eq!(events(&mut h, &[bad]), [(bad.0, IRQ_STATUS_INVALID, 1)]);
    ok(&mut h, MSG_SET_IRQ_TYPE, 2, IRQ_TYPE_EDGE_BOTH);
    let a = post(&mut h, 2);
    let b = post(&mut h, 2);
    assert_eq!(events(&mut h, &[a, b]), [(b.0, IRQ_STATUS_INVALID, 1)]);
    assert_eq!(h.core.device().stats().events, 0);
}

// spec: gpio.eventq-operation.2
#[test]
fn irq_type_none_returns_the_held_buffer_invalid() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    let p = post(&mut h, 1);
    assert!(h.used(EVENTQ).is_none());
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_NONE);
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_INVALID, 1)]);
    assert!(!h.core.device().is_unmasked(1));
}

#[test]
fn the_platform_reports_edges_through_input_changed_and_poll() {
    let mut h = rig();
    // Line 4: an input nobody drives; the platform reports its level.
    ok(&mut h, MSG_SET_DIRECTION, 4, 2);
    ok(&mut h, MSG_SET_IRQ_TYPE, 4, IRQ_TYPE_EDGE_RISING);
    let p = post(&mut h, 4);
    h.core.device_mut().input_changed(4, true);
    while h.core.poll().work_left() {}
    assert_eq!(events(&mut h, &[p]), [(p.0, IRQ_STATUS_VALID, 1)]);
    // A pulse the platform saw while masked is latched (edge), even though
    // the line is low again when the buffer comes.
    h.core.device_mut().input_changed(4, false);
    h.core.device_mut().input_changed(4, true);
    h.core.device_mut().input_changed(4, false);
    h.core.device_mut().bank_mut().drive(4, false);
    let q = post(&mut h, 4);
    assert_eq!(events(&mut h, &[q]), [(q.0, IRQ_STATUS_VALID, 1)]);
}

#[test]
fn reset_and_eventq_reset_forget_held_buffers() {
    let mut h = rig();
    loop_0_to_1(&mut h, false);
    ok(&mut h, MSG_SET_IRQ_TYPE, 1, IRQ_TYPE_EDGE_RISING);
    post(&mut h, 1);
    assert!(h.core.device().is_unmasked(1));
    h.core.device_mut().queue_reset(EVENTQ);
    assert!(!h.core.device().is_unmasked(1));
    post(&mut h, 1);
    h.core.set_status(0);
    assert!(!h.core.device().is_unmasked(1));
    // Nothing was returned for the forgotten buffers.
    assert_eq!(h.core.device().stats().invalid, 0);
}

#[test]
fn a_device_reset_returns_the_banks_lines_to_their_initial_direction() {
    let mut h = rig();
    ok(&mut h, MSG_SET_VALUE, 0, 1);
    ok(&mut h, MSG_SET_DIRECTION, 0, Direction::Out as u32);
    // Line 0 drives line 1.
    assert!(h.core.device().bank().level(1));
    h.core.set_status(0);
    // Released in the bank as in the device: line 1 no longer driven.
    assert!(!h.core.device().bank().level(1));
}

#[test]
fn a_malformed_event_chain_comes_back_invalid() {
    let mut h = rig();
    let out = h.put(&[1, 0]);
    let status = h.space(1);
    let extra = h.put(&[0]);
    h.add_mixed(EVENTQ, &[(out, false), (status, true), (extra, false)]);
    h.kick(EVENTQ);
    let u = h.used(EVENTQ).unwrap();
    assert_eq!((h.read(status)[0], u.len), (IRQ_STATUS_INVALID, 1));
    assert!(h.core.is_live());
}

#[test]
fn errors_display() {
    for e in [
        RequestError::ShortRequest,
        RequestError::ShortResponse,
        RequestError::BadLine(9),
        RequestError::UnknownType(9),
        RequestError::BadValue(9),
        RequestError::IrqNotNegotiated,
        RequestError::IrqOnOutput,
        RequestError::NoNames,
        RequestError::Line(LineError::Pin),
        RequestError::Line(LineError::Unsupported),
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
    for e in [
        ConfigError::BadName(1),
        ConfigError::DuplicateName(1),
        ConfigError::TooManyLines,
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
}
