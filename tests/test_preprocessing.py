"""The shared preprocessing path: images, joint-state features, action normalisation."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dit4dit_policy.preprocessing import (
    DEGENERATE_HALF_WIDTH,
    ActionNormalizer,
    NormStats,
    image_to_model,
    images_to_model,
    state_features,
)

# ---------------------------------------------------------------- images


def triangle_weights(n_in: int, n_out: int) -> np.ndarray:
    """Independent oracle for antialiased bilinear resizing along one axis (the PIL-style triangle
    filter, widened by the scale factor when shrinking, weights renormalised at the borders)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        for j in range(n_in):
            w[i, j] = max(0.0, 1.0 - abs(j + 0.5 - centre) / support)
        w[i] /= w[i].sum()
    return w


def oracle_resize(channel: np.ndarray, size: int) -> np.ndarray:
    h, w = channel.shape
    return triangle_weights(h, size) @ channel.astype(np.float64) @ triangle_weights(w, size).T


@pytest.mark.parametrize("shape,size", [((480, 640), 224), ((5, 7), 16), ((224, 224), 224), ((1, 1), 4)])
def test_when_image_is_constant_expect_constant_output(shape, size):
    image = np.full((*shape, 3), 0, dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 0, 51, 255
    out = image_to_model(image, "rgb8", size)
    assert out.shape == (3, size, size) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], torch.full((size, size), -1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], torch.full((size, size), 51 / 127.5 - 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[2], torch.full((size, size), 1.0), atol=1e-6, rtol=0)


def test_when_two_by_two_image_shrinks_to_one_pixel_expect_the_mean():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 0] = [[0, 40], [80, 120]]
    out = image_to_model(image, "rgb8", 1)
    assert out[0, 0, 0].item() == pytest.approx(60 / 127.5 - 1, abs=1e-6)


@pytest.mark.parametrize("shape,size", [((7, 5), 3), ((48, 64), 16), ((480, 640), 224), ((3, 5), 8)])
def test_when_resizing_expect_antialiased_bilinear_per_oracle(shape, size):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = image_to_model(image, "rgb8", size).double().numpy()
    for c in range(3):
        expected = oracle_resize(image[..., c], size) / 127.5 - 1
        np.testing.assert_allclose(out[c], expected, atol=1e-4)


def test_when_image_has_bright_right_and_bottom_expect_orientation_kept():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 40:, 0] = 255  # right half red
    image[20:, :, 1] = 255  # bottom half green
    out = image_to_model(image, "rgb8", 8)
    assert out[0, :, 0].max() < -0.99 and out[0, :, -1].min() > 0.99
    assert out[1, 0, :].max() < -0.99 and out[1, -1, :].min() > 0.99


def test_when_encoding_is_bgr_expect_channels_swapped():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgb = image_to_model(image, "rgb8", 16)
    bgr = image_to_model(image, "bgr8", 16)
    torch.testing.assert_close(bgr, rgb.flip(0), atol=0, rtol=0)
    assert not torch.equal(bgr, rgb)
    # The same scene delivered as bgr8 gives the model the same tensor as rgb8.
    torch.testing.assert_close(image_to_model(image[..., ::-1], "bgr8", 16), rgb, atol=0, rtol=0)


