"""The tiny run's root opened by every reader a user reaches for; exports in each format read back
with `datasets`; splits by subject; the reference losses; Diffusion-DPO on the export."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from datasets import load_dataset, load_from_disk
from PIL import Image
from rich.console import Console

from tests.conftest import vipo
from vipo_build.errors import VipoError
from vipo_build.export.command import export
from vipo_build.export.split import achieved, assign, targets
from vipo_build.train.losses import diffusion_dpo_loss, dpo_logit, poly_dpo_loss


def shard_set(root: Path, kind: str) -> tuple[list[str], list[str]]:
    """(tars, manifests) of one modality's shard set."""
    return tuple(sorted(str(p) for p in (root / "shards").glob(f"*-{kind}-*.{ext}")) for ext in ("tar", "parquet"))


def run_export(root: Path, out: Path, to: str, split: str = "train=0.5,validation=0.5", **options) -> dict:
    return export(str(root), str(out), to, split, options.get("min_vote_share"), options.get("categories"), 2,
                  Console(file=io.StringIO()))  # 2 rows per file: the tiny run's splits span several files


@pytest.mark.parametrize("kind", ["image", "video"])
def test_every_reader_opens_each_shard_set_with_the_manifests_counts(tiny_run, tmp_path, kind):
    _, root, plan = tiny_run
    tars, manifests = shard_set(root, kind)
    manifest = pq.read_table(manifests)
    assert manifest.num_rows == sum(sum(plan.counts(s).values()) for s in range(plan.num_shards) if plan.modality(s) == kind) > 0
    assert set(manifest["modality"].to_pylist()) == {kind}
    keys = manifest["key"].to_pylist()
    assert [s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)] == keys
    samples = load_dataset("webdataset", data_files={"train": tars}, split="train", cache_dir=str(tmp_path / "hf"))
    assert samples["__key__"] == keys
    assert [j["category"] for j in samples["json"]] == manifest["category"].to_pylist()
    assert all(d["dimension"] for j in samples["json"] for d in j["judge"]["dimensions"])
    if kind == "image":
        assert samples[0]["chosen.jpg"].size == (64, 64)
    rows = load_dataset("parquet", data_files={"train": manifests}, split="train", cache_dir=str(tmp_path / "hf"))
    assert rows["key"] == keys and rows[0]["dimensions"][0]["dimension"]
    listed = ", ".join(f"'{m}'" for m in manifests)
    assert duckdb.sql(f"select count(*), count(distinct key) from read_parquet([{listed}])").fetchall() == [(len(keys), len(keys))]


def test_ray_data_reads_both_shard_sets(tiny_run):
    import ray

    _, root, _ = tiny_run
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        for kind in ("image", "video"):
            tars, manifests = shard_set(root, kind)
            expected = pq.read_table(manifests).num_rows
            assert ray.data.read_webdataset(tars).count() == ray.data.read_parquet(manifests).count() == expected
            assert sorted(ray.data.read_webdataset(tars).take(1)[0]) == sorted(
                ["__key__", "__url__", "json", "prompt.txt", f"chosen.{'jpg' if kind == 'image' else 'mp4'}",
                 f"rejected.{'jpg' if kind == 'image' else 'mp4'}"])
    finally:
        ray.shutdown()


