/* bytelevel.c - GPT-2 byte level: bytes_to_unicode() and a hand-written scanner for
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Invariant: pieces are non-empty and tile the input exactly as regex findall would. */
#include "io/tokenizer/internal.h"
#include "io/unicode.h"

/* Printable Latin-1 bytes map to themselves; the other 68 bytes, in increasing order, map
 * to U+0100, U+0101, ... (OpenAI encoder.py bytes_to_unicode). Those 68 are 0x00-0x20 (33),
 * 0x7F-0xA0 (34) and 0xAD. */
uint32_t ftq_bytelevel_cp(unsigned char b)
{
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 256u + 33 + (b - 0x7fu);
    if (b == 0xad)
        return 256u + 33 + 34;
    return b;
}

int ftq_bytelevel_byte(uint32_t cp)
{
    if (cp < 256)
        return cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad ? -1 : (int)cp;
    if (cp < 256 + 33)
        return (int)(cp - 256);
    if (cp < 256 + 33 + 34)
        return (int)(cp - 256 - 33 + 0x7f);
    return cp == 256 + 33 + 34 ? 0xad : -1;
}

enum { CLS_SPACE, CLS_LETTER, CLS_NUMBER, CLS_OTHER };

static int cls_at(const unsigned char *s, size_t len, size_t pos, size_t *n)
{
    uint32_t cp = s[pos];
    *n = 1;
    if (cp >= 0x80) {
        int k = ftq_utf8_decode(s + pos, len - pos, &cp);
        *n = k > 0 ? (size_t)k : 1; /* callers pass validated text */
    }
    if (ftq_unicode_is_letter(cp))
        return CLS_LETTER;
    if (ftq_unicode_is_number(cp))
        return CLS_NUMBER;
    if (ftq_unicode_is_space(cp))
        return CLS_SPACE;
    return CLS_OTHER;
}

/* End of the run of class c starting at pos. */
static size_t run_end(const unsigned char *s, size_t len, size_t pos, int c)
{
    size_t n;
    while (pos < len && cls_at(s, len, pos, &n) == c)
        pos += n;
    return pos;
}

size_t ftq_gpt2_pretoken_end(const unsigned char *s, size_t len, size_t pos)
{
    if (s[pos] == '\'' && pos + 1 < len) {
        unsigned char a = s[pos + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return pos + 2;
        if (pos + 2 < len) {
            unsigned char b = s[pos + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return pos + 3;
        }
    }
    size_t n;
    int c = cls_at(s, len, pos, &n);
    if (s[pos] == ' ' && pos + 1 < len) {
        size_t n1;
        int c1 = cls_at(s, len, pos + 1, &n1);
        if (c1 != CLS_SPACE) /* " ?" takes the space: ' ?\p{L}+', ' ?\p{N}+' or ' ?[^...]+' */
            return run_end(s, len, pos + 1, c1);
    }
    if (c != CLS_SPACE)
        return run_end(s, len, pos, c);
    /* \s+(?!\S): the whole run if it ends the text, else all but its last character (which
     * may then start the next piece as " word"); a single whitespace char before non-space
     * falls through to \s+ and is a piece by itself. */
    size_t last = pos, e = pos;
    while (e < len && cls_at(s, len, e, &n) == CLS_SPACE) {
        last = e;
        e += n;
    }
    if (e == len || last == pos)
        return e;
    return last;
}
