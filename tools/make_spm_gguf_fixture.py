#!/usr/bin/env python3
"""make_spm_gguf_fixture.py - a llama-SPM GGUF with no tensors, written with the `gguf`
package (llama.cpp's gguf-py): tokenizer.ggml.model "llama" with the tokens, scores and token
types of Llama 2's sentencepiece BPE model (../shared/tokenizers/llama2/tokenizer.model,
32,000 pieces, byte fallback) and the llama.* keys ftq needs for a config.json (a 2-layer,
64-wide shape: the tensors are not needed to write the model files). Read by
tests/test_gguf_sidecar.c, which writes tokenizer.json from it and compares the ids with
tests/fixtures/spm_gguf/expected.json (tools/make_spm_gguf_ids.py).

    python3 tools/make_spm_gguf_fixture.py [SHARED_DIR]     (a Python with `gguf` and numpy)

Writes tests/fixtures/spm_gguf/llama2_tok.gguf. Deterministic.
"""
import os
import sys

import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spm_model_proto  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "fixtures", "spm_gguf")
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))


def main():
    pieces, trainer, norm = spm_model_proto.read(os.path.join(SHARED, "tokenizers/llama2/tokenizer.model"))
    assert trainer["model_type"] == 2 and trainer["byte_fallback"]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "llama2_tok.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("llama2-tokenizer-only")
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_block_count(2)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(pieces))
    w.add_tokenizer_model("llama")
    w.add_token_list([p["piece"] for p in pieces])
    w.add_token_scores([p["score"] for p in pieces])
    w.add_token_types([p["type"] for p in pieces])
    w.add_add_space_prefix(norm["add_dummy_prefix"])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
