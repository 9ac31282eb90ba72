"""Likeness: how recognisably a picture still shows the person in their selfie, as a percentage.

One face model, all offline: dlib's HOG face detector, its 5-point landmarks and its 128-d ResNet face
embedding, whose weights ship inside the `face-recognition-models` package (nothing is downloaded, and
nothing leaves the machine). Two faces' embeddings lie at a Euclidean distance that dlib calibrated so
that under 0.6 is "the same person" (99.38% on LFW); `percent_from_distance` turns that distance into the
number people see. It is a measure of how much of a face a style kept, not a biometric check.

Cost: detection runs on a copy of at most 512×512 px (`DETECT_PIXELS`: HOG's 80 px window then finds
faces down to a sixth of a square picture; failing that, once more at twice the size for small faces in group
pictures), landmarks and the embedding on the full picture; about 100 ms per picture on one core,
~75 ms of which is the ResNet. dlib holds the GIL while it works, so a bot calls this in a worker process
(`core.intake_pool.Intake.likeness`), never on the event loop. The dlib objects are loaded once, lazily,
and used under a lock each (they keep scratch state, and the GIL serialises them anyway).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import itertools
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its face embedding
DETECT_PIXELS = 512 * 512  # detection runs on a copy of at most this many pixels (a 512 px square)
FACE_SCORE = 0.0  # dlib's own threshold: the best face an overlay trusts must reach it
MIN_DETECTION_SCORE = -0.35  # further faces may score a little under it (a third zombie in a poster: -0.12),
# and so may the face a likeness score is taken of: a drawn face often scores just under 0 (the astronaut
# in noir: -0.03); a picture whose best candidate is under this is said to have no face.
# A second face scoring this much below the best is a shifted window on it, a pattern or a hand: one
# confident face per person (real faces in one picture score within ~0.5 of each other; dlib's false
# positives on our portraits under 0.1 beside a face at 1.5).
FACE_SCORE_MARGIN = 1.2
MAX_SIDE = 2048  # larger pictures are scaled down before anything else
EMBEDDINGS_CACHED = 64  # embeddings of recently seen pictures (a person's selfie is scored against often)

# Distance -> percent, piecewise linear between these points (see README "Likeness").
# Measured on real portraits (tests/fixtures, BENCHMARKS.md): the same photo re-encoded lies at
# < 0.05; another photo of the same person ~0.3-0.45; the offline styles that keep the face 0.3-0.55;
# different people 0.66-0.95. So 0 -> 100%, the same-person threshold 0.6 -> 40%, 0.9 -> 0%.
CALIBRATION: tuple[tuple[float, float], ...] = ((0.0, 100.0), (0.3, 88.0), (0.5, 65.0), (0.6, 40.0),
                                                (0.75, 15.0), (0.9, 0.0))

Vector = NDArray[np.float64]
Which = Literal["image", "reference"]


class LikenessError(Exception):
    """A picture could not be read, or the face models could not be loaded."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face: its box in picture pixels, dlib's detection score and the 5 landmarks."""

    left: float
    top: float
    right: float
    bottom: float
    score: float
    landmarks: tuple[tuple[float, float], ...] = ()  # dlib's 5 points: two per eye corner pair, the nose

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def eyes(self) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """Centres of the eye on the picture's left and the one on its right (from the landmarks)."""
        if len(self.landmarks) < 4:
            return None
        a = ((self.landmarks[0][0] + self.landmarks[1][0]) / 2, (self.landmarks[0][1] + self.landmarks[1][1]) / 2)
        b = ((self.landmarks[2][0] + self.landmarks[3][0]) / 2, (self.landmarks[2][1] + self.landmarks[3][1]) / 2)
        return (a, b) if a[0] <= b[0] else (b, a)


@dataclass(frozen=True)
class Embedding:
    """One face's 128-d embedding and where the face is."""

    vector: tuple[float, ...]
    face: FaceBox

    def distance(self, other: Embedding) -> float:
        return float(np.linalg.norm(np.asarray(self.vector) - np.asarray(other.vector)))


@dataclass(frozen=True)
class Score:
    """How much a picture's face looks like the reference's."""

    percent: int  # 0-100, see `percent_from_distance`
    distance: float  # the embeddings' Euclidean distance
    same_person: bool  # distance under dlib's threshold (0.6)

    @staticmethod
    def of(distance: float) -> Score:
        return Score(round(percent_from_distance(distance)), distance, distance < SAME_PERSON_DISTANCE)


