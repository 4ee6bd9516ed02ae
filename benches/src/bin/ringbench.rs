//! Two-thread ring throughput: a driver thread and a device thread on
//! separate cores pass requests over one of our rings, polling or parking.
//!
//! ```text
//! cargo run --release -p virtio-bench --bin ringbench -- --ring packed --size 256 --chain 1 --batch 32
//! ```
//!
//! The driver adds up to `--batch` requests, publishes them (kicking the
//! device if it asked to be told), and collects what is used; the device
//! takes everything available, reads each request's 16-byte header, writes
//! its status byte when it has one, and publishes once per `--batch`
//! completions (interrupting the driver if it asked). With `--notify park`
//! an idle thread re-enables notifications, re-checks, and parks until the
//! other side's kick or interrupt unparks it; with `poll` it spins.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use virtio_bench::{BenchQueue, Driver, serve};
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, Segment};
use virtio_core::spec::{Features, MAX_QUEUE_SIZE};
use zerocopy::IntoBytes;

/// Longest chain the device accepts (`Chain<MAX_CHAIN>`).
const MAX_CHAIN: usize = 64;
/// Guest memory per request slot: 64 bytes per descriptor.
const SEG: u64 = 64;
const DATA: u64 = 0x10_0000;

const USAGE: &str = "\
usage: ringbench [options]
  --ring split|packed     ring format (default split)
  --size N                queue size (default 256; split needs a power of two)
  --chain N               descriptors per request, 1..=64 and <= size (default 1)
  --batch N               requests added / completed per publish (default 32)
  --notify poll|park      idle threads spin, or park until notified (default poll)
  --event-idx on|off      VIRTIO_F_EVENT_IDX (default on)
  --requests N            requests per run (default 10000000)
  --runs N                runs; min/median/max are printed (default 5)
  --cpus A,B              cores for the driver and device threads (default 0,1)
  --json                  print one JSON object instead of text";

#[derive(Clone, Debug)]
struct Options {
    packed: bool,
    size: u16,
    chain: u16,
    batch: u32,
    park: bool,
    event_idx: bool,
    requests: u64,
    runs: usize,
    cpus: (usize, usize),
    json: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        packed: false,
        size: 256,
        chain: 1,
        batch: 32,
        park: false,
        event_idx: true,
        requests: 10_000_000,
        runs: 5,
        cpus: (0, 1),
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{arg}: '{v}' is not a number"))
        };
        match arg.as_str() {
            "--ring" => {
                o.packed = match value()?.as_str() {
                    "split" => false,
                    "packed" => true,
                    v => return Err(format!("--ring: '{v}' is neither split nor packed")),
                }
            }
            "--size" => {
                o.size = u16::try_from(number(value()?)?).map_err(|_| "--size: above 32768")?
            }
            "--chain" => {
                o.chain = u16::try_from(number(value()?)?).map_err(|_| "--chain: too long")?
            }
            "--batch" => {
                o.batch = u32::try_from(number(value()?)?).map_err(|_| "--batch: too large")?
            }
            "--notify" => {
                o.park = match value()?.as_str() {
                    "poll" => false,
                    "park" => true,
                    v => return Err(format!("--notify: '{v}' is neither poll nor park")),
                }
            }
            "--event-idx" => {
                o.event_idx = match value()?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(format!("--event-idx: '{v}' is neither on nor off")),
                }
            }
            "--requests" => o.requests = number(value()?)?,
            "--runs" => o.runs = usize::try_from(number(value()?)?).map_err(|_| "--runs")?,
            "--cpus" => {
                let v = value()?;
                let (a, b) = v.split_once(',').ok_or("--cpus: expected A,B")?;
                let core = |c: &str| {
                    c.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("--cpus: '{c}'"))
                };
                o.cpus = (core(a)?, core(b)?);
            }
            "--json" => o.json = true,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.size == 0 || o.size > MAX_QUEUE_SIZE {
        return Err(format!(
            "--size {}: a queue holds 1 to 32768 descriptors",
            o.size
        ));
    }
    if !o.packed && !o.size.is_power_of_two() {
        return Err(format!(
            "--size {}: a split ring's size must be a power of two (packed rings take any size)",
            o.size
        ));
    }
    if o.chain == 0 || o.chain > o.size || usize::from(o.chain) > MAX_CHAIN {
        return Err(format!(
            "--chain {}: a request takes 1 to min(size, {MAX_CHAIN}) = {} descriptors",
            o.chain,
            o.size.min(MAX_CHAIN as u16)
        ));
    }
    if o.batch == 0 || o.requests == 0 || o.runs == 0 {
        return Err("--batch, --requests and --runs must be at least 1".into());
    }
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    for c in [o.cpus.0, o.cpus.1] {
        if !cores.iter().any(|id| id.id == c) {
            return Err(format!("--cpus: core {c} is not available to this process"));
        }
    }
    Ok(o)
}

