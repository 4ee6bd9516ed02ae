//! virtio-msg wire layouts (draft `transport-msg.tex`, revision 1) and the
//! one parser from untrusted bytes to a typed [`Message`].
//!
//! Every layout is a `#[repr(C)]` `zerocopy` struct with a compile-time
//! size check; message ids are enums with an `Unknown` variant so nothing
//! is lost in conversion. After [`Message::parse`] succeeds the payload has
//! the length its message needs; nothing downstream indexes raw bytes.

use core::fmt;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bytes of the common header.
pub const HEADER_LEN: usize = 8;

/// `type` bit 0: a response.
pub const TYPE_RESPONSE: u8 = 1 << 0;
/// `type` bit 1: a bus message.
pub const TYPE_BUS: u8 = 1 << 1;

macro_rules! wire {
    ($(#[$m:meta])* $name:ident [$size:expr] { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
        #[repr(C)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        const _: () = assert!(size_of::<$name>() == $size);
    };
}

wire!(
    /// The common header of every message.
    Header [8] {
        /// Bit 0: response; bit 1: bus message; bits 2–7 zero (ignored).
        type_: u8,
        /// The message id.
        msg_id: u8,
        /// Target device (0 for bus messages).
        dev_num: U16,
        /// Non-zero for requests, echoed in responses, 0 for events.
        token: U16,
        /// Header plus payload, 8 ..= the bus's maximum.
        msg_size: U16,
    }
);

wire!(
    /// `GET_DEVICE_INFO` answer.
    DeviceInfo [24] {
        /// Device ID.
        device_id: U32,
        /// Vendor ID.
        vendor_id: U32,
        /// Number of feature bits (multiple of 32).
        num_feature_bits: U32,
        /// Configuration space size.
        config_size: U32,
        /// Maximum number of virtqueues.
        max_vqueues: U32,
        /// First admin virtqueue.
        admin_vq_start: U16,
        /// Number of admin virtqueues.
        admin_vq_count: U16,
    }
);

wire!(
    /// `GET_DEVICE_FEATURES` request and the head of its answer and of
    /// `SET_DRIVER_FEATURES` (the feature words follow).
    FeatureBlocks [8] {
        /// First 32-bit block.
        block_index: U32,
        /// Number of blocks.
        num_blocks: U32,
    }
);

wire!(
    /// `GET_CONFIG` request.
    ConfigRange [8] {
        /// Byte offset in the configuration space.
        offset: U32,
        /// Number of bytes.
        length: U32,
    }
);

wire!(
    /// `GET_CONFIG` answer head, `SET_CONFIG` request and answer head (data
    /// follows).
    ConfigData [12] {
        /// Configuration generation count.
        generation: U32,
        /// Byte offset.
        offset: U32,
        /// Number of bytes (0 in a rejected `SET_CONFIG` answer).
        length: U32,
    }
);

wire!(
    /// A single `le32` payload: `GET_DEVICE_STATUS` answer,
    /// `SET_DEVICE_STATUS` request and answer, `GET_VQUEUE`,
    /// `RESET_VQUEUE`, `GET_SHM` requests, `EVENT_USED`, `PING`.
    Word [4] {
        /// The value.
        value: U32,
    }
);

wire!(
    /// `GET_VQUEUE` answer and `SET_VQUEUE` request.
    Vqueue [40] {
        /// Virtqueue index.
        index: U32,
        /// Maximum size (answer; 0 = no such queue). Reserved in the request.
        max_size: U32,
        /// Current size.
        size: U32,
        /// Reserved, zero.
        reserved: U32,
        /// Descriptor area (a window offset on this bus).
        desc_addr: U64,
        /// Driver area.
        driver_addr: U64,
        /// Device area.
        device_addr: U64,
    }
);

wire!(
    /// `GET_SHM` answer.
    ShmInfo [12] {
        /// Region index.
        index: U32,
        /// Length (0 = no such region).
        length: U32,
        /// Address.
        address: U32,
    }
);

wire!(
    /// `EVENT_CONFIG` head (data follows).
    EventConfig [16] {
        /// Device status.
        status: U32,
        /// Configuration generation count.
        generation: U32,
        /// Offset of the data.
        offset: U32,
        /// Bytes of data (may be 0).
        length: U32,
    }
);

wire!(
    /// `EVENT_AVAIL`.
    EventAvail [8] {
        /// Virtqueue index.
        vq_index: U32,
        /// Bits 0–30 next offset, bit 31 next wrap (0 without
        /// `NOTIFICATION_DATA`).
        next: U32,
    }
);

wire!(
    /// `GET_DEVICES` request.
    GetDevices [4] {
        /// First device number of the window (multiple of 8).
        offset: U16,
        /// Device numbers covered (multiple of 8).
        count: U16,
    }
);

wire!(
    /// `GET_DEVICES` answer head (the bitmap, `count / 8` bytes, follows).
    GetDevicesAnswer [6] {
        /// Echoed offset.
        offset: U16,
        /// Device numbers covered by the bitmap.
        count: U16,
        /// 0, or where to ask next.
        next_offset: U16,
    }
);

wire!(
    /// `EVENT_DEVICE` (bus).
    EventDevice [4] {
        /// Device number.
        dev_num: U16,
        /// 1 ready, 2 removed.
        state: U16,
    }
);

macro_rules! ids {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $value:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum $name {
            $($(#[$vm])* $variant,)*
            /// An id this crate does not know.
            Unknown(u8),
        }
        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v { $($value => Self::$variant,)* other => Self::Unknown(other) }
            }
        }
        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v { $($name::$variant => $value,)* $name::Unknown(other) => other }
            }
        }
    };
}