def test_pickapic_export_has_the_diffusers_columns_and_never_a_tie(tiny_run, tmp_path):
    _, root, _ = tiny_run
    summary = run_export(root, tmp_path / "pickapic", "pickapic")
    dataset = load_dataset(str(tmp_path / "pickapic"), cache_dir=str(tmp_path / "hf"))
    train = dataset["train"]
    assert {n: str(f.dtype) for n, f in train.features.items()} == {
        "caption": "string", "jpg_0": "binary", "jpg_1": "binary", "label_0": "float64", "label_1": "float64",
        "model_0": "string", "model_1": "string", "category": "string", "vote_share": "float64", "key": "string"}
    rows = [r for split in dataset.values() for r in split]
    assert len(rows) == summary["pairs"] == 5  # one kept pair per image category
    assert all(r["label_0"] + r["label_1"] == 1 and r["label_0"] in (0, 1) for r in rows)
    manifest = {r["key"]: r for r in pq.read_table(shard_set(root, "image")[1]).to_pylist()}
    for r in rows:  # the label points at the judge's winner, whichever side it was put on
        chosen, rejected = (r["jpg_0"], r["jpg_1"]) if r["label_0"] == 1 else (r["jpg_1"], r["jpg_0"])
        assert hashlib.sha256(chosen).hexdigest() == manifest[r["key"]]["chosen_sha256"]
        assert hashlib.sha256(rejected).hexdigest() == manifest[r["key"]]["rejected_sha256"]
        assert r["caption"] == manifest[r["key"]]["prompt"] and Image.open(io.BytesIO(chosen)).size == (64, 64)


def test_hf_export_saves_a_dataset_with_image_features_and_a_card(tiny_run, tmp_path):
    _, root, _ = tiny_run
    summary = run_export(root, tmp_path / "hf", "hf", categories=["aesthetics", "composition"])
    on_disk = load_from_disk(str(tmp_path / "hf" / "disk"))
    assert sum(d.num_rows for d in on_disk.values()) == summary["pairs"] == 2
    first = next(d for d in on_disk.values() if d.num_rows)
    assert type(first.features["chosen"]).__name__ == "Image" and first[0]["chosen"].size == (64, 64)
    from_parquet = load_dataset(str(tmp_path / "hf"), cache_dir=str(tmp_path / "cache"))
    assert {s: d.num_rows for s, d in from_parquet.items()} == {s: d.num_rows for s, d in on_disk.items() if d.num_rows}
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"Config hash: `{json.loads((root / 'run.json').read_text())['config_hash']}`" in card
    assert "| aesthetics |" in card and "## Generators" in card and "Fleiss' kappa" in card


def test_video_export_holds_both_clips_with_fps_and_frames(tiny_run, tmp_path):
    _, root, _ = tiny_run
    shares = sorted(pq.read_table(shard_set(root, "video")[1])["vote_share"].to_pylist())
    assert run_export(root, tmp_path / "strict", "video", split="train=1", min_vote_share=shares[-1])["pairs"] == shares.count(shares[-1])
    run_export(root, tmp_path / "video", "video", split="train=1")
    clips = load_dataset("parquet", data_files=str(tmp_path / "video" / "data" / "*.parquet"), split="train",
                         cache_dir=str(tmp_path / "hf"))
    assert clips.num_rows == 3 and set(clips["category"]) == {"motion_quality", "visual_quality", "video_text_alignment"}
    assert all(r["chosen"][4:8] == b"ftyp" and r["rejected"][4:8] == b"ftyp" and r["fps"] > 0 and r["frames"] == 9
               for r in clips)


def test_export_refuses_bad_input_in_one_line(tiny_run, tmp_path):
    _, root, _ = tiny_run
    cases = [
        ({"to": "png"}, "--to: 'png' is not a format; choose one of pickapic, hf, video"),
        ({"to": "hf", "categories": ["motion_quality"]},
         "--categories: motion_quality is a video category; --to hf exports image pairs (use --to video)"),
        ({"to": "video", "categories": ["nope"]}, "--categories: 'nope' is not a category of"),
        ({"to": "pickapic", "split": "train=0.9,test=0.2"}, "--split: the shares sum to 1.1, not 1"),
        ({"to": "pickapic", "split": "train=1,train=0"}, "--split: 'train=0': each split needs a new name and a share in (0, 1]"),
    ]
    for options, message in cases:
        with pytest.raises(VipoError) as refused:
            run_export(root, tmp_path / "never", **options)
        assert str(refused.value).startswith(message)
    assert not (tmp_path / "never").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    found = vipo("export", str(root), str(tmp_path / "used"), "--to", "pickapic")
    assert found.returncode == 2 and found.stderr.strip() == f"error: {tmp_path / 'used'}: not empty; export into a new folder"


