/* json_util.h - strict cJSON helpers shared by the io/ readers (safetensors headers,
 * config.json, model.safetensors.index.json, tokenizer.json).
 * The helpers never set the ftq error: callers own the wording so messages name their file.
 * Always look keys up with cJSON_GetObjectItemCaseSensitive (cJSON_GetObjectItem ignores case),
 * and remember cJSON keeps duplicate keys: use ftq_json_find_duplicate on every object you trust. */
#ifndef FTQ_JSON_UTIL_H
#define FTQ_JSON_UTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Largest integer a JSON number (a double in cJSON) holds exactly: 2^53. */
#define FTQ_JSON_MAX_EXACT_INT 9007199254740992.0

/* Parse text[0..len) (no NUL needed) as exactly one JSON value followed only by spaces, tabs,
 * CR or LF. Returns the value (free with cJSON_Delete) or NULL; on NULL `why` receives a short
 * reason such as "invalid JSON at byte 17" or "unexpected data after the JSON value at byte 42"
 * and *bad_offset (if non-NULL) the byte offset. */
cJSON *ftq_json_parse_strict(const char *text, size_t len, char *why, size_t why_cap,
                             size_t *bad_offset);

/* First offset in s[0..len) that is not valid UTF-8 or is a raw control byte (< 0x20 other
 * than tab, CR, LF; JSON forbids them inside strings), or len if the text is clean. */
size_t ftq_json_check_text(const char *s, size_t len);

/* First offset in the JSON text s[0..len) of a number written with a fraction or an
 * exponent ("8.0", "0.5", "8e0"), outside strings, or len if every number is an integer
 * literal. For formats whose numbers are all integers (safetensors headers: serde reads
 * them as usize and refuses the others); cJSON keeps only the double. */
size_t ftq_json_find_nonint(const char *s, size_t len);

/* First offset in the JSON text s[0..len) where nesting goes deeper than max_depth or an
 * array gets more than max_items elements, outside strings (len if none): a pre-scan that
 * bounds the parse tree of a format with a known shape before cJSON builds it. */
size_t ftq_json_find_too_deep(const char *s, size_t len, int max_depth, int max_items);

/* 1 if v is a number holding an integer in [lo, hi], storing it in *out; 0 otherwise (NaN,
 * fractions, values beyond 2^53 whose integrality cJSON cannot preserve, non-numbers). */
int ftq_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);

/* JSON type name with an article for messages: "an object", "an array", "a string",
 * "a number", "a boolean", "null", or "nothing" for NULL. */
const char *ftq_json_type(const cJSON *v);

/* Short rendering of a value for "got ..." messages: numbers as %.15g ("-3", "1.5",
 * "1e+300"), strings quoted (cut after 40 bytes), true/false/null, "an object", "an array".
 * Returns buf. */
char *ftq_json_describe(const cJSON *v, char *buf, size_t cap);

/* Look for two children of `obj` with the same key (O(n log n)). Returns 0 and sets *dup to a
 * duplicated key (owned by obj) or NULL; returns -1 if out of memory. */
int ftq_json_find_duplicate(const cJSON *obj, const char **dup);

#endif
