"""Small open-vocabulary detectors with seeded random weights, saved as `transformers` saves them.

The architectures are the real Grounding DINO, OWLv2 and SAM 3 of `transformers`, scaled down so a pass
takes milliseconds; the tokenizers know the test phrases' words (their published vocabularies
cannot be downloaded here).
"""
from __future__ import annotations

from pathlib import Path

import torch

from sam2_ros.core.networks.registry import BUILDING
from sam2_ros.tools.vocabularies import bert_tokenizer, clip_tokenizer

WORDS = ("cup", "red", "ball", "cat", "rocket", "person", "coffee", "a", "the", "of", "photo")


def save_grounding_dino(folder: Path, seed: int = 0) -> Path:
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    vocab = {token: i for i, token in enumerate(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS))}
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=7,
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=30, max_text_len=32,
        encoder_n_points=2, decoder_n_points=2)
    torch.manual_seed(seed)
    with BUILDING:  # no other network is being built meanwhile (registry.BUILDING)
        network = GroundingDinoForObjectDetection(config)
    network.eval().save_pretrained(folder)
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(),
                           tokenizer=bert_tokenizer(list(vocab))).save_pretrained(folder)
    return folder


def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP byte-pair vocabulary of single letters and merges that spell WORDS."""
    # OWLv2 ignores a query whose first token id is 0: the special tokens come after one
    vocab, merges = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}, []
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(f"{letter}</w>", len(vocab))
    for word in WORDS:  # byte-pair merges that spell each word, letter by letter
        pieces, joined = [*word[:-1], f"{word[-1]}</w>"], word[0]
        for piece in pieces[1:]:
            merges.append((joined, piece))
            joined += piece
            vocab.setdefault(joined, len(vocab))
    return vocab, merges


def save_owlv2(folder: Path, seed: int = 0) -> Path:
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    vocab, merges = clip_vocabulary()
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=128, patch_size=16),
        projection_dim=32)
    torch.manual_seed(seed)
    with BUILDING:  # no other network is being built meanwhile (registry.BUILDING)
        network = Owlv2ForObjectDetection(config)
    network.eval().save_pretrained(folder)
    Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 128, "width": 128}),
                   tokenizer=clip_tokenizer(vocab, merges, 16)).save_pretrained(folder)
    return folder


def save_sam3(folder: Path, seed: int = 0) -> Path:
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    vocab, merges = clip_vocabulary()
    small = {"num_attention_heads": 2, "intermediate_size": 64}
    config = Sam3Config(
        vision_config={"backbone_config": {"model_type": "sam3_vit_model", "hidden_size": 32, "num_hidden_layers": 2,
                                           "image_size": 112, "patch_size": 14, "window_size": 4,
                                           "global_attn_indexes": [1], "pretrain_image_size": 56, **small},
                       "fpn_hidden_size": 32},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "num_hidden_layers": 1, "projection_dim": 32,
                     "max_position_embeddings": 32, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, **small},
        geometry_encoder_config={"hidden_size": 32, "num_layers": 1, **small},
        detr_encoder_config={"hidden_size": 32, "num_layers": 1, **small},
        detr_decoder_config={"hidden_size": 32, "num_layers": 1, "num_queries": 20, **small},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2})
    torch.manual_seed(seed)
    with BUILDING:  # no other network is being built meanwhile (registry.BUILDING)
        network = Sam3Model(config)
    network.eval().save_pretrained(folder)
    Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112}),
                  tokenizer=clip_tokenizer(vocab, merges, 32)).save_pretrained(folder)
    return folder
