//! Sound wire formats (virtio 1.4 §"Sound Device"): little-endian structs,
//! request, event and status codes, format and rate tables.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VIRTIO_SND_F_CTLS`: the device has control elements.
pub const F_CTLS: u64 = 1 << 0;

/// The control queue.
pub const CONTROLQ: u16 = 0;
/// The event queue.
pub const EVENTQ: u16 = 1;
/// The tx (playback) queue.
pub const TXQ: u16 = 2;
/// The rx (capture) queue.
pub const RXQ: u16 = 3;

/// `VIRTIO_SND_R_JACK_INFO`.
pub const R_JACK_INFO: u32 = 1;
/// `VIRTIO_SND_R_JACK_REMAP`.
pub const R_JACK_REMAP: u32 = 2;
/// `VIRTIO_SND_R_PCM_INFO`.
pub const R_PCM_INFO: u32 = 0x100;
/// `VIRTIO_SND_R_PCM_SET_PARAMS`.
pub const R_PCM_SET_PARAMS: u32 = 0x101;
/// `VIRTIO_SND_R_PCM_PREPARE`.
pub const R_PCM_PREPARE: u32 = 0x102;
/// `VIRTIO_SND_R_PCM_RELEASE`.
pub const R_PCM_RELEASE: u32 = 0x103;
/// `VIRTIO_SND_R_PCM_START`.
pub const R_PCM_START: u32 = 0x104;
/// `VIRTIO_SND_R_PCM_STOP`.
pub const R_PCM_STOP: u32 = 0x105;
/// `VIRTIO_SND_R_CHMAP_INFO`.
pub const R_CHMAP_INFO: u32 = 0x200;
/// `VIRTIO_SND_R_CTL_INFO`.
pub const R_CTL_INFO: u32 = 0x300;
/// `VIRTIO_SND_R_CTL_ENUM_ITEMS`.
pub const R_CTL_ENUM_ITEMS: u32 = 0x301;
/// `VIRTIO_SND_R_CTL_READ`.
pub const R_CTL_READ: u32 = 0x302;
/// `VIRTIO_SND_R_CTL_WRITE`.
pub const R_CTL_WRITE: u32 = 0x303;
/// `VIRTIO_SND_R_CTL_TLV_READ`.
pub const R_CTL_TLV_READ: u32 = 0x304;
/// `VIRTIO_SND_R_CTL_TLV_WRITE`.
pub const R_CTL_TLV_WRITE: u32 = 0x305;
/// `VIRTIO_SND_R_CTL_TLV_COMMAND`.
pub const R_CTL_TLV_COMMAND: u32 = 0x306;

/// `VIRTIO_SND_EVT_JACK_CONNECTED`.
pub const EVT_JACK_CONNECTED: u32 = 0x1000;
/// `VIRTIO_SND_EVT_JACK_DISCONNECTED`.
pub const EVT_JACK_DISCONNECTED: u32 = 0x1001;
/// `VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED`.
pub const EVT_PCM_PERIOD_ELAPSED: u32 = 0x1100;
/// `VIRTIO_SND_EVT_PCM_XRUN`.
pub const EVT_PCM_XRUN: u32 = 0x1101;
/// `VIRTIO_SND_EVT_CTL_NOTIFY`.
pub const EVT_CTL_NOTIFY: u32 = 0x1200;

/// `VIRTIO_SND_S_OK`.
pub const S_OK: u32 = 0x8000;
/// `VIRTIO_SND_S_BAD_MSG`.
pub const S_BAD_MSG: u32 = 0x8001;
/// `VIRTIO_SND_S_NOT_SUPP`.
pub const S_NOT_SUPP: u32 = 0x8002;
/// `VIRTIO_SND_S_IO_ERR`.
pub const S_IO_ERR: u32 = 0x8003;

/// `VIRTIO_SND_D_OUTPUT`.
pub const D_OUTPUT: u8 = 0;
/// `VIRTIO_SND_D_INPUT`.
pub const D_INPUT: u8 = 1;

/// `VIRTIO_SND_JACK_F_REMAP`.
pub const JACK_F_REMAP: u32 = 1 << 0;

