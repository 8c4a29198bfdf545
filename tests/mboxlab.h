/*
 * mboxlab.h - supernodes running the mailbox engine and users running the
 * mail client, on the simulated network (simnet.h), for the mailbox and
 * chat tests.
 *
 * Each datagram is a message prefixed by its sender's key, which stands in
 * for the session layer (the tests of the session layer are elsewhere): a
 * supernode hands a datagram from a user attached to it to
 * pl_mbox_client_message with that user's certificate, and anything else to
 * pl_mbox_peer_message; a user hands what comes from its supernode to its
 * mail client and what comes from another user to the test (chat).
 *
 * Supernodes can be taken off the network with their state kept ("down"),
 * crashed (state lost) and restarted blank; membership changes are told to
 * every running supernode at once, as if gossip had spread them.
 */
#ifndef PL_TEST_MBOXLAB_H
#define PL_TEST_MBOXLAB_H

#include "mailbox.h"
#include "mailclient.h"
#include "pki.h"
#include "simnet.h"

#define MLAB_MAX_SN 8
#define MLAB_MAX_USERS 16

typedef struct mlab mlab;

typedef struct mlab_sn {
    pl_test_user u;
    pl_addr addr;
    pl_mbox *mb;     /* NULL while crashed */
    bool on_net;     /* reachable */
    uint64_t timer;
    mlab *lab;
} mlab_sn;

typedef struct mlab_user {
    pl_test_user u;
    pl_addr addr;
    int home;        /* supernode index while online, -1 offline */
    pl_mboxc *mc;
    uint64_t timer;
    mlab *lab;
    void *app;       /* for the test */
} mlab_user;

struct mlab {
    pl_simnet *net;
    pl_test_ca ca;
    mlab_sn sn[MLAB_MAX_SN];
    size_t n_sn;
    mlab_user users[MLAB_MAX_USERS];
    size_t n_users;
    uint8_t replicas;
    pl_mbox_config tmpl; /* limits for every supernode */
    /* hooks */
    void *ctx;
    void (*on_mail)(void *ctx, mlab_user *u, const pl_mboxc_event *ev);
    void (*on_direct)(void *ctx, mlab_user *to, const uint8_t from_pk[32], const uint8_t *msg, size_t len,
                      pl_time now);
    /* The test's own per-user core (chat): its timer, folded into the user's. */
    pl_time (*app_next)(void *ctx, mlab_user *u);
    void (*app_tick)(void *ctx, mlab_user *u, pl_time now);
    /* Sees every datagram (sender key first); false drops it. */
    void *tamper_ctx;
    bool (*tamper)(void *ctx, const pl_addr *from, const pl_addr *to, uint8_t *data, size_t *len);
    /* Counts datagrams that contain this (the plaintext of a test message). */
    const uint8_t *needle;
    size_t needle_len;
    uint64_t needle_hits, datagrams;
};

/* n_sn supernodes (full membership) and n_users users, offline. */
void mlab_init(mlab *l, uint64_t seed, pl_time start, size_t n_sn, size_t n_users, uint8_t replicas,
               const pl_mbox_config *limits);
void mlab_free(mlab *l);
pl_time mlab_now(mlab *l);
void mlab_run(mlab *l, pl_time until);

/* A user attaches to supernode `home` (its mail client opens the mailbox),
 * or leaves. */
void mlab_online(mlab *l, size_t user, int home);
void mlab_offline(mlab *l, size_t user);
/* The user's process restarts: its mail client starts blank (offline). */
void mlab_user_restart(mlab *l, size_t user);
/* Off the network with state kept, and back. */
void mlab_sn_down(mlab *l, size_t i);
void mlab_sn_up(mlab *l, size_t i);
/* State lost; back blank. */
void mlab_sn_crash(mlab *l, size_t i);
void mlab_sn_restart(mlab *l, size_t i);
/* Every running supernode learns that i left the membership, or joined. */
void mlab_forget(mlab *l, size_t i);
void mlab_introduce(mlab *l, size_t i);
/* After a test drove an engine directly: re-arm its timer. */
void mlab_sn_poke(mlab *l, size_t i);
void mlab_user_poke(mlab *l, size_t user);

/* A user sends a message straight to another (chat over their session). */
void mlab_send_direct(mlab *l, size_t from, size_t to, const uint8_t *msg, size_t len);
/* Index of the supernode with this key, or -1. */
int mlab_sn_index(mlab *l, const uint8_t pk[32]);
/* Which supernodes are replicas of a name (indices), in ring order. */
size_t mlab_replicas(mlab *l, const char *name, int out[8]);

#endif
