//! The tables the IOMMU device keeps and [`Translated`](super::Translated)
//! reads: endpoints (from the platform), domains, mappings, pending faults.

use core::cell::{Cell, RefCell};
use core::fmt;

use heapless::{Deque, Vec};

use super::wire::*;

/// Most RESV_MEM regions one endpoint can have.
pub const RESV_PER_ENDPOINT: usize = 4;
/// Faults that wait for an event buffer; more are dropped (and counted).
pub const FAULT_QUEUE: usize = 16;
/// Bytes of one RESV_MEM property, header included.
pub const RESV_PROPERTY_BYTES: u32 = size_of::<ProbeResvMem>() as u32;

/// A reserved region of an endpoint's IOVA space (a RESV_MEM property).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResvMem {
    /// `RESV_MEM_T_RESERVED` or `RESV_MEM_T_MSI`.
    pub subtype: u8,
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub end: u64,
}

impl ResvMem {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && self.end >= start
    }
}

/// An endpoint the platform puts behind the IOMMU (a PCI requester ID, a
/// device-tree `iommus` specifier: the numbering is the platform's).
#[derive(Clone, Copy, Debug)]
pub struct Endpoint<'a> {
    /// The endpoint ID requests name.
    pub id: u32,
    /// Its reserved regions (reported by PROBE, never mappable).
    pub resv_mem: &'a [ResvMem],
}

/// Which bypass feature the device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Bypass {
    /// Neither: unattached endpoints never reach memory.
    None,
    /// `F_BYPASS_CONFIG`, with the `bypass` field's value at system reset
    /// (the spec's choice for new devices).
    Config {
        /// `bypass` starts at 1.
        initial: bool,
    },
    /// The legacy `F_BYPASS`: unattached endpoints bypass once the driver
    /// accepts it. New devices should not offer it (virtio 1.4 §"Feature
    /// bits"); it is here for old drivers.
    Legacy,
}

impl Default for IommuConfig {
    /// 4 KiB granule (every power of two from 4 KiB up as page sizes), the
    /// whole 64-bit input range, every domain ID, PROBE with 512 bytes of
    /// properties, no MMIO flag, `F_BYPASS_CONFIG` starting at 0.
    fn default() -> Self {
        Self {
            page_size_mask: !0xfff,
            input_range: Some((0, u64::MAX)),
            domain_range: Some((0, u32::MAX)),
            probe_size: Some(512),
            mmio: false,
            bypass: Bypass::Config { initial: false },
        }
    }
}

/// What the platform gives the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IommuConfig {
    /// Page sizes that can be mapped; the lowest set bit is the granule
    /// MAP and UNMAP ranges are aligned to. Must not be 0.
    pub page_size_mask: u64,
    /// `Some`: offer `F_INPUT_RANGE` with this inclusive range of IOVAs.
    pub input_range: Option<(u64, u64)>,
    /// `Some`: offer `F_DOMAIN_RANGE` with this inclusive range of IDs.
    pub domain_range: Option<(u32, u32)>,
    /// `Some`: offer `F_PROBE` with this `probe_size`.
    pub probe_size: Option<u32>,
    /// Offer `F_MMIO` (accept the `MAP_F_MMIO` memory type).
    pub mmio: bool,
    /// The bypass feature offered.
    pub bypass: Bypass,
}

impl IommuConfig {
    /// The device's feature bits for this configuration (`F_MAP_UNMAP`
    /// always, virtio 1.4 §"Feature bits": the device SHOULD offer it).
    pub fn features(&self) -> u64 {
        let mut f = F_MAP_UNMAP;
        if self.input_range.is_some() {
            f |= F_INPUT_RANGE;
        }
        if self.domain_range.is_some() {
            f |= F_DOMAIN_RANGE;
        }
        if self.probe_size.is_some() {
            f |= F_PROBE;
        }
        if self.mmio {
            f |= F_MMIO;
        }
        f | match self.bypass {
            Bypass::None => 0,
            Bypass::Config { .. } => F_BYPASS_CONFIG,
            Bypass::Legacy => F_BYPASS,
        }
    }

