//! Test payloads: chat-like JSON, shared by `throng-bench deflate` and the protocol crate's
//! criterion benchmark (`protocol/benches/deflate.rs` includes this file by path), so both
//! measure the same bytes.

/// `n` bytes of chat-like JSON (ids, names, flags, short notes), ASCII.
pub fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0u64;
    while s.len() < n {
        let id = i.wrapping_mul(2_654_435_761) % 100_000;
        s.push_str(&format!(
            "{{\"id\":{id},\"user\":\"user-{:05}\",\"online\":{},\"text\":\"message {i} in room {}\"}},",
            id * 7 % 100_000,
            i.is_multiple_of(3),
            id % 17
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}
