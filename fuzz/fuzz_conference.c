/*
 * fuzz_conference.c - hostile bytes into the conference messages' decoder
 * (conference.h: ROSTER, REPORT, ADD, ADD_RESULT, overlay types 0x90-0x93).
 *
 * Whatever pl_conf_msg_decode accepts must be what the protocol allows and
 * nothing else:
 *  - the fields are in range: a known type, roster sizes (total 1-32, a
 *    page of 1-12 inside the roster), host and successor inside the roster
 *    and distinct, HANDOVER only with a successor, MOVE only with
 *    HANDOVER, known states, NAT classes and flags, ADD_RESULT statuses;
 *  - every name is a canonical user name;
 *  - it encodes back to exactly the input bytes (decoders refuse trailing
 *    bytes and anything non-canonical, so there is one encoding).
 * And whatever the decoder refuses, pl_conf_msg_encode of a message built
 * from the same bytes must not write past its buffer.
 *
 * Set PARLEY_FUZZ_WRITE_SEEDS=dir to write one seed per message type (and a
 * paged roster, a hand-over) and exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conference.h"

static void check_report(const pl_conf_report *r)
{
    if (r->nat > PL_MIX_NAT_BLOCKED) abort();
}

static void check_name(const char *name)
{
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK || strcmp(norm, name) != 0) abort();
}

static void check_msg(const pl_conf_msg *m)
{
    switch (m->type) {
    case PL_CONF_MSG_ROSTER:
        if (m->total == 0 || m->total > PL_CONF_MAX || m->count == 0 || m->count > PL_CONF_PAGE) abort();
        if ((unsigned)m->first + m->count > m->total || m->host >= m->total) abort();
        if (m->successor != 0xff && (m->successor >= m->total || m->successor == m->host)) abort();
        if (m->flags & ~(PL_CONF_F_HANDOVER | PL_CONF_F_MOVE)) abort();
        if ((m->flags & PL_CONF_F_MOVE) && !(m->flags & PL_CONF_F_HANDOVER)) abort();
        if ((m->flags & PL_CONF_F_HANDOVER) && m->successor == 0xff) abort();
        for (uint8_t i = 0; i < m->count; i++) {
            if (m->entries[i].state > PL_CONF_AWAITED) abort();
            check_name(m->entries[i].name);
            check_report(&m->entries[i].report);
        }
        break;
    case PL_CONF_MSG_REPORT: check_report(&m->report); break;
    case PL_CONF_MSG_ADD: check_name(m->name); break;
    case PL_CONF_MSG_ADD_RESULT:
        if (m->status > PL_CONF_ADD_NOT_HOST) abort();
        break;
    default: abort();
    }
}

/* ---- seeds --------------------------------------------------------------------------------------- */

static const char *SEED_NAMES[14] = {"alice", "bob",   "carol", "dave", "erin", "frank", "grace",
                                     "heidi", "irene", "judy",  "kate", "liam", "mallory", "niaj"};

static void fill_entry(pl_conf_entry *e, int i)
{
    memset(e, 0, sizeof *e);
    memset(e->key, 0x10 + i, 32);
    snprintf(e->name, sizeof e->name, "%s", SEED_NAMES[i]);
    e->state = (uint8_t)(i % 3);
    e->report.up_kbps = 1000u * (uint32_t)(i + 1);
    e->report.down_kbps = 4000u * (uint32_t)(i + 1);
    e->report.rtt_ms = (uint16_t)(20 + i);
    e->report.nat = (uint8_t)(i % 4);
    e->report.can_host = i % 2 == 0;
}

static void write_seed(const char *dir, const char *name, const pl_conf_msg *m)
{
    uint8_t buf[PL_CONF_MSG_MAX];
    size_t n = pl_conf_msg_encode(buf, sizeof buf, m);
    if (n == 0) {
        fprintf(stderr, "seed %s does not encode\n", name);
        exit(1);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void write_seeds(const char *dir)
{
    pl_conf_msg m;
    memset(&m, 0, sizeof m);
    memset(m.conf_id, 0xc0, sizeof m.conf_id);
    m.type = PL_CONF_MSG_ROSTER;
    m.version = 7;
    m.host = 0;
    m.successor = 2;
    m.total = m.count = 4;
    for (int i = 0; i < 4; i++) fill_entry(&m.entries[i], i);
    write_seed(dir, "roster_4", &m);
    m.flags = PL_CONF_F_HANDOVER;
    write_seed(dir, "roster_handover", &m);
    m.flags = PL_CONF_F_HANDOVER | PL_CONF_F_MOVE;
    write_seed(dir, "roster_move", &m);
    /* A roster of 14 in two pages. */
    m.flags = 0;
    m.total = 14;
    m.host = 3;
    m.successor = 0xff;
    m.first = 0;
    m.count = PL_CONF_PAGE;
    for (int i = 0; i < PL_CONF_PAGE; i++) fill_entry(&m.entries[i], i);
    write_seed(dir, "roster_14_page1", &m);
    m.first = PL_CONF_PAGE;
    m.count = 2;
    for (int i = 0; i < 2; i++) fill_entry(&m.entries[i], PL_CONF_PAGE + i);
    write_seed(dir, "roster_14_page2", &m);

    memset(&m, 0, sizeof m);
    memset(m.conf_id, 0xc0, sizeof m.conf_id);
    m.type = PL_CONF_MSG_REPORT;
    m.version = 7;
    m.report = (pl_conf_report){.up_kbps = 5000, .down_kbps = 20000, .rtt_ms = 35, .nat = 1, .can_host = true};
    write_seed(dir, "report", &m);
    m.type = PL_CONF_MSG_ADD;
    m.req = 42;
    snprintf(m.name, sizeof m.name, "%s", "erin");
    write_seed(dir, "add", &m);
    m.type = PL_CONF_MSG_ADD_RESULT;
    m.name[0] = 0;
    m.status = PL_CONF_ADD_FULL;
    write_seed(dir, "add_result", &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool seeded;
    if (!seeded) {
        seeded = true;
        const char *dir = getenv("PARLEY_FUZZ_WRITE_SEEDS");
        if (dir) {
            write_seeds(dir);
            exit(0);
        }
    }
    static pl_conf_msg m;
    static uint8_t out[PL_CONF_MSG_MAX + 64];
    if (pl_conf_msg_decode(&m, data, size)) {
        check_msg(&m);
        /* One encoding: the message encodes back to the very bytes. */
        size_t n = pl_conf_msg_encode(out, PL_CONF_MSG_MAX, &m);
        if (n != size || memcmp(out, data, size) != 0) abort();
        /* A buffer one byte short fails cleanly. */
        if (pl_conf_msg_encode(out, size - 1, &m) != 0) abort();
    } else if (size >= 1) {
        /* The encoder on whatever the decoder left must stay in bounds
         * (a small buffer: ASan catches a write past it). */
        uint8_t *small = malloc(size);
        if (!small) return 0;
        (void)pl_conf_msg_encode(small, size, &m);
        free(small);
    }
    return 0;
}
