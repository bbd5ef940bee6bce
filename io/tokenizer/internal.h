/* internal.h - the tokenizer object shared by the files of io/tokenizer/: tokenizer.c (the
 * public face), the loaders of each kind (hf_json.c, spm.c, gpt2_files.c, wordpiece.c,
 * gguf_meta.c), which build it through vocab.c, and the engines (bpe.c, regex.c, ...).
 * Calls point one way: tokenizer.c -> loaders -> engines/vocab.c; nothing calls tokenizer.c.
 * Invariants: ids are dense 0..n_vocab-1 (holes have piece NULL); every map and table is
 * filled at load time and read-only afterwards, so encode/decode need no locks. */
#ifndef FTQ_IO_TOKENIZER_INTERNAL_H
#define FTQ_IO_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "include/ftq.h"

/* ---- growable id vector ---------------------------------------------------------- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ftq_ivec;

int ftq_ivec_push(ftq_ivec *v, int32_t x);
int ftq_ivec_reserve(ftq_ivec *v, size_t extra);

/* ---- byte string -> int32 map (owns copies of its keys) -------------------------- */

typedef struct {
    uint32_t off, len; /* key bytes in pool */
    uint32_t hash;
    int32_t val;
} ftq_strmap_entry;

typedef struct {
    uint32_t *slots; /* 0 = empty, else entry index + 1 */
    size_t cap;      /* power of two */
    ftq_strmap_entry *ents;
    size_t n, ents_cap;
    char *pool;
    size_t pool_len, pool_cap;
} ftq_strmap;

/* Insert or overwrite. FTQ_OK or FTQ_ENOMEM (message set). */
int ftq_strmap_put(ftq_strmap *m, const char *key, size_t len, int32_t val);

/* A growable byte buffer, always NUL-terminated after the first put ({0} is empty). */
typedef struct {
    char *p;
    size_t n, cap;
} ftq_tok_buf;
int ftq_tok_buf_put(ftq_tok_buf *b, const char *s, size_t n);
/* 1 and *val if present, else 0. */
int ftq_strmap_get(const ftq_strmap *m, const char *key, size_t len, int32_t *val);
void ftq_strmap_clear(ftq_strmap *m); /* keeps the memory */
void ftq_strmap_free(ftq_strmap *m);

/* ---- (id, id) -> (rank, merged id) map for rank-ordered BPE merges ---------------- */

typedef struct {
    uint64_t *keys; /* UINT64_MAX = empty */
    int32_t *rank, *merged;
    size_t cap, n;
} ftq_pairmap;

int ftq_pairmap_put(ftq_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged);
int ftq_pairmap_get(const ftq_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);
void ftq_pairmap_free(ftq_pairmap *m);

/* ---- the tokenizer --------------------------------------------------------------- */

/* TOKF_USER / TOKF_UNUSED: sentencepiece USER_DEFINED / UNUSED pieces (tokenizer.model) */
enum {
    TOKF_SPECIAL = 1, TOKF_BYTE = 2, TOKF_MERGEABLE = 4, TOKF_UNKNOWN = 8, TOKF_CONTROL = 16, TOKF_USER = 32,
    TOKF_UNUSED = 64
};
enum { TOK_MODEL_BPE_RANK, TOK_MODEL_BPE_SCORE, TOK_MODEL_WORDPIECE, TOK_MODEL_UNIGRAM };
enum { TOK_NORM_NONE, TOK_NORM_OPS, TOK_NORM_SPM, TOK_NORM_BERT };
enum {
    TOK_NORM_PREPEND, TOK_NORM_REPLACE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD, TOK_NORM_LOWERCASE,
    TOK_NORM_STRIP
};
/* TOK_PRE_STAGES: the tokenizer.json pre-tokenizer list t->pre (pretok.c) */
enum { TOK_PRE_NONE, TOK_PRE_BYTELEVEL, TOK_PRE_BERT, TOK_PRE_STAGES };
enum { TOK_DEC_CHAIN, TOK_DEC_SPM };
enum {
    TOK_DEC_BYTELEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP, TOK_DEC_WORDPIECE,
    TOK_DEC_METASPACE
};

typedef struct {
    int op;         /* TOK_NORM_* or TOK_DEC_* */
    char *a, *b;    /* prepend text / replace pattern; replace content */
    size_t alen, blen;
    int start, stop; /* Strip decoder: how many `a` characters to drop at each end; Strip normalizer:
                        strip left / right; WordPiece: start = cleanup; Metaspace: start = prepends */
    struct ftq_tok_regex *re; /* Replace with a Regex pattern (a NULL: the String pattern) */
} ftq_tok_op;

