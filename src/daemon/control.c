/*
 * control.c - parleyd's control socket: a Unix stream socket in the home
 * directory (mode 0600) where the `parley` client sends one JSON object per
 * line and gets one back (docs/overlay.md, "The control socket"). Commands
 * are dispatched from a table; a command that has to wait for the network
 * (a look-up) answers later, through pd_control_reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

/* ---- the control socket -------------------------------------------------------------------- */

void pd_control_reply(parleyd *d, int fd, cJSON *reply)
{
    (void)d;
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    if (!text) return;
    size_t len = strlen(text);
    text[len] = '\n'; /* over the terminator: the buffer holds len + 1 */
    /* Replies are small; a client that does not read them loses them. */
    ssize_t n = send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    free(text);
}

cJSON *pd_ok_reply(void)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    return r;
}

cJSON *pd_error_reply(const char *kind, const char *message)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", false);
    cJSON_AddStringToObject(r, "error", kind);
    cJSON_AddStringToObject(r, "message", message);
    return r;
}

static void add_peer(cJSON *obj, const char *key, parleyd *d, const pl_ovl_peer *p)
{
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    cJSON *o = cJSON_AddObjectToObject(obj, key);
    pl_hex_encode(p->pk, 32, hex);
    cJSON_AddStringToObject(o, "fingerprint", hex);
    cJSON_AddStringToObject(o, "name", pd_peer_name(d, p->pk));
    cJSON_AddStringToObject(o, "addr", pl_addr_format(&p->addr, addr, sizeof addr));
}

static cJSON *cmd_status(parleyd *d)
{
    cJSON *r = cJSON_CreateObject();
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    pl_time now = pl_loop_now(d->loop);
    cJSON_AddBoolToObject(r, "ok", true);
    cJSON_AddStringToObject(r, "name", d->cert.name);
    pl_hex_encode(d->id.sign_pk, 32, hex);
    cJSON_AddStringToObject(r, "fingerprint", hex);
    pl_node *node = pl_stack_node(d->stack);
    pl_super *super = pl_stack_super(d->stack);
    cJSON_AddStringToObject(r, "role", node && super ? "node, promoted to supernode" : super ? "supernode" : "node");
    cJSON_AddStringToObject(r, "listen", pl_addr_format(&d->local, addr, sizeof addr));
    cJSON_AddNumberToObject(r, "uptime_s", (double)(now - d->started_at) / PL_SEC);
    cJSON_AddNumberToObject(r, "control_requests", (double)d->control_requests);
    if (!node) {
        cJSON_AddStringToObject(r, "nat", "none (a supernode is reachable; it answers STUN)");
    } else if (!d->natdisc_done) {
        cJSON_AddStringToObject(r, "nat", d->natdisc_running ? "discovering" : "unknown");
    } else if (d->nat.udp_blocked) {
        cJSON_AddStringToObject(r, "nat", "UDP blocked");
    } else if (!d->nat.behind_nat) {
        cJSON_AddStringToObject(r, "nat", "none");
    } else {
        char text[160];
        snprintf(text, sizeof text, "mapping %s, filtering %s", pl_nat_behaviour_name(d->nat.mapping),
                 pl_nat_behaviour_name(d->nat.filtering));
        cJSON_AddStringToObject(r, "nat", text);
    }
    if (node) {
        pl_node_status st = pl_node_get_status(node);
        cJSON_AddStringToObject(r, "state", pl_node_state_name(st.state));
        cJSON_AddBoolToObject(r, "online", st.state == PL_NODE_ATTACHED);
        if (st.state == PL_NODE_ATTACHED || st.state == PL_NODE_ATTACHING) {
            add_peer(r, "supernode", d, &st.supernode);
            cJSON_AddStringToObject(r, "transport", st.tcp ? "tcp" : "udp");
        }
        if (st.state == PL_NODE_ATTACHED) {
            cJSON_AddStringToObject(r, "observed", pl_addr_format(&st.observed, addr, sizeof addr));
            cJSON_AddNumberToObject(r, "attached_s", (double)(now - st.attached_since) / PL_SEC);
            cJSON_AddNumberToObject(r, "keepalive_s", st.keepalive_s);
        }
        cJSON *sb = cJSON_AddArrayToObject(r, "standby");
        for (uint8_t i = 0; i < st.n_standby; i++) {
            cJSON *o = cJSON_CreateObject();
            pl_hex_encode(st.standby[i].pk, 32, hex);
            cJSON_AddStringToObject(o, "fingerprint", hex);
            cJSON_AddStringToObject(o, "addr", pl_addr_format(&st.standby[i].addr, addr, sizeof addr));
            cJSON_AddItemToArray(sb, o);
        }
        pd_people_status(d, r);
        pd_phone_status(d, r);
        pd_messages_status(d, r);
        pd_reach_status(d, r);
        cJSON_AddNumberToObject(r, "attaches", st.attaches);
        cJSON_AddNumberToObject(r, "losses", st.losses);
        if (st.state == PL_NODE_WAITING)
            cJSON_AddNumberToObject(r, "retry_in_s", (double)(st.next_attempt - now) / PL_SEC);
    } else {
        cJSON_AddStringToObject(r, "state", "serving");
        cJSON_AddBoolToObject(r, "online", true);
    }
    if (super) {
        pl_super_stats ss = pl_super_get_stats(super);
        cJSON *sv = cJSON_AddObjectToObject(r, "serving");
        cJSON_AddNumberToObject(sv, "clients", ss.clients);
        cJSON_AddNumberToObject(sv, "max_clients", d->opt.max_clients ? d->opt.max_clients : PL_SUPER_DEFAULT_MAX_CLIENTS);
        cJSON_AddNumberToObject(sv, "attaches", (double)ss.attaches);
        cJSON_AddNumberToObject(sv, "lost", (double)ss.lost);
        cJSON_AddNumberToObject(sv, "refused_full", (double)ss.refused_full);
        cJSON_AddNumberToObject(sv, "refused_proof", (double)ss.refused_proof);
        cJSON_AddNumberToObject(sv, "qualified", ss.qualified);
        cJSON_AddNumberToObject(sv, "promotions_asked", (double)ss.promotions_asked);
        cJSON_AddNumberToObject(sv, "shed", (double)ss.shed);
        pl_members *m = pl_super_members(super);
        if (m) {
            cJSON_AddNumberToObject(sv, "supernodes_alive", pl_members_alive_count(m));
            cJSON_AddNumberToObject(sv, "supernodes_known", pl_members_count(m));
        }
        pl_dir_stats ds = pl_dir_get_stats(pl_super_directory(super));
        cJSON_AddNumberToObject(sv, "records", (double)ds.records);
        pd_mailbox_status(d, sv);
    }
    return r;
}

