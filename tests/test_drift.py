"""The drift check: a root resumes across changes to runtime-only fields, marked where they are
declared, and refuses any other change (config fields, category files, vocabularies, blocklists)
until it is restored."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import tiny_config
from vipo_build.config import PipelineConfig, output_fields
from vipo_build.errors import VipoError
from vipo_build.layout import RUN_JSON
from vipo_build.run import category_files, check_drift
from vipo_build.runtime.storage import Storage


def started_root(tmp_path, config: PipelineConfig, files: dict[str, str] | None = None) -> Storage:
    """A root as `run` leaves it once started: run.json with the config and the data files' hashes."""
    storage = Storage(str(tmp_path / "root"))
    storage.write_bytes(RUN_JSON, json.dumps({"config": config.model_dump(mode="json"), "config_hash": config.output_hash(),
                                              "category_files": files or category_files(config), "version": "test"}).encode())
    return storage


def changed(edit) -> PipelineConfig:
    raw = tiny_config(output="/tmp/unused")
    edit(raw)
    return PipelineConfig.model_validate(raw)


def served_judge(base_url: str, **settings) -> Callable[[dict], None]:
    return lambda raw: raw["judge"]["engines"][0]["engine"].update(endpoint={"base_url": base_url, "model": "tiny-vlm", **settings})


def unchanged(raw: dict) -> None:
    pass


@pytest.mark.parametrize(("start", "edit"), [
    (unchanged, lambda raw: raw["prompts"]["pool"].update(actors=3)),
    (unchanged, lambda raw: raw["judge"]["engines"][0]["pool"].update(units_per_call=5)),
    (unchanged, lambda raw: raw["ray"].update(num_cpus=2)),
    (unchanged, lambda raw: raw["audit"].update(min_kappa=0.4)),
    (unchanged, lambda raw: raw.update(output="s3://elsewhere/root")),
    (unchanged, lambda raw: raw["generate"]["generators"][0].update(compile=True, gpu_seconds_per_candidate=3.0)),
    # the server moved and its client settings changed; the model it serves is the same
    (served_judge("http://10.0.0.1:9000/v1"), served_judge("http://127.0.0.1:8000/v1", timeout_s=30, max_retries=2)),
])
def test_runtime_only_changes_resume(tmp_path, start, edit):
    assert check_drift(started_root(tmp_path, changed(start)), changed(edit)) is True


BASE = changed(unchanged)


def test_a_field_named_like_a_runtime_one_inside_free_form_options_counts(tmp_path):
    storage = started_root(tmp_path, BASE)
    edited = changed(lambda raw: raw["prompts"]["engine"]["options"].update(timeout_s=5, pool="x"))
    assert {k for k in output_fields(edited)} - set(output_fields(BASE)) == {"prompts.engine.options.timeout_s",
                                                                              "prompts.engine.options.pool"}
    with pytest.raises(VipoError, match=r"changed fields: prompts\.engine\.options\.pool, prompts\.engine\.options\.timeout_s "):
        check_drift(storage, edited)


@pytest.mark.parametrize("data_file", ["categories/aesthetics.yaml", "categories/text_rendering.yaml",
                                       "categories/vocabulary/text_rendering.yaml", "blocklists/en.txt"])
def test_an_edited_data_file_is_refused_and_resumes_once_restored(tmp_path, data_file):
    files = category_files(BASE)
    assert data_file in files
    storage = started_root(tmp_path, BASE, {**files, data_file: "0" * 64})  # the root was started with other bytes
    with pytest.raises(VipoError, match=rf"changed fields: {data_file} \(restore them or use another --out\)"):
        check_drift(storage, BASE)
    started_root(tmp_path, BASE, files)  # the file as it was
    assert check_drift(storage, BASE) is True


def test_a_refused_change_resumes_once_restored(tmp_path):
    storage = started_root(tmp_path, BASE)
    with pytest.raises(VipoError, match=r"changed fields: judge\.threshold, prompts\.subjects\.share "):
        check_drift(storage, changed(lambda raw: (raw["judge"].update(threshold=0.9), raw["prompts"]["subjects"].update(share=0.6))))
    assert check_drift(storage, BASE) is True
