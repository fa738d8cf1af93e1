"""The cut Gemma-3 tokenizer of the tiny test base model tokenizes its texts as Gemma does."""

from __future__ import annotations

from transformers import AutoTokenizer

from tests.tiny_tokenizer import SPECIAL, prune


def test_the_cut_keeps_gemmas_tokens_on_its_texts_and_still_reads_any_text(gemma_tokenizer, tmp_path):
    full = tmp_path / "full"
    gemma_tokenizer.save_pretrained(full)
    corpus = ["<start_of_turn>user\nClassify the sentiment.\n\nText: Très bon produit !<end_of_turn>\n", "positive"]
    size = prune(full, tmp_path / "cut", corpus)  # raises when a corpus text tokenizes differently
    cut = AutoTokenizer.from_pretrained(tmp_path / "cut")
    assert len(cut) == size < len(gemma_tokenizer) // 100
    for text in corpus:
        ids = cut(text, add_special_tokens=False)["input_ids"]
        assert cut.convert_ids_to_tokens(ids) == gemma_tokenizer.tokenize(text)
    assert all(token in cut.get_vocab() for token in SPECIAL)
    unseen = "Ωmega 🙂 नमस्ते"  # characters outside the corpus: single characters and byte fallback
    assert cut.decode(cut(unseen, add_special_tokens=False)["input_ids"]) == unseen
    assert cut("hi")["input_ids"][0] == cut.bos_token_id
