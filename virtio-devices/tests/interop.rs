//! Interoperability: the published `virtio-drivers` crate (a driver stack
//! we did not write) drives our devices through `DeviceCore` and our
//! virtio-mmio transport.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use support::{ArenaHal, MmioAdapter, attach};
use virtio_devices::block::{Block, BlockOptions, RamDisk};
use virtio_devices::rng::Rng;
use virtio_devices::rng::test_utils::CountingRng as Counter;
use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::device::rng::VirtIORng;

#[test]
fn virtio_drivers_rng_gets_random_bytes() {
    // spec: rng.device-operation.1
    let mmio = attach(Rng::new(Counter(0)));
    let mut rng = VirtIORng::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    let mut buf = [0u8; 100];
    assert_eq!(rng.request_entropy(&mut buf).unwrap(), 100);
    assert_eq!(buf[0], 1);
    assert_eq!(buf[99], 100);
    let mut more = [0u8; 7];
    assert_eq!(rng.request_entropy(&mut more).unwrap(), 7);
    assert_eq!(more, [101, 102, 103, 104, 105, 106, 107]);
    let m = mmio.borrow();
    // virtio-drivers negotiated the ring features it knows and we offer.
    assert!(m.core().negotiated_features().bits() & (1 << 28 | 1 << 29) != 0);
    assert_eq!(m.error_count(), 0, "{:?}", m.last_error());
    assert!(m.irq().raised >= 1);
}

const SECTORS: usize = 128;

fn disk(read_only: bool) -> Block<RamDisk<'static>> {
    Block::new(
        RamDisk::new(Vec::leak(vec![0u8; SECTORS * 512])),
        BlockOptions {
            read_only,
            id: *b"interop-disk\0\0\0\0\0\0\0\0",
            ..BlockOptions::default()
        },
    )
}

#[test]
fn virtio_drivers_blk_writes_read_back() {
    // spec: reset.device-reset.1
    let mmio = attach(disk(false));
    let mut blk = VirtIOBlk::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    assert_eq!(blk.capacity(), SECTORS as u64);
    assert!(!blk.readonly());
    let data: Vec<u8> = (0..4 * SECTOR_SIZE).map(|i| (i * 7 % 256) as u8).collect();
    blk.write_blocks(10, &data).unwrap();
    let mut back = vec![0u8; 4 * SECTOR_SIZE];
    blk.read_blocks(10, &mut back).unwrap();
    assert_eq!(back, data);
    // Single sectors and the last sector.
    blk.write_blocks(SECTORS - 1, &[0x42; SECTOR_SIZE]).unwrap();
    let mut one = [0u8; SECTOR_SIZE];
    blk.read_blocks(SECTORS - 1, &mut one).unwrap();
    assert_eq!(one, [0x42; SECTOR_SIZE]);
    // Past the end fails with IOERR.
    assert_eq!(
        blk.read_blocks(SECTORS, &mut one),
        Err(virtio_drivers::Error::IoError)
    );
    blk.flush().unwrap();
    let mut id = [0u8; 20];
    let n = blk.device_id(&mut id).unwrap();
    assert_eq!(&id[..n], b"interop-disk");
    drop(blk);
    let m = mmio.borrow();
    assert_eq!(
        &m.core().device().storage().data()[10 * 512..14 * 512],
        &data[..]
    );
    assert_eq!(m.error_count(), 0, "{:?}", m.last_error());
    // Dropping the driver reset the device.
    assert_eq!(m.core().status().bits(), 0);
}

#[test]
fn virtio_drivers_blk_read_only_disk_fails_writes_with_ioerr() {
    // spec: blk.device-operation.3
    let mmio = attach(disk(true));
    let mut blk = VirtIOBlk::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    assert!(blk.readonly());
    assert_eq!(
        blk.write_blocks(0, &[1; SECTOR_SIZE]),
        Err(virtio_drivers::Error::IoError)
    );
    let mut back = [9u8; SECTOR_SIZE];
    blk.read_blocks(0, &mut back).unwrap();
    assert_eq!(back, [0; SECTOR_SIZE]);
    let m = mmio.borrow();
    assert!(m.core().device().storage().data().iter().all(|&b| b == 0));
    assert_eq!(m.error_count(), 0, "{:?}", m.last_error());
}

#[test]
fn virtio_drivers_console_bytes_go_both_ways() {
    // spec: console.device-initialization.2
    use virtio_devices::console::Console;
    use virtio_drivers::device::console::VirtIOConsole;

    let console = Console::new([support::Pipe::default()])
        .with_size(132, 43)
        .with_emergency_write();
    let mmio = attach(console);
    let mut con = VirtIOConsole::<ArenaHal, _>::new(MmioAdapter::new(mmio.clone())).unwrap();
    let size = con.size().unwrap().unwrap();
    assert_eq!((size.columns, size.rows), (132, 43));
    // Driver to device.
    con.send_bytes(b"hello from virtio-drivers\n").unwrap();
    con.send(b'!').unwrap();
    con.emergency_write(b'E').unwrap();
    assert_eq!(
        mmio.borrow().core().device().backend(0).unwrap().output,
        b"hello from virtio-drivers\n!E"
    );
    // Device to driver: nothing yet, then input arrives at the backend.
    assert_eq!(con.recv(true).unwrap(), None);
    {
        let mut m = mmio.borrow_mut();
        m.core_mut()
            .device_mut()
            .backend_mut(0)
            .unwrap()
            .input
            .extend(b"typed");
        while m.poll().work_left() {}
        assert!(m.irq().level);
    }
    assert!(con.ack_interrupt().unwrap());
    let mut got = Vec::new();
    while let Some(b) = con.recv(true).unwrap() {
        got.push(b);
    }
    assert_eq!(got, b"typed");
    let m = mmio.borrow();
    assert_eq!(m.error_count(), 0, "{:?}", m.last_error());
}
