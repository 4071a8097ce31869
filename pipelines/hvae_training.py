"""Training a hierarchical VAE (QRes-VAE, QARV: `models.vae.hvae`) in a run directory.

The amortised models' loop (`pipelines.amortised_training.train`): crops of a dataset, one
compiled step (the model's loss: nats per sub-pixel + lambda MSE on [-1, 1]), Adam with
global clip-norm, the moving average of the weights that the final checkpoint holds,
TensorBoard, checkpoints, resume and validation on whole images. A variable-rate model
(QARV) draws lambda per training image; its validation uses `config.model.lmbda`.
"""

from pipelines import amortised_training
from pipelines.registry import register_pipeline


class Validation(amortised_training.ValidationHistory):
    """Estimated bpp and PSNR of whole images; the loss in the model's convention."""

    def measure(self, model) -> dict:
        record = amortised_training.validate(model, self._images, 0.0)
        record["loss"] = float(model.rd_loss(record["bpp"], record["mse"], model.lmbda))
        return record


@register_pipeline("hvae")
def train(config, workdir: str) -> dict:
    """Trains (or resumes) the hierarchical VAE of `config` in `workdir`."""
    return amortised_training.train(config, workdir, validation_history=Validation)
