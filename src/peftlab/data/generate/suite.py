"""``peftlab data generate``: the offline mini-suite, written in exactly the VTAB-1k layout.

Per task folder (``<out>/<task>/``)::

    train800.txt val200.txt train800val200.txt test.txt      `images/<set>/<index>.png label` lines
    shift/style.txt                                          the test scenes in another style, same labels
    manyshot/train<size>.txt                                 textures and clevr_distance only (nested prefixes)
    images/{train,test,shift-style,manyshot}/NNNNNN.png     32 × 32 RGB, lossless PNG
    task.json                                                the card: suite "mini", group, classes, sizes
and ``<out>/upstream/{train,val}.txt`` + ``images/{train,val}/`` for pretraining.

Determinism: every image batch is drawn from its own ``numpy`` generator seeded by (seed, task, image set,
batch index), PNGs are written by Pillow with fixed settings and no metadata, and list order is fixed, so the
same seed gives byte-identical files (with the same numpy, Pillow and zlib). Changing ``--test-size`` does not
change the training images (separate streams). Each task is built in a hidden folder beside the output and
renamed into place, so a killed run leaves no half task; a task whose card already matches is skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from peftlab.data.generate import natural, specialized, structured
from peftlab.data.generate.canvas import IMAGE_SIZE, balanced_labels, to_uint8
from peftlab.data.generate.recipe import Recipe
from peftlab.data.generate.upstream import NUM_CLASSES as UPSTREAM_CLASSES
from peftlab.data.generate.upstream import render_upstream
from peftlab.data.lists import MANYSHOT_DIR, MANYSHOT_PREFIX, SHIFT_DIR, SHIFT_PREFIX
from peftlab.data.staging import make_staging_dir, replace_dir
from peftlab.data.tasks import CARD_NAME, FIXED_SIZES, MINI_SUITE, MINI_TASKS, UPSTREAM_GROUP, UPSTREAM_TASK
from peftlab.errors import PeftlabError
from peftlab.io import write_failures_named, write_json

GENERATOR_VERSION = 1
DEFAULT_TEST_SIZE = 2000
DEFAULT_MANYSHOT_SIZE = 6000
DEFAULT_MANYSHOT_SUBSETS = (2000,)
DEFAULT_UPSTREAM_SIZE = 24000
MANYSHOT_TASKS = ("textures", "clevr_distance")
SHIFT_NAME = "style"
BATCH = 500  # images rendered per generator; part of the seed derivation, so fixed
PNG_COMPRESS_LEVEL = 6

RECIPES: dict[str, Recipe] = {r.name: r for r in (*natural.RECIPES, *specialized.RECIPES, *structured.RECIPES)}
SUITE_TASKS = (*MINI_TASKS, UPSTREAM_TASK)


@dataclass(frozen=True)
class SuiteSizes:
    test: int = DEFAULT_TEST_SIZE
    manyshot: int = DEFAULT_MANYSHOT_SIZE
    manyshot_subsets: tuple[int, ...] | None = None  # None: the defaults below ``manyshot``
    upstream: int = DEFAULT_UPSTREAM_SIZE

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SuiteSizes:
        """The sizes a config's ``data.generate`` asks for (``test_size``, ``manyshot_size``, ``upstream_size``);
        the defaults for those it leaves out."""
        keys = (("test", "test_size"), ("manyshot", "manyshot_size"), ("upstream", "upstream_size"))
        return cls(**{field: int(settings[key]) for field, key in keys if key in settings})

    def check(self) -> None:
        for name, value in (("--test-size", self.test), ("--manyshot-size", self.manyshot),
                            ("--upstream-size", self.upstream)):
            if value < 1:
                raise PeftlabError(f"{name} {value}: must be a positive integer")
        if self.upstream < 2:
            raise PeftlabError(f"--upstream-size {self.upstream}: needs at least 2 images (train and val)")
        bad = [s for s in self.manyshot_subsets or () if not 0 < s <= self.manyshot]
        if bad:
            raise PeftlabError(f"--manyshot-subset {bad}: subsets must lie in [1, --manyshot-size {self.manyshot}]")

    @property
    def manyshot_lists(self) -> list[int]:
        subsets = self.manyshot_subsets
        if subsets is None:
            subsets = tuple(size for size in DEFAULT_MANYSHOT_SUBSETS if size < self.manyshot)
        return sorted({*subsets, self.manyshot})

    @property
    def upstream_val(self) -> int:
        return max(1, round(self.upstream / 12))


def _stream(seed: int, task: str, image_set: str, batch: int) -> np.random.Generator:
    """An independent generator per (seed, task, image set, batch): stable across runs and platforms."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task.encode()),
                                                        zlib.crc32(image_set.encode()), batch]))


