"""Tiny random-weight models, built locally from configs (no model hub needed).

They have the real architectures, file layouts and tokenizers of the production models, so the
pipeline runs end to end on a laptop or in tests: vLLM serves "llm", "vlm" and "video-vlm" (a
Qwen2-VL that reads videos) with their own weights, and diffusers loads "flux", "sana" and "wan"
with `DiffusionPipeline.from_pretrained`.
Their outputs are noise, but deterministic: the same code builds byte-identical weights.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# transformers and diffusers are imported lazily: reusing built models needs neither.
if TYPE_CHECKING:
    from transformers import (
        CLIPTokenizer,
        GemmaTokenizer,
        LlamaConfig,
        PreTrainedTokenizerFast,
        T5Tokenizer,
    )

logger = logging.getLogger(__name__)

TINY_MODELS: tuple[str, ...] = ("llm", "vlm", "video-vlm", "flux", "sana", "wan")

# Bump when a builder changes: model dirs with another version are rebuilt.
BUILD_FORMAT = "vipo-tiny-v1"
_MARKER = ".complete"

# Fixed training text for every tokenizer, so tokenizers never depend on files outside this module.
_CORPUS = """\
A photo of a red apple on a wooden table, soft morning light, shallow depth of field.
A watercolor painting of three blue birds sitting on a thin branch above a quiet river.
Two people walking a brown dog along a sandy beach at sunset, long shadows, warm colors.
A close-up portrait of an old man with a white beard, wearing a green wool hat, smiling.
A neon sign that reads "OPEN 24 HOURS" above the door of a small diner at night.
A video of a cat jumping from a sofa onto a bookshelf, slow motion, the camera pans left.
A drone shot flying over a snowy mountain ridge, then tilting down to a frozen lake.
Five yellow balloons floating up into a cloudy gray sky while children wave below.
A cup of black coffee next to an open notebook with the words "plan for today" written in ink.
A street market in the rain: umbrellas in pink, orange and purple, people carrying bags.
A cartoon robot dancing on a stage, bright spotlights, confetti falling, wide shot.
A time-lapse of a flower opening, white petals unfolding, dark background, macro lens.
A woman riding a bicycle across a bridge, the wind moving her hair, the city behind her.
Eight glass bottles in a row, each filled with water of a different color, studio light.
A train moving fast through a green valley, smoke rising, the camera follows from the side.
A chess board with four pieces left, a hand reaching for the black queen, dramatic light.
An empty classroom with twelve wooden desks, a chalkboard with numbers 1 2 3 4 5 6 7 8 9 0.
A chef slicing vegetables quickly, carrots and onions on the board, steam from a pot.
A poster with bold letters saying "SAVE THE DATE" and a small heart under the text.
A group of six friends laughing around a fire at night, sparks flying up, handheld camera.
Waves crashing on black rocks, white foam, a lighthouse in the distance, stormy weather.
A tiny mouse holding a piece of cheese, looking at the viewer, soft fur, high detail.
Image A shows the prompt better than image B. Image B has cleaner text but wrong counts.
Judge which image matches the prompt: alignment, quality, text rendering, motion, safety.
Answer with JSON only: {"winner": "A", "scores_a": {"alignment": 4}, "scores_b": {"alignment": 2}}
Expand the idea into a detailed prompt: {"prompt": "a silver car driving on a wet road"}
Lists and values: [1, 2, 3], ["red", "green", "blue"], {"count": 10, "ok": true, "x": null}
Colors: red, orange, yellow, green, cyan, blue, purple, pink, brown, black, white, gray, gold.
Counts: one, two, three, four, five, six, seven, eight, nine, ten, a dozen, many, none, 100.
Motions: running, jumping, flying, swimming, spinning, falling, rising, turning, zooming in.
"""

# One Jinja template for the LLM and the VLM: string content, or OpenAI-style content parts
# where each image part becomes the "<image>" placeholder the LLaVA processor expands.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<image>{% endif %}"
    "{% endfor %}{% endif %}"
    "<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CHAT_SPECIAL_TOKENS = [
    "<|pad|>",
    "<|begin|>",
    "<|end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
]
_IMAGE_TOKEN = "<image>"

# Qwen2-VL's own chat template: each image or video part becomes its pad token between vision
# start/end markers, which the processor then repeats once per merged patch.
_QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN2_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# An upper bound: the small corpus gives vocabularies of about 400 (Unigram) to 1,400 (BPE).
_VOCAB_SIZE = 2000


def _train(backend: Tokenizer, trainer: trainers.Trainer) -> Tokenizer:
    """Train `backend` in place on the embedded corpus (its normalizer, pre-tokenizer stay)."""
    trainer.show_progress = False  # without a terminal its bars print only blank lines
    backend.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return backend


def _learned(backend: Tokenizer, trainer: trainers.Trainer) -> dict:
    """Train `backend` and return its learned model (vocab, merges) as tokenizers' JSON."""
    return json.loads(_train(backend, trainer).to_str())["model"]


