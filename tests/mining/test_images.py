"""mining.images: reading the image-caption table, validating rows, decoding images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mining.images import InputError, decode_image, read_image_table, validate_rows


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16), mode="RGB") -> bytes:
    buf = io.BytesIO()
    fill = colour if mode == "RGB" else colour[0]
    Image.new(mode, size, fill).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_table(path: Path, keys, captions, jpgs, **extra) -> Path:
    columns = {
        "key": pa.array(keys, pa.string()),
        "caption": pa.array(captions, pa.string()),
        "jpg": pa.array(jpgs, pa.binary()),
        **extra,
    }
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two img2dataset-style shards, one in a subfolder, plus a file that is not Parquet."""
    folder = tmp_path / "images"
    (folder / "part").mkdir(parents=True)
    _write_table(
        folder / "00000.parquet",
        ["a", "b"],
        ["a red square", "a green square"],
        [_jpeg((255, 0, 0)), _jpeg((0, 255, 0))],
        url=pa.array(["http://x/a.jpg", "http://x/b.jpg"]),
    )
    _write_table(folder / "part" / "00001.parquet", ["c"], ["a blue square"], [_jpeg((0, 0, 255))])
    (folder / "00000_stats.json").write_text("{}")
    return folder


def test_read_one_file(image_folder: Path):
    table = read_image_table(str(image_folder / "00000.parquet"))

    assert table.column_names[:3] == ["key", "caption", "jpg"]
    assert table["key"].to_pylist() == ["a", "b"]
    assert table["caption"].to_pylist() == ["a red square", "a green square"]
    assert decode_image(table["jpg"][0].as_py())[0, 0].tolist() == pytest.approx([254, 0, 0], abs=2)


def test_read_folder_finds_nested_parquet(image_folder: Path):
    table = read_image_table(str(image_folder))

    assert sorted(table["key"].to_pylist()) == ["a", "b", "c"]
    assert table.num_rows == 3


def test_read_glob(image_folder: Path):
    table = read_image_table(str(image_folder / "**" / "*.parquet"))
    assert sorted(table["key"].to_pylist()) == ["a", "b", "c"]

    table = read_image_table(str(image_folder / "0000?.parquet"))
    assert table["key"].to_pylist() == ["a", "b"]