    /// The mapping granule: the lowest set bit of `page_size_mask`.
    pub fn granule(&self) -> u64 {
        1u64.checked_shl(self.page_size_mask.trailing_zeros())
            .unwrap_or(1)
    }

    fn input(&self) -> (u64, u64) {
        self.input_range.unwrap_or((0, u64::MAX))
    }

    fn domain_ok(&self, domain: u32) -> bool {
        self.domain_range
            .is_none_or(|(s, e)| (s..=e).contains(&domain))
    }
}

/// Why [`IommuTables::new`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// `page_size_mask` is 0 (the device MUST set at least one bit).
    NoPageSize,
    /// A range whose start is past its end.
    BadRange,
    /// More endpoints than the tables' capacity.
    TooManyEndpoints,
    /// Two endpoints with this ID.
    DuplicateEndpoint(u32),
    /// This endpoint has more than [`RESV_PER_ENDPOINT`] regions, or a
    /// region whose start is past its end.
    BadResv(u32),
    /// Two regions of this endpoint overlap (the device SHOULD NOT present
    /// overlapping RESV_MEM properties).
    ResvOverlap(u32),
    /// More than one MSI region for this endpoint (SHOULD NOT).
    TwoMsi(u32),
    /// This endpoint's properties do not fit in `probe_size`.
    ProbeTooSmall(u32),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPageSize => f.write_str("page_size_mask is 0"),
            Self::BadRange => f.write_str("a range starts after its end"),
            Self::TooManyEndpoints => f.write_str("more endpoints than the tables hold"),
            Self::DuplicateEndpoint(e) => write!(f, "endpoint {e} listed twice"),
            Self::BadResv(e) => write!(f, "endpoint {e}: bad or too many reserved regions"),
            Self::ResvOverlap(e) => write!(f, "endpoint {e}: reserved regions overlap"),
            Self::TwoMsi(e) => write!(f, "endpoint {e}: more than one MSI region"),
            Self::ProbeTooSmall(e) => write!(f, "endpoint {e}: properties exceed probe_size"),
        }
    }
}

/// How an endpoint accesses memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Access {
    /// The endpoint reads (needs `MAP_F_READ`).
    Read,
    /// The endpoint writes (needs `MAP_F_WRITE`).
    Write,
}

/// A translation fault, as the eventq reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fault {
    /// `FAULT_R_DOMAIN` (unattached, not bypassing) or `FAULT_R_MAPPING`.
    pub reason: u8,
    /// `FAULT_F_READ` or `FAULT_F_WRITE`, and `FAULT_F_ADDRESS`.
    pub flags: u32,
    /// The endpoint.
    pub endpoint: u32,
    /// The IOVA.
    pub address: u64,
}

impl Fault {
    /// The report written into an event buffer.
    pub fn report(&self) -> FaultReport {
        FaultReport {
            reason: self.reason,
            flags: self.flags.into(),
            endpoint: self.endpoint.into(),
            address: self.address.into(),
            ..FaultReport::default()
        }
    }
}

/// One mapping: `virt_start ..= virt_end` of `domain` onto `phys_start ..`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mapping {
    /// The domain.
    pub domain: u32,
    /// First IOVA.
    pub virt_start: u64,
    /// Last IOVA (inclusive).
    pub virt_end: u64,
    /// Where `virt_start` goes.
    pub phys_start: u64,
    /// `MAP_F_*`.
    pub flags: u32,
}

#[derive(Clone, Copy, Debug)]
struct Domain {
    id: u32,
    bypass: bool,
    endpoints: u32,
}

#[derive(Clone, Debug)]
struct EndpointState {
    id: u32,
    resv: Vec<ResvMem, RESV_PER_ENDPOINT>,
    domain: Option<u32>,
}

/// A window of IOVAs that translate linearly with one permission set:
/// `iova` goes to `iova - start + phys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub start: u64,
    pub end: u64,
    pub phys: u64,
    pub read: bool,
    pub write: bool,
}

impl Window {
    pub(crate) fn allows(&self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }
}

