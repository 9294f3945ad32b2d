"""Face verification and liveness with dlib's models on photographs shipped in packages.

Pure computation (model files are read once, no network or database). The distances printed
by ``test_same_person_matches_and_another_is_rejected`` are the ones documented behind the
threshold in docs/identity-trust.md.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.fixtures import faces
from zerocontact.identity.trust import face, liveness
from zerocontact.identity.trust.errors import (
    FaceTooBlurred,
    FaceTooSmall,
    NoFace,
    SeveralFaces,
    UnusableImage,
)


@pytest.fixture(scope="module")
def templates() -> dict[str, np.ndarray]:
    return {
        "astronaut": face.embed_photo(faces.jpeg(faces.astronaut())),
        "grace_hopper": face.embed_photo(faces.jpeg(faces.grace_hopper())),
    }


def test_models_are_found_without_pkg_resources() -> None:
    names = {p.name for p in face.model_dir().iterdir()}
    assert "dlib_face_recognition_resnet_model_v1.dat" in names
    assert "shape_predictor_68_face_landmarks.dat" in names


@pytest.mark.parametrize("who", ["astronaut", "grace_hopper"])
def test_same_person_matches_and_another_is_rejected(
    who: str, templates: dict[str, np.ndarray]
) -> None:
    other = "grace_hopper" if who == "astronaut" else "astronaut"
    photo = getattr(faces, who)()
    genuine, impostor = {}, {}
    for name, variant in faces.variants(photo).items():
        probe = face.embed_photo(faces.jpeg(variant))
        genuine[name] = face.distance(probe, templates[who])
        impostor[name] = face.distance(probe, templates[other])
    print(f"\n{who}: genuine {genuine}\n{who} vs {other}: {impostor}")
    assert max(genuine.values()) < face.MATCH_THRESHOLD
    assert min(impostor.values()) > face.MATCH_THRESHOLD
    assert face.distance(templates[who], templates[other]) > face.MATCH_THRESHOLD


def test_a_photo_without_a_face_is_refused() -> None:
    with pytest.raises(NoFace):
        face.embed_photo(faces.jpeg(np.full((400, 400, 3), 128, np.uint8)))


def test_two_faces_are_refused() -> None:
    with pytest.raises(SeveralFaces):
        face.embed_photo(faces.jpeg(faces.side_by_side()))


def test_a_small_face_is_refused() -> None:
    with pytest.raises(FaceTooSmall):
        face.embed_photo(faces.jpeg(cv2.resize(faces.astronaut(), (220, 220))))


def test_a_blurred_face_is_refused() -> None:
    with pytest.raises(FaceTooBlurred):
        face.embed_photo(faces.jpeg(cv2.GaussianBlur(faces.astronaut(), (0, 0), 2)))


def test_bytes_that_are_not_an_image_are_refused() -> None:
    with pytest.raises(UnusableImage):
        face.embed_photo(b"not an image at all")


def test_painted_eyes_drop_the_eye_aspect_ratio() -> None:
    photo = faces.astronaut()
    points = face.landmarks68(photo, face.detect(photo)[0])
    shut = faces.close_eyes(photo, points)
    shut_points = face.landmarks68(shut, face.detect(shut)[0])
    assert liveness.frame_ear(points) > 0.3
    assert liveness.frame_ear(shut_points) < 0.6 * liveness.frame_ear(points)


def test_blinking_video_of_the_enrolled_face_passes(templates: dict[str, np.ndarray]) -> None:
    result = liveness.check_liveness(
        faces.blink_video(2), challenge=liveness.Challenge.BLINK, requested=2,
        template=templates["astronaut"],
    )  # fmt: skip
    assert result.passed, result.reasons
    assert result.blinks == 2


def test_still_photo_video_fails(templates: dict[str, np.ndarray]) -> None:
    video = faces.still_video()
    for challenge, requested in ((liveness.Challenge.BLINK, 2), (liveness.Challenge.TURN_LEFT, 1)):
        result = liveness.check_liveness(
            video, challenge=challenge, requested=requested, template=templates["astronaut"]
        )
        assert not result.passed
        assert result.blinks == 0


def test_blinks_by_someone_else_fail(templates: dict[str, np.ndarray]) -> None:
    result = liveness.check_liveness(
        faces.blink_video(2), challenge=liveness.Challenge.BLINK, requested=2,
        template=templates["grace_hopper"],
    )  # fmt: skip
    assert not result.passed
    assert result.blinks == 2
    assert result.max_distance > face.MATCH_THRESHOLD


def test_fewer_blinks_than_asked_fail(templates: dict[str, np.ndarray]) -> None:
    result = liveness.check_liveness(
        faces.blink_video(1), challenge=liveness.Challenge.BLINK, requested=2,
        template=templates["astronaut"],
    )  # fmt: skip
    assert not result.passed and result.blinks == 1


def test_count_blinks_on_series() -> None:
    assert liveness.count_blinks([0.3] * 5 + [0.1] * 2 + [0.3] * 3 + [0.1] + [0.3]) == 2
    assert liveness.count_blinks([0.1] * 3 + [0.3] * 5) == 0  # closed at the start is no blink
    assert liveness.count_blinks([0.3] * 5 + [0.1] * 3) == 0  # never reopened
