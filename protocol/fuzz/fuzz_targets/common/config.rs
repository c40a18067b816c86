//! The decoder config both decoder fuzz targets derive from their first bytes.

use throng_protocol::decoder::DecoderConfig;
use throng_protocol::frame::{RSV1, RSV2};

/// `flags`: bit 0 the role, bits 1-2 the RSV bits claimed, bits 3-4 and 5-6 the frame and
/// message limit kinds (default, `small`, `small` x 64, none); `frame` and `message` are
/// the small limits. Bit 7 is left to the caller.
pub fn config(flags: u8, frame: u8, message: u8) -> DecoderConfig {
    let mut config = if flags & 1 == 0 {
        DecoderConfig::default()
    } else {
        DecoderConfig::client()
    };
    config.allowed_rsv = [0, RSV1, 0b111, RSV1 | RSV2][usize::from(flags >> 1 & 3)];
    let limit = |kind: u8, small: u8| match kind & 3 {
        0 => 16 << 20,
        1 => u64::from(small),
        2 => u64::from(small) * 64,
        _ => u64::MAX,
    };
    config.max_frame_size = limit(flags >> 3, frame);
    config.max_message_size = limit(flags >> 5, message);
    config
}