/* One pre-tokenizer of a tokenizer.json list (pretok.c). */
enum { TOK_PT_SPLIT, TOK_PT_BYTELEVEL, TOK_PT_METASPACE, TOK_PT_WHITESPACE };
enum { TOK_MATCH_REGEX, TOK_MATCH_STRING, TOK_MATCH_SPACE, TOK_MATCH_PUNCT, TOK_MATCH_NUMERIC };
enum { TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT, TOK_SPLIT_CONTIGUOUS };
enum { TOK_PREPEND_NEVER, TOK_PREPEND_FIRST, TOK_PREPEND_ALWAYS };
typedef struct {
    int kind;                     /* TOK_PT_* */
    int match, behavior, invert;  /* Split (Punctuation, Digits and WhitespaceSplit are Splits too) */
    struct ftq_tok_regex *re;     /* TOK_MATCH_REGEX */
    char *str;                    /* TOK_MATCH_STRING pattern; Metaspace replacement */
    size_t slen;
    int add_prefix_space, use_regex; /* ByteLevel */
    int prepend, split;              /* Metaspace: TOK_PREPEND_*, split on the replacement */
} ftq_tok_pre;

/* One item of a TemplateProcessing template: a special token id or a sequence. */
enum { FTQ_TMPL_A = -1, FTQ_TMPL_B = -2 };
typedef struct {
    int32_t id; /* token id, or FTQ_TMPL_A / FTQ_TMPL_B */
    int type;   /* token type id */
} ftq_tok_tmpl;

typedef struct {
    int32_t id;
    char *content; /* as written in the file */
    size_t len;
    char *match; /* what is searched for: content, normalized if `normalized` */
    size_t match_len;
    int special, lstrip, rstrip, single_word, normalized;
} ftq_added_token;

struct ftq_tokenizer {
    ftq_tokenizer_kind kind;
    char name[96];

    int32_t n_vocab;
    /* Ids at or beyond id_limit are refused before anything is allocated for them: each
     * loader raises it by the number of entries its file defines (ftq_tok_allow_ids), so no
     * allocation is sized by an id read from a file. src names that file in messages. */
    int32_t id_limit;
    char src[512];
    char **piece; /* id -> bytes (NUL-terminated), NULL for a hole */
    uint32_t *piece_len;
    float *score;   /* sentencepiece scores (NULL otherwise) */
    uint8_t *flags; /* TOKF_* */
    size_t cap;
    ftq_strmap vocab; /* model vocabulary: piece -> id */

    int model; /* TOK_MODEL_* */
    ftq_pairmap merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;         /* -1 if none */
    int32_t byte_id[256];   /* id of "<0xXX>", -1 if absent */
    int32_t ascii_id[128];  /* id of each one-byte piece, -1 if absent (speeds up lookups) */
    ftq_ivec user_defined;  /* sentencepiece USER_DEFINED piece ids: matched whole, never merged */
    uint8_t user_first[256]; /* first bytes of those pieces */
    size_t max_piece_len;   /* longest vocabulary piece in bytes */

    int norm; /* TOK_NORM_* */
    ftq_tok_op *norm_ops;
    int n_norm_ops;
    int spm_dummy_prefix, spm_remove_ws, spm_escape_ws;

    int pretok; /* TOK_PRE_* */
    int bl_add_prefix_space, bl_use_regex;
    int32_t bl_byte_id[256]; /* id of the byte-level character of each byte, -1 if absent */
    ftq_tok_pre *pre;        /* TOK_PRE_STAGES: the pre-tokenizers in order */
    int n_pre;
    int pre_byte_level;      /* the last of them is ByteLevel: the model works on bytes */
    double *uni_score;       /* Unigram: score of each id (uni_n of them) */
    size_t uni_n;
    double uni_min_score, uni_max_score;

    int decoder; /* TOK_DEC_CHAIN or TOK_DEC_SPM */
    ftq_tok_op *dec_ops;
    int n_dec_ops; /* an empty chain joins tokens with ' ' (HF's default) */

    ftq_added_token *added;
    int n_added;
    uint8_t added_first[256]; /* first bytes of added-token match strings */

    int32_t bos_id, eos_id;
    int parse_special; /* ftq_tokenizer_encode's default for FTQ_ENCODE_PARSE_SPECIAL */
    ftq_ivec prefix, suffix; /* ids add_special puts around the text */

    /* WordPiece / BertNormalizer (wordpiece.c) */
    char wp_prefix[16]; /* continuing_subword_prefix, "##" (WordPiece; BPE when set) */
    char bpe_suffix[16]; /* BPE end_of_word_suffix ("" if none) */
    size_t bpe_suffix_len;
    size_t wp_prefix_len;
    int wp_max_chars; /* max_input_chars_per_word */
    int bert_clean, bert_chinese, bert_strip_accents, bert_lowercase;

