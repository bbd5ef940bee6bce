/* fuzz_tok.h - what the tokenizer targets do with a tokenizer that loaded: encode a text
 * (from the input, or fixed samples that touch bytes, whitespace runs, multi-byte UTF-8
 * and special-token spellings) with and without special tokens, reading special-token text
 * as text and as the tokens (FTQ_ENCODE_PARSE_SPECIAL), decode the ids back with
 * and without skipping, and decode ids around the vocabulary's edges. */
#ifndef FTQ_FUZZ_TOK_H
#define FTQ_FUZZ_TOK_H

#include "fuzz_common.h"

#include "ftq_tokenizer.h"

#define FZ_MAX_TEXT 4096

static inline void fz_tok_roundtrip(const ftq_tokenizer *t, const char *text, size_t len)
{
    for (int special = 0; special < 4; special++) { /* bit 0: add special tokens, bit 1: parse special text */
        int32_t *ids = NULL;
        size_t n = 0;
        if (ftq_tokenizer_encode_flags(t, text, len, (unsigned)special, &ids, &n) != FTQ_OK) {
            fz_refused();
            continue;
        }
        int nv = ftq_tokenizer_vocab_size(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nv)
                __builtin_trap(); /* encode produced an id outside the vocabulary */
        char *out = NULL;
        size_t olen = 0;
        if (ftq_tokenizer_decode(t, ids, n, special & 1, &out, &olen) == FTQ_OK) {
            if (strlen(out) > olen)
                __builtin_trap();
            free(out);
        }
        free(ids);
    }
}

static inline void fz_tok_exercise(const ftq_tokenizer *t, const uint8_t *text, size_t len, int have_text)
{
    static const char *const samples[] = {
        "Once upon a time, there was a little girl named Lily.\n",
        "  Hello   world!\t\r\n  <s> </s> <unk> <|endoftext|> <pad>",
        "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \x01\x7f",
        "",
        "'s 've 're 123456 ...!!! a\xcc\x81",
    };
    if (have_text) {
        fz_tok_roundtrip(t, (const char *)text, len < FZ_MAX_TEXT ? len : FZ_MAX_TEXT);
    } else {
        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
            fz_tok_roundtrip(t, samples[i], strlen(samples[i]));
    }
    int nv = ftq_tokenizer_vocab_size(t);
    int32_t edge[] = {0, 1, 2, nv / 2, nv - 2, nv - 1, nv, -1, ftq_tokenizer_bos(t), ftq_tokenizer_eos(t)};
    for (int skip = 0; skip < 2; skip++) {
        char *out = NULL;
        size_t olen = 0;
        if (ftq_tokenizer_decode(t, edge, sizeof edge / sizeof edge[0], skip, &out, &olen) == FTQ_OK)
            free(out); /* nv and -1 are out of range: must be refused, but either way no crash */
        if (ftq_tokenizer_decode(t, edge, 6, skip, &out, &olen) == FTQ_OK)
            free(out);
    }
    for (int i = 0; i < 6; i++) {
        fz_touch(ftq_tokenizer_piece(t, edge[i]));
        (void)ftq_tokenizer_is_special(t, edge[i]);
    }
    fz_touch(ftq_tokenizer_kind_name(t));
}

#endif
