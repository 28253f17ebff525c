"""JupyterLab's save hook for the project's notebooks: saved as committed, without outputs.

The notebooks under ``notebooks/`` are views whose executed copies belong in ``runs/``; a person
running one in ``make lab`` must not turn the committed file into an output-laden one. ``make lab``
passes :func:`strip_outputs` as ``FileContentsManager.pre_save_hook``, so autosave, Ctrl+S and the
save-on-close prompt all write the notebook back as it was committed.
"""

from __future__ import annotations


def strip_outputs(model: dict, **kwargs) -> None:
    """Drop a notebook's outputs, execution counts, widget state and run-time metadata before saving."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    notebook = model["content"]
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    metadata = notebook.setdefault("metadata", {})
    metadata.pop("widgets", None)
    if "language_info" in metadata:
        metadata["language_info"] = {"name": metadata["language_info"].get("name", "python")}
