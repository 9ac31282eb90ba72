"""The offline engine: zero-cost, no-network avatars made with OpenCV and Pillow.

Every style has its own hand-built pipeline (face detection with OpenCV's Haar cascades, cheap
GrabCut segmentation where a style needs the person apart from the background, then colour,
line and texture work in numpy). Edits understand a fixed vocabulary (accessories drawn on the
detected face, colour adjustments and a caption); anything else raises `Unsupported`.

All pixel work runs in an executor, never on the event loop.
"""

from core.engines.offline.drawing import label_font
from core.engines.offline.edits import OFFLINE_EDIT_HELP, EditOp, apply_edits, edit_commentary, parse_edit
from core.engines.offline.engine import OfflineEngine, crop_to_ratio, decode_image, encode_image
from core.engines.offline.faces import MAX_FUSE_PEOPLE, Face, default_face, detect_faces, main_face
from core.engines.offline.fusion import fuse_array
from core.engines.offline.styles import stylize_array

__all__ = [
    "MAX_FUSE_PEOPLE",
    "OFFLINE_EDIT_HELP",
    "EditOp",
    "Face",
    "OfflineEngine",
    "apply_edits",
    "crop_to_ratio",
    "decode_image",
    "default_face",
    "detect_faces",
    "edit_commentary",
    "encode_image",
    "fuse_array",
    "label_font",
    "main_face",
    "parse_edit",
    "stylize_array",
]
