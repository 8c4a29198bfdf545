/*
 * daemon.h - what the parts of parleyd share: the daemon's state, logging,
 * and the functions each file offers the others.
 *
 *   main.c     options, credentials, sockets (UDP, TCP streams), the stack
 *   control.c  the control socket and its command table
 *   people.c   the directory as the user sees it: look-ups, contacts,
 *              presence (contacts.db)
 *   messages.c chat (messages.db), following new messages; a supernode's
 *              mailbox as its operator sees it
 *   voicemail.c leaving, keeping, playing and deleting voicemail
 *   reach.c    port mapping at the home router, the outgoing proxy
 */
#ifndef PL_DAEMON_H
#define PL_DAEMON_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "audio.h"
#include "contacts.h"
#include "home.h"
#include "keymap.h"
#include "natdisc.h"
#include "stun.h"
#include "loop.h"
#include "parley.h"
#include "stack.h"

#define PROG "parleyd"
#define MAX_BOOTSTRAP 32
#define MAX_CONTROL_CLIENTS 16
#define CONTROL_LINE_MAX 4096
#define HOSTS_SAVE_INTERVAL (10 * PL_SEC)

/* Calls (phone.c). */
typedef struct pd_phone_options {
    bool auto_answer;
    bool privacy;            /* --private: location privacy, calls relayed */
    bool block_changed_keys;
    const char *answer_from; /* audio for answered calls: WAV, tone:HZ, silence, device[:NAME] */
    const char *answer_to;   /* WAV, null, device[:NAME] */
    const char *media_trace; /* every voice payload sent, in hex (tests) */
    const char *ring_timeout;
    pl_voice_band voice_band; /* --voice-band wide|superwide|full */
} pd_phone_options;

/* Port mapping and the outgoing proxy (reach.c). */
typedef struct pd_reach_options {
    bool no_portmap;   /* --no-portmap: do not ask the home router */
    const char *proxy; /* --proxy URL (a copy; the command line is blanked) */
    bool proxy_only;   /* --proxy-only: no UDP, everything through the proxy */
} pd_reach_options;

typedef struct options {
    const char *home;
    const char *role;
    const char *listen;
    const char *control;
    const char *passphrase_file;
    const char *bootstrap_file;
    const char *alt_listen; /* a supernode's second address, for STUN's RFC 5780 tests */
    const char *supernode;  /* never | auto | always */
    uint32_t bandwidth_kbps;      /* what the operator says the line carries (0: unknown) */
    uint32_t min_uptime_s, min_kbps, min_memory_mb; /* a supernode's bar for candidates */
    uint32_t max_bandwidth_kbps;  /* a supernode's bandwidth cap */
    uint32_t mailbox_quota;       /* a supernode's mailbox: bytes per recipient (0: the default, 4 MiB) */
    const char *bootstrap[MAX_BOOTSTRAP];
    int n_bootstrap;
    uint32_t max_clients;
    uint16_t keepalive_s;
    bool no_udp, no_tcp, quiet;
    pd_phone_options phone;
    pd_reach_options reach;
} options;

/* A TCP stream the daemon holds, named by its peer's address marked TCP. */
typedef struct tcp_conn {
    pl_stream *stream;
    pl_addr addr;
    bool outgoing;
    bool used;
} tcp_conn;

typedef struct control_client {
    int fd;
    char buf[CONTROL_LINE_MAX];
    size_t len;
} control_client;

