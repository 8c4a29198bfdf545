/*
 * people.c - the directory as a user sees it: looking people up, keeping
 * contacts (contacts.db) and following their presence.
 *
 * Contacts are subscribed to at start and when added; what the network
 * says of each (online, away, offline, status text) is kept in memory and
 * shown by `contacts list`. The first key seen for a contact is pinned;
 * a record under another key is reported as a key change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"
#include "dirclient.h"

typedef struct pd_presence {
    char name[PL_NAME_MAX + 1];
    bool known;   /* heard anything yet */
    bool online;
    uint8_t presence;
    char status[PL_RECORD_STATUS_MAX + 1];
    uint8_t key[32];
    bool key_changed;
    pl_time since;
} pd_presence;

typedef struct pd_pending {
    int fd;       /* the control client waiting */
    uint32_t id;  /* the look-up */
} pd_pending;

static pl_dirc *dirc(parleyd *d) { return pl_node_directory(pl_stack_node(d->stack)); }

static pd_presence *presence_of(parleyd *d, const char *name, bool create)
{
    for (size_t i = 0; i < d->n_presence; i++)
        if (strcmp(d->presence[i].name, name) == 0) return &d->presence[i];
    if (!create) return NULL;
    if (d->n_presence == d->cap_presence) {
        size_t cap = d->cap_presence ? 2 * d->cap_presence : 16;
        pd_presence *grown = realloc(d->presence, cap * sizeof *grown);
        if (!grown) return NULL;
        d->presence = grown;
        d->cap_presence = cap;
    }
    pd_presence *p = &d->presence[d->n_presence++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    return p;
}

static void forget_presence(parleyd *d, const char *name)
{
    for (size_t i = 0; i < d->n_presence; i++) {
        if (strcmp(d->presence[i].name, name) != 0) continue;
        d->presence[i] = d->presence[--d->n_presence];
        return;
    }
}

/* Compares a contact's key with the one pinned; pins it the first time. */
static const char *check_key(parleyd *d, const char *name, const uint8_t key[32])
{
    pl_contact c;
    if (pl_contacts_get(d->contacts, name, &c) != PL_CONTACTS_OK) return "not a contact";
    if (!c.pinned) {
        pl_contacts_pin(d->contacts, name, key);
        return "pinned now";
    }
    return memcmp(c.pinned_key, key, 32) == 0 ? "same as pinned" : "CHANGED";
}

static bool subscribe_one(void *ctx, const pl_contact *c)
{
    parleyd *d = ctx;
    pl_dirc_subscribe(dirc(d), c->name, pl_loop_now(d->loop));
    presence_of(d, c->name, true);
    return true;
}

int pd_people_open(parleyd *d)
{
    char path[PL_HOME_PATH_MAX + 16];
    pl_home_path(d->home, "contacts.db", path, sizeof path);
    if (pl_contacts_open(&d->contacts, path) != PL_CONTACTS_OK) return pd_die("cannot open %s", path);
    pl_contacts_each(d->contacts, subscribe_one, d);
    return 0;
}

void pd_people_close(parleyd *d)
{
    pl_contacts_close(d->contacts);
    d->contacts = NULL;
    free(d->presence);
    free(d->pending);
    d->presence = NULL;
    d->pending = NULL;
    d->n_presence = d->n_pending = 0;
}

/* ---- records as JSON ------------------------------------------------------------------ */

static const char *nat_name(uint8_t b)
{
    switch (b) {
    case PL_NAT_ENDPOINT_INDEPENDENT: return "endpoint-independent";
    case PL_NAT_ADDRESS_DEPENDENT: return "address-dependent";
    case PL_NAT_ADDRESS_AND_PORT_DEPENDENT: return "address-and-port-dependent";
    default: return "unknown";
    }
}

static const char *cand_type(uint8_t t)
{
    switch (t) {
    case PL_CAND_HOST: return "host";
    case PL_CAND_SERVER_REFLEXIVE: return "server-reflexive";
    case PL_CAND_PORT_MAPPED: return "port-mapped";
    case PL_CAND_RELAYED: return "relayed";
    default: return "?";
    }
}

static void add_record(parleyd *d, cJSON *o, const pl_record *r, bool offline)
{
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    cJSON_AddStringToObject(o, "name", r->cert.name);
    pl_hex_encode(r->cert.sign_pk, 32, hex);
    cJSON_AddStringToObject(o, "fingerprint", hex);
    cJSON_AddBoolToObject(o, "online", !offline);
    cJSON_AddStringToObject(o, "presence", offline ? "offline" : r->presence == PL_PRESENCE_AWAY ? "away" : "online");
    cJSON_AddStringToObject(o, "status", r->status);
    cJSON_AddBoolToObject(o, "private", (r->flags & PL_RECORD_F_PRIVATE) != 0);
    cJSON *sns = cJSON_AddArrayToObject(o, "supernodes");
    for (uint8_t i = 0; i < r->n_supernodes; i++) {
        cJSON *s = cJSON_CreateObject();
        pl_hex_encode(r->supernodes[i].pk, 32, hex);
        cJSON_AddStringToObject(s, "fingerprint", hex);
        cJSON_AddStringToObject(s, "addr", pl_addr_format(&r->supernodes[i].addr, addr, sizeof addr));
        cJSON_AddItemToArray(sns, s);
    }
    cJSON *cs = cJSON_AddArrayToObject(o, "candidates");
    for (uint8_t i = 0; i < r->n_candidates; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "type", cand_type(r->candidates[i].type));
        cJSON_AddStringToObject(c, "transport", r->candidates[i].transport == PL_TRANSPORT_TCP ? "tcp" : "udp");
        cJSON_AddStringToObject(c, "addr", pl_addr_format(&r->candidates[i].addr, addr, sizeof addr));
        cJSON_AddItemToArray(cs, c);
    }
    cJSON *nat = cJSON_AddObjectToObject(o, "nat");
    cJSON_AddStringToObject(nat, "mapping", nat_name(r->nat_mapping));
    cJSON_AddStringToObject(nat, "filtering", nat_name(r->nat_filtering));
    cJSON_AddBoolToObject(nat, "udp_blocked", (r->nat_flags & PL_NAT_F_UDP_BLOCKED) != 0);
    cJSON_AddNumberToObject(o, "sequence", (double)r->sequence);
    cJSON_AddNumberToObject(o, "expires_at", (double)r->expires_at);
    cJSON_AddStringToObject(o, "key", check_key(d, r->cert.name, r->cert.sign_pk));
}