def _render(render: Callable, seed: int, task: str, image_set: str, labels: np.ndarray, held_out: bool,
            shift: Callable | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images for ``labels`` in batches; with ``shift`` also the shifted copies of the same scenes."""
    images, shifted = [], []
    for batch, start in enumerate(range(0, len(labels), BATCH)):
        rendered = render(_stream(seed, task, image_set, batch), labels[start:start + BATCH], held_out)
        images.append(to_uint8(rendered))
        if shift is not None:
            shifted.append(to_uint8(shift(_stream(seed, task, f"{image_set}/shift", batch), rendered)))
    return np.concatenate(images), (np.concatenate(shifted) if shift is not None else None)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an ``[S, S, 3]`` uint8 image: fixed compression, no metadata (byte-stable)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


class _TaskWriter:
    """Writes one task's images and lists into its staging folder; remembers image digests per image set."""

    def __init__(self, folder: Path, progress) -> None:
        self.folder = folder
        self.digests: dict[str, set[str]] = {}
        self.progress = progress

    def images(self, image_set: str, pixels: np.ndarray) -> list[str]:
        directory = self.folder / "images" / image_set
        directory.mkdir(parents=True, exist_ok=True)
        relpaths, digests = [], set()
        for index, image in enumerate(pixels):
            data = encode_png(image)
            relpath = f"images/{image_set}/{index:06d}.png"
            with write_failures_named(self.folder / relpath):
                (self.folder / relpath).write_bytes(data)
            relpaths.append(relpath)
            digests.add(hashlib.sha256(data).hexdigest())
            self.progress.update(1)
        self.digests[image_set] = digests
        return relpaths

    def list_file(self, name: str, relpaths: Sequence[str], labels: np.ndarray) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with write_failures_named(path):
            path.write_text("".join(f"{p} {int(label)}\n" for p, label in zip(relpaths, labels, strict=True)),
                            encoding="utf-8")

    def check_disjoint(self, trained: Sequence[str], evaluated: Sequence[str]) -> None:
        """A generator bug, not a user error, if a training image equals a test image byte for byte."""
        for train_set in trained:
            for eval_set in evaluated:
                if self.digests[train_set] & self.digests[eval_set]:
                    raise RuntimeError(f"{self.folder}: images/{train_set} and images/{eval_set} share an image")


def task_card(task: str, seed: int, sizes: SuiteSizes) -> dict:
    """The ``task.json`` a generated folder carries: what ``prepare`` checks the lists against."""
    if task == UPSTREAM_TASK:
        return {"suite": MINI_SUITE, "task": task, "group": UPSTREAM_GROUP, "num_classes": UPSTREAM_CLASSES,
                "sizes": {"train": sizes.upstream - sizes.upstream_val, "val": sizes.upstream_val},
                "generator": {"version": GENERATOR_VERSION, "seed": seed, "image_size": IMAGE_SIZE}}
    spec = MINI_TASKS[task]
    split_sizes = {**FIXED_SIZES, "test": sizes.test, f"{SHIFT_PREFIX}{SHIFT_NAME}": sizes.test}
    if task in MANYSHOT_TASKS:
        split_sizes.update({f"{MANYSHOT_PREFIX}{n}": n for n in sizes.manyshot_lists})
    recipe = RECIPES[task]
    return {"suite": MINI_SUITE, "task": task, "group": spec.group, "num_classes": spec.num_classes,
            "sizes": split_sizes,
            "generator": {"version": GENERATOR_VERSION, "seed": seed, "image_size": IMAGE_SIZE,
                          "description": recipe.description, "shift": {SHIFT_NAME: recipe.shift_description}}}


def _write_task(writer: _TaskWriter, task: str, seed: int, sizes: SuiteSizes) -> None:
    recipe, num_classes = RECIPES[task], MINI_TASKS[task].num_classes
    train_total = FIXED_SIZES["train800val200"]
    labels = balanced_labels(_stream(seed, task, "labels/train", 0), train_total, num_classes)
    pixels, _ = _render(recipe.render, seed, task, "train", labels, held_out=False)
    paths = writer.images("train", pixels)
    cut = FIXED_SIZES["train800"]
    writer.list_file("train800.txt", paths[:cut], labels[:cut])
    writer.list_file("val200.txt", paths[cut:], labels[cut:])
    writer.list_file("train800val200.txt", paths, labels)

    labels = balanced_labels(_stream(seed, task, "labels/test", 0), sizes.test, num_classes)
    pixels, shifted = _render(recipe.render, seed, task, "test", labels, held_out=True, shift=recipe.shift)
    writer.list_file("test.txt", writer.images("test", pixels), labels)
    shift_set = f"{SHIFT_PREFIX}{SHIFT_NAME}"
    writer.list_file(f"{SHIFT_DIR}/{SHIFT_NAME}.txt", writer.images(shift_set, shifted), labels)
    trained = ["train"]
    if task in MANYSHOT_TASKS:
        labels = balanced_labels(_stream(seed, task, "labels/manyshot", 0), sizes.manyshot, num_classes)
        pixels, _ = _render(recipe.render, seed, task, "manyshot", labels, held_out=False)
        paths = writer.images("manyshot", pixels)
        for size in sizes.manyshot_lists:
            writer.list_file(f"{MANYSHOT_DIR}/train{size}.txt", paths[:size], labels[:size])
        trained.append("manyshot")
    writer.check_disjoint(trained, ["test", shift_set])


def _write_upstream(writer: _TaskWriter, seed: int, sizes: SuiteSizes) -> None:
    for image_set, count in (("train", sizes.upstream - sizes.upstream_val), ("val", sizes.upstream_val)):
        labels = balanced_labels(_stream(seed, UPSTREAM_TASK, f"labels/{image_set}", 0), count, UPSTREAM_CLASSES)
        pixels, _ = _render(render_upstream, seed, UPSTREAM_TASK, image_set, labels, held_out=image_set == "val")
        writer.list_file(f"{image_set}.txt", writer.images(image_set, pixels), labels)
    writer.check_disjoint(["train"], ["val"])


def generate_suite(out: str | Path, seed: int, sizes: SuiteSizes = SuiteSizes(), tasks: Sequence[str] | None = None,
                   force: bool = False, log=print) -> dict[str, str]:
    """Write the mini-suite (or ``tasks`` of it) under ``out``; returns ``{task: "written" | "up to date"}``."""
    sizes.check()
    if seed < 0:
        raise PeftlabError(f"--seed {seed}: must be a non-negative integer")
    names = list(tasks) if tasks else list(SUITE_TASKS)
    unknown = [name for name in names if name not in SUITE_TASKS]
    if unknown:
        raise PeftlabError(f"--tasks {unknown}: not mini-suite tasks (known: {list(SUITE_TASKS)})")
    out = Path(out)
    outcome = {}
    for task in names:
        card = task_card(task, seed, sizes)
        target = out / task
        existing = _read_card(target)
        if target.exists() and (existing or {}).get("suite") != MINI_SUITE:
            raise PeftlabError(f"{target}: exists and is not a generated mini-suite folder (no task.json with "
                               f"suite 'mini'); refusing to overwrite it: choose another --out")
        if not force and existing == card:
            log(f"{task}: up to date ({target}), nothing to do")
            outcome[task] = "up to date"
            continue
        started = time.perf_counter()
        staging = make_staging_dir(out, task, "generate")
        try:
            with tqdm(total=_image_count(task, sizes), desc=f"generate {task}", unit="img", disable=None,
                      file=sys.stderr) as progress:
                writer = _TaskWriter(staging, progress)
                if task == UPSTREAM_TASK:
                    _write_upstream(writer, seed, sizes)
                else:
                    _write_task(writer, task, seed, sizes)
            write_json(staging / CARD_NAME, card)
            replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        count = sum(len(d) for d in writer.digests.values())
        log(f"{task}: wrote {count} images to {target} in {time.perf_counter() - started:.1f} s")
        outcome[task] = "written"
    return outcome


def _image_count(task: str, sizes: SuiteSizes) -> int:
    if task == UPSTREAM_TASK:
        return sizes.upstream
    return FIXED_SIZES["train800val200"] + 2 * sizes.test + (sizes.manyshot if task in MANYSHOT_TASKS else 0)


def _read_card(task_dir: Path) -> dict | None:
    try:
        return json.loads((task_dir / CARD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

