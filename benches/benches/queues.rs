//! Device-side cost per request of our split and packed queues and of
//! rust-vmm's `virtio-queue`, for three chain shapes, in one run; and the
//! driver side (add + kick decision + collect) of both our rings.
//!
//! One measured batch is a full ring of 256 requests, refilled by our driver
//! side outside the measured time. `cargo bench -p virtio-bench`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use virtio_bench::{BenchQueue, Driver, QUEUE_SIZE, Shape, device_batch, host_memory};
use virtio_core::memory::Region;
use virtio_core::spec::Features;
use zerocopy::IntoBytes;

#[path = "support/vq.rs"]
mod vq;

const FEATURES: Features = Features::INDIRECT_DESC.union(Features::EVENT_IDX);

fn ours(c: &mut Criterion, shape: Shape, packed: bool) {
    let mut buf = host_memory(QUEUE_SIZE);
    let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
    let mut features = FEATURES;
    features.set(Features::RING_PACKED, packed);
    let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
    let mut q = BenchQueue::new(&mem, cfg, features).unwrap();
    let name = if packed { "ours-packed" } else { "ours-split" };
    let mut group = c.benchmark_group(format!("device/{}", shape.name()));
    group.throughput(Throughput::Elements(u64::from(drv.refill(&mem, shape))));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                drv.refill(&mem, shape);
                let start = Instant::now();
                black_box(
                    device_batch(&mut q, &mem, &mut virtio_core::queue::Chain::<16>::new())
                        .unwrap(),
                );
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn virtio_queue(c: &mut Criterion, shape: Shape) {
    let vm = vq::vm_memory();
    let mem = vq::VmMem(&vm);
    let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, FEATURES);
    let mut q = vq::vq_queue(cfg, true, &vm);
    let mut group = c.benchmark_group(format!("device/{}", shape.name()));
    group.throughput(Throughput::Elements(u64::from(drv.refill(&mem, shape))));
    group.bench_function("virtio-queue", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                drv.refill(&mem, shape);
                let start = Instant::now();
                black_box(vq::vq_device_batch(&mut q, &vm));
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

fn device_side(c: &mut Criterion) {
    for shape in Shape::ALL {
        ours(c, shape, false);
        ours(c, shape, true);
        virtio_queue(c, shape);
    }
}

/// Driver side: collect a full ring of used buffers, add a full ring of
/// requests and decide on the kick; the device's work is not measured.
fn driver_side(c: &mut Criterion) {
    for shape in Shape::ALL {
        let mut group = c.benchmark_group(format!("driver/{}", shape.name()));
        for packed in [false, true] {
            let mut buf = host_memory(QUEUE_SIZE);
            let mem = Region::new(0, buf.as_mut_bytes()).unwrap();
            let mut features = FEATURES;
            features.set(Features::RING_PACKED, packed);
            let (mut drv, cfg) = Driver::new(&mem, QUEUE_SIZE, features);
            let mut q = BenchQueue::new(&mem, cfg, features).unwrap();
            group.throughput(Throughput::Elements(u64::from(drv.refill(&mem, shape))));
            device_batch(&mut q, &mem, &mut virtio_core::queue::Chain::<16>::new()).unwrap();
            let name = if packed { "ours-packed" } else { "ours-split" };
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        black_box(drv.refill(&mem, shape));
                        total += start.elapsed();
                        device_batch(&mut q, &mem, &mut virtio_core::queue::Chain::<16>::new())
                            .unwrap();
                    }
                    total
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = device_side, driver_side
}
criterion_main!(benches);