/* ---- events from the directory ---------------------------------------------------------- */

void pd_on_directory(parleyd *d, const pl_dirc_event *ev)
{
    switch (ev->type) {
    case PL_DIRC_EV_PUBLISHED:
        if (ev->status == PL_DIR_OK) pd_log(d, "record published on %u replicas", ev->stored);
        else pd_log(d, "publishing our record failed (status %u)", ev->status);
        break;
    case PL_DIRC_EV_LOOKUP:
        for (size_t i = 0; i < d->n_pending; i++) {
            if (d->pending[i].id != ev->id) continue;
            int fd = d->pending[i].fd;
            d->pending[i] = d->pending[--d->n_pending];
            cJSON *r;
            if (ev->status == PL_DIR_OK && ev->record) {
                r = pd_ok_reply();
                add_record(d, r, ev->record, ev->offline);
            } else if (ev->status == PL_DIR_NOT_FOUND) {
                char msg[96];
                snprintf(msg, sizeof msg, "no user '%s' in the directory", ev->name);
                r = pd_error_reply("not_found", msg);
            } else if (ev->status == PL_DIR_REFUSED) {
                r = pd_error_reply("bad_record", "every record the directory returned failed verification");
            } else {
                r = pd_error_reply("unreachable", "the directory did not answer (no supernode, or none of the "
                                                  "name's replicas)");
            }
            pd_control_reply(d, fd, r);
            return;
        }
        pd_messages_on_lookup(d, ev);
        break;
    case PL_DIRC_EV_PRESENCE: {
        pd_presence *p = presence_of(d, ev->name, false);
        if (!p) return;
        bool was_online = p->known && p->online;
        p->known = true;
        p->online = !ev->offline;
        p->since = ev->now;
        if (ev->record) {
            p->presence = ev->record->presence;
            snprintf(p->status, sizeof p->status, "%s", ev->record->status);
            p->key_changed = strcmp(check_key(d, ev->name, ev->record->cert.sign_pk), "CHANGED") == 0;
            memcpy(p->key, ev->record->cert.sign_pk, 32);
        }
        const char *state = !p->online ? "offline" : p->presence == PL_PRESENCE_AWAY ? "away" : "online";
        if (p->online != was_online || ev->record)
            pd_log(d, "presence: %s is %s%s%s%s", ev->name, state, p->status[0] ? " (" : "", p->status,
                   p->status[0] ? ")" : "");
        if (p->key_changed) pd_log(d, "WARNING: %s's key differs from the one pinned earlier", ev->name);
        break;
    }
    }
}

/* Mail: chat and voicemail (messages.c), which acknowledges messages (and
 * so deletes them from the store) only once they are kept here. */
void pd_on_mail(parleyd *d, const pl_mboxc_event *ev) { pd_messages_on_mail(d, ev); }

void pd_people_client_gone(parleyd *d, int fd)
{
    for (size_t i = 0; i < d->n_pending;) {
        if (d->pending[i].fd == fd) d->pending[i] = d->pending[--d->n_pending];
        else i++;
    }
}

/* ---- commands ------------------------------------------------------------------------------ */

