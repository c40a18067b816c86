//! Differential: `Decoder::decode_message` (the fast path for a whole single-frame message)
//! against `Decoder::decode` on arbitrary bytes and configs, at every decoder state the
//! stream reaches. The fast path must either decline without touching the bytes, or give
//! the message, bytes used and unmasked payload `decode` gives, leaving the state as
//! `decode` leaves it, or fail with the UTF-8 error `decode` fails with.
#![no_main]

#[path = "common/config.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use throng_protocol::ProtocolError;
use throng_protocol::decoder::{Decoded, Decoder, DecoderConfig, Event};

fuzz_target!(|data: &[u8]| {
    let Some((&[flags, frame, message], input)) = data.split_first_chunk::<3>() else {
        return;
    };
    let mut config = common::config(flags, frame, message);
    config.lenient_lengths = flags & 0x80 != 0;

    let mut bytes = input.to_vec();
    let mut decoder = Decoder::new();
    let mut used = 0;
    loop {
        check(&decoder, &config, &bytes[used..]);
        let total = bytes.len();
        match decoder.decode(&config, &mut bytes[used..]) {
            Ok(Decoded {
                consumed,
                event: Some(_),
            }) if used + consumed < total => used += consumed,
            _ => break,
        }
    }
});

fn check(decoder: &Decoder, config: &DecoderConfig, buf: &[u8]) {
    let mut fast_buf = buf.to_vec();
    let mut general_buf = buf.to_vec();
    let fast = decoder
        .decode_message(config, &mut fast_buf)
        .map(|r| r.map(|(m, n)| ((m.is_text(), m.as_bytes().to_vec()), n)));
    let mut general_decoder = *decoder;
    let general = general_decoder.decode(config, &mut general_buf);
    match fast {
        None => assert_eq!(fast_buf, buf, "declined but touched the bytes"),
        Some(Ok((message, used))) => {
            let Ok(Decoded {
                consumed,
                event: Some(Event::Data(data)),
            }) = general
            else {
                panic!("fast path gave a message, decode gave {general:?}");
            };
            assert_eq!(consumed, used);
            let whole = data.whole().expect("decode gave a piece");
            assert_eq!((whole.is_text(), whole.as_bytes().to_vec()), message);
            assert_eq!(general_decoder, *decoder);
            assert_eq!(fast_buf, general_buf);
        }
        Some(Err(e)) => {
            assert_eq!(e, ProtocolError::InvalidUtf8);
            assert_eq!(general.map(|_| ()), Err(e));
        }
    }
}