ids!(
    /// Transport message ids (0x00–0x3F requests, 0x40–0x7F events).
    TransportId {
        /// 0x02.
        GetDeviceInfo = 0x02,
        /// 0x03.
        GetDeviceFeatures = 0x03,
        /// 0x04.
        SetDriverFeatures = 0x04,
        /// 0x05.
        GetConfig = 0x05,
        /// 0x06.
        SetConfig = 0x06,
        /// 0x07.
        GetDeviceStatus = 0x07,
        /// 0x08.
        SetDeviceStatus = 0x08,
        /// 0x09.
        GetVqueue = 0x09,
        /// 0x0A.
        SetVqueue = 0x0a,
        /// 0x0B.
        ResetVqueue = 0x0b,
        /// 0x0C.
        GetShm = 0x0c,
        /// 0x40, device → driver.
        EventConfig = 0x40,
        /// 0x41, driver → device.
        EventAvail = 0x41,
        /// 0x42, device → driver.
        EventUsed = 0x42,
    }
);

ids!(
    /// Bus message ids.
    BusId {
        /// 0x02.
        GetDevices = 0x02,
        /// 0x03.
        Ping = 0x03,
        /// 0x40, device side → driver side.
        EventDevice = 0x40,
    }
);

/// True for ids in the event range (0x40–0x7F).
pub const fn is_event(id: u8) -> bool {
    id & 0xc0 == 0x40
}

/// A driver → device message, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `GET_DEVICE_INFO`.
    GetDeviceInfo,
    /// `GET_DEVICE_FEATURES`.
    GetDeviceFeatures(FeatureBlocks),
    /// `SET_DRIVER_FEATURES`: the blocks and `4 × num_blocks` bytes of
    /// feature words.
    SetDriverFeatures(FeatureBlocks, &'a [u8]),
    /// `GET_CONFIG`.
    GetConfig(ConfigRange),
    /// `SET_CONFIG`: the head and exactly `length` bytes of data.
    SetConfig(ConfigData, &'a [u8]),
    /// `GET_DEVICE_STATUS`.
    GetDeviceStatus,
    /// `SET_DEVICE_STATUS`.
    SetDeviceStatus(u32),
    /// `GET_VQUEUE`.
    GetVqueue(u32),
    /// `SET_VQUEUE`.
    SetVqueue(Vqueue),
    /// `RESET_VQUEUE`.
    ResetVqueue(u32),
    /// `GET_SHM`.
    GetShm(u32),
    /// `EVENT_AVAIL`.
    EventAvail(EventAvail),
    /// Bus `GET_DEVICES`.
    GetDevices(GetDevices),
    /// Bus `PING`.
    Ping(u32),
}

/// A message as the device end received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Target device (0 for bus messages).
    pub dev_num: u16,
    /// The request's token (0 for events).
    pub token: u16,
    /// True for a bus message.
    pub bus: bool,
    /// The message id as sent.
    pub msg_id: u8,
    /// What it asks.
    pub request: Request<'a>,
}

