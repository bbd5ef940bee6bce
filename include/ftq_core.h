/* ftq_core.h - dtypes, the tensor descriptor, CPU features, threads, files, time.
 *
 * One dtype traits table (ftq_dtype_info) replaces per-dtype switch statements: every
 * dtype knows its safetensors name, its block size and bytes per block, and how to turn
 * a run of elements into float32. A tensor is a descriptor over memory it may or may not
 * own (see ftq_tensor.owned).
 */
#ifndef FTQ_CORE_H
#define FTQ_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes ---------------------------------------------------------------------- */

/* Append-only: values are stored in files written by ftq. */
typedef enum {
    FTQ_DTYPE_F32 = 0,
    FTQ_DTYPE_F16,
    FTQ_DTYPE_BF16,
    FTQ_DTYPE_F64,
    FTQ_DTYPE_I8,
    FTQ_DTYPE_U8,
    FTQ_DTYPE_I16,
    FTQ_DTYPE_U16,
    FTQ_DTYPE_I32,
    FTQ_DTYPE_U32,
    FTQ_DTYPE_I64,
    FTQ_DTYPE_U64,
    FTQ_DTYPE_BOOL,
    FTQ_DTYPE_F8_E4M3,
    FTQ_DTYPE_F8_E5M2,
    /* In memory only, never in a file: a quantized weight matrix [out, in] whose data
     * points to an ftq_qmat (kernels/qlinear.h, int8 / int4 codes in the kernel layout).
     * Its traits have block_size 0 and no conversions; ftq_dtype_from_name never returns it.
     * The model's linear layers use it when loaded from a quantized checkpoint
     * (docs/quant-format.md). */
    FTQ_DTYPE_QMAT,
    /* In memory only, like QMAT: a weight matrix [out, in] held as packed bf16, data -> an
     * ftq_bmat (kernels/bmat.h). Linear layers, embeddings and heads of a model loaded
     * with FTQ_LOAD_BF16 (`--precision bf16`). */
    FTQ_DTYPE_BMAT,
    FTQ_DTYPE_COUNT
} ftq_dtype;

typedef void (*ftq_to_f32_fn)(const void *src, float *dst, size_t n);
typedef void (*ftq_from_f32_fn)(const float *src, void *dst, size_t n);

typedef struct {
    const char *name;         /* safetensors spelling: "F32", "BF16", ... */
    size_t block_size;        /* elements per block (1 for plain types) */
    size_t block_bytes;       /* bytes per block */
    int is_float;             /* 1 for floating-point types */
    ftq_to_f32_fn to_f32;     /* NULL if not convertible */
    ftq_from_f32_fn from_f32; /* NULL if ftq cannot write it from f32 */
} ftq_dtype_traits;

/* Traits of `t`; NULL for an out-of-range value. */
const ftq_dtype_traits *ftq_dtype_info(ftq_dtype t);

/* Parse a safetensors dtype name ("F32", "BF16", ...). Returns FTQ_OK or FTQ_ENOTFOUND
 * (no message is set; callers name the file and tensor). In-memory dtypes (QMAT) are
 * never returned. */
int ftq_dtype_from_name(const char *name, ftq_dtype *out);

/* Scalar conversions (IEEE round-to-nearest-even, NaN preserved). */
float ftq_f16_to_f32(uint16_t h);
uint16_t ftq_f32_to_f16(float f);
float ftq_bf16_to_f32(uint16_t h);
uint16_t ftq_f32_to_bf16(float f);

/* ---- tensors --------------------------------------------------------------------- */

#define FTQ_MAX_DIMS 8

typedef struct ftq_tensor {
    char *name;                    /* owned by whoever owns the descriptor */
    ftq_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    int64_t shape[FTQ_MAX_DIMS];   /* row-major, shape[ndim-1] is contiguous */
    size_t nbytes;                 /* byte size of data */
    void *data;                    /* may point into an mmap'd file */
    int owned;                     /* 1 if data was malloc'd for this tensor */
} ftq_tensor;

/* Number of elements (1 for a scalar). Saturates at INT64_MAX. */
int64_t ftq_tensor_numel(const ftq_tensor *t);

/* Convert the whole tensor to float32 into dst (numel floats). FTQ_EUNSUPPORTED if the
 * dtype has no conversion. */
int ftq_tensor_to_f32(const ftq_tensor *t, float *dst);

/* Format a shape as "[2, 3, 4]" into buf (always NUL-terminated). Returns buf. */
char *ftq_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* ---- CPU features and threads ---------------------------------------------------- */

enum {
    FTQ_CPU_AVX2 = 1 << 0,
    FTQ_CPU_FMA = 1 << 1,
    FTQ_CPU_F16C = 1 << 2,
    FTQ_CPU_AVX512F = 1 << 3,
    FTQ_CPU_AVX512BW = 1 << 4,
    FTQ_CPU_AVX512VNNI = 1 << 5,
    FTQ_CPU_AVX512BF16 = 1 << 6,
    FTQ_CPU_AVXVNNI = 1 << 7,
    FTQ_CPU_AMX = 1 << 8,       /* AMX-TILE, with the tile data state granted by the OS */
    FTQ_CPU_AMX_BF16 = 1 << 9,  /* TDPBF16PS (only with FTQ_CPU_AMX) */
    FTQ_CPU_AMX_INT8 = 1 << 10, /* TDPB[SU]D (only with FTQ_CPU_AMX) */
};

