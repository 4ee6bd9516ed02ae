//! The gpiochip bank against a fake chip: line lists, names, the line
//! state changes, edge translation, and a whole vhost-user conversation
//! in which a host edge reaches the guest's event buffer through the
//! connection loop. None of this runs against a real gpiochip.
#![allow(clippy::arithmetic_side_effects)]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::GuestMemory;
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::gpio::{
    Direction, F_IRQ, Gpio, GpioBank, IRQ_STATUS_VALID, IRQ_TYPE_EDGE_RISING, LineError,
    MSG_GET_LINE_NAMES, MSG_GET_VALUE, MSG_SET_DIRECTION, MSG_SET_IRQ_TYPE, MSG_SET_VALUE,
    STATUS_ERR, STATUS_OK,
};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::connection::Ended;
use crate::tests::{FileMem, GPA, QSIZE, RAM, UA, set_up_ring, temp_file, wait_for};

// ---- the fake chip ---------------------------------------------------------

#[derive(Debug, Default)]
struct FakeState {
    /// What the bank asked for, in order.
    log: Vec<String>,
    /// The next request/reconfigure fails with this errno.
    fail_next: Option<i32>,
    /// Levels the lines read.
    levels: HashMap<u32, bool>,
    /// Per requested line: the write end that makes its request readable,
    /// and its waiting edges.
    events: HashMap<u32, (UnixStream, VecDeque<Edge>)>,
}

#[derive(Clone, Debug)]
struct Fake {
    names: Vec<String>,
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug)]
struct FakeRequest {
    offset: u32,
    rx: UnixStream,
    state: Arc<Mutex<FakeState>>,
}

impl Drop for FakeRequest {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        s.log.push(format!("release {}", self.offset));
        s.events.remove(&self.offset);
    }
}

impl AsFd for FakeRequest {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl Fake {
    fn new(names: &[&str]) -> Self {
        Self {
            names: names.iter().map(|n| (*n).to_string()).collect(),
            state: Arc::default(),
        }
    }

