"""The public surface is small and pinned: adding or removing a name is a deliberate change."""

import importlib

import pytest

PINNED = {
    "lumenrec": {"CheckpointError", "ConfigError", "DataFormatError", "DataNotFoundError", "ItemIndexError",
                 "LLMError", "LumenrecError", "MissingExtraError", "ToolInputError", "__version__"},
    "lumenrec.data": {"Catalog", "Conversation", "Dataset", "EvalSet", "Interactions", "Item", "LoadReport",
                      "NARRATIVE_KINDS", "Narratives", "Split", "Turn", "UserSequence", "leave_one_out",
                      "load_benchmark_pair", "load_conversations", "temporal_split"},
    "lumenrec.eval": {"MarkovScorer", "PopularityScorer", "evaluate", "evaluate_ranks", "metrics_from_ranked_ids",
                      "metrics_from_ranks", "ranks_from_scores"},
}


@pytest.mark.parametrize("module", sorted(PINNED))
def test_all_is_pinned_and_importable(module):
    m = importlib.import_module(module)
    assert set(m.__all__) >= PINNED[module], f"{module}.__all__ lost names: {PINNED[module] - set(m.__all__)}"
    for name in m.__all__:
        assert hasattr(m, name), f"{module}.__all__ names {name!r} but it is not defined"


def test_error_tree_has_one_root():
    import lumenrec.errors as E

    for name in E.__all__:
        assert issubclass(getattr(E, name), E.LumenrecError)


def test_every_package_folder_is_installed():
    """Each folder with an __init__.py under the mapped roots must be listed in pyproject packages."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {v.rstrip("/"): k for k, v in cfg["package-dir"].items()}
    listed = set(cfg["packages"])
    for folder, pkg in mapped.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            name = ".".join((pkg, *rel))
            if any(str(init.parent).startswith(str(root / f) + "/") and f != folder for f in mapped):
                continue  # belongs to a more specific mapping
            assert name in listed, f"{init.parent} has an __init__.py but {name!r} is not in pyproject packages"
