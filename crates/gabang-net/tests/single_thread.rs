//! The shim calls attach/detach and forks afterwards, so they must never start a thread.
//! This test binary (no libtest harness: one thread) forbids thread creation with a seccomp
//! filter (`clone` with CLONE_THREAD → EPERM, `clone3` → ENOSYS so libc falls back to
//! `clone`), then attaches and detaches for real and checks the process is still
//! single-threaded and in its own netns.

mod common;

use std::io::BufRead;

fn threads() -> usize {
    let f = std::fs::File::open("/proc/self/status").expect("status");
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .map(|n| n.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
fn forbid_threads() {
    use libc::{sock_filter, sock_fprog};
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld, jeq, jset, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
    let filter = [
        stmt(ld, 4), // arch
        jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 0), // nr
        jump(jeq, libc::SYS_clone3 as u32, 0, 1),
        stmt(ret, errno(libc::ENOSYS)),
        jump(jeq, libc::SYS_clone as u32, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ld, 16), // args[0], low half: the clone flags
        jump(jset, libc::CLONE_THREAD as u32, 0, 1),
        stmt(ret, errno(libc::EPERM)),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut sock_filter,
    };
    // SAFETY: plain prctl calls with a valid, live filter program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn main() {
    #[cfg(not(target_arch = "x86_64"))]
    {
        eprintln!("single_thread: seccomp filter written for x86_64 only; skipped");
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(threads(), 1, "the test starts single-threaded");
        forbid_threads();
        // The filter works: a thread cannot be made any more.
        assert!(std::thread::Builder::new().spawn(|| ()).is_err());

        let fx = common::Fixture::new();
        let before = common::current_netns_id();
        let id = fx.id();
        let ports = [gabang_net::Port {
            host_port: 18081,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        let att = fx.net.attach(&id, &ports).expect("attach without threads");
        assert!(att.netns_path.exists());
        assert_eq!(common::current_netns_id(), before);
        fx.net.detach(&id, &ports).expect("detach without threads");
        assert!(!att.netns_path.exists());
        assert_eq!(threads(), 1);
        drop(fx);
        println!("single_thread: attach and detach ran without starting a thread: ok");
    }
}