#[derive(Debug)]
struct Inner<const D: usize, const N: usize, const E: usize> {
    domains: Vec<Domain, D>,
    /// Sorted by `(domain, virt_start)`; never overlapping within a domain.
    mappings: Vec<Mapping, N>,
    endpoints: Vec<EndpointState, E>,
    /// The `bypass` config field (0/1).
    bypass: bool,
    /// `F_BYPASS` (legacy) negotiated.
    legacy_bypass: bool,
    faults: Deque<Fault, FAULT_QUEUE>,
    dropped: u32,
}

/// The IOMMU's state, shared by the device ([`Iommu`](super::Iommu)) and
/// every [`Translated`](super::Translated) view: `D` domains, `N` mappings
/// (all domains together), `E` endpoints. See the module docs for why it
/// is a caller-owned `RefCell`.
#[derive(Debug)]
pub struct IommuTables<const D: usize, const N: usize, const E: usize> {
    config: IommuConfig,
    inner: RefCell<Inner<D, N, E>>,
    /// Bumped on every change a translation can see.
    generation: Cell<u64>,
}

impl<const D: usize, const N: usize, const E: usize> IommuTables<D, N, E> {
    /// Tables for `endpoints` under `config`, with no domain.
    ///
    /// # Errors
    /// [`ConfigError`] for a configuration that breaks the spec's device
    /// rules or does not fit the capacities.
    pub fn new(config: IommuConfig, endpoints: &[Endpoint<'_>]) -> Result<Self, ConfigError> {
        // Implements iommu.device-configuration-layout.1.
        if config.page_size_mask == 0 {
            return Err(ConfigError::NoPageSize);
        }
        if config.input_range.is_some_and(|(s, e)| s > e)
            || config.domain_range.is_some_and(|(s, e)| s > e)
        {
            return Err(ConfigError::BadRange);
        }
        let mut list: Vec<EndpointState, E> = Vec::new();
        for ep in endpoints {
            if list.iter().any(|e| e.id == ep.id) {
                return Err(ConfigError::DuplicateEndpoint(ep.id));
            }
            let mut resv = Vec::new();
            for r in ep.resv_mem {
                if r.start > r.end {
                    return Err(ConfigError::BadResv(ep.id));
                }
                if resv.iter().any(|o: &ResvMem| o.overlaps(r.start, r.end)) {
                    return Err(ConfigError::ResvOverlap(ep.id));
                }
                if r.subtype == RESV_MEM_T_MSI
                    && resv.iter().any(|o: &ResvMem| o.subtype == RESV_MEM_T_MSI)
                {
                    return Err(ConfigError::TwoMsi(ep.id));
                }
                resv.push(*r).map_err(|_| ConfigError::BadResv(ep.id))?;
            }
            if let Some(size) = config.probe_size {
                let need = RESV_PROPERTY_BYTES.saturating_mul(resv.len() as u32);
                if need > size {
                    return Err(ConfigError::ProbeTooSmall(ep.id));
                }
            }
            list.push(EndpointState {
                id: ep.id,
                resv,
                domain: None,
            })
            .map_err(|_| ConfigError::TooManyEndpoints)?;
        }
        let bypass = matches!(config.bypass, Bypass::Config { initial: true });
        Ok(Self {
            config,
            inner: RefCell::new(Inner {
                domains: Vec::new(),
                mappings: Vec::new(),
                endpoints: list,
                bypass,
                legacy_bypass: false,
                faults: Deque::new(),
                dropped: 0,
            }),
            generation: Cell::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IommuConfig {
        &self.config
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    fn bump(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    /// The `bypass` config field.
    pub fn bypass(&self) -> bool {
        self.inner.try_borrow().is_ok_and(|i| i.bypass)
    }

    /// The domain `endpoint` is attached to.
    pub fn domain_of(&self, endpoint: u32) -> Option<u32> {
        let inner = self.inner.try_borrow().ok()?;
        inner
            .endpoints
            .iter()
            .find(|e| e.id == endpoint)
            .and_then(|e| e.domain)
    }

    /// Domains that exist.
    pub fn domain_count(&self) -> usize {
        self.inner.try_borrow().map_or(0, |i| i.domains.len())
    }

    /// Mappings of all domains.
    pub fn mapping_count(&self) -> usize {
        self.inner.try_borrow().map_or(0, |i| i.mappings.len())
    }

    /// Calls `f` with each mapping of `domain` (of every domain for
    /// `None`), in `(domain, IOVA)` order.
    pub fn for_each_mapping(&self, domain: Option<u32>, mut f: impl FnMut(&Mapping)) {
        if let Ok(inner) = self.inner.try_borrow() {
            inner
                .mappings
                .iter()
                .filter(|m| domain.is_none_or(|d| m.domain == d))
                .for_each(&mut f);
        }
    }

    /// Faults waiting for an event buffer.
    pub fn pending_faults(&self) -> usize {
        self.inner.try_borrow().map_or(0, |i| i.faults.len())
    }

    /// Faults dropped because [`FAULT_QUEUE`] were already waiting.
    pub fn dropped_faults(&self) -> u32 {
        self.inner.try_borrow().map_or(0, |i| i.dropped)
    }

    /// Where `endpoint`'s access at `iova` goes, or the fault it raises
    /// (not recorded: [`Translated`](super::Translated) records them).
    ///
    /// # Errors
    /// The [`Fault`] the access would report.
    pub fn translate(&self, endpoint: u32, iova: u64, access: Access) -> Result<u64, Fault> {
        let index = self.endpoint_index(endpoint).ok_or(Fault {
            reason: FAULT_R_UNKNOWN,
            flags: fault_flags(access),
            endpoint,
            address: iova,
        })?;
        let w = self.window(index, iova, access)?;
        Ok(iova.wrapping_sub(w.start).wrapping_add(w.phys))
    }

    pub(crate) fn endpoint_index(&self, endpoint: u32) -> Option<usize> {
        let inner = self.inner.try_borrow().ok()?;
        inner.endpoints.iter().position(|e| e.id == endpoint)
    }

    /// The window holding `iova` for endpoint number `index`, when it
    /// allows `access`.
    pub(crate) fn window(&self, index: usize, iova: u64, access: Access) -> Result<Window, Fault> {
        let fault = |reason, endpoint| Fault {
            reason,
            flags: fault_flags(access) | FAULT_F_ADDRESS,
            endpoint,
            address: iova,
        };
        let Ok(inner) = self.inner.try_borrow() else {
            return Err(fault(FAULT_R_UNKNOWN, 0));
        };
        let Some(ep) = inner.endpoints.get(index) else {
            return Err(fault(FAULT_R_UNKNOWN, 0));
        };
        // Implements iommu.property-resv-mem.5.
        // A reserved region is never reached, not even in bypass mode.
        if ep.resv.iter().any(|r| r.overlaps(iova, iova)) {
            return Err(fault(FAULT_R_MAPPING, ep.id));
        }
        let bypass_window = || {
            // The identity, between the reserved regions around `iova`.
            let start = ep
                .resv
                .iter()
                .filter(|r| r.end < iova)
                .map(|r| r.end.saturating_add(1))
                .max()
                .unwrap_or(0);
            let end = ep
                .resv
                .iter()
                .filter(|r| r.start > iova)
                .map(|r| r.start.saturating_sub(1))
                .min()
                .unwrap_or(u64::MAX);
            Window {
                start,
                end,
                phys: start,
                read: true,
                write: true,
            }
        };
        let window = match ep.domain {
            None => {
                let bypass = match self.config.bypass {
                    Bypass::Config { .. } => inner.bypass,
                    Bypass::Legacy => inner.legacy_bypass,
                    Bypass::None => false,
                };
                if !bypass {
                    return Err(fault(FAULT_R_DOMAIN, ep.id));
                }
                bypass_window()
            }
            Some(d) => {
                let bypass_domain = inner.domains.iter().any(|x| x.id == d && x.bypass);
                if bypass_domain {
                    bypass_window()
                } else {
                    let at = inner
                        .mappings
                        .partition_point(|m| (m.domain, m.virt_start) <= (d, iova));
                    let m = at
                        .checked_sub(1)
                        .and_then(|i| inner.mappings.get(i))
                        .filter(|m| m.domain == d && m.virt_end >= iova)
                        .ok_or(fault(FAULT_R_MAPPING, ep.id))?;
                    Window {
                        start: m.virt_start,
                        end: m.virt_end,
                        phys: m.phys_start,
                        read: m.flags & MAP_F_READ != 0,
                        write: m.flags & MAP_F_WRITE != 0,
                    }
                }
            }
        };
        if window.allows(access) {
            Ok(window)
        } else {
            Err(fault(FAULT_R_MAPPING, ep.id))
        }
    }

    /// Queues a fault for the eventq (dropped when [`FAULT_QUEUE`] wait).
    /// One identical to the newest waiting fault is the same event seen
    /// twice (a device checks a buffer, then accesses it) and is not
    /// queued again.
    pub(crate) fn record_fault(&self, fault: Fault) {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return;
        };
        if inner.faults.back() == Some(&fault) {
            return;
        }
        if inner.faults.push_back(fault).is_err() {
            inner.dropped = inner.dropped.saturating_add(1);
        }
    }

    pub(crate) fn take_fault(&self) -> Option<Fault> {
        self.inner.try_borrow_mut().ok()?.faults.pop_front()
    }

    pub(crate) fn set_bypass(&self, value: bool) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.bypass = value;
        }
        self.bump();
    }

    pub(crate) fn set_legacy_bypass(&self, value: bool) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.legacy_bypass = value;
        }
        self.bump();
    }

    /// Device reset: no endpoint attached, no domain, no pending fault;
    /// `bypass` stays (virtio 1.4 §"Device configuration layout": it
    /// SHOULD NOT change on device reset).
    pub(crate) fn device_reset(&self) {
        if let Ok(mut inner) = self.inner.try_borrow_mut() {
            inner.domains.clear();
            inner.mappings.clear();
            for e in &mut inner.endpoints {
                e.domain = None;
            }
            inner.legacy_bypass = false;
            inner.faults.clear();
        }
        self.bump();
    }

    /// System reset: a device reset, and `bypass` back to its initial
    /// value.
    pub fn system_reset(&self) {
        self.device_reset();
        self.set_bypass(matches!(
            self.config.bypass,
            Bypass::Config { initial: true }
        ));
    }

    /// The RESV_MEM regions of `endpoint`.
    pub(crate) fn resv_of(&self, endpoint: u32) -> Option<Vec<ResvMem, RESV_PER_ENDPOINT>> {
        let inner = self.inner.try_borrow().ok()?;
        inner
            .endpoints
            .iter()
            .find(|e| e.id == endpoint)
            .map(|e| e.resv.clone())
    }

    pub(crate) fn attach(&self, body: &AttachBody, features: u64) -> Status {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return Status::DevErr;
        };
        let status = inner.attach(&self.config, body, features);
        drop(inner);
        if status == Status::Ok {
            self.bump();
        }
        status
    }