typedef struct parleyd {
    options opt;
    char home[PL_HOME_PATH_MAX];
    pl_loop *loop;
    pl_udp *udp;
    pl_listener *tcp;
    pl_addr local;
    pl_identity id;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    size_t cert_len;
    uint8_t ca_pk[32];
    pl_crl crl;
    uint8_t *crl_bytes;
    bool have_crl;
    pl_stack *stack;
    pl_role role;
    pl_timer timer;
    pl_ovl_peer bootstrap[MAX_BOOTSTRAP];
    size_t n_bootstrap;
    tcp_conn *conns;
    size_t n_conns;
    pl_keymap conn_by_addr;
    int control_fd;
    char control_path[PL_HOME_PATH_MAX + 32];
    control_client clients[MAX_CONTROL_CLIENTS];
    uint64_t control_requests; /* lines served on the control socket */
    int signal_pipe[2];
    bool hosts_dirty;
    pl_time hosts_saved_at;
    pl_time started_at;
    bool quiet;
    /* STUN: a supernode answers on its address, and with --alt-listen on
     * the four (address, port) pairs RFC 5780 needs; a node discovers its
     * NAT through its supernodes. */
    pl_stun_server stun;
    pl_udp *stun_socks[3]; /* (P, a), (A, p), (A, a) */
    pl_natdisc natdisc;
    bool natdisc_running, natdisc_done;
    pl_natdisc_result nat;
    pl_timer natdisc_timer;
    /* people.c */
    pl_contacts *contacts;
    struct pd_presence *presence; /* what we last heard of each contact */
    size_t n_presence, cap_presence;
    struct pd_pending *pending;   /* control requests waiting on the network */
    size_t n_pending, cap_pending;
    /* phone.c */
    pl_phone_config phone_cfg;
    struct pd_call *calls;
    size_t n_calls;
    pl_timer audio_timer;
    pl_time audio_next;
    bool audio_running;
    FILE *media_trace;
    /* `calls` requests with "follow": the connection gets the call's record
     * again each time it changes (call: 0, free). */
    struct {
        int fd;
        uint32_t call;
    } call_followers[MAX_CONTROL_CLIENTS];
    /* messages.c, voicemail.c (a node) */
    struct pd_messages *msg;
    /* reach.c */
    struct pd_reach *reach;
    /* conference.c */
    struct pd_conf *conf;
} parleyd;


