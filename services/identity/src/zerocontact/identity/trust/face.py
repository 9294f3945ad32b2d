"""Face detection, embeddings and landmarks with dlib's models, offline and CPU-only.

Models come from the ``face-recognition-models`` package, found with ``importlib`` (its
``__init__`` imports the deprecated ``pkg_resources``, so it is never imported). They are
loaded once per process; dlib calls are blocking CPU work, so async callers run them through
:func:`run_cpu` (a small thread pool) and the event loop keeps serving.

Embedding: HOG frontal face detector, 5-point landmarks, dlib's ResNet (128-d, LFW 99.38%).
Two embeddings are the same person when their Euclidean distance is below
``MATCH_THRESHOLD``; docs/identity-trust.md gives the distances measured behind it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import cv2
import dlib  # type: ignore[import-untyped]  # no stubs ship with dlib
import numpy as np
import numpy.typing as npt

from zerocontact.identity.trust.errors import (
    FaceTooBlurred,
    FaceTooSmall,
    NoFace,
    SeveralFaces,
    UnusableImage,
)

MATCH_THRESHOLD = 0.55  # dlib: 0.6; measured: same person <= 0.19, different >= 0.66 (docs)
MIN_DETECTION_SCORE = 0.5  # HOG SVM margin
MIN_FACE_PX = 80  # shorter side of the detected face box
MIN_SHARPNESS = 25.0  # variance of the Laplacian on the face, resized to 150 px
MAX_SIDE_PX = 1280  # larger photos are scaled down first (detector cost grows with area)

Image = npt.NDArray[np.uint8]
T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dlib")


def model_dir() -> Path:
    """The ``models`` directory of the face-recognition-models package, without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-recognition-models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class FaceModels:
    """dlib's detector and networks (thread-safe for inference)."""

    detector: Any
    landmarks5: Any
    landmarks68: Any
    encoder: Any


@cache
def models() -> FaceModels:
    """Load the models once per process (~100 MB, a second or so)."""
    d = model_dir()
    return FaceModels(
        detector=dlib.get_frontal_face_detector(),
        landmarks5=dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat")),
        landmarks68=dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat")),
        encoder=dlib.face_recognition_model_v1(
            str(d / "dlib_face_recognition_resnet_model_v1.dat")
        ),
    )


async def run_cpu(fn: Any, *args: Any) -> Any:
    """Run blocking dlib/OpenCV work off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


def decode_image(data: bytes) -> Image:
    """An RGB image from JPEG/PNG bytes; :class:`UnusableImage` if it is not one."""
    raw = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if bgr is None:
        raise UnusableImage("the file is not a readable JPEG or PNG image")
    return limit_size(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8))


def limit_size(rgb: Image) -> Image:
    """Scale down so the longer side is at most ``MAX_SIDE_PX``."""
    h, w = rgb.shape[:2]
    scale = MAX_SIDE_PX / max(h, w)
    if scale >= 1:
        return rgb
    size = (int(w * scale), int(h * scale))
    return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def detect(rgb: Image, *, upsample: int = 0) -> list[Any]:
    """Face rectangles found by the HOG detector.

    Without upsampling it finds faces of about 80 px and more, which is what an embedding
    needs anyway. Detections scoring below ``MIN_DETECTION_SCORE`` are dropped: the astronaut
    photo's suit patch scores 0.04-0.18 (a re-encoded copy), real faces 1.1-1.6.
    """
    rects, scores, _ = models().detector.run(rgb, upsample, 0.0)
    return [r for r, s in zip(rects, scores, strict=True) if s >= MIN_DETECTION_SCORE]


def single_face(rgb: Image) -> Any:
    """The one usable face of the image, or a typed refusal."""
    faces = detect(rgb)
    if not faces:
        if detect(rgb, upsample=1):  # a face is there, only too small for the plain pass
            raise FaceTooSmall(f"the face must be at least {MIN_FACE_PX} pixels wide")
        raise NoFace("no face was found in the image")
    if len(faces) > 1:
        raise SeveralFaces(f"{len(faces)} faces were found; exactly one is needed")
    face = faces[0]
    if min(face.width(), face.height()) < MIN_FACE_PX:
        raise FaceTooSmall(f"the face must be at least {MIN_FACE_PX} pixels wide")
    if sharpness(rgb, face) < MIN_SHARPNESS:
        raise FaceTooBlurred("the face is too blurred")
    return face


def sharpness(rgb: Image, face: Any) -> float:
    """Variance of the Laplacian of the face region at a fixed size (higher is sharper)."""
    h, w = rgb.shape[:2]
    top, bottom = max(face.top(), 0), min(face.bottom(), h)
    left, right = max(face.left(), 0), min(face.right(), w)
    crop = cv2.cvtColor(np.ascontiguousarray(rgb[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    crop = cv2.resize(crop, (150, 150), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def embedding(rgb: Image, face: Any) -> npt.NDArray[np.float64]:
    """The 128-d embedding of ``face`` in ``rgb``."""
    m = models()
    shape = m.landmarks5(rgb, face)
    return np.asarray(m.encoder.compute_face_descriptor(rgb, shape), dtype=np.float64)


def embed_photo(data: bytes) -> npt.NDArray[np.float64]:
    """Decode, check and embed a photo of exactly one face (blocking)."""
    rgb = decode_image(data)
    return embedding(rgb, single_face(rgb))


def distance(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Euclidean distance between two embeddings."""
    return float(np.linalg.norm(a - b))


def landmarks68(rgb: Image, face: Any) -> npt.NDArray[np.float64]:
    """The 68 landmarks (iBUG 300-W order) as a 68x2 array."""
    shape = models().landmarks68(rgb, face)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
