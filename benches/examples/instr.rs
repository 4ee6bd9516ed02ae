//! Instruction-count probe: runs one engine on one chain shape for a fixed
//! number of full-ring batches, so `valgrind --tool=callgrind` gives the
//! same count run after run. `benches/instructions.sh` runs it for every
//! engine and shape and divides by the requests served.
//!
//! `instr <ours-split|ours-packed|virtio-queue> <1-desc|4-desc|indirect> [batches]`
//!
//! Only the device-side batch functions (`device_batch`,
//! `vq_device_batch`) are meant to be counted: run callgrind with
//! `--toggle-collect` on them.

use std::hint::black_box;

use virtio_bench::{BenchQueue, Driver, QUEUE_SIZE, Shape, device_batch, host_memory};
use virtio_core::memory::Region;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

#[allow(dead_code)]
#[path = "../benches/support/vq.rs"]
mod vq;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: instr <ours-split|ours-packed|virtio-queue> <1-desc|4-desc|indirect> [batches]";
    let (Some(engine), Some(shape)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let Some(shape) = Shape::ALL.into_iter().find(|s| s.name() == shape) else {
        eprintln!("unknown shape {shape}\n{usage}");
        std::process::exit(2);
    };
    let batches: u32 = args.get(2).map_or(100, |b| b.parse().expect("batches"));
    let features = Features::INDIRECT_DESC | Features::EVENT_IDX;
    let mut served = 0u64;
    match engine.as_str() {
        "ours-split" | "ours-packed" => {
            let mut buf = host_memory(QUEUE_SIZE);
            let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
            let mut features = features;
            features.set(Features::RING_PACKED, engine == "ours-packed");
            let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
            let mut q = BenchQueue::new(&mem, cfg, features).unwrap();
            for _ in 0..batches {
                drv.refill(&mem, shape);
                served += u64::from(black_box(device_batch(&mut q, &mem).unwrap()).0);
            }
        }
        "virtio-queue" => {
            let vm = vq::vm_memory();
            let mem = vq::VmMem(&vm);
            let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
            let mut q = vq::vq_queue(cfg, true, &vm);
            for _ in 0..batches {
                drv.refill(&mem, shape);
                served += u64::from(black_box(vq::vq_device_batch(&mut q, &vm)).0);
            }
        }
        other => {
            eprintln!("unknown engine {other}\n{usage}");
            std::process::exit(2);
        }
    }
    println!("served {served}");
}
