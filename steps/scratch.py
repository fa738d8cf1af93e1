"""Scratch folders for folder outputs (``Path`` artifacts), removed once ZenML has stored them."""

from __future__ import annotations

from pathlib import Path

from zenml import get_step_context


def output_folder(output_name: str) -> Path:
    """An empty folder to build the step output ``output_name`` in; ZenML deletes it at step end.

    ZenML copies a returned ``Path`` into the artifact store after the step function returns
    (and after its success hook), so a ``TemporaryDirectory`` closed inside the step is gone too
    early, and a bare ``mkdtemp`` is never removed. The output's materializer hands out a folder
    that ZenML removes when the step ends, after its outputs are saved (or when it fails).
    """
    materializer = get_step_context().get_output_materializer(output_name)
    with materializer.get_temporary_directory(delete_at_exit=False) as folder:
        return Path(folder)
