"""The coder's Laplace tables: pinned, valid for tfc, and close to the ideal code length."""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from coding import laplace_tables as lt

# A change of the tables changes every file: it needs a format version bump.
TABLES_SHA256 = "069f7e78e8c42948"


def test_tables_are_pinned():
    assert lt.tables().sha256().startswith(TABLES_SHA256)


def test_every_symbol_is_codable():
    tables = lt.tables()
    assert len(tables.half_widths) == lt.NUM_ROWS
    for row in range(0, lt.NUM_ROWS, 97):
        freqs = 2 ** (lt.PRECISION - tables.symbol_bits[row])
        assert np.all(freqs >= 1) and round(freqs.sum()) == lt.TOTAL


def test_coded_size_is_close_to_the_ideal():
    """Laplace samples (scales 0.05 .. 20) code within 0.5 % of -log2 of their probability."""
    tables = lt.tables()
    rng = np.random.default_rng(1)
    n = 50000
    scale = np.exp(rng.uniform(-3, 3, n))
    mu = rng.uniform(-5, 5, n)
    y = np.round(mu + rng.laplace(0, scale))
    rounded = np.floor(mu + 0.5)
    scale_index = np.clip(np.round((np.log(scale) - lt.LN_SCALE_MIN) * lt.SCALES_PER_LN), 0, None)
    bucket = np.round((mu - rounded + 0.5) * lt.OFFSET_BUCKETS)
    rows = lt.row_index(scale_index, bucket).astype(np.int32)
    values = (y - rounded + tables.half_widths[rows]).astype(np.int32)
    handle = tfc.create_range_encoder([], tables.lookup)
    handle = tfc.entropy_encode_index(handle, rows, values)
    string = tfc.entropy_encode_finalize(handle).numpy()
    ideal = -np.sum(np.log2(tfc.NoisyLaplace(loc=mu, scale=scale).prob(y).numpy()))
    assert 8 * len(string) < 1.005 * ideal
    decoder = tfc.create_range_decoder(string, tables.lookup)
    _, decoded = tfc.entropy_decode_index(decoder, rows, [n], tf.int32)
    np.testing.assert_array_equal(decoded.numpy(), values)
