import json
import re

import numpy as np
import pytest
from PIL import Image

from dit4dit_policy.data.xr_import import GROUP_ORDER, XrFormatError, read_xr_episode, read_xr_episodes

WIDTH, HEIGHT = 16, 8
CAMERAS = ("color_0", "color_1")


def _color(idx, cam_number):
    # Flat, well-separated colours survive JPEG almost unchanged, so decoding can be compared closely.
    return (40 * idx % 256, 200 - 60 * cam_number, 30 + 90 * cam_number)


def _qpos(idx, offset, size):
    return {"qpos": [idx + offset + 0.01 * j for j in range(size)], "qvel": [], "torque": []}


def _groups(idx, base, hand):
    return {
        "left_arm": _qpos(idx, base + 0.1, 7),
        "right_arm": _qpos(idx, base + 0.2, 7),
        "left_ee": _qpos(idx, base + 0.3, hand),
        "right_ee": _qpos(idx, base + 0.4, hand),
        "body": {"qpos": [9.0, 9.0]},
    }


def make_episode(root, number=0, idxs=(0, 1, 2), hand=7, fps=30):
    folder = root / f"episode_{number:04d}"
    (folder / "colors").mkdir(parents=True)
    frames = []
    for idx in idxs:
        colors = {}
        for cam_number, cam in enumerate(CAMERAS):
            name = f"colors/{idx:06d}_{cam}.jpg"
            Image.new("RGB", (WIDTH, HEIGHT), _color(idx, cam_number)).save(folder / name, quality=95)
            colors[cam] = name
        states, actions = _groups(idx, 0, hand), _groups(idx, 100, hand)
        frames.append({"idx": idx, "colors": colors, "states": states, "actions": actions})
    image = {"width": WIDTH, "height": HEIGHT}
    if fps is not None:
        image["fps"] = fps
    doc = {
        "info": {"image": image, "joint_names": {}},
        "text": {"goal": f"pick cube {number}", "desc": "a cube", "steps": "grasp; lift"},
        "data": frames,
    }
    write_doc(folder, doc)
    return folder


def load_doc(folder):
    return json.loads((folder / "data.json").read_text())


def write_doc(folder, doc):
    (folder / "data.json").write_text(json.dumps(doc))


def test_when_episode_is_valid_expect_groups_in_fixed_order_and_timestamps_from_idx(tmp_path):
    folder = make_episode(tmp_path, idxs=(0, 1, 3))
    episode = read_xr_episode(folder)
    assert episode.task == "pick cube 0"
    assert episode.text["steps"] == "grasp; lift"
    assert episode.fps == 30.0
    assert episode.cameras == CAMERAS
    assert episode.image_size == (WIDTH, HEIGHT)
    assert len(episode) == 3
    np.testing.assert_array_equal(episode.idx, [0, 1, 3])
    np.testing.assert_allclose(episode.timestamps, [0.0, 1 / 30, 3 / 30])
    assert episode.state.shape == (3, 28)
    assert episode.action.shape == (3, 28)
    assert GROUP_ORDER == ("left_arm", "right_arm", "left_ee", "right_ee")
    expected = {"left_arm": slice(0, 7), "right_arm": slice(7, 14), "left_ee": slice(14, 21), "right_ee": slice(21, 28)}
    assert episode.state_slices == expected
    assert episode.action_slices == expected
    for group, offset in zip(GROUP_ORDER, (0.1, 0.2, 0.3, 0.4), strict=True):
        columns = episode.state_slices[group]
        np.testing.assert_allclose(episode.state[2, columns], [3 + offset + 0.01 * j for j in range(7)])
        np.testing.assert_allclose(episode.action[2, columns], [3 + 100 + offset + 0.01 * j for j in range(7)])


def test_when_hands_are_inspire_expect_six_columns_per_hand(tmp_path):
    episode = read_xr_episode(make_episode(tmp_path, hand=6))
    assert episode.state.shape == (3, 26)
    assert episode.state_slices["right_ee"] == slice(20, 26)


def test_when_frame_is_decoded_expect_written_rgb_image(tmp_path):
    episode = read_xr_episode(make_episode(tmp_path))
    for t, idx in enumerate(episode.idx):
        for cam_number, cam in enumerate(CAMERAS):
            pixels = episode.frame(t, cam)
            assert pixels.dtype == np.uint8
            assert pixels.shape == (HEIGHT, WIDTH, 3)
            error = np.abs(pixels.astype(int) - np.array(_color(int(idx), cam_number)))
            assert error.max() <= 6


def test_when_frame_asked_for_unknown_camera_or_position_expect_error(tmp_path):
    episode = read_xr_episode(make_episode(tmp_path))
    with pytest.raises(KeyError, match="color_9"):
        episode.frame(0, "color_9")
    with pytest.raises(IndexError, match="frame 3 out of range"):
        episode.frame(3, "color_0")


def test_when_reading_root_expect_episodes_in_number_order_and_other_folders_ignored(tmp_path):
    for number in (10, 2, 1):
        make_episode(tmp_path, number=number)
    (tmp_path / "notes").mkdir()
    episodes = read_xr_episodes(tmp_path)
    assert [e.folder.name for e in episodes] == ["episode_0001", "episode_0002", "episode_0010"]
    assert [e.task for e in episodes] == ["pick cube 1", "pick cube 2", "pick cube 10"]


