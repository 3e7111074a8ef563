//! The default seccomp profile: an allow-list shaped like docker's default profile for a
//! container with docker's default capability set (see [`crate::spec::DEFAULT_CAPS`]).
//!
//! Every syscall not listed fails with `EPERM`; `clone3` fails with `ENOSYS` so that libcs
//! fall back to `clone`, whose flags are then checked (no new namespaces: the container
//! lacks CAP_SYS_ADMIN). `personality` accepts only the harmless personas, `socket` every
//! family but `AF_VSOCK`. The list is written here from the syscalls' semantics; names the
//! installed libseccomp does not know (newer syscalls) stay refused.
//!
//! [`docker_default`] returns the profile as OCI `linux.seccomp` JSON; [`SeccompExecutor`]
//! loads it, precompiled and cached ([`default_program`]), into the container's process
//! (init and exec'd) just before `execve`.

use std::path::Path;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{sys, Result, RuntimeError};

/// Syscalls allowed without conditions, on every architecture (names that do not exist on
/// an architecture are ignored for it by libseccomp).
pub const ALLOWED_SYSCALLS: &[&str] = &[
    // files and directories
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    // polling, events, pipes
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "_newselect",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // async I/O
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    // memory
    "brk",
    "madvise",
    "membarrier",
    "memfd_create",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // processes, threads, signals
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "kill",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    // debugging one's own processes (docker allows these on kernels ≥ 4.8)
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    // sandboxing oneself further
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    // time (adjtimex only reads without CAP_SYS_TIME)
    "adjtimex",
    "alarm",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "gettimeofday",
    "nanosleep",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    // sockets (`socket` itself is conditional, see below)
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (the container has its own ipc namespace)
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // system information
    "sysinfo",
    "uname",
    // CAP_SYS_CHROOT is in the default capability set
    "chroot",
];

/// x86 only: thread-local storage and segment setup.
const ALLOWED_X86: &[&str] = &["arch_prctl", "modify_ldt"];

/// arm/aarch64 only.
const ALLOWED_ARM: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];

/// Syscalls the default profile refuses (EPERM) and that tests probe: kernel modules and
/// kexec, keyrings, mounts and new mount API, namespaces, clocks, swap, reboot, BPF and
/// perf, handle-based opens, NUMA policy (CAP_SYS_NICE), raw I/O ports.
pub const DENIED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setdomainname",
    "sethostname",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "syslog",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// The `CLONE_NEW*` flags (ns, cgroup, uts, ipc, user, pid, net): `clone` may use none.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Personas `personality(2)` may switch to: linux, linux32, uname26 (and linux32 with it),
/// and the query value.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

const AF_VSOCK: u64 = 40;

fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    }
}

/// docker's default profile (allow-list, EPERM for the rest) as OCI `linux.seccomp` JSON.
pub fn docker_default() -> Value {
    let arch_specific = if cfg!(target_arch = "aarch64") {
        ALLOWED_ARM
    } else {
        ALLOWED_X86
    };
    let mut rules = vec![
        json!({"names": ALLOWED_SYSCALLS, "action": "SCMP_ACT_ALLOW"}),
        json!({"names": arch_specific, "action": "SCMP_ACT_ALLOW"}),
        // libcontainer reads SCMP_CMP_MASKED_EQ as `(arg & valueTwo) == value` (runc's order
        // is the reverse): no namespace flag may be set.
        json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "valueTwo": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}
        ]}),
        // libcs try clone3 first and fall back to clone on ENOSYS; its flags live in memory
        // that seccomp cannot inspect, so it is refused as if the kernel lacked it.
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}
        ]}),
    ];
    for p in PERSONALITIES {
        rules.push(
            json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": p, "op": "SCMP_CMP_EQ"}
            ]}),
        );
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": architectures(),
        "syscalls": rules,
    })
}

/// Is the default profile on for this container (`--security-opt seccomp=unconfined` turns
/// it off)?
pub(crate) fn confined(opts: &crate::model::RunOptions) -> bool {
    opts.labels
        .get(crate::spec::SECCOMP_LABEL)
        .map(String::as_str)
        != Some("unconfined")
}

