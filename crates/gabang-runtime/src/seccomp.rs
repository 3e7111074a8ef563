//! The default seccomp profile: an allow-list shaped like docker's default profile for a
//! container with docker's default capability set (see [`crate::spec::DEFAULT_CAPS`]).
//!
//! Every syscall not listed fails with `EPERM`; `clone3` fails with `ENOSYS` so that libcs
//! fall back to `clone`, whose flags are then checked (no new namespaces: the container
//! lacks CAP_SYS_ADMIN). `personality` accepts only the harmless personas, `socket` every
//! family but `AF_VSOCK`. The list is written here from the syscalls' semantics; names the
//! installed libseccomp does not know are skipped by libcontainer with a warning.
//!
//! [`docker_default`] returns the profile as OCI `linux.seccomp` JSON.

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

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

/// Runs an exec'd process (libcontainer tenant) under the container's seccomp profile:
/// libcontainer builds a tenant's spec without the init's `linux.seccomp`, so the filter is
/// installed here, just before `execve` (no_new_privs is already set, caps already dropped).
#[derive(Clone)]
pub(crate) struct TenantExecutor {
    pub profile: Option<LinuxSeccomp>,
}

impl TenantExecutor {
    /// The profile of the container's init spec (none if unconfined).
    pub fn for_spec(spec: &oci_spec::runtime::Spec) -> Self {
        let profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        TenantExecutor { profile }
    }
}

impl Executor for TenantExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        if let Some(p) = &self.profile {
            libcontainer::seccomp::initialize_seccomp(p)
                .map_err(|e| ExecutorError::Other(format!("installing seccomp profile: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
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
}
