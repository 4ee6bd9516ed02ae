//! Device-side time per request of our split and packed queues and of
//! rust-vmm's `virtio-queue`, measured interleaved: every configuration of
//! one chain shape is set up at once, and each round times one full-ring
//! batch of each, in an order that rotates from round to round. Load drift
//! on a shared machine then hits every engine alike, and the ratios (taken
//! between medians of the same rounds) are what a re-run reproduces.
//!
//! Configurations per shape: our split and packed engines over one
//! `Region` and over a `MultiRegion<8>` holding that one region, popping
//! into a `Chain<N>` for N = 4, 16 and 64; `virtio-queue` over `vm-memory`.
//! Then the driver side of our two rings (add + kick decision + collect).
//!
//! `cargo bench -p virtio-bench [-- --rounds R]` (default 400 rounds;
//! `--quick` is 100). Prints Markdown tables.

use std::hint::black_box;
use std::time::{Duration, Instant};

use virtio_bench::{BenchQueue, Driver, QUEUE_SIZE, Shape, device_batch, host_memory};
use virtio_core::memory::{GuestMemory, MultiRegion, Region};
use virtio_core::queue::Chain;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

#[path = "support/vq.rs"]
mod vq;

const FEATURES: Features = Features::INDIRECT_DESC.union(Features::EVENT_IDX);

/// Times one full-ring batch (refilled outside the timed part); returns
/// the time and the requests in it.
type Bench = Box<dyn FnMut() -> (Duration, u16)>;

/// Guest memory for one configuration, alive for the whole run.
fn region() -> Region<'static> {
    let buf: &'static mut [u64] = Box::leak(host_memory(QUEUE_SIZE).into_boxed_slice());
    Region::new(0, buf.as_mut_bytes()).unwrap()
}

fn multi() -> MultiRegion<'static, 8> {
    let mut m = MultiRegion::new();
    m.add(region()).unwrap();
    m
}

fn ours<M: GuestMemory + 'static, const N: usize>(mem: M, packed: bool, shape: Shape) -> Bench {
    let mut features = FEATURES;
    features.set(Features::RING_PACKED, packed);
    let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
    let mut q = Box::new(BenchQueue::new(&mem, cfg, features).unwrap());
    let mut chain = Box::new(Chain::<N>::new());
    Box::new(move || {
        let n = drv.refill(&mem, shape);
        let start = Instant::now();
        black_box(device_batch(&mut q, &mem, &mut chain).unwrap());
        (start.elapsed(), n)
    })
}

fn virtio_queue(shape: Shape) -> Bench {
    let vm = vq::vm_memory();
    let (mut drv, cfg) = Driver::new(&vq::VmMem(&vm), QUEUE_SIZE, FEATURES);
    let mut q = vq::vq_queue(cfg, true, &vm);
    Box::new(move || {
        let n = drv.refill(&vq::VmMem(&vm), shape);
        let start = Instant::now();
        black_box(vq::vq_device_batch(&mut q, &vm));
        (start.elapsed(), n)
    })
}

/// Driver side: collect a full ring of used buffers, add a full ring and
/// decide on the kick (timed); the device's work is not.
fn driver_side(packed: bool, shape: Shape) -> Bench {
    let mem = region();
    let mut features = FEATURES;
    features.set(Features::RING_PACKED, packed);
    let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
    let mut q = Box::new(BenchQueue::new(&mem, cfg, features).unwrap());
    let mut chain = Box::new(Chain::<16>::new());
    drv.refill(&mem, shape);
    device_batch(&mut q, &mem, &mut chain).unwrap();
    Box::new(move || {
        let start = Instant::now();
        let n = black_box(drv.refill(&mem, shape));
        let t = start.elapsed();
        device_batch(&mut q, &mem, &mut chain).unwrap();
        (t, n)
    })
}

/// Runs `benches` interleaved for `rounds` rounds (after a warm-up) and
/// returns each one's median time per request in ns.
fn interleaved(benches: &mut [(String, Bench)], rounds: usize) -> Vec<f64> {
    let e = benches.len();
    for _ in 0..rounds / 10 + 1 {
        for (_, b) in benches.iter_mut() {
            b();
        }
    }
    let mut samples = vec![Vec::with_capacity(rounds); e];
    for r in 0..rounds {
        for k in 0..e {
            let i = (r + k) % e;
            let (t, n) = benches[i].1();
            samples[i].push(t.as_nanos() as f64 / f64::from(n));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut rounds = 400;
    if args.iter().any(|a| a == "--quick") {
        rounds = 100;
    }
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        rounds = args[i + 1].parse().expect("--rounds R");
    }
    println!(
        "### Device side, ns per request (median of {rounds} interleaved full-ring batches, queue 256)"
    );
    println!();
    println!(
        "| shape | N | split Region | split Multi | packed Region | packed Multi | virtio-queue | packed/split | Multi/Region (split) | vq/split | vq/packed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for shape in Shape::ALL {
        let mut benches: Vec<(String, Bench)> = vec![("vq".into(), virtio_queue(shape))];
        macro_rules! at {
            ($n:literal) => {
                benches.push((format!("sr{}", $n), ours::<_, $n>(region(), false, shape)));
                benches.push((format!("sm{}", $n), ours::<_, $n>(multi(), false, shape)));
                benches.push((format!("pr{}", $n), ours::<_, $n>(region(), true, shape)));
                benches.push((format!("pm{}", $n), ours::<_, $n>(multi(), true, shape)));
            };
        }
        at!(4);
        at!(16);
        at!(64);
        let t = interleaved(&mut benches, rounds);
        let get = |name: &str| t[benches.iter().position(|(n, _)| n == name).unwrap()];
        let vq = get("vq");
        for n in [4, 16, 64] {
            let (sr, sm, pr, pm) = (
                get(&format!("sr{n}")),
                get(&format!("sm{n}")),
                get(&format!("pr{n}")),
                get(&format!("pm{n}")),
            );
            println!(
                "| {} | {n} | {sr:.1} | {sm:.1} | {pr:.1} | {pm:.1} | {vq:.1} | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
                shape.name(),
                pr / sr,
                sm / sr,
                vq / sr,
                vq / pr
            );
        }
    }
    println!();
    println!("### Driver side, ns per request (add + kick decision + collect, interleaved)");
    println!();
    println!("| shape | ours split | ours packed |");
    println!("|---|---|---|");
    for shape in Shape::ALL {
        let mut benches: Vec<(String, Bench)> = vec![
            ("split".into(), driver_side(false, shape)),
            ("packed".into(), driver_side(true, shape)),
        ];
        let t = interleaved(&mut benches, rounds);
        println!("| {} | {:.1} | {:.1} |", shape.name(), t[0], t[1]);
    }
}
