//! Arbitrary bytes into the PROXY protocol parser: it must never panic, must stay within
//! its length bounds, and must agree with itself on every prefix: a complete header's
//! prefixes are all incomplete, and an incomplete input's too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng_protocol::proxy::{MAX_V1_LEN, MAX_V2_LEN, parse};

fuzz_target!(|data: &[u8]| {
    let full = parse(data);
    match full {
        Ok(Some((header, n))) => {
            assert!(n <= data.len());
            assert!(n <= if header.version == 1 { MAX_V1_LEN } else { MAX_V2_LEN });
            assert_eq!(parse(&data[..n]), full, "the header alone parses the same");
            for k in 0..n {
                assert_eq!(parse(&data[..k]), Ok(None), "prefix of {k} of a {n}-byte header");
            }
        }
        Ok(None) => {
            assert!(data.len() < MAX_V2_LEN);
            for k in 0..data.len() {
                assert_eq!(parse(&data[..k]), Ok(None), "prefix of an incomplete header");
            }
        }
        Err(_) => {}
    }
});
