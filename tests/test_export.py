"""The FDP and DKT+ steps lower for GPU and TPU from this CPU host (``jax.export``, ``platforms=['cuda', 'tpu']``)
and carry none of the XLA:CPU-only code paths.

Nothing big is allocated: states and batches are ``jax.eval_shape`` / ``ShapeDtypeStruct`` trees. The CPU-only
paths of ``fdp_jax`` run inside ``jax.named_scope('cpu_...')`` and the exported StableHLO keeps the scope names
in its locations, so a lowering is checked by text; the same check on a ``platform='cpu'`` model must fail (so
the test can fail). Shapes: the full size at batch 36 (``FDP_EXPORT_SIZE`` / ``FDP_EXPORT_BATCH`` override;
'tiny' x 4 lowers the same constructs except the shape-dependent Winograd / chunked paths of 'cpu').
The 4-device ``data`` mesh part runs in a subprocess (XLA's device count is fixed at backend start).
"""
from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import pytest

from fdp_jax import train_steps as ts
from fdp_jax.configs import get_model_config
from tests.multidevice import start_with_devices

EXPORT_SIZE = os.environ.get("FDP_EXPORT_SIZE", "full")
EXPORT_BATCH = int(os.environ.get("FDP_EXPORT_BATCH", "36"))
PLATFORMS = ("cuda", "tpu")
CPU_SCOPES = ("cpu_winograd", "cpu_conv_matmul", "cpu_im2col_conv", "cpu_conv2d", "cpu_chunked_weight_grad",
              "cpu_grouped_im2col", "cpu_after_cotangent", "cpu_remat_after_cotangent")
# custom-call targets that exist only in XLA:CPU (LAPACK/DUCC FFT kernels, host callbacks)
CPU_CUSTOM_CALL = re.compile(r"lapack|ducc|cpu|callback", re.IGNORECASE)


def cpu_only_constructs(module_text: str) -> list[str]:
    """The CPU-only scope names and custom-call targets found in a StableHLO module's text."""
    found = [s for s in CPU_SCOPES if s in module_text]
    targets = re.findall(r"custom_call\s*@([\w.]+)|call_target_name\s*=\s*\"([^\"]+)\"", module_text)
    return found + sorted({t for pair in targets for t in pair if t and CPU_CUSTOM_CALL.search(t)})


def fdp_abstract(size: str, mode: str, platform: str, batch: int, sharding=None) -> tuple:
    """(abstract TrainState, abstract batch, abstract rng) for the FDP steps; nothing allocated."""
    cfg = get_model_config(size, mode, platform=platform)
    state = jax.eval_shape(lambda: ts.create_train_state(jax.random.PRNGKey(0), cfg))
    s = cfg.image_size
    sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    batch_sds = {"frames": sds((batch, cfg.num_frames, s, s, 1), jnp.float32),
                 "di_target": sds((batch, s, s), jnp.float32), "label": sds((batch,), jnp.int32),
                 "mask": sds((batch,), jnp.float32)}
    return state, batch_sds, jax.ShapeDtypeStruct((2,), jnp.uint32)


def export_fdp_steps(size: str, mode: str, platform: str, batch: int, mesh=None) -> dict[str, jax.export.Exported]:
    """``jax.export`` of the FDP train and eval steps (model config ``platform``) for cuda and tpu."""
    state, batch_sds, rng = fdp_abstract(size, mode, platform, batch)
    train = ts.make_train_step(mesh, donate=False, platform="generic")
    evaluate = ts.make_eval_step(mesh, platform="generic")
    return {"train": jax.export.export(train, platforms=PLATFORMS)(state, batch_sds, rng),
            "eval": jax.export.export(evaluate, platforms=PLATFORMS)(state, batch_sds)}


@pytest.mark.parametrize("mode", ["paper", "reference_compat"])
def test_fdp_steps_export_for_accelerators_without_cpu_paths(mode):
    exported = export_fdp_steps(EXPORT_SIZE, mode, "generic", EXPORT_BATCH)
    for name, exp in exported.items():
        assert exp.platforms == PLATFORMS
        assert cpu_only_constructs(exp.mlir_module()) == [], (mode, name)


@pytest.mark.parametrize("mode", ["paper", "reference_compat"])
def test_export_check_fails_for_a_cpu_model(mode):
    """The same check on ``platform='cpu'`` finds the CPU paths (the test above can fail)."""
    exported = export_fdp_steps(EXPORT_SIZE, mode, "cpu", EXPORT_BATCH)
    found = cpu_only_constructs(exported["train"].mlir_module())
    assert {"cpu_conv_matmul", "cpu_after_cotangent"} <= set(found), found
    if mode == "paper":
        assert "cpu_grouped_im2col" in found
    if EXPORT_SIZE == "full" and EXPORT_BATCH >= 36:  # the shape-dependent CPU paths at the real step shapes
        assert {"cpu_winograd", "cpu_chunked_weight_grad"} <= set(found), found


def test_dkt_train_step_exports_for_accelerators():
    from launch.configs import dkt_base
    from dkt_jax import train_steps as dts
    import dkt_jax
    config = dkt_base.get_config()
    config.model.num_skills = 50
    model = dkt_jax.model_from_config(config.model)
    state = jax.eval_shape(lambda: dts.create_train_state(jax.random.PRNGKey(0), config.model, config))
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    step = dts.make_train_step(model, tuple(sorted(dts.lambdas_from(config).items())), mesh)
    b, t = 8, 16
    batch = {"skills": jax.ShapeDtypeStruct((b, t), jnp.int32), "correct": jax.ShapeDtypeStruct((b, t), jnp.int32),
             "lengths": jax.ShapeDtypeStruct((b,), jnp.int32)}
    exp = jax.export.export(step, platforms=PLATFORMS)(state, batch, jax.ShapeDtypeStruct((2,), jnp.uint32))
    assert cpu_only_constructs(exp.mlir_module()) == []


MULTI = r"""
import json, jax
from tests.test_export import export_fdp_steps, cpu_only_constructs
from launch.runtime.mesh import make_data_mesh
mesh = make_data_mesh(4)
def summary(e):
    text = e.mlir_module()  # batch split over 'data' (Shardy or GSPMD annotations)
    sharded = 'sdy.sharding<@mesh, [{"data"}' in text or 'mhlo.sharding = "{devices=[4' in text
    return {"found": cpu_only_constructs(text), "devices": e.nr_devices, "sharded": sharded}
out = {}
for mode in ("paper", "reference_compat"):
    for platform in ("generic", "cpu"):
        exp = export_fdp_steps(SIZE, mode, platform, BATCH, mesh)
        out[f"{mode}/{platform}"] = {k: summary(e) for k, e in exp.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", autouse=True)
def four_device_run():
    """The 4-device subprocess, started when the module starts: it runs beside the single-device exports."""
    run = start_with_devices(MULTI.replace("SIZE", repr(EXPORT_SIZE)).replace("BATCH", str(EXPORT_BATCH)), 4)
    yield run
    run.kill()


def test_fdp_steps_export_on_a_four_device_data_mesh(four_device_run):
    """NamedSharding annotations lower for cuda/tpu on a 4-device mesh; still no CPU paths ('cpu' has them)."""
    r = four_device_run.result()
    for mode in ("paper", "reference_compat"):
        for step in ("train", "eval"):
            generic = r[f"{mode}/generic"][step]
            assert generic == {"found": [], "devices": 4, "sharded": True}, (mode, step, generic)
        assert "cpu_after_cotangent" in r[f"{mode}/cpu"]["train"]["found"]
