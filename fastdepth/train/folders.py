"""Image sequences in folders, for training on your own videos (and KITTI raw).

Two layouts are recognised under ``root``:

* generic: ``root/<sequence>/*.png|*.jpg`` (frames in name order) with an intrinsics file
  ``intrinsics.txt`` in the sequence folder or in ``root``: either a 3x3 matrix K in pixels of
  the original images (9 numbers) or ``fx fy cx cy`` (4 numbers);
* KITTI raw: ``root/<date>/<drive>/image_02/data/*.png`` with ``root/<date>/calib_cam_to_cam.txt``
  (its ``P_rect_02`` gives K).

Or, with a split file (Monodepth2's ``splits/<split>/train_files.txt``), the KITTI raw frames it
names: a line ``<date>/<drive> <frame> <l|r>`` is the target frame ``<frame>`` of the left
(``image_02``, K from ``P_rect_02``) or right (``image_03``, ``P_rect_03``) colour camera, with the
frames before and after it (``.png`` or ``.jpg``, as Monodepth2 converts them).

Frames are resized to (height, width) and K is scaled with them. A sample is a triplet of
consecutive frames, like :class:`fastdepth.train.synthetic.SyntheticWorld` (without ground truth).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from fastdepth.train.synthetic import check_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INTRINSICS_FILE = "intrinsics.txt"
KITTI_CALIB = "calib_cam_to_cam.txt"


def image_files(folder: Path) -> list[Path]:
    """The images of a folder (IMAGE_SUFFIXES, any case), in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def parse_intrinsics(path: Path) -> torch.Tensor:
    """K (3, 3) from an intrinsics file (9 numbers: K; or 4: fx fy cx cy); ValueError when malformed."""
    if not path.is_file():
        raise FileNotFoundError(f"missing intrinsics file {path} (a 3x3 K, or 'fx fy cx cy', in pixels)")
    try:
        values = [float(v) for v in path.read_text().replace(",", " ").split()]
    except ValueError as error:
        raise ValueError(f"bad intrinsics in {path}: {error}") from None
    if len(values) == 4:
        fx, fy, cx, cy = values
        K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    elif len(values) == 9:
        K = torch.tensor(values).reshape(3, 3)
    else:
        raise ValueError(f"bad intrinsics in {path}: expected 9 numbers (K) or 4 (fx fy cx cy), got {len(values)}")
    return check_intrinsics(K, path)


def check_intrinsics(K: torch.Tensor, source: Path) -> torch.Tensor:
    if not torch.isfinite(K).all():
        raise ValueError(f"bad intrinsics in {source}: not finite")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"bad intrinsics in {source}: focal lengths must be positive, got {K[0, 0]}, {K[1, 1]}")
    return K


def parse_kitti_calibration(path: Path, camera: str = "02") -> torch.Tensor:
    """K (3, 3) of a colour camera (02: left, 03: right) from KITTI's ``calib_cam_to_cam.txt``
    (``P_rect_<camera>``)."""
    if not path.is_file():
        raise FileNotFoundError(f"missing KITTI calibration {path}")
    key = f"P_rect_{camera}"
    for line in path.read_text().splitlines():
        if line.startswith(f"{key}:"):
            try:
                values = [float(v) for v in line.split(":", 1)[1].split()]
            except ValueError as error:
                raise ValueError(f"bad {key} in {path}: {error}") from None
            if len(values) != 12:
                raise ValueError(f"bad {key} in {path}: expected 12 numbers, got {len(values)}")
            return check_intrinsics(torch.tensor(values).reshape(3, 4)[:, :3].contiguous(), path)
    raise ValueError(f"bad KITTI calibration {path}: no {key} line")