/// Why a message was discarded by the parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum MsgError {
    /// `msg_size` below 8 or above the bus maximum (or the bytes at hand).
    BadSize(u16),
    /// A response: the device end sends no requests, so none is expected.
    UnexpectedResponse,
    /// A request with token 0 (the draft: non-zero for requests).
    ZeroToken,
    /// An event with a non-zero token (the draft: 0 for events).
    EventToken(u16),
    /// A bus message with `dev_num` ≠ 0.
    BusDevNum(u16),
    /// A transport message id that is unknown or only a device sends.
    UnsupportedTransport(u8),
    /// A bus message id that is unknown or only a device sends.
    UnsupportedBus(u8),
    /// The payload is shorter than the message needs.
    Truncated {
        /// The message id.
        msg_id: u8,
        /// Payload bytes needed.
        need: usize,
        /// Payload bytes present.
        have: usize,
    },
}

impl fmt::Display for MsgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize(n) => write!(f, "msg_size {n} out of range"),
            Self::UnexpectedResponse => f.write_str("unexpected response"),
            Self::ZeroToken => f.write_str("request with token 0"),
            Self::EventToken(t) => write!(f, "event with token {t}"),
            Self::BusDevNum(d) => write!(f, "bus message for dev_num {d}"),
            Self::UnsupportedTransport(id) => write!(f, "unsupported transport message {id:#04x}"),
            Self::UnsupportedBus(id) => write!(f, "unsupported bus message {id:#04x}"),
            Self::Truncated { msg_id, need, have } => {
                write!(
                    f,
                    "message {msg_id:#04x} needs {need} payload bytes, has {have}"
                )
            }
        }
    }
}

impl core::error::Error for MsgError {}

fn fixed<T: FromBytes>(msg_id: u8, payload: &[u8]) -> Result<(T, &[u8]), MsgError> {
    T::read_from_prefix(payload).map_err(|_| MsgError::Truncated {
        msg_id,
        need: size_of::<T>(),
        have: payload.len(),
    })
}

fn data(msg_id: u8, rest: &[u8], need: u64, head: usize) -> Result<&[u8], MsgError> {
    let truncated = MsgError::Truncated {
        msg_id,
        need: usize::try_from(need)
            .unwrap_or(usize::MAX)
            .saturating_add(head),
        have: rest.len().saturating_add(head),
    };
    let n = usize::try_from(need).map_err(|_| truncated)?;
    rest.get(..n).ok_or(truncated)
}

impl<'a> Message<'a> {
    /// Parses one driver → device message from the bytes of a slot, with
    /// `max_size` the bus's maximum message size.
    ///
    /// # Errors
    /// [`MsgError`]: why the message must be discarded.
    pub fn parse(bytes: &'a [u8], max_size: usize) -> Result<Self, MsgError> {
        let (header, _) = Header::read_from_prefix(bytes).map_err(|_| MsgError::BadSize(0))?;
        let size = header.msg_size.get();
        let limit = max_size.min(bytes.len());
        if usize::from(size) < HEADER_LEN || usize::from(size) > limit {
            return Err(MsgError::BadSize(size));
        }
        let payload = bytes.get(HEADER_LEN..usize::from(size)).unwrap_or_default();
        if header.type_ & TYPE_RESPONSE != 0 {
            return Err(MsgError::UnexpectedResponse);
        }
        let bus = header.type_ & TYPE_BUS != 0;
        let id = header.msg_id;
        let token = header.token.get();
        let dev_num = header.dev_num.get();
        if is_event(id) {
            if token != 0 {
                return Err(MsgError::EventToken(token));
            }
        } else if token == 0 {
            return Err(MsgError::ZeroToken);
        }
        let request = if bus {
            if dev_num != 0 {
                return Err(MsgError::BusDevNum(dev_num));
            }
            match BusId::from(id) {
                BusId::GetDevices => Request::GetDevices(fixed(id, payload)?.0),
                BusId::Ping => Request::Ping(fixed::<Word>(id, payload)?.0.value.get()),
                BusId::EventDevice | BusId::Unknown(_) => {
                    return Err(MsgError::UnsupportedBus(id));
                }
            }
        } else {
            Self::transport(id, payload)?
        };
        Ok(Self {
            dev_num,
            token,
            bus,
            msg_id: id,
            request,
        })
    }

