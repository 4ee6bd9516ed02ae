//! virtio-msg over one shared-memory window: the minimal-memory profile.
//!
//! `cargo add virtio-backend-shm` (the library is `virtio_transport_shm`).
//!
//! Two agents — a device end (a safety-island core, a VM, a thread) and a
//! driver end — share **one window of memory and a doorbell in each
//! direction, and nothing else**. The control plane is the virtio-msg draft
//! transport (Linaro/Arm, `transport-msg.tex` revision 1) carried in two
//! single-producer single-consumer message rings inside the window; the data
//! plane (virtqueues and every buffer) lives in the window's data area and is
//! addressed by window offsets. No heap; every size is a constant.
//!
//! # Layers
//!
//! * [`layout`] — the window layout (this project's bus definition, below),
//!   [`Layout`] and [`DataArea`], the device's [`GuestMemory`] that serves
//!   the data area and rejects everything else.
//! * [`ring`] — the SPSC message rings: fixed-size slots, 16-bit indices
//!   published with release stores and read with acquire loads.
//! * [`msg`] — virtio-msg wire layouts (`zerocopy`) and the one parser,
//!   [`msg::Message::parse`], that turns untrusted bytes into a typed request.
//! * [`device`] — [`ShmDevice`]: one device's transport state over
//!   [`DeviceCore`]; [`DeviceSet`]: several devices on one bus by `dev_num`.
//! * [`bus`] — [`DeviceEnd`]: takes messages from the driver, answers them,
//!   sends `EVENT_USED` / `EVENT_CONFIG`, counts what it discarded.
//! * [`doorbell`] — the [`Doorbell`] trait and the polled implementations.
//! * `driver` (feature `driver`) — `DriverEnd`: the other side, built on
//!   `virtio-core::driver`, for tests, the loopback demo and Rust guests.
//!
//! # The window (layout version 1)
//!
//! All fields little-endian; offsets from the start of the window, which
//! must be 8-aligned in both agents' address spaces.
//!
//! ```text
//!  offset                          size   written by  field
//!  0x00 ┌──────────────────────┐
//!       │ magic  "VMSG"        │   4    creator     0x47534D56 (bytes 'V' 'M' 'S' 'G')
//!  0x04 │ version              │   2    creator     1
//!  0x06 │ header_len           │   2    creator     64
//!  0x08 │ window_len           │   4    creator     total bytes of the window
//!  0x0C │ slot_size            │   2    creator     bytes per message slot = max message size
//!  0x0E │ slots                │   2    creator     slots per ring (power of two)
//!  0x10 │ to_device_off        │   4    creator     offset of ring A's slots (= 0x40)
//!  0x14 │ to_driver_off        │   4    creator     offset of ring B's slots
//!  0x18 │ data_off             │   4    creator     offset of the data area (64-aligned)
//!  0x1C │ data_len             │   4    creator     bytes in the data area
//!  0x20 │ A.prod   (u16) │ 0   │   4    driver      requests/events the driver published
//!  0x24 │ A.cons   (u16) │ 0   │   4    device      slots of ring A the device consumed
//!  0x28 │ B.prod   (u16) │ 0   │   4    device      responses/events the device published
//!  0x2C │ B.cons   (u16) │ 0   │   4    driver      slots of ring B the driver consumed
//!  0x30 │ reserved, zero       │  16
//!  0x40 ├──────────────────────┤
//!       │ ring A: driver→device│ slots × slot_size
//!       ├──────────────────────┤
//!       │ ring B: device→driver│ slots × slot_size
//!       ├──────────────────────┤ (padding to 64)
//!       │ data area            │ data_len: virtqueues and buffers,
//!       │                      │ placed by the driver
//!       └──────────────────────┘
//! ```
//!
//! **Rings.** Ring A carries driver→device messages (requests,
//! `EVENT_AVAIL`), ring B device→driver messages (responses, `EVENT_USED`,
//! `EVENT_CONFIG`). Each index is a free-running `u16`; slot `i % slots`
//! holds message number `i`. A message occupies one slot from its first
//! byte; its length is the header's `msg_size` (8 ..= `slot_size`); bytes
//! after it in the slot are ignored. The producer writes the slot, then
//! stores `prod + 1` with **release** ordering; the consumer loads `prod`
//! with **acquire** ordering, copies the slot out, then stores `cons + 1`
//! with release ordering. The ring is full when `prod - cons == slots`
//! (mod 2^16); a distance above `slots` is a corrupt ring (see below).
//! Each side keeps its own copy of the index it writes and never reads it
//! back from the window.
//!
//! **Doorbells.** After publishing one or more messages the producer rings
//! the peer's doorbell ([`Doorbell`]: an IPI, a mailbox, an eventfd, or
//! nothing when the peer polls). A consumer that frees slots of a ring that
//! was full rings the producer's doorbell, so a producer waiting for room
//! learns about it.
//!
//! **Addresses.** Every address in a message (`SET_VQUEUE`) and in a
//! descriptor is a **window offset** (the window is "guest physical address
//! 0"). The device serves only `data_off .. data_off + data_len`
//! ([`DataArea`]); a ring or buffer anywhere else — the header, the message
//! rings, past the window — is refused by its memory, whatever the driver
//! writes.
//!
//! **Creation.** One agent (the *creator*, usually whoever owns the memory)
//! zeroes the window, writes the header and writes `magic` last
//! ([`layout::init`]). The other checks it ([`layout::check`]). Both ends
//! are built from a compile-time [`Layout`] and use only their own copy of
//! it: a peer that rewrites the header later changes nothing.
//!
//! # Use
//!
//! ```rust,ignore
//! const LAYOUT: Layout = match Layout::new(4, 64, 4096) { Ok(l) => l, Err(_) => panic!() };
//! // Device side (e.g. in the doorbell interrupt of a safety-island core):
//! let data = DataArea::new(&window, &LAYOUT);           // queues see only this
//! let devices = (ShmDevice::<_, _, 1>::new(Rng::new(trng), data),
//!                ShmDevice::<_, _, 1>::new(Block::new(disk, opts), data));
//! let mut dev = DeviceEnd::create(&window, LAYOUT, devices, ipi_to_driver)?;
//! while dev.process() {}                                // on each doorbell
//! // Driver side (another core, thread or process mapping the same window):
//! let mut drv = DriverEnd::<_, _, _, 2>::attach(&window, LAYOUT, ipi_to_device, Spin)?;
//! let features = drv.bring_up(0, wanted, &[queue_config])?;
//! drv.notify(0, 0, 0)?;                                 // EVENT_AVAIL
//! drv.wait_used(0, 0)?;                                 // EVENT_USED
//! ```
//!
//! # virtio-msg on this bus: choices where the draft is silent
//!
//! * **Device numbers** are 0, 1, … in the order of the [`DeviceSet`].
//! * **Maximum message size** is `slot_size` (48 ..= [`MAX_MSG_SIZE`]), the
//!   same in both directions; the transport revision is 1 with no transport
//!   features. Both are in the window header.
//! * **Discarded messages** (the draft: malformed or unsupported messages
//!   are dropped without traffic) are counted by reason in [`bus::Stats`],
//!   with the last reason kept. Discarded are: a header or payload shorter
//!   than the message needs, `msg_size` < 8 or above `slot_size`, a request
//!   with token 0, an event with a non-zero token, a response (the device end
//!   sends no requests), an unknown or device-only `msg_id`, a bus message
//!   with `dev_num` ≠ 0, a transport message for a device not on the bus
//!   (except `GET_DEVICE_INFO`, answered with zeros), a feature or config
//!   request whose answer would not fit in a slot, a config access past the
//!   config space, `SET_DEVICE_STATUS` above 0xff, `SET_VQUEUE` for a queue
//!   that does not exist, is already set up, or with size 0 or above the
//!   maximum, `RESET_VQUEUE` without `RING_RESET`, `EVENT_AVAIL` for a queue
//!   that does not exist. Trailing bytes after what a message needs are
//!   ignored; `type` bits 2–7 are ignored.
//! * **`SET_VQUEUE`** configures *and enables* the queue (virtio-msg has no
//!   separate ready message). `GET_VQUEUE` reports size and addresses 0 for
//!   a queue not set up.
//! * **`SET_CONFIG`** that is accepted does not change the generation (the
//!   change is the driver's own); the answer carries the current generation
//!   and the bytes read back after the write.
//! * **`EVENT_USED`** is sent for each queue [`DeviceCore`] says is due a
//!   used buffer notification ([`take_used_queues`](virtio_core::device::DeviceCore::take_used_queues), which
//!   honours the driver's suppression state). Events are coalesced: at
//!   most one pending `EVENT_USED` per queue and one `EVENT_CONFIG` per
//!   device, sent as ring B has room, so none is lost.
//! * **`EVENT_CONFIG`** carries the status and generation and no data
//!   (length 0): the driver reads the config with `GET_CONFIG`. It is sent
//!   on every config change and on `DEVICE_NEEDS_RESET`.
//! * **Feature bits above 63** do not exist: `GET_DEVICE_FEATURES` returns 0
//!   for them, and a driver that sets one in `SET_DRIVER_FEATURES` is
//!   refused `FEATURES_OK`.
//! * **`GET_SHM`** answers length 0 (no device-owned shared memory regions).
//!
//! [`GuestMemory`]: virtio_core::memory::GuestMemory
//! [`DeviceCore`]: virtio_core::device::DeviceCore
//!
//! # Features
//!
#![doc = document_features::document_features!()]
#![no_std]
#![forbid(unsafe_code)]

pub mod bus;
pub mod device;
pub mod doorbell;
#[cfg(feature = "driver")]
mod driver;
mod error;
pub mod layout;
pub mod msg;
pub mod ring;

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;

pub use bus::DeviceEnd;
pub use device::{BusDevice, DeviceSet, ShmDevice};
pub use doorbell::{Doorbell, FlagDoorbell, Polled};
#[cfg(feature = "driver")]
pub use driver::{Answer, DriverEnd, DriverEndError, Idle, Spin, VqueueInfo};
pub use error::{AttachError, LayoutError};
pub use layout::{DataArea, Layout};

/// The largest message this crate handles (and so the largest `slot_size`):
/// an 8-byte header, a 12-byte `GET_CONFIG`/`SET_CONFIG` answer head and 256
/// bytes of configuration data, rounded up to 8.
pub const MAX_MSG_SIZE: usize = 280;

/// The smallest `slot_size`: the draft's minimum maximum message size (44),
/// rounded up to 8.
pub const MIN_MSG_SIZE: usize = 48;