    pub(crate) fn detach(&self, body: &DetachBody) -> Status {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return Status::DevErr;
        };
        let status = inner.detach(&self.config, body);
        drop(inner);
        if status == Status::Ok {
            self.bump();
        }
        status
    }

    pub(crate) fn map(&self, body: &MapBody, features: u64) -> Status {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return Status::DevErr;
        };
        let status = inner.map(&self.config, body, features);
        drop(inner);
        if status == Status::Ok {
            self.bump();
        }
        status
    }

    pub(crate) fn unmap(&self, body: &UnmapBody) -> Status {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return Status::DevErr;
        };
        let status = inner.unmap(&self.config, body);
        drop(inner);
        if status == Status::Ok {
            self.bump();
        }
        status
    }
}

fn fault_flags(access: Access) -> u32 {
    match access {
        Access::Read => FAULT_F_READ,
        Access::Write => FAULT_F_WRITE,
    }
}

/// `start ..= end` is inside the input range and aligned to the granule
/// (`end + 1` aligned; an end at `u64::MAX` is).
fn range_ok(config: &IommuConfig, start: u64, end: u64) -> bool {
    let (lo, hi) = config.input();
    let mask = config.granule().wrapping_sub(1);
    start >= lo && end <= hi && start & mask == 0 && end.wrapping_add(1) & mask == 0
}