@pytest.mark.parametrize("encoding,order", [("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_when_image_has_alpha_expect_alpha_ignored(encoding, order):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    with_alpha = np.concatenate([rgb[..., order], rng.integers(0, 256, (20, 30, 1), dtype=np.uint8)], axis=-1)
    torch.testing.assert_close(
        image_to_model(with_alpha, encoding, 12), image_to_model(rgb, "rgb8", 12), atol=0, rtol=0
    )


def test_when_image_is_mono_expect_grey_rgb():
    rng = np.random.default_rng(4)
    mono = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    grey_rgb = np.repeat(mono[..., None], 3, axis=-1)
    expected = image_to_model(grey_rgb, "rgb8", 12)
    torch.testing.assert_close(image_to_model(mono, "mono8", 12), expected, atol=0, rtol=0)
    torch.testing.assert_close(image_to_model(mono[..., None], "mono8", 12), expected, atol=0, rtol=0)


def test_when_frames_are_batched_expect_identical_results_per_frame():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    batch = images_to_model(frames, "bgr8", 20)
    assert batch.shape == (4, 3, 20, 20)
    for i in range(4):
        assert torch.equal(batch[i], image_to_model(frames[i], "bgr8", 20))


@pytest.mark.parametrize(
    "image,encoding,size,match",
    [
        (np.zeros((4, 4, 3), dtype=np.float32), "rgb8", 4, "uint8"),
        (np.zeros((4, 4, 3), dtype=np.uint16), "rgb8", 4, "uint8"),
        (np.zeros((4, 4, 4), dtype=np.uint8), "rgb8", 4, "3 channel"),
        (np.zeros((4, 4, 3), dtype=np.uint8), "rgba8", 4, "4 channel"),
        (np.zeros((4, 4), dtype=np.uint8), "rgb8", 4, "shape"),
        (np.zeros((4, 4, 3), dtype=np.uint8), "yuv422", 4, "unknown image encoding 'yuv422'"),
        (np.zeros((0, 4, 3), dtype=np.uint8), "rgb8", 4, "empty"),
        (np.zeros((4, 4, 3), dtype=np.uint8), "rgb8", 0, "size"),
        (np.zeros((4,), dtype=np.uint8), "mono8", 4, "shape"),
        ([[0, 0], [0, 0]], "mono8", 4, "numpy array"),
    ],
)
def test_when_image_is_bad_expect_value_error_naming_it(image, encoding, size, match):
    with pytest.raises(ValueError, match=match):
        image_to_model(image, encoding, size)


# ---------------------------------------------------------------- joint state


def test_when_state_has_joints_expect_all_sines_then_all_cosines_then_zeros():
    q = np.array([0.3, -1.2, 2.5])
    out = state_features(q, 10)
    assert out.dtype == np.float32 and out.shape == (10,)
    expected = [math.sin(0.3), math.sin(-1.2), math.sin(2.5), math.cos(0.3), math.cos(-1.2), math.cos(2.5)]
    np.testing.assert_allclose(out[:6], expected, rtol=1e-6)
    assert (out[6:] == 0).all()


def test_when_state_is_batched_expect_per_row_features():
    q = np.random.default_rng(6).uniform(-3, 3, (5, 2, 4))
    out = state_features(q, 8)
    assert out.shape == (5, 2, 8)
    np.testing.assert_array_equal(out[3, 1], state_features(q[3, 1], 8))


def test_when_angle_wraps_by_two_pi_expect_same_features():
    q = np.array([3.1, -3.1])
    np.testing.assert_allclose(state_features(q, 4), state_features(q + 2 * np.pi, 4), atol=1e-6)


def test_when_state_is_float32_or_float64_expect_same_features():
    q32 = np.random.default_rng(8).uniform(-3.2, 3.2, 1000).astype(np.float32)
    np.testing.assert_array_equal(state_features(q32, 2000), state_features(q32.astype(np.float64), 2000))


def test_when_features_fill_dim_exactly_expect_no_padding():
    assert state_features(np.zeros(16), 32).shape == (32,)


@pytest.mark.parametrize(
    "q,dim,match",
    [
        (np.array([0.0, np.nan, 1.0]), 8, r"NaN or inf at joint index\(es\) \[1\]"),
        (np.array([np.inf]), 8, "NaN or inf"),
        (np.zeros(5), 9, "5 joints need 10 state features but dim is 9"),
        (np.zeros(0), 4, "J >= 1"),
        (np.array(["a"]), 4, "numeric"),
        (np.zeros(2), 4.0, "dim must be a positive int"),
    ],
)
def test_when_state_is_bad_expect_value_error_naming_it(q, dim, match):
    with pytest.raises(ValueError, match=match):
        state_features(q, dim)


# ---------------------------------------------------------------- normalisation statistics


def test_when_stats_computed_expect_per_dim_min_and_max():
    actions = np.array([[0.0, -2.0, 5.0], [1.0, 3.0, 4.0], [0.5, 0.0, 4.5]])
    stats = NormStats.compute(actions)
    np.testing.assert_array_equal(stats.action_min, [0.0, -2.0, 4.0])
    np.testing.assert_array_equal(stats.action_max, [1.0, 3.0, 5.0])
    assert stats.dims == 3


def test_when_dim_is_constant_expect_widened_and_constant_maps_to_zero():
    actions = np.array([[1.0, 0.7], [2.0, 0.7], [3.0, 0.7]])
    stats = NormStats.compute(actions)
    assert stats.action_min[1] == pytest.approx(0.7 - DEGENERATE_HALF_WIDTH)
    assert stats.action_max[1] == pytest.approx(0.7 + DEGENERATE_HALF_WIDTH)
    norm = ActionNormalizer(stats, 2).normalize(actions)
    np.testing.assert_allclose(norm[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(ActionNormalizer(stats, 2).unnormalize(norm), actions, atol=1e-12)


def test_when_stats_go_through_json_expect_equal_stats():
    stats = NormStats.compute(np.random.default_rng(7).normal(size=(50, 5)))
    back = NormStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert back == stats and hash(back) == hash(stats)
    np.testing.assert_array_equal(back.action_min, stats.action_min)
    assert back != NormStats(action_min=stats.action_min, action_max=stats.action_max + 1)


def test_when_stats_built_expect_frozen_and_read_only():
    stats = NormStats(action_min=[0.0, 1.0], action_max=[1.0, 2.0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.action_min = np.zeros(2)
    with pytest.raises(ValueError, match="read-only"):
        stats.action_max[0] = 5.0


@pytest.mark.parametrize(
    "data,match",
    [
        ({"action_min": [0.0, 0.0], "action_max": [1.0]}, "2 dims but action_max has 1"),
        (
            {"action_min": [0.0, float("nan")], "action_max": [1.0, 1.0]},
            r"action_min has NaN or inf at index\(es\) \[1\]",
        ),
        ({"action_min": [0.0, 2.0], "action_max": [1.0, 1.0]}, "dim 1: min 2.0, max 1.0"),
        ({"action_min": [0.0, 1.0], "action_max": [1.0, 1.0]}, "dim 1"),
        ({"action_min": [], "action_max": []}, "non-empty"),
        ({"action_min": ["x"], "action_max": [1.0]}, "action_min must be a list of numbers"),
        ({"action_min": [0.0]}, r"missing \['action_max'\]"),
        ({"action_min": [0.0], "action_max": [1.0], "state_min": [0.0]}, r"unknown \['state_min'\]"),
        ([0.0, 1.0], "mapping"),
    ],
)
def test_when_stats_dict_is_bad_expect_value_error_naming_it(data, match):
    with pytest.raises(ValueError, match=match):
        NormStats.from_dict(data)


@pytest.mark.parametrize(
    "actions,match",
    [
        (np.zeros((0, 3)), "N, A >= 1"),
        (np.zeros(3), r"\[N, A\]"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), "NaN or inf in 1 row"),
    ],
)
def test_when_computing_stats_from_bad_actions_expect_value_error(actions, match):
    with pytest.raises(ValueError, match=match):
        NormStats.compute(actions)


# ---------------------------------------------------------------- action normaliser

STATS = NormStats(action_min=[-1.0, 0.0, -3.0, 10.0], action_max=[2.0, 0.5, 3.0, 10.2])
LO, HI = STATS.action_min, STATS.action_max


def in_range_actions(dtype):
    """[n, 4] arrays with each column inside its [min, max]."""
    unit = hnp.arrays(
        dtype=np.float64,
        shape=st.tuples(st.integers(1, 6), st.just(4)),
        elements=st.floats(0.0, 1.0, allow_nan=False),
    )
    return unit.map(lambda u: (LO + u * (HI - LO)).astype(dtype))


def test_when_normalising_expect_range_ends_at_minus_one_and_one_and_zero_padding():
    n = ActionNormalizer(STATS, 6)
    out = n.normalize(np.stack([LO, HI, (LO + HI) / 2]))
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out[0, :4], -1.0, atol=1e-12)
    np.testing.assert_allclose(out[1, :4], 1.0, atol=1e-12)
    np.testing.assert_allclose(out[2, :4], 0.0, atol=1e-12)
    assert (out[:, 4:] == 0).all()
    np.testing.assert_array_equal(n.mask, [True, True, True, True, False, False])


@settings(max_examples=60, deadline=None)
@given(in_range_actions(np.float64))
def test_when_actions_in_range_expect_float64_round_trip(actions):
    n = ActionNormalizer(STATS, 8)
    norm = n.normalize(actions)
    assert norm.dtype == np.float64 and np.all(np.abs(norm) <= 1 + 1e-12)
    np.testing.assert_allclose(n.unnormalize(norm), actions, rtol=0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(in_range_actions(np.float32))
def test_when_actions_in_range_expect_float32_and_torch_round_trip(actions):
    n = ActionNormalizer(STATS, 8)
    tol = 1e-6 * (HI - LO).max() * 8
    back = n.unnormalize(n.normalize(actions))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, actions, rtol=0, atol=tol)
    t = torch.from_numpy(actions)
    back_t = n.unnormalize(n.normalize(t))
    assert isinstance(back_t, torch.Tensor) and back_t.dtype == torch.float32
    np.testing.assert_allclose(back_t.numpy(), actions, rtol=0, atol=tol)
    np.testing.assert_allclose(n.normalize(t).numpy(), n.normalize(actions), rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=np.float64,
        shape=st.tuples(st.integers(1, 5), st.just(8)),
        elements=st.floats(-50, 50, allow_nan=False),
    )
)
def test_when_model_output_leaves_unit_range_expect_clipped_to_training_range(norm):
    n = ActionNormalizer(STATS, 8)
    out = n.unnormalize(norm)
    assert out.shape == (norm.shape[0], 4)
    assert np.all(out >= LO - 1e-9) and np.all(out <= HI + 1e-9)
    expected = (np.clip(norm[:, :4], -1, 1) + 1) / 2 * (HI - LO) + LO
    np.testing.assert_allclose(out, expected, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=np.float64,
        shape=st.tuples(st.integers(1, 5), st.just(4)),
        elements=st.floats(-100, 100, allow_nan=False),
    )
)
def test_when_actions_outside_range_expect_round_trip_to_nearest_bound(actions):
    n = ActionNormalizer(STATS, 4)
    np.testing.assert_allclose(n.unnormalize(n.normalize(actions)), np.clip(actions, LO, HI), atol=1e-9)


def test_when_just_outside_range_expect_clipped_and_just_inside_expect_unchanged():
    n = ActionNormalizer(STATS, 4)
    inside = np.array([LO + 1e-6, HI - 1e-6])
    outside = np.array([LO - 1e-3, HI + 1e-3])
    np.testing.assert_allclose(n.unnormalize(n.normalize(inside)), inside, atol=1e-12)
    np.testing.assert_allclose(n.unnormalize(n.normalize(outside)), [LO, HI], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_when_input_is_torch_expect_same_dtype_and_device_out(dtype):
    n = ActionNormalizer(STATS, 6)
    a = torch.tensor(np.stack([LO, HI]), dtype=dtype)
    norm = n.normalize(a)
    assert norm.dtype == dtype and norm.device == a.device and norm.shape == (2, 6)
    back = n.unnormalize(norm)
    assert back.dtype == dtype and back.shape == (2, 4)


def test_when_model_output_is_nan_expect_nan_passed_to_the_safety_stage():
    out = ActionNormalizer(STATS, 4).unnormalize(np.array([np.nan, 0.0, 0.0, 0.0]))
    assert np.isnan(out[0]) and np.isfinite(out[1:]).all()


@pytest.mark.parametrize(
    "call,arg,match",
    [
        ("normalize", np.zeros((2, 5)), r"actions must be \[\.\.\., 4\]"),
        ("unnormalize", np.zeros((2, 4)), r"normalised actions must be \[\.\.\., 6\]"),
        ("normalize", np.zeros((2, 4), dtype=np.int64), "floating dtype"),
        ("normalize", [[0.0, 0.0, 0.0, 0.0]], "numpy array or torch tensor"),
        ("unnormalize", torch.zeros(6, dtype=torch.int32), "floating dtype"),
    ],
)
def test_when_normaliser_input_is_bad_expect_value_error_naming_it(call, arg, match):
    with pytest.raises(ValueError, match=match):
        getattr(ActionNormalizer(STATS, 6), call)(arg)


def test_when_action_dim_is_below_real_dims_expect_value_error():
    with pytest.raises(ValueError, match="action_dim 3 is smaller than the 4 real action dims"):
        ActionNormalizer(STATS, 3)


# ---------------------------------------------------------------- camera messages and ranges (datasets)

from dit4dit_policy.preprocessing import decode_compressed_image, images_to_rgb, raw_image_array  # noqa: E402


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_when_converting_to_rgb_expect_the_pixels_images_to_model_resizes(encoding):
    rng = np.random.default_rng(8)
    channels = {"rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding, 3)
    frames = rng.integers(0, 256, (2, 6, 10, channels), dtype=np.uint8)
    rgb = images_to_rgb(frames, encoding)
    assert rgb.shape == (2, 6, 10, 3) and rgb.dtype == np.uint8
    torch.testing.assert_close(images_to_model(rgb, "rgb8", 4), images_to_model(frames, encoding, 4), atol=0, rtol=0)
    if encoding == "bgr8":
        np.testing.assert_array_equal(rgb, frames[..., ::-1])


def test_when_raw_image_rows_are_padded_expect_the_padding_dropped():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.concatenate([rgb.reshape(2, 9), np.full((2, 3), 255, np.uint8)], axis=1)
    np.testing.assert_array_equal(raw_image_array(padded.tobytes(), 2, 3, 12, "rgb8"), rgb)
    mono = raw_image_array(bytes(range(8)), 2, 3, 4, "mono8")
    assert mono.shape == (2, 3, 1) and mono[1, :, 0].tolist() == [4, 5, 6]


@pytest.mark.parametrize(
    "data,height,width,step,encoding,match",
    [
        (b"\0" * 17, 2, 3, 9, "rgb8", "needs 18 bytes"),
        (b"\0" * 16, 2, 3, 8, "rgb8", "step >= 9"),
        (b"\0" * 4, 2, 2, 4, "16UC1", "unknown image encoding '16UC1'"),
    ],
)
def test_when_raw_image_fields_disagree_expect_error_naming_them(data, height, width, step, encoding, match):
    with pytest.raises(ValueError, match=match):
        raw_image_array(data, height, width, step, encoding)


def test_when_png_compressed_expect_the_same_rgb_pixels_and_garbage_refused():
    from PIL import Image

    rgb = np.random.default_rng(9).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode_compressed_image(buffer.getvalue()), rgb)
    with pytest.raises(ValueError, match="cannot decode compressed image"):
        decode_compressed_image(b"not an image")


def test_when_stats_from_a_range_expect_compute_on_the_same_data():
    actions = np.array([[1.0, 0.7, -2.0], [3.0, 0.7, 5.0]])
    assert NormStats.from_range(actions.min(axis=0), actions.max(axis=0)) == NormStats.compute(actions)
    with pytest.raises(ValueError, match=r"below action_min in dim\(s\) \[1\]"):
        NormStats.from_range([0.0, 1.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="NaN or inf"):
        NormStats.from_range([0.0, float("nan")], [1.0, 1.0])
