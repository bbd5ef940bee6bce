/* cpu.c - run-time CPU feature detection (cpuid + xgetbv) and thread settings.
 * Features are only reported when the OS saves the matching register state. Detection
 * (with FTQ_CPU_MASK applied) and the feature string are computed exactly once per process
 * under pthread_once, then only read, so any thread may call these at any time. */
#include "ftq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Linux >= 5.16 keeps AMX tile data off until a process asks for it (XFD): without the
 * grant the first tile instruction faults. 1 if granted (or already held). */
static int amx_permitted(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned long bits = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits) == 0 && (bits & (1ul << XFEATURE_XTILEDATA)))
        return 1;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 0;
    bits = 0;
    return syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits) == 0 && (bits & (1ul << XFEATURE_XTILEDATA));
#else
    return 0;
#endif
}

static uint64_t xgetbv0(void)
{
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static unsigned detect(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int osxsave = (c >> 27) & 1;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave)
        return 0;
    uint64_t xcr0 = xgetbv0();
    int ymm_ok = (xcr0 & 6) == 6;
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;
    int amx_ok = (xcr0 & (3u << 17)) == (3u << 17);
    unsigned a7, b7, c7, d7;
    __cpuid_count(7, 0, a7, b7, c7, d7);
    if (ymm_ok) {
        if ((b7 >> 5) & 1)
            f |= FTQ_CPU_AVX2;
        if (fma)
            f |= FTQ_CPU_FMA;
        if (f16c)
            f |= FTQ_CPU_F16C;
    }
    if (zmm_ok) {
        if ((b7 >> 16) & 1)
            f |= FTQ_CPU_AVX512F;
        if ((b7 >> 30) & 1)
            f |= FTQ_CPU_AVX512BW;
        if ((c7 >> 11) & 1)
            f |= FTQ_CPU_AVX512VNNI;
    }
    if (amx_ok && ((d7 >> 24) & 1)) {
        f |= FTQ_CPU_AMX;
        if ((d7 >> 22) & 1)
            f |= FTQ_CPU_AMX_BF16;
        if ((d7 >> 25) & 1)
            f |= FTQ_CPU_AMX_INT8;
    }
    unsigned a71, b71, c71, d71;
    __cpuid_count(7, 1, a71, b71, c71, d71);
    if (ymm_ok && ((a71 >> 4) & 1))
        f |= FTQ_CPU_AVXVNNI;
    if (zmm_ok && ((a71 >> 5) & 1))
        f |= FTQ_CPU_AVX512BF16;
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

/* Written once by init_features (under pthread_once), read-only afterwards. */
static unsigned features;
static char features_str[192];
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void init_features(void)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {FTQ_CPU_AVX2, "avx2"},         {FTQ_CPU_FMA, "fma"},
        {FTQ_CPU_F16C, "f16c"},         {FTQ_CPU_AVX512F, "avx512f"},
        {FTQ_CPU_AVX512BW, "avx512bw"}, {FTQ_CPU_AVX512VNNI, "avx512vnni"},
        {FTQ_CPU_AVX512BF16, "avx512bf16"}, {FTQ_CPU_AVXVNNI, "avxvnni"},
        {FTQ_CPU_AMX, "amx"},           {FTQ_CPU_AMX_BF16, "amx-bf16"},
        {FTQ_CPU_AMX_INT8, "amx-int8"},
    };
    unsigned f = detect();
    const char *mask = getenv("FTQ_CPU_MASK");
    if (mask && *mask)
        f &= (unsigned)strtoul(mask, NULL, 0);
    /* asked only when a kernel may use it (not masked off); a refusal means no AMX */
#if defined(__x86_64__) || defined(__i386__)
    if ((f & FTQ_CPU_AMX) && !amx_permitted())
        f &= ~(unsigned)FTQ_CPU_AMX;
#endif
    if (!(f & FTQ_CPU_AMX))
        f &= ~(unsigned)(FTQ_CPU_AMX_BF16 | FTQ_CPU_AMX_INT8);
    features = f;
    size_t len = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (f & names[i].bit) {
            int k = snprintf(features_str + len, sizeof features_str - len, "%s%s", len ? " " : "",
                             names[i].name);
            if (k > 0 && (size_t)k < sizeof features_str - len)
                len += (size_t)k;
        }
    }
    if (!len)
        snprintf(features_str, sizeof features_str, "scalar");
}

unsigned ftq_cpu_features(void)
{
    pthread_once(&features_once, init_features);
    return features;
}

const char *ftq_cpu_features_str(void)
{
    pthread_once(&features_once, init_features);
    return features_str;
}

/* OpenBLAS is linked by the library; its thread setter is declared here to avoid pulling
 * cblas.h into a core file. */
void openblas_set_num_threads(int num_threads);

static atomic_int n_threads; /* 0: not set, OpenMP's default */

void ftq_set_threads(int n)
{
#ifdef _OPENMP
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0)
        n = 1;
#endif
    atomic_store_explicit(&n_threads, n, memory_order_relaxed);
    openblas_set_num_threads(n);
}

int ftq_get_threads(void)
{
    int n = atomic_load_explicit(&n_threads, memory_order_relaxed);
    if (n > 0)
        return n;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
