//! A busy driver on another core, for liveness tests: it adds buffers
//! *while the device works*, at the device's own memory accesses, and
//! notifies exactly when the spec says it must.
//!
//! [`BusyDriver`] is guest memory: the device under test is given
//! `&BusyDriver` as its [`GuestMemory`]. Every access the device makes goes
//! through to the real memory; at the points where a real concurrent driver
//! hurts most (the device storing a used index, used flags or its event
//! suppression state, or loading the driver's index or flags) it may first
//! run a driver step: collect used buffers, add one (direct or indirect),
//! publish, and, when `publish_avail` says the device asked to hear about
//! it (virtio 1.4 §"Available Buffer Notification Suppression"), record a
//! notification for the embedder to deliver after the device's call
//! returns — the way a doorbell or eventfd would. A driver that followed
//! the spec to the letter is then left without service only if the device
//! broke its side of the contract.
//!
//! Which accesses run a step is decided by a [`Schedule`]: every
//! device publish (the lost-wakeup scenario), or a caller-given sequence of
//! choices (the property tests' random interleavings).

use core::cell::{Cell, RefCell};

use super::{DriverError, PackedDriver, SplitDriver, Used};
use crate::memory::{GuestMemory, MemoryError};
use crate::queue::{QueueConfig, Segment};
use crate::spec::Features;

/// Most buffers a busy driver keeps outstanding (and the packed driver's
/// id space).
pub const MAX_BUFFERS: usize = 64;
/// Bytes of each buffer.
pub const BUFFER_LEN: u32 = 16;

/// When the driver runs a step inside the device's memory accesses.
#[derive(Clone, Copy, Debug)]
pub enum Schedule<'c> {
    /// Never: only explicit [`BusyDriver::step`] calls add buffers.
    Never,
    /// At every store the device makes to a ring (used index, used
    /// descriptor flags, event suppression): "a driver that adds a buffer
    /// during every publish".
    EveryStore,
    /// At each ring store or index load, the next byte of the sequence
    /// decides (odd: step); when it runs out, never.
    Choices(&'c [u8]),
}

// One per test double; boxing would only add a heap to a no_std module.
#[allow(clippy::large_enum_variant)]
enum Ring {
    Split(SplitDriver),
    Packed(PackedDriver<MAX_BUFFERS>),
}

struct State {
    ring: Ring,
    /// Free buffer slots (bit per slot) and which slot each id holds.
    free: u64,
    slot_of: [u8; MAX_BUFFERS],
    indirect: bool,
}

/// A driver adding buffers concurrently with the device (see the module
/// docs). Buffers are `BUFFER_LEN` device-writable bytes each, at `data`;
/// indirect tables (when used) after them.
pub struct BusyDriver<'c, M> {
    mem: M,
    config: QueueConfig,
    data: u64,
    state: RefCell<State>,
    schedule: Cell<Schedule<'c>>,
    /// Steps still allowed to add a buffer.
    to_add: Cell<u32>,
    made: Cell<u32>,
    used: Cell<u32>,
    kick: Cell<bool>,
    kicks: Cell<u32>,
    /// A driver step is running (its own accesses are not hooked).
    inside: Cell<bool>,
}

impl<M: GuestMemory> core::fmt::Debug for BusyDriver<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BusyDriver")
            .field("made", &self.made.get())
            .field("used", &self.used.get())
            .field("kicks", &self.kicks.get())
            .finish()
    }
}

impl<'c, M: GuestMemory> BusyDriver<'c, M> {
    /// Lays out a ring of `size` at `ring` in `mem` (packed when
    /// `features` has `RING_PACKED`), with buffers from `data` (16-aligned,
    /// room for [`BusyDriver::data_len`] bytes). `indirect` sends every
    /// buffer through a one-entry indirect table.
    ///
    /// # Errors
    /// As the ring drivers' `new`.
    pub fn new(
        mem: M,
        ring: u64,
        size: u16,
        data: u64,
        features: Features,
        indirect: bool,
    ) -> Result<Self, DriverError> {
        let (ring, config) = if features.contains(Features::RING_PACKED) {
            let config = PackedDriver::<MAX_BUFFERS>::layout(ring, size);
            (
                Ring::Packed(PackedDriver::new(&mem, config, features)?),
                config,
            )
        } else {
            let config = SplitDriver::layout(ring, size);
            (
                Ring::Split(SplitDriver::new(&mem, config, features)?),
                config,
            )
        };
        let buffers = usize::from(size).min(MAX_BUFFERS);
        let free = if buffers >= 64 {
            u64::MAX
        } else {
            (1u64 << buffers) - 1
        };
        Ok(Self {
            mem,
            config,
            data,
            state: RefCell::new(State {
                ring,
                free,
                slot_of: [0; MAX_BUFFERS],
                indirect: indirect && features.contains(Features::INDIRECT_DESC),
            }),
            schedule: Cell::new(Schedule::Never),
            to_add: Cell::new(0),
            made: Cell::new(0),
            used: Cell::new(0),
            kick: Cell::new(false),
            kicks: Cell::new(0),
            inside: Cell::new(false),
        })
    }

    /// Bytes of buffers and tables from `data`.
    pub const fn data_len() -> u64 {
        MAX_BUFFERS as u64 * (BUFFER_LEN as u64 + 16)
    }

    /// The ring's configuration, for the device's queue registers.
    pub fn config(&self) -> QueueConfig {
        self.config
    }

    /// The memory behind the driver.
    pub fn inner(&self) -> &M {
        &self.mem
    }

