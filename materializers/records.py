"""Instruction records as a JSONL artifact (portable, diffable, no pickle)."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer


class InstructionRecords(list):
    """A list of instruction records (dicts); its own type so ZenML picks the JSONL materializer."""


class InstructionRecordsMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type, ...]] = (InstructionRecords,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    FILENAME: ClassVar[str] = "records.jsonl"

    def load(self, data_type: type[Any]) -> InstructionRecords:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "r") as handle:
            return InstructionRecords(json.loads(line) for line in handle if line.strip())

    def save(self, data: InstructionRecords) -> None:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "w") as handle:
            for record in data:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def extract_metadata(self, data: InstructionRecords) -> dict[str, Any]:
        languages = sorted({str(r.get("language")) for r in data})
        return {"records": len(data), "languages": ",".join(languages)}
