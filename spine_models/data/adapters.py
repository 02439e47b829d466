"""Turn every ``--data`` argument the SPEC accepts into one :class:`SpineDataset`.

Why: trainers, evaluators, splits and the leakage check are written once against ``SpineDataset``;
this module is the only place that knows folder layouts. Accepted layouts (detected per path, then
concatenated in the order given):

- class-per-folder tree ``DIR/<class>/*`` (nested sub-folders allowed; names with commas/spaces fine);
- the synth layout (``images/`` + ``labels.csv`` [+ ``masks/``, ``landmarks.csv``, ``coco.json``, ``yolo/``]);
- YOLO (``data.yaml``, or a folder holding one);
- COCO (a ``*.json`` file, or a folder holding one with ``images``/``annotations``/``categories``);
- two-view patients ``DIR/<label>/<patient>/`` with an AP and a lateral image (tolerant names);
- MRI DICOM study folders (delegated to :func:`spine_models.data.mri.load_mri_dataset`);
- ZIP archives of any of these (extracted safely to a cache keyed by the archive's sha256).

Patient ids (all samples of one patient stay on one side of a split):

- class folders: the file stem with whitespace collapsed, minus a trailing ``_<k>_<j>`` view index
  (fraiwan-ap: ``N12,N,F,14_1_0.jpg`` -> ``N12,N,F,14``) and minus augmentation suffixes such as
  ``_aug3``/``_flip``/``_copy``. The leading token (``N1``) is *not* used: fraiwan's SOURCE.md says one
  image per subject and ``N1,N,40,M`` / ``N1,N,F,21`` are two different subjects. The same stem under
  two class folders is treated as one patient (the safe direction for leakage).
- synth: the ``patient_id`` column (it links AP and lateral films of one phantom patient).
- YOLO/COCO: the image stem (minus the same suffixes); two-view: the patient folder name.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from spine_models.data.records import DISC_STATES, BoxLabel, Sample, SpineDataset
from spine_models.errors import DatasetError

__all__ = [
    "load_dataset",
    "dataset_fingerprint",
    "concat_datasets",
    "canonical_class",
    "canonical_box_class",
    "patient_id_from_name",
    "view_from_name",
    "order_classes",
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "SPEC_CLASSES",
]

SPEC_CLASSES: tuple[str, ...] = ("normal", "scoliosis", "spondylolisthesis")
SPEC_BOX_CLASSES: tuple[str, ...] = ("lumbar_implant", "scoliosis", "vertebra")
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".webp"}
)
LAYOUTS = (
    "class folders DIR/<class>/*, the synth layout (images/ + labels.csv), YOLO data.yaml, "
    "COCO *.json, two-view DIR/<label>/<patient>/{ap,lat}.*, MRI DICOM study folders, or a ZIP of these"
)
_IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
_VIEW_INDEX = re.compile(r"_\d+_\d+$")
_AUG_SUFFIX = re.compile(r"[ _\-.]?(aug(mented)?|copy|flip(ped)?|rot(ated)?)[ _\-]?\d*$", re.IGNORECASE)
_AP_TOKENS = {"ap", "pa", "apview", "paview", "anteroposterior", "posteroanterior", "frontal", "coronal"}
_LAT_TOKENS = {"lat", "lateral", "latview", "lateralview", "sagittal", "side", "lt", "lat.", "ll", "rl"}


# ----------------------------------------------------------------------------------------- names
def canonical_class(name: str) -> str:
    """Map a folder/CSV class name to the SPEC spelling ("Normal" -> normal, "Scoliosis" -> scoliosis)."""
    low = " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    if low in {"normal", "healthy", "negative", "norm", "n"}:
        return "normal"
    if low.startswith("scolio") or low in {"sco", "s"}:
        return "scoliosis"
    if low.startswith("spondylo") or low.startswith("spondilo") or low in {"spondy", "listhesis"}:
        return "spondylolisthesis"
    return low.replace(" ", "_")


def canonical_box_class(name: str) -> str:
    """Map a detection label to the SPEC map: "Lum"/"implant" -> lumbar_implant, "sco" -> scoliosis."""
    low = " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())
    if low in {"lum", "lumbar implant", "implant", "lumbarimplant", "lumbar"}:
        return "lumbar_implant"
    if low.startswith("sco"):
        return "scoliosis"
    if low.startswith("vert"):
        return "vertebra"
    return low.replace(" ", "_")


def order_classes(names: Iterable[str], spec: Sequence[str] = SPEC_CLASSES) -> list[str]:
    """SPEC classes first in SPEC order, then any others sorted."""
    present = set(n for n in names if n)
    spec = tuple(spec) + tuple(c for c in DISC_STATES if c not in spec)  # ``normal`` is shared with the X-ray classes
    return [c for c in spec if c in present] + sorted(present - set(spec))


def patient_id_from_name(name: str) -> str:
    """Patient id from an image file name (see the module docstring for the rule and why)."""
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name
    stem = " ".join(stem.split())
    for _ in range(2):
        stem = _VIEW_INDEX.sub("", stem)
        stem = _AUG_SUFFIX.sub("", stem) or stem
    return stem.strip() or Path(name).stem


def view_from_name(name: str) -> str | None:
    """Tolerant AP/lateral recognition: ``ap.png``, ``AP .png``, ``LAT.PNG``, ``ap view.jpg``, ``P3_lateral``."""
    stem = Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS else name
    low = stem.lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", low) if t]
    compact = "".join(tokens)
    is_ap = compact in _AP_TOKENS or any(t in _AP_TOKENS for t in tokens)
    is_lat = compact in _LAT_TOKENS or any(t in _LAT_TOKENS for t in tokens)
    if not (is_ap or is_lat):  # names glued to an id: "p3ap", "case7lateral"
        is_ap = compact.endswith(("ap", "apview")) or compact.startswith("ap")
        is_lat = compact.endswith(("lat", "lateral", "latview")) or compact.startswith("lat")
    if is_ap and not is_lat:
        return "ap"
    if is_lat and not is_ap:
        return "lat"
    return None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _visible(children: Iterable[Path]) -> list[Path]:
    return sorted(c for c in children if c.name not in _IGNORED_NAMES and not c.name.startswith("."))


def _images_in(d: Path, recursive: bool = False) -> list[Path]:
    it = d.rglob("*") if recursive else d.iterdir()
    return sorted(p for p in it if _is_image(p) and not any(part in _IGNORED_NAMES for part in p.parts))


def _is_dicom_file(p: Path) -> bool:
    if p.suffix.lower() in {".dcm", ".dicom"}:
        return True
    if p.suffix:
        return False
    try:
        with open(p, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- ZIP
def _extract_dataset_zip(zip_path: Path) -> Path:
    """A dataset ZIP, extracted once into ``<cache>/datasets/<sha256[:16]>`` by the package's one ZIP
    extractor (``spine_models.io.archive``, its limits); a member that tries to escape refuses the archive."""
    from spine_models._env import cache_dir
    from spine_models.io.archive import extract_zip_once

    return extract_zip_once(zip_path, cache_dir() / "datasets", refuse_unsafe=True)


def _unwrap(d: Path) -> Path:
    """Descend through folders that only wrap one sub-folder (``data.zip`` -> ``data/``)."""
    from spine_models.io.archive import COMPLETE_MARKER

    while True:
        kids = [k for k in _visible(d.iterdir()) if k.name != COMPLETE_MARKER]
        if len(kids) == 1 and kids[0].is_dir() and not _images_in(kids[0]):
            d = kids[0]
        else:
            return d


# ------------------------------------------------------------------------------------ readers
def _num(v: str | None) -> Any:
    if v is None:
        return None
    s = str(v).strip()
    if s == "" or s.lower() in {"nan", "none", "null", "na"}:
        return None
    try:
        f = float(s)
    except ValueError:
        return s
    return int(f) if f.is_integer() and re.fullmatch(r"[+-]?\d+", s) else f


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in csv.DictReader(fh)]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # PIL raises many types for bad files
        raise DatasetError(f"cannot read the image size ({exc}); the file is not a readable image", path) from exc


def _coco_boxes(coco_path: Path) -> tuple[dict[str, list[BoxLabel]], dict[str, dict[str, Any]], list[str]]:
    """COCO json -> ({file stem: boxes}, {file stem: image record}, box classes)."""
    try:
        coco = json.loads(coco_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"not a readable COCO json ({exc})", coco_path) from exc
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise DatasetError("json has no 'images'/'annotations' lists; a COCO detection file is expected", coco_path)
    cats = {c["id"]: canonical_box_class(c.get("name", str(c["id"]))) for c in coco.get("categories", [])}
    images = {im["id"]: im for im in coco["images"]}
    by_stem: dict[str, list[BoxLabel]] = {Path(im["file_name"]).stem: [] for im in coco["images"]}
    recs = {Path(im["file_name"]).stem: im for im in coco["images"]}
    for ann in coco["annotations"]:
        im = images.get(ann.get("image_id"))
        if im is None or "bbox" not in ann:
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        label = cats.get(ann.get("category_id"), str(ann.get("category_id")))
        by_stem[Path(im["file_name"]).stem].append(BoxLabel(x, y, x + w, y + h, label))
    return by_stem, recs, sorted(set(cats.values()))


def _yolo_boxes(label_file: Path, names: dict[int, str], size: tuple[int, int]) -> list[BoxLabel]:
    w, h = size
    out: list[BoxLabel] = []
    if not label_file.is_file():
        return out
    for ln, line in enumerate(label_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 5:
            raise DatasetError(f"line {ln}: expected 'class cx cy w h', got {line!r}", label_file)
        cid = int(float(parts[0]))
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        out.append(BoxLabel((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h,
                            names.get(cid, str(cid))))
    return out


def _load_synth(root: Path, source: str) -> SpineDataset:
    rows = _read_csv(root / "labels.csv")
    if not rows:
        raise DatasetError("labels.csv is empty; the synth layout needs one row per image", root / "labels.csv")
    images = {p.stem: p for p in _images_in(root / "images")}
    structures = sorted(d.name for d in _visible((root / "masks").iterdir()) if d.is_dir()) if (root / "masks").is_dir() else []
    landmarks: dict[str, dict[str, list[tuple[float, float]]]] = {}
    if (root / "landmarks.csv").is_file():
        for r in _read_csv(root / "landmarks.csv"):
            pts = [(float(r[f"x{i}"]), float(r[f"y{i}"])) for i in range(1, 5)]
            landmarks.setdefault(r["id"], {})[r["vertebra"]] = pts
    boxes: dict[str, list[BoxLabel]] = {}
    box_classes: list[str] = []
    if (root / "coco.json").is_file():
        boxes, _, box_classes = _coco_boxes(root / "coco.json")
    elif (root / "yolo" / "data.yaml").is_file():
        yds = _load_yolo(root / "yolo" / "data.yaml", source)
        boxes = {Path(s.path).stem: s.boxes for s in yds.samples if s.path}
        box_classes = yds.box_classes
    samples: list[Sample] = []
    problems: list[str] = []
    reserved = {"id", "patient_id", "view", "class", "label"}
    for r in rows:
        sid = r.get("id", "").strip()
        path = images.get(sid)
        if path is None:
            problems.append(f"{root / 'images'}: no image for labels.csv id {sid!r}")
            continue
        meta = {k: _num(v) for k, v in r.items() if k not in reserved and k}
        masks = {s: root / "masks" / s / f"{sid}.png" for s in structures if (root / "masks" / s / f"{sid}.png").is_file()}
        label = r.get("class") or r.get("label")
        samples.append(Sample(
            id=sid, patient_id=(r.get("patient_id") or sid).strip(), path=path,
            view=(r.get("view") or "").strip().lower() or None,
            label=canonical_class(label) if label else None, masks=masks, boxes=boxes.get(sid, []),
            landmarks=landmarks.get(sid, {}), meta=meta, source=source,
        ))
    return SpineDataset(name=root.name, samples=samples, structures=structures, box_classes=box_classes,
                        problems=problems, root=str(root))


def _yolo_image_list(base: Path, entry: Any) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        if e is None:
            continue
        p = Path(e) if Path(str(e)).is_absolute() else base / str(e)
        if p.is_dir():
            out += _images_in(p, recursive=True)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    out.append(q if q.is_absolute() else (base / q))
    return out


def _load_yolo(yaml_path: Path, source: str) -> SpineDataset:
    import yaml

    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"not a readable YOLO data.yaml ({exc})", yaml_path) from exc
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise DatasetError("YOLO data.yaml has no 'names'; list the class names", yaml_path)
    names_raw = cfg["names"]
    names = {int(k): canonical_box_class(v) for k, v in (names_raw.items() if isinstance(names_raw, dict) else enumerate(names_raw))}
    base = yaml_path.parent
    if cfg.get("path"):
        p = Path(str(cfg["path"]))
        cand = p if p.is_absolute() else base / p
        base = cand if cand.is_dir() else base
    samples: list[Sample] = []
    seen: set[Path] = set()
    for split in ("train", "val", "test"):
        for img in _yolo_image_list(base, cfg.get(split)):
            key = img.resolve()
            if key in seen or not img.is_file():
                continue
            seen.add(key)
            parts = list(img.parts)
            idx = max((i for i, q in enumerate(parts) if q == "images"), default=None)
            label_file = (Path(*parts[:idx], "labels", *parts[idx + 1:]) if idx is not None else img).with_suffix(".txt")
            boxes = _yolo_boxes(label_file, names, _image_size(img))
            samples.append(Sample(id=img.stem, patient_id=patient_id_from_name(img.name), path=img, boxes=boxes,
                                  meta={"yolo_split": split}, source=source))
    if not samples:
        raise DatasetError("YOLO data.yaml lists no existing images under train/val/test", yaml_path)
    return SpineDataset(name=yaml_path.parent.name, samples=samples, box_classes=order_classes(names.values(), SPEC_BOX_CLASSES),
                        root=str(yaml_path.parent))


def _load_coco(json_path: Path, source: str) -> SpineDataset:
    boxes, recs, box_classes = _coco_boxes(json_path)
    base = json_path.parent
    index: dict[str, Path] | None = None
    samples: list[Sample] = []
    problems: list[str] = []
    for stem, rec in recs.items():
        fn = str(rec["file_name"])
        path = next((c for c in (base / fn, base / "images" / fn, base / "images" / Path(fn).name) if c.is_file()), None)
        if path is None:
            if index is None:
                index = {p.name: p for p in _images_in(base, recursive=True)}
            path = index.get(Path(fn).name)
        if path is None:
            problems.append(f"{json_path}: image {fn!r} not found next to the json")
            continue
        samples.append(Sample(id=stem, patient_id=patient_id_from_name(Path(fn).name), path=path, boxes=boxes.get(stem, []),
                              meta={k: rec[k] for k in ("width", "height") if k in rec}, source=source))
    if not samples:
        raise DatasetError("COCO json references no image that exists next to it (or in images/)", json_path)
    return SpineDataset(name=json_path.stem, samples=samples, box_classes=order_classes(box_classes, SPEC_BOX_CLASSES),
                        problems=problems, root=str(base))


def _two_view_patient_dirs(label_dir: Path) -> list[Path]:
    return [d for d in _visible(label_dir.iterdir()) if d.is_dir()]


def _looks_two_view(root: Path, label_dirs: list[Path]) -> bool:
    """True when the label folders hold patient folders whose images are named by view."""
    for ld in label_dirs:
        for pd in _two_view_patient_dirs(ld)[:20]:
            imgs = _images_in(pd)
            if 0 < len(imgs) <= 6 and any(view_from_name(p.name) for p in imgs):
                return True
    return False


def _load_two_view(root: Path, label_dirs: list[Path], source: str) -> SpineDataset:
    samples: list[Sample] = []
    problems: list[str] = []
    for ld in label_dirs:
        label = canonical_class(ld.name)
        for pd in _two_view_patient_dirs(ld):
            found: dict[str, list[Path]] = {}
            imgs = _images_in(pd)
            for p in imgs:
                v = view_from_name(p.name)
                if v:
                    found.setdefault(v, []).append(p)
            missing = [name for v, name in (("ap", "AP"), ("lat", "lateral")) if v not in found]
            if missing:
                listing = ", ".join(p.name for p in imgs) or "no images"
                problems.append(f"patient {ld.name}/{pd.name}: no {' and no '.join(missing)} view ({listing}); left out")
                continue
            for v, cands in found.items():
                if len(cands) > 1:
                    problems.append(f"patient {ld.name}/{pd.name}: {len(cands)} {v} images, using {cands[0].name}")
            samples.append(Sample(id=f"{ld.name}/{pd.name}", patient_id=pd.name, label=label,
                                  views={"ap": found["ap"][0], "lat": found["lat"][0]}, view="two_view", source=source))
        for p in _images_in(ld):
            problems.append(f"{p}: image directly under a label folder of a two-view dataset; ignored")
    if not samples:
        raise DatasetError(f"two-view layout but no patient folder has both an AP and a lateral image ({'; '.join(problems[:3])})", root)
    return SpineDataset(name=root.name, samples=samples, problems=problems, root=str(root))


def _load_class_folders(root: Path, label_dirs: list[Path], source: str) -> SpineDataset:
    samples: list[Sample] = []
    for ld in label_dirs:
        label = canonical_class(ld.name)
        for p in _images_in(ld, recursive=True):
            rel = p.relative_to(root).with_suffix("").as_posix()
            samples.append(Sample(id=rel, patient_id=patient_id_from_name(p.name), path=p, label=label, source=source))
    return SpineDataset(name=root.name, samples=samples, root=str(root))


def _load_mri(root: Path, source: str) -> SpineDataset:
    from spine_models.data.mri import load_mri_dataset

    ds = load_mri_dataset(root)
    for s in ds.samples:
        s.source = s.source or source
    return ds


def _has_dicom_below(root: Path, limit: int = 2000) -> bool:
    for i, p in enumerate(root.rglob("*")):
        if i > limit:
            return False
        if p.is_file() and _is_dicom_file(p) and len(p.relative_to(root).parts) >= 2:
            return True
    return False


def _detect_and_load(path: Path, source: str, task: str | None) -> SpineDataset:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".zip":
            return _detect_and_load(_unwrap(_extract_dataset_zip(path)), source, task)
        if suffix == ".json":
            return _load_coco(path, source)
        if suffix in {".yaml", ".yml"}:
            return _load_yolo(path, source)
        raise DatasetError(f"a single file is not a dataset; pass a folder or ZIP holding {LAYOUTS}", path)
    if not path.is_dir():
        raise DatasetError(f"no such file or folder; pass {LAYOUTS}", path)
    kids = _visible(path.iterdir())
    names = {k.name.lower(): k for k in kids}
    if "labels.csv" in names and (path / "images").is_dir():
        return _load_synth(path, source)
    if "gradings.csv" in names and (path / "images").is_dir():
        from spine_models.data.spider import load_spider

        return load_spider(path, source)
    if "data.yaml" in names or "data.yml" in names:
        return _load_yolo(names.get("data.yaml") or names["data.yml"], source)
    for j in (k for k in kids if k.suffix.lower() == ".json" and k.is_file()):
        try:
            head = json.loads(j.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(head, dict) and "images" in head and "annotations" in head:
            return _load_coco(j, source)
    zips = [k for k in kids if k.suffix.lower() == ".zip" and k.is_file()]
    subdirs = [k for k in kids if k.is_dir()]
    label_dirs = [d for d in subdirs if _images_in(d, recursive=True)]
    if task == "mri" and _has_dicom_below(path):
        return _load_mri(path, source)
    if label_dirs:
        if _looks_two_view(path, label_dirs):
            return _load_two_view(path, label_dirs, source)
        direct = any(_images_in(d) for d in label_dirs)
        known = any(canonical_class(d.name) in SPEC_CLASSES for d in label_dirs)
        # DIR/<patient>/<series>/*.dcm is an MRI study tree; DIR/<class>/[sub/]*.dcm a class tree of DX files
        if not direct and not known and _has_dicom_below(path):
            return _load_mri(path, source)
        return _load_class_folders(path, label_dirs, source)
    if _has_dicom_below(path):
        return _load_mri(path, source)
    if zips and not subdirs:
        return concat_datasets([_detect_and_load(z, source, task) for z in zips], name=path.name)
    if len(subdirs) == 1 and not [k for k in kids if k.is_file()]:
        return _detect_and_load(subdirs[0], source, task)
    found = ", ".join(k.name for k in kids[:8]) or "nothing"
    raise DatasetError(f"no dataset layout recognised (found: {found}); expected {LAYOUTS}", path)


# ------------------------------------------------------------------------------------- public
def concat_datasets(parts: list[SpineDataset], name: str | None = None) -> SpineDataset:
    """Concatenate datasets; sample ids are made unique (``d<k>:`` prefix on collision), patient ids kept."""
    samples: list[Sample] = []
    seen: set[str] = set()
    for k, ds in enumerate(parts):
        for s in ds.samples:
            if s.id in seen:
                s.id = f"d{k}:{s.id}"
            seen.add(s.id)
            samples.append(s)
    labels = [s.label for s in samples if s.label]
    return SpineDataset(
        name=name or "+".join(d.name for d in parts),
        samples=samples,
        classes=order_classes(labels),
        structures=sorted({st for d in parts for st in d.structures} | {m for s in samples for m in s.masks}),
        box_classes=order_classes({b for d in parts for b in d.box_classes} | {b.label for s in samples for b in s.boxes},
                                  SPEC_BOX_CLASSES),
        problems=[p for d in parts for p in d.problems],
        root=";".join(d.root for d in parts),
    )


def load_dataset(paths: "list[str | Path] | str | Path", *, task: str | None = None) -> SpineDataset:
    """Read one or several ``--data`` arguments into one dataset (layouts: module docstring).

    ``task`` ("classify" | "detect" | "segment" | "mri" | None) only checks that the data carries what
    the task needs (labels, boxes, masks) so a wrong folder fails here with a clear message.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise DatasetError(f"no --data given; pass {LAYOUTS}")
    parts = []
    for raw in paths:
        p = Path(raw).expanduser()
        ds = _detect_and_load(p, str(raw), task)
        if not ds.samples:
            raise DatasetError(f"holds no images; expected {LAYOUTS}", p)
        parts.append(ds)
    ds = parts[0] if len(parts) == 1 else concat_datasets(parts)
    if len(parts) == 1:
        ds.classes = order_classes(s.label for s in ds.samples)
        ds.structures = sorted(set(ds.structures) | {m for s in ds.samples for m in s.masks})
        ds.box_classes = order_classes(set(ds.box_classes) | {b.label for s in ds.samples for b in s.boxes}, SPEC_BOX_CLASSES)
    where = ", ".join(str(p) for p in paths)
    if task == "classify" and not ds.classes:
        raise DatasetError(f"no class labels found in {where}; classification needs class folders, the synth layout or two-view folders")
    if task == "detect" and not any(s.boxes for s in ds.samples):
        raise DatasetError(f"no boxes found in {where}; detection needs YOLO (data.yaml), COCO json or the synth layout")
    if task == "segment" and not any(s.masks or s.landmarks or any(b.label == "vertebra" or b.label.startswith("disc")
                                                                   for b in s.boxes) for s in ds.samples):
        raise DatasetError(f"no masks, vertebra corners, vertebra or disc boxes found in {where}; segmentation needs the "
                           "synth layout (masks/<structure>/<id>.png), the landmark layout (landmarks.csv), "
                           "YOLO vertebra boxes or the disc-grading layout (gradings.csv + discs/)")
    return ds


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_digest(p: Path) -> str:
    from spine_models.io.digest import sha256_file

    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = sha256_file(p)
    return _FILE_HASHES[key]


def dataset_fingerprint(ds: SpineDataset) -> str:
    """sha256 over every sample's labels and the *contents* of its files (not their location).

    Why: evaluation results are cached by (model, data); the same files copied elsewhere hit the cache,
    an edited label or image misses it.
    """
    h = hashlib.sha256()
    for s in sorted(ds.samples, key=lambda s: s.id):
        files = {"image": s.path} if s.path else {}
        files.update({f"view:{k}": v for k, v in s.views.items()})
        files.update({f"mask:{k}": v for k, v in s.masks.items()})
        rec = {
            "id": s.id, "patient": s.patient_id, "label": s.label, "view": s.view,
            "boxes": [[round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3), b.label] for b in s.boxes],
            "landmarks": {k: [list(map(float, pt)) for pt in v] for k, v in sorted(s.landmarks.items())},
            "files": {k: _file_digest(Path(v)) for k, v in sorted(files.items())},
            "meta": {k: v for k, v in sorted(s.meta.items()) if isinstance(v, (int, float, str, bool, type(None)))},
        }
        h.update(json.dumps(rec, sort_keys=True, default=str).encode())
    h.update(json.dumps(ds.classes).encode())
    return h.hexdigest()
