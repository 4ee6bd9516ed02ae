//! A vhost-user daemon serving our virtio devices to QEMU.
//!
//! `cargo add virtio-backend-vhost-user` (the library is `virtio_vhost_user`).
//!
//! QEMU (or any vhost-user frontend) owns the guest and its PCI transport;
//! this daemon is the device. It speaks the vhost-user protocol through
//! rust-vmm's `vhost` crate (its backend request handler), and everything
//! virtio — the status machine, both ring formats, the devices — is ours:
//! [`virtio_core::device::DeviceCore`] and the `virtio-devices` models.
//!
//! # Layers
//!
//! * [`memory`] — guest memory from the file descriptors of `SET_MEM_TABLE`
//!   / `ADD_MEM_REG`, mapped shared and served by
//!   [`virtio_core::memory::MappedMemory`]; frontend addresses (rings) are
//!   translated to guest physical ones (descriptors). The crate forbids
//!   `unsafe`: owning a mapping as guest memory is virtio-core's.
//! * [`backend`] — [`backend::VhostUserDevice`]: each protocol message onto
//!   `DeviceCore` calls.
//! * [`inflight`] — the record of chains in flight the frontend keeps
//!   across a restart of the daemon (`INFLIGHT_SHMFD`), as the core's
//!   [`virtio_core::device::Journal`].
//! * [`worker`] — for a device whose queues are independent (block), each
//!   ring served on a thread of its own with a one-queue core.
//! * [`connection`] — one thread per connection polls the socket and the
//!   kick eventfds; a frontend that breaks the protocol loses only its own
//!   connection.
//! * [`storage`], [`entropy`], [`gpiochip`] — the host-side backends: a
//!   disk image file for the block device, `/dev/urandom` for the rng, a
//!   Linux gpiochip's lines for the GPIO device (with its line events in
//!   the connection's wait).
//!
//! # How vhost-user maps onto the device status machine
//!
//! vhost-user has no status register. The frontend negotiates features with
//! `GET_FEATURES`/`SET_FEATURES` after the guest driver has finished its
//! own negotiation with QEMU, and starts rings one by one. So:
//!
//! | vhost-user | `DeviceCore` |
//! |---|---|
//! | `GET_FEATURES` | `device_features()` minus `NOTIFICATION_DATA` and `RING_RESET` (no way to carry them), plus `VHOST_USER_F_PROTOCOL_FEATURES` |
//! | `SET_FEATURES` (a new session) | `reset()`, `ACKNOWLEDGE`, `DRIVER`, `set_driver_features`, `FEATURES_OK` (a refusal is an error reply), `DRIVER_OK` |
//! | `SET_VRING_NUM` / `ADDR` / `BASE` | kept per ring, applied when it starts |
//! | ring started (`SET_VRING_KICK`) and enabled (`SET_VRING_ENABLE`, or at once without protocol features) | `set_queue_size`, `set_queue_area` ×3 (translated to guest addresses), `set_queue_base`, `set_queue_ready(true)` |
//! | kick eventfd readable | `notify(queue)`, then the call eventfd if `interrupt_status()` has `USED_BUFFER` |
//! | `GET_VRING_BASE` | `queue_base()` then `set_queue_ready(false)`: the ring stops and reports its next available index (split) or `slot \| wrap << 15` (packed) |
//! | `GET_CONFIG` / `SET_CONFIG` | `read_config` / `write_config` |
//! | `RESET_OWNER` / `RESET_DEVICE` | `reset()` and every ring forgotten |
//!
//! QEMU sends `SET_FEATURES` first each time it starts the device (at
//! boot, and after a guest reset, which it sees as a stop: `GET_VRING_BASE`
//! on every ring), so a `SET_FEATURES` while no ring runs starts a new
//! session with a device reset; one while rings run with unchanged features
//! (dirty-log toggling) changes nothing.
//!
//! `REPLY_ACK` is implemented by the `vhost` crate: a handler error becomes
//! a negative acknowledgement.
#![forbid(unsafe_code)]

pub mod backend;
pub mod connection;
pub mod entropy;
pub mod gpiochip;
pub mod host;
pub mod inflight;
pub mod memory;
pub mod rpmb_file;
pub mod scmi_sim;
pub mod sim;
pub mod sound_wav;
pub mod storage;
pub mod watchdog_host;
pub mod worker;

#[cfg(test)]
mod tests;
