//! The daemon without QEMU: memory mapping, and whole protocol
//! conversations driven by the `vhost` crate's frontend over a socket pair,
//! with our own driver side building the rings in the shared file.
#![allow(clippy::arithmetic_side_effects)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, MemoryError, RegionError};
use virtio_core::queue::Segment;
use virtio_core::spec::Features;
use virtio_devices::block::{Block, BlockOptions};
use virtio_devices::rng::Rng;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::connection::{self, Ended};
use crate::entropy::HostEntropy;
use crate::memory::UnsealedMemory::{Accept, Refuse};
use crate::memory::{GuestRam, MapError, MemoryTable, RegionSpec};
use crate::storage::FileStorage;

/// Guest physical base of the test RAM, and where "the frontend" maps it.
pub(crate) const GPA: u64 = 0x10_0000;
pub(crate) const UA: u64 = 0x7f00_0000_0000;
pub(crate) const RAM: u64 = 0x10_0000;

pub(crate) fn temp_file(tag: &str, len: u64) -> (PathBuf, File) {
    let path = std::env::temp_dir().join(format!("vvu-{tag}-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(len).unwrap();
    (path, file)
}

/// Guest RAM as QEMU's `memory-backend-memfd` makes it: a memfd sealed
/// against shrinking and growing.
fn sealed_ram(len: u64) -> File {
    let ram = unsealed_ram(len);
    rustix::fs::fcntl_add_seals(
        &ram,
        rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
    )
    .unwrap();
    ram
}

/// A memfd anyone holding it may shrink (`memory-backend-memfd,seal=off`).
fn unsealed_ram(len: u64) -> File {
    let fd =
        rustix::fs::memfd_create("vvu-test-ram", rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
    let ram = File::from(fd);
    ram.set_len(len).unwrap();
    ram
}

/// The driver's view of guest RAM: positioned I/O on the same file the
/// daemon maps shared (the page cache makes both views one memory).
pub(crate) struct FileMem {
    pub(crate) file: File,
}

impl FileMem {
    fn offset(&self, addr: u64, len: usize) -> Result<u64, MemoryError> {
        let len = len as u64;
        let err = MemoryError::OutOfBounds { addr, len };
        let off = addr.checked_sub(GPA).ok_or(err)?;
        if off.checked_add(len).is_none_or(|end| end > RAM) {
            return Err(err);
        }
        Ok(off)
    }
}

impl GuestMemory for FileMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let off = self.offset(addr, buf.len())?;
        self.file.read_exact_at(buf, off).unwrap();
        Ok(())
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        let off = self.offset(addr, buf.len())?;
        self.file.write_all_at(buf, off).unwrap();
        Ok(())
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        self.write(addr, &value.to_le_bytes())
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.offset(addr, len as usize).map(|_| ())
    }
}

// ---- memory mapping ------------------------------------------------------

#[test]
fn mapped_region_is_the_file_at_its_guest_address() {
    let (path, file) = temp_file("map", 0x8000);
    let spec = RegionSpec {
        guest_addr: 0x1_0000,
        size: 0x4000,
        user_addr: 0x7000_0000,
        mmap_offset: 0x2000,
    };
    let ram = GuestRam::new();
    ram.replace(
        MemoryTable::from_regions(vec![(spec, file.try_clone().unwrap())], Accept).unwrap(),
    )
    .unwrap();
    assert_eq!(ram.num_regions(), 1);
    // The file at mmap_offset is guest address guest_addr, both ways.
    file.write_all_at(b"hello", 0x2010).unwrap();
    let mut buf = [0u8; 5];
    ram.read(0x1_0010, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    ram.write(0x1_3ffe, b"!!").unwrap();
    let mut back = [0u8; 2];
    file.read_exact_at(&mut back, 0x5ffe).unwrap();
    assert_eq!(&back, b"!!");
    ram.store_u16_release(0x1_0020, 0xbeef).unwrap();
    assert_eq!(ram.load_u16_acquire(0x1_0020).unwrap(), 0xbeef);
    // Nothing outside the region.
    assert!(ram.read(0x1_3fff, &mut [0u8; 2]).is_err());
    assert!(ram.read(0xffff, &mut [0u8; 1]).is_err());
    // Frontend addresses translate inside the region only.
    assert_eq!(ram.user_to_guest(0x7000_0010), Some(0x1_0010));
    assert_eq!(ram.user_to_guest(0x7000_4000), None);
    assert_eq!(ram.user_to_guest(0x6fff_ffff), None);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn regions_are_added_removed_and_checked() {
    let (path, file) = temp_file("regions", 0x4000);
    let spec = |guest_addr, size, mmap_offset| RegionSpec {
        guest_addr,
        size,
        user_addr: guest_addr.wrapping_add(0x1000_0000),
        mmap_offset,
    };
    let ram = GuestRam::new();
    ram.update(|t| t.add(spec(0x1000, 0x1000, 0), &file, Accept))
        .unwrap();
    ram.update(|t| t.add(spec(0x2000, 0x1000, 0x1000), &file, Accept))
        .unwrap();
    // Contiguous regions serve an access that straddles them.
    ram.write(0x1ffe, b"abcd").unwrap();
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b[..2], 0xffe).unwrap();
    file.read_exact_at(&mut b[2..], 0x1000).unwrap();
    assert_eq!(&b, b"abcd");
    // Overlap, past the end of the file, overflow: refused, table unchanged.
    assert!(matches!(
        ram.update(|t| t.add(spec(0x1800, 0x1000, 0), &file, Accept)),
        Err(MapError::Region(RegionError::Overlap))
    ));
    assert!(matches!(
        ram.update(|t| t.add(spec(0x8000, 0x2000, 0x3000), &file, Accept)),
        Err(MapError::BeyondFile { .. })
    ));
    assert!(matches!(
        ram.update(|t| t.add(spec(u64::MAX - 0xfff, 0x2000, 0), &file, Accept)),
        Err(MapError::Overflow)
    ));
    assert_eq!(ram.num_regions(), 2);
    // Removal unmaps; unknown regions are an error.
    ram.update(|t| t.remove(0x1000)).unwrap();
    assert!(ram.read(0x1000, &mut [0u8; 1]).is_err());
    ram.read(0x2000, &mut [0u8; 1]).unwrap();
    assert!(matches!(
        ram.update(|t| t.remove(0x1000)),
        Err(MapError::NoSuchRegion(0x1000))
    ));
    // A new table replaces the old one entirely.
    ram.replace(MemoryTable::new()).unwrap();
    assert_eq!(ram.num_regions(), 0);
    assert!(ram.read(0x2000, &mut [0u8; 1]).is_err());
    std::fs::remove_file(path).unwrap();
}

// ---- protocol conversations ------------------------------------------------

/// A daemon connection on a thread, and the frontend's end of the socket.
fn spawn<D: virtio_core::device::VirtioDevice + Send + 'static>(
    device: D,
) -> (UnixStream, thread::JoinHandle<std::io::Result<Ended>>) {
    let (front, back) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || connection::serve(back, device));
    (front, server)
}

