/* model_alloc.c - ftq_model_alloc (model/model.h): memory a model owns until ftq_model_free,
 * for the loader (model/load.c, model/load_bf16.c) and adapters (model/adapter.c) alike. */
#include <stdlib.h>

#include "model/model.h"

void *ftq_model_alloc(ftq_model *m, size_t bytes)
{
    if (m->n_allocs == m->cap_allocs) {
        size_t cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **a = realloc(m->allocs, cap * sizeof *a);
        if (!a)
            return NULL;
        m->allocs = a;
        m->cap_allocs = cap;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (p)
        m->allocs[m->n_allocs++] = p;
    return p;
}
