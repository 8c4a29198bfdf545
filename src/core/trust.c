/*
 * trust.c - safety numbers and key pinning (trust.h).
 */
#include "trust.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* One half of a safety number: 30 digits from one key. The hash is
 * iterated so that every guess in a search for a matching key costs
 * PL_TRUST_ITERATIONS hashes; the key goes into every round so the chain
 * cannot be shared between keys. */
static void half(const uint8_t key[32], char out[31])
{
    uint8_t h[64];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)PL_TRUST_CONTEXT, sizeof PL_TRUST_CONTEXT); /* with the NUL */
    crypto_generichash_update(&st, key, 32);
    crypto_generichash_final(&st, h, sizeof h);
    for (int i = 1; i < PL_TRUST_ITERATIONS; i++) {
        crypto_generichash_init(&st, NULL, 0, sizeof h);
        crypto_generichash_update(&st, h, sizeof h);
        crypto_generichash_update(&st, key, 32);
        crypto_generichash_final(&st, h, sizeof h);
    }
    /* Six chunks of 5 bytes, each a 40-bit number reduced to 5 digits (the
     * bias of the reduction is below 10^-7). */
    for (int g = 0; g < 6; g++) {
        uint64_t v = 0;
        for (int k = 0; k < 5; k++) v = (v << 8) | h[5 * g + k];
        snprintf(out + 5 * g, 6, "%05u", (unsigned)(v % 100000));
    }
}

void pl_trust_safety_number(const uint8_t key_a[32], const uint8_t key_b[32], char digits[PL_TRUST_DIGITS + 1],
                            char text[PL_TRUST_TEXT_MAX])
{
    char ha[31], hb[31];
    half(key_a, ha);
    half(key_b, hb);
    const char *first = strcmp(ha, hb) <= 0 ? ha : hb, *second = first == ha ? hb : ha;
    memcpy(digits, first, 30);
    memcpy(digits + 30, second, 30);
    digits[PL_TRUST_DIGITS] = 0;
    if (!text) return;
    size_t o = 0;
    for (int g = 0; g < PL_TRUST_GROUPS; g++) {
        if (g) text[o++] = ' ';
        memcpy(text + o, digits + 5 * g, 5);
        o += 5;
    }
    text[o] = 0;
}

pl_trust_pin pl_trust_pin_check(const uint8_t seen[32], const uint8_t *pinned)
{
    if (!pinned) return PL_TRUST_PIN_FIRST_SEEN;
    return sodium_memcmp(seen, pinned, 32) == 0 ? PL_TRUST_PIN_SAME : PL_TRUST_PIN_CHANGED;
}

void pl_trust_key_text(const uint8_t key[32], char out[PL_TRUST_KEY_TEXT_MAX])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i && i % 2 == 0) out[o++] = ' ';
        out[o++] = hex[key[i] >> 4];
        out[o++] = hex[key[i] & 15];
    }
    out[o] = 0;
}

pl_trust_err pl_trust_format_warning(char *buf, size_t cap, const char *name, const uint8_t pinned[32],
                                     const uint8_t seen[32], const uint8_t own_key[32])
{
    if (cap == 0) return PL_TRUST_ERR_BUFFER;
    /* Certified names are already restricted to these characters; a name
     * from elsewhere must not smuggle control characters to a terminal. */
    char safe[PL_NAME_MAX + 1];
    size_t n = 0;
    for (const char *p = name ? name : ""; *p && n < PL_NAME_MAX; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        safe[n++] = ok ? ch : '?';
    }
    safe[n] = 0;
    char was[PL_TRUST_KEY_TEXT_MAX], now[PL_TRUST_KEY_TEXT_MAX], digits[PL_TRUST_DIGITS + 1],
        number[PL_TRUST_TEXT_MAX];
    pl_trust_key_text(pinned, was);
    pl_trust_key_text(seen, now);
    pl_trust_safety_number(own_key, seen, digits, number);
    int w = snprintf(buf, cap,
                     "WARNING: the key of %s has CHANGED.\n"
                     "  key you trusted before: %s...\n"
                     "  key presented now:      %s...\n"
                     "This happens when %s reinstalled Parley or lost their key, and also when someone "
                     "is intercepting your calls and messages. Before you trust the new key, compare "
                     "your new safety number with %s in person or over a channel you already trust:\n"
                     "  %s\n",
                     safe, was, now, safe, safe, number);
    return w < 0 || (size_t)w >= cap ? PL_TRUST_ERR_BUFFER : PL_TRUST_OK;
}

const char *pl_trust_pin_name(pl_trust_pin verdict)
{
    switch (verdict) {
    case PL_TRUST_PIN_FIRST_SEEN: return "first seen";
    case PL_TRUST_PIN_SAME: return "same";
    case PL_TRUST_PIN_CHANGED: return "CHANGED";
    }
    return "unknown";
}

const char *pl_trust_strerror(pl_trust_err err)
{
    switch (err) {
    case PL_TRUST_OK: return "ok";
    case PL_TRUST_ERR_BUFFER: return "buffer too small";
    }
    return "unknown trust error";
}
