/* unicode.h - internal UTF-8 and code point class helpers for the tokenizers.
 * Decoding is strict (no overlongs, surrogates or values above U+10FFFF); the classes come
 * from utf8proc's general categories (Debian's libutf8proc), in the sense the GPT-2
 * pre-tokenizer regex gives them: \p{L}, \p{N} and \s = Unicode White_Space. */
#ifndef FTQ_IO_UNICODE_H
#define FTQ_IO_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Out-of-line lookups for code points >= 0x80 (utf8proc). */
int ftq_unicode_letter_cp(uint32_t cp); /* \p{L}: general category L* */
int ftq_unicode_number_cp(uint32_t cp); /* \p{N}: general category N* */
int ftq_unicode_space_cp(uint32_t cp);  /* \s: White_Space = Zs, Zl, Zp, U+0009..000D, U+0085 */

static inline int ftq_unicode_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return ftq_unicode_letter_cp(cp);
}

static inline int ftq_unicode_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return ftq_unicode_number_cp(cp);
}

static inline int ftq_unicode_is_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
    return ftq_unicode_space_cp(cp);
}

/* Decode one strict UTF-8 sequence from s[0..len). Returns its length (1-4) and sets *cp,
 * or 0 if the bytes there are not a valid sequence. */
int ftq_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/* Length of the sequence starting with a valid lead byte, for already-validated text. */
static inline int ftq_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Offset of the first byte that does not start a valid sequence, or len if all is valid. */
size_t ftq_utf8_invalid_offset(const char *s, size_t len);

/* Encode cp (<= 0x10FFFF) into out; returns the byte count. */
int ftq_utf8_encode(uint32_t cp, char *out);

/* Length of the "maximal subpart" of an invalid sequence at s (>= 1): the bytes that one
 * U+FFFD replaces in Python's errors='replace' and Rust's from_utf8_lossy. */
size_t ftq_utf8_maximal_subpart(const unsigned char *s, size_t len);

#endif
