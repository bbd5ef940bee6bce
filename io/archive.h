/* archive.h - a byte stream over a plain file or a .tar / .tar.gz / .zip member ("ARCHIVE:MEMBER").
 * Invariants: an existing literal path wins over ARCHIVE:MEMBER; an archive without a member must
 * hold exactly one regular file (checked when its data ends); errors name the source as given. */
#ifndef FTQ_IO_ARCHIVE_H
#define FTQ_IO_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ftq_source ftq_source;

/* 1 if the name ends in an archive extension (.tar, .tar.gz, .tgz, .zip, .tar.bz2, .tbz2,
 * .tar.xz, .txz, .tar.zst), case-insensitively. */
int ftq_source_is_archive_name(const char *name);

/* Open `spec` for reading:
 *   - an existing regular file: that file, or, if its name is an archive name, the single
 *     regular file inside it;
 *   - otherwise "ARCHIVE:MEMBER", split at the last ':' whose left part is an existing file
 *     (so archive names and member paths may both contain ':' and members may contain '/');
 *     a leading "./" of member paths is ignored when matching.
 * Errors: FTQ_ENOTFOUND (no such file; member not in the archive, the message lists the
 * members), FTQ_EFORMAT (corrupt or unrecognized archive; an archive holding no file or,
 * without a member, several files - listed), FTQ_EIO, FTQ_ENOMEM. */
int ftq_source_open(const char *spec, ftq_source **out);

/* Read up to cap bytes; *got = 0 at the end. Reaching the end of a single-member archive
 * checks that no other regular file follows. */
int ftq_source_read(ftq_source *s, void *buf, size_t cap, size_t *got);

/* The name to guess a format from: the member's path inside the archive, else the path. */
const char *ftq_source_name(const ftq_source *s);

/* The source as given to ftq_source_open (for messages). */
const char *ftq_source_spec(const ftq_source *s);

/* Size of the data in bytes: a plain file's size, or what an archive header claims for a
 * member (-1 if it records none). A member's claim is untrusted (a 1 KB zip may claim
 * 3.4 GB): use ftq_source_size_hint to size an allocation. */
int64_t ftq_source_size(const ftq_source *s);

/* A size a reader may allocate up front: a plain file's size, an archive member's claim
 * capped at FTQ_SOURCE_HINT_MAX (the reader grows its buffer as the data really arrives),
 * or -1 if unknown. */
#define FTQ_SOURCE_HINT_MAX ((int64_t)1 << 20)
int64_t ftq_source_size_hint(const ftq_source *s);

/* For an archive opened without a member: scan the rest of the archive and fail if another
 * regular file follows. Call it when abandoning a read early (e.g. on a parse error), so the
 * caller can report "the archive holds 3 files" instead of an error about the wrong file.
 * FTQ_OK for anything else, and when already checked. */
int ftq_source_check_single(ftq_source *s);

void ftq_source_close(ftq_source *s); /* NULL is fine */

#endif
