"""Per-image architecture choice for C3 (C3-Adaptive, Kim et al. 2023, Sec. 5.1).

C3's best Kodak numbers (-1.7 % BD-rate against C3 with one architecture) come from
fitting several decoder architectures to each image and keeping the best; neither C3's
code nor Cool-chic automates it. With `config.arch_search.candidates` (a list of
overrides of `config.model`, e.g. synthesis and context-model widths), the encoder:

1. builds every candidate and drops those whose decoder exceeds
   `arch_search.max_macs` multiply-accumulates per pixel (0: no bound);
2. fits all remaining candidates together for `arch_search.steps` stage-1 steps (one
   batched fit, `models.c3.batched`: members may differ in architecture);
3. scores each by its brief RD loss: the hard-rounded loss (MSE + lambda x latent bits
   per pixel) plus lambda x its network bits per pixel, C3's Laplace estimate at the
   middle of `fit.weight_steps` / `fit.bias_steps` (the networks cost more in the
   larger candidates, which the latent loss alone would not see);
4. continues the best one's fit where it stands (its candidates' steps count as
   iterations, like Cool-chic 5's warm-up).

The results row records the chosen candidate, and every candidate's MACs and score.
A resumed fit reruns the brief search (deterministic for a seed) before restoring the
chosen fitter's checkpoint.
"""

import copy

import numpy as np
from absl import logging

from common.errors import ConfigError, FitError
from common.images import to_float
from models import registry
from models.c3 import rate
from models.c3.batched import BatchedFit
from models.c3.fit import C3Fitter, Run


def searching(config) -> bool:
    """Whether `config` asks for a per-image architecture choice."""
    search = config.get("arch_search")
    return bool(search is not None and search.candidates)


def candidate_model_config(config, overrides: dict):
    """`config.model` with one candidate's overrides."""
    model_config = copy.deepcopy(config.model)
    for key, value in dict(overrides).items():
        if key not in model_config:
            raise ConfigError(f"arch_search candidate sets {key!r}, not a field of model.")
        model_config[key] = tuple(value) if isinstance(value, list) else value
    return model_config


def check_max_macs(config, macs: int) -> None:
    """A model without candidates must itself respect `arch_search.max_macs`."""
    search = config.get("arch_search")
    bound = int(search.max_macs) if search is not None else 0
    if bound and macs > bound:
        raise ConfigError(
            f"{config.model.name} decodes at {macs} MACs per pixel, above --max_macs "
            f"{bound}: lower its widths or list candidates in arch_search.candidates."
        )


def brief_score(fitter: C3Fitter) -> float:
    """Hard-rounded RD loss plus lambda x the networks' estimated bits per pixel."""
    config = fitter.config
    weight = sorted(config.weight_steps)[len(config.weight_steps) // 2]
    bias = sorted(config.bias_steps)[len(config.bias_steps) // 2]
    integers = fitter.model.network_integers(weight, bias)
    network_bits = sum(rate.parameter_bits(q) for q in integers)
    lmbda = float(fitter.lmbda.numpy())
    return fitter._hard_loss() + lmbda * network_bits / fitter.model.num_pixels


class ArchitectureSearch:
    """The candidates of one config for one image size (their fitters built once).

    search = ArchitectureSearch(config, make_fitter)
    fitter, record = search.choose(image, lmbda, seed)
    result = fitter.fit()          # continues the chosen candidate
    """

    def __init__(self, config, make_fitter):
        self.config = config
        self._make_fitter = make_fitter
        self._fitters = {}
        self._batches = {}  # (height, width, allowed candidates): traced once, reused

    def _candidates(self, height: int, width: int) -> list[tuple[int, dict, C3Fitter]]:
        key = (height, width)
        if key not in self._fitters:
            built = []
            for k, overrides in enumerate(self.config.arch_search.candidates):
                model_config = candidate_model_config(self.config, overrides)
                model = registry.build_model(model_config, height=height, width=width)
                built.append((k, dict(overrides), self._make_fitter(model, self.config.fit)))
            self._fitters[key] = built
        return self._fitters[key]

    def choose(self, image: np.ndarray, lmbda: float, seed: int) -> tuple[C3Fitter, dict]:
        """(the chosen candidate's fitter, in stage 1 after the brief fit; the record)."""
        search = self.config.arch_search
        bound = int(search.max_macs)
        candidates, records = [], []
        for k, overrides, fitter in self._candidates(*image.shape[:2]):
            macs = int(fitter.model.macs_per_pixel()["total"])
            allowed = not bound or macs <= bound
            records.append({"index": k, "overrides": _jsonable(overrides), "macs_per_pixel": macs})
            if allowed:
                candidates.append((k, fitter))
            else:
                records[-1]["excluded"] = f"above max_macs {bound}"
        if not candidates:
            raise ConfigError(
                f"no arch_search candidate decodes within max_macs {bound} MACs per pixel "
                f"(the cheapest needs {min(r['macs_per_pixel'] for r in records)})."
            )
        steps = min(int(search.steps), int(self.config.fit.num_noise_steps))
        for _, fitter in candidates:
            fitter.reset(to_float(image), lmbda, seed)
        if steps > 0:
            key = (*image.shape[:2], tuple(k for k, _ in candidates))
            if key not in self._batches:
                self._batches[key] = BatchedFit([f for _, f in candidates])
            self._batches[key].carry_out([Run("noise", steps, check=False)] * len(candidates))
        for k, fitter in candidates:
            score = brief_score(fitter)
            if not np.isfinite(score):
                score = float("inf")
            records[k]["brief_rd_loss"] = score
        scores = [records[k]["brief_rd_loss"] for k, _ in candidates]
        if not np.isfinite(min(scores)):
            raise FitError("every arch_search candidate's brief fit gave a non-finite loss.")
        chosen, fitter = candidates[int(np.argmin(scores))]
        # The other candidates' steps are iterations of this encoding, as a warm-up's.
        fitter.warmup_extra.assign(steps * (len(candidates) - 1))
        fitter.warmup_done.assign(True)
        logging.info(
            "Architecture choice: candidate %d of %d (%s, %d MACs/pixel) after %d steps; "
            "brief RD losses %s.",
            chosen,
            len(records),
            records[chosen]["overrides"],
            records[chosen]["macs_per_pixel"],
            steps,
            ", ".join(f"{s:.4g}" for s in scores),
        )
        return fitter, {"chosen": chosen, "steps": steps, "candidates": records}


def _jsonable(overrides: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
