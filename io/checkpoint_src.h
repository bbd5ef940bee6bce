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

/* Free names and owned data of n tensors, then the array. */
void ftq_tensors_free(ftq_tensor *tensors, size_t n);

#endif
