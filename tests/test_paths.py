"""The shared evaluation data is found beside the clone, or where $RAG_SHARED_DATA says."""
from pathlib import Path

from eval.paths import ENV_SHARED_DATA, REPOSITORY, shared_data


def test_shared_data_defaults_to_the_folder_beside_the_repository(monkeypatch):
    monkeypatch.delenv(ENV_SHARED_DATA, raising=False)
    assert shared_data("mtrag", "x.json") == REPOSITORY.parent / "shared" / "data" / "mtrag" / "x.json"


def test_the_environment_variable_points_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_SHARED_DATA, str(tmp_path))
    assert shared_data("squad.json") == Path(tmp_path) / "squad.json"
