"""Iterative inference with Stochastic Gumbel Annealing (Yang et al., NeurIPS 2020) for a
trained hyperprior or shallow-decoder run (shallow-ntc's recipe: 3000 steps, Adam 5e-3,
x0.1 after 90 %, tau(t) = clip(0.5 exp(-5e-4 (t - 200)), 1e-8, 0.5)).

python itinf.py --config configs/itinf_sga.py --config.warm_start=RUN
                --config.data.root=DIR [--hid SHARD]
./launch.py --main itinf --config configs/itinf_sga.py --workdirs "runs/XID/wid=*"
    --args="--config.data.root=DIR"    # one work unit per (run, image shard)
"""

from ml_collections import config_dict

NUM_SHARDS = 4  # images i with i % NUM_SHARDS == shard form one work unit


def get_config():
    config = config_dict.ConfigDict()
    config.name = "itinf_sga"
    config.seed = 0
    config.warm_start = ""  # run directory of a trained mbt2018_mean / jpegl / two_layer_syn[2]

    config.data = config_dict.ConfigDict()
    config.data.name = "folder"
    config.data.root = ""  # folder of images to code (common.images.image_files)
    config.data.shard = -1  # -1: every image; else images i with i % num_shards == shard
    config.data.num_shards = NUM_SHARDS

    config.itinf = config_dict.ConfigDict()
    config.itinf.num_steps = 3000
    config.itinf.learning_rate = 5e-3
    config.itinf.decay_after = 0.9  # fraction of steps after which the rate drops
    config.itinf.decay_factor = 0.1
    config.itinf.max_tau = 0.5
    config.itinf.min_tau = 1e-8
    config.itinf.tau_rate = 5e-4
    config.itinf.tau_start = 200
    config.itinf.log_every = 100
    config.itinf.jit_compile = False
    return config


def get_hyper():
    return [{"data.shard": shard} for shard in range(NUM_SHARDS)]
