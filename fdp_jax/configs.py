"""FDP model configurations: size presets (`full`, `small`, `tiny`) x modes (`paper`, `reference_compat`).

A model config is an ``ml_collections.ConfigDict``; :func:`model_spec` turns it into the hashable
:class:`ModelSpec` that the Linen modules take. Every structural difference between the two modes is a
switch here (one code path, no copies):

| switch              | `paper` (default)                         | `reference_compat` (official code)     |
|---------------------|-------------------------------------------|----------------------------------------|
| `use_gfa`           | True: each stage = LFA blocks + one GFA   | False: 20 LFA, no attention            |
| `mhca`              | 'grouped': grouped 3x3 -> BN -> ReLU -> 1x1 | 'dense': one dense bias-free 3x3 conv |
| `temporal_layout`   | 'time_major': rank-scorer depth = frames  | 'raw': raw reshape(-1, 1, 64, 64, 8)   |
| `per_frame_encoder` | False: B*T frames in one encoder call     | False (set True for train-mode BN parity) |

`head_pool` (both modes, default 'avg' = the paper's and the official global average pool before the
4096-d projection): 'flatten' feeds the final feature map's positions to the projection instead (NOT in the
paper; the CPU demo uses it, docs/fdp_training.md).

`platform` (default 'generic'): which code paths the maths takes, chosen by the caller, never from the running
backend (a step lowered for GPU/TPU from a CPU host must not carry CPU-only paths). 'generic', 'gpu' and 'tpu':
the portable XLA path (plain ``nn.Conv`` convolutions, ``nn.remat``, no scheduling tricks); 'cpu': the paths
measured faster / leaner on XLA:CPU (matmul/Winograd/chunked-weight-gradient convolutions, im2col grouped
convolutions, :func:`fdp_jax.lean_vjp.remat_after_cotangent`, recomputations pinned after the cotangent),
all inside ``jax.named_scope('cpu_...')`` so a lowering can be checked for them. Launchers set it from the
mesh with :func:`with_platform`.

`remat` (both modes, default False): with `per_frame_encoder` the frame loop becomes a rolled scan that
recomputes one frame at a time in the backward pass (low memory, slow on XLA:CPU); without it the encoder
blocks of `remat_stages` (default all four) are recomputed in the backward pass (on XLA:CPU with
`fdp_jax.lean_vjp.remat_after_cotangent`, elsewhere `nn.remat`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

SIZES = ("full", "small", "tiny")
MODES = ("paper", "reference_compat")
PLATFORMS = ("generic", "cpu", "gpu", "tpu")
_PLATFORM_ALIASES = {"cuda": "gpu", "rocm": "gpu"}


def _size_fields(size: str) -> dict:
    if size == "full":  # Next-ViT-S skeleton of the official code
        return dict(image_size=64, stem_chs=(64, 32, 64), depths=(3, 4, 10, 3),
                    lfa_widths=(96, 192, 384, 768), gfa_widths=(128, 256, 512, 1024), segnet_width=1.0)
    if size == "small":  # same topology, narrower and shallower (CPU tests, demo)
        return dict(image_size=64, stem_chs=(32, 16, 32), depths=(1, 1, 2, 1),
                    lfa_widths=(48, 96, 192, 256), gfa_widths=(128, 128, 256, 384), segnet_width=0.25)
    if size == "tiny":  # unit tests only: 32x32 frames, 1024-d frame features
        return dict(image_size=32, stem_chs=(16, 8, 16), depths=(1, 1, 1, 1), sr_ratios=(4, 2, 1, 1),
                    lfa_widths=(32, 32, 64, 64), gfa_widths=(128, 128, 128, 128), segnet_width=0.125)
    raise ValueError(f"Unknown FDP size {size!r}; expected one of {SIZES}.")


def _mode_fields(mode: str) -> dict:
    if mode == "paper":
        return dict(use_gfa=True, mhca="grouped", temporal_layout="time_major", per_frame_encoder=False)
    if mode == "reference_compat":
        return dict(use_gfa=False, mhca="dense", temporal_layout="raw", per_frame_encoder=False)
    raise ValueError(f"Unknown FDP mode {mode!r}; expected one of {MODES}.")


def get_model_config(size: str = "full", mode: str = "paper", **overrides: Any) -> ml_collections.ConfigDict:
    """Model config for a size preset and a mode; keyword ``overrides`` replace single fields."""
    cfg = dict(size=size, mode=mode, num_frames=8, in_channels=1, num_classes=5,
               strides=(1, 2, 2, 2), sr_ratios=(8, 4, 2, 1), head_dim=8, mix_block_ratio=0.75,
               lfa_mlp_ratio=3.0, gfa_mlp_ratio=2.0, path_dropout=0.1, drop=0.0, attn_drop=0.0,
               rank_channels=8, mer_hidden=256, pool_size=3,
               head_pool="avg", dtype="float32", precision="default", remat=False,
               remat_stages=(1, 2, 3, 4), platform="generic", winograd=True)
    cfg.update(_size_fields(size))
    cfg.update(_mode_fields(mode))
    for key, value in overrides.items():
        if key not in cfg:
            raise KeyError(f"Unknown FDP model config field {key!r}; known: {sorted(cfg)}")
        cfg[key] = value
    cfg["platform"] = normalize_platform(cfg["platform"])
    return ml_collections.ConfigDict(cfg)


def normalize_platform(platform: Any) -> str:
    """'cpu' | 'gpu' | 'tpu' | 'generic' from a platform name (JAX's 'cuda'/'rocm' -> 'gpu'), a ``jax.Device``
    or a ``jax.sharding.Mesh`` (the platform of its first device); ``None`` -> 'generic'."""
    if platform is None:
        return "generic"
    devices = getattr(platform, "devices", None)
    if devices is not None and hasattr(devices, "flat"):  # a Mesh
        platform = devices.flat[0]
    platform = getattr(platform, "platform", platform)  # a Device
    name = _PLATFORM_ALIASES.get(platform, platform)
    if name not in PLATFORMS:
        raise ValueError(f"Unknown FDP platform {platform!r}; expected one of {PLATFORMS} (or 'cuda'/'rocm').")
    return name


def with_platform(model_config: Any, platform: Any) -> Any:
    """A copy of ``model_config`` (ConfigDict, dict or :class:`ModelSpec`) whose code paths are those of
    ``platform`` (a name, a ``jax.Device`` or a ``Mesh``: e.g. ``with_platform(cfg, mesh)``)."""
    name = normalize_platform(platform)
    if isinstance(model_config, ModelSpec):
        return dataclasses.replace(model_config, platform=name)
    if isinstance(model_config, ml_collections.ConfigDict):
        out = ml_collections.ConfigDict(model_config.to_dict())
        out.platform = name
        return out
    return {**dict(model_config), "platform": name}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Hashable, validated model description (the Linen modules' only attribute)."""
    image_size: int = 64
    num_frames: int = 8
    in_channels: int = 1
    num_classes: int = 5
    stem_chs: tuple = (64, 32, 64)
    depths: tuple = (3, 4, 10, 3)
    lfa_widths: tuple = (96, 192, 384, 768)
    gfa_widths: tuple = (128, 256, 512, 1024)
    strides: tuple = (1, 2, 2, 2)
    sr_ratios: tuple = (8, 4, 2, 1)
    head_dim: int = 8
    mix_block_ratio: float = 0.75
    lfa_mlp_ratio: float = 3.0
    gfa_mlp_ratio: float = 2.0
    path_dropout: float = 0.1
    drop: float = 0.0
    attn_drop: float = 0.0
    rank_channels: int = 8
    mer_hidden: int = 256
    pool_size: int = 3
    segnet_width: float = 1.0
    use_gfa: bool = True
    mhca: str = "grouped"
    temporal_layout: str = "time_major"
    per_frame_encoder: bool = False
    dtype: str = "float32"
    precision: str = "default"
    remat: bool = False
    remat_stages: tuple = (1, 2, 3, 4)  # with remat and without per_frame_encoder: the stages whose blocks recompute
    head_pool: str = "avg"  # 'avg': BN -> global average pool -> Dense (paper + official); 'flatten': NOT in the paper
    bn_axis_name: str | None = None  # set for pmap (cross-device BN statistics)
    platform: str = "generic"  # code paths: 'generic'/'gpu'/'tpu' portable XLA, 'cpu' the XLA:CPU ones
    # platform 'cpu' only: Winograd F(4,3)/F(2,3) for the 3x3 convs where measured faster (the full paper step
    # 7.09 vs 7.89 s) at ~46 s more cold compile (71 vs 26 s); False keeps XLA's convolutions (docs/fdp_model.md)
    winograd: bool = True
    deferred_init: bool = False  # variables as fdp_jax.initializers.Deferred placeholders (fdp_jax.init's batched draw)

    @property
    def cpu_paths(self) -> bool:
        """Whether the XLA:CPU-specific code paths are used (``platform == 'cpu'``)."""
        return self.platform == "cpu"

    @property
    def feature_dim(self) -> int:
        """Per-frame feature size; reshaped to an image_size x image_size map per frame."""
        return self.image_size * self.image_size

    def validate(self) -> "ModelSpec":
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}, got {self.platform!r} (use with_platform)")
        if self.mhca not in ("dense", "grouped"):
            raise ValueError(f"mhca must be 'dense' or 'grouped', got {self.mhca!r}")
        if self.head_pool not in ("avg", "flatten"):
            raise ValueError(f"head_pool must be 'avg' (paper, official) or 'flatten', got {self.head_pool!r}")
        if self.temporal_layout not in ("raw", "time_major"):
            raise ValueError(f"temporal_layout must be 'raw' or 'time_major', got {self.temporal_layout!r}")
        if not set(self.remat_stages) <= set(range(1, len(self.depths) + 1)):
            raise ValueError(f"remat_stages {self.remat_stages} must be stage numbers 1..{len(self.depths)}.")
        if self.image_size % 32:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 32 (SegNet pools 5 times).")
        if self.temporal_layout == "raw" and self.image_size % self.num_frames:
            raise ValueError("raw layout needs image_size divisible by num_frames.")
        n = len(self.depths)
        for name in ("lfa_widths", "gfa_widths", "strides", "sr_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, depths has {n}.")
        if self.mhca == "grouped":
            for w in self.lfa_widths:
                if w % self.head_dim:
                    raise ValueError(f"LFA width {w} not divisible by head_dim {self.head_dim}.")
        if self.use_gfa:
            for w in self.gfa_widths:
                sa = make_divisible(int(w * self.mix_block_ratio), 32)
                if sa >= w or sa % self.head_dim or (w - sa) % self.head_dim:
                    raise ValueError(f"GFA width {w}: split {sa}/{w - sa} (mix_block_ratio "
                                     f"{self.mix_block_ratio}) is invalid for head_dim {self.head_dim}.")
        return self


def model_spec(config: Any, **overrides: Any) -> ModelSpec:
    """Builds a :class:`ModelSpec` from a ConfigDict/dict (extra keys such as size/mode are ignored)."""
    if isinstance(config, ModelSpec):
        return dataclasses.replace(config, **overrides).validate() if overrides else config.validate()
    items = dict(config.items()) if hasattr(config, "items") else dict(config)
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in items.items() if k in names}
    kwargs.update(overrides)
    return ModelSpec(**kwargs).validate()


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Next-ViT's channel rounding (nearest multiple of ``divisor``, never below 90% of ``v``)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v
