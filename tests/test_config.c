/* test_config.c - io/config.c: the shipped configs parse field by field, qwen2 / mistral
 * variants get their family defaults, and every malformed or unsupported config is refused
 * with the right status and a message naming the file and the key. */
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

static void test_stories260K(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_load(shared_path("models/stories260K/config.json"), &c));
    CU_ASSERT_EQUAL(c.arch, FTQ_ARCH_LLAMA);
    CU_ASSERT_STRING_EQUAL(c.model_type, "llama");
    ASSERT_INT_EQ(c.vocab_size, 512);
    ASSERT_INT_EQ(c.hidden_size, 64);
    ASSERT_INT_EQ(c.intermediate_size, 172);
    ASSERT_INT_EQ(c.n_layers, 5);
    ASSERT_INT_EQ(c.n_heads, 8);
    ASSERT_INT_EQ(c.n_kv_heads, 4);
    ASSERT_INT_EQ(c.head_dim, 8);
    ASSERT_INT_EQ(c.max_position, 512);
    CU_ASSERT_EQUAL(c.norm_eps, 1e-5f);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0f);
    CU_ASSERT_EQUAL(c.act, FTQ_ACT_SILU);
    ASSERT_INT_EQ(c.tie_word_embeddings, 1);
    ASSERT_INT_EQ(c.qkv_bias, 0);
    ASSERT_INT_EQ(c.o_bias, 0);
    ASSERT_INT_EQ(c.mlp_bias, 0);
    ASSERT_INT_EQ(c.sliding_window, 0);
    ASSERT_INT_EQ(c.bos_token_id, 1);
    ASSERT_INT_EQ(c.eos_token_id, 2);
    ASSERT_INT_EQ(c.pad_token_id, -1);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "float32");
    ASSERT_INT_EQ(c.num_labels, 0);
    ASSERT_INT_EQ(ftq_config_param_count(&c), 260032); /* PROVENANCE.md */
    /* a directory works too */
    ftq_model_config d;
    ASSERT_OK(ftq_config_load(shared_path("models/stories260K"), &d));
    CU_ASSERT(memcmp(&c, &d, sizeof c) == 0);
}

static void test_llama_tiny(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_load(shared_path("golden/llama_tiny_random/config.json"), &c));
    CU_ASSERT_EQUAL(c.arch, FTQ_ARCH_LLAMA);
    CU_ASSERT_STRING_EQUAL(c.model_type, "llama");
    ASSERT_INT_EQ(c.vocab_size, 512);
    ASSERT_INT_EQ(c.hidden_size, 64);
    ASSERT_INT_EQ(c.intermediate_size, 176);
    ASSERT_INT_EQ(c.n_layers, 2);
    ASSERT_INT_EQ(c.n_heads, 4);
    ASSERT_INT_EQ(c.n_kv_heads, 2);
    ASSERT_INT_EQ(c.head_dim, 16);
    ASSERT_INT_EQ(c.max_position, 128);
    CU_ASSERT_EQUAL(c.norm_eps, 1e-6f);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0f);
    CU_ASSERT_EQUAL(c.act, FTQ_ACT_SILU);
    ASSERT_INT_EQ(c.tie_word_embeddings, 0);
    ASSERT_INT_EQ(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
    ASSERT_INT_EQ(c.sliding_window, 0);
    ASSERT_INT_EQ(c.bos_token_id, 1);
    ASSERT_INT_EQ(c.eos_token_id, 2);
    ASSERT_INT_EQ(c.pad_token_id, -1);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "float32");
    ASSERT_INT_EQ(c.num_labels, 0);
    /* 512*64 embed + 2 layers * (64*64 + 2*32*64 + 64*64 + 3*64*176 + 2*64) + 64 + 512*64 lm_head */
    ASSERT_INT_EQ(ftq_config_param_count(&c), 158016);
}

