"""Reading the image-caption table (img2dataset's Parquet layout) and decoding its images."""

from __future__ import annotations

import glob
import io
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("key", "caption", "jpg")


class InputError(ValueError):
    """An input path or table that cannot be used at all; the run stops before any work."""


def _parquet_files(path: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path, recursive=True))
        if not files:
            raise InputError(f"image table glob {path!r} matches no files")
        return files
    if os.path.isdir(path):
        files = sorted(str(p) for p in Path(path).rglob("*.parquet"))
        if not files:
            raise InputError(f"image table folder {path} holds no .parquet files")
        return files
    if os.path.isfile(path):
        return [path]
    raise InputError(f"image table {path} does not exist")


def read_image_table(path: str) -> pa.Table:
    """Read a Parquet file, folder or glob with at least `key`, `caption`, `jpg`.

    Raises InputError for a missing path, missing columns or an empty table. Bad rows are not
    dropped here: `decode_images` records each as a failure.
    """
    tables = []
    for file in _parquet_files(path):
        try:
            table = pq.read_table(file)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"image table file {file} is not readable Parquet: {err}") from err
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(
                f"image table file {file} lacks column(s) {', '.join(missing)}; "
                f"it needs {', '.join(REQUIRED_COLUMNS)} (img2dataset's Parquet layout)"
            )
        tables.append(table)  # columns beyond the required ones are kept as metadata
    table = pa.concat_tables(tables, promote_options="permissive")
    if table.num_rows == 0:
        raise InputError(f"image table {path} has no rows")
    return table


def validate_rows(table: pa.Table) -> tuple[pa.Table, list[dict]]:
    """Keep rows with a key, a caption and image bytes; the first row of a key wins.

    Returns the usable rows and one failure record (key, status, error) per other row. Image
    bytes are decoded later, where the images are embedded (`decode_image`).
    """
    keep = np.zeros(table.num_rows, dtype=bool)
    failures: list[dict] = []
    seen: set[str] = set()
    keys = table["key"].to_pylist()
    captions = table["caption"].to_pylist()
    sizes = pa.compute.binary_length(table["jpg"]).to_pylist()
    # img2dataset's rows say why they have no image (mining.fetch_images keeps them)
    names = table.column_names
    statuses = table["status"].to_pylist() if "status" in names else [None] * table.num_rows
    reasons = table["error_message"].to_pylist() if "error_message" in names else statuses
    for row, (key, caption, size) in enumerate(zip(keys, captions, sizes)):
        if key is None or str(key) == "":
            error, key = "missing key", f"<row {row}>"
        elif str(key) in seen:
            error = "duplicate key (an earlier row has it)"
        elif statuses[row] not in (None, "success"):
            error = f"{statuses[row]}: {reasons[row]}"
        elif caption is None or not str(caption).strip():
            error = "empty caption"
        elif not size:
            error = "empty image bytes"
        else:
            error = None
        if error is None:
            keep[row] = True
        else:
            failures.append({"key": str(key), "status": "failed", "error": error})
        if key is not None:
            seen.add(str(key))
    if failures:
        log.warning(
            "%d of %d image rows unusable (first: %s)", len(failures), table.num_rows, failures[0]
        )
    ok = table.filter(pa.array(keep))
    key_column = ok.schema.get_field_index("key")
    ok = ok.set_column(key_column, "key", pa.compute.cast(ok["key"], pa.string()))
    return ok, failures


def decode_image(data: bytes) -> np.ndarray:
    """Image bytes -> RGB uint8 array; raises ValueError naming why Pillow could not read them."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"undecodable image: {err}") from err