    /* TemplateProcessing (template.c): single and pair templates with type ids */
    ftq_tok_tmpl *tmpl_single, *tmpl_pair;
    int n_tmpl_single, n_tmpl_pair;

    struct ftq_tok_regex *pre_regex; /* byte-level BPE: regex split stages (NULL: the GPT-2 scanner) */
    char gguf_pre[32];               /* its tokenizer.ggml.pre name ("" for the GPT-2 scanner) */
};

/* vocab.c: loaders fill a zeroed tokenizer from ftq_tok_alloc. */
ftq_tokenizer *ftq_tok_alloc(void);
int ftq_tok_enable_scores(ftq_tokenizer *t); /* before the first ftq_tok_set_piece */
int ftq_tok_set_piece(ftq_tokenizer *t, int32_t id, const char *s, size_t len);
/* Name the file being read (for messages) and allow n more ids (the entries it defines). */
int ftq_tok_allow_ids(ftq_tokenizer *t, const char *path, size_t n);
/* A vocabulary entry: refuses an id or a text given twice, then sets the piece and maps
 * text -> id. */
int ftq_tok_add_vocab(ftq_tokenizer *t, int32_t id, const char *s, size_t len);
char *ftq_tok_dup_bytes(const char *s, size_t n); /* malloc'd, NUL-terminated; NULL if out of memory */
/* The loaders (one per ftq_tokenizer_kind; tokenizer.c holds them in a table). */
int ftq_tok_load_hf_json(ftq_tokenizer *t, const char *dir);
int ftq_tok_load_spm(ftq_tokenizer *t, const char *dir);
int ftq_tok_load_gpt2_files(ftq_tokenizer *t, const char *dir);
int ftq_tok_load_vocab_txt(ftq_tokenizer *t, const char *dir);
int ftq_tok_load_gguf(ftq_tokenizer *t, const char *path); /* gguf_meta.c: tokenizer.ggml.* metadata */

/* Regex pre-tokenizer (regex.c): Split(pattern, Isolated) stages with Oniguruma; fn gets
 * each piece in order (non-empty, tiling the text) and may stop the walk with an error. */
typedef struct ftq_tok_regex ftq_tok_regex;
typedef int (*ftq_tok_piece_fn)(void *user, const char *s, size_t len);
int ftq_tok_regex_new(const char *const *patterns, int n, ftq_tok_regex **out);
void ftq_tok_regex_free(ftq_tok_regex *r);
int ftq_tok_regex_split(const ftq_tok_regex *r, const char *s, size_t len, ftq_tok_piece_fn fn, void *user);
/* Every match of the first pattern in s[0..len) as (start, end) pairs appended to spans, as HF
 * tokenizers' onig find_iter gives them: empty matches included, except one right at the end
 * of the previous match. */
int ftq_tok_regex_matches(const ftq_tok_regex *r, const char *s, size_t len, ftq_ivec *spans);
/* The split stages of a GGUF tokenizer.ggml.pre name (gguf_meta.c): FTQ_OK with *out NULL for
 * GPT-2's regex (the built-in scanner), FTQ_ENOTFOUND (no message) for an unknown name. */
int ftq_tok_pre_regex(const char *pre, size_t len, ftq_tok_regex **out);
/* The tokenizer.json pre_tokenizer of a tokenizer.ggml.pre name (a new cJSON object; NULL if
 * the name is unknown or out of memory). */
struct cJSON;
struct cJSON *ftq_tok_pre_json(const char *pre);
/* The tokenizer.ggml.pre name whose pre_tokenizer (as above) equals p as JSON, NULL if none. */
const char *ftq_tok_gguf_pre_of_json(const struct cJSON *p);
/* Add the tokenizer.ggml.* keys describing t (gguf_meta.c). FTQ_EUNSUPPORTED for a tokenizer
 * GGUF cannot describe (normalizers, non-byte-level BPE without scores). */
struct ftq_gguf_writer;
int ftq_tok_gguf_describe(const ftq_tokenizer *t, struct ftq_gguf_writer *w);
int ftq_tok_add_added(ftq_tokenizer *t, int32_t id, const char *content, int special, int lstrip,
                      int rstrip, int single_word, int normalized);