def _byte_level_char(byte: int) -> str:
    """The printable stand-in byte-level BPE uses for an ASCII byte."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return byte_level.pre_tokenize_str(chr(byte))[0][0]


def _byte_level_bpe(special: list[str]) -> Tokenizer:
    """Byte-level BPE with `special` tokens first, as Llama-3/Qwen-style instruction models use."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # No tokens for control bytes but newline: random weights would emit them inside JSON strings
    # (xgrammar's rule for strings with maxLength allows them) and strict json.loads rejects them.
    control = {_byte_level_char(b) for b in range(32) if chr(b) != "\n"}
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=sorted(set(pre_tokenizers.ByteLevel.alphabet()) - control),
    )
    return _train(backend, trainer)


def _chat_tokenizer(image_token: str | None = None) -> PreTrainedTokenizerFast:
    """Chat-turn tokens in a byte-level BPE, with the LLM's and VLM's chat template."""
    from transformers import PreTrainedTokenizerFast

    special = _CHAT_SPECIAL_TOKENS + ([image_token] if image_token else [])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_bpe(special),
        pad_token="<|pad|>",
        bos_token="<|begin|>",
        eos_token="<|end|>",
        extra_special_tokens={"image_token": image_token} if image_token else {},
        model_max_length=4096,
    )
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def _clip_tokenizer() -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        # CLIPTokenizer's BPE marks word ends with "</w>". Listing every "<char></w>" up front
        # fixes their ids; the trainer would otherwise number them in (random) hash-map order.
        special_tokens=["<|startoftext|>", "<|endoftext|>"] + [c + "</w>" for c in alphabet],
        end_of_word_suffix="</w>",
        initial_alphabet=alphabet,
    )
    learned = _learned(CLIPTokenizer().backend_tokenizer, trainer)
    return CLIPTokenizer(
        vocab=learned["vocab"], merges=[tuple(m) for m in learned["merges"]], model_max_length=77
    )


def _t5_tokenizer() -> T5Tokenizer:
    """Unigram tokenizer in T5Tokenizer's layout (pad=0, eos=1, unk=2), as T5 and UMT5 use."""
    from transformers import T5Tokenizer

    trainer = trainers.UnigramTrainer(
        vocab_size=_VOCAB_SIZE, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    vocab = _learned(T5Tokenizer(extra_ids=0).backend_tokenizer, trainer)["vocab"]
    # The trainer sums scores in parallel (last digits vary) and appends rare chars in hash-map
    # order; rounded scores with ties sorted by piece make the vocab reproducible.
    pieces = sorted(((p, round(s, 2)) for p, s in vocab[3:]), key=lambda ps: (-ps[1], ps[0]))
    return T5Tokenizer(
        vocab=[tuple(v) for v in vocab[:3]] + pieces, extra_ids=0, model_max_length=512
    )


def _gemma_tokenizer() -> GemmaTokenizer:
    from transformers import GemmaTokenizer

    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    )
    learned = _learned(GemmaTokenizer().backend_tokenizer, trainer)
    return GemmaTokenizer(
        vocab=learned["vocab"], merges=[tuple(m) for m in learned["merges"]], model_max_length=1024
    )


def _llama_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """2-layer Llama; head_dim 64 because vLLM's CPU attention kernel rejects smaller heads."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _build_llm(path: Path) -> None:
    from transformers import LlamaForCausalLM

    tokenizer = _chat_tokenizer()
    torch.manual_seed(0)
    # bf16 as real checkpoints ship: vLLM's CPU backend runs bf16 and warns on every fp32 tensor.
    LlamaForCausalLM(_llama_config(tokenizer)).to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)


def _build_vlm(path: Path) -> None:
    from safetensors.torch import save_file
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = _chat_tokenizer(_IMAGE_TOKEN)
    image_size, patch_size = 64, 16
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,  # features come from the second-to-last layer
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
        ),
        text_config=_llama_config(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2,
    )
    torch.manual_seed(1)
    model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(path)  # config and generation config; the weights are rewritten below
    save_file(_vllm_llava_names(model.state_dict()), path / "model.safetensors", {"format": "pt"})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tokenizer,
        patch_size=patch_size,
        num_additional_image_tokens=1,  # CLIP's CLS token, which the "default" strategy drops
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        chat_template=_CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)


def _qwen2_vl_tokenizer() -> PreTrainedTokenizerFast:
    """Qwen2-VL's turn and vision tokens in a byte-level BPE; like Qwen's, it has no BOS token."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_bpe(_QWEN2_VL_SPECIAL_TOKENS),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        model_max_length=4096,
    )
    tokenizer.chat_template = _QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


