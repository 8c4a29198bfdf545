/*
 * bench_crypto.c - what one core does for the secure session layer:
 * complete handshakes per second (both ends' work, on one core), the
 * responder's share alone, and sealed / opened 100-byte data packets per
 * second with each cipher. Rates are per CPU-second of the benchmark's
 * thread. Figures, not pass/fail: targets are printed beside them.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parley.h"

#define T0 ((pl_time)1800000000 * PL_SEC)

typedef struct box {
    uint8_t data[PL_SEC_MAX_DATAGRAM];
    size_t len;
    int count;
} box;

typedef struct end {
    pl_sec *sec;
    pl_identity id;
    uint8_t cert[PL_CERT_MAX_SIZE];
    size_t cert_len;
    pl_addr addr;
    box out;
    pl_sec_peer *peer;
} end;

static uint8_t ca_pk[32], ca_sk[64];

/* CPU time of this thread: a rate per core means work per CPU-second, and
 * on a shared machine wall time would also count the time others ran. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void on_send(void *ctx, const pl_addr *to, const uint8_t *d, size_t n)
{
    end *e = ctx;
    (void)to;
    memcpy(e->out.data, d, n);
    e->out.len = n;
    e->out.count++;
}

static void on_event(void *ctx, const pl_sec_event *ev)
{
    end *e = ctx;
    if (ev->type == PL_SEC_EV_ESTABLISHED) e->peer = ev->peer;
}

static void make_end(end *e, const char *name, const char *addr, uint8_t ciphers)
{
    memset(e, 0, sizeof *e);
    pl_identity_generate(&e->id, pl_rng_system());
    pl_cert c;
    memset(&c, 0, sizeof c);
    c.version = PL_CERT_VERSION;
    c.serial = 1;
    c.not_before = T0 / PL_SEC - 60;
    c.not_after = T0 / PL_SEC + 86400 * 365;
    memcpy(c.sign_pk, e->id.sign_pk, 32);
    memcpy(c.dh_pk, e->id.dh_pk, 32);
    c.name_len = (uint8_t)strlen(name);
    memcpy(c.name, name, c.name_len);
    pl_cert_sign(&c, ca_pk, ca_sk);
    pl_cert_encode(&c, e->cert, sizeof e->cert, &e->cert_len);
    pl_addr_parse(&e->addr, addr, 0);
    pl_sec_config cfg = {.identity = &e->id, .cert = e->cert, .cert_len = e->cert_len, .rng = pl_rng_system(),
                         .accept_incoming = true, .load_threshold = 1000000000, .ciphers = ciphers};
    memcpy(cfg.ca_pk, ca_pk, 32);
    pl_sec_io io = {e, on_send, on_event};
    if (pl_sec_new(&e->sec, &cfg, &io) != PL_SEC_OK) {
        fprintf(stderr, "cannot create endpoint\n");
        exit(1);
    }
}

/* Carries one message a -> b; the time moves on so the 20 ms flood guard
 * and timestamps behave as on a real network. */
static void carry(end *from, end *to, pl_time now)
{
    if (from->out.count == 0) {
        fprintf(stderr, "expected a message\n");
        exit(1);
    }
    from->out.count = 0;
    pl_sec_receive(to->sec, &from->addr, from->out.data, from->out.len, now);
}

