/*
 * conference.h - conference calls built from ordinary calls
 * (docs/messages.md, section 5), sans-I/O.
 *
 * A conference is a star of ordinary 1:1 calls (phone.h): every other
 * participant has a call with the host, with its own session and its own
 * end-to-end encryption. The host decodes each leg, mixes (mixer.h) and
 * sends each leg everyone but that participant; the host's own microphone
 * is one more participant. Nothing new travels between a participant and
 * anyone but the host.
 *
 * The conference core sits beside the phone and drives it: it dials the
 * participants, answers those who call in during a hand-over, hangs up,
 * and runs the legs' audio through the mixer. Control travels inside each
 * leg's session as overlay messages 0x90-0x9f (the stack hands them to its
 * driver, which hands them here):
 *   ROSTER (host -> participant): the participants, their reports, the
 *       host and its successor, in pages; a version number orders them;
 *       sent again until the participant's REPORT acknowledges it. With
 *       the HANDOVER flag it tells everyone that the successor hosts now.
 *   REPORT (participant -> host): its bandwidth, NAT class, RTT, whether it
 *       can host, and the roster version it holds.
 *   ADD, ADD_RESULT: a participant asks the host to call someone.
 *
 * The host is chosen with pl_mix_elect (mixer.h). The conference's starter
 * hosts at first; once everyone invited has answered (or failed) and
 * reported, hosting moves once to the elected host if that one is clearly
 * better connected (feasible bandwidth where the starter has not, or a more
 * open NAT class), unless the starter keeps it (stay_host). After that the
 * host is never replaced while it stays. Its successor is elected again at
 * every roster change. When the host leaves, or a participant's leg to it
 * ends for any reason, every participant calls the successor and the
 * successor answers the participants it knows and mixes; a successor that
 * is called before it has lost the host itself lets the call ring until it
 * has (or refuses it after PL_CONF_EARLY_WAIT).
 *
 * The driver feeds the core: every phone event (pl_conf_phone_event, which
 * says when the conference takes an incoming call so the driver neither
 * rings nor auto-answers it), every conference message (pl_conf_message),
 * the 20 ms audio tick (pl_conf_audio: the local microphone frame in, the
 * frame to play out), and its timers (pl_conf_tick). Calls the conference
 * owns (pl_conf_owns) get no audio from the driver. The core never calls
 * into the phone from inside pl_conf_phone_event: dialing, answering and
 * hanging up wait for the next pl_conf_tick (pl_conf_next_timeout says
 * "now").
 */
#ifndef PL_CONFERENCE_H
#define PL_CONFERENCE_H

#include "link.h"
#include "mixer.h"
#include "parley.h"
#include "phone.h"

typedef struct pl_conf pl_conf;

#define PL_CONF_MAX PL_MIX_MAX_PARTICIPANTS /* participants, the host included */
#define PL_CONF_ID_SIZE 16

/* ---- messages (overlay types 0x90-0x9f) ---------------------------------------------------- */

enum {
    PL_CONF_MSG_ROSTER = 0x90,     /* host -> participant: a page of the roster */
    PL_CONF_MSG_REPORT = 0x91,     /* participant -> host: its report; acknowledges a roster */
    PL_CONF_MSG_ADD = 0x92,        /* participant -> host: please call NAME */
    PL_CONF_MSG_ADD_RESULT = 0x93, /* host -> participant: what came of it */
};
#define PL_CONF_VERSION 1
/* Entries per ROSTER page: 12 of the largest (78 bytes) and the header
 * (28 bytes) stay under 1,000 bytes, well inside a session payload. */
#define PL_CONF_PAGE 12
#define PL_CONF_ROSTER_HEADER 28
#define PL_CONF_ENTRY_MAX 78
#define PL_CONF_MSG_MAX (PL_CONF_ROSTER_HEADER + PL_CONF_PAGE * PL_CONF_ENTRY_MAX)

/* ROSTER flags. */
#define PL_CONF_F_HANDOVER 0x01u /* the successor hosts from now on: call it */
#define PL_CONF_F_MOVE 0x02u     /* (with HANDOVER) the old host stays, as a participant */
/* Entry and REPORT flags. */
#define PL_CONF_R_CAN_HOST 0x01u

/* A participant's state in the roster. */
enum {
    PL_CONF_CONNECTED = 0, /* its leg is answered */
    PL_CONF_JOINING = 1,   /* being called, ringing, or calling in */
    PL_CONF_AWAITED = 2,   /* after a hand-over: expected to call the new host */
};

/* ADD_RESULT status. */
enum {
    PL_CONF_ADD_DIALING = 0, /* the host is calling the user */
    PL_CONF_ADD_ALREADY = 1, /* the user is in the conference already */
    PL_CONF_ADD_FULL = 2,
    PL_CONF_ADD_BAD_NAME = 3,
    PL_CONF_ADD_NOT_HOST = 4, /* (the host changed) */
};

