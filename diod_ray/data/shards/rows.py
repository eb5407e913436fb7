"""Clip shard schema (version 1): one Parquet row per clip. Documented in docs/data.md.

Frames are stored per frame as raw uint8 RGB bytes (``frame_codec="raw"``, H*W*3 bytes, row
major) inside a Parquet column compressed with zstd, or as PNG (``"png"``). Masks (motion ids,
GT ids) are raw per frame (``mask_codec="raw"``, zstd at the Parquet level), uint8 when every id
of the frame is below 256 and little-endian uint16 otherwise (the reader tells them apart by the
byte count; shards written before stored uint16 throughout), or PNG (``"png"``, 8- or 16-bit by
the same rule). The measured choice is in docs/data.md: raw + zstd decodes 4-15x
faster than PNG for ~1.5x the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from diod_ray.data.errors import ShardFormatError

SCHEMA_VERSION = 1
META_VERSION_KEY = b"diod_ray.schema_version"
FRAME_CODECS = ("raw", "png")
MASK_CODECS = ("raw", "png")
MAX_MASK_ID = 65535

SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int32(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("frame_start", pa.int32(), nullable=False),
        pa.field("frame_indices", pa.list_(pa.int32()), nullable=False),
        pa.field("num_frames", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("frame_codec", pa.string(), nullable=False),
        pa.field("mask_codec", pa.string(), nullable=False),
        pa.field("frames", pa.list_(pa.binary()), nullable=False),
        pa.field("motion", pa.list_(pa.binary()), nullable=False),
        # eval splits only (null otherwise)
        pa.field("gt", pa.list_(pa.binary()), nullable=True),
        pa.field("num_ids", pa.int32(), nullable=False),
        pa.field("gt_moving", pa.list_(pa.bool_()), nullable=True),
        pa.field("camera_motion", pa.bool_(), nullable=True),
    ],
    metadata={META_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)
COLUMNS = tuple(SCHEMA.names)


@dataclass
class Clip:
    """One clip in memory. Shapes: frames uint8 [T,H,W,3] RGB; motion int32 [T,H,W] (0 = bg);
    gt int32 [T,H,W] or None; gt_moving bool [T,G+1] or None (column 0 False)."""

    clip_id: str
    video_id: str
    frames: np.ndarray
    motion: np.ndarray
    gt: np.ndarray | None = None
    gt_moving: np.ndarray | None = None
    frame_start: int = 0
    frame_indices: list[int] | None = None
    source: str = "unknown"
    camera_motion: bool | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        t, h, w = self.frames.shape[:3]
        return t, h, w


# ------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------


def _encode_frame(img: np.ndarray, codec: str) -> bytes:
    if codec == "raw":
        return np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    ok, buf = cv2.imencode(".png", img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _encode_mask(mask: np.ndarray, codec: str) -> bytes:
    """One mask frame, no wider than its ids need: uint8 when every id < 256, else uint16."""
    mask = np.asarray(mask)
    narrow = mask.size == 0 or int(mask.max()) < 256
    m = np.ascontiguousarray(mask).astype("<u1" if narrow else "<u2")
    if codec == "raw":
        return m.tobytes()
    ok, buf = cv2.imencode(".png", m)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def check_clip(clip: Clip, where: str = "") -> None:
    """Shapes and dtypes agree; raises ShardFormatError naming the clip and field."""

    def bad(field: str, problem: str, expected: str) -> ShardFormatError:
        return ShardFormatError(
            f"clip {clip.clip_id!r}{where}: {problem}", field=field, expected=expected
        )

    f = np.asarray(clip.frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise bad("frames", f"frames have shape {f.shape} dtype {f.dtype}", "uint8 [T,H,W,3]")
    t, h, w = f.shape[:3]
    if t < 1 or h < 1 or w < 1:
        raise bad("frames", f"empty frames {f.shape}", "T,H,W >= 1")
    m = np.asarray(clip.motion)
    if m.shape != (t, h, w):
        raise bad("motion", f"motion masks have shape {m.shape}", f"[T,H,W] = {(t, h, w)}")
    if m.size and (m.min() < 0 or m.max() > MAX_MASK_ID):
        raise bad("motion", "mask ids out of range", f"0..{MAX_MASK_ID}")
    if clip.gt is not None:
        g = np.asarray(clip.gt)
        if g.shape != (t, h, w):
            raise bad("gt", f"GT masks have shape {g.shape}", f"[T,H,W] = {(t, h, w)}")
        if g.size and (g.min() < 0 or g.max() > MAX_MASK_ID):
            raise bad("gt", "GT ids out of range", f"0..{MAX_MASK_ID}")
        if clip.gt_moving is not None:
            mv = np.asarray(clip.gt_moving)
            if mv.ndim != 2 or mv.shape[0] != t or mv.shape[1] < int(g.max()) + 1:
                raise bad(
                    "gt_moving",
                    f"moving flags have shape {mv.shape}",
                    f"[T, G+1] with T={t}, G >= {int(g.max())}",
                )
    if clip.frame_indices is not None and len(clip.frame_indices) != t:
        raise bad("frame_indices", f"{len(clip.frame_indices)} frame indices", f"{t}")


def encode_clip(clip: Clip, frame_codec: str = "raw", mask_codec: str = "raw") -> dict:
    """A :class:`Clip` -> one row dict matching :data:`SCHEMA`."""
    if frame_codec not in FRAME_CODECS:
        raise ValueError(f"frame_codec {frame_codec!r} not in {FRAME_CODECS}")
    if mask_codec not in MASK_CODECS:
        raise ValueError(f"mask_codec {mask_codec!r} not in {MASK_CODECS}")
    check_clip(clip)
    t, h, w = clip.shape
    num_ids = 0
    moving = None
    if clip.gt is not None:
        num_ids = int(np.asarray(clip.gt).max()) if clip.gt.size else 0
        if clip.gt_moving is not None:
            mv = np.asarray(clip.gt_moving, dtype=bool)
            num_ids = max(num_ids, mv.shape[1] - 1)
            full = np.zeros((t, num_ids + 1), bool)
            full[:, : mv.shape[1]] = mv
            moving = full.reshape(-1).tolist()
    indices = (
        list(clip.frame_indices)
        if clip.frame_indices is not None
        else list(range(clip.frame_start, clip.frame_start + t))
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "clip_id": clip.clip_id,
        "video_id": clip.video_id,
        "source": clip.source,
        "frame_start": int(clip.frame_start),
        "frame_indices": [int(i) for i in indices],
        "num_frames": t,
        "height": h,
        "width": w,
        "frame_codec": frame_codec,
        "mask_codec": mask_codec,
        "frames": [_encode_frame(x, frame_codec) for x in clip.frames],
        "motion": [_encode_mask(x, mask_codec) for x in clip.motion],
        "gt": None if clip.gt is None else [_encode_mask(x, mask_codec) for x in clip.gt],
        "num_ids": num_ids,
        "gt_moving": moving,
        "camera_motion": clip.camera_motion,
    }


def rows_to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------


def check_table_schema(schema: pa.Schema, file: str, uri: str | None = None) -> None:
    """The file's schema is this version's: version in the key-value metadata, all columns."""
    meta = schema.metadata or {}
    version = meta.get(META_VERSION_KEY)
    if version is None:
        raise ShardFormatError(
            "no diod_ray schema version in the Parquet metadata (not a diod_ray shard?)",
            uri=uri,
            file=file,
            expected=f"metadata {META_VERSION_KEY.decode()}={SCHEMA_VERSION}",
        )
    if version.decode() != str(SCHEMA_VERSION):
        raise ShardFormatError(
            f"schema version {version.decode()}",
            uri=uri,
            file=file,
            expected=f"version {SCHEMA_VERSION}; re-create the shards with this diod_ray",
        )
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise ShardFormatError(
            f"missing columns {missing}", uri=uri, file=file, expected=f"columns {list(COLUMNS)}"
        )


def _decode_frame(buf: bytes, codec: str, h: int, w: int) -> np.ndarray:
    if codec == "raw":
        if len(buf) != h * w * 3:
            raise ValueError(f"{len(buf)} bytes, expected {h * w * 3} for {h}x{w}x3 uint8")
        return np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("unreadable PNG")
    if img.shape[:2] != (h, w):
        raise ValueError(f"PNG of {img.shape[0]}x{img.shape[1]}, expected {h}x{w}")
    return img[..., ::-1]


def _decode_mask(buf: bytes, codec: str, h: int, w: int) -> np.ndarray:
    if codec == "raw":  # uint8 (h*w bytes) or uint16 (2*h*w bytes, and every older shard)
        if len(buf) == h * w:
            return np.frombuffer(buf, np.uint8).reshape(h, w)
        if len(buf) != h * w * 2:
            raise ValueError(
                f"{len(buf)} bytes, expected {h * w} (uint8) or {h * w * 2} (uint16) for {h}x{w}"
            )
        return np.frombuffer(buf, "<u2").reshape(h, w)
    m = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ValueError("unreadable PNG")
    if m.shape[:2] != (h, w):
        raise ValueError(f"PNG of {m.shape[0]}x{m.shape[1]}, expected {h}x{w}")
    return m


def decode_row(
    row: dict, *, file: str | None = None, row_index: int | None = None, uri: str | None = None
) -> Clip:
    """One row dict (as from ``Table.to_pylist()``) -> :class:`Clip`; every inconsistency raises
    :class:`ShardFormatError` naming the file, row and field."""

    def bad(field: str, problem: str, expected: str | None = None) -> ShardFormatError:
        cid = row.get("clip_id")
        return ShardFormatError(
            f"clip {cid!r}: {problem}",
            uri=uri,
            file=file,
            row=row_index,
            field=field,
            expected=expected,
        )

    version = row.get("schema_version")
    if version != SCHEMA_VERSION:
        raise bad("schema_version", f"schema version {version}", f"{SCHEMA_VERSION}")
    t, h, w = row["num_frames"], row["height"], row["width"]
    fcodec, mcodec = row["frame_codec"], row["mask_codec"]
    if fcodec not in FRAME_CODECS:
        raise bad("frame_codec", f"unknown codec {fcodec!r}", f"one of {FRAME_CODECS}")
    if mcodec not in MASK_CODECS:
        raise bad("mask_codec", f"unknown codec {mcodec!r}", f"one of {MASK_CODECS}")

    def frames_of(field: str, decode, items) -> np.ndarray:
        if items is None or len(items) != t:
            n = None if items is None else len(items)
            raise bad(field, f"{n} frames", f"num_frames = {t}")
        out = []
        for i, buf in enumerate(items):
            try:
                out.append(decode(buf, fcodec if field == "frames" else mcodec, h, w))
            except ValueError as exc:
                raise bad(field, f"frame {i}: {exc}") from exc
        return np.stack(out)

    frames = frames_of("frames", _decode_frame, row["frames"])
    motion = frames_of("motion", _decode_mask, row["motion"]).astype(np.int32)
    gt = moving = None
    if row.get("gt") is not None:
        gt = frames_of("gt", _decode_mask, row["gt"]).astype(np.int32)
        g = int(row["num_ids"])
        if gt.size and int(gt.max()) > g:
            raise bad("num_ids", f"GT id {int(gt.max())} above num_ids {g}")
        mv = row.get("gt_moving")
        if mv is not None:
            if len(mv) != t * (g + 1):
                raise bad("gt_moving", f"{len(mv)} flags", f"T*(num_ids+1) = {t * (g + 1)}")
            moving = np.asarray(mv, dtype=bool).reshape(t, g + 1)
    return Clip(
        clip_id=row["clip_id"],
        video_id=row["video_id"],
        frames=frames,
        motion=motion,
        gt=gt,
        gt_moving=moving,
        frame_start=row["frame_start"],
        frame_indices=list(row["frame_indices"]),
        source=row["source"],
        camera_motion=row.get("camera_motion"),
    )
