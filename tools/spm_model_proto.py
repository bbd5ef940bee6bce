"""Minimal reader of a sentencepiece tokenizer.model (ModelProto, protobuf wire format) for the
fixture scripts: pieces (piece, score, type), trainer_spec.model_type / unk_piece /
byte_fallback and normalizer_spec.add_dummy_prefix. Field numbers as in
sentencepiece_model.proto. No dependency (protobuf / sentencepiece are not installed here)."""
import struct


def _varint(b, i):
    x, s = 0, 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return x, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield num, wire, v


def read(path):
    data = open(path, "rb").read()
    pieces = []
    trainer = {"model_type": 1, "unk_piece": "<unk>", "byte_fallback": False}
    norm = {"add_dummy_prefix": True}
    for num, wire, v in _fields(data):
        if num == 1:  # SentencePiece
            p = {"piece": "", "score": 0.0, "type": 1}
            for n2, w2, v2 in _fields(v):
                if n2 == 1:
                    p["piece"] = v2.decode("utf-8")
                elif n2 == 2:
                    p["score"] = struct.unpack("<f", v2)[0]
                elif n2 == 3:
                    p["type"] = v2
            pieces.append(p)
        elif num == 2:  # TrainerSpec
            for n2, w2, v2 in _fields(v):
                if n2 == 3:
                    trainer["model_type"] = v2
                elif n2 == 45:
                    trainer["unk_piece"] = v2.decode("utf-8")
                elif n2 == 35:
                    trainer["byte_fallback"] = bool(v2)
        elif num == 3:  # NormalizerSpec
            for n2, w2, v2 in _fields(v):
                if n2 == 3:
                    norm["add_dummy_prefix"] = bool(v2)
    return pieces, trainer, norm