static cJSON *cmd_clients(parleyd *d)
{
    pl_super *s = pl_stack_super(d->stack);
    if (!s) return pd_error_reply("not_supernode", "this daemon is not a supernode");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    cJSON *arr = cJSON_AddArrayToObject(r, "clients");
    size_t cursor = 0;
    pl_super_client_info info;
    char hex[65], addr[PL_ADDR_TEXT_MAX];
    while (pl_super_next_client(s, &cursor, &info)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", info.name);
        pl_hex_encode(info.pk, 32, hex);
        cJSON_AddStringToObject(o, "fingerprint", hex);
        cJSON_AddStringToObject(o, "addr", pl_addr_format(&info.addr, addr, sizeof addr));
        cJSON_AddItemToArray(arr, o);
    }
    return r;
}

/* A command returns its reply, or NULL when the reply comes later (it then
 * calls pd_control_reply itself). */
typedef struct control_command {
    const char *name;
    bool node_only; /* needs the node's directory client */
    cJSON *(*run)(parleyd *d, int fd, const cJSON *req);
} control_command;

static cJSON *run_status(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    (void)req;
    return cmd_status(d);
}
static cJSON *run_clients(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    (void)req;
    return cmd_clients(d);
}
static cJSON *run_stop(parleyd *d, int fd, const cJSON *req)
{
    (void)fd;
    (void)req;
    pl_loop_stop(d->loop);
    return pd_ok_reply();
}

static const control_command CONTROL_COMMANDS[] = {
    {"status", false, run_status},
    {"clients", false, run_clients},
    {"stop", false, run_stop},
    {"lookup", true, pd_cmd_lookup},
    {"contacts", true, pd_cmd_contacts},
    {"presence", true, pd_cmd_presence},
    {"call", true, pd_cmd_call},
    {"answer", true, pd_cmd_answer},
    {"reject", true, pd_cmd_call_action},
    {"hangup", true, pd_cmd_call_action},
    {"hold", true, pd_cmd_call_action},
    {"resume", true, pd_cmd_call_action},
    {"mute", true, pd_cmd_call_action},
    {"unmute", true, pd_cmd_call_action},
    {"calls", true, pd_cmd_calls},
    {"chat", true, pd_cmd_chat},
    {"voicemail", true, pd_cmd_voicemail},
    {"mailbox", false, pd_cmd_mailbox},
    {"conference", true, pd_cmd_conference},
};