    fn log(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    fn fail_next(&self, errno: i32) {
        self.state.lock().unwrap().fail_next = Some(errno);
    }

    fn set_level(&self, offset: u32, level: bool) {
        self.state.lock().unwrap().levels.insert(offset, level);
    }

    /// The host line at `offset` had an edge (numbered `seqno`).
    fn edge(&self, offset: u32, rising: bool, seqno: u32) {
        let mut s = self.state.lock().unwrap();
        s.levels.insert(offset, rising);
        let (tx, queue) = s.events.get_mut(&offset).expect("line requested");
        queue.push_back(Edge {
            rising,
            line_seqno: seqno,
        });
        tx.write_all(&[1]).unwrap();
    }

    fn check_fail(&self) -> io::Result<()> {
        match self.state.lock().unwrap().fail_next.take() {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

fn mode_str(mode: Mode) -> String {
    match mode {
        Mode::Input => "in".into(),
        Mode::Output(v) => format!("out {}", u8::from(v)),
    }
}

impl ChipLines for Fake {
    type Request = FakeRequest;

    fn num_lines(&self) -> u32 {
        self.names.len() as u32
    }

    fn line_name(&self, offset: u32) -> &str {
        self.names.get(offset as usize).map_or("", String::as_str)
    }

    fn request(&self, offset: u32, mode: Mode) -> io::Result<FakeRequest> {
        self.check_fail()?;
        let (tx, rx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        let mut s = self.state.lock().unwrap();
        s.log.push(format!("request {offset} {}", mode_str(mode)));
        if let Mode::Output(v) = mode {
            s.levels.insert(offset, v);
        }
        s.events.insert(offset, (tx, VecDeque::new()));
        Ok(FakeRequest {
            offset,
            rx,
            state: Arc::clone(&self.state),
        })
    }

    fn reconfigure(&self, request: &FakeRequest, offset: u32, mode: Mode) -> io::Result<()> {
        assert_eq!(request.offset, offset);
        self.check_fail()?;
        let mut s = self.state.lock().unwrap();
        s.log
            .push(format!("reconfigure {offset} {}", mode_str(mode)));
        if let Mode::Output(v) = mode {
            s.levels.insert(offset, v);
        }
        Ok(())
    }

    fn value(&self, request: &FakeRequest, offset: u32) -> io::Result<bool> {
        assert_eq!(request.offset, offset);
        Ok(*self
            .state
            .lock()
            .unwrap()
            .levels
            .get(&offset)
            .unwrap_or(&false))
    }

    fn set_value(&self, request: &FakeRequest, offset: u32, value: bool) -> io::Result<()> {
        assert_eq!(request.offset, offset);
        let mut s = self.state.lock().unwrap();
        s.log.push(format!("set {offset} {}", u8::from(value)));
        s.levels.insert(offset, value);
        Ok(())
    }

    fn next_edge(&self, request: &FakeRequest) -> io::Result<Option<Edge>> {
        let mut s = self.state.lock().unwrap();
        let Some((_, queue)) = s.events.get_mut(&request.offset) else {
            return Ok(None);
        };
        let edge = queue.pop_front();
        if edge.is_some() {
            let mut byte = [0u8; 1];
            (&request.rx).read_exact(&mut byte)?;
        }
        Ok(edge)
    }
}

fn selection(s: &str) -> LineSelection {
    s.parse().unwrap()
}

// ---- line lists and names --------------------------------------------------

#[test]
fn line_lists_are_offsets_and_ranges_in_the_order_given() {
    assert_eq!(selection("0,3,5-7").offsets(), [0, 3, 5, 6, 7]);
    assert_eq!(selection("9, 2 - 3 ,0").offsets(), [9, 2, 3, 0]);
    assert_eq!(selection("4").offsets(), [4]);
    assert_eq!(selection("0-255").offsets().len(), MAX_LINES);
    assert_eq!(selection("0,3,5-7").to_string(), "0,3,5,6,7");
}

#[test]
fn bad_line_lists_are_refused_with_the_reason() {
    for (spec, why) in [
        ("", "expected a line offset"),
        ("a", "expected a line offset"),
        ("1,,2", "expected a line offset"),
        ("5-", "expected a line offset"),
        ("-1", "expected a line offset"),
        ("7-5", "backwards"),
        ("1,1", "listed twice"),
        ("1-3,2", "listed twice"),
        ("0-256", "more than 256"),
        ("0-4294967295", "more than 256"),
    ] {
        let e = spec.parse::<LineSelection>().unwrap_err();
        assert!(e.to_string().contains(why), "{spec}: {e}");
    }
}

#[test]
fn names_are_kept_dropped_or_made_unique() {
    let offsets = [0, 1, 2, 3, 4, 5];
    let raw = ["LED", "", "BTN", "LED", "caf\u{e9}", "x"];
    assert_eq!(
        guest_names(&offsets, &raw),
        ["LED@0", "", "BTN", "LED@3", "", "x"]
    );
    // A made-up name that is another line's real one.
    assert_eq!(
        guest_names(&[0, 1, 2], &["A@1", "A", "A"]),
        ["A@1", "", "A@2"]
    );
    // NUL cannot come from the kernel, but is refused anyway.
    assert_eq!(guest_names(&[0], &["a\0b"]), [""]);
}

#[test]
fn made_up_names_satisfy_the_device() {
    let fake = Fake::new(&["LED", "LED", "", "\u{e9}", "A@1", "ok"]);
    let bank = ChipBank::new(fake, None).unwrap();
    let gpio: Gpio<_, 8> = Gpio::new(bank).unwrap();
    assert_eq!(gpio.bank().name(0), "LED@0");
    assert_eq!(gpio.bank().name(1), "LED@1");
    assert_eq!(gpio.bank().name(3), "");
    assert_eq!(gpio.bank().name(4), "A@1");
    assert_eq!(gpio.bank().name(6), "");
}

#[test]
fn the_selection_must_fit_the_chip() {
    let fake = Fake::new(&["a", "b", "c", "d"]);
    let e = ChipBank::new(fake.clone(), Some(&selection("1,4"))).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("no line 4"), "{e}");
    assert!(ChipBank::new(Fake::new(&[]), None).is_err());
    let big: Vec<String> = (0..300).map(|i| format!("l{i}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let e = ChipBank::new(Fake::new(&big), None).unwrap_err();
    assert!(e.to_string().contains("--lines"), "{e}");
    assert!(ChipBank::new(Fake::new(&big), Some(&selection("10-265"))).is_ok());
    // Guest line k is the k-th listed.
    let bank = ChipBank::new(fake, Some(&selection("3,1"))).unwrap();
    assert_eq!(
        (bank.len(), bank.offset(0), bank.offset(1)),
        (2, Some(3), Some(1))
    );
    assert_eq!((bank.name(0), bank.name(1), bank.name(2)), ("d", "b", ""));
    assert_eq!(bank.describe_lines(), ["0 -> 3 \"d\"", "1 -> 1 \"b\""]);
}

#[test]
fn the_device_size_rounds_up() {
    assert_eq!(device_lines(1), Some(8));
    assert_eq!(device_lines(8), Some(8));
    assert_eq!(device_lines(9), Some(16));
    assert_eq!(device_lines(200), Some(256));
    assert_eq!(device_lines(257), None);
}

// ---- line states -----------------------------------------------------------

#[test]
fn directions_request_reconfigure_and_release_the_host_line() {
    let fake = Fake::new(&["a", "b", "c"]);
    let mut bank = ChipBank::new(fake.clone(), Some(&selection("2,0"))).unwrap();
    assert!(
        fake.log().is_empty(),
        "nothing requested before the guest asks"
    );
    // Released: no value to read, nothing to drive.
    assert_eq!(bank.get_value(0), Err(LineError::Unsupported));
    assert_eq!(bank.set_value(0, true), Err(LineError::Unsupported));
    bank.set_direction(0, Direction::In, false).unwrap();
    assert_eq!(fake.log(), ["request 2 in"]);
    assert_eq!(bank.event_fds().len(), 1);
    // Again: nothing to do.
    bank.set_direction(0, Direction::In, false).unwrap();
    assert!(fake.log().is_empty());
    // Input to output and back reconfigures the same request.
    bank.set_direction(0, Direction::Out, true).unwrap();
    assert_eq!(fake.log(), ["reconfigure 2 out 1"]);
    assert!(bank.event_fds().is_empty(), "outputs have no events");
    assert_eq!(bank.get_value(0), Ok(true));
    bank.set_value(0, false).unwrap();
    bank.set_direction(0, Direction::Out, true).unwrap();
    assert_eq!(fake.log(), ["set 2 0", "set 2 1"]);
    bank.set_direction(0, Direction::In, true).unwrap();
    assert_eq!(fake.log(), ["reconfigure 2 in"]);
    // An input cannot be driven.
    assert_eq!(bank.set_value(0, true), Err(LineError::Unsupported));
    bank.set_direction(0, Direction::None, false).unwrap();
    assert_eq!(fake.log(), ["release 2"]);
    // Straight to output.
    bank.set_direction(1, Direction::Out, false).unwrap();
    assert_eq!(fake.log(), ["request 0 out 0"]);
    drop(bank);
    assert_eq!(fake.log(), ["release 0"]);
}

#[test]
fn host_refusals_are_line_errors_and_change_nothing() {
    let fake = Fake::new(&["a", "b"]);
    let mut bank = ChipBank::new(fake.clone(), None).unwrap();
    fake.fail_next(rustix::io::Errno::BUSY.raw_os_error());
    assert_eq!(
        bank.set_direction(0, Direction::In, false),
        Err(LineError::Unsupported)
    );
    assert_eq!(
        bank.get_value(0),
        Err(LineError::Unsupported),
        "still released"
    );
    bank.set_direction(0, Direction::In, false).unwrap();
    fake.log();
    fake.fail_next(rustix::io::Errno::IO.raw_os_error());
    assert_eq!(
        bank.set_direction(0, Direction::Out, true),
        Err(LineError::Pin)
    );
    assert_eq!(bank.event_fds().len(), 1, "still an input");
    assert_eq!(bank.set_value(0, true), Err(LineError::Unsupported));
    fake.fail_next(524);
    assert_eq!(
        bank.set_direction(0, Direction::Out, true),
        Err(LineError::Unsupported)
    );
    assert!(fake.log().is_empty());
}

#[test]
fn lines_past_the_selection_take_only_none() {
    let mut bank = ChipBank::new(Fake::new(&["a"]), None).unwrap();
    assert_eq!(bank.set_direction(5, Direction::None, false), Ok(()));
    assert_eq!(
        bank.set_direction(5, Direction::In, false),
        Err(LineError::Unsupported)
    );
    assert_eq!(bank.get_value(5), Err(LineError::Unsupported));
    assert_eq!(bank.set_value(5, true), Err(LineError::Unsupported));
    assert_eq!(bank.name(5), "");
}

// ---- edges -----------------------------------------------------------------

#[test]
fn edges_become_levels_and_a_gap_reports_the_lost_edge() {
    let fake = Fake::new(&["a", "b"]);
    let mut bank = ChipBank::new(fake.clone(), Some(&selection("1"))).unwrap();
    bank.set_direction(0, Direction::In, false).unwrap();
    let mut levels = Vec::new();
    bank.drain_edges(0, &mut levels).unwrap();
    assert!(levels.is_empty());
    fake.edge(1, true, 1);
    fake.edge(1, false, 2);
    bank.drain_edges(0, &mut levels).unwrap();
    assert_eq!(levels, [(0, true), (0, false)]);
    // Events 3 and 4 were lost: the line went high and low again before
    // this rise, so it was low just before it.
    levels.clear();
    fake.edge(1, true, 5);
    bank.drain_edges(0, &mut levels).unwrap();
    assert_eq!(levels, [(0, false), (0, true)]);
    // A new input starts its numbering afresh: no gap at its first event.
    bank.set_direction(0, Direction::None, false).unwrap();
    bank.set_direction(0, Direction::In, false).unwrap();
    levels.clear();
    fake.edge(1, true, 1);
    bank.drain_edges(0, &mut levels).unwrap();
    assert_eq!(levels, [(0, true)]);
    // Not an input, or no such line: nothing.
    levels.clear();
    bank.drain_edges(1, &mut levels).unwrap();
    bank.drain_edges(9, &mut levels).unwrap();
    assert!(levels.is_empty());
}

#[test]
fn chip_events_report_each_ready_line_to_the_device() {
    let fake = Fake::new(&["a", "b", "c"]);
    let bank = ChipBank::new(fake.clone(), None).unwrap();
    let mut gpio: Gpio<_, 8> = Gpio::new(bank).unwrap().with_platform_events();
    gpio.bank_mut()
        .set_direction(0, Direction::In, false)
        .unwrap();
    gpio.bank_mut()
        .set_direction(2, Direction::In, false)
        .unwrap();
    gpio.bank_mut()
        .set_direction(1, Direction::Out, false)
        .unwrap();
    let mut events = ChipEvents;
    let tokens: Vec<usize> = events.fds(&gpio).iter().map(|(t, _)| *t).collect();
    assert_eq!(tokens, [0, 2]);
    fake.edge(2, true, 1);
    events.ready(&mut gpio, &[2]).unwrap();
    // The device's levels are internal; the event queue is empty again.
    assert!(
        gpio.bank()
            .chip()
            .next_edge(match &gpio.bank().lines[2].state {
                State::Input(r) => r,
                _ => unreachable!(),
            })
            .unwrap()
            .is_none()
    );
}

// ---- a whole conversation --------------------------------------------------

/// struct virtio_gpio_request: type, gpio (le16), value (le32).
fn request_bytes(type_: u16, gpio: u16, value: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&type_.to_le_bytes());
    b[2..4].copy_from_slice(&gpio.to_le_bytes());
    b[4..].copy_from_slice(&value.to_le_bytes());
    b
}

/// The guest: a frontend, two rings, and the eventfds.
struct Guest {
    /// Kept: dropping it hangs up.
    _fe: Frontend,
    mem: FileMem,
    queues: [(SplitDriver, EventFd, EventFd); 2],
    next: u64,
}

impl Guest {
    fn start(front: UnixStream, ram: &std::fs::File) -> Self {
        let mut fe = Frontend::from_stream(front, 2);
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap();
        assert_ne!(offered & F_IRQ, 0);
        let protocol = 1u64 << 30;
        let features = Features::VERSION_1 | Features::from_bits_retain(F_IRQ);
        fe.set_features(features.bits() | protocol).unwrap();
        fe.get_protocol_features().unwrap();
        fe.set_protocol_features(
            VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::MQ,
        )
        .unwrap();
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: RAM,
            userspace_addr: UA,
            mmap_offset: 0,
            mmap_handle: ram.as_raw_fd(),
        }])
        .unwrap();
        let mem = FileMem {
            file: ram.try_clone().unwrap(),
        };
        let queues = [0u16, 1].map(|q| {
            let layout = SplitDriver::layout(GPA + u64::from(q) * 0x4000, QSIZE);
            let driver = SplitDriver::new(&mem, layout, features).unwrap();
            let (kick, call) = set_up_ring(&mut fe, usize::from(q), layout, 0);
            (driver, kick, call)
        });
        Self {
            _fe: fe,
            mem,
            queues,
            next: GPA + 0x8000,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Segment {
        let seg = Segment {
            addr: self.next,
            len: bytes.len() as u32,
        };
        self.mem.write(seg.addr, bytes).unwrap();
        self.next += 0x100;
        seg
    }

    fn post(&mut self, q: usize, readable: &[Segment], writable: &[Segment]) -> u16 {
        let (driver, kick, _) = &mut self.queues[q];
        let id = driver.add(&self.mem, readable, writable).unwrap();
        driver.publish_avail(&self.mem).unwrap();
        kick.write(1).unwrap();
        id
    }

    /// Waits for queue `q`'s next used buffer.
    fn used(&mut self, q: usize) -> (u16, u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (driver, _, call) = &mut self.queues[q];
        loop {
            if let Some(u) = driver.pop_used(&self.mem).unwrap() {
                return (u.id, u.len);
            }
            wait_for(call);
            assert!(Instant::now() < deadline, "no used buffer on queue {q}");
        }
    }

    /// One request; its status and value.
    fn request(&mut self, type_: u16, gpio: u16, value: u32) -> (u8, u8) {
        let out = self.put(&request_bytes(type_, gpio, value));
        let resp = self.put(&[0xee, 0xee]);
        let id = self.post(0, &[out], &[resp]);
        assert_eq!(self.used(0), (id, 2));
        let mut b = [0u8; 2];
        self.mem.read(resp.addr, &mut b).unwrap();
        (b[0], b[1])
    }
}

#[test]
fn a_host_edge_reaches_the_guests_event_buffer_through_the_loop() {
    let (path, ram) = temp_file("gpiochip", RAM);
    let fake = Fake::new(&["a", "b", "c", "d"]);
    let bank = ChipBank::new(fake.clone(), Some(&selection("3,1,0"))).unwrap();
    let (front, back) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || serve_bank(back, bank, UnsealedMemory::Accept));
    let mut g = Guest::start(front, &ram);

    // Names, as the guest numbers the lines.
    let out = g.put(&request_bytes(MSG_GET_LINE_NAMES, 0, 0));
    // 8 lines: "d", "b", "a" and five unnamed.
    let resp = g.put(&[0xee; 12]);
    let id = g.post(0, &[out], &[resp]);
    assert_eq!(g.used(0), (id, 12));
    let mut names = [0u8; 12];
    g.mem.read(resp.addr, &mut names).unwrap();
    assert_eq!(names, [STATUS_OK, b'd', 0, b'b', 0, b'a', 0, 0, 0, 0, 0, 0]);

    // Guest line 0 is chip line 3: an input with a rising-edge interrupt.
    fake.set_level(3, false);
    assert_eq!(g.request(MSG_SET_DIRECTION, 0, 2), (STATUS_OK, 0));
    assert_eq!(fake.log(), ["request 3 in"]);
    assert_eq!(
        g.request(MSG_SET_IRQ_TYPE, 0, IRQ_TYPE_EDGE_RISING),
        (STATUS_OK, 0)
    );
    // struct virtio_gpio_irq_request: the line, le16.
    let out = g.put(&0u16.to_le_bytes());
    let status = g.put(&[0xee]);
    let id = g.post(1, &[out], &[status]);
    // Nothing happened yet: the buffer is held.
    thread::sleep(Duration::from_millis(50));
    assert!(g.queues[1].0.pop_used(&g.mem).unwrap().is_none());
    // The host line rises: the loop reads the event, the device returns
    // the buffer VALID.
    fake.edge(3, true, 1);
    assert_eq!(g.used(1), (id, 1));
    let mut b = [0u8; 1];
    g.mem.read(status.addr, &mut b).unwrap();
    assert_eq!(b[0], IRQ_STATUS_VALID);
    assert_eq!(g.request(MSG_GET_VALUE, 0, 0), (STATUS_OK, 1));

    // Guest line 1 is chip line 1: an output.
    assert_eq!(g.request(MSG_SET_VALUE, 1, 1), (STATUS_OK, 0));
    assert_eq!(g.request(MSG_SET_DIRECTION, 1, 1), (STATUS_OK, 0));
    assert_eq!(fake.log(), ["request 1 out 1"]);
    // A line the host refuses: an error status, the connection goes on.
    fake.fail_next(rustix::io::Errno::BUSY.raw_os_error());
    assert_eq!(g.request(MSG_SET_DIRECTION, 2, 2), (STATUS_ERR, 0));
    assert!(fake.log().is_empty());
    // Past the selection.
    assert_eq!(g.request(MSG_SET_DIRECTION, 5, 2), (STATUS_ERR, 0));

    // The frontend goes away: every line is released.
    drop(g);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    let mut log = fake.log();
    log.sort();
    assert_eq!(log, ["release 1", "release 3"]);
    std::fs::remove_file(path).unwrap();
}

// ---- a real chip -----------------------------------------------------------

/// Guest line `line`'s event buffer: posts it, returns (id, status segment).
fn post_irq(g: &mut Guest, line: u16) -> (u16, Segment) {
    let out = g.put(&line.to_le_bytes());
    let status = g.put(&[0xee]);
    (g.post(1, &[out], &[status]), status)
}

fn irq_status(g: &mut Guest, posted: (u16, Segment)) -> u8 {
    assert_eq!(g.used(1), (posted.0, 1));
    let mut b = [0u8; 1];
    g.mem.read(posted.1.addr, &mut b).unwrap();
    b[0]
}

fn line_info(path: &str, offset: u32) -> gpiocdev::line::Info {
    gpiocdev::Chip::from_path(path)
        .unwrap()
        .line_info(offset)
        .unwrap()
}

/// The whole path on a real kernel gpiochip, through [`Cdev`]: run by
/// `tests/linux-guest-gpiochip.sh` inside a Linux guest whose
/// `/dev/gpiochip0` is a virtio GPIO chip served by this daemon's
/// `gpio --sim loopback:8` on the host (output line k drives input line
/// k+1, edges reach the guest kernel as interrupts). Here the chip's lines
/// 0-3 are served again, to an in-process frontend.
#[test]
#[ignore = "needs VVU_GPIOCHIP=/dev/gpiochipN, a loopback chip (run by tests/linux-guest-gpiochip.sh)"]
fn real_chip_lines_and_edges_end_to_end() {
    let chip = std::env::var("VVU_GPIOCHIP").expect("VVU_GPIOCHIP");
    let cdev = Cdev::open(Path::new(&chip)).unwrap();
    assert_eq!(cdev.num_lines(), 8, "{}", cdev.describe());
    let bank = ChipBank::new(cdev, Some(&selection("0-3"))).unwrap();
    let (path, ram) = temp_file("gpiochip-real", RAM);
    let (front, back) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || serve_bank(back, bank, UnsealedMemory::Accept));
    let mut g = Guest::start(front, &ram);

    // names: from the chip's line info.
    let out = g.put(&request_bytes(MSG_GET_LINE_NAMES, 0, 0));
    let resp = g.put(&[0xee; 29]);
    let id = g.post(0, &[out], &[resp]);
    assert_eq!(g.used(0), (id, 29));
    let mut names = [0u8; 29];
    g.mem.read(resp.addr, &mut names).unwrap();
    assert_eq!(&names[..], b"\0loop0\0loop1\0loop2\0loop3\0\0\0\0\0");
    println!("VVU-CHECK names");

    // Line 1 an input with interrupts on both edges, its buffer posted.
    assert_eq!(g.request(MSG_SET_DIRECTION, 1, 2), (STATUS_OK, 0));
    let info = line_info(&chip, 1);
    assert!(info.used && info.consumer == CONSUMER, "{info:?}");
    assert_eq!(g.request(MSG_GET_VALUE, 1, 0), (STATUS_OK, 0));
    assert_eq!(g.request(MSG_SET_IRQ_TYPE, 1, 3), (STATUS_OK, 0));
    let posted = post_irq(&mut g, 1);
    // Line 0 an output driven high: line 1 rises on the host chip, its
    // edge event wakes the loop and the buffer comes back VALID.
    assert_eq!(g.request(MSG_SET_VALUE, 0, 1), (STATUS_OK, 0));
    assert_eq!(g.request(MSG_SET_DIRECTION, 0, 1), (STATUS_OK, 0));
    assert_eq!(irq_status(&mut g, posted), IRQ_STATUS_VALID);
    assert_eq!(g.request(MSG_GET_VALUE, 1, 0), (STATUS_OK, 1));
    println!("VVU-CHECK rising-edge");
    let posted = post_irq(&mut g, 1);
    assert_eq!(g.request(MSG_SET_VALUE, 0, 0), (STATUS_OK, 0));
    assert_eq!(irq_status(&mut g, posted), IRQ_STATUS_VALID);
    assert_eq!(g.request(MSG_GET_VALUE, 1, 0), (STATUS_OK, 0));
    println!("VVU-CHECK falling-edge");

    // Output to input and back, in place: the line stays ours. Line 0
    // high, then an input: line 1 is no longer driven and falls.
    assert_eq!(g.request(MSG_SET_VALUE, 0, 1), (STATUS_OK, 0));
    let posted = post_irq(&mut g, 1);
    assert_eq!(irq_status(&mut g, posted), IRQ_STATUS_VALID);
    assert_eq!(g.request(MSG_SET_DIRECTION, 0, 2), (STATUS_OK, 0));
    let info = line_info(&chip, 0);
    assert!(
        info.used && info.direction == gpiocdev::line::Direction::Input,
        "{info:?}"
    );
    let posted = post_irq(&mut g, 1);
    assert_eq!(irq_status(&mut g, posted), IRQ_STATUS_VALID);
    assert_eq!(g.request(MSG_GET_VALUE, 1, 0), (STATUS_OK, 0));
    let posted = post_irq(&mut g, 1);
    assert_eq!(g.request(MSG_SET_DIRECTION, 0, 1), (STATUS_OK, 0));
    let info = line_info(&chip, 0);
    assert!(
        info.used && info.direction == gpiocdev::line::Direction::Output,
        "{info:?}"
    );
    assert_eq!(irq_status(&mut g, posted), IRQ_STATUS_VALID);
    println!("VVU-CHECK reconfigure");

    // A line someone else holds: an error status.
    let other = gpiocdev::Request::builder()
        .on_chip(&chip)
        .with_consumer("someone-else")
        .with_line(2)
        .as_input()
        .request()
        .unwrap();
    assert_eq!(g.request(MSG_SET_DIRECTION, 2, 2), (STATUS_ERR, 0));
    drop(other);
    assert_eq!(g.request(MSG_SET_DIRECTION, 2, 2), (STATUS_OK, 0));
    println!("VVU-CHECK busy");

    // Released by NONE, and all at the end of the connection.
    assert_eq!(g.request(MSG_SET_DIRECTION, 1, 0), (STATUS_OK, 0));
    assert!(!line_info(&chip, 1).used);
    drop(g);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    for offset in 0..4 {
        assert!(!line_info(&chip, offset).used, "line {offset}");
    }
    println!("VVU-CHECK release");
    std::fs::remove_file(path).unwrap();
}