    fn transport(id: u8, payload: &'a [u8]) -> Result<Request<'a>, MsgError> {
        let word = |p| fixed::<Word>(id, p).map(|(w, _)| w.value.get());
        Ok(match TransportId::from(id) {
            TransportId::GetDeviceInfo => Request::GetDeviceInfo,
            TransportId::GetDeviceFeatures => Request::GetDeviceFeatures(fixed(id, payload)?.0),
            TransportId::SetDriverFeatures => {
                let (blocks, rest): (FeatureBlocks, _) = fixed(id, payload)?;
                let need = u64::from(blocks.num_blocks.get()).saturating_mul(4);
                Request::SetDriverFeatures(blocks, data(id, rest, need, 8)?)
            }
            TransportId::GetConfig => Request::GetConfig(fixed(id, payload)?.0),
            TransportId::SetConfig => {
                let (head, rest): (ConfigData, _) = fixed(id, payload)?;
                let need = u64::from(head.length.get());
                Request::SetConfig(head, data(id, rest, need, 12)?)
            }
            TransportId::GetDeviceStatus => Request::GetDeviceStatus,
            TransportId::SetDeviceStatus => Request::SetDeviceStatus(word(payload)?),
            TransportId::GetVqueue => Request::GetVqueue(word(payload)?),
            TransportId::SetVqueue => Request::SetVqueue(fixed(id, payload)?.0),
            TransportId::ResetVqueue => Request::ResetVqueue(word(payload)?),
            TransportId::GetShm => Request::GetShm(word(payload)?),
            TransportId::EventAvail => Request::EventAvail(fixed(id, payload)?.0),
            TransportId::EventConfig | TransportId::EventUsed | TransportId::Unknown(_) => {
                return Err(MsgError::UnsupportedTransport(id));
            }
        })
    }
}

/// A message being built: header, then payload pieces, at most
/// [`crate::MAX_MSG_SIZE`] bytes.
#[derive(Clone)]
pub struct Builder {
    buf: [u8; crate::MAX_MSG_SIZE],
    len: usize,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("bytes", &self.buf.get(..self.len))
            .finish()
    }
}

impl Builder {
    /// Starts a message with this header (`msg_size` is filled in by
    /// [`Self::bytes`]).
    pub fn new(type_: u8, msg_id: u8, dev_num: u16, token: u16) -> Self {
        let mut b = Self {
            buf: [0; crate::MAX_MSG_SIZE],
            len: 0,
        };
        b.put(&Header {
            type_,
            msg_id,
            dev_num: dev_num.into(),
            token: token.into(),
            msg_size: 0.into(),
        });
        b
    }

    /// Appends a wire struct. Bytes past [`crate::MAX_MSG_SIZE`] are dropped
    /// (callers size messages against the slot first).
    pub fn put<T: IntoBytes + Immutable>(&mut self, value: &T) {
        self.put_bytes(value.as_bytes());
    }

    /// Appends raw bytes (same rule as [`Self::put`]).
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        let end = self
            .len
            .saturating_add(bytes.len())
            .min(crate::MAX_MSG_SIZE);
        // `end - len` bytes, at most `bytes.len()`; a zip rather than
        // `copy_from_slice` leaves no length-mismatch panic path in firmware.
        for (dst, src) in self
            .buf
            .get_mut(self.len..end)
            .unwrap_or_default()
            .iter_mut()
            .zip(bytes)
        {
            *dst = *src;
        }
        self.len = end;
    }

    /// A zero-filled area of `n` bytes to fill in place.
    pub fn reserve(&mut self, n: usize) -> &mut [u8] {
        let start = self.len;
        let end = start.saturating_add(n).min(crate::MAX_MSG_SIZE);
        self.len = end;
        self.buf.get_mut(start..end).unwrap_or_default()
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been written (never: the header is there).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The finished message with its `msg_size`.
    pub fn bytes(&mut self) -> &[u8] {
        let size = u16::try_from(self.len).unwrap_or(u16::MAX).to_le_bytes();
        if let Some(field) = self.buf.get_mut(6..8) {
            field.copy_from_slice(&size);
        }
        self.buf.get(..self.len).unwrap_or_default()
    }
}
