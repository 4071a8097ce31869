"""Iterative inference (SGA) for a trained hyperprior / shallow-decoder run: refines each
image's latents and writes real files that the unchanged decoder decodes.

python itinf.py --config configs/itinf_sga.py --config.warm_start=RUN
                --config.data.root=DIR [--hid SHARD] [--workdir DIR]
                [--config.itinf.num_steps=3000]

Writes WORKDIR/bitstreams/<image>.lz (decode with `codec.py decode --workdir RUN`),
WORKDIR/results/<image>.json (measured bpp and PSNR of the refined file, the RD loss
before and after refinement) and WORKDIR/results.json.
"""

import os
import sys

from absl import flags, logging

from common import preemption
from common.cli import run_main
from common.rundir import RunFlags, prepare_workdir

_RUN = RunFlags("Config file (configs/itinf_sga.py).", "Sweep entry of get_hyper(): a shard.")


def main(argv):
    del argv
    config = flags.FLAGS["config"].value
    # Work units of several runs in one experiment must not share a directory.
    run_name = os.path.basename(os.path.normpath(config.warm_start)) if config.warm_start else ""
    config, workdir = _RUN.resolve(sys.argv, {"run": run_name} if run_name else None)
    from pipelines import itinf

    preemption.install()
    trained = itinf.load_warm_start(config)  # a bad warm start fails before any output
    prepare_workdir(workdir, config)
    logging.info("Output directory: %s", os.path.abspath(workdir))
    rows = itinf.run(config, workdir, trained)
    for row in rows:
        print(
            f"{row['image']}: RD loss {row['rd_loss_before']:.4f} -> {row['rd_loss_after']:.4f}"
            f" ({row['bpp_before']:.4f} -> {row['bpp']:.4f} bpp, {row['psnr_before']:.2f} -> "
            f"{row['psnr']:.2f} dB)"
        )
    print(f"results in {os.path.join(os.path.abspath(workdir), 'results.json')}")


if __name__ == "__main__":
    run_main(main, "itinf.py", needs_config=True)
