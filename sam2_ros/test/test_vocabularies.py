"""Tokenizers from made-up vocabularies: each word's id is the one it was given, as transformers 4 and 5 read them."""
from sam2_ros.tools.vocabularies import bert_tokenizer, clip_tokenizer


def test_a_bert_tokenizer_gives_each_word_its_position_between_cls_and_sep():
    tokenizer = bert_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cup", "red"])
    assert tokenizer("red cup . mug")["input_ids"] == [2, 7, 6, 5, 1, 3]  # [CLS] red cup . [UNK] [SEP]


def test_a_clip_tokenizer_spells_a_word_with_its_merges_and_stops_at_the_length():
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "c": 3, "u": 4, "p</w>": 5, "cu": 6, "cup</w>": 7}
    tokenizer = clip_tokenizer(vocab, [("c", "u"), ("cu", "p</w>")], max_length=4)
    assert tokenizer("cup")["input_ids"] == [1, 7, 2]  # start, the merged word, end
    assert tokenizer.model_max_length == 4