/* WordPiece pieces (wordpiece.c); `j` arguments are cJSON objects of tokenizer.json. */
struct cJSON;
int ftq_tok_wordpiece_from_json(ftq_tokenizer *t, const struct cJSON *model, const char *path);
int ftq_tok_bert_normalizer_from_json(ftq_tokenizer *t, const struct cJSON *normalizer);
/* BertNormalizer over s[0..len) (valid UTF-8); *out malloc'd. */
int ftq_tok_bert_normalize(const ftq_tokenizer *t, const char *s, size_t len, char **out, size_t *out_len);
/* BertPreTokenizer (when t->pretok is TOK_PRE_BERT) + WordPiece over normalized text. */
int ftq_tok_wordpiece_encode(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out);
/* WordPiece decoder (op->a = prefix, op->start = cleanup): append one token to the malloc'd
 * *out (*n_out bytes); then the cleanup over the whole text (result malloc'd). */
int ftq_tok_wordpiece_decode_token(const ftq_tok_op *op, int first, const char *s, size_t n, char **out,
                                   size_t *n_out);
int ftq_tok_wordpiece_cleanup(const char *s, size_t n, char **out, size_t *out_len);
/* Replace the single/pair templates (copied); the single one also sets prefix/suffix. A
 * template may hold FTQ_TMPL_A once (single) or A and B once each (pair). */
int ftq_tok_set_templates(ftq_tokenizer *t, const ftq_tok_tmpl *single, int n_single, const ftq_tok_tmpl *pair,
                          int n_pair);

/* normalize.c: every occurrence of pat replaced by rep, appended to out. */
int ftq_tok_replace_all(ftq_tok_buf *out, const char *s, size_t len, const char *pat, size_t plen, const char *rep,
                        size_t rlen);
/* sentencepiece Normalizer::Normalize for the identity rule set (spm_* flags of t). */
int ftq_tok_spm_normalize(const ftq_tokenizer *t, const char *s, size_t len, ftq_tok_buf *out);
/* decode.c: ids (checked by the caller) to text appended to out, by t's decoder. */
int ftq_tok_decode(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special, ftq_tok_buf *out);
/* Apply a list of normalizers (Prepend, Replace, NF*, Lowercase, Strip) to s (result malloc'd). */
int ftq_tok_normalize_ops(const ftq_tok_op *ops, int n, const char *s, size_t len, char **out,
                          size_t *out_len);

/* Free an op list (ops itself too). */
void ftq_tok_ops_free(ftq_tok_op *ops, int n);

/* pretok.c: run t->pre over normalized text s (at_start: s begins at offset 0 of the
 * input, for Metaspace's prepend_scheme "first"); fn gets each final piece, in order. With
 * pre_byte_level the pieces are raw bytes (ByteLevel's prefix space and regex applied). */
int ftq_tok_pretokenize(const ftq_tokenizer *t, const char *s, size_t len, int at_start, ftq_tok_piece_fn fn,
                        void *user);
void ftq_tok_pre_free(ftq_tok_pre *pre, int n);
/* The pre-tokenizer list of a tokenizer.json (hf_json.c calls it for pre_tokenizer). */
int ftq_tok_pre_from_json(ftq_tokenizer *t, const struct cJSON *p, const char *path);

/* unigram.c: the Unigram model of a tokenizer.json, and Viterbi over one piece. */
int ftq_tok_unigram_from_json(ftq_tokenizer *t, const struct cJSON *model, const char *path);
int ftq_tok_unigram_encode(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out);
/* sentencepiece's unigram (tokenizer.model): float scores in t->score, only NORMAL and
 * USER_DEFINED pieces matched, user-defined ones scored length * max - 0.1 (uni_min_score and
 * uni_max_score over NORMAL pieces). */
int ftq_tok_unigram_encode_spm(const ftq_tokenizer *t, const char *s, size_t len, ftq_ivec *out);

/* GPT-2 byte level: the code point for each byte (bytes_to_unicode), and the inverse
 * (-1 if a code point is not one of the 256). */
uint32_t ftq_bytelevel_cp(unsigned char b);
int ftq_bytelevel_byte(uint32_t cp);
/* End of the GPT-2 regex pre-token that starts at pos (s is valid UTF-8, pos < len). */
size_t ftq_gpt2_pretoken_end(const unsigned char *s, size_t len, size_t pos);

/* BPE over one word. Reusable scratch space; zero-initialise, free with ftq_bpe_free. */
typedef struct ftq_bpe_work ftq_bpe_work;
ftq_bpe_work *ftq_bpe_new(void);
void ftq_bpe_free(ftq_bpe_work *w);
/* Rank-ordered BPE (HF BPE model) over s[0..len): characters looked up in the vocab
 * (byte fallback / unk as configured), or bytes through bl_byte_id when byte_level. */
int ftq_bpe_rank(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s, size_t len, int byte_level,
                 ftq_ivec *out);
/* Score-ordered BPE (sentencepiece) over normalized text s[0..len). */
int ftq_bpe_score(const ftq_tokenizer *t, ftq_bpe_work *w, const char *s, size_t len, ftq_ivec *out);

#endif
