/* prune_write.c - the pruned weights' one output file, shared by every architecture's
 * pruning (prune_model.c, prune_arch_*.c). */
#include "include/ftq.h"
#include "quant/prune_internal.h"

#include <stdlib.h>

/* Write outs (nt tensors) as dir/model.safetensors, one file that keeps the metadata of the
 * source's first file. */
int ftq_prune_write_weights(const ftq_checkpoint *ck, const char *dir, const ftq_tensor *outs, size_t nt)
{
    const ftq_st_file *f0 = ftq_checkpoint_file(ck, 0);
    size_t nm = f0 ? ftq_st_metadata_count(f0) : 0;
    const char **meta = calloc(2 * nm + 3, sizeof(char *));
    for (size_t k = 0; meta && k < nm; k++) {
        meta[2 * k] = ftq_st_metadata_key(f0, k);
        meta[2 * k + 1] = ftq_st_metadata_value(f0, k);
    }
    if (meta && !f0) { /* a GGUF source has no safetensors file; transformers wants "format": "pt" */
        meta[0] = "format";
        meta[1] = "pt";
    }
    char *path = ftq_path_join(dir, "model.safetensors");
    int rc = !meta || !path ? ftq_set_error(FTQ_ENOMEM, "out of memory")
                            : ftq_st_write(path, outs, nt, (const char *const *)meta);
    free(path);
    free(meta);
    return rc;
}
