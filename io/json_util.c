/* json_util.c - strict cJSON helpers (see json_util.h).
 * Invariant: nothing here touches the thread-local ftq error or allocates memory the caller
 * must free, except the cJSON tree returned by ftq_json_parse_strict. */
#include "io/json_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

cJSON *ftq_json_parse_strict(const char *text, size_t len, char *why, size_t why_cap,
                             size_t *bad_offset)
{
    const char *end = NULL;
    /* ParseWithLengthOpts reports the failure position through `end`, unlike the
     * process-global cJSON_GetErrorPtr, so this is thread-safe. */
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t pos = end && end >= text ? (size_t)(end - text) : 0;
    if (!root) {
        if (pos > len)
            pos = len;
        snprintf(why, why_cap, "invalid JSON at byte %zu", pos);
        if (bad_offset)
            *bad_offset = pos;
        return NULL;
    }
    for (; pos < len; pos++) {
        if (!is_json_space(text[pos])) {
            snprintf(why, why_cap, "unexpected data after the JSON value at byte %zu", pos);
            if (bad_offset)
                *bad_offset = pos;
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

/* Length of the UTF-8 sequence starting at s (at most n bytes), 0 if malformed, overlong,
 * a surrogate or beyond U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return k;
}

size_t ftq_json_check_text(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x20 && !is_json_space((char)u[i]))
            return i;
        size_t k = utf8_seq(u + i, len - i);
        if (k == 0)
            return i;
        i += k;
    }
    return len;
}

size_t ftq_json_find_nonint(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') { /* skip the string, escapes included */
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i;
            for (; i < len && (s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
                               (s[i] >= '0' && s[i] <= '9'));
                 i++)
                if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
                    return start;
        } else {
            i++;
        }
    }
    return len;
}

size_t ftq_json_find_too_deep(const char *s, size_t len, int max_depth, int max_items)
{
    enum { MAXD = 64 };
    int depth = 0, commas[MAXD]; /* commas of the array open at each depth, -1 for objects */
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++)
                if (s[i] == '\\')
                    i++;
        } else if (c == '{' || c == '[') {
            if (depth >= max_depth || depth >= MAXD)
                return i;
            commas[depth++] = c == '[' ? 0 : -1;
        } else if (c == '}' || c == ']') {
            if (depth > 0)
                depth--;
        } else if (c == ',' && depth > 0 && commas[depth - 1] >= 0 && ++commas[depth - 1] + 1 > max_items) {
            return i; /* n commas: n + 1 elements */
        }
    }
    return len;
}

int ftq_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    /* Range-check the double before converting: casting an out-of-range double is UB. */
    if (!isfinite(d) || d != floor(d) || fabs(d) > FTQ_JSON_MAX_EXACT_INT)
        return 0;
    int64_t i = (int64_t)d;
    if (i < lo || i > hi)
        return 0;
    *out = i;
    return 1;
}

const char *ftq_json_type(const cJSON *v)
{
    if (!v)
        return "nothing";
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    return "an unknown value";
}

char *ftq_json_describe(const cJSON *v, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    if (cJSON_IsNumber(v)) {
        snprintf(buf, cap, "%.15g", v->valuedouble);
    } else if (cJSON_IsString(v)) {
        char tmp[48];
        size_t n = 0;
        const char *s = v->valuestring;
        for (; s[n] && n < 40; n++)
            tmp[n] = (s[n] >= 0x20 && s[n] < 0x7f) || (s[n] & 0x80) ? s[n] : '?';
        tmp[n] = '\0';
        snprintf(buf, cap, "\"%s%s\"", tmp, s[n] ? "..." : "");
    } else if (cJSON_IsTrue(v)) {
        snprintf(buf, cap, "true");
    } else if (cJSON_IsFalse(v)) {
        snprintf(buf, cap, "false");
    } else {
        snprintf(buf, cap, "%s", ftq_json_type(v));
    }
    return buf;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ftq_json_find_duplicate(const cJSON *obj, const char **dup)
{
    *dup = NULL;
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) n++;
    if (n < 2)
        return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys)
        return -1;
    size_t k = 0;
    cJSON_ArrayForEach(it, obj) keys[k++] = it->string ? it->string : "";
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    for (size_t i = 1; i < n && !*dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            *dup = keys[i];
    free(keys);
    return 0;
}
