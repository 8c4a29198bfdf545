/*
 * parley-quality - how well did speech survive a voice path?
 *
 *   parley-quality SENT.wav RECORDED.wav [options]
 *
 * Finds the one-way delay by cross-correlation, aligns the recording to what
 * was sent, and measures intelligibility (STOI), log-spectral distance, the
 * path's level change and dead air; adds an E-model transmission rating
 * estimate from the measured delay and a loss figure the caller supplies
 * (the receiver's statistics know it; the WAVs do not). Thresholds make the
 * exit status say pass (0) or fail (1), so tests can use it directly; 2 is a
 * usage error, 3 an input that cannot be measured. The DSP is in
 * src/media/quality.h.
 *
 * The default thresholds pass clean and moderately degraded speech and fail
 * silence, noise, one-way audio and a recording of different speech (see
 * tests/quality.test.sh for the figures):
 *   --min-stoi 0.70       STOI of pure noise against speech is ~0.4 (the
 *                         measure's clipping step), of other speech ~0.2,
 *                         of silence 0; speech through noise at 0 dB SNR or
 *                         through a 3.4 kHz telephone band stays above 0.8.
 *   --max-dead-air 0.10   one-way audio and muted stretches show up here even
 *                         when the rest of the recording is fine.
 *   --max-delay-ms 400    ITU-T G.114's limit for network planning.
 *   --min-r 60            below 60 G.107 Annex B expects many users to be
 *                         dissatisfied; 400 ms with no loss is R 62.
 * Any threshold can be turned off with the value "off".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quality.h"

#define PROG "parley-quality"
enum { EXIT_PASS = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INPUT = 3 };

typedef struct threshold {
    const char *name; /* option without the dashes, and the JSON key with - turned into _ */
    double value;
    bool on;
} threshold;

enum { T_MIN_STOI, T_MAX_DEAD_AIR, T_MAX_DELAY, T_MIN_R, T_MAX_LSD, T_MAX_CONCEALED, T_MIN_CORR, T_COUNT };

typedef struct opts {
    const char *sent, *recorded;
    bool json;
    double max_lag_ms;
    double loss_pct;
    bool have_loss;
    double burst_len;
    double concealed;
    bool have_concealed;
    double ie, bpl;
    threshold t[T_COUNT];
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s SENT.wav RECORDED.wav [options]\n"
            "  --json                  one JSON object on stdout\n"
            "  --max-lag-ms MS         search the delay within +-MS (default 2000)\n"
            "  --loss-pct P            packet loss for the E-model (the receiver's figure)\n"
            "  --burst-len L           mean loss burst length in packets (default: random loss)\n"
            "  --concealed-fraction F  the receiver's concealed share of audio, 0..1 (reported;\n"
            "                          also the E-model's loss when --loss-pct is absent)\n"
            "  --ie X --bpl X          codec impairment values (default Opus estimate: Ie %.1f, Bpl %.1f)\n"
            "thresholds (exit 1 when one fails; 'off' disables):\n"
            "  --min-stoi X            default 0.70\n"
            "  --max-dead-air X        fraction of active speech frames near-silent, default 0.10\n"
            "  --max-delay-ms MS       default 400\n"
            "  --min-r X               R (E-model estimate), default 60\n"
            "  --max-lsd-db X          log-spectral distance, default off\n"
            "  --max-concealed X       default off (needs --concealed-fraction)\n"
            "  --min-correlation X     peak normalised cross-correlation, default off\n"
            "exit: 0 pass, 1 a threshold failed, 2 usage, 3 unreadable or unmeasurable input\n",
            PROG, PL_EMODEL_OPUS_IE, PL_EMODEL_OPUS_BPL);
}