/// Request slot `i`: a 16-byte readable header, then `chain - 2` readable
/// data buffers and a 1-byte writable status (for chains of 2 or more).
fn segments(chain: u16, i: u16) -> (Vec<Segment>, Vec<Segment>) {
    let base = DATA + u64::from(i) * SEG * u64::from(chain);
    let at = |k: u16| base + u64::from(k) * SEG;
    let mut readable = vec![Segment {
        addr: at(0),
        len: 16,
    }];
    if chain == 1 {
        return (readable, vec![]);
    }
    readable.extend((1..chain - 1).map(|k| Segment {
        addr: at(k),
        len: SEG as u32,
    }));
    (
        readable,
        vec![Segment {
            addr: at(chain - 1),
            len: 1,
        }],
    )
}

struct RunStats {
    elapsed: Duration,
    kicks: u64,
    interrupts: u64,
}

fn run(o: &Options) -> Result<RunStats, String> {
    let mem_len = DATA + u64::from(o.size) * SEG * u64::from(o.chain);
    let mut buf = vec![0u64; mem_len.div_ceil(8) as usize];
    let mem = Region::new(0, buf.as_mut_bytes()).map_err(|e| e.to_string())?;
    let mut features = Features::VERSION_1;
    features.set(Features::RING_PACKED, o.packed);
    features.set(Features::EVENT_IDX, o.event_idx);
    let (mut drv, cfg) = Driver::new(&mem, o.size, features);
    let mut q = BenchQueue::new(&mem, cfg, features).map_err(|e| e.to_string())?;
    // Slots are handed out round-robin; a request's buffers are reused
    // once it is used (the driver never has more than `size` in flight).
    let slots: Vec<(Vec<Segment>, Vec<Segment>)> =
        (0..o.size).map(|i| segments(o.chain, i)).collect();
    let stop = AtomicBool::new(false);
    // The cores were checked at start-up. (Not looked up again here: once
    // this thread is pinned, the lookup would list only its own core.)
    let core = |id: usize| core_affinity::CoreId { id };
    let driver_thread = thread::current();
    thread::scope(|s| {
        let device = s.spawn(|| -> Result<u64, String> {
            core_affinity::set_for_current(core(o.cpus.1));
            // The chain snapshot is returned by value: size it to the
            // request, as a device sizes it to its protocol.
            match o.chain {
                0..=4 => device_loop::<_, 4>(o, &mem, &mut q, &stop, &driver_thread),
                5..=16 => device_loop::<_, 16>(o, &mem, &mut q, &stop, &driver_thread),
                _ => device_loop::<_, MAX_CHAIN>(o, &mem, &mut q, &stop, &driver_thread),
            }
        });
        let device_thread = device.thread().clone();
        let driver = (|| -> Result<RunStats, String> {
            core_affinity::set_for_current(core(o.cpus.0));
            let start = Instant::now();
            let kicks = driver_loop(o, &mem, &mut drv, &slots, &device_thread)?;
            let elapsed = start.elapsed();
            Ok(RunStats {
                elapsed,
                kicks,
                interrupts: 0,
            })
        })();
        // Done or failed, the device thread stops.
        stop.store(true, Ordering::Release);
        device_thread.unpark();
        let interrupts = device
            .join()
            .map_err(|_| "device thread panicked".to_string())??;
        driver.map(|r| RunStats { interrupts, ..r })
    })
}

fn driver_loop<M: GuestMemory>(
    o: &Options,
    mem: &M,
    drv: &mut Driver,
    slots: &[(Vec<Segment>, Vec<Segment>)],
    device: &thread::Thread,
) -> Result<u64, String> {
    let err = |e: virtio_core::driver::DriverError| e.to_string();
    let (mut issued, mut completed, mut kicks) = (0u64, 0u64, 0u64);
    let mut next_slot = 0usize;
    let mut idle = Idle::default();
    if o.park {
        drv.disable_interrupts(mem).map_err(err)?;
    }
    while completed < o.requests {
        let mut added = 0;
        while added < o.batch && issued < o.requests && drv.num_free() >= o.chain {
            let (rd, wr) = &slots[next_slot];
            // A compare, not a division per request.
            next_slot += 1;
            if next_slot == slots.len() {
                next_slot = 0;
            }
            drv.add_segments(mem, rd, wr).map_err(err)?;
            issued += 1;
            added += 1;
        }
        if added > 0 && drv.publish_avail(mem).map_err(err)? {
            kicks += 1;
            if o.park {
                device.unpark();
            }
        }
        let mut got = 0;
        while drv.pop_used(mem).map_err(err)?.is_some() {
            got += 1;
        }
        completed += got;
        if added == 0 && got == 0 {
            if o.park {
                if !drv.enable_interrupts(mem).map_err(err)? {
                    thread::park_timeout(Duration::from_millis(10));
                }
                drv.disable_interrupts(mem).map_err(err)?;
            } else {
                idle.spin();
            }
        } else {
            idle.reset();
        }
    }
    Ok(kicks)
}

