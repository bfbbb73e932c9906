"""Layer maps: TinyBERT's uniform mapping, explicit pairs, and clear errors."""

from __future__ import annotations

import pytest

from mobclf.distill.layer_map import parse_layer_map
from mobclf.errors import UserError


def test_uniform_map_is_tinyberts_g_of_m():
    assert parse_layer_map("uniform", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert parse_layer_map("uniform", 2, 2) == [(1, 1), (2, 2)]
    assert parse_layer_map("uniform", 4, 6) == [(1, 2), (2, 3), (3, 5), (4, 6)]  # 1.5, 3, 4.5, 6 rounded half up
    assert parse_layer_map("uniform", 3, 4) == [(1, 1), (2, 3), (3, 4)]


def test_explicit_pairs_and_bare_teacher_layers():
    assert parse_layer_map("1:2, 2:4,4:12", 4, 12) == [(1, 2), (2, 4), (4, 12)]
    assert parse_layer_map("3,6,9,12", 4, 12) == [(1, 3), (2, 6), (3, 9), (4, 12)]


@pytest.mark.parametrize("spec, students, teachers, message", [
    ("uniform", 4, 2, "teacher has 2"),
    ("1:13", 4, 12, "teacher layer 13"),
    ("5:10", 4, 12, "student layer 5"),
    ("0:1", 4, 12, "student layer 0"),
    ("1:3,1:6", 4, 12, "twice"),
    ("one:three", 4, 12, "expected 'uniform'"),
    (" , ", 4, 12, "empty"),
])
def test_bad_maps_are_user_errors(spec, students, teachers, message):
    with pytest.raises(UserError, match=message):
        parse_layer_map(spec, students, teachers)