static void test_gpt2_tiny(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_load(shared_path("golden/gpt2_tiny_random/config.json"), &c));
    CU_ASSERT_EQUAL(c.arch, FTQ_ARCH_GPT2);
    CU_ASSERT_STRING_EQUAL(c.model_type, "gpt2");
    ASSERT_INT_EQ(c.vocab_size, 50257);
    ASSERT_INT_EQ(c.hidden_size, 64);
    ASSERT_INT_EQ(c.intermediate_size, 256); /* n_inner null -> 4 * n_embd */
    ASSERT_INT_EQ(c.n_layers, 2);
    ASSERT_INT_EQ(c.n_heads, 4);
    ASSERT_INT_EQ(c.n_kv_heads, 4);
    ASSERT_INT_EQ(c.head_dim, 16);
    ASSERT_INT_EQ(c.max_position, 128);
    CU_ASSERT_EQUAL(c.norm_eps, 1e-5f);
    CU_ASSERT_EQUAL(c.rope_theta, 0.0f);
    CU_ASSERT_EQUAL(c.act, FTQ_ACT_GELU_TANH);
    ASSERT_INT_EQ(c.tie_word_embeddings, 1);
    ASSERT_INT_EQ(c.qkv_bias, 1);
    ASSERT_INT_EQ(c.o_bias, 1);
    ASSERT_INT_EQ(c.mlp_bias, 1);
    ASSERT_INT_EQ(c.sliding_window, 0);
    ASSERT_INT_EQ(c.bos_token_id, 50256);
    ASSERT_INT_EQ(c.eos_token_id, 50256);
    ASSERT_INT_EQ(c.pad_token_id, -1);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "float32");
    ASSERT_INT_EQ(c.num_labels, 0);
    /* wte + wpe + 2 * 49,984 per block + ln_f (golden/README.md lists the 28 tensors) */
    ASSERT_INT_EQ(ftq_config_param_count(&c), 50257 * 64 + 128 * 64 + 2 * 49984 + 128);
}

static const char *QWEN2 =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",\"vocab_size\":151936,"
    "\"hidden_size\":896,\"intermediate_size\":4864,\"num_hidden_layers\":24,\"num_attention_heads\":14,"
    "\"num_key_value_heads\":2,\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-06,"
    "\"rope_theta\":1000000.0,\"rope_scaling\":null,\"hidden_act\":\"silu\",\"tie_word_embeddings\":true,"
    "\"use_sliding_window\":false,\"sliding_window\":32768,\"max_window_layers\":21,"
    "\"bos_token_id\":151643,\"eos_token_id\":151645,\"torch_dtype\":\"bfloat16\",\"attention_dropout\":0.0}";

static void test_qwen2(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_parse(QWEN2, strlen(QWEN2), "qwen2.json", &c));
    CU_ASSERT_EQUAL(c.arch, FTQ_ARCH_LLAMA);
    CU_ASSERT_STRING_EQUAL(c.model_type, "qwen2");
    ASSERT_INT_EQ(c.head_dim, 64);
    ASSERT_INT_EQ(c.n_kv_heads, 2);
    ASSERT_INT_EQ(c.qkv_bias, 1);
    ASSERT_INT_EQ(c.o_bias, 0);
    ASSERT_INT_EQ(c.mlp_bias, 0);
    ASSERT_INT_EQ(c.tie_word_embeddings, 1);
    ASSERT_INT_EQ(c.sliding_window, 0);
    CU_ASSERT_EQUAL(c.rope_theta, 1000000.0f);
    ASSERT_INT_EQ(c.bos_token_id, 151643);
    ASSERT_INT_EQ(c.eos_token_id, 151645);
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "bfloat16");
    /* Qwen2.5-0.5B: 494,032,768 parameters (tied) */
    ASSERT_INT_EQ(ftq_config_param_count(&c), 494032768);
}

static const char *MISTRAL =
    "{\"model_type\":\"mistral\",\"vocab_size\":32000,\"hidden_size\":4096,\"intermediate_size\":14336,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
    "\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
    "\"sliding_window\":4096,\"hidden_act\":\"silu\",\"bos_token_id\":1,\"eos_token_id\":[2, 7],"
    "\"id2label\":{\"0\":\"neg\",\"1\":\"pos\",\"2\":\"neutral\"}}";

