/* dist_none.c - ftq_dist without MPI (-DFTQ_MPI=OFF or no MPI found): a group of one
 * process. A job started by mpirun with more than one rank is refused at init, so N copies
 * never train N separate models while believing they are one. */
#include <stdlib.h>

#include "include/ftq.h"
#include "include/ftq_dist.h"

int ftq_dist_available(void) { return 0; }

int ftq_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1)
            return ftq_set_error(FTQ_EUNSUPPORTED, "started by mpirun with %s ranks, but this ftq was built "
                                 "without MPI (rebuild with -DFTQ_MPI=ON and libopenmpi-dev)", v);
    }
    return FTQ_OK;
}

void ftq_dist_finalize(void) {}
int ftq_dist_rank(void) { return 0; }
int ftq_dist_size(void) { return 1; }
int ftq_dist_local_size(void) { return 1; }

int ftq_dist_allreduce(void *buf, size_t n, ftq_dist_type type, ftq_dist_op op)
{
    (void)buf;
    (void)n;
    (void)type;
    (void)op;
    return FTQ_OK;
}

int ftq_dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
    return FTQ_OK;
}

int ftq_dist_barrier(void) { return FTQ_OK; }
int ftq_dist_agree(int rc) { return rc; }
int ftq_dist_failed_rank(void) { return -1; }
void ftq_dist_abort(int code) { (void)code; }
