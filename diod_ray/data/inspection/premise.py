"""Does DIOD's premise hold on a data set? Two fixed pixel classifiers, object vs background.

DIOD transfers objectness learnt on moving objects to static ones, which needs objects (static
ones included) to look unlike the background. Two classifiers measure it, each with fixed
features and a fixed model (scikit-learn's ``HistGradientBoostingClassifier``, fixed
hyper-parameters and ``random_state``), trained on a fixed-seed sample of pixels of the first
``TRAIN_CLIPS`` clips of one split and scored (ROC AUC) on a fixed-seed sample of another's:

- ``colour``: the pixel's RGB and HSV (6 features). High when colour alone gives objects away.
- ``appearance``: colour plus local texture energy at three window sizes (|Laplacian| and
  gradient magnitude of the grey level, box-filtered; the local colour standard deviation):
  6 + 3 x 3 = 15 features. High when objects look unlike the background.

Each is scored on all object pixels and on static object pixels only (against all background
pixels). The premise holds when ``appearance`` reaches APPEARANCE_MIN on both and ``colour``
stays at or below COLOUR_MAX on both: objects are told apart by how they look, not by their
colour. scikit-learn is the optional ``premise`` extra; :func:`premise_report` raises
:class:`PremiseUnavailable` (an ImportError) without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

# box-filter windows (px at the frame's resolution) of the texture features
WINDOWS = (3, 7, 15)
# clips of the training split used, pixels sampled per clip (half object, half background)
TRAIN_CLIPS = 64
TRAIN_PIXELS_PER_CLIP = 2048
# at most this many clips of the scored split, pixels sampled per clip (uniform over all pixels)
EVAL_CLIPS = 64
EVAL_PIXELS_PER_CLIP = 4096
SEED = 0
MODEL_PARAMS = {
    "max_iter": 200,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 0.0,
    "early_stopping": False,
    "random_state": 0,
}
APPEARANCE_MIN = 0.9
COLOUR_MAX = 0.75
RULE = f"appearance AUC >= {APPEARANCE_MIN} and colour AUC <= {COLOUR_MAX} (all and static)"
EXTRA_HINT = "install the 'premise' extra (pip install -e '.[premise]': scikit-learn)"

# one clip: frames uint8 [T,H,W,3] RGB, GT ids int [T,H,W] (0 = background), moving flags
# bool [T,G+1] or None
ClipArrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class PremiseUnavailable(ImportError):
    """scikit-learn (the ``premise`` extra) is not installed."""


def colour_features(frames: np.ndarray) -> np.ndarray:
    """uint8 [T,H,W,3] RGB -> float32 [T,H,W,6]: R, G, B, H, S, V, each in [0, 1]."""
    out = np.empty(frames.shape[:3] + (6,), np.float32)
    for t, f in enumerate(frames):
        out[t, ..., :3] = f / 255.0
        out[t, ..., 3:] = cv2.cvtColor(f, cv2.COLOR_RGB2HSV) / np.float32([180, 255, 255])
    return out


def appearance_features(frames: np.ndarray) -> np.ndarray:
    """uint8 [T,H,W,3] RGB -> float32 [T,H,W,15]: the colour features, then for each window of
    WINDOWS the box-filtered |Laplacian| and gradient magnitude of the grey level and the local
    colour standard deviation (mean over the channels), all in grey levels / 255."""
    n = 6 + 3 * len(WINDOWS)
    out = np.empty(frames.shape[:3] + (n,), np.float32)
    out[..., :6] = colour_features(frames)
    for t, f in enumerate(frames):
        rgb = f.astype(np.float32) / 255.0
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=1))
        grad = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        sq = rgb * rgb
        for j, w in enumerate(WINDOWS):
            k = (w, w)
            mean = cv2.blur(rgb, k)
            var = np.maximum(cv2.blur(sq, k) - mean * mean, 0.0)  # [H,W,3]
            out[t, ..., 6 + 3 * j] = cv2.blur(lap, k)
            out[t, ..., 7 + 3 * j] = cv2.blur(grad, k)
            out[t, ..., 8 + 3 * j] = np.sqrt(var).mean(-1)
    return out


FEATURES = {"colour": colour_features, "appearance": appearance_features}


def _labels(gt: np.ndarray, moving: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Object pixels bool [T,H,W] and static-object pixels (None without moving flags)."""
    obj = gt > 0
    if moving is None:
        return obj, None
    moving = np.asarray(moving, bool)
    t_idx = np.arange(gt.shape[0])[:, None, None]
    return obj, obj & ~moving[t_idx, gt]


