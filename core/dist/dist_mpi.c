/* dist_mpi.c - ftq_dist over MPI (Open MPI): MPI_COMM_WORLD when the process was started
 * by mpirun, else a group of one without touching MPI (a plain `ftq finetune` never
 * initializes MPI, so it runs where no launcher or network is configured). MPI errors
 * return codes (MPI_ERRORS_RETURN) that become FTQ_EIO with MPI's message. Reductions go
 * in buckets of BUCKET_BYTES: MPI counts are int, and a fixed split keeps the reduction
 * order of a run the same from step to step and from run to run. */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>

#include "include/ftq.h"
#include "include/ftq_dist.h"

#define BUCKET_BYTES ((size_t)4 << 20)

static int started;      /* MPI_Init was called by ftq_dist_init */
static int rank_ = 0, size_ = 1, local_size_ = 1;
static int failed_rank_ = -1;

int ftq_dist_available(void) { return 1; }

static int mpi_error(int err, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len] = '\0';
    return ftq_set_error(FTQ_EIO, "%s failed on rank %d of %d: %s", what, rank_, size_, len ? msg : "unknown error");
}

static int launched_by_mpirun(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int ftq_dist_init(int *argc, char ***argv)
{
    if (started || !launched_by_mpirun())
        return FTQ_OK;
    int err = MPI_Init(argc, argv);
    if (err != MPI_SUCCESS)
        return mpi_error(err, "MPI_Init");
    started = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    local_size_ = ls && atoi(ls) > 0 ? atoi(ls) : 1;
    return FTQ_OK;
}

void ftq_dist_finalize(void)
{
    if (!started)
        return;
    MPI_Finalize();
    started = 0;
    rank_ = 0;
    size_ = 1;
}

int ftq_dist_rank(void) { return rank_; }
int ftq_dist_size(void) { return size_; }
int ftq_dist_local_size(void) { return local_size_; }

static MPI_Datatype mpi_type(ftq_dist_type t, size_t *bytes)
{
    switch (t) {
    case FTQ_DIST_F64:
        *bytes = 8;
        return MPI_DOUBLE;
    case FTQ_DIST_I32:
        *bytes = 4;
        return MPI_INT32_T;
    case FTQ_DIST_I64:
        *bytes = 8;
        return MPI_INT64_T;
    default:
        *bytes = 4;
        return MPI_FLOAT;
    }
}

int ftq_dist_allreduce(void *buf, size_t n, ftq_dist_type type, ftq_dist_op op)
{
    if (size_ == 1 || n == 0)
        return FTQ_OK;
    size_t es = 0;
    MPI_Datatype dt = mpi_type(type, &es);
    MPI_Op mop = op == FTQ_DIST_MIN ? MPI_MIN : op == FTQ_DIST_MAX ? MPI_MAX : MPI_SUM;
    size_t bucket = BUCKET_BYTES / es;
    for (size_t i = 0; i < n; i += bucket) {
        int k = (int)(n - i < bucket ? n - i : bucket);
        int err = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * es, k, dt, mop, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS)
            return mpi_error(err, "MPI_Allreduce");
    }
    return FTQ_OK;
}

int ftq_dist_bcast(void *buf, size_t bytes, int root)
{
    if (size_ == 1 || bytes == 0)
        return FTQ_OK;
    for (size_t i = 0; i < bytes; i += BUCKET_BYTES) {
        int k = (int)(bytes - i < BUCKET_BYTES ? bytes - i : BUCKET_BYTES);
        int err = MPI_Bcast((char *)buf + i, k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (err != MPI_SUCCESS)
            return mpi_error(err, "MPI_Bcast");
    }
    return FTQ_OK;
}

int ftq_dist_barrier(void)
{
    if (size_ == 1)
        return FTQ_OK;
    int err = MPI_Barrier(MPI_COMM_WORLD);
    return err == MPI_SUCCESS ? FTQ_OK : mpi_error(err, "MPI_Barrier");
}

int ftq_dist_agree(int rc)
{
    if (size_ == 1)
        return rc;
    int who = rc != FTQ_OK ? rank_ : size_, err;
    if ((err = MPI_Allreduce(MPI_IN_PLACE, &who, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_error(err, "MPI_Allreduce");
    if (who == size_)
        return FTQ_OK;
    failed_rank_ = who;
    int code = rc;
    if ((err = MPI_Bcast(&code, 1, MPI_INT, who, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_error(err, "MPI_Bcast");
    if (who == rank_)
        return rc;
    return ftq_set_error(code, "stopped: rank %d of %d failed", who, size_);
}

int ftq_dist_failed_rank(void) { return failed_rank_; }

void ftq_dist_abort(int code)
{
    if (started)
        MPI_Abort(MPI_COMM_WORLD, code);
}