/// The default profile as a classic BPF program, compiled by libseccomp once per state root
/// and libseccomp version (compiling the allow-list for three ABIs costs ~10 ms, loading the
/// program microseconds): `<root>/seccomp/<sha256>.bpf`, replaced atomically.
pub(crate) fn default_program(root: &Path) -> Result<Vec<libc::sock_filter>> {
    let profile = docker_default();
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&profile).unwrap_or_default());
    if let Ok(v) = ScmpVersion::current() {
        h.update(format!("libseccomp {}.{}.{}", v.major, v.minor, v.micro));
    }
    let dir = root.join("seccomp");
    let path = dir.join(format!("{}.bpf", hex::encode(h.finalize())));
    if let Ok(bytes) = std::fs::read(&path) {
        if let Some(prog) = parse_program(&bytes) {
            return Ok(prog);
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| sys(format!("mkdir {}", dir.display()), e))?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let ctx = compile(&profile)?;
    let written = std::fs::File::create(&tmp)
        .map_err(|e| sys(format!("create {}", tmp.display()), e))
        .and_then(|f| {
            ctx.export_bpf(&f)
                .map_err(|e| RuntimeError::Shim(format!("seccomp: exporting the program: {e}")))
        })
        .and_then(|()| std::fs::read(&tmp).map_err(|e| sys(format!("read {}", tmp.display()), e)));
    let bytes = match written {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let prog = parse_program(&bytes).ok_or_else(|| {
        RuntimeError::Shim(format!(
            "seccomp: libseccomp exported {} bytes",
            bytes.len()
        ))
    })?;
    if std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(prog)
}

/// Decode a program of `struct sock_filter` (8 bytes each, native endian).
fn parse_program(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    // BPF_MAXINSNS: the kernel refuses longer programs.
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > 4096 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

fn seccomp_err(what: &str) -> impl Fn(libseccomp::error::SeccompError) -> RuntimeError + '_ {
    move |e| RuntimeError::Shim(format!("seccomp: {what}: {e}"))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    match a {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        _ => ScmpAction::Errno(errno),
    }
}

/// Build a libseccomp filter from an OCI profile (the subset [`docker_default`] uses; for
/// SCMP_CMP_MASKED_EQ, libcontainer's reading: `(arg & valueTwo) == value`).
fn compile(profile: &Value) -> Result<ScmpFilterContext> {
    let p: LinuxSeccomp = serde_json::from_value(profile.clone())
        .map_err(|e| RuntimeError::Shim(format!("seccomp profile: {e}")))?;
    let default = action(p.default_action(), p.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(seccomp_err("new filter"))?;
    ctx.set_ctl_nnp(false).map_err(seccomp_err("nnp"))?;
    for arch in p.architectures().iter().flatten() {
        let a = match arch {
            Arch::ScmpArchX86_64 => ScmpArch::X8664,
            Arch::ScmpArchX86 => ScmpArch::X86,
            Arch::ScmpArchX32 => ScmpArch::X32,
            Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
            Arch::ScmpArchArm => ScmpArch::Arm,
            _ => continue,
        };
        ctx.add_arch(a).map_err(seccomp_err("add arch"))?;
    }
    for rule in p.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let op = match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
                    LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
                    LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
                    LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
                    LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
                    LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        ScmpCompareOp::MaskedEqual(a.value_two().unwrap_or(0))
                    }
                };
                ScmpArgCompare::new(a.index() as u32, op, a.value())
            })
            .collect();
        for name in rule.names() {
            // Names this libseccomp does not know (newer syscalls) stay refused.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, sc).map_err(seccomp_err(name))?;
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
                    .map_err(seccomp_err(name))?;
            }
        }
    }
    Ok(ctx)
}

/// Load a BPF program as this thread's seccomp filter (no_new_privs must be set).
fn load(prog: &[libc::sock_filter]) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp(2) reads `fprog` and the program it points to, both alive here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the container's process (init or exec'd) under the default profile: the precompiled
/// program from [`default_program`] is loaded just before `execve`, after libcontainer has
/// set no_new_privs and dropped capabilities. (libcontainer would compile `linux.seccomp` at
/// every start, and leaves it out for exec'd processes altogether.)
#[derive(Clone)]
pub(crate) struct SeccompExecutor {
    program: Option<Vec<libc::sock_filter>>,
}

impl SeccompExecutor {
    pub fn new(root: &Path, confined: bool) -> Result<Self> {
        let program = if confined {
            Some(default_program(root)?)
        } else {
            None
        };
        Ok(SeccompExecutor { program })
    }
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> std::result::Result<(), ExecutorError> {
        if let Some(p) = &self.program {
            load(p).map_err(|e| ExecutorError::Other(format!("loading seccomp filter: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> std::result::Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_allowed_do_not_overlap_and_have_no_duplicates() {
        let mut seen = std::collections::HashSet::new();
        for n in ALLOWED_SYSCALLS
            .iter()
            .chain(ALLOWED_X86)
            .chain(ALLOWED_ARM)
        {
            assert!(seen.insert(*n), "{n} listed twice");
            assert!(!DENIED_SYSCALLS.contains(n), "{n} both allowed and denied");
        }
        for n in ["clone", "clone3", "socket", "personality"] {
            assert!(!seen.contains(n), "{n} is conditional");
        }
    }

    #[test]
    fn profile_parses_as_oci_seccomp() {
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(docker_default()).unwrap();
        assert_eq!(
            s.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        assert_eq!(s.default_errno_ret(), Some(libc::EPERM as u32));
        let rules = s.syscalls().as_ref().unwrap();
        let clone3 = rules
            .iter()
            .find(|r| r.names().iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn program_is_compiled_once_and_cached() {
        let root = tempfile::tempdir().unwrap();
        let first = default_program(root.path()).unwrap();
        assert!(first.len() > 100, "{} instructions", first.len());
        let files: Vec<_> = std::fs::read_dir(root.path().join("seccomp"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().len(),
            first.len() as u64 * 8
        );
        let eq = |a: &[libc::sock_filter], b: &[libc::sock_filter]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
        };
        assert!(eq(&default_program(root.path()).unwrap(), &first));
        // A damaged cache entry is compiled again, not loaded.
        std::fs::write(&files[0], b"garbage").unwrap();
        assert!(eq(&default_program(root.path()).unwrap(), &first));
        assert!(parse_program(b"garbage").is_none());
        assert!(parse_program(&[]).is_none());
    }
}
