/*
 * ca_memstore.c - the in-memory account store. Linear searches are fine: it
 * holds the few accounts of a test, and the fuzzer bounds it.
 */
#include "ca_memstore.h"

#include <string.h>

static pl_ca_memstore *self(void *ctx) { return ctx; }

static pl_ca_account *find(pl_ca_memstore *ms, const char *name)
{
    for (uint32_t i = 0; i < ms->count; i++)
        if (strcmp(ms->accounts[i].name, name) == 0) return &ms->accounts[i];
    return NULL;
}

static pl_ca_store_err ms_lookup(void *ctx, const char *name, pl_ca_account *out)
{
    pl_ca_account *a = find(self(ctx), name);
    if (!a) return PL_CA_STORE_NOT_FOUND;
    *out = *a;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_next_serial(void *ctx, uint64_t *out)
{
    *out = self(ctx)->last_serial + 1;
    return PL_CA_STORE_OK;
}

/* Grows an array through the pl_mem table (which has no realloc). */
static bool grow(pl_ca_memstore *ms, void **arr, uint32_t *cap, size_t elem, uint32_t used)
{
    if (used < *cap) return true;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *n = ms->mem.calloc(ms->mem.ctx, ncap, elem);
    if (!n) return false;
    if (*arr) {
        memcpy(n, *arr, (size_t)used * elem);
        ms->mem.free(ms->mem.ctx, *arr);
    }
    *arr = n;
    *cap = ncap;
    return true;
}

static pl_ca_store_err record_cert(pl_ca_memstore *ms, uint64_t serial, uint32_t owner)
{
    if (serial <= ms->last_serial) return PL_CA_STORE_EXISTS;
    uint32_t cap = ms->cert_cap;
    if (!grow(ms, (void **)&ms->cert_serials, &cap, sizeof *ms->cert_serials, ms->cert_count)) return PL_CA_STORE_IO;
    uint32_t cap2 = ms->cert_cap;
    if (!grow(ms, (void **)&ms->cert_owner, &cap2, sizeof *ms->cert_owner, ms->cert_count)) return PL_CA_STORE_IO;
    ms->cert_cap = cap < cap2 ? cap : cap2;
    ms->cert_serials[ms->cert_count] = serial;
    ms->cert_owner[ms->cert_count] = owner;
    ms->cert_count++;
    ms->last_serial = serial;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_insert(void *ctx, const pl_ca_account *acc)
{
    pl_ca_memstore *ms = self(ctx);
    if (ms->fail_writes) return PL_CA_STORE_IO;
    if (find(ms, acc->name)) return PL_CA_STORE_EXISTS;
    if (ms->count >= ms->max_accounts) return PL_CA_STORE_IO;
    if (!grow(ms, (void **)&ms->accounts, &ms->cap, sizeof *ms->accounts, ms->count)) return PL_CA_STORE_IO;
    pl_ca_store_err e = record_cert(ms, acc->serial, ms->count);
    if (e != PL_CA_STORE_OK) return e;
    ms->accounts[ms->count++] = *acc;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_renew(void *ctx, const pl_ca_account *acc)
{
    pl_ca_memstore *ms = self(ctx);
    if (ms->fail_writes) return PL_CA_STORE_IO;
    pl_ca_account *a = find(ms, acc->name);
    if (!a) return PL_CA_STORE_NOT_FOUND;
    pl_ca_store_err e = record_cert(ms, acc->serial, (uint32_t)(a - ms->accounts));
    if (e != PL_CA_STORE_OK) return e;
    *a = *acc;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_revoke(void *ctx, const char *name, uint64_t *crl_number)
{
    pl_ca_memstore *ms = self(ctx);
    if (ms->fail_writes) return PL_CA_STORE_IO;
    pl_ca_account *a = find(ms, name);
    if (!a) return PL_CA_STORE_NOT_FOUND;
    if (!a->revoked) {
        a->revoked = true;
        ms->crl_number++;
    }
    if (crl_number) *crl_number = ms->crl_number;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_crl_number(void *ctx, uint64_t *number)
{
    *number = self(ctx)->crl_number;
    return PL_CA_STORE_OK;
}

static pl_ca_store_err ms_revoked_serials(void *ctx, uint64_t *out, uint32_t cap, uint32_t *total)
{
    pl_ca_memstore *ms = self(ctx);
    uint32_t n = 0;
    /* Serials are recorded in ascending order, so the output is sorted. */
    for (uint32_t i = 0; i < ms->cert_count; i++) {
        if (!ms->accounts[ms->cert_owner[i]].revoked) continue;
        if (n < cap) out[n] = ms->cert_serials[i];
        n++;
    }
    *total = n;
    return PL_CA_STORE_OK;
}

void pl_ca_memstore_init(pl_ca_memstore *ms, const pl_mem *mem, uint32_t max_accounts)
{
    memset(ms, 0, sizeof *ms);
    ms->mem = *mem;
    ms->max_accounts = max_accounts;
    ms->store = (pl_ca_store){.ctx = ms,
                              .lookup = ms_lookup,
                              .next_serial = ms_next_serial,
                              .insert = ms_insert,
                              .renew = ms_renew,
                              .revoke = ms_revoke,
                              .crl_number = ms_crl_number,
                              .revoked_serials = ms_revoked_serials};
}

void pl_ca_memstore_free(pl_ca_memstore *ms)
{
    if (ms->accounts) ms->mem.free(ms->mem.ctx, ms->accounts);
    if (ms->cert_serials) ms->mem.free(ms->mem.ctx, ms->cert_serials);
    if (ms->cert_owner) ms->mem.free(ms->mem.ctx, ms->cert_owner);
    memset(ms, 0, sizeof *ms);
}
