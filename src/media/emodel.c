/*
 * emodel.c - an E-model transmission rating (ITU-T G.107) from delay and
 * packet loss, for the quality harness; see quality.h.
 *
 * This is G.107's algorithm (clause 7; the 06/2015 edition) with every
 * parameter at its default value (Table 3: SLR 8 dB, RLR 2 dB, STMR 15 dB,
 * LSTR 18 dB, Ds = Dr = 3, TELR 65 dB, WEPL 110 dB, qdu 1, Nc -70 dBm0p,
 * Nfor -64 dBmp, Ps = Pr = 35 dB(A), A 0) except four that a call measures:
 * the mean one-way delay T (taken as the absolute delay Ta as well, with the
 * listener-echo round trip Tr = 2T), the packet-loss probability Ppl, its
 * burstiness BurstR, and the codec's Ie and Bpl. With no delay and no loss
 * this gives the well-known default R = 93.2.
 *
 * The codec values for Opus are an estimate, not a standard: ITU-T G.113
 * Appendix I tabulates Ie and Bpl for G.711, G.729, AMR and others, but not
 * for Opus. We take:
 *  - Ie = 0: on the narrowband R scale, whose ceiling is G.711 (Ie 0),
 *    Opus at the wideband bit rates Parley uses (16 kbit/s and up) is not
 *    worse than G.711; the narrowband scale cannot give it credit for more.
 *  - Bpl = 25.1: G.113 Appendix I's value for G.711 with packet loss
 *    concealment (G.711 Appendix I). Opus conceals loss at least as well
 *    and adds in-band FEC, so this is if anything pessimistic.
 * Both can be overridden (parley-quality --ie/--bpl) once measurements on
 * this system give better ones; the output always calls the figure
 * "R (E-model estimate)" and never converts it to a MOS.
 */
#include <math.h>
#include <string.h>

#include "quality.h"

/* G.107 Table 3 defaults. */
#define SLR 8.0
#define RLR 2.0
#define STMR 15.0
#define LSTR 18.0
#define DS 3.0
#define TELR 65.0
#define WEPL 110.0
#define QDU 1.0
#define NC (-70.0)
#define NFOR (-64.0)
#define PS 35.0
#define PR 35.0
#define ADV 0.0

static double p10(double x)
{
    return pow(10.0, x / 10.0);
}

double pl_quality_burst_r(double loss, double mean_burst_len)
{
    /* For a two-state (Gilbert) loss process, BurstR = 1 / (p + q) with p the
     * probability of entering loss and q of leaving it; q = 1/L and, at loss
     * rate P, p = P q / (1 - P), so BurstR = L (1 - P). Random loss has
     * L = 1 / (1 - P) and BurstR = 1. */
    if (loss <= 0.0 || mean_burst_len <= 0.0) return 1.0;
    if (loss >= 1.0) return mean_burst_len;
    double b = mean_burst_len * (1.0 - loss);
    return b < 1.0 ? 1.0 : b;
}

void pl_quality_emodel(const pl_emodel_input *in, pl_emodel_result *out)
{
    memset(out, 0, sizeof *out);
    double t = in->delay_ms > 0 ? in->delay_ms : 0.0;
    double ta = t, tr = 2.0 * t;

    /* 7.2 Basic signal-to-noise ratio. */
    double olr = SLR + RLR;
    double nos = PS - SLR - DS - 100.0 + 0.004 * (PS - olr - DS - 14.0) * (PS - olr - DS - 14.0);
    double pre = PR + 10.0 * log10(1.0 + p10(10.0 - LSTR));
    double nor = RLR - 121.0 + pre + 0.008 * (pre - 35.0) * (pre - 35.0);
    double nfo = NFOR + RLR;
    double no = 10.0 * log10(p10(NC) + p10(nos) + p10(nor) + p10(nfo));
    double ro = 15.0 - 1.5 * (SLR + no);

    /* 7.3 Simultaneous impairment factor. */
    double xolr = olr + 0.2 * (64.0 + no - RLR);
    double iolr = 20.0 * (pow(1.0 + pow(xolr / 8.0, 8.0), 1.0 / 8.0) - xolr / 8.0);
    double stmro = -10.0 * log10(p10(-STMR) + exp(-t / 4.0) * p10(-TELR));
    double ist = 12.0 * pow(1.0 + pow((stmro - 13.0) / 6.0, 8.0), 1.0 / 8.0) -
                 28.0 * pow(1.0 + pow((stmro + 1.0) / 19.4, 35.0), 1.0 / 35.0) -
                 13.0 * pow(1.0 + pow((stmro - 3.0) / 33.0, 13.0), 1.0 / 13.0) + 29.0;
    double q = 37.0 - 15.0 * log10(QDU);
    double g = 1.07 + 0.258 * q + 0.0602 * q * q;
    double y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    double z = 46.0 / 30.0 - g / 40.0;
    double iq = 15.0 * log10(1.0 + pow(10.0, y) + pow(10.0, z));
    double is = iolr + ist + iq;

    /* 7.4 Delay impairment factor. */
    double roe = -1.5 * (no - RLR);
    double terv = TELR - 40.0 * log10((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * exp(-0.3 * t * t);
    if (STMR < 9.0) terv += ist / 2.0;
    double re = 80.0 + 2.5 * (terv - 14.0);
    double idte = ((roe - re) / 2.0 + sqrt((roe - re) * (roe - re) / 4.0 + 100.0) - 1.0) * (1.0 - exp(-t));
    if (STMR > 20.0) idte = sqrt(idte * idte + ist * ist);
    double rle = 10.5 * (WEPL + 7.0) * pow(tr + 1.0, -0.25);
    double idle = (ro - rle) / 2.0 + sqrt((ro - rle) * (ro - rle) / 4.0 + 169.0);
    double idd = 0.0;
    if (ta > 100.0) {
        double x = log10(ta / 100.0) / log10(2.0);
        idd = 25.0 * (pow(1.0 + pow(x, 6.0), 1.0 / 6.0) - 3.0 * pow(1.0 + pow(x / 3.0, 6.0), 1.0 / 6.0) + 2.0);
    }
    double id = idte + idle + idd;

    /* 7.5 Effective equipment impairment factor. */
    double ppl = in->loss_pct < 0 ? 0 : in->loss_pct > 100 ? 100 : in->loss_pct;
    double burst_r = in->burst_r >= 1.0 ? in->burst_r : 1.0;
    double bpl = in->bpl > 0 ? in->bpl : 1.0;
    double ie_eff = in->ie + (95.0 - in->ie) * ppl / (ppl / burst_r + bpl);

    double r = ro - is - id - ie_eff + ADV;
    out->r = r < 0 ? 0 : r > 100 ? 100 : r;
    out->ro_is = ro - is;
    out->id = id;
    out->idd = idd;
    out->ie_eff = ie_eff;
}
