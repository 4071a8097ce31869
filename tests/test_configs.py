import pytest
from ml_collections import config_dict

from common.config import (
    ConfigError,
    apply_sweep_entry,
    cli_overridden_keys,
    load_module,
    load_sweep,
    sweep_entry,
)
from common.results import aggregate, result_row
from common.rundir import work_unit_name

CONFIGS = {
    "configs/c3_kodak.py": 24 * 14,
    "configs/c3_clic2020.py": 41 * 14,
    "configs/coolchic.py": 24 * 14,
    "configs/c3_plus.py": 24 * 14,
    "configs/c3_quickstart.py": 2,
    "configs/c3_lossless.py": 24,
    "configs/c3_kodak_batched.py": 24 * 2,
    "configs/c3_adaptive.py": 24 * 14,
}


@pytest.mark.parametrize("path,size", sorted(CONFIGS.items()))
def test_configs_load_and_sweep_sizes(path, size):
    config = load_module(path).get_config()
    sweep = load_sweep(path)
    assert len(sweep) == size
    for entry in sweep:  # every sweep key exists in the config
        apply_sweep_entry(config, entry)
    _assert_fields(
        config,
        (
            "data.root",
            "data.index",
            "model.lmbda",
            "fit.num_noise_steps",
            "fit.max_ste_steps",
            "fit.jit_compile",
        ),
    )


def _assert_fields(config, fields) -> None:
    """Every dotted field exists in the config (a KeyError otherwise)."""
    for field in fields:
        node = config
        for part in field.split("."):
            node = node[part]


def test_kodak_sweep_is_images_times_c3_lambdas():
    sweep = load_sweep("configs/c3_kodak.py")
    assert sweep[0] == {"data.index": 0, "model.lmbda": 1e-4}
    assert sweep[13] == {"data.index": 0, "model.lmbda": 2e-2}
    assert sweep[14]["data.index"] == 1


def test_batched_kodak_sweep_covers_the_same_image_lambda_pairs():
    from pipelines.per_image import fit_lambdas

    pairs = set()
    for entry in load_sweep("configs/c3_kodak_batched.py"):
        config = load_module("configs/c3_kodak_batched.py").get_config()
        apply_sweep_entry(config, entry)
        pairs |= {(config.data.index, lmbda) for lmbda in fit_lambdas(config)}
    kodak = {(e["data.index"], e["model.lmbda"]) for e in load_sweep("configs/c3_kodak.py")}
    assert pairs == kodak


def test_hid_out_of_range_and_missing_sweep(tmp_path):
    with pytest.raises(ConfigError, match="out of range"):
        sweep_entry("configs/c3_kodak.py", 336)
    path = tmp_path / "nosweep.py"
    path.write_text(
        "from ml_collections import config_dict\n"
        "def get_config():\n    return config_dict.ConfigDict()\n"
    )
    with pytest.raises(ConfigError, match="get_hyper"):
        load_sweep(str(path))


def test_command_line_values_win_over_sweep_entry():
    config = config_dict.ConfigDict({"model": {"lmbda": 0.5}, "data": {"index": 3}})
    keep = cli_overridden_keys(["train.py", "--config.model.lmbda=0.25", "--hid", "2"])
    apply_sweep_entry(config, {"model.lmbda": 1e-3, "data.index": 7}, keep=keep)
    assert config.model.lmbda == 0.5 and config.data.index == 7


def test_work_unit_name():
    assert work_unit_name(3, "c3_kodak", {"model.lmbda": 0.001, "data.index": 2}) == (
        "wid=3-c3_kodak-index=2,lmbda=0.001"
    )


def test_aggregate_is_compressai_layout_with_both_psnr_averages():
    rows = [
        result_row(image=f"im{i}", lmbda=lm, bpp_estimated=b, psnr=p, mse=m)
        for i, (lm, b, p, m) in enumerate(
            [(1e-3, 0.5, 30.0, 65.0), (1e-3, 0.7, 34.0, 26.0), (1e-2, 0.1, 25.0, 205.6)]
        )
    ]
    summary = aggregate(rows, "c3", "test.")
    assert summary["name"] == "c3"
    results = summary["results"]
    assert results["bpp"] == pytest.approx([0.1, 0.6])
    assert results["psnr-rgb"] == pytest.approx([25.0, 32.0])
    assert results["psnr-rgb-of-mean-mse"][1] < 32.0  # PSNR of mean MSE is lower
    assert results["bpp_is_estimate"] == [True, True]


@pytest.mark.parametrize(
    "name", ["bls2017", "mbt2018_mean", "jpegl", "two_layer_syn", "two_layer_syn2"]
)
def test_amortised_configs_sweep_the_seven_lambdas(name):
    path = f"configs/{name}.py"
    config = load_module(path).get_config()
    sweep = load_sweep(path)
    assert [e["model.lmbda"] for e in sweep] == [0.08, 0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125]
    assert config.model.name == name
    _assert_fields(
        config,
        ("data.root", "model.lmbda", "train.num_steps", "train.batch_size", "data.patch_size"),
    )
    # The full recipe is the default: one config away.
    assert (config.train.num_steps, config.train.batch_size, config.data.patch_size) == (
        2_000_000,
        8,
        256,
    )
