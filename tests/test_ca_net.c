/*
 * test_ca_net.c - a real parley-ca process, spoken to over real UDP by hand
 * where the CLI would never misbehave: a key that fails the challenge, bad
 * and reserved names, an unpadded request; and the real CLI against a CA
 * whose UDP is silently black-holed, which must fall back to TCP.
 *
 * The binaries come from $PARLEY_BUILD (tests/run.sh sets it), else from
 * the directory above this program.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ca_proto.h"
#include "sockaddr.h"
#include "test.h"

static char build_dir[PATH_MAX / 2];
static char tmp_dir[64];

typedef struct ca_proc {
    pid_t pid;
    pl_addr addr;
    uint8_t pk[32];
} ca_proc;

/* Runs argv with stdout captured into out (may be NULL); returns the exit status. */
static int run_capture(char *const argv[], char *out, size_t cap)
{
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        close(p[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t n;
    char sink[512];
    while ((n = read(p[0], out && got + 1 < cap ? out + got : sink,
                     out && got + 1 < cap ? cap - 1 - got : sizeof sink)) > 0)
        if (out && got + 1 < cap) got += (size_t)n;
    if (out) out[got] = 0;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every CA started, so that a failed CHECK (which jumps out of the test)
 * still leaves no process behind. */
static pid_t live[8];

static void kill_all(void)
{
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void bin(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", build_dir, name); }

/* Starts `parley-ca serve` on a fresh directory and reads its port. */
static void ca_start(ca_proc *ca, const char *sub, bool no_udp)
{
    char exe[PATH_MAX], dir[PATH_MAX], out[256];
    bin(exe, sizeof exe, "parley-ca");
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    char *init[] = {exe, "init", "--dir", dir, NULL};
    CHECK_EQ(run_capture(init, out, sizeof out), 0);
    out[strcspn(out, "\n")] = 0;
    CHECK(pl_hex_decode(out, ca->pk, 32));
    int p[2];
    CHECK(pipe(p) == 0);
    ca->pid = fork();
    if (ca->pid == 0) {
        dup2(p[1], 1);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        close(p[0]);
        char *args[] = {exe, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--rate", "100", "--burst", "100",
                        no_udp ? "--no-udp" : NULL, NULL};
        execv(exe, args);
        _exit(127);
    }
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        if (live[i] == 0) {
            live[i] = ca->pid;
            break;
        }
    close(p[1]);
    /* The first line is "listening ADDR ..." */
    size_t got = 0;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    while (got < sizeof out - 1 && !memchr(out, '\n', got) && poll(&pf, 1, 5000) == 1) {
        ssize_t n = read(p[0], out + got, sizeof out - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    out[got] = 0;
    close(p[0]);
    char addr[64];
    CHECK(sscanf(out, "listening %63s", addr) == 1);
    CHECK(pl_addr_parse(&ca->addr, addr, 0));
}

static void ca_stop(ca_proc *ca)
{
    (void)ca;
    kill_all();
}

static int udp_to(const pl_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    CHECK(pl_sockaddr_from_addr(a, &ss, &sl));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&ss, sl) == 0);
    return fd;
}

/* One request, one answer over real UDP; returns the answer's length. */
static size_t udp_exchange(int fd, const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
    CHECK(send(fd, req, len, 0) == (ssize_t)len);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 3000) == 1);
    ssize_t n = recv(fd, resp, cap, 0);
    CHECK(n > 0);
    return (size_t)n;
}

static pl_ca_msg challenge_msg(const char *name, const pl_identity *id, uint64_t rid)
{
    pl_ca_msg m;
    memset(&m, 0, sizeof m);
    m.type = PL_CA_MSG_CHALLENGE_REQ;
    m.id = rid;
    m.op = PL_CA_OP_REGISTER;
    m.name_len = (uint8_t)strlen(name);
    memcpy(m.name, name, m.name_len);
    memcpy(m.sign_pk, id->sign_pk, 32);
    return m;
}

static void a_key_that_fails_the_challenge_is_refused_over_udp(void)
{
    ca_proc ca = {0};
    ca_start(&ca, "ca1", false);
    int fd = udp_to(&ca.addr);
    pl_identity victim, attacker;
    pl_identity_generate(&victim, pl_rng_system());
    pl_identity_generate(&attacker, pl_rng_system());
    uint8_t req[PL_CA_PAD_SIZE], resp[PL_CA_MAX_MESSAGE], msg[PL_CA_OP_MESSAGE_MAX];
    size_t len, n;
    pl_ca_msg m = challenge_msg("oscar", &victim, 11), r;
    CHECK_EQ(pl_ca_msg_encode(&m, PL_CA_PAD_SIZE, req, sizeof req, &len), PL_CA_PROTO_OK);
    n = udp_exchange(fd, req, len, resp, sizeof resp);
    CHECK_EQ(pl_ca_msg_decode(&r, resp, n), PL_CA_PROTO_OK);
    CHECK_EQ(r.type, PL_CA_MSG_CHALLENGE);
    CHECK_EQ(r.id, 11);
    /* Sign the real challenge, with the wrong key. */
    m.type = PL_CA_MSG_OP_REQ;
    m.id = 12;
    memcpy(m.token, r.token, PL_CA_TOKEN_SIZE);
    size_t ml = pl_ca_op_message(msg, ca.pk, PL_CA_OP_REGISTER, "oscar", victim.sign_pk, m.token);
    crypto_sign_detached(m.sig, NULL, msg, ml, attacker.sign_sk);
    CHECK_EQ(pl_ca_msg_encode(&m, PL_CA_PAD_SIZE, req, sizeof req, &len), PL_CA_PROTO_OK);
    n = udp_exchange(fd, req, len, resp, sizeof resp);
    CHECK_EQ(pl_ca_msg_decode(&r, resp, n), PL_CA_PROTO_OK);
    CHECK_EQ(r.type, PL_CA_MSG_ERROR);
    CHECK_EQ(r.code, PL_CA_CODE_BAD_SIGNATURE);
    /* Nothing was registered: the name is still free for its real owner,
     * who proves possession with the same token. */
    crypto_sign_detached(m.sig, NULL, msg, ml, victim.sign_sk);
    m.id = 13;
    CHECK_EQ(pl_ca_msg_encode(&m, PL_CA_PAD_SIZE, req, sizeof req, &len), PL_CA_PROTO_OK);
    n = udp_exchange(fd, req, len, resp, sizeof resp);
    CHECK_EQ(pl_ca_msg_decode(&r, resp, n), PL_CA_PROTO_OK);
    CHECK_EQ(r.type, PL_CA_MSG_CERT);
    pl_cert cert;
    CHECK_EQ(pl_cert_decode(&cert, r.cert, r.cert_len), PL_CERT_OK);
    CHECK_EQ(pl_cert_verify(&cert, ca.pk, cert.not_before, NULL), PL_CERT_OK);
    CHECK(n <= len);
    close(fd);
    ca_stop(&ca);
}

static void bad_names_and_small_requests_over_udp(void)
{
    ca_proc ca = {0};
    ca_start(&ca, "ca2", false);
    int fd = udp_to(&ca.addr);
    pl_identity id;
    pl_identity_generate(&id, pl_rng_system());
    uint8_t req[PL_CA_PAD_SIZE], resp[PL_CA_MAX_MESSAGE];
    size_t len, n;
    const struct {
        const char *name;
        uint8_t code;
    } cases[] = {{"no spaces", PL_CA_CODE_BAD_NAME}, {"x", PL_CA_CODE_BAD_NAME}, {"Root", PL_CA_CODE_RESERVED},
                 {".dot", PL_CA_CODE_BAD_NAME}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pl_ca_msg m = challenge_msg(cases[i].name, &id, 20 + i), r;
        CHECK_EQ(pl_ca_msg_encode(&m, PL_CA_PAD_SIZE, req, sizeof req, &len), PL_CA_PROTO_OK);
        n = udp_exchange(fd, req, len, resp, sizeof resp);
        CHECK_EQ(pl_ca_msg_decode(&r, resp, n), PL_CA_PROTO_OK);
        CHECK_EQ(r.type, PL_CA_MSG_ERROR);
        CHECK_EQ(r.code, cases[i].code);
    }
    /* Unpadded: the 56-byte token does not fit a 55-byte request. */
    pl_ca_msg m = challenge_msg("peggy", &id, 30), r;
    CHECK_EQ(pl_ca_msg_encode(&m, 0, req, sizeof req, &len), PL_CA_PROTO_OK);
    n = udp_exchange(fd, req, len, resp, sizeof resp);
    CHECK(n <= len);
    CHECK_EQ(pl_ca_msg_decode(&r, resp, n), PL_CA_PROTO_OK);
    CHECK_EQ(r.code, PL_CA_CODE_TOO_SMALL);
    close(fd);
    ca_stop(&ca);
}

static void udp_black_holed_the_cli_falls_back_to_tcp(void)
{
    ca_proc ca = {0};
    ca_start(&ca, "ca3", true);
    /* A socket on the CA's UDP port that swallows everything: to the client
     * this is a firewall that drops UDP without a word. */
    struct sockaddr_storage ss;
    socklen_t sl;
    CHECK(pl_sockaddr_from_addr(&ca.addr, &ss, &sl));
    int sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(sink >= 0);
    CHECK(bind(sink, (struct sockaddr *)&ss, sl) == 0);

    char exe[PATH_MAX], home[PATH_MAX], addr[64], key[65], out[1024];
    bin(exe, sizeof exe, "parley");
    snprintf(home, sizeof home, "%s/quinn", tmp_dir);
    pl_addr_format(&ca.addr, addr, sizeof addr);
    pl_hex_encode(ca.pk, 32, key);
    char *keygen[] = {exe, "--home", home, "keygen", NULL};
    CHECK_EQ(run_capture(keygen, NULL, 0), 0);
    char *reg[] = {exe, "--home", home, "--json", "register", "quinn", "--ca", addr, "--ca-key", key, NULL};
    CHECK_EQ(run_capture(reg, out, sizeof out), 0);
    CHECK(strstr(out, "\"transport\":\"tcp\"") != NULL);
    CHECK(strstr(out, "\"name\":\"quinn\"") != NULL);
    /* The client did try UDP first, with retransmissions. */
    int seen = 0;
    uint8_t buf[2048];
    while (recv(sink, buf, sizeof buf, MSG_DONTWAIT) > 0) seen++;
    CHECK(seen >= 2);
    close(sink);
    ca_stop(&ca);
}

int main(int argc, char **argv)
{
    const char *b = getenv("PARLEY_BUILD");
    if (b && *b) {
        snprintf(build_dir, sizeof build_dir, "%s", b);
    } else {
        /* build/<variant>/tests/test_ca_net -> build/<variant> */
        snprintf(build_dir, sizeof build_dir, "%s", argv[0]);
        char *slash = strrchr(build_dir, '/');
        if (slash) *slash = 0;
        slash = strrchr(build_dir, '/');
        if (slash) *slash = 0;
        else snprintf(build_dir, sizeof build_dir, "..");
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/pl-ca-net.XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    RUN(a_key_that_fails_the_challenge_is_refused_over_udp);
    kill_all();
    RUN(bad_names_and_small_requests_over_udp);
    kill_all();
    RUN(udp_black_holed_the_cli_falls_back_to_tcp);
    kill_all();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return pl_test_summary();
}