@dataclass(frozen=True)
class NoFace:
    """No face was found in `which` picture, so there is nothing to compare."""

    which: Which


@dataclass(frozen=True)
class GroupMatch:
    """One member of a group picture: their selfie against their best face in the picture."""

    member: str
    result: Score | NoFace
    face: FaceBox | None = None  # the face in the group picture they were matched to


def percent_from_distance(distance: float) -> float:
    """The likeness people see: 100% for the same photo, 40% at dlib's same-person threshold, 0% from 0.9."""
    points = CALIBRATION
    if distance <= points[0][0]:
        return points[0][1]
    for (d0, p0), (d1, p1) in itertools.pairwise(points):
        if distance <= d1:
            return p0 + (p1 - p0) * (distance - d0) / (d1 - d0)
    return points[-1][1]


def models_dir() -> Path:
    """Where `face-recognition-models` installed its .dat files (its __init__ needs pkg_resources: not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LikenessError("the face-recognition-models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def decode(data: bytes) -> NDArray[np.uint8]:
    """An upright RGB uint8 array of an encoded picture (at most MAX_SIDE px long); LikenessError if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.format == "JPEG":
                opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # a DCT-scaled decode of a huge JPEG
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise LikenessError(f"not a picture I can read ({type(exc).__name__})") from exc
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


