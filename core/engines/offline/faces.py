"""Faces for the offline engine: dlib's HOG detector with its 5-point landmarks (`core.likeness`), one
confident face per person, and where a face usually is when none is found.

OpenCV's Haar cascades remain as the fallback where dlib finds nothing or does not load; they also fire
on hands, ears and patterned cloth, so their windows are ranked so a selfie's face outranks those."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from core.engines.offline.filters import Array
from core.likeness import FaceBox, LikenessError, default_likeness, one_face_per_person

MAX_FUSE_PEOPLE = 8  # a group poster fits this many; detection never reports more faces than that

_CASCADE_LOCK = threading.Lock()
_DETECT_LOCK = threading.Lock()  # one classifier instance is shared; detection calls are serialised
_cascades: tuple[Any, Any] | None = None
_cascades_loaded = False


def get_cascades() -> tuple[Any, Any] | None:
    """The (face, eye) Haar cascades, loaded once; None when this OpenCV build lacks them."""
    global _cascades, _cascades_loaded
    if not _cascades_loaded:
        with _CASCADE_LOCK:
            if not _cascades_loaded:
                try:
                    base = cv2.data.haarcascades  # type: ignore[attr-defined]
                    face = cv2.CascadeClassifier(base + "haarcascade_frontalface_default.xml")
                    eye = cv2.CascadeClassifier(base + "haarcascade_eye.xml")
                    _cascades = None if face.empty() else (face, eye if not eye.empty() else None)
                except Exception:
                    _cascades = None
                _cascades_loaded = True
    return _cascades


@dataclass(frozen=True)
class Face:
    """A face box in image pixels plus eye centres (detected or estimated from the box)."""

    x: float
    y: float
    w: float
    h: float
    left_eye: tuple[float, float]  # the eye on the image's left
    right_eye: tuple[float, float]
    detected: bool = True
    eyes_detected: bool = False
    confidence: float = 0.0  # how sure detection is that this is a face (see `detect_faces`)

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def eye_y(self) -> float:
        return (self.left_eye[1] + self.right_eye[1]) / 2

    @property
    def eye_angle(self) -> float:
        """Tilt of the eye line in degrees (positive: the right eye is lower)."""
        if not self.eyes_detected:
            return 0.0
        dx = self.right_eye[0] - self.left_eye[0]
        dy = self.right_eye[1] - self.left_eye[1]
        angle = math.degrees(math.atan2(dy, dx))
        return angle if abs(angle) <= 20 else 0.0

    def scaled(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> Face:
        return Face(self.x * sx + dx, self.y * sy + dy, self.w * sx, self.h * sy,
                    (self.left_eye[0] * sx + dx, self.left_eye[1] * sy + dy),
                    (self.right_eye[0] * sx + dx, self.right_eye[1] * sy + dy),
                    self.detected, self.eyes_detected, self.confidence)

    @staticmethod
    def from_box(x: float, y: float, w: float, h: float, *, detected: bool) -> Face:
        return Face(x, y, w, h, (x + 0.31 * w, y + 0.39 * h), (x + 0.69 * w, y + 0.39 * h),
                    detected=detected)


def default_face(width: int, height: int) -> Face:
    """Where a face usually is in a selfie (upper centre), for when detection finds none."""
    side = 0.36 * min(width, height)
    return Face.from_box((width - side) / 2, height * 0.2, side, side, detected=False)


def detect_faces(rgb: Array) -> list[Face]:
    """Faces in an RGB uint8 image, the most confident first, one per person (empty when none are found).

    dlib's HOG detector where it loads (see `core.likeness`): it never takes a hand for a face, and when it
    sees a face it decides alone. Where it sees none (a pop-art grid of 40 px faces, a blocky render) or does
    not load, OpenCV's Haar cascades are asked, their windows ranked as below.
    """
    try:
        found = default_likeness().detect(np.ascontiguousarray(rgb, dtype=np.uint8))
    except LikenessError:
        found = []
    if not found:
        return detect_faces_haar(rgb)
    return [_from_dlib(box) for box in one_face_per_person(found)][:MAX_FUSE_PEOPLE]


def dlib_available() -> bool:
    """Whether faces come from dlib here (else from the Haar fallback)."""
    return default_likeness().available()


def _from_dlib(box: FaceBox) -> Face:
    """A dlib detection in the geometry overlays were drawn for: dlib's box is the inner face (brows to
    chin), a Haar box ~1.2 times wider with the eyes 0.38 of its height down; the eyes are the landmarks'."""
    side = 1.2 * box.width
    eyes = box.eyes
    if eyes is None:
        face = Face.from_box(box.left + box.width / 2 - side / 2, box.top - 0.2 * box.height, side, side,
                             detected=True)
        return Face(face.x, face.y, face.w, face.h, face.left_eye, face.right_eye, confidence=box.score)
    eye_y = (eyes[0][1] + eyes[1][1]) / 2
    cx = (box.left + box.right) / 2
    return Face(cx - side / 2, eye_y - 0.38 * side, side, side, eyes[0], eyes[1], detected=True,
                eyes_detected=True, confidence=box.score)


