/* template.c - TemplateProcessing: the special tokens and token type ids placed around
 * one sequence ([CLS] A [SEP]) or a pair ([CLS] A [SEP] B [SEP]).
 * Invariant: a single template holds A exactly once, a pair template A and B once each. */
#include <stdlib.h>
#include <string.h>

#include "io/tokenizer/internal.h"

static int check_tmpl(const ftq_tok_tmpl *x, int n, int pair)
{
    int na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        na += x[i].id == FTQ_TMPL_A;
        nb += x[i].id == FTQ_TMPL_B;
        if (x[i].id < FTQ_TMPL_B || x[i].type < 0 || x[i].type > 255)
            return ftq_set_error(FTQ_EFORMAT, "template item %d: bad id %ld or type id %d", i, (long)x[i].id,
                                 x[i].type);
    }
    if (na != 1 || nb != (pair ? 1 : 0))
        return ftq_set_error(FTQ_EFORMAT, "%s template must hold %s exactly once", pair ? "pair" : "single",
                             pair ? "sequences A and B" : "sequence A");
    return FTQ_OK;
}

static int copy_tmpl(ftq_tok_tmpl **dst, int *nd, const ftq_tok_tmpl *src, int n)
{
    ftq_tok_tmpl *p = n ? malloc((size_t)n * sizeof *p) : NULL;
    if (n && !p)
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    if (n)
        memcpy(p, src, (size_t)n * sizeof *p);
    free(*dst);
    *dst = p;
    *nd = n;
    return FTQ_OK;
}

int ftq_tok_set_templates(ftq_tokenizer *t, const ftq_tok_tmpl *single, int n_single, const ftq_tok_tmpl *pair,
                          int n_pair)
{
    int rc = single ? check_tmpl(single, n_single, 0) : FTQ_OK;
    if (!rc && pair)
        rc = check_tmpl(pair, n_pair, 1);
    if (!rc && single) {
        t->prefix.n = t->suffix.n = 0;
        int seen = 0;
        for (int i = 0; i < n_single && !rc; i++) {
            if (single[i].id == FTQ_TMPL_A)
                seen = 1;
            else
                rc = ftq_ivec_push(seen ? &t->suffix : &t->prefix, single[i].id);
        }
        if (!rc)
            rc = copy_tmpl(&t->tmpl_single, &t->n_tmpl_single, single, n_single);
    }
    if (!rc && pair)
        rc = copy_tmpl(&t->tmpl_pair, &t->n_tmpl_pair, pair, n_pair);
    return rc;
}

int ftq_tokenizer_has_pair_template(const ftq_tokenizer *t) { return t && t->n_tmpl_pair > 0; }

int ftq_tokenizer_num_special(const ftq_tokenizer *t, int pair)
{
    int n = 0;
    const ftq_tok_tmpl *tm = pair ? t->tmpl_pair : t->tmpl_single;
    int ntm = pair ? t->n_tmpl_pair : t->n_tmpl_single;
    for (int i = 0; i < ntm; i++)
        n += tm[i].id >= 0;
    if (!pair && !ntm)
        n = (int)(t->prefix.n + t->suffix.n);
    return n;
}

int ftq_tokenizer_apply_template(const ftq_tokenizer *t, const int32_t *a, size_t na, const int32_t *b, size_t nb,
                                 int32_t **ids, int32_t **type_ids, size_t *n)
{
    if (!t || !ids || !n || (!a && na) || (!b && nb))
        return ftq_set_error(FTQ_EINVAL, "cannot apply the template: NULL argument");
    *ids = NULL;
    if (type_ids)
        *type_ids = NULL;
    *n = 0;
    if (b && !t->n_tmpl_pair)
        return ftq_set_error(FTQ_EUNSUPPORTED, "cannot encode a pair of texts: tokenizer '%s' has no pair template",
                             t->name);
    /* a single text without a template: prefix A suffix (BOS/EOS as configured) */
    ftq_tok_tmpl fallback[3] = {{-3, 0}, {FTQ_TMPL_A, 0}, {-4, 0}};
    const ftq_tok_tmpl *tm = b ? t->tmpl_pair : t->n_tmpl_single ? t->tmpl_single : fallback;
    int ntm = b ? t->n_tmpl_pair : t->n_tmpl_single ? t->n_tmpl_single : 3;
    size_t total = na + nb + t->prefix.n + t->suffix.n + (size_t)ntm;
    int32_t *oi = malloc(total * sizeof *oi), *ot = malloc(total * sizeof *ot);
    if (!oi || !ot) {
        free(oi);
        free(ot);
        return ftq_set_error(FTQ_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (int i = 0; i < ntm; i++) {
        const int32_t *src = &tm[i].id;
        size_t cnt = 1;
        if (tm[i].id == FTQ_TMPL_A) {
            src = a;
            cnt = na;
        } else if (tm[i].id == FTQ_TMPL_B) {
            src = b;
            cnt = nb;
        } else if (tm[i].id == -3 || tm[i].id == -4) {
            src = tm[i].id == -3 ? t->prefix.v : t->suffix.v;
            cnt = tm[i].id == -3 ? t->prefix.n : t->suffix.n;
        }
        for (size_t j = 0; j < cnt; j++, k++) {
            oi[k] = src[j];
            ot[k] = tm[i].type;
        }
    }
    *ids = oi;
    *n = k;
    if (type_ids)
        *type_ids = ot;
    else
        free(ot);
    return FTQ_OK;
}
