/*
 * fuzz_packet.c - hostile datagrams into an established session.
 *
 * Once per process, alice (the initiator) and bob (the responder) complete a
 * real handshake carried in memory, and each then seals one data packet that
 * is kept back, not delivered: alice's "ping" and bob's "pong". The arena
 * snapshot (sec_fixture.h) of that moment is restored before every input, so
 * every run starts from the same state.
 *
 * The input is one datagram. It goes to bob as if from alice and to alice as
 * if from bob, then both tick at the same time, 11 s later (keepalives),
 * 200 s later (keys too old) and 10 min later (keys wiped). Checks besides
 * crashes: no ESTABLISHED event (both ends already were), and a DATA event
 * only for the one held-back packet each side may accept, with its payload.
 * Forging anything else takes keys the fuzzer does not have.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write the seed corpus and exit.
 */
#include "sec_fixture.h"

#define T1 (FX_T0 + PL_SEC)

static fx_node *alice, *bob;
static uint8_t ping[PL_SEC_MAX_DATAGRAM], pong[PL_SEC_MAX_DATAGRAM];
static size_t ping_len, pong_len;

static void take_one(fx_node *n, uint8_t *out, size_t *len)
{
    if (n->nsent != 1) abort();
    *len = n->sent_len[0];
    memcpy(out, n->sent[0], *len);
    n->nsent = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fx_init();
    alice = fx_node_new(&(fx_node_config){.id_seed = 1, .name = "alice", .serial = 1, .addr = "192.0.2.1:1000",
                                          .accept_incoming = true, .rng_seed = 11});
    bob = fx_node_new(&(fx_node_config){.id_seed = 2, .name = "bob", .serial = 2, .addr = "192.0.2.2:2000",
                                        .accept_incoming = true, .rng_seed = 12});
    pl_sec_peer *to_bob = NULL;
    uint8_t init[PL_SEC_MAX_DATAGRAM], resp[PL_SEC_MAX_DATAGRAM], conf[PL_SEC_MAX_DATAGRAM];
    size_t init_len, resp_len, conf_len;
    if (pl_sec_connect(alice->sec, bob->id.sign_pk, &bob->addr, FX_T0, &to_bob) != PL_SEC_OK) abort();
    take_one(alice, init, &init_len);
    pl_sec_receive(bob->sec, &alice->addr, init, init_len, FX_T0);
    take_one(bob, resp, &resp_len);
    pl_sec_receive(alice->sec, &bob->addr, resp, resp_len, FX_T0);
    take_one(alice, conf, &conf_len);
    pl_sec_receive(bob->sec, &alice->addr, conf, conf_len, FX_T0);
    if (alice->established != 1 || bob->established != 1 || !pl_sec_peer_established(to_bob)) abort();
    pl_sec_peer *to_alice = bob->last_peer;

    if (pl_sec_send(alice->sec, to_bob, (const uint8_t *)"ping", 4, T1) != PL_SEC_OK) abort();
    take_one(alice, ping, &ping_len);
    if (pl_sec_send(bob->sec, to_alice, (const uint8_t *)"pong", 4, T1) != PL_SEC_OK) abort();
    take_one(bob, pong, &pong_len);
    fx_reset_counters(alice);
    fx_reset_counters(bob);
    fx_snapshot_take();

    if (getenv("PARLEY_FUZZ_WRITE_SEEDS")) {
        fx_write_seed("data_alice_to_bob", ping, ping_len);
        fx_write_seed("data_bob_to_alice", pong, pong_len);
        fx_write_seed("keepalive_alice_to_bob", conf, conf_len);
        fx_write_seed("initiation_replayed", init, init_len);
        fx_write_seed("response_replayed", resp, resp_len);
        exit(0);
    }
    return 0;
}

static void expect_data(const fx_node *n, bool allowed, const char *payload)
{
    if (n->established != 0) abort(); /* both ends were established already */
    if (!allowed) {
        if (n->data != 0) abort(); /* a forged or replayed packet was accepted */
        return;
    }
    if (n->data != 1 || n->data_len != strlen(payload) || memcmp(n->data_buf, payload, n->data_len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fx_snapshot_restore();
    fx_reset_counters(alice);
    fx_reset_counters(bob);
    pl_sec_receive(bob->sec, &alice->addr, data, size, T1);
    pl_sec_receive(alice->sec, &bob->addr, data, size, T1);
    static const pl_time later[] = {0, 11 * PL_SEC, 200 * PL_SEC, 600 * PL_SEC};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        pl_sec_tick(alice->sec, T1 + later[i]);
        pl_sec_tick(bob->sec, T1 + later[i]);
    }
    bool is_ping = size == ping_len && memcmp(data, ping, size) == 0;
    bool is_pong = size == pong_len && memcmp(data, pong, size) == 0;
    expect_data(bob, is_ping, "ping");
    expect_data(alice, is_pong, "pong");
    return 0;
}