def test_when_root_has_no_episodes_expect_error_naming_root(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(XrFormatError, match=re.escape(f"{tmp_path}: no episode_NNNN")):
        read_xr_episodes(tmp_path)


def test_when_fps_not_recorded_expect_argument_used_and_error_without_it(tmp_path):
    folder = make_episode(tmp_path, fps=None)
    with pytest.raises(XrFormatError, match=re.escape(str(folder)) + ".*no 'fps'"):
        read_xr_episode(folder)
    episode = read_xr_episode(folder, fps=50)
    np.testing.assert_allclose(episode.timestamps, [0.0, 0.02, 0.04])


def test_when_fps_argument_disagrees_with_recorded_expect_error(tmp_path):
    with pytest.raises(XrFormatError, match="fps is 30 but 60 was given"):
        read_xr_episode(make_episode(tmp_path), fps=60)


def test_when_data_json_missing_expect_error_naming_episode(tmp_path):
    folder = make_episode(tmp_path)
    (folder / "data.json").unlink()
    with pytest.raises(XrFormatError, match="missing data.json in episode episode_0000"):
        read_xr_episode(folder)


def test_when_data_json_invalid_expect_error_naming_file(tmp_path):
    folder = make_episode(tmp_path)
    (folder / "data.json").write_text('{"info": ')
    with pytest.raises(XrFormatError, match=re.escape(str(folder / "data.json")) + ": invalid JSON"):
        read_xr_episode(folder)


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (lambda doc: doc.pop("text"), "missing key 'text'"),
        (lambda doc: doc["text"].pop("goal"), "text: missing key 'goal'"),
        (lambda doc: doc["info"]["image"].pop("width"), "info.image: missing key 'width'"),
        (lambda doc: doc["data"][1].pop("idx"), "frame 1: missing key 'idx'"),
        (lambda doc: doc["data"][2]["states"].pop("left_ee"), r"frame 2 \(idx 2\): states: missing key 'left_ee'"),
        (lambda doc: doc["data"][1]["actions"]["right_arm"].pop("qpos"), r"actions.right_arm: missing key 'qpos'"),
    ],
)
def test_when_key_missing_expect_error_naming_file_and_key(tmp_path, remove, message):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    remove(doc)
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match=re.escape(str(folder / "data.json")) + ".*" + message):
        read_xr_episode(folder)


@pytest.mark.parametrize(
    ("idxs", "message"),
    [((0, 2, 1), r"frame 2 \(idx 1\): idx out of order after idx 2"), ((0, 1, 1), "idx duplicated after idx 1")],
)
def test_when_idx_not_increasing_expect_error_naming_frame(tmp_path, idxs, message):
    with pytest.raises(XrFormatError, match=message):
        read_xr_episode(make_episode(tmp_path, idxs=idxs))


def test_when_group_length_changes_between_frames_expect_error(tmp_path):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    doc["data"][1]["states"]["left_ee"]["qpos"] = [0.5] * 6
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match=r"frame 1 \(idx 1\): states.left_ee.qpos: 6 values, earlier frames had 7"):
        read_xr_episode(folder)


def test_when_group_has_unsupported_length_expect_error(tmp_path):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    doc["data"][0]["actions"]["left_arm"]["qpos"] = [0.0] * 6
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match=r"actions.left_arm.qpos: 6 values, expected one of \(7,\)"):
        read_xr_episode(folder)


def test_when_qpos_is_not_numbers_expect_error(tmp_path):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    doc["data"][0]["states"]["right_ee"]["qpos"] = ["open"] * 7
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match="states.right_ee.qpos: not a list of numbers"):
        read_xr_episode(folder)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_when_value_not_finite_expect_error_naming_frame_and_group(tmp_path, bad):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    doc["data"][2]["actions"]["right_ee"]["qpos"][3] = bad
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match=r"frame 2 \(idx 2\): actions.right_ee.qpos: non-finite"):
        read_xr_episode(folder)


def test_when_image_file_missing_expect_error_naming_image(tmp_path):
    folder = make_episode(tmp_path)
    (folder / "colors" / "000001_color_1.jpg").unlink()
    with pytest.raises(XrFormatError, match=r"frame 1 \(idx 1\): missing image .*000001_color_1\.jpg"):
        read_xr_episode(folder)


def test_when_image_size_differs_from_info_expect_error(tmp_path):
    folder = make_episode(tmp_path)
    Image.new("RGB", (WIDTH, HEIGHT + 2)).save(folder / "colors" / "000002_color_0.jpg")
    with pytest.raises(XrFormatError, match=r"000002_color_0\.jpg is 16x10, info says 16x8"):
        read_xr_episode(folder)


def test_when_frame_lists_other_cameras_expect_error(tmp_path):
    folder = make_episode(tmp_path)
    doc = load_doc(folder)
    doc["data"][1]["colors"].pop("color_1")
    write_doc(folder, doc)
    with pytest.raises(XrFormatError, match=r"frame 1 \(idx 1\): cameras \['color_0'\] differ"):
        read_xr_episode(folder)