def _sample(clips: Iterable[ClipArrays], per_clip: int, balanced: bool, seed: int) -> dict:
    """Features of a fixed-seed pixel sample of each clip: {"colour": [N,6], "appearance":
    [N,15], "object": bool [N], "static": bool [N] or None, "clips": n}."""
    feats = {name: [] for name in FEATURES}
    obj_all, sta_all, n_clips, with_flags = [], [], 0, True
    for i, (frames, gt, moving) in enumerate(clips):
        rng = np.random.default_rng([seed, i])
        obj, sta = _labels(np.asarray(gt), moving)
        flat = obj.ravel()
        if balanced:
            fg, bg = np.flatnonzero(flat), np.flatnonzero(~flat)
            half = per_clip // 2
            idx = np.concatenate([
                rng.choice(fg, min(half, len(fg)), replace=False) if len(fg) else fg,
                rng.choice(bg, min(per_clip - half, len(bg)), replace=False) if len(bg) else bg,
            ])  # fmt: skip
        else:
            idx = rng.choice(flat.size, min(per_clip, flat.size), replace=False)
        for name, fn in FEATURES.items():
            f = fn(np.asarray(frames))
            feats[name].append(f.reshape(-1, f.shape[-1])[idx])
        obj_all.append(flat[idx])
        with_flags = with_flags and sta is not None
        if sta is not None:
            sta_all.append(sta.ravel()[idx])
        n_clips += 1
    if n_clips == 0:
        raise ValueError("premise: no clips to sample pixels from")
    out = {name: np.concatenate(v) for name, v in feats.items()}
    out["object"] = np.concatenate(obj_all)
    out["static"] = np.concatenate(sta_all) if with_flags else None
    out["clips"] = n_clips
    return out


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if y.all() or not y.any():
        return None
    return round(float(roc_auc_score(y, score)), 4)


def premise_report(train: Iterable[ClipArrays], scored: Iterable[ClipArrays]) -> dict:
    """Train both classifiers on ``train`` (the first TRAIN_CLIPS clips are used), score them on
    ``scored`` (the first EVAL_CLIPS); AUCs on all and on static objects and the verdict."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise PremiseUnavailable(f"premise: scikit-learn is not installed; {EXTRA_HINT}") from exc
    import itertools

    tr = _sample(itertools.islice(train, TRAIN_CLIPS), TRAIN_PIXELS_PER_CLIP, True, SEED)
    ev = _sample(itertools.islice(scored, EVAL_CLIPS), EVAL_PIXELS_PER_CLIP, False, SEED + 1)
    if tr["object"].all() or not tr["object"].any():
        raise ValueError("premise: the training clips need both object and background pixels")
    out = {
        "train_clips": tr["clips"],
        "train_pixels": int(len(tr["object"])),
        "scored_clips": ev["clips"],
        "scored_pixels": int(len(ev["object"])),
    }
    background = ~ev["object"]
    for name in FEATURES:
        model = HistGradientBoostingClassifier(**MODEL_PARAMS)
        # one OpenMP thread: the same result on any machine, and no spinning threads fighting
        # over a busy CPU (a few seconds per model at the default sample sizes)
        with threadpool_limits(limits=1, user_api="openmp"):
            model.fit(tr[name], tr["object"])
            score = model.predict_proba(ev[name])[:, 1]
        out[f"{name}_auc"] = _auc(ev["object"], score)
        static_auc = None
        if ev["static"] is not None:
            keep = ev["static"] | background
            static_auc = _auc(ev["static"][keep], score[keep])
        out[f"{name}_auc_static"] = static_auc
    out["premise_holds"] = verdict(out)
    out["rule"] = RULE
    return out


def verdict(report: dict) -> bool | None:
    """RULE on a report's AUCs (the static ones where known); None when an AUC is missing."""
    app = [report.get("appearance_auc"), report.get("appearance_auc_static")]
    col = [report.get("colour_auc"), report.get("colour_auc_static")]
    if app[0] is None or col[0] is None:
        return None
    app = [a for a in app if a is not None]
    col = [c for c in col if c is not None]
    return bool(min(app) >= APPEARANCE_MIN and max(col) <= COLOUR_MAX)