fn rng() -> Rng<HostEntropy> {
    Rng::new(HostEntropy::open().unwrap()).with_queue_size(64)
}

pub(crate) fn wait_for(call: &EventFd) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while call.read().is_err() {
        assert!(Instant::now() < deadline, "no used-buffer interrupt");
        thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) const QSIZE: u16 = 8;

/// The frontend's side of starting ring `queue` laid out at `layout` (in
/// guest physical addresses), resuming at `base`: size, addresses, base,
/// call and kick eventfds, enable. Returns the kick and call eventfds.
pub(crate) fn set_up_ring(
    fe: &mut Frontend,
    queue: usize,
    layout: virtio_core::queue::QueueConfig,
    base: u16,
) -> (EventFd, EventFd) {
    let ua = |gpa: u64| gpa - GPA + UA;
    fe.set_vring_num(queue, QSIZE).unwrap();
    fe.set_vring_addr(
        queue,
        &VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: ua(layout.desc_addr),
            used_ring_addr: ua(layout.device_addr),
            avail_ring_addr: ua(layout.driver_addr),
            log_addr: None,
        },
    )
    .unwrap();
    fe.set_vring_base(queue, base).unwrap();
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let call = EventFd::new(EFD_NONBLOCK).unwrap();
    fe.set_vring_call(queue, &call).unwrap();
    fe.set_vring_kick(queue, &kick).unwrap();
    fe.set_vring_enable(queue, true).unwrap();
    (kick, call)
}

