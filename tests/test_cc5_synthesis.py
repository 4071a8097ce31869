"""Cool-chic 5's synthesis shape (models/c3/synthesis.py) and its fixed-point decoder."""

import math

import numpy as np
import pytest
import tensorflow as tf

from coding.c3 import codec as c3_codec
from coding.c3.networks import C3Architecture, IntegerC3, prepare_parameters
from common.errors import BitstreamError
from models.c3.model import C3Model
from models.c3.synthesis import Synthesis
from tests.helpers import STEPS, run_script

CC5_SYNTHESIS = dict(
    synthesis_hidden=(48,),
    synthesis_activation="relu",
    synthesis_stabiliser=True,
    synthesis_init="cool_chic",
)


def test_shape_initialisation_and_macs():
    tf.keras.utils.set_random_seed(0)
    synthesis = Synthesis(7, (48,), activation="relu", stabiliser=True, init="cool_chic")
    synthesis.build((None, None, 7))
    # The bitstream's order: MLP, residual convolutions, then the stabiliser.
    stabiliser_variables = [synthesis.stabiliser.kernel, synthesis.stabiliser.bias]
    assert synthesis.trainable_variables[-2:] == stabiliser_variables
    assert len(synthesis.trainable_variables) == 2 * (2 + 2 + 1)
    first, last = synthesis.mlp[0].kernel.numpy(), synthesis.mlp[1].kernel.numpy()
    assert first.shape == (7, 48) and last.shape == (48, 3)
    # Cool-chic's init: U(+-1 / (C_out^2 sqrt(C_in))), about 1.6e-4 for 7 -> 48.
    assert 0 < np.abs(first).max() <= 1 / (48**2 * math.sqrt(7))
    assert 0 < np.abs(last).max() <= 1 / (9 * math.sqrt(48))
    assert all(not np.any(c.kernel.numpy()) for c in synthesis.residual_convs)
    # At init the stabiliser carries the signal: the main branch is almost zero.
    latents = tf.random.normal((8, 8, 7))
    stabiliser = synthesis.stabiliser(latents).numpy()
    assert np.abs(stabiliser).max() > 1e-2
    np.testing.assert_allclose(synthesis(latents), np.clip(stabiliser, 0, 1), atol=1e-3)
    # 7x48 + 48x3 + 2 x (3x3x3x3) + 7x3, Cool-chic 5's "hop" synthesis (672 with its
    # frozen output transform, which we do not have).
    assert synthesis.macs_per_pixel() == 336 + 144 + 162 + 21


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="activation"):
        Synthesis(7, activation="tanh")
    with pytest.raises(ValueError, match="init"):
        Synthesis(7, init="glorot")


def cc5_model(seed=0, height=24, width=40):
    """A model with Cool-chic 5's synthesis, its parameters moved off their start."""
    tf.keras.utils.set_random_seed(seed)
    model = C3Model(height, width, num_grids=4, **CC5_SYNTHESIS)
    rng = np.random.default_rng(seed)
    for v in model.latent_grids.trainable_variables:
        v.assign(rng.normal(scale=3.0, size=v.shape).astype(np.float32))
    for v in model.synthesis.trainable_variables:
        v.assign(v + rng.normal(scale=0.1, size=v.shape).astype(np.float32))
    model.set_network_integers(model.network_integers(*STEPS), *STEPS)
    return model


def test_fixed_point_synthesis_follows_the_float_model():
    model = cc5_model()
    arch = C3Architecture.from_model_config(model.get_config(), *STEPS)
    assert arch.synthesis_relu and arch.synthesis_stabiliser
    assert C3Architecture.from_bytes(arch.to_bytes()) == arch
    parameters = prepare_parameters(arch, model.network_integers(*STEPS))
    symbols = model.symbols()
    fixed = IntegerC3(arch, parameters).synthesize([tf.constant(s) for s in symbols]).numpy()
    target = tf.zeros((model.height, model.width, 3))
    float_image = model(target, mode="round")["reconstruction"].numpy()
    float_8bit = np.round(np.clip(float_image, 0, 1) * 255)
    assert 0 < fixed.mean() < 255  # not a clipped, flat image
    # Activations are rounded to 2^-12 in fixed point: at most one level apart.
    assert np.abs(fixed.astype(np.float64) - float_8bit).max() <= 1


def test_file_decodes_the_same_in_another_process(tmp_path):
    model = cc5_model(seed=2)
    encoded = c3_codec.encode(model, *STEPS)
    here = c3_codec.decode(encoded.data)
    assert here.arch.synthesis_relu and here.arch.synthesis_stabiliser
    path = tmp_path / "cc5.c3"
    path.write_bytes(encoded.data)
    out = run_script("codec.py", "decode", "-i", str(path), "-o", str(tmp_path / "d.png"))
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), here.image)


def test_unknown_header_flags_are_refused():
    arch = C3Architecture.from_model_config(cc5_model().get_config(), *STEPS)
    header = bytearray(arch.to_bytes())
    # The flags byte, then shift (4 bytes), scale range (8), weight and bias steps (2).
    flags_at = len(header) - 15
    assert header[flags_at] == 2 | 16 | 32  # gelu_approximate, relu synthesis, stabiliser
    header[flags_at] |= 128  # a second flags byte follows: with an unknown bit
    with pytest.raises(BitstreamError, match="unknown flags"):
        C3Architecture.from_bytes(bytes(header) + bytes([64]))
    # Its bit 1 (the pipelined inter-grid order) without the inter-grid context.
    with pytest.raises(BitstreamError):
        C3Architecture.from_bytes(bytes(header) + bytes([2]))
