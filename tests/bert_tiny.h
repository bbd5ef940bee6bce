/* bert_tiny.h - the batch of golden/bert_tiny_random/golden.json, shared by the BERT
 * training tests (defined in test_bert_train.c). */
#ifndef FTQ_TESTS_BERT_TINY_H
#define FTQ_TESTS_BERT_TINY_H

#include <cjson/cJSON.h>
#include <stdint.h>

typedef struct {
    int32_t ids[3 * 13], labels[3];
    int lens[3], B, T;
} bert_tiny_batch;

/* ids (right-padded), lengths from the attention mask and labels; a fatal assertion unless
 * the batch is the expected 3 x 13. */
void bert_tiny_inputs(const cJSON *j, bert_tiny_batch *tb);

#endif