/* Bit set of FTQ_CPU_* detected at run time, once per process (the first call from any
 * thread; thread-safe). The AMX bits are reported only when Linux grants this process the
 * tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, requested here at detection); a refusal
 * clears them, so the kernels fall back. The environment variable FTQ_CPU_MASK (decimal or 0x hex) ANDs
 * the result, so tests and benchmarks can force the scalar paths; it is read at that first
 * call, so a test that needs another mask runs a child process. */
unsigned ftq_cpu_features(void);

/* Human-readable list, e.g. "avx2 fma f16c avx512f avx512vnni" (a static string built
 * once with the features; thread-safe). */
const char *ftq_cpu_features_str(void);

/* Threads used by OpenMP regions and by OpenBLAS (0 = all cores). Sets both so they do
 * not oversubscribe. */
void ftq_set_threads(int n);
int ftq_get_threads(void);

/* ---- time and memory ------------------------------------------------------------- */

double ftq_time_sec(void);       /* monotonic seconds */
size_t ftq_peak_rss_bytes(void); /* peak resident set size of this process, 0 if unknown */

/* ---- files ----------------------------------------------------------------------- */

/* Read a whole file into a NUL-terminated malloc'd buffer. */
int ftq_read_file(const char *path, char **data, size_t *len);

/* ftq_read_file for files that are parsed whole (JSON costs ~40 bytes of tree per byte of
 * text): a file larger than max bytes is refused with its size and the limit, before
 * anything is allocated. Limits for the kinds ftq reads: */
#define FTQ_MAX_CONFIG_BYTES ((size_t)16 << 20)     /* config.json, tokenizer_config.json, ... */
#define FTQ_MAX_INDEX_BYTES ((size_t)64 << 20)      /* model.safetensors.index.json */
#define FTQ_MAX_TOKENIZER_BYTES ((size_t)256 << 20) /* tokenizer.json, vocab files, trainer state */
int ftq_read_file_max(const char *path, size_t max, char **data, size_t *len);

/* Drop the whole pages of [p, p + n) from a read-only file mapping [base, base + size)
 * once a loader has copied them (the kernel re-reads them from the file if touched again).
 * Does nothing for memory outside the mapping or when map is 0 (not a file mapping). */
void ftq_mapped_release(int map, const void *base, size_t size, const void *p, size_t n);

/* 1 if path exists and is a directory / a regular file. */
int ftq_is_dir(const char *path);
int ftq_is_file(const char *path);

/* "dir" + "/" + "name" into a malloc'd string (NULL on OOM). */
char *ftq_path_join(const char *dir, const char *name);
/* 1 if name is one of the entries of the comma-separated list (exact, case-sensitive). */
int ftq_list_has(const char *list, const char *name);

/* Atomic file output: data goes to "<path>.tmp.<pid>", and ftq_atomic_commit fsyncs,
 * closes and renames it over `path` (and fsyncs the directory). ftq_atomic_abort
 * removes the temp file. Exactly one of commit/abort must be called. */
typedef struct ftq_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} ftq_atomic_file;

int ftq_atomic_open(ftq_atomic_file *af, const char *path);
int ftq_atomic_commit(ftq_atomic_file *af);
void ftq_atomic_abort(ftq_atomic_file *af);

/* Copy a file (atomically, as above). */
int ftq_copy_file(const char *src, const char *dst);

/* Whole output directories (a model written by prune / quantize / finetune): files go
 * into a fresh "<path>.tmp.<pid>" (returned malloc'd in *tmp_dir) and ftq_outdir_commit
 * renames it to path (replacing an existing path only if replace) and frees tmp_dir;
 * ftq_outdir_abort removes it. Without replace an existing path is an error up front. */
int ftq_outdir_begin(const char *path, int replace, char **tmp_dir);
int ftq_outdir_commit(char *tmp_dir, const char *path, int replace);
void ftq_outdir_abort(char *tmp_dir);
int ftq_remove_tree(const char *path);

/* Leftovers of killed runs: removes the entries of dir named STEM.tmp.PID or STEM.old.PID
 * (any STEM when stem is NULL; a file or a whole directory) whose process PID no longer
 * exists on this machine. Entries of live processes (this one included) are kept. The
 * removed paths are returned in *removed (malloc'd array of malloc'd strings, free with
 * ftq_free_strings; NULL when none) so the caller can say so. A missing dir is not an
 * error. Not thread-safe against another writer of the same directory's temp names. */
int ftq_sweep_stale(const char *dir, const char *stem, char ***removed, int *n_removed);

/* Copy the non-weight files of a model directory that exist (tokenizer files,
 * generation_config.json, LICENSE; config.json too if with_config). */
int ftq_copy_model_files(const char *src_dir, const char *dst_dir, int with_config);

/* ---- random numbers -------------------------------------------------------------- */

/* xoshiro256** seeded with splitmix64: reproducible across platforms. */
typedef struct {
    uint64_t s[4];
} ftq_rng;

void ftq_rng_seed(ftq_rng *r, uint64_t seed);
uint64_t ftq_rng_u64(ftq_rng *r);
float ftq_rng_uniform(ftq_rng *r); /* [0, 1) with 24 random bits */
float ftq_rng_normal(ftq_rng *r);  /* standard normal (Box-Muller) */

#ifdef __cplusplus
}
#endif

#endif