static void test_mistral(void)
{
    ftq_model_config c;
    ASSERT_OK(ftq_config_parse(MISTRAL, strlen(MISTRAL), "mistral.json", &c));
    CU_ASSERT_STRING_EQUAL(c.model_type, "mistral");
    ASSERT_INT_EQ(c.head_dim, 128);
    ASSERT_INT_EQ(c.n_kv_heads, 8);
    ASSERT_INT_EQ(c.sliding_window, 4096);
    ASSERT_INT_EQ(c.tie_word_embeddings, 0);
    ASSERT_INT_EQ(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
    ASSERT_INT_EQ(c.eos_token_id, 2); /* first of the list */
    ASSERT_INT_EQ(c.num_labels, 3);   /* size of id2label */
    CU_ASSERT_STRING_EQUAL(c.torch_dtype, "");
    /* Mistral-7B: 7,241,732,096 parameters */
    ASSERT_INT_EQ(ftq_config_param_count(&c), 7241732096LL);
}

/* Defaults when optional keys are absent, and llama attention_bias / mlp_bias. */
static void test_defaults_and_biases(void)
{
    const char *j = "{\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64,"
                    "\"attention_bias\":true,\"mlp_bias\":true,\"num_labels\":5,\"pad_token_id\":0}";
    ftq_model_config c;
    ASSERT_OK(ftq_config_parse(j, strlen(j), "d.json", &c));
    ASSERT_INT_EQ(c.n_kv_heads, 4);
    ASSERT_INT_EQ(c.head_dim, 8);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0f);
    CU_ASSERT_EQUAL(c.norm_eps, 1e-6f);
    ASSERT_INT_EQ(c.qkv_bias, 1);
    ASSERT_INT_EQ(c.o_bias, 1);
    ASSERT_INT_EQ(c.mlp_bias, 1);
    ASSERT_INT_EQ(c.tie_word_embeddings, 0);
    ASSERT_INT_EQ(c.bos_token_id, -1);
    ASSERT_INT_EQ(c.eos_token_id, -1);
    ASSERT_INT_EQ(c.pad_token_id, 0);
    ASSERT_INT_EQ(c.num_labels, 5);
    /* 2*100*32 + (32*32*4 + 32*3 + 32 + 3*32*64 + 2*64 + 32 + 2*32) + 32 */
    ASSERT_INT_EQ(ftq_config_param_count(&c), 6400 + 4096 + 96 + 32 + 6144 + 128 + 32 + 64 + 32);

    const char *g = "{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                    "\"n_ctx\":16,\"n_inner\":20,\"activation_function\":\"relu\",\"tie_word_embeddings\":false}";
    ASSERT_OK(ftq_config_parse(g, strlen(g), "g.json", &c));
    ASSERT_INT_EQ(c.max_position, 16);
    ASSERT_INT_EQ(c.intermediate_size, 20);
    CU_ASSERT_EQUAL(c.act, FTQ_ACT_RELU);
    CU_ASSERT_EQUAL(c.norm_eps, 1e-5f);
    ASSERT_INT_EQ(c.tie_word_embeddings, 0);
    const char *g2 = "{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,"
                     "\"n_positions\":16,\"activation_function\":\"gelu\"}";
    ASSERT_OK(ftq_config_parse(g2, strlen(g2), "g2.json", &c));
    CU_ASSERT_EQUAL(c.act, FTQ_ACT_GELU);
    ASSERT_INT_EQ(c.intermediate_size, 32);
    ASSERT_INT_EQ(c.tie_word_embeddings, 1);
}

/* ---- refusals -------------------------------------------------------------------- */

/* A minimal valid llama config with `extra` spliced in after the opening brace; keys in
 * `extra` come first, so tests override the defaults below by using their own text. */
#define LLAMA_BASE                                                                                      \
    "\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"           \
    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64"

#define GPT2_BASE "\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"n_positions\":16"

static void expect_at(const char *json, int status, const char *phrase, int line)
{
    ftq_model_config c;
    memset(&c, 0x5a, sizeof c);
    ftq_model_config before = c;
    ftq_clear_error();
    int rc = ftq_config_parse(json, strlen(json), "DIR/config.json", &c);
    const char *msg = ftq_last_error();
    int ok = rc == status && strstr(msg, "'DIR/config.json'") && strstr(msg, phrase) &&
             memcmp(&c, &before, sizeof c) == 0; /* untouched on failure */
    if (!ok)
        fprintf(stderr, "\n  line %d: got %d \"%s\", expected %d \"%s\"\n", line, rc, msg, status, phrase);
    CU_ASSERT(ok);
}
#define EXPECT(json, status, phrase) expect_at((json), (status), (phrase), __LINE__)

/* A JSON file is parsed whole (~40 bytes of tree per byte): config.json is refused above
 * FTQ_MAX_CONFIG_BYTES before anything is allocated, with its size and the limit */