impl<const D: usize, const N: usize, const E: usize> Inner<D, N, E> {
    /// Removes `domain` with its mappings once no endpoint is attached.
    fn drop_if_empty(&mut self, domain: u32) {
        let empty = self
            .domains
            .iter()
            .any(|d| d.id == domain && d.endpoints == 0);
        if empty {
            self.domains.retain(|d| d.id != domain);
            self.mappings.retain(|m| m.domain != domain);
        }
    }

    /// Takes endpoint number `index` out of its domain.
    fn leave(&mut self, index: usize) {
        let Some(ep) = self.endpoints.get_mut(index) else {
            return;
        };
        let Some(old) = ep.domain.take() else {
            return;
        };
        if let Some(d) = self.domains.iter_mut().find(|d| d.id == old) {
            d.endpoints = d.endpoints.saturating_sub(1);
        }
        self.drop_if_empty(old);
    }

    fn attach(&mut self, config: &IommuConfig, body: &AttachBody, features: u64) -> Status {
        let domain = body.domain.get();
        let flags = body.flags.get();
        // Implements iommu.attach-request.1.
        if body.reserved != [0; 4] {
            return Status::Inval;
        }
        // Implements iommu.attach-request.2.
        // ATTACH_F_BYPASS is a flag the device knows only with
        // F_BYPASS_CONFIG negotiated.
        let known = if features & F_BYPASS_CONFIG != 0 {
            ATTACH_F_BYPASS
        } else {
            0
        };
        if flags & !known != 0 {
            return Status::Inval;
        }
        let bypass = flags & ATTACH_F_BYPASS != 0;
        if !config.domain_ok(domain) {
            return Status::Range;
        }
        // Implements iommu.attach-request.3.
        let Some(index) = self
            .endpoints
            .iter()
            .position(|e| e.id == body.endpoint.get())
        else {
            return Status::NoEnt;
        };
        let Some(ep) = self.endpoints.get(index) else {
            return Status::NoEnt;
        };
        let current = ep.domain;
        match self.domains.iter().find(|d| d.id == domain) {
            Some(d) => {
                // Implements iommu.attach-request.6.
                if d.bypass != bypass {
                    return Status::Inval;
                }
                if current == Some(domain) {
                    return Status::Ok;
                }
                // Implements iommu.attach-request.10, iommu.attach-request.11.
                // The endpoint's reserved regions must not be mapped in a
                // domain it joins.
                let clash = self.mappings.iter().any(|m| {
                    m.domain == domain
                        && ep.resv.iter().any(|r| r.overlaps(m.virt_start, m.virt_end))
                });
                if clash {
                    return Status::Unsupp;
                }
            }
            None => {
                // A new domain needs a slot, counting the one leaving the
                // old domain frees.
                let frees = current
                    .is_some_and(|c| self.domains.iter().any(|d| d.id == c && d.endpoints <= 1));
                if self.domains.is_full() && !frees {
                    return Status::NoMem;
                }
            }
        }
        // Implements iommu.attach-request.7, iommu.attach-request.8.
        // As a DETACH from the old domain (which goes away when empty),
        // then the ATTACH.
        self.leave(index);
        let slot = match self.domains.iter_mut().find(|d| d.id == domain) {
            Some(d) => d,
            None => {
                if self
                    .domains
                    .push(Domain {
                        id: domain,
                        bypass,
                        endpoints: 0,
                    })
                    .is_err()
                {
                    // Checked above; the endpoint stays detached.
                    return Status::NoMem;
                }
                match self.domains.last_mut() {
                    Some(d) => d,
                    None => return Status::DevErr,
                }
            }
        };
        // Implements iommu.attach-request.4, iommu.attach-request.12.
        slot.endpoints = slot.endpoints.saturating_add(1);
        if let Some(ep) = self.endpoints.get_mut(index) {
            ep.domain = Some(domain);
        }
        Status::Ok
    }