    /// Sets when the driver steps inside device accesses, and how many
    /// buffers it may still add in all.
    pub fn set_schedule(&self, schedule: Schedule<'c>, to_add: u32) {
        self.schedule.set(schedule);
        self.to_add.set(to_add);
    }

    /// Buffers made available so far.
    pub fn made(&self) -> u32 {
        self.made.get()
    }

    /// Buffers the device returned so far (as the driver collected them).
    pub fn used(&self) -> u32 {
        self.used.get()
    }

    /// Notifications the driver sent.
    pub fn kicks(&self) -> u32 {
        self.kicks.get()
    }

    /// Takes the notification the driver owes the device, if any (the
    /// embedder delivers it: `DeviceCore::notify`, an MMIO `QueueNotify`
    /// write, a virtio-msg `EVENT_AVAIL`).
    pub fn take_kick(&self) -> bool {
        self.kick.replace(false)
    }

    /// One driver step outside the device: collect used buffers, then add
    /// one if allowed and there is room.
    ///
    /// # Errors
    /// What the ring driver reports (a device that returned a bad id or
    /// length, or completed a buffer twice).
    pub fn step(&self) -> Result<(), DriverError> {
        self.inside.set(true);
        let result = self.step_inner();
        self.inside.set(false);
        result
    }

    /// Collects what the device returned.
    ///
    /// # Errors
    /// As for [`Self::step`].
    pub fn collect(&self) -> Result<(), DriverError> {
        self.inside.set(true);
        let result = self.collect_inner(&mut self.state.borrow_mut());
        self.inside.set(false);
        result
    }

    fn collect_inner(&self, state: &mut State) -> Result<(), DriverError> {
        loop {
            let used: Option<Used> = match &mut state.ring {
                Ring::Split(d) => d.pop_used(&self.mem)?,
                Ring::Packed(d) => d.pop_used(&self.mem)?,
            };
            let Some(u) = used else { return Ok(()) };
            let slot = state
                .slot_of
                .get(usize::from(u.id))
                .copied()
                .ok_or(DriverError::BadUsedId(u32::from(u.id)))?;
            state.free |= 1u64 << slot;
            self.used.set(self.used.get() + 1);
        }
    }

    fn step_inner(&self) -> Result<(), DriverError> {
        let mut state = self.state.borrow_mut();
        self.collect_inner(&mut state)?;
        if self.to_add.get() == 0 || state.free == 0 {
            return Ok(());
        }
        let slot = state.free.trailing_zeros() as u8;
        let addr = self.data + u64::from(slot) * u64::from(BUFFER_LEN);
        let table = self.data + MAX_BUFFERS as u64 * u64::from(BUFFER_LEN) + u64::from(slot) * 16;
        let buf = [Segment {
            addr,
            len: BUFFER_LEN,
        }];
        let indirect = state.indirect;
        let (id, notify) = match &mut state.ring {
            Ring::Split(d) => {
                let id = if indirect {
                    d.add_indirect(&self.mem, table, &[], &buf)?
                } else {
                    d.add(&self.mem, &[], &buf)?
                };
                (id, d.publish_avail(&self.mem)?)
            }
            Ring::Packed(d) => {
                let id = if indirect {
                    d.add_indirect(&self.mem, table, &[], &buf)?
                } else {
                    d.add(&self.mem, &[], &buf)?
                };
                (id, d.publish_avail(&self.mem)?)
            }
        };
        state.free &= !(1u64 << slot);
        if let Some(s) = state.slot_of.get_mut(usize::from(id)) {
            *s = slot;
        }
        self.made.set(self.made.get() + 1);
        self.to_add.set(self.to_add.get() - 1);
        if notify {
            self.kick.set(true);
            self.kicks.set(self.kicks.get() + 1);
        }
        Ok(())
    }

    /// A device access at `addr`: maybe run a driver step first.
    fn hook(&self, store: bool, addr: u64) {
        if self.inside.get() {
            return;
        }
        let go = match self.schedule.get() {
            Schedule::Never => false,
            Schedule::EveryStore => store && self.in_ring(addr),
            Schedule::Choices(c) => match c.split_first() {
                Some((&b, rest)) => {
                    self.schedule.set(Schedule::Choices(rest));
                    b % 2 == 1
                }
                None => false,
            },
        };
        // A device that broke the ring shows as a failed step; the test's
        // final checks see it (buffers not returned).
        if go {
            let _ = self.step();
        }
    }

    fn in_ring(&self, addr: u64) -> bool {
        let c = self.config;
        let start = c.desc_addr.min(c.driver_addr).min(c.device_addr);
        let end = c.desc_addr.max(c.driver_addr).max(c.device_addr) + 0x2000;
        (start..end).contains(&addr)
    }
}

impl<M: GuestMemory> GuestMemory for BusyDriver<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem.read(addr, buf)
    }
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemoryError> {
        self.mem.write(addr, buf)
    }
    fn load_u16_acquire(&self, addr: u64) -> Result<u16, MemoryError> {
        self.hook(false, addr);
        self.mem.load_u16_acquire(addr)
    }
    fn store_u16_release(&self, addr: u64, value: u16) -> Result<(), MemoryError> {
        let r = self.mem.store_u16_release(addr, value);
        self.hook(true, addr);
        r
    }
    fn fence(&self) {
        self.mem.fence();
    }
    fn check_range(&self, addr: u64, len: u64) -> Result<(), MemoryError> {
        self.mem.check_range(addr, len)
    }
}