/* What a participant says about itself; the election's input. */
typedef struct pl_conf_report {
    uint32_t up_kbps, down_kbps; /* 0: unknown */
    uint16_t rtt_ms;             /* mean round trip on its legs; 0: not measured */
    uint8_t nat;                 /* PL_MIX_NAT_* */
    bool can_host;
} pl_conf_report;

typedef struct pl_conf_entry {
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    uint8_t state; /* PL_CONF_CONNECTED ... */
    pl_conf_report report;
} pl_conf_entry;

/* One message of any type: which fields travel depends on the type. */
typedef struct pl_conf_msg {
    uint8_t type;
    uint8_t conf_id[PL_CONF_ID_SIZE];
    /* ROSTER */
    uint32_t version;
    uint8_t flags;
    uint8_t host, successor; /* indices into the whole roster; successor 0xff: none */
    uint8_t total, first, count;
    pl_conf_entry entries[PL_CONF_PAGE];
    /* REPORT: version is the roster version held */
    pl_conf_report report;
    /* ADD, ADD_RESULT */
    uint32_t req;
    char name[PL_NAME_MAX + 1];
    uint8_t status;
} pl_conf_msg;

/* Encodes; returns the size, or 0 when cap is too small or a field is out
 * of range (names must be canonical user names). */
size_t pl_conf_msg_encode(uint8_t *buf, size_t cap, const pl_conf_msg *m);
/* Decodes a whole message, type byte included; false on an unknown type or
 * version, unknown flags, out-of-range fields, names that are not
 * canonical, trailing bytes. */
bool pl_conf_msg_decode(pl_conf_msg *m, const uint8_t *buf, size_t len);

/* ---- the core --------------------------------------------------------------------------- */

/* Timers. */
#define PL_CONF_ROSTER_EVERY PL_SEC               /* the roster again to a leg that has not acknowledged it */
#define PL_CONF_REPORT_EVERY (5 * PL_SEC)         /* a participant's report, unasked */
#define PL_CONF_ADD_EVERY PL_SEC                  /* an unanswered ADD again ... */
#define PL_CONF_ADD_TRIES 5                       /* ... this many times in all */
#define PL_CONF_AWAIT (20 * PL_SEC)               /* a new host waits this long for each participant */
#define PL_CONF_EARLY_WAIT (10 * PL_SEC)          /* a successor lets an early caller ring this long */
#define PL_CONF_HANDOVER_LINGER (300 * PL_MSEC)   /* an old host keeps its legs after HANDOVER */
#define PL_CONF_SETTLE (10 * PL_SEC)              /* the move to the elected host is decided by then */
#define PL_CONF_LEG_KBPS 64                       /* one leg, each way, overheads included (election) */

typedef enum pl_conf_role {
    PL_CONF_NONE = 0,
    PL_CONF_HOST,
    PL_CONF_PARTICIPANT,
} pl_conf_role;

typedef enum pl_conf_end {
    PL_CONF_END_NONE = 0,
    PL_CONF_END_LEFT,      /* we left (as host: after handing over) */
    PL_CONF_END_ALONE,     /* everyone else left, or nobody answered */
    PL_CONF_END_HOST_LOST, /* the host went and no successor took us */
    PL_CONF_END_DECLINED,  /* the invitation's call ended before it was answered */
} pl_conf_end;

typedef enum pl_conf_event_type {
    PL_CONF_EV_STARTED = 1, /* we are in a conference now (role); call: a call whose audio the driver
                               hands over to the conference (an adopted call, the invitation) or 0 */
    PL_CONF_EV_ROSTER,      /* the roster changed */
    PL_CONF_EV_HOST,        /* the host changed (we may host now) */
    PL_CONF_EV_JOINED,      /* name: connected */
    PL_CONF_EV_LEFT,        /* name: gone (reason: the leg's end reason, pl_phone_end_name) */
    PL_CONF_EV_ADD_RESULT,  /* status: what the host said to our ADD (PL_CONF_ADD_*, or 0xff: no answer) */
    PL_CONF_EV_ENDED,       /* the conference is over for us (end) */
} pl_conf_event_type;

typedef struct pl_conf_event {
    pl_conf_event_type type;
    pl_conf_role role;
    uint32_t call;
    const char *name;
    uint8_t reason;
    uint8_t status;
    pl_conf_end end;
    pl_time now;
} pl_conf_event;

typedef struct pl_conf_io {
    void *ctx;
    void (*event)(void *ctx, const pl_conf_event *ev);
} pl_conf_io;