static void control_line(parleyd *d, control_client *c, const char *line)
{
    d->control_requests++;
    cJSON *req = cJSON_Parse(line);
    const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
    cJSON *reply = NULL;
    bool known = false;
    if (!cJSON_IsString(cmd)) {
        reply = pd_error_reply("bad_request", "expected a JSON object with \"cmd\"");
    } else {
        for (size_t i = 0; i < sizeof CONTROL_COMMANDS / sizeof CONTROL_COMMANDS[0] && !known; i++) {
            if (strcmp(cmd->valuestring, CONTROL_COMMANDS[i].name) != 0) continue;
            known = true;
            if (CONTROL_COMMANDS[i].node_only && !pl_stack_node(d->stack))
                reply = pd_error_reply("not_a_node", "this daemon runs as a supernode; ask a node's daemon");
            else
                reply = CONTROL_COMMANDS[i].run(d, c->fd, req);
        }
        if (!known) reply = pd_error_reply("unknown_command", cmd->valuestring);
    }
    cJSON_Delete(req);
    if (reply) pd_control_reply(d, c->fd, reply);
    pd_rearm(d);
}

static void control_drop(parleyd *d, control_client *c)
{
    if (pl_stack_node(d->stack)) pd_people_client_gone(d, c->fd);
    pd_phone_client_gone(d, c->fd);
    pd_messages_client_gone(d, c->fd);
    pl_loop_unwatch_fd(d->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static void on_control_client(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    parleyd *d = ctx;
    (void)loop;
    (void)events;
    control_client *c = NULL;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->clients[i].fd == fd) c = &d->clients[i];
    if (!c) return;
    ssize_t n = recv(fd, c->buf + c->len, sizeof c->buf - 1 - c->len, MSG_DONTWAIT);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        control_drop(d, c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
        *nl = 0;
        control_line(d, c, c->buf);
        if (c->fd < 0) return;
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, nl + 1, c->len - used);
        c->len -= used;
        c->buf[c->len] = 0;
    }
    if (c->len == sizeof c->buf - 1) control_drop(d, c); /* a line too long */
}

static void on_control_accept(pl_loop *loop, int fd, unsigned events, void *ctx)
{
    parleyd *d = ctx;
    (void)events;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) return;
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) {
        if (d->clients[i].fd < 0) {
            d->clients[i].fd = cfd;
            d->clients[i].len = 0;
            pl_loop_watch_fd(loop, cfd, PL_FD_READ, on_control_client, d);
            return;
        }
    }
    close(cfd);
}

int pd_control_open(parleyd *d)
{
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++) d->clients[i].fd = -1;
    if (d->opt.control) snprintf(d->control_path, sizeof d->control_path, "%s", d->opt.control);
    else pl_home_path(d->home, "control.sock", d->control_path, sizeof d->control_path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(d->control_path) >= sizeof sa.sun_path)
        return pd_die("the control socket path %s is too long (use --control)", d->control_path);
    strcpy(sa.sun_path, d->control_path);
    /* A socket left by a daemon that died is removed; one that answers
     * belongs to a daemon that is still running. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
        close(probe);
        return pd_die("a daemon is already running for %s (control socket %s)", d->home, d->control_path);
    }
    if (probe >= 0) close(probe);
    unlink(d->control_path);
    d->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->control_fd < 0 || bind(d->control_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(d->control_fd, 16) != 0)
        return pd_die("cannot open the control socket %s: %s", d->control_path, strerror(errno));
    chmod(d->control_path, 0600);
    pl_loop_watch_fd(d->loop, d->control_fd, PL_FD_READ, on_control_accept, d);
    return 0;
}

void pd_control_close(parleyd *d)
{
    for (int i = 0; i < MAX_CONTROL_CLIENTS; i++)
        if (d->clients[i].fd >= 0) control_drop(d, &d->clients[i]);
    if (d->control_fd >= 0) {
        pl_loop_unwatch_fd(d->loop, d->control_fd);
        close(d->control_fd);
        unlink(d->control_path);
    }
}

