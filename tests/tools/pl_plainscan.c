/*
 * pl_plainscan - looks for the plaintext of messages in what a supernode
 * holds or sends (tests/messages.test.sh).
 *
 *   pl_plainscan [--text STRING]... [--voicemail-db FILE] FILE...
 *
 * Needles: every --text string, and from each voicemail body kept in a
 * messages.db (what its recipient decrypted) every Opus packet of 20 bytes
 * or more, as the 16 bytes after its first: range-coded audio, which no
 * other data repeats by chance. Haystacks: the FILEs (a supernode's mailbox
 * dump, a packet capture), read whole.
 *
 * Prints "needles N text, M voice" and one line per file,
 * "FILE: H hits (T text, V voice)", and exits 0 when nothing was found,
 * 1 when something was, 2 on a usage or I/O error. A test runs it on the
 * recipient's own database too, where it must find everything: that is how
 * it knows the needles are real.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "voicemail.h"

#define WINDOW 16

static uint8_t (*voice)[WINDOW];
static size_t n_voice, cap_voice;

static int cmp16(const void *a, const void *b) { return memcmp(a, b, WINDOW); }

static void add_voice(const uint8_t *w)
{
    if (n_voice == cap_voice) {
        cap_voice = cap_voice ? 2 * cap_voice : 1024;
        voice = realloc(voice, cap_voice * WINDOW);
        if (!voice) exit(2);
    }
    memcpy(voice[n_voice++], w, WINDOW);
}

static int load_voicemail(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT body FROM voicemail WHERE body IS NOT NULL", -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "pl_plainscan: %s: %s\n", path, sqlite3_errmsg(db));
        return -1;
    }
    int bodies = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        pl_vm_info info;
        if (pl_vm_parse(b, len, &info) != PL_VM_OK) continue;
        bodies++;
        size_t off = PL_VM_HEADER;
        for (uint32_t i = 0; i < info.frames; i++) {
            size_t n = (size_t)b[off] << 8 | b[off + 1];
            if (n >= 4 + WINDOW) add_voice(b + off + 3);
            off += 2 + n;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return bodies;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    const char *texts[32];
    int n_texts = 0, first_file = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--text") == 0 && i + 1 < argc && n_texts < 32) {
            texts[n_texts++] = argv[++i];
        } else if (strcmp(argv[i], "--voicemail-db") == 0 && i + 1 < argc) {
            if (load_voicemail(argv[++i]) < 0) return 2;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: pl_plainscan [--text STRING]... [--voicemail-db FILE] FILE...\n");
            return 2;
        } else {
            first_file = i;
            break;
        }
    }
    if (first_file == argc || (!n_texts && !n_voice)) {
        fprintf(stderr, "pl_plainscan: nothing to look for, or nowhere to look\n");
        return 2;
    }
    qsort(voice, n_voice, WINDOW, cmp16);
    printf("needles %d text, %zu voice\n", n_texts, n_voice);
    size_t total = 0;
    for (int f = first_file; f < argc; f++) {
        size_t len;
        uint8_t *buf = read_all(argv[f], &len);
        if (!buf) {
            fprintf(stderr, "pl_plainscan: cannot read %s\n", argv[f]);
            return 2;
        }
        size_t t_hits = 0, v_hits = 0;
        for (int k = 0; k < n_texts; k++) {
            size_t n = strlen(texts[k]);
            for (const uint8_t *p = buf; n && (p = memmem(p, len - (size_t)(p - buf), texts[k], n)) != NULL; p++)
                t_hits++;
        }
        for (size_t i = 0; n_voice && i + WINDOW <= len; i++)
            if (bsearch(buf + i, voice, n_voice, WINDOW, cmp16)) v_hits++;
        printf("%s: %zu hits (%zu text, %zu voice) in %zu bytes\n", argv[f], t_hits + v_hits, t_hits, v_hits, len);
        total += t_hits + v_hits;
        free(buf);
    }
    free(voice);
    return total ? 1 : 0;
}
