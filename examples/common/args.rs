//! The examples' command line: a table of flags, one line each, from which `--help` is
//! written, so what the help says (every flag, its default) is what the parser does.
//!
//! Included by each example with `#[path]` (examples cannot share a library module
//! otherwise without becoming part of the published crate). Errors name the flag and the
//! value and exit with status 2; `--help` prints the table and exits 0.

#![allow(dead_code)] // each example uses the getters it needs

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// One flag: `--name VALUE` (or a switch when `value` is empty), its default as typed on
/// the command line (empty: none, and the help says what that means), and its help.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    pub value: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// `--name VALUE` with a default (parsed like a typed value; `""` for none).
pub const fn flag(
    name: &'static str,
    value: &'static str,
    default: &'static str,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        value,
        default,
        help,
    }
}

/// A switch: `--name`, off unless given.
pub const fn switch(name: &'static str, help: &'static str) -> Flag {
    flag(name, "", "", help)
}

/// The parsed command line. The getters exit with status 2 on a bad value.
#[derive(Debug)]
pub struct Args {
    program: &'static str,
    flags: &'static [Flag],
    given: Vec<Option<String>>,
}

/// Parses `std::env::args()` against `flags`; prints help and exits 0 on `-h`/`--help`.
pub fn parse(program: &'static str, about: &str, flags: &'static [Flag]) -> Args {
    match parse_from(program, flags, std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{}", help(program, about, flags));
            std::process::exit(0)
        }
        Err(e) => usage_error(program, &e),
    }
}

/// Prints `program: message` and a pointer to `--help`, then exits with status 2.
pub fn usage_error(program: &str, message: &str) -> ! {
    eprintln!("{program}: {message}\nTry '{program} --help'.");
    std::process::exit(2)
}

/// `Ok(None)`: help was asked for.
fn parse_from(
    program: &'static str,
    flags: &'static [Flag],
    mut it: impl Iterator<Item = String>,
) -> Result<Option<Args>, String> {
    let mut given = vec![None; flags.len()];
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let Some(i) = flags.iter().position(|f| f.name == name) else {
            return Err(format!("unknown flag {arg:?}"));
        };
        let value = if flags[i].value.is_empty() {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            String::from("on")
        } else {
            match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return Err(format!("{name} needs a value ({})", flags[i].value)),
            }
        };
        given[i] = Some(value);
    }
    Ok(Some(Args {
        program,
        flags,
        given,
    }))
}

/// The help text: one line per flag, with its default.
pub fn help(program: &str, about: &str, flags: &[Flag]) -> String {
    let mut out = format!("{about}\n\nusage: {program} [FLAGS]\n\nflags:\n");
    let width = flags
        .iter()
        .map(|f| f.name.len() + f.value.len() + 1)
        .max()
        .unwrap_or(0)
        .max("-h, --help".len());
    for f in flags.iter().filter(|f| !f.help.is_empty()) {
        let left = format!("{} {}", f.name, f.value);
        let default = match (f.value.is_empty(), f.default.is_empty()) {
            (true, _) => " (default: off)".to_owned(),
            (false, true) => String::new(), // the help says what the default is
            (false, false) => format!(" (default: {})", f.default),
        };
        out += &format!("  {left:width$}  {}{default}\n", f.help);
    }
    out += &format!("  {:width$}  print this help and exit\n", "-h, --help");
    if flags.iter().any(|f| f.value == "SIZE") {
        out += "\nSizes take a suffix: K, M, G (powers of 1024), e.g. 16M.\n";
    }
    out
}

impl Args {
    fn index(&self, name: &str) -> usize {
        self.flags
            .iter()
            .position(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the flag table"))
    }

    /// The value given, else the default; `None` when neither.
    pub fn raw(&self, name: &str) -> Option<&str> {
        let i = self.index(name);
        match &self.given[i] {
            Some(v) => Some(v),
            None if self.flags[i].default.is_empty() => None,
            None => Some(self.flags[i].default),
        }
    }

    /// Whether the flag was given on the command line.
    pub fn given(&self, name: &str) -> bool {
        self.given[self.index(name)].is_some()
    }

    /// Whether a switch is on.
    pub fn on(&self, name: &str) -> bool {
        self.given(name)
    }

    /// Two flags that go together (a certificate and its key): both values, or `None`
    /// when neither is given; exits naming the missing one when only one is.
    pub fn pair(&self, a: &str, b: &str) -> Option<(&str, &str)> {
        match (self.raw(a), self.raw(b)) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            (None, Some(_)) => self.bad(a, &format!("{a} and {b} go together")),
            (Some(_), None) => self.bad(b, &format!("{a} and {b} go together")),
        }
    }

    /// Exits with "bad value for NAME: VALUE (why)".
    pub fn bad(&self, name: &str, why: &str) -> ! {
        let value = self.raw(name).unwrap_or("");
        usage_error(
            self.program,
            &format!("bad value for {name}: {value:?} ({why})"),
        )
    }

    /// A value parsed with `FromStr`, when given or defaulted.
    pub fn opt<T: FromStr>(&self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.raw(name)?;
        Some(
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|e: T::Err| self.bad(name, &e.to_string())),
        )
    }

    /// A value parsed with `FromStr`; the flag must have a default.
    pub fn get<T: FromStr>(&self, name: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.opt(name)
            .unwrap_or_else(|| self.bad(name, "a value is required"))
    }

    /// A count of at least 1.
    pub fn positive(&self, name: &str) -> Option<usize> {
        let n: usize = self.opt(name)?;
        if n == 0 {
            self.bad(name, "must be at least 1");
        }
        Some(n)
    }

    /// A byte size: digits with an optional K, M or G suffix (powers of 1024).
    pub fn size(&self, name: &str) -> Option<usize> {
        let v = self.raw(name)?;
        Some(parse_size(v).unwrap_or_else(|e| self.bad(name, &e)))
    }

    /// A socket address; a host name is resolved here (its first address is used), and
    /// the address is printed by the example once it listens.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        let v = self.raw(name)?;
        if let Ok(a) = v.parse() {
            return Some(a);
        }
        if !v.contains(':') {
            self.bad(name, "expected HOST:PORT");
        }
        match v.to_socket_addrs() {
            Ok(mut addrs) => Some(
                addrs
                    .next()
                    .unwrap_or_else(|| self.bad(name, "the name has no address")),
            ),
            Err(e) => self.bad(name, &format!("cannot resolve: {e}")),
        }
    }
}

/// Parses `16`, `16K`, `16M`, `1G` (also `16KiB`, `16kb`; powers of 1024).
pub fn parse_size(v: &str) -> Result<usize, String> {
    let t = v.trim().replace('_', "");
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[digits.len()..].to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown size suffix {unit:?}; use K, M or G")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| "expected a number of bytes, e.g. 16M".to_owned())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_owned())
}
