//! Instruction-count probe: runs one engine on one chain shape for a fixed
//! number of full-ring batches, so `valgrind --tool=callgrind` gives the
//! same count run after run. `benches/instructions.sh` runs it for every
//! engine, shape, memory and chain capacity and divides by the requests
//! served.
//!
//! `instr <ours-split|ours-packed|virtio-queue> <shape> [region|multi] [4|16|64] [batches] [queue-size]`
//!
//! Shapes: `1-desc`, `1-writable`, `hdr-status`, `4-desc`, `indirect`, and
//! `chain-K` (K = 1, 2, 4, 8, 16, 32 direct descriptors) for the scaling
//! against chain length. The queue size (default 256, at most 1024, a power
//! of two) is for the scaling against queue size: each batch is still one
//! full ring.
//! `region` is one [`Region`]; `multi` is a `MultiRegion<8>` holding that
//! one region (what the vhost-user daemon serves). The chain capacity is
//! the `N` of the `Chain<N>` popped into. `virtio-queue` always runs over
//! `vm-memory` and ignores both.
//!
//! Only the device-side batch functions (`device_batch`,
//! `vq_device_batch`) are meant to be counted: run callgrind with
//! `--toggle-collect` on them.

use std::hint::black_box;

use virtio_bench::{
    BenchQueue, Driver, MAX_LAYOUT_QUEUE_SIZE, QUEUE_SIZE, Shape, device_batch, host_memory,
};
use virtio_core::memory::{GuestMemory, MultiRegion, Region};
use virtio_core::queue::Chain;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

#[allow(dead_code)]
#[path = "../benches/support/vq.rs"]
mod vq;

const USAGE: &str = "usage: instr <ours-split|ours-packed|virtio-queue> \
                     <1-desc|1-writable|hdr-status|4-desc|indirect|chain-K> [region|multi] [4|16|64] [batches] [queue-size]";

fn fail(msg: &str) -> ! {
    eprintln!("{msg}\n{USAGE}");
    std::process::exit(2);
}

fn ours<M: GuestMemory, const N: usize>(
    mem: &M,
    packed: bool,
    shape: Shape,
    batches: u32,
    size: u16,
) -> u64 {
    let mut features = Features::INDIRECT_DESC | Features::EVENT_IDX;
    features.set(Features::RING_PACKED, packed);
    let (mut drv, cfg) = Driver::new(mem, size, features);
    let mut q = BenchQueue::new(mem, cfg, features).unwrap();
    let mut chain = Chain::<N>::new();
    let mut served = 0;
    for _ in 0..batches {
        drv.refill(mem, shape);
        served += u64::from(black_box(device_batch(&mut q, mem, &mut chain).unwrap()).0);
    }
    served
}

fn ours_n<M: GuestMemory>(
    mem: &M,
    packed: bool,
    shape: Shape,
    n: &str,
    batches: u32,
    size: u16,
) -> u64 {
    match n {
        "4" => ours::<M, 4>(mem, packed, shape, batches, size),
        "16" => ours::<M, 16>(mem, packed, shape, batches, size),
        "64" => ours::<M, 64>(mem, packed, shape, batches, size),
        other => fail(&format!("unknown chain capacity {other}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(engine), Some(shape)) = (args.first(), args.get(1)) else {
        fail("missing arguments");
    };
    let Some(shape) = Shape::parse(shape) else {
        fail(&format!("unknown shape {shape}"));
    };
    let memory = args.get(2).map_or("region", String::as_str);
    let n = args.get(3).map_or("16", String::as_str);
    let batches: u32 = args.get(4).map_or(100, |b| b.parse().expect("batches"));
    let size: u16 = args
        .get(5)
        .map_or(QUEUE_SIZE, |q| q.parse().expect("queue size"));
    if !size.is_power_of_two() || size > MAX_LAYOUT_QUEUE_SIZE {
        fail(&format!(
            "queue size {size}: a power of two up to {MAX_LAYOUT_QUEUE_SIZE}"
        ));
    }
    if shape.ring_descs() > size {
        fail(&format!(
            "a {} chain does not fit a ring of {size}",
            shape.name()
        ));
    }
    let served = match engine.as_str() {
        "ours-split" | "ours-packed" => {
            let packed = engine == "ours-packed";
            let mut buf = host_memory(size);
            let region = Region::new(0, buf.as_mut_bytes()).unwrap();
            match memory {
                "region" => ours_n(&region, packed, shape, n, batches, size),
                "multi" => {
                    let mut multi = MultiRegion::<8>::new();
                    multi.add(region).unwrap();
                    ours_n(&multi, packed, shape, n, batches, size)
                }
                other => fail(&format!("unknown memory {other}")),
            }
        }
        "virtio-queue" => {
            let vm = vq::vm_memory_for(size);
            let mem = vq::VmMem(&vm);
            let features = Features::INDIRECT_DESC | Features::EVENT_IDX;
            let (mut drv, cfg) = Driver::new(&mem, size, features);
            let mut q = vq::vq_queue(cfg, true, &vm);
            let mut served = 0;
            for _ in 0..batches {
                drv.refill(&mem, shape);
                served += u64::from(black_box(vq::vq_device_batch(&mut q, &vm)).0);
            }
            served
        }
        other => fail(&format!("unknown engine {other}")),
    };
    println!("served {served}");
}
