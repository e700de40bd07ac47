"""Positions of fields in protobuf text format, in every syntax Triton configs use."""

from __future__ import annotations

from packager.modeldir.textproto_positions import FieldPositions, Position

TEXT = """\
name: "clf"  # a comment: { [ ignored
max_batch_size: 8
input [
  {
    name: "X"
    dims: [ 4, -1 ]
  },
  { name: "Y" dims: 2 dims: 3 }
]
output { name: "Z" reshape: { shape: [ ] } }
output < name: 'W' >
parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env" "." } }
parameters: { key: "other", value: { string_value: "x" } };
"""


def test_scalar_values_point_at_the_value() -> None:
    positions = FieldPositions(TEXT)
    assert positions.at("name", 0) == Position(1, 7, "clf")
    assert positions.at("max_batch_size", 0) == Position(2, 17, "8")


def test_repeated_messages_in_list_and_block_syntax_are_counted_in_order() -> None:
    positions = FieldPositions(TEXT)
    assert positions.at("input", 0, "dims", 1) == Position(6, 16, "-1")
    assert positions.at("input", 1, "name", 0) == Position(8, 11, "Y")
    assert positions.at("input", 1, "dims", 1) == Position(8, 29, "3")
    assert positions.at("output", 1, "name", 0) == Position(11, 16, "W")


def test_messages_point_at_the_field_name() -> None:
    positions = FieldPositions(TEXT)
    assert positions.at("input", 0) == Position(4, 3)
    assert positions.at("output", 0, "reshape", 0) == Position(10, 20)


def test_missing_field_falls_back_to_nearest_written_ancestor() -> None:
    positions = FieldPositions(TEXT)
    assert positions.at("output", 0, "data_type", 0) == Position(10, 1)
    assert positions.at("input", 1, "data_type", 0) == Position(8, 3)
    assert positions.at("dynamic_batching", 0) is None


def test_map_entries_are_found_by_key_and_adjacent_strings_concatenate() -> None:
    positions = FieldPositions(TEXT)
    entry = positions.map_entry("parameters", key="EXECUTION_ENV_PATH")
    assert entry == 0
    assert positions.at("parameters", 0, "value", 0, "string_value", 0) == Position(
        12, 63, "$$TRITON_MODEL_DIRECTORY/env."
    )
    assert positions.map_entry("parameters", key="other") == 1
    assert positions.map_entry("parameters", key="absent") is None