def test_read_demo_corpus_images(small_corpus: Path):
    table = read_image_table(str(small_corpus / "images.parquet"))
    usable, failures = validate_rows(table)

    assert failures == []
    assert usable.num_rows == table.num_rows > 0
    for data in usable["jpg"].to_pylist()[:5]:
        image = decode_image(data)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_missing_path_raises(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        read_image_table(str(tmp_path / "nope.parquet"))


def test_glob_without_match_raises(tmp_path: Path):
    with pytest.raises(InputError, match="matches no files"):
        read_image_table(str(tmp_path / "*.parquet"))


def test_folder_without_parquet_raises(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(InputError, match="holds no .parquet files"):
        read_image_table(str(tmp_path))


def test_empty_table_raises(tmp_path: Path):
    path = _write_table(tmp_path / "empty.parquet", [], [], [])
    with pytest.raises(InputError, match="has no rows"):
        read_image_table(str(path))


@pytest.mark.parametrize("missing", ["caption", "jpg", "key"])
def test_table_without_required_column_raises(tmp_path: Path, missing: str):
    columns = {
        "key": pa.array(["a"]),
        "caption": pa.array(["a red square"]),
        "jpg": pa.array([_jpeg((255, 0, 0))], pa.binary()),
    }
    del columns[missing]
    path = tmp_path / "partial.parquet"
    pq.write_table(pa.table(columns), path)

    with pytest.raises(InputError, match=f"lacks column\\(s\\) {missing};") as err:
        read_image_table(str(path))
    assert "partial.parquet" in str(err.value)


def test_unreadable_parquet_raises(tmp_path: Path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(InputError, match="not readable Parquet"):
        read_image_table(str(path))


def test_read_keeps_other_columns_as_metadata(image_folder: Path):
    table = read_image_table(str(image_folder / "00000.parquet"))
    assert "url" in table.column_names


def test_validate_rows_records_each_bad_row_and_keeps_the_rest():
    red, green, blue = _jpeg((255, 0, 0)), _jpeg((0, 255, 0)), _jpeg((0, 0, 255))
    table = pa.table(
        {
            "key": pa.array(["a", None, "b", "a", "c", "d", "e", ""], pa.string()),
            "caption": pa.array(
                ["first a", "no key", "b", "second a", "   ", "d", None, "empty key"]
            ),
            "jpg": pa.array([red, green, blue, green, red, b"", green, red], pa.binary()),
        }
    )

    usable, failures = validate_rows(table)

    assert usable["key"].to_pylist() == ["a", "b"]
    assert usable["caption"].to_pylist() == ["first a", "b"]
    assert usable["jpg"].to_pylist() == [red, blue]
    assert failures == [
        {"key": "<row 1>", "status": "failed", "error": "missing key"},
        {"key": "a", "status": "failed", "error": "duplicate key (an earlier row has it)"},
        {"key": "c", "status": "failed", "error": "empty caption"},
        {"key": "d", "status": "failed", "error": "empty image bytes"},
        {"key": "e", "status": "failed", "error": "empty caption"},
        {"key": "<row 7>", "status": "failed", "error": "missing key"},
    ]
    assert usable.num_rows + len(failures) == table.num_rows


def test_validate_rows_null_image_is_empty_bytes():
    table = pa.table(
        {
            "key": pa.array(["a", "b"]),
            "caption": pa.array(["x", "y"]),
            "jpg": pa.array([None, _jpeg((1, 2, 3))], pa.binary()),
        }
    )
    usable, failures = validate_rows(table)

    assert usable["key"].to_pylist() == ["b"]
    assert failures == [{"key": "a", "status": "failed", "error": "empty image bytes"}]


def test_validate_rows_casts_keys_to_string():
    table = pa.table(
        {
            "key": pa.array([7, 8], pa.int64()),
            "caption": pa.array(["x", "y"]),
            "jpg": pa.array([_jpeg((1, 2, 3))] * 2, pa.binary()),
        }
    )
    usable, failures = validate_rows(table)

    assert failures == []
    assert usable.schema.field("key").type == pa.string()
    assert usable["key"].to_pylist() == ["7", "8"]


def test_validate_rows_with_key_not_first():
    table = pa.table(
        {
            "caption": pa.array(["x", "y"]),
            "key": pa.array(["a", "b"]),
            "jpg": pa.array([_jpeg((1, 2, 3))] * 2, pa.binary()),
        }
    )
    usable, _ = validate_rows(table)

    assert usable["caption"].to_pylist() == ["x", "y"]
    assert usable["key"].to_pylist() == ["a", "b"]


def test_decode_image_garbage_raises():
    with pytest.raises(ValueError, match="undecodable image"):
        decode_image(b"\x00\x01 definitely not an image")
    with pytest.raises(ValueError, match="undecodable image"):
        decode_image(b"")


def test_decode_image_truncated_jpeg_raises():
    data = _jpeg((200, 10, 10), size=(64, 64))
    with pytest.raises(ValueError, match="undecodable image"):
        decode_image(data[: len(data) // 3])


def test_decode_grayscale_jpeg_as_rgb():
    data = _jpeg((120, 0, 0), size=(20, 10), mode="L")
    assert Image.open(io.BytesIO(data)).mode == "L"

    image = decode_image(data)

    assert image.shape == (10, 20, 3)
    assert image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 1])
    assert np.array_equal(image[..., 1], image[..., 2])
    assert abs(int(image[5, 10, 0]) - 120) <= 2


def test_decode_png_with_alpha_as_rgb():
    buf = io.BytesIO()
    Image.new("RGBA", (6, 4), (10, 20, 30, 0)).save(buf, format="PNG")

    image = decode_image(buf.getvalue())

    assert image.shape == (4, 6, 3)
    assert image[0, 0].tolist() == [10, 20, 30]
