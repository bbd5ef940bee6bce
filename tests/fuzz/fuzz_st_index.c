/* fuzz_st_index.c - libFuzzer target: model.safetensors.index.json of a sharded
 * checkpoint. The scratch directory holds two fixed, valid shards (tensors "a" and "b" in
 * model-00001-of-00002.safetensors, "c" in model-00002-of-00002.safetensors); the input is
 * the index, opened with ftq_checkpoint_open on the directory. */
#include "fuzz_common.h"

#include "ftq_io.h"

static void make_shards(void)
{
    static const float va[2] = {1, 2}, vb[3] = {3, 4, 5}, vc[1] = {6};
    ftq_tensor t1[2], t2[1];
    memset(t1, 0, sizeof t1);
    memset(t2, 0, sizeof t2);
    t1[0] = (ftq_tensor){.name = "a", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {2}, .data = (void *)va, .nbytes = sizeof va};
    t1[1] = (ftq_tensor){.name = "b", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {3}, .data = (void *)vb, .nbytes = sizeof vb};
    t2[0] = (ftq_tensor){.name = "c", .dtype = FTQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = (void *)vc, .nbytes = sizeof vc};
    char p[1024];
    if (ftq_st_write(fz_path("model-00001-of-00002.safetensors", p, sizeof p), t1, 2, NULL) != FTQ_OK ||
        ftq_st_write(fz_path("model-00002-of-00002.safetensors", p, sizeof p), t2, 1, NULL) != FTQ_OK) {
        fprintf(stderr, "ftq fuzz: cannot write the shards: %s\n", ftq_last_error());
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        make_shards();
        ready = 1;
    }
    char path[1024];
    fz_write("model.safetensors.index.json", data, size, path, sizeof path);
    ftq_checkpoint *ck = NULL;
    if (ftq_checkpoint_open(fz_dir(), &ck) != FTQ_OK) {
        fz_refused();
        return 0;
    }
    for (size_t i = 0; i < ftq_checkpoint_count(ck); i++) {
        const ftq_tensor *t = ftq_checkpoint_tensor(ck, i);
        if (ftq_checkpoint_find(ck, t->name) != t)
            __builtin_trap();
    }
    if (ftq_checkpoint_nfiles(ck) < 1 || ftq_checkpoint_nfiles(ck) > 2 || ftq_checkpoint_count(ck) > 3)
        __builtin_trap(); /* only the two shards exist, holding three tensors */
    ftq_checkpoint_close(ck);
    return 0;
}
