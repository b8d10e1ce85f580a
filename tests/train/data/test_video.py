"""Video helpers: time -> frame index, cached sequential decoding, PSNR."""
from __future__ import annotations

import numpy as np

from synth_dataset import synth_image
from gr00t_rlhf_train.data.video import VideoEncoder, VideoReader, frame_index_at, psnr


def test_frame_index_is_latest_at_or_before():
    times = np.array([0.0, 0.1, 0.2, 0.3])
    assert [frame_index_at(times, t) for t in (-1, 0.0, 0.05, 0.1, 0.298, 9)] == [0, 0, 0, 1, 2, 3]


def test_encode_decode_sequential_uses_the_cache(tmp_path):
    path = tmp_path / "v.mp4"
    enc = VideoEncoder(path, fps=10, size=(64, 96))
    imgs = [synth_image((64, 96), 0, i) for i in range(25)]
    for i, img in enumerate(imgs):
        enc.add(img, i / 10)
    enc.close()
    with VideoReader(path) as v:
        assert len(v) == 25 and v.codec == "h264"
        for r in range(125):  # 50 Hz rows over a 10 fps video: every frame decoded once
            v.frame_at(r * 0.02)
        assert v.decoded == 25
        assert min(psnr(v.frame(i), imgs[i]) for i in range(25)) > 30
        assert psnr(v.frame(3), imgs[3]) > 30  # random access back
    assert psnr(imgs[0], imgs[0]) == float("inf")