static void test_size_limit(void)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", test_tmpdir("cfg_huge"));
    FILE *fp = fopen(path, "wb");
    CU_ASSERT_FATAL(fp != NULL);
    fputs("{\"model_type\": \"llama\"", fp);
    for (size_t i = 0; i < FTQ_MAX_CONFIG_BYTES / 64 + 1; i++)
        fputs("                                                                ", fp);
    fputs("}", fp);
    CU_ASSERT_EQUAL_FATAL(fclose(fp), 0);
    ftq_model_config c;
    CU_ASSERT_EQUAL(ftq_config_load(path, &c), FTQ_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "is more than ftq reads for this kind of file (at most 16777216)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), path));
}

static void test_refusals(void)
{
    EXPECT("{\"model_type\":\"bert\"}", FTQ_EUNSUPPORTED, "key \"model_type\" is \"bert\"");
    EXPECT("{\"hidden_size\":4}", FTQ_EFORMAT, "missing required key \"model_type\"");
    EXPECT("{\"model_type\":7}", FTQ_EFORMAT, "key \"model_type\" must be a string, got 7");
    EXPECT("{" LLAMA_BASE ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2.0}}", FTQ_EUNSUPPORTED,
           "key \"rope_scaling\" (type \"yarn\") is not supported");
    EXPECT("{" LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}}", FTQ_EFORMAT,
           "key \"rope_scaling\" of type \"llama3\" has no \"low_freq_factor\"");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":100,\"intermediate_size\":64,\"num_hidden_layers\":1,"
           "\"num_attention_heads\":4,\"max_position_embeddings\":64}",
           FTQ_EFORMAT, "missing required key \"hidden_size\"");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":-3,\"max_position_embeddings\":64}",
           FTQ_EFORMAT, "invalid config 'DIR/config.json': key \"num_attention_heads\" must be a positive integer, got -3");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":30,\"intermediate_size\":64,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64}",
           FTQ_EFORMAT, "key \"hidden_size\" (30) must be divisible by \"num_attention_heads\" (4)");
    EXPECT("{" LLAMA_BASE ",\"num_key_value_heads\":3}", FTQ_EFORMAT,
           "key \"num_attention_heads\" (4) must be a multiple of \"num_key_value_heads\" (3)");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":\"100\",\"hidden_size\":32}", FTQ_EFORMAT,
           "key \"vocab_size\" must be a positive integer, got \"100\"");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":100.5,\"hidden_size\":32}", FTQ_EFORMAT,
           "key \"vocab_size\" must be a positive integer, got 100.5");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":0}", FTQ_EFORMAT, "key \"vocab_size\" must be a positive integer, got 0");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":33554432}", FTQ_EUNSUPPORTED,
           "key \"vocab_size\" is 33554432, more than ftq supports");
    EXPECT("{\"model_type\":\"llama\",\"vocab_size\":1e300}", FTQ_EFORMAT, "got 1e+300");
    EXPECT("{\"model_type\":\"llama\",", FTQ_EFORMAT, "invalid JSON at byte");
    EXPECT("not json", FTQ_EFORMAT, "invalid JSON at byte 0");
    EXPECT("[1, 2]", FTQ_EFORMAT, "the file is an array (expected a JSON object)");
    EXPECT("{} {}", FTQ_EFORMAT, "unexpected data after the JSON value");
    EXPECT("{" LLAMA_BASE ",\"model_type\":\"gpt2\"}", FTQ_EFORMAT, "key \"model_type\" appears twice");
    EXPECT("{" LLAMA_BASE ",\"hidden_act\":\"gelu\"}", FTQ_EUNSUPPORTED,
           "key \"hidden_act\" is \"gelu\" (expected \"silu\" for llama)");
    EXPECT("{" LLAMA_BASE ",\"tie_word_embeddings\":1}", FTQ_EFORMAT,
           "key \"tie_word_embeddings\" must be true or false, got 1");
    EXPECT("{" LLAMA_BASE ",\"rms_norm_eps\":-1e-5}", FTQ_EFORMAT, "key \"rms_norm_eps\" must be a positive number");
    EXPECT("{" LLAMA_BASE ",\"rope_theta\":\"1e4\"}", FTQ_EFORMAT, "key \"rope_theta\" must be a positive number, got \"1e4\"");
    EXPECT("{" LLAMA_BASE ",\"eos_token_id\":100}", FTQ_EFORMAT, "key \"eos_token_id\" must be a token id in [0, 100), got 100");
    EXPECT("{" LLAMA_BASE ",\"bos_token_id\":[\"a\"]}", FTQ_EFORMAT, "key \"bos_token_id\" must be a token id");
    EXPECT("{" LLAMA_BASE ",\"head_dim\":7}", FTQ_EFORMAT, "key \"head_dim\" must be even");
    EXPECT("{" LLAMA_BASE ",\"num_labels\":3,\"id2label\":{\"0\":\"a\"}}", FTQ_EFORMAT,
           "key \"num_labels\" is 3 but \"id2label\" has 1 entries");
    /* a stated limit: num_labels sizes a head, metrics and label tables */
    EXPECT("{" LLAMA_BASE ",\"num_labels\":16777216}", FTQ_EUNSUPPORTED, "key \"num_labels\" is 16777216, more than ftq supports (at most 65536)");
    EXPECT("{" LLAMA_BASE ",\"num_labels\":65537}", FTQ_EUNSUPPORTED, "(at most 65536)");
    EXPECT("{" LLAMA_BASE ",\"torch_dtype\":\"a-very-long-dtype-name\"}", FTQ_EUNSUPPORTED, "key \"torch_dtype\"");
    EXPECT("{\"model_type\":\"qwen2\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"max_position_embeddings\":64,"
           "\"use_sliding_window\":true,\"sliding_window\":16}",
           FTQ_EUNSUPPORTED, "key \"use_sliding_window\" is true");
    EXPECT("{" GPT2_BASE ",\"activation_function\":\"swish\"}", FTQ_EUNSUPPORTED,
           "key \"activation_function\" is \"swish\"");
    EXPECT("{" GPT2_BASE ",\"scale_attn_by_inverse_layer_idx\":true}", FTQ_EUNSUPPORTED,
           "key \"scale_attn_by_inverse_layer_idx\" is true");
    EXPECT("{" GPT2_BASE ",\"reorder_and_upcast_attn\":true}", FTQ_EUNSUPPORTED, "key \"reorder_and_upcast_attn\" is true");
    EXPECT("{" GPT2_BASE ",\"scale_attn_weights\":false}", FTQ_EUNSUPPORTED, "key \"scale_attn_weights\" is false");
    EXPECT("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":3,\"n_positions\":16}",
           FTQ_EFORMAT, "key \"n_embd\" (8) must be divisible by \"n_head\" (3)");
    EXPECT("{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2}", FTQ_EFORMAT,
           "missing required key \"n_positions\"");
}

