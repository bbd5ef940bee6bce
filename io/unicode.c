/* unicode.c - strict UTF-8 decoding/encoding and code point classes.
 * Code point classes come from utf8proc (no hand-made tables).
 * Invariant: ftq_utf8_decode accepts exactly the well-formed sequences of Unicode Table 3-7,
 * and ftq_utf8_maximal_subpart agrees with it on where a replacement ends. */
#include <utf8proc.h>

#include "io/unicode.h"

int ftq_unicode_letter_cp(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

int ftq_unicode_number_cp(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

int ftq_unicode_space_cp(uint32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x85)
        return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* Valid range of the second byte for a lead byte (Table 3-7); the others are 80..BF. */
static int second_ok(unsigned char lead, unsigned char b)
{
    if (lead == 0xe0)
        return b >= 0xa0 && b <= 0xbf;
    if (lead == 0xed)
        return b >= 0x80 && b <= 0x9f;
    if (lead == 0xf0)
        return b >= 0x90 && b <= 0xbf;
    if (lead == 0xf4)
        return b >= 0x80 && b <= 0x8f;
    return b >= 0x80 && b <= 0xbf;
}

static int seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

int ftq_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    if (len == 0)
        return 0;
    int n = seq_len(s[0]);
    if (n == 0 || (size_t)n > len)
        return 0;
    if (n == 1) {
        *cp = s[0];
        return 1;
    }
    if (!second_ok(s[0], s[1]))
        return 0;
    for (int i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    uint32_t v = s[0] & (0x7f >> n);
    for (int i = 1; i < n; i++)
        v = (v << 6) | (s[i] & 0x3f);
    *cp = v;
    return n;
}

size_t ftq_utf8_invalid_offset(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int n = ftq_utf8_decode(u + i, len - i, &cp);
        if (n == 0)
            return i;
        i += (size_t)n;
    }
    return len;
}

int ftq_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t ftq_utf8_maximal_subpart(const unsigned char *s, size_t len)
{
    int n = seq_len(s[0]);
    if (n <= 1 || len < 2 || !second_ok(s[0], s[1]))
        return 1;
    size_t k = 2;
    while (k < (size_t)n && k < len && (s[k] & 0xc0) == 0x80)
        k++;
    return k;
}