/// `VIRTIO_SND_PCM_F_SHMEM_HOST`.
pub const PCM_F_SHMEM_HOST: u32 = 1 << 0;
/// `VIRTIO_SND_PCM_F_SHMEM_GUEST`.
pub const PCM_F_SHMEM_GUEST: u32 = 1 << 1;
/// `VIRTIO_SND_PCM_F_MSG_POLLING`.
pub const PCM_F_MSG_POLLING: u32 = 1 << 2;
/// `VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS`.
pub const PCM_F_EVT_SHMEM_PERIODS: u32 = 1 << 3;
/// `VIRTIO_SND_PCM_F_EVT_XRUNS`.
pub const PCM_F_EVT_XRUNS: u32 = 1 << 4;
/// Every defined PCM feature bit.
pub const PCM_F_DEFINED: u32 = 0x1f;

/// `VIRTIO_SND_PCM_FMT_S16`.
pub const FMT_S16: u8 = 5;
/// `VIRTIO_SND_PCM_FMT_S32`.
pub const FMT_S32: u8 = 17;
/// `VIRTIO_SND_PCM_FMT_FLOAT`.
pub const FMT_FLOAT: u8 = 19;
/// Number of defined formats (`IMA_ADPCM` 0 to `IEC958_SUBFRAME` 24).
pub const FMT_COUNT: u8 = 25;

/// Physical bits per sample of each defined format, by its number.
const FMT_PHYS_BITS: [u8; FMT_COUNT as usize] = [
    4, 8, 8, 8, 8, 16, 16, 24, 24, 24, 24, 24, 24, 32, 32, 32, 32, 32, 32, 32, 64, 8, 16, 32, 32,
];

/// Physical bits per sample of `format`; `None` for an undefined one.
pub fn format_bits(format: u8) -> Option<u8> {
    FMT_PHYS_BITS.get(usize::from(format)).copied()
}

/// `VIRTIO_SND_PCM_RATE_44100`.
pub const RATE_44100: u8 = 6;
/// `VIRTIO_SND_PCM_RATE_48000`.
pub const RATE_48000: u8 = 7;
/// Number of defined rates.
pub const RATE_COUNT: u8 = 16;

const RATE_HZ: [u32; RATE_COUNT as usize] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000,
    384000, 12000, 24000,
];

/// Frames per second of `rate`; `None` for an undefined one.
pub fn rate_hz(rate: u8) -> Option<u32> {
    RATE_HZ.get(usize::from(rate)).copied()
}

/// Mask of the defined format bits.
pub const FORMATS_DEFINED: u64 = (1 << FMT_COUNT) - 1;
/// Mask of the defined rate bits.
pub const RATES_DEFINED: u64 = (1 << RATE_COUNT) - 1;

/// `VIRTIO_SND_CHMAP_MAX_SIZE`.
pub const CHMAP_MAX_SIZE: usize = 18;
/// The largest defined channel position (`VIRTIO_SND_CHMAP_BRC`).
pub const CHMAP_POS_MAX: u8 = 41;
/// `VIRTIO_SND_CHMAP_FL`.
pub const CHMAP_FL: u8 = 3;
/// `VIRTIO_SND_CHMAP_FR`.
pub const CHMAP_FR: u8 = 4;
/// `VIRTIO_SND_CHMAP_MONO`.
pub const CHMAP_MONO: u8 = 2;

/// `VIRTIO_SND_CTL_ROLE_UNDEFINED`.
pub const CTL_ROLE_UNDEFINED: u32 = 0;
/// `VIRTIO_SND_CTL_ROLE_VOLUME`.
pub const CTL_ROLE_VOLUME: u32 = 1;
/// `VIRTIO_SND_CTL_ROLE_MUTE`.
pub const CTL_ROLE_MUTE: u32 = 2;
/// `VIRTIO_SND_CTL_ROLE_GAIN`.
pub const CTL_ROLE_GAIN: u32 = 3;

/// `VIRTIO_SND_CTL_TYPE_BOOLEAN`.
pub const CTL_TYPE_BOOLEAN: u32 = 0;
/// `VIRTIO_SND_CTL_TYPE_INTEGER`.
pub const CTL_TYPE_INTEGER: u32 = 1;
/// `VIRTIO_SND_CTL_TYPE_INTEGER64`.
pub const CTL_TYPE_INTEGER64: u32 = 2;
/// `VIRTIO_SND_CTL_TYPE_ENUMERATED`.
pub const CTL_TYPE_ENUMERATED: u32 = 3;
/// `VIRTIO_SND_CTL_TYPE_BYTES`.
pub const CTL_TYPE_BYTES: u32 = 4;
/// `VIRTIO_SND_CTL_TYPE_IEC958`.
pub const CTL_TYPE_IEC958: u32 = 5;

