//! The one way the engine calls libc: [`syscall!`] turns `-1` into the thread's `errno`.

/// Calls a libc function and turns `-1` into the thread's `errno` as an `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller passes arguments valid for this libc call (checked at each use).
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
    // By number, through libc's `syscall`: for the calls made once per message (read,
    // send, sendmsg). glibc's named wrappers of those are cancellation points and switch
    // asynchronous cancellation on and off around the call, ~60 of the ~1,270 user-space
    // instructions of an echoed 64 B message on epoll (callgrind). No engine thread is
    // ever cancelled, so the bare call is the same call. Every argument is widened to
    // `c_long`, the width the kernel's entry reads.
    (raw $nr:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe, clippy::cast_lossless)]
        // SAFETY: the caller passes arguments valid for this system call (checked at each
        // use); `syscall` only forwards them.
        let res = unsafe { libc::syscall(libc::$nr, $($arg as libc::c_long),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}
pub(crate) use syscall;
