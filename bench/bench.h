/* bench.h - entry points of the ftq_bench subcommands that live outside bench.c. Each takes
 * the arguments after the subcommand name (argv[0] is the subcommand) and returns the exit
 * status; speed numbers go to stdout and are reported, never asserted. */
#ifndef FTQ_BENCH_BENCH_H
#define FTQ_BENCH_BENCH_H

/* ftq_bench qmatmul [--reps N] [--path P] [--T LIST] [--shapes LIST] [--json]
 * f32 (ftq_linear_f32, OpenBLAS sgemv / sgemm) against the int8 / int4 kernels of
 * kernels/qlinear.h: GFLOP/s and GB/s of weight traffic, medians of --reps repetitions,
 * for W = 768x768, 2048x768, 768x2048 and 32000x768 at T = 1 (weights streamed from DRAM
 * and cache-hot) and T = 512 (bench/qbench.c). */
int ftq_bench_qmatmul(int argc, char **argv);

/* ftq_bench quant [-o DIR] [--ctx N] [--chunks N] [--reps N] [--gen N] [--text FILE] lives
 * in bench.c (it shares the checkpoint writer): the 110M Llama in f32, int8 and int4. */

/* ftq_bench train [-o DIR] [--batch B] [--seq T] [--steps N]
 * One full fine-tuning step (forward, backward, AdamW; causal LM) of the GPT-2 124M and
 * 110M Llama checkpoints in DIR (written by `ftq_bench models`): tokens/s, s/step, MFU
 * against the sgemm rate of the same run, peak RSS (bench/train_bench.c). */
int ftq_bench_train(int argc, char **argv);

/* ftq_bench tokenize [--reps N]
 * Whole-file encoding time of every tokenizer loader (GPT-2, Llama-2, stories260K) on
 * WikiText-2 test, the TinyStories sample and Tiny Shakespeare: median of N runs,
 * tokens/s and MB/s (bench/tokbench.c). */
int ftq_bench_tokenize(int argc, char **argv);

/* ftq_bench bert [-m DIR | --shape base [-o DIR]] [--batch B] [--seq T] [--reps N] [--quant]
 * A BERT encoder (default the shared all-MiniLM-L6-v2): forward and full training step on
 * B x T tokens, tokens/s and the fraction of the sgemm rate of the same run
 * (bench/bert_bench.c). */
int ftq_bench_bert(int argc, char **argv);

/* Shared measurements (bench/bench_util.c). ftq_bench_median sorts v. ftq_bench_sgemm_gflops:
 * the median rate of min(reps, 32) OpenBLAS sgemm calls C[M, N] = A[M, K] B[N, K]^T after one
 * warm-up call, GFLOP/s; 0 if the matrices cannot be allocated. */
double ftq_bench_median(double *v, int n);
double ftq_bench_sgemm_gflops(int M, int N, int K, int reps);

#endif