def _build_video_vlm(path: Path) -> None:
    """A Qwen2-VL (images and videos) that vLLM serves with its own weights."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _qwen2_vl_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        # 2 layers, head_dim 64 (hidden / heads) as the tiny Llama: vLLM's CPU kernel needs 64.
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            # multimodal RoPE: a head's 32 rotary frequencies split over time, height and width
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        # Qwen2-VL's patching: 14 px patches over 2 frames, 2x2 patches merged into one token.
        vision_config={
            "depth": 2,
            "embed_dim": 128,
            "num_heads": 2,
            "mlp_ratio": 2,
            "hidden_size": 128,  # the merger projects into the text model's width
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(5)
    Qwen2VLForConditionalGeneration(config).to(torch.bfloat16).save_pretrained(path)
    # Images and frames are resized to sides that are multiples of 28 px (patch x merge) and an
    # area between 56x56 and 112x112 px: 4-16 tokens an image or a pair of frames.
    size = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        # the reference (qwen-vl-utils) pixel budget; unset, transformers warns on every call
        video_processor=Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=True),
        tokenizer=tokenizer,
        chat_template=_QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)


def _vllm_llava_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Name the CLIP tower's weights `model.vision_tower.vision_model.<x>`, which vLLM's LLaVA
    loader (a CLIPVisionModel) requires and transformers 5 also loads; its own save_pretrained
    drops the `vision_model.` level, and vLLM then rejects the checkpoint."""
    prefix = "model.vision_tower."
    renamed = {}
    for name, tensor in state_dict.items():
        if name.startswith(prefix) and not name.startswith(prefix + "vision_model."):
            name = prefix + "vision_model." + name[len(prefix) :]
        renamed[name] = tensor
    return renamed


def _build_flux(path: Path) -> None:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    # 4 VAE blocks give the real 8x downsampling, so 64x64 images are 16 packed latent tokens.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    transformer = FluxTransformer2DModel(
        in_channels=4 * 4,  # latents are packed in 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 d_model
        pooled_projection_dim=32,  # CLIP hidden size
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
    )
    FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    ).save_pretrained(path)


def _build_sana(path: Path) -> None:
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = _gemma_tokenizer()
    torch.manual_seed(3)
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=8,
        encoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 16, 32),
        decoder_block_out_channels=(8, 16, 32),
        encoder_layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1),
        encoder_qkv_multiscales=((), (), (5,)),
        decoder_qkv_multiscales=((), (), (5,)),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        scaling_factor=0.41407,
    )
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=32,  # Gemma hidden size
        # 16 latents x 4 (VAE) = 64 px by default. Resolution binning (on by default) snaps sizes to
        # 512 px bins for this sample size, so callers pass use_resolution_binning=False.
        sample_size=16,
    )
    # Sana's own scheduler setup: DPM-Solver++ on flow-matching sigmas.
    scheduler = DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    ).save_pretrained(path)


def _build_wan(path: Path) -> None:
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = _t5_tokenizer()
    torch.manual_seed(4)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    # Real Wan strides: 8x spatial, 4x temporal, so 9 frames of 64x64 are 3x8x8 latents.
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=32,  # UMT5 d_model
        freq_dim=32,
        ffn_dim=64,
        num_layers=2,
        rope_max_seq_len=32,
    )
    WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    ).save_pretrained(path)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "llm": _build_llm,
    "vlm": _build_vlm,
    "video-vlm": _build_video_vlm,
    "flux": _build_flux,
    "sana": _build_sana,
    "wan": _build_wan,
}


def build_once(out_dir: Path, name: str, build: Callable[[Path], None], build_format: str) -> Path:
    """out_dir/name built by `build` unless a complete build of `build_format` is there. Built into a
    hidden sibling dir, marker last, then renamed: a killed build never leaves a dir that looks
    complete. The lock lets concurrent callers (tests, Ray workers) share one out_dir safely."""
    final = out_dir / name
    with open(out_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = final / _MARKER
        if marker.is_file() and marker.read_text().strip() == build_format:
            return final
        logger.info("building tiny model %r in %s", name, final)
        partial = out_dir / f".{name}.partial"
        for stale in (final, partial):  # an older format or a killed build
            shutil.rmtree(stale, ignore_errors=True)
        partial.mkdir()
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()  # save_pretrained's per-file bars are noise for megabyte models
        with torch.random.fork_rng(devices=[]):  # builders seed torch; keep the caller's RNG state
            build(partial)
        (partial / _MARKER).write_text(build_format + "\n")
        partial.rename(final)
    return final


def make_tiny_models(out_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Build (or reuse, when already complete) tiny random-weight models under out_dir/<name>;
    return name -> path."""
    names = TINY_MODELS if names is None else tuple(names)
    unknown = sorted(set(names) - set(TINY_MODELS))
    if unknown:
        raise ValueError(f"unknown tiny models {unknown}; choose from {TINY_MODELS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: build_once(out_dir, name, _BUILDERS[name], BUILD_FORMAT) for name in names}