def test_splits_keep_subjects_apart_and_each_categorys_share():
    rng = np.random.default_rng(0)
    categories, subjects = [], []
    for category in ("a", "b", "c"):
        for subject in range(150):  # subjects of 1 to 12 pairs; a few subjects shared by two categories
            name = f"s{subject}" if subject % 10 else f"{category}{subject}"
            for _ in range(int(rng.integers(1, 13))):
                categories.append(category)
                subjects.append(name)
    shares = {"train": 0.9, "validation": 0.05, "test": 0.05}
    splits = assign(categories, subjects, shares, seed=7)
    assert splits == assign(categories, subjects, shares, seed=7) != assign(categories, subjects, shares, seed=8)
    by_subject: dict[str, set[str]] = {}
    for subject, split in zip(subjects, splits):
        by_subject.setdefault(subject, set()).add(split)
    assert all(len(s) == 1 for s in by_subject.values())
    wanted, got = targets(Counter(categories), shares), achieved(categories, splits)
    assert all(abs(got[s][c] - wanted[s][c]) <= 1 for s in shares for c in ("a", "b", "c"))
    assert sum(sum(c.values()) for c in got.values()) == len(categories)


def test_poly_dpo_with_alpha_zero_is_diffusion_dpo_to_the_last_bit():
    generator = torch.Generator().manual_seed(0)
    errors = [torch.rand(64, generator=generator, dtype=torch.float64) for _ in range(4)]
    dpo, dpo_accuracy = diffusion_dpo_loss(*errors, beta=5000)
    poly, poly_accuracy = poly_dpo_loss(*errors, beta=5000, alpha=0.0)
    assert torch.equal(dpo, poly) and torch.equal(dpo_accuracy, poly_accuracy)
    assert not torch.equal(dpo, poly_dpo_loss(*errors, beta=5000, alpha=0.5)[0])


@pytest.mark.parametrize("alpha", [1.0, -0.5])
def test_poly_dpo_gradient_against_the_logit_follows_the_sign_of_alpha(alpha):
    z = torch.linspace(-4, 4, 41, dtype=torch.float64)

    def gradient(loss_alpha: float) -> torch.Tensor:
        err_w = (-2 * z / 100).clone().requires_grad_(True)  # dpo_logit gives z back at beta = 100
        zeros = torch.zeros_like(z)
        assert torch.allclose(dpo_logit(err_w, zeros, zeros, zeros, beta=100), z)
        loss, _ = poly_dpo_loss(err_w, zeros, zeros, zeros, beta=100, alpha=loss_alpha)
        (grad,) = torch.autograd.grad(loss * len(z), err_w)
        return grad / (-100 / 2)  # dL/dz = dL/d(err_w) / (dz/d(err_w))

    dpo, poly = gradient(0.0), gradient(alpha)
    assert torch.allclose(dpo, -(1 - torch.sigmoid(z)))
    ratio = poly / dpo  # 1 + alpha * sigmoid(z): the gradient decays slower (alpha > 0) or faster as confidence rises
    assert torch.allclose(ratio, 1 + alpha * torch.sigmoid(z))
    assert (torch.sign(ratio - 1) == np.sign(alpha)).all() and (torch.sign(ratio.diff()) == np.sign(alpha)).all()


RESOLUTION = 32


def example_transform(image: Image.Image) -> torch.Tensor:
    """The diffusers example's train transforms (Resize, CenterCrop, ToTensor, Normalize([0.5], [0.5]),
    no flip), in PIL and numpy: torchvision does not load beside the CPU torch build."""
    scale = RESOLUTION / min(image.size)
    image = image.resize((max(RESOLUTION, round(image.width * scale)), max(RESOLUTION, round(image.height * scale))),
                         Image.BILINEAR)
    left, top = (image.width - RESOLUTION) // 2, (image.height - RESOLUTION) // 2
    pixels = np.asarray(image.crop((left, top, left + RESOLUTION, top + RESOLUTION)), dtype=np.float32) / 255
    return (torch.from_numpy(pixels).permute(2, 0, 1) - 0.5) / 0.5


