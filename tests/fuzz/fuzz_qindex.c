/* fuzz_qindex.c - libFuzzer target: a quantized checkpoint (one safetensors file whose
 * __metadata__ carries ftq.quant.tensors, docs/quant-format.md section 4) opened as a
 * checkpoint from the scratch directory; the index is validated (ftq_qindex_open, the
 * listing of `ftq info`) and the first and last rows of every entry are decoded. */
#include "fuzz_common.h"

#include "ftq_io.h"
#include "ftq_quant.h"
#include "model/qcheckpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024];
    fz_write("model.safetensors", data, size, path, sizeof path);
    ftq_checkpoint *ck = NULL;
    if (ftq_checkpoint_open(path, &ck) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    ftq_qindex *ix = NULL;
    int rc = ftq_qindex_open(ck, path, &ix);
    if (rc == FTQ_OK && ix) {
        for (size_t i = 0; i < ix->n; i++) {
            const ftq_qentry *e = &ix->e[i];
            if (ftq_qindex_find(ix, e->name) != e || ftq_qindex_entry_of(ix, &e->view) != e)
                __builtin_trap();
            fz_touch(e->copied_from);
            ftq_qtensor q;
            int rows = e->rows < 2 ? e->rows : 2;
            if (rows > 0 && ftq_qentry_read(e, 0, rows, &q) == FTQ_OK)
                ftq_qtensor_free(&q);
            if (e->rows > 2 && ftq_qentry_read(e, e->rows - 1, 1, &q) == FTQ_OK)
                ftq_qtensor_free(&q);
            (void)ftq_qindex_is_part(ix, e->qweight->name);
        }
    } else if (rc != FTQ_OK) {
        fz_refused();
    }
    ftq_qindex_free(ix);
    ftq_quant_tensor_info *list = NULL;
    size_t n = 0;
    if (ftq_quant_checkpoint_list(ck, &list, &n) == FTQ_OK)
        ftq_quant_tensor_info_free(list, n);
    ftq_checkpoint_close(ck);
    return 0;
}