static const char *req_string(const cJSON *req, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

cJSON *pd_cmd_lookup(parleyd *d, int fd, const cJSON *req)
{
    const char *name = req_string(req, "name");
    if (!name) return pd_error_reply("bad_request", "lookup needs a \"name\"");
    uint32_t id;
    pl_dirc_err e = pl_dirc_lookup(dirc(d), name, pl_loop_now(d->loop), &id);
    if (e == PL_DIRC_ERR_BAD_NAME) {
        char msg[96];
        snprintf(msg, sizeof msg, "'%.40s' is not a valid user name", name);
        return pd_error_reply("bad_name", msg);
    }
    if (e) return pd_error_reply("busy", pl_dirc_strerror(e));
    if (d->n_pending == d->cap_pending) {
        size_t cap = d->cap_pending ? 2 * d->cap_pending : 8;
        pd_pending *grown = realloc(d->pending, cap * sizeof *grown);
        if (!grown) return pd_error_reply("busy", "out of memory");
        d->pending = grown;
        d->cap_pending = cap;
    }
    d->pending[d->n_pending++] = (pd_pending){fd, id};
    return NULL; /* answered when the directory is */
}

typedef struct list_ctx {
    parleyd *d;
    cJSON *arr;
} list_ctx;

static bool list_one(void *ctx, const pl_contact *c)
{
    list_ctx *l = ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", c->name);
    pd_presence *p = presence_of(l->d, c->name, false);
    const char *state = "unknown";
    if (p && p->known) state = !p->online ? "offline" : p->presence == PL_PRESENCE_AWAY ? "away" : "online";
    cJSON_AddStringToObject(o, "presence", state);
    cJSON_AddStringToObject(o, "status", p && p->known ? p->status : "");
    cJSON_AddBoolToObject(o, "key_changed", p && p->key_changed);
    if (c->pinned) {
        char hex[65];
        pl_hex_encode(c->pinned_key, 32, hex);
        cJSON_AddStringToObject(o, "pinned_key", hex);
    }
    cJSON_AddNumberToObject(o, "added_at", (double)c->added_at);
    cJSON_AddItemToArray(l->arr, o);
    return true;
}

cJSON *pd_cmd_contacts(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    const char *op = req_string(req, "op");
    const char *name = req_string(req, "name");
    pl_time now = pl_loop_now(d->loop);
    if (!op || strcmp(op, "list") == 0) {
        cJSON *r = pd_ok_reply();
        list_ctx l = {d, cJSON_AddArrayToObject(r, "contacts")};
        pl_contacts_each(d->contacts, list_one, &l);
        return r;
    }
    if (!name) return pd_error_reply("bad_request", "contacts add/remove need a \"name\"");
    char norm[PL_NAME_MAX + 1];
    if (pl_name_normalize(name, norm) != PL_NAME_OK) {
        char msg[96];
        snprintf(msg, sizeof msg, "'%.40s' is not a valid user name", name);
        return pd_error_reply("bad_name", msg);
    }
    if (strcmp(op, "add") == 0) {
        pl_contacts_err e = pl_contacts_add(d->contacts, norm, (uint64_t)time(NULL));
        if (e == PL_CONTACTS_ERR_EXISTS) return pd_error_reply("exists", "already a contact");
        if (e) return pd_error_reply("db", pl_contacts_last_error(d->contacts));
        pl_dirc_subscribe(dirc(d), norm, now);
        presence_of(d, norm, true);
        return pd_ok_reply();
    }
    if (strcmp(op, "remove") == 0) {
        pl_contacts_err e = pl_contacts_remove(d->contacts, norm);
        if (e == PL_CONTACTS_ERR_NOT_FOUND) return pd_error_reply("not_found", "not a contact");
        if (e) return pd_error_reply("db", pl_contacts_last_error(d->contacts));
        pl_dirc_unsubscribe(dirc(d), norm, now);
        forget_presence(d, norm);
        return pd_ok_reply();
    }
    return pd_error_reply("bad_request", "contacts op must be list, add or remove");
}

cJSON *pd_cmd_presence(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    const char *state = req_string(req, "state");
    const char *status = req_string(req, "status");
    uint8_t p;
    if (!state || strcmp(state, "online") == 0) p = PL_PRESENCE_ONLINE;
    else if (strcmp(state, "away") == 0) p = PL_PRESENCE_AWAY;
    else return pd_error_reply("bad_request", "presence is online or away");
    pl_dirc_err e = pl_dirc_set_presence(dirc(d), p, status ? status : "", pl_loop_now(d->loop));
    if (e) return pd_error_reply("bad_status", pl_dirc_strerror(e));
    return pd_ok_reply();
}

void pd_people_status(parleyd *d, cJSON *r)
{
    const char *status;
    uint8_t p = pl_dirc_presence(dirc(d), &status);
    cJSON_AddStringToObject(r, "presence", p == PL_PRESENCE_AWAY ? "away" : "online");
    cJSON_AddStringToObject(r, "status", status);
    cJSON_AddNumberToObject(r, "record_sequence", (double)pl_dirc_sequence(dirc(d)));
    cJSON_AddNumberToObject(r, "contacts", (double)d->n_presence);
}
