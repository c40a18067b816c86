//! The one way the engine calls libc: [`syscall!`] turns `-1` into the thread's `errno`.

/// Calls a libc function and turns `-1` into the thread's `errno` as an `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller passes arguments valid for this libc call (checked at each use).
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
    // By number: for the calls made once per message (read, send, sendmsg). glibc's named
    // wrappers of those are cancellation points and switch asynchronous cancellation on
    // and off around the call, ~60 of the ~1,270 user-space instructions of an echoed
    // 64 B message on epoll (callgrind). No engine thread is ever cancelled, so the bare
    // call is the same call. On x86-64 Linux it is the `syscall` instruction inline
    // ([`direct`]): no call into libc's variadic `syscall`, no errno stored and read back
    // (~20 instructions a call, two calls per echo). Every argument is widened to
    // `c_long`, the width the kernel's entry reads.
    (raw $nr:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe, clippy::cast_lossless)]
        // SAFETY: the caller passes arguments valid for this system call (checked at each
        // use); the call only forwards them.
        let res = unsafe { $crate::syscall::direct::call(libc::$nr, [$($arg as libc::c_long),*]) };
        $crate::syscall::direct::result(res)
    }};
}
pub(crate) use syscall;

/// System calls by number, without libc in between.
#[allow(unsafe_code)]
pub(crate) mod direct {
    use libc::c_long;

    /// Makes system call `nr` with up to six arguments.
    ///
    /// # Safety
    /// The arguments must be valid for system call `nr` as the kernel documents it
    /// (pointers to memory live and large enough for the call's duration).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[inline(always)]
    pub(crate) unsafe fn call<const N: usize>(nr: c_long, args: [c_long; N]) -> c_long {
        let a = |i: usize| if i < N { args[i] } else { 0 };
        let ret: c_long;
        // One asm statement, its argument registers listed once per form.
        macro_rules! syscall_insn {
            ($($reg:tt = $i:literal),*) => {
                std::arch::asm!(
                    "syscall",
                    inlateout("rax") nr => ret,
                    $(in($reg) a($i),)*
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack, preserves_flags),
                )
            };
        }
        // SAFETY: the x86-64 Linux system call convention: number in rax, arguments in
        // rdi, rsi, rdx, r10, r8, r9, result in rax; the kernel clobbers rcx and r11 and
        // nothing else, and touches no user stack. Memory the arguments point to is the
        // caller's contract above (the asm is not `nomem`, so the compiler assumes the
        // kernel may read and write any of it). A call of three arguments or fewer leaves
        // r10, r8 and r9 alone: the kernel does not read them for it.
        unsafe {
            if N <= 3 {
                syscall_insn!("rdi" = 0, "rsi" = 1, "rdx" = 2);
            } else {
                syscall_insn!(
                    "rdi" = 0,
                    "rsi" = 1,
                    "rdx" = 2,
                    "r10" = 3,
                    "r8" = 4,
                    "r9" = 5
                );
            }
        }
        ret
    }

    /// Makes system call `nr` through libc's `syscall`, where no inline form is written.
    ///
    /// # Safety
    /// As for the x86-64 form: arguments valid for system call `nr`.
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    #[inline(always)]
    pub(crate) unsafe fn call<const N: usize>(nr: c_long, args: [c_long; N]) -> c_long {
        let a = |i: usize| if i < N { args[i] } else { 0 };
        // SAFETY: the caller's contract; `syscall` only forwards the arguments.
        let res = unsafe { libc::syscall(nr, a(0), a(1), a(2), a(3), a(4), a(5)) };
        if res == -1 {
            -(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO) as c_long)
        } else {
            res
        }
    }

    /// The kernel's answer as a result: -4095..=-1 is `-errno`.
    #[inline(always)]
    pub(crate) fn result(res: c_long) -> std::io::Result<c_long> {
        if (-4095..0).contains(&res) {
            Err(std::io::Error::from_raw_os_error(-res as i32))
        } else {
            Ok(res)
        }
    }
}
