/*
 * bond-plugin: starts the bundle's Python plugin through the bundle's own loader and glibc.
 *
 * The PyInstaller executable (bond-plugin.bin) and its libpython were linked on the build host
 * and need that host's glibc (libpython3.11 needs hypot@GLIBC_2.35, newer than the 2.28 of
 * RHEL/RHCOS 8). So build.sh puts the build host's loader and glibc libraries into _glibc/, and
 * this launcher, static so that it needs nothing from the node itself, runs
 *
 *   <bundle>/_glibc/ld-linux-x86-64.so.2 --library-path <bundle>/_glibc:<bundle>/_internal
 *       <bundle>/bond-plugin.bin ARGS...
 *
 * The library path applies to this process only: the IPAM plugins it execs keep the node's libc.
 * That holds only if the PyInstaller bootloader does not restart itself, which in one-dir mode on
 * Linux it does by default, to put _internal into LD_LIBRARY_PATH: the restart would lose
 * --library-path (loading the node's libc) and leak LD_LIBRARY_PATH into every IPAM plugin. So the
 * launcher tells the bootloader it already is the restarted main process, through the two
 * variables its restart sets (_PYI_ARCHIVE_FILE, _PYI_PARENT_PROCESS_LEVEL=-1, "needs restart"
 * done; PyInstaller 6.10+, pinned <7 in pyproject.toml). tests/bundle/ run the bundle where a
 * restart cannot work (no /proc, no libc), so a change of that protocol fails the build's tests.
 * On failure it prints the CNI error the runtime expects and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOADER "_glibc/ld-linux-x86-64.so.2"
#define PROGRAM "bond-plugin.bin"

static void fail(const char *msg, const char *detail)
{
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 100, \"msg\": \"bond: %s\", \"details\": \"%s\"}\n",
           msg, strchr(detail, '"') ? "(path with a quote)" : detail);
    fflush(stdout);
    fprintf(stderr, "bond-cni ERROR %s: %s\n", msg, detail);
    exit(1);
}

int main(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0)
        self[n] = '\0';
    else if (!realpath(argv[0], self)) /* no /proc, e.g. in a bare chroot */
        fail("cannot find my own path", argv[0]);
    char *slash = strrchr(self, '/');
    if (!slash)
        fail("cannot find my own directory", self);
    *slash = '\0';
    if (strchr(self, ':')) /* the loader's --library-path separator */
        fail("the bundle's directory must not contain ':'", self);

    char loader[PATH_MAX], program[PATH_MAX], libs[2 * PATH_MAX];
    if (snprintf(loader, sizeof loader, "%s/%s", self, LOADER) >= (int)sizeof loader ||
        snprintf(program, sizeof program, "%s/%s", self, PROGRAM) >= (int)sizeof program ||
        snprintf(libs, sizeof libs, "%s/_glibc:%s/_internal", self, self) >= (int)sizeof libs)
        fail("path too long", self);

    if (setenv("_PYI_ARCHIVE_FILE", program, 1) || setenv("_PYI_PARENT_PROCESS_LEVEL", "-1", 1))
        fail("cannot set the bootloader's environment", strerror(errno));

    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
        fail("out of memory", "launching the plugin");
    args[0] = loader;
    args[1] = "--library-path";
    args[2] = libs;
    args[3] = program;
    for (int i = 1; i < argc; i++)
        args[3 + i] = argv[i];
    execv(loader, args);
    fail("cannot run the bundle's loader", strerror(errno));
}
