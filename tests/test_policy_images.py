"""Camera messages to arrays in the policy node: row padding removed, compressed frames decoded."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from dit4dit_policy.nodes.policy_node import compressed_array, image_array

pytestmark = pytest.mark.ros


def test_when_rows_are_padded_expect_the_padding_dropped():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.concatenate([rgb.reshape(2, 9), np.full((2, 3), 255, np.uint8)], axis=1)  # step 12 > 9
    msg = Image(height=2, width=3, encoding="bgr8", step=12, data=padded.tobytes())
    array, encoding = image_array(msg)
    assert encoding == "bgr8"
    np.testing.assert_array_equal(array, rgb)


def test_when_encoding_unsupported_expect_error_naming_it():
    msg = Image(height=1, width=1, encoding="16UC1", step=2, data=b"\0\0")
    with pytest.raises(ValueError, match="16UC1"):
        image_array(msg)


def test_when_png_compressed_expect_the_same_rgb_pixels():
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    array, encoding = compressed_array(CompressedImage(format="png", data=buf.getvalue()))
    assert encoding == "rgb8"
    np.testing.assert_array_equal(array, rgb)