/* ---- main.c ---- */
void pd_log(parleyd *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pd_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Re-arms the stack's timer after anything that may have changed it. */
void pd_rearm(parleyd *d);
/* The certified name of a peer we hold a session with, or "?". */
const char *pd_peer_name(parleyd *d, const uint8_t pk[32]);

/* ---- control.c ---- */
int pd_control_open(parleyd *d);
void pd_control_close(parleyd *d);
/* Sends one reply line to a control client (the reply is consumed). */
void pd_control_reply(parleyd *d, int fd, cJSON *reply);
cJSON *pd_error_reply(const char *kind, const char *message);
cJSON *pd_ok_reply(void);

/* ---- people.c ---- */
int pd_people_open(parleyd *d);
void pd_people_close(parleyd *d);
void pd_on_directory(parleyd *d, const pl_dirc_event *ev);
void pd_on_mail(parleyd *d, const pl_mboxc_event *ev);
/* Commands; a NULL return means the reply will come later (a look-up). */
cJSON *pd_cmd_lookup(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_contacts(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_presence(parleyd *d, int fd, const cJSON *req);
/* A control client went away: forget its pending requests. */
void pd_people_client_gone(parleyd *d, int fd);
/* What status shows about our own presence. */
void pd_people_status(parleyd *d, cJSON *status);

/* ---- phone.c ---- */
/* A daemon option of the phone's at argv[*i]: 1 taken (and *i moved past
 * its value), 0 not the phone's, -1 bad (the message is printed). */
int pd_phone_option(pd_phone_options *o, int argc, char **argv, int *i);
/* Before the stack is made: the phone's configuration (a node only). */
void pd_phone_configure(parleyd *d, pl_stack_config *cfg);
int pd_phone_open(parleyd *d);
/* While a node's audio clock runs: t moved to the clock's first tick at or
 * after it, so that protocol timers run in the wake-up the clock makes
 * anyway. At most a frame late; otherwise t itself. */
pl_time pd_phone_align_timer(const parleyd *d, pl_time t);
/* Hangs up every call and closes their audio. */
void pd_phone_close(parleyd *d);
/* A control client went away: it follows no call any more. */
void pd_phone_client_gone(parleyd *d, int fd);
void pd_on_phone(parleyd *d, const pl_phone_event *ev);
cJSON *pd_cmd_call(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_answer(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_call_action(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_calls(parleyd *d, int fd, const cJSON *req);
void pd_phone_status(parleyd *d, cJSON *status);
/* ---- messages.c, voicemail.c ---- */
/* A node: opens messages.db and the chat engine, restores what an earlier
 * run left (state, undelivered messages, voicemail kept or being deleted). */
int pd_messages_open(parleyd *d);
void pd_messages_close(parleyd *d);
/* From the stack: mail client events, link events, chat from another user. */
void pd_messages_on_mail(parleyd *d, const pl_mboxc_event *ev);
void pd_messages_on_link(parleyd *d, const pl_link_event *ev);
void pd_messages_user_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                              pl_time now);
/* A look-up answered; false when it was not ours. */
bool pd_messages_on_lookup(parleyd *d, const pl_dirc_event *ev);
void pd_messages_client_gone(parleyd *d, int fd);
void pd_messages_status(parleyd *d, cJSON *status);
/* A supernode: what its share of the mailbox holds (status serving{}). */
void pd_mailbox_status(parleyd *d, cJSON *serving);
cJSON *pd_cmd_chat(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_voicemail(parleyd *d, int fd, const cJSON *req);
cJSON *pd_cmd_mailbox(parleyd *d, int fd, const cJSON *req);
/* Leaves a voicemail for `name`, recorded from `src` (taken over and closed
 * when done): a WAV file, or what is left of a call's audio. Recording ends
 * with the source, at three minutes, or at pd_voicemail_stop; then it is
 * sealed for the callee's key and stored on the callee's replicas. With
 * refuse_long a source longer than three minutes is refused instead of cut.
 * reply_fd: a control client to answer when stored, or -1. Returns the job
 * (0: refused, the source is closed). */
uint32_t pd_voicemail_leave(parleyd *d, const char *name, pl_audio_source *src, bool refuse_long,
                            int reply_fd);
void pd_voicemail_stop(parleyd *d, uint32_t job);
/* The same for a call that was not answered (phone.c): the call's source is
 * taken over and read at the pace of speech (a device keeps its own), cut at
 * three minutes; pd_voicemail_stop ends it early. How it went is told to
 * pd_phone_voicemail_done (possibly before this returns). */
uint32_t pd_voicemail_leave_call(parleyd *d, const char *name, pl_audio_source *src, uint32_t call);
/* phone.c: the voicemail left from `call` was stored ({id, to, duration_s,
 * bytes, replicas, of}), recorded and waiting for the node to be online
 * ({id, to, duration_s, queued}), or not left ({error, message}). The reply
 * is consumed. */
void pd_phone_voicemail_done(parleyd *d, uint32_t call, cJSON *reply);

/* ---- reach.c ---- */
/* A daemon option of reach.c's at argv[*i], as pd_phone_option. */
int pd_reach_option(pd_reach_options *o, int argc, char **argv, int *i);
/* Before the stack is made: the proxy (--proxy-only means no UDP). */
int pd_reach_configure(parleyd *d, pl_stack_config *cfg);
/* Once the stack runs: starts the port mapping (a node). */
int pd_reach_open(parleyd *d);
/* After the stack stopped: removes the mapping (waiting a few seconds at
 * most for the router), frees everything. */
void pd_reach_close(parleyd *d);
/* Opens a TCP stream to a supernode or relay: through the proxy if one is
 * configured, else directly (from `from`, or NULL). */
pl_stream *pd_reach_connect(parleyd *d, const pl_addr *to, const pl_addr *from, pl_loop_err *err);
/* An outgoing stream ended with an error before or while in use: logs why
 * (the proxy's own answer when it was the proxy). Inside the close callback. */
void pd_reach_stream_failed(parleyd *d, pl_stream *s, const pl_addr *to, int err);
/* status: portmap {...} and proxy {...}. */
void pd_reach_status(parleyd *d, cJSON *status);
/* calls: a path's "proxy" and "proxy_url" when it goes through the proxy. */
void pd_reach_path(parleyd *d, cJSON *path, const pl_path_info *p);
struct pl_audio_source;
struct pl_audio_sink;
struct pl_dsp;
/* For conference.c: a call's audio, detached from the call (false: it has
 * none); audio from specifications as `call` takes them. */
bool pd_phone_take_audio(parleyd *d, uint32_t id, struct pl_audio_source **src, struct pl_audio_sink **sink,
                         struct pl_dsp **dsp);
bool pd_phone_open_audio(const char *from, const char *to, struct pl_audio_source **src, struct pl_audio_sink **sink,
                         struct pl_dsp **dsp, char *msg, size_t cap);

/* ---- conference.c ---- */
int pd_conf_open(parleyd *d);
void pd_conf_close(parleyd *d);
/* Every phone event; true when the conference takes the call (no ringing,
 * no auto-answer). */
bool pd_conf_on_phone(parleyd *d, const pl_phone_event *ev);
/* The stack's user_message hook (conference control messages). */
void pd_conf_message(void *ctx, const uint8_t pk[32], const pl_cert *cert, const uint8_t *msg, size_t len,
                     pl_time now);
/* The call is a conference leg: the phone's clock gives it no audio. */
bool pd_conf_owns(parleyd *d, uint32_t call);
/* One 20 ms frame of the conference's audio; false when not in one. */
bool pd_conf_audio(parleyd *d, pl_time now);
/* Adds "conference" to a `calls` reply when there is (or just was) one. */
void pd_conf_json(parleyd *d, cJSON *reply);
cJSON *pd_cmd_conference(parleyd *d, int fd, const cJSON *req);

#endif
