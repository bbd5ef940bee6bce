/* spm.c - sentencepiece tokenizer.model loader with its own protobuf wire-format reader
 * (field numbers as in sentencepiece_model.proto). Invariant: every read is bounded by its
 * enclosing message, so a truncated or corrupt file is FTQ_EFORMAT naming the byte offset. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

typedef struct {
    const unsigned char *p; /* whole file */
    size_t pos, end;        /* current position and end of the enclosing message */
    const char *path;
} pb;

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

static int pb_fail(const pb *r, size_t at, const char *what)
{
    return ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': %s at byte offset %zu", r->path, what, at);
}

static int pb_varint(pb *r, uint64_t *v)
{
    size_t start = r->pos;
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->pos >= r->end)
            return pb_fail(r, start, "truncated varint");
        unsigned char b = r->p[r->pos++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return FTQ_OK;
        }
        if (shift == 63)
            break;
    }
    return pb_fail(r, start, "varint longer than 10 bytes");
}

static int pb_key(pb *r, uint32_t *field, int *wire)
{
    size_t at = r->pos;
    uint64_t k = 0;
    int rc = pb_varint(r, &k);
    if (rc)
        return rc;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    if (*field == 0 || k >> 32)
        return pb_fail(r, at, "invalid field number");
    return FTQ_OK;
}

/* A length-delimited field: a sub-reader over its bytes; r moves past it. */
static int pb_len(pb *r, pb *sub)
{
    size_t at = r->pos;
    uint64_t n = 0;
    int rc = pb_varint(r, &n);
    if (rc)
        return rc;
    if (n > r->end - r->pos)
        return pb_fail(r, at, "truncated length-delimited field");
    *sub = (pb){r->p, r->pos, r->pos + (size_t)n, r->path};
    r->pos += (size_t)n;
    return FTQ_OK;
}

static int pb_fixed32(pb *r, uint32_t *v)
{
    if (r->end - r->pos < 4)
        return pb_fail(r, r->pos, "truncated fixed32");
    const unsigned char *b = r->p + r->pos;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    r->pos += 4;
    return FTQ_OK;
}

static int pb_skip(pb *r, int wire, size_t at)
{
    uint64_t v;
    uint32_t w;
    pb sub;
    switch (wire) {
    case WIRE_VARINT: return pb_varint(r, &v);
    case WIRE_I32: return pb_fixed32(r, &w);
    case WIRE_LEN: return pb_len(r, &sub);
    case WIRE_I64:
        if (r->end - r->pos < 8)
            return pb_fail(r, r->pos, "truncated fixed64");
        r->pos += 8;
        return FTQ_OK;
    default: return pb_fail(r, at, "unsupported wire type");
    }
}

/* Read a field of an expected wire type; anything else is corrupt. */
static int want(const pb *r, int wire, int expected, size_t at)
{
    return wire == expected ? FTQ_OK : pb_fail(r, at, "unexpected wire type");
}

static int pb_int(pb *r, int wire, size_t at, int64_t *v)
{
    uint64_t x = 0;
    int rc = want(r, wire, WIRE_VARINT, at);
    if (!rc)
        rc = pb_varint(r, &x);
    if (!rc)
        *v = (int64_t)(int32_t)(uint32_t)x; /* int32/enum/bool: negative values are 10-byte varints */
    return rc;
}

typedef struct {
    pb text; /* piece bytes (pos..end) */
    float score;
    int type;
} spm_piece;

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER_DEFINED = 4, SP_UNUSED = 5, SP_BYTE = 6 };

static int parse_piece(pb *r, spm_piece *out)
{
    memset(out, 0, sizeof *out);
    out->type = SP_NORMAL;
    int have_piece = 0;
    size_t start = r->pos;
    while (r->pos < r->end) {
        size_t at = r->pos;
        uint32_t f;
        int wire, rc = pb_key(r, &f, &wire);
        int64_t v;
        uint32_t bits = 0;
        if (rc)
            return rc;
        if (f == 1) {
            if ((rc = want(r, wire, WIRE_LEN, at)) || (rc = pb_len(r, &out->text)))
                return rc;
            have_piece = 1;
        } else if (f == 2) {
            if ((rc = want(r, wire, WIRE_I32, at)) || (rc = pb_fixed32(r, &bits)))
                return rc;
            memcpy(&out->score, &bits, 4);
        } else if (f == 3) {
            if ((rc = pb_int(r, wire, at, &v)))
                return rc;
            if (v < SP_NORMAL || v > SP_BYTE)
                return pb_fail(r, at, "unknown piece type");
            out->type = (int)v;
        } else if ((rc = pb_skip(r, wire, at))) {
            return rc;
        }
    }
    return have_piece ? FTQ_OK : pb_fail(r, start, "piece without text");
}

