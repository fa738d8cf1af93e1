"""The retrieval index as a ZenML artifact: ``faiss.write_index`` plus a JSON sidecar, no pickle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from sentibridge.augment.retrieval import INDEX_FILE, META_FILE, VectorIndex


class VectorIndexMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (VectorIndex,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    # FAISS reads and writes local paths only; a remote artifact store goes through a temp folder.
    # ``self.uri`` is joined as a string: ``Path("s3://b/x")`` would collapse it to ``s3:/b/x``.
    def load(self, data_type: type[Any]) -> VectorIndex:
        with tempfile.TemporaryDirectory(prefix="sentibridge-index-") as tmp:
            for name in (INDEX_FILE, META_FILE):
                fileio.copy(os.path.join(self.uri, name), str(Path(tmp) / name))
            return VectorIndex.load(Path(tmp))

    def save(self, data: VectorIndex) -> None:
        with tempfile.TemporaryDirectory(prefix="sentibridge-index-") as tmp:
            data.save(Path(tmp))
            for name in (INDEX_FILE, META_FILE):
                fileio.copy(str(Path(tmp) / name), os.path.join(self.uri, name), overwrite=True)

    def extract_metadata(self, data: VectorIndex) -> dict[str, Any]:
        return {"vectors": len(data), "dim": data.dim, "kind": data.kind, **{k: str(v) for k, v in data.metadata.items()}}
