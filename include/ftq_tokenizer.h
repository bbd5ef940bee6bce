/* ftq_tokenizer.h - tokenizers that reproduce Hugging Face ids byte for byte.
 *
 * Supported files (ftq_tokenizer_load picks from what the model directory holds, in
 * this order): tokenizer.json (models BPE, Unigram, WordPiece with the normalizers,
 * pre-tokenizers, post-processors and decoders listed in docs/tokenizers.md; added/special
 * tokens), tokenizer.model (SentencePiece protobuf, BPE or UNIGRAM), vocab.json + merges.txt
 * (GPT-2), vocab.txt (BERT WordPiece), or a .gguf file's tokenizer.ggml.* metadata.
 * tokenizer_config.json (add_bos_token / add_eos_token) and special_tokens_map.json /
 * config.json decide BOS/EOS.
 *
 *     ftq_tokenizer *tk = NULL;
 *     ftq_tokenizer_load("models/stories260K", &tk);
 *     int32_t *ids = NULL; size_t n = 0;
 *     ftq_tokenizer_encode(tk, "Once upon a time", 16, 1, &ids, &n);   // [1, 403, 407, 261, 378]
 *     free(ids);
 *     ftq_tokenizer_free(tk);
 *
 * A loaded tokenizer is immutable: encode/decode may run concurrently from several threads.
 */
#ifndef FTQ_TOKENIZER_H
#define FTQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ftq_tokenizer ftq_tokenizer;

typedef enum {
    FTQ_TOKENIZER_HF_JSON = 0,   /* tokenizer.json */
    FTQ_TOKENIZER_SPM = 1,       /* tokenizer.model */
    FTQ_TOKENIZER_GPT2_FILES = 2, /* vocab.json + merges.txt */
    FTQ_TOKENIZER_VOCAB_TXT = 3,  /* vocab.txt (+ tokenizer_config.json): BERT WordPiece */
    FTQ_TOKENIZER_GGUF = 4        /* tokenizer.ggml.* metadata of a .gguf file */
} ftq_tokenizer_kind;

/* Load from a model directory, choosing the files as described above, or from a .gguf
 * file's tokenizer.ggml.* metadata. */
int ftq_tokenizer_load(const char *dir, ftq_tokenizer **out);

/* Load a specific kind from a directory (the files of that kind must be present). */
int ftq_tokenizer_load_kind(const char *dir, ftq_tokenizer_kind kind, ftq_tokenizer **out);

void ftq_tokenizer_free(ftq_tokenizer *t); /* NULL is fine */

/* Encode UTF-8 text (len bytes; need not be NUL-terminated). add_special = 1 adds BOS /
 * EOS as the tokenizer config says (HF add_special_tokens=True). *ids is malloc'd. Invalid
 * UTF-8 is an FTQ_EFORMAT error naming the byte offset. Special-token text in the input is
 * read as plain text unless ftq_tokenizer_set_parse_special was called (see below). */
int ftq_tokenizer_encode(const ftq_tokenizer *t, const char *text, size_t len, int add_special,
                         int32_t **ids, size_t *n);

/* Special tokens in text. By default (and in ftq_tokenizer_encode) text is text: a literal
 * "<|im_start|>" or "</s>" written in the input is tokenized as ordinary characters, as
 * llama.cpp (parse_special = false) and sentencepiece do, so data cannot inject control tokens.
 * Added tokens that are not special (user-defined pieces) are still matched. With
 * FTQ_ENCODE_PARSE_SPECIAL every added token written in the text becomes its id, as HF's
 * fast tokenizers do (for chat-formatted text). */
enum { FTQ_ENCODE_ADD_SPECIAL = 1, FTQ_ENCODE_PARSE_SPECIAL = 2 };
int ftq_tokenizer_encode_flags(const ftq_tokenizer *t, const char *text, size_t len, unsigned flags,
                               int32_t **ids, size_t *n);
/* Make ftq_tokenizer_encode (and encode_pair) parse special tokens, for a caller that hands the
 * tokenizer to code it does not control (--parse-special). Call it before the tokenizer is
 * shared between threads. */
void ftq_tokenizer_set_parse_special(ftq_tokenizer *t, int on);
int ftq_tokenizer_parses_special(const ftq_tokenizer *t);

/* Encode a pair of texts (sentence A, sentence B) as the tokenizer's pair template says,
 * e.g. BERT's [CLS] A [SEP] B [SEP] with token types 0..0 1..1 (add_special = 0: A B with
 * types 0 / 1). *ids and *type_ids (may be NULL) are malloc'd. FTQ_EUNSUPPORTED if
 * add_special and the tokenizer has no pair template. */
int ftq_tokenizer_encode_pair(const ftq_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                              int add_special, int32_t **ids, int32_t **type_ids, size_t *n);
int ftq_tokenizer_has_pair_template(const ftq_tokenizer *t);
/* Put already-encoded texts (no special tokens) into the template: b NULL for a single
 * text (prefix A suffix), else the pair template. Lets callers truncate A / B first. */
int ftq_tokenizer_apply_template(const ftq_tokenizer *t, const int32_t *a, size_t na, const int32_t *b, size_t nb,
                                 int32_t **ids, int32_t **type_ids, size_t *n);
/* Special tokens the template adds for one text (pair = 0) or a pair (pair = 1). */
int ftq_tokenizer_num_special(const ftq_tokenizer *t, int pair);

/* Decode ids to UTF-8 (*text malloc'd and NUL-terminated). skip_special = 1 drops special
 * tokens (HF skip_special_tokens=True). Out-of-range ids are FTQ_EINVAL. */
int ftq_tokenizer_decode(const ftq_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **text, size_t *len);

ftq_tokenizer_kind ftq_tokenizer_get_kind(const ftq_tokenizer *t);
int ftq_tokenizer_vocab_size(const ftq_tokenizer *t); /* incl. added tokens */
int ftq_tokenizer_bos(const ftq_tokenizer *t);        /* -1 if none */
int ftq_tokenizer_eos(const ftq_tokenizer *t);        /* -1 if none */
int ftq_tokenizer_adds_bos(const ftq_tokenizer *t);   /* add_special prepends BOS */
int ftq_tokenizer_adds_eos(const ftq_tokenizer *t);
const char *ftq_tokenizer_piece(const ftq_tokenizer *t, int32_t id); /* raw vocab string or NULL */
int ftq_tokenizer_is_special(const ftq_tokenizer *t, int32_t id);
const char *ftq_tokenizer_kind_name(const ftq_tokenizer *t); /* e.g. "tokenizer.json (BPE, ByteLevel)" */

#ifdef __cplusplus
}
#endif

#endif