typedef struct {
    int64_t model_type, unk_id, bos_id, eos_id;
    int byte_fallback, ws_suffix;
} trainer_spec;

static int parse_trainer(pb *r, trainer_spec *ts)
{
    *ts = (trainer_spec){1, 0, 1, 2, 0, 0}; /* proto defaults: UNIGRAM, unk 0, bos 1, eos 2 */
    while (r->pos < r->end) {
        size_t at = r->pos;
        uint32_t f;
        int wire, rc = pb_key(r, &f, &wire);
        int64_t v;
        if (rc)
            return rc;
        if (f == 3 || f == 24 || f == 35 || f == 40 || f == 41 || f == 42) {
            if ((rc = pb_int(r, wire, at, &v)))
                return rc;
            if (f == 3)
                ts->model_type = v;
            else if (f == 24)
                ts->ws_suffix = v != 0;
            else if (f == 35)
                ts->byte_fallback = v != 0;
            else if (f == 40)
                ts->unk_id = v;
            else if (f == 41)
                ts->bos_id = v;
            else
                ts->eos_id = v;
        } else if ((rc = pb_skip(r, wire, at))) {
            return rc;
        }
    }
    return FTQ_OK;
}

typedef struct {
    pb name;
    size_t charsmap_len;
    int dummy_prefix, remove_ws, escape_ws;
} normalizer_spec;

static int parse_normalizer(pb *r, normalizer_spec *ns)
{
    memset(ns, 0, sizeof *ns);
    ns->dummy_prefix = ns->remove_ws = ns->escape_ws = 1; /* proto defaults */
    while (r->pos < r->end) {
        size_t at = r->pos;
        uint32_t f;
        int wire, rc = pb_key(r, &f, &wire);
        int64_t v;
        pb sub;
        if (rc)
            return rc;
        if (f == 1) {
            if ((rc = want(r, wire, WIRE_LEN, at)) || (rc = pb_len(r, &ns->name)))
                return rc;
        } else if (f == 2) {
            if ((rc = want(r, wire, WIRE_LEN, at)) || (rc = pb_len(r, &sub)))
                return rc;
            ns->charsmap_len = sub.end - sub.pos;
        } else if (f == 3 || f == 4 || f == 5) {
            if ((rc = pb_int(r, wire, at, &v)))
                return rc;
            *(f == 3 ? &ns->dummy_prefix : f == 4 ? &ns->remove_ws : &ns->escape_ws) = v != 0;
        } else if ((rc = pb_skip(r, wire, at))) {
            return rc;
        }
    }
    return FTQ_OK;
}

static int load_pieces(ftq_tokenizer *t, const spm_piece *pcs, size_t n, const char *path)
{
    int rc = ftq_tok_enable_scores(t);
    if (!rc)
        rc = ftq_tok_allow_ids(t, path, n);
    for (size_t i = 0; i < n && !rc; i++) {
        const char *s = (const char *)pcs[i].text.p + pcs[i].text.pos;
        size_t len = pcs[i].text.end - pcs[i].text.pos;
        int32_t id = (int32_t)i, dup;
        if (ftq_strmap_get(&t->vocab, s, len, &dup))
            return ftq_set_error(FTQ_EFORMAT, "cannot load '%s': piece %ld duplicates piece %ld", path, (long)id,
                                 (long)dup);
        if ((rc = ftq_tok_set_piece(t, id, s, len)) || (rc = ftq_strmap_put(&t->vocab, s, len, id)))
            return rc;
        t->score[id] = pcs[i].score;
        switch (pcs[i].type) {
        case SP_NORMAL: t->flags[id] = TOKF_MERGEABLE; break;
        case SP_UNUSED: t->flags[id] = TOKF_MERGEABLE | TOKF_UNUSED; break;
        case SP_USER_DEFINED:
            t->flags[id] = TOKF_MERGEABLE | TOKF_USER;
            if (len)
                t->user_first[(unsigned char)s[0]] = 1;
            rc = ftq_ivec_push(&t->user_defined, id);
            break;
        case SP_UNKNOWN: t->flags[id] = TOKF_UNKNOWN | TOKF_SPECIAL; break;
        case SP_CONTROL: t->flags[id] = TOKF_CONTROL | TOKF_SPECIAL; break;
        case SP_BYTE: t->flags[id] = TOKF_BYTE; break;
        }
    }
    return rc;
}