static void test_load_errors(void)
{
    ftq_model_config c;
    const char *dir = test_tmpdir("config_load");
    CU_ASSERT_EQUAL(ftq_config_load(dir, &c), FTQ_EIO);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), "config.json"));
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *fp = fopen(p, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs("{\"model_type\":\"llama\"}", fp);
    fclose(fp);
    CU_ASSERT_EQUAL(ftq_config_load(dir, &c), FTQ_EFORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(ftq_last_error(), p)); /* the message names the real file */
}

/* Every prefix of a real config that stops before its closing brace is refused, and the
 * parser never reads past the length it was given (exact-size buffers for ASan). */
static void test_truncated_prefixes(void)
{
    char *text = NULL;
    size_t len = 0;
    ASSERT_OK(ftq_read_file(shared_path("golden/gpt2_tiny_random/config.json"), &text, &len));
    size_t close = len;
    while (close > 0 && text[close - 1] != '}')
        close--;
    int bad = 0;
    for (size_t n = 0; n < close; n++) {
        char *exact = malloc(n ? n : 1);
        memcpy(exact, text, n);
        ftq_model_config c;
        if (ftq_config_parse(exact, n, "cut.json", &c) != FTQ_EFORMAT)
            bad++;
        free(exact);
    }
    ASSERT_INT_EQ(bad, 0);
    ftq_model_config c;
    ASSERT_OK(ftq_config_parse(text, close, "whole.json", &c));
    free(text);
}

void test_register_config(void)
{
    static const test_case cases[] = {
        {"stories260K", test_stories260K},
        {"llama_tiny", test_llama_tiny},
        {"gpt2_tiny", test_gpt2_tiny},
        {"qwen2", test_qwen2},
        {"mistral", test_mistral},
        {"defaults_and_biases", test_defaults_and_biases},
        {"refusals", test_refusals},
        {"size_limit", test_size_limit},
        {"load_errors", test_load_errors},
        {"truncated_prefixes", test_truncated_prefixes},
        {NULL, NULL},
    };
    test_add_suite("config", cases);
}
