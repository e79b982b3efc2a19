"""The DKT / DKT+ base config: every field of ``launch.dkt`` with its default (the reference's
hyper-parameters: hidden 200, keep_prob 0.5, Adam 1e-2, per-tensor clipping at 5). Dataset configs call
``get_config()`` and override a few fields; they never inherit from each other.

    python -m launch.dkt --config=launch/configs/dkt_base.py --workdir=W --config.dataset=kt_csv/assist2009 \
        --config.manual_dir=PATH
"""
from __future__ import annotations

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Fields shared by every DKT/DKT+ config (override per dataset)."""
    c = ml_collections.ConfigDict()
    c.dataset = "simulated5"          # a datasets.registry name, e.g. 'kt_csv/assist2009', 'assistments2017'
    c.train_split = "train"
    c.test_split = "test"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)     # default <workdir>/tfds
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)   # simulated5: default <workdir>/simulated5_raw
    c.simulated5 = ml_collections.ConfigDict({"num_students": 4000, "num_train": 2000, "seed": 0})

    c.model = ml_collections.ConfigDict()
    c.model.num_skills = ml_collections.FieldReference(None, field_type=int)  # from dataset metadata
    c.model.hidden_size = 200
    c.model.encoding = "onehot"       # 'onehot' (q + M a) or 'embedding'
    c.model.embedding_dim = 200
    c.model.dropout_rate = 0.5        # reference keep_prob 0.5
    c.model.lstm_impl = "fused"       # "fused" (fastest), "hoisted" or "flax" (nn.OptimizedLSTMCell)
    c.model.unroll = 2

    c.loss = ml_collections.ConfigDict({"lambda_r": 0.0, "lambda_w1": 0.0, "lambda_w2": 0.0})

    c.max_len = 200                   # training chunk length (pyKT); remainders < min_len dropped
    c.packing = "auto"                # several chunks per row, state reset per student: 'auto' (when it
                                      #   cuts the rows by >= 1.1x), 'on' or 'off' (one chunk per row)
    c.min_len = 3
    c.batch_size = 32
    c.learning_rate = 1e-2
    c.clip = "per_tensor"             # 'per_tensor' (reference), 'global_norm' or 'none'
    c.clip_norm = 5.0
    c.max_loss = 1e6                  # a step whose loss exceeds this (or is not finite) stops the run
    c.num_epochs = 60
    c.patience = 10                   # early stopping on validation AUC(N)
    c.min_delta = 1e-4
    c.val_fraction = 0.1              # validation students carved from train (never test)
    c.eval_batch_size = 256
    c.eval_chunk_len = 200            # full-history evaluation in chunks with the carried LSTM state
    c.parallelism = "jit"             # 'jit' (NamedSharding) or 'pmap'
    c.num_devices = 0                 # 0 = all devices
    c.keep_checkpoints = 2
    c.evaluate_test = True            # False for hyper-parameter tuning runs (validation only)
    c.seed = 0
    return c

