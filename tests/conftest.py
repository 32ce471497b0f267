"""Shared pytest set-up: `slow` tests run only with MINILLM_SLOW=1 (or `tools/test.sh --slow`), and the folder of the
artefact cache that the main job and the notebooks share (chapter 4d): the demo chain is trained once per run."""
import os
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# tools/test.sh empties it at the start of a full run (so every run trains the chain once) and keeps it for --fast
ARTEFACTS = os.environ.get("MINILLM_TEST_ARTEFACTS") or os.path.join(ROOT, ".test-results", "artefacts")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running; run with MINILLM_SLOW=1")

def run_slow() -> bool:
    return os.environ.get("MINILLM_SLOW", "") not in ("", "0")

def pytest_collection_modifyitems(config, items):
    # under pytest-xdist (`--dist loadgroup`) the notebooks run in one worker, in chapter order: they share out/demo
    for item in items:
        if item.path.name == "test_notebooks.py": item.add_marker(pytest.mark.xdist_group("notebooks"))
    if run_slow(): return
    skip = pytest.mark.skip(reason="slow: set MINILLM_SLOW=1 or pass --slow to tools/test.sh")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)
