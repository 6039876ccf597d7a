"""Importers of released processed data on small files written by the tests."""

from __future__ import annotations

import json
import logging
import lzma
from pathlib import Path

import numpy as np
import pytest

from clairo_bench.data.dataset import DataError
from clairo_bench.data.importers import (
    CodeFileRequest,
    import_mql4grec,
    import_recbole_interactions,
    import_recbole_sequential,
    import_user_sequence,
    read_atomic_file,
    read_code_file,
)

ASINS = ["B00A", "B00B", "B00C", "B00D"]
TEXT_CODES = {
    "0": ["<a_1>", "<b_2>", "<c_3>"],
    "1": ["<a_4>", "<b_5>", "<c_6>"],
    "2": ["<a_7>", "<b_8>", "<c_9>"],
    "3": ["<a_10>", "<b_11>", "<c_12>"],
}
IMAGE_CODES = {
    key: [token.upper() for token in tokens] for key, tokens in TEXT_CODES.items()
}


def write_release(
    folder: Path,
    *,
    inter: dict | None = None,
    item2id: list[str] | None = None,
    text_codes: dict | None = None,
    image_codes: dict | None = None,
) -> dict[str, Path]:
    """Write a toy MQL4GRec release: 3 users, 4 items, text and image codes."""
    folder.mkdir(parents=True, exist_ok=True)
    inter = inter if inter is not None else {"0": [0, 1, 2], "1": [2, 3, 0, 1], "2": [3, 1, 0]}
    item2id = item2id if item2id is not None else [f"{a}\t{i}" for i, a in enumerate(ASINS)]
    paths = {
        "inter": folder / "Toy.inter.json",
        "item2id": folder / "Toy.item2id",
        "text": folder / "Toy.index_lemb.json",
        "image": folder / "Toy.index_vitemb.json",
    }
    paths["inter"].write_text(json.dumps(inter, indent=4), encoding="utf-8")
    paths["item2id"].write_text("\n".join(item2id) + "\n", encoding="utf-8")
    paths["text"].write_text(json.dumps(text_codes or TEXT_CODES, indent=4), encoding="utf-8")
    paths["image"].write_text(json.dumps(image_codes or IMAGE_CODES, indent=4), encoding="utf-8")
    return paths


def import_toy(paths: dict[str, Path], *, text_size: int | None = 16, min_length: int = 1):
    return import_mql4grec(
        "toy",
        paths["inter"],
        paths["item2id"],
        [
            CodeFileRequest("text", paths["text"], text_size),
            CodeFileRequest("image", paths["image"], 16),
        ],
        min_length=min_length,
    )


def test_mql4grec_import_counts_and_order(tmp_path):
    dataset = import_toy(write_release(tmp_path))
    assert dataset.user_ids == ["0", "1", "2"]
    assert dataset.item_ids == ASINS
    assert [s.tolist() for s in dataset.sequences] == [[0, 1, 2], [2, 3, 0, 1], [3, 1, 0]]
    assert dataset.n_interactions == 10


def test_mql4grec_codes_parsed_per_modality(tmp_path):
    dataset = import_toy(write_release(tmp_path))
    assert dataset.codes["text"].codes.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    assert dataset.codes["image"].codes.tolist() == dataset.codes["text"].codes.tolist()
    assert dataset.codes["text"].codebook_size == 16
    assert dataset.codes["text"].n_levels == 3


def test_reordered_code_file_is_aligned_by_item_key(tmp_path):
    reordered = {key: TEXT_CODES[key] for key in ["3", "1", "0", "2"]}
    dataset = import_toy(write_release(tmp_path, text_codes=reordered))
    assert dataset.codes["text"].codes[3].tolist() == [10, 11, 12]
    assert dataset.codes["text"].codes[0].tolist() == [1, 2, 3]


def test_reordered_item2id_is_joined_by_index(tmp_path):
    lines = ["B00C\t2", "B00A\t0", "B00D\t3", "B00B\t1"]
    dataset = import_toy(write_release(tmp_path, item2id=lines))
    assert dataset.item_ids == ASINS
    assert dataset.codes["text"].codes[2].tolist() == [7, 8, 9]


def test_item_missing_from_code_file_is_rejected(tmp_path):
    incomplete = {key: value for key, value in TEXT_CODES.items() if key != "2"}
    paths = write_release(tmp_path, text_codes=incomplete)
    with pytest.raises(DataError, match=r"Toy\.index_lemb\.json has no codes for item '2' \(B00C\)"):
        import_toy(paths)


def test_code_for_unknown_item_is_rejected(tmp_path):
    extra = {**TEXT_CODES, "9": ["<a_1>", "<b_1>", "<c_1>"]}
    paths = write_release(tmp_path, text_codes=extra)
    with pytest.raises(DataError, match=r"Toy\.index_lemb\.json.*first '9'"):
        import_toy(paths)


