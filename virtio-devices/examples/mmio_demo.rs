//! Brings up our block, entropy and console devices behind the virtio-mmio
//! transport and lets the published `virtio-drivers` crate (a driver stack
//! we did not write) drive them, printing what happened.
//!
//! Run with `cargo run -p virtio-backend-devices --example mmio_demo`.
// An example program, not library code: it may stop on its own setup errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

use support::{ArenaHal, MmioAdapter, Pipe, attach};
use virtio_devices::block::{Block, BlockOptions, RamDisk};
use virtio_devices::console::Console;
use virtio_devices::rng::Rng;
use virtio_devices::rng::test_utils::XorShift64;
use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::rng::VirtIORng;

fn summary<D: virtio_core::device::VirtioDevice>(name: &str, mmio: &support::Shared<D>) {
    let m = mmio.borrow();
    println!(
        "  [{name}] status {:#04x}, negotiated features {:#x}, interrupts raised {}, invalid register accesses {}",
        m.core().status().bits(),
        m.core().negotiated_features().bits(),
        m.irq().raised,
        m.error_count()
    );
}

fn main() {
    println!("virtio-blk (ID 2) over virtio-mmio, RAM disk of 256 sectors:");
    let disk = Block::new(
        RamDisk::new(Vec::leak(vec![0u8; 256 * 512])),
        BlockOptions {
            id: *b"mmio-demo-disk\0\0\0\0\0\0",
            ..BlockOptions::default()
        },
    );
    let mmio = attach(disk);
    let mut blk = VirtIOBlk::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    println!(
        "  driver sees capacity {} sectors, read-only: {}",
        blk.capacity(),
        blk.readonly()
    );
    let mut id = [0u8; 20];
    let n = blk.device_id(&mut id).unwrap();
    println!("  GET_ID -> {:?}", String::from_utf8_lossy(&id[..n]));
    let text = b"hello from a virtio-drivers guest, stored by our device";
    let mut sector = [0u8; SECTOR_SIZE];
    sector[..text.len()].copy_from_slice(text);
    blk.write_blocks(7, &sector).unwrap();
    println!("  OUT sector 7: {} bytes", sector.len());
    let mut back = [0u8; SECTOR_SIZE];
    blk.read_blocks(7, &mut back).unwrap();
    println!(
        "  IN  sector 7: {:?}",
        String::from_utf8_lossy(&back[..text.len()])
    );
    blk.flush().unwrap();
    println!("  FLUSH: ok");
    println!(
        "  IN  sector 256 (past the end): {:?}",
        blk.read_blocks(256, &mut back)
    );
    summary("blk", &mmio);
    let stats = mmio.borrow().core().device().stats();
    println!("  device stats: {stats:?}");

    println!("virtio-rng (ID 4) over virtio-mmio:");
    let mmio = attach(Rng::new(XorShift64::new(0x2545_f491_4f6c_dd1d)));
    let mut rng = VirtIORng::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    let mut buf = [0u8; 16];
    let n = rng.request_entropy(&mut buf).unwrap();
    println!("  {n} random bytes: {:02x?}", &buf[..n]);
    summary("rng", &mmio);

    println!("virtio-console (ID 3) over virtio-mmio, 80x25:");
    let mmio = attach(
        Console::new([Pipe::default()])
            .with_size(80, 25)
            .with_emergency_write(),
    );
    let mut con = VirtIOConsole::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    println!("  driver sees size {}", con.size().unwrap().unwrap());
    con.send_bytes(b"guest says hi").unwrap();
    let out = mmio
        .borrow()
        .core()
        .device()
        .backend(0)
        .unwrap()
        .output
        .clone();
    println!(
        "  host backend received {:?}",
        String::from_utf8_lossy(&out)
    );
    {
        let mut m = mmio.borrow_mut();
        let backend = m.core_mut().device_mut().backend_mut(0).unwrap();
        backend.input.extend(b"host says hello");
        while m.poll().work_left() {}
    }
    con.ack_interrupt().unwrap();
    let mut got = Vec::new();
    while let Some(b) = con.recv(true).unwrap() {
        got.push(b);
    }
    println!("  guest received {:?}", String::from_utf8_lossy(&got));
    summary("console", &mmio);
}