static bool parse_num(const char *s, double *out)
{
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_opts(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_lag_ms = 2000;
    o->ie = PL_EMODEL_OPUS_IE;
    o->bpl = PL_EMODEL_OPUS_BPL;
    threshold defaults[T_COUNT] = {
        [T_MIN_STOI] = {"min-stoi", 0.70, true},       [T_MAX_DEAD_AIR] = {"max-dead-air", 0.10, true},
        [T_MAX_DELAY] = {"max-delay-ms", 400, true},   [T_MIN_R] = {"min-r", 60, true},
        [T_MAX_LSD] = {"max-lsd-db", 0, false},        [T_MAX_CONCEALED] = {"max-concealed", 0, false},
        [T_MIN_CORR] = {"min-correlation", 0, false},
    };
    memcpy(o->t, defaults, sizeof defaults);
    int positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(a, "--", 2) != 0) {
            if (positional == 0) o->sent = a;
            else if (positional == 1) o->recorded = a;
            else goto bad;
            positional++;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (!v) goto bad;
        i++;
        double x;
        bool matched = false;
        for (int k = 0; k < T_COUNT; k++) {
            if (strcmp(a + 2, o->t[k].name) != 0) continue;
            matched = true;
            if (strcmp(v, "off") == 0) o->t[k].on = false;
            else if (parse_num(v, &x)) {
                o->t[k].value = x;
                o->t[k].on = true;
            } else
                goto bad;
        }
        if (matched) continue;
        if (!parse_num(v, &x)) goto bad;
        if (strcmp(a, "--max-lag-ms") == 0 && x >= 0) o->max_lag_ms = x;
        else if (strcmp(a, "--loss-pct") == 0 && x >= 0 && x <= 100) {
            o->loss_pct = x;
            o->have_loss = true;
        } else if (strcmp(a, "--burst-len") == 0 && x >= 1) o->burst_len = x;
        else if (strcmp(a, "--concealed-fraction") == 0 && x >= 0 && x <= 1) {
            o->concealed = x;
            o->have_concealed = true;
        } else if (strcmp(a, "--ie") == 0 && x >= 0 && x <= 95) o->ie = x;
        else if (strcmp(a, "--bpl") == 0 && x > 0) o->bpl = x;
        else goto bad;
        continue;
    bad:
        fprintf(stderr, "%s: bad or unknown argument '%s'%s%s\n", PROG, a, v ? " " : "", v ? v : "");
        return false;
    }
    if (!o->sent || !o->recorded) {
        fprintf(stderr, "%s: need SENT.wav and RECORDED.wav\n", PROG);
        return false;
    }
    return true;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1000.0 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static int input_error(const char *what, const char *path, pl_quality_err err)
{
    fprintf(stderr, "%s: %s %s: %s\n", PROG, what, path, pl_quality_strerror(err));
    return EXIT_INPUT;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return EXIT_PASS;
    }
    opts o;
    if (!parse_opts(argc - 1, argv + 1, &o)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    pl_quality_audio ref, rec;
    pl_quality_err err = pl_quality_wav_load(o.sent, &ref);
    if (err) return input_error("cannot read", o.sent, err);
    err = pl_quality_wav_load(o.recorded, &rec);
    if (err) {
        pl_quality_audio_free(&ref);
        return input_error("cannot read", o.recorded, err);
    }
    int rc = EXIT_INPUT;
    float *aligned = NULL;
    if (rec.rate != ref.rate) {
        fprintf(stderr, "%s: the recording is at %u Hz but the sent file at %u Hz\n", PROG, rec.rate, ref.rate);
        goto done;
    }
    uint32_t rate = ref.rate;

    /* 1. Delay. An empty recording is silence: no lag, no correlation. */
    pl_quality_delay d = {0};
    long max_lag = (long)(o.max_lag_ms * rate / 1000.0);
    if (rec.len > 0) {
        err = pl_quality_find_delay(ref.samples, ref.len, rec.samples, rec.len, rate, -max_lag, max_lag, &d);
        if (err) {
            input_error("cannot correlate", o.recorded, err);
            goto done;
        }
    }
    aligned = malloc((ref.len ? ref.len : 1) * sizeof *aligned);
    if (!aligned) goto done;
    pl_quality_align(rec.samples, rec.len, d.lag, aligned, ref.len);

    /* 2. Intelligibility and the frame measures on the aligned recording. */
    double stoi = 0;
    err = pl_quality_stoi(ref.samples, aligned, ref.len, rate, &stoi);
    if (err) {
        input_error("cannot measure STOI of", o.sent, err);
        goto done;
    }
    pl_quality_frames fr;
    err = pl_quality_compare_frames(ref.samples, aligned, ref.len, rate, &fr);
    if (err) {
        input_error("cannot compare frames of", o.sent, err);
        goto done;
    }

    /* 3. The E-model estimate: loss from the caller, else the concealed share. */
    const char *loss_source = "none";
    double loss_pct = 0;
    if (o.have_loss) {
        loss_pct = o.loss_pct;
        loss_source = "loss-pct";
    } else if (o.have_concealed) {
        loss_pct = 100.0 * o.concealed;
        loss_source = "concealed-fraction";
    }
    pl_emodel_input ein = {.delay_ms = d.lag_ms > 0 ? d.lag_ms : 0, .loss_pct = loss_pct, .ie = o.ie, .bpl = o.bpl};
    ein.burst_r = o.burst_len > 0 ? pl_quality_burst_r(loss_pct / 100.0, o.burst_len) : 1.0;
    pl_emodel_result em;
    pl_quality_emodel(&ein, &em);

    /* 4. Verdict. */
    double measured[T_COUNT] = {
        [T_MIN_STOI] = stoi,   [T_MAX_DEAD_AIR] = fr.dead_air,  [T_MAX_DELAY] = d.lag_ms, [T_MIN_R] = em.r,
        [T_MAX_LSD] = fr.lsd_db, [T_MAX_CONCEALED] = o.concealed, [T_MIN_CORR] = d.peak,
    };
    bool failed[T_COUNT] = {0};
    int nfailed = 0;
    for (int k = 0; k < T_COUNT; k++) {
        if (!o.t[k].on) continue;
        if (k == T_MAX_CONCEALED && !o.have_concealed) continue;
        bool is_min = strncmp(o.t[k].name, "min-", 4) == 0;
        failed[k] = is_min ? measured[k] < o.t[k].value : measured[k] > o.t[k].value;
        nfailed += failed[k];
    }
    double took = elapsed_ms(&t0);

    if (o.json) {
        printf("{\"pass\":%s,\"sent\":{\"path\":", nfailed ? "false" : "true");
        json_string(o.sent);
        printf(",\"seconds\":%.3f},\"recorded\":{\"path\":", (double)ref.len / rate);
        json_string(o.recorded);
        printf(",\"seconds\":%.3f},\"rate\":%u,\"delay_ms\":%.3f,\"delay_samples\":%ld,\"correlation\":%.4f,"
               "\"stoi\":%.4f,\"lsd_db\":%.3f,\"level_db\":%.2f,\"dead_air\":%.4f,\"active_frames\":%zu,"
               "\"concealed_fraction\":",
               (double)rec.len / rate, rate, d.lag_ms, d.lag, d.peak, stoi, fr.lsd_db, fr.level_db, fr.dead_air,
               fr.active);
        if (o.have_concealed) printf("%.4f", o.concealed);
        else printf("null");
        printf(",\"r_estimate\":{\"label\":\"R (E-model estimate)\",\"r\":%.2f,\"delay_ms\":%.3f,\"loss_pct\":%.3f,"
               "\"loss_source\":\"%s\",\"burst_r\":%.3f,\"ie\":%.2f,\"bpl\":%.2f,\"id\":%.3f,\"ie_eff\":%.3f},"
               "\"thresholds\":{",
               em.r, ein.delay_ms, loss_pct, loss_source, ein.burst_r, o.ie, o.bpl, em.id, em.ie_eff);
        for (int k = 0; k < T_COUNT; k++) {
            printf("%s\"", k ? "," : "");
            for (const char *c = o.t[k].name; *c; c++) putchar(*c == '-' ? '_' : *c);
            if (o.t[k].on) printf("\":%g", o.t[k].value);
            else printf("\":null");
        }
        printf("},\"failures\":[");
        int shown = 0;
        for (int k = 0; k < T_COUNT; k++)
            if (failed[k]) printf("%s\"%s\"", shown++ ? "," : "", o.t[k].name);
        printf("],\"elapsed_ms\":%.1f}\n", took);
    } else {
        const char *mark[2] = {"pass", "FAIL"};
        printf("sent       %s: %.2f s at %u Hz\n", o.sent, (double)ref.len / rate, rate);
        printf("recorded   %s: %.2f s\n", o.recorded, (double)rec.len / rate);
        printf("delay      %.2f ms (%ld samples), correlation %.3f", d.lag_ms, d.lag, d.peak);
        if (o.t[T_MAX_DELAY].on) printf("   (max %g ms) %s", o.t[T_MAX_DELAY].value, mark[failed[T_MAX_DELAY]]);
        printf("\n");
        printf("STOI       %.3f", stoi);
        if (o.t[T_MIN_STOI].on) printf("   (min %g) %s", o.t[T_MIN_STOI].value, mark[failed[T_MIN_STOI]]);
        printf("\n");
        printf("LSD        %.2f dB over %zu active frames", fr.lsd_db, fr.active);
        if (o.t[T_MAX_LSD].on) printf("   (max %g dB) %s", o.t[T_MAX_LSD].value, mark[failed[T_MAX_LSD]]);
        printf("\nlevel      %+.1f dB\n", fr.level_db);
        printf("dead air   %.1f%% of active frames", 100 * fr.dead_air);
        if (o.t[T_MAX_DEAD_AIR].on)
            printf("   (max %g%%) %s", 100 * o.t[T_MAX_DEAD_AIR].value, mark[failed[T_MAX_DEAD_AIR]]);
        printf("\n");
        if (o.have_concealed) {
            printf("concealed  %.1f%% (receiver's statistics)", 100 * o.concealed);
            if (o.t[T_MAX_CONCEALED].on)
                printf("   (max %g%%) %s", 100 * o.t[T_MAX_CONCEALED].value, mark[failed[T_MAX_CONCEALED]]);
            printf("\n");
        }
        printf("R (E-model estimate) %.1f at %.1f ms, %.2f%% loss (%s), BurstR %.2f, Ie %.1f, Bpl %.1f", em.r,
               ein.delay_ms, loss_pct, loss_source, ein.burst_r, o.ie, o.bpl);
        if (o.t[T_MIN_R].on) printf("   (min %g) %s", o.t[T_MIN_R].value, mark[failed[T_MIN_R]]);
        printf("\n");
        if (o.t[T_MIN_CORR].on)
            printf("correlation threshold (min %g) %s\n", o.t[T_MIN_CORR].value, mark[failed[T_MIN_CORR]]);
        printf("result     %s (analysis took %.0f ms)\n", nfailed ? "FAIL" : "PASS", took);
    }
    rc = nfailed ? EXIT_FAIL : EXIT_PASS;
done:
    free(aligned);
    pl_quality_audio_free(&ref);
    pl_quality_audio_free(&rec);
    return rc;
}