def test_code_levels_must_agree(tmp_path):
    uneven = {**TEXT_CODES, "1": ["<a_4>", "<b_5>", "<c_6>", "<d_1>"]}
    paths = write_release(tmp_path, text_codes=uneven)
    with pytest.raises(DataError, match=r"item '1' has 4 code levels but item '0' has 3"):
        read_code_file(paths["text"])


def test_unknown_code_prefix_is_rejected(tmp_path):
    wrong = {**TEXT_CODES, "2": ["<a_7>", "<x_8>", "<c_9>"]}
    paths = write_release(tmp_path, text_codes=wrong)
    with pytest.raises(DataError, match=r"item '2' level 1 has the unknown prefix 'x' in '<x_8>'"):
        read_code_file(paths["text"])


def test_malformed_code_token_is_rejected(tmp_path):
    wrong = {**TEXT_CODES, "2": ["<a_7>", "b_8", "<c_9>"]}
    paths = write_release(tmp_path, text_codes=wrong)
    with pytest.raises(DataError, match=r"malformed code token 'b_8'"):
        read_code_file(paths["text"])


def test_mixed_case_code_file_is_rejected(tmp_path):
    mixed = {**TEXT_CODES, "3": ["<A_10>", "<B_11>", "<C_12>"]}
    paths = write_release(tmp_path, text_codes=mixed)
    with pytest.raises(DataError, match=r"item '3' uses uppercase"):
        read_code_file(paths["text"])


def test_code_modality_must_match_card(tmp_path):
    paths = write_release(tmp_path)
    with pytest.raises(DataError, match=r"contains image codes.*declares it as text"):
        import_mql4grec(
            "toy", paths["inter"], paths["item2id"], [CodeFileRequest("text", paths["image"], 16)]
        )


def test_code_outside_declared_codebook_is_rejected(tmp_path):
    paths = write_release(tmp_path)
    with pytest.raises(DataError, match=r"contains code 12, outside the declared codebook_size 8"):
        import_toy(paths, text_size=8)


