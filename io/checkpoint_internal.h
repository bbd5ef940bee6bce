/* checkpoint_internal.h - the checkpoint's representation, shared by the accessors and
 * tensor-array builder (checkpoint_core.c) and the safetensors openers (checkpoint.c), so the
 * GGUF reader can build a checkpoint without calling back into the file that dispatches to it. */
#ifndef FTQ_IO_CHECKPOINT_INTERNAL_H
#define FTQ_IO_CHECKPOINT_INTERNAL_H

#include "ftq.h"

struct ftq_checkpoint {
    size_t nfiles;
    ftq_st_file **files;       /* shard order: sorted by file name */
    size_t n;
    const ftq_tensor **all;    /* file order, then offset order inside each file */
    const ftq_tensor **sorted; /* by name */
    size_t total_bytes;
    ftq_tensor *own; /* tensors of a non-safetensors source (GGUF), owned */
    size_t n_own;
    char **meta;     /* key, value, key, value ... of such a source (ftq_checkpoint_set_metadata) */
    size_t n_meta;
};

/* qsort comparator of tensor pointers by name */
int ftq_checkpoint_cmp_name(const void *a, const void *b);

#endif
