"""Category files, blocklists and registries ship in the package; a config may name its own category folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, tiny_config, write_config
from vipo_build.cli import app
from vipo_build.config import load_config
from vipo_build.prompts.categories import PACKAGED_CATEGORIES
from vipo_build.run import category_files

runner = CliRunner()


def own_folder(tmp_path: Path) -> Path:
    """A copy of the shipped category folder with one more category, `pets`, made from aesthetics."""
    folder = tmp_path / "my-categories"
    shutil.copytree(str(PACKAGED_CATEGORIES), folder)
    pets = yaml.safe_load((folder / "aesthetics.yaml").read_text())
    pets["name"] = "pets"
    (folder / "pets.yaml").write_text(yaml.safe_dump(pets, sort_keys=False))
    return folder


def test_a_config_names_its_own_category_folder_relative_to_itself(tmp_path: Path):
    own_folder(tmp_path)
    config = tiny_config(category_dir="my-categories", categories={"pets": {"pairs": 5}, "aesthetics": {"pairs": 5}})
    path = write_config(tmp_path / "own.yaml", config)
    loaded, _ = load_config(path)
    assert loaded.category_dir == str(tmp_path / "my-categories")
    assert loaded.category("pets").name == "pets"
    files = category_files(loaded)
    assert sorted(files) == ["blocklists/en.txt", "categories/aesthetics.yaml", "categories/pets.yaml"]
    # the same category name read from another folder is another file: its bytes are what the drift check hashes
    (tmp_path / "my-categories" / "aesthetics.yaml").write_text(
        (tmp_path / "my-categories" / "aesthetics.yaml").read_text() + "\n# edited\n")
    edited = load_config(path)[0]
    assert category_files(edited)["categories/aesthetics.yaml"] != files["categories/aesthetics.yaml"]


def test_an_unknown_category_names_those_of_the_config_folder(tmp_path: Path):
    own_folder(tmp_path)
    path = write_config(tmp_path / "own.yaml", tiny_config(category_dir="my-categories", categories={"cubism": {"pairs": 1}}))
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {path}: categories: unknown category 'cubism' (known: aesthetics, composition, "
                                     "human_quality, motion_quality, pets, text_image_alignment, text_rendering, "
                                     "video_text_alignment, visual_quality)")


def test_a_missing_category_folder_is_one_line(tmp_path: Path):
    path = write_config(tmp_path / "own.yaml", tiny_config(category_dir="nowhere"))
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {path}: category_dir: no folder {tmp_path / 'nowhere'}"


def test_an_installed_wheel_runs_from_another_folder(tmp_path: Path, tiny_models):
    """The wheel, installed without the repo: its data files are in it, and nothing reads the checkout."""
    source = tmp_path / "source"  # a copy, so the build writes nothing into the checkout and sees none of its build/
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "runs", "tests", "*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("vipo_build-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the CPU stack comes from this venv's site-packages, added as a plain path (its .pth files, the editable
    # install's among them, are not run), so the fresh venv's own copy of vipo_build is the one imported
    fresh_site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                              text=True).strip())
    (fresh_site / "cpu-stack.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = write_config(elsewhere / "tiny.yaml", tiny_config(output=str(tmp_path / "out")))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    vipo_build = venv / "bin" / "vipo-build"

    def installed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(vipo_build), *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)

    where = subprocess.run([str(python), "-c", "import vipo_build; print(vipo_build.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120)
    assert where.stdout.strip() == str(fresh_site / "vipo_build" / "__init__.py"), where.stderr
    dry_run = installed("run", "tiny.yaml", "--dry-run")
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    assert dry_run.stdout.startswith(f"tiny: 40 pairs in 5 shards (tiny-image 3, tiny-video 2) -> {tmp_path / 'out'}\n")
    assert not (tmp_path / "out").exists()
    models = installed("models", "list")
    assert models.returncode == 0, models.stderr
    assert models.stdout.startswith("14 generator families\n") and "flux1-dev" in models.stdout
    schema = installed("schema", "--out", "schemas")
    assert schema.returncode == 0, schema.stderr
    assert sorted(p.name for p in (elsewhere / "schemas").iterdir()) == sorted(p.name for p in (REPO / "schemas").iterdir())