def test_undeclared_codebook_size_uses_max_plus_one(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = import_toy(write_release(tmp_path), text_size=None)
    assert dataset.codes["text"].codebook_size == 13
    assert "declares no codebook_size" in caplog.text


def test_inter_item_missing_from_item2id_is_rejected(tmp_path):
    paths = write_release(tmp_path, inter={"0": [0, 1, 7]})
    with pytest.raises(DataError, match=r"user '0' refers to item index 7.*Toy\.item2id"):
        import_toy(paths)


def test_duplicate_user_key_in_inter_json_is_rejected(tmp_path):
    paths = write_release(tmp_path)
    paths["inter"].write_text('{"0": [0, 1], "1": [2, 3], "0": [1, 2]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"Toy\.inter\.json contains the key '0' twice"):
        import_toy(paths)


def test_duplicate_item2id_row_is_rejected(tmp_path):
    lines = [f"{a}\t{i}" for i, a in enumerate(ASINS)] + ["B00A\t0"]
    paths = write_release(tmp_path, item2id=lines)
    with pytest.raises(DataError, match=r"Toy\.item2id, line 5: item 'B00A' is listed twice"):
        import_toy(paths)


def test_truncated_inter_json_names_file(tmp_path):
    paths = write_release(tmp_path)
    text = paths["inter"].read_text(encoding="utf-8")
    paths["inter"].write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(DataError, match=r"Toy\.inter\.json is not valid JSON at line \d+"):
        import_toy(paths)


def test_corrupt_xz_names_file(tmp_path):
    paths = write_release(tmp_path)
    compressed = lzma.compress(paths["inter"].read_bytes())
    broken = tmp_path / "Toy.inter.json.xz"
    broken.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=r"Toy\.inter\.json\.xz.*corrupt or truncated"):
        import_mql4grec("toy", broken, paths["item2id"])


def test_empty_history_is_dropped_and_counted(tmp_path, caplog):
    paths = write_release(tmp_path, inter={"0": [0, 1, 2], "1": [], "2": [3]})
    with caplog.at_level(logging.WARNING):
        dataset = import_toy(paths, min_length=2)
    assert dataset.user_ids == ["0", "2"]
    assert dataset.processing["counts"]["dropped_empty_users"] == 1
    assert dataset.processing["counts"]["users_below_min_length"] == 1
    assert "dropped 1 users with no interactions" in caplog.text
    assert "1 users have fewer than 2 interactions" in caplog.text


def test_item_without_interactions_is_kept_and_counted(tmp_path):
    dataset = import_toy(write_release(tmp_path, inter={"0": [0, 1], "1": [1, 2]}))
    assert dataset.n_items == 4
    assert dataset.processing["counts"]["items_without_interactions"] == 1


def test_processing_records_file_hashes(tmp_path):
    dataset = import_toy(write_release(tmp_path))
    assert set(dataset.processing["files"]) == {
        "Toy.inter.json", "Toy.item2id", "Toy.index_lemb.json", "Toy.index_vitemb.json"
    }
    assert all(len(value) == 64 for value in dataset.processing["files"].values())


def test_user_sequence_import(tmp_path):
    path = tmp_path / "user_sequence.txt"
    path.write_text("U000002 B2 A1\nU000001 A1 C3 B2\nU000003\n", encoding="utf-8")
    dataset = import_user_sequence("toy", path)
    assert dataset.user_ids == ["U000001", "U000002"]
    assert dataset.item_ids == ["A1", "B2", "C3"]
    assert [s.tolist() for s in dataset.sequences] == [[0, 2, 1], [1, 0]]
    assert dataset.processing["counts"]["dropped_empty_users"] == 1


def test_user_sequence_duplicate_user_is_rejected(tmp_path):
    path = tmp_path / "user_sequence.txt"
    path.write_text("U1 A B\nU2 B C\nU1 C\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"user_sequence\.txt, line 3: user 'U1' already appeared"):
        import_user_sequence("toy", path)


def test_recbole_interactions_order_and_repeats(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        "u1\tC\t5\nu1\tA\t5\nu1\tB\t1\nu1\tA\t9\nu2\tB\t3\nu2\tB\t3\n",
        encoding="utf-8",
    )
    dataset = import_recbole_interactions("toy", path, repeat_policy="keep_first")
    letters = [[dataset.item_ids[i] for i in s] for s in dataset.sequences]
    assert letters == [["B", "A", "C"], ["B"]]
    assert dataset.processing["counts"]["duplicate_rows"] == 1
    assert dataset.processing["counts"]["removed_repeats"] == 2


def test_recbole_header_without_type_is_rejected(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text("user_id\titem_id:token\nu1\tA\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"toy\.inter: header field 'user_id'"):
        read_atomic_file(path)


def test_recbole_short_row_is_rejected(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text("user_id:token\titem_id:token\tts:float\nu1\tA\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"toy\.inter, line 2: 2 tab-separated fields"):
        read_atomic_file(path)


def test_recbole_non_numeric_float_is_rejected(tmp_path):
    path = tmp_path / "toy.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\tA\tnoon\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: column timestamp must be a number, got 'noon'"):
        read_atomic_file(path)


def write_sequential(path: Path, rows: list[tuple[str, list[str], str]]) -> Path:
    lines = ["user_id:token\titem_id_list:token_seq\titem_id:token"]
    lines += [f"{user}\t{' '.join(history)}\t{target}" for user, history, target in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_recbole_sequential_rebuilds_capped_sequences(tmp_path):
    # Sequence of user 7 is 1..6 with a history cap of 3; rows in reverse order like MQL4GRec's.
    sequence = [str(i) for i in range(1, 7)]
    cap = 3
    rows = [("7", sequence[max(0, p - cap):p], sequence[p]) for p in range(4, 0, -1)]
    train = write_sequential(tmp_path / "t.train.inter", rows)
    valid = write_sequential(tmp_path / "t.valid.inter", [("7", sequence[1:4], sequence[4])])
    test = write_sequential(tmp_path / "t.test.inter", [("7", sequence[2:5], sequence[5])])
    dataset = import_recbole_sequential("toy", [train, valid, test], max_history_items=cap)
    assert [dataset.item_ids[i] for i in dataset.sequences[0]] == sequence


def test_recbole_sequential_conflicting_rows_are_rejected(tmp_path):
    rows = [("7", ["1"], "2"), ("7", ["1", "2"], "3"), ("7", ["1", "2"], "4")]
    path = write_sequential(tmp_path / "t.inter", rows)
    with pytest.raises(DataError, match=r"user '7' has the history .* with two targets"):
        import_recbole_sequential("toy", [path], max_history_items=50)


def test_recbole_sequential_gap_is_rejected(tmp_path):
    rows = [("7", ["1"], "2"), ("7", ["1", "2", "3"], "4")]
    path = write_sequential(tmp_path / "t.inter", rows)
    with pytest.raises(DataError, match=r"user '7' has 1 rows that do not continue"):
        import_recbole_sequential("toy", [path], max_history_items=50)


def test_recbole_sequential_duplicate_rows_are_counted(tmp_path):
    rows = [("7", ["1"], "2"), ("7", ["1"], "2"), ("7", ["1", "2"], "3")]
    path = write_sequential(tmp_path / "t.inter", rows)
    dataset = import_recbole_sequential("toy", [path], max_history_items=50)
    assert dataset.processing["counts"]["duplicate_rows"] == 1
    assert np.array_equal(dataset.sequences[0], np.array([0, 1, 2]))
