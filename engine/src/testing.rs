//! Support for the project's own tests: the one list of backends every test runs on.
//! Not part of the API (hidden from the docs, no stability promise).

use std::io::Write;

use crate::config::BackendChoice;

/// The backends tests run on: `THRONG_TEST_BACKENDS` (a comma list of `epoll`, `uring`)
/// or both. Where the io_uring probe fails (a seccomp profile, an old kernel) and the
/// list was not given explicitly, io_uring is left out and a loud line on stderr says so;
/// a list that names `uring` explicitly keeps it, so its tests fail there instead.
pub fn backends() -> Vec<BackendChoice> {
    let explicit = std::env::var("THRONG_TEST_BACKENDS")
        .ok()
        .filter(|l| !l.trim().is_empty());
    let Some(list) = explicit else {
        let mut all = vec![BackendChoice::Uring, BackendChoice::Epoll];
        if let Err(why) = crate::sys::uring::probe::probe() {
            all.remove(0);
            // Straight to stderr: the test harness captures print macros of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!!!! io_uring SKIPPED in this test: {why} (epoll only) !!!!!!!!!!\n"
            );
        }
        return all;
    };
    list.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let choice: BackendChoice = b.parse().expect("THRONG_TEST_BACKENDS entry");
            assert_ne!(
                choice,
                BackendChoice::Auto,
                "THRONG_TEST_BACKENDS names backends (epoll, uring), not auto"
            );
            choice
        })
        .collect()
}

/// [`backends`] by name (`"uring"`, `"epoll"`), for tests that start processes.
pub fn backend_names() -> Vec<&'static str> {
    backends()
        .into_iter()
        .map(|b| match b {
            BackendChoice::Uring => "uring",
            _ => "epoll",
        })
        .collect()
}