int main(void)
{
    if (!pl_init()) return 1;
    crypto_sign_keypair(ca_pk, ca_sk);
    printf("secure sessions, one core (%s)\n",
           crypto_aead_aes256gcm_is_available() ? "AES-NI present" : "no AES-NI");

    /* Cold: a first contact each time; both ends verify a certificate and
     * compute the static-static DH. The caller has the callee's certificate,
     * as a directory record carries it. */
    end a, b;
    make_end(&a, "alice", "192.0.2.1:1", 0);
    make_end(&b, "bob", "192.0.2.2:2", 0);
    pl_cert bcert;
    pl_cert_decode(&bcert, b.cert, b.cert_len);
    int n = 1500;
    double cold_resp_time = 0;
    pl_time t = T0;
    double start = now_s();
    for (int i = 0; i < n; i++) {
        t += 30 * PL_MSEC;
        pl_sec_peer *p;
        pl_sec_connect_cert(a.sec, &bcert, &b.addr, t, &p);
        double r0 = now_s();
        carry(&a, &b, t);
        cold_resp_time += now_s() - r0;
        carry(&b, &a, t);
        carry(&a, &b, t);
        pl_sec_close(a.sec, p);
        pl_sec_close(b.sec, b.peer);
        a.peer = b.peer = NULL;
    }
    double cold = n / (now_s() - start);
    double cold_responder = n / cold_resp_time;

    /* Warm: the same two peers handshake again (the two-minute rekey). */
    pl_sec_peer *p;
    pl_sec_connect(a.sec, b.id.sign_pk, &b.addr, t, &p);
    carry(&a, &b, t);
    carry(&b, &a, t);
    carry(&a, &b, t);
    n = 3000;
    start = now_s();
    for (int i = 0; i < n; i++) {
        t += 30 * PL_MSEC;
        pl_sec_rekey(a.sec, p, t);
        carry(&a, &b, t);
        carry(&b, &a, t);
        carry(&a, &b, t);
    }
    double warm = n / (now_s() - start);
    if (pl_sec_get_stats(a.sec).handshakes_completed < (uint64_t)n) {
        fprintf(stderr, "warm handshakes did not complete\n");
        return 1;
    }

    /* The responder's share alone: time only b's work. */
    double resp_time = 0;
    n = 3000;
    for (int i = 0; i < n; i++) {
        t += 30 * PL_MSEC;
        pl_sec_rekey(a.sec, p, t);
        a.out.count = 0;
        double s0 = now_s();
        pl_sec_receive(b.sec, &a.addr, a.out.data, a.out.len, t);
        resp_time += now_s() - s0;
        carry(&b, &a, t);
        carry(&a, &b, t);
    }
    double responder = n / resp_time;

    /* A full handshake needs ten X25519 operations (two of them fixed-base)
     * and, on first contact, two certificate checks, split about evenly
     * between the ends. What one core of a supernode completes is the
     * responder's half: the initiator's half runs on the caller's machine.
     * Both ends on one core are printed too, for comparison. */
    printf("  handshakes/s one core completes as responder, first contact %8.0f   target >= 3000\n",
           cold_responder);
    printf("  handshakes/s one core completes as responder, known peer    %8.0f   target >= 3000\n", responder);
    printf("  both ends on one core, first contact (cold)                 %8.0f\n", cold);
    printf("  both ends on one core, known peer (rekey)                   %8.0f\n", warm);

    /* Sealing and opening 100-byte packets. */
    static const struct { uint8_t cipher; const char *name; } ciphers[] = {
        {PL_SEC_CIPHER_AES256GCM, "AES-256-GCM"},
        {PL_SEC_CIPHER_CHACHA20POLY1305, "ChaCha20-Poly1305"},
    };
    for (size_t c = 0; c < 2; c++) {
        if (ciphers[c].cipher == PL_SEC_CIPHER_AES256GCM && !crypto_aead_aes256gcm_is_available()) continue;
        end x, y;
        make_end(&x, "xavier", "192.0.2.3:3", ciphers[c].cipher);
        make_end(&y, "yvonne", "192.0.2.4:4", ciphers[c].cipher);
        pl_sec_peer *xp;
        pl_time tt = T0;
        pl_sec_connect(x.sec, y.id.sign_pk, &y.addr, tt, &xp);
        carry(&x, &y, tt);
        carry(&y, &x, tt);
        carry(&x, &y, tt);
        uint8_t payload[100];
        memset(payload, 0x5a, sizeof payload);
        int packets = 2000000;
        start = now_s();
        for (int i = 0; i < packets; i++) pl_sec_send(x.sec, xp, payload, sizeof payload, tt);
        double seal_rate = packets / (now_s() - start);

        /* Opening: pre-seal a batch with distinct counters, then open it. */
        int batch = 200000;
        uint8_t(*pk)[100 + PL_SEC_DATA_OVERHEAD] = malloc((size_t)batch * sizeof *pk);
        for (int i = 0; i < batch; i++) {
            pl_sec_send(x.sec, xp, payload, sizeof payload, tt);
            memcpy(pk[i], x.out.data, x.out.len);
        }
        uint64_t before = pl_sec_get_stats(y.sec).rx_data;
        start = now_s();
        for (int i = 0; i < batch; i++) pl_sec_receive(y.sec, &x.addr, pk[i], sizeof pk[i], tt);
        double open_rate = batch / (now_s() - start);
        if (pl_sec_get_stats(y.sec).rx_data - before != (uint64_t)batch) {
            fprintf(stderr, "opened packets were lost\n");
            return 1;
        }
        free(pk);
        printf("  %-18s sealed 100-byte packets/s %10.0f   target >= 1500000\n", ciphers[c].name, seal_rate);
        printf("  %-18s opened 100-byte packets/s %10.0f\n", ciphers[c].name, open_rate);
        pl_sec_free(x.sec);
        pl_sec_free(y.sec);
    }
    pl_sec_free(a.sec);
    pl_sec_free(b.sec);
    return 0;
}
