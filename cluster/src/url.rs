//! `redis://[[user]:password@]host[:port][/db]`, the form Redis clients accept.

use crate::error::ClusterError;

/// Where Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs and error messages.
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    /// `host:port`, for connecting and for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses a `redis://` URL. Pub/sub channels are the same in every database, so a `/db`
/// part is accepted and has no effect.
pub(crate) fn parse(url: &str) -> Result<Target, ClusterError> {
    let bad = |why: &str| ClusterError::Url(format!("{url:?}: {why}"));
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("expected redis://host[:port]"))?;
    let rest = rest.split_once('/').map_or(rest, |(a, _)| a);
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (user, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
            None => (Some(a.to_owned()), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 6379,
        Some(p) => p.parse().map_err(|_| bad("bad port"))?,
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = parse("redis://127.0.0.1:6390").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.password),
            ("127.0.0.1", 6390, None)
        );
        assert_eq!(parse("redis://localhost").unwrap().port, 6379);
        let t = parse("redis://:secret@h:1/0").unwrap();
        assert_eq!((t.user, t.password.as_deref()), (None, Some("secret")));
        let t = parse("redis://alice:pw@h").unwrap();
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("alice"), Some("pw"))
        );
        let t = parse("redis://[::1]:7000").unwrap();
        assert_eq!((t.addr().as_str(), t.port), ("[::1]:7000", 7000));
        assert!(!format!("{t:?}").contains("pw"));
        for bad in ["http://h", "redis://", "redis://h:port", "redis://[::1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
