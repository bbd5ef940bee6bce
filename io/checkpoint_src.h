/* checkpoint_src.h - building a checkpoint from tensors another reader produced (GGUF):
 * the checkpoint takes ownership of the array, its names and its owned data. */
#ifndef FTQ_IO_CHECKPOINT_SRC_H
#define FTQ_IO_CHECKPOINT_SRC_H

#include "ftq.h"

/* Index `tensors` (n of them) by name; the checkpoint owns them from now on, also when this
 * fails (then they are freed). total_bytes is what ftq_checkpoint_total_bytes reports;
 * `label` names the source in messages. Duplicate names are FTQ_EFORMAT. */
int ftq_checkpoint_from_tensors(ftq_tensor *tensors, size_t n, size_t total_bytes, const char *label,
                                ftq_checkpoint **out);

/* Metadata of such a checkpoint (it has no files to carry it): what a safetensors file's
 * __metadata__ holds for a checkpoint read from files (the ftq.quant.* keys of a GGUF
 * checkpoint opened with FTQ_GGUF_KEEP_QUANT). Set copies (a later value of the same key
 * wins); get returns NULL when absent. */
int ftq_checkpoint_set_metadata(ftq_checkpoint *c, const char *key, const char *value);
const char *ftq_checkpoint_own_metadata(const ftq_checkpoint *c, const char *key);

/* Free the owned data of such a checkpoint's tensor t once nothing will read it again (the
 * loader, after packing a quantized part into its kernel layout): t keeps its name, dtype
 * and shape, its data becomes NULL. A tensor of a file-backed checkpoint is left alone. */
void ftq_checkpoint_drop_data(ftq_checkpoint *c, const ftq_tensor *t);

/* Free names and owned data of n tensors, then the array. */
void ftq_tensors_free(ftq_tensor *tensors, size_t n);

#endif