/// `1 << VIRTIO_SND_CTL_ACCESS_READ`.
pub const CTL_ACCESS_READ: u32 = 1 << 0;
/// `1 << VIRTIO_SND_CTL_ACCESS_WRITE`.
pub const CTL_ACCESS_WRITE: u32 = 1 << 1;
/// `1 << VIRTIO_SND_CTL_ACCESS_VOLATILE`.
pub const CTL_ACCESS_VOLATILE: u32 = 1 << 2;
/// `1 << VIRTIO_SND_CTL_ACCESS_INACTIVE`.
pub const CTL_ACCESS_INACTIVE: u32 = 1 << 3;
/// `1 << VIRTIO_SND_CTL_ACCESS_TLV_READ`.
pub const CTL_ACCESS_TLV_READ: u32 = 1 << 4;
/// `1 << VIRTIO_SND_CTL_ACCESS_TLV_WRITE`.
pub const CTL_ACCESS_TLV_WRITE: u32 = 1 << 5;
/// `1 << VIRTIO_SND_CTL_ACCESS_TLV_COMMAND`.
pub const CTL_ACCESS_TLV_COMMAND: u32 = 1 << 6;
/// Every defined access bit.
pub const CTL_ACCESS_DEFINED: u32 = 0x7f;

/// `1 << VIRTIO_SND_CTL_EVT_MASK_VALUE`.
pub const CTL_EVT_MASK_VALUE: u16 = 1 << 0;
/// `1 << VIRTIO_SND_CTL_EVT_MASK_INFO`.
pub const CTL_EVT_MASK_INFO: u16 = 1 << 1;
/// `1 << VIRTIO_SND_CTL_EVT_MASK_TLV`.
pub const CTL_EVT_MASK_TLV: u16 = 1 << 2;
/// Every defined event mask bit.
pub const CTL_EVT_MASK_DEFINED: u16 = 0x7;

/// Bytes of `struct virtio_snd_ctl_value`.
pub const CTL_VALUE_BYTES: usize = 512;
/// Bytes of one `struct virtio_snd_ctl_enum_item`.
pub const CTL_ENUM_ITEM_BYTES: usize = 64;
/// Bytes of the `name` field of `struct virtio_snd_ctl_info`.
pub const CTL_NAME_BYTES: usize = 44;

/// `struct virtio_snd_config` (16 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SoundConfig {
    /// Jacks.
    pub jacks: U32,
    /// PCM streams.
    pub streams: U32,
    /// Channel maps.
    pub chmaps: U32,
    /// Control elements (with `F_CTLS`).
    pub controls: U32,
}

/// `struct virtio_snd_hdr`: a request code or a response status.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Hdr {
    /// `R_*`, `EVT_*` or `S_*`.
    pub code: U32,
}

/// `struct virtio_snd_event` (8 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Event {
    /// `EVT_*`.
    pub code: U32,
    /// The jack or stream id (for `CTL_NOTIFY`: `le16 control_id`, `le16 mask`).
    pub data: U32,
}

/// `struct virtio_snd_query_info` (16 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct QueryInfo {
    /// `R_*_INFO`.
    pub code: U32,
    /// The first item.
    pub start_id: U32,
    /// How many items.
    pub count: U32,
    /// The driver's size of one item's structure.
    pub size: U32,
}

/// `struct virtio_snd_jack_hdr`, `struct virtio_snd_pcm_hdr`,
/// `struct virtio_snd_ctl_hdr`: a code and an item id (8 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ItemHdr {
    /// `R_*`.
    pub code: U32,
    /// Jack, stream or control id.
    pub id: U32,
}

/// `struct virtio_snd_jack_remap` (16 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct JackRemap {
    /// `R_JACK_REMAP` and the jack.
    pub hdr: ItemHdr,
    /// Association number.
    pub association: U32,
    /// Sequence number.
    pub sequence: U32,
}

