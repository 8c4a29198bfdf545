/*
 * messages.h - what messages.c (chat) and voicemail.c share inside the
 * daemon: the history, the chat engine, what is known of peers, control
 * requests waiting on the network, and the clients following new messages.
 * Other files see only the functions in daemon.h.
 */
#ifndef PL_DAEMON_MESSAGES_H
#define PL_DAEMON_MESSAGES_H

#include "audio.h"
#include "chat.h"
#include "daemon.h"
#include "dirclient.h"
#include "msgstore.h"
#include "voicemail.h"

#define PD_MAX_REQS 64
#define PD_MAX_VM_JOBS 8
#define PD_MAX_PLAYERS 4
/* A look-up result is trusted this long for the peer's address. */
#define PD_ADDR_FRESH (300 * PL_SEC)
/* A peer we got mail from is looked up (for its address) at most this often. */
#define PD_LEARN_EVERY (30 * PL_SEC)
/* A control client waits this long for a delete to be confirmed. */
#define PD_DELETE_WAIT (5 * PL_SEC)
/* Frames encoded per turn of the event loop while recording from a file. */
#define PD_VM_FRAMES_PER_TURN 50

/* What the daemon knows of a peer: its certificate, and where a session
 * with it can be opened (from its directory record). */
typedef struct pd_peer {
    char name[PL_NAME_MAX + 1];
    bool have_cert;
    pl_cert cert;
    uint8_t cert_bytes[PL_CERT_MAX_SIZE];
    uint16_t cert_len;
    bool cert_saved;     /* the history has this certificate */
    bool have_addr, offline;
    pl_addr addr;
    pl_time heard_at;    /* the last look-up result */
    pl_time learn_at;    /* the last background look-up */
} pd_peer;

typedef enum pd_req_kind {
    PD_REQ_FREE = 0,
    PD_REQ_CHAT_SEND,  /* waiting for the peer's record */
    PD_REQ_LEARN,      /* a look-up for the peer's address only */
    PD_REQ_VM_LEAVE,   /* a voicemail job waiting for the callee's record */
    PD_REQ_VM_DELETE,  /* a control client waiting for the store's answer */
} pd_req_kind;

typedef struct pd_req {
    pd_req_kind kind;
    int fd;
    uint32_t lookup;
    uint32_t job;
    char peer[PL_NAME_MAX + 1];
    char *text;
    size_t len;
    uint8_t id[PL_ENV_ID_SIZE];
    pl_time deadline;
} pd_req;

typedef struct pd_follower {
    int fd; /* -1: free */
    char peer[PL_NAME_MAX + 1]; /* empty: everyone */
    bool mark_read;
} pd_follower;

typedef enum pd_vm_state { VM_FREE = 0, VM_RECORDING, VM_DEPOSITING } pd_vm_state;

typedef struct pd_vm_job {
    pd_vm_state state;
    uint32_t job;
    int fd;
    char to[PL_NAME_MAX + 1];
    pl_audio_source *src;
    pl_vm_rec *rec;
    bool refuse_long, recorded, have_cert, failed;
    uint32_t call;        /* left from this call (phone.c hears how it went); 0: none */
    bool paced;           /* read in real time, as a caller speaks (a call's file or tone) */
    pl_time next_frame;   /* paced: when the next frame is due */
    pl_cert cert;
    uint8_t id[PL_ENV_ID_SIZE];
    uint32_t frames;
    size_t bytes;
    pl_time started;
} pd_vm_job;

typedef struct pd_player {
    bool used;
    pl_audio_sink *sink;
    uint8_t *body;
    pl_vm_player p;
    pl_time next;
} pd_player;

typedef struct pd_messages {
    pl_msgstore *store;
    pl_chat *chat;
    pl_timer timer;
    pd_peer *peers;
    size_t n_peers, cap_peers;
    pd_req reqs[PD_MAX_REQS];
    pd_follower followers[MAX_CONTROL_CLIENTS];
    /* Mailbox messages to acknowledge once the engine hands them up (it
     * holds ones that came out of order). */
    uint8_t ack_later[PL_CHAT_MAX_HELD][PL_ENV_ID_SIZE];
    size_t n_ack_later;
    bool direct_sent; /* the engine's last direct send went out */
    bool not_kept;    /* the history refused the message just handed up */
    pd_vm_job jobs[PD_MAX_VM_JOBS];
    uint32_t next_job;
    pd_player players[PD_MAX_PLAYERS];
} pd_messages;

/* messages.c, for voicemail.c */
pd_peer *pd_peer_of(parleyd *d, const char *name, bool create);
/* Starts a look-up; the request is answered by pd_messages_on_lookup. */
pd_req *pd_req_new(parleyd *d, pd_req_kind kind, int fd, const char *peer);
bool pd_req_lookup(parleyd *d, pd_req *r);
void pd_req_free(pd_req *r);
void pd_follow_push(parleyd *d, const char *peer, cJSON *event);
void pd_messages_arm(parleyd *d);
pl_mboxc *pd_mailclient(parleyd *d);
void pd_id_hex(const uint8_t id[PL_ENV_ID_SIZE], char out[2 * PL_ENV_ID_SIZE + 1]);

/* voicemail.c, for messages.c */
int pd_vm_open(parleyd *d);
void pd_vm_close(parleyd *d);
void pd_vm_on_lookup(parleyd *d, pd_req *r, const pl_dirc_event *ev);
/* A mailbox message of content type voicemail: kept (not acknowledged). */
void pd_vm_received(parleyd *d, const pl_mboxc_event *ev);
/* DEPOSITED or DELETED for a voicemail; false when the id is not one. */
bool pd_vm_mail_event(parleyd *d, const pl_mboxc_event *ev);
void pd_vm_tick(parleyd *d, pl_time now);
pl_time pd_vm_next(parleyd *d);
void pd_vm_req_expired(parleyd *d, pd_req *r);

#endif
