/*
 * ca_memstore.h - an account store in memory, for tests, fuzzers and the
 * simulator. It behaves like the SQLite store (unique names, serials never
 * reused, revocation bumps the CRL number) but forgets everything at free.
 */
#ifndef PL_CA_MEMSTORE_H
#define PL_CA_MEMSTORE_H

#include "ca_server.h"

typedef struct pl_ca_memstore {
    pl_ca_store store; /* the table to hand to pl_ca_server_new */
    pl_mem mem;
    uint32_t max_accounts; /* refuses inserts beyond this with IO */
    uint32_t count;
    uint32_t cap;
    pl_ca_account *accounts;
    /* Every certificate issued: serial and the account index it belongs to. */
    uint64_t *cert_serials;
    uint32_t *cert_owner;
    uint32_t cert_count, cert_cap;
    uint64_t last_serial;
    uint64_t crl_number;
    /* Set to make the next write fail, to test that nothing is answered as
     * committed when the store fails. */
    bool fail_writes;
} pl_ca_memstore;

void pl_ca_memstore_init(pl_ca_memstore *ms, const pl_mem *mem, uint32_t max_accounts);
void pl_ca_memstore_free(pl_ca_memstore *ms);

#endif
