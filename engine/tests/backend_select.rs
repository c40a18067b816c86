//! Backend choice at start-up: `Auto` runs io_uring when the probe passes and falls back to
//! epoll (saying why) when it fails; a forced io_uring fails loudly instead. The probe
//! failure is simulated with `THRONG_URING_PROBE_FAIL`, as a kernel without io_uring or a
//! seccomp profile would make it fail.
//!
//! One test in this binary, run in sequence, because it changes the process environment.

mod common;

use common::*;
use throng_engine::{BackendChoice, BackendKind, Config, Error, Server};

fn try_start(backend: BackendChoice) -> Result<Server<TestHandler>, Error> {
    let (tx, _rx) = std::sync::mpsc::channel();
    let config: Config = config(backend);
    Server::start(config, move |worker| TestHandler {
        tx: tx.clone(),
        worker,
    })
}

fn set_env(key: &str, value: Option<&str>) {
    // SAFETY: this binary holds this one test; no other thread reads the environment
    // while it changes (servers are started after and shut down before each change).
    unsafe {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
}

#[test]
fn auto_falls_back_to_epoll_and_a_forced_uring_fails_loudly() {
    set_env("THRONG_BACKEND", None);
    set_env("THRONG_URING_PROBE_FAIL", None);

    // Where io_uring runs, Auto picks it and says so (skipped loudly where it does not).
    let has_uring = backends().contains(&BackendChoice::Uring);
    if has_uring {
        let server = try_start(BackendChoice::Auto).expect("auto starts");
        assert_eq!(
            server.backend(),
            BackendKind::Uring,
            "{}",
            server.backend_note()
        );
        assert!(server.backend_note().contains("probe passed"));
        echo_once(&server);
        server.shutdown().unwrap();
    }

    // The probe fails (as on a kernel without io_uring): Auto runs epoll and says why.
    set_env("THRONG_URING_PROBE_FAIL", Some("ENOSYS"));
    let server = try_start(BackendChoice::Auto).expect("auto falls back");
    assert_eq!(server.backend(), BackendKind::Epoll);
    assert!(
        server.backend_note().contains("io_uring unavailable")
            && server.backend_note().contains("ENOSYS"),
        "the fallback names its reason: {}",
        server.backend_note()
    );
    echo_once(&server);
    server.shutdown().unwrap();

    // Forced by config: a clear error, no silent fallback.
    let err = try_start(BackendChoice::Uring)
        .expect_err("a forced io_uring without io_uring must not start");
    assert!(matches!(err, Error::BackendUnavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("io_uring") && msg.contains("ENOSYS") && msg.contains("config"),
        "{msg}"
    );

    // Forced by THRONG_BACKEND=uring over a config that says Auto: same.
    set_env("THRONG_BACKEND", Some("uring"));
    let err = try_start(BackendChoice::Auto)
        .expect_err("THRONG_BACKEND=uring without io_uring must not start");
    assert!(err.to_string().contains("THRONG_BACKEND"), "{err}");
    assert!(matches!(err, Error::BackendUnavailable { .. }), "{err:?}");

    // A THRONG_BACKEND naming no backend is its own error, not a fallback.
    set_env("THRONG_BACKEND", Some("kqueue"));
    let err = try_start(BackendChoice::Auto).expect_err("a bad THRONG_BACKEND");
    assert!(
        matches!(&err, Error::BadBackendVariable { value } if value == "kqueue"),
        "{err:?}"
    );

    // THRONG_BACKEND=epoll overrides a config asking for io_uring.
    set_env("THRONG_URING_PROBE_FAIL", None);
    set_env("THRONG_BACKEND", Some("epoll"));
    let server = try_start(BackendChoice::Uring).expect("epoll forced by env");
    assert_eq!(server.backend(), BackendKind::Epoll);
    server.shutdown().unwrap();
    set_env("THRONG_BACKEND", None);

    // Probe passes again: a forced io_uring runs io_uring.
    if has_uring {
        let server = try_start(BackendChoice::Uring).expect("io_uring starts");
        assert_eq!(server.backend(), BackendKind::Uring);
        echo_once(&server);
        server.shutdown().unwrap();
    }
}

/// One real round trip through the server (TestHandler echoes).
fn echo_once(server: &Server<TestHandler>) {
    let mut raw = Raw::open(server.local_addr());
    raw.send(true, OP_TEXT, b"probe");
    assert_eq!(raw.read_frame().payload, b"probe");
}
