"""Every upstream format rejects bad files and bad rows with one line naming the file and the row;
`attack.on_bad_row=skip` drops bad rows, keeps the rest and counts them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from attack_fixtures import GENERIC_CSV, GENERIC_JSONL, compose_attack, copy_fixtures

from vlmsafety.attacks import load_attack_set
from vlmsafety.errors import VlmSafetyError


@dataclass(frozen=True)
class Format:
    option: str  # conf/attack/<option>.yaml
    file: str  # the upstream file, relative to the data root
    column: str  # a column (key) the loader reads from the first row
    first_row: str  # how messages name the first row
    image: str | None = None  # an image the first row points at
    overrides: tuple[str, ...] = ()


CSV_ROW = "data row 1 (1-based, after the header; line 2)"
FORMATS = {
    # key: the option, or option_suffix for the generic loader's two formats
    (f"{f.option}_{Path(f.file).suffix[1:]}" if f.option == "generic" else f.option): f
    for f in [
        Format("advbench", "advbench/harmful_behaviors.csv", "goal", CSV_ROW),
        Format("harmbench", "HarmBench/data/behavior_datasets/harmbench_behaviors_text_all.csv", "Behavior", CSV_ROW),
        Format(
            "harmbench_multimodal", "HarmBench/data/behavior_datasets/harmbench_behaviors_multimodal_all.csv",
            "ImageFileName", CSV_ROW, "HarmBench/data/multimodal_behavior_images/fixture_fence.png",
        ),
        Format("jailbreakbench", "JBB-Behaviors/data/harmful-behaviors.csv", "Goal", CSV_ROW),
        Format("redteam2k", "JailBreakV_28K/RedTeam_2K.csv", "question", CSV_ROW, overrides=("attack.image=none",)),
        Format(
            "jailbreakv28k", "JailBreakV_28K/JailBreakV_28K.csv", "image_path", CSV_ROW,
            "JailBreakV_28K/llm_transfer_attack/fixture_noise_0.png",
        ),
        Format(
            "mmsafetybench", "MM-SafetyBench/data/processed_questions/01-Illegal_Activitiy.json", "Rephrased Question",
            "entry '0'", "MM-SafetyBench/data/imgs/01-Illegal_Activitiy/SD_TYPO/0.jpg",
        ),
        Format(
            "figstep", "FigStep/data/question/safebench.csv", "instruction", CSV_ROW,
            "FigStep/data/images/SafeBench/query_ForbidQI_1_1_6.png",
            ("attack.image_dir=${data_root}/FigStep/data/images/SafeBench",),
        ),
        Format("xstest", "xstest/xstest_prompts.csv", "prompt", CSV_ROW),
        Format("generic", "generic/prompts.csv", "question", CSV_ROW, overrides=GENERIC_CSV),
        Format("generic", "generic/prompts.jsonl", "question", "line 1 (1-based)", overrides=GENERIC_JSONL),
    ]
}
WITH_IMAGES = [k for k, f in FORMATS.items() if f.image]


def setup(tmp_path: Path, key: str, **extra: str):
    fmt = FORMATS[key]
    root = copy_fixtures(tmp_path)
    attack = compose_attack(fmt.option, root, *fmt.overrides, *(f"attack.{k}={v}" for k, v in extra.items()))
    return fmt, root, attack


def one_line_error(attack) -> str:
    with pytest.raises(VlmSafetyError) as err:
        load_attack_set(attack)
    message = str(err.value)
    assert "\n" not in message
    return message


def replace_with_lfs_pointer(path: Path) -> None:
    """What a clone without git-lfs holds in place of the file (git-lfs docs/spec.md pointer format)."""
    data = path.read_bytes()
    oid = hashlib.sha256(data).hexdigest()
    path.write_bytes(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode())


def make_first_row_non_utf8(path: Path) -> None:
    data = path.read_bytes()
    assert b"fixture" in data
    path.write_bytes(data.replace(b"fixture", b"fixt\xfcre", 1))  # latin-1 "ü": not UTF-8


@pytest.mark.parametrize("key", FORMATS)
def test_fixture_loads_cleanly(tmp_path, key):
    _, _, attack = setup(tmp_path, key)
    loaded = load_attack_set(attack)
    assert loaded.items and loaded.skipped == 0


@pytest.mark.parametrize("key", FORMATS)
def test_missing_column_names_file_and_where(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    path = root / fmt.file
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":  # the header loses the column
        header, rest = text.split("\n", 1)
        path.write_text(header.replace(fmt.column, "renamed", 1) + "\n" + rest, encoding="utf-8")
        where = "header row"
    else:  # the first JSON object loses the key
        path.write_text(text.replace(f'"{fmt.column}"', '"renamed"', 1), encoding="utf-8")
        where = fmt.first_row
    message = one_line_error(attack)
    assert str(path) in message and where in message and fmt.column in message


@pytest.mark.parametrize("key", FORMATS)
def test_empty_file_names_the_file(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    (root / fmt.file).write_bytes(b"")
    message = one_line_error(attack)
    assert f"{root / fmt.file} is empty" in message


@pytest.mark.parametrize("key", [k for k, f in FORMATS.items() if f.file.endswith(".csv")])
def test_header_only_file_has_no_data_rows(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    path = root / fmt.file
    path.write_text(path.read_text(encoding="utf-8").split("\n", 1)[0] + "\n", encoding="utf-8")
    assert "has a header but no data rows" in one_line_error(attack)


@pytest.mark.parametrize("key", FORMATS)
def test_non_utf8_text_names_file_and_row(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    make_first_row_non_utf8(root / fmt.file)
    message = one_line_error(attack)
    assert str(root / fmt.file) in message and fmt.first_row in message and "not valid UTF-8" in message


@pytest.mark.parametrize("key", WITH_IMAGES)
def test_missing_image_names_file_row_and_image(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    (root / fmt.image).unlink()
    message = one_line_error(attack)
    assert str(root / fmt.file) in message and fmt.first_row in message
    assert f"image file not found: {root / fmt.image}" in message


@pytest.mark.parametrize("key", WITH_IMAGES)
def test_corrupt_image_names_file_row_and_image(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key)
    (root / fmt.image).write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    message = one_line_error(attack)
    assert str(root / fmt.file) in message and fmt.first_row in message
    assert f"image file {root / fmt.image} is corrupt" in message


@pytest.mark.parametrize("key", FORMATS)
def test_lfs_pointer_table_is_one_line_saying_git_lfs_pull(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key, on_bad_row="skip")
    replace_with_lfs_pointer(root / fmt.file)
    message = one_line_error(attack)
    assert message.startswith(f"{root / fmt.file} is a Git LFS pointer") and "run `git lfs pull`" in message


@pytest.mark.parametrize("key", WITH_IMAGES)
def test_lfs_pointer_image_stops_the_run_even_when_skipping_bad_rows(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key, on_bad_row="skip")
    replace_with_lfs_pointer(root / fmt.image)
    message = one_line_error(attack)
    assert message.startswith(f"{root / fmt.image} is a Git LFS pointer") and "run `git lfs pull`" in message


@pytest.mark.parametrize("key", FORMATS)
def test_skip_drops_the_bad_row_and_counts_it(tmp_path, key, caplog):
    fmt, root, attack = setup(tmp_path, key, on_bad_row="skip")
    clean = load_attack_set(attack)
    make_first_row_non_utf8(root / fmt.file)
    with caplog.at_level("WARNING"):
        loaded = load_attack_set(attack)
    assert loaded.skipped == 1
    assert [it.id for it in loaded.items] == [it.id for it in clean.items][1:]
    assert sum(fmt.first_row in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("key", WITH_IMAGES)
def test_skip_also_covers_bad_images(tmp_path, key):
    fmt, root, attack = setup(tmp_path, key, on_bad_row="skip")
    n = len(load_attack_set(attack).items)
    (root / fmt.image).write_bytes(b"garbage")
    loaded = load_attack_set(attack)
    assert loaded.skipped == 1 and len(loaded.items) == n - 1


def test_skip_never_hides_a_broken_file(tmp_path):
    fmt, root, attack = setup(tmp_path, "advbench", on_bad_row="skip")
    (root / fmt.file).write_bytes(b"")
    assert "is empty" in one_line_error(attack)


def test_duplicate_ids_are_bad_rows(tmp_path):
    fmt, root, attack = setup(tmp_path, "xstest")
    path = root / fmt.file
    path.write_text(path.read_text(encoding="utf-8").replace("\n2,", "\n1,", 1), encoding="utf-8")
    message = one_line_error(attack)
    assert "data row 2" in message and "duplicate id 'xstest-1'" in message and "data row 1" in message


def test_wrong_field_count_is_a_bad_row(tmp_path):
    fmt, root, attack = setup(tmp_path, "xstest")
    path = root / fmt.file
    path.write_text(path.read_text(encoding="utf-8") + "4,too few fields\n", encoding="utf-8")
    assert "data row 4 (1-based, after the header; line 5): has 2 fields, the header has 6" in one_line_error(attack)


def test_unknown_on_bad_row_policy(tmp_path):
    _, _, attack = setup(tmp_path, "advbench", on_bad_row="ignore")
    assert "attack.on_bad_row='ignore' is not valid; use one of: error, skip" in one_line_error(attack)