    fn detach(&mut self, config: &IommuConfig, body: &DetachBody) -> Status {
        // Implements iommu.detach-request.1.
        // `reserved` is not looked at.
        let domain = body.domain.get();
        if !config.domain_ok(domain) {
            return Status::Range;
        }
        // Implements iommu.detach-request.2.
        let Some(index) = self
            .endpoints
            .iter()
            .position(|e| e.id == body.endpoint.get())
        else {
            return Status::NoEnt;
        };
        if !self.domains.iter().any(|d| d.id == domain) {
            return Status::NoEnt;
        }
        // Implements iommu.detach-request.3.
        if self.endpoints.get(index).and_then(|e| e.domain) != Some(domain) {
            return Status::Inval;
        }
        // Implements iommu.detach-request.4.
        self.leave(index);
        Status::Ok
    }

    fn map(&mut self, config: &IommuConfig, body: &MapBody, features: u64) -> Status {
        let domain = body.domain.get();
        let (start, end, phys) = (
            body.virt_start.get(),
            body.virt_end.get(),
            body.phys_start.get(),
        );
        let flags = body.flags.get();
        if !config.domain_ok(domain) {
            return Status::Range;
        }
        // Implements iommu.map-request.3.
        let mut known = MAP_F_READ | MAP_F_WRITE;
        if features & F_MMIO != 0 {
            known |= MAP_F_MMIO;
        }
        if flags & !known != 0 {
            return Status::Inval;
        }
        if start > end {
            return Status::Inval;
        }
        // Implements iommu.map-request.1.
        let mask = config.granule().wrapping_sub(1);
        if !range_ok(config, start, end) || phys & mask != 0 {
            return Status::Range;
        }
        if phys.checked_add(end.wrapping_sub(start)).is_none() {
            return Status::Range;
        }
        // Implements iommu.map-request.4.
        let Some(d) = self.domains.iter().find(|d| d.id == domain) else {
            return Status::NoEnt;
        };
        // Implements iommu.map-request.5.
        if d.bypass {
            return Status::Inval;
        }
        // Implements iommu.map-request.2.
        let at = self
            .mappings
            .partition_point(|m| (m.domain, m.virt_start) < (domain, start));
        let before = at
            .checked_sub(1)
            .and_then(|i| self.mappings.get(i))
            .is_some_and(|m| m.domain == domain && m.virt_end >= start);
        let after = self
            .mappings
            .get(at)
            .is_some_and(|m| m.domain == domain && m.virt_start <= end);
        if before || after {
            return Status::Inval;
        }
        // Implements iommu.property-resv-mem.4.
        let reserved = self
            .endpoints
            .iter()
            .any(|e| e.domain == Some(domain) && e.resv.iter().any(|r| r.overlaps(start, end)));
        if reserved {
            return Status::Inval;
        }
        // A full table refuses the whole MAP: nothing half-made stays.
        match self.mappings.insert(
            at,
            Mapping {
                domain,
                virt_start: start,
                virt_end: end,
                phys_start: phys,
                flags,
            },
        ) {
            Ok(()) => Status::Ok,
            Err(_) => Status::NoMem,
        }
    }

