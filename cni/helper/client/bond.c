/*
 * bond: the bond CNI plugin as the runtime sees it, a thin client of the per-node helper.
 *
 * A Python plugin pays for its interpreter and its imports on every exec; the helper
 * (`bond-plugin serve`, see cni/helper/server.py) pays once and forks a warm child per request. This
 * client forwards one invocation to it over a unix socket and prints the answer:
 *
 *   request  "BCNI" u32 version, u32 n, n x (u32 len, "KEY=VALUE"), u32 len, stdin
 *   response "BCNI" u32 version, i32 exit code, u32 len, stdout, u32 len, stderr
 *
 * (integers big-endian). Without a helper, the plugin still works: when the socket is absent or
 * refused, or the helper is not root (nor us), the client execs `bond-plugin` beside itself with
 * stdin untouched. The helper sends the response's header (its first 8 bytes) before the plugin
 * starts, the rest when it is done (cni/helper/wire.py). A helper that sent no header never
 * started the request (it was busy, stopping, or died first): the client runs it in process from
 * a copy of stdin. One that sent the header but no whole answer started it and died part way (a
 * request that times out is answered, rolled back): running it again could meet or undo its half
 * (an ADD would find its own bond), so the client prints CNI error 11 instead, and the runtime's
 * DEL cleans up before it retries. A request over the helper's size limit (MAX_REQUEST) is never
 * sent: it runs in process.
 *
 * Any argument (`bond serve ...`, `bond probe ...`) goes straight to bond-plugin.
 * Environment: BOND_CNI_HELPER_SOCKET (default /run/bond-cni/helper.sock), BOND_CNI_HELPER=off.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/bond-cni/helper.sock"
#define PLUGIN_NAME "bond-plugin"
#define PROTOCOL 1u
#define MAX_ANSWER (64u << 20)
#define MAX_REQUEST (1u << 20) /* the helper's cap (cni/helper/wire.py); larger runs in process */

extern char **environ;

static char plugin[PATH_MAX];

struct buf {
    char *data;
    size_t len, cap;
};

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* Print the CNI error JSON the runtime expects, never a bare crash, and exit 1. */
static void fail(int code, const char *msg, const char *detail)
{
    printf("{\"cniVersion\": \"1.0.0\", \"code\": %d, \"msg\": \"bond: %s\", \"details\": ",
           code, msg);
    json_string(detail);
    printf("}\n");
    fflush(stdout);
    fprintf(stderr, "bond-cni ERROR %s: %s\n", msg, detail);
    exit(1);
}

/* Out of memory or similar. */
static void die(const char *msg, const char *detail)
{
    fail(100, msg, detail);
}

static void put(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            die("out of memory", "growing a buffer");
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char be[4] = {v >> 24, v >> 16, v >> 8, v};
    put(b, be, 4);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads fd to EOF; 0 on success, -1 with errno on a read error or past `limit` bytes. */
static int read_all(int fd, struct buf *b, size_t limit)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (b->len + (size_t)n > limit) {
            errno = EFBIG;
            return -1;
        }
        put(b, chunk, (size_t)n);
    }
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* bond-plugin lives beside the real path of this executable (bin/bond is a symlink to it). */
static void find_plugin(const char *argv0)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
    } else if (!realpath(argv0, self)) { /* no /proc, e.g. in a bare chroot */
        die("cannot find my own path", argv0);
    }
    char *slash = strrchr(self, '/');
    size_t dir = slash ? (size_t)(slash - self) + 1 : 0;
    if (dir + sizeof PLUGIN_NAME > sizeof plugin)
        die("path too long", self);
    memcpy(plugin, self, dir);
    memcpy(plugin + dir, PLUGIN_NAME, sizeof PLUGIN_NAME);
}

