"""The per-position MLP shared by C3's synthesis and context model.

C3 (Kim et al. 2023, arXiv 2312.02753) and COOL-CHIC build both networks from dense
layers (1x1 convolutions) with GELU between them. C3's JAX code uses haiku's defaults:
kernels drawn from a normal truncated at two standard deviations with std
1/sqrt(fan_in) (no variance correction), biases zero; and JAX's GELU is the tanh
approximation, whereas Keras' default is the exact erf form, so both are offered.
"""

import math

import tensorflow as tf

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


@tf.custom_gradient
def gelu_tanh(x: tf.Tensor):
    """Tanh-approximate GELU, x/2 (1 + tanh(z)) with z = sqrt(2/pi) (x + 0.044715 x^3).

    Computed as x * sigmoid(2 z) (the same function) with a hand-written gradient that
    reuses the sigmoid: same values as `tf.nn.gelu(x, approximate=True)` (tested), with
    ~14 elementwise passes for forward + backward instead of ~25. On a CPU these
    memory-bound passes over every latent and pixel dominate a fitting step.
    """
    x2 = tf.square(x)
    s = tf.sigmoid(x * (2.0 * _SQRT_2_OVER_PI + (2.0 * _SQRT_2_OVER_PI * _GELU_CUBIC) * x2))

    def grad(dy):
        dz = 2.0 * _SQRT_2_OVER_PI + (6.0 * _SQRT_2_OVER_PI * _GELU_CUBIC) * x2
        return dy * (s + x * (s - tf.square(s)) * dz)

    return x * s, grad


def gelu_fn(approximate: bool):
    """GELU, either tanh-approximate (JAX's default, C3) or exact (erf)."""
    if approximate:
        return gelu_tanh
    return lambda x: tf.nn.gelu(x, approximate=False)


def fan_in_initializer(fan_in: int) -> tf.keras.initializers.Initializer:
    """Haiku's default kernel init: truncated normal (+-2 std), std 1/sqrt(fan_in)."""
    return tf.keras.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(fan_in))


def dense_stack(
    widths: tuple[int, ...],
    fan_in: int,
    name: str,
    first_fan_in: int | None = None,
    initializer=None,
) -> list[tf.keras.layers.Dense]:
    """Dense layers of the given output widths (no activations; the caller adds GELU).

    Args:
      widths: output width of each layer, the last one included.
      fan_in: input width of the first layer.
      name: prefix of the layer names.
      first_fan_in: fan-in used to initialise the first layer when it differs from its
        input width (C3 initialises a masked convolution by its full kernel size).
      initializer: (fan_in, fan_out) -> kernel initializer; `fan_in_initializer` (C3's)
        when None.
    """
    layers = []
    in_width = fan_in
    for i, width in enumerate(widths):
        init_fan_in = first_fan_in if (i == 0 and first_fan_in) else in_width
        layers.append(
            tf.keras.layers.Dense(
                width,
                kernel_initializer=(
                    initializer(init_fan_in, width)
                    if initializer
                    else fan_in_initializer(init_fan_in)
                ),
                bias_initializer="zeros",
                name=f"{name}_{i}",
            )
        )
        in_width = width
    return layers


def mlp_macs(widths: tuple[int, ...]) -> int:
    """Multiply-accumulates of one MLP evaluation with layer widths (in, ..., out)."""
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
