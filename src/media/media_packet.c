/* media_packet.c - voice packets and receiver reports; see media_packet.h. */
#include "media_packet.h"

#include "wire.h"

const char *pl_mpkt_strerror(pl_mpkt_err err)
{
    switch (err) {
    case PL_MPKT_OK: return "ok";
    case PL_MPKT_ERR_TYPE: return "not a media payload";
    case PL_MPKT_ERR_MALFORMED: return "malformed media payload";
    case PL_MPKT_ERR_BUFFER: return "output buffer too small";
    }
    return "unknown media packet error";
}

pl_mpkt_err pl_mpkt_voice_encode(const pl_mpkt_voice *v, uint8_t *buf, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if ((v->flags & ~PL_MPKT_F_VOICE_ALL) || v->opus_len < 1 || v->opus_len > PL_VOICE_MAX_PACKET)
        return PL_MPKT_ERR_MALFORMED;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_MPKT_VOICE);
    pl_write_u8(&w, v->flags);
    pl_write_u16(&w, v->seq);
    pl_write_u32(&w, v->timestamp);
    pl_write_bytes(&w, v->opus, v->opus_len);
    if (w.err) return PL_MPKT_ERR_BUFFER;
    *out_len = w.off;
    return PL_MPKT_OK;
}

pl_mpkt_err pl_mpkt_voice_decode(pl_mpkt_voice *v, const uint8_t *buf, size_t len)
{
    pl_reader r = pl_reader_make(buf, len);
    if (pl_read_u8(&r) != PL_MPKT_VOICE) return r.err ? PL_MPKT_ERR_MALFORMED : PL_MPKT_ERR_TYPE;
    v->flags = pl_read_u8(&r);
    v->seq = pl_read_u16(&r);
    v->timestamp = pl_read_u32(&r);
    v->opus_len = pl_reader_left(&r);
    v->opus = pl_read_ptr(&r, v->opus_len);
    if (r.err || !pl_reader_done(&r) || (v->flags & ~PL_MPKT_F_VOICE_ALL) || v->opus_len < 1 ||
        v->opus_len > PL_VOICE_MAX_PACKET)
        return PL_MPKT_ERR_MALFORMED;
    return PL_MPKT_OK;
}

/* Canonical form: a field whose validity flag is clear must be zero, so one
 * report has one encoding. */
static bool report_canonical(const pl_mpkt_report *r)
{
    if (r->flags & ~PL_MPKT_R_ALL) return false;
    if (!(r->flags & PL_MPKT_R_RECEPTION) &&
        (r->fraction_lost || r->cumulative_lost || r->highest_seq || r->jitter))
        return false;
    if (!(r->flags & PL_MPKT_R_LSR) && (r->lsr || r->dlsr)) return false;
    return true;
}

pl_mpkt_err pl_mpkt_report_encode(const pl_mpkt_report *r, uint8_t *buf, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (!report_canonical(r)) return PL_MPKT_ERR_MALFORMED;
    pl_writer w = pl_writer_make(buf, cap);
    pl_write_u8(&w, PL_MPKT_REPORT);
    pl_write_u8(&w, r->flags);
    pl_write_u8(&w, r->fraction_lost);
    pl_write_u8(&w, 0);
    pl_write_u32(&w, r->cumulative_lost);
    pl_write_u32(&w, r->highest_seq);
    pl_write_u32(&w, r->jitter);
    pl_write_u32(&w, r->timestamp);
    pl_write_u32(&w, r->lsr);
    pl_write_u32(&w, r->dlsr);
    if (w.err) return PL_MPKT_ERR_BUFFER;
    *out_len = w.off;
    return PL_MPKT_OK;
}

pl_mpkt_err pl_mpkt_report_decode(pl_mpkt_report *r, const uint8_t *buf, size_t len)
{
    pl_reader rd = pl_reader_make(buf, len);
    if (pl_read_u8(&rd) != PL_MPKT_REPORT) return rd.err ? PL_MPKT_ERR_MALFORMED : PL_MPKT_ERR_TYPE;
    r->flags = pl_read_u8(&rd);
    r->fraction_lost = pl_read_u8(&rd);
    uint8_t reserved = pl_read_u8(&rd);
    r->cumulative_lost = pl_read_u32(&rd);
    r->highest_seq = pl_read_u32(&rd);
    r->jitter = pl_read_u32(&rd);
    r->timestamp = pl_read_u32(&rd);
    r->lsr = pl_read_u32(&rd);
    r->dlsr = pl_read_u32(&rd);
    if (!pl_reader_done(&rd) || reserved != 0 || !report_canonical(r)) return PL_MPKT_ERR_MALFORMED;
    return PL_MPKT_OK;
}

uint32_t pl_mpkt_us_to_compact(pl_time us)
{
    /* us * 65536 / 10^6 without overflow for any pl_time: split seconds. */
    uint64_t s = us / PL_SEC, frac = us % PL_SEC;
    return (uint32_t)((s << 16) + (frac << 16) / PL_SEC);
}

uint32_t pl_mpkt_compact_time(pl_time t) { return pl_mpkt_us_to_compact(t); }

pl_time pl_mpkt_compact_to_us(uint32_t c) { return ((pl_time)c * PL_SEC) >> 16; }

bool pl_mpkt_report_rtt(const pl_mpkt_report *r, pl_time now, pl_time *rtt)
{
    if (!(r->flags & PL_MPKT_R_LSR)) return false;
    uint32_t diff = pl_mpkt_compact_time(now) - r->lsr - r->dlsr;
    /* A negative result wraps to a huge value; a minute is far beyond any
     * real round trip. */
    if (diff > 60u * 65536u) return false;
    *rtt = pl_mpkt_compact_to_us(diff);
    return true;
}