/* Runs the plugin in process. `input` replaces stdin when the original was already consumed. */
static void run_in_process(char **argv, const struct buf *input)
{
    if (input) {
        int fd = memfd_create("bond-cni-stdin", MFD_CLOEXEC);
        if (fd < 0 || write_all(fd, input->data, input->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
            dup2(fd, 0) < 0)
            die("cannot hand stdin to the in-process plugin", strerror(errno));
    }
    argv[0] = plugin;
    execv(plugin, argv);
    die("cannot run the in-process plugin", plugin);
}

/* Did the helper start the request? It sends the response's header first (see above). */
static int started(const struct buf *b)
{
    const unsigned char *p = (const unsigned char *)b->data;
    return b->len >= 8 && !memcmp(p, "BCNI", 4) && get_u32(p + 4) == PROTOCOL;
}

/* The helper's answer, checked whole before anything is printed. */
static int answer(const struct buf *b, int *code, struct buf *out, struct buf *err)
{
    const unsigned char *p = (const unsigned char *)b->data;
    size_t left = b->len;
    if (left < 16 || memcmp(p, "BCNI", 4) || get_u32(p + 4) != PROTOCOL)
        return -1;
    *code = (int32_t)get_u32(p + 8);
    uint32_t n = get_u32(p + 12);
    p += 16, left -= 16;
    if (n > left || left - n < 4)
        return -1;
    out->data = (char *)p, out->len = n;
    p += n, left -= n;
    n = get_u32(p);
    p += 4, left -= 4;
    if (n != left)
        return -1;
    err->data = (char *)p, err->len = n;
    return 0;
}

int main(int argc, char **argv)
{
    char *plain[] = {NULL, NULL};
    find_plugin(argv[0]);
    if (argc > 1)
        run_in_process(argv, NULL);
    const char *mode = getenv("BOND_CNI_HELPER");
    if (mode && strcmp(mode, "off") == 0)
        run_in_process(plain, NULL);

    const char *path = getenv("BOND_CNI_HELPER_SOCKET");
    if (!path || !*path)
        path = DEFAULT_SOCKET;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "bond-cni WARNING helper socket path too long, running in process: %s\n",
                path);
        run_in_process(plain, NULL);
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno != ENOENT && errno != ECONNREFUSED)
            fprintf(stderr, "bond-cni WARNING cannot reach the helper at %s (%s), running in "
                            "process\n", path, strerror(errno));
        run_in_process(plain, NULL);
    }
    /* Only a helper running as root (or as ourselves) may answer for the plugin. */
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        fprintf(stderr, "bond-cni WARNING the helper at %s runs as uid %d, neither root nor us: "
                        "not trusted, running in process\n", path, (int)cred.uid);
        close(fd);
        run_in_process(plain, NULL);
    }

    struct buf input = {0}, request = {0}, reply = {0}, out, err;
    if (read_all(0, &input, MAX_ANSWER) < 0)
        die("cannot read stdin", strerror(errno));
    put(&request, "BCNI", 4);
    put_u32(&request, PROTOCOL);
    uint32_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    put_u32(&request, count);
    for (char **e = environ; *e; e++) {
        put_u32(&request, (uint32_t)strlen(*e));
        put(&request, *e, strlen(*e));
    }
    put_u32(&request, (uint32_t)input.len);
    if (input.len)
        put(&request, input.data, input.len);

    if (request.len > MAX_REQUEST) {
        fprintf(stderr, "bond-cni WARNING request of %zu bytes is over the helper's limit of %u, "
                        "running in process\n", request.len, MAX_REQUEST);
        close(fd);
        run_in_process(plain, &input);
    }

    int code;
    errno = 0;
    if (write_all(fd, request.data, request.len) < 0 || shutdown(fd, SHUT_WR) < 0 ||
        read_all(fd, &reply, MAX_ANSWER) < 0 || answer(&reply, &code, &out, &err) < 0) {
        const char *why = errno ? strerror(errno) : "short or malformed reply";
        close(fd);
        if (started(&reply)) {
            char detail[PATH_MAX + 512];
            snprintf(detail, sizeof detail,
                     "the helper at %s started it, then gave no whole answer (%s): its child "
                     "died part way, and it is not run again here, since it may have changed "
                     "the pod's network; the runtime's DEL cleans up, then retry", path, why);
            fail(11, "the helper took this request but gave no whole answer", detail);
        }
        fprintf(stderr, "bond-cni WARNING the helper at %s gave no answer (%s), running in "
                        "process\n", path, why);
        run_in_process(plain, &input);
    }
    close(fd);
    if (write_all(2, err.data, err.len) < 0 || write_all(1, out.data, out.len) < 0)
        return 1;
    return code;
}
