//! Writing RESP2 commands: an array of bulk strings, each argument possibly in pieces
//! (a channel is prefix + topic, a payload is envelope header + message) so nothing is
//! concatenated first.

use std::io::Write;

/// Appends a command whose arguments are each given as pieces.
pub fn command(out: &mut Vec<u8>, args: &[&[&[u8]]]) {
    header(out, b'*', args.len());
    for pieces in args {
        header(out, b'$', pieces.iter().map(|p| p.len()).sum());
        pieces.iter().for_each(|p| out.extend_from_slice(p));
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a command of whole arguments.
pub fn simple(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for a in args {
        header(out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The bytes [`command`] writes, for sizing a buffer exactly.
pub fn command_len(args: &[&[&[u8]]]) -> usize {
    let mut n = 1 + digits(args.len()) + 2;
    for pieces in args {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        n += 1 + digits(len) + 2 + len + 2;
    }
    n
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    let _ = write!(out, "{n}");
    out.extend_from_slice(b"\r\n");
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_joined_and_sized_exactly() {
        let args: &[&[&[u8]]] = &[&[b"PUBLISH"], &[b"throng:", b"room"], &[b"", b"0123456789"]];
        let mut out = Vec::new();
        command(&mut out, args);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$11\r\nthrong:room\r\n$10\r\n0123456789\r\n"
        );
        assert_eq!(command_len(args), out.len());
        let mut s = Vec::new();
        simple(&mut s, &[b"PING"]);
        assert_eq!(s, b"*1\r\n$4\r\nPING\r\n");
    }
}