int ftq_tok_load_spm(ftq_tokenizer *t, const char *dir)
{
    char *path = ftq_path_join(dir, "tokenizer.model");
    if (!path)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    char *data = NULL;
    size_t size = 0;
    spm_piece *pcs = NULL;
    size_t npcs = 0, cap = 0;
    trainer_spec ts = {0};
    normalizer_spec ns = {0};
    int have_ts = 0, have_ns = 0;
    int rc = ftq_is_file(path) ? ftq_read_file_max(path, FTQ_MAX_TOKENIZER_BYTES, &data, &size)
                               : ftq_set_error(FTQ_ENOTFOUND, "cannot load tokenizer: '%s' not found", path);
    pb r = {(const unsigned char *)data, 0, size, path};
    while (!rc && r.pos < r.end) {
        size_t at = r.pos;
        uint32_t f;
        int wire;
        pb sub;
        if ((rc = pb_key(&r, &f, &wire)))
            break;
        if (f < 1 || f > 3) {
            rc = pb_skip(&r, wire, at);
            continue;
        }
        if ((rc = want(&r, wire, WIRE_LEN, at)) || (rc = pb_len(&r, &sub)))
            break;
        if (f == 1) {
            if (npcs == cap) {
                cap = cap ? cap * 2 : 1024;
                spm_piece *p = realloc(pcs, cap * sizeof *p);
                if (!p) {
                    rc = ftq_set_error(FTQ_ENOMEM, "out of memory for %zu pieces", cap);
                    break;
                }
                pcs = p;
            }
            rc = parse_piece(&sub, &pcs[npcs++]);
        } else if (f == 2) {
            rc = parse_trainer(&sub, &ts);
            have_ts = 1;
        } else {
            rc = parse_normalizer(&sub, &ns);
            have_ns = 1;
        }
    }
    /* Real models always carry both specs (they follow the pieces), so a file cut short
     * anywhere is caught even when the cut falls on a field boundary. */
    if (!rc && (npcs == 0 || !have_ts || !have_ns))
        rc = ftq_set_error(FTQ_EFORMAT, "cannot parse '%s': %s missing (truncated file?) at byte offset %zu", path,
                           npcs == 0 ? "pieces" : !have_ts ? "trainer_spec" : "normalizer_spec", size);
    if (!rc && ts.model_type != 1 && ts.model_type != 2) {
        static const char *const names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': sentencepiece model type %s is not supported "
                           "(only UNIGRAM and BPE)", path, ts.model_type >= 1 && ts.model_type <= 4 ? names[ts.model_type] : "?");
    }
    if (!rc && ts.ws_suffix)
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': treat_whitespace_as_suffix is not supported", path);
    if (!rc && ns.charsmap_len) {
        size_t nl = ns.name.end - ns.name.pos;
        rc = ftq_set_error(FTQ_EUNSUPPORTED, "cannot load '%s': normalizer '%.*s' (precompiled charsmap) is not "
                           "supported, only identity", path, (int)(nl > 64 ? 64 : nl),
                           nl ? (const char *)ns.name.p + ns.name.pos : "");
    }
    if (!rc)
        rc = load_pieces(t, pcs, npcs, path);
    if (!rc && (ts.unk_id < 0 || ts.unk_id >= (int64_t)npcs || !(t->flags[ts.unk_id] & TOKF_UNKNOWN)))
        rc = ftq_set_error(FTQ_EFORMAT, "cannot load '%s': unk_id %ld is not an UNKNOWN piece", path,
                           (long)ts.unk_id);
    if (!rc) {
        t->model = ts.model_type == 1 ? TOK_MODEL_UNIGRAM : TOK_MODEL_BPE_SCORE;
        t->uni_min_score = FLT_MAX; /* as sentencepiece: max starts at FLT_MIN (the smallest positive */
        t->uni_max_score = FLT_MIN; /* float), so with negative scores user-defined pieces score -0.1 a byte */
        for (size_t i = 0; i < npcs; i++)
            if (pcs[i].type == SP_NORMAL) {
                t->uni_min_score = pcs[i].score < t->uni_min_score ? pcs[i].score : t->uni_min_score;
                t->uni_max_score = pcs[i].score > t->uni_max_score ? pcs[i].score : t->uni_max_score;
            }
        t->norm = TOK_NORM_SPM;
        t->decoder = TOK_DEC_SPM;
        t->unk_id = (int32_t)ts.unk_id;
        t->byte_fallback = ts.byte_fallback;
        t->bos_id = ts.bos_id >= 0 && ts.bos_id < (int64_t)npcs ? (int32_t)ts.bos_id : -1;
        t->eos_id = ts.eos_id >= 0 && ts.eos_id < (int64_t)npcs ? (int32_t)ts.eos_id : -1;
        t->spm_dummy_prefix = ns.dummy_prefix;
        t->spm_remove_ws = ns.remove_ws;
        t->spm_escape_ws = ns.escape_ws;
        snprintf(t->name, sizeof t->name, "tokenizer.model (sentencepiece %s%s)",
                 ts.model_type == 1 ? "unigram" : "BPE", ts.byte_fallback ? ", byte fallback" : "");
    }
    free(pcs);
    free(data);
    free(path);
    return rc;
}