def dataset_folder(root: Path) -> Path:
    """``root`` as a Path; FileNotFoundError unless it is a folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    return root


def find_sequences(root: Path) -> list[tuple[list[Path], torch.Tensor]]:
    """(frames, K in original pixels) of every sequence of at least 3 frames under ``root``."""
    root = dataset_folder(root)
    sequences = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        frames = image_files(folder)
        if len(frames) < 3:
            continue
        if folder.name == "data" and folder.parent.name == "image_02":  # KITTI raw
            K = parse_kitti_calibration(folder.parent.parent.parent / KITTI_CALIB)
        else:
            local = folder / INTRINSICS_FILE
            K = parse_intrinsics(local if local.is_file() else root / INTRINSICS_FILE)
        sequences.append((frames, K))
    if not sequences:
        raise ValueError(
            f"no image sequence of 3 or more frames under {root} (expected <sequence>/*.png with {INTRINSICS_FILE}, "
            "or KITTI raw's <date>/<drive>/image_02/data/*.png)"
        )
    return sequences


KITTI_CAMERAS = {"l": "02", "r": "03"}  # a split file's side: the colour camera


def read_split(split: Path) -> list[tuple[str, str, int, str]]:
    """(where: file and line, drive, frame, camera) of every line of a split file (see the module's
    docstring); ValueError naming the line that is not ``<date>/<drive> <frame> <l|r>``."""
    split = Path(split)
    if not split.is_file():
        raise FileNotFoundError(f"split file {split} does not exist")
    lines = []
    for number, line in enumerate(split.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{split}:{number}"
        if len(fields) != 3 or not fields[1].isdigit() or fields[2] not in KITTI_CAMERAS:
            raise ValueError(f"{where}: expected '<date>/<drive> <frame> <l|r>', got {line.strip()!r}")
        lines.append((where, fields[0], int(fields[1]), KITTI_CAMERAS[fields[2]]))
    if not lines:
        raise ValueError(f"split file {split} names no frame")
    return lines


def kitti_frame(root: Path, drive: str, camera: str, index: int, where: str) -> Path:
    """KITTI raw's frame ``index`` of a drive's colour camera (.png, or .jpg as Monodepth2 converts them)."""
    folder = root / drive / f"image_{camera}" / "data"
    for suffix in (".png", ".jpg"):
        if (folder / f"{index:010d}{suffix}").is_file():
            return folder / f"{index:010d}{suffix}"
    raise ValueError(f"{where}: no frame {index:010d}.png or .jpg in {folder}")


def kitti_split_frames(root: Path, split: Path) -> list[Path]:
    """The target frame of every line of a split file (Monodepth2's test files, for prediction)."""
    root = dataset_folder(root)
    return [kitti_frame(root, drive, camera, frame, where) for where, drive, frame, camera in read_split(split)]


def kitti_split_triplets(root: Path, split: Path) -> list[tuple[list[Path], torch.Tensor]]:
    """([previous, target, next] frame, K in original pixels) of every line of a split file;
    ValueError naming the line where a frame or the calibration is missing."""
    root = dataset_folder(root)
    calibrations: dict[tuple[str, str], torch.Tensor] = {}
    triplets = []
    for where, drive, frame, camera in read_split(split):
        if frame == 0:
            raise ValueError(f"{where}: frame 0 has no frame before it")
        frames = [kitti_frame(root, drive, camera, index, where) for index in (frame - 1, frame, frame + 1)]
        date = Path(drive).parts[0]
        if (date, camera) not in calibrations:
            calibrations[(date, camera)] = parse_kitti_calibration(root / date / KITTI_CALIB, camera)
        triplets.append((frames, calibrations[(date, camera)]))
    return triplets


def load_image(path: Path) -> torch.Tensor:
    """(H, W, 3) uint8; ValueError naming the file if it is not a readable image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            data = rgb.tobytes()
    except (OSError, SyntaxError) as error:  # PIL: unidentified, truncated or corrupt files
        raise ValueError(f"cannot read image {path}: {error}") from error
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(rgb.height, rgb.width, 3)


def load_frame(path: Path, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(3, height, width) float in [0, 1] (bilinear, antialiased) and the image's own (H, W)."""
    raw = load_image(path).permute(2, 0, 1).float() / 255.0
    size = raw.shape[-2:]
    resized = F.interpolate(raw[None], (height, width), mode="bilinear", align_corners=False, antialias=True)
    return resized[0], (int(size[0]), int(size[1]))


class ImageFolderSequences(torch.utils.data.Dataset):
    """Frame triplets from image sequences in folders, or those of a split file; items like
    SyntheticWorld's, without ground truth."""

    def __init__(self, root: str | Path, height: int = 192, width: int = 640, split: str | Path | None = None):
        check_size(height, width)
        self.sequences = find_sequences(Path(root)) if split is None else kitti_split_triplets(Path(root), Path(split))
        self.height, self.width = height, width
        self.index = [(s, i) for s, (frames, _) in enumerate(self.sequences) for i in range(1, len(frames) - 1)]

    def __len__(self) -> int:
        return len(self.index)

    def _frame(self, path: Path) -> tuple[torch.Tensor, tuple[int, int]]:
        return load_frame(path, self.height, self.width)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        s, i = self.index[item]
        frames, K = self.sequences[s]
        images, sizes = zip(*(self._frame(frames[j]) for j in (i - 1, i, i + 1)), strict=True)
        h, w = sizes[1]
        scaled = K.clone()
        scaled[0] *= self.width / w
        scaled[1] *= self.height / h
        if not math.isfinite(float(scaled.sum())):
            raise ValueError(f"bad intrinsics for {frames[i]}")
        return {"frames": torch.stack(images), "K": scaled}
