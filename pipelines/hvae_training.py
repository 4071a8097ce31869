"""Training a hierarchical VAE (QRes-VAE, QARV: `models.vae.hvae`) in a run directory.

The amortised models' loop (`pipelines.amortised_training.train`): crops of a dataset, one
compiled step (the model's loss: nats per sub-pixel + lambda MSE on [-1, 1]), Adam with
global clip-norm, the moving average of the weights that the final checkpoint holds,
TensorBoard, checkpoints, resume and validation on whole images. A variable-rate model
(QARV) draws lambda per training image; its validation measures `config.model.lmbda`
and the two ends of the range, so that validation.json and TensorBoard show whether the
model has learned to trade rate for distortion yet (QARV validates at several lambdas).
"""

from pipelines import amortised_training
from pipelines.registry import register_pipeline


class Validation(amortised_training.ValidationHistory):
    """Estimated bpp and PSNR of whole images; the loss in the model's convention."""

    def measure(self, model) -> dict:
        record = amortised_training.validate(model, self._images, 0.0)
        record["loss"] = float(model.rd_loss(record["bpp"], record["mse"], model.lmbda))
        if model.variable_rate:
            record["by_lambda"] = {}
            for lmbda in sorted({*model.lmbda_range, model.lmbda}):
                point = (  # the model's own lambda is the record just measured
                    record
                    if lmbda == model.lmbda
                    else amortised_training.validate(model, self._images, 0.0, lmbda)
                )
                record["by_lambda"][f"{lmbda:g}"] = {k: point[k] for k in ("bpp", "psnr")}
        return record

    def summary_scalars(self, record: dict) -> dict:
        scalars = super().summary_scalars(record)
        for k, point in record.get("by_lambda", {}).items():
            scalars.update({f"{name}_lambda{k}": point[name] for name in ("bpp", "psnr")})
        return scalars

    def describe(self, record: dict) -> str:
        text = super().describe(record)
        points = record.get("by_lambda", {})
        if points:
            text += "; by lambda: " + ", ".join(
                f"{k}: {v['bpp']:.4f} bpp {v['psnr']:.2f} dB" for k, v in points.items()
            )
        return text


@register_pipeline("hvae")
def train(config, workdir: str) -> dict:
    """Trains (or resumes) the hierarchical VAE of `config` in `workdir`."""
    return amortised_training.train(config, workdir, validation_history=Validation)
