//! Dedicated mode: what the server answers, and streams that keep their context.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::*;
use crate::error::ProtocolError;

fn dedicated(bits: u8) -> Mode {
    Mode::Dedicated { window_bits: bits }
}

#[test]
fn dedicated_answers_keep_context_only_as_the_client_allows() {
    let p = "permessage-deflate";
    for (bits, offer, answer) in [
        // Full window: context both ways, nothing to limit.
        (15, p.to_owned(), p.to_owned()),
        (15, format!("{p}; client_max_window_bits"), p.to_owned()),
        (
            15,
            format!("{p}; client_max_window_bits=10"),
            format!("{p}; client_max_window_bits=10"),
        ),
        // Small window: the client's limited when it accepts a limit, else told to reset.
        (
            9,
            format!("{p}; client_max_window_bits"),
            format!("{p}; client_max_window_bits=9"),
        ),
        (9, p.to_owned(), format!("{p}; client_no_context_takeover")),
        (
            12,
            format!("{p}; client_max_window_bits=10"),
            format!("{p}; client_max_window_bits=10"),
        ),
        // The client's no-context requests are answered as 7.1.1 requires.
        (
            15,
            format!("{p}; server_no_context_takeover; client_no_context_takeover"),
            format!("{p}; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            9,
            format!("{p}; server_no_context_takeover"),
            format!("{p}; server_no_context_takeover; client_no_context_takeover"),
        ),
        // server_max_window_bits is answered with the same or a smaller value.
        (
            12,
            format!("{p}; server_max_window_bits=14"),
            format!("{p}; client_no_context_takeover; server_max_window_bits=12"),
        ),
        (
            15,
            format!("{p}; server_max_window_bits=10"),
            format!("{p}; server_max_window_bits=10"),
        ),
        // 8 bits: zlib cannot compress with it, so no context and plain messages.
        (
            15,
            format!("{p}; server_max_window_bits=8"),
            format!("{p}; server_no_context_takeover; server_max_window_bits=8"),
        ),
    ] {
        let a = negotiate_mode([offer.as_str()], dedicated(bits)).unwrap();
        assert_eq!(a.response(), answer, "{offer} with {bits} bits");
    }
    let a = negotiate_mode(["permessage-deflate; client_max_window_bits"], dedicated(9)).unwrap();
    assert_eq!((a.server_context, a.client_context), (Some(9), Some(9)));
    assert!(a.server_compresses() && a.shared_frames_fit());
    let a = negotiate_mode(
        ["permessage-deflate; server_max_window_bits=10"],
        dedicated(15),
    )
    .unwrap();
    assert_eq!((a.server_context, a.client_context), (Some(10), Some(15)));
    assert!(a.server_compresses() && !a.shared_frames_fit());
    let a = negotiate_mode(
        ["permessage-deflate; server_max_window_bits=8"],
        dedicated(15),
    )
    .unwrap();
    assert_eq!(a.server_context, None);
    assert!(!a.server_compresses());
    // Shared mode is unchanged by the mode argument.
    let a = negotiate_mode(["permessage-deflate; client_max_window_bits"], Mode::Shared).unwrap();
    assert_eq!(
        a.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

/// Messages that repeat each other: with context, each later one is mostly references
/// into the one before.
fn messages() -> Vec<Vec<u8>> {
    (0..40)
        .map(|i| {
            format!(
                "{{\"seq\":{i},\"room\":\"lobby\",\"users\":[\"alice\",\"bob\",\"carol\"],\"text\":\"the same long status line repeated every time\"}}"
            )
            .into_bytes()
        })
        .collect()
}

fn fresh_inflate(payload: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    Inflater::new()
        .inflate(&[payload], 1 << 20, &mut out)
        .map(|()| out)
}

#[test]
fn context_streams_round_trip_messages_that_need_the_kept_window() {
    for (bits, mem_level) in [(9, 1), (12, 4), (15, 8)] {
        let mut d = ContextDeflater::new(1, bits, mem_level).unwrap();
        let mut i = ContextInflater::new(bits).unwrap();
        let mut needed_context = 0;
        for (n, msg) in messages().iter().enumerate() {
            let mut payload = Vec::new();
            assert!(d.compress(msg, &mut payload));
            if n > 0 {
                // Later messages refer to earlier ones: alone they do not inflate to the
                // message, and they are much shorter than the message alone compressed.
                if fresh_inflate(&payload).ok().as_deref() != Some(msg.as_slice()) {
                    needed_context += 1;
                }
                assert!(
                    payload.len() * 3 < msg.len(),
                    "{bits}: {} of {}",
                    payload.len(),
                    msg.len()
                );
            }
            let mut out = Vec::new();
            i.inflate(&[&payload], 1 << 20, &mut out).unwrap();
            assert_eq!(out, *msg, "{bits} bits, message {n}");
        }
        assert_eq!(needed_context, messages().len() - 1, "{bits} bits");
    }
}

#[test]
fn a_context_inflater_follows_a_client_that_keeps_its_context() {
    // A client (flate2, 15-bit window) keeping context across messages, split in pieces.
    let mut c = Compress::new(Compression::new(6), false);
    let mut inflater = ContextInflater::new(15).unwrap();
    for msg in messages() {
        let mut payload = Vec::with_capacity(msg.len() + 64);
        c.compress_vec(&msg, &mut payload, FlushCompress::Sync)
            .unwrap();
        assert!(payload.ends_with(&TAIL));
        payload.truncate(payload.len() - 4);
        let (a, b) = payload.split_at(payload.len() / 2);
        let mut out = Vec::new();
        inflater.inflate(&[a, b], 1 << 20, &mut out).unwrap();
        assert_eq!(out, msg);
    }
    // And the server's compressor is read by a client keeping its context (flate2).
    let mut d = ContextDeflater::new(1, 15, 8).unwrap();
    let mut client = Decompress::new(false);
    for msg in messages() {
        let mut payload = Vec::new();
        assert!(d.compress(&msg, &mut payload));
        payload.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(msg.len() + 64);
        client
            .decompress_vec(&payload, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, msg);
    }
}

#[test]
fn a_reset_compressor_is_read_by_a_peer_that_kept_its_window() {
    let mut d = ContextDeflater::new(1, 9, 1).unwrap();
    let mut i = ContextInflater::new(9).unwrap();
    for (n, msg) in messages().iter().enumerate() {
        if n % 5 == 0 {
            d.reset();
        }
        let mut payload = Vec::new();
        assert!(d.compress(msg, &mut payload));
        let mut out = Vec::new();
        i.inflate(&[&payload], 1 << 20, &mut out).unwrap();
        assert_eq!(out, *msg);
    }
}

#[test]
fn context_inflater_caps_a_bomb_and_refuses_garbage() {
    let mut d = ContextDeflater::new(9, 15, 8).unwrap();
    let zeros = vec![0u8; 4 << 20];
    let mut bomb = Vec::new();
    assert!(d.compress(&zeros, &mut bomb));
    let mut i = ContextInflater::new(15).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        i.inflate(&[&bomb], 1 << 16, &mut out),
        Err(ProtocolError::MessageTooBig)
    );
    assert!(
        out.is_empty() && out.capacity() <= (1 << 16) + 1,
        "{}",
        out.capacity()
    );
    let mut i = ContextInflater::new(9).unwrap();
    assert_eq!(
        i.inflate(&[&[0xff; 16]], 1 << 16, &mut out),
        Err(ProtocolError::InvalidDeflate)
    );
    // A window larger than the inflater's is refused, not read out of bounds.
    let mut big = ContextDeflater::new(1, 15, 8).unwrap();
    let text: Vec<u8> = messages().concat().repeat(40);
    let mut payload = Vec::new();
    assert!(big.compress(&text, &mut payload));
    let mut small = ContextInflater::new(9).unwrap();
    assert_eq!(
        small.inflate(&[&payload], 1 << 20, &mut out),
        Err(ProtocolError::InvalidDeflate)
    );
    // Parameters zlib refuses.
    assert!(ContextDeflater::new(1, 8, 1).is_none());
    assert!(ContextDeflater::new(1, 16, 8).is_none());
    assert!(ContextInflater::new(7).is_none());
}