/// `struct virtio_snd_jack_info` (24 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct JackInfoWire {
    /// `hda_fn_nid`.
    pub hda_fn_nid: U32,
    /// `JACK_F_*`.
    pub features: U32,
    /// HDA pin default configuration.
    pub hda_reg_defconf: U32,
    /// HDA pin capabilities.
    pub hda_reg_caps: U32,
    /// 1 connected, 0 not.
    pub connected: u8,
    /// Zero.
    pub padding: [u8; 7],
}

/// `struct virtio_snd_pcm_info` (32 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PcmInfoWire {
    /// `hda_fn_nid`.
    pub hda_fn_nid: U32,
    /// `PCM_F_*` bits.
    pub features: U32,
    /// `1 << FMT_*` bits.
    pub formats: U64,
    /// `1 << RATE_*` bits.
    pub rates: U64,
    /// `D_*`.
    pub direction: u8,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
    /// Zero.
    pub padding: [u8; 5],
}

/// `struct virtio_snd_pcm_set_params` (24 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SetParams {
    /// `R_PCM_SET_PARAMS` and the stream.
    pub hdr: ItemHdr,
    /// The driver's buffer size.
    pub buffer_bytes: U32,
    /// The driver's period size.
    pub period_bytes: U32,
    /// Selected `PCM_F_*` bits.
    pub features: U32,
    /// Channels.
    pub channels: u8,
    /// `FMT_*`.
    pub format: u8,
    /// `RATE_*`.
    pub rate: u8,
    /// Zero.
    pub padding: u8,
}

/// `struct virtio_snd_chmap_info` (24 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ChmapInfoWire {
    /// `hda_fn_nid`.
    pub hda_fn_nid: U32,
    /// `D_*`.
    pub direction: u8,
    /// Valid entries of `positions`.
    pub channels: u8,
    /// `CHMAP_*` positions.
    pub positions: [u8; CHMAP_MAX_SIZE],
}

/// `struct virtio_snd_ctl_info` (96 bytes, as Linux's uapi header lays it out).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CtlInfoWire {
    /// `hda_fn_nid`.
    pub hda_fn_nid: U32,
    /// Role (with direction in bit 0) or `CTL_ROLE_UNDEFINED`.
    pub role: U32,
    /// `CTL_TYPE_*`.
    pub type_: U32,
    /// `CTL_ACCESS_*` bits.
    pub access: U32,
    /// Members of the value.
    pub count: U32,
    /// Index among elements of the same name.
    pub index: U32,
    /// NUL-terminated ASCII name.
    pub name: [u8; CTL_NAME_BYTES],
    /// Zero: the C union holds `le64` members, so it is 8-aligned (offset 72).
    pub padding: [u8; 4],
    /// `integer` (min, max, step), `integer64` (min, max, step as le64) or
    /// `enumerated` (items), little-endian.
    pub value: [u8; 24],
}

/// `struct virtio_snd_pcm_xfer`: an I/O message's header.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Xfer {
    /// The stream.
    pub stream_id: U32,
}

/// `struct virtio_snd_pcm_status` (8 bytes): an I/O message's tail.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PcmStatus {
    /// `S_OK` or `S_IO_ERR`.
    pub status: U32,
    /// Bytes the device holds that were not played (tx) or handed over (rx).
    pub latency_bytes: U32,
}

/// `struct virtio_snd_ctl_tlv`'s header (8 bytes).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TlvHdr {
    /// Metadata type.
    pub type_: U32,
    /// Bytes of value (4-aligned).
    pub length: U32,
}

/// The `le16 control_id; le16 mask` data of a `CTL_NOTIFY` event.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CtlEventData {
    /// The control.
    pub control_id: U16,
    /// `CTL_EVT_MASK_*` bits.
    pub mask: U16,
}

const _: () = assert!(size_of::<SoundConfig>() == 16);
const _: () = assert!(size_of::<QueryInfo>() == 16);
const _: () = assert!(size_of::<JackInfoWire>() == 24);
const _: () = assert!(size_of::<PcmInfoWire>() == 32);
const _: () = assert!(size_of::<SetParams>() == 24);
const _: () = assert!(size_of::<ChmapInfoWire>() == 24);
const _: () = assert!(size_of::<CtlInfoWire>() == 96);
const _: () = assert!(size_of::<Event>() == 8);