class Likeness:
    """The face model: detection, landmarks and embeddings, loaded on first use and shared by threads."""

    def __init__(self, models: Path | None = None, *, cache_size: int = EMBEDDINGS_CACHED) -> None:
        self._models = models
        self._load_lock = threading.Lock()
        self._detect_lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None
        self._cache: OrderedDict[str, tuple[Embedding, ...]] = OrderedDict()
        self._cache_size = cache_size

    # -- loading ---------------------------------------------------------------------------------

    def _dlib(self) -> tuple[Any, Any, Any]:
        """(detector, 5-point shape predictor, ResNet embedder), loaded once."""
        if self._loaded is None:
            with self._load_lock:
                if self._loaded is None:
                    try:
                        import dlib

                        folder = self._models or models_dir()
                        self._loaded = (
                            dlib.get_frontal_face_detector(),
                            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
                            dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")),
                        )
                    except (ImportError, RuntimeError, OSError) as exc:
                        raise LikenessError(f"the face model could not be loaded: {exc}") from exc
        return self._loaded

    def available(self) -> bool:
        """Whether the face model loads here (dlib imports and its model files are present)."""
        try:
            self._dlib()
        except LikenessError:
            return False
        return True

    # -- faces -----------------------------------------------------------------------------------

    def detect(self, rgb: NDArray[np.uint8], *, min_score: float = MIN_DETECTION_SCORE,
               landmarks: bool = True, small_faces: bool = False) -> list[FaceBox]:
        """Faces in an RGB picture, the highest-scoring first; with their 5 landmarks unless told not to.

        A selfie's face is big: the picture is searched at 512×512 px and, only if that finds nothing, at
        twice that. `small_faces` (a group picture) searches at twice that straight away (~4× the time).
        """
        detector, predictor, _embedder = self._dlib()
        height, width = rgb.shape[:2]
        scale = min(1.0, (DETECT_PIXELS / (height * width)) ** 0.5)
        small = rgb if scale == 1.0 else _resized(rgb, scale)
        with self._detect_lock:
            rects, scores, _kinds = ([], [], []) if small_faces else detector.run(small, 0, min_score)
            if len(rects) == 0:  # small faces (a group picture): once more at twice the size
                rects, scores, _kinds = detector.run(small, 1, min_score)
        found = sorted(zip(rects, scores, strict=True), key=lambda rs: -rs[1])
        faces: list[FaceBox] = []
        for rect, score in found:
            box = FaceBox(max(0.0, rect.left() / scale), max(0.0, rect.top() / scale),
                          min(float(width), (rect.right() + 1) / scale),
                          min(float(height), (rect.bottom() + 1) / scale), float(score))
            if landmarks:
                box = FaceBox(box.left, box.top, box.right, box.bottom, box.score,
                              _points(self._shape(predictor, rgb, box)))
            faces.append(box)
        return faces

    def _shape(self, predictor: Any, rgb: NDArray[np.uint8], box: FaceBox) -> Any:
        import dlib

        rect = dlib.rectangle(round(box.left), round(box.top), round(box.right) - 1, round(box.bottom) - 1)
        with self._detect_lock:
            return predictor(rgb, rect)

    def embed(self, rgb: NDArray[np.uint8], *, max_faces: int = 1) -> list[Embedding]:
        """Embeddings of the `max_faces` highest-scoring faces (empty when there is none)."""
        import dlib

        _detector, predictor, embedder = self._dlib()
        embeddings = []
        found = self.detect(rgb, landmarks=False, small_faces=max_faces > 1)
        # In a group picture faces score far apart (0.4 to 2.8 in the fixture): no margin there.
        trusted = one_face_per_person(found, margin=FACE_SCORE_MARGIN if max_faces == 1 else np.inf,
                                      floor=MIN_DETECTION_SCORE)
        for face in trusted[:max_faces]:
            shape = self._shape(predictor, rgb, face)
            with self._embed_lock:
                vector = embedder.compute_face_descriptor(rgb, shape)
            placed = FaceBox(face.left, face.top, face.right, face.bottom, face.score, _points(shape))
            embeddings.append(Embedding(tuple(float(v) for v in dlib.vector(vector)), placed))
        return embeddings

    def embed_bytes(self, data: bytes, *, max_faces: int = 1) -> tuple[Embedding, ...]:
        """`embed` of an encoded picture, remembered by its content (a selfie is a reference many times)."""
        key = f"{hashlib.sha256(data).hexdigest()}:{max_faces}"
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        found = tuple(self.embed(decode(data), max_faces=max_faces))
        with self._cache_lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    # -- comparisons -----------------------------------------------------------------------------

    def score(self, image: bytes, reference: bytes | Embedding) -> Score | NoFace:
        """How much `image`'s main face looks like the face in `reference` (a selfie, or its embedding)."""
        if isinstance(reference, Embedding):
            ref: Embedding | None = reference
        else:
            refs = self.embed_bytes(reference)
            ref = refs[0] if refs else None
        if ref is None:
            return NoFace("reference")
        found = self.embed_bytes(image)
        if not found:
            return NoFace("image")
        return Score.of(found[0].distance(ref))

    def match_group(self, picture: bytes, selfies: Mapping[str, bytes | Embedding],
                    *, max_faces: int = 16) -> list[GroupMatch]:
        """Each member's selfie against their best face in a group picture, one face per member.

        Pairs are taken closest first, so two look-alikes cannot both claim one face; a member whose
        selfie has no face gets NoFace("reference"), one left without a face NoFace("image").
        """
        refs: dict[str, Embedding | None] = {}
        for member, selfie in selfies.items():
            if isinstance(selfie, Embedding):
                refs[member] = selfie
            else:
                found = self.embed_bytes(selfie)
                refs[member] = found[0] if found else None
        faces = self.embed_bytes(picture, max_faces=max_faces)
        pairs = sorted((ref.distance(face), member, i) for member, ref in refs.items() if ref is not None
                       for i, face in enumerate(faces))
        taken: dict[str, tuple[float, int]] = {}
        used: set[int] = set()
        for distance, member, i in pairs:
            if member not in taken and i not in used:
                taken[member] = (distance, i)
                used.add(i)
        matches = []
        for member, ref in refs.items():
            if ref is None:
                matches.append(GroupMatch(member, NoFace("reference")))
            elif member not in taken:
                matches.append(GroupMatch(member, NoFace("image")))
            else:
                distance, i = taken[member]
                matches.append(GroupMatch(member, Score.of(distance), faces[i].face))
        return matches


def one_face_per_person(faces: Sequence[FaceBox], *, margin: float = FACE_SCORE_MARGIN,
                        floor: float = FACE_SCORE) -> list[FaceBox]:
    """The faces to trust, one per person: none unless the best reaches `floor` (dlib's threshold), then
    those within `margin` of it (and over MIN_DETECTION_SCORE), none overlapping another."""
    kept: list[FaceBox] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if face.score < (floor if not kept else max(MIN_DETECTION_SCORE, kept[0].score - margin)):
            continue
        if any(_overlap(face, other) > 0.3 for other in kept):
            continue
        kept.append(face)
    return kept


def _overlap(a: FaceBox, b: FaceBox) -> float:
    """Intersection over the smaller box's area."""
    w = min(a.right, b.right) - max(a.left, b.left)
    h = min(a.bottom, b.bottom) - max(a.top, b.top)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(1e-6, min(a.width * a.height, b.width * b.height))


def _resized(rgb: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _points(shape: Any) -> tuple[tuple[float, float], ...]:
    return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))


_default: Likeness | None = None
_default_lock = threading.Lock()


def default_likeness() -> Likeness:
    """The process's one face model (loaded on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Likeness()
    return _default
