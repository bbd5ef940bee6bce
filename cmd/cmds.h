/* cmds.h - the subcommands of the ftq binary, one file each under cmd/. */
#ifndef FTQ_CMDS_H
#define FTQ_CMDS_H

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_embed(int argc, char **argv);
/* BERT encoders (cmd/bert_cmds.c): cmd_classify / cmd_info hand over when -m is one. */
int cmd_classify_bert(int argc, char **argv);
int cmd_info_bert(int argc, char **argv);
const char *cmd_model_arg(int argc, char **argv); /* the -m / --model value, else the default */
int cmd_prune(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_dequantize(int argc, char **argv);
int cmd_pipeline(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_merge(int argc, char **argv);
/* Export a model (directory or GGUF) as a GGUF file of type type_s (f32, f16, q8_0, q4_0):
 * FTQ_OK, a negative FTQ_E* (message set), or 2 for an unknown type. */
int cmd_export_gguf(const char *model, const char *type_s, const char *out);

/* Apply $FTQ_THREADS (or all cores) to OpenMP and OpenBLAS. */
void cmd_init_threads(void);

#endif