fn device_loop<M: GuestMemory, const N: usize>(
    o: &Options,
    mem: &M,
    q: &mut BenchQueue,
    stop: &AtomicBool,
    driver: &thread::Thread,
) -> Result<u64, String> {
    let err = |e: virtio_core::queue::QueueError| e.to_string();
    let mut interrupts = 0u64;
    let mut idle = Idle::default();
    if o.park {
        q.disable_notification(mem).map_err(err)?;
    }
    loop {
        let mut served = 0u32;
        // Requests until the next publish (a countdown, not a division).
        let mut to_publish = o.batch;
        let mut chain = Chain::<N>::new();
        while q.pop(mem, &mut chain).map_err(err)? {
            let written = serve(mem, &chain);
            q.push_used(mem, chain.head(), written).map_err(err)?;
            served += 1;
            to_publish -= 1;
            if to_publish == 0 {
                to_publish = o.batch;
                if q.publish_used(mem).map_err(err)? {
                    interrupts += 1;
                    if o.park {
                        driver.unpark();
                    }
                }
            }
        }
        if q.publish_used(mem).map_err(err)? {
            interrupts += 1;
            if o.park {
                driver.unpark();
            }
        }
        if served == 0 {
            if stop.load(Ordering::Acquire) {
                return Ok(interrupts);
            }
            if o.park {
                if !q.enable_notification(mem).map_err(err)? {
                    thread::park_timeout(Duration::from_millis(10));
                }
                q.disable_notification(mem).map_err(err)?;
            } else {
                idle.spin();
            }
        } else {
            idle.reset();
        }
    }
}

/// Polling: spin, but give the core away now and then, so a poller that
/// shares its core with another process (a 2-core machine running anything
/// else) does not stall its peer for whole scheduler time slices.
#[derive(Default)]
struct Idle(u32);

impl Idle {
    fn spin(&mut self) {
        self.0 += 1;
        if self.0.is_multiple_of(256) {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringbench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    for _ in 0..o.runs {
        match run(&o) {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("ringbench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut ns: Vec<f64> = results
        .iter()
        .map(|r| r.elapsed.as_nanos() as f64 / o.requests as f64)
        .collect();
    ns.sort_by(f64::total_cmp);
    let (min, med, max) = (ns[0], ns[ns.len() / 2], ns[ns.len() - 1]);
    let kicks: u64 = results.iter().map(|r| r.kicks).sum::<u64>() / o.runs as u64;
    let irqs: u64 = results.iter().map(|r| r.interrupts).sum::<u64>() / o.runs as u64;
    let ring = if o.packed { "packed" } else { "split" };
    let notify = if o.park { "park" } else { "poll" };
    if o.json {
        println!(
            "{{\"ring\":\"{ring}\",\"size\":{},\"chain\":{},\"batch\":{},\"notify\":\"{notify}\",\"event_idx\":{},\"requests\":{},\"runs\":{},\"ns_per_request\":{{\"min\":{min:.2},\"median\":{med:.2},\"max\":{max:.2}}},\"mops\":{{\"min\":{:.3},\"median\":{:.3},\"max\":{:.3}}},\"kicks_per_run\":{kicks},\"interrupts_per_run\":{irqs}}}",
            o.size,
            o.chain,
            o.batch,
            o.event_idx,
            o.requests,
            o.runs,
            1e3 / max,
            1e3 / med,
            1e3 / min
        );
    } else {
        println!(
            "ringbench: {ring} ring, size {}, chain {}, batch {}, notify {notify}, event_idx {}, {} requests x {} runs, cores {},{}",
            o.size,
            o.chain,
            o.batch,
            if o.event_idx { "on" } else { "off" },
            o.requests,
            o.runs,
            o.cpus.0,
            o.cpus.1
        );
        println!("  ns/request  min {min:8.2}  median {med:8.2}  max {max:8.2}");
        println!(
            "  Mops/s      min {:8.3}  median {:8.3}  max {:8.3}",
            1e3 / max,
            1e3 / med,
            1e3 / min
        );
        println!("  per run: {kicks} kicks, {irqs} interrupts");
    }
    ExitCode::SUCCESS
}
