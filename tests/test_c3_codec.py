"""C3 bitstreams end to end: real files that decode anywhere to what the encoder promised."""

import hashlib
import random
import subprocess
import sys
import time

import numpy as np
import pytest

from coding.c3 import codec as c3_codec
from coding.container import parse
from common.errors import BitstreamError
from common.images import encode_png, to_float
from configs import c3_kodak
from models import registry
from models.c3.fit import C3Fitter
from tests.helpers import (
    GOLDEN,
    GOLDEN_PNG_SHA256,
    GOLDEN_V1,
    GOLDEN_V2,
    ROOT,
    decode_in_other_processes,
    smooth_image,
    tiny_fit_config,
    version_1_bytes,
)


@pytest.fixture(scope="module")
def fitted():
    """A 32x48 image fitted briefly at lambda 2e-3, and its bitstream."""
    image = smooth_image(32, 48, seed=4)
    model = registry.build_model(c3_kodak.get_config().model, height=32, width=48)
    fitter = C3Fitter(model, tiny_fit_config(60, 6))
    fitter.reset(to_float(image), 2e-3)
    fit = fitter.fit()
    return image, model, fit, c3_codec.encode(model, fit.weight_step, fit.bias_step)


def test_decodes_to_the_encoders_latents_and_rate_is_as_estimated(fitted):
    image, model, fit, encoded = fitted
    decoded = c3_codec.decode(encoded.data)
    for a, b in zip(decoded.symbols, model.symbols(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert encoded.num_bits == 8 * len(encoded.data)
    assert encoded.num_bits == encoded.bits_header + encoded.bits_networks + encoded.bits_latents
    # Measured <= 1.01 x estimated (latents + networks) + the header.
    estimate = fit.bits_latents + fit.bits_networks
    assert encoded.num_bits <= 1.01 * estimate + encoded.bits_header
    # The decoded image is the fitted model's (fixed point vs float: rare 1-level steps).
    assert np.abs(decoded.image.astype(int) - fit.reconstruction).max() <= 1
    assert np.mean(decoded.image != fit.reconstruction) < 0.05


def test_other_processes_decode_bit_identically(fitted, tmp_path):
    """Another process, other thread counts, XLA on or off: the same PNG bytes."""
    _, _, _, encoded = fitted
    path = tmp_path / "image.c3"
    path.write_bytes(encoded.data)
    expected = encode_png(c3_codec.decode(encoded.data).image)
    for png in decode_in_other_processes(path):
        assert png == expected


@pytest.mark.parametrize(
    "path", [GOLDEN, GOLDEN_V2, GOLDEN_V1], ids=["version 3", "version 2", "version 1"]
)
def test_golden_bitstream_decodes_to_the_pinned_image(path):
    with open(path, "rb") as f:
        decoded = c3_codec.decode(f.read())
    assert decoded.image.shape == (32, 48, 3)
    assert hashlib.sha256(encode_png(decoded.image)).hexdigest() == GOLDEN_PNG_SHA256


@pytest.mark.parametrize("path", [GOLDEN_V2, GOLDEN_V1], ids=["version 2", "version 1"])
def test_older_files_rewritten_are_the_version_3_golden_file(path):
    """Format versions 2 (container checksums, bounded escapes) and 3 (architecture
    presets) changed how a file is written, not what it means: the older golden files,
    decoded and written again, are the version 3 golden file."""
    with open(path, "rb") as f:
        old = c3_codec.decode(f.read())
    with open(GOLDEN, "rb") as f:
        assert c3_codec.write(old.arch, old.integers, old.symbols).data == f.read()


# sha256 of repr(sorted(coding.c3.presets.PRESETS.items())): released presets never change.
PRESETS_SHA256 = "393166986807bae59fbc41dc320ca01e188c2e4d39b38faf9bcb67d4c4d5747a"


def test_preset_architectures_are_pinned_and_named_in_one_byte():
    """A preset is part of the format: its fields never change (pinned here), the
    configs' architectures use one, and a file of a preset spends 10 header bytes on
    c3_plus's architecture and steps where the explicit form spends 42. Other
    architectures are written in full and read back the same; an unknown preset number
    is a clear error."""
    import dataclasses

    from coding.c3 import presets
    from coding.c3.networks import C3Architecture
    from configs import c3_clic2020, c3_plus, coolchic

    pinned = hashlib.sha256(repr(sorted(presets.PRESETS.items())).encode()).hexdigest()
    assert pinned == PRESETS_SHA256, "a released preset changed: add a new number instead"
    steps = (2**-7, 2**-9, 2**-8, (2**-6, 2**-6))
    for number, module in enumerate((c3_kodak, c3_clic2020, coolchic, c3_plus), 1):
        model = registry.build_model(module.get_config().model, height=40, width=72)
        arch = C3Architecture.from_model_config(model.get_config(), *steps)
        assert presets.preset_of(arch.shape_fields()) == number
        header = arch.to_bytes()
        assert header[0] == number and C3Architecture.from_bytes(header) == arch
        if module is c3_plus:
            assert len(header) == 10 and len(arch._explicit_bytes()) == 42
    other = dataclasses.replace(arch, arm_hidden=(21, 21), arm_residual=False)
    header = other.to_bytes()
    assert header[0] == 0 and C3Architecture.from_bytes(header) == other
    with pytest.raises(BitstreamError, match="unknown C3 architecture preset 200"):
        C3Architecture.from_bytes(bytes([200]) + header[1:])


def mutations(data: bytes, header_end: int, count: int, seed: int = 0):
    """Damaged versions of a file: bit flips, bytes, cuts, insertions; some keep a valid CRC."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        d = bytearray(data)
        kind = i % 6
        if kind == 0:  # a few bit flips anywhere
            for _ in range(rng.randint(1, 8)):
                j = rng.randrange(len(d))
                d[j] ^= 1 << rng.randrange(8)
        elif kind == 1:  # bit flips in the payload only (the header stays valid)
            for _ in range(rng.randint(1, 4)):
                j = rng.randrange(header_end, len(d))
                d[j] ^= 1 << rng.randrange(8)
        elif kind == 2:  # truncation
            d = d[: rng.randrange(len(d))]
        elif kind == 3:  # random bytes inserted or deleted
            j = rng.randrange(len(d))
            if rng.random() < 0.5:
                d[j:j] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            else:
                del d[j : j + rng.randint(1, 16)]
        elif kind == 4:  # random overwrite of a payload run
            j = rng.randrange(header_end, len(d))
            n = min(len(d) - j, rng.randint(1, 64))
            d[j : j + n] = bytes(rng.randrange(256) for _ in range(n))
        else:  # C3 header fields other than the image size, with the CRC recomputed
            d = bytearray(recrc(bytes(d), rng))
        out.append(bytes(d))
    return out


def recrc(data: bytes, rng: random.Random) -> bytes:
    import binascii

    container = parse(data)
    header = bytearray(container.header)
    j = rng.randrange(4, len(header))  # bytes 0-3 are the image size
    header[j] ^= 1 << rng.randrange(8)
    rebuilt = type(container)(container.codec, bytes(header), container.sections).to_bytes()
    assert rebuilt[:2] == data[:2] and binascii.crc_hqx(b"", 0) == 0
    return rebuilt


def test_fuzzed_files_decode_or_fail_cleanly(fitted):
    """120 damaged files: each decodes to an image or raises BitstreamError, quickly. (The
    section checksums refuse payload damage up front; header damage with a recomputed
    CRC is what costs time here: a new architecture per file.)"""
    _, _, _, encoded = fitted
    data = encoded.data
    header_end = len(data) - sum(len(s) for s in parse(data).sections)
    outcomes = {"image": 0, "error": 0}
    for i, damaged in enumerate(mutations(data, header_end, 120)):
        start = time.perf_counter()
        try:
            decoded = c3_codec.decode(damaged, jit=False)
        except BitstreamError as e:
            assert str(e)
            outcomes["error"] += 1
        else:
            assert decoded.image.dtype == np.uint8 and decoded.image.ndim == 3
            outcomes["image"] += 1
        assert time.perf_counter() - start < 30, f"mutation {i} took too long"
    assert outcomes["image"] > 0 and outcomes["error"] > 0, outcomes


_DECODE_EACH = """
import sys, time
from coding.c3 import codec
from common.errors import BitstreamError
for path in sys.argv[1:]:
    start = time.perf_counter()
    try:
        codec.decode(open(path, "rb").read(), jit=False)
        outcome = "image"
    except BitstreamError:
        outcome = "error"
    print(outcome, round(time.perf_counter() - start, 2), flush=True)
"""


def test_many_bit_damage_with_valid_checksums_ends(fitted, tmp_path):
    """Crafted files: 8 to 64 bits flipped across the payload, then the checksums made
    valid again, so that the decoders run on garbage. Each file ends (an image or a
    BitstreamError) in the current format and in version 1, whose tfc escape code could
    keep the decoder reading zeros for minutes. A hang fails the test by its timeout."""
    from coding.c3.networks import C3Architecture

    _, _, _, encoded = fitted
    container = parse(encoded.data)
    explicit = C3Architecture.from_bytes(container.header)._explicit_bytes()  # version 1's
    rng = random.Random(5)
    paths = []
    for version in (3, 1):
        for i in range(16):
            sections = [bytearray(s) for s in container.sections]
            for _ in range(rng.randint(8, 64)):
                section = sections[1] if rng.random() < 0.85 else sections[0]
                section[rng.randrange(len(section))] ^= 1 << rng.randrange(8)
            header = container.header if version == 3 else explicit
            damaged = type(container)(container.codec, header, tuple(map(bytes, sections)))
            data = damaged.to_bytes() if version == 3 else version_1_bytes(damaged)
            paths.append(tmp_path / f"v{version}_{i}.c3")
            paths[-1].write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", _DECODE_EACH, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    outcomes = [line.split()[0] for line in out.stdout.splitlines()]
    assert len(outcomes) == len(paths) and set(outcomes) <= {"image", "error"}, out.stdout
    assert "image" in outcomes[:16], "version 3: garbage with valid checksums still decodes"
    assert "image" in outcomes[16:], "version 1: garbage with valid checksums still decodes"


def test_damage_without_valid_checksums_is_refused_before_decoding(fitted):
    _, _, _, encoded = fitted
    data = bytearray(encoded.data)
    data[-5] ^= 0x40  # inside the latent section
    with pytest.raises(BitstreamError, match="section 1 checksum mismatch"):
        c3_codec.decode(bytes(data))


@pytest.mark.parametrize("height,width", [(0, 48), (60000, 60000)])
def test_absurd_sizes_are_refused(fitted, height, width):
    from coding.c3.networks import C3Architecture

    _, _, _, encoded = fitted
    container = parse(encoded.data)
    header = bytearray(container.header)
    assert header[0] == 1  # C3's Kodak preset: the size follows
    header[1:5] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    bad = type(container)(container.codec, bytes(header), container.sections).to_bytes()
    with pytest.raises(BitstreamError, match="image size|pixels"):
        c3_codec.decode(bad)
    assert C3Architecture.from_bytes(container.header).height == 32


@pytest.mark.skipif(
    not __import__("tensorflow").config.list_physical_devices("GPU"),
    reason="no GPU here: the decoder pins its exact arithmetic to the CPU "
    "(coding.fixed_point.EXACT_DEVICE); only a GPU machine can show a GPU scope is harmless",
)
def test_decoding_under_a_gpu_scope_is_exact():
    import tensorflow as tf

    with open(GOLDEN, "rb") as f:
        data = f.read()
    with tf.device("/GPU:0"):
        decoded = c3_codec.decode(data)
    assert hashlib.sha256(encode_png(decoded.image)).hexdigest() == GOLDEN_PNG_SHA256