def detect_faces_haar(rgb: Array) -> list[Face]:
    """Faces by OpenCV's Haar cascades, the most confident first (the fallback where dlib does not load).

    A Haar cascade also fires on hands, ears and patterned cloth; what tells a face from those is a
    pair of eyes in the right place, how far through the cascade's last stage the window got (its
    level weight) and size. `confidence` adds the three, so a raised hand never outranks the face.
    """
    cascades = get_cascades()
    if cascades is None:
        return []
    face_cc, eye_cc = cascades
    h, w = rgb.shape[:2]
    scale = min(1.0, 512 / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(20, int(min(gray.shape) * 0.08))
    with _DETECT_LOCK:
        rects, votes = face_cc.detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(min_side, min_side))
        if len(rects) == 0:
            rects, votes = face_cc.detectMultiScale2(gray, scaleFactor=1.05, minNeighbors=4,
                                                     minSize=(min_side, min_side))
    if len(rects) == 0:
        return []
    # Neighbour votes are a good confidence: false positives (shuttles, patches) get few.
    best = int(np.max(votes))
    kept = [tuple(int(v) for v in r) for r, n in zip(rects, votes, strict=True) if n >= max(4, 0.3 * best)]
    faces: list[Face] = []
    for fx, fy, fw, fh in sorted(kept, key=lambda r: -r[2] * r[3]):
        weight = _level_weight(gray, face_cc, fx, fy, fw, fh)
        eyes = _detect_eyes(gray, eye_cc, fx, fy, fw, fh)
        if eyes is None:
            box = Face.from_box(fx, fy, fw, fh, detected=True)
            face = Face(fx, fy, fw, fh, box.left_eye, box.right_eye, confidence=weight)
        else:
            face = Face(fx, fy, fw, fh, eyes[0], eyes[1], eyes_detected=True, confidence=weight + _EYES_BONUS)
        faces.append(face.scaled(1 / scale, 1 / scale))
    if faces:  # keep faces comparable to the largest: small ones are usually false positives
        faces = [f for f in faces if f.w >= 0.55 * faces[0].w]
        # A selfie's face is its largest: size breaks ties between windows without eyes (a stylised
        # face against a hand beside it).
        faces = [Face(f.x, f.y, f.w, f.h, f.left_eye, f.right_eye, f.detected, f.eyes_detected,
                      f.confidence + _SIZE_BONUS * f.w / faces[0].w) for f in faces]
    faces.sort(key=lambda f: -f.confidence)
    return faces[:MAX_FUSE_PEOPLE]


_EYES_BONUS = 10.0  # a pair of eyes outweighs any level weight a non-face window reaches
_SIZE_BONUS = 3.0  # the largest window gets this much on top; one half its width, half of it


def main_face(rgb: Array) -> Face | None:
    """The one face an overlay or a crop is for: the most confident, eyes first; None if none."""
    faces = detect_faces(rgb)
    return faces[0] if faces else None


def _level_weight(gray: Array, face_cc: Any, x: int, y: int, w: int, h: int) -> float:
    """How clearly the window passes the cascade's last stage (detectMultiScale3's level weight)."""
    pad = max(2, w // 5)
    x0, y0 = max(0, x - pad), max(0, y - pad)
    roi = gray[y0:y + h + pad, x0:x + w + pad]
    with _DETECT_LOCK:
        found = face_cc.detectMultiScale3(roi, scaleFactor=1.05, minNeighbors=1,
                                          minSize=(int(w * 0.8), int(h * 0.8)),
                                          maxSize=(int(w * 1.25) + 1, int(h * 1.25) + 1),
                                          outputRejectLevels=True)
    weights = found[2]
    return float(np.max(weights)) if len(weights) else 0.0


def _detect_eyes(gray: Array, eye_cc: Any, fx: int, fy: int, fw: int, fh: int
                 ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if eye_cc is None:
        return None
    roi = gray[fy:fy + int(fh * 0.6), fx:fx + fw]
    if roi.size == 0:
        return None
    with _DETECT_LOCK:
        found = eye_cc.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=4,
                                        minSize=(max(6, fw // 9), max(6, fw // 9)),
                                        maxSize=(fw // 2, fw // 2))
    left: tuple[float, float, float] | None = None
    right: tuple[float, float, float] | None = None
    for ex, ey, ew, eh in found:
        cx, cy, size = ex + ew / 2, ey + eh / 2, float(ew * eh)
        if not 0.18 * fh <= cy <= 0.55 * fh:
            continue
        if cx < 0.5 * fw and 0.12 * fw <= cx and (left is None or size > left[2]):
            left = (cx, cy, size)
        elif cx >= 0.5 * fw and cx <= 0.88 * fw and (right is None or size > right[2]):
            right = (cx, cy, size)
    if left is None or right is None:
        return None
    if not 0.22 * fw <= right[0] - left[0] <= 0.65 * fw or abs(right[1] - left[1]) > 0.2 * fh:
        return None
    return (fx + left[0], fy + left[1]), (fx + right[0], fy + right[1])