/// Negotiates, shares `ram`, runs `before_rings` (e.g. `SET_INFLIGHT_FD`)
/// and starts queue 0 at `base`; returns the frontend, the driver and the
/// kick/call eventfds.
fn start_with(
    front: UnixStream,
    ram: &File,
    features: Features,
    base: u16,
    prepare: &dyn Fn(&FileMem),
    before_rings: &dyn Fn(&mut Frontend),
) -> (Frontend, SplitDriver, FileMem, EventFd, EventFd) {
    let mut fe = Frontend::from_stream(front, 1);
    fe.set_owner().unwrap();
    let offered = fe.get_features().unwrap();
    let protocol = 1u64 << 30;
    assert_ne!(offered & protocol, 0);
    assert_ne!(offered & Features::VERSION_1.bits(), 0);
    assert_eq!(offered & Features::NOTIFICATION_DATA.bits(), 0);
    fe.set_features(features.bits() | protocol).unwrap();
    let pf = fe.get_protocol_features().unwrap();
    // The rng has no configuration space, so no CONFIG.
    assert!(pf.contains(VhostUserProtocolFeatures::REPLY_ACK | VhostUserProtocolFeatures::MQ));
    assert!(!pf.contains(VhostUserProtocolFeatures::CONFIG));
    assert!(pf.contains(VhostUserProtocolFeatures::INFLIGHT_SHMFD));
    fe.set_protocol_features(
        VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::INFLIGHT_SHMFD,
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
    let layout = SplitDriver::layout(GPA, QSIZE);
    let driver = SplitDriver::new(&mem, layout, features).unwrap();
    prepare(&mem);
    before_rings(&mut fe);
    let (kick, call) = set_up_ring(&mut fe, 0, layout, base);
    (fe, driver, mem, kick, call)
}

/// [`start_with`] without anything before the rings.
fn start(
    front: UnixStream,
    ram: &File,
    features: Features,
    base: u16,
    prepare: &dyn Fn(&FileMem),
) -> (Frontend, SplitDriver, FileMem, EventFd, EventFd) {
    start_with(front, ram, features, base, prepare, &|_| {})
}

/// Offers one 16-byte writable buffer, kicks, waits for the interrupt.
fn serve_one(driver: &mut SplitDriver, mem: &FileMem, kick: &EventFd, call: &EventFd) -> u32 {
    let id = driver
        .add(
            mem,
            &[],
            &[Segment {
                addr: GPA + 0x8000,
                len: 16,
            }],
        )
        .unwrap();
    driver.publish_avail(mem).unwrap();
    // Re-arm the used-buffer interrupt (EVENT_IDX: used_event).
    driver.enable_interrupts(mem).unwrap();
    kick.write(1).unwrap();
    wait_for(call);
    let used = driver.pop_used(mem).unwrap().expect("a used buffer");
    assert_eq!(used.id, id);
    used.len
}

#[test]
fn rng_over_vhost_user_fills_buffers_and_reports_the_ring_base() {
    let ram = sealed_ram(RAM);
    let (front, server) = spawn(rng());
    let features = Features::VERSION_1 | Features::EVENT_IDX;
    let (fe, mut driver, mem, kick, call) = start(front, &ram, features, 0, &|_| {});
    // A frontend shrinking the mapped memfd is refused by its seal.
    assert!(ram.set_len(0).is_err());
    for _ in 0..3 {
        assert_eq!(serve_one(&mut driver, &mem, &kick, &call), 16);
    }
    let mut bytes = [0u8; 16];
    mem.read(GPA + 0x8000, &mut bytes).unwrap();
    assert_ne!(bytes, [0u8; 16]);
    // GET_VRING_BASE stops the ring and reports the next available index.
    assert_eq!(fe.get_vring_base(0).unwrap(), 3);
    // A kick on a stopped ring is not served.
    driver
        .add(
            &mem,
            &[],
            &[Segment {
                addr: GPA + 0x8000,
                len: 16,
            }],
        )
        .unwrap();
    driver.publish_avail(&mem).unwrap();
    kick.write(1).unwrap();
    thread::sleep(Duration::from_millis(50));
    assert!(driver.pop_used(&mem).unwrap().is_none());
    // Handler errors are negative acknowledgements (REPLY_ACK); the
    // connection lives on.
    fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    fe.set_vring_num(0, 32).unwrap();
    assert!(fe.set_vring_num(0, 4096).is_err());
    fe.set_hdr_flags(VhostUserHeaderFlag::empty());
    assert!(fe.get_features().is_ok());
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

#[test]
fn only_files_sealed_against_shrinking_are_mapped() {
    let spec = RegionSpec {
        guest_addr: GPA,
        size: 0x4000,
        user_addr: UA,
        mmap_offset: 0,
    };
    let (path, regular) = temp_file("unsealed", 0x4000);
    for file in [unsealed_ram(0x4000), regular] {
        assert!(matches!(
            MemoryTable::from_regions(vec![(spec, file)], Refuse),
            Err(MapError::Unsealed)
        ));
    }
    std::fs::remove_file(path).unwrap();
    let sealed = sealed_ram(0x4000);
    let ram = GuestRam::new();
    ram.replace(
        MemoryTable::from_regions(vec![(spec, sealed.try_clone().unwrap())], Refuse).unwrap(),
    )
    .unwrap();
    // The frontend cannot shrink it under the mapping: the access that
    // would fault past the end stays in the file.
    assert!(sealed.set_len(0).is_err());
    ram.write(GPA + 0x3ffe, b"ok").unwrap();
    let mut back = [0u8; 2];
    ram.read(GPA + 0x3ffe, &mut back).unwrap();
    assert_eq!(&back, b"ok");
}

#[test]
fn unsealed_guest_memory_is_an_error_on_its_connection_only() {
    let (front, server) = spawn(rng());
    let mut fe = Frontend::from_stream(front, 1);
    fe.set_owner().unwrap();
    fe.get_features().unwrap();
    fe.set_features(Features::VERSION_1.bits() | 1 << 30)
        .unwrap();
    fe.get_protocol_features().unwrap();
    fe.set_protocol_features(VhostUserProtocolFeatures::REPLY_ACK)
        .unwrap();
    let region = |file: &File| VhostUserMemoryRegionInfo {
        guest_phys_addr: GPA,
        memory_size: RAM,
        userspace_addr: UA,
        mmap_offset: 0,
        mmap_handle: file.as_raw_fd(),
    };
    let unsealed = unsealed_ram(RAM);
    fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    assert!(fe.set_mem_table(&[region(&unsealed)]).is_err());
    // Shrinking it now harms nobody: it was never mapped.
    unsealed.set_len(0).unwrap();
    let sealed = sealed_ram(RAM);
    fe.set_mem_table(&[region(&sealed)]).unwrap();
    assert!(fe.get_features().is_ok());
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

#[test]
fn a_ring_restarts_at_the_base_the_frontend_gives() {
    let ram = sealed_ram(RAM);
    let (front, server) = spawn(rng());
    let mem = FileMem {
        file: ram.try_clone().unwrap(),
    };
    let layout = SplitDriver::layout(GPA, QSIZE);
    // The driver had gone round five buffers before the ring was stopped:
    // avail.idx and used.idx are 5; now it offers descriptor 0 in slot 5.
    let prepare = |mem: &FileMem| {
        let mut desc = Vec::new();
        desc.extend_from_slice(&(GPA + 0x8000).to_le_bytes());
        desc.extend_from_slice(&16u32.to_le_bytes());
        desc.extend_from_slice(&2u16.to_le_bytes()); // WRITE
        desc.extend_from_slice(&0u16.to_le_bytes());
        mem.write(layout.desc_addr, &desc).unwrap();
        mem.store_u16_release(layout.driver_addr + 4 + 2 * 5, 0)
            .unwrap();
        mem.store_u16_release(layout.driver_addr + 2, 6).unwrap();
        mem.store_u16_release(layout.device_addr + 2, 5).unwrap();
    };
    let (fe, _driver, _mem, _kick, call) = start(front, &ram, Features::VERSION_1, 5, &prepare);
    // Starting the ring served what was already there.
    wait_for(&call);
    assert_eq!(mem.load_u16_acquire(layout.device_addr + 2).unwrap(), 6);
    let mut elem = [0u8; 8];
    mem.read(layout.device_addr + 4 + 8 * 5, &mut elem).unwrap();
    assert_eq!(elem, [0, 0, 0, 0, 16, 0, 0, 0]);
    assert_eq!(fe.get_vring_base(0).unwrap(), 6);
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

#[test]
fn block_config_space_over_get_config() {
    let (path, image) = temp_file("blk", 8 * 512);
    let storage = FileStorage::from_file(image, true).unwrap();
    let (front, server) = spawn(Block::new(storage, BlockOptions::default()));
    let mut fe = Frontend::from_stream(front, 1);
    fe.set_owner().unwrap();
    let offered = fe.get_features().unwrap();
    fe.set_features(Features::VERSION_1.bits() | (offered & (1 << 30)))
        .unwrap();
    fe.set_protocol_features(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ)
        .unwrap();
    assert_eq!(fe.get_queue_num().unwrap(), 1);
    let (_, config) = fe
        .get_config(0, 8, VhostUserConfigFlags::WRITABLE, &[0u8; 8])
        .unwrap();
    // virtio-blk `capacity`: 8 sectors.
    assert_eq!(config, 8u64.to_le_bytes());
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    std::fs::remove_file(path).unwrap();
}

/// A raw message: request, flags, payload.
fn raw(request: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&request.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

#[test]
fn malformed_messages_get_a_nack_and_close_only_their_connection() {
    // An unknown request, and SET_VRING_NUM with a short payload, both
    // asking for a reply (version 1 | NEED_REPLY).
    for message in [raw(9999, 0x1 | 0x8, &[]), raw(8, 0x1 | 0x8, &[0, 0, 0, 0])] {
        let (mut front, server) = spawn(rng());
        front.write_all(&message).unwrap();
        let mut reply = Vec::new();
        front.read_to_end(&mut reply).unwrap();
        assert_eq!(reply.len(), 20);
        assert_eq!(reply[..4], message[..4]);
        assert_eq!(u32::from_le_bytes(reply[4..8].try_into().unwrap()), 0x5);
        assert_eq!(u64::from_le_bytes(reply[12..20].try_into().unwrap()), 1);
        assert!(matches!(server.join().unwrap(), Ok(Ended::Protocol(_))));
    }
    // A bad header version without NEED_REPLY: closed, nothing sent.
    let (mut front, server) = spawn(rng());
    front.write_all(&raw(1, 0x2, &[])).unwrap();
    let mut reply = Vec::new();
    front.read_to_end(&mut reply).unwrap();
    assert!(reply.is_empty());
    assert!(matches!(server.join().unwrap(), Ok(Ended::Protocol(_))));
    // A frontend that goes away mid-message just disconnects.
    let (mut front, server) = spawn(rng());
    front.write_all(&raw(8, 0x1, &[0u8; 8])[..14]).unwrap();
    drop(front);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

// ---- the handler alone ---------------------------------------------------------

#[test]
fn vring_base_is_16_bits_split_and_avail_used_halves_packed() {
    use crate::backend::VhostUserDevice;
    use vhost::vhost_user::VhostUserBackendReqHandlerMut;

    let protocol = 1u64 << 30;
    let mut dev = VhostUserDevice::new(rng());
    dev.set_features(Features::VERSION_1.bits() | protocol)
        .unwrap();
    assert!(dev.set_vring_base(0, 0x1_0005).is_err());
    dev.set_vring_base(0, 5).unwrap();
    let state = dev.get_vring_base(0).unwrap();
    assert_eq!({ state.num }, 5);
    // Packed (QEMU's form): avail position low, used position high; the
    // reply carries the position the ring stopped at in both halves.
    let packed = Features::VERSION_1 | Features::RING_PACKED;
    dev.set_features(packed.bits() | protocol).unwrap();
    dev.set_vring_base(0, 0x8003_8003).unwrap();
    let state = dev.get_vring_base(0).unwrap();
    assert_eq!({ state.num }, 0x8003_8003);
    // No such queue; features that were not offered; a size above the
    // maximum; polling mode: refused, and nothing else changes.
    assert!(dev.get_vring_base(1).is_err());
    assert!(dev.set_features(1 << 63).is_err());
    assert!(dev.set_vring_num(0, 65).is_err());
    assert!(dev.set_vring_num(0, 0).is_err());
    assert!(dev.set_vring_kick(0, None).is_err());
    assert!(
        dev.get_config(250, 8, VhostUserConfigFlags::WRITABLE)
            .is_err()
    );
    assert_eq!(dev.get_queue_num().unwrap(), 1);
    assert_eq!(dev.core().negotiated_features(), packed);
}

/// The daemon's watchdog end to end: pings over vhost-user keep it quiet,
/// and when they stop the `--on-expiry` command runs (once), woken by the
/// ticker through the connection's host events.
#[test]
fn watchdog_over_vhost_user_runs_its_command_when_pings_stop() {
    use crate::watchdog_host::{CommandAction, HostWatchdog, StdClock, Ticks};
    use virtio_devices::watchdog::Watchdog;

    let dir = std::env::temp_dir().join(format!("vhost-wd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("expired");
    let command = format!("echo $WATCHDOG_SINCE_MS >> {}", marker.display());
    let dog = Watchdog::new(StdClock::new(), CommandAction::new(Some(command)))
        .with_timeout(Duration::from_millis(1000))
        .with_queue_size(QSIZE);
    let dev = HostWatchdog::new(dog, Duration::from_millis(50)).unwrap();
    let ram = sealed_ram(RAM);
    let (front, back) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        connection::serve_with_events(back, crate::backend::VhostUserDevice::new(dev), Ticks)
    });
    let (fe, mut driver, mem, kick, call) = start(front, &ram, Features::VERSION_1, 0, &|_| {});
    // Pings every 50 ms for 1 s: acknowledged (byte 1, used = its length),
    // and nothing fires.
    for _ in 0..20 {
        assert_eq!(serve_one(&mut driver, &mem, &kick, &call), 16);
        let mut ack = [0u8];
        mem.read(GPA + 0x8000, &mut ack).unwrap();
        assert_eq!(ack, [1]);
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!marker.exists(), "fired while the guest pinged");
    // The guest stops pinging: the command runs once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the expiry command never ran");
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(1500));
    let runs = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(runs.lines().count(), 1, "once per missed deadline: {runs}");
    // It fires once more than the timeout passed; in whole milliseconds
    // that can read as the timeout itself.
    assert!(runs.trim().parse::<u64>().unwrap() >= 1000);
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_resized_image_reaches_the_frontend_as_a_config_change() {
    use crate::storage::ResizeTrigger;
    let (path, image) = temp_file("resize", 8 * 512);
    let storage = FileStorage::from_file(image.try_clone().unwrap(), false).unwrap();
    let (front, back) = UnixStream::pair().unwrap();
    let (trigger, pull) = UnixStream::pair().unwrap();
    let events = ResizeTrigger::new(trigger).unwrap();
    let device = crate::backend::VhostUserDevice::new(Block::new(storage, BlockOptions::default()));
    let server = thread::spawn(move || connection::serve_with_events(back, device, events));
    let mut fe = Frontend::from_stream(front, 1);
    fe.set_owner().unwrap();
    let offered = fe.get_features().unwrap();
    fe.set_features(Features::VERSION_1.bits() | (offered & (1 << 30)))
        .unwrap();
    let pf = fe.get_protocol_features().unwrap();
    assert!(
        pf.contains(VhostUserProtocolFeatures::BACKEND_REQ | VhostUserProtocolFeatures::CONFIG)
    );
    fe.set_protocol_features(
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::REPLY_ACK,
    )
    .unwrap();
    // The frontend's end of the backend channel.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    fe.set_backend_request_fd(&ours).unwrap();
    fe.set_hdr_flags(VhostUserHeaderFlag::empty());
    drop(ours);
    let capacity = |fe: &mut Frontend| {
        let (_, config) = fe
            .get_config(0, 8, VhostUserConfigFlags::WRITABLE, &[0u8; 8])
            .unwrap();
        u64::from_le_bytes(config.try_into().unwrap())
    };
    assert_eq!(capacity(&mut fe), 8);
    // The host grows the image and pokes the daemon (SIGHUP in the binary).
    image.set_len(64 * 512).unwrap();
    (&pull).write_all(&[1]).unwrap();
    let mut message = [0u8; 12];
    theirs
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    theirs.read_exact(&mut message).unwrap();
    let word = |i: usize| u32::from_le_bytes(message[i..i + 4].try_into().unwrap());
    // VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, version 1, no payload.
    assert_eq!((word(0), word(4), word(8)), (2, 1, 0));
    assert_eq!(capacity(&mut fe), 64);
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    std::fs::remove_file(path).unwrap();
}

/// vhost-user "Inflight I/O tracking": a daemon restarted with the region
/// its predecessor left resubmits the chains the region holds, oldest
/// first, before anything new on the ring, and resumes past them. The
/// region is written here byte by byte from the specification's split
/// layout (not with our `inflight` module), as a dead predecessor left it.
#[test]
fn a_restarted_daemon_resubmits_the_inflight_region_s_chains_first() {
    use vhost::vhost_user::message::VhostUserInflight;
    let ram = sealed_ram(RAM);
    let layout = SplitDriver::layout(GPA, QSIZE);
    // One queue: 16 + 16 × 8 bytes rounded up to 64, as libvhost-user
    // lays it out too.
    let region_len = 192;
    let region = sealed_ram(region_len);
    // Header: features 0, version 1, desc_num, last_batch_head 0, used_idx 4.
    let mut header = Vec::new();
    header.extend_from_slice(&0u64.to_ne_bytes());
    header.extend_from_slice(&1u16.to_ne_bytes());
    header.extend_from_slice(&QSIZE.to_ne_bytes());
    header.extend_from_slice(&0u16.to_ne_bytes());
    header.extend_from_slice(&4u16.to_ne_bytes());
    region.write_all_at(&header, 0).unwrap();
    // Chains 5 (taken first, counter 3) and 2 (counter 7) in flight.
    for (head, counter) in [(5u64, 3u64), (2, 7)] {
        let at = 16 + 16 * head;
        region.write_all_at(&[1], at).unwrap();
        region.write_all_at(&counter.to_ne_bytes(), at + 8).unwrap();
    }
    // The ring as the guest left it: four chains done (used.idx 4), 2 and
    // 5 at avail slots 4 and 5 (taken, and their entries since rewritten
    // in the order the device took them: the record's counters, not the
    // ring, say 5 came first), and chain 1 new at slot 6.
    let prepare = |mem: &FileMem| {
        for (i, head) in [2u16, 5, 1].into_iter().enumerate() {
            let mut desc = Vec::new();
            desc.extend_from_slice(&(GPA + 0x8000 + 0x100 * u64::from(head)).to_le_bytes());
            desc.extend_from_slice(&16u32.to_le_bytes());
            desc.extend_from_slice(&2u16.to_le_bytes()); // WRITE
            desc.extend_from_slice(&0u16.to_le_bytes());
            mem.write(layout.desc_addr + 16 * u64::from(head), &desc)
                .unwrap();
            mem.store_u16_release(layout.driver_addr + 4 + 2 * (4 + i as u64), head)
                .unwrap();
        }
        mem.store_u16_release(layout.driver_addr + 2, 7).unwrap();
        mem.store_u16_release(layout.device_addr + 2, 4).unwrap();
    };
    let adopt = |fe: &mut Frontend| {
        let info = VhostUserInflight {
            mmap_size: region_len,
            mmap_offset: 0,
            num_queues: 1,
            queue_size: QSIZE,
        };
        fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        fe.set_inflight_fd(&info, region.as_raw_fd()).unwrap();
        fe.set_hdr_flags(VhostUserHeaderFlag::empty());
    };
    let (front, server) = spawn(rng());
    // The frontend rewound the ring to its used index (4), as QEMU does
    // when the backend died.
    let (fe, _driver, mem, _kick, call) =
        start_with(front, &ram, Features::VERSION_1, 4, &prepare, &adopt);
    wait_for(&call);
    assert_eq!(mem.load_u16_acquire(layout.device_addr + 2).unwrap(), 7);
    let ids: Vec<u32> = (4..7u64)
        .map(|slot| {
            let mut elem = [0u8; 8];
            mem.read(layout.device_addr + 4 + 8 * slot, &mut elem)
                .unwrap();
            u32::from_le_bytes([elem[0], elem[1], elem[2], elem[3]])
        })
        .collect();
    assert_eq!(ids, vec![5, 2, 1]);
    // The ring resumed past the resubmitted chains and the new one.
    assert_eq!(fe.get_vring_base(0).unwrap(), 7);
    // The region agrees: nothing in flight, used index 7.
    let mut flags = [0u8; 1];
    for head in 0..u64::from(QSIZE) {
        region.read_exact_at(&mut flags, 16 + 16 * head).unwrap();
        assert_eq!(flags[0], 0, "descriptor {head} still in flight");
    }
    let mut used = [0u8; 2];
    region.read_exact_at(&mut used, 14).unwrap();
    assert_eq!(u16::from_ne_bytes(used), 7);
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

/// `GET_INFLIGHT_FD` hands out a zeroed region sized for the queues and
/// sealed, so the frontend cannot shrink it under the daemon.
#[test]
fn get_inflight_fd_gives_a_sealed_region_for_the_queues() {
    use vhost::vhost_user::message::VhostUserInflight;
    let ram = sealed_ram(RAM);
    let (front, server) = spawn(rng());
    let (mut fe, ..) = start(front, &ram, Features::VERSION_1, 0, &|_| {});
    let ask = VhostUserInflight {
        mmap_size: 0,
        mmap_offset: 0,
        num_queues: 1,
        queue_size: 64,
    };
    let (info, file) = fe.get_inflight_fd(&ask).unwrap();
    assert_eq!(
        (info.num_queues, info.queue_size, info.mmap_offset),
        (1, 64, 0)
    );
    assert!(info.mmap_size >= 16 + 16 * 64);
    assert_eq!(file.metadata().unwrap().len(), info.mmap_size);
    assert!(file.set_len(0).is_err(), "sealed against shrinking");
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}

/// Names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Waits until `want(names)` holds for this process's thread names.
fn wait_threads(want: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !want(&thread_names()) {
        assert!(Instant::now() < deadline, "threads: {:?}", thread_names());
        thread::sleep(Duration::from_millis(5));
    }
}

/// One block request on `queue`'s ring: header, `data` (written by the
/// device for a read), status; returns the status byte once served.
fn block_request(
    ring: &mut (SplitDriver, EventFd, EventFd),
    mem: &FileMem,
    at: u64,
    kind: u32,
    sector: u64,
    data_len: u32,
) -> u8 {
    let (driver, kick, call) = ring;
    let mut header = Vec::new();
    header.extend_from_slice(&kind.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&sector.to_le_bytes());
    mem.write(at, &header).unwrap();
    let data = Segment {
        addr: at + 0x100,
        len: data_len,
    };
    let status = Segment {
        addr: at + 0x100 + u64::from(data_len),
        len: 1,
    };
    mem.write(status.addr, &[0xff]).unwrap();
    let head = Segment { addr: at, len: 16 };
    let (readable, writable) = if kind == 1 {
        (vec![head, data], vec![status])
    } else {
        (vec![head], vec![data, status])
    };
    let id = driver.add(mem, &readable, &writable).unwrap();
    driver.publish_avail(mem).unwrap();
    kick.write(1).unwrap();
    wait_for(call);
    let used = driver.pop_used(mem).unwrap().expect("a used buffer");
    assert_eq!(used.id, id);
    let mut byte = [0u8; 1];
    mem.read(status.addr, &mut byte).unwrap();
    byte[0]
}

/// A block device's request queues are each served on a thread of their
/// own (`with_parallel_queues`): both queues serve I/O on the one image,
/// a resize reaches every queue, a changed call eventfd and a new memory
/// table restart a queue's worker where its ring was, and `GET_VRING_BASE`
/// stops it and reports its position.
#[test]
fn block_queues_are_served_each_on_its_own_thread() {
    use crate::backend::VhostUserDevice;
    use crate::storage::ResizeTrigger;
    const MQ: u64 = 1 << 12;
    let ram = sealed_ram(RAM);
    let mem = FileMem {
        file: ram.try_clone().unwrap(),
    };
    let (path, image) = temp_file("parallel", 8 * 512);
    let storage = FileStorage::from_file(image.try_clone().unwrap(), false).unwrap();
    let options = BlockOptions {
        queues: 2,
        ..BlockOptions::default()
    };
    let (front, back) = UnixStream::pair().unwrap();
    let (trigger, pull) = UnixStream::pair().unwrap();
    let events = ResizeTrigger::new(trigger).unwrap();
    let device = VhostUserDevice::new(Block::new(storage, options)).with_parallel_queues();
    let server = thread::spawn(move || connection::serve_with_events(back, device, events));
    let mut fe = Frontend::from_stream(front, 2);
    fe.set_owner().unwrap();
    let offered = fe.get_features().unwrap();
    assert_ne!(offered & MQ, 0);
    fe.set_features(Features::VERSION_1.bits() | MQ | (offered & (1 << 30)))
        .unwrap();
    fe.set_protocol_features(
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK,
    )
    .unwrap();
    assert_eq!(fe.get_queue_num().unwrap(), 2);
    let table = |fe: &mut Frontend| {
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: GPA,
            memory_size: RAM,
            userspace_addr: UA,
            mmap_offset: 0,
            mmap_handle: ram.as_raw_fd(),
        }])
        .unwrap();
    };
    table(&mut fe);
    let mut rings = Vec::new();
    for queue in 0..2usize {
        let layout = SplitDriver::layout(GPA + 0x4000 * queue as u64, QSIZE);
        let driver = SplitDriver::new(&mem, layout, Features::VERSION_1).unwrap();
        let (kick, call) = set_up_ring(&mut fe, queue, layout, 0);
        rings.push((driver, kick, call));
    }
    wait_threads(|n| n.iter().any(|t| t == "virtqueue-0") && n.iter().any(|t| t == "virtqueue-1"));
    let (q0, q1) = rings.split_at_mut(1);
    let (q0, q1) = (&mut q0[0], &mut q1[0]);
    // A write on queue 1, read back on queue 0: one image.
    mem.write(GPA + 0x9100, &[0xab; 512]).unwrap();
    assert_eq!(block_request(q1, &mem, GPA + 0x9000, 1, 3, 512), 0);
    assert_eq!(block_request(q0, &mem, GPA + 0xa000, 0, 3, 512), 0);
    let mut back = [0u8; 512];
    mem.read(GPA + 0xa100, &mut back).unwrap();
    assert_eq!(back, [0xab; 512]);
    let mut on_disk = [0u8; 512];
    image.read_exact_at(&mut on_disk, 3 * 512).unwrap();
    assert_eq!(on_disk, [0xab; 512]);
    // Past the end: an I/O error (status 1)... until the image grows; the
    // resize seen by the connection reaches the workers' handles.
    assert_eq!(block_request(q1, &mem, GPA + 0x9000, 0, 20, 512), 1);
    image.set_len(64 * 512).unwrap();
    (&pull).write_all(&[1]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut q1_served = 3;
    while block_request(q1, &mem, GPA + 0x9000, 0, 20, 512) != 0 {
        assert!(Instant::now() < deadline, "resize never reached queue 1");
        q1_served += 1;
        thread::sleep(Duration::from_millis(5));
    }
    // A new call eventfd on a running queue: its worker restarts and
    // signals the new one.
    // (Acknowledged, so no kick of ours reaches the old worker first: one
    // served before the change is signalled on the old eventfd, as it
    // would be on a single-threaded connection.)
    let call = EventFd::new(EFD_NONBLOCK).unwrap();
    fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    fe.set_vring_call(0, &call).unwrap();
    fe.set_hdr_flags(VhostUserHeaderFlag::empty());
    q0.2 = call;
    assert_eq!(block_request(q0, &mem, GPA + 0xa000, 0, 3, 512), 0);
    // A new memory table (the same RAM): the workers map it again.
    table(&mut fe);
    assert_eq!(block_request(q0, &mem, GPA + 0xa000, 0, 3, 512), 0);
    assert_eq!(block_request(q1, &mem, GPA + 0x9000, 0, 3, 512), 0);
    // GET_VRING_BASE stops queue 1's worker where its ring is.
    assert_eq!(fe.get_vring_base(1).unwrap(), q1_served + 1);
    wait_threads(|n| !n.iter().any(|t| t == "virtqueue-1"));
    assert!(thread_names().iter().any(|t| t == "virtqueue-0"));
    assert_eq!(fe.get_vring_base(0).unwrap(), 3);
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
    // The connection is over: no worker is left.
    assert!(!thread_names().iter().any(|t| t.starts_with("virtqueue-")));
    std::fs::remove_file(path).unwrap();
}

/// One SCMI command on the cmdq: returns the used length and the response.
fn scmi_command(
    driver: &mut SplitDriver,
    mem: &FileMem,
    kick: &EventFd,
    call: &EventFd,
    words: &[u32],
) -> (u32, Vec<u8>) {
    let request: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write(GPA + 0x9000, &request).unwrap();
    let id = driver
        .add(
            mem,
            &[Segment {
                addr: GPA + 0x9000,
                len: request.len() as u32,
            }],
            &[Segment {
                addr: GPA + 0x8000,
                len: 132,
            }],
        )
        .unwrap();
    driver.publish_avail(mem).unwrap();
    driver.enable_interrupts(mem).unwrap();
    kick.write(1).unwrap();
    wait_for(call);
    let used = driver.pop_used(mem).unwrap().expect("a used buffer");
    assert_eq!(used.id, id);
    let mut resp = vec![0u8; used.len as usize];
    mem.read(GPA + 0x8000, &mut resp).unwrap();
    (used.len, resp)
}

#[test]
fn scmi_over_vhost_user_answers_base_discovery_and_sensor_reads() {
    use crate::scmi_sim::HostScmi;
    use virtio_devices::scmi::Scmi;

    let ram = sealed_ram(RAM);
    let dev: Scmi<_, 16, 8> = Scmi::new(HostScmi::new()).with_queue_size(64);
    let (front, server) = spawn(dev);
    let features = Features::VERSION_1 | Features::EVENT_IDX;
    let (fe, mut driver, mem, kick, call) = start(front, &ram, features, 0, &|_| {});
    let hdr = |protocol: u32, message: u32, token: u32| message | (protocol << 10) | (token << 18);
    let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    // BASE_DISCOVER_VENDOR: the header echoed, SUCCESS, the name.
    let (len, r) = scmi_command(&mut driver, &mem, &kick, &call, &[hdr(0x10, 3, 5)]);
    assert_eq!(len, 24);
    assert_eq!((word(&r, 0), word(&r, 1)), (hdr(0x10, 3, 5), 0));
    assert_eq!(&r[8..18], b"virtio-rs\0");
    // SENSOR_READING_GET of the temperature, synchronously.
    let (len, r) = scmi_command(&mut driver, &mem, &kick, &call, &[hdr(0x15, 6, 6), 0, 0]);
    assert_eq!((len, word(&r, 1)), (16, 0));
    assert!((40_000..=50_000).contains(&word(&r, 2)));
    // An unknown protocol: NOT_SUPPORTED, status only.
    let (len, r) = scmi_command(&mut driver, &mem, &kick, &call, &[hdr(0x42, 0, 7)]);
    assert_eq!((len, word(&r, 1) as i32), (8, -1));
    drop(fe);
    assert!(matches!(server.join().unwrap(), Ok(Ended::Closed)));
}