typedef struct pl_conf_config {
    const pl_identity *identity; /* our key (copied: the public half only is kept) */
    const char *name;            /* our certified name */
    const pl_rng *rng;           /* conference ids */
    const pl_mem *mem;           /* NULL: the C heap */
    uint32_t max_participants;   /* 0: PL_CONF_MAX */
    uint32_t leg_kbps;           /* 0: PL_CONF_LEG_KBPS */
    bool stay_host;              /* the starter never hands hosting on at start */
    pl_mix_config mix;           /* mem is filled in */
} pl_conf_config;

typedef struct pl_conf_member_info {
    uint8_t key[32];
    char name[PL_NAME_MAX + 1];
    uint8_t state;
    pl_conf_report report;
    bool is_self, is_host, is_successor;
    uint32_t call;        /* the host: the leg to this participant; 0 for itself */
    bool media;           /* the host: the leg's media flows */
    bool in_mix;
    pl_mix_stats mix;     /* the host: mixer figures for this participant */
} pl_conf_member_info;

typedef struct pl_conf_stats {
    uint64_t rosters_sent, pages_sent, rosters_received, reports_sent, reports_received;
    uint64_t adds_sent, adds_received, malformed, ignored;
    uint64_t handovers, moves, ticks_mixed;
} pl_conf_stats;

typedef struct pl_conf_info {
    pl_conf_role role;
    uint8_t conf_id[PL_CONF_ID_SIZE];
    uint32_t version;
    size_t n;
    pl_conf_member_info members[PL_CONF_MAX];
    int host, successor;   /* indices into members; -1: none */
    uint32_t leg;          /* a participant: the call to the host */
    uint32_t next_leg;     /* a participant during a hand-over: the call to the new host */
    bool handing_over;
    pl_time started;
    pl_conf_end last_end;  /* how the last conference ended */
    pl_conf_stats stats;
} pl_conf_info;

typedef enum pl_conf_err {
    PL_CONF_OK = 0,
    PL_CONF_ERR_CONFIG,
    PL_CONF_ERR_NOMEM,
    PL_CONF_ERR_BAD_NAME,
    PL_CONF_ERR_BUSY,     /* in a conference already (start), or in more than one call */
    PL_CONF_ERR_NONE,     /* not in a conference */
    PL_CONF_ERR_FULL,
    PL_CONF_ERR_ALREADY,  /* that user takes part already */
    PL_CONF_ERR_SELF,
    PL_CONF_ERR_STATE,    /* not now (a hand-over runs) */
} pl_conf_err;

pl_conf_err pl_conf_new(pl_conf **out, const pl_conf_config *cfg, const pl_conf_io *io, pl_phone *phone,
                        pl_link *link);
void pl_conf_free(pl_conf *c);

/* What we report about ourselves (the driver's knowledge: bandwidth, NAT,
 * whether it can mix); the RTT is the core's. */
void pl_conf_set_report(pl_conf *c, const pl_conf_report *r);

/* Starts a conference that we host, calling each of the n names. An
 * answered call we are in already becomes its first leg. */
pl_conf_err pl_conf_start(pl_conf *c, const char *const *names, size_t n, pl_time now);
/* Adds a user: the host calls it; a participant asks the host. In a plain
 * answered call and no conference, the call becomes a conference that we
 * host. */
pl_conf_err pl_conf_add(pl_conf *c, const char *name, pl_time now);
/* Leaves: a participant hangs up; the host hands over to its successor
 * (or ends the conference when nobody is left to take it). */
pl_conf_err pl_conf_leave(pl_conf *c, pl_time now);

/* Every phone event; true when the conference takes the call (an incoming
 * call it answers or keeps ringing itself: the driver leaves it alone). */
bool pl_conf_phone_event(pl_conf *c, const pl_phone_event *ev);
/* A conference message from the authenticated peer pk; false when it is
 * not one (the type). */
bool pl_conf_message(pl_conf *c, const uint8_t pk[32], const uint8_t *msg, size_t len, pl_time now);
/* The 20 ms audio tick: in is the local frame (NULL: silence), out gets
 * the frame to play. False (out silent) when there is no conference audio. */
bool pl_conf_audio(pl_conf *c, const int16_t *in, int16_t *out, pl_time now);
/* True when the call is the conference's (a leg): the driver gives it no
 * audio of its own. */
bool pl_conf_owns(const pl_conf *c, uint32_t call);
void pl_conf_tick(pl_conf *c, pl_time now);
pl_time pl_conf_next_timeout(const pl_conf *c);

pl_conf_role pl_conf_role_of(const pl_conf *c);
void pl_conf_get_info(const pl_conf *c, pl_conf_info *info);

const char *pl_conf_role_name(pl_conf_role role);
const char *pl_conf_end_name(pl_conf_end end);
const char *pl_conf_state_name(uint8_t state);
const char *pl_conf_add_status_name(uint8_t status);
const char *pl_conf_strerror(pl_conf_err err);

#endif
