"""Small stand-ins for the FDP model and ME pipeline, so the LOSO loop is testable on its own.

A tiny Flax model (conv -> mean -> dense logits; conv -> sigmoid DI) with BatchNorm, trained with
Adam under jit + NamedSharding, and a grain pipeline over an in-memory list of synthetic clips in
which the class is carried by a moving blob. Same batch contract as the real ones.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from fdp_jax import train as fdp_train
from launch.runtime import mesh as mesh_lib

NUM_CLASSES = 3


def make_clips(num_subjects: int = 3, clips_per_subject: int = 6, seed: int = 0) -> list[dict]:
    """Clips (8, 16, 16, 1) uint8 whose class sets the direction a bright blob moves in."""
    rng = np.random.default_rng(seed)
    clips = []
    for s in range(num_subjects):
        for c in range(clips_per_subject):
            label = c % NUM_CLASSES
            frames = rng.integers(0, 40, size=(8, 16, 16, 1)).astype(np.uint8)
            for t in range(8):
                dy, dx = [(0, t), (t, 0), (t, t)][label]
                frames[t, 2 + dy:5 + dy, 2 + dx:5 + dx, 0] = 220
            di = frames[-1, :, :, 0].astype(np.float32) / 255.0
            clips.append({"frames": frames, "di_target": di, "label": np.int32(label),
                          "subject": f"{s + 1:02d}"})
    return clips


class TinyModel(nn.Module):
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, frames, train: bool):
        b, t, h, w, _ = frames.shape
        x = jnp.moveaxis(frames[..., 0], 1, -1)  # (B, H, W, T): time as channels
        x = nn.Conv(8, (3, 3), use_bias=False)(x)  # a bias before BN has zero gradient (Adam noise)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        logits = nn.Dense(self.num_classes)(x.reshape(b, -1))
        di = nn.sigmoid(nn.Conv(1, (3, 3))(x))[..., 0]
        return logits, di


def make_components(clips: list[dict]) -> fdp_train.LosoComponents:
    def prepare_source(config, wd):
        return clips, {"subjects": sorted({c["subject"] for c in clips}), "num_classes": NUM_CLASSES,
                       "class_names": ["right", "down", "diagonal"]}

    def make_step_fns(config, mesh, num_classes):
        model = TinyModel(num_classes)
        tx = optax.adam(config.optimizer.learning_rate)

        class State(train_state.TrainState):
            batch_stats: dict

        def init(rng):
            variables = model.init(rng, jnp.zeros((1, 8, 16, 16, 1)), train=False)
            state = State.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                                 batch_stats=variables["batch_stats"])
            return mesh_lib.replicate(state, mesh)

        def train(state, batch, rng):
            def loss_fn(params):
                (logits, di), updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                                    batch["frames"], train=True, mutable=["batch_stats"])
                ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
                mse = jnp.mean((di - batch["di_target"]) ** 2)
                return ce + 10.0 * mse, (updates, ce, mse)
            (loss, (updates, ce, mse)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
            return state, {"loss": loss, "ce": ce, "di_mse": mse}

        def evaluate(state, batch):
            logits, di = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                     batch["frames"], train=False)
            return {"logits": logits, "di_pred": di}

        return fdp_train.StepFns(init=init, train=jax.jit(train), evaluate=jax.jit(evaluate))

    def make_fold_data(source, test_subject, config, dataset):
        others = sorted({c["subject"] for c in source} - {test_subject})
        val_subjects = others[:config.data.validation_subjects]
        train = [c for c in source if c["subject"] not in val_subjects and c["subject"] != test_subject]
        test = [c for c in source if c["subject"] == test_subject]
        val = [c for c in source if c["subject"] in val_subjects]
        batch_size = config.batch_size

        def to_batch(c):
            return {"frames": c["frames"].astype(np.float32) / 255.0, "di_target": c["di_target"],
                    "label": c["label"], "mask": np.float32(1.0)}

        ds = (grain.MapDataset.source(train).seed(config.seed).shuffle().repeat(None).map(to_batch)
              .batch(batch_size, drop_remainder=True))
        train_iter = iter(ds.to_iter_dataset())
        def padded_batches(rows):
            batches = []
            for start in range(0, len(rows), batch_size):
                items = [to_batch(c) for c in rows[start:start + batch_size]]
                items += [dict(items[0], mask=np.float32(0.0))] * (batch_size - len(items))
                batches.append({k: np.stack([it[k] for it in items]) for k in items[0]})
            return batches

        return fdp_train.FoldData(train_iter=train_iter, test_batches=padded_batches(test),
                                  val_batches=padded_batches(val) if val else None,
                                  info={"num_classes": NUM_CLASSES,
                                        "steps_per_epoch": max(1, len(train) // batch_size)})

    return fdp_train.LosoComponents(prepare_source, make_step_fns, make_fold_data)
