/* ftq_dist.h - the process group of a data-parallel run: one process alone, or N ranks
 * started by `mpirun -np N`. Built over Open MPI with -DFTQ_MPI=ON (core/dist/dist_mpi.c),
 * else a single-process stub (core/dist/dist_none.c) with the same face, so callers never
 * #ifdef. Process-wide state (as MPI's is): call ftq_dist_init once from the command, before
 * any other ftq_dist_* function, and ftq_dist_finalize once before exiting.
 *
 *     ftq_dist_init(&argc, &argv);           // MPI only when launched by mpirun
 *     float g[n];  ... local gradients ...
 *     int rc = ftq_dist_agree(local_rc);     // every rank learns whether any rank failed
 *     if (rc == FTQ_OK)
 *         rc = ftq_dist_allreduce(g, n, FTQ_DIST_F32, FTQ_DIST_SUM);
 *     ftq_dist_finalize();
 *
 * Every function except rank / size / failed_rank / available is collective: all ranks call
 * it in the same order with the same counts. Not thread-safe (call from one thread). With
 * one process every collective returns at once and leaves the buffers as they are. */
#ifndef FTQ_DIST_H
#define FTQ_DIST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { FTQ_DIST_F32, FTQ_DIST_F64, FTQ_DIST_I32, FTQ_DIST_I64 } ftq_dist_type;
typedef enum { FTQ_DIST_SUM, FTQ_DIST_MIN, FTQ_DIST_MAX } ftq_dist_op;

/* 1 if this build has MPI (-DFTQ_MPI=ON). */
int ftq_dist_available(void);

/* Join the job if the process was started by mpirun (Open MPI's / PMIx's environment
 * variables say so); otherwise, and in a build without MPI, a group of one. Returns
 * FTQ_EUNSUPPORTED if launched by mpirun with more than one rank in a build without MPI. */
int ftq_dist_init(int *argc, char ***argv);
/* Leave the job (MPI_Finalize). Safe to call when init did not start MPI. */
void ftq_dist_finalize(void);

int ftq_dist_rank(void); /* 0 .. size - 1 */
int ftq_dist_size(void); /* >= 1 */
/* Ranks on this node (Open MPI's local size), for a default thread count; 1 alone. */
int ftq_dist_local_size(void);

/* In-place reduction of n elements of buf over all ranks; every rank receives the result.
 * Large buffers go in fixed buckets (the same for every run with the same n), so a run is
 * reproducible bit for bit. */
int ftq_dist_allreduce(void *buf, size_t n, ftq_dist_type type, ftq_dist_op op);
/* bytes of buf from rank root to every rank. */
int ftq_dist_bcast(void *buf, size_t bytes, int root);
int ftq_dist_barrier(void);

/* Agree on a status: rc is this rank's (FTQ_OK or an error with its message set). Returns
 * FTQ_OK if every rank passed FTQ_OK. Otherwise the lowest failing rank keeps its own code
 * and message, and every other rank returns that rank's code with the message "stopped:
 * rank K of N failed"; ftq_dist_failed_rank() then names K on every rank, so one rank (K)
 * reports the failure. */
int ftq_dist_agree(int rc);
/* The rank the last failed ftq_dist_agree named, or -1 if none failed. */
int ftq_dist_failed_rank(void);

/* End every rank of the job with exit code `code` (MPI_Abort); the caller prints its
 * message first. Alone: returns, and the caller exits. For failures that leave the ranks
 * out of step, where ftq_dist_agree cannot be reached. */
void ftq_dist_abort(int code);

#ifdef __cplusplus
}
#endif
#endif