    fn unmap(&mut self, config: &IommuConfig, body: &UnmapBody) -> Status {
        // Implements iommu.unmap-request.1.
        // `reserved` is not looked at (the MAY is not taken).
        let domain = body.domain.get();
        let (start, end) = (body.virt_start.get(), body.virt_end.get());
        if !config.domain_ok(domain) {
            return Status::Range;
        }
        if start > end {
            return Status::Inval;
        }
        if !range_ok(config, start, end) {
            return Status::Range;
        }
        // Implements iommu.unmap-request.2.
        let Some(d) = self.domains.iter().find(|d| d.id == domain) else {
            return Status::NoEnt;
        };
        // Implements iommu.unmap-request.3.
        if d.bypass {
            return Status::Inval;
        }
        // Mappings of a domain are sorted and disjoint, so their ends are
        // sorted too: the affected ones are `lo..hi`.
        let lo = self
            .mappings
            .partition_point(|m| (m.domain, m.virt_end) < (domain, start));
        let hi = self
            .mappings
            .partition_point(|m| (m.domain, m.virt_start) <= (domain, end));
        // Implements iommu.unmap-request.4.
        let first_split = self
            .mappings
            .get(lo)
            .is_some_and(|m| lo < hi && m.virt_start < start);
        let last_split = hi
            .checked_sub(1)
            .and_then(|i| self.mappings.get(i))
            .is_some_and(|m| lo < hi && m.virt_end > end);
        if first_split || last_split {
            return Status::Range;
        }
        // Implements iommu.unmap-request.5.
        self.mappings
            .retain(|m| !(m.domain == domain && m.virt_start >= start && m.virt_end <= end));
        Status::Ok
    }
}