def example_preprocess(examples: dict, tokenizer) -> dict:
    """train_diffusion_dpo.py's preprocess_train: both images, the winner first by label_0, stacked on channels."""
    pixel_values = []
    for jpg_0, jpg_1, label_0 in zip(examples["jpg_0"], examples["jpg_1"], examples["label_0"]):
        images = [example_transform(Image.open(io.BytesIO(b)).convert("RGB")) for b in (jpg_0, jpg_1)]
        if label_0 == 0:
            images = images[::-1]
        pixel_values.append(torch.cat(images, dim=0))
    input_ids = tokenizer(examples["caption"], max_length=tokenizer.model_max_length, padding="max_length",
                          truncation=True, return_tensors="pt").input_ids
    return {"pixel_values": torch.stack(pixel_values), "input_ids": input_ids}


@pytest.mark.parametrize("alpha", [None, 1.0])
def test_diffusion_dpo_and_poly_dpo_train_on_the_pickapic_export(tiny_run, tiny_models, tmp_path, alpha):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    _, root, _ = tiny_run
    run_export(root, tmp_path / "pickapic", "pickapic", split="train=1")
    pairs = load_dataset(str(tmp_path / "pickapic"), split="train", cache_dir=str(tmp_path / "hf"))
    torch.manual_seed(0)
    parts = tiny_models["flux"]
    tokenizer = CLIPTokenizer.from_pretrained(parts / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(parts / "text_encoder")
    vae = AutoencoderKL.from_pretrained(parts / "vae")
    unet = UNet2DConditionModel(sample_size=RESOLUTION // 8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=text_encoder.config.hidden_size, attention_head_dim=4, norm_num_groups=8)
    reference = UNet2DConditionModel.from_config(unet.config)
    reference.load_state_dict(unet.state_dict())
    reference.requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=1000)

    batch = example_preprocess(pairs[:], tokenizer)
    with torch.no_grad():  # as the example: winners then losers through the VAE, one caption encoding for both
        latents = vae.encode(torch.cat(batch["pixel_values"].chunk(2, dim=1))).latent_dist.sample() * vae.config.scaling_factor
        hidden = text_encoder(batch["input_ids"])[0].repeat(2, 1, 1)
    n = len(pairs)
    generator = torch.Generator().manual_seed(1)
    draws = [(torch.randn(latents[:n].shape, generator=generator).repeat(2, 1, 1, 1),
              torch.randint(0, 1000, (n,), generator=generator).repeat(2)) for _ in range(8)]

    def errors(model, noise, timesteps):  # per-sample noise-prediction error, winners then losers
        prediction = model(scheduler.add_noise(latents, noise, timesteps), timesteps, hidden).sample
        return (prediction - noise).pow(2).mean(dim=[1, 2, 3]).chunk(2)

    def loss_of(noise, timesteps):
        with torch.no_grad():
            ref_w, ref_l = errors(reference, noise, timesteps)
        err_w, err_l = errors(unet, noise, timesteps)
        if alpha is None:
            return diffusion_dpo_loss(err_w, err_l, ref_w, ref_l, beta=5000)
        return poly_dpo_loss(err_w, err_l, ref_w, ref_l, beta=5000, alpha=alpha)

    def measured() -> tuple[float, float]:
        with torch.no_grad():
            figures = [loss_of(*draw) for draw in draws]
        return float(np.mean([f[0] for f in figures])), float(np.mean([f[1] for f in figures]))

    start_loss, start_accuracy = measured()
    assert start_loss == pytest.approx(np.log(2) + (alpha or 0) / 2) and start_accuracy == 0  # the model is its reference
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    for step in range(20):
        loss, _ = loss_of(*draws[step % len(draws)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end_loss, end_accuracy = measured()
    assert end_loss < 0.5 * start_loss and end_accuracy > 0.8
