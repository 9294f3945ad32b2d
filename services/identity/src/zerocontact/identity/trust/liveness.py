"""Liveness by challenge and response on a short video (blocking; run through ``run_cpu``).

Frames are read with OpenCV and sampled evenly (at most ``MAX_FRAMES``); on each, the single
face's 68 landmarks give the eye aspect ratio (EAR, Soukupová and Čech 2016: eye height over
width, ~0.3 open and near 0 closed) and a yaw proxy (where the nose tip sits between the jaw
ends: ~0.5 facing the camera, towards 0 or 1 turned). A blink is a run of frames whose EAR is
below ``BLINK_RATIO`` of the open-eye baseline between open frames; a head turn is a yaw shift
of ``TURN_SHIFT``. Some frames spread over the video are embedded and must all match the
enrolled template, so the person answering is the customer throughout. A video of a still
photo has neither blinks nor turns and fails.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from zerocontact.identity.trust import face
from zerocontact.identity.trust.errors import NoFace, SeveralFaces, UnusableImage

MAX_FRAMES = 90
IDENTITY_FRAMES = 5
BLINK_RATIO = 0.6
TURN_SHIFT = 0.12
_RIGHT_EYE, _LEFT_EYE = slice(36, 42), slice(42, 48)


class Challenge(StrEnum):
    """What the customer is asked to do on camera."""

    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"


@dataclass
class LivenessResult:
    """What the video showed; ``passed`` only if the challenge was met by the enrolled face."""

    challenge: Challenge
    requested: int
    passed: bool
    frames_sampled: int
    blinks: int
    yaw_shift: float
    max_distance: float
    reasons: list[str] = field(default_factory=list)


def eye_aspect_ratio(eye: npt.NDArray[np.float64]) -> float:
    """EAR of six eye landmarks: (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    return float(vertical / (2.0 * np.linalg.norm(eye[0] - eye[3])))


def frame_ear(points: npt.NDArray[np.float64]) -> float:
    """Mean EAR of both eyes."""
    return (eye_aspect_ratio(points[_RIGHT_EYE]) + eye_aspect_ratio(points[_LEFT_EYE])) / 2


def yaw(points: npt.NDArray[np.float64]) -> float:
    """Nose tip position between the jaw ends (0..1; 0.5 facing the camera)."""
    left, right, nose = points[0, 0], points[16, 0], points[30, 0]
    return float((nose - left) / max(right - left, 1.0))


def count_blinks(ears: list[float]) -> int:
    """Closed runs between open frames, relative to the open-eye baseline."""
    if len(ears) < 3:
        return 0
    baseline = float(np.percentile(ears, 75))
    closed = [e < BLINK_RATIO * baseline for e in ears]
    blinks, seen_open, in_blink = 0, False, False
    for c in closed:
        if c and seen_open:
            in_blink = True
        elif not c:
            if in_blink:
                blinks += 1
            in_blink, seen_open = False, True
    return blinks


def read_frames(video: bytes) -> list[face.Image]:
    """Evenly sampled RGB frames (at most ``MAX_FRAMES``)."""
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(video)
        capture = cv2.VideoCapture(path)
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(bgr)
        capture.release()
    finally:
        os.unlink(path)
    if not frames:
        raise UnusableImage("the file is not a readable video")
    step = max(1, -(-len(frames) // MAX_FRAMES))
    return [
        face.limit_size(np.asarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), np.uint8))
        for f in frames[::step]
    ]


def check_liveness(
    video: bytes,
    *,
    challenge: Challenge,
    requested: int,
    template: npt.NDArray[np.float64],
) -> LivenessResult:
    """Run the challenge on ``video`` against the enrolled ``template``."""
    frames = read_frames(video)
    ears: list[float] = []
    yaws: list[float] = []
    boxes: list[Any] = []
    for rgb in frames:
        faces = face.detect(rgb)
        if len(faces) > 1:
            raise SeveralFaces("more than one face appears in the video")
        if not faces:
            boxes.append(None)
            continue
        points = face.landmarks68(rgb, faces[0])
        ears.append(frame_ear(points))
        yaws.append(yaw(points))
        boxes.append(faces[0])
    seen = [i for i, b in enumerate(boxes) if b is not None]
    if not seen:
        raise NoFace("no face was found in the video")
    result = LivenessResult(challenge, requested, False, len(frames), 0, 0.0, 0.0)
    if len(seen) < 0.8 * len(frames):
        result.reasons.append("the face is missing from too many frames")
    picks = [
        seen[round(k * (len(seen) - 1) / (IDENTITY_FRAMES - 1))] for k in range(IDENTITY_FRAMES)
    ]
    distances = [
        face.distance(face.embedding(frames[i], boxes[i]), template) for i in sorted(set(picks))
    ]
    result.max_distance = max(distances)
    if result.max_distance >= face.MATCH_THRESHOLD:
        result.reasons.append("the face does not match the enrolled customer in every frame")
    result.blinks = count_blinks(ears)
    result.yaw_shift = (yaws[0] - min(yaws)) if challenge is Challenge.TURN_LEFT else 0.0
    if challenge is Challenge.TURN_RIGHT:
        result.yaw_shift = max(yaws) - yaws[0]
    if challenge is Challenge.BLINK and result.blinks < requested:
        result.reasons.append(f"{result.blinks} blink(s) seen, {requested} requested")
    if challenge is not Challenge.BLINK and result.yaw_shift < TURN_SHIFT:
        result.reasons.append("the head did not turn as requested")
    result.passed = not result.reasons
    return result


def video_facts(video: bytes, *, samples: int = IDENTITY_FRAMES) -> tuple[int, list[face.Image]]:
    """Duration in milliseconds and ``samples`` frames spread over the video."""
    fd, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(video)
        capture = cv2.VideoCapture(path)
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        frames = []
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(bgr)
        capture.release()
    finally:
        os.unlink(path)
    if not frames or fps <= 0:
        raise UnusableImage("the file is not a readable video")
    picks = sorted({round(k * (len(frames) - 1) / max(samples - 1, 1)) for k in range(samples)})
    rgb = [
        face.limit_size(np.asarray(cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB), np.uint8))
        for i in picks
    ]
    return round(len(frames) * 1000 / fps), rgb


def match_frames(frames: list[face.Image], template: npt.NDArray[np.float64]) -> list[float]:
    """Distance to the template on each frame showing exactly one face (others skipped)."""
    distances = []
    for rgb in frames:
        faces = face.detect(rgb)
        if len(faces) == 1:
            distances.append(face.distance(face.embedding(rgb, faces[0]), template))
    return distances
